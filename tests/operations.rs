//! What an operator deploys beside the edge, checked: the Prometheus alert rules (`deploy/alerts.yml`)
//! parse and pass their unit tests under `promtool`, and name only series the edge exposes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Send SIGHUP (a reload) to a running edge.
fn sighup(edge: &crate::support::Proc) {
    let pid = edge.child.id().to_string();
    let sent = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(sent.success());
}

fn promtool() -> &'static str {
    crate::support::peers::require(&[crate::support::peers::Peer::Promtool]);
    "promtool"
}

#[test]
fn alert_rules_parse_and_pass_their_unit_tests() {
    let tool = promtool();
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts.test.yml"],
    ] {
        let out = Command::new(tool)
            .args(&args)
            .current_dir(deploy())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn alert_rules_name_only_series_the_edge_exposes() {
    let rules = std::fs::read_to_string(deploy().join("alerts.yml")).unwrap();
    let known = m2m_edge::metric_names();
    let mut used = Vec::new();
    for line in rules.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(at) = rest.find("m2m_edge_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            used.push(name);
        }
    }
    assert!(used.len() >= 5, "{used:?}");
    for name in used {
        assert!(
            known.contains(&name),
            "{name} is not a series of the edge: {known:?}"
        );
    }
}

mod reload {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::process::Stdio;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    use super::sighup;
    use crate::support::{TestCa, free_port, spawn_listening, temp_dir};

    type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

    /// A TLS connection to the edge trusting `ca`; returns it with the certificate the edge showed.
    pub(super) fn connect(addr: SocketAddr, ca: &std::path::Path) -> (Tls, Vec<u8>) {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let conn = rustls::ClientConnection::new(
            Arc::new(config),
            ServerName::try_from("127.0.0.1").unwrap(),
        )
        .unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        let cert = tls.conn.peer_certificates().unwrap()[0].to_vec();
        (tls, cert)
    }

    pub(super) fn der_of(pem: &std::path::Path) -> Vec<u8> {
        CertificateDer::from_pem_file(pem).unwrap().to_vec()
    }

    pub(super) fn upgrade(tls: &mut Tls) {
        write!(
            tls,
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: oneM2M.json\r\n\r\n"
        )
        .unwrap();
        tls.flush().unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tls.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
    }

    /// A masked, empty ping; the session is alive when its pong comes back.
    pub(super) fn ping_pong(tls: &mut Tls) {
        tls.write_all(&[0x89, 0x80, 1, 2, 3, 4]).unwrap();
        tls.flush().unwrap();
        let mut pong = [0u8; 2];
        tls.read_exact(&mut pong).unwrap();
        assert_eq!(pong, [0x8A, 0x00]);
    }

    /// Wait until a new connection sees `want` (the reload runs on its own thread).
    fn sees(addr: SocketAddr, ca: &std::path::Path, want: &[u8]) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if connect(addr, ca).1 == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Rotate the server certificate under a connected device: SIGHUP puts the new files into
    /// effect for new connections, the device's session stays; files that do not load are refused
    /// and the certificate in use stays.
    #[test]
    fn sighup_rotates_the_certificate_without_dropping_sessions() {
        let dir = temp_dir("reload");
        let ca = TestCa::new(&dir, "edge");
        let (a_cert, a_key) = ca.issue("edge-a", &["127.0.0.1"]);
        let (b_cert, b_key) = ca.issue("edge-b", &["127.0.0.1"]);
        let (live_cert, live_key) = (dir.join("live.pem"), dir.join("live.key"));
        std::fs::copy(&a_cert, &live_cert).unwrap();
        std::fs::copy(&a_key, &live_key).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let (cert, key) = (live_cert.to_str().unwrap(), live_key.to_str().unwrap());
        let edge = spawn_listening(
            addr,
            ["run", "--listen", &addr.to_string(), "--workers", "1"]
                .into_iter()
                .chain(["--upstream", "ws://127.0.0.1:9/"])
                .chain(["--tls-cert", cert, "--tls-key", key]),
            Stdio::null(),
        );
        let (mut device, shown) = connect(addr, &ca.ca_pem);
        assert_eq!(shown, der_of(&a_cert));
        upgrade(&mut device);
        ping_pong(&mut device);

        // Rotate: new files in place, then SIGHUP.
        std::fs::copy(&b_cert, &live_cert).unwrap();
        std::fs::copy(&b_key, &live_key).unwrap();
        sighup(&edge);
        assert!(
            sees(addr, &ca.ca_pem, &der_of(&b_cert)),
            "a new device sees the new certificate"
        );
        ping_pong(&mut device);

        // A broken rotation (a key that is not the certificate's) is refused: b stays.
        std::fs::copy(&a_key, &live_key).unwrap();
        sighup(&edge);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(connect(addr, &ca.ca_pem).1, der_of(&b_cert));
        std::fs::write(&live_cert, "not a certificate").unwrap();
        sighup(&edge);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(connect(addr, &ca.ca_pem).1, der_of(&b_cert));
        ping_pong(&mut device);
        assert!(edge.terminate().success());
    }
}

