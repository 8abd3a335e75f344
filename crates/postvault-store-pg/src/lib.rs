//! The PostgreSQL backend of postvault: [`PgStore`] implements
//! [`postvault_store::Store`] and [`PgKeyStore`] implements
//! [`postvault_store::KeyStore`], so several vault nodes can share one
//! PostgreSQL-compatible database (PostgreSQL, CockroachDB, YugabyteDB,
//! Citus) with the guarantees of the embedded store: one transparency log,
//! every acknowledged record present once.
//!
//! Architecture invariant: every operation that appends log leaves is one
//! explicit transaction that first locks the single `tree_state` row with
//! `SELECT ... FOR UPDATE`; the leaf indexes it hands out are therefore
//! dense and every such transaction is ordered after the previous one, on
//! every node. Nothing relies on advisory locks or on COPY being atomic by
//! itself: COPY runs inside that transaction. A collection batch carries an
//! id (its first record's id) written in the same transaction, so a batch
//! retried after an ambiguous commit is not written twice. Serialization
//! failures and deadlocks (SQLSTATE 40001, 40P01) are retried.
//!
//! The traits are synchronous. Each store owns a small tokio runtime and
//! blocks the calling thread on it; callers must not be async tasks (the
//! HTTP service calls the vault from blocking threads, which is fine).

#[cfg(any(test, feature = "test-util"))]
mod cluster;
mod db;
mod keys;
mod ops;
mod reads;
mod schema;
mod store;
mod tls;

#[cfg(any(test, feature = "test-util"))]
pub use cluster::{ClusterError, ClusterOptions, ClusterTls, TempCluster};
pub use keys::PgKeyStore;
pub use store::PgStore;

#[cfg(test)]
mod tests;

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// The schema holding the data store's tables (created if missing).
    pub schema: String,
    /// The schema holding the key store's tables.
    pub keys_schema: String,
    /// Connections in the pool of one store.
    pub pool_size: usize,
    /// Create the schema and tables if they do not exist (`init`); otherwise
    /// they must exist.
    pub create: bool,
    /// The isolation level of the store's transactions.
    pub isolation: Isolation,
}

/// The isolation level of the store's transactions. Both are correct: the
/// tree-state lock orders every leaf-appending transaction either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// PostgreSQL's default: a transaction waiting for the tree-state lock
    /// proceeds once it is free, and sees what was committed before.
    #[default]
    ReadCommitted,
    /// What CockroachDB runs by default: a transaction that waited for the
    /// lock fails with SQLSTATE 40001 and is run again.
    Serializable,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: "postvault".into(),
            keys_schema: "postvault_keys".into(),
            pool_size: 8,
            create: false,
            isolation: Isolation::ReadCommitted,
        }
    }
}

/// `url` without its password, for messages and `Vault::dir`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    // A password may also come as a query parameter.
    let hidden;
    let host = match host.split_once('?') {
        Some((h, q)) => {
            let q: Vec<String> = q
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            hidden = format!("{h}?{}", q.join("&"));
            hidden.as_str()
        }
        None => host,
    };
    match auth {
        Some(a) => {
            let user = a.split(':').next().unwrap_or_default();
            if a.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => format!("{scheme}://{host}"),
    }
}

/// True if `s` names a PostgreSQL store (`postgres://` or `postgresql://`).
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}
