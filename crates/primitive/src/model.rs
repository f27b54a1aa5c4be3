//! Request and response primitives (TS-0004 §6.4, ONEM2M.md §2) with their short names.
//!
//! The parameters a proxy or CSE acts on are typed fields; every other member (`rids`, `tkns`, `vsi`,
//! vendor extras such as ACME's `drt` in responses, …) is kept in `other`, in order, so nothing is ever
//! dropped. Conversion from the generic [`Map`] normalises the legacy forms of the early TS-0020 draft:
//! the `{"m2m:rqp":{…}}` / `{"m2m:rsp":{…}}` wrapper and enumerations written as strings (`"op":"1"`).

use crate::error::PrimitiveError;
use crate::rsc::Rsc;
use crate::value::{Map, Value};

/// The `op` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Create = 1,
    Retrieve = 2,
    Update = 3,
    Delete = 4,
    Notify = 5,
}

impl Operation {
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => Self::Create,
            2 => Self::Retrieve,
            3 => Self::Update,
            4 => Self::Delete,
            5 => Self::Notify,
            _ => return None,
        })
    }

    /// Lower-case name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Retrieve => "retrieve",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Notify => "notify",
        }
    }
}

/// Resource type codes used in checks (TS-0004 §6.3.4.2.1).
pub mod resource_type {
    pub const ACP: u32 = 1;
    pub const AE: u32 = 2;
    pub const CONTAINER: u32 = 3;
    pub const CONTENT_INSTANCE: u32 = 4;
    pub const CSE_BASE: u32 = 5;
    pub const GROUP: u32 = 9;
    pub const POLLING_CHANNEL: u32 = 15;
    pub const REMOTE_CSE: u32 = 16;
    pub const REQUEST: u32 = 17;
    pub const SUBSCRIPTION: u32 = 23;
    pub const FLEX_CONTAINER: u32 = 28;
    pub const TIME_SERIES: u32 = 29;
    pub const TIME_SERIES_INSTANCE: u32 = 30;

    /// The `m2m:` member name for a resource type, for the types whose name is fixed.
    pub fn member_name(ty: u32) -> Option<&'static str> {
        Some(match ty {
            ACP => "m2m:acp",
            AE => "m2m:ae",
            CONTAINER => "m2m:cnt",
            CONTENT_INSTANCE => "m2m:cin",
            CSE_BASE => "m2m:cb",
            GROUP => "m2m:grp",
            POLLING_CHANNEL => "m2m:pch",
            REMOTE_CSE => "m2m:csr",
            REQUEST => "m2m:req",
            SUBSCRIPTION => "m2m:sub",
            TIME_SERIES => "m2m:ts",
            TIME_SERIES_INSTANCE => "m2m:tsi",
            _ => return None,
        })
    }
}

/// A request primitive.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub op: Operation,
    pub to: String,
    pub fr: Option<String>,
    pub rqi: String,
    pub ty: Option<u32>,
    pub pc: Option<Value>,
    pub ot: Option<String>,
    pub rqet: Option<Value>,
    pub rset: Option<Value>,
    pub oet: Option<Value>,
    pub rt: Option<Value>,
    pub rp: Option<Value>,
    pub rcn: Option<u32>,
    pub ec: Option<Value>,
    pub fc: Option<Value>,
    pub drt: Option<u32>,
    pub rvi: Option<String>,
    /// Every other member, in the order received.
    pub other: Map,
}

impl Request {
    /// A request with the mandatory parameters and `rvi`.
    pub fn new(op: Operation, to: impl Into<String>, rqi: impl Into<String>, rvi: &str) -> Self {
        Self {
            op,
            to: to.into(),
            fr: None,
            rqi: rqi.into(),
            ty: None,
            pc: None,
            ot: None,
            rqet: None,
            rset: None,
            oet: None,
            rt: None,
            rp: None,
            rcn: None,
            ec: None,
            fc: None,
            drt: None,
            rvi: Some(rvi.to_string()),
            other: Map::new(),
        }
    }

