//! Broker metrics: recorded on the hot path into per-shard and per-partition counters (plain
//! `Cell`s in fixed arrays: no lock, no allocation), gathered from every shard only when
//! `/metrics` is scraped (`scrape`), and written in Prometheus's text format (`text`).

pub mod errors;
pub mod scrape;
pub mod text;

use std::cell::Cell;
use std::time::Duration;

/// API keys below this are counted (Kafka's keys go up to about 90).
pub const API_KEYS_MAX: usize = 128;
/// Error codes -1..ERROR_CODES_MAX-1 are counted by code; others (none in Kafka 4.x) are not.
pub const ERROR_CODES_MAX: usize = 160;
/// Upper bounds of the request latency buckets, in microseconds (100 µs ... 10 s).
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// One API's requests: a count and a latency histogram (the last bucket is +Inf).
#[derive(Default)]
pub struct ApiCounters {
    pub requests: Cell<u64>,
    pub latency_sum_us: Cell<u64>,
    pub latency_buckets: [Cell<u64>; LATENCY_BUCKETS_US.len() + 1],
}

/// One listener's connections on one shard.
#[derive(Default)]
pub struct ListenerCounters {
    /// Connections accepted (admitted by the connection quotas).
    pub accepted: Cell<u64>,
    /// TLS handshakes that failed or timed out (bad or missing client certificate, a
    /// plaintext client, a client that does not trust the broker, silence).
    pub tls_handshake_failures: Cell<u64>,
}

impl ListenerCounters {
    pub fn count_accepted(&self) {
        add(&self.accepted, 1);
    }

    pub fn count_tls_handshake_failure(&self) {
        add(&self.tls_handshake_failures, 1);
    }
}

/// Per-shard request metrics. Lives in `Shard`; only its own executor touches it.
pub struct ShardMetrics {
    /// Each listener's counters, by listener name (registered when the shard binds it).
    pub listeners: std::cell::RefCell<Vec<(std::rc::Rc<str>, std::rc::Rc<ListenerCounters>)>>,
    apis: Box<[ApiCounters]>,
    /// Indexed by `api_key * ERROR_CODES_MAX + (error_code + 1)`.
    errors: Box<[Cell<u64>]>,
    /// glommio's executor and IO statistics are taken (reset) when read; these add them up.
    pub runtime: scrape::RuntimeTotals,
    /// ISR changes this shard's leaders proposed that the controller committed (Kafka's
    /// IsrShrinksPerSec / IsrExpandsPerSec).
    pub isr_shrinks: Cell<u64>,
    pub isr_expands: Cell<u64>,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            apis: (0..API_KEYS_MAX).map(|_| ApiCounters::default()).collect(),
            errors: (0..API_KEYS_MAX * ERROR_CODES_MAX)
                .map(|_| Cell::new(0))
                .collect(),
            runtime: scrape::RuntimeTotals::default(),
            listeners: Default::default(),
            isr_shrinks: Cell::new(0),
            isr_expands: Cell::new(0),
        }
    }
}

impl ShardMetrics {
    /// Counts one request of `api_key` that took `elapsed`.
    pub fn record_request(&self, api_key: i16, elapsed: Duration) {
        let Some(api) = self.apis.get(api_key as usize) else {
            return;
        };
        let us = elapsed.as_micros().min(u64::MAX as u128) as u64;
        add(&api.requests, 1);
        add(&api.latency_sum_us, us);
        let bucket = LATENCY_BUCKETS_US.partition_point(|&bound| bound < us);
        add(&api.latency_buckets[bucket], 1);
    }

    /// Counts one error code in an answer of `api_key` (0, no error, is not counted).
    pub fn record_error(&self, api_key: i16, error_code: i16) {
        let code_slot = error_code as i32 + 1;
        if error_code == 0 || !(0..ERROR_CODES_MAX as i32).contains(&code_slot) {
            return;
        }
        if let Some(cell) = self
            .errors
            .get(api_key as usize * ERROR_CODES_MAX + code_slot as usize)
        {
            add(cell, 1);
        }
    }

