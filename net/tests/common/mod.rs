//! What the connection tests share: one connection served on its own glommio executor.

use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use net::{ConnectionLimits, RequestHandler};
use std::net::SocketAddr;
use std::thread::JoinHandle;

/// Serves the first connection to the returned address with the handler `make` builds (on
/// the executor, so it may spawn tasks there), then ends the thread.
pub fn serve_one<H, F>(limits: ConnectionLimits, make: F) -> (SocketAddr, JoinHandle<()>)
where
    H: RequestHandler + 'static,
    F: FnOnce() -> H + Send + 'static,
{
    raise_memlock();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let ex = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(2 << 20)
            .make()
            .expect("executor");
        ex.run(async move {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let stream = listener.accept().await.unwrap();
            net::serve(stream, make(), limits).await;
        });
    });
    (addr_rx.recv().unwrap(), server)
}

/// glommio locks memory; lift the limit where allowed (the test binary may run as root).
fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        eprintln!("could not raise RLIMIT_MEMLOCK; glommio may fail to start");
    }
}
