//! Random sequences of device, CSE, link and timer events against two cores' engines, checking what
//! must hold whatever the order:
//! - a device is never answered a request it did not send, and never twice;
//! - every request of a device that stays connected is answered exactly once by the end;
//! - every request the CSE sends is answered at most once, and exactly once when the connection it
//!   came on survives (by the device, or by the edge: 1000 held, 5103, 4008);
//! - nothing is left held or owed once the hold time has passed.
//!
//! Deterministic (seeded) so a failure replays; the seeds run in `cargo test`, and the fuzzer drives
//! the same world with its own bytes (feature `fuzzing`, [`fuzz_events`]).

use std::collections::HashMap;
use std::time::Duration;

use m2m_primitive::Primitive;

use crate::settings::UpstreamMode;
use crate::testing::{Dev, End, Harness, json, settings};
use crate::tests::{ok, retrieve, two_cores};
use crate::{LinkId, NotifyId};

/// Where the sequence's choices come from: xorshift64* for the seeded tests (enough randomness for
/// event choice, no dependency), or the fuzzer's bytes (one per choice; none left: 0).
enum Rng<'a> {
    Xor(u64),
    Bytes(&'a [u8]),
}

impl Rng<'_> {
    fn below(&mut self, n: usize) -> usize {
        match self {
            Rng::Xor(s) => {
                *s ^= *s >> 12;
                *s ^= *s << 25;
                *s ^= *s >> 27;
                (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
            }
            Rng::Bytes(b) => match b.split_first() {
                Some((&x, rest)) => {
                    *b = rest;
                    x as usize % n.max(1)
                }
                None => 0,
            },
        }
    }

    fn exhausted(&self) -> bool {
        matches!(self, Rng::Bytes(b) if b.is_empty())
    }
}

const DEVICES: usize = 6;

/// The connection a request of the CSE came on: the core and its link (none: the notify listener).
type Conn = (usize, Option<LinkId>);

/// The world: two cores, the devices (core, session) that are connected, what was sent and answered.
struct World {
    cores: [Harness; 2],
    devices: Vec<Option<(usize, Dev)>>,
    /// Per device request rqi: times answered, and whether the session that sent it is still there.
    requests: HashMap<String, (u32, bool)>,
    /// Per CSE request rqi: times answered, and whether the connection it came on is still there.
    notifies: HashMap<String, (u32, bool, Conn)>,
    /// Device requests the CSE has not answered yet: core, link, rqi.
    at_cse: Vec<(usize, LinkId, String)>,
    notify_conns: [Option<(NotifyId, End)>; 2],
    next: usize,
}

impl World {
    fn new(multiplex: bool) -> Self {
        let mut s = settings();
        if multiplex {
            s.mode = UpstreamMode::Multiplex;
            s.max_in_flight = 4;
            s.notify_url = Some("ws://127.0.0.1:9001/".into());
        }
        s.hold.ttl = Duration::from_secs(20);
        let (a, b) = two_cores(s);
        Self {
            cores: [a, b],
            devices: (0..DEVICES).map(|_| None).collect(),
            requests: HashMap::new(),
            notifies: HashMap::new(),
            at_cse: Vec::new(),
            notify_conns: [None, None],
            next: 0,
        }
    }

    fn multiplex(&self) -> bool {
        self.cores[0].engine.settings().mode == UpstreamMode::Multiplex
    }

