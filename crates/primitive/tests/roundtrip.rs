//! Spec examples (ONEM2M.md §8) and a real ACME session (acme-transcript.jsonl) through every
//! serialization, the legacy forms, and the error responses validation produces.

use m2m_primitive::codec::{decode, encode, transcode};
use m2m_primitive::{Format, Primitive, PrimitiveError, Rsc, Validator, Value, json};

fn examples() -> Vec<Vec<u8>> {
    include_str!("data/onem2m-examples.jsonl")
        .lines()
        .map(|l| l.as_bytes().to_vec())
        .collect()
}

fn transcript() -> Vec<Vec<u8>> {
    include_str!("data/acme-transcript.jsonl")
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.get("prim").map(|p| serde_json::to_vec(p).unwrap())
        })
        .collect()
}

/// JSON bytes → primitive → every format → primitive: equal, and equal to the generic JSON value.
fn round_trip_all(bytes: &[u8]) {
    let original = decode(Format::Json, bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)));
    let generic = json::decode(bytes).unwrap();
    assert_eq!(
        Value::Object(original.to_map()),
        generic,
        "model keeps every member"
    );
    for f in [Format::Json, Format::Cbor, Format::Xml] {
        let encoded = encode(&original, f).unwrap();
        let back = decode(f, &encoded)
            .unwrap_or_else(|e| panic!("{f:?}: {e}: {}", String::from_utf8_lossy(&encoded)));
        assert_eq!(
            back,
            original,
            "{f:?}: {}",
            String::from_utf8_lossy(&encoded)
        );
        for g in [Format::Json, Format::Cbor, Format::Xml] {
            let moved = transcode(&encoded, f, g).unwrap();
            assert_eq!(decode(g, &moved).unwrap(), original, "{f:?} -> {g:?}");
        }
    }
}

#[test]
fn every_spec_example_round_trips_in_all_three_serializations() {
    let all = examples();
    assert_eq!(all.len(), 25);
    for bytes in all {
        round_trip_all(&bytes);
    }
}

#[test]
fn every_acme_transcript_primitive_parses_and_round_trips() {
    let all = transcript();
    assert!(all.len() > 100, "{}", all.len());
    for bytes in &all {
        round_trip_all(bytes);
    }
}

#[test]
fn spec_example_requests_pass_validation() {
    let v = Validator::default();
    let now = m2m_primitive::time::parse_timestamp("20261126T112000").unwrap();
    for bytes in examples() {
        match decode(Format::Json, &bytes).unwrap() {
            Primitive::Request(r) => v.request(&r, now).unwrap_or_else(|e| panic!("{e}: {r:?}")),
            Primitive::Response(r) => v.response(&r).unwrap(),
        }
    }
}