/// `POST /reload` on the admin listener with a configuration file: limits and certificates change
/// for new connections while a connected device keeps its session (and its limits); a key that
/// needs a restart is reported, not applied; a bad file is refused with the reason and nothing
/// changes.
mod admin_reload {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::process::Stdio;
    use std::time::Duration;

    use super::reload::{connect, der_of, ping_pong, upgrade};
    use crate::support::{TestCa, free_port, spawn_listening, temp_dir};

    fn post_reload(admin: SocketAddr) -> (u16, String) {
        let mut s = TcpStream::connect(admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text[9..12].parse().unwrap();
        (status, text)
    }

    /// A masked text frame of `n` bytes that is no primitive.
    fn junk_frame(n: u8) -> Vec<u8> {
        let mut f = vec![0x81, 0x80 | n, 0, 0, 0, 0];
        f.extend(std::iter::repeat_n(b'x', n as usize));
        f
    }

    fn config(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
        let p = dir.join("edge.toml");
        std::fs::write(&p, body).unwrap();
        p
    }

    /// CONNECT to `target` through the edge at `edge`: the first line of the answer, and the
    /// stream (a tunnel when it is 200).
    fn connect_to(edge: SocketAddr, target: SocketAddr) -> (String, TcpStream) {
        let mut s = TcpStream::connect(edge).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&m2m_ws::handshake::connect::connect_request(
            "127.0.0.1",
            target.port(),
            &[],
        ))
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        (text.lines().next().unwrap_or("").to_string(), s)
    }

