//! Holding against the real ACME, on both drivers and in both upstream modes: a device subscribes
//! to its own container (`nu` = its AE-ID) and leaves; another originator (ACME's admin, straight
//! at ACME) creates three contentInstances; ACME's NOTIFYs reach the edge (passthrough: on the link
//! the edge keeps open for the device; multiplex: on the notify listener) and are held; the device
//! comes back within the hold time, gets the three in order before anything else, answers them,
//! and the subscription still exists at ACME. A fourth, created while it is away and left past the
//! hold time, is never delivered and is counted as expired.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use m2m_primitive::{Operation, Primitive, Rsc};

use crate::edge::{expect, http_get, metric, modes, req, start_edge, unique};
use crate::support::acme::start_acme;
use crate::support::ws_client::WsClient;
use crate::support::{drivers, free_port};

const HOLD_TTL_S: u64 = 4;

/// Poll the edge's /metrics until `series` reaches `want` (ACME notifies asynchronously).
fn wait_metric(admin: SocketAddr, series: &str, want: f64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = http_get(admin, "/metrics");
        let got = metric(&text, series);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {series} = {got}, want {want}\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cin(ae: &str, con: &str) -> Primitive {
    req(&format!(
        r#"{{"op":1,"to":"cse-in/{ae}/c","fr":"CAdmin","rqi":"{con}","rvi":"3","ty":4,"pc":{{"m2m:cin":{{"con":"{con}"}}}}}}"#
    ))
}

/// The `con` of the contentInstance a NOTIFY carries.
fn notified_con(p: &Primitive) -> String {
    let Primitive::Request(r) = p else {
        panic!("a NOTIFY expected, got {p:?}")
    };
    assert_eq!(r.op, Operation::Notify, "{r:?}");
    let text = format!("{:?}", r.pc);
    ["v1", "v2", "v3", "v4"]
        .into_iter()
        .find(|v| text.contains(&format!("\"{v}\"")))
        .unwrap_or_else(|| panic!("no con in {text}"))
        .to_string()
}

#[test]
fn notifies_for_a_sleeping_device_are_held_and_delivered_in_order_when_it_returns() {
    let acme = start_acme("hold-acme", false);
    for io in drivers() {
        for (mode, margs) in modes() {
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let (admin_text, ttl) = (admin.to_string(), format!("{HOLD_TTL_S}s"));
            let mut args = vec!["--admin", &admin_text, "--hold-ttl", &ttl];
            args.extend(margs.iter().map(String::as_str));
            let edge = start_edge(io, acme.ws, &args);
            let what = format!("{io}/{mode}");
            one_sleep(edge.addr, admin, acme.ws, &what);
        }
    }
}

fn one_sleep(edge: SocketAddr, admin: SocketAddr, acme: SocketAddr, what: &str) {
    let ae = unique("Chold");
    let mut others = Vec::new();
    let mut dev = WsClient::connect(edge, &["oneM2M.json"], None).unwrap();
    let reg = req(&format!(
        r#"{{"op":1,"to":"cse-in","fr":"{ae}","rqi":"r1","rvi":"3","ty":2,"pc":{{"m2m:ae":{{"rn":"{ae}","api":"Nhold","rr":true,"srv":["3"],"poa":["ws://default"]}}}}}}"#
    ));
    expect(&dev.request(&reg, &mut others), 2001, what);
    let cnt = req(&format!(
        r#"{{"op":1,"to":"cse-in/{ae}","fr":"{ae}","rqi":"r2","rvi":"3","ty":3,"pc":{{"m2m:cnt":{{"rn":"c"}}}}}}"#
    ));
    expect(&dev.request(&cnt, &mut others), 2001, what);
    let sub = req(&format!(
        r#"{{"op":1,"to":"cse-in/{ae}/c","fr":"{ae}","rqi":"r3","rvi":"3","ty":23,"pc":{{"m2m:sub":{{"rn":"s","nu":["{ae}"],"enc":{{"net":[3]}},"nct":1}}}}}}"#
    ));
    expect(&dev.request(&sub, &mut others), 2001, what);
    drop(dev);
    wait_metric(admin, "m2m_edge_device_sessions ", 0.0, what);

    // Another originator writes while the device sleeps.
    let mut cse_admin = WsClient::connect(acme, &["oneM2M.json"], Some("CAdmin")).unwrap();
    // One at a time: ACME sends each NOTIFY from its own thread (in multiplex over its own
    // connection to the notify listener), so two in flight at once may arrive in either order; the
    // edge keeps arrival order.
    for (i, v) in ["v1", "v2", "v3"].into_iter().enumerate() {
        expect(&cse_admin.request(&cin(&ae, v), &mut others), 2001, what);
        wait_metric(admin, "m2m_edge_held_primitives ", i as f64 + 1.0, what);
    }

    // Back within the hold time, naming itself: the three come first, in order.
    let mut dev = WsClient::connect(edge, &["oneM2M.json"], Some(&ae)).unwrap();
    for want in ["v1", "v2", "v3"] {
        let n = dev.recv();
        assert_eq!(notified_con(&n), want, "{what}: order");
        let Primitive::Request(r) = &n else {
            unreachable!()
        };
        let mut ok = m2m_primitive::Response::to_request(r, Rsc::OK);
        ok.rvi = Some("3".into());
        dev.send(&Primitive::Response(ok));
    }
    let get_sub = req(&format!(
        r#"{{"op":2,"to":"cse-in/{ae}/c/s","fr":"{ae}","rqi":"r4","rvi":"3"}}"#
    ));
    expect(
        &dev.request(&get_sub, &mut others),
        2000,
        "the subscription survived",
    );
    assert!(others.is_empty(), "{what}: {others:?}");
    wait_metric(
        admin,
        "m2m_edge_held_outcomes_total{outcome=\"delivered\"}",
        3.0,
        what,
    );
    drop(dev);
    wait_metric(admin, "m2m_edge_device_sessions ", 0.0, what);

    // A fourth while it is away, and it stays away past the hold time.
    expect(&cse_admin.request(&cin(&ae, "v4"), &mut others), 2001, what);
    wait_metric(admin, "m2m_edge_held_primitives ", 1.0, what);
    std::thread::sleep(Duration::from_secs(HOLD_TTL_S) + Duration::from_millis(500));
    wait_metric(
        admin,
        "m2m_edge_held_outcomes_total{outcome=\"expired\"}",
        1.0,
        what,
    );
    let mut dev = WsClient::connect(edge, &["oneM2M.json"], Some(&ae)).unwrap();
    let get_sub = req(&format!(
        r#"{{"op":2,"to":"cse-in/{ae}/c/s","fr":"{ae}","rqi":"r5","rvi":"3"}}"#
    ));
    expect(&dev.request(&get_sub, &mut others), 2000, what);
    assert!(
        others.is_empty(),
        "{what}: the expired NOTIFY was delivered: {others:?}"
    );
    let del = req(&format!(
        r#"{{"op":4,"to":"cse-in/{ae}","fr":"{ae}","rqi":"r6","rvi":"3"}}"#
    ));
    expect(&dev.request(&del, &mut others), 2002, what);
}
