//! Receiver checks of TS-0004 §7.3.2.1 and table 8.2.2-1 (ONEM2M.md §2.2), each mapped to its `rsc`:
//! mandatory and not-permitted parameters per operation (4000), release version (4001), time formats
//! (4000) and expiry (4008), AE registration attributes (4000). Every error carries the request's `rqi`.

use crate::error::PrimitiveError;
use crate::model::{Operation, Request, Response, resource_type};
use crate::rsc::{Rsc, RscClass};
use crate::time::{AbsRelTime, UnixMillis, parse_timestamp};
use crate::value::Value;

/// What the receiver supports.
#[derive(Debug, Clone)]
pub struct Validator {
    /// Release versions accepted in `rvi`. Default `2a, 3, 4, 5` (ACME's list).
    pub supported_rvi: Vec<String>,
}

impl Default for Validator {
    fn default() -> Self {
        Self {
            supported_rvi: ["2a", "3", "4", "5"].map(String::from).to_vec(),
        }
    }
}

fn bad(dbg: impl Into<String>) -> PrimitiveError {
    PrimitiveError::bad_request(dbg)
}

/// Parse an absRelTimestamp parameter value.
pub fn abs_rel(name: &str, v: &Value) -> Result<AbsRelTime, PrimitiveError> {
    match v {
        Value::Int(i) => Ok(AbsRelTime::Relative(*i)),
        Value::String(s) => AbsRelTime::parse_str(s)
            .ok_or_else(|| bad(format!("{name} {s:?} is not a timestamp or a duration"))),
        other => Err(bad(format!(
            "{name} must be a timestamp, not {}",
            other.type_name()
        ))),
    }
}

/// rcn values allowed per operation (TS-0004 §6.3.3.2.2 / table 8.2.2-1 notes; R4 adds 9–12).
fn rcn_allowed(op: Operation, rcn: u32) -> bool {
    match op {
        Operation::Create => matches!(rcn, 0..=3 | 9),
        Operation::Retrieve => matches!(rcn, 1 | 4..=8 | 10..=12),
        Operation::Update => matches!(rcn, 0 | 1 | 9),
        Operation::Delete => matches!(rcn, 0 | 1 | 4..=6 | 8 | 9),
        Operation::Notify => false,
    }
}

impl Validator {
    /// Check a request received at `received` (Unix ms).
    pub fn request(&self, req: &Request, received: UnixMillis) -> Result<(), PrimitiveError> {
        self.request_inner(req, received)
            .map_err(|e| e.with_rqi(Some(req.rqi.clone())))
    }

