//! Allocations per relayed primitive, counted exactly: the engine's part of the hot path is
//! measured call by call (the harness's own encoding and decoding stay outside the count), with
//! the runtime's counting allocator as this test binary's global allocator.

use m2m_primitive::Primitive;
use m2m_rt::heap::{Counting, thread_allocations};

use crate::Peer;
use crate::testing::{Harness, json};
use crate::tests::{multiplex, named_device, ok};

#[global_allocator]
static COUNTED: Counting<std::alloc::System> = Counting(std::alloc::System);

/// Relay `n` requests of one device and their answers; the engine's allocations per round trip.
fn allocations_per_round_trip(h: &mut Harness, n: usize) -> f64 {
    let mut dev = named_device(h, "Cdev");
    let [l] = h.cse_accept_all()[..] else {
        panic!("one shared link")
    };
    let link = Peer::Link(l);
    let device = Peer::Device(dev.id);
    let mut engine_allocations = 0;
    for i in 0..n + 50 {
        let request = json(&format!(
            r#"{{"op":2,"to":"cse-in/Cdev/cnt","fr":"Cdev","rqi":"q{i}","rvi":"3"}}"#
        ));
        let mut bytes = dev.end.frame(&request);
        let before = thread_allocations();
        h.engine.device_data(&mut h.io, h.now, dev.id, &mut bytes);
        let request_allocations = thread_allocations() - before;
        // What went up, read by the CSE (outside the count); the wire keeps its capacity.
        let up = std::mem::take(h.io.wire.get_mut(&link).expect("sent up"));
        let got = h.cse.get_mut(&l).unwrap().end.read(&up);
        h.io.wire.insert(link, {
            let mut v = up;
            v.clear();
            v
        });
        let Some(Primitive::Request(r)) = got.first() else {
            panic!("a request upstream, got {got:?}")
        };
        let mut answer = h.cse.get_mut(&l).unwrap().end.frame(&ok(&r.rqi, "x"));
        let before = thread_allocations();
        h.engine.link_data(&mut h.io, h.now, l, &mut answer);
        let response_allocations = thread_allocations() - before;
        let down = std::mem::take(h.io.wire.get_mut(&device).expect("sent down"));
        assert_eq!(dev.end.read(&down).len(), 1);
        h.io.wire.insert(device, {
            let mut v = down;
            v.clear();
            v
        });
        // The first rounds size the tables; count the rest.
        if i >= 50 {
            engine_allocations += request_allocations + response_allocations;
        }
    }
    engine_allocations as f64 / n as f64
}

/// None at all (with an `rqi` of up to 24 bytes, kept inline as the key of the request in its
/// link's table). Anything more is a new allocation on the hot path: find it and remove it, or
/// raise the bound here with the reason.
#[test]
fn relaying_a_request_and_its_answer_allocates_nothing() {
    for (mode, mut h) in [
        ("multiplex", multiplex(1)),
        ("passthrough", Harness::new(crate::testing::settings())),
    ] {
        let per = allocations_per_round_trip(&mut h, 1000);
        eprintln!("engine allocations per request and answer ({mode}): {per:.2}");
        assert!(per == 0.0, "{mode}: {per} allocations per round trip");
    }
}
