//! The connection pool, the runtime the synchronous traits block on, the
//! retry loop, and how PostgreSQL errors become [`StoreError`]s.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use postvault_store::StoreError;
use tokio_postgres::error::SqlState;

/// Attempts of one transaction before a serialization failure is returned.
pub(crate) const MAX_ATTEMPTS: u32 = 12;

/// Why one attempt of a transaction failed.
pub(crate) enum Fail {
    Pg(tokio_postgres::Error),
    Store(StoreError),
    Pool(String),
    /// A caller's callback panicked; its transaction is rolled back (dropped)
    /// before the panic resumes.
    Panic(Box<dyn std::any::Any + Send>),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

/// Runs a caller's callback; a panic becomes [`Fail::Panic`] so the
/// transaction around it is dropped (rolled back) before it resumes.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, Fail> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(Fail::Panic)
}

/// The error a caller sees: the SQLSTATE and primary message only (the
/// detail can quote a row's values).
pub(crate) fn store_error(e: &tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Backend {
            code: db.code().code().to_string(),
            message: db.message().to_string(),
        },
        None => StoreError::Backend {
            code: if e.is_closed() {
                "connection_closed".into()
            } else {
                "connection".into()
            },
            message: e.to_string(),
        },
    }
}

/// A transaction worth running again: PostgreSQL rolled it back for a
/// serialization failure or a deadlock; or, when the transaction is
/// idempotent, the connection broke and the commit's outcome is unknown.
pub(crate) fn retryable(e: &Fail, idempotent: bool) -> bool {
    match e {
        Fail::Pg(e) => match e.code() {
            Some(c) => {
                *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
                    || (idempotent && *c == SqlState::T_R_STATEMENT_COMPLETION_UNKNOWN)
            }
            None => idempotent && e.is_closed(),
        },
        Fail::Pool(_) => idempotent,
        Fail::Store(_) | Fail::Panic(_) => false,
    }
}

/// A pool of connections to one schema and the runtime that drives them.
pub(crate) struct Db {
    pool: Pool,
    /// Always `Some` until drop.
    rt: Option<tokio::runtime::Runtime>,
    /// The URL without its password.
    pub(crate) shown: String,
    /// Transactions run again after a retryable failure.
    pub(crate) retries: std::sync::atomic::AtomicU64,
}

/// A schema name safe to put in SQL unquoted.
pub(crate) fn check_schema(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.bytes().next().is_some_and(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(StoreError::NotAStore(
            name.to_string(),
            "a schema name is lowercase letters, digits and `_`".into(),
        ))
    }
}

