//! A per-core hashed timer wheel: O(1) insert and cancel for the many long timers a proxy keeps
//! (handshake, idle, request deadlines), and one kernel timeout per loop turn — the loop sleeps until
//! [`TimerWheel::next_deadline`], never arming a kernel timer per connection.
//!
//! 4096 slots of 8 ms cover 32.8 s per revolution; a timer further out waits in its slot and is
//! skipped until its revolution comes (an idle timer of 5 minutes is looked at ten times). Cancelled
//! timers are dropped lazily: their slab entry is freed at once and the slot reference is skipped by
//! generation when the slot comes round.

use std::time::{Duration, Instant};

const SLOTS: usize = 4096;
const TICK: Duration = Duration::from_millis(8);

/// Handle to cancel a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

#[derive(Debug)]
struct Entry<T> {
    deadline_tick: u64,
    generation: u32,
    value: Option<T>,
}

/// The wheel; `T` is what a timer carries back when it fires.
#[derive(Debug)]
pub struct TimerWheel<T> {
    origin: Instant,
    /// The last tick whose slot has been processed.
    current: u64,
    slots: Vec<Vec<(u32, u32)>>,
    occupied: [u64; SLOTS / 64],
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    live: usize,
}

impl<T: Copy> TimerWheel<T> {
    pub fn new(now: Instant) -> Self {
        Self {
            origin: now,
            current: 0,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; SLOTS / 64],
            entries: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    fn tick_of(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.origin);
        // Round up: a timer never fires before its deadline.
        d.as_nanos().div_ceil(TICK.as_nanos()) as u64
    }

