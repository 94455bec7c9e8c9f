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
//! - a probe bind of the address with the shards' own socket options (SO_REUSEPORT, as
//!   glommio sets it): it fails where the shards' binds would, while a process listens there
//!   without SO_REUSEPORT (Kafka, most servers), before anything is written. Sockets of this
//!   broker's previous run (TIME_WAIT, FIN_WAIT after a kill -9) do not count, as they do not
//!   for the shards; a plain bind would count them and refuse a restart.

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

/// Binds (and closes at once) a socket on `addr` as a shard's listener binds it.
fn probe_bind(addr: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())
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
    fn the_sockets_a_stopped_broker_left_do_not_block_its_restart() {
        // A listener as a shard binds it; its accepted connection closed by the server side
        // first (as a kill -9 closes it) stays in FIN_WAIT while the client keeps its end.
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener.set_reuse_port(true).unwrap();
        listener
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        listener.listen(8).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        drop(accepted);
        drop(listener);
        drop(claim(addr).expect("a restart on the same address"));
        drop(client);
    }

    #[test]
    fn an_address_another_process_listens_on_is_refused() {
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = claim(other.local_addr().unwrap()).err().expect("in use");
        assert!(refused.contains("address already in use"), "{refused}");
        assert!(claim("127.0.0.1:0".parse().unwrap()).is_ok());
    }
}
