//! What the relay counts, per core: plain relaxed atomics written by that core only (no contention
//! on the hot path), read by the edge's `/metrics` exposition, which sums the cores. The engine
//! counts; it exports nothing itself.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upstream link transitions (`m2m_edge_upstream_link_events_total{event}`).
pub const LINK_EVENTS: [&str; 4] = ["connecting", "open", "failed", "lost"];
pub const LINK_CONNECTING: usize = 0;
pub const LINK_OPEN: usize = 1;
pub const LINK_FAILED: usize = 2;
pub const LINK_LOST: usize = 3;

/// Limits whose hits are counted (`m2m_edge_limits_hit_total{limit}`).
pub const LIMITS: [&str; 9] = [
    "handshake_timeout",
    "idle_timeout",
    "message_too_big",
    "device_limit",
    "queue_full",
    "output_bound",
    "upstream_setup_timeout",
    "ping_timeout",
    "frame_timeout",
];
pub const LIMIT_HANDSHAKE_TIMEOUT: usize = 0;
pub const LIMIT_IDLE_TIMEOUT: usize = 1;
pub const LIMIT_MESSAGE_TOO_BIG: usize = 2;
pub const LIMIT_DEVICE_LIMIT: usize = 3;
pub const LIMIT_QUEUE_FULL: usize = 4;
/// A device whose unsent output passed `max_output_bytes` (it stopped reading) was closed.
pub const LIMIT_OUTPUT_BOUND: usize = 5;
/// An upstream link that was not open within the connect timeout (TCP, CONNECT, TLS, WebSocket).
pub const LIMIT_UPSTREAM_SETUP: usize = 6;
pub const LIMIT_PING_TIMEOUT: usize = 7;
/// A device that began a frame (or a fragmented message) and did not finish it in time.
pub const LIMIT_FRAME_TIMEOUT: usize = 8;
/// Upper bounds of the handling-time histogram (one read of input handled), in seconds.
pub const HANDLING_BUCKETS: [f64; 12] = [
    0.000_001, 0.000_002, 0.000_005, 0.000_01, 0.000_02, 0.000_05, 0.000_1, 0.000_2, 0.000_5,
    0.001, 0.002, 0.005,
];

pub const OPS: [&str; 5] = ["create", "retrieve", "update", "delete", "notify"];
pub const DIRECTIONS: [&str; 2] = ["device_to_cse", "cse_to_device"];
pub const RSC_CLASSES: [&str; 6] = ["1xxx", "2xxx", "4xxx", "5xxx", "6xxx", "other"];
pub const HANDSHAKE_RESULTS: [&str; 2] = ["accepted", "refused"];
pub const SERIALIZATIONS: [&str; 4] = ["json", "cbor", "xml", "none"];
pub const ANSWERS: [u16; 7] = [4000, 4015, 4103, 4008, 5103, 5207, 1000];
pub const TUNNEL_RESULTS: [&str; 4] = ["terminated", "tunnelled", "forbidden", "failed"];
pub const ERROR_KINDS: [&str; 4] = [
    "protocol_violation",
    "malformed_primitive",
    "unknown_rqi",
    "upstream_lost",
];
/// Upper bounds of the upstream round-trip histogram, in seconds.
pub const RTT_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// One core's counters.
#[derive(Debug, Default)]
pub struct CoreCounters {
    pub device_sessions: AtomicI64,
    pub upstream_links: AtomicI64,
    pub handshakes: [[AtomicU64; 2]; 4],
    pub requests: [[AtomicU64; 5]; 2],
    pub responses: [[AtomicU64; 6]; 2],
    pub answers: [AtomicU64; 7],
    pub tunnels: [AtomicU64; 4],
    pub errors: [AtomicU64; 4],
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub connections: AtomicI64,
    pub rtt_buckets: [AtomicU64; 14],
    pub rtt_count: AtomicU64,
    pub rtt_sum_us: AtomicU64,
    /// Open device sessions by serialization (json, cbor, xml).
    pub sessions_by_format: [AtomicI64; 3],
    pub registrations: AtomicU64,
    pub link_events: [AtomicU64; 4],
    pub limits: [AtomicU64; 9],
    /// TLS handshakes on the device listener: completed, failed.
    pub tls: [AtomicU64; 2],
    /// Copied from the runtime's per-core statistics.
    pub loop_turns: AtomicU64,
    pub wait_ns: AtomicU64,
    pub buffer_exhaustion: AtomicU64,
    pub handling_buckets: [AtomicU64; 12],
    pub handling_count: AtomicU64,
    pub handling_sum_ns: AtomicU64,
    /// Held now for devices that are away: primitives, bytes.
    pub held: [AtomicI64; 2],
    /// Held primitives delivered when their device came back, expired before it did, and dropped
    /// by a bound (oldest first).
    pub held_delivered: AtomicU64,
    pub held_expired: AtomicU64,
    pub held_dropped: AtomicU64,
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

impl CoreCounters {
    pub fn handshake(&self, serialization: usize, accepted: bool) {
        bump(&self.handshakes[serialization.min(3)][usize::from(!accepted)]);
    }
    pub fn request(&self, direction: usize, op: usize) {
        bump(&self.requests[direction][op.min(4)]);
    }
    pub fn response(&self, direction: usize, rsc: u16) {
        let class = match rsc / 1000 {
            1 => 0,
            2 => 1,
            4 => 2,
            5 => 3,
            6 => 4,
            _ => 5,
        };
        bump(&self.responses[direction][class]);
    }
    pub fn answer(&self, rsc: u16) {
        if let Some(i) = ANSWERS.iter().position(|&a| a == rsc) {
            bump(&self.answers[i]);
        }
    }
    pub fn tunnel(&self, result: usize) {
        bump(&self.tunnels[result]);
    }
    pub fn error(&self, kind: usize) {
        bump(&self.errors[kind]);
    }
    pub fn link(&self, event: usize) {
        bump(&self.link_events[event]);
    }
    pub fn limit(&self, which: usize) {
        bump(&self.limits[which]);
    }
    /// Time spent handling one read of device or CSE input (parse, check, transcode, forward).
    pub fn handling(&self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = HANDLING_BUCKETS.iter().position(|&b| s <= b) {
            bump(&self.handling_buckets[i]);
        }
        bump(&self.handling_count);
        self.handling_sum_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
    pub fn rtt(&self, seconds: f64) {
        let i = RTT_BUCKETS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(RTT_BUCKETS.len());
        if i < RTT_BUCKETS.len() {
            bump(&self.rtt_buckets[i]);
        }
        bump(&self.rtt_count);
        self.rtt_sum_us
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }
}
