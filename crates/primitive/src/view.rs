//! The routing view: the few parameters a proxy routes by (`op`/`rsc`, `to`, `fr`, `rqi`, `ty`,
//! `rvi`, `rqet`, `rt.rtv`), read from a JSON, CBOR or XML primitive without decoding `pc`.
//!
//! This runs on every message in the edge, so it is a hand-written skimmer rather than a full decode:
//! it walks the top-level members, borrows the string values it needs from the input (owned only when
//! they contain escapes), and skips every other value — `pc` above all — by scanning for its end.
//! `benches/primitives.rs` measures it against full `serde_json` and `simd-json` decodes.
//!
//! The view also records where `rqi` and `fr` sit in the input, so that [`replace_string`] can rewrite
//! them in place (one splice) instead of re-encoding the whole primitive. It checks structure only as
//! far as it reads; a full decode (`codec::decode`) validates the rest.

use std::borrow::Cow;
use std::ops::Range;

use crate::codec::Format;
use crate::error::PrimitiveError;
use crate::model::Operation;
use crate::rsc::Rsc;
use crate::time::AbsRelTime;

/// Request or response, as the view determined it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
}

/// The routing parameters of one primitive, borrowed from its bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoutingView<'a> {
    pub op: Option<Operation>,
    pub rsc: Option<Rsc>,
    pub to: Option<Cow<'a, str>>,
    pub fr: Option<Cow<'a, str>>,
    pub rqi: Option<Cow<'a, str>>,
    pub ty: Option<u32>,
    pub rvi: Option<Cow<'a, str>>,
    pub rqet: Option<AbsRelTime>,
    /// `rset` (result expiration) and `oet` (operation execution time), read like `rqet`.
    pub rset: Option<AbsRelTime>,
    pub oet: Option<AbsRelTime>,
    /// `rt.rtv` when present.
    pub rtv: Option<u8>,
    /// The draft's `{"m2m:rqp":…}` wrapper was present (JSON/CBOR).
    pub wrapped: bool,
    /// Byte range of the encoded `rqi` value (JSON: with its quotes; CBOR: with its head; XML: the
    /// element content).
    pub rqi_span: Option<Range<usize>>,
    /// Byte range of the encoded `fr` value.
    pub fr_span: Option<Range<usize>>,
    /// A malformed request-only member (`ty`, `rqet`): an error only if this turns out to be a
    /// request, since a response may carry such names as unknown members.
    deferred: Option<String>,
    /// A malformed response-only member (`rsc`): an error only if this turns out to be a response,
    /// since the model keeps such a member of a request among its unknown members.
    deferred_response: Option<String>,
}

impl<'a> RoutingView<'a> {
    /// Read the view from a primitive in `format`.
    pub fn parse(format: Format, bytes: &'a [u8]) -> Result<Self, PrimitiveError> {
        let mut view = RoutingView::default();
        let result = match format {
            Format::Json => JsonSkim { b: bytes, i: 0 }.top(&mut view),
            Format::Cbor => CborSkim { b: bytes, i: 0 }.top(&mut view),
            Format::Xml => xml_view(bytes, &mut view),
        };
        match result {
            Ok(()) => {
                if let (Some(msg), Some(_)) = (&view.deferred, view.op) {
                    return Err(PrimitiveError::bad_request(format!(
                        "malformed {} primitive: {msg}",
                        format.name()
                    ))
                    .with_rqi(view.rqi.map(Cow::into_owned)));
                }
                if let (Some(msg), None) = (&view.deferred_response, view.op) {
                    return Err(PrimitiveError::bad_request(format!(
                        "malformed {} primitive: {msg}",
                        format.name()
                    ))
                    .with_rqi(view.rqi.map(Cow::into_owned)));
                }
                if view.op.is_none() && view.rsc.is_none() {
                    return Err(PrimitiveError::bad_request(
                        "neither a request (op) nor a response (rsc)",
                    )
                    .with_rqi(view.rqi.map(Cow::into_owned)));
                }
                Ok(view)
            }
            Err(msg) => Err(PrimitiveError::bad_request(format!(
                "malformed {} primitive: {msg}",
                format.name()
            ))
            .with_rqi(view.rqi.map(Cow::into_owned))),
        }
    }

