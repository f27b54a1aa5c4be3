//! The edge as the point of access of devices on shared links. A CSE reaches an AE over the AE's own
//! connection or by dialing its `poa`; on a shared link the AE has no connection of its own, so the
//! edge points the `poa` of AE and remoteCSE creates and updates at its notify listener when the
//! device asked to be reachable through its WebSocket (`ws://default`, or `rr: true` with no `poa`).
//! The device's other `poa` values (its own HTTP server, say) are kept. On the way down, a resource in
//! a response shows the device `ws://default` where the edge put its own URL: the device sees what
//! it set, not the rewrite.

use m2m_primitive::{Primitive, Value};

/// The `poa` the device means when it wants to be reached over its WebSocket.
pub(crate) const WS_DEFAULT: &str = "ws://default";

/// The resource object (`m2m:ae` or `m2m:csr`) in a primitive's content.
fn resource_mut(p: &mut Primitive) -> Option<&mut m2m_primitive::Map> {
    let pc = match p {
        Primitive::Request(r) => r.pc.as_mut()?,
        Primitive::Response(r) => r.pc.as_mut()?,
    };
    let Value::Object(pc) = pc else { return None };
    let key = if pc.get("m2m:ae").is_some() {
        "m2m:ae"
    } else {
        "m2m:csr"
    };
    match pc.get_mut(key)? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Point a create or update at the edge: `ws://default` entries become `url` (with `/<id>` when the
/// device's id is known), and `rr: true` without any `poa` gets one. Returns whether it changed.
pub(crate) fn point_at_edge(p: &mut Primitive, url: &str, id: Option<&str>, create: bool) -> bool {
    let Some(res) = resource_mut(p) else {
        return false;
    };
    let ours = match id {
        Some(id) => format!("{}/{id}", url.trim_end_matches('/')),
        None => url.to_string(),
    };
    let rr = res.get("rr") == Some(&Value::Bool(true));
    match res.get_mut("poa") {
        Some(Value::Array(poa)) => {
            let mut changed = false;
            for entry in poa.iter_mut() {
                if entry.as_str() == Some(WS_DEFAULT) {
                    *entry = Value::String(ours.clone());
                    changed = true;
                }
            }
            changed
        }
        None if create && rr => {
            res.insert("poa", Value::Array(vec![Value::String(ours)]));
            true
        }
        _ => false,
    }
}

/// In a resource on its way to the device, show `ws://default` where the edge put `url`. Returns
/// whether it changed.
pub(crate) fn show_device_view(p: &mut Primitive, url: &str) -> bool {
    let Some(res) = resource_mut(p) else {
        return false;
    };
    let Some(Value::Array(poa)) = res.get_mut("poa") else {
        return false;
    };
    let base = url.trim_end_matches('/');
    let ours = |s: &str| {
        s == base
            || s.strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    let mut changed = false;
    for entry in poa.iter_mut() {
        if entry.as_str().is_some_and(ours) {
            *entry = Value::String(WS_DEFAULT.into());
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::json;

    #[test]
    fn ws_default_points_at_the_edge_and_other_poas_stay() {
        let mut p = json(
            r#"{"op":1,"to":"cse-in","fr":"Ca","rqi":"1","rvi":"3","ty":2,"pc":{"m2m:ae":{"rr":true,"poa":["ws://default","http://10.0.0.5:80/a"]}}}"#,
        );
        assert!(point_at_edge(&mut p, "ws://edge:9001/", Some("Ca"), true));
        let text = format!("{p:?}");
        assert!(
            text.contains("ws://edge:9001/Ca") && text.contains("http://10.0.0.5:80/a"),
            "{text}"
        );
        assert!(show_device_view(&mut p, "ws://edge:9001/"));
        assert!(format!("{p:?}").contains("ws://default"));
        // Only the edge's own URL, not one that merely starts with it.
        let mut q = json(
            r#"{"rsc":2001,"rqi":"1","rvi":"3","pc":{"m2m:ae":{"poa":["ws://edge:90011/x"]}}}"#,
        );
        assert!(!show_device_view(&mut q, "ws://edge:9001/"));
    }

    #[test]
    fn rr_true_without_poa_gets_the_edge_and_rr_false_is_left_alone() {
        let mut p = json(
            r#"{"op":1,"to":"cse-in","fr":"C","rqi":"1","rvi":"3","ty":2,"pc":{"m2m:ae":{"rr":true,"api":"Na"}}}"#,
        );
        assert!(point_at_edge(&mut p, "ws://edge:9001/", None, true));
        assert!(format!("{p:?}").contains("ws://edge:9001/"));
        let mut q = json(
            r#"{"op":1,"to":"cse-in","fr":"C","rqi":"1","rvi":"3","ty":2,"pc":{"m2m:ae":{"rr":false,"api":"Na"}}}"#,
        );
        assert!(!point_at_edge(&mut q, "ws://edge:9001/", None, true));
    }
}
