//! `m2m-loadgen responder`: an upstream lighter than any proxy in front of it. The simulated CSE's
//! `--respond-only` mode still runs the loadgen's tokio stack (a task per connection, a parsed
//! primitive per request) and cost more CPU per request than nginx spends relaying one, so with
//! nginx in front the upstream, not the proxy, ran out of CPU first. This answers every JSON request
//! primitive at once with `{"rsc":2000,"rqi":…,"rvi":"3"}` on the edge's runtime (one core,
//! io_uring or epoll): the `rqi` is found with a byte search and copied, the answer framed straight
//! into the connection's output, and everything a turn produced for a connection goes out in one
//! write. It keeps no resources, accepts any originator on any connection, answers pings, and
//! ignores responses (a proxy's answers to requests it never sent). It speaks JSON only
//! (`oneM2M.json`; the handshake offers nothing else it can answer).

use std::net::SocketAddr;
use std::time::Duration;

use m2m_rt::{App, CloseReason, ConnId, Cx, IoMode, ListenerConfig, RtConfig, Runtime};
use m2m_ws::frame::{FrameHeader, OpCode, write_frame};
use m2m_ws::handshake::subprotocol::{OneM2mPolicy, Serialization};
use m2m_ws::handshake::{HeadLimits, error_response, parse_request, server};

use crate::pipeline::member;

/// The `responder` command's options.
#[derive(Debug, Clone, clap::Args)]
pub struct ResponderArgs {
    /// Address to listen on (port 0: any free port; the address is printed as `listening ADDR`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// I/O driver: auto (io_uring where allowed), uring or epoll.
    #[arg(long, default_value = "auto")]
    pub io: IoMode,
    /// Worker threads (cores).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
}

/// Per connection: still in the HTTP handshake, or open.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    Open,
}

#[derive(Default)]
struct Responder {
    /// By the runtime's connection slot.
    conns: Vec<Option<(ConnId, Phase)>>,
}