    /// `rt.rtv` (3 blockingRequest when absent).
    pub fn response_type(&self) -> i64 {
        self.rt
            .as_ref()
            .and_then(Value::as_object)
            .and_then(|rt| rt.get("rtv"))
            .and_then(Value::as_i64_lenient)
            .unwrap_or(3)
    }

    /// Whether this is an AE registration (create of type 2).
    pub fn is_ae_create(&self) -> bool {
        self.op == Operation::Create && self.ty == Some(resource_type::AE)
    }
}

/// A response primitive.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub rsc: Rsc,
    /// Absent only when the request could not be parsed far enough to find it.
    pub rqi: Option<String>,
    pub pc: Option<Value>,
    pub to: Option<String>,
    pub fr: Option<String>,
    pub ot: Option<String>,
    pub rset: Option<Value>,
    pub ec: Option<Value>,
    pub cnst: Option<u32>,
    pub cnot: Option<u32>,
    pub rvi: Option<String>,
    pub other: Map,
}

impl Default for Response {
    fn default() -> Self {
        Self {
            rsc: Rsc::OK,
            rqi: None,
            pc: None,
            to: None,
            fr: None,
            ot: None,
            rset: None,
            ec: None,
            cnst: None,
            cnot: None,
            rvi: None,
            other: Map::new(),
        }
    }
}

/// Either primitive; on the wire a request has `op`, a response `rsc` (TS-0020 V3 Annex note).
#[derive(Debug, Clone, PartialEq)]
pub enum Primitive {
    Request(Request),
    Response(Response),
}

/// Request members in the order of the XSD sequence (CDT-requestPrimitive, TS-0004 table 6.4.1-1).
pub const REQUEST_ORDER: &[&str] = &[
    "op", "to", "fr", "rqi", "ty", "pc", "rids", "ot", "rqet", "rset", "oet", "rt", "rp", "rcn",
    "ec", "da", "gid", "fc", "drt", "tkns", "tids", "ltids", "tqi", "grtm", "asi", "aus", "auri",
    "sqi", "rvi", "vsi",
];

/// Response members in the order of CDT-responsePrimitive.
pub const RESPONSE_ORDER: &[&str] = &[
    "rsc", "rqi", "pc", "to", "fr", "ot", "rset", "ec", "cnst", "cnot", "ati", "tqf", "asri",
    "rvi", "vsi",
];

/// Put members in XSD order; members the XSD does not know keep their order, after the known ones.
pub(crate) fn sort_members(map: &mut Map, order: &[&str]) {
    map.0
        .sort_by_key(|(k, _)| order.iter().position(|o| o == k).unwrap_or(order.len()));
}

fn string(key: &str, v: Value) -> Result<String, PrimitiveError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(PrimitiveError::bad_request(format!(
            "{key} must be a string, not {}",
            other.type_name()
        ))),
    }
}

fn enum_code(key: &str, v: &Value) -> Result<u32, PrimitiveError> {
    v.as_i64_lenient()
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| {
            PrimitiveError::bad_request(format!(
                "{key} must be a non-negative integer, not {}",
                v.type_name()
            ))
        })
}

/// An `m2m:absRelTimestamp` member must be a string or an integer (its content is checked by
/// validation, which knows the receive time).
/// An `m2m:absRelTimestamp`: a timestamp, a duration or a number of milliseconds (as the routing
/// view reads it, so that whatever decodes also has a view).
fn abs_rel_value(key: &str, v: Value) -> Result<Value, PrimitiveError> {
    match v {
        Value::String(ref s) if crate::time::AbsRelTime::parse_str(s).is_none() => {
            Err(PrimitiveError::bad_request(format!(
                "{key} must be a timestamp, a duration or an integer, not {s:?}"
            )))
        }
        Value::String(_) | Value::Int(_) => Ok(v),
        other => Err(PrimitiveError::bad_request(format!(
            "{key} must be a timestamp or an integer, not {}",
            other.type_name()
        ))),
    }
}