    /// A reload puts a new CONNECT allow-list and a new log level into effect (seen in what the
    /// edge does and logs, not only in the reload's report); `admin.reload = "off"` refuses the
    /// endpoint (SIGHUP still works).
    #[test]
    fn a_reload_changes_the_connect_allow_list_and_the_log_level() {
        let dir = temp_dir("reload-allow-log");
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other_addr = other.local_addr().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let base = format!(
            "[listen]\naddress = \"{addr}\"\n[upstream]\nurl = \"ws://127.0.0.1:9/\"\n\
             [admin]\naddress = \"{admin}\"\n[runtime]\nworkers = 1\n"
        );
        let file = config(&dir, &format!("{base}[log]\nlevel = \"info\"\n"));
        let log = dir.join("edge.log");
        let edge = spawn_listening(
            addr,
            ["run".as_ref(), "--config".as_ref(), file.as_os_str()],
            std::fs::File::create(&log).unwrap().into(),
        );
        let device_lines = || {
            std::fs::read_to_string(&log)
                .unwrap()
                .matches("device connected")
                .count()
        };

        // Before: the other target is refused, and a device's arrival is not logged (debug).
        assert!(connect_to(addr, other_addr).0.contains(" 403 "));
        let _kept =
            crate::support::ws_client::WsClient::connect(addr, &["oneM2M.json"], None).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(device_lines(), 0);

        let allowing = base.replace(
            "[listen]\n",
            &format!("[listen]\nconnect_allow = [\"{other_addr}\"]\n"),
        );
        config(&dir, &format!("{allowing}[log]\nlevel = \"debug\"\n"));
        let (status, text) = post_reload(admin);
        assert_eq!(status, 200, "{text}");
        assert!(
            text.contains("listen.connect_allow") && text.contains("log.level"),
            "{text}"
        );

        // After: tunnelled, bytes both ways; a new device is logged at debug.
        let (first, mut tunnel) = connect_to(addr, other_addr);
        assert!(first.contains(" 200 "), "{first}");
        let (mut far, _) = other.accept().unwrap();
        tunnel.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        far.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        far.write_all(b"pong").unwrap();
        tunnel.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
        let _new =
            crate::support::ws_client::WsClient::connect(addr, &["oneM2M.json"], None).unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while device_lines() == 0 {
            assert!(
                std::time::Instant::now() < until,
                "no debug line after the reload:\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(edge.terminate().success());

        // admin.reload = "off": the endpoint answers 403.
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let (listen, admin_text) = (addr.to_string(), admin.to_string());
        let edge = spawn_listening(
            addr,
            [
                "run",
                "--workers",
                "1",
                "--admin-reload",
                "off",
                "--listen",
                &listen,
            ]
            .into_iter()
            .chain(["--admin", &admin_text, "--upstream", "ws://127.0.0.1:9/"]),
            Stdio::null(),
        );
        let (status, text) = post_reload(admin);
        assert_eq!(status, 403, "{text}");
        assert!(text.contains("SIGHUP"), "{text}");
        assert!(edge.terminate().success());
    }

    #[test]
    fn a_reload_changes_limits_and_certificates_for_new_devices_only() {
        let dir = temp_dir("admin-reload");
        let ca = TestCa::new(&dir, "edge");
        let (a_cert, a_key) = ca.issue("edge-a", &["127.0.0.1"]);
        let (b_cert, b_key) = ca.issue("edge-b", &["127.0.0.1"]);
        let (live_cert, live_key) = (dir.join("live.pem"), dir.join("live.key"));
        std::fs::copy(&a_cert, &live_cert).unwrap();
        std::fs::copy(&a_key, &live_key).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let base = format!(
            "[listen]\naddress = \"{addr}\"\ntls_cert = {:?}\ntls_key = {:?}\n\
             [upstream]\nurl = \"ws://127.0.0.1:9/\"\n[admin]\naddress = \"{admin}\"\n\
             [runtime]\nworkers = 1\n",
            live_cert.display().to_string(),
            live_key.display().to_string()
        );
        let file = config(&dir, &base);
        let edge = spawn_listening(
            addr,
            ["run".as_ref(), "--config".as_ref(), file.as_os_str()],
            Stdio::null(),
        );
        let (mut old, shown) = connect(addr, &ca.ca_pem);
        assert_eq!(shown, der_of(&a_cert));
        upgrade(&mut old);

        // New certificate, a much smaller frame limit, a louder log.
        std::fs::copy(&b_cert, &live_cert).unwrap();
        std::fs::copy(&b_key, &live_key).unwrap();
        config(
            &dir,
            &format!("{base}[limits]\nmax_frame_bytes = 64\n[log]\nlevel = \"debug\"\n"),
        );
        let (status, text) = post_reload(admin);
        assert_eq!(status, 200, "{text}");
        assert!(
            text.contains("limits.max_frame_bytes") && text.contains("log.level"),
            "{text}"
        );
        let (mut new, shown) = connect(addr, &ca.ca_pem);
        assert_eq!(
            shown,
            der_of(&b_cert),
            "a new device sees the new certificate"
        );
        upgrade(&mut new);
        // 100 bytes: over the new limit for the new device (closed 1009), not for the old one
        // (answered as a malformed primitive, session kept).
        new.write_all(&junk_frame(100)).unwrap();
        new.flush().unwrap();
        let mut close = [0u8; 4];
        new.read_exact(&mut close).unwrap();
        assert_eq!(
            (close[0], u16::from_be_bytes([close[2], close[3]])),
            (0x88, 1009),
            "a close with 1009 for the new device"
        );
        old.write_all(&junk_frame(100)).unwrap();
        old.flush().unwrap();
        let mut head = [0u8; 1];
        old.read_exact(&mut head).unwrap();
        assert_eq!(head[0], 0x81, "the old device gets an answer, not a close");
        let mut rest = [0u8; 1];
        old.read_exact(&mut rest).unwrap();
        let mut body = vec![0u8; (rest[0] & 0x7f) as usize];
        if rest[0] & 0x7f == 126 {
            let mut len = [0u8; 2];
            old.read_exact(&mut len).unwrap();
            body = vec![0u8; u16::from_be_bytes(len) as usize];
        }
        old.read_exact(&mut body).unwrap();
        assert!(
            String::from_utf8_lossy(&body).contains("4000"),
            "{}",
            String::from_utf8_lossy(&body)
        );
        ping_pong(&mut old);

        // A key that needs a restart is reported and left alone.
        let moved = format!("127.0.0.1:{}", free_port());
        config(&dir, &base.replace(&addr.to_string(), &moved));
        let (status, text) = post_reload(admin);
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("need a restart: listen.address"), "{text}");
        assert!(
            TcpStream::connect(addr).is_ok(),
            "still listening where it was"
        );

        // A bad file is refused as a whole: the certificate files changed too, and stay unused.
        std::fs::copy(&a_cert, &live_cert).unwrap();
        std::fs::copy(&a_key, &live_key).unwrap();
        config(&dir, &format!("{base}[limits]\nmax_frame_byte = 64\n"));
        let (status, text) = post_reload(admin);
        assert_eq!(status, 400, "{text}");
        assert!(
            text.contains("reload refused")
                && text.contains("max_frame_byte")
                && text.contains("line"),
            "{text}"
        );
        assert_eq!(connect(addr, &ca.ca_pem).1, der_of(&b_cert));
        ping_pong(&mut old);
        assert!(edge.terminate().success());
    }
}

/// The configuration's three sources and their errors, through the binary (`--check` prints what
/// it would run with).
mod configuration {
    use std::process::{Command, Output};

    use crate::support::{edge_bin, temp_dir};

