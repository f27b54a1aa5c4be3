//! The edge in multiplex mode in front of the real ACME, on both drivers: many devices share
//! `workers × upstream_links` WebSocket links opened with the edge's own originator, so ACME holds
//! that many sockets, not one per device; ACME takes requests whose `fr` differs from the link's
//! `X-M2M-Origin` (checked here, not assumed); registration, a container, a CBOR device transcoded,
//! a device that reconnects without registering, the gate, a session that tries to speak for another
//! AE (5103 then recovery when ACME restarts: edge::acme_restart_mid_session, in both modes).

use std::net::SocketAddr;

use m2m_primitive::Rsc;

use crate::edge::{expect, req, start_edge, unique};
use crate::support::acme::start_acme;
use crate::support::drivers;
use crate::support::ws_client::WsClient;

const MULTIPLEX: &[&str] = &[
    "--upstream-mode",
    "multiplex",
    "--upstream-links",
    "1",
    "--workers",
    "2",
];

/// Established TCP connections whose remote end is `to` (from /proc/net/tcp and tcp6).
fn established_to(to: SocketAddr) -> usize {
    let port = format!("{:04X}", to.port());
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 3 && f[2].ends_with(&format!(":{port}")) && f[3] == "01"
        })
        .count()
}

fn registration(ae: &str, rqi: &str) -> m2m_primitive::Primitive {
    req(&format!(
        r#"{{"op":1,"to":"cse-in","fr":"{ae}","rqi":"{rqi}","rvi":"3","ty":2,"pc":{{"m2m:ae":{{"rn":"{ae}","api":"Nmux","rr":true,"srv":["3"]}}}}}}"#
    ))
}

#[test]
fn two_hundred_devices_share_the_edges_links_to_acme() {
    let acme = start_acme("mux-acme", false);
    for io in drivers() {
        let edge = start_edge(io, acme.ws, MULTIPLEX);
        let before = established_to(acme.ws);
        let prefix = unique("Cmux");
        // 8 threads × 25 devices, each registering and creating a container; the devices stay
        // connected until the sockets toward ACME are counted.
        let workers: Vec<_> = (0..8)
            .map(|t| {
                let (addr, prefix) = (edge.addr, prefix.clone());
                std::thread::spawn(move || {
                    let mut clients = Vec::new();
                    for i in 0..25 {
                        let ae = format!("{prefix}t{t}d{i}");
                        let mut c = WsClient::connect(addr, &["oneM2M.json"], None).unwrap();
                        let mut others = Vec::new();
                        // Every device uses the same rqis: the link keeps them apart.
                        expect(&c.request(&registration(&ae, "1"), &mut others), 2001, &ae);
                        let cnt = req(&format!(
                            r#"{{"op":1,"to":"cse-in/{ae}","fr":"{ae}","rqi":"2","rvi":"3","ty":3,"pc":{{"m2m:cnt":{{"rn":"c"}}}}}}"#
                        ));
                        expect(&c.request(&cnt, &mut others), 2001, "container on a shared link");
                        clients.push(c);
                    }
                    clients
                })
            })
            .collect();
        let clients: Vec<WsClient> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("device thread"))
            .collect();
        assert_eq!(clients.len(), 200);
        let links = established_to(acme.ws) - before;
        assert!(
            links <= 2,
            "{io}: 200 devices hold {links} sockets at ACME (2 workers × 1 link)"
        );
        drop(clients);

        // A device that registered earlier comes back naming itself, without registering again.
        let ae = format!("{prefix}t0d0");
        let mut c = WsClient::connect(edge.addr, &["oneM2M.json"], Some(&ae)).unwrap();
        let get = req(&format!(
            r#"{{"op":2,"to":"cse-in/{ae}/c","fr":"{ae}","rqi":"3","rvi":"3"}}"#
        ));
        expect(
            &c.request(&get, &mut Vec::new()),
            2000,
            "reconnect without registering",
        );
        // It cannot speak for another AE on the shared link.
        let other = format!("{prefix}t0d1");
        let spoof = req(&format!(
            r#"{{"op":2,"to":"cse-in/{other}","fr":"{other}","rqi":"4","rvi":"3"}}"#
        ));
        expect(
            &c.request(&spoof, &mut Vec::new()),
            4103,
            "speaking for another AE",
        );

        // The gate: nothing but a registration before the device names itself.
        let mut g = WsClient::connect(edge.addr, &["oneM2M.json"], None).unwrap();
        let early = req(r#"{"op":2,"to":"cse-in","rqi":"e0","rvi":"3"}"#);
        expect(
            &g.request(&early, &mut Vec::new()),
            4103,
            "before registration",
        );

        // A CBOR device behind ACME's JSON link: transcoded both ways.
        let cb = unique("Cmuxcbor");
        let mut k = WsClient::connect(edge.addr, &["oneM2M.cbor"], None).unwrap();
        let rsp = k.request(&registration(&cb, "c1"), &mut Vec::new());
        expect(&rsp, 2001, "CBOR registration on a JSON link");
        let del = req(&format!(
            r#"{{"op":4,"to":"cse-in/{cb}","fr":"{cb}","rqi":"c2","rvi":"3"}}"#
        ));
        assert_eq!(k.request(&del, &mut Vec::new()).rsc, Rsc::DELETED, "{io}");
        assert!(edge.terminate().success(), "{io}: clean exit on SIGTERM");
    }
}

