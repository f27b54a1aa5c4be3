//! Any bytes as a frame stream into both roles, with and without permessage-deflate: events or a
//! protocol error with a sendable close code, never a panic, and never more consumed than given.
#![no_main]
use libfuzzer_sys::fuzz_target;
use m2m_ws::{FrameHeader, Inflater, Receiver, ReceiverLimits, Role};

fuzz_target!(|data: &[u8]| {
    let _ = FrameHeader::parse(data);
    let limits = ReceiverLimits { max_frame_bytes: 4096, max_message_bytes: 8192, max_inflated_bytes: 16384, retain_bytes: 1024 };
    for role in [Role::Server, Role::Client] {
        for deflate in [false, true] {
            let mut rx = Receiver::new(role, limits, deflate.then(|| Inflater::new(false)));
            let mut buf = data.to_vec();
            let mut at = 0;
            loop {
                match rx.read(&mut buf[at..]) {
                    Ok(Some((_, used))) => {
                        assert!(used > 0 && at + used <= buf.len());
                        at += used;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        assert!(e.close_code().is_sendable());
                        break;
                    }
                }
            }
        }
    }
});
