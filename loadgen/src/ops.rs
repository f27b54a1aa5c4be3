//! The primitives a simulated device sends and the few it must understand, built with the
//! `primitive` crate so JSON, CBOR and XML all come from one model. A created contentInstance carries
//! its creation time in `con` (`t<µs since run start>:` then padding), so the NOTIFY it triggers tells
//! how long delivery took.

use std::time::Duration;

use m2m_primitive::model::resource_type;
use m2m_primitive::{Format, Map, Operation, Primitive, Request, Response, Rsc, Value};

use crate::recorder::OpKind;

fn obj(members: Vec<(&str, Value)>) -> Value {
    Value::Object(Map(members
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()))
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}

/// What a device says in its AE create.
#[derive(Debug, Clone)]
pub struct AeProfile {
    pub api: String,
    pub rr: bool,
    pub srv: Vec<String>,
    pub poa: Vec<String>,
}

/// Builds one device's requests.
#[derive(Debug, Clone)]
pub struct Builder {
    pub format: Format,
    pub rvi: String,
    /// The originator (`fr`), once known.
    pub fr: String,
    pub rqet_ms: u64,
}

impl Builder {
    fn request(&self, op: Operation, to: &str, rqi: &str) -> Request {
        let mut r = Request::new(op, to, rqi, &self.rvi);
        r.fr = Some(self.fr.clone());
        r
    }

    pub fn encode(&self, p: Primitive) -> Vec<u8> {
        m2m_primitive::encode(&p, self.format).expect("our own primitives encode")
    }

    /// AE create (registration); `rn` None lets the CSE name it.
    pub fn register(&self, to: &str, rqi: &str, rn: Option<&str>, ae: &AeProfile) -> Vec<u8> {
        let mut r = self.request(Operation::Create, to, rqi);
        r.ty = Some(resource_type::AE);
        let mut members = Vec::new();
        if let Some(rn) = rn {
            members.push(("rn", Value::String(rn.into())));
        }
        members.push(("api", Value::String(ae.api.clone())));
        members.push(("rr", Value::Bool(ae.rr)));
        members.push(("srv", strings(&ae.srv)));
        if !ae.poa.is_empty() {
            members.push(("poa", strings(&ae.poa)));
        }
        r.pc = Some(obj(vec![("m2m:ae", obj(members))]));
        self.encode(Primitive::Request(r))
    }

    pub fn container(&self, parent: &str, rqi: &str, rn: &str, mni: u64) -> Vec<u8> {
        let mut r = self.request(Operation::Create, parent, rqi);
        r.ty = Some(resource_type::CONTAINER);
        let mut members = vec![("rn", Value::String(rn.into()))];
        if mni > 0 {
            members.push(("mni", Value::Int(mni as i64)));
        }
        r.pc = Some(obj(vec![("m2m:cnt", obj(members))]));
        self.encode(Primitive::Request(r))
    }

    /// A subscription to `parent` for child creation, notifying `nu` with the whole resource.
    pub fn subscription(&self, parent: &str, rqi: &str, nu: &str) -> Vec<u8> {
        let mut r = self.request(Operation::Create, parent, rqi);
        r.ty = Some(resource_type::SUBSCRIPTION);
        r.pc = Some(obj(vec![(
            "m2m:sub",
            obj(vec![
                ("rn", Value::String("lgsub".into())),
                ("enc", obj(vec![("net", Value::Array(vec![Value::Int(3)]))])),
                ("nu", Value::Array(vec![Value::String(nu.into())])),
                ("nct", Value::Int(1)),
            ]),
        )]));
        self.encode(Primitive::Request(r))
    }

    pub fn delete(&self, to: &str, rqi: &str) -> Vec<u8> {
        self.encode(Primitive::Request(self.request(Operation::Delete, to, rqi)))
    }

    /// One operation of the mix on `container` (under `ae`).
    pub fn op(
        &self,
        kind: OpKind,
        ae: &str,
        container: &str,
        rqi: &str,
        since_start: Duration,
        payload_bytes: usize,
        seq: u64,
    ) -> Vec<u8> {
        let mut r = match kind {
            OpKind::CreateCin => {
                let mut r = self.request(Operation::Create, container, rqi);
                r.ty = Some(resource_type::CONTENT_INSTANCE);
                r.pc = Some(obj(vec![(
                    "m2m:cin",
                    obj(vec![
                        ("cnf", Value::String("text/plain:0".into())),
                        ("con", Value::String(stamp(since_start, payload_bytes))),
                    ]),
                )]));
                r
            }
            OpKind::RetrieveLa => {
                self.request(Operation::Retrieve, &format!("{container}/la"), rqi)
            }
            OpKind::Update => {
                let mut r = self.request(Operation::Update, container, rqi);
                r.pc = Some(obj(vec![(
                    "m2m:cnt",
                    obj(vec![(
                        "lbl",
                        Value::Array(vec![Value::String(format!("seq-{seq}"))]),
                    )]),
                )]));
                r
            }
            OpKind::Discovery => {
                let mut r = self.request(Operation::Retrieve, ae, rqi);
                r.fc = Some(obj(vec![
                    ("fu", Value::Int(1)),
                    // A list: ACME refuses a bare number (4000, "expected type: list").
                    (
                        "ty",
                        Value::Array(vec![Value::Int(i64::from(resource_type::CONTAINER))]),
                    ),
                    ("lim", Value::Int(10)),
                ]));
                r
            }
        };
        if self.rqet_ms > 0 {
            r.rqet = Some(Value::String(format!(
                "PT{}.{:03}S",
                self.rqet_ms / 1000,
                self.rqet_ms % 1000
            )));
        }
        self.encode(Primitive::Request(r))
    }