    /// Request when `op` is present, else response.
    pub fn kind(&self) -> Kind {
        if self.op.is_some() {
            Kind::Request
        } else {
            Kind::Response
        }
    }
}

/// The `rqi` of a primitive, even a broken one, if it can be found before the damage.
pub fn extract_rqi(format: Format, bytes: &[u8]) -> Option<String> {
    match RoutingView::parse(format, bytes) {
        Ok(v) => v.rqi.map(Cow::into_owned),
        Err(e) => e.rqi,
    }
}

type Skim<T> = Result<T, String>;

fn op_from(code: i64) -> Skim<Operation> {
    Operation::from_code(code).ok_or_else(|| format!("op must be 1..5, got {code}"))
}

fn numeric_str(s: &str) -> Option<i64> {
    (!s.is_empty() && s.len() < 19 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())?
}

/// Apply one routing member to the view. `text` is the member's string value if it had one,
/// `int` its integer value.
fn apply<'a>(
    view: &mut RoutingView<'a>,
    key: &[u8],
    text: Option<Cow<'a, str>>,
    int: Option<i64>,
    span: Range<usize>,
) -> Skim<()> {
    let int_or_numeric = || int.or_else(|| text.as_deref().and_then(numeric_str));
    let need_str = |name: &str| {
        text.clone()
            .ok_or_else(|| format!("{name} must be a string"))
    };
    match key {
        b"op" => view.op = Some(op_from(int_or_numeric().ok_or("op must be an integer")?)?),
        b"rsc" => match int_or_numeric()
            .ok_or("rsc must be an integer")
            .and_then(|code| u16::try_from(code).map_err(|_| "rsc out of range"))
        {
            Ok(code) => view.rsc = Some(Rsc(code)),
            Err(msg) => view.deferred_response = Some(msg.to_string()),
        },
        b"ty" => match int_or_numeric().and_then(|c| u32::try_from(c).ok()) {
            Some(ty) => view.ty = Some(ty),
            None => view.deferred = Some("ty must be a non-negative integer".into()),
        },
        b"to" => view.to = Some(need_str("to")?),
        b"fr" => {
            view.fr = Some(need_str("fr")?);
            view.fr_span = Some(span);
        }
        b"rqi" => {
            view.rqi = Some(need_str("rqi")?);
            view.rqi_span = Some(span);
        }
        b"rvi" => view.rvi = Some(need_str("rvi")?),
        b"rqet" => view.rqet = time_member(&mut view.deferred, "rqet", &text, int),
        b"rset" => view.rset = time_member(&mut view.deferred, "rset", &text, int),
        b"oet" => view.oet = time_member(&mut view.deferred, "oet", &text, int),
        _ => {}
    }
    Ok(())
}

/// An `m2m:absRelTimestamp` member (`rqet`, `rset`, `oet`): a timestamp, a duration or a number of
/// milliseconds; anything else is an error if the primitive turns out to be a request.
fn time_member(
    deferred: &mut Option<String>,
    name: &str,
    text: &Option<Cow<'_, str>>,
    int: Option<i64>,
) -> Option<AbsRelTime> {
    let t = match (text, int) {
        (Some(t), _) => AbsRelTime::parse_str(t),
        (None, Some(i)) => Some(AbsRelTime::Relative(i)),
        _ => None,
    };
    if t.is_none() {
        *deferred = Some(format!(
            "{name} must be a timestamp, a duration or an integer"
        ));
    }
    t
}

/// The members [`apply`] reads (a `match`, so the compiler switches on the length first).
fn is_routing_key(key: &[u8]) -> bool {
    matches!(
        key,
        b"op" | b"rsc" | b"ty" | b"to" | b"fr" | b"rqi" | b"rvi" | b"rqet" | b"rset" | b"oet"
    )
}