    /// Number of live timers.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Arm a timer for `at` carrying `value`.
    pub fn insert(&mut self, at: Instant, value: T) -> TimerId {
        let tick = self.tick_of(at).max(self.current + 1);
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    deadline_tick: 0,
                    generation: 0,
                    value: None,
                });
                (self.entries.len() - 1) as u32
            }
        };
        let entry = &mut self.entries[index as usize];
        entry.generation = entry.generation.wrapping_add(1);
        entry.deadline_tick = tick;
        entry.value = Some(value);
        let slot = (tick % SLOTS as u64) as usize;
        self.slots[slot].push((index, entry.generation));
        self.occupied[slot / 64] |= 1 << (slot % 64);
        self.live += 1;
        TimerId {
            index,
            generation: entry.generation,
        }
    }

    /// Disarm a timer; returns whether it was still armed.
    pub fn cancel(&mut self, id: TimerId) -> bool {
        match self.entries.get_mut(id.index as usize) {
            Some(e) if e.generation == id.generation && e.value.is_some() => {
                e.value = None;
                e.generation = e.generation.wrapping_add(1);
                self.free.push(id.index);
                self.live -= 1;
                true
            }
            _ => false,
        }
    }

    /// Move time to `now`, pushing the value of every timer due by then onto `fired`.
    pub fn expire(&mut self, now: Instant, fired: &mut Vec<T>) {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos() / TICK.as_nanos();
        let target = (elapsed as u64).max(self.current);
        // Each slot needs visiting at most once per call, even after a long stall.
        let steps = (target - self.current).min(SLOTS as u64);
        let first = if target - self.current > SLOTS as u64 {
            target - SLOTS as u64
        } else {
            self.current
        };
        for step in 1..=steps {
            let tick = first + step;
            let slot = (tick % SLOTS as u64) as usize;
            if self.occupied[slot / 64] & (1 << (slot % 64)) == 0 {
                continue;
            }
            let mut refs = std::mem::take(&mut self.slots[slot]);
            refs.retain(|&(index, generation)| {
                let e = &mut self.entries[index as usize];
                if e.generation != generation || e.value.is_none() {
                    return false;
                }
                if e.deadline_tick > target {
                    return true;
                }
                fired.push(e.value.take().expect("live entry"));
                e.generation = e.generation.wrapping_add(1);
                self.free.push(index);
                self.live -= 1;
                false
            });
            if refs.is_empty() {
                // Freed rather than kept: after a burst (thousands of devices registering) the
                // slots' capacity would otherwise stay with the process as per-device memory.
                self.occupied[slot / 64] &= !(1 << (slot % 64));
                continue;
            }
            if refs.capacity() > 4 * refs.len().max(8) {
                refs.shrink_to(2 * refs.len());
            }
            if self.slots[slot].is_empty() {
                self.slots[slot] = refs;
            } else {
                self.slots[slot].extend(refs);
            }
        }
        self.current = target;
    }

    /// When the loop must wake next for timers: the start of the next occupied slot (possibly early,
    /// for a timer in a later revolution — harmless), or `None` with no timers.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.live == 0 {
            return None;
        }
        let start = ((self.current + 1) % SLOTS as u64) as usize;
        for offset in 0..SLOTS {
            let slot = (start + offset) % SLOTS;
            if self.occupied[slot / 64] & (1 << (slot % 64)) != 0 {
                let tick = self.current + 1 + offset as u64;
                return Some(self.origin + TICK * tick as u32);
            }
        }
        Some(self.origin + TICK * (self.current + SLOTS as u64) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fires_in_order_never_early() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        w.insert(t0 + ms(100), 1);
        w.insert(t0 + ms(20), 2);
        w.insert(t0 + ms(100_000), 3); // several revolutions away
        let mut fired = Vec::new();
        w.expire(t0 + ms(19), &mut fired);
        assert!(fired.is_empty());
        w.expire(t0 + ms(30), &mut fired);
        assert_eq!(fired, [2]);
        w.expire(t0 + ms(99), &mut fired);
        assert_eq!(fired, [2]);
        w.expire(t0 + ms(110), &mut fired);
        assert_eq!(fired, [2, 1]);
        for step in 1..=19 {
            w.expire(t0 + ms(5_000 * step), &mut fired);
        }
        assert_eq!(fired, [2, 1]);
        w.expire(t0 + ms(100_010), &mut fired);
        assert_eq!(fired, [2, 1, 3]);
        assert!(w.is_empty());
    }

    #[test]
    fn cancel_and_reuse() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let a = w.insert(t0 + ms(50), 'a');
        assert!(w.cancel(a));
        assert!(!w.cancel(a), "a cancelled id stays cancelled");
        let b = w.insert(t0 + ms(50), 'b');
        assert!(
            !w.cancel(a),
            "reusing the slab entry must not revive the old id"
        );
        let mut fired = Vec::new();
        w.expire(t0 + ms(60), &mut fired);
        assert_eq!(fired, ['b']);
        assert!(!w.cancel(b));
    }

    #[test]
    fn long_stall_fires_everything_due() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        for i in 0..1000u64 {
            w.insert(t0 + ms(i * 37), i);
        }
        let mut fired = Vec::new();
        w.expire(t0 + ms(10_000_000), &mut fired);
        assert_eq!(fired.len(), 1000);
    }

    #[test]
    fn next_deadline_bounds_the_sleep() {
        let t0 = Instant::now();
        let mut w: TimerWheel<u8> = TimerWheel::new(t0);
        assert_eq!(w.next_deadline(), None);
        w.insert(t0 + ms(500), 1);
        let d = w.next_deadline().unwrap();
        assert!(d >= t0 + ms(500) && d < t0 + ms(510), "{:?}", d - t0);
        let far = w.insert(t0 + ms(3_600_000), 2);
        let mut fired = Vec::new();
        w.expire(t0 + ms(600), &mut fired);
        assert_eq!(fired, [1]);
        assert!(w.next_deadline().unwrap() <= t0 + ms(600) + TICK * SLOTS as u32);
        w.cancel(far);
        assert_eq!(w.next_deadline(), None);
    }
}
