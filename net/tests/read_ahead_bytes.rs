//! The bytes of request frames held between reading and replying are bounded by the request
//! memory the connections of a shard share: while the handlers hold their replies, the readers
//! stop once the frames they read pass the bound, together, and read on as replies go out.

mod common;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use net::{ConnectionLimits, Reply, RequestHandler};
use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::Duration;

const FRAME_BYTES: usize = 10_000;
const BOUND: usize = 3 * FRAME_BYTES;
const REQUESTS: u8 = 10;

/// Answers each request with its first byte, once `open` is set; counts requests started.
#[derive(Clone, Default)]
struct Held {
    started: Rc<Cell<usize>>,
    open: Rc<Cell<bool>>,
    wakers: Rc<RefCell<Vec<std::task::Waker>>>,
}

impl RequestHandler for Held {
    fn handle(&self, frame: Bytes) -> LocalBoxFuture<'static, Reply> {
        self.started.set(self.started.get() + 1);
        let held = self.clone();
        Box::pin(async move {
            futures::future::poll_fn(|cx| {
                if held.open.get() {
                    std::task::Poll::Ready(())
                } else {
                    held.wakers.borrow_mut().push(cx.waker().clone());
                    std::task::Poll::Pending
                }
            })
            .await;
            let mut reply = 1i32.to_be_bytes().to_vec();
            reply.push(frame[0]);
            Reply::Frame(reply.into())
        })
    }
}

#[test]
fn readers_stop_at_the_shared_request_memory_and_resume_as_replies_go() {
    const CONNECTIONS: usize = 2;
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (open_tx, open_rx) = std::sync::mpsc::channel::<()>();
    let limits = ConnectionLimits {
        frame_bytes_max: 1 << 20,
        in_flight_max: 100,
    };
    let (addr, server) = common::serve_many(CONNECTIONS, limits, BOUND, move || {
        let held = Held::default();
        let watcher = held.clone();
        glommio::spawn_local(async move {
            // Report how many requests started once reading has settled, then open.
            glommio::timer::sleep(Duration::from_millis(300)).await;
            started_tx.send(watcher.started.get()).unwrap();
            while open_rx.try_recv().is_err() {
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            watcher.open.set(true);
            watcher.wakers.take().into_iter().for_each(|w| w.wake());
        })
        .detach();
        move || held.clone()
    });
    let mut clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    for client in &mut clients {
        for i in 0..REQUESTS {
            client
                .write_all(&(FRAME_BYTES as i32).to_be_bytes())
                .unwrap();
            client.write_all(&vec![i; FRAME_BYTES]).unwrap();
        }
    }
    let started = started_rx.recv().unwrap();
    assert_eq!(
        started,
        BOUND / FRAME_BYTES,
        "requests started, over both connections, while the first ones hold their replies"
    );
    open_tx.send(()).unwrap();
    for client in &mut clients {
        for i in 0..REQUESTS {
            let mut reply = [0u8; 5];
            client.read_exact(&mut reply).unwrap();
            assert_eq!(reply, [0, 0, 0, 1, i], "reply {i}");
        }
    }
    drop(clients);
    server.join().unwrap();
}
