//! One broker per listener address.
//!
//! Each shard binds its own listener with SO_REUSEPORT (the kernel spreads connections over
//! the shards), so a second process binding the same address with SO_REUSEPORT would join the
//! group and silently take a share of the connections: clients would see two logs at one
//! address. Kafka refuses to start on a port in use; so does Spate, before it touches its
//! data dir:
//! - an abstract Unix socket named after the address (`spate-listen/HOST:PORT`), held for the
//!   life of the process: the kernel frees it when the process ends, even on kill -9, and a
//!   second Spate process in the same network namespace cannot bind it, so two starting at
//!   the same moment cannot both pass;
//! - a probe bind of the address without SO_REUSEPORT (with SO_REUSEADDR, so connections in
//!   TIME_WAIT from an earlier run do not count): it fails while any process listens there.

use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener};

/// Held while the broker runs; dropping it lets another process claim the address.
pub struct ListenClaim {
    _name: Option<UnixListener>,
}

/// Claims `addr` for this process, or says clearly why it cannot. Port 0 (each shard picks
/// its own ephemeral port) needs no claim.
pub fn claim(addr: SocketAddr) -> Result<ListenClaim, String> {
    if addr.port() == 0 {
        return Ok(ListenClaim { _name: None });
    }
    let in_use = |detail: &str| {
        format!("cannot listen on {addr}: address already in use ({detail}); stop it or choose another --listen")
    };
    let name = UnixAddr::from_abstract_name(format!("spate-listen/{addr}"))
        .map_err(|e| format!("cannot name the claim on {addr}: {e}"))?;
    let held = UnixListener::bind_addr(&name).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => in_use("another Spate broker listens there"),
        _ => format!("cannot claim {addr}: {e}"),
    })?;
    probe_bind(addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => in_use("another process listens there"),
        _ => format!("cannot listen on {addr}: {e}"),
    })?;
    Ok(ListenClaim { _name: Some(held) })
}

/// Binds (and closes at once) a listener on `addr` without SO_REUSEPORT; std sets
/// SO_REUSEADDR on Unix.
fn probe_bind(addr: SocketAddr) -> std::io::Result<()> {
    std::net::TcpListener::bind(addr).map(drop)
}

#[cfg(test)]
mod tests {
    use super::claim;
    use std::net::TcpListener;

    #[test]
    fn a_second_claim_on_one_address_is_refused_until_the_first_is_dropped() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let first = claim(addr).expect("free address");
        let refused = claim(addr).err().expect("claimed twice");
        assert!(refused.contains("another Spate broker"), "{refused}");
        drop(first);
        drop(claim(addr).expect("released"));
    }

    #[test]
    fn an_address_another_process_listens_on_is_refused() {
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = claim(other.local_addr().unwrap()).err().expect("in use");
        assert!(refused.contains("address already in use"), "{refused}");
        assert!(claim("127.0.0.1:0".parse().unwrap()).is_ok());
    }
}
