//! XML (TS-0004 §8.3) on `quick-xml`: root `m2m:rqp` or `m2m:rsp` in namespace
//! `http://www.onem2m.org/xml/protocols`, parameters in XSD order, the resource's `rn` as an attribute,
//! lists space-separated in one element, NULL as an empty element.
//!
//! XML text has no types, so decoding consults [`crate::schema`] to give each value the JSON type it has
//! in the other serializations; that is what makes JSON ↔ XML lossless for the resources in the table.
//! NULL is a self-closing element (`<x/>`) and an empty value an open/close pair (`<x></x>`), so both
//! survive a round trip. Known limit: list items cannot contain spaces (`xs:list` has none).

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::error::PrimitiveError;
use crate::schema::{Kind, is_attribute, kind};
use crate::value::{Map, Value};

/// The oneM2M protocols namespace.
pub const NAMESPACE: &str = "http://www.onem2m.org/xml/protocols";
/// Nesting deeper than this is refused.
pub const MAX_DEPTH: usize = 64;

fn malformed(e: impl std::fmt::Display) -> PrimitiveError {
    PrimitiveError::bad_request(format!("malformed XML: {e}"))
}

#[derive(Debug, Default)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Element>,
    text: String,
    /// `<x/>`: NULL, as opposed to `<x></x>`, an empty value.
    self_closing: bool,
}

/// Whether the root was a request or a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Request,
    Response,
}

impl Root {
    pub fn element(self) -> &'static str {
        match self {
            Self::Request => "m2m:rqp",
            Self::Response => "m2m:rsp",
        }
    }
}

/// Namespace prefixes declared in the document that stand for the oneM2M namespace.
#[derive(Default)]
struct Prefixes(Vec<String>);

impl Prefixes {
    /// The element name with a oneM2M prefix normalised to `m2m:`.
    fn normalise(&self, qname: &str) -> String {
        match qname.split_once(':') {
            Some((prefix, local)) if prefix != "m2m" && self.0.iter().any(|p| p == prefix) => {
                format!("m2m:{local}")
            }
            _ => qname.to_string(),
        }
    }
}

fn read_element(
    start: &BytesStart<'_>,
    prefixes: &mut Prefixes,
) -> Result<Element, PrimitiveError> {
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(malformed)?;
        let key: &str = attr.key.as_ref();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(malformed)?
            .into_owned();
        if let Some(prefix) = key.strip_prefix("xmlns:") {
            if value == NAMESPACE {
                prefixes.0.push(prefix.to_string());
            }
            continue;
        }
        if key == "xmlns" || key.starts_with("xsi:") {
            continue;
        }
        attrs.push((key.to_string(), value));
    }
    let name = start.name().as_ref().to_string();
    Ok(Element {
        name: prefixes.normalise(&name),
        attrs,
        ..Element::default()
    })
}

fn resolve_entity(name: &str) -> Result<char, PrimitiveError> {
    Ok(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        other => return Err(malformed(format!("unknown entity &{other};"))),
    })
}

fn parse_tree(text: &str) -> Result<Element, PrimitiveError> {
    let mut reader = Reader::from_str(text);
    let mut prefixes = Prefixes::default();
    let mut stack: Vec<Element> = Vec::new();
    loop {
        let event = reader.read_event().map_err(malformed)?;
        match event {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(malformed(format!("nested deeper than {MAX_DEPTH}")));
                }
                let el = read_element(&start, &mut prefixes)?;
                stack.push(el);
            }
            Event::Empty(start) => {
                let mut el = read_element(&start, &mut prefixes)?;
                el.self_closing = true;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Ok(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| malformed("unbalanced end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Ok(el),
                }
            }
            Event::Text(t) => {
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&t.xml10_content());
                } else if !t.trim().is_empty() {
                    return Err(malformed("text outside the root element"));
                }
            }
            Event::CData(c) => {
                let el = stack
                    .last_mut()
                    .ok_or_else(|| malformed("CDATA outside the root"))?;
                el.text.push_str(&c);
            }
            Event::GeneralRef(r) => {
                let el = stack
                    .last_mut()
                    .ok_or_else(|| malformed("reference outside the root"))?;
                match r.resolve_char_ref().map_err(malformed)? {
                    Some(c) => el.text.push(c),
                    None => el.text.push(resolve_entity(&r)?),
                }
            }
            Event::DocType(_) => return Err(malformed("DOCTYPE is not allowed")),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => return Err(malformed("document ends before the root element closes")),
        }
    }
}

