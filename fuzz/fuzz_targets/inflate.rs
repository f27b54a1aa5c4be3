//! Any bytes as a compressed message: inflation stops with an error or succeeds, and never holds more
//! than the limit (plus one byte of detection slack and the reservation step).
#![no_main]
use libfuzzer_sys::fuzz_target;
use m2m_ws::Inflater;

fuzz_target!(|data: &[u8]| {
    let limit = 4096;
    let mut inf = Inflater::new(data.first().is_some_and(|b| b & 1 == 1));
    let mut out = Vec::new();
    let half = data.len() / 2;
    let first = inf.inflate(&data[..half], false, &mut out, limit);
    if first.is_ok() {
        let _ = inf.inflate(&data[half..], true, &mut out, limit);
    }
    assert!(out.len() <= limit + 1);
    assert!(out.capacity() <= limit + 1 + 256);
});
