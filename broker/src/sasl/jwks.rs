//! The JWKS a listener checks OAUTHBEARER tokens against, kept fresh as Kafka's
//! `RefreshingHttpsJwks` does (KIP-768): fetched at start (with retries; start fails if it
//! cannot be), then re-fetched every `sasl.oauthbearer.jwks.endpoint.refresh.ms` by one plain
//! thread per endpoint, off the shards. A refresh that fails (after its retries) logs a WARN
//! and keeps the keys in use. A token whose `kid` is not in the set asks for an early refresh
//! (at most one per kid per [`MISSING_KID_RECHECK_MS`], at most [`MISSING_KIDS_MAX`] kids
//! remembered); that token itself fails, as in Kafka, and a retry after the refresh passes.
//!
//! Shards read the current [`Validator`] through [`Jwks::validator`]: an `Arc` clone under a
//! read lock that the refresh thread takes as a writer only to swap the pointer.

use super::jwks_fetch::Location;
use super::jwt::{parse_jwks, Validator};
use spate_bench::security::TlsClientConfig;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Kafka's `MISSING_KEY_ID_CACHE_MAX_ENTRIES`.
pub const MISSING_KIDS_MAX: usize = 16;
/// Kafka's `MISSING_KEY_ID_CACHE_IN_FLIGHT_MS`: a kid asks again only after this.
pub const MISSING_KID_RECHECK_MS: u64 = 60_000;
/// Kafka's `MISSING_KEY_ID_MAX_KEY_LENGTH`: longer kids never ask for a refresh.
pub const MISSING_KID_BYTES_MAX: usize = 1000;

/// The refresh and retry settings (`sasl.oauthbearer.jwks.endpoint.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub refresh_ms: u64,
    pub retry_backoff_ms: u64,
    pub retry_backoff_max_ms: u64,
}

/// Where the keys come from and how to reach them.
pub struct Source {
    /// The URL as configured (for logs).
    pub url: String,
    pub location: Location,
    pub tls: Option<TlsClientConfig>,
}

impl Source {
    fn keys(&self) -> Result<Vec<super::jwt::Jwk>, String> {
        parse_jwks(&self.location.fetch(self.tls.as_ref())?)
    }
}

/// A listener's JWKS and claim checks, shared by its shards.
pub struct Jwks {
    url: String,
    validator: RwLock<Arc<Validator>>,
    missing: Mutex<MissingKids>,
    /// Where the keys come from, until [`Jwks::start`] hands it to the refresh thread.
    unstarted: Mutex<Option<(Source, Timing)>>,
    /// Wakes the refresh thread early; unset before the start and for a fixed set (tests).
    wake: OnceLock<mpsc::Sender<()>>,
}

impl Jwks {
    /// A set to be fetched from `source` by [`Jwks::start`] (nothing is read now: settings
    /// are also checked one at a time); `checks`: the claim settings (no keys yet).
    pub fn new(source: Source, checks: Validator, timing: Timing) -> Jwks {
        Jwks {
            url: source.url.clone(),
            validator: RwLock::new(Arc::new(checks)),
            missing: Mutex::new(MissingKids::default()),
            unstarted: Mutex::new(Some((source, timing))),
            wake: OnceLock::new(),
        }
    }

    /// Fetches the keys (retrying as the timing says) and starts the refresh thread; once
    /// (later calls do nothing: listeners may share a set).
    pub fn start(self: &Arc<Self>) -> Result<(), String> {
        let mut unstarted = self.unstarted.lock().map_err(|_| "JWKS lock poisoned")?;
        let Some((source, timing)) = unstarted.take() else {
            return Ok(());
        };
        let keys = with_retries(timing, || source.keys(), std::thread::sleep).map_err(|e| {
            format!(
                "could not fetch the JWKS from {} (retried for {} ms): {e}",
                source.url, timing.retry_backoff_max_ms
            )
        })?;
        info!(url = %source.url, keys = keys.len(), refresh_ms = timing.refresh_ms, "OAuth JWKS fetched");
        let checks = self.validator();
        self.install(Validator {
            keys,
            ..(*checks).clone()
        });
        let (wake, woken) = mpsc::channel();
        let _ = self.wake.set(wake);
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("jwks-refresh".into())
            .spawn(move || refresh_loop(weak, source, timing, woken))
            .map_err(|e| format!("starting the JWKS refresh thread: {e}"))?;
        Ok(())
    }

