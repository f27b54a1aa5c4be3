//! Deciding between io_uring and epoll at start-up.
//!
//! io_uring is refused in many places (Docker's default seccomp profile since 25.0, containerd 2.0,
//! RHEL 9, `kernel.io_uring_disabled`), and the driver needs features newer than io_uring itself:
//! provided-buffer rings (5.19) and multishot receive (6.0). The probe creates a small ring, asks the
//! kernel which opcodes it supports, and registers a test buffer ring. `M2M_RT_URING_PROBE=fail`
//! forces a failure, so that the fallback can be tested anywhere.

use io_uring::{IoUring, Probe, opcode};

/// Why io_uring cannot be used, or `Ok` when it can.
pub fn probe_uring() -> Result<(), String> {
    if std::env::var("M2M_RT_URING_PROBE").is_ok_and(|v| v == "fail") {
        return Err("probe failure forced by M2M_RT_URING_PROBE=fail".into());
    }
    let ring = IoUring::new(8).map_err(|e| format!("io_uring_setup failed: {e}"))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("IORING_REGISTER_PROBE failed: {e}"))?;
    for (code, name) in [
        (opcode::AcceptMulti::CODE, "ACCEPT"),
        (opcode::RecvMulti::CODE, "RECV"),
        (opcode::Send::CODE, "SEND"),
        (opcode::Connect::CODE, "CONNECT"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        (opcode::PollAdd::CODE, "POLL_ADD"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("kernel lacks IORING_OP_{name}"));
        }
    }
    let (major, minor) = kernel_version().ok_or("cannot read the kernel version")?;
    if (major, minor) < (6, 0) {
        return Err(format!(
            "kernel {major}.{minor} lacks multishot receive (needs 6.0)"
        ));
    }
    let test = crate::driver::uring::BufRing::new(&ring, 1, 16, 64)
        .map_err(|e| format!("provided-buffer ring refused: {e}"))?;
    test.unregister(&ring);
    Ok(())
}

fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release.trim().split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}
