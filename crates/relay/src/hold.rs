//! Holding: requests of the CSE (NOTIFYs and others) for a registered device that is not connected,
//! kept per originator in arrival order until the device comes back or each one expires (its own
//! `rqet`, else the hold TTL). TS-0020 (draft clause 5.2, V3 §6.5) asks the sending side to buffer
//! such primitives; ACME does not, so the edge does it in front of it.
//!
//! The store sits behind [`HoldStore`] so that a durable store can replace the in-memory one
//! ([`MemoryHold`]) without touching the engine: the engine decides *what* is held and *when* it is
//! delivered or answered; the store only keeps bytes within its bounds and says what it dropped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use m2m_primitive::Format;
use rustc_hash::FxHashMap;

/// One request of the CSE kept for a device, in the serialization it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPrimitive {
    pub bytes: Vec<u8>,
    pub format: Format,
    /// When it is dropped if the device has not come back.
    pub expires: Instant,
}

/// The bounds of the hold, per device and per core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldLimits {
    /// How long a primitive without `rqet` is kept (zero: holding is off).
    pub ttl: Duration,
    /// Primitives kept per device.
    pub max_per_device: usize,
    /// Bytes kept per device.
    pub max_bytes_per_device: usize,
    /// Bytes kept by one core for all its devices.
    pub max_bytes_per_core: usize,
}

impl Default for HoldLimits {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(600),
            max_per_device: 100,
            max_bytes_per_device: 256 << 10,
            max_bytes_per_core: 64 << 20,
        }
    }
}

impl HoldLimits {
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.max_per_device > 0
    }
}

/// Where held primitives live. Every method is called by one core's engine; a store shared by
/// cores (or on disk) synchronises itself.
pub trait HoldStore: Send + std::fmt::Debug {
    /// Keep `p` for `origin` after what is already held for it. Returns what was dropped to stay
    /// within the bounds, oldest first (possibly `p` itself, when it alone is over a bound).
    fn hold(&mut self, origin: &str, p: HeldPrimitive) -> Vec<HeldPrimitive>;

    /// Everything held for `origin`, in arrival order, removed from the store.
    fn take(&mut self, origin: &str) -> Vec<HeldPrimitive>;

    /// Remove and return every primitive whose expiry is at or before `now`.
    fn expire(&mut self, now: Instant) -> Vec<HeldPrimitive>;

    /// The earliest expiry of anything held.
    fn next_expiry(&self) -> Option<Instant>;

    /// Whether anything is held for `origin`.
    fn holds(&self, origin: &str) -> bool;

    /// Primitives and bytes held now.
    fn size(&self) -> (usize, usize);
}

/// The in-memory store: a queue per originator, an index by expiry and one by age (a sequence
/// number), so that hold, take, expiry and eviction of the oldest are each O(log n).
#[derive(Debug)]
pub struct MemoryHold {
    limits: HoldLimits,
    by_origin: FxHashMap<Box<str>, Queue>,
    /// Sequence number → originator and expiry, oldest first (eviction under the core's budget).
    by_age: BTreeMap<u64, (Box<str>, Instant)>,
    by_expiry: BTreeSet<(Instant, u64)>,
    next_seq: u64,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<(u64, HeldPrimitive)>,
    bytes: usize,
}

impl MemoryHold {
    pub fn new(limits: HoldLimits) -> Self {
        Self {
            limits,
            by_origin: FxHashMap::default(),
            by_age: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
            next_seq: 0,
            bytes: 0,
        }
    }

    /// Remove item `seq` (of `origin`) from every index.
    fn remove(&mut self, origin: &str, seq: u64) -> Option<HeldPrimitive> {
        let (_, expires) = self.by_age.remove(&seq)?;
        self.by_expiry.remove(&(expires, seq));
        let q = self.by_origin.get_mut(origin)?;
        let at = q.items.binary_search_by_key(&seq, |(s, _)| *s).ok()?;
        let (_, p) = q.items.remove(at)?;
        q.bytes -= p.bytes.len();
        self.bytes -= p.bytes.len();
        if q.items.is_empty() {
            self.by_origin.remove(origin);
        }
        Some(p)
    }

    fn oldest_of(&self, origin: &str) -> Option<u64> {
        self.by_origin.get(origin)?.items.front().map(|(s, _)| *s)
    }
}