// ---------------------------------------------------------------------------------------------
// JSON

struct JsonSkim<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> JsonSkim<'a> {
    fn ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Skim<u8> {
        self.ws();
        self.b
            .get(self.i)
            .copied()
            .ok_or_else(|| "unexpected end".to_string())
    }

    fn eat(&mut self, c: u8) -> Skim<()> {
        if self.peek()? != c {
            return Err(format!("expected '{}' at byte {}", c as char, self.i));
        }
        self.i += 1;
        Ok(())
    }

    /// A string starting at the current `"`: its raw content range and whether it has escapes.
    fn string(&mut self) -> Skim<(Range<usize>, bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            let rel =
                memchr::memchr2(b'"', b'\\', &self.b[self.i..]).ok_or("unterminated string")?;
            self.i += rel;
            if self.b[self.i] == b'\\' {
                escaped = true;
                self.i += 2;
                if self.i > self.b.len() {
                    return Err("unterminated string".into());
                }
            } else {
                self.i += 1;
                return Ok((start..self.i - 1, escaped));
            }
        }
    }

    fn text(&self, range: Range<usize>, escaped: bool) -> Skim<Cow<'a, str>> {
        let raw = std::str::from_utf8(&self.b[range]).map_err(|_| "string is not UTF-8")?;
        if escaped {
            unescape_json(raw)
                .map(Cow::Owned)
                .ok_or_else(|| "bad escape".into())
        } else {
            Ok(Cow::Borrowed(raw))
        }
    }

    /// Skip any value; containers are skipped by bracket counting, strings by `memchr`.
    fn skip(&mut self) -> Skim<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                while let Some(&c) = self.b.get(self.i) {
                    match c {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Ok(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
                Err("unterminated container".into())
            }
            _ => self.scalar().map(|_| ()),
        }
    }

    /// A number or literal: its raw text.
    fn scalar(&mut self) -> Skim<&'a str> {
        self.ws();
        let start = self.i;
        while let Some(c) = self.b.get(self.i) {
            if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.i += 1;
        }
        let bytes = &self.b[start..self.i];
        // Integers (`op`, `rsc`, `ty`, …) are nearly every scalar: digits need no float parse.
        let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
        if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
            // ASCII digits: UTF-8 by construction.
            return std::str::from_utf8(bytes).map_err(|_| "bad literal".into());
        }
        let raw = std::str::from_utf8(bytes).map_err(|_| "bad literal")?;
        match raw {
            "true" | "false" | "null" => Ok(raw),
            _ if raw.parse::<f64>().is_ok() && !raw.starts_with(['+', '.']) => Ok(raw),
            _ => Err(format!("invalid value {raw:?}")),
        }
    }

    fn top(mut self, view: &mut RoutingView<'a>) -> Skim<()> {
        self.members(view, true)?;
        self.ws();
        if self.i != self.b.len() {
            return Err("trailing bytes after the primitive".into());
        }
        Ok(())
    }

    fn members(&mut self, view: &mut RoutingView<'a>, outer: bool) -> Skim<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok(());
        }
        let mut first = true;
        loop {
            let (key_range, _) = self.string()?;
            let key = &self.b[key_range];
            self.eat(b':')?;
            let c = self.peek()?;
            if outer && first && c == b'{' && matches!(key, b"m2m:rqp" | b"m2m:rsp") {
                view.wrapped = true;
                self.members(view, false)?;
            } else if is_routing_key(key) {
                let start = self.i;
                if c == b'"' {
                    let (r, esc) = self.string()?;
                    let text = self.text(r, esc)?;
                    apply(view, key, Some(text), None, start..self.i)?;
                } else if c == b'{' || c == b'[' {
                    self.skip()?;
                    apply(view, key, None, None, start..self.i)?;
                } else {
                    let raw = self.scalar()?;
                    apply(view, key, None, raw.parse::<i64>().ok(), start..self.i)?;
                }
            } else if key == b"rt" && c == b'{' {
                view.rtv = self.rtv()?;
            } else {
                self.skip()?;
            }
            first = false;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Ok(());
                }
                other => return Err(format!("expected ',' or '}}', found '{}'", other as char)),
            }
        }
    }

    fn rtv(&mut self) -> Skim<Option<u8>> {
        self.eat(b'{')?;
        let mut rtv = None;
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok(None);
        }
        loop {
            let (k, _) = self.string()?;
            self.eat(b':')?;
            if &self.b[k.clone()] == b"rtv" && self.peek()? != b'"' {
                rtv = self.scalar()?.parse::<u8>().ok();
            } else if &self.b[k.clone()] == b"rtv" {
                let (r, esc) = self.string()?;
                rtv = self.text(r, esc)?.parse::<u8>().ok();
            } else {
                self.skip()?;
            }
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Ok(rtv);
                }
                _ => return Err("bad rt object".into()),
            }
        }
    }
}

