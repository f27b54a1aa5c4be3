//! CBOR (TS-0004 §8.5): the JSON object model with the same short-name keys, keys and strings as
//! text strings (major type 3), integers as major types 0/1, floats as AI 26/27.
//!
//! Two implementations sit side by side so that `benches/primitives.rs` can compare them in one run:
//! [`decode`]/[`encode`] walk the items with `minicbor`'s zero-copy decoder and encoder, and
//! [`ciborium_decode`]/[`ciborium_encode`] go through `ciborium` and serde. The minicbor path is the one
//! the codec uses (see the numbers in DESIGN.md); both accept the byte-string keys of the TS-0004
//! examples when they are UTF-8, and both write text keys.

use minicbor::data::Type;
use minicbor::{Decoder, Encoder};

use crate::error::PrimitiveError;
use crate::value::{Map, Value};

/// Nesting deeper than this is refused.
pub const MAX_DEPTH: usize = 64;

fn malformed(e: impl std::fmt::Display) -> PrimitiveError {
    PrimitiveError::bad_request(format!("malformed CBOR: {e}"))
}

/// Decode one CBOR data item that must fill `bytes` exactly.
pub fn decode(bytes: &[u8]) -> Result<Value, PrimitiveError> {
    let mut d = Decoder::new(bytes);
    let v = item(&mut d, 0)?;
    if d.position() != bytes.len() {
        return Err(malformed(format!(
            "{} trailing bytes",
            bytes.len() - d.position()
        )));
    }
    Ok(v)
}

fn item(d: &mut Decoder<'_>, depth: usize) -> Result<Value, PrimitiveError> {
    if depth > MAX_DEPTH {
        return Err(malformed(format!("nested deeper than {MAX_DEPTH}")));
    }
    let ty = d.datatype().map_err(malformed)?;
    Ok(match ty {
        Type::Bool => Value::Bool(d.bool().map_err(malformed)?),
        Type::Null => {
            d.null().map_err(malformed)?;
            Value::Null
        }
        Type::Undefined => {
            d.undefined().map_err(malformed)?;
            Value::Null
        }
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => {
            let u = d.u64().map_err(malformed)?;
            i64::try_from(u).map(Value::Int).unwrap_or(Value::UInt(u))
        }
        Type::I8 | Type::I16 | Type::I32 | Type::I64 => Value::Int(d.i64().map_err(malformed)?),
        Type::Int => {
            let i = i128::from(d.int().map_err(malformed)?);
            match i64::try_from(i) {
                Ok(i) => Value::Int(i),
                Err(_) => return Err(malformed("integer below the i64 range")),
            }
        }
        Type::F16 | Type::F32 | Type::F64 => Value::Float(d.f64().map_err(malformed)?),
        Type::String => Value::String(d.str().map_err(malformed)?.to_string()),
        Type::StringIndef => {
            let mut s = String::new();
            for part in d.str_iter().map_err(malformed)? {
                s.push_str(part.map_err(malformed)?);
            }
            Value::String(s)
        }
        Type::Bytes => Value::Bytes(d.bytes().map_err(malformed)?.to_vec()),
        Type::BytesIndef => {
            let mut b = Vec::new();
            for part in d.bytes_iter().map_err(malformed)? {
                b.extend_from_slice(part.map_err(malformed)?);
            }
            Value::Bytes(b)
        }
        Type::Array | Type::ArrayIndef => {
            let len = d.array().map_err(malformed)?;
            let mut items = Vec::with_capacity(len.unwrap_or(0).min(1024) as usize);
            for_each(d, len, |d| {
                items.push(item(d, depth + 1)?);
                Ok(())
            })?;
            Value::Array(items)
        }
        Type::Map | Type::MapIndef => {
            let len = d.map().map_err(malformed)?;
            let mut members = Vec::with_capacity(len.unwrap_or(0).min(256) as usize);
            for_each(d, len, |d| {
                let key = match item(d, depth + 1)? {
                    Value::String(s) => s,
                    Value::Bytes(b) => {
                        String::from_utf8(b).map_err(|_| malformed("key is not UTF-8"))?
                    }
                    other => return Err(malformed(format!("{} as a map key", other.type_name()))),
                };
                members.push((key, item(d, depth + 1)?));
                Ok(())
            })?;
            let map = Map(members);
            if let Some(dup) = map.duplicate_key() {
                return Err(malformed(format!("duplicate key {dup:?}")));
            }
            Value::Object(map)
        }
        Type::Tag => {
            // Tags (dates, bignums…) carry no meaning in oneM2M content: keep the tagged value.
            d.tag().map_err(malformed)?;
            item(d, depth + 1)?
        }
        other => return Err(malformed(format!("unexpected {other}"))),
    })
}

