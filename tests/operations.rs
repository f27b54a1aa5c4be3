//! What an operator deploys beside the edge, checked: the Prometheus alert rules (`deploy/alerts.yml`)
//! parse and pass their unit tests under `promtool`, and name only series the edge exposes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn promtool() -> &'static str {
    assert!(
        Command::new("promtool").arg("--version").output().is_ok(),
        "peer missing: promtool (Debian's prometheus package); run scripts/test.sh, which installs it"
    );
    "promtool"
}

#[test]
fn alert_rules_parse_and_pass_their_unit_tests() {
    let tool = promtool();
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts.test.yml"],
    ] {
        let out = Command::new(tool)
            .args(&args)
            .current_dir(deploy())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn alert_rules_name_only_series_the_edge_exposes() {
    let rules = std::fs::read_to_string(deploy().join("alerts.yml")).unwrap();
    let known = m2m_edge::metric_names();
    let mut used = Vec::new();
    for line in rules.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(at) = rest.find("m2m_edge_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            used.push(name);
        }
    }
    assert!(used.len() >= 5, "{used:?}");
    for name in used {
        assert!(
            known.contains(&name),
            "{name} is not a series of the edge: {known:?}"
        );
    }
}
