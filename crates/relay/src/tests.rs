//! The engine in memory: scripted devices and a scripted CSE, a fake clock. Each test names the
//! behaviour it pins down; the real-peer tests of the edge check the wiring.

use std::time::Duration;

use m2m_primitive::{Format, Primitive, Rsc};

use crate::Peer;
use crate::settings::UpstreamMode;
use crate::testing::{Dev, Harness, json, rqi, rsc, settings};

pub(crate) fn registration(fr: &str, rqi: &str) -> Primitive {
    json(&format!(
        r#"{{"op":1,"to":"cse-in","fr":"{fr}","rqi":"{rqi}","rvi":"3","ty":2,"pc":{{"m2m:ae":{{"rn":"a","api":"Na","rr":true,"srv":["3"]}}}}}}"#
    ))
}

pub(crate) fn retrieve(fr: &str, rqi: &str) -> Primitive {
    json(&format!(
        r#"{{"op":2,"to":"cse-in","fr":"{fr}","rqi":"{rqi}","rvi":"3"}}"#
    ))
}

pub(crate) fn created(rqi: &str, aei: &str) -> Primitive {
    json(&format!(
        r#"{{"rsc":2001,"rqi":"{rqi}","rvi":"3","pc":{{"m2m:ae":{{"rn":"a","aei":"{aei}","api":"Na"}}}}}}"#
    ))
}

pub(crate) fn ok(rqi: &str, tag: &str) -> Primitive {
    json(&format!(
        r#"{{"rsc":2000,"rqi":"{rqi}","rvi":"3","pc":{{"m2m:cb":{{"rn":"{tag}"}}}}}}"#
    ))
}

pub(crate) fn multiplex(links: usize) -> Harness {
    let mut s = settings();
    s.mode = UpstreamMode::Multiplex;
    s.upstream_links = links;
    s.max_in_flight = 16;
    Harness::new(s)
}

/// A device on a multiplexed edge that names itself with `fr` (as a device that registered earlier).
pub(crate) fn named_device(h: &mut Harness, ae: &str) -> Dev {
    h.device("oneM2M.json", Some(ae))
}