    fn check(file: Option<&str>, env: &[(&str, &str)], flags: &[&str]) -> Output {
        let mut cmd = Command::new(edge_bin());
        cmd.args(["run", "--check"]).args(flags);
        if let Some(text) = file {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // A directory per call: temp_dir empties its directory, and tests run at once.
            let p = temp_dir(&format!("configuration{n}")).join("edge.toml");
            std::fs::write(&p, text).unwrap();
            cmd.arg("--config").arg(p);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn stderr(o: &Output) -> String {
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// `--check` needs no DNS: a name that cannot resolve (RFC 6761 `.invalid`) is reported, not
    /// an error; `run` with it is one.
    #[test]
    fn check_needs_no_dns_and_says_whether_the_name_resolves() {
        let out = check(None, &[], &["--upstream", "ws://in-cse.invalid:8180/"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out);
        assert!(text.contains("does not resolve here"), "{text}");
        let out = check(None, &[], &["--upstream", "ws://127.0.0.1:8180/"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out);
        assert!(!text.contains("does not resolve here"), "{text}");
        let run = Command::new(edge_bin())
            .args([
                "run",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "ws://in-cse.invalid:8180/",
            ])
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(1));
        assert!(stderr(&run).contains("in-cse.invalid"), "{}", stderr(&run));
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let out = check(
            Some("[upstream]\nmax_queued = 7\nmax_in_flight = 3\nmax_in_flight_x = 1\n"),
            &[],
            &[],
        );
        assert_eq!(out.status.code(), Some(2), "a typo in the file");
        let out = check(
            Some(
                "[upstream]\nmax_queued = 7\nmax_in_flight = 3\n[limits]\nidle_timeout = \"1m\"\n",
            ),
            &[
                ("M2M_EDGE_UPSTREAM_MAX_QUEUED", "8"),
                ("M2M_EDGE_LIMITS_IDLE_TIMEOUT", "90s"),
                ("M2M_EDGE_LISTEN_CONNECT_ALLOW", "a:1,b:2"),
            ],
            &["--max-queued", "9"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let effective: toml::Table = body.parse().unwrap();
        assert_eq!(
            effective["upstream"]["max_queued"].as_integer(),
            Some(9),
            "flag"
        );
        assert_eq!(
            effective["upstream"]["max_in_flight"].as_integer(),
            Some(3),
            "file"
        );
        assert_eq!(
            effective["limits"]["idle_timeout"].as_str(),
            Some("1m30s"),
            "environment"
        );
        assert_eq!(
            effective["listen"]["connect_allow"]
                .as_array()
                .unwrap()
                .len(),
            2,
            "a list from the environment"
        );
        assert_eq!(
            effective["upstream"]["ping_interval"].as_str(),
            Some("30s"),
            "default"
        );
    }

    #[test]
    fn mistakes_are_one_error_that_says_where() {
        type Case<'a> = (
            Option<&'a str>,
            &'a [(&'a str, &'a str)],
            &'a [&'a str],
            i32,
            &'a [&'a str],
        );
        let cases: &[Case<'_>] = &[
            // The file's own mistakes: the TOML reader's line, and a hint for the old keys.
            (
                Some("[limits]\n\nidle_timeout_ms = 300000\n"),
                &[],
                &[],
                2,
                &[
                    ".toml: TOML parse error at line 3",
                    "idle_timeout_ms",
                    "durations take units now",
                ],
            ),
            // Enumerated keys are checked in the file as on the command line.
            (
                Some("[log]\nformat = \"xml\"\n"),
                &[],
                &[],
                2,
                &["line 2", "expected text or json"],
            ),
            // The environment's and the flags' own mistakes.
            (
                None,
                &[("M2M_EDGE_UPSTREAM_MAX_QUEUD", "8")],
                &[],
                2,
                &["did you mean M2M_EDGE_UPSTREAM_MAX_QUEUED"],
            ),
            (
                None,
                &[("M2M_EDGE_UPSTREAM_MAX_QUEUED", "lots")],
                &[],
                2,
                &["from the environment variable M2M_EDGE_UPSTREAM_MAX_QUEUED"],
            ),
            (
                None,
                &[],
                &["--request-timeout", "10000"],
                2,
                &["say e.g. 30s"],
            ),
            // Checks over several keys say where each key they name was set.
            (
                Some("[listen]\ntls_cert = \"/nonexistent.pem\"\n"),
                &[],
                &[],
                1,
                &[
                    "tls_cert and listen.tls_key go together",
                    "listen.tls_cert: set by ",
                    ".toml line 2",
                    "listen.tls_key: set by the default",
                ],
            ),
            (
                Some("[upstream]\n# the CSE\nurl = \"http://in-cse/\"\n"),
                &[],
                &[],
                1,
                &["upstream.url: set by ", ".toml line 3"],
            ),
            (
                None,
                &[("M2M_EDGE_NOTIFY_ALLOW", "not-an-address")],
                &["--notify-listen", "127.0.0.1:0"],
                1,
                &["notify.allow: set by environment variable M2M_EDGE_NOTIFY_ALLOW"],
            ),
            (
                None,
                &[],
                &["--log-level", "info,=nonsense=="],
                2,
                &["log.level: set by flag --log-level"],
            ),
        ];
        for &(file, env, flags, code, needles) in cases {
            let out = check(file, env, flags);
            let e = stderr(&out);
            assert_eq!(
                out.status.code(),
                Some(code),
                "{file:?} {env:?} {flags:?}: {e}"
            );
            for n in needles {
                assert!(
                    e.contains(n),
                    "{file:?} {env:?} {flags:?}: {n:?} not in {e}"
                );
            }
        }
    }
}

mod packaging {
    use std::path::Path;
    use std::process::Command;

    use yaml_rust2::{Yaml, YamlLoader};

    use super::deploy;
    use crate::support::{edge_bin, temp_dir};

    fn docs() -> Vec<Yaml> {
        let text = std::fs::read_to_string(deploy().join("kubernetes/edge.yaml")).unwrap();
        YamlLoader::load_from_str(&text).unwrap()
    }

    fn object<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("no {kind} in deploy/kubernetes/edge.yaml"))
    }

    fn check_config(path: &Path) -> String {
        let out = Command::new(edge_bin())
            .args(["run", "--check", "--config"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The Kubernetes objects name each other consistently (labels, ports, probes, the ConfigMap),
    /// the embedded edge.toml is the container's and passes `--check` (without DNS for the CSE's
    /// name), and the loadgen's Job targets the Service.
    #[test]
    fn the_kubernetes_manifests_reference_each_other_consistently() {
        let docs = docs();
        let ns = object(&docs, "Namespace")["metadata"]["name"]
            .as_str()
            .unwrap();
        for d in &docs {
            if d["kind"].as_str() != Some("Namespace") {
                assert_eq!(
                    d["metadata"]["namespace"].as_str(),
                    Some(ns),
                    "{:?}",
                    d["kind"]
                );
            }
        }
        let deployment = object(&docs, "Deployment");
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        let app = pod_labels["app.kubernetes.io/name"].as_str().unwrap();
        assert_eq!(
            deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"].as_str(),
            Some(app)
        );
        let service = object(&docs, "Service");
        assert_eq!(
            service["spec"]["selector"]["app.kubernetes.io/name"].as_str(),
            Some(app)
        );
        assert_eq!(object(&docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"].as_str(), Some(app));
        let monitor_text =
            std::fs::read_to_string(deploy().join("kubernetes/servicemonitor.yaml")).unwrap();
        let monitor_docs = YamlLoader::load_from_str(&monitor_text).unwrap();
        let monitor = object(&monitor_docs, "ServiceMonitor");
        assert_eq!(monitor["metadata"]["namespace"].as_str(), Some(ns));
        assert_eq!(
            monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"].as_str(),
            service["metadata"]["labels"]["app.kubernetes.io/name"].as_str()
        );

        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let ports: Vec<(String, i64)> = container["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["containerPort"].as_i64().unwrap(),
                )
            })
            .collect();
        let port = |name: &str| {
            ports
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| *p)
                .unwrap_or_else(|| panic!("port {name}"))
        };
        for p in service["spec"]["ports"].as_vec().unwrap() {
            port(p["targetPort"].as_str().unwrap());
        }
        let monitor_port = monitor["spec"]["endpoints"][0]["port"].as_str().unwrap();
        assert!(
            service["spec"]["ports"]
                .as_vec()
                .unwrap()
                .iter()
                .any(|p| p["name"].as_str() == Some(monitor_port))
        );
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz")
        );
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/healthz")
        );
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(container[probe]["httpGet"]["port"].as_str(), Some("admin"));
        }
        let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(
            annotations["prometheus.io/port"]
                .as_str()
                .map(|p| p.parse::<i64>().unwrap()),
            Some(port("admin"))
        );

        // The ConfigMap: mounted where the container's args read it, the same text as the image's.
        let config_map = object(&docs, "ConfigMap");
        let volume = &deployment["spec"]["template"]["spec"]["volumes"][0];
        assert_eq!(
            volume["configMap"]["name"].as_str(),
            config_map["metadata"]["name"].as_str()
        );
        let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
        let args: Vec<&str> = container["args"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(args, ["run", "--config", &format!("{mount}/edge.toml")]);
        let embedded = config_map["data"]["edge.toml"].as_str().unwrap();
        let container_toml = std::fs::read_to_string(deploy().join("edge.container.toml")).unwrap();
        assert_eq!(
            embedded.trim_end(),
            container_toml.trim_end(),
            "ConfigMap vs deploy/edge.container.toml"
        );
        let checked = check_config(&deploy().join("edge.container.toml"));
        for (key, name) in [("listen", "devices"), ("admin", "admin")] {
            assert!(
                checked.contains(&format!("{key} 0.0.0.0:{}", port(name))),
                "{checked}"
            );
        }
        assert!(
            checked.contains("does not resolve here") || checked.contains("upstream ws://in-cse"),
            "{checked}"
        );
        // The pod's CPU limit is the edge's worker count.
        let workers: i64 = container_toml
            .lines()
            .find_map(|l| l.strip_prefix("workers = ")?.trim().parse().ok())
            .unwrap();
        assert_eq!(
            container["resources"]["limits"]["cpu"]
                .as_str()
                .map(|c| c.parse::<i64>().unwrap()),
            Some(workers)
        );
        // Graceful stop: longer than the edge's drain.
        let drain_ms: i64 = container_toml
            .lines()
            .find_map(|l| {
                let text = l.strip_prefix("drain = ")?.trim().trim_matches('"');
                humantime::parse_duration(text).ok()
            })
            .map(|d| d.as_millis() as i64)
            .expect("drain in the container's edge.toml");
        assert!(
            deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
                .as_i64()
                .unwrap()
                * 1000
                > drain_ms
        );

        // The loadgen's Job targets this Service's devices port.
        let job = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("loadgen/deploy/loadgen-job.yaml"),
        )
        .unwrap();
        let svc = service["metadata"]["name"].as_str().unwrap();
        assert!(
            job.contains(&format!("ws://{svc}.{ns}.svc:{}/", port("devices"))),
            "the Job's target"
        );
    }

