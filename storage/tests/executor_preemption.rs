//! A shard's executor must not park while a task is runnable. glommio 0.9.0 did when its
//! preempt timer fired between the reactor poll and the first task-queue run
//! (vendor/glommio/SPATE-PATCH.md): the thread then slept in `io_uring_enter` for good. The
//! window is a few microseconds, so the test widens the odds: a CPU hog shares the executor's
//! core, the OS deschedules the executor at random points (now and then inside the window,
//! for longer than the 100 us timer), and a task that only ever yields keeps work runnable
//! with nothing in flight to wake a parked thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

mod threads;
use threads::{raise_memlock, CpuHog};

const RUN_FOR: Duration = Duration::from_secs(3);
const STALL: Duration = Duration::from_secs(5);

#[test]
fn an_executor_preempted_before_it_runs_a_task_queue_does_not_park() {
    let core = 0;
    let turns = Arc::new(AtomicU64::new(0));
    let hog = CpuHog::on(core);
    let shard = {
        let turns = turns.clone();
        std::thread::spawn(move || {
            raise_memlock();
            let ex = LocalExecutorBuilder::new(Placement::Fixed(core))
                .io_memory(1 << 20)
                .preempt_timer(Duration::from_micros(100))
                .make()
                .expect("executor");
            ex.run(async move {
                let start = Instant::now();
                while start.elapsed() < RUN_FOR {
                    turns.fetch_add(1, Ordering::Relaxed);
                    glommio::executor().yield_now().await;
                }
            });
        })
    };
    let mut seen = (0, Instant::now());
    while !shard.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        let now = turns.load(Ordering::Relaxed);
        if now != seen.0 {
            seen = (now, Instant::now());
        }
        assert!(
            seen.1.elapsed() < STALL,
            "the executor stopped running a runnable task after {now} turns (parked)"
        );
    }
    drop(hog);
    shard.join().expect("executor thread");
    assert!(turns.load(Ordering::Relaxed) > 0);
}
