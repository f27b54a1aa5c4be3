//! The edge in front of the real ACME CSE, on both I/O drivers: registration with a fresh `fr`
//! (the edge relinks with X-M2M-Origin), container, contentInstance, `la`, deregistration; a CBOR
//! device behind ACME's JSON; the draft's wrapped JSON; a device that reconnects without registering
//! again; and the edge's own answers to malformed or premature primitives.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use m2m_primitive::{Format, Primitive, Rsc, Validator, Value};

use crate::support::acme::start_acme;
use crate::support::ws_client::WsClient;
use crate::support::{Proc, drivers, edge_bin, free_port, wait_listening};

pub(crate) fn start_edge(io: &str, upstream: SocketAddr, extra: &[&str]) -> Proc {
    start_edge_to(io, &format!("ws://{upstream}/"), extra)
}

/// [`start_edge`] with the upstream as a URL.
pub(crate) fn start_edge_to(io: &str, upstream: &str, extra: &[&str]) -> Proc {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = Command::new(edge_bin())
        .args([
            "run",
            "--listen",
            &addr.to_string(),
            "--upstream",
            upstream,
            "--io",
            io,
        ])
        .args(if extra.contains(&"--workers") {
            &[][..]
        } else {
            &["--workers", "2"][..]
        })
        .args(extra)
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("M2M_TEST_EDGE_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("start m2m-edge run");
    wait_listening(addr, &mut child);
    Proc { child, addr }
}

/// The edge's upstream modes as extra arguments: passthrough, and multiplex with a notify listener on
/// a fresh port (call once per edge).
pub(crate) fn modes() -> Vec<(&'static str, Vec<String>)> {
    let notify = format!("127.0.0.1:{}", free_port());
    vec![
        ("passthrough", Vec::new()),
        (
            "multiplex",
            ["--upstream-mode", "multiplex", "--notify-listen", &notify]
                .map(String::from)
                .to_vec(),
        ),
    ]
}

/// `base` followed by a mode's arguments.
fn with_mode<'a>(base: &[&'a str], mode: &'a [String]) -> Vec<&'a str> {
    base.iter()
        .copied()
        .chain(mode.iter().map(String::as_str))
        .collect()
}

pub(crate) fn req(json: &str) -> Primitive {
    m2m_primitive::decode(Format::Json, json.as_bytes()).unwrap()
}

pub(crate) fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}{}x{n}", std::process::id())
}

pub(crate) fn expect(rsp: &m2m_primitive::Response, rsc: u16, what: &str) {
    Validator::default().response(rsp).unwrap();
    assert_eq!(rsp.rsc, Rsc(rsc), "{what}: {rsp:?}");
}

fn con_of(rsp: &m2m_primitive::Response) -> Option<String> {
    let cin = rsp.pc.as_ref()?.as_object()?.get("m2m:cin")?.as_object()?;
    cin.get("con").and_then(Value::as_str).map(str::to_string)
}

/// A device's whole life through the edge; returns nothing, asserts everything.
fn device_life(edge: SocketAddr, protocol: &str) {
    let ae = unique("Cedge");
    let mut others = Vec::new();
    let mut c = WsClient::connect(edge, &[protocol], None).unwrap();
    assert_eq!(
        c.protocol, protocol,
        "the edge answers with the device's own spelling"
    );
    let early = req(r#"{"op":2,"to":"cse-in","rqi":"e0","rvi":"3"}"#);
    expect(
        &c.request(&early, &mut others),
        4103,
        "request without fr before registration",
    );
    let reg = req(&format!(
        r#"{{"op":1,"to":"cse-in","fr":"{ae}","rqi":"e1","rvi":"3","ty":2,"pc":{{"m2m:ae":{{"rn":"{ae}","api":"Nedge","rr":true,"srv":["3"],"poa":["ws://default"]}}}}}}"#
    ));
    let rsp = c.request(&reg, &mut others);
    expect(&rsp, 2001, "registration through the edge");
    let cnt = req(&format!(
        r#"{{"op":1,"to":"cse-in/{ae}","fr":"{ae}","rqi":"e2","rvi":"3","ty":3,"pc":{{"m2m:cnt":{{"rn":"readings"}}}}}}"#
    ));
    expect(
        &c.request(&cnt, &mut others),
        2001,
        "container create on the same connection (edge relinked with X-M2M-Origin)",
    );
    // A subscription whose nu is the device itself: ACME sends the NOTIFY down the upstream link
    // bound to the AE, and the edge delivers it on the device's connection.
    let sub = req(&format!(
        r#"{{"op":1,"to":"cse-in/{ae}/readings","fr":"{ae}","rqi":"e2s","rvi":"3","ty":23,"pc":{{"m2m:sub":{{"rn":"newData","nu":["{ae}"],"enc":{{"net":[3]}},"nct":1}}}}}}"#
    ));
    expect(&c.request(&sub, &mut others), 2001, "subscription create");
    let cin = req(&format!(
        r#"{{"op":1,"to":"cse-in/{ae}/readings","fr":"{ae}","rqi":"e3","rvi":"3","ty":4,"pc":{{"m2m:cin":{{"con":"21.5"}}}}}}"#
    ));
    expect(
        &c.request(&cin, &mut others),
        2001,
        "contentInstance create",
    );
    let notify = match others.pop() {
        Some(p) => p,
        None => c.recv(),
    };
    let Primitive::Request(n) = notify else {
        panic!("NOTIFY expected, got {notify:?}")
    };
    assert_eq!(n.op, m2m_primitive::Operation::Notify);
    assert!(
        format!("{:?}", n.pc).contains("21.5"),
        "NOTIFY carries the new contentInstance: {n:?}"
    );
    // The device answers; the edge relays the answer up.
    let mut ok = m2m_primitive::Response::to_request(&n, Rsc::OK);
    ok.rvi = Some("3".into());
    c.send(&Primitive::Response(ok));
    drop(c);
    // Reconnect without registering again (TS-0020 clause 5.2 step 15), naming itself in the
    // handshake (X-M2M-Origin, honoured by the edge).
    let mut c = WsClient::connect(edge, &[protocol], Some(&ae)).unwrap();
    let la = req(&format!(
        r#"{{"op":2,"to":"cse-in/{ae}/readings/la","fr":"{ae}","rqi":"e4","rvi":"3"}}"#
    ));
    let rsp = c.request(&la, &mut others);
    expect(&rsp, 2000, "retrieve la after reconnecting");
    assert_eq!(con_of(&rsp).as_deref(), Some("21.5"));
    drop(c);
    // And again without the header: the edge binds the link to the device's fr and the CSE's answer
    // decides.
    let mut c = WsClient::connect(edge, &[protocol], None).unwrap();
    let del = req(&format!(
        r#"{{"op":4,"to":"cse-in/{ae}","fr":"{ae}","rqi":"e5","rvi":"3"}}"#
    ));
    expect(&c.request(&del, &mut others), 2002, "deregistration");
    assert!(others.is_empty(), "{others:?}");
}

/// GET `path` from an HTTP server; returns (status, body).
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of one exposition line `name{labels} value`.
pub(crate) fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{series} not in:\n{text}"))
}

