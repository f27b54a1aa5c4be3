//! Where each configuration key's value came from: the file (with its line), an `M2M_EDGE_*`
//! variable, a flag, or the default.
//!
//! Why: the file's own mistakes (a typo, a wrong type) are reported by the TOML reader with the
//! line, but the checks that look at several keys at once (`listen.tls_cert` without
//! `listen.tls_key`, an upstream URL that does not parse, a notify allow-list entry) run on the
//! merged configuration, where the line is gone. [`Origins::explain`] puts it back: it adds, under
//! such an error, where each key the message names was set.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where one key's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Nothing set it.
    Default,
    /// The configuration file, at this line (1-based).
    File { path: PathBuf, line: usize },
    /// This environment variable.
    Env(String),
    /// This command-line flag.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("the default"),
            Origin::File { path, line } => write!(f, "{} line {line}", path.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// The origin of every key (`section.key`) of one resolved configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins(BTreeMap<String, Origin>);

impl Origins {
    /// Record `key`'s origin (a later call for the same key wins, as later layers do).
    pub fn set(&mut self, key: &str, origin: Origin) {
        self.0.insert(key.to_string(), origin);
    }

    /// Where `key`'s value came from.
    pub fn of(&self, key: &str) -> &Origin {
        self.0.get(key).unwrap_or(&Origin::Default)
    }

    /// `error`, followed by one line per configuration key its message names, saying where that
    /// key was set (unchanged when it names none).
    pub fn explain(&self, error: anyhow::Error) -> anyhow::Error {
        let message = format!("{error:#}");
        let named: Vec<&String> = self
            .0
            .keys()
            .filter(|key| names_key(&message, key))
            .collect();
        if named.is_empty() {
            return error;
        }
        let mut text = message;
        for key in named {
            text.push_str(&format!("\n  {key}: set by {}", self.of(key)));
        }
        anyhow::anyhow!(text)
    }

    /// Every key set by the file at `path`, with its line, from the file's text.
    pub fn from_file(path: &Path, text: &str) -> Self {
        let mut origins = Origins::default();
        let Ok(doc) = toml::de::DeTable::parse(text) else {
            return origins;
        };
        for (section, body) in doc.get_ref() {
            let toml::de::DeValue::Table(body) = body.get_ref() else {
                continue;
            };
            for (key, _) in body {
                let line = line_of(text, key.span().start);
                let id = format!("{}.{}", section.get_ref(), key.get_ref());
                origins.set(
                    &id,
                    Origin::File {
                        path: path.to_path_buf(),
                        line,
                    },
                );
            }
        }
        origins
    }

    /// Keys set by the file, the environment or a flag (not left at their default).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// Whether `message` names `key` as a whole word (`upstream.url` is not named by
/// `upstream.url_x`, `listen.tls_cert` not by `notify.listen.tls_cert`-like text).
fn names_key(message: &str, key: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    message.match_indices(key).any(|(at, _)| {
        let before = message[..at].chars().next_back();
        let mut after = message[at + key.len()..].chars();
        // A key ends at anything but a name character, or a dot that ends a sentence (a dot
        // followed by a name character continues a longer name: `notify.listen.x`).
        let continues = match after.next() {
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => true,
            Some('.') => after
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_'),
            _ => false,
        };
        !before.is_some_and(word) && !continues
    })
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gives_each_key_its_line() {
        let text = "# edge\n[listen]\naddress = \"127.0.0.1:1\"\n\n[upstream]\nurl = \"ws://x/\"\nlinks = 2\n";
        let o = Origins::from_file(Path::new("e.toml"), text);
        assert_eq!(o.of("listen.address").to_string(), "e.toml line 3");
        assert_eq!(o.of("upstream.url").to_string(), "e.toml line 6");
        assert_eq!(o.of("upstream.links").to_string(), "e.toml line 7");
        assert_eq!(o.of("upstream.ca"), &Origin::Default);
    }

    #[test]
    fn inline_and_dotted_keys_have_lines_too() {
        let text = "listen = { address = \"127.0.0.1:1\" }\n\nupstream.url = \"ws://x/\"\n";
        let o = Origins::from_file(Path::new("e.toml"), text);
        assert_eq!(o.of("listen.address").to_string(), "e.toml line 1");
        assert_eq!(o.of("upstream.url").to_string(), "e.toml line 3");
    }

    #[test]
    fn an_error_is_followed_by_where_each_key_it_names_was_set() {
        let mut o =
            Origins::from_file(Path::new("edge.toml"), "[listen]\n\ntls_cert = \"c.pem\"\n");
        o.set("upstream.url", Origin::Env("M2M_EDGE_UPSTREAM_URL".into()));
        o.set("listen.tls_key", Origin::Default);
        let e = o.explain(anyhow::anyhow!(
            "listen.tls_cert and listen.tls_key go together"
        ));
        assert_eq!(
            e.to_string(),
            "listen.tls_cert and listen.tls_key go together\n  \
             listen.tls_cert: set by edge.toml line 3\n  \
             listen.tls_key: set by the default"
        );
        let e = o.explain(anyhow::anyhow!("upstream.url: no host"));
        assert!(
            e.to_string()
                .ends_with("upstream.url: set by environment variable M2M_EDGE_UPSTREAM_URL")
        );
        let plain = o.explain(anyhow::anyhow!("upstream.url_other is not a key"));
        assert_eq!(plain.to_string(), "upstream.url_other is not a key");
        let plain = o.explain(anyhow::anyhow!("upstream.url.x is not a key either"));
        assert_eq!(plain.to_string(), "upstream.url.x is not a key either");
        let named = o.explain(anyhow::anyhow!("check upstream.url."));
        assert!(
            named.to_string().contains("upstream.url: set by"),
            "{named}"
        );
    }
}
