//! Holding in memory: what the CSE sends for a device that is away is answered 1000, kept, and
//! delivered in order when a session proves the device's identity again; expiry, bounds, takeover,
//! other cores, the CSE restarting meanwhile, and passthrough's kept link.

use std::sync::atomic::Ordering;
use std::time::Duration;

use m2m_primitive::Primitive;

use crate::NotifyId;
use crate::Peer;
use crate::holding::LINK_HANDOVER_GRACE;
use crate::testing::{End, Harness, json, rqi, rsc, settings};
use crate::tests::{multiplex, named_device, ok, retrieve, two_cores, with_notify};
use m2m_primitive::Value;

fn notify(to: &str, rqi: &str) -> Primitive {
    json(&format!(
        r#"{{"op":5,"to":"{to}","fr":"/id-in","rqi":"{rqi}","rvi":"3","pc":{{"m2m:sgn":{{"sur":"/id-in/sub"}}}}}}"#
    ))
}

fn notify_with(to: &str, rqi: &str, members: &str) -> Primitive {
    json(&format!(
        r#"{{"op":5,"to":"{to}","fr":"/id-in","rqi":"{rqi}","rvi":"3"{members},"pc":{{"m2m:sgn":{{"sur":"/id-in/sub"}}}}}}"#
    ))
}

/// The CSE sends `p` on its notify connection and reads the edge's answer.
fn cse_notifies(h: &mut Harness, n: NotifyId, cse: &mut End, p: &Primitive) -> Vec<Primitive> {
    h.notify_send(n, cse, p);
    h.notify_recv(n, cse)
}

fn rqis(got: &[Primitive]) -> Vec<String> {
    got.iter().map(rqi).collect()
}

fn outcome(h: &Harness) -> (i64, u64, u64, u64) {
    let c = &h.counters;
    (
        c.held[0].load(Ordering::Relaxed),
        c.held_delivered.load(Ordering::Relaxed),
        c.held_expired.load(Ordering::Relaxed),
        c.held_dropped.load(Ordering::Relaxed),
    )
}

/// A multiplexed edge with a notify listener, device `Ca` registered-by-name then gone, and the
/// CSE's notify connection.
fn away_device() -> (Harness, NotifyId, End) {
    let mut h = with_notify(1);
    let a = named_device(&mut h, "Ca");
    h.cse_accept_all();
    h.engine.device_closed(&mut h.io, h.now, a.id, false);
    let (n, cse) = h.notify_connect("127.0.0.1", "/id-in").unwrap();
    (h, n, cse)
}

