//! Counters and latency histograms shared by a run's client executors (one lock taken per
//! completed request, never per record).

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Latencies above this are clamped (and still counted): one minute, in microseconds.
const LATENCY_US_MAX: u64 = 60_000_000;

/// One side's (produce or consume) measurements.
pub struct Stats {
    /// Records and bytes completed inside the measured window.
    records: AtomicU64,
    payload_bytes: AtomicU64,
    batch_bytes: AtomicU64,
    /// Payload bytes over the whole run (warm-up included), for progress lines.
    all_payload_bytes: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    latency_us: Mutex<Histogram<u64>>,
    /// Produce requests only: where a request's time went on the client's side.
    requests: Mutex<RequestStages>,
}

/// A produce request's time on the client, in three parts that add up to its oldest record's
/// latency: waiting in its batch (linger or filling), waiting for an in-flight slot
/// (`--in-flight`), and the round trip from sending it to its answer. The round trip is what
/// the broker's latency budget (`--broker-admin`) accounts for from its side.
struct RequestStages {
    batch_wait_us: Histogram<u64>,
    in_flight_wait_us: Histogram<u64>,
    round_trip_us: Histogram<u64>,
}

/// When a produce request's oldest record was due, when its batches were ready to send, when
/// it was sent and when it was answered (the run's clock, ns).
#[derive(Clone, Copy, Debug)]
pub struct RequestTimes {
    pub oldest_intended_ns: u64,
    pub ready_ns: u64,
    pub sent_ns: u64,
    pub answered_ns: u64,
}

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds")
}

fn record_us(histogram: &mut Histogram<u64>, from_ns: u64, to_ns: u64) {
    let us = (to_ns.saturating_sub(from_ns) / 1000).clamp(1, LATENCY_US_MAX);
    histogram.record(us).expect("clamped into bounds");
}

fn percentiles_json(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "mean": h.mean(),
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p99.9": h.value_at_quantile(0.999),
        "p99.99": h.value_at_quantile(0.9999),
        "max": h.max(),
    })
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            records: AtomicU64::new(0),
            payload_bytes: AtomicU64::new(0),
            batch_bytes: AtomicU64::new(0),
            all_payload_bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            latency_us: Mutex::new(latency_histogram()),
            requests: Mutex::new(RequestStages {
                batch_wait_us: latency_histogram(),
                in_flight_wait_us: latency_histogram(),
                round_trip_us: latency_histogram(),
            }),
        }
    }

    /// `records` completed at `done_ns`; `started_ns` holds the send (or intended send) time of
    /// those whose latency is measured.
    pub fn record(
        &self,
        records: u64,
        started_ns: &[u64],
        done_ns: u64,
        payload_bytes: u64,
        batch_bytes: u64,
    ) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.payload_bytes
            .fetch_add(payload_bytes, Ordering::Relaxed);
        self.batch_bytes.fetch_add(batch_bytes, Ordering::Relaxed);
        self.all_payload_bytes
            .fetch_add(payload_bytes, Ordering::Relaxed);
        let mut histogram = self.latency_us.lock().expect("not poisoned");
        for &started in started_ns {
            record_us(&mut histogram, started, done_ns);
        }
    }

    /// One produce request completed inside the measured window.
    pub fn record_request(&self, t: RequestTimes) {
        let mut stages = self.requests.lock().expect("not poisoned");
        record_us(&mut stages.batch_wait_us, t.oldest_intended_ns, t.ready_ns);
        record_us(&mut stages.in_flight_wait_us, t.ready_ns, t.sent_ns);
        record_us(&mut stages.round_trip_us, t.sent_ns, t.answered_ns);
    }

    /// Completed outside the measured window: progress only.
    pub fn count_outside(&self, payload_bytes: u64) {
        self.all_payload_bytes
            .fetch_add(payload_bytes, Ordering::Relaxed);
    }

    pub fn error(&self, reason: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error
            .lock()
            .expect("not poisoned")
            .get_or_insert(reason);
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().expect("not poisoned").clone()
    }

    pub fn all_payload_bytes(&self) -> u64 {
        self.all_payload_bytes.load(Ordering::Relaxed)
    }

    pub fn p50_p99_us(&self) -> (u64, u64) {
        let h = self.latency_us.lock().expect("not poisoned");
        (h.value_at_quantile(0.5), h.value_at_quantile(0.99))
    }

    /// The side's result over a measured window of `window_s` seconds.
    pub fn json(&self, window_s: f64) -> Value {
        let h = self.latency_us.lock().expect("not poisoned");
        let records = self.records.load(Ordering::Relaxed);
        let payload = self.payload_bytes.load(Ordering::Relaxed);
        let mut side = json!({
            "records": records,
            "payload_bytes": payload,
            "run_payload_bytes": self.all_payload_bytes(),
            "batch_bytes": self.batch_bytes.load(Ordering::Relaxed),
            "mb_per_s": payload as f64 / window_s / 1e6,
            "records_per_s": records as f64 / window_s,
            "errors": self.errors(),
            "latency_us": percentiles_json(&h),
        });
        let stages = self.requests.lock().expect("not poisoned");
        if !stages.round_trip_us.is_empty() {
            side["request_us"] = json!({
                "batch_wait": percentiles_json(&stages.batch_wait_us),
                "in_flight_wait": percentiles_json(&stages.in_flight_wait_us),
                "round_trip": percentiles_json(&stages.round_trip_us),
            });
        }
        side
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rates_come_out_in_the_json() {
        let stats = Stats::new();
        let started: Vec<u64> = (0..100).map(|i| 1_000_000_000 - i * 1_000_000).collect();
        stats.record(100, &started, 1_000_000_000, 1000, 1100);
        let j = stats.json(2.0);
        assert_eq!(j["records"], 100);
        assert_eq!(j["mb_per_s"], 0.0005);
        let l = &j["latency_us"];
        assert_eq!(l["count"], 100);
        assert!(l["p50"].as_u64().unwrap() >= 49_000 && l["p50"].as_u64().unwrap() <= 51_000);
        assert!(l["max"].as_u64().unwrap() >= 98_000);
        assert!(
            j.get("request_us").is_none(),
            "no produce request was recorded"
        );
    }

    #[test]
    fn a_request_splits_into_batch_wait_in_flight_wait_and_round_trip() {
        let stats = Stats::new();
        stats.record_request(RequestTimes {
            oldest_intended_ns: 1_000_000,
            ready_ns: 6_000_000,
            sent_ns: 7_000_000,
            answered_ns: 9_000_000,
        });
        let j = stats.json(1.0);
        let r = &j["request_us"];
        let p50 = |stage: &str| r[stage]["p50"].as_u64().unwrap();
        assert!((4_990..=5_010).contains(&p50("batch_wait")));
        assert!((990..=1_010).contains(&p50("in_flight_wait")));
        assert!((1_990..=2_010).contains(&p50("round_trip")));
    }
}
