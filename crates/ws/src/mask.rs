//! In-place (un)masking of payload bytes (RFC 6455 §5.3).
//!
//! XOR with a 4-byte key is the only per-byte work a receiver must do on every payload byte, so it is
//! written to be vectorised by the compiler without `unsafe`: the key is widened to a `u64`, the
//! buffer is walked in 32-byte blocks of four unaligned `u64` lanes (which LLVM turns into SIMD loads
//! and XORs), then in single `u64` lanes, and only the last 0–7 bytes one at a time. Blocks and lanes
//! are multiples of 4 bytes, so the key phase never shifts. `benches/frames.rs` compares it with a byte loop and with fastwebsockets.

/// XOR `buf` in place with `key`, as if `buf` started at payload offset 0.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    apply_mask_at(buf, key, 0);
}

/// XOR `buf` in place with `key`, where `buf[0]` is the byte at payload offset `offset` (for payloads
/// unmasked in pieces).
#[inline]
pub fn apply_mask_at(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let rot = offset % 4;
    let key = [
        key[rot],
        key[(rot + 1) % 4],
        key[(rot + 2) % 4],
        key[(rot + 3) % 4],
    ];
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut blocks = buf.chunks_exact_mut(32);
    for block in blocks.by_ref() {
        for lane in block.chunks_exact_mut(8) {
            let word = u64::from_ne_bytes(lane.try_into().expect("8-byte lane")) ^ wide;
            lane.copy_from_slice(&word.to_ne_bytes());
        }
    }
    let mut lanes = blocks.into_remainder().chunks_exact_mut(8);
    for lane in lanes.by_ref() {
        let word = u64::from_ne_bytes(lane.try_into().expect("8-byte lane")) ^ wide;
        lane.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, byte) in lanes.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// The plain byte loop, kept as the reference for tests and as the baseline in the benchmark.
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4]) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_bytewise_for_every_length_and_offset() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..200 {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut fast = data.clone();
            let mut slow = data.clone();
            apply_mask(&mut fast, key);
            apply_mask_bytewise(&mut slow, key);
            assert_eq!(fast, slow, "len {len}");
            for split in 0..len.min(9) {
                let mut pieces = data.clone();
                let (a, b) = pieces.split_at_mut(split);
                apply_mask_at(a, key, 0);
                apply_mask_at(b, key, split);
                assert_eq!(pieces, slow, "len {len} split {split}");
            }
        }
    }

    #[test]
    fn rfc6455_section_5_7_masked_hello() {
        // §5.7: "Hello" masked with 37 fa 21 3d is 7f 9f 4d 51 58.
        let mut payload = *b"Hello";
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }
}