    /// The image: non-root, its health check is the edge's own `health` subcommand against the admin
    /// port of the configuration it copies, and the build context leaves out build output.
    #[test]
    fn the_dockerfile_runs_unprivileged_and_checks_its_health() {
        let file = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
        assert_unprivileged_and_pinned("deploy/Dockerfile", &file);
        assert!(
            file.contains("HEALTHCHECK")
                && file.contains("\"health\", \"--admin\", \"127.0.0.1:9090\"")
        );
        assert!(file.contains("COPY deploy/edge.container.toml /etc/m2m-edge/edge.toml"));
        let toml = std::fs::read_to_string(deploy().join("edge.container.toml")).unwrap();
        assert!(toml.contains("[admin]\naddress = \"0.0.0.0:9090\""));
        let ignore =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore"))
                .unwrap();
        for entry in ["target", ".peers", ".git"] {
            assert!(
                ignore.lines().any(|l| l.trim() == entry),
                "{entry} in .dockerignore"
            );
        }
    }

    /// The image's last `USER` is not root, and its bases carry a full version (no `:latest`, no
    /// floating `rust:1`).
    fn assert_unprivileged_and_pinned(name: &str, file: &str) {
        let user = file
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("USER "))
            .unwrap_or_else(|| panic!("{name}: a USER line"));
        assert!(
            !user.starts_with('0') && !user.starts_with("root"),
            "{name}: {user}"
        );
        for line in file
            .lines()
            .filter(|l| l.starts_with("FROM ") || l.starts_with("ARG "))
        {
            let Some(image) = line.split_whitespace().nth(1) else {
                continue;
            };
            let image = image.split_once('=').map_or(image, |(_, v)| v);
            if image.starts_with("${") || !image.contains(':') && line.starts_with("ARG ") {
                continue;
            }
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(
                tag.chars().filter(|c| *c == '.').count() >= 1 && tag != "latest",
                "{name}: base {image} is not pinned to a version"
            );
        }
    }

