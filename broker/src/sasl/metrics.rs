//! `spate_sasl_authentications_total{mechanism,result}`,
//! `spate_sasl_reauthentications_total{mechanism}` and
//! `spate_sasl_expired_sessions_closed_total`: node-wide counters (an authentication is
//! once per connection or session lifetime, far from the hot path, so atomics are fine).

use super::Mechanism;
use std::sync::atomic::{AtomicU64, Ordering};

/// [mechanism][0: success, 1: failure].
static COUNTS: [[AtomicU64; 2]; Mechanism::ALL.len()] =
    [const { [const { AtomicU64::new(0) }; 2] }; Mechanism::ALL.len()];

static REAUTHENTICATIONS: [AtomicU64; Mechanism::ALL.len()] =
    [const { AtomicU64::new(0) }; Mechanism::ALL.len()];
static EXPIRED_CLOSED: AtomicU64 = AtomicU64::new(0);

/// Counts one successful re-authentication (also counted by `record`).
pub fn record_reauthentication(mechanism: Mechanism) {
    REAUTHENTICATIONS[mechanism.index()].fetch_add(1, Ordering::Relaxed);
}

/// Counts a connection closed because its session expired.
pub fn record_expired_close() {
    EXPIRED_CLOSED.fetch_add(1, Ordering::Relaxed);
}

/// (mechanism, count) of successful re-authentications.
pub fn reauthentications() -> Vec<(&'static str, u64)> {
    Mechanism::ALL
        .into_iter()
        .map(|m| {
            (
                m.name(),
                REAUTHENTICATIONS[m.index()].load(Ordering::Relaxed),
            )
        })
        .collect()
}

pub fn expired_closed() -> u64 {
    EXPIRED_CLOSED.load(Ordering::Relaxed)
}

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
