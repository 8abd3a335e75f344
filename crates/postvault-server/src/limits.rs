//! The per-principal rate limit (`governor`'s keyed GCRA limiter) and the
//! Prometheus metrics (`prometheus-client`).

use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use governor::clock::Clock as _;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::ApiError;

/// Checks between two sweeps of idle keys.
const SWEEP_EVERY: u64 = 4096;
/// Keys above which a check sweeps at once.
const SWEEP_ABOVE: usize = 65_536;

/// Rate limits by key (a principal, a client address): `rate` requests a
/// second, bursts of twice that.
///
/// Memory stays bounded without resetting anyone's limit: a key whose
/// bucket has filled up again is indistinguishable from a key never seen,
/// so sweeping such keys (`retain_recent`) forgets nothing that limits
/// anybody. What is kept is at most the keys active within the last burst
/// window (two seconds).
pub struct RateLimiter {
    rate: u32,
    limiter: governor::DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
}

impl RateLimiter {
    pub fn new(rate: u32) -> RateLimiter {
        let per_second = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
        let burst = per_second.saturating_mul(NonZeroU32::MIN.saturating_add(1));
        RateLimiter {
            rate: per_second.get(),
            limiter: governor::RateLimiter::keyed(
                governor::Quota::per_second(per_second).allow_burst(burst),
            ),
            checks: AtomicU64::new(0),
        }
    }

    /// Keys held now (for tests and metrics).
    pub fn keys(&self) -> usize {
        self.limiter.len()
    }

    /// Forgets keys whose limit has fully recovered.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Takes one request for `key`, or the 429 answer (with `Retry-After`).
    #[allow(clippy::result_large_err)]
    pub fn check(&self, key: &str) -> Result<(), Response> {
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
            || self.limiter.len() > SWEEP_ABOVE
        {
            self.sweep();
        }
        let not_until = match self.limiter.check_key(&key.to_string()) {
            Ok(()) => return Ok(()),
            Err(n) => n,
        };
        let wait = not_until
            .wait_time_from(self.limiter.clock().now())
            .as_secs_f64()
            .ceil()
            .max(1.0) as u64;
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("more than {} requests a second; retry later", self.rate),
        )
        .into_response();
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            h.insert(axum::http::header::RETRY_AFTER, v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.rate.to_string()) {
            h.insert("x-ratelimit-limit", v);
        }
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        Err(r)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    effect: &'static str,
}

/// Counters exported at `/metrics` (Prometheus text format 0.0.4, written
/// by `prometheus-client`, which escapes label values and names counters
/// `*_total`).
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    ingested: Counter,
    rejected: Counter,
    ingest_rate: Gauge<f64, AtomicU64>,
    log_size: Gauge,
    started: OnceLock<Instant>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        let (ingested, rejected) = (Counter::default(), Counter::default());
        let ingest_rate = Gauge::<f64, AtomicU64>::default();
        let log_size = Gauge::default();
        registry.register(
            "postvault_http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "postvault_decisions",
            "Targeted-read decisions by effect",
            decisions.clone(),
        );
        registry.register(
            "postvault_records_ingested",
            "Records accepted through POST /v1/records",
            ingested.clone(),
        );
        registry.register(
            "postvault_records_rejected",
            "Lines rejected through POST /v1/records",
            rejected.clone(),
        );
        registry.register(
            "postvault_ingest_records_per_second",
            "Records accepted per second since the first request",
            ingest_rate.clone(),
        );
        registry.register(
            "postvault_log_size",
            "Leaves in the transparency log",
            log_size.clone(),
        );
        // Both effects are present from the start, at 0.
        for effect in ["allow", "deny"] {
            drop(decisions.get_or_create(&DecisionLabels { effect }));
        }
        Metrics {
            registry,
            requests,
            decisions,
            ingested,
            rejected,
            ingest_rate,
            log_size,
            started: OnceLock::new(),
        }
    }
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.started.get_or_init(Instant::now);
    }

    pub fn decision(&self, allowed: bool) {
        let effect = if allowed { "allow" } else { "deny" };
        self.decisions
            .get_or_create(&DecisionLabels { effect })
            .inc();
    }

    /// Counts one NDJSON ingest: lines accepted and rejected.
    pub fn ingest(&self, accepted: u64, rejected: u64) {
        self.ingested.inc_by(accepted);
        self.rejected.inc_by(rejected);
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, log_size: u64) -> String {
        let up = self
            .started
            .get()
            .map_or(0.0, |s| s.elapsed().as_secs_f64());
        let ingested = self.ingested.get();
        self.ingest_rate
            .set(if up > 0.0 { ingested as f64 / up } else { 0.0 });
        self.log_size
            .set(i64::try_from(log_size).unwrap_or(i64::MAX));
        let mut o = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut o, &self.registry);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_keep_their_names_and_escape_label_values() {
        let m = Metrics::default();
        m.request("/v1/subjects/{id}", 200);
        m.request("/v1/subjects/{id}", 200);
        m.request("/odd\"route\\", 404);
        m.decision(true);
        m.ingest(5, 2);
        let t = m.render(42);
        for line in [
            "# TYPE postvault_http_requests_total counter",
            "postvault_http_requests_total{route=\"/v1/subjects/{id}\",status=\"200\"} 2",
            "postvault_http_requests_total{route=\"/odd\\\"route\\\\\",status=\"404\"} 1",
            "# TYPE postvault_decisions_total counter",
            "postvault_decisions_total{effect=\"allow\"} 1",
            "postvault_decisions_total{effect=\"deny\"} 0",
            "postvault_records_ingested_total 5",
            "postvault_records_rejected_total 2",
            "# TYPE postvault_ingest_records_per_second gauge",
            "# TYPE postvault_log_size gauge",
            "postvault_log_size 42",
        ] {
            assert!(t.lines().any(|l| l == line), "{line} missing from\n{t}");
        }
    }

    #[test]
    fn keys_stay_bounded_and_a_sweep_resets_nobody() {
        let l = RateLimiter::new(1000);
        // A client at its limit stays limited across sweeps.
        let mut allowed = 0;
        while l.check("hot").is_ok() {
            allowed += 1;
            assert!(allowed <= 2100, "the burst is 2000");
        }
        assert!(allowed >= 1900, "{allowed}");
        let drained = std::time::Instant::now();
        // A flood of new keys, one request each (addresses, tokens).
        for i in 0..100_000 {
            let _ = l.check(&format!("k{i}"));
        }
        // Each of those is full again within a couple of milliseconds.
        std::thread::sleep(std::time::Duration::from_millis(20));
        l.sweep();
        assert!(l.keys() < 100, "{} keys kept", l.keys());
        // Only what the time since it was drained refills (1000 a second),
        // never the whole burst again.
        let refilled = (drained.elapsed().as_secs_f64() * 1000.0) as usize + 50;
        let mut again = 0;
        while l.check("hot").is_ok() {
            again += 1;
        }
        assert!(again <= refilled.min(1999), "{again} after a sweep");
    }
}
