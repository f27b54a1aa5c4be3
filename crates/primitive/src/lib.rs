//! Sans-IO oneM2M request/response primitives for m2m-edge and m2m-loadgen: the data model with the
//! short names of TS-0004, a cheap routing view for the hot path, the three serializations, lossless
//! transcoding, the `rsc` table and the receiver checks.
//!
//! ```text
//!  bytes ──► view::RoutingView::parse ─► op/rsc, to, fr, rqi, ty, rvi, rqet, rt.rtv (pc skipped)
//!        └─► codec::decode ─► json (simd-json) | cbor (minicbor) | xml (quick-xml + schema)
//!                 ─► value::Map ─► model::Primitive (legacy forms normalised) ─► validate::Validator
//!  Primitive ─► codec::encode ─► bytes in any format;  codec::transcode for whole primitives
//!  failures ─► error::PrimitiveError { rsc, dbg, rqi } ─► to_response()
//! ```
//!
//! No I/O, no clock (callers pass the receive time), no runtime. Modules: [`value`] (generic model),
//! [`model`] (request/response), [`view`] (routing view and in-place rewriting), [`codec`] with
//! [`json`], [`cbor`], [`xml`] and [`schema`], [`validate`], [`rsc`], [`time`], [`error`].
#![forbid(unsafe_code)]

pub mod cbor;
pub mod codec;
pub mod error;
pub mod json;
pub mod model;
pub mod rsc;
pub mod schema;
pub mod time;
pub mod validate;
pub mod value;
pub mod view;
pub mod xml;

pub use codec::{Format, decode, encode, transcode};
pub use error::PrimitiveError;
pub use model::{Operation, Primitive, Request, Response};
pub use rsc::Rsc;
pub use validate::Validator;
pub use value::{Map, Value};
pub use view::RoutingView;
