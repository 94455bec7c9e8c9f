//! What the connection tests share: one connection served on its own glommio executor.

use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use net::{ConnectionLimits, RequestHandler, RequestMemory};
use std::net::SocketAddr;
use std::thread::JoinHandle;

/// Serves the first connection to the returned address with the handler `make` builds (on
/// the executor, so it may spawn tasks there), then ends the thread.
#[allow(dead_code)] // each test binary compiles this module; not every one serves one
pub fn serve_one<H, F>(limits: ConnectionLimits, make: F) -> (SocketAddr, JoinHandle<()>)
where
    H: RequestHandler + 'static,
    F: FnOnce() -> H + Send + 'static,
{
    serve_many(1, limits, 1 << 30, move || {
        let mut handler = Some(make());
        move || handler.take().expect("one connection")
    })
}

/// Serves the first `connections` connections to the returned address, concurrently and
/// sharing `memory_bytes` of request memory, each with a handler from the factory that `make`
/// builds on the executor; ends the thread once they all closed.
pub fn serve_many<H, M, F>(
    connections: usize,
    limits: ConnectionLimits,
    memory_bytes: usize,
    make: F,
) -> (SocketAddr, JoinHandle<()>)
where
    H: RequestHandler + 'static,
    M: FnMut() -> H + 'static,
    F: FnOnce() -> M + Send + 'static,
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
            let memory = RequestMemory::new(memory_bytes);
            let mut handlers = make();
            let mut served = Vec::new();
            for _ in 0..connections {
                let stream = listener.accept().await.unwrap();
                served.push(glommio::spawn_local(net::serve(
                    stream,
                    handlers(),
                    limits,
                    memory.clone(),
                )));
            }
            futures::future::join_all(served).await;
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