/// Values a legacy client may have written as numeric strings; normalised to numbers.
fn normalise_enum(v: Value) -> Value {
    match v.as_i64_lenient() {
        Some(i) if matches!(v, Value::String(_)) => Value::Int(i),
        _ => v,
    }
}

impl Primitive {
    /// Interpret a decoded object as a primitive, unwrapping the draft's wrapper.
    pub fn from_map(mut map: Map) -> Result<Self, PrimitiveError> {
        if map.len() == 1 && matches!(map.0[0].0.as_str(), "m2m:rqp" | "m2m:rsp") {
            if let (_, Value::Object(inner)) = map.0.remove(0) {
                return Self::from_map(inner);
            }
            return Err(PrimitiveError::bad_request(
                "m2m:rqp/m2m:rsp wrapper must hold an object",
            ));
        }
        let rqi = map.get("rqi").and_then(Value::as_str).map(str::to_string);
        let result = if map.get("op").is_some() {
            Request::from_map(map).map(Self::Request)
        } else if map.get("rsc").is_some() {
            Response::from_map(map).map(Self::Response)
        } else {
            Err(PrimitiveError::bad_request(
                "neither a request (op) nor a response (rsc)",
            ))
        };
        result.map_err(|e| e.with_rqi(rqi))
    }

    /// The generic form, members in XSD order.
    pub fn to_map(&self) -> Map {
        match self {
            Self::Request(r) => r.to_map(),
            Self::Response(r) => r.to_map(),
        }
    }

    pub fn rqi(&self) -> Option<&str> {
        match self {
            Self::Request(r) => Some(&r.rqi),
            Self::Response(r) => r.rqi.as_deref(),
        }
    }

    pub fn pc(&self) -> Option<&Value> {
        match self {
            Self::Request(r) => r.pc.as_ref(),
            Self::Response(r) => r.pc.as_ref(),
        }
    }
}

impl Request {
    /// Build from a generic object (without wrapper).
    pub fn from_map(map: Map) -> Result<Self, PrimitiveError> {
        let (mut op, mut to, mut rqi) = (None, None, None);
        let mut req = Request::new(Operation::Retrieve, "", "", "");
        req.rvi = None;
        for (key, value) in map.0 {
            match key.as_str() {
                "op" => {
                    let code = value.as_i64_lenient();
                    op = Some(code.and_then(Operation::from_code).ok_or_else(|| {
                        PrimitiveError::bad_request(format!("op must be 1..5, got {value:?}"))
                    })?);
                }
                "to" => to = Some(string("to", value)?),
                "fr" => req.fr = Some(string("fr", value)?),
                "rqi" => rqi = Some(string("rqi", value)?),
                "ty" => req.ty = Some(enum_code("ty", &value)?),
                "pc" => req.pc = Some(value),
                "ot" => req.ot = Some(string("ot", value)?),
                "rqet" => req.rqet = Some(abs_rel_value("rqet", value)?),
                "rset" => req.rset = Some(abs_rel_value("rset", value)?),
                "oet" => req.oet = Some(abs_rel_value("oet", value)?),
                "rt" => req.rt = Some(value),
                "rp" => req.rp = Some(abs_rel_value("rp", value)?),
                "rcn" => req.rcn = Some(enum_code("rcn", &value)?),
                "ec" => req.ec = Some(normalise_enum(value)),
                "fc" => req.fc = Some(value),
                "drt" => req.drt = Some(enum_code("drt", &value)?),
                "rvi" => req.rvi = Some(string("rvi", value)?),
                _ => req.other.0.push((key, value)),
            }
        }
        req.rqi = rqi.ok_or_else(|| PrimitiveError::bad_request("missing rqi"))?;
        let rqi = Some(req.rqi.clone());
        req.op =
            op.ok_or_else(|| PrimitiveError::bad_request("missing op").with_rqi(rqi.clone()))?;
        req.to = to.ok_or_else(|| PrimitiveError::bad_request("missing to").with_rqi(rqi))?;
        Ok(req)
    }

