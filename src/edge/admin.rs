//! The admin listener: `GET /metrics` (Prometheus text exposition of every core's counters),
//! `GET /healthz` (the process answers) and `GET /readyz` (503 while draining for shutdown, and
//! while the upstream CSE is not reachable: see [`super::readiness`]); `POST /reload` reloads the
//! configuration ([`crate::reload`]) for callers on loopback (`admin.reload`: local, any, off). A reload reads files on the core that serves the request: a few
//! milliseconds on one core, once per operator action.

use m2m_rt::{ConnId, Cx};
use m2m_ws::handshake::{HeadLimits, http_error, parse_request};

use super::EdgeApp;
use super::metrics::render;
use crate::config::ReloadAccess;

impl EdgeApp {
    pub(super) fn admin_data(
        &mut self,
        cx: &mut Cx<'_, m2m_relay::Envelope>,
        conn: ConnId,
        data: &mut [u8],
        local: bool,
    ) -> usize {
        let req = match parse_request(data, HeadLimits::default()) {
            Ok(Some((req, _))) => req,
            Ok(None) => return 0,
            Err(e) => {
                cx.send(conn, &http_error(400, &[], &e.to_string()));
                cx.close(conn);
                return data.len();
            }
        };
        let response = match (req.method, req.target.split('?').next().unwrap_or("")) {
            ("GET", "/metrics") => {
                let accept = req.single_header("accept").ok().flatten();
                let (content_type, body) =
                    crate::exposition::negotiate(accept, render(&self.all_counters));
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
            ("GET", "/healthz") => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n".to_vec(),
            ("GET", "/readyz") if cx.shutting_down() => http_error(503, &[], "draining"),
            ("GET", "/readyz") if !self.settings.readiness.reachable(&self.all_counters) => {
                http_error(503, &[], "the upstream CSE is not reachable")
            }
            ("GET", "/readyz") => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: close\r\n\r\nready\n".to_vec(),
            ("POST", "/reload") if let Some(refusal) = reload_refusal(self.settings.reload_access, local) => {
                refusal
            }
            ("POST", "/reload") => {
                let outcome = self.settings.reloader.reload();
                self.settings
                    .reloader
                    .log_outcome("POST /reload", outcome.clone());
                let (status, body) = match outcome {
                    Ok(report) => ("200 OK", report),
                    Err(why) if why.contains("in progress") => ("409 Conflict", why),
                    Err(why) => ("400 Bad Request", format!("reload refused: {why}")),
                };
                format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}\n",
                    body.len() + 1
                )
                .into_bytes()
            }
            ("GET", _) => http_error(404, &[], "try /metrics, /healthz or /readyz"),
            (_, "/reload") => http_error(405, &[("Allow", "POST")], "only POST"),
            _ => http_error(405, &[("Allow", "GET")], "only GET"),
        };
        cx.send(conn, &response);
        cx.close(conn);
        data.len()
    }
}

/// Whether a caller on `peer` counts as local for `admin.reload = "local"` (IPv4 loopback also
/// when it arrives IPv4-mapped on an IPv6 listener).
pub(super) fn is_local(peer: std::net::IpAddr) -> bool {
    peer.to_canonical().is_loopback()
}

/// The answer refusing `POST /reload` to a caller (`local`: see [`is_local`]), if it is refused.
fn reload_refusal(access: ReloadAccess, local: bool) -> Option<Vec<u8>> {
    match access {
        ReloadAccess::Off => Some(http_error(
            403,
            &[],
            "reload over HTTP is off (admin.reload); send SIGHUP",
        )),
        ReloadAccess::Local if !local => Some(http_error(
            403,
            &[],
            "reload only from loopback (admin.reload = \"any\" allows any address)",
        )),
        ReloadAccess::Local | ReloadAccess::Any => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_over_http_is_for_loopback_callers_unless_any_and_never_when_off() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        for local in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert!(is_local(ip(local)), "{local}");
        }
        for remote in [
            "10.0.0.1",
            "192.0.2.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "0.0.0.0",
        ] {
            assert!(!is_local(ip(remote)), "{remote}");
        }
        let status =
            |r: Option<Vec<u8>>| r.map(|b| String::from_utf8_lossy(&b[9..12]).into_owned());
        assert_eq!(status(reload_refusal(ReloadAccess::Local, true)), None);
        assert_eq!(
            status(reload_refusal(ReloadAccess::Local, false)).as_deref(),
            Some("403")
        );
        assert_eq!(status(reload_refusal(ReloadAccess::Any, false)), None);
        assert_eq!(
            status(reload_refusal(ReloadAccess::Off, true)).as_deref(),
            Some("403")
        );
    }
}