    #[test]
    fn the_loadgen_image_and_its_jobs_run_unprivileged_on_a_versioned_image() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("loadgen/deploy");
        let file = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
        assert_unprivileged_and_pinned("loadgen/deploy/Dockerfile", &file);
        for job in ["loadgen-job.yaml", "loadgen-merge-job.yaml"] {
            let text = std::fs::read_to_string(root.join(job)).unwrap();
            for d in YamlLoader::load_from_str(&text).unwrap() {
                if d["kind"].as_str() != Some("Job") {
                    continue;
                }
                let pod = &d["spec"]["template"]["spec"];
                assert_eq!(
                    pod["securityContext"]["runAsNonRoot"].as_bool(),
                    Some(true),
                    "{job}"
                );
                assert_eq!(
                    pod["securityContext"]["runAsUser"].as_i64(),
                    Some(10001),
                    "{job}"
                );
                for c in pod["containers"].as_vec().unwrap() {
                    let image = c["image"].as_str().unwrap();
                    assert!(
                        image.starts_with("m2m-loadgen:") && !image.ends_with(":latest"),
                        "{job}: {image}"
                    );
                }
            }
        }
    }

    /// `m2m-edge health` is what the image's health check runs: 0 when the admin listener answers
    /// 200, 1 otherwise.
    #[test]
    fn the_health_subcommand_exits_by_what_the_admin_listener_says() {
        use crate::support::{Proc, free_port, wait_listening};
        let (listen, admin) = (free_port(), free_port());
        let mut child = Command::new(edge_bin())
            .args([
                "run",
                "--listen",
                &format!("127.0.0.1:{listen}"),
                "--admin",
                &format!("127.0.0.1:{admin}"),
            ])
            .args(["--upstream", "ws://127.0.0.1:9/", "--workers", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(format!("127.0.0.1:{listen}").parse().unwrap(), &mut child);
        let _edge = Proc {
            child,
            addr: format!("127.0.0.1:{listen}").parse().unwrap(),
        };
        let health = |port: u16| {
            Command::new(edge_bin())
                .args([
                    "health",
                    "--admin",
                    &format!("127.0.0.1:{port}"),
                    "--timeout",
                    "1s",
                ])
                .output()
                .unwrap()
        };
        assert!(health(admin).status.success());
        let down = health(free_port());
        assert_eq!(down.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&down.stderr).contains("connecting to 127.0.0.1:"));
    }

    /// The unit passes `systemd-analyze verify` (with the binary path pointed at the built edge).
    #[test]
    fn the_systemd_unit_verifies() {
        crate::support::peers::require(&[crate::support::peers::Peer::SystemdAnalyze]);
        let unit = std::fs::read_to_string(deploy().join("systemd/m2m-edge.service")).unwrap();
        for key in [
            "LimitNOFILE=",
            "ExecReload=",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
        ] {
            assert!(unit.contains(key), "{key}");
        }
        let dir = temp_dir("systemd-unit");
        let path = dir.join("m2m-edge.service");
        std::fs::write(&path, unit.replace("/usr/local/bin/m2m-edge", edge_bin())).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.trim().is_empty(), "{err}");
    }
}