    /// A set that is never refreshed.
    pub fn fixed(validator: Validator) -> Jwks {
        Jwks {
            url: String::new(),
            validator: RwLock::new(Arc::new(validator)),
            missing: Mutex::new(MissingKids::default()),
            unstarted: Mutex::new(None),
            wake: OnceLock::new(),
        }
    }

    /// The keys and claim checks in use now.
    pub fn validator(&self) -> Arc<Validator> {
        match self.validator.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A token named `kid`, which is not in the set: ask for an early refresh unless that kid
    /// asked recently.
    pub fn key_missing(&self, kid: &str, now_ms: u64) {
        let Some(wake) = self.wake.get() else { return };
        let ask = match self.missing.lock() {
            Ok(mut missing) => missing.should_refresh(kid, now_ms),
            Err(_) => false,
        };
        if ask {
            info!(url = %self.url, kid, "OAuth JWKS refresh expedited for an unknown key id");
            let _ = wake.send(());
        }
    }

    fn install(&self, validator: Validator) {
        if let Ok(mut missing) = self.missing.lock() {
            missing.forget(validator.keys.iter().filter_map(|k| k.kid.as_deref()));
        }
        let validator = Arc::new(validator);
        match self.validator.write() {
            Ok(mut v) => *v = validator,
            Err(poisoned) => *poisoned.into_inner() = validator,
        }
    }
}

impl PartialEq for Jwks {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url && *self.validator() == *other.validator()
    }
}

impl Eq for Jwks {}

/// The refresh thread: every `refresh_ms`, or early when woken; ends when the [`Jwks`] (and
/// so the sender) is dropped.
fn refresh_loop(jwks: Weak<Jwks>, source: Source, timing: Timing, woken: mpsc::Receiver<()>) {
    let interval = Duration::from_millis(timing.refresh_ms.max(1));
    let mut next = Instant::now() + interval;
    loop {
        match woken.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => next += interval,
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let fetched = with_retries(timing, || source.keys(), std::thread::sleep);
        // Requests that came during the refresh are answered by it.
        while woken.try_recv().is_ok() {}
        let Some(jwks) = jwks.upgrade() else { return };
        match fetched {
            Ok(keys) => {
                info!(url = %source.url, keys = keys.len(), "OAuth JWKS refresh complete");
                let checks = jwks.validator();
                jwks.install(Validator {
                    keys,
                    ..(*checks).clone()
                });
            }
            Err(e) => warn!(
                url = %source.url,
                keys_kept = jwks.validator().keys.len(),
                "OAuth JWKS refresh failed; keeping the keys in use: {e}"
            ),
        }
    }
}