/// Decode JSON string escapes (RFC 8259 §7), including surrogate pairs.
fn unescape_json(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hex = |chars: &mut std::str::Chars<'_>| -> Option<u32> {
                    let s: String = chars.take(4).collect();
                    (s.len() == 4).then(|| u32::from_str_radix(&s, 16).ok())?
                };
                let hi = hex(&mut chars)?;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    if chars.next()? != '\\' || chars.next()? != 'u' {
                        return None;
                    }
                    let lo = hex(&mut chars)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return None;
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                out.push(char::from_u32(code)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// CBOR

struct CborSkim<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> CborSkim<'a> {
    /// Read an item head: major type and argument (`None` for indefinite length).
    fn head(&mut self) -> Skim<(u8, Option<u64>)> {
        let ib = *self.b.get(self.i).ok_or("unexpected end")?;
        self.i += 1;
        let (major, ai) = (ib >> 5, ib & 0x1f);
        let n = match ai {
            0..=23 => 0,
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            31 if matches!(major, 2..=5 | 7) => return Ok((major, None)),
            _ => return Err(format!("reserved additional information {ai}")),
        };
        let arg = if n == 0 {
            u64::from(ai)
        } else {
            let bytes = self.b.get(self.i..self.i + n).ok_or("unexpected end")?;
            self.i += n;
            bytes.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
        };
        Ok((major, Some(arg)))
    }

    fn take(&mut self, len: u64) -> Skim<&'a [u8]> {
        let len = usize::try_from(len).map_err(|_| "length overflow")?;
        let end = self
            .i
            .checked_add(len)
            .filter(|&e| e <= self.b.len())
            .ok_or("unexpected end")?;
        let s = &self.b[self.i..end];
        self.i = end;
        Ok(s)
    }

    fn at_break(&self) -> bool {
        self.b.get(self.i) == Some(&0xff)
    }

    fn skip(&mut self, depth: usize) -> Skim<()> {
        if depth > crate::cbor::MAX_DEPTH {
            return Err("nested too deep".into());
        }
        let (major, arg) = self.head()?;
        match (major, arg) {
            (0 | 1 | 7, _) => Ok(()),
            (2 | 3, Some(len)) => self.take(len).map(|_| ()),
            (4 | 5, Some(n)) => {
                let items = if major == 5 {
                    n.checked_mul(2).ok_or("length overflow")?
                } else {
                    n
                };
                for _ in 0..items {
                    self.skip(depth + 1)?;
                }
                Ok(())
            }
            (2..=5, None) => {
                while !self.at_break() {
                    self.skip(depth + 1)?;
                    if major == 5 {
                        self.skip(depth + 1)?;
                    }
                }
                self.i += 1;
                Ok(())
            }
            (6, _) => self.skip(depth + 1),
            _ => Err("malformed item".into()),
        }
    }

    fn top(mut self, view: &mut RoutingView<'a>) -> Skim<()> {
        self.map(view, true)?;
        if self.i != self.b.len() {
            return Err("trailing bytes after the primitive".into());
        }
        Ok(())
    }

    fn map(&mut self, view: &mut RoutingView<'a>, outer: bool) -> Skim<()> {
        let (major, len) = self.head()?;
        if major != 5 {
            return Err("a primitive must be a map".into());
        }
        let mut index = 0u64;
        loop {
            match len {
                Some(n) if index == n => return Ok(()),
                None if self.at_break() => {
                    self.i += 1;
                    return Ok(());
                }
                _ => {}
            }
            let (kmajor, klen) = self.head()?;
            let key = match (kmajor, klen) {
                (2 | 3, Some(l)) => self.take(l)?,
                _ => return Err("map keys must be definite text strings".into()),
            };
            let start = self.i;
            let vmajor = self.b.get(self.i).map(|b| b >> 5).ok_or("unexpected end")?;
            if outer && index == 0 && vmajor == 5 && matches!(key, b"m2m:rqp" | b"m2m:rsp") {
                view.wrapped = true;
                self.map(view, false)?;
            } else if is_routing_key(key) {
                let (major, arg) = self.head()?;
                match (major, arg) {
                    (3, Some(l)) => {
                        let s =
                            std::str::from_utf8(self.take(l)?).map_err(|_| "text is not UTF-8")?;
                        apply(view, key, Some(Cow::Borrowed(s)), None, start..self.i)?;
                    }
                    (0, Some(u)) => apply(view, key, None, i64::try_from(u).ok(), start..self.i)?,
                    (1, Some(u)) => apply(
                        view,
                        key,
                        None,
                        i64::try_from(u).ok().map(|v| -1 - v),
                        start..self.i,
                    )?,
                    _ => {
                        self.i = start;
                        self.skip(1)?;
                        apply(view, key, None, None, start..self.i)?;
                    }
                }
            } else if key == b"rt" && vmajor == 5 {
                view.rtv = self.rtv()?;
            } else {
                self.skip(1)?;
            }
            index += 1;
        }
    }

    fn rtv(&mut self) -> Skim<Option<u8>> {
        let (_, len) = self.head()?;
        let mut rtv = None;
        let mut index = 0u64;
        loop {
            match len {
                Some(n) if index == n => return Ok(rtv),
                None if self.at_break() => {
                    self.i += 1;
                    return Ok(rtv);
                }
                _ => {}
            }
            let (kmajor, klen) = self.head()?;
            let key = match (kmajor, klen) {
                (2 | 3, Some(l)) => self.take(l)?,
                _ => return Err("map keys must be definite text strings".into()),
            };
            if key == b"rtv" && self.b.get(self.i).is_some_and(|b| b >> 5 == 0) {
                let (_, arg) = self.head()?;
                rtv = arg.and_then(|a| u8::try_from(a).ok());
            } else {
                self.skip(1)?;
            }
            index += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// XML

fn xml_view<'a>(bytes: &'a [u8], view: &mut RoutingView<'a>) -> Skim<()> {
    use quick_xml::Reader;
    use quick_xml::events::Event;

    // quick-xml skips a byte-order mark without counting it in its positions: the spans would be
    // three bytes early (found in review), so the reader starts after it and spans add it back.
    let bom = if bytes.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let text = std::str::from_utf8(&bytes[bom..]).map_err(|_| "not UTF-8")?;
    let mut reader = Reader::from_str(text);
    // Find the root.
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(s) => {
                let name = s.local_name();
                if !matches!(name.as_ref(), "rqp" | "rsp") {
                    return Err("root must be m2m:rqp or m2m:rsp".into());
                }
                break;
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Text(t) if t.trim().is_empty() => {}
            _ => return Err("root must be m2m:rqp or m2m:rsp".into()),
        }
    }
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(s) => {
                let name = s.name();
                let key = name.as_ref().as_bytes();
                if is_routing_key(key) || key == b"rt" {
                    let key = key.to_vec();
                    let start = reader.buffer_position() as usize + bom;
                    let mut value = String::new();
                    let mut borrowed: Option<&'a str> = None;
                    let mut pieces = 0;
                    let end;
                    let mut rtv = None;
                    loop {
                        let before = reader.buffer_position() as usize;
                        match reader.read_event().map_err(|e| e.to_string())? {
                            Event::Text(t) => {
                                pieces += 1;
                                if let std::borrow::Cow::Borrowed(b) = t.clone().into_inner() {
                                    borrowed = Some(b);
                                }
                                value.push_str(&t);
                            }
                            Event::GeneralRef(r) => {
                                pieces += 2;
                                match r.resolve_char_ref().map_err(|e| e.to_string())? {
                                    Some(c) => value.push(c),
                                    None => value.push(match &*r {
                                        "lt" => '<',
                                        "gt" => '>',
                                        "amp" => '&',
                                        "apos" => '\'',
                                        "quot" => '"',
                                        _ => return Err("unknown entity".into()),
                                    }),
                                }
                            }
                            Event::Start(inner)
                                if key == b"rt" && inner.name().as_ref() == "rtv" =>
                            {
                                let t =
                                    reader.read_text(inner.name()).map_err(|e| e.to_string())?;
                                rtv = t.trim().parse::<u8>().ok();
                            }
                            Event::Start(inner) => {
                                reader
                                    .read_to_end(inner.name())
                                    .map_err(|e| e.to_string())?;
                            }
                            Event::End(_) => {
                                end = before + bom;
                                break;
                            }
                            Event::Eof => return Err("unexpected end".into()),
                            _ => {}
                        }
                    }
                    if key == b"rt" {
                        view.rtv = rtv;
                        continue;
                    }
                    let text: Cow<'a, str> = match (pieces, borrowed) {
                        (1, Some(b)) => Cow::Borrowed(b),
                        _ => Cow::Owned(value),
                    };
                    let int = text.trim().parse::<i64>().ok();
                    let is_number = matches!(key.as_slice(), b"op" | b"rsc" | b"ty");
                    if is_number {
                        apply(view, &key, None, int, start..end)?;
                    } else {
                        apply(view, &key, Some(text), None, start..end)?;
                    }
                } else {
                    let owned = s.name().as_ref().to_string();
                    reader
                        .read_to_end(quick_xml::name::QName(&owned))
                        .map_err(|e| e.to_string())?;
                }
            }
            Event::Empty(_) | Event::Text(_) | Event::Comment(_) => {}
            Event::End(_) => return Ok(()),
            Event::Eof => return Err("unexpected end".into()),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// In-place rewriting