    /// The generic form, members in XSD order.
    pub fn to_map(&self) -> Map {
        let mut m = Map(Vec::with_capacity(8 + self.other.len()));
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.0.push((k.to_string(), v));
            }
        };
        put("op", Some(Value::Int(self.op as i64)));
        put("to", Some(Value::String(self.to.clone())));
        put("fr", self.fr.clone().map(Value::String));
        put("rqi", Some(Value::String(self.rqi.clone())));
        put("ty", self.ty.map(|t| Value::Int(t.into())));
        put("pc", self.pc.clone());
        put("ot", self.ot.clone().map(Value::String));
        put("rqet", self.rqet.clone());
        put("rset", self.rset.clone());
        put("oet", self.oet.clone());
        put("rt", self.rt.clone());
        put("rp", self.rp.clone());
        put("rcn", self.rcn.map(|t| Value::Int(t.into())));
        put("ec", self.ec.clone());
        put("fc", self.fc.clone());
        put("drt", self.drt.map(|t| Value::Int(t.into())));
        put("rvi", self.rvi.clone().map(Value::String));
        m.0.extend(self.other.0.iter().cloned());
        sort_members(&mut m, REQUEST_ORDER);
        m
    }
}

impl Response {
    /// Build from a generic object (without wrapper).
    pub fn from_map(map: Map) -> Result<Self, PrimitiveError> {
        let mut rsp = Response::default();
        let mut rsc = None;
        for (key, value) in map.0 {
            match key.as_str() {
                "rsc" => {
                    let code = enum_code("rsc", &value)?;
                    rsc = Some(Rsc(u16::try_from(code)
                        .map_err(|_| PrimitiveError::bad_request("rsc out of range"))?));
                }
                "rqi" => rsp.rqi = Some(string("rqi", value)?),
                "pc" => rsp.pc = Some(value),
                "to" => rsp.to = Some(string("to", value)?),
                "fr" => rsp.fr = Some(string("fr", value)?),
                "ot" => rsp.ot = Some(string("ot", value)?),
                "rset" => rsp.rset = Some(value),
                "ec" => rsp.ec = Some(normalise_enum(value)),
                "cnst" => rsp.cnst = Some(enum_code("cnst", &value)?),
                "cnot" => rsp.cnot = Some(enum_code("cnot", &value)?),
                "rvi" => rsp.rvi = Some(string("rvi", value)?),
                _ => rsp.other.0.push((key, value)),
            }
        }
        rsp.rsc = rsc.ok_or_else(|| PrimitiveError::bad_request("missing rsc"))?;
        Ok(rsp)
    }

    /// A response to `req` with `rsc`, echoing `rqi` and `rvi`.
    pub fn to_request(req: &Request, rsc: Rsc) -> Self {
        Self {
            rsc,
            rqi: Some(req.rqi.clone()),
            rvi: req.rvi.clone(),
            ..Self::default()
        }
    }

    /// The generic form, members in XSD order.
    pub fn to_map(&self) -> Map {
        let mut m = Map(Vec::with_capacity(6 + self.other.len()));
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.0.push((k.to_string(), v));
            }
        };
        put("rsc", Some(Value::Int(self.rsc.0.into())));
        put("rqi", self.rqi.clone().map(Value::String));
        put("pc", self.pc.clone());
        put("to", self.to.clone().map(Value::String));
        put("fr", self.fr.clone().map(Value::String));
        put("ot", self.ot.clone().map(Value::String));
        put("rset", self.rset.clone());
        put("ec", self.ec.clone());
        put("cnst", self.cnst.map(|t| Value::Int(t.into())));
        put("cnot", self.cnot.map(|t| Value::Int(t.into())));
        put("rvi", self.rvi.clone().map(Value::String));
        m.0.extend(self.other.0.iter().cloned());
        sort_members(&mut m, RESPONSE_ORDER);
        m
    }
}