/// Runs `attempt` until it succeeds or `retry_backoff_max_ms` have passed, waiting
/// `retry_backoff_ms` after the first failure and twice as long after each next one (never
/// past the end), as Kafka's `Retry` does.
pub fn with_retries<T>(
    timing: Timing,
    mut attempt: impl FnMut() -> Result<T, String>,
    mut sleep: impl FnMut(Duration),
) -> Result<T, String> {
    let start = Instant::now();
    let end = Duration::from_millis(timing.retry_backoff_max_ms);
    let mut backoff = Duration::from_millis(timing.retry_backoff_ms);
    loop {
        let error = match attempt() {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        let left = end.saturating_sub(start.elapsed());
        if left.is_zero() || backoff.is_zero() {
            return Err(error);
        }
        sleep(backoff.min(left));
        backoff = backoff.saturating_mul(2);
    }
}

/// The kids that asked for a refresh lately, and when each may ask again.
#[derive(Default)]
pub struct MissingKids {
    /// (kid, may ask again at ms), oldest first; at most [`MISSING_KIDS_MAX`].
    entries: Vec<(String, u64)>,
}

impl MissingKids {
    /// Whether `kid`, missing at `now_ms`, asks for a refresh (and remembers that it did).
    pub fn should_refresh(&mut self, kid: &str, now_ms: u64) -> bool {
        if kid.len() > MISSING_KID_BYTES_MAX {
            return false;
        }
        if let Some(at) = self.entries.iter().position(|(k, _)| k == kid) {
            if self.entries[at].1 > now_ms {
                return false;
            }
            self.entries.remove(at);
        }
        if self.entries.len() == MISSING_KIDS_MAX {
            self.entries.remove(0);
        }
        self.entries
            .push((kid.to_string(), now_ms + MISSING_KID_RECHECK_MS));
        true
    }

    /// The kids the set now has ask again at once if they go missing.
    fn forget<'a>(&mut self, present: impl Iterator<Item = &'a str>) {
        let present: Vec<&str> = present.collect();
        self.entries.retain(|(k, _)| !present.contains(&k.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::jwt::tests::{rsa_jwks, validator};

    const TIMING: Timing = Timing {
        refresh_ms: 3_600_000,
        retry_backoff_ms: 100,
        retry_backoff_max_ms: 10_000,
    };

    /// The claim checks of the tests' validator, without keys.
    fn checks() -> Validator {
        Validator {
            keys: Vec::new(),
            ..validator(&rsa_jwks("x"))
        }
    }

    #[test]
    fn a_missing_kid_asks_once_per_minute_and_at_most_16_are_remembered() {
        let mut m = MissingKids::default();
        assert!(m.should_refresh("a", 0));
        assert!(!m.should_refresh("a", MISSING_KID_RECHECK_MS - 1));
        assert!(m.should_refresh("a", MISSING_KID_RECHECK_MS));
        assert!(!m.should_refresh(&"x".repeat(MISSING_KID_BYTES_MAX + 1), 0));
        for i in 0..MISSING_KIDS_MAX {
            assert!(m.should_refresh(&format!("k{i}"), MISSING_KID_RECHECK_MS));
        }
        assert_eq!(m.entries.len(), MISSING_KIDS_MAX);
        // "a" was the oldest: forgotten, it asks again.
        assert!(m.should_refresh("a", MISSING_KID_RECHECK_MS + 1));
        m.forget(["k5"].into_iter());
        assert!(m.should_refresh("k5", MISSING_KID_RECHECK_MS + 2));
    }

    #[test]
    fn retries_back_off_twice_as_long_each_time_until_the_maximum() {
        let mut waits = Vec::new();
        let mut attempts = 0;
        let got = with_retries(
            TIMING,
            || {
                attempts += 1;
                if attempts < 4 {
                    Err("down".to_string())
                } else {
                    Ok(attempts)
                }
            },
            |d| waits.push(d.as_millis()),
        );
        assert_eq!(got, Ok(4));
        assert_eq!(waits, [100, 200, 400]);
        let no_retry = Timing {
            retry_backoff_max_ms: 0,
            ..TIMING
        };
        let e = with_retries(no_retry, || Err::<(), _>("down".into()), |_| unreachable!());
        assert_eq!(e, Err("down".into()));
    }

    #[test]
    fn a_file_is_reread_early_when_a_kid_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, rsa_jwks("old")).unwrap();
        let source = Source {
            url: path.display().to_string(),
            location: Location::File(path.clone()),
            tls: None,
        };
        let jwks = Arc::new(Jwks::new(source, checks(), TIMING));
        assert!(
            jwks.validator().keys.is_empty(),
            "nothing read before the start"
        );
        jwks.start().unwrap();
        jwks.start().unwrap();
        assert_eq!(jwks.validator().keys[0].kid.as_deref(), Some("old"));
        std::fs::write(&path, rsa_jwks("new")).unwrap();
        jwks.key_missing("new", 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while jwks.validator().keys[0].kid.as_deref() != Some("new") {
            assert!(Instant::now() < deadline, "not refreshed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            jwks.validator().expected_issuer.as_deref(),
            Some("https://issuer")
        );
        let missing = Source {
            url: "nowhere".into(),
            location: Location::File(dir.path().join("absent.json")),
            tls: None,
        };
        let quick = Timing {
            retry_backoff_ms: 1,
            retry_backoff_max_ms: 5,
            ..TIMING
        };
        let jwks = Arc::new(Jwks::new(missing, checks(), quick));
        let e = jwks.start().unwrap_err();
        assert!(e.contains("could not fetch the JWKS from nowhere"), "{e}");
    }
}