#[test]
fn notifications_reach_devices_on_shared_links_through_the_notify_listener() {
    let acme = start_acme("mux-acme-notify", false);
    for io in drivers() {
        let notify = format!("127.0.0.1:{}", crate::support::free_port());
        let mut args = MULTIPLEX.to_vec();
        args.extend(["--notify-listen", &notify]);
        let edge = start_edge(io, acme.ws, &args);
        let mut admin = WsClient::connect(acme.ws, &["oneM2M.json"], Some("CAdmin")).unwrap();
        for (n, protocol) in ["oneM2M.json", "oneM2M.cbor", "oneM2M.xml"]
            .into_iter()
            .enumerate()
        {
            let ae = unique("Cmuxn");
            let mut c = WsClient::connect(edge.addr, &[protocol], None).unwrap();
            let mut others = Vec::new();
            let reg = req(&format!(
                r#"{{"op":1,"to":"cse-in","fr":"{ae}","rqi":"1","rvi":"3","ty":2,"pc":{{"m2m:ae":{{"rn":"{ae}","api":"Nmux","rr":true,"srv":["3"],"poa":["ws://default"]}}}}}}"#
            ));
            let rsp = c.request(&reg, &mut others);
            expect(&rsp, 2001, "registration");
            assert!(
                format!("{:?}", rsp.pc).contains("ws://default"),
                "{io} {protocol}: the device sees the poa it set: {rsp:?}"
            );
            let cnt = req(&format!(
                r#"{{"op":1,"to":"cse-in/{ae}","fr":"{ae}","rqi":"2","rvi":"3","ty":3,"pc":{{"m2m:cnt":{{"rn":"readings"}}}}}}"#
            ));
            expect(&c.request(&cnt, &mut others), 2001, "container");
            let sub = req(&format!(
                r#"{{"op":1,"to":"cse-in/{ae}/readings","fr":"{ae}","rqi":"3","rvi":"3","ty":23,"pc":{{"m2m:sub":{{"rn":"s","nu":["{ae}"],"enc":{{"net":[3]}},"nct":1}}}}}}"#
            ));
            expect(&c.request(&sub, &mut others), 2001, "subscription");
            let value = format!("{io}-{n}-42.5");
            let cin = req(&format!(
                r#"{{"op":1,"to":"cse-in/{ae}/readings","fr":"CAdmin","rqi":"a{n}","rvi":"3","ty":4,"pc":{{"m2m:cin":{{"con":"{value}"}}}}}}"#
            ));
            expect(
                &admin.request(&cin, &mut Vec::new()),
                2001,
                "contentInstance by another originator",
            );
            let notification = match others.pop() {
                Some(p) => p,
                None => c.recv(),
            };
            let m2m_primitive::Primitive::Request(note) = notification else {
                panic!("{io} {protocol}: a NOTIFY expected, got {notification:?}")
            };
            assert_eq!(note.op, m2m_primitive::Operation::Notify, "{io} {protocol}");
            assert!(
                format!("{:?}", note.pc).contains(&value),
                "{io} {protocol}: {note:?}"
            );
            let mut ok = m2m_primitive::Response::to_request(&note, Rsc::OK);
            ok.rvi = Some("3".into());
            c.send(&m2m_primitive::Primitive::Response(ok));
            // ACME counted the NOTIFY as delivered: the subscription is still there.
            std::thread::sleep(std::time::Duration::from_millis(300));
            let get = req(&format!(
                r#"{{"op":2,"to":"cse-in/{ae}/readings/s","fr":"{ae}","rqi":"4","rvi":"3"}}"#
            ));
            expect(
                &c.request(&get, &mut others),
                2000,
                "the subscription survives",
            );
        }
        assert!(edge.terminate().success(), "{io}: clean exit on SIGTERM");
    }
}