    fn request_inner(&self, req: &Request, received: UnixMillis) -> Result<(), PrimitiveError> {
        match req.rvi.as_deref() {
            None => {
                return Err(PrimitiveError::new(
                    Rsc::RELEASE_VERSION_NOT_SUPPORTED,
                    "missing rvi: Release 1 is not supported",
                ));
            }
            Some(v) if !self.supported_rvi.iter().any(|s| s == v) => {
                return Err(PrimitiveError::new(
                    Rsc::RELEASE_VERSION_NOT_SUPPORTED,
                    format!(
                        "rvi {v:?} is not supported (supported: {})",
                        self.supported_rvi.join(", ")
                    ),
                ));
            }
            Some(_) => {}
        }
        if req.to.is_empty() {
            return Err(bad("to is empty"));
        }
        if req.rqi.is_empty() {
            return Err(bad("rqi is empty"));
        }
        if req.fr.as_deref().is_none_or(str::is_empty) && !req.is_ae_create() {
            return Err(bad("fr is mandatory except for an AE create"));
        }
        let op = req.op;
        let has = |k: &str| req.other.get(k).is_some();
        if req.ty.is_some() && op != Operation::Create {
            return Err(bad(format!(
                "ty is not permitted in a {} request",
                op.name()
            )));
        }
        if (req.drt.is_some() || has("sqi")) && op != Operation::Retrieve {
            return Err(bad(format!(
                "drt and sqi are not permitted in a {} request",
                op.name()
            )));
        }
        if req.fc.is_some() && matches!(op, Operation::Create | Operation::Notify) {
            return Err(bad(format!(
                "fc is not permitted in a {} request",
                op.name()
            )));
        }
        if op == Operation::Notify && (req.rp.is_some() || req.rcn.is_some()) {
            return Err(bad("rp and rcn are not permitted in a notify request"));
        }
        match op {
            Operation::Create if req.ty.is_none() => {
                return Err(bad("ty is mandatory in a create request"));
            }
            Operation::Create | Operation::Update | Operation::Notify if req.pc.is_none() => {
                return Err(bad(format!("pc is mandatory in a {} request", op.name())));
            }
            Operation::Delete if req.pc.is_some() => {
                return Err(bad("pc is not permitted in a delete request"));
            }
            _ => {}
        }
        if let Some(rcn) = req.rcn
            && !rcn_allowed(op, rcn)
        {
            return Err(bad(format!(
                "rcn {rcn} is not valid for a {} request",
                op.name()
            )));
        }
        if let Some(pc) = &req.pc
            && op != Operation::Retrieve
        {
            let obj = pc.as_object().ok_or_else(|| bad("pc must be an object"))?;
            if matches!(op, Operation::Create | Operation::Update) && obj.len() != 1 {
                return Err(bad("pc must hold exactly one resource"));
            }
            if let (Operation::Create, Some(ty)) = (op, req.ty)
                && let Some(expected) = resource_type::member_name(ty)
                && obj.get(expected).is_none()
            {
                return Err(bad(format!("ty {ty} needs pc.{expected}")));
            }
        }
        if let Some(ot) = &req.ot
            && parse_timestamp(ot).is_none()
        {
            return Err(bad(format!("ot {ot:?} is not a timestamp")));
        }
        let rqet = req.rqet.as_ref().map(|v| abs_rel("rqet", v)).transpose()?;
        let rset = req.rset.as_ref().map(|v| abs_rel("rset", v)).transpose()?;
        let oet = req.oet.as_ref().map(|v| abs_rel("oet", v)).transpose()?;
        req.rp.as_ref().map(|v| abs_rel("rp", v)).transpose()?;
        if let Some(t) = rqet
            && t.resolve(received) < received
        {
            return Err(PrimitiveError::new(
                Rsc::REQUEST_TIMEOUT,
                "request expired (rqet in the past)",
            ));
        }
        if let Some(t) = rset
            && t.resolve(received) < received
        {
            return Err(PrimitiveError::new(
                Rsc::REQUEST_TIMEOUT,
                "result expiration (rset) in the past",
            ));
        }
        if let (Some(q), Some(s)) = (rqet, rset)
            && s.resolve(received) < q.resolve(received)
        {
            return Err(bad("rset must not be earlier than rqet"));
        }
        if let (Some(o), Some(q)) = (oet, rqet)
            && o.resolve(received) >= q.resolve(received)
        {
            return Err(bad("oet must be earlier than rqet"));
        }
        if let Some(ec) = &req.ec {
            let code = ec
                .as_i64_lenient()
                .ok_or_else(|| bad("ec must be an integer"))?;
            if !matches!(code, 2..=4 | 100..=999) {
                return Err(bad(format!("ec {code} is not an event category")));
            }
        }
        if let Some(rt) = &req.rt {
            let rt = rt.as_object().ok_or_else(|| bad("rt must be an object"))?;
            let rtv = rt
                .get("rtv")
                .and_then(Value::as_i64_lenient)
                .ok_or_else(|| bad("rt.rtv is mandatory"))?;
            if !(1..=5).contains(&rtv) {
                return Err(bad(format!("rt.rtv {rtv} is not a response type")));
            }
            if rt.get("nu").is_some() && rtv != 2 {
                return Err(bad(
                    "rt.nu is only allowed with rtv 2 (nonBlockingRequestAsynch)",
                ));
            }
        }
        if req.is_ae_create() {
            check_ae(req)?;
        }
        Ok(())
    }

    /// Check a response: a defined status class, `rvi` a string (typed by the model), `rqi` present
    /// unless the error says the request could not be parsed.
    pub fn response(&self, rsp: &Response) -> Result<(), PrimitiveError> {
        if rsp.rsc.class() == RscClass::Unknown {
            return Err(
                bad(format!("rsc {} is not a response status code", rsp.rsc.0))
                    .with_rqi(rsp.rqi.clone()),
            );
        }
        if rsp.rqi.is_none() && rsp.rsc.is_success() {
            return Err(bad("a successful response must carry rqi"));
        }
        Ok(())
    }
}

/// TS-0004 R3 table 7.4.5.1-3 and §7.3.2.1: `api` starts with N, R (or r before R4); `rr` and `srv`
/// are mandatory; `aei` is not permitted.
fn check_ae(req: &Request) -> Result<(), PrimitiveError> {
    let ae = req
        .pc
        .as_ref()
        .and_then(Value::as_object)
        .and_then(|pc| pc.get("m2m:ae"))
        .and_then(Value::as_object)
        .ok_or_else(|| bad("an AE create needs pc.m2m:ae"))?;
    match ae.get("api") {
        Some(Value::String(api)) if api.starts_with(['N', 'R', 'r']) && api.len() > 1 => {}
        Some(Value::String(api)) => return Err(bad(format!("api {api:?} must start with N or R"))),
        Some(_) => return Err(bad("api must be a string")),
        None => return Err(bad("api is mandatory in an AE create")),
    }
    if !matches!(ae.get("rr"), Some(Value::Bool(_))) {
        return Err(bad(
            "rr (requestReachability) is mandatory and boolean in an AE create",
        ));
    }
    match ae.get("srv") {
        Some(Value::Array(items))
            if !items.is_empty() && items.iter().all(|i| matches!(i, Value::String(_))) => {}
        _ => {
            return Err(bad(
                "srv (supportedReleaseVersions) is mandatory: a list of strings",
            ));
        }
    }
    if ae.get("aei").is_some() {
        return Err(bad(
            "aei is assigned by the CSE and not permitted in an AE create",
        ));
    }
    Ok(())
}
