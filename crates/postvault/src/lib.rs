//! The postvault facade: the one place where a request passes through
//! validation, policy, crypto, store and accounting, in that order.
//!
//! ```text
//! collect: parse -> minimize (R2) -> decide (Cedar, cached) -> seal (per-subject key)
//!          -> store + one accounting leaf per batch, one transaction
//! read:    decide per category -> [store read + one leaf, one durable transaction]
//!          -> open -> read-time transforms -> answer
//! ```
//!
//! API boundary: other crates (CLI, server) call [`Vault`] only.
//!
//! Architecture invariants kept here (ARCHITECTURE.md names the tests):
//! - no plaintext personal data reaches the store, a leaf, a log line or an error;
//! - no read returns data before its leaf is durable, and a failed append
//!   returns nothing;
//! - unknown subjects and subjects the caller may see nothing of answer alike;
//! - subjects are named by identifier only, matched exactly through keyed hashes;
//! - no purpose, category or role of a pack is named here: the parts the
//!   engine gives a meaning to come from the pack's `[engine]` table
//!   ([`postvault_policy::Taxonomy::engine`]).

mod backup;
mod clock;
mod collect;
mod consent;
mod error;
mod fold;
pub mod gateway;
mod integrity;
mod intents;
pub mod leaf;
mod leaf_index;
mod log;
mod log_state;
mod master;
pub mod minimize;
pub mod office;
mod packs;
pub mod portal;
mod principals;
mod public_scan;
mod read;
pub mod report;
pub mod rights;
mod runs;
mod setup;
pub mod stats;
mod vault;
mod witness;

pub use backup::{BackupReport, RestoreReport};
pub use clock::{Clock, FixedClock, SystemClock, format_ms};
pub use collect::{CollectOptions, CollectReport, Failure, LineError, MAX_LINE};
pub use consent::{CONSENT_NOT_REQUIRED, CONSENT_PROHIBITED_PURPOSE};
pub use error::VaultError;
pub use gateway::{
    Accounting, AccountingEntry, ApproveOptions, EndReason, GatewayReason, Notice, Package,
    PackageSubject, RequestView, StepAnswer, TransparencyReport,
};
pub use integrity::{CheckReport, LogCheck, Missing};
pub use intents::{Recovered, RecoveredIntent};
pub use leaf::Event;
pub use leaf_index::Refiled;
pub use log::{
    CheckpointInfo, ConsistencyProof, FoundLeaf, InclusionProof, LogEntry, VerifyOptions,
    VerifyReport,
};
pub use log_state::{LogStateReport, LogStateStatus, SignedState, check_log_state};
pub use master::RotateReport;
pub use packs::{PackStatus, StageReport, StagedPack, StagedView};
pub use portal::{AccessCode, PersonSession, RightsRequest};
pub use principals::PrincipalChange;
pub use public_scan::{PublicScan, ScannedLeaf, scan_public_log};
pub use read::{Fields, ReadRecord, ReadResponse, Withheld, pretty_json};
pub use report::{
    ConsentView, LogSelect, ReportLeaf, ReportVerification, SubjectReport, report_html,
    verify_report_offline, verify_report_proofs,
};
pub use rights::{
    CorrectionReport, EraseReport, HoldView, PriorRecipient, PurgeReport, RetentionReport,
};
pub use runs::{MAX_BATCH_ID, RunInfo};
pub use setup::InitOptions;
pub use stats::{BlocksBuilt, StatsAnswer, StatsRequest};
pub use vault::{DATA_FILE, KEYS_FILE, OpenOptions, Principal, Vault};
pub use witness::{
    ConfiguredWitness, CosignReport, CosignedCheckpoint, RecordedWitnessPolicy,
    WITNESSES_NOT_CONFIGURED, Witness, WitnessCallError, WitnessOutcome, WitnessPolicy,
    WitnessPolicyStatus,
};

pub use postvault_crypto::ExternalKey;

pub use postvault_policy::{Pack, PackSources};