fn scalar(text: &str, k: Kind) -> Value {
    let trimmed = text.trim();
    if trimmed.is_empty()
        && !matches!(
            k,
            Kind::ListStr | Kind::ListInt | Kind::Object | Kind::ListObj
        )
    {
        // `<x></x>`: an empty value, not NULL (that is `<x/>`), whatever type the schema expects.
        return Value::String(text.to_string());
    }
    match k {
        Kind::Int | Kind::AbsRel => {
            // Only the canonical form is a number: "059" or " 5" stay strings, so that a string that
            // merely looks numeric survives (found by fuzzing).
            if let Ok(i) = text.parse::<i64>()
                && i.to_string() == text
            {
                return Value::Int(i);
            }
            if let Ok(u) = text.parse::<u64>()
                && u.to_string() == text
            {
                return Value::UInt(u);
            }
            Value::String(text.to_string())
        }
        Kind::Float => match trimmed.parse::<f64>() {
            Ok(f) => Value::Float(f),
            Err(_) => Value::String(text.to_string()),
        },
        Kind::Bool => match text {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => Value::String(text.to_string()),
        },
        Kind::ListStr => Value::Array(trimmed.split_ascii_whitespace().map(Value::from).collect()),
        Kind::ListInt => Value::Array(
            trimmed
                .split_ascii_whitespace()
                .map(|s| {
                    s.parse::<i64>()
                        .map(Value::Int)
                        .unwrap_or_else(|_| Value::from(s))
                })
                .collect(),
        ),
        Kind::Object | Kind::ListObj if trimmed.is_empty() => Value::Object(Map::new()),
        _ => Value::String(text.to_string()),
    }
}

fn to_value(el: Element, parent: &str) -> Value {
    let k = kind(parent, &el.name);
    let complex = !el.children.is_empty() || !el.attrs.is_empty();
    if !complex {
        return if el.self_closing {
            Value::Null
        } else {
            scalar(&el.text, k)
        };
    }
    let mut map = Map::new();
    for (name, value) in el.attrs {
        let v = scalar(&value, kind(&el.name, &name));
        map.0.push((name, v));
    }
    if el.children.is_empty() {
        if !el.text.trim().is_empty() || matches!(k, Kind::ListObj) {
            map.0
                .push(("val".into(), scalar(&el.text, kind(&el.name, "val"))));
        }
        return Value::Object(map);
    }
    let parent_name = el.name;
    for child in el.children {
        let child_kind = kind(&parent_name, &child.name);
        let name = child.name.clone();
        let value = to_value(child, &parent_name);
        match map.get_mut(&name) {
            Some(Value::Array(items))
                if child_kind == Kind::ListObj
                    || !matches!(child_kind, Kind::ListStr | Kind::ListInt) =>
            {
                items.push(value)
            }
            Some(existing) => {
                let first = std::mem::replace(existing, Value::Null);
                *existing = Value::Array(vec![first, value]);
            }
            None if child_kind == Kind::ListObj && matches!(value, Value::Object(_)) => {
                map.0.push((name, Value::Array(vec![value])))
            }
            None => map.0.push((name, value)),
        }
    }
    Value::Object(map)
}

/// Decode an XML primitive: which root it had and its parameters.
pub fn decode(bytes: &[u8]) -> Result<(Root, Map), PrimitiveError> {
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("not UTF-8"))?;
    let root = parse_tree(text)?;
    let which = match root.name.as_str() {
        "m2m:rqp" => Root::Request,
        "m2m:rsp" => Root::Response,
        other => {
            return Err(malformed(format!(
                "root element {other} is neither m2m:rqp nor m2m:rsp"
            )));
        }
    };
    match to_value(
        Element {
            attrs: Vec::new(),
            ..root
        },
        "",
    ) {
        Value::Object(map) => Ok((which, map)),
        _ => Ok((which, Map::new())),
    }
}