/// The answer to a request with `rqi` (the raw JSON string, quotes included), framed.
fn answer(out: &mut Vec<u8>, rqi: &[u8]) {
    let mut body = [0u8; 256];
    let parts: [&[u8]; 3] = [br#"{"rsc":2000,"rqi":"#, rqi, br#","rvi":"3"}"#];
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len <= body.len() {
        let mut at = 0;
        for p in parts {
            body[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        write_frame(out, true, false, OpCode::Text, None, &body[..len]);
    } else {
        write_frame(out, true, false, OpCode::Text, None, &parts.concat());
    }
}

/// The raw JSON string value (with its quotes) at the start of `v`, escapes kept.
fn json_string(v: &[u8]) -> Option<&[u8]> {
    if v.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < v.len() {
        match v[i] {
            b'\\' => i += 2,
            b'"' => return Some(&v[..=i]),
            _ => i += 1,
        }
    }
    None
}

impl Responder {
    fn phase(&mut self, conn: ConnId) -> Option<&mut Phase> {
        match self.conns.get_mut(conn.slot())? {
            Some((id, phase)) if *id == conn => Some(phase),
            _ => None,
        }
    }

    fn handshake(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, data: &[u8]) -> usize {
        let policy = OneM2mPolicy {
            serializations: vec![Serialization::Json],
            ..OneM2mPolicy::default()
        };
        let (req, len) = match parse_request(data, HeadLimits::default()) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return 0,
            Err(e) => {
                cx.send(conn, &error_response(&e));
                cx.close(conn);
                return data.len();
            }
        };
        match server::validate_upgrade(&req).and_then(|up| server::negotiate(&up, &policy, None)) {
            Ok(n) => {
                cx.send(conn, &n.response);
                if let Some(p) = self.phase(conn) {
                    *p = Phase::Open;
                }
                len
            }
            Err(e) => {
                cx.send(conn, &error_response(&e));
                cx.close(conn);
                data.len()
            }
        }
    }

    fn frames(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, data: &mut [u8]) -> usize {
        let mut at = 0;
        loop {
            let h = match FrameHeader::parse(&data[at..]) {
                Ok(Some(h)) => h,
                Ok(None) => return at,
                Err(_) => {
                    cx.abort(conn);
                    return data.len();
                }
            };
            let end = at + h.header_len + h.payload_len as usize;
            if end > data.len() {
                return at;
            }
            let payload = &mut data[at + h.header_len..end];
            if let Some(key) = h.mask {
                m2m_ws::mask::apply_mask(payload, key);
            }
            match h.opcode {
                OpCode::Text | OpCode::Binary => {
                    // A request has an `op`; anything else (a proxy's answer) needs no answer.
                    if member(payload, br#""op""#).is_some()
                        && let Some(rqi) = member(payload, br#""rqi""#).and_then(json_string)
                    {
                        cx.send_with(conn, |out| answer(out, rqi));
                    }
                }
                OpCode::Ping => {
                    let pong = payload.to_vec();
                    cx.send_with(conn, |out| {
                        write_frame(out, true, false, OpCode::Pong, None, &pong)
                    });
                }
                OpCode::Close => {
                    cx.send_with(conn, |out| {
                        write_frame(out, true, false, OpCode::Close, None, &[0x03, 0xe8])
                    });
                    cx.close(conn);
                    return data.len();
                }
                OpCode::Pong | OpCode::Continuation => {}
            }
            at = end;
        }
    }
}

impl App for Responder {
    type Msg = ();

    fn on_accept(&mut self, _: &mut Cx<'_, ()>, conn: ConnId, _: usize, _: SocketAddr) {
        if self.conns.len() <= conn.slot() {
            self.conns.resize(conn.slot() + 1024, None);
        }
        self.conns[conn.slot()] = Some((conn, Phase::Handshake));
    }

    fn on_data(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, data: &mut [u8]) -> usize {
        match self.phase(conn).copied() {
            Some(Phase::Handshake) => {
                let used = self.handshake(cx, conn, data);
                if used > 0 && self.phase(conn).copied() == Some(Phase::Open) {
                    used + self.frames(cx, conn, &mut data[used..])
                } else {
                    used
                }
            }
            Some(Phase::Open) => self.frames(cx, conn, data),
            None => data.len(),
        }
    }

    fn on_close(&mut self, _: &mut Cx<'_, ()>, conn: ConnId, _: CloseReason) {
        if let Some(slot) = self.conns.get_mut(conn.slot())
            && slot.is_some_and(|(id, _)| id == conn)
        {
            *slot = None;
        }
    }
}

/// Start the responder; returns the runtime (stop it with its stop handle) and its address.
pub fn start(args: &ResponderArgs) -> std::io::Result<(Runtime, SocketAddr)> {
    let config = RtConfig {
        workers: args.workers.max(1),
        io: args.io,
        listeners: vec![ListenerConfig {
            addr: args.listen,
            tls: None,
        }],
        drain: Duration::from_millis(200),
        ..RtConfig::default()
    };
    let rt = Runtime::start(config, |_| Responder::default())?;
    let addr = rt.local_addrs()[0];
    Ok((rt, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_carry_the_request_rqi_as_it_was_encoded() {
        let mut out = Vec::new();
        answer(&mut out, br#""a\"b-1""#);
        let h = FrameHeader::parse(&out).unwrap().unwrap();
        assert_eq!(h.opcode, OpCode::Text);
        let v: serde_json::Value = serde_json::from_slice(&out[h.header_len..]).unwrap();
        assert_eq!(
            (v["rsc"].as_u64(), v["rqi"].as_str()),
            (Some(2000), Some("a\"b-1"))
        );
        let long = format!("\"{}\"", "x".repeat(300));
        out.clear();
        answer(&mut out, long.as_bytes());
        let h = FrameHeader::parse(&out).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out[h.header_len..]).unwrap();
        assert_eq!(v["rqi"].as_str().map(str::len), Some(300));
    }

    #[test]
    fn json_strings_end_at_the_first_unescaped_quote() {
        assert_eq!(json_string(br#""ab\"c"," "#), Some(&br#""ab\"c""#[..]));
        assert_eq!(json_string(br#""ab"#), None);
        assert_eq!(json_string(b"12"), None);
    }
}
