//! Sockets: one listener per core on the same address (`SO_REUSEPORT`, so the kernel spreads
//! connections over the cores; a plain bind first tells a port in use), and the open-file limit
//! raised to what the process may have.

use std::io;
use std::net::{SocketAddr, TcpListener};

/// A non-blocking listener with `SO_REUSEPORT` and `SO_REUSEADDR`.
pub fn reuseport_listener(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    listener(addr, backlog, true)
}

/// A non-blocking listener with `SO_REUSEADDR` only: binding fails with `AddrInUse` when anything
/// listens on the address (used as a probe before the per-core `SO_REUSEPORT` listeners).
pub fn exclusive_listener(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    listener(addr, backlog, false)
}

fn listener(addr: SocketAddr, backlog: i32, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.set_cloexec(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the live struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the live struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// Pin the calling thread to CPU `cpu`.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write within it; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Let `connect` pick the local port of a socket bound to an address with port 0, instead of `bind`
/// reserving one for every destination (Linux `IP_BIND_ADDRESS_NO_PORT`).
pub fn bind_address_no_port(socket: &socket2::Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a pointer to a c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Options every connection gets: no Nagle delay (primitives are small and latency counts), and TCP
/// keepalive, so that a peer that vanished without a FIN or RST (a NAT that forgot the flow, a
/// device that lost power) is found by the kernel even where no WebSocket ping runs: first probe
/// after 60 s of silence, then every 10 s, dead after 3 unanswered.
pub(crate) fn tune(socket: socket2::SockRef<'_>) -> std::io::Result<()> {
    socket.set_tcp_nodelay(true)?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(std::time::Duration::from_secs(60))
        .with_interval(std::time::Duration::from_secs(10))
        .with_retries(3);
    socket.set_tcp_keepalive(&keepalive)
}

/// Keep a port's `SO_REUSEPORT` group to this process's first `workers` sockets: a classic BPF
/// program on the group picks a random one of them for each connection (the kernel numbers a
/// group's sockets in the order they joined). A socket that joins later — another process of the
/// same user with `SO_REUSEPORT` — is not picked while this process's sockets are all open (when
/// one closes, the kernel moves the last socket into its slot), so it cannot take a share of the
/// connections unnoticed. Only for a group this process created alone (the program applies to the
/// whole group).
pub fn keep_reuseport_group(first: &TcpListener, workers: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let workers = u32::try_from(workers.max(1)).unwrap_or(u32::MAX);
    let mut program = [
        // A = a random 32-bit number (the "random" ancillary load).
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: (libc::SKF_AD_OFF + libc::SKF_AD_RANDOM) as u32,
        },
        // A %= workers
        libc::sock_filter {
            code: (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: workers,
        },
        // The index of the socket to wake.
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_A) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, both alive for the call; the kernel copies them.
    let rc = unsafe {
        libc::setsockopt(
            first.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The abstract Unix socket name that says "a process listens on `addr` without sharing it".
fn claim_name(addr: SocketAddr) -> String {
    format!("m2m-edge/exclusive/{addr}")
}

/// Claim `addr` for this process alone, for as long as the returned socket lives (the
/// kernel releases an abstract name when its socket closes, also when the process dies).
/// Processes that would share the port with `SO_REUSEPORT` check the claim first
/// ([`check_unclaimed`]). Abstract names belong to the network namespace (a container's own).
pub fn claim_port(addr: SocketAddr) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let name = std::os::unix::net::SocketAddr::from_abstract_name(claim_name(addr))?;
    std::os::unix::net::UnixListener::bind_addr(&name)
}

/// Fails with `AddrInUse` when a process holds `addr` without sharing it ([`claim_port`]), or
/// the wildcard address of its family on the same port (a socket on 127.0.0.1:P would take that
/// address's connections from a group on 0.0.0.0:P). The check binds each name for an instant;
/// another process checking at the same instant makes it busy too, so a busy name is tried again
/// a few times before it counts as a claim. Errors other than a busy name (no Unix sockets allowed
/// here) pass: the check is a guard, not a lock.
pub fn check_unclaimed(addr: SocketAddr) -> io::Result<()> {
    let wildcard = SocketAddr::new(
        match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
        },
        addr.port(),
    );
    for name in [addr, wildcard] {
        for attempt in 0..5 {
            match claim_port(name) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    if attempt == 4 {
                        return Err(e);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(_) => break,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tune_tests {
    #[test]
    fn every_connection_gets_keepalive_and_nodelay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        super::tune(socket2::SockRef::from(&client)).unwrap();
        let s = socket2::SockRef::from(&client);
        assert!(s.keepalive().unwrap() && s.tcp_nodelay().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap().as_secs(), 60);
    }
}

#[cfg(test)]
mod claim_tests {
    use super::*;

    fn port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn a_claim_refuses_its_address_and_a_wildcard_claim_every_address_of_its_family() {
        let p = port();
        let at = |ip: &str| SocketAddr::new(ip.parse().unwrap(), p);
        let claim = claim_port(at("127.0.0.1")).unwrap();
        let busy = check_unclaimed(at("127.0.0.1")).unwrap_err();
        assert_eq!(busy.kind(), io::ErrorKind::AddrInUse);
        assert!(check_unclaimed(at("127.0.0.2")).is_ok(), "another address");
        assert!(check_unclaimed(at("::1")).is_ok(), "another family");
        drop(claim);
        assert!(
            check_unclaimed(at("127.0.0.1")).is_ok(),
            "released with its socket"
        );

        let wildcard = claim_port(at("0.0.0.0")).unwrap();
        assert!(check_unclaimed(at("127.0.0.1")).is_err());
        assert!(check_unclaimed(at("10.1.2.3")).is_err());
        assert!(check_unclaimed(at("::1")).is_ok());
        drop(wildcard);
        assert!(check_unclaimed(at("127.0.0.1")).is_ok());
    }
}
