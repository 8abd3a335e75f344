//! The per-principal rate limit (token buckets) and the Prometheus metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::ApiError;

/// Token buckets by key: `rate` a second, bursts of `2 * rate`.
pub struct RateLimiter {
    rate: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or the 429 answer (with `Retry-After`).
    #[allow(clippy::result_large_err)]
    pub fn check(&self, key: &str) -> Result<(), Response> {
        let now = Instant::now();
        let burst = self.rate * 2.0;
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() > 100_000 {
            b.clear();
        }
        let (tokens, at) = b.entry(key.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64;
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
        if let Ok(v) = HeaderValue::from_str(&format!("{}", self.rate as u64)) {
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