impl Db {
    /// A pool of up to `size` connections to `url`, every connection with
    /// `search_path` set to `schema` and `synchronous_commit` on (a commit
    /// returns only once it is flushed: a leaf acknowledged is durable).
    pub(crate) fn connect(url: &str, schema: &str, size: usize) -> Result<Db, StoreError> {
        check_schema(schema)?;
        let shown = crate::redact(url);
        // TLS as `sslmode` and `sslrootcert` in the URL ask (libpq's
        // meanings, crate::tls); the other parameters go to tokio-postgres.
        let connect = crate::tls::connect_params(url)?;
        let mut cfg = tokio_postgres::Config::from_str(&connect.url)
            .map_err(|e| StoreError::NotAStore(shown.clone(), e.to_string()))?;
        cfg.ssl_mode(connect.ssl_mode);
        let mut options = cfg.get_options().unwrap_or_default().to_string();
        options.push_str(&format!(
            " -c search_path={schema} -c synchronous_commit=on -c lock_timeout=60000 \
             -c idle_in_transaction_session_timeout=30000"
        ));
        cfg.options(options.trim());
        // A node that stops (partitioned, paused) while it holds the
        // tree-state lock must not stall the others for long: the server
        // ends a transaction idle for 30 s, and dead peers are found by
        // keepalives within about a minute.
        cfg.keepalives(true);
        cfg.keepalives_idle(Duration::from_secs(20));
        cfg.keepalives_interval(Duration::from_secs(5));
        cfg.keepalives_retries(4);
        if cfg.get_application_name().is_none() {
            cfg.application_name("postvault");
        }
        cfg.connect_timeout(Duration::from_secs(10));
        let mgr = Manager::from_config(
            cfg,
            connect.tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // A bounded wait: a caller that holds connections while asking for
        // more fails instead of hanging.
        let pool = Pool::builder(mgr)
            .max_size(size.max(1))
            .wait_timeout(Some(Duration::from_secs(60)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::NotAStore(shown.clone(), e.to_string()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("postvault-pg")
            .enable_all()
            .build()
            .map_err(|source| StoreError::Io {
                path: shown.clone(),
                source,
            })?;
        Ok(Db {
            pool,
            rt: Some(rt),
            shown,
            retries: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Runs `f` on a pooled connection, blocking the calling thread, again
    /// on a retryable failure (see [`retryable`]) with a growing pause.
    /// `f` opens and commits its own transaction. It must not call back
    /// into code that may use a store (see [`Db::session`]).
    pub(crate) fn run<T>(
        &self,
        idempotent: bool,
        mut f: impl AsyncFnMut(&mut deadpool_postgres::Client) -> Result<T, Fail>,
    ) -> Result<T, StoreError> {
        self.session(idempotent, |w, c| w.wait(f(c)))
    }

    /// Like [`Db::run`], for work that calls the caller's callbacks: `f` is
    /// synchronous and waits for each database step with [`Waiter::wait`],
    /// so a callback runs outside the runtime and may itself use a store
    /// (the facade's leaf callbacks read the key store). Panics raised by
    /// callbacks resume here, after the transaction was rolled back.
    pub(crate) fn session<T>(
        &self,
        idempotent: bool,
        mut f: impl FnMut(&Waiter<'_>, &mut deadpool_postgres::Client) -> Result<T, Fail>,
    ) -> Result<T, StoreError> {
        let Some(rt) = &self.rt else {
            return Err(StoreError::Backend {
                code: "closed".into(),
                message: "the store is closed".into(),
            });
        };
        let w = Waiter(rt);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let out = match w.wait(self.pool.get()) {
                Ok(mut client) => f(&w, &mut client),
                Err(e) => Err(Fail::Pool(e.to_string())),
            };
            let e = match out {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if attempt < MAX_ATTEMPTS && retryable(&e, idempotent) {
                self.retries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2u64.saturating_pow(attempt.min(7))));
                continue;
            }
            return Err(to_store(e));
        }
    }

    /// `synchronous_commit`, `fsync` and `full_page_writes` as the server
    /// reports them on one of this pool's connections.
    pub(crate) fn durability(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.run(false, async |c| {
            let mut out = Vec::new();
            for name in ["synchronous_commit", "fsync", "full_page_writes"] {
                let v: String = c
                    .query_one(&format!("SHOW {name}"), &[])
                    .await?
                    .try_get(0)?;
                out.push((name.to_string(), v));
            }
            Ok(out)
        })
    }

    /// Refuses a server on which an acknowledged commit could be lost:
    /// `synchronous_commit=off` (set for the session or forced by the
    /// server), `fsync=off` or `full_page_writes=off`. Read back, not assumed.
    pub(crate) fn check_durability(&self) -> Result<(), StoreError> {
        // A throwaway cluster (tests, benchmarks) runs without fsync and
        // says so with a server setting of its own; nothing else may.
        let allowed = self.run(false, async |c| {
            let v: Option<String> = c
                .query_one(
                    "SELECT current_setting('postvault.danger_allow_fsync_off', true)",
                    &[],
                )
                .await?
                .try_get(0)?;
            Ok(v.as_deref() == Some("on"))
        })?;
        for (name, value) in self.durability()? {
            if value == "off" && !(allowed && name != "synchronous_commit") {
                return Err(StoreError::NotDurable {
                    path: self.shown.clone(),
                    why: format!("the server runs with {name}=off"),
                });
            }
        }
        Ok(())
    }

    /// A waiter on this store's runtime, for work that spans several calls.
    pub(crate) fn waiter(&self) -> Result<Waiter<'_>, StoreError> {
        match &self.rt {
            Some(rt) => Ok(Waiter(rt)),
            None => Err(StoreError::Backend {
                code: "closed".into(),
                message: "the store is closed".into(),
            }),
        }
    }

    /// A pooled connection, held by the caller.
    pub(crate) fn client(&self, w: &Waiter<'_>) -> Result<deadpool_postgres::Client, StoreError> {
        w.wait(self.pool.get()).map_err(|e| StoreError::Backend {
            code: "pool".into(),
            message: e.to_string(),
        })
    }
}

/// The error the caller sees for a failed attempt; a callback's panic
/// resumes.
pub(crate) fn to_store(e: Fail) -> StoreError {
    match e {
        Fail::Pg(e) => store_error(&e),
        Fail::Store(e) => e,
        Fail::Pool(m) => StoreError::Backend {
            code: "pool".into(),
            message: m,
        },
        Fail::Panic(p) => std::panic::resume_unwind(p),
    }
}

/// Blocks the calling thread on one database step.
pub(crate) struct Waiter<'a>(&'a tokio::runtime::Runtime);

impl Waiter<'_> {
    pub(crate) fn wait<F: std::future::Future>(&self, f: F) -> F::Output {
        self.0.block_on(f)
    }
}

impl Drop for Db {
    /// The last handle on a vault may go away inside an async task (the
    /// service's runtime shutting down): stop the runtime without blocking.
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