mod seccomp {
    use std::net::SocketAddr;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use super::deploy;
    use crate::support::{Proc, edge_bin, free_port, wait_listening};

    fn seccomp_python() -> &'static str {
        use crate::support::peers;
        peers::require(&[peers::Peer::Seccomp]);
        peers::SECCOMP_PYTHON
    }

    /// The edge under deploy/seccomp/m2m-edge.json, with `--io`; returns it and what it logged.
    fn edge_under_profile(
        io: &str,
        without: &[&str],
    ) -> (Proc, SocketAddr, SocketAddr, std::path::PathBuf) {
        let (listen, admin) = (free_port(), free_port());
        let dir = crate::support::temp_dir(&format!("seccomp-{io}"));
        let log = dir.join("edge.log");
        let mut cmd = Command::new(seccomp_python());
        cmd.arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/seccomp_exec.py"),
        )
        .arg(deploy().join("seccomp/m2m-edge.json"));
        for w in without {
            cmd.args(["--without", w]);
        }
        let mut child = cmd
            .args(["--", edge_bin(), "run", "--io", io, "--workers", "2"])
            .args([
                "--listen",
                &format!("127.0.0.1:{listen}"),
                "--admin",
                &format!("127.0.0.1:{admin}"),
            ])
            .args(["--upstream", "ws://127.0.0.1:9/"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
        wait_listening(addr, &mut child);
        (
            Proc { child, addr },
            addr,
            format!("127.0.0.1:{admin}").parse().unwrap(),
            log,
        )
    }

    /// A WebSocket session and a scrape work: the profile lets the edge do its job.
    fn serves(addr: SocketAddr, admin: SocketAddr) {
        let mut c =
            crate::support::ws_client::WsClient::connect(addr, &["oneM2M.json"], None).unwrap();
        // No CSE behind it: a request is answered by the edge itself (5103), which needs the
        // whole path: frames in, a link attempt, the answer out.
        let r = c.request(&crate::edge::req(r#"{"op":1,"to":"cse-in","fr":"Cseccomp","rqi":"s1","rvi":"3","ty":2,"pc":{"m2m:ae":{"rn":"Cseccomp","api":"Ns","rr":true,"srv":["3"]}}}"#), &mut Vec::new());
        assert_eq!(r.rsc.0, 5103, "{r:?}");
        assert_eq!(crate::edge::http_get(admin, "/metrics").0, 200);
    }

    /// Under the profile the edge runs on io_uring and serves; without io_uring (what Docker's
    /// default profile does) `--io auto` falls back to epoll and serves too; SIGHUP and SIGTERM work.
    #[test]
    fn the_seccomp_profile_allows_io_uring_and_the_fallback_works_without_it() {
        for (io, without, driver) in [
            ("uring", &[][..], "uring"),
            (
                "auto",
                &["io_uring_setup", "io_uring_enter", "io_uring_register"][..],
                "epoll",
            ),
        ] {
            let (edge, addr, admin, log) = edge_under_profile(io, without);
            serves(addr, admin);
            super::sighup(&edge);
            std::thread::sleep(Duration::from_millis(200));
            serves(addr, admin);
            assert!(
                edge.terminate().success(),
                "{io}: clean exit under the profile"
            );
            let text = std::fs::read_to_string(&log).unwrap();
            assert!(
                text.contains(&format!("driver=\"{driver}\"")),
                "{io}: {text}"
            );
        }
    }
}

mod readiness {
    use std::net::{SocketAddr, TcpListener};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use crate::edge::{http_get, req};
    use crate::support::ws_client::WsClient;
    use crate::support::{Proc, free_port, temp_dir};

    /// How often the edge probes the CSE while no link is open.
    const PROBE_EVERY: Duration = Duration::from_secs(2);

    /// A WebSocket server at `addr` (the edge's own echo mode, standing in for a CSE that answers
    /// the upgrade); stopped when dropped.
    fn start_websocket_server(addr: SocketAddr) -> Proc {
        let listen = addr.to_string();
        crate::support::spawn_listening(
            addr,
            ["echo", "--workers", "1", "--listen", &listen],
            Stdio::null(),
        )
    }

    fn wait_for(admin: SocketAddr, status: u16) -> bool {
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until {
            if http_get(admin, "/readyz").0 == status {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// `/readyz` is 503 while the CSE cannot be reached and 200 once it can; meanwhile devices whose
    /// links keep failing do not flood the log (one line per interval and core, with a count).
    #[test]
    fn readiness_follows_the_cse_and_link_failures_are_logged_once_per_interval() {
        for io in crate::support::drivers() {
            let cse_port = free_port();
            let cse: SocketAddr = format!("127.0.0.1:{cse_port}").parse().unwrap();
            let (listen, admin) = (free_port(), free_port());
            let dir = temp_dir("readiness");
            let log = dir.join("edge.log");
            let addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
            let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
            let (listen_text, admin_text) = (addr.to_string(), admin.to_string());
            let upstream = format!("ws://{cse}/");
            let edge = crate::support::spawn_listening(
                addr,
                [
                    "run",
                    "--io",
                    io,
                    "--workers",
                    "2",
                    "--relink-backoff",
                    "100ms",
                ]
                .into_iter()
                .chain(["--listen", &listen_text, "--admin", &admin_text])
                .chain(["--upstream", &upstream]),
                std::fs::File::create(&log).unwrap().into(),
            );
            assert!(
                wait_for(admin, 503),
                "{io}: not ready while nothing listens at the CSE's address"
            );
            assert_eq!(http_get(admin, "/healthz").0, 200, "alive all the same");

            // 30 devices whose requests all fail for 3 s, links retried every 100 ms.
            let mut devices: Vec<WsClient> = (0..30)
                .map(|_| WsClient::connect(addr, &["oneM2M.json"], None).unwrap())
                .collect();
            let until = Instant::now() + Duration::from_secs(3);
            let mut answered = 0;
            while Instant::now() < until {
                for (i, d) in devices.iter_mut().enumerate() {
                    let r = d.request(
                        &req(&format!(
                            r#"{{"op":1,"to":"cse-in","fr":"Cready{i}","rqi":"r{answered}","rvi":"3","ty":2,"pc":{{"m2m:ae":{{"rn":"Cready{i}","api":"Nr","rr":true,"srv":["3"]}}}}}}"#
                        )),
                        &mut Vec::new(),
                    );
                    assert_eq!(r.rsc.0, 5103);
                    answered += 1;
                }
            }
            assert!(answered >= 20, "{answered}");
            let text = std::fs::read_to_string(&log).unwrap();
            let lines = text
                .lines()
                .filter(|l| l.contains("upstream link failed"))
                .count();
            // The first failure per core at once, then one line per 10 s interval and core.
            assert!(
                (1..=4).contains(&lines),
                "{lines} link-failure lines for {answered} failed requests:\n{text}"
            );
            // Nothing else grows with the failures either: every line of the log, start-up included.
            let all = text.lines().count();
            assert!(
                all <= 16,
                "{all} log lines for {answered} failed requests:\n{text}"
            );

            // Something accepts TCP at the CSE's address but never answers the upgrade: still
            // not ready (over two probes).
            let silent = TcpListener::bind(cse).unwrap();
            let until = Instant::now() + PROBE_EVERY * 2 + Duration::from_millis(500);
            while Instant::now() < until {
                assert_eq!(
                    http_get(admin, "/readyz").0,
                    503,
                    "{io}: TCP alone is not ready"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            drop(silent);

            // A WebSocket server starts there: ready.
            let server = start_websocket_server(cse);
            assert!(
                wait_for(admin, 200),
                "{io}: ready once the CSE's address upgrades"
            );
            drop(server);
            assert!(wait_for(admin, 503), "{io}: not ready again once it stops");

            // A drain: the admin listener stays open and says so. The devices do not answer the
            // edge's close frames, so the drain lasts (up to the linger time, 2 s).
            let server = start_websocket_server(cse);
            assert!(wait_for(admin, 200), "{io}: ready again");
            let term = Command::new("kill")
                .args(["-TERM", &edge.child.id().to_string()])
                .status()
                .unwrap();
            assert!(term.success());
            let until = Instant::now() + Duration::from_secs(3);
            let mut seen = None;
            while Instant::now() < until {
                match std::net::TcpStream::connect(admin) {
                    Ok(_) => {
                        let (status, body) = http_get(admin, "/readyz");
                        if status == 503 && body.contains("draining") {
                            seen = Some(http_get(admin, "/healthz").0);
                            break;
                        }
                    }
                    Err(e) => panic!("the admin listener refused a probe during the drain: {e}"),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(
                seen,
                Some(200),
                "/readyz 503 draining, /healthz 200 during the drain"
            );
            drop(devices);
            drop(server);
            assert!(edge.terminate().success());
        }
    }
}
