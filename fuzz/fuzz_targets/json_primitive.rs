//! Any bytes as a json primitive: decode, routing view and validation give a result or an error
//! response with an rsc, never a panic; a primitive that decodes re-encodes and decodes to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use m2m_primitive::{Format, Primitive, RoutingView, Validator, decode, encode};

fuzz_target!(|data: &[u8]| {
    let view = RoutingView::parse(Format::Json, data);
    match decode(Format::Json, data) {
        Ok(p) => {
            if let Primitive::Request(r) = &p {
                let _ = Validator::default().request(r, 0);
            }
            if let Ok(bytes) = encode(&p, Format::Json) {
                let again = decode(Format::Json, &bytes).expect("our own encoding must decode");
                // Compared as re-encodings: a NaN in the content is not equal to itself.
                let bytes_again = encode(&again, Format::Json).expect("re-encoding our own decode");
                assert_eq!(bytes_again, bytes, "decode(encode(p)) must be a fixpoint");
                let v = RoutingView::parse(Format::Json, &bytes).expect("view of our own encoding");
                assert_eq!(v.rqi.as_deref(), p.rqi());
            }
            let _ = view;
        }
        Err(e) => {
            assert!(e.rsc.0 == 4000 || e.rsc.0 == 4015, "{e}");
        }
    }
});
