//! Store errors. Messages never carry a stored value: SQLite reports
//! constraint and IO problems by table and column, and that is all we pass on.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A backend other than SQLite failed: its error code (for PostgreSQL the
    /// SQLSTATE) and primary message, never the detail that may quote a row.
    #[error("database error {code}: {message}")]
    Backend { code: String, message: String },
    #[error("io error on `{path}`: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the store at `{path}` has schema version {found}, newer than this postvault supports ({supported}); upgrade postvault"
    )]
    NewerSchema {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error("`{0}` is not a postvault store: {1}")]
    NotAStore(String, String),
    #[error("principal `{0}` already exists")]
    PrincipalExists(String),
    #[error("no principal `{0}` in force (unknown, or revoked already)")]
    PrincipalNotActive(String),
    #[error("secret `{0}` already exists")]
    SecretExists(String),
    #[error("an erasure ran while the batch was prepared; prepare it again")]
    Conflict,
    #[error(
        "another reader kept destroyed key material from being overwritten in the key store's WAL; retry"
    )]
    Busy,
    #[error(
        "the transaction did not commit ({0}); nothing was returned, and nothing it wrote is acknowledged (a collection retried under its batch id is not written twice)"
    )]
    NotCommitted(String),
    #[error("the record to correct is no longer current")]
    Stale,
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error(
        "another collection of this run committed lines first (it committed through line {0}); nothing of this batch was stored"
    )]
    RunMoved(u64),
    #[error("the store at `{path}` does not run durably: {why}; refusing to open it")]
    NotDurable { path: String, why: String },
}

impl StoreError {
    /// The disk (or the file system's quota) is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sqlite(e) => e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
            StoreError::Io { source, .. } => {
                source.kind() == std::io::ErrorKind::StorageFull
                    || source.raw_os_error() == Some(28)
            }
            _ => false,
        }
    }
}