/// Replace the encoded string value at `span` (from [`RoutingView::rqi_span`] or `fr_span`) with
/// `new`, encoded for `format`: one splice of the buffer, no re-encode of the rest.
pub fn replace_string(buf: &mut Vec<u8>, format: Format, span: Range<usize>, new: &str) {
    let mut encoded = Vec::with_capacity(new.len() + 4);
    match format {
        Format::Json => {
            encoded.push(b'"');
            for c in new.chars() {
                match c {
                    '"' => encoded.extend_from_slice(b"\\\""),
                    '\\' => encoded.extend_from_slice(b"\\\\"),
                    c if (c as u32) < 0x20 => {
                        encoded.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
                    }
                    c => encoded.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                }
            }
            encoded.push(b'"');
        }
        Format::Cbor => {
            let len = new.len() as u64;
            match len {
                0..=23 => encoded.push(0x60 | len as u8),
                24..=0xff => encoded.extend_from_slice(&[0x78, len as u8]),
                0x100..=0xffff => {
                    encoded.push(0x79);
                    encoded.extend_from_slice(&(len as u16).to_be_bytes());
                }
                _ => {
                    encoded.push(0x7a);
                    encoded.extend_from_slice(&(len as u32).to_be_bytes());
                }
            }
            encoded.extend_from_slice(new.as_bytes());
        }
        Format::Xml => encoded.extend_from_slice(quick_xml::escape::escape(new).as_bytes()),
    }
    buf.splice(span, encoded);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Format, decode, encode};

    const CREATE: &str = r#"{"op":1,"to":"cse-in/meter01/readings","fr":"Cmeter01","rqi":"q-0003","rvi":"3","ty":4,
 "pc":{"m2m:cin":{"cnf":"application/json:0","con":"{\"kWh\":12.5, \"x\":[1,{\"a\":\"}\"}]}"}},"rt":{"rtv":1},"rqet":"PT5S","rset":"20991231T000000","oet":2000}"#;

    /// Found by the json_primitive fuzz target: a request carrying a non-numeric `rsc` member. The
    /// model keeps it among the request's unknown members, so the view must accept it too (and its
    /// re-encoding); in a response the same member is an error for both.
    #[test]
    fn a_bad_rsc_is_an_error_only_in_a_response() {
        let req = br#"{"op":4,"to":"cse-in/x","rsc":"q-000ad","rqi":"q-8","rvi":"3"}"#;
        let v = RoutingView::parse(Format::Json, req).unwrap();
        assert_eq!((v.op, v.rsc), (Some(Operation::Delete), None));
        let p = decode(Format::Json, req).unwrap();
        let again = encode(&p, Format::Json).unwrap();
        assert!(RoutingView::parse(Format::Json, &again).is_ok());
        let rsp = br#"{"rsc":"q-000ad","rqi":"q-8","rvi":"3"}"#;
        let e = RoutingView::parse(Format::Json, rsp).unwrap_err();
        assert_eq!((e.rsc.0, e.rqi.as_deref()), (4000, Some("q-8")));
        assert!(e.dbg.contains("rsc must be an integer"), "{}", e.dbg);
        assert!(decode(Format::Json, rsp).is_err());
    }

    #[test]
    fn xml_spans_count_a_byte_order_mark() {
        let doc = "\u{FEFF}<?xml version=\"1.0\"?><m2m:rsp xmlns:m2m=\"http://www.onem2m.org/xml/protocols\"><rsc>2000</rsc><rqi>ab</rqi></m2m:rsp>";
        let v = RoutingView::parse(Format::Xml, doc.as_bytes()).unwrap();
        let span = v.rqi_span.clone().unwrap();
        assert_eq!(&doc.as_bytes()[span.clone()], b"ab");
        let mut bytes = doc.as_bytes().to_vec();
        replace_string(&mut bytes, Format::Xml, span, "x<y");
        assert!(
            String::from_utf8(bytes)
                .unwrap()
                .contains("<rqi>x&lt;y</rqi>")
        );
    }

    #[test]
    fn json_view_reads_routing_members_and_skips_pc() {
        let v = RoutingView::parse(Format::Json, CREATE.as_bytes()).unwrap();
        assert_eq!(v.op, Some(Operation::Create));
        assert_eq!(v.to.as_deref(), Some("cse-in/meter01/readings"));
        assert_eq!(v.fr.as_deref(), Some("Cmeter01"));
        assert_eq!(v.rqi.as_deref(), Some("q-0003"));
        assert_eq!(
            (v.ty, v.rtv, v.rqet),
            (Some(4), Some(1), Some(AbsRelTime::Relative(5000)))
        );
        assert_eq!(v.oet, Some(AbsRelTime::Relative(2000)));
        assert!(matches!(v.rset, Some(AbsRelTime::Absolute(_))));
        assert!(matches!(v.to, Some(Cow::Borrowed(_))));
        assert_eq!(v.kind(), Kind::Request);
    }

    #[test]
    fn views_agree_across_serializations() {
        let p = decode(Format::Json, CREATE.as_bytes()).unwrap();
        let json = RoutingView::parse(Format::Json, CREATE.as_bytes()).unwrap();
        for f in [Format::Cbor, Format::Xml] {
            let bytes = encode(&p, f).unwrap();
            let v = RoutingView::parse(f, &bytes).unwrap();
            assert_eq!(
                (v.op, &v.to, &v.fr, &v.rqi, v.ty, &v.rvi, v.rtv),
                (
                    json.op, &json.to, &json.fr, &json.rqi, json.ty, &json.rvi, json.rtv
                ),
                "{f:?}"
            );
            assert_eq!(
                (v.rqet, v.rset, v.oet),
                (json.rqet, json.rset, json.oet),
                "{f:?}"
            );
        }
    }

    #[test]
    fn legacy_wrapper_and_string_enums() {
        let wrapped = br#"{"m2m:rqp":{"op":"1","to":"cse-in","rqi":"r1","ty":"2","rvi":"3"}}"#;
        let v = RoutingView::parse(Format::Json, wrapped).unwrap();
        assert!(v.wrapped);
        assert_eq!((v.op, v.ty), (Some(Operation::Create), Some(2)));
    }

    #[test]
    fn rewrites_rqi_and_fr_in_place() {
        for f in [Format::Json, Format::Cbor, Format::Xml] {
            let p = decode(Format::Json, CREATE.as_bytes()).unwrap();
            let mut bytes = encode(&p, f).unwrap();
            let span = RoutingView::parse(f, &bytes).unwrap().rqi_span.unwrap();
            replace_string(&mut bytes, f, span, "edge-7:q-\"0003\"&<");
            let fr_span = RoutingView::parse(f, &bytes).unwrap().fr_span.unwrap();
            replace_string(&mut bytes, f, fr_span, "C".repeat(30).as_str());
            let back = decode(f, &bytes).unwrap();
            assert_eq!(back.rqi(), Some("edge-7:q-\"0003\"&<"), "{f:?}");
            let crate::model::Primitive::Request(r) = back else {
                panic!()
            };
            assert_eq!(r.fr.as_deref(), Some("C".repeat(30).as_str()));
            assert_eq!(
                r.pc,
                match &p {
                    crate::model::Primitive::Request(o) => o.pc.clone(),
                    _ => None,
                }
            );
        }
    }

    #[test]
    fn broken_primitives_still_yield_rqi() {
        let broken = br#"{"op":1,"rqi":"q-9","to":"x","pc":{"m2m:cin":{"con":}}"#;
        let err = RoutingView::parse(Format::Json, broken).unwrap_err();
        assert_eq!(err.rqi.as_deref(), Some("q-9"));
        assert_eq!(extract_rqi(Format::Json, broken).as_deref(), Some("q-9"));
        for bad in [
            &b"{\"op\":9}"[..],
            b"[1]",
            b"{\"op\":1",
            b"{\"rqi\":\"a\"}",
            b"{\"op\":1}x",
        ] {
            assert!(
                RoutingView::parse(Format::Json, bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(RoutingView::parse(Format::Cbor, &[0xa1, 0x62, b'o', b'p']).is_err());
        assert_eq!(
            unescape_json(r"a\u00e9\ud83d\ude00\n").as_deref(),
            Some("aé😀\n")
        );
    }

    #[test]
    fn request_only_names_in_a_response_are_unknown_members() {
        // Found by the json_primitive fuzz target.
        let rsp = br#"{"rsc":2000,"rqi":"a\\b","ty":{"x":1},"rqet":[]}"#;
        assert_eq!(
            RoutingView::parse(Format::Json, rsp)
                .unwrap()
                .rqi
                .as_deref(),
            Some("a\\b")
        );
        let req = br#"{"op":2,"rqi":"a","ty":{"x":1}}"#;
        assert_eq!(
            RoutingView::parse(Format::Json, req)
                .unwrap_err()
                .rqi
                .as_deref(),
            Some("a")
        );
    }
}
