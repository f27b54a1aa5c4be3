//! Helpers: start the binary on a free port and wait until it listens, find the Python peers that
//! `scripts/test.sh` installed, make certificates.

pub mod acme;
pub mod certs;
pub mod peers;
pub mod ws_client;

pub use certs::TestCa;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Send SIGTERM and wait for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // std has no way to send SIGTERM; kill(1) does it.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts on `addr`.
pub fn wait_listening(addr: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("process exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{addr} never started listening");
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub fn edge_bin() -> &'static str {
    env!("CARGO_BIN_EXE_m2m-edge")
}

/// The edge's binary with `args` (stdout dropped, stderr to `stderr`), once it listens at `addr`.
pub fn spawn_listening<S: AsRef<std::ffi::OsStr>>(
    addr: SocketAddr,
    args: impl IntoIterator<Item = S>,
    stderr: Stdio,
) -> Proc {
    let mut child = Command::new(edge_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start m2m-edge");
    wait_listening(addr, &mut child);
    Proc { child, addr }
}

/// `m2m-edge echo` on a free port with extra arguments.
pub fn start_echo(io: &str, extra: &[&str]) -> Proc {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new(edge_bin())
        .args([
            "echo",
            "--listen",
            &addr.to_string(),
            "--io",
            io,
            "--workers",
            "2",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start m2m-edge");
    wait_listening(addr, &mut child);
    Proc { child, addr }
}

/// The drivers to test: both, or the one named by `M2M_TEST_DRIVER`.
pub fn drivers() -> Vec<&'static str> {
    match std::env::var("M2M_TEST_DRIVER").as_deref() {
        Ok("epoll") => vec!["epoll"],
        Ok("uring") => vec!["uring"],
        _ => vec!["uring", "epoll"],
    }
}

/// The Python with the peers installed by `scripts/test.sh` (`.peers/py`).
pub fn python() -> PathBuf {
    peers::require(&[peers::Peer::PythonWebsockets]);
    peers::python_path()
}

pub fn peer_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

/// Run a Python peer script and return its output; panics with the output when it fails.
pub fn run_python(script: &str, args: &[&str]) -> Output {
    let out = Command::new(python())
        .arg(peer_script(script))
        .args(args)
        .output()
        .expect("run python");
    if !out.status.success() {
        panic!(
            "{script} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A self-signed certificate for `localhost`/127.0.0.1 written to `dir`; returns (cert, key).
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// A fresh temporary directory under the target dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
