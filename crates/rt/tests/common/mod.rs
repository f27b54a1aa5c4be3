//! What several runtime test binaries share: an echo app and the process's descriptor count.

use std::net::SocketAddr;

use m2m_rt::{App, CloseReason, ConnId, Cx, IoMode, ListenerConfig, RtConfig};

/// Echoes everything back.
pub struct Echo;

impl App for Echo {
    type Msg = ();
    fn on_accept(&mut self, _: &mut Cx<'_, ()>, _: ConnId, _: usize, _: SocketAddr) {}
    fn on_data(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, data: &mut [u8]) -> usize {
        cx.send(conn, data);
        data.len()
    }
    fn on_close(&mut self, _: &mut Cx<'_, ()>, _: ConnId, _: CloseReason) {}
}

/// Descriptors this process has open (the kernel's view).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// One worker on `io`, one listener on a free loopback port, a short drain.
pub fn one_core(io: IoMode) -> RtConfig {
    RtConfig {
        workers: 1,
        io,
        listeners: vec![ListenerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            tls: None,
        }],
        drain: std::time::Duration::from_millis(100),
        ..RtConfig::default()
    }
}
