//! Errors of vault operations. A refused read or a rejected line is not an
//! error: it is an answer ([`crate::ReadResponse`], [`crate::CollectReport`]).
//! Messages never carry personal data.

use postvault_crypto::CryptoError;
use postvault_policy::PackError;
use postvault_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no vault at `{0}`: run `postvault init` first")]
    NotInitialized(String),
    #[error("a vault already exists at `{0}`")]
    AlreadyInitialized(String),
    #[error(
        "the key store `{0}` is missing: without it no data in this vault can be read; restore it from its own backup"
    )]
    KeysMissing(String),
    #[error("the key store `{0}` belongs to another vault")]
    KeysMismatch(String),
    #[error("unknown principal `{0}`: add it with `postvault principal add`")]
    UnknownPrincipal(String),
    #[error("unknown role `{0}`")]
    UnknownRole(String),
    #[error("unknown purpose `{0}`")]
    UnknownPurpose(String),
    #[error("not permitted: {0}")]
    NotPermitted(String),
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    /// Refused with a stable code of its own (e.g. `invalid_subject_id`,
    /// `consent_not_required`); the message never names a person.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error("policy pack: {0}")]
    Pack(#[from] PackError),
    #[error(
        "this vault runs under pack `{current}`; the pack given is `{given}`, which was not staged: `postvault policy diff DIR` shows what changes, `postvault policy stage DIR` stages it (a change that widens access takes effect after its notice period); open without `--pack` to run the pack in force"
    )]
    PackNotStaged { current: String, given: String },
    #[error(
        "pack `{version}` is staged and takes effect at {effective_at} (its notice period); until then this vault runs under `{current}`: open it without `--pack`"
    )]
    PackNotInForce {
        version: String,
        effective_at: String,
        current: String,
    },
    #[error(
        "the pack this vault runs under (`{version}`) fails this engine's checks: {error}; stage a pack that passes with the postvault release that recorded it (`postvault policy stage DIR`)"
    )]
    PackNoLongerLoads { version: String, error: PackError },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("key material: {0}")]
    Crypto(#[from] CryptoError),
    #[error("transparency log: {0}")]
    Log(#[from] postvault_log::LogError),
    #[error("log verification failed: {0}")]
    LogVerification(String),
    /// The data store is behind or beside the last checkpoint the key store
    /// says was signed, or a witness has seen a larger tree: the vault
    /// refuses to open or to sign.
    #[error("the log was rolled back: {0}")]
    LogRollback(String),
    /// Witnesses are configured and no checkpoint has a quorum of their
    /// cosignatures yet.
    #[error("no final checkpoint: {0}")]
    NoFinalCheckpoint(String),
    #[error("io error on `{path}`: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("reading input: {0}")]
    Input(std::io::Error),
    #[error(
        "{records} records could not be opened: their keys are missing from the key store or damaged (a copy of a running vault, a lost key-store WAL, a damaged file); nothing was returned. Run `postvault check`, and restore the key store from the backup taken with this data store"
    )]
    RecordKeysMissing { records: u64 },
    #[error(
        "`{dir}` holds a half-made vault ({what}), left by an interrupted `init`: run `postvault init --replace` to replace it"
    )]
    HalfMade { dir: String, what: String },
    #[error("`{dir}` holds no whole vault: {what}")]
    NotAVault { dir: String, what: String },
    #[error(
        "no space left on the device while creating the vault at `{0}`; nothing was left behind"
    )]
    DiskFull(String),
    #[error("{0}")]
    VaultInUse(String),
    #[error(
        "the master key of the vault at `{0}` is kept outside its key store: give it with --master-key-file PATH, POSTVAULT_MASTER_KEY_FILE, or --master-key-command CMD"
    )]
    MasterKeyRequired(String),
    #[error("{0}")]
    MasterKeyWrong(String),
    #[error(
        "the vault at `{0}` keeps its master key in its key store, but an external master key was given: move it out first with `postvault keys externalize`"
    )]
    MasterKeyInStore(String),
    #[error(
        "this collection run is already in progress (the same batch id, resent before the first finished); retry once it is done"
    )]
    RunInProgress,
    #[error("{0}")]
    RunMismatch(String),
    /// The failure of a group of one-person erasures, as the others in it
    /// see it: the code and message of the error the group's run met (the
    /// request that ran it has the error itself).
    #[error("{message}")]
    Joined { code: &'static str, message: String },
}

impl From<postvault_policy::SubjectIdError> for VaultError {
    fn from(e: postvault_policy::SubjectIdError) -> VaultError {
        VaultError::Refused {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl VaultError {
    /// Keys needed for data are missing or damaged: the key store is gone,
    /// or records cannot be opened (exit code 6, HTTP 500 `keys_missing`).
    pub fn keys_missing(&self) -> bool {
        matches!(
            self,
            VaultError::KeysMissing(_) | VaultError::RecordKeysMissing { .. }
        )
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            VaultError::NotInitialized(_) => "not_initialized",
            VaultError::AlreadyInitialized(_) => "already_initialized",
            VaultError::KeysMissing(_) => "keys_missing",
            VaultError::KeysMismatch(_) => "keys_mismatch",
            VaultError::UnknownPrincipal(_) => "unknown_principal",
            VaultError::UnknownRole(_) => "unknown_role",
            VaultError::UnknownPurpose(_) => "unknown_purpose",
            VaultError::NotPermitted(_) => "not_permitted",
            VaultError::Invalid { .. } => "invalid",
            VaultError::Refused { code, .. } => code,
            VaultError::Pack(_) | VaultError::PackNoLongerLoads { .. } => "bad_pack",
            VaultError::PackNotStaged { .. } => "pack_not_staged",
            VaultError::PackNotInForce { .. } => "pack_not_in_force",
            VaultError::Store(StoreError::NewerSchema { .. }) => "newer_schema",
            VaultError::Store(StoreError::NotAStore(..)) => "not_a_store",
            VaultError::Store(StoreError::PrincipalExists(_)) => "principal_exists",
            VaultError::Store(StoreError::RunMoved(_)) => "run_in_progress",
            VaultError::Store(StoreError::NotDurable { .. }) => "not_durable",
            VaultError::Store(StoreError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                "permission_denied"
            }
            VaultError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                "permission_denied"
            }
            VaultError::Store(_) => "store",
            VaultError::Crypto(_) => "crypto",
            VaultError::Log(_) => "log",
            VaultError::LogVerification(_) => "log_verification_failed",
            VaultError::LogRollback(_) => "log_rollback",
            VaultError::NoFinalCheckpoint(_) => "no_final_checkpoint",
            VaultError::Io { .. } => "io",
            VaultError::Input(_) => "input",
            VaultError::RecordKeysMissing { .. } => "keys_missing",
            VaultError::HalfMade { .. } => "half_made",
            VaultError::NotAVault { .. } => "not_a_vault",
            VaultError::DiskFull(_) => "disk_full",
            VaultError::VaultInUse(_) => "vault_in_use",
            VaultError::MasterKeyRequired(_) => "master_key_required",
            VaultError::MasterKeyWrong(_) => "master_key_wrong",
            VaultError::MasterKeyInStore(_) => "master_key_in_store",
            VaultError::RunInProgress => "run_in_progress",
            VaultError::RunMismatch(_) => "run_mismatch",
            VaultError::Joined { code, .. } => code,
        }
    }
}