    /// Carry the envelopes the cores posted to each other until none is left.
    fn mail(&mut self) {
        loop {
            let mut moved = false;
            for from in 0..2 {
                let posted = std::mem::take(&mut self.cores[from].io.posted);
                for (to, env) in posted {
                    moved = true;
                    let h = &mut self.cores[to];
                    h.engine.message(&mut h.io, h.now, env);
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Every device reads what it got: responses are checked and counted, the CSE's requests answered.
    /// `lazy`: each device reads with probability 3/4 (so some leave with NOTIFYs unanswered).
    fn devices_read(&mut self, lazy: Option<&mut Rng<'_>>) {
        let mut lazy = lazy;
        for i in 0..DEVICES {
            if lazy.as_mut().is_some_and(|r| r.below(4) == 0) {
                continue;
            }
            let Some((core, mut dev)) = self.devices[i].take() else {
                continue;
            };
            let got = self.cores[core].recv(&mut dev);
            for p in got {
                match p {
                    Primitive::Response(r) => {
                        let id = r.rqi.clone().unwrap_or_default();
                        assert!(
                            id.starts_with(&format!("d{i}-")),
                            "device {i} got an answer to {id}, which it never sent"
                        );
                        let entry = self.requests.get_mut(&id).expect("a request it sent");
                        entry.0 += 1;
                        assert!(entry.0 <= 1, "{id} answered twice");
                    }
                    Primitive::Request(r) => {
                        let answer =
                            json(&format!(r#"{{"rsc":2000,"rqi":"{}","rvi":"3"}}"#, r.rqi));
                        self.cores[core].send(&mut dev, &answer);
                    }
                }
            }
            if self.cores[core].engine.session(dev.id).is_some() {
                self.devices[i] = Some((core, dev));
            } else {
                self.session_gone(i);
            }
        }
    }

    /// Device `i`'s session ended: its unanswered requests need no answer any more.
    fn session_gone(&mut self, i: usize) {
        let prefix = format!("d{i}-");
        for (id, entry) in self.requests.iter_mut() {
            if id.starts_with(&prefix) {
                entry.1 = false;
            }
        }
    }

    /// The CSE reads every link and notify connection: device requests queue for an answer, its own
    /// requests' answers are counted.
    fn cse_reads(&mut self) {
        for core in 0..2 {
            let links: Vec<LinkId> = self.cores[core].cse.keys().copied().collect();
            for l in links {
                for p in self.cores[core].cse_recv(l) {
                    self.cse_got(core, Some(l), p);
                }
            }
            if let Some((n, mut end)) = self.notify_conns[core].take() {
                for p in self.cores[core].notify_recv(n, &mut end) {
                    self.cse_got(core, None, p);
                }
                self.notify_conns[core] = Some((n, end));
            }
        }
    }

    fn cse_got(&mut self, core: usize, link: Option<LinkId>, p: Primitive) {
        match p {
            Primitive::Request(r) => {
                if let Some(l) = link {
                    self.at_cse.push((core, l, r.rqi));
                }
            }
            Primitive::Response(r) => {
                let id = r.rqi.clone().unwrap_or_default();
                let entry = self
                    .notifies
                    .get_mut(&id)
                    .unwrap_or_else(|| panic!("an answer to {id}, never sent"));
                entry.0 += 1;
                assert!(entry.0 <= 1, "the CSE's {id} answered twice");
                assert_eq!(entry.2, (core, link), "{id} answered on another connection");
            }
        }
    }

    fn step(&mut self, rng: &mut Rng<'_>) {
        let i = rng.below(DEVICES);
        match rng.below(10) {
            0 if self.devices[i].is_none() => {
                let core = rng.below(2);
                let dev = self.cores[core].device("oneM2M.json", Some(&format!("C{i}")));
                // A newer session of the same originator closes the older one.
                for j in 0..DEVICES {
                    if let Some((c, d)) = &self.devices[j]
                        && self.cores[*c].engine.session(d.id).is_none()
                    {
                        self.devices[j] = None;
                        self.session_gone(j);
                    }
                }
                self.devices[i] = Some((core, dev));
            }
            1 | 2 => {
                if let Some((core, mut dev)) = self.devices[i].take() {
                    self.next += 1;
                    let id = format!("d{i}-{}", self.next);
                    self.requests.insert(id.clone(), (0, true));
                    self.cores[core].send(&mut dev, &retrieve(&format!("C{i}"), &id));
                    self.devices[i] = Some((core, dev));
                }
            }
            3 => {
                if let Some((core, dev)) = self.devices[i].take() {
                    let h = &mut self.cores[core];
                    h.engine.device_closed(&mut h.io, h.now, dev.id, false);
                    self.session_gone(i);
                }
            }
            4 | 5 if !self.at_cse.is_empty() => {
                let (core, l, id) = self.at_cse.swap_remove(rng.below(self.at_cse.len()));
                if self.cores[core].cse.contains_key(&l) {
                    self.cores[core].cse_send(l, &ok(&id, "x"));
                }
            }
            6 => self.cse_notifies(rng, i),
            7 => {
                let by = Duration::from_millis(rng.below(3000) as u64);
                for h in &mut self.cores {
                    h.advance(by);
                }
            }
            8 if rng.below(4) == 0 => {
                let core = rng.below(2);
                let links: Vec<LinkId> = self.cores[core].cse.keys().copied().collect();
                if !links.is_empty() {
                    let l = links[rng.below(links.len())];
                    self.cores[core].cse_drop(l);
                    for entry in self.notifies.values_mut() {
                        if entry.2 == (core, Some(l)) {
                            entry.1 = false;
                        }
                    }
                }
            }
            _ => {}
        }
        self.settle(Some(rng));
    }

    /// Links accepted, mail carried, devices and the CSE read what they got; a CSE request whose
    /// connection the edge closed needs no answer any more.
    fn settle(&mut self, lazy: Option<&mut Rng<'_>>) {
        self.links_gone();
        for h in &mut self.cores {
            h.cse_accept_all();
        }
        self.mail();
        self.devices_read(lazy);
        self.mail();
        self.cse_reads();
        self.links_gone();
    }

    fn links_gone(&mut self) {
        for entry in self.notifies.values_mut() {
            if let (core, Some(l)) = entry.2 {
                let h = &self.cores[core];
                let peer = crate::Peer::Link(l);
                let open = h.engine.link(l).is_some_and(|k| k.is_open());
                if !open || h.io.closed.contains(&peer) || h.io.aborted.contains(&peer) {
                    entry.1 = false;
                }
            }
        }
    }

    /// The CSE sends a NOTIFY for device `i`: multiplex on a notify connection, passthrough on the
    /// link that carries the device's origin (if any).
    fn cse_notifies(&mut self, rng: &mut Rng<'_>, i: usize) {
        self.next += 1;
        let id = format!("n{}", self.next);
        let p = json(&format!(
            r#"{{"op":5,"to":"C{i}","fr":"/id-in","rqi":"{id}","rvi":"3","pc":{{"m2m:sgn":{{"sur":"s"}}}}}}"#
        ));
        let core = rng.below(2);
        if self.multiplex() {
            if self.notify_conns[core].is_none() {
                self.notify_conns[core] = self.cores[core].notify_connect("127.0.0.1", "/id-in");
            }
            let (n, mut end) = self.notify_conns[core].take().expect("allowed");
            self.notifies.insert(id, (0, true, (core, None)));
            self.cores[core].notify_send(n, &mut end, &p);
            self.notify_conns[core] = Some((n, end));
            return;
        }
        let origin = format!("C{i}");
        let link = (0..2).find_map(|c| {
            self.cores[c]
                .cse
                .iter()
                .find(|(_, k)| k.origin.as_deref() == Some(origin.as_str()))
                .map(|(l, _)| (c, *l))
        });
        let open =
            |e: &Self, c: usize, l: LinkId| e.cores[c].engine.link(l).is_some_and(|k| k.is_open());
        if let Some((c, l)) = link.filter(|&(c, l)| open(self, c, l)) {
            self.notifies.insert(id, (0, true, (c, Some(l))));
            self.cores[c].cse_send(l, &p);
        }
    }

    /// Let every timeout and the hold time pass, then check the end state.
    fn finish(mut self) {
        // First without time passing: everyone reads and answers what they have. Every request of
        // the CSE must be answered now, while its connection lives (a kept passthrough link closes
        // only later, at the hold time).
        for _ in 0..3 {
            for (core, l, id) in std::mem::take(&mut self.at_cse) {
                if self.cores[core].cse.contains_key(&l) {
                    self.cores[core].cse_send(l, &ok(&id, "x"));
                }
            }
            self.settle(None);
        }
        for (id, (n, live, _)) in &self.notifies {
            if *live {
                assert_eq!(*n, 1, "the CSE's {id} answered {n} times");
            }
        }
        for _ in 0..8 {
            for h in &mut self.cores {
                h.advance(Duration::from_secs(6));
                h.cse_accept_all();
            }
            // The CSE answers what is still waiting.
            for (core, l, id) in std::mem::take(&mut self.at_cse) {
                if self.cores[core].cse.contains_key(&l) {
                    self.cores[core].cse_send(l, &ok(&id, "x"));
                }
            }
            self.settle(None);
        }
        for (id, (n, live)) in &self.requests {
            if *live {
                assert_eq!(*n, 1, "{id} of a connected device answered {n} times");
            }
        }
        for (id, (n, live, _)) in &self.notifies {
            if *live {
                assert_eq!(*n, 1, "the CSE's {id} answered {n} times");
            }
        }
        for h in &self.cores {
            assert_eq!(
                h.counters.held[0].load(std::sync::atomic::Ordering::Relaxed),
                0
            );
            assert_eq!(h.engine.directory.away_len(), 0, "away devices forgotten");
        }
    }
}

/// The fuzz target's entry (`fuzz/fuzz_targets/relay_events.rs`): the first byte picks the mode,
/// each further byte one choice of the sequence (at most 400 steps); panics when an invariant
/// breaks.
pub fn fuzz_events(data: &[u8]) {
    let multiplex = data.first().is_some_and(|b| b & 1 == 1);
    let mut rng = Rng::Bytes(data.get(1..).unwrap_or_default());
    let mut world = World::new(multiplex);
    for _ in 0..400 {
        if rng.exhausted() {
            break;
        }
        world.step(&mut rng);
    }
    world.finish();
}

fn run(seed: u64, multiplex: bool) {
    let mut rng = Rng::Xor(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut world = World::new(multiplex);
    for _ in 0..400 {
        world.step(&mut rng);
    }
    world.finish();
}

#[test]
fn random_sequences_keep_the_invariants_in_multiplex_mode() {
    for seed in 1..=40 {
        run(seed, true);
    }
}

#[test]
fn random_sequences_keep_the_invariants_in_passthrough_mode() {
    for seed in 1..=40 {
        run(seed, false);
    }
}

#[test]
fn byte_driven_sequences_keep_the_invariants() {
    // The fuzzer's path, with bytes from the seeded generator (both modes) and the checked-in seeds.
    for seed in 1..=20u64 {
        let mut rng = Rng::Xor(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let bytes: Vec<u8> = (0..900).map(|_| rng.below(256) as u8).collect();
        fuzz_events(&bytes);
    }
    let seeds =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/relay_events");
    for entry in std::fs::read_dir(&seeds).into_iter().flatten().flatten() {
        fuzz_events(&std::fs::read(entry.path()).unwrap());
    }
}
