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
            ("POST", "/reload") if self.settings.reload_access == ReloadAccess::Off => {
                http_error(403, &[], "reload over HTTP is off (admin.reload); send SIGHUP")
            }
            ("POST", "/reload") if !local && self.settings.reload_access == ReloadAccess::Local => {
                http_error(403, &[], "reload only from loopback (admin.reload = \"any\" allows any address)")
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