#[test]
fn gate_answers_4103_before_registration_and_passes_a_registration() {
    let mut h = Harness::new(settings());
    let mut dev = h.device("oneM2M.json", None);
    let [l] = h.cse_accept_all()[..] else {
        panic!("one link per device")
    };
    assert_eq!(h.cse[&l].origin, None, "no origin is known yet");
    h.send(
        &mut dev,
        &json(r#"{"op":2,"to":"cse-in","rqi":"e0","rvi":"3"}"#),
    );
    let got = h.recv(&mut dev);
    assert_eq!((rsc(&got[0]), rqi(&got[0])), (4103, "e0".to_string()));
    assert!(h.cse_recv(l).is_empty(), "nothing went up");

    h.send(&mut dev, &registration("Cnew", "r1"));
    let up = h.cse_recv(l);
    assert_eq!(rqi(&up[0]), "r1");
    h.cse_send(l, &created("r1", "Cnew"));
    let got = h.recv(&mut dev);
    assert_eq!(rsc(&got[0]), 2001);
    // The link is replaced by one that carries the new AE-ID (ACME binds a connection to it).
    let [l2] = h.cse_accept_all()[..] else {
        panic!("a relink")
    };
    assert_eq!(l2, l, "the same link, re-opened");
    assert_eq!(h.cse[&l].origin.as_deref(), Some("Cnew"));
    h.send(&mut dev, &retrieve("Cnew", "r2"));
    assert_eq!(rqi(&h.cse_recv(l)[0]), "r2");
}

#[test]
fn colliding_rqis_from_two_devices_on_one_link_reach_their_own_devices() {
    let mut h = multiplex(1);
    let mut a = named_device(&mut h, "Ca");
    let mut b = named_device(&mut h, "Cb");
    let [l] = h.cse_accept_all()[..] else {
        panic!("one shared link")
    };
    assert_eq!(
        h.cse[&l].origin.as_deref(),
        Some("Cm2m-edge-0-0"),
        "<edge-origin>-<core>-<link>"
    );
    h.send(&mut a, &retrieve("Ca", "1"));
    h.send(&mut b, &retrieve("Cb", "1"));
    let up = h.cse_recv(l);
    assert_eq!(up.len(), 2);
    let (ra, rb) = (rqi(&up[0]), rqi(&up[1]));
    assert_ne!(ra, rb, "rqi stays unique per link");
    // Answered out of order, each tagged with the device it was for.
    h.cse_send(l, &ok(&rb, "for-b"));
    h.cse_send(l, &ok(&ra, "for-a"));
    for (dev, tag) in [(&mut a, "for-a"), (&mut b, "for-b")] {
        let got = h.recv(dev);
        assert_eq!(got.len(), 1);
        assert_eq!(rqi(&got[0]), "1", "the device sees its own rqi");
        assert!(format!("{:?}", got[0]).contains(tag), "{got:?}");
    }
}

#[test]
fn multiplex_keeps_a_few_links_for_many_devices_and_binds_no_device_origin() {
    let mut h = multiplex(2);
    let mut devs: Vec<Dev> = (0..50)
        .map(|i| named_device(&mut h, &format!("Cd{i}")))
        .collect();
    let links = h.cse_accept_all();
    assert_eq!(
        links.len(),
        2,
        "upstream_links per core, not one per device"
    );
    assert_eq!(h.engine.links(), 2);
    for (i, dev) in devs.iter_mut().enumerate() {
        h.send(dev, &retrieve(&format!("Cd{i}"), &format!("q{i}")));
    }
    let mut seen = 0;
    for round in 0.. {
        let mut this_round = 0;
        for l in &links {
            for p in h.cse_recv(*l) {
                let Primitive::Request(r) = &p else { panic!() };
                h.cse_send(*l, &ok(&r.rqi, "x"));
                this_round += 1;
            }
        }
        if round == 0 {
            assert_eq!(this_round, 32, "16 in flight per link");
        }
        if this_round == 0 {
            break;
        }
        seen += this_round;
    }
    assert_eq!(seen, 50, "the rest went up as answers came");
    for dev in &mut devs {
        assert_eq!(rsc(&h.recv(dev)[0]), 2000);
    }
}

#[test]
fn a_device_pinned_to_a_busy_link_waits_its_turn_in_order() {
    let mut h = multiplex(1);
    h.engine.s.max_in_flight = 1;
    let mut a = named_device(&mut h, "Ca");
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    for i in 0..3 {
        h.send(&mut a, &retrieve("Ca", &format!("a{i}")));
    }
    for i in 0..3 {
        let up = h.cse_recv(l);
        assert_eq!(up.len(), 1, "one in flight at a time");
        assert_eq!(rqi(&up[0]), format!("a{i}"), "device order kept");
        h.cse_send(l, &ok(&rqi(&up[0]), "x"));
    }
    assert_eq!(h.recv(&mut a).len(), 3);
}

#[test]
fn a_lost_link_answers_5103_keeps_devices_and_reopens_after_the_backoff() {
    let mut h = multiplex(1);
    let mut a = named_device(&mut h, "Ca");
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.send(&mut a, &retrieve("Ca", "x1"));
    assert_eq!(h.cse_recv(l).len(), 1);
    h.cse_drop(l);
    let got = h.recv(&mut a);
    assert_eq!(
        (rsc(&got[0]), rqi(&got[0])),
        (5103, "x1".to_string()),
        "never silently re-sent"
    );
    assert!(
        h.io.closed.iter().all(|p| *p != Peer::Device(a.id)),
        "the device stays"
    );
    assert!(h.links_asked().is_empty());
    h.advance(Duration::from_millis(499));
    assert!(h.links_asked().is_empty(), "not before the backoff");
    h.advance(Duration::from_millis(1));
    assert_eq!(h.cse_accept_all(), vec![l]);
    h.send(&mut a, &retrieve("Ca", "x2"));
    assert_eq!(rqi(&h.cse_recv(l)[0]), "x2");
}

#[test]
fn no_response_within_the_timeout_is_answered_4008_and_frees_the_slot() {
    let mut h = Harness::new(settings());
    let mut dev = h.device("oneM2M.json", Some("Cslow"));
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.send(&mut dev, &retrieve("Cslow", "t1"));
    h.advance(Duration::from_secs(1));
    h.send(&mut dev, &retrieve("Cslow", "t2"));
    assert_eq!(h.cse_recv(l).len(), 1, "max_in_flight 1");
    h.advance(Duration::from_secs(9));
    let got = h.recv(&mut dev);
    assert_eq!((rsc(&got[0]), rqi(&got[0])), (4008, "t1".to_string()));
    let up = h.cse_recv(l);
    assert_eq!(rqi(&up[0]), "t2", "the next request takes the freed slot");
    // A late answer to t1 is dropped, not delivered.
    h.cse_send(l, &ok("t1", "late"));
    assert!(h.recv(&mut dev).is_empty());
    assert_eq!(
        h.counters.errors[2].load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn requests_before_the_link_opens_wait_and_fail_5103_when_it_cannot() {
    let mut h = Harness::new(settings());
    let mut dev = h.device("oneM2M.json", Some("Cq"));
    h.send(&mut dev, &retrieve("Cq", "w1"));
    assert!(h.recv(&mut dev).is_empty(), "queued while connecting");
    // The CSE accepts TCP but never answers the WebSocket handshake.
    let [l] = h.links_asked()[..] else { panic!() };
    h.io.connects.clear();
    h.engine.link_connected(&mut h.io, h.now, l, Ok(()));
    h.advance(Duration::from_secs(3));
    let got = h.recv(&mut dev);
    assert_eq!((rsc(&got[0]), rqi(&got[0])), (5103, "w1".to_string()));
    assert!(
        h.io.aborted.contains(&Peer::Link(l)),
        "the stalled link is dropped"
    );
    h.advance(Duration::from_millis(500));
    assert_eq!(h.links_asked(), vec![l], "and re-opened after the backoff");
}

#[test]
fn drain_closes_a_device_with_1001_once_its_requests_are_answered() {
    let mut h = Harness::new(settings());
    let mut dev = h.device("oneM2M.json", Some("Cdrain"));
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.send(&mut dev, &retrieve("Cdrain", "d1"));
    h.engine.shutdown(&mut h.io, h.now);
    assert!(
        !h.io.closed.contains(&Peer::Device(dev.id)),
        "still waiting for d1"
    );
    h.cse_recv(l);
    h.cse_send(l, &ok("d1", "x"));
    let got = h.recv(&mut dev);
    assert_eq!(rsc(&got[0]), 2000);
    assert_eq!(dev.end.closed, Some(1001));
    assert!(h.io.closed.contains(&Peer::Device(dev.id)));
    assert_eq!(h.engine.devices(), 0);
}

#[test]
fn wrong_serialization_is_4015_and_malformed_is_4000() {
    let mut h = Harness::new(settings());
    let mut dev = h.device("oneM2M.json", Some("Cbad"));
    h.cse_accept_all();
    // CBOR bytes on a JSON session, in a binary frame.
    let cbor = m2m_primitive::encode(&retrieve("Cbad", "c1"), Format::Cbor).unwrap();
    let mut out = Vec::new();
    let (_, mut tx) = m2m_ws::endpoint(
        m2m_ws::Role::Client,
        None,
        Default::default(),
        Default::default(),
        6,
    );
    tx.binary(&cbor, &mut out);
    tx.text(
        r#"{"op":2,"to":"cse-in","rqi":"m1","rvi":"3","fr":}"#,
        &mut out,
    );
    h.engine.device_data(&mut h.io, h.now, dev.id, &mut out);
    let got = h.recv(&mut dev);
    assert_eq!((rsc(&got[0]), rqi(&got[0])), (4015, "c1".to_string()));
    assert_eq!(rsc(&got[1]), 4000);
}

#[test]
fn a_cbor_device_is_transcoded_on_a_json_link() {
    let mut s = settings();
    s.upstream_protocols = vec!["oneM2M.json".into()];
    let mut h = Harness::new(s);
    let mut dev = h.device("oneM2M.cbor", Some("Ccbor"));
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    assert_eq!(h.cse[&l].end.format, Format::Json);
    h.send(&mut dev, &retrieve("Ccbor", "k1"));
    let up = h.cse_recv(l);
    assert_eq!(rqi(&up[0]), "k1");
    h.cse_send(l, &ok("k1", "cb"));
    let got = h.recv(&mut dev);
    assert_eq!(dev.end.format, Format::Cbor);
    assert_eq!(rsc(&got[0]), 2000);
}

#[test]
fn on_a_shared_link_a_session_cannot_speak_for_another_ae() {
    let mut h = multiplex(1);
    let mut a = named_device(&mut h, "Ca");
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.send(&mut a, &retrieve("Cb", "s1"));
    let got = h.recv(&mut a);
    assert_eq!(rsc(&got[0]), 4103);
    assert!(h.cse_recv(l).is_empty());
}

#[test]
fn the_cses_request_on_a_shared_link_is_routed_by_to_and_answered_back() {
    let mut h = multiplex(1);
    let mut a = named_device(&mut h, "Ca");
    let mut b = named_device(&mut h, "Cb");
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    let notify = json(
        r#"{"op":5,"to":"Cb","fr":"/id-in","rqi":"n1","rvi":"3","pc":{"m2m:sgn":{"vrq":true,"sur":"/id-in/sub"}}}"#,
    );
    h.cse_send(l, &notify);
    assert!(h.recv(&mut a).is_empty());
    let got = h.recv(&mut b);
    let Primitive::Request(n) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(n.rqi, "n1");
    h.send(&mut b, &json(r#"{"rsc":2000,"rqi":"n1","rvi":"3"}"#));
    let up = h.cse_recv(l);
    assert_eq!((rsc(&up[0]), rqi(&up[0])), (2000, "n1".to_string()));
    // A target that has no session here: 5103 (TS-0004: target not reachable).
    h.cse_send(
        l,
        &json(r#"{"op":5,"to":"Cgone","fr":"/id-in","rqi":"n2","rvi":"3"}"#),
    );
    let up = h.cse_recv(l);
    assert_eq!((rsc(&up[0]), rqi(&up[0])), (5103, "n2".to_string()));
}

#[test]
fn a_device_that_stops_reading_is_closed_at_the_output_bound() {
    let mut s = settings();
    s.mode = UpstreamMode::Multiplex;
    s.max_output_bytes = 4096;
    let mut h = Harness::new(s);
    let a = named_device(&mut h, "Ca");
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.io.stalled.insert(Peer::Device(a.id));
    let big = "x".repeat(1000);
    for i in 0..10 {
        let n = json(&format!(
            r#"{{"op":5,"to":"Ca","fr":"/id-in","rqi":"b{i}","rvi":"3","pc":{{"m2m:sgn":{{"sur":"{big}"}}}}}}"#
        ));
        h.cse_send(l, &n);
    }
    assert!(
        h.io.aborted.contains(&Peer::Device(a.id)),
        "closed past the bound"
    );
    assert_eq!(h.engine.devices(), 0);
    assert_eq!(
        h.counters.limits[crate::counters::LIMIT_OUTPUT_BOUND]
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Its later NOTIFYs are held for it like for any device that left (answered 1000).
    h.cse_recv(l);
    h.cse_send(
        l,
        &json(r#"{"op":5,"to":"Ca","fr":"/id-in","rqi":"b99","rvi":"3"}"#),
    );
    assert_eq!(rsc(&h.cse_recv(l)[0]), 1000);
}

#[test]
fn the_device_limit_answers_503_and_the_handshake_timeout_aborts() {
    let mut s = settings();
    s.max_devices_per_core = 1;
    let mut h = Harness::new(s);
    let first = h.engine.new_device(h.now);
    h.engine.device_accepted(&mut h.io, h.now, first);
    let second = h.engine.new_device(h.now);
    h.engine.device_accepted(&mut h.io, h.now, second);
    let answer = String::from_utf8(h.io.wire.remove(&Peer::Device(second)).unwrap()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(h.io.closed.contains(&Peer::Device(second)));
    h.advance(Duration::from_secs(10));
    assert!(
        h.io.aborted.contains(&Peer::Device(first)),
        "no handshake within the timeout"
    );
    assert_eq!(h.engine.devices(), 0);
}

#[test]
fn a_reload_applies_to_new_devices_and_leaves_the_open_ones_be() {
    let mut h = Harness::new(settings());
    let first = h.engine.new_device(h.now);
    h.engine.device_accepted(&mut h.io, h.now, first);
    let mut reloaded = settings();
    reloaded.max_devices_per_core = 1;
    reloaded.handshake_timeout = Duration::from_secs(2);
    // What a reload may not change is not taken over.
    reloaded.mode = crate::settings::UpstreamMode::Multiplex;
    reloaded.upstream_links = 9;
    h.engine.reconfigure(&reloaded);
    assert_eq!(h.engine.settings().max_devices_per_core, 1);
    assert_eq!(h.engine.settings().upstream_links, 1);
    assert_eq!(
        h.engine.settings().mode,
        crate::settings::UpstreamMode::Passthrough
    );
    // The open device stays; a second one meets the new limit.
    let second = h.engine.new_device(h.now);
    h.engine.device_accepted(&mut h.io, h.now, second);
    let answer = String::from_utf8(h.io.wire.remove(&Peer::Device(second)).unwrap()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(!h.io.closed.contains(&Peer::Device(first)));
    assert!(!h.io.aborted.contains(&Peer::Device(first)));
    assert_eq!(h.engine.devices(), 1);
}

#[test]
fn a_handshake_timeout_lengthened_by_a_reload_still_fires() {
    let mut s = settings();
    s.handshake_timeout = Duration::from_secs(2);
    let mut h = Harness::new(s.clone());
    let d = h.engine.new_device(h.now);
    h.engine.device_accepted(&mut h.io, h.now, d);
    s.handshake_timeout = Duration::from_secs(10);
    h.engine.reconfigure(&s);
    h.advance(Duration::from_secs(3));
    assert!(!h.io.aborted.contains(&Peer::Device(d)), "not due yet");
    h.advance(Duration::from_secs(8));
    assert!(
        h.io.aborted.contains(&Peer::Device(d)),
        "the timer was armed again for the new deadline"
    );
}

#[test]
fn a_frame_begun_and_not_finished_in_time_closes_the_device_1008() {
    let mut s = settings();
    s.frame_timeout = Some(Duration::from_secs(5));
    s.idle_timeout = Some(Duration::from_secs(60));
    let mut h = Harness::new(s);
    let mut slow = h.device("oneM2M.json", Some("Cslow"));
    let mut split = h.device("oneM2M.json", Some("Csplit"));
    let _ = h.recv(&mut slow);
    // A frame header's first byte now, one more byte every two seconds: never idle, never done.
    let frame = slow.end.frame(&retrieve("Cslow", "s1"));
    for i in 0..5 {
        let mut rest = frame[..=i].to_vec();
        let used = h.engine.device_data(&mut h.io, h.now, slow.id, &mut rest);
        assert_eq!(used, 0, "an unfinished frame is not consumed");
        h.advance(Duration::from_secs(2));
        if h.io.closed.contains(&Peer::Device(slow.id)) {
            break;
        }
    }
    assert!(
        h.io.closed.contains(&Peer::Device(slow.id)),
        "cut by the frame timeout"
    );
    let wire = h.io.wire.remove(&Peer::Device(slow.id)).unwrap_or_default();
    assert!(
        wire.windows(2).any(|w| w == 1008u16.to_be_bytes()),
        "closed with 1008: {wire:?}"
    );
    assert_eq!(
        h.counters.limits[crate::counters::LIMIT_FRAME_TIMEOUT]
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Frames split across reads but finished in time are fine, however many.
    for n in 0..20 {
        let frame = split.end.frame(&retrieve("Csplit", &format!("p{n}")));
        let mut head = frame[..3].to_vec();
        assert_eq!(
            h.engine.device_data(&mut h.io, h.now, split.id, &mut head),
            0
        );
        h.advance(Duration::from_secs(1));
        let mut whole = frame.clone();
        assert_eq!(
            h.engine.device_data(&mut h.io, h.now, split.id, &mut whole),
            whole.len()
        );
    }
    assert!(!h.io.closed.contains(&Peer::Device(split.id)));
    assert!(!h.io.aborted.contains(&Peer::Device(split.id)));
}

#[test]
fn a_device_that_pings_faster_than_it_reads_meets_the_output_bound() {
    let mut s = settings();
    s.max_output_bytes = 4096;
    let mut h = Harness::new(s);
    let dev = h.device("oneM2M.json", Some("Cpinger"));
    // The device never reads: what the edge writes stays unsent.
    h.io.stalled.insert(Peer::Device(dev.id));
    // Masked pings with a 16-byte payload.
    let mut ping = vec![0x89, 0x80 | 16, 1, 2, 3, 4];
    ping.extend([b'x' ^ 1, b'x' ^ 2, b'x' ^ 3, b'x' ^ 4].repeat(4));
    for _ in 0..1000 {
        if h.io.aborted.contains(&Peer::Device(dev.id)) {
            break;
        }
        let mut p = ping.clone();
        h.engine.device_data(&mut h.io, h.now, dev.id, &mut p);
    }
    assert!(
        h.io.aborted.contains(&Peer::Device(dev.id)),
        "closed at the output bound"
    );
    assert_eq!(
        h.counters.limits[crate::counters::LIMIT_OUTPUT_BOUND]
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn a_device_streaming_frames_across_reads_is_not_cut_by_the_frame_timeout() {
    // Every read ends inside the next frame (a gateway flushing a backlog): frames keep
    // finishing, so the clock restarts with each.
    let mut s = settings();
    s.frame_timeout = Some(Duration::from_secs(5));
    let mut h = Harness::new(s);
    let mut dev = h.device("oneM2M.json", Some("Cstream"));
    let mut pending: Vec<u8> = Vec::new();
    for n in 0..40 {
        pending.extend(dev.end.frame(&retrieve("Cstream", &format!("q{n}"))));
        let cut = pending.len() - 3;
        let mut read = pending[..cut].to_vec();
        let used = h.engine.device_data(&mut h.io, h.now, dev.id, &mut read);
        pending.drain(..used);
        h.advance(Duration::from_secs(1));
    }
    assert!(
        !h.io.closed.contains(&Peer::Device(dev.id)),
        "40 s of streaming, 5 s frame timeout"
    );
    assert!(!h.io.aborted.contains(&Peer::Device(dev.id)));
}

#[test]
fn a_passthrough_link_goes_with_its_device_when_nothing_is_held() {
    let mut s = settings();
    s.hold.ttl = Duration::ZERO;
    let mut h = Harness::new(s);
    let dev = h.device("oneM2M.json", Some("Cx"));
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.engine.device_closed(&mut h.io, h.now, dev.id, false);
    assert!(h.io.aborted.contains(&Peer::Link(l)));
    assert_eq!(h.engine.links(), 0);
    assert_eq!(h.engine.directory.away_len(), 0);
    let _ = Rsc::OK;
}

#[test]
fn a_passthrough_link_stays_for_the_hold_time_after_its_device_left() {
    let mut h = Harness::new(settings());
    let dev = h.device("oneM2M.json", Some("Cx"));
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.engine.device_closed(&mut h.io, h.now, dev.id, false);
    assert!(
        !h.io.aborted.contains(&Peer::Link(l)),
        "kept: the CSE routes to Cx over it"
    );
    assert_eq!(h.engine.links(), 1);
    h.advance(h.engine.settings().hold.ttl);
    assert!(
        h.io.closed.contains(&Peer::Link(l)),
        "closed after the hold time"
    );
    assert_eq!(h.engine.links(), 0);
    assert_eq!(h.engine.directory.away_len(), 0, "and Cx forgotten");
}

#[test]
fn with_identity_binding_the_handshake_origin_must_be_the_certificates() {
    let mut s = settings();
    s.bind_identity = true;
    let mut h = Harness::new(s);
    // Device B's certificate says Cb; it asks for a session as Ca.
    let d = h.engine.new_device(h.now);
    h.io.identities.insert(d, "Cb".into());
    h.engine.device_accepted(&mut h.io, h.now, d);
    let (_, mut request) =
        m2m_ws::handshake::client::ClientHandshake::new(m2m_ws::handshake::client::ClientOptions {
            host: "edge".into(),
            path: "/".into(),
            protocols: vec!["oneM2M.json".into()],
            deflate: None,
            extra_headers: vec![("X-M2M-Origin".into(), "Ca".into())],
        });
    h.engine.device_data(&mut h.io, h.now, d, &mut request);
    let answer = String::from_utf8(h.io.wire.remove(&Peer::Device(d)).unwrap()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(h.io.closed.contains(&Peer::Device(d)));
    assert!(h.links_asked().is_empty(), "no link was opened as Ca");
    assert_eq!(h.engine.devices(), 0);
}

#[test]
fn a_newer_session_of_an_originator_takes_over_and_the_older_is_closed() {
    let mut h = multiplex(1);
    let mut old = named_device(&mut h, "Cv");
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    // The device reconnects while its old session is still up (half dead, say).
    let mut new = named_device(&mut h, "Cv");
    h.recv(&mut old);
    assert_eq!(
        old.end.closed,
        Some(1000),
        "the older session is closed with 1000"
    );
    assert!(h.io.closed.contains(&Peer::Device(old.id)));
    // NOTIFYs go to the live one, and only it can answer them.
    h.cse_send(
        l,
        &json(r#"{"op":5,"to":"Cv","fr":"/id-in","rqi":"n1","rvi":"3"}"#),
    );
    assert_eq!(rqi(&h.recv(&mut new)[0]), "n1");
    let mut other = named_device(&mut h, "Co");
    h.send(&mut other, &json(r#"{"rsc":2000,"rqi":"n1","rvi":"3"}"#));
    assert!(
        h.cse_recv(l).is_empty(),
        "an answer to another device's request is dropped"
    );
    h.send(&mut new, &json(r#"{"rsc":2000,"rqi":"n1","rvi":"3"}"#));
    assert_eq!(rqi(&h.cse_recv(l)[0]), "n1");
    // Without fr on the shared link once bound: 4103 (the CSE would take it as the edge's).
    h.send(
        &mut new,
        &json(r#"{"op":2,"to":"cse-in","rqi":"nofr","rvi":"3"}"#),
    );
    assert_eq!(rsc(&h.recv(&mut new)[0]), 4103);
}

#[test]
fn a_takeover_on_another_core_closes_the_session_there() {
    let (mut core0, mut core1) = two_cores(multiplex(1).engine.settings().clone());
    let mut old = named_device(&mut core0, "Cm");
    let _new = named_device(&mut core1, "Cm");
    let (to, env) = core1.io.posted.pop().expect("core 0 is told");
    assert_eq!(to, 0);
    core0.engine.message(&mut core0.io, core0.now, env);
    core0.recv(&mut old);
    assert_eq!(old.end.closed, Some(1000));
    assert_eq!(core0.engine.devices(), 0);
}

#[test]
fn a_rewritten_rqi_never_replaces_another_request_in_flight() {
    let mut h = multiplex(1);
    let mut a = named_device(&mut h, "Ca");
    let mut b = named_device(&mut h, "Cb");
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.send(&mut a, &retrieve("Ca", "r"));
    h.send(&mut a, &retrieve("Ca", "r~edge1"));
    h.send(&mut b, &retrieve("Cb", "r"));
    let up: Vec<String> = h.cse_recv(l).iter().map(rqi).collect();
    assert_eq!(up.len(), 3);
    let unique: std::collections::HashSet<_> = up.iter().collect();
    assert_eq!(unique.len(), 3, "{up:?}");
    for r in &up {
        h.cse_send(l, &ok(r, r));
    }
    let got_a: Vec<String> = h.recv(&mut a).iter().map(rqi).collect();
    let got_b: Vec<String> = h.recv(&mut b).iter().map(rqi).collect();
    assert_eq!(got_a, ["r", "r~edge1"]);
    assert_eq!(got_b, ["r"]);
}

#[test]
fn queued_requests_expire_by_timer_while_the_link_stays_busy() {
    let mut h = Harness::new(settings());
    let mut dev = h.device("oneM2M.json", Some("Cq"));
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.send(&mut dev, &retrieve("Cq", "busy"));
    h.advance(Duration::from_secs(1));
    // rqet 2 s: this one must be answered 4008 at its own expiry, while still queued.
    h.send(
        &mut dev,
        &json(r#"{"op":2,"to":"cse-in","fr":"Cq","rqi":"short","rvi":"3","rqet":"PT2S"}"#),
    );
    assert_eq!(h.cse_recv(l).len(), 1);
    h.advance(Duration::from_millis(2100));
    let got = h.recv(&mut dev);
    assert_eq!((rsc(&got[0]), rqi(&got[0])), (4008, "short".to_string()));
    assert!(
        h.cse_recv(l).is_empty(),
        "the expired request never went up"
    );
}

/// Two engines of one process (cores 0 and 1) sharing one directory.
pub(crate) fn two_cores(s: crate::RelaySettings) -> (Harness, Harness) {
    let directory = std::sync::Arc::new(crate::Directory::default());
    let mut core0 = Harness::new(s.clone());
    let mut core1 = Harness::new(s);
    core0.engine = crate::Engine::new(core0.engine.settings().clone(), core0.counters.clone())
        .with_directory(directory.clone());
    core1.engine = crate::Engine::new(core1.engine.settings().clone(), core1.counters.clone())
        .on_core(1)
        .with_directory(directory);
    (core0, core1)
}

pub(crate) fn with_notify(links: usize) -> Harness {
    let mut h = multiplex(links);
    h.engine.s.notify_url = Some("ws://127.0.0.1:9001/".into());
    h
}

#[test]
fn a_notify_on_the_listener_reaches_its_device_and_the_answer_goes_back_on_it() {
    let mut h = with_notify(1);
    let mut a = named_device(&mut h, "Ca");
    h.cse_accept_all();
    let (n, mut cse) = h
        .notify_connect("127.0.0.1", "/id-in")
        .expect("the CSE may connect");
    let notify = json(
        r#"{"op":5,"to":"Ca","fr":"/id-in","rqi":"n1","rvi":"3","pc":{"m2m:sgn":{"sur":"/id-in/sub"}}}"#,
    );
    h.notify_send(n, &mut cse, &notify);
    let got = h.recv(&mut a);
    assert_eq!(rqi(&got[0]), "n1");
    h.send(&mut a, &json(r#"{"rsc":2000,"rqi":"n1","rvi":"3"}"#));
    let back = h.notify_recv(n, &mut cse);
    assert_eq!((rsc(&back[0]), rqi(&back[0])), (2000, "n1".to_string()));
    // A device that is not here: 5103 on the same connection.
    h.notify_send(
        n,
        &mut cse,
        &json(r#"{"op":5,"to":"/id-in/Cgone","fr":"/id-in","rqi":"n2","rvi":"3"}"#),
    );
    let back = h.notify_recv(n, &mut cse);
    assert_eq!((rsc(&back[0]), rqi(&back[0])), (5103, "n2".to_string()));
}

#[test]
fn only_the_configured_cse_may_use_the_notify_listener() {
    let mut h = with_notify(1);
    assert!(
        h.notify_connect("10.1.2.3", "/id-in").is_none(),
        "another address"
    );
    h.engine.s.notify_allow_origins = vec!["/id-in".into()];
    assert!(
        h.notify_connect("127.0.0.1", "/id-other").is_none(),
        "another CSE-ID"
    );
    assert!(h.notify_connect("127.0.0.1", "/id-in").is_some());
}

#[test]
fn a_notify_for_a_device_on_another_core_is_posted_there_and_answered_back() {
    let (mut core0, mut core1) = two_cores(with_notify(1).engine.settings().clone());
    let mut b = named_device(&mut core1, "Cb");
    let (n, mut cse) = core0.notify_connect("127.0.0.1", "/id-in").unwrap();
    core0.notify_send(
        n,
        &mut cse,
        &json(r#"{"op":5,"to":"Cb","fr":"/id-in","rqi":"x1","rvi":"3"}"#),
    );
    let (to, env) = core0
        .io
        .posted
        .pop()
        .expect("posted to the core that holds Cb");
    assert_eq!(to, 1);
    core1.engine.message(&mut core1.io, core1.now, env);
    assert_eq!(rqi(&core1.recv(&mut b)[0]), "x1");
    core1.send(&mut b, &json(r#"{"rsc":2000,"rqi":"x1","rvi":"3"}"#));
    let (to, env) = core1
        .io
        .posted
        .pop()
        .expect("the answer goes back to core 0");
    assert_eq!(to, 0);
    core0.engine.message(&mut core0.io, core0.now, env);
    let back = core0.notify_recv(n, &mut cse);
    assert_eq!((rsc(&back[0]), rqi(&back[0])), (2000, "x1".to_string()));
}

#[test]
fn registration_poa_points_at_the_edge_and_the_device_sees_what_it_set() {
    let mut h = with_notify(1);
    let mut dev = h.device("oneM2M.json", None);
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.send(
        &mut dev,
        &json(r#"{"op":1,"to":"cse-in","fr":"Cp","rqi":"p1","rvi":"3","ty":2,"pc":{"m2m:ae":{"rn":"p","api":"Np","rr":true,"srv":["3"],"poa":["ws://default"]}}}"#),
    );
    let up = h.cse_recv(l);
    let text = format!("{:?}", up[0]);
    assert!(
        text.contains("ws://127.0.0.1:9001/Cp") && !text.contains("ws://default"),
        "{text}"
    );
    h.cse_send(
        l,
        &json(r#"{"rsc":2001,"rqi":"p1","rvi":"3","pc":{"m2m:ae":{"rn":"p","aei":"Cp","api":"Np","rr":true,"poa":["ws://127.0.0.1:9001/Cp"]}}}"#),
    );
    let got = h.recv(&mut dev);
    let text = format!("{:?}", got[0]);
    assert!(
        text.contains("ws://default") && !text.contains("9001"),
        "{text}"
    );
}

#[test]
fn an_update_of_the_poa_is_pointed_at_the_edge_too_and_other_requests_are_left_alone() {
    let mut h = with_notify(1);
    let mut dev = named_device(&mut h, "Cu");
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.send(
        &mut dev,
        &json(r#"{"op":3,"to":"cse-in/Cu","fr":"Cu","rqi":"u1","rvi":"3","pc":{"m2m:ae":{"poa":["ws://default","http://10.0.0.9/x"]}}}"#),
    );
    let text = format!("{:?}", h.cse_recv(l)[0]);
    assert!(
        text.contains("ws://127.0.0.1:9001/Cu") && text.contains("http://10.0.0.9/x"),
        "{text}"
    );
    // A container create that happens to carry a poa-like label is not touched.
    h.send(
        &mut dev,
        &json(r#"{"op":1,"to":"cse-in/Cu","fr":"Cu","rqi":"u2","rvi":"3","ty":3,"pc":{"m2m:cnt":{"rn":"c","lbl":["ws://default"]}}}"#),
    );
    let text = format!("{:?}", h.cse_recv(l)[0]);
    assert!(
        text.contains("ws://default") && !text.contains("9001"),
        "{text}"
    );
}

#[test]
fn a_device_that_leaves_owing_answers_gets_them_answered_5103() {
    let mut h = with_notify(1);
    let a = named_device(&mut h, "Ca");
    h.cse_accept_all();
    let (n, mut cse) = h.notify_connect("127.0.0.1", "/id-in").unwrap();
    h.notify_send(
        n,
        &mut cse,
        &json(r#"{"op":5,"to":"Ca","fr":"/id-in","rqi":"o1","rvi":"3"}"#),
    );
    h.engine.device_closed(&mut h.io, h.now, a.id, false);
    let back = h.notify_recv(n, &mut cse);
    assert_eq!(
        (rsc(&back[0]), rqi(&back[0])),
        (5103, "o1".to_string()),
        "not the CSE's own timeout"
    );
}

#[test]
fn an_older_sessions_late_registration_does_not_evict_a_newer_session() {
    let mut h = multiplex(1);
    let mut old = h.device("oneM2M.json", None);
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.send(&mut old, &registration("Cx", "r1"));
    assert_eq!(h.cse_recv(l).len(), 1);
    // The device gives up and reconnects, naming itself, before the CSE answers the first session.
    h.advance(Duration::from_millis(10));
    let mut new = named_device(&mut h, "Cx");
    h.cse_send(l, &created("r1", "Cx"));
    assert_eq!(rsc(&h.recv(&mut old)[0]), 2001);
    assert!(
        !h.io.closed.contains(&Peer::Device(new.id)),
        "the newer session stays"
    );
    h.cse_send(
        l,
        &json(r#"{"op":5,"to":"Cx","fr":"/id-in","rqi":"n1","rvi":"3"}"#),
    );
    assert_eq!(
        rqi(&h.recv(&mut new)[0]),
        "n1",
        "NOTIFYs go to the newer session"
    );
}

#[test]
fn deregistration_and_session_end_release_the_directory() {
    let directory = std::sync::Arc::new(crate::Directory::default());
    let mut h = multiplex(1);
    let s = h.engine.settings().clone();
    h.engine = crate::Engine::new(s, h.counters.clone()).with_directory(directory.clone());
    let mut a = h.device("oneM2M.json", None);
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.send(&mut a, &registration("Cd", "r1"));
    h.cse_recv(l);
    h.cse_send(l, &created("r1", "Cd"));
    h.recv(&mut a);
    assert_eq!(directory.len(), 1);
    h.send(
        &mut a,
        &json(r#"{"op":4,"to":"cse-in/Cd","fr":"Cd","rqi":"r2","rvi":"3"}"#),
    );
    h.cse_recv(l);
    h.cse_send(l, &json(r#"{"rsc":2002,"rqi":"r2","rvi":"3"}"#));
    h.recv(&mut a);
    assert!(
        directory.is_empty(),
        "deregistration releases the originator"
    );
    let b = named_device(&mut h, "Ce");
    assert_eq!(directory.len(), 1);
    h.engine.device_closed(&mut h.io, h.now, b.id, false);
    assert!(directory.is_empty(), "so does the end of the session");
}

/// Memory per idle device: a session and its passthrough link are what every device costs (the
/// runtime's connections aside). Guards against growth; DESIGN.md has the measured heap per device.
#[test]
fn an_idle_sessions_state_stays_small() {
    // 296/296 since liveness (a pending ping per connection, the link's last input) and holding
    // (an orphaned link's originator, a session waiting for its held requests); the session 304
    // since the frame timeout (when a frame began, packed into four bytes, and its timer's flag).
    assert!(std::mem::size_of::<crate::device::Session>() <= 304);
    assert!(std::mem::size_of::<crate::link::Link>() <= 296);
}

#[test]
fn a_busy_link_keeps_its_table_and_an_idle_one_gives_it_back() {
    let mut h = Harness::new(settings());
    let mut dev = h.device("oneM2M.json", Some("Ci"));
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    h.send(&mut dev, &retrieve("Ci", "i1"));
    h.cse_recv(l);
    h.cse_send(l, &ok("i1", "x"));
    assert_eq!(rsc(&h.recv(&mut dev)[0]), 2000);
    let capacity = |h: &Harness| h.engine.link(l).unwrap().pending.capacity();
    assert!(
        capacity(&h) > 0,
        "kept while the link is busy: no allocation per request"
    );
    h.advance(Duration::from_secs(10));
    assert_eq!(
        capacity(&h),
        0,
        "given back once the request timer finds it idle"
    );
}

#[test]
fn a_full_device_queue_is_answered_at_once_and_nothing_more_is_kept() {
    let mut s = settings();
    s.max_queued = 2;
    let mut h = Harness::new(s);
    let mut dev = h.device("oneM2M.json", Some("Cf"));
    let [l] = h.cse_accept_all()[..] else {
        panic!()
    };
    for i in 0..4 {
        h.send(&mut dev, &retrieve("Cf", &format!("f{i}")));
    }
    // One in flight, two queued, the fourth refused: 5207 NOT_ACCEPTABLE (the edge will not take
    // more now), not 5103 (which would say the target is unreachable).
    let got = h.recv(&mut dev);
    assert_eq!((rsc(&got[0]), rqi(&got[0])), (5207, "f3".to_string()));
    assert_eq!(
        h.counters.limits[crate::counters::LIMIT_QUEUE_FULL]
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    for i in 0..3 {
        let up = h.cse_recv(l);
        assert_eq!(rqi(&up[0]), format!("f{i}"));
        h.cse_send(l, &ok(&format!("f{i}"), "x"));
    }
    assert_eq!(h.recv(&mut dev).len(), 3);
}

#[test]
fn a_device_owes_at_most_a_bounded_number_of_answers() {
    let mut h = with_notify(1);
    let mut a = named_device(&mut h, "Ca");
    h.cse_accept_all();
    let (n, mut cse) = h.notify_connect("127.0.0.1", "/id-in").unwrap();
    for i in 0..65 {
        h.notify_send(
            n,
            &mut cse,
            &json(&format!(
                r#"{{"op":5,"to":"Ca","fr":"/id-in","rqi":"b{i}","rvi":"3"}}"#
            )),
        );
    }
    assert_eq!(h.recv(&mut a).len(), 65);
    assert_eq!(h.engine.session(a.id).unwrap().owed.len(), 64, "bounded");
    // The oldest was given up and answered 5103 for the device (the CSE does not wait for it).
    let back = h.notify_recv(n, &mut cse);
    assert_eq!((rsc(&back[0]), rqi(&back[0])), (5103, "b0".to_string()));
    // Its late answer is dropped; the newest still goes back.
    h.send(&mut a, &json(r#"{"rsc":2000,"rqi":"b0","rvi":"3"}"#));
    h.send(&mut a, &json(r#"{"rsc":2000,"rqi":"b64","rvi":"3"}"#));
    let back = h.notify_recv(n, &mut cse);
    assert_eq!(back.len(), 1);
    assert_eq!(rqi(&back[0]), "b64");
}
