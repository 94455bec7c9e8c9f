//! A task woken from another thread must be freed exactly once. Shards answer each other
//! through `futures` oneshot channels, so a shard's task is often woken, and its waker
//! dropped, by a peer shard's thread. glommio 0.9.0 dropped such a foreign waker by taking
//! the reference count to zero and then back to one to hand the task to its executor
//! (vendor/glommio/SPATE-PATCH.md); a JoinHandle dropped on the owner inside that window saw
//! no references left and freed the task, and the executor freed it again when the handed-over
//! waker arrived ("free(): double free detected in tcache 2" in a broker under produce load).
//! The window is a few instructions, so the test widens the odds: the waking thread shares
//! its core with a CPU hog, so the OS deschedules it at random points, now and then inside
//! the window, while the owner runs thousands of spawn-await-drop rounds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use glommio::{LocalExecutorBuilder, Placement};

mod threads;
use threads::{pin_to, raise_memlock, CpuHog};

const RUN_FOR: Duration = Duration::from_secs(3);
/// Tasks waiting on the other thread at once, so it always has wakes to make.
const CLIENTS: usize = 16;

#[test]
fn a_task_woken_and_released_by_another_thread_is_freed_once() {
    let (owner_core, waker_core) = (0, 1 % cores());
    let hog = CpuHog::on(waker_core);
    let (senders_tx, senders_rx) = mpsc::channel::<oneshot::Sender<u64>>();
    let waker = std::thread::spawn(move || {
        pin_to(waker_core);
        let mut sent = 0u64;
        for tx in senders_rx {
            let _ = tx.send(sent);
            sent += 1;
        }
        sent
    });
    let rounds = Arc::new(AtomicU64::new(0));
    let owner = {
        let rounds = rounds.clone();
        std::thread::spawn(move || {
            raise_memlock();
            let ex = LocalExecutorBuilder::new(Placement::Fixed(owner_core))
                .io_memory(1 << 20)
                .make()
                .expect("executor");
            ex.run(async move {
                let start = Instant::now();
                let clients = (0..CLIENTS).map(|_| {
                    let (senders_tx, rounds) = (senders_tx.clone(), rounds.clone());
                    glommio::spawn_local(async move {
                        while start.elapsed() < RUN_FOR {
                            let senders_tx = senders_tx.clone();
                            // Registers its waker before the other thread can answer, so every
                            // answer is a foreign wake; awaiting then drops the JoinHandle.
                            let answer = glommio::spawn_local(async move {
                                let (tx, mut rx) = oneshot::channel::<u64>();
                                assert!(futures::poll!(&mut rx).is_pending());
                                senders_tx.send(tx).expect("waker thread");
                                rx.await.expect("answer")
                            })
                            .await;
                            assert!(answer < u64::MAX);
                            rounds.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                });
                futures::future::join_all(clients.collect::<Vec<_>>()).await;
            });
        })
    };
    owner
        .join()
        .expect("owner executor (a double free aborts the process)");
    let sent = waker.join().expect("waker thread");
    drop(hog);
    let rounds = rounds.load(Ordering::Relaxed);
    eprintln!("{rounds} rounds");
    assert!(rounds > 1000, "only {rounds} rounds ran");
    assert_eq!(sent, rounds);
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