#[test]
fn legacy_draft_forms_are_normalised() {
    let wrapped = br#"{"m2m:rqp":{"op":"1","to":"cse-in","fr":"C","rqi":"r1","rvi":"3","ty":"2","pc":{"m2m:ae":{"api":"Nx","rr":true,"srv":["3"]}}}}"#;
    let Primitive::Request(r) = decode(Format::Json, wrapped).unwrap() else {
        panic!()
    };
    assert_eq!((r.op as u8, r.ty), (1, Some(2)));
    let bare = encode(&Primitive::Request(r), Format::Json).unwrap();
    assert!(
        bare.starts_with(br#"{"op":1,"#),
        "{}",
        String::from_utf8_lossy(&bare)
    );
    let rsp = br#"{"m2m:rsp":{"rsc":"2001","rqi":"r1","rvi":"3"}}"#;
    let Primitive::Response(r) = decode(Format::Json, rsp).unwrap() else {
        panic!()
    };
    assert_eq!(r.rsc, Rsc::CREATED);
}

fn request_error(json: &str) -> PrimitiveError {
    let now = m2m_primitive::time::parse_timestamp("20261126T112000").unwrap();
    match decode(Format::Json, json.as_bytes()) {
        Ok(Primitive::Request(r)) => Validator::default().request(&r, now).unwrap_err(),
        Ok(other) => panic!("not a request: {other:?}"),
        Err(e) => e,
    }
}

#[test]
fn validation_maps_each_failure_to_its_rsc_with_rqi() {
    let cases: &[(&str, u16)] = &[
        (r#"{"op":2,"to":"cse-in","fr":"C1","rqi":"a1"}"#, 4001),
        (
            r#"{"op":2,"to":"cse-in","fr":"C1","rqi":"a1","rvi":"1"}"#,
            4001,
        ),
        (
            r#"{"op":2,"to":"cse-in","fr":"C1","rqi":"a1","rvi":3}"#,
            4000,
        ),
        (r#"{"op":2,"to":"cse-in","rqi":"a1","rvi":"3"}"#, 4000),
        (
            r#"{"op":1,"to":"cse-in","fr":"C1","rqi":"a1","rvi":"3","pc":{"m2m:cnt":{}}}"#,
            4000,
        ),
        (
            r#"{"op":2,"to":"cse-in","fr":"C1","rqi":"a1","rvi":"3","ty":3}"#,
            4000,
        ),
        (
            r#"{"op":1,"to":"cse-in","fr":"C1","rqi":"a1","rvi":"3","ty":3,"pc":{"m2m:cnt":{}},"fc":{"fu":1}}"#,
            4000,
        ),
        (
            r#"{"op":4,"to":"cse-in/x","fr":"C1","rqi":"a1","rvi":"3","pc":{"m2m:cnt":{}}}"#,
            4000,
        ),
        (
            r#"{"op":3,"to":"cse-in/x","fr":"C1","rqi":"a1","rvi":"3"}"#,
            4000,
        ),
        (
            r#"{"op":2,"to":"cse-in","fr":"C1","rqi":"a1","rvi":"3","rqet":"20261126T111959"}"#,
            4008,
        ),
        (
            r#"{"op":2,"to":"cse-in","fr":"C1","rqi":"a1","rvi":"3","rqet":"tomorrow"}"#,
            4000,
        ),
        (
            r#"{"op":2,"to":"cse-in","fr":"C1","rqi":"a1","rvi":"3","ot":"2026-11-26"}"#,
            4000,
        ),
        (
            r#"{"op":2,"to":"cse-in","fr":"C1","rqi":"a1","rvi":"3","rcn":0}"#,
            4000,
        ),
        (
            r#"{"op":2,"to":"cse-in","fr":"C1","rqi":"a1","rvi":"3","rt":{"rtv":3,"nu":["x"]}}"#,
            4000,
        ),
        (
            r#"{"op":1,"to":"cse-in","rqi":"a1","rvi":"3","ty":2,"pc":{"m2m:ae":{"api":"a56","rr":true,"srv":["3"]}}}"#,
            4000,
        ),
        (
            r#"{"op":1,"to":"cse-in","rqi":"a1","rvi":"3","ty":2,"pc":{"m2m:ae":{"api":"Nx","srv":["3"]}}}"#,
            4000,
        ),
        (
            r#"{"op":1,"to":"cse-in","rqi":"a1","rvi":"3","ty":2,"pc":{"m2m:ae":{"api":"Nx","rr":true}}}"#,
            4000,
        ),
        (r#"{"op":9,"to":"cse-in","rqi":"a1","rvi":"3"}"#, 4000),
        (
            r#"{"op":2,"to":"cse-in","fr":"C1","rqi":"a1","rvi":"3","pc":{"m2m:cin":{"con":}}}"#,
            4000,
        ),
    ];
    for (json, rsc) in cases {
        let err = request_error(json);
        assert_eq!(err.rsc, Rsc(*rsc), "{json}: {err}");
        assert_eq!(err.rqi.as_deref(), Some("a1"), "{json}");
        let rsp = err.to_response("3");
        let wire = encode(&Primitive::Response(rsp), Format::Json).unwrap();
        let text = String::from_utf8(wire).unwrap();
        assert!(
            text.contains("\"m2m:dbg\"") && text.contains("\"rqi\":\"a1\""),
            "{text}"
        );
    }
    // A fresh AE registration may omit fr; a relative rqet in the future is fine.
    let ok = r#"{"op":1,"to":"cse-in","rqi":"a1","rvi":"3","ty":2,"rqet":5000,"pc":{"m2m:ae":{"api":"Nx","rr":true,"srv":["3"],"poa":["ws://default"]}}}"#;
    let Primitive::Request(r) = decode(Format::Json, ok.as_bytes()).unwrap() else {
        panic!()
    };
    Validator::default().request(&r, 0).unwrap();
}

#[test]
fn wrong_serialization_gets_4015_and_garbage_4000() {
    let json = br#"{"op":2,"to":"cse-in","fr":"C1","rqi":"z9","rvi":"3"}"#;
    let err = decode(Format::Cbor, json).unwrap_err();
    assert_eq!(
        (err.rsc, err.rqi.as_deref()),
        (Rsc::UNSUPPORTED_MEDIA_TYPE, Some("z9"))
    );
    let err = decode(Format::Json, b"\x00\x01garbage").unwrap_err();
    assert_eq!((err.rsc, err.rqi), (Rsc::BAD_REQUEST, None));
    let err = decode(Format::Xml, json).unwrap_err();
    assert_eq!(err.rsc, Rsc::UNSUPPORTED_MEDIA_TYPE);
}

#[test]
fn generic_json_cbor_content_transcodes_without_loss() {
    let doc = br#"{"a":[1,-2,3.5,1e300,18446744073709551615,"x",null,true,{"b":{}}],"c":"\u00e9\ud83d\ude00","d":[]}"#;
    let cbor = transcode(doc, Format::Json, Format::Cbor).unwrap();
    let back = transcode(&cbor, Format::Cbor, Format::Json).unwrap();
    assert_eq!(json::decode(&back).unwrap(), json::decode(doc).unwrap());
}

#[test]
fn duplicate_member_names_are_refused() {
    // Found by the json_primitive fuzz target: duplicates made the model ambiguous.
    let dup = br#"{"rsc":2001,"rqi":"q","rvi":"3","pc":{"m2m:cin":{"cnf":"a","cnf":"b"}}}"#;
    let err = decode(Format::Json, dup).unwrap_err();
    assert_eq!((err.rsc, err.rqi.as_deref()), (Rsc::BAD_REQUEST, Some("q")));
    assert!(err.dbg.contains("duplicate"), "{}", err.dbg);
    let cbor = [0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02];
    assert!(m2m_primitive::cbor::decode(&cbor).is_err());
}

#[test]
fn xml_is_stable_for_every_transcode_fuzz_find() {
    // Inputs the `transcode` fuzz target found; after one pass through XML a second pass must give
    // the same document (or the encoder must refuse what XML cannot carry).
    let finds = [
        r#"{"op":1,"to":"cse-in","fr":"C","rqi":"q","ty":23,"con":"3","pc":{"m2m:sub":{"rn":"newD\ter01"}}}"#,
        r#"{"op":1,"to":"cse-in","nr":"C","rqi":"q","rvi":"3","ty":2,"pc":{"m2m:ae":{"rn":["3"],"poa":["w"]}}}"#,
        r#"{"rsc":1001,"poa":"q-0                009","rvi":"3","pc":{"m:uri":"r"}}"#,
        r#"{"rsc":230,"sqi":""}"#,
        r#"{"rsc":2001,"rqi":"q","pc":{"m2m:cnt":{"rn":"r","tqi":0,"cbs":0}}}"#,
        r#"{"rsc":2001,"rqi":"q","ssi":"1","fr":"/id-in"}"#,
        r#"{"op":1,"to":"cse-in","rqi":"q","rvi":"3","tyc":{"m2m:ae":{"rn":"\rt01","val":"N","rr":true,"srv":["3"]}}}"#,
        r#"{"rsc":2001,"rqi":"q","pc":{"m2m:cin":{"cs":12,"st":"202611260000000000000000000000000000000000000000000000112059"}}}"#,
        r#"{"op":1,"to":"x","fr":"C","rqi":"q","rt":{"m2m:cin":{"acr":"b n"}}}"#,
        r#"{"rsc":2001,"rqi":"q","rvi":"3","pc":{"mmm:cin":{"pn":"059","mni":" 5"}}}"#,
        r#"{"op":1,"to":"x","fr":"C","rqi":"q","rvi":"3","ty":4,"pc":{"m2m:cin":{"con":"nb"}},"rt":{"rtv":[1,1]}}"#,
        r#"{"rsc":2000,"rqi":"q","rvi":"3","oppc":{"val":["cse-in/H"]}}"#,
        r#"{"rsc":2000,"rqi":"q","rvi":"3","oppc":{"val":"cse-in/H"}}"#,
        r#"{"rsc":2001,"rqi":"q","conr":{"grtm":["a",{"rsc":2000,"rqi":"q"},"c"]}}"#,
        r#"{"rsc":2001,"rqi":"q","pc":{"m2m:cin":{"a":"x","val":" "}}}"#,
        r#"{"rsc":2001,"rqi":"q","pc":{"m2m:cin":{"da":1,"val":"t"}}}"#,
        r#"{"rsc":2001,"rqi":"q","pc":{"m2m:cin":{"xsi:t":"a","val":"t"}}}"#,
    ];
    for json in finds {
        let p = decode(Format::Json, json.as_bytes()).unwrap();
        let Ok(first) = encode(&p, Format::Xml) else {
            continue;
        };
        let again = encode(&decode(Format::Xml, &first).unwrap(), Format::Xml).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&first),
            String::from_utf8_lossy(&again),
            "{json}"
        );
    }
}
