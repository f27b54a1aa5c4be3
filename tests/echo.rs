//! `m2m-edge echo` on both I/O drivers against the Python `websockets` client and raw sockets
//! (tests/peers/ws_echo_suite.py): handshakes, subprotocols, fragments, deflate, pings, close codes,
//! violations, limits, 300 concurrent connections, byte-by-byte writers; then wss, and SIGTERM.

use crate::support::*;

#[test]
fn python_websockets_suite_on_both_drivers() {
    for io in drivers() {
        let server = start_echo(io, &["--deflate"]);
        let out = run_python("ws_echo_suite.py", &[&server.addr.to_string()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("all checks passed"), "{io}: {text}");
        assert!(server.terminate().success(), "{io}: clean exit on SIGTERM");
    }
}

#[test]
fn wss_suite_on_both_drivers() {
    let dir = temp_dir("echo-wss");
    let (cert, key) = self_signed(&dir);
    for io in drivers() {
        let server = start_echo(
            io,
            &[
                "--deflate",
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ],
        );
        let out = run_python(
            "ws_echo_suite.py",
            &[&server.addr.to_string(), "--tls", cert.to_str().unwrap()],
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("all checks passed"),
            "{io}"
        );
    }
}

#[test]
fn handshake_timeout_closes_silent_connections() {
    use std::io::Read;
    for io in drivers() {
        let server = start_echo(io, &["--handshake-timeout-ms", "300"]);
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "{io}: closed without an answer");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{io}: closed by the timeout"
        );
    }
}
