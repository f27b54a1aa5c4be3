//! The ACME oneM2M CSE as a real upstream peer: started by the test from the project's own
//! `tests/peers/acme.ini` template on free loopback ports, ready when an HTTP retrieve of the CSEBase
//! answers 2000 and the WebSocket port accepts, killed on drop. Shared with `loadgen/tests` (by
//! `#[path]`), which supplies the same `free_port` and `temp_dir`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, temp_dir};

pub struct Acme {
    child: Child,
    pub ws: SocketAddr,
    pub http: SocketAddr,
    pub dir: PathBuf,
}

impl Drop for Acme {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn acme_python() -> PathBuf {
    super::peers::require(&[super::peers::Peer::Acme]);
    super::peers::acme_python_path()
}

/// Retrieve the CSEBase over HTTP; true when ACME answers `X-M2M-RSC: 2000`.
fn http_ready(http: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&http, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!(
        "GET /~/id-in/cse-in HTTP/1.1\r\nHost: {http}\r\nX-M2M-Origin: CAdmin\r\nX-M2M-RI: ready\r\nX-M2M-RVI: 3\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.to_ascii_lowercase().contains("x-m2m-rsc: 2000")
}

/// Python that restores the default SIGINT handler (a background job may have inherited it as
/// ignored) and runs ACME's `__main__`, so that SIGINT stops ACME cleanly and flushes its database.
const LAUNCH: &str = "import signal, sys, runpy; signal.signal(signal.SIGINT, signal.default_int_handler); sys.argv[0] = 'acmecse'; runpy.run_module('acmecse', run_name='__main__', alter_sys=True)";

fn spawn(dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("stdout.log"))
        .unwrap();
    Command::new(acme_python())
        .args(["-c", LAUNCH, "--headless", "--base-directory"])
        .arg(dir)
        .args(["--config", "acme.ini"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start ACME")
}

impl Acme {
    /// Stop with SIGINT (ACME flushes a file database) and wait for the exit.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.wait();
    }

    /// Freeze the process (SIGSTOP): its sockets stay open and answer nothing, pings included,
    /// like a CSE that hangs or a path that silently drops packets.
    pub fn pause(&self) {
        let _ = Command::new("kill")
            .args(["-STOP", &self.child.id().to_string()])
            .status();
    }

    /// Thaw a paused process (SIGCONT).
    pub fn resume(&self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
    }

    /// Start again on the same ports and directory (and database).
    pub fn restart(&mut self) {
        self.child = spawn(&self.dir);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default();
                panic!("ACME exited ({status}) before it was ready:\n{log}");
            }
            if http_ready(self.http)
                && TcpStream::connect_timeout(&self.ws, Duration::from_millis(200)).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "ACME not ready after 60 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Start ACME with an in-memory database (`tinydb` when `persistent`, in its own directory).
pub fn start_acme(name: &str, persistent: bool) -> Acme {
    let dir = temp_dir(name);
    let (http_port, ws_port) = (free_port(), free_port());
    let ini = include_str!("../peers/acme.ini")
        .replace("@HTTP_PORT@", &http_port.to_string())
        .replace("@WS_PORT@", &ws_port.to_string())
        .replace("@DB_TYPE@", if persistent { "tinydb" } else { "memory" });
    std::fs::write(dir.join("acme.ini"), ini).unwrap();
    let child = spawn(&dir);
    let mut acme = Acme {
        child,
        ws: format!("127.0.0.1:{ws_port}").parse().unwrap(),
        http: format!("127.0.0.1:{http_port}").parse().unwrap(),
        dir,
    };
    acme.wait_ready();
    acme
}
