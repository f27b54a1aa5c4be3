//! Sequences of device, CSE, link and timer events against two cores' relay engines in memory,
//! chosen by the fuzzer's bytes; the invariants (every request answered once, never to the wrong
//! device, nothing held or owed at the end) are checked by `m2m_relay::fuzz_events`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() <= 1200 {
        m2m_relay::fuzz_events(data);
    }
});