    /// The answer to a NOTIFY.
    pub fn notify_ok(&self, req: &Request) -> Vec<u8> {
        let rsp = Response {
            rsc: Rsc::OK,
            rqi: Some(req.rqi.clone()),
            to: req.fr.clone(),
            fr: Some(self.fr.clone()),
            rvi: Some(self.rvi.clone()),
            ..Response::default()
        };
        self.encode(Primitive::Response(rsp))
    }
}

/// `con` of a created contentInstance: the creation time, then padding up to `len` bytes.
pub fn stamp(since_start: Duration, len: usize) -> String {
    let mut s = format!("t{}:", since_start.as_micros());
    while s.len() < len {
        s.push('x');
    }
    s
}

/// The creation time a NOTIFY's contentInstance carries, if it is one of ours.
pub fn notified_stamp(req: &Request) -> Option<Duration> {
    let con = req
        .pc
        .as_ref()?
        .as_object()?
        .get("m2m:sgn")?
        .as_object()?
        .get("nev")?
        .as_object()?
        .get("rep")?
        .as_object()?
        .get("m2m:cin")?
        .as_object()?
        .get("con")?
        .as_str()?;
    let micros: u64 = con.strip_prefix('t')?.split(':').next()?.parse().ok()?;
    Some(Duration::from_micros(micros))
}

/// `aei` and `rn` from an AE create's response.
pub fn registered(rsp: &Response) -> Option<(String, String)> {
    let ae = rsp.pc.as_ref()?.as_object()?.get("m2m:ae")?.as_object()?;
    let aei = ae.get("aei")?.as_str()?.to_string();
    let rn = ae
        .get("rn")
        .and_then(Value::as_str)
        .unwrap_or(&aei)
        .to_string();
    Some((aei, rn))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(format: Format) -> Builder {
        Builder {
            format,
            rvi: "3".into(),
            fr: "Cdev1".into(),
            rqet_ms: 1500,
        }
    }

    #[test]
    fn every_operation_decodes_as_a_valid_request_in_every_format() {
        let v = m2m_primitive::Validator::default();
        for format in [Format::Json, Format::Cbor, Format::Xml] {
            let b = builder(format);
            let ae = AeProfile {
                api: "Nx".into(),
                rr: true,
                srv: vec!["3".into()],
                poa: vec!["ws://default".into()],
            };
            let mut all = vec![
                b.register("cse-in", "r1", Some("Cdev1"), &ae),
                b.container("cse-in/Cdev1", "r2", "cnt0", 5),
                b.subscription("cse-in/Cdev1/cnt0", "r3", "Cdev1"),
                b.delete("cse-in/Cdev1", "r4"),
            ];
            for k in OpKind::ALL {
                all.push(b.op(
                    k,
                    "cse-in/Cdev1",
                    "cse-in/Cdev1/cnt0",
                    "r5",
                    Duration::from_millis(7),
                    32,
                    9,
                ));
            }
            for bytes in all {
                let Primitive::Request(r) = m2m_primitive::decode(format, &bytes).unwrap() else {
                    panic!("not a request")
                };
                v.request(&r, m2m_primitive::time::now_millis()).unwrap();
            }
        }
    }

    #[test]
    fn the_creation_stamp_survives_a_notify() {
        let con = stamp(Duration::from_micros(123_456), 40);
        assert_eq!(con.len(), 40);
        let json = format!(
            r#"{{"op":5,"to":"Cdev1","fr":"/id-in","rqi":"n1","rvi":"3","pc":{{"m2m:sgn":{{"nev":{{"rep":{{"m2m:cin":{{"con":"{con}"}}}},"net":3}},"sur":"x"}}}}}}"#
        );
        let Primitive::Request(r) = m2m_primitive::decode(Format::Json, json.as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(notified_stamp(&r), Some(Duration::from_micros(123_456)));
        let ok = builder(Format::Json).notify_ok(&r);
        let Primitive::Response(rsp) = m2m_primitive::decode(Format::Json, &ok).unwrap() else {
            panic!()
        };
        assert_eq!((rsp.rsc, rsp.rqi.as_deref()), (Rsc::OK, Some("n1")));
    }
}