fn check_name(name: &str) -> Result<(), PrimitiveError> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
        && !name.to_ascii_lowercase().starts_with("xml");
    if ok {
        Ok(())
    } else {
        Err(PrimitiveError::new(
            crate::rsc::Rsc::NOT_ACCEPTABLE,
            format!("member {name:?} cannot be an XML element name"),
        ))
    }
}

/// Escape text for element content (`attribute = false`) or a double-quoted attribute value.
/// Carriage returns (and in attributes tabs and newlines) become character references so that XML's
/// end-of-line and attribute-value normalisation leave them intact; characters XML 1.0 cannot carry
/// at all are refused (found by the `transcode` fuzz target).
fn escape(s: &str, attribute: bool) -> Result<Cow<'_, str>, PrimitiveError> {
    let special = |c: char| {
        matches!(c, '&' | '<' | '>' | '"' | '\r')
            || (c as u32) < 0x20
            || matches!(c, '\u{fffe}' | '\u{ffff}')
    };
    if !s.chars().any(special) {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' | '\n' | '"' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c, '\u{fffe}' | '\u{ffff}') => {
                return Err(PrimitiveError::new(
                    crate::rsc::Rsc::NOT_ACCEPTABLE,
                    format!("character U+{:04X} cannot be carried by XML 1.0", c as u32),
                ));
            }
            c => out.push(c),
        }
    }
    Ok(Cow::Owned(out))
}

fn scalar_text(v: &Value, attribute: bool) -> Result<Option<Cow<'_, str>>, PrimitiveError> {
    Ok(Some(match v {
        Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Value::Int(i) => Cow::Owned(i.to_string()),
        Value::UInt(u) => Cow::Owned(u.to_string()),
        Value::Float(f) => Cow::Owned(f.to_string()),
        Value::String(s) => escape(s, attribute)?,
        Value::Bytes(b) => Cow::Owned(b.iter().map(|x| format!("{x:02x}")).collect()),
        _ => return Ok(None),
    }))
}

