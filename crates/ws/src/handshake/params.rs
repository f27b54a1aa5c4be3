//! The `Sec-WebSocket-Extensions` grammar (RFC 6455 §9.1): a comma-separated list of extensions, each
//! a token followed by `;`-separated parameters whose values are tokens or quoted strings. A
//! malformed item is returned with an empty name, so that no extension matches it: a server declines
//! it and a client rejects it.

use std::borrow::Cow;

/// One `name[=value]` parameter; quoted values are unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderParam<'a> {
    pub name: &'a str,
    pub value: Option<Cow<'a, str>>,
}

/// One extension of the list with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionItem<'a> {
    /// The extension token; empty when the item was malformed.
    pub name: &'a str,
    pub params: Vec<HeaderParam<'a>>,
}

/// RFC 9110 `tchar`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Split `s` on `sep` outside double quotes.
fn split_unquoted(s: &str, sep: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ if b == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_value(raw: &str) -> Option<Cow<'_, str>> {
    if let Some(inner) = raw.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            out.push(if c == '\\' { chars.next()? } else { c });
        }
        // §9.1: a quoted value must still be a token after unquoting.
        is_token(&out).then_some(Cow::Owned(out))
    } else {
        is_token(raw).then_some(Cow::Borrowed(raw))
    }
}

fn parse_item(item: &str) -> ExtensionItem<'_> {
    let mut parts = split_unquoted(item, b';').into_iter().map(str::trim);
    let name = parts.next().unwrap_or("");
    let malformed = ExtensionItem {
        name: "",
        params: Vec::new(),
    };
    if !is_token(name) {
        return malformed;
    }
    let mut params = Vec::new();
    for part in parts {
        let (pname, value) = match part.split_once('=') {
            Some((n, v)) => match parse_value(v.trim()) {
                Some(v) => (n.trim(), Some(v)),
                None => return malformed,
            },
            None => (part, None),
        };
        if !is_token(pname) {
            return malformed;
        }
        params.push(HeaderParam { name: pname, value });
    }
    ExtensionItem { name, params }
}

/// Parse one header value into its extensions, in order. Empty list elements are skipped.
pub fn parse_extension_list(value: &str) -> Vec<ExtensionItem<'_>> {
    split_unquoted(value, b',')
        .into_iter()
        .filter(|item| !item.trim().is_empty())
        .map(parse_item)
        .collect()
}

/// Split a comma-separated token list (`Connection`, `Upgrade`, `Sec-WebSocket-Protocol`), trimming
/// optional whitespace and skipping empty elements (RFC 9110 §5.6.1).
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_params_and_quotes() {
        let items = parse_extension_list(
            "permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits=\"10\" , foo",
        );
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[0].params[0],
            HeaderParam {
                name: "client_max_window_bits",
                value: None
            }
        );
        assert_eq!(items[1].params[0].value.as_deref(), Some("10"));
        assert_eq!(items[2].name, "foo");
    }

    #[test]
    fn malformed_items_have_no_name() {
        for bad in [
            "per message",
            "x; a=\"b c\"",
            "x; =1",
            "x; a=\"unterminated",
        ] {
            let items = parse_extension_list(bad);
            assert!(items.iter().any(|i| i.name.is_empty()), "{bad}");
        }
    }
}
