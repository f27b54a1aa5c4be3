//! `m2m-edge run --config edge.toml`: the file sets the defaults of the command-line options, so
//! every key has exactly the meaning, type, default and validation of its flag (`m2m-edge run
//! --help` documents them), and a flag given on the command line still wins. Unknown keys, wrong
//! types and values the flags would refuse are errors; `--check` validates everything (including
//! certificate files and the upstream URL) and exits. `edge.example.toml` lists every key.

use std::path::Path;

use anyhow::{Context, bail};

/// (section, key) in the file → the `run` option it sets.
pub const KEYS: &[(&str, &str, &str)] = &[
    ("listen", "address", "listen"),
    ("listen", "tls_cert", "tls_cert"),
    ("listen", "tls_key", "tls_key"),
    ("listen", "client_ca", "client_ca"),
    ("listen", "bind_identity", "bind_identity"),
    ("listen", "deflate", "deflate"),
    ("listen", "connect_allow", "connect_allow"),
    ("upstream", "url", "upstream"),
    ("upstream", "ca", "upstream_ca"),
    ("upstream", "proxy", "upstream_proxy"),
    ("upstream", "source_addrs", "upstream_source_addrs"),
    ("upstream", "protocols", "upstream_protocols"),
    ("upstream", "origin_header", "origin_header"),
    ("upstream", "mode", "upstream_mode"),
    ("upstream", "links", "upstream_links"),
    ("upstream", "edge_origin", "edge_origin"),
    ("upstream", "max_in_flight", "max_in_flight"),
    ("upstream", "max_queued", "max_queued"),
    ("upstream", "request_timeout_ms", "request_timeout_ms"),
    ("upstream", "connect_timeout", "upstream_connect_timeout"),
    ("upstream", "ping_interval", "ping_interval"),
    ("upstream", "ping_timeout", "ping_timeout"),
    ("upstream", "relink_backoff_ms", "relink_backoff_ms"),
    ("limits", "max_handshake_bytes", "max_handshake_bytes"),
    ("limits", "handshake_timeout_ms", "handshake_timeout_ms"),
    ("limits", "max_frame_bytes", "max_frame_bytes"),
    ("limits", "max_message_bytes", "max_message_bytes"),
    ("limits", "idle_timeout_ms", "idle_timeout_ms"),
    ("limits", "max_devices_per_core", "max_devices_per_core"),
    ("limits", "max_output_bytes", "max_output_bytes"),
    ("hold", "ttl", "hold_ttl"),
    ("hold", "max", "hold_max"),
    ("hold", "max_bytes", "hold_max_bytes"),
    ("hold", "core_bytes", "hold_core_bytes"),
    ("runtime", "io", "io"),
    ("runtime", "workers", "workers"),
    ("runtime", "pin", "pin"),
    ("runtime", "drain_ms", "drain_ms"),
    ("runtime", "reuse_port", "reuse_port"),
    ("admin", "address", "admin"),
    ("notify", "listen", "notify_listen"),
    ("notify", "url", "notify_url"),
    ("notify", "allow", "notify_allow"),
    ("notify", "tls_cert", "notify_tls_cert"),
    ("notify", "tls_key", "notify_tls_key"),
    ("notify", "client_ca", "notify_client_ca"),
];

/// `a.b.c.d-a.b.c.e` (inclusive), or one address: local addresses to connect from, so that many
/// connections to one destination are not limited to one address's ephemeral ports.
pub fn parse_source_range(text: &str) -> anyhow::Result<Vec<std::net::Ipv4Addr>> {
    use std::net::Ipv4Addr;
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let a: Ipv4Addr = a
        .trim()
        .parse()
        .with_context(|| format!("source address {a:?}"))?;
    let b: Ipv4Addr = b
        .trim()
        .parse()
        .with_context(|| format!("source address {b:?}"))?;
    let (lo, hi) = (u32::from(a), u32::from(b));
    if hi < lo || hi - lo > 1 << 20 {
        bail!("source range {text:?}: empty or too large");
    }
    Ok((lo..=hi).map(Ipv4Addr::from).collect())
}

/// The option value a TOML value stands for.
pub fn flag_value(section: &str, key: &str, v: &toml::Value) -> anyhow::Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                toml::Value::String(s) => Ok(s.clone()),
                other => bail!(
                    "[{section}] {key}: list items must be strings, not {}",
                    other.type_str()
                ),
            })
            .collect::<anyhow::Result<Vec<_>>>()?
            .join(","),
        other => bail!(
            "[{section}] {key}: a {} is not a valid value",
            other.type_str()
        ),
    })
}

/// Read `path` and return (option id, value) pairs, refusing unknown sections and keys.
pub fn read(path: &Path) -> anyhow::Result<Vec<(&'static str, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    let mut out = Vec::new();
    for (section, body) in &doc {
        let Some(table) = body.as_table() else {
            bail!("{section}: expected a [{section}] section")
        };
        for (key, value) in table {
            let Some(&(_, _, id)) = KEYS.iter().find(|(s, k, _)| s == section && k == key) else {
                let known: Vec<String> = KEYS.iter().map(|(s, k, _)| format!("{s}.{k}")).collect();
                bail!(
                    "{}: unknown key {section}.{key}; known keys: {}",
                    path.display(),
                    known.join(", ")
                );
            };
            out.push((id, flag_value(section, key, value)?));
        }
    }
    Ok(out)
}

/// Make the file's values the defaults of the `run` subcommand's options.
pub fn apply(cmd: clap::Command, path: &Path) -> anyhow::Result<clap::Command> {
    let values = read(path)?;
    Ok(cmd.mut_subcommand("run", move |mut run| {
        for (id, value) in values {
            run = run.mut_arg(id, |a| a.default_value(value).required(false));
        }
        run
    }))
}

/// The `--config` value in raw arguments, if any (it must be known before clap parses).
pub fn config_path(args: &[std::ffi::OsString]) -> Option<std::path::PathBuf> {
    option_path(args, "--config")
}

/// The value of option `flag` (e.g. `--config`) in raw arguments, if any.
pub fn option_path(args: &[std::ffi::OsString], flag: &str) -> Option<std::path::PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == flag {
            return it.next().map(std::path::PathBuf::from);
        }
        if let Some(v) = a.strip_prefix(flag).and_then(|v| v.strip_prefix('=')) {
            return Some(v.into());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_names_an_existing_option() {
        use clap::CommandFactory;
        let cmd = crate::cli::Cli::command();
        let run = cmd.find_subcommand("run").expect("run subcommand");
        for (s, k, id) in KEYS {
            assert!(
                run.get_arguments().any(|a| a.get_id() == id),
                "{s}.{k} -> {id} is not an option of run"
            );
        }
    }

    #[test]
    fn the_example_file_is_valid_and_shows_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("edge.example.toml");
        read(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        for (s, k, _) in KEYS {
            assert!(
                text.contains(&format!("\n{k} = ")) || text.contains(&format!("\n# {k} = ")),
                "{s}.{k} missing"
            );
        }
    }

    #[test]
    fn unknown_keys_and_bad_types_are_refused() {
        let dir = std::env::temp_dir().join(format!("m2m-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (text, needle) in [
            ("[listen]\nadress = \"x\"\n", "unknown key listen.adress"),
            ("[upstream]\nmax_in_flight = 1.5\n", "not a valid value"),
            ("listen = 3\n", "expected a [listen] section"),
        ] {
            let p = dir.join("bad.toml");
            std::fs::write(&p, text).unwrap();
            let err = read(&p).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
