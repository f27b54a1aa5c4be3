//! `m2m-edge echo` on both I/O drivers against the Python `websockets` client and raw sockets
//! (tests/peers/ws_echo_suite.py): handshakes, subprotocols, fragments, deflate, pings, close codes,
//! violations, limits, 300 concurrent connections, byte-by-byte writers; then wss, and SIGTERM.

use crate::support::*;

#[test]
fn python_websockets_suite_on_both_drivers() {
    crate::support::peers::require(&[crate::support::peers::Peer::PythonWebsockets]);
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
    crate::support::peers::require(&[crate::support::peers::Peer::PythonWebsockets]);
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
        let server = start_echo(io, &["--handshake-timeout", "300ms"]);
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

#[test]
fn auto_falls_back_to_epoll_when_io_uring_is_refused() {
    use std::process::{Command, Stdio};
    // A forced probe failure (as under a seccomp profile that blocks io_uring_setup).
    let port = free_port();
    let mut child = Command::new(edge_bin())
        .args([
            "echo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--io",
            "auto",
            "--workers",
            "1",
        ])
        .env("M2M_RT_URING_PROBE", "fail")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_listening(format!("127.0.0.1:{port}").parse().unwrap(), &mut child);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("falling back to epoll") && log.contains("driver=\"epoll\""),
        "{log}"
    );
    // `--io uring` refuses to start instead.
    let out = Command::new(edge_bin())
        .args(["echo", "--listen", "127.0.0.1:0", "--io", "uring"])
        .env("M2M_RT_URING_PROBE", "fail")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("io_uring requested but unavailable"));
}