fn write_member(
    out: &mut String,
    parent: &str,
    name: &str,
    value: &Value,
) -> Result<(), PrimitiveError> {
    check_name(name)?;
    if let Value::String(text) = value
        && matches!(kind(parent, name), Kind::ListStr | Kind::ListInt)
        && (text.is_empty() || text.contains(|c: char| c.is_ascii_whitespace()))
    {
        // Found by fuzzing: this member reads back from XML as a list, which a string with
        // spaces would not survive.
        return Err(PrimitiveError::new(
            crate::rsc::Rsc::NOT_ACCEPTABLE,
            format!("{name} is an XML list; the string {text:?} cannot be carried"),
        ));
    }
    if let Value::Array(items) = value
        && matches!(kind(parent, name), Kind::ListStr | Kind::ListInt)
        && items
            .iter()
            .any(|i| matches!(i, Value::Object(_) | Value::Array(_)))
    {
        // Found by fuzzing transcode: an xs:list member reads back as a list of words, so objects
        // or lists among its items would come back nested in lists and then be lost.
        return Err(PrimitiveError::new(
            crate::rsc::Rsc::NOT_ACCEPTABLE,
            format!("{name} is an XML list of words; objects or lists in it cannot be carried"),
        ));
    }
    match value {
        Value::Null => {
            out.push('<');
            out.push_str(name);
            out.push_str("/>");
        }
        // Objects, and scalars of a member that is not an xs:list, travel as repeated elements
        // (which is how they read back); only list members are joined with spaces (found by fuzzing).
        Value::Array(items)
            if items.iter().any(|i| matches!(i, Value::Object(_)))
                || !matches!(kind(parent, name), Kind::ListStr | Kind::ListInt) =>
        {
            for item in items {
                write_member(out, parent, name, item)?;
            }
        }
        Value::Array(items) => {
            let mut parts: Vec<Cow<'_, str>> = Vec::with_capacity(items.len());
            for item in items {
                if let Value::String(text) = item
                    && (text.is_empty() || text.contains(|c: char| c.is_ascii_whitespace()))
                {
                    // xs:list items are separated by whitespace and cannot be empty.
                    return Err(PrimitiveError::new(
                        crate::rsc::Rsc::NOT_ACCEPTABLE,
                        format!("list {name} item {text:?} cannot be carried by an XML list"),
                    ));
                }
                parts.extend(scalar_text(item, false)?);
            }
            out.push_str(&format!("<{name}>{}</{name}>", parts.join(" ")));
        }
        Value::Object(map) => {
            out.push('<');
            out.push_str(name);
            // `val` is element text (with the other members as attributes) only when every other
            // member is a scalar that reads back as one: not structured, and not of a type the
            // schema reads as a list or an object (an `at` attribute reads back as a list: found
            // by fuzzing); otherwise it is an ordinary child (found by fuzzing). And only when there
            // is another member: `<x>text</x>` alone reads back as the scalar, not as `{val}`
            // (found by fuzzing transcode).
            // The text must not be blank either (the reader drops blank text between elements),
            // and no other member may be one the reader drops (`xsi:` attributes).
            let has_val = map.get("val").is_some_and(|v| match v {
                Value::Object(_) | Value::Array(_) | Value::Null => false,
                Value::String(t) => !t.trim().is_empty(),
                _ => true,
            }) && map.len() > 1
                && map.iter().all(|(k, v)| {
                    k == "val"
                        || (!matches!(v, Value::Object(_) | Value::Array(_) | Value::Null)
                            && !k.starts_with("xsi:")
                            && !matches!(
                                kind(name, k),
                                Kind::ListStr | Kind::ListInt | Kind::ListObj | Kind::Object
                            ))
                });
            let mut children = Vec::new();
            for (k, v) in map.iter() {
                let structured = matches!(v, Value::Object(_) | Value::Array(_) | Value::Null);
                if is_attribute(name, k) && structured {
                    // Found by fuzzing: an `rn` that is not a string has no XML form that reads back.
                    return Err(PrimitiveError::new(
                        crate::rsc::Rsc::NOT_ACCEPTABLE,
                        format!("{name}.{k} must be a string to travel as an XML attribute"),
                    ));
                }
                let as_attr = (is_attribute(name, k) || (has_val && k != "val")) && !structured;
                if as_attr {
                    check_name(k)?;
                    let text = scalar_text(v, true)?.unwrap_or_default();
                    // As for elements: xs:boolean reads 0 and 1 back as false and true.
                    let text = match (kind(name, k), text.as_ref()) {
                        (Kind::Bool, "0") => Cow::Borrowed("false"),
                        (Kind::Bool, "1") => Cow::Borrowed("true"),
                        _ => text,
                    };
                    out.push_str(&format!(" {k}=\"{text}\""));
                } else {
                    children.push((k, v));
                }
            }
            if children.is_empty() {
                // `<x/>` is NULL; an empty object is `<x></x>`, unless attributes carry it.
                out.push_str(
                    if map.is_empty() {
                        format!("></{name}>")
                    } else {
                        "/>".to_string()
                    }
                    .as_str(),
                );
                return Ok(());
            }
            out.push('>');
            for (k, v) in children {
                if has_val && k == "val" {
                    out.push_str(&scalar_text(v, false)?.unwrap_or_default());
                } else {
                    write_member(out, name, k, v)?;
                }
            }
            out.push_str(&format!("</{name}>"));
        }
        scalar_value => {
            // xs:boolean reads 0 and 1 as false and true; write them that way so that a second pass
            // through XML gives the same document (found by fuzzing).
            let text = scalar_text(scalar_value, false)?.unwrap_or_default();
            let text = match (kind(parent, name), text.as_ref()) {
                (Kind::Bool, "0") => Cow::Borrowed("false"),
                (Kind::Bool, "1") => Cow::Borrowed("true"),
                // A string where the schema has an xs:list reads back as the list of its words:
                // write it that way, so that a second pass gives the same document (found by
                // fuzzing: "  " came back as an empty list).
                (Kind::ListStr | Kind::ListInt | Kind::ListObj, t) => {
                    Cow::Owned(t.split_whitespace().collect::<Vec<_>>().join(" "))
                }
                _ => text,
            };
            out.push_str(&format!("<{name}>{text}</{name}>"));
        }
    }
    Ok(())
}

