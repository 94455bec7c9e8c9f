//! The wake-lag probe: each shard runs a task that sleeps `PROBE_EVERY` and records how late
//! it ran (the `shard` / `wake_lag` stage of the latency budget). A request's task waits the
//! same way for its shard after every await (socket ready, write completed, cross-shard
//! answer), so this stage says how much of a request's tail is the shard being busy with
//! other tasks or parked, as opposed to the request's own work.
//!
//! Cost: one timer wake-up per shard every `PROBE_EVERY` (100 per second), one histogram
//! record each.

use crate::shard::Shard;
use latency::Stage;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often the probe wakes.
const PROBE_EVERY: Duration = Duration::from_millis(10);

/// Starts the probe of `shard`; it ends when the shard closes.
pub fn spawn(shard: &Rc<Shard>) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        while !shard.is_closed() {
            let due = Instant::now() + PROBE_EVERY;
            glommio::timer::sleep(PROBE_EVERY).await;
            latency::record(
                Stage::ShardWakeLag,
                Instant::now().saturating_duration_since(due),
            );
        }
    })
    .detach();
}
