//! The peers the tests talk to (programs nobody here wrote, installed by `scripts/test.sh`),
//! checked before a test starts anything of its own: a missing or half-installed peer fails the
//! test at once with one line naming it and `scripts/test.sh`, instead of a timeout or a panic deep
//! inside. Each check runs once per test process. Shared by the root crate's tests and the
//! loadgen's (`#[path]`), so it depends on nothing else in `support`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Python with the `websockets` library (`.peers/py`).
    PythonWebsockets,
    /// The ACME oneM2M CSE (`.peers/acme`).
    Acme,
    /// Node.js with playwright-core (`.peers/node`) driving Debian's headless Chromium.
    Browser,
    /// Java with HdrHistogram's reference log reader (Debian's libhdrhistogram-java).
    JavaHdrHistogram,
    /// Debian's Prometheus server.
    Prometheus,
    /// Prometheus' rule checker `promtool` (Debian's prometheus package).
    Promtool,
    /// `systemd-analyze` (Debian's systemd package), to verify the unit file.
    SystemdAnalyze,
    /// libseccomp's Python binding (Debian's python3-seccomp), to run the edge under the profile.
    Seccomp,
}

const ALL: [Peer; 8] = [
    Peer::PythonWebsockets,
    Peer::Acme,
    Peer::Browser,
    Peer::JavaHdrHistogram,
    Peer::Prometheus,
    Peer::Promtool,
    Peer::SystemdAnalyze,
    Peer::Seccomp,
];

/// The repository's root (the directory with `scripts/test.sh`).
pub fn repo_root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("scripts/test.sh").exists() && dir.pop() {}
    dir
}

/// The Python that has the `websockets` peer.
pub fn python_path() -> PathBuf {
    std::env::var_os("M2M_PEERS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".peers/py/bin/python"))
}

/// The Python that has ACME.
pub fn acme_python_path() -> PathBuf {
    std::env::var_os("M2M_ACME_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".peers/acme/bin/python"))
}

/// playwright-core's directory.
pub fn playwright_path() -> PathBuf {
    repo_root().join(".peers/node/node_modules/playwright-core")
}

/// The Python that has libseccomp's binding (Debian's, not a venv).
pub const SECCOMP_PYTHON: &str = "/usr/bin/python3";

/// HdrHistogram's jar.
pub const HDRHISTOGRAM_JAR: &str = "/usr/share/java/hdrhistogram.jar";

fn runs(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What is missing of `peer`, if anything.
fn missing(peer: Peer) -> Option<String> {
    match peer {
        Peer::PythonWebsockets => {
            let py = python_path();
            (!runs(&py, &["-c", "import websockets"]))
                .then(|| format!("Python websockets (at {})", py.display()))
        }
        Peer::Acme => {
            let py = acme_python_path();
            (!runs(&py, &["-c", "import acmecse"]))
                .then(|| format!("the ACME CSE (at {})", py.display()))
        }
        Peer::Browser => {
            if !runs("node", &["--version"]) {
                Some("Node.js (node)".into())
            } else if !playwright_path().exists() {
                Some(format!(
                    "playwright-core (at {})",
                    playwright_path().display()
                ))
            } else if !Path::new("/usr/bin/chromium").exists() && !runs("chromium", &["--version"])
            {
                Some("headless Chromium (Debian's chromium)".into())
            } else {
                None
            }
        }
        Peer::JavaHdrHistogram => {
            if !runs("java", &["-version"]) {
                Some("Java (java)".into())
            } else if !Path::new(HDRHISTOGRAM_JAR).exists() {
                Some(format!("HdrHistogram's Java reader ({HDRHISTOGRAM_JAR})"))
            } else {
                None
            }
        }
        Peer::Prometheus => (!runs("prometheus", &["--version"]))
            .then(|| "Prometheus (Debian's prometheus: prometheus --version)".into()),
        Peer::Promtool => {
            (!runs("promtool", &["--version"])).then(|| "promtool (Debian's prometheus)".into())
        }
        Peer::SystemdAnalyze => (!runs("systemd-analyze", &["--version"]))
            .then(|| "systemd-analyze (Debian's systemd)".into()),
        Peer::Seccomp => (!runs(SECCOMP_PYTHON, &["-c", "import seccomp"])).then(|| {
            format!("libseccomp's Python binding for {SECCOMP_PYTHON} (Debian's python3-seccomp)")
        }),
    }
}

/// Fail the test at once, in one line, unless every peer in `peers` is there.
pub fn require(peers: &[Peer]) {
    static CHECKED: [OnceLock<Option<String>>; ALL.len()] = [const { OnceLock::new() }; ALL.len()];
    for &p in peers {
        let i = ALL.iter().position(|a| *a == p).expect("listed");
        if let Some(what) = CHECKED[i].get_or_init(|| missing(p)) {
            panic!("missing peer: {what}; run scripts/test.sh, which installs it");
        }
    }
}
