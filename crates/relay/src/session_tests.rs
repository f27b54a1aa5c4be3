//! Session correctness in memory: liveness (pings on devices and links), response types and times
//! (`rt`, `rset`, `oet`), and upstream set-up that stalls behind a proxy.

use std::time::Duration;

use crate::Peer;
use crate::counters::LIMIT_PING_TIMEOUT;
use crate::testing::{Harness, json, rqi, rsc, settings};
use crate::tests::{ok, retrieve};

fn pinging() -> Harness {
    let mut s = settings();
    s.ping_interval = Some(Duration::from_secs(30));
    s.ping_timeout = Duration::from_secs(10);
    s.idle_timeout = Some(Duration::from_secs(60));
    Harness::new(s)
}

fn ping_timeouts(h: &Harness) -> u64 {
    h.counters.limits[LIMIT_PING_TIMEOUT].load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn a_quiet_device_that_answers_pings_stays_and_one_that_does_not_is_closed() {
    let mut h = pinging();
    let mut live = h.device("oneM2M.json", Some("Clive"));
    let mut dead = h.device("oneM2M.json", Some("Cdead"));
    h.cse_accept_all();
    // Ten minutes of silence from both; only `live` answers the pings (the idle timeout of 60 s
    // counts the pongs as input).
    for _ in 0..60 {
        h.advance(Duration::from_secs(10));
        h.answer_pings(&mut live);
        h.recv(&mut dead);
        let links: Vec<_> = h.cse.keys().copied().collect();
        for l in links {
            h.cse_answer_pings(l);
        }
    }
    assert!(!h.io.aborted.contains(&Peer::Device(live.id)));
    assert!(h.engine.session(live.id).is_some());
    assert!(h.io.aborted.contains(&Peer::Device(dead.id)));
    assert_eq!(ping_timeouts(&h), 1);
}

#[test]
fn the_dead_device_is_found_within_interval_plus_timeout() {
    let mut h = pinging();
    let mut dev = h.device("oneM2M.json", Some("Cd"));
    h.cse_accept_all();
    h.advance(Duration::from_secs(30));
    h.recv(&mut dev);
    assert_eq!(dev.end.pings.len(), 1, "pinged after 30 s of silence");
    h.advance(Duration::from_secs(9));
    assert!(!h.io.aborted.contains(&Peer::Device(dev.id)));
    // Found by the sweep (every quarter interval) once the timeout has passed.
    h.advance(Duration::from_millis(8500));
    assert!(
        h.io.aborted.contains(&Peer::Device(dev.id)),
        "dead within 30 + 10 + 7.5 s"
    );
}

#[test]
fn a_link_that_stops_answering_pings_is_reopened_and_its_requests_answered_5103() {
    let mut s = settings();
    s.ping_interval = Some(Duration::from_secs(30));
    s.ping_timeout = Duration::from_secs(10);
    s.request_timeout = Duration::from_secs(120);
    let mut h = Harness::new(s);
    let mut dev = h.device("oneM2M.json", Some("Cl"));
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.send(&mut dev, &retrieve("Cl", "q1"));
    h.cse_recv(l);
    // The CSE is silently gone: no answer, no pong (the device answers its own pings).
    h.advance(Duration::from_secs(30));
    h.answer_pings(&mut dev);
    // Dead at 30 + 10 s, found by the sweep at 45 s; re-opened after the back-off.
    h.advance(Duration::from_millis(15400));
    let got = h.recv(&mut dev);
    assert_eq!((rsc(&got[0]), rqi(&got[0])), (5103, "q1".to_string()));
    assert_eq!(ping_timeouts(&h), 1);
    assert!(h.io.aborted.contains(&Peer::Link(l)));
    h.advance(Duration::from_secs(1));
    assert_eq!(h.links_asked(), [l], "re-opened after the back-off");
    // A link that answers its pings is left alone.
    h.cse_accept_all();
    for _ in 0..20 {
        h.advance(Duration::from_secs(10));
        h.cse_answer_pings(l);
        h.answer_pings(&mut dev);
    }
    assert_eq!(ping_timeouts(&h), 1);
}

#[test]
fn a_request_without_response_holds_no_slot_and_gets_no_answer() {
    let mut h = Harness::new(settings());
    let mut dev = h.device("oneM2M.json", Some("Cn"));
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.send(
        &mut dev,
        &json(r#"{"op":5,"to":"cse-in/x","fr":"Cn","rqi":"n1","rvi":"3","rt":{"rtv":5},"pc":{}}"#),
    );
    // With one request in flight per link, the next goes at once: n1 took no slot.
    h.send(&mut dev, &retrieve("Cn", "q2"));
    assert_eq!(
        h.cse_recv(l).iter().map(rqi).collect::<Vec<_>>(),
        ["n1", "q2"]
    );
    h.advance(Duration::from_secs(30));
    let got = h.recv(&mut dev);
    assert_eq!(got.len(), 1, "no 4008 for n1: {got:?}");
    assert_eq!(rqi(&got[0]), "q2");
    // Refused by the edge: still nothing answered.
    h.send(
        &mut dev,
        &json(r#"{"op":2,"to":"cse-in","fr":"Cn","rqi":"n2","rvi":"3","rt":{"rtv":5},"rqet":-1}"#),
    );
    assert!(h.recv(&mut dev).is_empty());
}

#[test]
fn non_blocking_requests_get_the_cses_acknowledgement() {
    let mut h = Harness::new(settings());
    let mut dev = h.device("oneM2M.json", Some("Cb"));
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.send(
        &mut dev,
        &json(r#"{"op":2,"to":"cse-in","fr":"Cb","rqi":"nb","rvi":"3","rt":{"rtv":1}}"#),
    );
    let up = h.cse_recv(l);
    assert_eq!(rqi(&up[0]), "nb");
    h.cse_send(
        l,
        &json(r#"{"rsc":1001,"rqi":"nb","rvi":"3","pc":{"m2m:uri":"cse-in/req1"}}"#),
    );
    let got = h.recv(&mut dev);
    assert_eq!((rsc(&got[0]), rqi(&got[0])), (1001, "nb".to_string()));
}

#[test]
fn rset_in_the_past_is_4008_and_bounds_the_wait_and_a_later_oet_extends_it() {
    let mut h = Harness::new(settings());
    let mut dev = h.device("oneM2M.json", Some("Ct"));
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.send(
        &mut dev,
        &json(r#"{"op":2,"to":"cse-in","fr":"Ct","rqi":"past","rvi":"3","rset":-5}"#),
    );
    let got = h.recv(&mut dev);
    assert_eq!((rsc(&got[0]), rqi(&got[0])), (4008, "past".to_string()));
    assert!(h.cse_recv(l).is_empty(), "never forwarded");
    // rset in 2 s: 4008 at 2 s, not at the 10 s request timeout.
    h.send(
        &mut dev,
        &json(r#"{"op":2,"to":"cse-in","fr":"Ct","rqi":"rs","rvi":"3","rset":"PT2S"}"#),
    );
    h.cse_recv(l);
    h.advance(Duration::from_millis(2100));
    let got = h.recv(&mut dev);
    assert_eq!((rsc(&got[0]), rqi(&got[0])), (4008, "rs".to_string()));
    // oet in 20 s: the CSE executes it then, so the edge waits past its own 10 s.
    h.send(
        &mut dev,
        &json(r#"{"op":2,"to":"cse-in","fr":"Ct","rqi":"oe","rvi":"3","oet":"PT20S"}"#),
    );
    h.cse_recv(l);
    h.advance(Duration::from_secs(15));
    assert!(h.recv(&mut dev).is_empty(), "still waiting at 15 s");
    h.cse_send(l, &ok("oe", "late"));
    assert_eq!(rsc(&h.recv(&mut dev)[0]), 2000);
}

#[test]
fn a_proxy_that_never_answers_connect_fails_the_link_within_the_connect_timeout() {
    let mut s = settings();
    s.upstream_proxy = true;
    let mut h = Harness::new(s);
    let mut dev = h.device("oneM2M.json", Some("Cx"));
    let l = h.links_asked()[0];
    h.engine.link_connected(&mut h.io, h.now, l, Ok(()));
    let connect = String::from_utf8(h.io.wire.remove(&Peer::Link(l)).unwrap()).unwrap();
    assert!(connect.starts_with("CONNECT "), "{connect}");
    h.send(&mut dev, &retrieve("Cx", "w1"));
    // The proxy never answers: the set-up timer (3 s) fails the link, the request gets 5103.
    h.advance(Duration::from_secs(3));
    let got = h.recv(&mut dev);
    assert_eq!((rsc(&got[0]), rqi(&got[0])), (5103, "w1".to_string()));
    assert!(h.io.aborted.contains(&Peer::Link(l)));
}

/// TLS to the CSE through a proxy that cannot start after the tunnel is up fails the link: the
/// upgrade (with the device's X-M2M-Origin) never goes out in clear text.
#[test]
fn tls_through_a_proxy_that_cannot_start_fails_the_link_instead_of_sending_in_clear() {
    let mut s = settings();
    s.upstream_proxy = true;
    s.upstream_tls = true;
    let mut h = Harness::new(s);
    h.io.refuse_tls = true;
    let mut dev = h.device("oneM2M.json", Some("Cx"));
    let l = h.links_asked()[0];
    h.engine.link_connected(&mut h.io, h.now, l, Ok(()));
    let connect = String::from_utf8(h.io.wire.remove(&Peer::Link(l)).unwrap()).unwrap();
    assert!(connect.starts_with("CONNECT "), "{connect}");
    h.send(&mut dev, &retrieve("Cx", "t1"));
    let mut answer = b"HTTP/1.1 200 Connection Established\r\n\r\n".to_vec();
    h.engine.link_data(&mut h.io, h.now, l, &mut answer);
    let sent = h.io.wire.remove(&Peer::Link(l)).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&sent).contains("Upgrade"),
        "an upgrade went out without TLS: {}",
        String::from_utf8_lossy(&sent)
    );
    let got = h.recv(&mut dev);
    assert_eq!((rsc(&got[0]), rqi(&got[0])), (5103, "t1".to_string()));
}

#[test]
fn a_remote_cse_registration_binds_its_csi_whatever_the_serialization() {
    for protocol in ["oneM2M.xml", "oneM2M.cbor", "oneM2M.json"] {
        let mut h = crate::tests::multiplex(1);
        let mut mn = h.device(protocol, None);
        let [l] = h.cse_accept_all()[..] else {
            panic!()
        };
        h.send(
            &mut mn,
            &json(r#"{"op":1,"to":"cse-in","fr":"/id-mn","rqi":"m1","rvi":"3","ty":16,"pc":{"m2m:csr":{"rn":"id-mn","csi":"/id-mn","cb":"/id-mn/cse-mn","rr":true,"srv":["3"]}}}"#),
        );
        assert_eq!(rqi(&h.cse_recv(l)[0]), "m1");
        h.cse_send(
            l,
            &json(r#"{"rsc":2001,"rqi":"m1","rvi":"3","pc":{"m2m:csr":{"rn":"id-mn","csi":"/id-mn","ri":"csr1"}}}"#),
        );
        assert_eq!(rsc(&h.recv(&mut mn)[0]), 2001, "{protocol}");
        assert!(
            h.engine.directory.holder("/id-mn").is_some(),
            "{protocol}: bound to its csi"
        );
        h.send(&mut mn, &retrieve("/id-mn", "m2"));
        assert_eq!(
            rqi(&h.cse_recv(l)[0]),
            "m2",
            "{protocol}: not refused by the gate"
        );
    }
}

#[test]
fn only_a_delete_of_the_registree_itself_is_a_deregistration() {
    use crate::relay::names_registree;
    for to in [
        "Cx",
        "cse-in/Cx",
        "/id-in/Cx",
        "/id-in/cse-in/Cx",
        "//sp.example/id-in/Cx",
        "//sp.example/id-in/cse-in/Cx",
    ] {
        assert!(names_registree(to, "Cx"), "{to}");
    }
    for to in [
        "cse-in/Cother/Cx",
        "/id-in/cse-in/Cother/Cx",
        "Cother/Cx/Cx",
        "cse-in/Cxy",
        "/Cx",
    ] {
        assert!(!names_registree(to, "Cx"), "{to}");
    }
    // A remoteCSE's CSE-ID names it with its leading slash.
    assert!(names_registree("cse-in/id-mn", "/id-mn"));
}

#[test]
fn a_link_closed_before_it_opened_counts_as_a_set_up_failure_not_a_loss() {
    use crate::counters::{LINK_FAILED, LINK_LOST};
    let mut h = Harness::new(settings());
    let _dev = h.device("oneM2M.json", Some("Cf"));
    let l = h.links_asked()[0];
    // The connect completes and the CSE hangs up before answering the handshake.
    h.engine.link_connected(&mut h.io, h.now, l, Ok(()));
    h.engine.link_closed(&mut h.io, h.now, l, "reset");
    let events = |i: usize| h.counters.link_events[i].load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!((events(LINK_FAILED), events(LINK_LOST)), (1, 0));
}

#[test]
fn under_identity_binding_a_passthrough_link_is_relinked_with_the_certificate_identity() {
    let mut s = settings();
    s.bind_identity = true;
    let mut h = Harness::new(s);
    h.io.identity_of_all = Some("Cid".into());
    let mut dev = h.device("oneM2M.json", None);
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    assert_eq!(h.cse[&l].origin, None);
    h.send(
        &mut dev,
        &json(r#"{"op":2,"to":"cse-in","rqi":"i1","rvi":"3"}"#),
    );
    let [again] = h.cse_accept_all()[..] else {
        panic!("relinked")
    };
    assert_eq!(h.cse[&again].origin.as_deref(), Some("Cid"));
    assert_eq!(rqi(&h.cse_recv(again)[0]), "i1");
}

#[test]
fn a_held_delivery_never_pushes_out_an_answer_the_cse_waits_for() {
    use crate::{Back, Peer};
    let mut s = crate::device::Session::new_for_tests();
    let link = Back {
        core: 0,
        peer: Peer::Link(crate::LinkId {
            index: 0,
            generation: 0,
        }),
    };
    let nowhere = Back {
        core: 0,
        peer: Peer::Device(crate::DeviceId {
            index: 0,
            generation: 0,
        }),
    };
    for i in 0..64 {
        assert!(s.owe(&format!("real{i}"), link).is_none());
    }
    assert!(s.owe("held", nowhere).is_none(), "not remembered");
    assert_eq!(s.owed.len(), 64);
    assert!(s.owed.iter().all(|(r, _)| r.starts_with("real")));
    // A real one past the bound pushes out the oldest real one (answered 5103 by the caller).
    assert_eq!(
        s.owe("real64", link).map(|(r, _)| r).as_deref(),
        Some("real0")
    );
}