#[test]
fn devices_through_the_edge_to_acme() {
    let acme = start_acme("edge-acme", false);
    for (io, (mode, margs)) in drivers()
        .into_iter()
        .flat_map(|io| modes().into_iter().map(move |m| (io, m)))
    {
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin_text = admin.to_string();
        let edge = start_edge(io, acme.ws, &with_mode(&["--admin", &admin_text], &margs));
        let io = format!("{io} {mode}");
        let io = io.as_str();
        // Ready before any device: in passthrough no link is open yet, so this is the probe's own
        // WebSocket to ACME (upgrade answered, closed again); in multiplex the shared link.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(8);
        while http_get(admin, "/readyz").0 != 200 {
            assert!(
                std::time::Instant::now() < until,
                "{io}: /readyz never 200 with ACME up"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        device_life(edge.addr, "oneM2M.R2.0.json");
        device_life(edge.addr, "oneM2M.json");
        // Malformed primitives are answered by the edge and never reach the CSE.
        let mut c = WsClient::connect(edge.addr, &["oneM2M.json"], None).unwrap();
        c.send_raw(br#"{"op":1,"rqi":"bad1","to":"x","pc":"#, true);
        let Primitive::Response(r) = c.recv() else {
            panic!("response expected")
        };
        assert_eq!(
            (r.rsc, r.rqi.as_deref()),
            (Rsc::BAD_REQUEST, Some("bad1")),
            "{io}"
        );
        c.send_raw(&[0xa1, 0x63, b'r', b'q', b'i', 0x62, b'c', b'1'], false);
        let Primitive::Response(r) = c.recv() else {
            panic!("response expected")
        };
        assert_eq!(
            r.rsc,
            Rsc::UNSUPPORTED_MEDIA_TYPE,
            "{io}: CBOR on a JSON session"
        );
        // JSON in a binary frame goes up as text, so it must be UTF-8 (the edge relays it unparsed).
        c.send_raw(
            b"{\"op\":2,\"to\":\"cse-in\",\"fr\":\"Cx\",\"rqi\":\"u8\",\"rvi\":\"3\",\"pc\":\"\xff\"}",
            false,
        );
        let Primitive::Response(r) = c.recv() else {
            panic!("response expected")
        };
        assert_eq!(
            (r.rsc, r.rqi.as_deref()),
            (Rsc::BAD_REQUEST, Some("u8")),
            "{io}: a JSON primitive that is not UTF-8, in a binary frame"
        );
        // The draft's wrapped JSON with string enums is normalised before it goes up.
        let ae = unique("Cdraft");
        let wrapped = format!(
            r#"{{"m2m:rqp":{{"op":"1","to":"cse-in","fr":"{ae}","rqi":"w1","rvi":"3","ty":"2","pc":{{"m2m:ae":{{"api":"Ndraft","rr":true,"srv":["3"]}}}}}}}}"#
        );
        let mut d = WsClient::connect(edge.addr, &["oneM2M-pro-v1.0"], None).unwrap();
        d.send_raw(wrapped.as_bytes(), true);
        let Primitive::Response(r) = d.recv() else {
            panic!("response expected")
        };
        assert_eq!(
            r.rsc,
            Rsc::CREATED,
            "{io}: wrapped draft registration: {r:?}"
        );
        let del = req(&format!(
            r#"{{"op":4,"to":"{ae}","fr":"{ae}","rqi":"w2","rvi":"3"}}"#
        ));
        assert_eq!(d.request(&del, &mut Vec::new()).rsc, Rsc::DELETED, "{io}");
        // The admin listener: health, readiness and the counters of what just happened.
        assert_eq!(http_get(admin, "/healthz").0, 200);
        assert_eq!(http_get(admin, "/readyz").0, 200);
        let (status, text) = http_get(admin, "/metrics");
        assert_eq!(status, 200);
        assert!(
            metric(
                &text,
                r#"m2m_edge_requests_total{direction="device_to_cse",op="create"}"#
            ) >= 8.0,
            "{text}"
        );
        assert!(
            metric(
                &text,
                r#"m2m_edge_requests_total{direction="cse_to_device",op="notify"}"#
            ) >= 2.0,
            "{text}"
        );
        assert!(
            metric(&text, r#"m2m_edge_answers_total{rsc="4103"}"#) >= 2.0,
            "{text}"
        );
        assert!(
            metric(&text, r#"m2m_edge_answers_total{rsc="4015"}"#) >= 1.0,
            "{text}"
        );
        assert!(
            metric(&text, "m2m_edge_upstream_rtt_seconds_count") >= 10.0,
            "{text}"
        );
        assert!(
            metric(
                &text,
                r#"m2m_edge_handshakes_total{serialization="json",result="accepted"}"#
            ) >= 5.0,
            "{text}"
        );
        // CPU is counted in clock ticks: a quiet edge may show 0.
        assert!(metric(&text, "process_cpu_seconds_total") >= 0.0);
        for series in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(metric(&text, series) > 0.0, "{io}: {series}");
        }
        assert!(
            text.contains(&format!(
                "m2m_edge_build_info{{version=\"{}\"",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        // The content type says what the body is: OpenMetrics for Prometheus (and by default),
        // text 0.0.4 for a client that asks for it only.
        let head = |accept: &str| {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(admin).unwrap();
            write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n"
            )
            .unwrap();
            let mut t = String::new();
            s.read_to_string(&mut t).unwrap();
            t
        };
        let om = head("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5");
        assert!(om.contains("Content-Type: application/openmetrics-text; version=1.0.0"));
        assert!(om.trim_end().ends_with("# EOF"));
        let old = head("text/plain");
        assert!(
            old.contains("Content-Type: text/plain; version=0.0.4"),
            "{old}"
        );
        assert!(!old.contains("# EOF") && old.contains("# TYPE m2m_edge_requests_total counter"));
        assert_eq!(http_get(admin, "/nothing").0, 404);
        assert!(edge.terminate().success(), "{io}: clean exit on SIGTERM");
    }
}

#[test]
fn cbor_device_behind_acme_json() {
    let acme = start_acme("edge-acme-cbor", false);
    for io in drivers() {
        for (_, margs) in modes() {
            // Only JSON upstream: the edge transcodes both ways.
            let base = ["--upstream-protocols", "oneM2M.json"];
            let edge = start_edge(io, acme.ws, &with_mode(&base, &margs));
            device_life(edge.addr, "oneM2M.R2.0.cbor");
        }
        for (_, margs) in modes() {
            // An XML device: ACME has no XML, so the edge transcodes XML <-> JSON both ways.
            let edge = start_edge(io, acme.ws, &with_mode(&[], &margs));
            device_life(edge.addr, "oneM2M.xml");
        }
    }
}

/// The upstream's addresses in failover order (`--upstream-addresses`, as a name with several
/// addresses gives them): the first refuses connections, the second is ACME. The device's
/// registration gets through without a restart, in both modes.
#[test]
fn links_fail_over_to_the_next_upstream_address() {
    let acme = start_acme("edge-acme-failover", false);
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let addresses = format!("{dead},{}", acme.ws);
    for (io, (mode, margs)) in drivers()
        .into_iter()
        .flat_map(|io| modes().into_iter().map(move |m| (io, m)))
    {
        let base = [
            "--upstream-addresses",
            &addresses,
            "--relink-backoff",
            "100ms",
        ];
        // A name that resolves nowhere (RFC 6761): only the given addresses can reach ACME.
        let url = format!("ws://in-cse.invalid:{}/", acme.ws.port());
        let edge = start_edge_to(io, &url, &with_mode(&base, &margs));
        let ae = unique("Cfailover");
        let mut c = WsClient::connect(edge.addr, &["oneM2M.json"], None).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut answers = Vec::new();
        for n in 0.. {
            let reg = req(&format!(
                r#"{{"op":1,"to":"cse-in","fr":"{ae}","rqi":"f{n}","rvi":"3","ty":2,"pc":{{"m2m:ae":{{"rn":"{ae}","api":"Nedge","rr":true,"srv":["3"]}}}}}}"#
            ));
            let rsp = c.request(&reg, &mut Vec::new());
            answers.push(rsp.rsc.0);
            if rsp.rsc == Rsc::CREATED {
                break;
            }
            assert!(
                rsp.rsc.0 == 5103 && std::time::Instant::now() < deadline,
                "{io} {mode}: never through the second address: {answers:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let del = req(&format!(
            r#"{{"op":4,"to":"cse-in/{ae}","fr":"{ae}","rqi":"fd","rvi":"3"}}"#
        ));
        expect(&c.request(&del, &mut Vec::new()), 2002, "deregistration");
    }
}

#[test]
fn acme_restart_mid_session() {
    let mut acme = start_acme("edge-acme-restart", true);
    for (io, (mode, margs)) in drivers()
        .into_iter()
        .flat_map(|io| modes().into_iter().map(move |m| (io, m)))
    {
        let base = ["--request-timeout", "3000ms", "--relink-backoff", "300ms"];
        let edge = start_edge(io, acme.ws, &with_mode(&base, &margs));
        let io = format!("{io} {mode}");
        let io = io.as_str();
        let ae = unique("Crestart");
        let mut others = Vec::new();
        let mut c = WsClient::connect(edge.addr, &["oneM2M.json"], None).unwrap();
        let reg = req(&format!(
            r#"{{"op":1,"to":"cse-in","fr":"{ae}","rqi":"k1","rvi":"3","ty":2,"pc":{{"m2m:ae":{{"rn":"{ae}","api":"Nedge","rr":true,"srv":["3"]}}}}}}"#
        ));
        expect(&c.request(&reg, &mut others), 2001, "registration");
        let get = |rqi: &str| {
            req(&format!(
                r#"{{"op":2,"to":"cse-in/{ae}","fr":"{ae}","rqi":"{rqi}","rvi":"3"}}"#
            ))
        };
        expect(
            &c.request(&get("k2"), &mut others),
            2000,
            "retrieve before the restart",
        );
        // ACME writes its file database with a delay of about a second: let it land before the stop
        // (seen once in CI: the restarted ACME had the AE but not its privileges).
        std::thread::sleep(std::time::Duration::from_millis(2500));
        // ACME goes away: the device session stays up and requests are answered by the edge.
        acme.stop();
        let rsp = c.request(&get("k3"), &mut others);
        assert!(matches!(rsp.rsc.0, 5103 | 4008), "{io}: CSE down: {rsp:?}");
        // ACME comes back on its file database: the edge relinks and the same session continues.
        acme.restart();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut n = 0;
        loop {
            n += 1;
            let rsp = c.request(&get(&format!("k4-{n}")), &mut others);
            if rsp.rsc == Rsc::OK {
                break;
            }
            assert!(
                matches!(rsp.rsc.0, 5103 | 4008),
                "{io}: while relinking: {rsp:?}"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "{io}: no relink within 20 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        let del = req(&format!(
            r#"{{"op":4,"to":"cse-in/{ae}","fr":"{ae}","rqi":"k5","rvi":"3"}}"#
        ));
        expect(
            &c.request(&del, &mut others),
            2002,
            "deregistration after the restart",
        );
    }
}

#[test]
fn connect_path_terminates_the_cse_target_and_refuses_others() {
    let acme = start_acme("edge-acme-connect", false);
    for io in drivers() {
        // ACME's HTTP port stands in for "another allowed target" tunnelled as bytes.
        let other = acme.http.to_string();
        let edge = start_edge(io, acme.ws, &["--connect-allow", &other]);
        // CONNECT to the edge's own CSE target: the WebSocket inside is the edge's.
        let mut c =
            WsClient::connect_through(edge.addr, &acme.ws.to_string(), &["oneM2M.json"]).unwrap();
        let ae = unique("Cproxy");
        let reg = req(&format!(
            r#"{{"op":1,"to":"cse-in","fr":"{ae}","rqi":"p1","rvi":"3","ty":2,"pc":{{"m2m:ae":{{"rn":"{ae}","api":"Nproxy","rr":true,"srv":["3"]}}}}}}"#
        ));
        expect(
            &c.request(&reg, &mut Vec::new()),
            2001,
            "registration through CONNECT",
        );
        let del = req(&format!(
            r#"{{"op":4,"to":"cse-in/{ae}","fr":"{ae}","rqi":"p2","rvi":"3"}}"#
        ));
        expect(
            &c.request(&del, &mut Vec::new()),
            2002,
            "deregistration through CONNECT",
        );
        // Not on the list: 403, and the edge is never an open proxy.
        match WsClient::connect_through(edge.addr, "127.0.0.1:22", &["oneM2M.json"]) {
            Err(m2m_ws::HandshakeError::Status(403)) => {}
            Err(e) => panic!("{io}: {e}"),
            Ok(_) => panic!("{io}: CONNECT to a target off the list was accepted"),
        }
        // An allowed other target: bytes through the tunnel (an HTTP retrieve of ACME's CSEBase).
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(edge.addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        s.write_all(&m2m_ws::handshake::connect::connect_request(
            "127.0.0.1",
            acme.http.port(),
            &[],
        ))
        .unwrap();
        s.write_all(format!("GET /~/id-in/cse-in HTTP/1.1\r\nHost: {other}\r\nX-M2M-Origin: CAdmin\r\nX-M2M-RI: t1\r\nX-M2M-RVI: 3\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200 Connection Established\r\n\r\n"),
            "{io}: {answer}"
        );
        assert!(
            answer.to_ascii_lowercase().contains("x-m2m-rsc: 2000"),
            "{io}: tunnelled answer: {answer}"
        );
    }
}

#[test]
fn wss_with_client_certificates_and_identity_binding() {
    use crate::support::peers::{Peer, require};
    use crate::support::{TestCa, run_python, temp_dir};
    require(&[Peer::PythonWebsockets, Peer::Acme]);
    let acme = start_acme("edge-acme-tls", false);
    let dir = temp_dir("edge-tls");
    let ca = TestCa::new(&dir, "devices");
    let (server_cert, server_key) = ca.issue("edge", &["localhost", "127.0.0.1"]);
    let device = unique("Ctls");
    let (dev_cert, dev_key) = ca.issue(&device, &[]);
    // Device B: a valid certificate of the same CA, for another AE.
    let other = unique("Ctlsb");
    let (b_cert, b_key) = ca.issue(&other, &[]);
    let rogue_ca = TestCa::new(&dir, "rogue");
    let (rogue_cert, rogue_key) = rogue_ca.issue("Crogue", &[]);
    let p = |p: &std::path::PathBuf| p.to_str().unwrap().to_string();
    for io in drivers() {
        let edge = start_edge(
            io,
            acme.ws,
            &[
                "--tls-cert",
                &p(&server_cert),
                "--tls-key",
                &p(&server_key),
                "--client-ca",
                &p(&ca.ca_pem),
                "--bind-identity",
            ],
        );
        let url = format!("wss://{}/", edge.addr);
        // A device from the CA, registering as itself.
        run_python(
            "edge_tls_device.py",
            &[
                &url,
                &p(&ca.ca_pem),
                &p(&dev_cert),
                &p(&dev_key),
                &device,
                "2001",
            ],
        );
        // Device B, with its own valid certificate, cannot act as A: not with A's fr ...
        run_python(
            "edge_tls_device.py",
            &[
                &url,
                &p(&ca.ca_pem),
                &p(&b_cert),
                &p(&b_key),
                &device,
                "4103",
            ],
        );
        // ... nor via the handshake's X-M2M-Origin (the session would receive A's NOTIFYs and
        // its held requests).
        run_python(
            "edge_tls_device.py",
            &[
                &url,
                &p(&ca.ca_pem),
                &p(&b_cert),
                &p(&b_key),
                &other,
                "403",
                &device,
            ],
        );
        // A certificate from an unknown CA.
        run_python(
            "edge_tls_device.py",
            &[
                &url,
                &p(&ca.ca_pem),
                &p(&rogue_cert),
                &p(&rogue_key),
                "Crogue",
                "refused",
            ],
        );
    }
}

#[test]
fn violations_get_their_codes_and_spare_other_sessions() {
    use std::io::{Read, Write};
    let acme = start_acme("edge-acme-violations", false);
    for io in drivers() {
        let edge = start_edge(
            io,
            acme.ws,
            &[
                "--max-message-bytes",
                "65536",
                "--handshake-timeout",
                "2000ms",
            ],
        );
        // A well-behaved device that must not notice the others.
        let ae = unique("Cgood");
        let mut good = WsClient::connect(edge.addr, &["oneM2M.json"], None).unwrap();
        let reg = req(&format!(
            r#"{{"op":1,"to":"cse-in","fr":"{ae}","rqi":"g1","rvi":"3","ty":2,"pc":{{"m2m:ae":{{"rn":"{ae}","api":"Ngood","rr":true,"srv":["3"]}}}}}}"#
        ));
        expect(&good.request(&reg, &mut Vec::new()), 2001, "registration");
        // An oversized message: close 1009.
        let mut big = WsClient::connect(edge.addr, &["oneM2M.json"], None).unwrap();
        let huge = format!(
            r#"{{"op":2,"to":"cse-in","rqi":"h","rvi":"3","pad":"{}"}}"#,
            "x".repeat(100_000)
        );
        big.send_raw(huge.as_bytes(), true);
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| big.recv()))
            .err()
            .map(|e| e.downcast_ref::<String>().cloned().unwrap_or_default());
        assert!(
            code.as_deref().unwrap_or("").contains("1009"),
            "{io}: {code:?}"
        );
        // A handshake that never completes: closed by the handshake timeout, nothing answered.
        let mut slow = std::net::TcpStream::connect(edge.addr).unwrap();
        slow.set_read_timeout(Some(std::time::Duration::from_secs(6)))
            .unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: edge\r\n").unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(
            slow.read(&mut buf).unwrap_or(0),
            0,
            "{io}: slow handshake closed"
        );
        // A handshake byte by byte still works.
        let mut trickle = std::net::TcpStream::connect(edge.addr).unwrap();
        trickle
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let hs = b"GET / HTTP/1.1\r\nHost: edge\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: oneM2M.json\r\n\r\n";
        for b in hs {
            trickle.write_all(&[*b]).unwrap();
        }
        let n = trickle.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 101"), "{io}");
        // The good device carries on.
        let get = req(&format!(
            r#"{{"op":2,"to":"cse-in/{ae}","fr":"{ae}","rqi":"g2","rvi":"3"}}"#
        ));
        expect(
            &good.request(&get, &mut Vec::new()),
            2000,
            "the other session is unaffected",
        );
        let del = req(&format!(
            r#"{{"op":4,"to":"cse-in/{ae}","fr":"{ae}","rqi":"g3","rvi":"3"}}"#
        ));
        expect(&good.request(&del, &mut Vec::new()), 2002, "deregistration");
    }
}

/// A second edge on a port in use fails at start with a clear message and a non-zero exit, instead
/// of silently splitting the traffic; two edges that both opt in with --reuse-port share the port.
#[test]
fn a_port_in_use_fails_at_start_unless_every_edge_opts_in_to_reuse_port() {
    let start = |listen: SocketAddr, extra: &[&str]| {
        Command::new(edge_bin())
            .args(["run", "--listen", &listen.to_string(), "--workers", "2"])
            .args(["--upstream", "ws://127.0.0.1:9/"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut first = start(listen, &[]);
    wait_listening(listen, &mut first);
    let first = Proc {
        child: first,
        addr: listen,
    };
    let out = start(listen, &[]).wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{listen} is in use")), "{err}");
    assert!(err.contains("--reuse-port"), "{err}");
    // An edge that opts in cannot join an edge that did not.
    let out = start(listen, &["--reuse-port"]).wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by an edge started without --reuse-port"),
        "{err}"
    );
    // Nor does anything else that joins the port's SO_REUSEPORT group get a connection: every
    // device still reaches the edge.
    let intruder =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    intruder.set_reuse_address(true).unwrap();
    intruder.set_reuse_port(true).unwrap();
    intruder.bind(&listen.into()).unwrap();
    intruder.listen(128).unwrap();
    intruder.set_nonblocking(true).unwrap();
    for i in 0..30 {
        let c = WsClient::connect(listen, &["oneM2M.json"], None);
        assert!(
            c.is_ok(),
            "device {i} did not reach the edge: {:?}",
            c.err()
        );
    }
    assert!(
        intruder.accept().is_err(),
        "a socket that joined the port took a connection"
    );
    drop(first);
    // Admin and notify ports are never shared, whatever the flag says.
    let admin = format!("127.0.0.1:{}", free_port());
    let one: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut a = start(one, &["--reuse-port", "--admin", &admin]);
    wait_listening(one, &mut a);
    let a = Proc {
        child: a,
        addr: one,
    };
    let two: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let out = start(two, &["--reuse-port", "--admin", &admin])
        .wait_with_output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{admin} is in use"))
            && err.contains("its own admin and notify ports"),
        "{err}"
    );
    drop(a);
    let shared: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut a = start(shared, &["--reuse-port"]);
    wait_listening(shared, &mut a);
    let a = Proc {
        child: a,
        addr: shared,
    };
    let mut b = start(shared, &["--reuse-port"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        b.try_wait().unwrap().is_none(),
        "the second edge with --reuse-port runs"
    );
    let _ = b.kill();
    let _ = b.wait();
    drop(a);
}

#[test]
fn config_file_check_and_precedence() {
    use crate::support::temp_dir;
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("edge.example.toml");
    let out = Command::new(edge_bin())
        .args(["run", "--config", example.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("configuration OK: listen 127.0.0.1:9000")
    );
    let dir = temp_dir("edge-config");
    // A flag on the command line wins over the file.
    let out = Command::new(edge_bin())
        .args([
            "run",
            "--config",
            example.to_str().unwrap(),
            "--check",
            "--listen",
            "127.0.0.1:9555",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen 127.0.0.1:9555"));
    for (text, needle) in [
        ("[upstream]\nmax_in_flight = \"many\"\n", "max_in_flight"),
        (
            "[listen]\ntls_cert = \"/nonexistent.pem\"\n",
            "listen.tls_cert and listen.tls_key go together",
        ),
        (
            "[listen]\ntls_cert = \"/nonexistent.pem\"\ntls_key = \"/nonexistent.key\"\n",
            "nonexistent.pem",
        ),
        (
            "[lisen]\naddress = \"127.0.0.1:1\"\n",
            "unknown field `lisen`",
        ),
        (
            "[upstream]\nurl = \"http://127.0.0.1:1/\"\n",
            "expected a ws:// or wss:// URL",
        ),
    ] {
        let path = dir.join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(edge_bin())
            .args(["run", "--config", path.to_str().unwrap(), "--check"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{text}: {err}");
    }
    // A real run from a file: the edge listens where the file says and relays to ACME.
    let acme = start_acme("edge-acme-config", false);
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let path = dir.join("edge.toml");
    std::fs::write(&path, format!("[listen]\naddress = \"{listen}\"\n[upstream]\nurl = \"ws://{}/\"\n[runtime]\nworkers = 1\n", acme.ws)).unwrap();
    let mut child = Command::new(edge_bin())
        .args(["run", "--config", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(listen, &mut child);
    let edge = Proc {
        child,
        addr: listen,
    };
    let ae = unique("Cconf");
    let mut c = WsClient::connect(edge.addr, &["oneM2M.json"], None).unwrap();
    let reg = req(&format!(
        r#"{{"op":1,"to":"cse-in","fr":"{ae}","rqi":"c1","rvi":"3","ty":2,"pc":{{"m2m:ae":{{"rn":"{ae}","api":"Nconf","rr":true,"srv":["3"]}}}}}}"#
    ));
    expect(
        &c.request(&reg, &mut Vec::new()),
        2001,
        "registration through an edge configured by file",
    );
}

#[test]
fn python_and_browser_devices_register_through_the_edge() {
    use crate::support::peers::{Peer, playwright_path, require};
    require(&[Peer::Browser, Peer::PythonWebsockets, Peer::Acme]);
    let acme = start_acme("edge-acme-browser", false);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let playwright = playwright_path();
    for io in drivers() {
        let edge = start_edge(io, acme.ws, &["--deflate"]);
        let url = format!("ws://{}/", edge.addr);
        // Headless Chromium: `new WebSocket(url, 'oneM2M.json')`.
        let ae = unique("Cbrowser");
        let out = Command::new("node")
            .arg(root.join("tests/peers/browser_device.js"))
            .args([&url, &ae])
            .env("PLAYWRIGHT_CORE", &playwright)
            .output()
            .expect("run node");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{io}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains(r#""protocol":"oneM2M.json","reg":2001,"del":2002"#),
            "{io}: {text}"
        );
        // Python websockets, plain ws (the wss variant runs in the identity-binding test).
        let out = crate::support::run_python("edge_ws_device.py", &[&url, &unique("Cpython")]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("ok permessage-deflate"),
            "{io}: compressed session through the edge: {text}"
        );
    }
}

#[test]
fn idle_timeout_and_device_limit() {
    let acme = start_acme("edge-acme-limits", false);
    for io in drivers() {
        let edge = start_edge(
            io,
            acme.ws,
            &[
                "--workers",
                "1",
                "--idle-timeout",
                "600ms",
                "--max-devices-per-core",
                "1",
            ],
        );
        // The readiness probe's connection must be gone before the limit is tested.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut first = WsClient::connect(edge.addr, &["oneM2M.json"], None).unwrap();
        // The core holds one device: the next handshake is answered 503.
        match WsClient::connect(edge.addr, &["oneM2M.json"], None) {
            Err(m2m_ws::HandshakeError::Status(503)) => {}
            Err(e) => panic!("{io}: {e}"),
            Ok(_) => panic!("{io}: a second device was accepted over the limit"),
        }
        // The first device says nothing: closed with 1001 after the idle timeout.
        let started = std::time::Instant::now();
        let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| first.recv())).err();
        let why = closed
            .and_then(|e| e.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(why.contains("1001"), "{io}: {why}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{io}"
        );
    }
}

fn spawn_edge(args: &[&str]) -> Proc {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen = addr.to_string();
    crate::support::spawn_listening(
        addr,
        ["run", "--listen", &listen, "--workers", "1"]
            .iter()
            .chain(args),
        Stdio::null(),
    )
}

/// A device whose registration goes up and, the upstream being an echo server, comes back down as
/// a request "from the CSE": proof that the link carried it both ways.
fn round_trip_through(edge: SocketAddr, what: &str) {
    let ae = unique("Cwss");
    let mut c = WsClient::connect(edge, &["oneM2M.json"], None).unwrap();
    let reg = req(&format!(
        r#"{{"op":1,"to":"cse-in","fr":"{ae}","rqi":"u1","rvi":"3","ty":2,"pc":{{"m2m:ae":{{"api":"Nwss","rr":true,"srv":["3"]}}}}}}"#
    ));
    c.send(&reg);
    match c.recv() {
        Primitive::Request(r) => assert_eq!(
            (r.rqi.as_str(), r.fr.as_deref()),
            ("u1", Some(ae.as_str())),
            "{what}"
        ),
        other => panic!("{what}: {other:?}"),
    }
}

#[test]
fn upstream_over_wss_and_through_a_connect_proxy() {
    use crate::support::{TestCa, start_echo, temp_dir};
    let dir = temp_dir("edge-upstream-wss");
    let ca = TestCa::new(&dir, "cse");
    let (cert, key) = ca.issue("cse", &["localhost", "127.0.0.1"]);
    let p = |p: &std::path::PathBuf| p.to_str().unwrap().to_string();
    for io in drivers() {
        let echo = start_echo(io, &["--tls-cert", &p(&cert), "--tls-key", &p(&key)]);
        let url = format!("wss://127.0.0.1:{}/", echo.addr.port());
        let direct = spawn_edge(&[
            "--io",
            io,
            "--upstream",
            &url,
            "--upstream-ca",
            &p(&ca.ca_pem),
        ]);
        round_trip_through(direct.addr, "wss upstream");
        // Another edge as the HTTP proxy: its allow-list names the CSE's address.
        let proxy = spawn_edge(&[
            "--io",
            io,
            "--upstream",
            "ws://127.0.0.1:9/",
            "--connect-allow",
            &echo.addr.to_string(),
        ]);
        let proxied = spawn_edge(&[
            "--io",
            io,
            "--upstream",
            &url,
            "--upstream-ca",
            &p(&ca.ca_pem),
            "--upstream-proxy",
            &proxy.addr.to_string(),
        ]);
        round_trip_through(proxied.addr, "wss upstream through CONNECT");
        // A CA that did not sign the CSE's certificate: the link fails and the device hears 5103.
        let rogue = TestCa::new(&dir, "rogue");
        let wrong = spawn_edge(&[
            "--io",
            io,
            "--upstream",
            &url,
            "--upstream-ca",
            &p(&rogue.ca_pem),
            "--request-timeout",
            "3000ms",
        ]);
        let mut c = WsClient::connect(wrong.addr, &["oneM2M.json"], None).unwrap();
        let reg = req(
            r#"{"op":1,"to":"cse-in","fr":"Cx","rqi":"v1","rvi":"3","ty":2,"pc":{"m2m:ae":{"api":"Nx","rr":true,"srv":["3"]}}}"#,
        );
        let rsp = c.request(&reg, &mut Vec::new());
        assert!(
            matches!(rsp.rsc.0, 5103 | 4008),
            "{io}: untrusted CSE certificate: {rsp:?}"
        );
    }
}

/// What a response says, without the values that differ between runs (ids, times): rsc, the
/// content's member and the resource's attribute names. NOTIFYs are summarised likewise.
fn summary(p: &Primitive) -> String {
    let names = |v: Option<&Value>| -> String {
        let Some(obj) = v.and_then(Value::as_object) else {
            return String::new();
        };
        obj.iter()
            .map(|(k, inner)| {
                let mut attrs: Vec<&str> = inner
                    .as_object()
                    .map(|o| o.iter().map(|(a, _)| a).collect())
                    .unwrap_or_default();
                attrs.sort();
                format!("{k}[{}]", attrs.join(","))
            })
            .collect::<Vec<_>>()
            .join(";")
    };
    match p {
        Primitive::Response(r) => format!("rsp {} {}", r.rsc.0, names(r.pc.as_ref())),
        Primitive::Request(r) => format!("req op={} {}", r.op as u8, names(r.pc.as_ref())),
    }
}

/// The device session of test 1, against `addr`; `direct` follows ACME's rules itself (reconnect with
/// X-M2M-Origin after registering), through the edge one connection does.
fn scripted_session(addr: SocketAddr, direct: bool) -> Vec<String> {
    let ae = unique(if direct { "Cdir" } else { "Cvia" });
    let mut out = Vec::new();
    let mut others = Vec::new();
    let mut c = WsClient::connect(addr, &["oneM2M.json"], None).unwrap();
    let reg = req(&format!(
        r#"{{"op":1,"to":"cse-in","fr":"{ae}","rqi":"s1","rvi":"3","ty":2,"pc":{{"m2m:ae":{{"rn":"{ae}","api":"Ncmp","rr":true,"srv":["3"],"poa":["ws://default"]}}}}}}"#
    ));
    out.push(summary(&Primitive::Response(c.request(&reg, &mut others))));
    if direct {
        c = WsClient::connect(addr, &["oneM2M.json"], Some(&ae)).unwrap();
    }
    let steps = [
        format!(
            r#"{{"op":1,"to":"cse-in/{ae}","fr":"{ae}","rqi":"s2","rvi":"3","ty":3,"pc":{{"m2m:cnt":{{"rn":"data"}}}}}}"#
        ),
        format!(
            r#"{{"op":1,"to":"cse-in/{ae}/data","fr":"{ae}","rqi":"s3","rvi":"3","ty":23,"pc":{{"m2m:sub":{{"rn":"s","nu":["{ae}"],"enc":{{"net":[3]}},"nct":1}}}}}}"#
        ),
        format!(
            r#"{{"op":1,"to":"cse-in/{ae}/data","fr":"{ae}","rqi":"s4","rvi":"3","ty":4,"pc":{{"m2m:cin":{{"con":"42"}}}}}}"#
        ),
    ];
    for step in &steps {
        out.push(summary(&Primitive::Response(
            c.request(&req(step), &mut others),
        )));
    }
    let notify = match others.pop() {
        Some(n) => n,
        None => c.recv(),
    };
    out.push(summary(&notify));
    if let Primitive::Request(n) = &notify {
        let mut ok = m2m_primitive::Response::to_request(n, Rsc::OK);
        ok.rvi = Some("3".into());
        c.send(&Primitive::Response(ok));
    }
    for step in [
        format!(r#"{{"op":2,"to":"cse-in/{ae}/data/la","fr":"{ae}","rqi":"s5","rvi":"3"}}"#),
        format!(r#"{{"op":4,"to":"cse-in/{ae}","fr":"{ae}","rqi":"s6","rvi":"3"}}"#),
    ] {
        out.push(summary(&Primitive::Response(
            c.request(&req(&step), &mut others),
        )));
    }
    out
}

#[test]
fn responses_through_the_edge_match_acme_directly() {
    let acme = start_acme("edge-acme-compare", false);
    let direct = scripted_session(acme.ws, true);
    assert!(direct[0].starts_with("rsp 2001 m2m:ae["), "{direct:?}");
    for io in drivers() {
        for (mode, margs) in modes() {
            let edge = start_edge(io, acme.ws, &with_mode(&[], &margs));
            let via = scripted_session(edge.addr, false);
            assert_eq!(
                via, direct,
                "{io} {mode}: the device sees through the edge what it sees directly"
            );
        }
    }
}

/// An MN-CSE registers a remoteCSE through the edge, in JSON and in CBOR, in both modes: the edge
/// reads its `csi` from ACME's answer (in the link's serialization, whatever the device's), binds
/// the session to it, and the MN-CSE's next requests with `fr` = its CSE-ID go through (not 4103).
#[test]
fn a_remote_cse_registers_through_the_edge_and_keeps_talking() {
    let acme = start_acme("edge-acme-csr", false);
    for io in drivers() {
        for (mode, margs) in modes() {
            let edge = start_edge(io, acme.ws, &with_mode(&[], &margs));
            for protocol in ["oneM2M.json", "oneM2M.cbor"] {
                let what = format!("{io}/{mode}/{protocol}");
                let csi = format!("/{}", unique("id-mn"));
                let mut others = Vec::new();
                let mut mn = WsClient::connect(edge.addr, &[protocol], None).unwrap();
                let reg = req(&format!(
                    r#"{{"op":1,"to":"cse-in","fr":"{csi}","rqi":"m1","rvi":"3","ty":16,"pc":{{"m2m:csr":{{"rn":"{rn}","csi":"{csi}","cb":"{csi}/cse-mn","rr":true,"srv":["3"],"cst":2,"poa":["ws://default"]}}}}}}"#,
                    rn = &csi[1..]
                ));
                let rsp = mn.request(&reg, &mut others);
                expect(&rsp, 2001, &format!("{what}: remoteCSE create"));
                let get = req(&format!(
                    r#"{{"op":2,"to":"cse-in","fr":"{csi}","rqi":"m2","rvi":"3"}}"#
                ));
                expect(
                    &mn.request(&get, &mut others),
                    2000,
                    &format!("{what}: after registration"),
                );
                let del = req(&format!(
                    r#"{{"op":4,"to":"cse-in/{rn}","fr":"{csi}","rqi":"m3","rvi":"3"}}"#,
                    rn = &csi[1..]
                ));
                expect(
                    &mn.request(&del, &mut others),
                    2002,
                    &format!("{what}: deregistration"),
                );
            }
        }
    }
}