impl HoldStore for MemoryHold {
    fn hold(&mut self, origin: &str, p: HeldPrimitive) -> Vec<HeldPrimitive> {
        let l = self.limits;
        let size = p.bytes.len();
        if size > l.max_bytes_per_device.min(l.max_bytes_per_core) {
            return vec![p];
        }
        let mut dropped = Vec::new();
        // Per device: its own oldest go first.
        while let Some(q) = self.by_origin.get(origin)
            && (q.items.len() >= l.max_per_device || q.bytes + size > l.max_bytes_per_device)
        {
            let seq = self.oldest_of(origin).expect("a non-empty queue");
            dropped.extend(self.remove(origin, seq));
        }
        // Per core: the oldest of any device.
        while self.bytes + size > l.max_bytes_per_core {
            let Some((&seq, (o, _))) = self.by_age.first_key_value() else {
                break;
            };
            let o = o.clone();
            dropped.extend(self.remove(&o, seq));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_age.insert(seq, (origin.into(), p.expires));
        self.by_expiry.insert((p.expires, seq));
        self.bytes += size;
        let q = self.by_origin.entry(origin.into()).or_default();
        q.bytes += size;
        q.items.push_back((seq, p));
        dropped
    }

    fn take(&mut self, origin: &str) -> Vec<HeldPrimitive> {
        let Some(q) = self.by_origin.remove(origin) else {
            return Vec::new();
        };
        self.bytes -= q.bytes;
        q.items
            .into_iter()
            .map(|(seq, p)| {
                self.by_age.remove(&seq);
                self.by_expiry.remove(&(p.expires, seq));
                p
            })
            .collect()
    }

    fn expire(&mut self, now: Instant) -> Vec<HeldPrimitive> {
        let mut gone = Vec::new();
        while let Some(&(at, seq)) = self.by_expiry.first()
            && at <= now
        {
            let Some((origin, _)) = self.by_age.get(&seq) else {
                self.by_expiry.remove(&(at, seq));
                continue;
            };
            let origin = origin.clone();
            gone.extend(self.remove(&origin, seq));
        }
        gone
    }

    fn next_expiry(&self) -> Option<Instant> {
        self.by_expiry.first().map(|(at, _)| *at)
    }

    fn holds(&self, origin: &str) -> bool {
        self.by_origin.contains_key(origin)
    }

    fn size(&self) -> (usize, usize) {
        (self.by_age.len(), self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(tag: &str, at: Instant, secs: u64) -> HeldPrimitive {
        HeldPrimitive {
            bytes: tag.as_bytes().to_vec(),
            format: Format::Json,
            expires: at + Duration::from_secs(secs),
        }
    }

    fn tags(items: &[HeldPrimitive]) -> Vec<&str> {
        items
            .iter()
            .map(|p| std::str::from_utf8(&p.bytes).unwrap())
            .collect()
    }

    fn limits(per_device: usize, device_bytes: usize, core_bytes: usize) -> HoldLimits {
        HoldLimits {
            ttl: Duration::from_secs(600),
            max_per_device: per_device,
            max_bytes_per_device: device_bytes,
            max_bytes_per_core: core_bytes,
        }
    }

    #[test]
    fn take_returns_a_devices_primitives_in_arrival_order() {
        let now = Instant::now();
        let mut h = MemoryHold::new(HoldLimits::default());
        for t in ["a1", "b1", "a2", "a3"] {
            assert!(h.hold(&t[..1], item(t, now, 60)).is_empty());
        }
        assert_eq!(h.size(), (4, 8));
        assert_eq!(tags(&h.take("a")), ["a1", "a2", "a3"]);
        assert!(!h.holds("a") && h.holds("b"));
        assert_eq!(h.size(), (1, 2));
        assert_eq!(h.next_expiry(), Some(now + Duration::from_secs(60)));
    }

    #[test]
    fn each_expires_at_its_own_time() {
        let now = Instant::now();
        let mut h = MemoryHold::new(HoldLimits::default());
        h.hold("a", item("a1", now, 30));
        h.hold("a", item("a2", now, 10));
        h.hold("b", item("b1", now, 20));
        assert_eq!(h.next_expiry(), Some(now + Duration::from_secs(10)));
        assert_eq!(tags(&h.expire(now + Duration::from_secs(20))), ["a2", "b1"]);
        assert_eq!(tags(&h.take("a")), ["a1"]);
        assert_eq!(h.size(), (0, 0));
        assert!(h.expire(now + Duration::from_secs(99)).is_empty());
    }

    #[test]
    fn a_device_over_its_bounds_loses_its_oldest() {
        let now = Instant::now();
        let mut h = MemoryHold::new(limits(2, 100, 1000));
        h.hold("a", item("a1", now, 60));
        h.hold("a", item("a2", now, 60));
        assert_eq!(tags(&h.hold("a", item("a3", now, 60))), ["a1"]);
        // By bytes: 6 per device.
        let mut h = MemoryHold::new(limits(10, 6, 1000));
        h.hold("a", item("a1", now, 60));
        h.hold("b", item("b1", now, 60));
        h.hold("a", item("a2", now, 60));
        h.hold("a", item("a3", now, 60));
        assert_eq!(tags(&h.hold("a", item("a4", now, 60))), ["a1"]);
        assert_eq!(tags(&h.take("a")), ["a2", "a3", "a4"]);
        // One primitive bigger than the bound is dropped itself.
        assert_eq!(
            tags(&h.hold("b", item("b-too-big", now, 60))),
            ["b-too-big"]
        );
        assert_eq!(tags(&h.take("b")), ["b1"]);
    }

    #[test]
    fn the_core_budget_drops_the_oldest_of_any_device() {
        let now = Instant::now();
        let mut h = MemoryHold::new(limits(10, 100, 6));
        h.hold("a", item("a1", now, 60));
        h.hold("b", item("b1", now, 60));
        h.hold("c", item("c1", now, 60));
        assert_eq!(tags(&h.hold("c", item("c2", now, 60))), ["a1"]);
        assert!(!h.holds("a"));
        assert_eq!(h.size(), (3, 6));
        assert_eq!(h.next_expiry(), Some(now + Duration::from_secs(60)));
    }
}
