//! The one error type of this crate: everything that is wrong with a primitive maps to the response
//! a receiver must send — an `rsc`, an `m2m:dbg` text, and the request's `rqi` when it was found.

use crate::model::Response;
use crate::rsc::Rsc;
use crate::value::{Map, Value};

/// A primitive that cannot be accepted, with the error response it earns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rsc:?} {}: {dbg}", rsc.name())]
pub struct PrimitiveError {
    pub rsc: Rsc,
    /// Human-readable reason, sent as `pc: {"m2m:dbg": …}`.
    pub dbg: String,
    /// The request's `rqi`, when it could be read.
    pub rqi: Option<String>,
}

impl PrimitiveError {
    pub fn new(rsc: Rsc, dbg: impl Into<String>) -> Self {
        Self {
            rsc,
            dbg: dbg.into(),
            rqi: None,
        }
    }

    /// 4000 BAD_REQUEST.
    pub fn bad_request(dbg: impl Into<String>) -> Self {
        Self::new(Rsc::BAD_REQUEST, dbg)
    }

    /// Attach the `rqi`, unless one is already known.
    pub fn with_rqi(mut self, rqi: Option<String>) -> Self {
        if self.rqi.is_none() {
            self.rqi = rqi;
        }
        self
    }

    /// The error response primitive to send back (`rvi` as the receiver speaks it).
    pub fn to_response(&self, rvi: &str) -> Response {
        let mut pc = Map::new();
        pc.insert("m2m:dbg", Value::String(self.dbg.clone()));
        Response {
            rsc: self.rsc,
            rqi: self.rqi.clone(),
            rvi: Some(rvi.to_string()),
            pc: Some(Value::Object(pc)),
            ..Response::default()
        }
    }
}