/// Append an XML primitive with root `root` and the parameters of `map` (already in XSD order).
pub fn encode(root: Root, map: &Map, out: &mut Vec<u8>) -> Result<(), PrimitiveError> {
    let mut s = String::with_capacity(256);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    s.push_str(&format!("<{} xmlns:m2m=\"{NAMESPACE}\">", root.element()));
    for (k, v) in map.iter() {
        write_member(&mut s, "", k, v)?;
    }
    s.push_str(&format!("</{}>", root.element()));
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onem2m_section_8_container_create() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<m2m:rqp xmlns:m2m="http://www.onem2m.org/xml/protocols">
  <op>1</op><to>cse-in/meter01</to><fr>Cmeter01</fr><rqi>q-0002</rqi><ty>3</ty>
  <pc><m2m:cnt rn="readings"><mni>100</mni><mbs>100000</mbs></m2m:cnt></pc>
  <rvi>3</rvi>
</m2m:rqp>"#;
        let (root, map) = decode(doc.as_bytes()).unwrap();
        assert_eq!(root, Root::Request);
        assert_eq!(map.get("op"), Some(&Value::Int(1)));
        assert_eq!(map.get("rvi"), Some(&Value::from("3")));
        let cnt = map
            .get("pc")
            .unwrap()
            .as_object()
            .unwrap()
            .get("m2m:cnt")
            .unwrap()
            .as_object()
            .unwrap();
        assert_eq!(cnt.get("rn"), Some(&Value::from("readings")));
        assert_eq!(cnt.get("mbs"), Some(&Value::Int(100000)));
    }

    #[test]
    fn other_prefixes_entities_and_refusals() {
        let doc = r#"<p:rsp xmlns:p="http://www.onem2m.org/xml/protocols"><rsc>4004</rsc><rqi>a&amp;b&#x41;</rqi><pc><p:dbg>x &lt; y</p:dbg></pc></p:rsp>"#;
        let (root, map) = decode(doc.as_bytes()).unwrap();
        assert_eq!(root, Root::Response);
        assert_eq!(map.get("rqi"), Some(&Value::from("a&bA")));
        assert_eq!(
            map.get("pc").unwrap().as_object().unwrap().get("m2m:dbg"),
            Some(&Value::from("x < y"))
        );
        assert!(decode(b"<m2m:rqp><op>1</op>").is_err());
        // Found by fuzzing: tabs, newlines and carriage returns survive attributes and text.
        let mut map = Map::new();
        let mut sub = Map::new();
        sub.insert("rn", Value::from("a\tb\nc\rd\"e"));
        sub.insert("nu", Value::Array(vec![Value::from("x"), Value::from("y")]));
        let mut pc = Map::new();
        pc.insert("m2m:sub", Value::Object(sub));
        map.insert("pc", Value::Object(pc));
        let mut out = Vec::new();
        encode(Root::Request, &map, &mut out).unwrap();
        assert_eq!(decode(&out).unwrap().1, map);
        let mut bad = Map::new();
        bad.insert("to", Value::from("\u{1}"));
        assert!(encode(Root::Request, &bad, &mut Vec::new()).is_err());
        let mut spaced = Map::new();
        spaced.insert("lbl", Value::Array(vec![Value::from("a b")]));
        assert!(encode(Root::Request, &spaced, &mut Vec::new()).is_err());
        assert!(decode(b"<html/>").is_err());
        assert!(decode(b"<!DOCTYPE x [<!ENTITY a 'b'>]><m2m:rqp/>").is_err());
        let deep = format!(
            "<m2m:rqp>{}{}</m2m:rqp>",
            "<a>".repeat(100),
            "</a>".repeat(100)
        );
        assert!(decode(deep.as_bytes()).is_err());
    }
}
