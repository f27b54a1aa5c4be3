//! Whole primitives in and out of the three serializations, and transcoding between them.

use crate::error::PrimitiveError;
use crate::model::Primitive;
use crate::rsc::Rsc;
use crate::value::Value;
use crate::{cbor, json, xml};

/// A serialization (TS-0004 §8.3–§8.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Json,
    Xml,
    Cbor,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Xml => "xml",
            Self::Cbor => "cbor",
        }
    }

    /// The format whose bytes these look like: CBOR maps start with major type 5, XML with `<`, JSON
    /// with `{`. Used to tell "malformed" (4000) from "wrong serialization" (4015).
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        let first = *bytes.iter().find(|b| !b.is_ascii_whitespace())?;
        match first {
            b'{' => Some(Self::Json),
            b'<' => Some(Self::Xml),
            0xa0..=0xbf => Some(Self::Cbor),
            _ => None,
        }
    }
}

/// Decode a primitive. A body that is clearly another serialization gets 4015 UNSUPPORTED_MEDIA_TYPE;
/// anything else malformed gets 4000, with the `rqi` when it can be read.
pub fn decode(format: Format, bytes: &[u8]) -> Result<Primitive, PrimitiveError> {
    let result = match format {
        Format::Json => json::decode(bytes)
            .and_then(object)
            .and_then(Primitive::from_map),
        Format::Cbor => cbor::decode(bytes)
            .and_then(object)
            .and_then(Primitive::from_map),
        Format::Xml => xml::decode(bytes).and_then(|(_, map)| Primitive::from_map(map)),
    };
    result.map_err(|e| classify(e, format, bytes))
}

/// Decode a JSON primitive in place (no copy; `buf` is rewritten by simd-json).
pub fn decode_json_in_place(buf: &mut [u8]) -> Result<Primitive, PrimitiveError> {
    let rqi = crate::view::extract_rqi(Format::Json, buf);
    json::decode_in_place(buf)
        .and_then(object)
        .and_then(Primitive::from_map)
        .map_err(|e| e.with_rqi(rqi))
}

fn object(v: Value) -> Result<crate::value::Map, PrimitiveError> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(PrimitiveError::bad_request(format!(
            "a primitive is an object, not {}",
            other.type_name()
        ))),
    }
}

fn classify(e: PrimitiveError, format: Format, bytes: &[u8]) -> PrimitiveError {
    if e.rqi.is_none() {
        if let Some(other) = Format::sniff(bytes).filter(|&f| f != format) {
            let rqi = crate::view::extract_rqi(other, bytes);
            return PrimitiveError::new(
                Rsc::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "a {} primitive on a {} session",
                    other.name(),
                    format.name()
                ),
            )
            .with_rqi(rqi);
        }
    }
    let rqi = crate::view::extract_rqi(format, bytes);
    e.with_rqi(rqi)
}

/// Append the encoding of `p` to `out`.
pub fn encode_into(p: &Primitive, format: Format, out: &mut Vec<u8>) -> Result<(), PrimitiveError> {
    let map = p.to_map();
    match format {
        Format::Json => json::encode(&Value::Object(map), out),
        Format::Cbor => cbor::encode(&Value::Object(map), out),
        Format::Xml => {
            let root = match p {
                Primitive::Request(_) => xml::Root::Request,
                Primitive::Response(_) => xml::Root::Response,
            };
            xml::encode(root, &map, out)?
        }
    }
    Ok(())
}

/// Encode `p`.
pub fn encode(p: &Primitive, format: Format) -> Result<Vec<u8>, PrimitiveError> {
    let mut out = Vec::with_capacity(256);
    encode_into(p, format, &mut out)?;
    Ok(out)
}

/// Re-encode a primitive from one serialization to another, `pc` included.
pub fn transcode(bytes: &[u8], from: Format, to: Format) -> Result<Vec<u8>, PrimitiveError> {
    if from == to {
        return Ok(bytes.to_vec());
    }
    if from != Format::Xml && to != Format::Xml {
        // JSON ↔ CBOR is the same object model: no need for the typed primitive in between.
        let value = match from {
            Format::Json => json::decode(bytes)?,
            _ => cbor::decode(bytes)?,
        };
        let mut out = Vec::with_capacity(bytes.len());
        match to {
            Format::Json => json::encode(&value, &mut out),
            _ => cbor::encode(&value, &mut out),
        }
        return Ok(out);
    }
    encode(&decode(from, bytes)?, to)
}