/// The notify listener over wss with mutual TLS: a CSE with a certificate from the configured CA
/// reaches a device on a shared link (its answer comes back), one without a certificate or with a
/// certificate from another CA does not get through.
#[test]
fn the_notify_listener_speaks_wss_with_client_certificates() {
    use crate::support::peers::{Peer, require};
    use crate::support::{TestCa, run_python, temp_dir};
    require(&[Peer::PythonWebsockets, Peer::Acme]);
    let acme = start_acme("mux-acme-notify-tls", false);
    let dir = temp_dir("mux-notify-tls");
    let ca = TestCa::new(&dir, "edge");
    let (server_cert, server_key) = ca.issue("edge", &["localhost", "127.0.0.1"]);
    let cses = TestCa::new(&dir, "cses");
    let (cse_cert, cse_key) = cses.issue("id-in", &[]);
    let rogue = TestCa::new(&dir, "rogue");
    let (rogue_cert, rogue_key) = rogue.issue("rogue-cse", &[]);
    let p = |p: &std::path::PathBuf| p.to_str().unwrap().to_string();
    for io in drivers() {
        let notify = format!("127.0.0.1:{}", crate::support::free_port());
        let (sc, sk, cc) = (p(&server_cert), p(&server_key), p(&cses.ca_pem));
        let mut args = MULTIPLEX.to_vec();
        args.extend([
            "--notify-listen",
            &notify,
            "--notify-tls-cert",
            &sc,
            "--notify-tls-key",
            &sk,
            "--notify-client-ca",
            &cc,
        ]);
        let edge = start_edge(io, acme.ws, &args);
        let ae = unique("Cmuxtls");
        let mut c = WsClient::connect(edge.addr, &["oneM2M.json"], Some(&ae)).unwrap();
        let url = format!("wss://{notify}/");
        let ca_pem = p(&ca.ca_pem);
        // The device answers the NOTIFY while the CSE script waits for it.
        let device = std::thread::spawn(move || {
            let m2m_primitive::Primitive::Request(n) = c.recv() else {
                panic!("a NOTIFY expected")
            };
            let mut ok = m2m_primitive::Response::to_request(&n, Rsc::OK);
            ok.rvi = Some("3".into());
            c.send(&m2m_primitive::Primitive::Response(ok));
            c
        });
        let (cc, ck) = (p(&cse_cert), p(&cse_key));
        run_python("notify_tls_cse.py", &[&url, &ca_pem, &cc, &ck, &ae, "2000"]);
        let _c = device.join().expect("device thread");
        run_python(
            "notify_tls_cse.py",
            &[&url, &ca_pem, "-", "-", &ae, "refused"],
        );
        let (rc, rk) = (p(&rogue_cert), p(&rogue_key));
        run_python(
            "notify_tls_cse.py",
            &[&url, &ca_pem, &rc, &rk, &ae, "refused"],
        );
        assert!(edge.terminate().success(), "{io}: clean exit on SIGTERM");
    }
}
