//! The protocol core against the real ACME CSE, with no edge in between: our client handshake,
//! frames and JSON/CBOR codecs must register an AE, create a container and contentInstances, read
//! `la` back and deregister, exactly as ONEM2M.md §5 and §8 describe ACME's behaviour.

use m2m_primitive::{Format, Primitive, Rsc, Validator, Value};

use crate::support::acme::start_acme;
use crate::support::ws_client::WsClient;

fn req(json: &str) -> Primitive {
    m2m_primitive::decode(Format::Json, json.as_bytes()).unwrap()
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

fn check(rsp: &m2m_primitive::Response, rsc: u16, what: &str) {
    Validator::default().response(rsp).unwrap();
    assert_eq!(rsp.rsc, Rsc(rsc), "{what}: {rsp:?}");
}

fn pc_member<'a>(rsp: &'a m2m_primitive::Response, member: &str) -> &'a m2m_primitive::Map {
    rsp.pc
        .as_ref()
        .and_then(Value::as_object)
        .and_then(|pc| pc.get(member))
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no {member} in {rsp:?}"))
}

/// Register, reconnect with X-M2M-Origin, create container and contentInstance, read `la`, delete.
fn device_session(acme_ws: std::net::SocketAddr, protocol: &str) {
    let ae = unique("Ctest");
    let mut others = Vec::new();
    // A connection without X-M2M-Origin may carry only the registration (ACME).
    let mut c = WsClient::connect(acme_ws, &[protocol], None).unwrap();
    assert_eq!(c.protocol, protocol);
    let create = req(&format!(
        r#"{{"op":1,"to":"cse-in","fr":"{ae}","rqi":"r1","rvi":"3","ty":2,"pc":{{"m2m:ae":{{"rn":"{ae}","api":"Nedge","rr":true,"srv":["3"],"poa":["ws://default"]}}}}}}"#
    ));
    let rsp = c.request(&create, &mut others);
    check(&rsp, 2001, "AE create");
    assert_eq!(
        pc_member(&rsp, "m2m:ae").get("aei").and_then(Value::as_str),
        Some(ae.as_str())
    );
    let retrieve = req(&format!(
        r#"{{"op":2,"to":"cse-in","fr":"{ae}","rqi":"r2","rvi":"3"}}"#
    ));
    check(
        &c.request(&retrieve, &mut others),
        4103,
        "retrieve on a connection without X-M2M-Origin",
    );
    drop(c);

    let mut c = WsClient::connect(acme_ws, &[protocol], Some(&ae)).unwrap();
    let cnt = req(&format!(
        r#"{{"op":1,"to":"cse-in/{ae}","fr":"{ae}","rqi":"r3","rvi":"3","ty":3,"pc":{{"m2m:cnt":{{"rn":"readings","mni":10}}}}}}"#
    ));
    check(&c.request(&cnt, &mut others), 2001, "container create");
    let cin = req(&format!(
        r#"{{"op":1,"to":"cse-in/{ae}/readings","fr":"{ae}","rqi":"r4","rvi":"3","ty":4,"pc":{{"m2m:cin":{{"cnf":"application/json:0","con":"{{\"kWh\":12.5}}"}}}}}}"#
    ));
    check(
        &c.request(&cin, &mut others),
        2001,
        "contentInstance create",
    );
    let la = req(&format!(
        r#"{{"op":2,"to":"cse-in/{ae}/readings/la","fr":"{ae}","rqi":"r5","rvi":"3"}}"#
    ));
    let rsp = c.request(&la, &mut others);
    check(&rsp, 2000, "retrieve la");
    assert_eq!(
        pc_member(&rsp, "m2m:cin")
            .get("con")
            .and_then(Value::as_str),
        Some(r#"{"kWh":12.5}"#)
    );
    let missing = req(&format!(
        r#"{{"op":2,"to":"cse-in/{ae}/nothere","fr":"{ae}","rqi":"r6","rvi":"3"}}"#
    ));
    check(
        &c.request(&missing, &mut others),
        4004,
        "retrieve of a missing resource",
    );
    let delete = req(&format!(
        r#"{{"op":4,"to":"cse-in/{ae}","fr":"{ae}","rqi":"r7","rvi":"3"}}"#
    ));
    check(&c.request(&delete, &mut others), 2002, "AE delete");
    assert!(others.is_empty(), "unexpected primitives: {others:?}");
}

#[test]
fn json_and_cbor_sessions_against_acme() {
    let acme = start_acme("acme-direct", false);
    device_session(acme.ws, "oneM2M.json");
    device_session(acme.ws, "oneM2M.cbor");
    // ACME has no XML and no R2.0 names (ONEM2M.md §1.1): the handshake is refused with 400.
    for refused in ["oneM2M.xml", "oneM2M.R2.0.json"] {
        match WsClient::connect(acme.ws, &[refused], None) {
            Err(m2m_ws::HandshakeError::Status(400)) => {}
            Err(e) => panic!("{refused}: {e}"),
            Ok(_) => panic!("{refused} was accepted"),
        }
    }
}
