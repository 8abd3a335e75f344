//! The per-principal rate limit (`governor`'s keyed GCRA limiter) and the
//! Prometheus metrics.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use governor::clock::Clock as _;

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

/// Counters exported at `/metrics`.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub decisions_allow: AtomicU64,
    pub decisions_deny: AtomicU64,
    pub records_ingested: AtomicU64,
    pub records_rejected: AtomicU64,
    started: Mutex<Option<Instant>>,
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((route.to_string(), status)).or_default() += 1;
        drop(m);
        let mut s = self.started.lock().unwrap_or_else(|e| e.into_inner());
        s.get_or_insert_with(Instant::now);
    }

    pub fn decision(&self, allowed: bool) {
        if allowed {
            self.decisions_allow.fetch_add(1, Ordering::Relaxed);
        } else {
            self.decisions_deny.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, log_size: u64) -> String {
        let mut o = String::new();
        o.push_str("# HELP postvault_http_requests_total HTTP requests by route and status.\n");
        o.push_str("# TYPE postvault_http_requests_total counter\n");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            o.push_str(&format!(
                "postvault_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}\n",
                route.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
        o.push_str("# HELP postvault_decisions_total Targeted-read decisions by effect.\n");
        o.push_str("# TYPE postvault_decisions_total counter\n");
        o.push_str(&format!(
            "postvault_decisions_total{{effect=\"allow\"}} {}\n",
            self.decisions_allow.load(Ordering::Relaxed)
        ));
        o.push_str(&format!(
            "postvault_decisions_total{{effect=\"deny\"}} {}\n",
            self.decisions_deny.load(Ordering::Relaxed)
        ));
        let ingested = self.records_ingested.load(Ordering::Relaxed);
        o.push_str(
            "# HELP postvault_records_ingested_total Records accepted through POST /v1/records.\n",
        );
        o.push_str("# TYPE postvault_records_ingested_total counter\n");
        o.push_str(&format!("postvault_records_ingested_total {ingested}\n"));
        o.push_str(
            "# HELP postvault_records_rejected_total Lines rejected through POST /v1/records.\n",
        );
        o.push_str("# TYPE postvault_records_rejected_total counter\n");
        o.push_str(&format!(
            "postvault_records_rejected_total {}\n",
            self.records_rejected.load(Ordering::Relaxed)
        ));
        let up = self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|s| s.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        o.push_str("# HELP postvault_ingest_records_per_second Records accepted per second since the first request.\n");
        o.push_str("# TYPE postvault_ingest_records_per_second gauge\n");
        o.push_str(&format!(
            "postvault_ingest_records_per_second {:.1}\n",
            if up > 0.0 { ingested as f64 / up } else { 0.0 }
        ));
        o.push_str("# HELP postvault_log_size Leaves in the transparency log.\n");
        o.push_str("# TYPE postvault_log_size gauge\n");
        o.push_str(&format!("postvault_log_size {log_size}\n"));
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
