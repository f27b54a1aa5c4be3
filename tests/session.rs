//! Session liveness and timed upstream phases against real sockets, on both drivers: an upstream
//! that accepts TCP and never answers the WebSocket handshake, and a proxy that never answers
//! CONNECT (device requests answered 5103 within the connect timeout); a device that stops
//! answering pings is closed and one that answers them stays; ACME frozen (SIGSTOP) mid-session,
//! so its link stops answering pings: the request in flight is answered 5103 before the request
//! timeout and the link comes back when ACME does.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use crate::edge::{expect, req, start_edge, unique};
use crate::support::acme::start_acme;
use crate::support::drivers;
use crate::support::ws_client::WsClient;

/// A TCP server that accepts and then says nothing, holding every connection open.
fn silent_server() -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let keep = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let mut held = Vec::new();
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until && held.len() < 64 {
            match listener.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (addr, keep)
}

/// A named device's first request through `edge` gets `rsc`, within `within`.
fn answered_within(edge: SocketAddr, rsc: u16, within: Duration, what: &str) {
    let ae = unique("Cstall");
    let mut dev = WsClient::connect(edge, &["oneM2M.json"], Some(&ae)).unwrap();
    let started = Instant::now();
    let get = req(&format!(
        r#"{{"op":2,"to":"cse-in","fr":"{ae}","rqi":"s1","rvi":"3"}}"#
    ));
    let mut others = Vec::new();
    expect(&dev.request(&get, &mut others), rsc, what);
    let took = started.elapsed();
    assert!(took < within, "{what}: answered after {took:?}");
}

#[test]
fn a_stalled_upstream_or_proxy_is_answered_within_the_connect_timeout() {
    let (silent, _keep) = silent_server();
    for io in drivers() {
        // The CSE accepts TCP and never answers the WebSocket handshake.
        let edge = start_edge(io, silent, &["--upstream-connect-timeout", "1s"]);
        answered_within(edge.addr, 5103, Duration::from_secs(5), "stalled handshake");
        // A proxy that accepts and never answers CONNECT (the CSE address is never reached).
        let proxy = silent.to_string();
        let cse: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let edge = start_edge(
            io,
            cse,
            &[
                "--upstream-proxy",
                &proxy,
                "--upstream-connect-timeout",
                "1s",
            ],
        );
        answered_within(edge.addr, 5103, Duration::from_secs(5), "stalled proxy");
    }
}

#[test]
fn devices_that_stop_answering_pings_are_closed_and_live_ones_stay() {
    let acme = start_acme("ping-acme", false);
    for io in drivers() {
        let edge = start_edge(
            io,
            acme.ws,
            &["--ping-interval", "500ms", "--ping-timeout", "500ms"],
        );
        let mut live =
            WsClient::connect(edge.addr, &["oneM2M.json"], Some(&unique("Clive"))).unwrap();
        let mut gone =
            WsClient::connect(edge.addr, &["oneM2M.json"], Some(&unique("Cgone"))).unwrap();
        let pings = live.answer_pings_for(Duration::from_secs(3));
        assert!(pings >= 2, "{io}: a quiet device is pinged ({pings})");
        assert!(
            gone.closed_within(Duration::from_secs(3)),
            "{io}: a device that answers no ping is closed within interval + timeout"
        );
        assert!(!live.closed_within(Duration::from_millis(200)));
    }
}

#[test]
fn a_frozen_cse_is_found_by_pings_and_its_link_reopened() {
    let acme = start_acme("frozen-acme", false);
    for io in drivers() {
        let edge = start_edge(
            io,
            acme.ws,
            &[
                "--ping-interval",
                "1s",
                "--ping-timeout",
                "1s",
                "--request-timeout",
                "30000ms",
            ],
        );
        let ae = unique("Cfrz");
        let mut others = Vec::new();
        let mut dev = WsClient::connect(edge.addr, &["oneM2M.json"], None).unwrap();
        let reg = req(&format!(
            r#"{{"op":1,"to":"cse-in","fr":"{ae}","rqi":"f1","rvi":"3","ty":2,"pc":{{"m2m:ae":{{"rn":"{ae}","api":"Nfrz","rr":true,"srv":["3"]}}}}}}"#
        ));
        expect(&dev.request(&reg, &mut others), 2001, io);
        let get = |rqi: &str| {
            req(&format!(
                r#"{{"op":2,"to":"cse-in/{ae}","fr":"{ae}","rqi":"{rqi}","rvi":"3"}}"#
            ))
        };
        expect(&dev.request(&get("f2"), &mut others), 2000, io);
        acme.pause();
        let started = Instant::now();
        let rsp = dev.request(&get("f3"), &mut others);
        let took = started.elapsed();
        acme.resume();
        expect(
            &rsp,
            5103,
            "a request on a link that stopped answering pings",
        );
        assert!(
            took < Duration::from_secs(10),
            "{io}: found by pings, not the 30 s request timeout ({took:?})"
        );
        // The link is re-opened once ACME answers again.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let rsp = dev.request(&get("f4"), &mut others);
            if rsp.rsc.0 == 2000 {
                break;
            }
            assert!(Instant::now() < deadline, "{io}: no recovery: {rsp:?}");
            std::thread::sleep(Duration::from_millis(300));
        }
        let del = req(&format!(
            r#"{{"op":4,"to":"cse-in/{ae}","fr":"{ae}","rqi":"f5","rvi":"3"}}"#
        ));
        expect(&dev.request(&del, &mut others), 2002, io);
    }
}