/// Run `f` for each element of a definite (`Some(n)`) or indefinite container.
fn for_each(
    d: &mut Decoder<'_>,
    len: Option<u64>,
    mut f: impl FnMut(&mut Decoder<'_>) -> Result<(), PrimitiveError>,
) -> Result<(), PrimitiveError> {
    match len {
        Some(n) => {
            for _ in 0..n {
                f(d)?;
            }
        }
        None => loop {
            if d.datatype().map_err(malformed)? == Type::Break {
                d.skip().map_err(malformed)?;
                break;
            }
            f(d)?;
        },
    }
    Ok(())
}

/// Append the CBOR encoding of `value` to `out`.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    let mut e = Encoder::new(out);
    write(&mut e, value).expect("writing CBOR to a Vec cannot fail");
}

fn write(
    e: &mut Encoder<&mut Vec<u8>>,
    v: &Value,
) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
    match v {
        Value::Null => {
            e.null()?;
        }
        Value::Bool(b) => {
            e.bool(*b)?;
        }
        Value::Int(i) => {
            e.i64(*i)?;
        }
        Value::UInt(u) => {
            e.u64(*u)?;
        }
        Value::Float(f) => {
            // The shortest of AI 26/27 that holds the value exactly (§8.5 allows both).
            if f64::from(*f as f32) == *f || f.is_nan() {
                e.f32(*f as f32)?;
            } else {
                e.f64(*f)?;
            }
        }
        Value::String(s) => {
            e.str(s)?;
        }
        Value::Bytes(b) => {
            e.bytes(b)?;
        }
        Value::Array(items) => {
            e.array(items.len() as u64)?;
            for item in items {
                write(e, item)?;
            }
        }
        Value::Object(map) => {
            e.map(map.len() as u64)?;
            for (k, v) in &map.0 {
                e.str(k)?;
                write(e, v)?;
            }
        }
    }
    Ok(())
}

/// Decode with `ciborium` (the baseline the benchmark compares against).
pub fn ciborium_decode(bytes: &[u8]) -> Result<Value, PrimitiveError> {
    let mut reader = bytes;
    let v: Value = ciborium::de::from_reader_with_recursion_limit(&mut reader, MAX_DEPTH)
        .map_err(malformed)?;
    if !reader.is_empty() {
        return Err(malformed(format!("{} trailing bytes", reader.len())));
    }
    Ok(v)
}

/// Encode with `ciborium`.
pub fn ciborium_encode(value: &Value, out: &mut Vec<u8>) {
    ciborium::ser::into_writer(value, out).expect("writing CBOR to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn onem2m_section_4_3_example() {
        // ONEM2M.md §4.3: a retrieve request with text keys, 48 bytes.
        let bytes = hex(
            "a5626f700262746f6e6373652d696e2f6d65746572303162667268436d65746572303163727169627231637276696133",
        );
        let v = decode(&bytes).unwrap();
        let m = v.as_object().unwrap();
        assert_eq!(m.get("op"), Some(&Value::Int(2)));
        assert_eq!(m.get("to").and_then(Value::as_str), Some("cse-in/meter01"));
        let mut out = Vec::new();
        encode(&v, &mut out);
        assert_eq!(out, bytes);
        let mut out2 = Vec::new();
        ciborium_encode(&v, &mut out2);
        assert_eq!(out2, bytes);
        assert_eq!(ciborium_decode(&bytes).unwrap(), v);
        let rsp = hex("a3637273631907d263727169627231637276696133");
        assert_eq!(
            decode(&rsp).unwrap().as_object().unwrap().get("rsc"),
            Some(&Value::Int(2002))
        );
    }

    #[test]
    fn byte_string_keys_of_the_ts0004_examples_are_accepted() {
        // TS-0004 §8.5.2 style: map(1), bytes(2) "op", 2.
        let bytes = [0xa1, 0x42, b'o', b'p', 0x02];
        for v in [decode(&bytes).unwrap(), ciborium_decode(&bytes).unwrap()] {
            assert_eq!(v.as_object().unwrap().get("op"), Some(&Value::Int(2)));
        }
    }

    #[test]
    fn indefinite_lengths_floats_and_errors() {
        // {_ "a": [_ 1, 2], "b": 1.5} with an indefinite text string key.
        let bytes = [
            0xbf, 0x7f, 0x61, b'a', 0xff, 0x9f, 0x01, 0x02, 0xff, 0x61, b'b', 0xf9, 0x3e, 0x00,
            0xff,
        ];
        let v = decode(&bytes).unwrap();
        assert_eq!(v.as_object().unwrap().get("b"), Some(&Value::Float(1.5)));
        assert!(decode(&[0xa1, 0x61]).is_err());
        assert!(decode(&[0x01, 0x02]).is_err());
        let deep = [vec![0x81; 100], vec![0x01]].concat();
        assert!(decode(&deep).is_err());
        assert!(ciborium_decode(&deep).is_err());
    }
}
