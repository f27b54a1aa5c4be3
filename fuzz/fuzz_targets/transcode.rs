//! Transcoding round trips: JSON → CBOR → JSON is exact for any JSON value; a primitive taken through
//! XML comes back stable (a second pass through XML gives the same bytes as the first).
#![no_main]
use libfuzzer_sys::fuzz_target;
use m2m_primitive::{Format, cbor, decode, encode, json, transcode};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = json::decode(data) {
        let mut bytes = Vec::new();
        cbor::encode(&value, &mut bytes);
        assert_eq!(cbor::decode(&bytes).expect("own CBOR decodes"), value);
        let back = transcode(&bytes, Format::Cbor, Format::Json).expect("CBOR to JSON");
        assert_eq!(json::decode(&back).expect("own JSON decodes"), value);
    }
    if let Ok(p) = decode(Format::Json, data) {
        let cbor_bytes = encode(&p, Format::Cbor).unwrap();
        assert_eq!(decode(Format::Cbor, &cbor_bytes).unwrap(), p);
        if let Ok(xml1) = encode(&p, Format::Xml) {
            let p2 = decode(Format::Xml, &xml1).expect("own XML decodes");
            let xml2 = encode(&p2, Format::Xml).expect("re-encodes");
            assert_eq!(String::from_utf8_lossy(&xml1), String::from_utf8_lossy(&xml2));
        }
    }
});
