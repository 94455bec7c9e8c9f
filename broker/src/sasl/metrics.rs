//! `spate_sasl_authentications_total{mechanism,result}`: node-wide counters (an
//! authentication is once per connection, far from the hot path, so atomics are fine).

use super::Mechanism;
use std::sync::atomic::{AtomicU64, Ordering};

/// [mechanism][0: success, 1: failure].
static COUNTS: [[AtomicU64; 2]; Mechanism::ALL.len()] =
    [const { [const { AtomicU64::new(0) }; 2] }; Mechanism::ALL.len()];

/// Counts one finished authentication.
pub fn record(mechanism: Mechanism, succeeded: bool) {
    COUNTS[mechanism.index()][usize::from(!succeeded)].fetch_add(1, Ordering::Relaxed);
}

/// (mechanism, "success" or "failure", count) for every pair.
pub fn counts() -> Vec<(&'static str, &'static str, u64)> {
    let mut out = Vec::new();
    for mechanism in Mechanism::ALL {
        for (slot, result) in ["success", "failure"].into_iter().enumerate() {
            let n = COUNTS[mechanism.index()][slot].load(Ordering::Relaxed);
            out.push((mechanism.name(), result, n));
        }
    }
    out
}
