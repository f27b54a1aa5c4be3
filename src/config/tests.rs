use super::*;
use clap::{Args, CommandFactory};

fn run_matches(args: &[&str]) -> clap::ArgMatches {
    let cmd = EdgeConfig::augment_args(clap::Command::new("run").no_binary_name(true));
    cmd.try_get_matches_from(args).unwrap()
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("m2m-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn defaults_are_the_flags_defaults() {
    let c = EdgeConfig::default();
    assert_eq!(c.listen.address, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(c.upstream.request_timeout, Duration::from_secs(10));
    assert_eq!(c.upstream.relink_backoff, Duration::from_millis(500));
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(300));
    assert_eq!(c.upstream.protocols.len(), 6);
    assert!(c.listen.connect_allow.is_empty() && !c.runtime.pin && c.runtime.workers.is_none());
    // An empty file, no flags: the defaults.
    assert_eq!(resolve(None, &run_matches(&[])).unwrap(), c);
}

#[test]
fn every_key_is_a_section_field_with_a_flag() {
    let cmd = crate::cli::Cli::command();
    let run = cmd.find_subcommand("run").unwrap();
    let table = toml::Table::try_from(EdgeConfig {
        listen: Listen {
            tls_cert: Some("c".into()),
            tls_key: Some("k".into()),
            client_ca: Some("ca".into()),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let keys = keys();
    assert!(keys.len() > 40, "{keys:?}");
    for k in &keys {
        let (section, key) = k.split_once('.').unwrap();
        assert!(table.contains_key(section), "{k}: no [{section}]");
        let arg = run.get_arguments().find(|a| a.get_id() == k.as_str());
        assert!(
            arg.is_some_and(|a| a.get_long().is_some()),
            "{k} has no flag on run"
        );
        let _ = key;
    }
}

#[test]
fn a_flag_beats_the_file_which_beats_the_default() {
    let file = temp_file(
        "layers.toml",
        "[upstream]\nmax_queued = 7\nrequest_timeout = \"2s\"\n[runtime]\npin = true\n",
    );
    let c = resolve(Some(&file), &run_matches(&["--max-queued", "9"])).unwrap();
    assert_eq!(c.upstream.max_queued, 9, "flag");
    assert_eq!(c.upstream.request_timeout, Duration::from_secs(2), "file");
    assert!(c.runtime.pin, "file");
    assert_eq!(c.upstream.max_in_flight, 1, "default");
    // A flag can turn a file's boolean off, and set a list.
    let c = resolve(
        Some(&file),
        &run_matches(&["--pin=false", "--connect-allow", "a:1,b:2"]),
    )
    .unwrap();
    assert!(!c.runtime.pin);
    assert_eq!(c.listen.connect_allow, ["a:1", "b:2"]);
}

#[test]
fn file_errors_name_the_file_the_line_and_the_key() {
    for (text, needles) in [
        (
            "[listen]\naddress = \"127.0.0.1:1\"\nadress = \"x\"\n",
            &[
                "bad.toml",
                "line 3",
                "unknown field `adress`",
                "expected one of",
            ][..],
        ),
        (
            "[upstream]\nmax_in_flight = 1.5\n",
            &["line 2", "max_in_flight", "invalid type"][..],
        ),
        (
            "[upstream]\nrequest_timeout = \"10 parsecs\"\n",
            &["line 2", "request_timeout", "say e.g."][..],
        ),
        (
            "[upstream]\nrequest_timeout = 10000\n",
            &["line 2", "needs a unit"][..],
        ),
        (
            "[limits]\nidle_timeout_ms = 300000\n",
            &["line 2", "durations take units now: write idle_timeout"][..],
        ),
        (
            "[runtime]\nio = \"kqueue\"\n",
            &["line 2", "unknown I/O driver"][..],
        ),
        ("[nope]\nx = 1\n", &["line 1", "unknown field `nope`"][..]),
        ("listen = 3\n", &["line 1", "invalid type"][..]),
    ] {
        let p = temp_file("bad.toml", text);
        let err = format!("{:#}", read_file(&p).unwrap_err());
        for n in needles {
            assert!(err.contains(n), "{text:?}: {n:?} not in {err}");
        }
    }
}

#[test]
fn the_example_file_shows_every_key_in_its_section_with_its_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("edge.example.toml");
    let table = read_file(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let defaults = toml::Table::try_from(EdgeConfig::default()).unwrap();
    for k in keys() {
        let (section, key) = k.split_once('.').unwrap();
        // The key's line, set or commented out, inside its section.
        let body = text
            .split(&format!("\n[{section}]\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no [{section}] in the example"));
        let body = body.split("\n[").next().unwrap();
        assert!(
            body.contains(&format!("\n{key} = ")) || body.contains(&format!("\n# {key} = ")),
            "{k} missing from [{section}] of edge.example.toml"
        );
        // A value it sets is the default (the example documents, it does not tune); optional
        // keys (no default) may show an example value.
        if let (Some(v), Some(d)) = (
            table.get(section).and_then(|s| s.get(key)),
            defaults[section].get(key),
        ) {
            assert_eq!(v, d, "{k}");
        }
    }
}

#[test]
fn the_operations_guide_lists_every_key_with_its_flag_variable_and_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let (start, end) = ("<!-- options:begin -->\n", "<!-- options:end -->");
    let generated = reference_table();
    let current = text
        .split(start)
        .nth(1)
        .and_then(|t| t.split(end).next())
        .unwrap_or("");
    if current != generated {
        if std::env::var_os("M2M_UPDATE_DOCS").is_some() {
            let head = text.split(start).next().unwrap();
            let tail = text.split(end).nth(1).unwrap_or("\n");
            std::fs::write(&path, format!("{head}{start}{generated}{end}{tail}")).unwrap();
        } else {
            panic!(
                "docs/operations.md's options table is not the generated one: run \
                 `M2M_UPDATE_DOCS=1 cargo test -p m2m-edge --lib config::` (between {start:?} and {end:?})"
            );
        }
    }
}

/// The option table of docs/operations.md, from the flags.
fn reference_table() -> String {
    let cmd = with_env(EdgeConfig::augment_args(clap::Command::new("run")));
    let mut out =
        String::from("| key | flag | environment | default | what |\n|---|---|---|---|---|\n");
    for a in cmd.get_arguments() {
        let id = a.get_id().as_str();
        if !id.contains('.') {
            continue;
        }
        let default: Vec<_> = a
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
        let help = help.replace('\n', " ").replace('|', "\\|");
        let (section, key) = id.split_once('.').unwrap();
        out.push_str(&format!(
            "| `[{section}] {key}` | `--{}` | `{}` | {} | {help} |\n",
            a.get_long().unwrap_or_default(),
            env_name(id),
            if default.is_empty() {
                "—".to_string()
            } else {
                format!("`{}`", default.join(","))
            },
        ));
    }
    out
}

#[test]
fn differences_name_the_keys_that_changed() {
    let a = EdgeConfig::default();
    let mut b = a.clone();
    b.limits.max_frame_bytes = 10;
    b.listen.connect_allow = vec!["x:1".into()];
    b.admin.address = Some("127.0.0.1:1".parse().unwrap());
    assert_eq!(
        a.differences(&b),
        [
            "listen.connect_allow",
            "limits.max_frame_bytes",
            "admin.address"
        ]
    );
    assert!(a.differences(&a).is_empty());
}

#[test]
fn a_configuration_survives_its_own_toml() {
    let mut c = EdgeConfig::default();
    c.upstream.request_timeout = Duration::from_millis(1500);
    c.notify.allow = vec!["/cse".into(), "10.0.0.1".into()];
    c.runtime.workers = Some(3);
    let back: EdgeConfig = toml::from_str(&c.to_toml()).unwrap();
    assert_eq!(back, c);
}