    /// Counts a committed ISR change of a partition this shard leads, from `before` to
    /// `after`: a shrink when a member left, an expansion when one joined (a leader proposes
    /// one or the other).
    pub fn record_isr_change(&self, before: &[i32], after: &[i32]) {
        if before.iter().any(|id| !after.contains(id)) {
            add(&self.isr_shrinks, 1);
        }
        if after.iter().any(|id| !before.contains(id)) {
            add(&self.isr_expands, 1);
        }
    }

    /// (api key, counters) of every API that served a request.
    pub fn apis(&self) -> impl Iterator<Item = (i16, &ApiCounters)> {
        self.apis
            .iter()
            .enumerate()
            .filter(|(_, c)| c.requests.get() > 0)
            .map(|(key, c)| (key as i16, c))
    }

    /// (api key, error code, count) of every error seen.
    pub fn errors(&self) -> impl Iterator<Item = (i16, i16, u64)> + '_ {
        self.errors
            .iter()
            .enumerate()
            .filter(|(_, c)| c.get() > 0)
            .map(|(i, c)| {
                let api = (i / ERROR_CODES_MAX) as i16;
                let code = (i % ERROR_CODES_MAX) as i16 - 1;
                (api, code, c.get())
            })
    }
}

/// Traffic of one partition, kept beside its log on the owning shard.
#[derive(Default, Debug)]
pub struct PartitionCounters {
    /// Record batch bytes appended by Produce.
    pub bytes_in: Cell<u64>,
    /// Record batch bytes read from the log for consumers' Fetch answers (Kafka's
    /// BytesOutPerSec: followers' fetches are not counted here).
    pub bytes_out: Cell<u64>,
    /// Follower: record batch bytes appended from the leader's fetch answers (Kafka's
    /// ReplicationBytesInPerSec).
    pub replication_bytes_in: Cell<u64>,
    /// Leader: record batch bytes read from the log for followers' fetches (Kafka's
    /// ReplicationBytesOutPerSec).
    pub replication_bytes_out: Cell<u64>,
    /// Follower: the leader's high watermark minus this replica's log end offset after the
    /// last fetch answer, at least 0 (Kafka's fetcher lag, whose maximum is MaxLag).
    pub fetcher_lag: Cell<i64>,
}

fn add(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get().wrapping_add(n));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_land_in_their_latency_bucket() {
        let m = ShardMetrics::default();
        m.record_request(0, Duration::from_micros(100));
        m.record_request(0, Duration::from_micros(101));
        m.record_request(0, Duration::from_secs(60));
        let (key, api) = m.apis().next().unwrap();
        assert_eq!((key, api.requests.get()), (0, 3));
        assert_eq!(api.latency_buckets[0].get(), 1);
        assert_eq!(api.latency_buckets[1].get(), 1);
        assert_eq!(api.latency_buckets[LATENCY_BUCKETS_US.len()].get(), 1);
        assert_eq!(api.latency_sum_us.get(), 60_000_201);
        assert_eq!(m.apis().count(), 1);
    }

    #[test]
    fn isr_changes_count_as_shrinks_or_expansions() {
        let m = ShardMetrics::default();
        m.record_isr_change(&[1, 2, 3], &[1, 3]);
        m.record_isr_change(&[1, 3], &[1, 3, 2]);
        m.record_isr_change(&[1, 3, 2], &[1]);
        m.record_isr_change(&[1], &[1]);
        assert_eq!((m.isr_shrinks.get(), m.isr_expands.get()), (2, 1));
    }

    #[test]
    fn errors_are_counted_by_api_and_code() {
        let m = ShardMetrics::default();
        m.record_error(1, 3);
        m.record_error(1, 3);
        m.record_error(0, -1);
        m.record_error(0, 0);
        m.record_error(0, 999);
        let errors: Vec<_> = m.errors().collect();
        assert_eq!(errors, vec![(0, -1, 1), (1, 3, 2)]);
    }
}