#[test]
fn notifies_for_an_away_device_are_accepted_held_and_delivered_in_order_when_it_returns() {
    let (mut h, n, mut cse) = away_device();
    for i in 1..=3 {
        let back = cse_notifies(&mut h, n, &mut cse, &notify("Ca", &format!("h{i}")));
        assert_eq!((rsc(&back[0]), rqi(&back[0])), (1000, format!("h{i}")));
    }
    assert_eq!(outcome(&h), (3, 0, 0, 0));
    h.advance(Duration::from_secs(60));
    let mut a = named_device(&mut h, "Ca");
    let got = h.recv(&mut a);
    assert_eq!(rqis(&got), ["h1", "h2", "h3"], "in arrival order");
    // Each carries what is left of its time (the hold TTL here) as an absolute rqet.
    let Primitive::Request(r) = &got[0] else {
        panic!()
    };
    assert!(
        matches!(&r.rqet, Some(Value::String(t)) if t.len() >= 15),
        "{:?}",
        r.rqet
    );
    // The device's answers are taken and go nowhere: the CSE had its answer.
    for i in 1..=3 {
        let answer = json(&format!(r#"{{"rsc":2000,"rqi":"h{i}","rvi":"3"}}"#));
        h.send(&mut a, &answer);
    }
    assert!(h.notify_recv(n, &mut cse).is_empty());
    assert_eq!(outcome(&h), (0, 3, 0, 0));
    // Newer NOTIFYs go straight to the live session.
    h.notify_send(n, &mut cse, &notify("Ca", "live"));
    assert_eq!(rqis(&h.recv(&mut a)), ["live"]);
}

#[test]
fn held_requests_expire_at_their_rqet_or_after_the_hold_ttl_and_are_counted() {
    let (mut h, n, mut cse) = away_device();
    let ttl = h.engine.settings().hold.ttl;
    cse_notifies(
        &mut h,
        n,
        &mut cse,
        &notify_with("Ca", "short", r#","rqet":"PT30S""#),
    );
    cse_notifies(&mut h, n, &mut cse, &notify("Ca", "long"));
    // An rqet already past is refused like any expired request.
    let back = cse_notifies(
        &mut h,
        n,
        &mut cse,
        &notify_with("Ca", "past", r#","rqet":-1"#),
    );
    assert_eq!(rsc(&back[0]), 4008);
    h.advance(Duration::from_secs(31));
    assert_eq!(outcome(&h), (1, 0, 1, 0), "the one with rqet 30 s expired");
    h.advance(ttl);
    assert_eq!(outcome(&h), (0, 0, 2, 0), "the other after the TTL");
    // The device is forgotten after the hold time: the CSE hears 5103 again.
    assert_eq!(h.engine.directory.away_len(), 0);
    let back = cse_notifies(&mut h, n, &mut cse, &notify("Ca", "late"));
    assert_eq!(rsc(&back[0]), 5103);
    let mut a = named_device(&mut h, "Ca");
    assert!(h.recv(&mut a).is_empty(), "nothing expired is delivered");
}

#[test]
fn past_its_bound_a_device_loses_its_oldest_held_requests() {
    let mut s = with_notify(1).engine.settings().clone();
    s.hold.max_per_device = 2;
    let mut h = Harness::new(s);
    let a = named_device(&mut h, "Ca");
    h.cse_accept_all();
    h.engine.device_closed(&mut h.io, h.now, a.id, false);
    let (n, mut cse) = h.notify_connect("127.0.0.1", "/id-in").unwrap();
    for i in 1..=3 {
        let back = cse_notifies(&mut h, n, &mut cse, &notify("Ca", &format!("b{i}")));
        assert_eq!(rsc(&back[0]), 1000);
    }
    assert_eq!(outcome(&h), (2, 0, 0, 1));
    let mut a = named_device(&mut h, "Ca");
    assert_eq!(rqis(&h.recv(&mut a)), ["b2", "b3"]);
}

#[test]
fn the_identity_is_proven_by_the_first_requests_fr_too() {
    let (mut h, n, mut cse) = away_device();
    cse_notifies(&mut h, n, &mut cse, &notify("Ca", "f1"));
    let mut a = h.device("oneM2M.json", None);
    assert!(
        h.recv(&mut a).is_empty(),
        "nothing before it says who it is"
    );
    h.send(&mut a, &retrieve("Ca", "q1"));
    assert_eq!(rqis(&h.recv(&mut a)), ["f1"]);
}

#[test]
fn the_identity_is_proven_by_the_client_certificate_under_identity_binding() {
    let mut s = with_notify(1).engine.settings().clone();
    s.bind_identity = true;
    let mut h = Harness::new(s);
    h.io.identity_of_all = Some("Ca".into());
    let mut a = h.device("oneM2M.json", None);
    h.cse_accept_all();
    h.send(
        &mut a,
        &json(r#"{"op":2,"to":"cse-in","rqi":"c0","rvi":"3"}"#),
    );
    h.engine.device_closed(&mut h.io, h.now, a.id, false);
    let (n, mut cse) = h.notify_connect("127.0.0.1", "/id-in").unwrap();
    assert_eq!(
        rsc(&cse_notifies(&mut h, n, &mut cse, &notify("Ca", "c1"))[0]),
        1000
    );
    let mut back = h.device("oneM2M.json", None);
    assert!(h.recv(&mut back).is_empty());
    h.send(
        &mut back,
        &json(r#"{"op":2,"to":"cse-in","rqi":"c2","rvi":"3"}"#),
    );
    assert_eq!(rqi(&h.recv(&mut back)[0]), "c1", "bound by its certificate");
}

#[test]
fn a_device_back_on_another_core_gets_its_held_requests_first_then_newer_ones() {
    let (mut core0, mut core1) = two_cores(with_notify(1).engine.settings().clone());
    let a = named_device(&mut core0, "Ca");
    core0.cse_accept_all();
    core0
        .engine
        .device_closed(&mut core0.io, core0.now, a.id, false);
    let (n, mut cse) = core0.notify_connect("127.0.0.1", "/id-in").unwrap();
    cse_notifies(&mut core0, n, &mut cse, &notify("Ca", "old1"));
    cse_notifies(&mut core0, n, &mut cse, &notify("Ca", "old2"));
    // Back on core 1: it asks core 0 for what it holds.
    let mut a = named_device(&mut core1, "Ca");
    let (to, fetch) = core1.io.posted.pop().expect("a fetch to core 0");
    assert_eq!(to, 0);
    // Meanwhile the CSE sends a newer one, on core 1's own notify connection.
    let (n1, mut cse1) = core1.notify_connect("127.0.0.1", "/id-in").unwrap();
    let back = cse_notifies(&mut core1, n1, &mut cse1, &notify("Ca", "new"));
    assert_eq!(rsc(&back[0]), 1000, "held behind the older ones");
    assert!(core1.recv(&mut a).is_empty());
    core0.engine.message(&mut core0.io, core0.now, fetch);
    let (to, held) = core0.io.posted.pop().expect("the held requests to core 1");
    assert_eq!(to, 1);
    core1.engine.message(&mut core1.io, core1.now, held);
    assert_eq!(rqis(&core1.recv(&mut a)), ["old1", "old2", "new"]);
    assert_eq!(core0.counters.held[0].load(Ordering::Relaxed), 0);
}

#[test]
fn a_takeover_while_holding_delivers_to_the_newest_session_only() {
    let (mut h, n, mut cse) = away_device();
    cse_notifies(&mut h, n, &mut cse, &notify("Ca", "t1"));
    let mut first = named_device(&mut h, "Ca");
    assert_eq!(rqis(&h.recv(&mut first)), ["t1"]);
    let mut second = named_device(&mut h, "Ca");
    assert!(
        h.io.closed.contains(&Peer::Device(first.id)),
        "the older session closed"
    );
    h.notify_send(n, &mut cse, &notify("Ca", "t2"));
    assert_eq!(rqis(&h.recv(&mut second)), ["t2"]);
    assert!(h.recv(&mut first).is_empty());
}

#[test]
fn held_requests_survive_the_cse_dropping_the_edges_links() {
    let (mut h, n, mut cse) = away_device();
    cse_notifies(&mut h, n, &mut cse, &notify("Ca", "r1"));
    let links: Vec<_> = h.cse.keys().copied().collect();
    for l in links {
        h.cse_drop(l);
    }
    h.advance(Duration::from_secs(1));
    h.cse_accept_all();
    let mut a = named_device(&mut h, "Ca");
    assert_eq!(rqis(&h.recv(&mut a)), ["r1"]);
}

#[test]
fn deregistration_forgets_the_device_so_nothing_is_held_for_it() {
    let mut h = multiplex(1);
    h.engine.s.notify_url = Some("ws://127.0.0.1:9001/".into());
    let mut a = named_device(&mut h, "Ca");
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.send(
        &mut a,
        &json(r#"{"op":4,"to":"cse-in/Ca","fr":"Ca","rqi":"d1","rvi":"3"}"#),
    );
    h.cse_recv(l);
    h.cse_send(l, &json(r#"{"rsc":2002,"rqi":"d1","rvi":"3"}"#));
    h.engine.device_closed(&mut h.io, h.now, a.id, false);
    let (n, mut cse) = h.notify_connect("127.0.0.1", "/id-in").unwrap();
    assert_eq!(
        rsc(&cse_notifies(&mut h, n, &mut cse, &notify("Ca", "x"))[0]),
        5103
    );
}

#[test]
fn passthrough_holds_what_the_cse_sends_on_the_kept_link_and_delivers_it_on_return() {
    let mut h = Harness::new(settings());
    let a = h.device("oneM2M.json", Some("Cp"));
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.engine.device_closed(&mut h.io, h.now, a.id, false);
    // The CSE still routes to Cp over its connection (a NOTIFY whose `to` is the AE's resource).
    h.cse_send(l, &notify("/id-in/cse-in/Cp", "p1"));
    assert_eq!(rsc(&h.cse_recv(l)[0]), 1000);
    let mut back = h.device("oneM2M.json", Some("Cp"));
    assert_eq!(rqis(&h.recv(&mut back)), ["p1"]);
    h.send(&mut back, &json(r#"{"rsc":2000,"rqi":"p1","rvi":"3"}"#));
    assert!(
        h.cse_recv(l).is_empty(),
        "the answer is dropped: the CSE had its 1000"
    );
    // The new session took the kept link over.
    assert!(h.cse_accept_all().is_empty());
    assert_eq!(h.engine.links(), 1);
}

#[test]
fn holding_off_answers_5103_as_before() {
    let mut s = with_notify(1).engine.settings().clone();
    s.hold.ttl = Duration::ZERO;
    let mut h = Harness::new(s);
    let a = named_device(&mut h, "Ca");
    h.cse_accept_all();
    h.engine.device_closed(&mut h.io, h.now, a.id, false);
    let (n, mut cse) = h.notify_connect("127.0.0.1", "/id-in").unwrap();
    assert_eq!(
        rsc(&cse_notifies(&mut h, n, &mut cse, &notify("Ca", "o"))[0]),
        5103
    );
}

#[test]
fn passthrough_keeps_the_link_again_when_the_returned_device_leaves_again() {
    let mut h = Harness::new(settings());
    let a = h.device("oneM2M.json", Some("Cp"));
    let [l1] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.engine.device_closed(&mut h.io, h.now, a.id, false);
    let b = h.device("oneM2M.json", Some("Cp"));
    h.engine.device_closed(&mut h.io, h.now, b.id, false);
    assert_eq!(h.engine.links(), 1, "the link is kept again");
    h.cse_send(l1, &notify("Cp", "again"));
    assert_eq!(rsc(&h.cse_recv(l1)[0]), 1000);
}

#[test]
fn a_passthrough_device_back_on_the_same_core_takes_its_kept_link_over() {
    let mut h = Harness::new(settings());
    let a = h.device("oneM2M.json", Some("Cp"));
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.engine.device_closed(&mut h.io, h.now, a.id, false);
    let mut b = h.device("oneM2M.json", Some("Cp"));
    assert!(
        h.cse_accept_all().is_empty(),
        "no new link: a new one would make ACME forget it"
    );
    h.send(&mut b, &retrieve("Cp", "k1"));
    assert_eq!(rqis(&h.cse_recv(l)), ["k1"]);
    h.cse_send(l, &ok("k1", "x"));
    assert_eq!(rsc(&h.recv(&mut b)[0]), 2000);
    // Named by its first request's fr instead: the link opened without origin is replaced by the
    // kept one.
    h.engine.device_closed(&mut h.io, h.now, b.id, false);
    let mut c = h.device("oneM2M.json", None);
    let [fresh] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.send(&mut c, &retrieve("Cp", "k2"));
    assert!(h.io.aborted.contains(&Peer::Link(fresh)));
    assert_eq!(rqis(&h.cse_recv(l)), ["k2"]);
    assert_eq!(h.engine.links(), 1);
}

#[test]
fn a_passthrough_device_back_on_another_core_opens_its_link_after_the_kept_one_is_closed() {
    let (mut core0, mut core1) = two_cores(settings());
    let a = core0.device("oneM2M.json", Some("Cq"));
    let [l0] = core0.cse_accept_all()[..] else {
        panic!()
    };
    core0
        .engine
        .device_closed(&mut core0.io, core0.now, a.id, false);
    core0.cse_send(l0, &notify("Cq", "q1"));
    assert_eq!(rsc(&core0.cse_recv(l0)[0]), 1000);
    let mut b = core1.device("oneM2M.json", Some("Cq"));
    assert!(core1.links_asked().is_empty(), "waits for core 0");
    core1.send(&mut b, &retrieve("Cq", "w1"));
    let (_, fetch) = core1.io.posted.pop().unwrap();
    core0.engine.message(&mut core0.io, core0.now, fetch);
    assert!(
        core0.io.closed.contains(&Peer::Link(l0)),
        "the kept link closed first"
    );
    let (_, held) = core0.io.posted.pop().unwrap();
    core1.engine.message(&mut core1.io, core1.now, held);
    assert_eq!(rqis(&core1.recv(&mut b)), ["q1"]);
    // ACME forgets a new connection's originator if the old connection's handler ends after it
    // associated: the new link waits a little after the kept one closed.
    core1.advance(LINK_HANDOVER_GRACE - Duration::from_millis(1));
    assert!(core1.links_asked().is_empty(), "not before the grace");
    core1.advance(Duration::from_millis(1));
    let [l1] = core1.cse_accept_all()[..] else {
        panic!("then its own link")
    };
    assert_eq!(core1.cse[&l1].origin.as_deref(), Some("Cq"));
    assert_eq!(
        rqis(&core1.cse_recv(l1)),
        ["w1"],
        "the queued request goes up on it"
    );
}

#[test]
fn a_device_back_after_its_kept_link_closed_gets_a_link_of_its_own() {
    let mut h = Harness::new(settings());
    let a = h.device("oneM2M.json", Some("Cs"));
    h.cse_accept_all();
    h.engine.device_closed(&mut h.io, h.now, a.id, false);
    // Away longer than the hold time: the kept link is closed and the device forgotten.
    h.advance(h.engine.settings().hold.ttl + Duration::from_secs(1));
    assert_eq!(h.engine.links(), 0);
    let mut b = h.device("oneM2M.json", None);
    h.cse_accept_all();
    h.send(&mut b, &retrieve("Cs", "s1"));
    let [l] = h.cse_accept_all()[..] else {
        panic!("relinked with its origin")
    };
    assert_eq!(rqis(&h.cse_recv(l)), ["s1"]);
}

#[test]
fn a_fetch_that_is_never_answered_does_not_leave_the_session_waiting() {
    let (mut core0, mut core1) = two_cores(settings());
    let a = core0.device("oneM2M.json", Some("Cw"));
    core0.cse_accept_all();
    core0
        .engine
        .device_closed(&mut core0.io, core0.now, a.id, false);
    let mut b = core1.device("oneM2M.json", Some("Cw"));
    core1.io.posted.clear(); // core 0 never hears of it
    core1.send(&mut b, &retrieve("Cw", "w1"));
    assert!(core1.links_asked().is_empty());
    core1.advance(Duration::from_secs(2));
    let [l] = core1.cse_accept_all()[..] else {
        panic!("the link opens once the wait is over")
    };
    assert_eq!(rqis(&core1.cse_recv(l)), ["w1"]);
}

#[test]
fn held_requests_fetched_for_a_session_that_was_taken_over_go_to_the_new_one() {
    let (mut core0, mut core1) = two_cores(with_notify(1).engine.settings().clone());
    let a = named_device(&mut core0, "Cv");
    core0.cse_accept_all();
    core0
        .engine
        .device_closed(&mut core0.io, core0.now, a.id, false);
    let (n, mut cse) = core0.notify_connect("127.0.0.1", "/id-in").unwrap();
    cse_notifies(&mut core0, n, &mut cse, &notify("Cv", "v1"));
    let mut first = named_device(&mut core1, "Cv");
    let (_, fetch) = core1.io.posted.pop().unwrap();
    let mut second = named_device(&mut core1, "Cv");
    core0.engine.message(&mut core0.io, core0.now, fetch);
    let (_, held) = core0.io.posted.pop().unwrap();
    core1.engine.message(&mut core1.io, core1.now, held);
    assert_eq!(rqis(&core1.recv(&mut second)), ["v1"]);
    assert!(core1.recv(&mut first).is_empty());
}

#[test]
fn binding_a_certificate_identity_that_delivers_past_the_output_bound_does_not_panic() {
    let mut s = with_notify(1).engine.settings().clone();
    s.bind_identity = true;
    s.max_output_bytes = 100;
    let mut h = Harness::new(s);
    h.io.identity_of_all = Some("Co".into());
    let mut a = h.device("oneM2M.json", None);
    h.cse_accept_all();
    h.send(
        &mut a,
        &json(r#"{"op":2,"to":"cse-in","rqi":"o0","rvi":"3"}"#),
    );
    h.engine.device_closed(&mut h.io, h.now, a.id, false);
    let (n, mut cse) = h.notify_connect("127.0.0.1", "/id-in").unwrap();
    cse_notifies(&mut h, n, &mut cse, &notify("Co", "o1"));
    let mut b = h.device("oneM2M.json", None);
    h.io.stalled.insert(Peer::Device(b.id));
    h.send(
        &mut b,
        &json(r#"{"op":2,"to":"cse-in","rqi":"o2","rvi":"3"}"#),
    );
    assert!(
        h.io.aborted.contains(&Peer::Device(b.id)),
        "closed at the bound"
    );
}

#[test]
fn earlier_expiries_do_not_leave_timers_behind() {
    let (mut h, n, mut cse) = away_device();
    for i in 0..50 {
        let rqet = format!(r#","rqet":"PT{}S""#, 500 - i);
        cse_notifies(
            &mut h,
            n,
            &mut cse,
            &notify_with("Ca", &format!("e{i}"), &rqet),
        );
    }
    h.advance(Duration::from_secs(1000));
    let hold_timers = |h: &Harness| {
        h.io.timers
            .iter()
            .filter(|(_, t)| t.0 >> 56 == crate::engine::T_HOLD)
            .count()
    };
    assert!(hold_timers(&h) <= 1, "{} hold timers left", hold_timers(&h));
    assert_eq!(outcome(&h).2, 50);
}

#[test]
fn a_passthrough_device_that_leaves_owing_an_answer_gets_it_answered_5103_on_the_kept_link() {
    let mut h = Harness::new(settings());
    let mut a = h.device("oneM2M.json", Some("Cq"));
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.cse_send(l, &notify("Cq", "q1"));
    assert_eq!(rqis(&h.recv(&mut a)), ["q1"]);
    // It leaves without answering: the link outlives it (holding), so the CSE must not wait.
    h.engine.device_closed(&mut h.io, h.now, a.id, false);
    let back = h.cse_recv(l);
    assert_eq!((rsc(&back[0]), rqi(&back[0])), (5103, "q1".to_string()));
}
