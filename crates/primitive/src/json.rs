//! JSON (TS-0004 §8.4) on `simd-json`.
//!
//! simd-json parses in place and needs a mutable input; callers that own their receive buffer use
//! [`decode_in_place`] and pay no copy. [`decode`] copies into a per-thread scratch buffer that is
//! reused, as are simd-json's own index buffers, so steady-state decoding allocates only the decoded
//! values themselves.

use std::cell::RefCell;

use crate::error::PrimitiveError;
use crate::value::Value;

thread_local! {
    static SCRATCH: RefCell<(Vec<u8>, simd_json::Buffers)> =
        RefCell::new((Vec::new(), simd_json::Buffers::default()));
}

/// Nesting deeper than this is refused before simd-json's own limit, to bound recursion in the
/// value builder.
pub const MAX_DEPTH: usize = 64;

fn malformed(e: impl std::fmt::Display) -> PrimitiveError {
    PrimitiveError::bad_request(format!("malformed JSON: {e}"))
}

/// Decode a JSON value, rewriting `buf` in the process (simd-json's in-place parse).
pub fn decode_in_place(buf: &mut [u8]) -> Result<Value, PrimitiveError> {
    check_depth(buf)?;
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        simd_json::serde::from_slice_with_buffers(buf, &mut s.1).map_err(malformed)
    })
}

/// Decode a JSON value from a shared slice, through the per-thread scratch copy.
pub fn decode(bytes: &[u8]) -> Result<Value, PrimitiveError> {
    check_depth(bytes)?;
    SCRATCH.with(|s| {
        let mut guard = s.borrow_mut();
        let (scratch, buffers) = &mut *guard;
        scratch.clear();
        scratch.extend_from_slice(bytes);
        let result = simd_json::serde::from_slice_with_buffers(scratch, buffers).map_err(malformed);
        if scratch.capacity() > 256 * 1024 {
            *scratch = Vec::new();
        }
        result
    })
}

/// Append the JSON encoding of `value` to `out`.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    simd_json::serde::to_writer(out, value).expect("writing JSON to a Vec cannot fail");
}

/// Refuse documents nested deeper than [`MAX_DEPTH`] (brackets outside strings), cheaply.
fn check_depth(bytes: &[u8]) -> Result<(), PrimitiveError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(malformed(format!("nested deeper than {MAX_DEPTH}")));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}
