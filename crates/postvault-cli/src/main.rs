//! `postvault`: the command-line tool. JSON on stdout, messages on stderr.
//!
//! Exit codes: 0 done; 1 error; 2 bad usage; 3 denied (a read the purpose may
//! see nothing of, a refused disclosure request or step); 4 some input lines
//! were rejected; 5 log verification failed (or the data store is behind
//! or beside the last signed checkpoint); 6 keys are missing (records
//! whose keys the key store lacks, or no key store). A closed stdout
//! (`| head`) ends a command normally.

#![deny(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
mod output;

mod bench;
mod demo;
mod demo_stats;
mod demo_witness;
mod disclose;
mod examples;
mod log_cmd;
mod ops;
mod policy;
mod principal;
mod rights;
mod serve;
mod stats;
mod witness_cmd;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
/// Many small allocations freed on other threads than made them (batches
/// cross from workers to the writer): mimalloc keeps those off a global lock.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use postvault::{CollectOptions, OpenOptions, Pack, PackSources, Vault, VaultError};

pub const EXIT_ERROR: u8 = 1;
pub const EXIT_DENIED: u8 = 3;
pub const EXIT_REJECTED: u8 = 4;
pub const EXIT_VERIFY_FAILED: u8 = 5;
pub const EXIT_KEYS_MISSING: u8 = 6;

/// A purpose-bound personal data vault for postal data: every record carries
/// the purpose it was collected for, every read declares a purpose and gets
/// only what that purpose may see, and every decision is recorded first.
#[derive(Parser, Debug)]
#[command(name = "postvault", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 done, 1 error, 2 bad usage, 3 denied, 4 lines rejected, 5 log verification failed or the log was rolled back, 6 keys missing."
)]
struct Cli {
    /// The vault directory.
    #[arg(
        long,
        global = true,
        env = "POSTVAULT_DATA",
        default_value = "./postvault-data"
    )]
    data: PathBuf,
    /// The data store: unset for the embedded SQLite store in `--data`, or a
    /// PostgreSQL URL (`postgres://user@host:5432/db`) that several nodes
    /// share; `--data` is then not used (docs/postgres.md).
    #[arg(long, global = true, env = "POSTVAULT_STORE", hide_env_values = true)]
    store: Option<String>,
    /// With a PostgreSQL `--store`: the key store's URL (default: the same
    /// database, schema `postvault_keys`). Put it on another database or
    /// cluster so that a backup of the data holds no key.
    #[arg(long, global = true, env = "POSTVAULT_KEYS", hide_env_values = true)]
    keys: Option<String>,
    /// A policy pack directory (taxonomy.toml, schema.cedarschema,
    /// policies.cedar, disclosure.toml). `init`: default the postal pack
    /// built in. Other commands: default the pack the vault records; a pack
    /// given must be that one (change it with `policy stage`).
    #[arg(long, global = true, env = "POSTVAULT_PACK")]
    pack: Option<PathBuf>,
    /// For a vault whose master key is kept outside its key store: a file
    /// holding it (32 bytes: raw, 64 hex digits or base64; not readable by
    /// others). `init` with it makes such a vault.
    #[arg(
        long,
        global = true,
        env = "POSTVAULT_MASTER_KEY_FILE",
        value_name = "PATH"
    )]
    master_key_file: Option<PathBuf>,
    /// Like --master-key-file, from what a command prints (a KMS client),
    /// run with `sh -c`.
    #[arg(
        long,
        global = true,
        env = "POSTVAULT_MASTER_KEY_COMMAND",
        value_name = "CMD",
        hide_env_values = true,
        conflicts_with = "master_key_file"
    )]
    master_key_command: Option<String>,
    #[command(flatten)]
    witnesses: witness_cmd::LogWitnessArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new vault: data store, key store (mode 0600) and master key,
    /// built beside the target and moved into place whole.
    Init(InitArgs),
    /// Check the vault (fsck): records without keys, keys without records,
    /// the log's tree against its leaves and checkpoints, pending work.
    /// Exit 6 when records lack keys, 5 when the log does not match.
    Check,
    /// Copy the data store, then the key store, online and consistent with
    /// each other, to two places (SQLite; on PostgreSQL use pg_dump).
    Backup(ops::BackupArgs),
    /// Restore a backup into a new directory, then check it.
    Restore(ops::RestoreArgs),
    /// The master key: move it out of the key store, or rotate it.
    #[command(subcommand)]
    Keys(ops::KeysCmd),
    /// Manage principals (services, staff, officers, agencies, auditors).
    #[command(subcommand)]
    Principal(PrincipalCmd),
    /// Collect NDJSON records, one per line:
    /// {"subject", "category", "purpose", "fields", "legal_basis"?}. Consent
    /// is never collected: `postvault consent grant` records it.
    Collect(CollectArgs),
    /// Read one subject for a declared purpose.
    Read(ReadArgs),
    /// Check or enumerate the policy pack.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Write deterministic NDJSON of a synthetic slice of a postal day
    /// (scale 1.0 = one U.S. postal day).
    Simulate(SimulateArgs),
    /// Run a tour on a temporary vault: collect a simulated slice, then read
    /// for delivery, customer care, marketing and immigration enforcement.
    Demo(DemoArgs),
    /// The transparency log: checkpoints, entries, proofs, verification.
    #[command(subcommand)]
    Log(LogCmd),
    /// What concerns one person.
    #[command(subcommand)]
    Subject(SubjectCmd),
    /// The disclosure gateway: legal instruments from outside agencies,
    /// approval by a second person, packages, accounting, notices.
    #[command(subcommand)]
    Disclose(disclose::DiscloseCmd),
    /// Reports computed from the record: `transparency`.
    #[command(subcommand)]
    Report(disclose::ReportCmd),
    /// Measure throughput, latency and memory against raw baselines in the
    /// same run: the whole suite, or one path. Runs `postvault-bench`
    /// (built beside this binary by `cargo build --release -p postvault-bench`).
    Bench(BenchArgs),
    /// Retention: destroy the keys of ended retention periods, delete what expired.
    #[command(subcommand)]
    Retention(rights::RetentionCmd),
    /// Erase people (a privacy officer granting their request): their keys are
    /// destroyed, so no copy of their data or log tags can be read or linked.
    /// Exit 3 when a legal hold refuses someone.
    Erase(rights::EraseArgs),
    /// Legal holds from approved instruments: place, release, list.
    #[command(subcommand)]
    Hold(rights::HoldCmd),
    /// The person's consent to a purpose: grant or withdraw.
    #[command(subcommand)]
    Consent(rights::ConsentCmd),
    /// Run the vault as an HTTP service (docs/http.md); `--demo` serves a
    /// seeded temporary vault and prints tokens and curl lines.
    Serve(serve::ServeArgs),
    /// Correct a record at the person's request: the old one is kept as
    /// history; prints who received the category before, to be told.
    Correct(rights::CorrectArgs),
    /// Run a C2SP tlog-witness that cosigns the checkpoints of the logs it
    /// follows (this vault's or any other): init, key, add-log, logs, serve.
    Witness(witness_cmd::WitnessArgs),
    /// Aggregate statistics with differential privacy (docs/statistics.md).
    #[command(subcommand)]
    Stats(stats::StatsCmd),
}

#[derive(Subcommand, Debug)]
enum LogCmd {
    /// Print the latest signed checkpoint (a C2SP signed note, byte-exact),
    /// signing one for the current size first if the log has grown. With
    /// witnesses (--log-witness), gather their cosignatures and print the
    /// latest final checkpoint with its cosignature lines (exit 1 if none is).
    Checkpoint,
    /// Compare the data store with the key store's last signed checkpoint
    /// and report what is missing (leaves, checkpoints); re-signs nothing.
    /// Puts back the last signed checkpoint if the data store lacks only
    /// that (a stop between signing and storing). Exit 5 if data is missing.
    Recover,
    /// The witness policy recorded in the key store (`show`), or change it
    /// (`set`, one leaf); the vault signs only with the recorded witnesses.
    #[command(subcommand)]
    Witnesses(witness_cmd::WitnessesCmd),
    /// Print the log's verifier key: `<name>+<8 hex key id>+<base64>`.
    Key,
    /// Print entries as NDJSON: {"index", "leaf" (base64 of the hashed bytes), "event"}.
    Entries {
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// One past the last index (default: the log size).
        #[arg(long)]
        end: Option<u64>,
    },
    /// Print an RFC 6962 inclusion proof (--index [--size]) or consistency
    /// proof (--old --new).
    Prove {
        #[arg(long, conflicts_with_all = ["old", "new"])]
        index: Option<u64>,
        /// Tree size (default: the latest signed checkpoint's).
        #[arg(long, requires = "index")]
        size: Option<u64>,
        #[arg(long, requires = "new")]
        old: Option<u64>,
        #[arg(long, requires = "old")]
        new: Option<u64>,
    },
    /// Recompute the tree from the stored leaves and check it against the
    /// stored hashes, the signed checkpoints, and an earlier checkpoint.
    Verify {
        /// A signed checkpoint to verify (default: the latest the vault signed).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// An earlier signed checkpoint the log must be consistent with.
        #[arg(long)]
        since: Option<PathBuf>,
        /// A witness verifier key (tlog-cosignature/v1); repeat. The
        /// checkpoint verified must carry a quorum of their cosignatures
        /// (without --checkpoint: the latest kept one that does).
        #[arg(long = "witness", value_name = "VKEY")]
        witness: Vec<String>,
        /// Cosignatures required (default: every --witness).
        #[arg(long, requires = "witness")]
        quorum: Option<usize>,
    },
    /// Write a C2SP tlog-tiles resource to stdout (raw bytes):
    /// `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`.
    Tile { path: String },
    /// Find every leaf about a person with their tag key, each with an
    /// inclusion proof against the latest signed checkpoint.
    Find {
        /// The person's tag key (base64), from `postvault subject tag-key`.
        #[arg(long)]
        tag_key: String,
        /// Read every leaf of the log instead of the vault's leaf index:
        /// linear in the log's length, and independent of the index (an
        /// audit of it: the answer must be the same).
        #[arg(long)]
        scan: bool,
    },
    /// File a person's log leaves in the leaf index again, found by reading
    /// the whole log with their tag key: the repair once their report or
    /// `check` found a filing removed or moved (a report refuses such a
    /// gap). Only rows that differ from the right filing are written or
    /// removed. Prints {"leaves", "months", "written", "removed",
    /// "untimed", "leaf"}; one leaf, `leaf_refile`, tagged for the person,
    /// appended first.
    Refile {
        /// The person's identifier.
        #[arg(long)]
        subject: String,
    },
    /// A person's own check, without the vault: read the whole public log
    /// of a postvault service (its C2SP entry bundles under `/log/`),
    /// rebuild its tree and check it against the service's checkpoint
    /// (signed by --log-key, cosigned by a quorum of --witness), and list
    /// every entry made with the person's tag key (the person's page gives
    /// it). Every entry about them in the log everybody sees, none left
    /// out. Exit 5 if the copy read does not make the checkpoint's tree or
    /// a signature fails.
    Scan {
        /// The service's address, e.g. `https://vault.example` (the log is
        /// read from `<url>/log/checkpoint` and `<url>/log/tile/entries/...`).
        #[arg(long)]
        url: String,
        /// The person's tag key (base64). Other users of the machine can
        /// see a command's arguments: --tag-key-file keeps it off them.
        #[arg(long, required_unless_present = "tag_key_file")]
        tag_key: Option<String>,
        /// A file holding the tag key (`-`: standard input).
        #[arg(long, value_name = "PATH", conflicts_with = "tag_key")]
        tag_key_file: Option<PathBuf>,
        /// The log's verifier key, from somewhere other than the service.
        #[arg(long, value_name = "VKEY")]
        log_key: String,
        /// A witness's verifier key, as the witness publishes it; repeat.
        /// Required unless --no-witnesses.
        #[arg(
            long = "witness",
            value_name = "VKEY",
            required_unless_present = "no_witnesses"
        )]
        witness: Vec<String>,
        /// Cosignatures required, from 1 to the number of --witness
        /// (default: all of them).
        #[arg(long, requires = "witness")]
        quorum: Option<usize>,
        /// For a log without witnesses: the log is then only shown to be
        /// one the service signed (`"witnessed": false`).
        #[arg(long, conflicts_with = "witness")]
        no_witnesses: bool,
        /// Refuse a checkpoint smaller than this (exit 5): the index of an
        /// entry the person knows is in the log, plus one (the person's
        /// page gives it), so an old checkpoint cannot end the scan early.
        #[arg(long, value_name = "N")]
        min_size: Option<u64>,
        /// Refuse a checkpoint whose newest cosignature is older than this
        /// many seconds (exit 5). Needs --witness.
        #[arg(long, value_name = "SECONDS", requires = "witness")]
        max_age: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
enum SubjectCmd {
    /// Print the person's tag key (base64): with it they can find and prove
    /// every log leaf about them. Hand it over only through an authorized channel.
    TagKey {
        #[arg(long)]
        subject: String,
    },
    /// The subject access report: all data held, consents, holds,
    /// disclosures, and every log leaf about the person with its inclusion
    /// proof against the current signed checkpoint (`--format html` for the
    /// person). Exit 5 if a proof does not verify.
    Report(rights::ReportArgs),
    /// Issue a one-time access code for the person's page (`/me/` of
    /// `postvault serve`), to be mailed to them: it opens a session bound
    /// to that one person, works once, and expires in 30 days. Privacy
    /// office only; one log leaf, tagged for the person. Only a hash of the
    /// code is kept.
    AccessCode {
        /// The privacy officer issuing it.
        #[arg(long = "as", value_name = "NAME")]
        principal: String,
        #[arg(long)]
        subject: String,
    },
}

#[derive(Subcommand, Debug)]
enum PrincipalCmd {
    /// Register a principal; prints its bearer token once (only a hash is kept).
    Add {
        name: String,
        /// A role id of the pack, e.g. `delivery`, `collector`, `privacy_officer`, `agency`.
        #[arg(long)]
        role: String,
    },
    /// List principals in force (names and roles, never tokens).
    List,
    /// Revoke a principal: its token is refused from now on, by every
    /// running node within a second. One log leaf.
    Revoke { name: String },
    /// Give a principal a new token (printed once) and refuse the old one,
    /// by every running node within a second. One log leaf.
    Rotate { name: String },
}

#[derive(Args, Debug)]
struct InitArgs {
    /// Replace a half-made vault an interrupted `init` left in the target
    /// (never one that holds data or keys of anyone).
    #[arg(long, alias = "force")]
    replace: bool,
}

#[derive(Args, Debug)]
struct CollectArgs {
    /// The principal collecting.
    #[arg(long = "as", value_name = "NAME")]
    principal: String,
    /// The purpose of lines that name none.
    #[arg(long)]
    purpose: Option<String>,
    /// Lines per transaction.
    #[arg(long, default_value_t = 2048)]
    batch_size: usize,
    /// The run's batch id: collected again under the same id, the input
    /// resumes after its last committed line (and a finished run is not
    /// collected again). Default for a file: its SHA-256; standard input
    /// has none unless given.
    #[arg(long, value_name = "ID")]
    batch_id: Option<String>,
    /// Collect the file as a new run even if it was collected before.
    #[arg(long, conflicts_with = "batch_id")]
    no_resume: bool,
    /// NDJSON input; `-` or nothing for standard input.
    file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ReadArgs {
    /// The principal reading.
    #[arg(long = "as", value_name = "NAME")]
    principal: String,
    /// The declared purpose of the read.
    #[arg(long)]
    purpose: String,
    /// The subject's identifier.
    #[arg(long)]
    subject: String,
}

#[derive(Subcommand, Debug)]
enum PolicyCmd {
    /// Load and validate a pack (default: the one in use); print a summary.
    Check {
        /// A pack directory.
        dir: Option<PathBuf>,
    },
    /// Print the whole decision table, one decision per line.
    Table {
        #[arg(long, value_enum, default_value_t = TableFormat::Json)]
        format: TableFormat,
    },
    /// Stage a pack for this vault (default: the one built into this
    /// binary). One log leaf records both versions. A change that widens any
    /// access takes effect after the pack's notice period (R4: 30 days in
    /// the postal pack); a narrowing at once.
    Stage {
        /// A pack directory.
        dir: Option<PathBuf>,
    },
    /// What changes, per role x action x purpose x category cell and per
    /// rule, from the vault's pack (or `--from`) to DIR (default: the staged
    /// pack, else the one built into this binary).
    Diff {
        /// A pack directory.
        dir: Option<PathBuf>,
        /// Compare from this pack directory instead of the vault's pack (no
        /// vault needed).
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = policy::DiffFormat::Json)]
        format: policy::DiffFormat,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TableFormat {
    /// NDJSON, one decision per line.
    Json,
    /// Tab-separated: role action purpose category consent effect policies.
    Tsv,
}

#[derive(Args, Debug)]
struct SimulateArgs {
    /// Fraction of a U.S. postal day (1.0: 318M mailpieces, about 2.2
    /// billion records).
    #[arg(long, default_value_t = 0.0001)]
    scale: f64,
    /// Seed of every random choice: the same seed and scale give the same
    /// bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory: writes `records.ndjson` and `plan.json` (the counts
    /// per category) there, creating it if needed (an existing directory, or
    /// a new path without an extension). Any other path is written as one
    /// NDJSON file. Default: the records on standard output.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Also generate envelope image bytes, lognormal sizes with this median
    /// in bytes (default 60000 when the flag is given without a value).
    #[arg(long, value_name = "MEDIAN_BYTES", num_args = 0..=1, default_missing_value = "60000")]
    images: Option<usize>,
    /// Also generate items recorded under mail-cover orders. A vault accepts
    /// them only from the inspection service (role `mail_cover`; a
    /// collector's are denied), and only while an approved order for that
    /// person is in force.
    #[arg(long)]
    mail_covers: bool,
    /// Also generate marketing opt-ins (identity collected for
    /// `marketing`). A vault accepts them only for people whose consent the
    /// rights channel recorded (`postvault consent grant`); with `--out DIR`
    /// `plan.json` lists those people under `marketing_opt_ins`.
    #[arg(long)]
    marketing: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Fraction of a U.S. postal day to collect.
    #[arg(long, default_value_t = 0.00005)]
    pub scale: f64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Keep the demo vault in this directory instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

/// Everything after `bench` goes to the `postvault-bench` binary found
/// beside this one (built with `cargo build --release -p postvault-bench`).
#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
struct BenchArgs {
    /// The arguments of `postvault-bench` (see `postvault bench --help`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    args: Vec<std::ffi::OsString>,
}

fn simulate(a: &SimulateArgs) -> Result<u8> {
    if !(a.scale.is_finite() && a.scale >= 0.0) {
        bail!("--scale must be a number >= 0");
    }
    let cfg = postvault_sim::SimConfig {
        scale: a.scale,
        seed: a.seed,
        mail_covers: a.mail_covers,
        marketing: a.marketing,
        ..postvault_sim::SimConfig::default()
    };
    let plan = postvault_sim::Plan::new(&cfg);
    let sim = postvault_sim::Simulator::new(&cfg).with_images(a.images.unwrap_or(0));
    let bar = progress_bar(Some(plan.total_records()), "simulating");
    let mut progress = |n: u64| bar.set_position(n);
    // A directory: one that exists, or a new path without an extension
    // (or ending in `/`). Anything else is a file (`day.ndjson`,
    // `/dev/stdout`).
    let one_file = a.out.as_ref().is_some_and(|p| {
        !(p.is_dir()
            || (!p.exists() && (p.extension().is_none() || p.to_string_lossy().ends_with('/'))))
    });
    let n = match &a.out {
        Some(path) if one_file => {
            let f = std::fs::File::create(path)
                .with_context(|| format!("creating `{}`", path.display()))?;
            postvault_sim::write_lines(sim, f, &mut progress)
                .with_context(|| format!("writing `{}`", path.display()))?
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating `{}`", dir.display()))?;
            let path = dir.join("records.ndjson");
            let f = std::fs::File::create(&path)
                .with_context(|| format!("creating `{}`", path.display()))?;
            let n = postvault_sim::write_lines(sim, f, &mut progress)
                .with_context(|| format!("writing `{}`", path.display()))?;
            let counts: serde_json::Map<String, serde_json::Value> = plan
                .counts()
                .into_iter()
                .map(|(c, n)| (c.to_string(), n.into()))
                .collect();
            let meta = serde_json::json!({
                "config": cfg,
                "images_median_bytes": a.images,
                "records": n,
                "subjects": plan.subjects(),
                "pieces": plan.pieces(),
                "packages": plan.packages(),
                "categories": counts,
                "plan": plan,
                "marketing_opt_ins": postvault_sim::Simulator::opt_ins(&cfg),
            });
            let plan_path = dir.join("plan.json");
            std::fs::write(&plan_path, serde_json::to_string_pretty(&meta)? + "\n")
                .with_context(|| format!("writing `{}`", plan_path.display()))?;
            n
        }
        None => postvault_sim::write_lines(sim, std::io::stdout().lock(), &mut progress)?,
    };
    bar.finish_and_clear();
    errln!("postvault: wrote {n} records");
    Ok(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        // The reader of stdout went away (`| head`): it wants no more.
        Err(e) if output::broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let verify_failed = matches!(
                e.downcast_ref::<VaultError>(),
                Some(
                    VaultError::LogVerification(_)
                        | VaultError::LogRollback(_)
                        | VaultError::Refused {
                            code: postvault::WITNESSES_NOT_CONFIGURED,
                            ..
                        }
                )
            );
            let keys_missing = e
                .downcast_ref::<VaultError>()
                .is_some_and(VaultError::keys_missing);
            let code = match e.downcast_ref::<VaultError>() {
                Some(v) => v.code(),
                // A pack checked without a vault (`policy check`, `diff --from`).
                None if e.downcast_ref::<postvault_policy::PackError>().is_some() => "bad_pack",
                None => "error",
            };
            let msg = format!("{e:#}");
            errln!("postvault: error: {msg}");
            let body = serde_json::json!({"error": {"code": code, "message": msg}});
            let _ = output::stdout(format_args!("{body}\n"));
            ExitCode::from(if verify_failed {
                EXIT_VERIFY_FAILED
            } else if keys_missing {
                EXIT_KEYS_MISSING
            } else {
                EXIT_ERROR
            })
        }
    }
}

fn pack_sources(dir: Option<&Path>) -> Result<Option<PackSources>> {
    let Some(dir) = dir else { return Ok(None) };
    let read = |name: &str| {
        let p = dir.join(name);
        match std::fs::read_to_string(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "the pack in `{}` has no `{name}`: a pack is taxonomy.toml, schema.cedarschema, policies.cedar and disclosure.toml",
                dir.display()
            ),
            r => r.with_context(|| format!("reading `{}`", p.display())),
        }
    };
    // Every file of a pack is required. A pack directory without
    // `disclosure.toml` is a mistake to report, not a gateway that refuses
    // everything in silence; a pack that wants no disclosure at all says so
    // with a `disclosure.toml` that lists no `[kind.*]`.
    let disclosure = Some(read(postvault_policy::DISCLOSURE_FILE)?);
    Ok(Some(PackSources {
        taxonomy: read(postvault_policy::TAXONOMY_FILE)?,
        schema: read(postvault_policy::SCHEMA_FILE)?,
        policies: read(postvault_policy::POLICIES_FILE)?,
        disclosure,
    }))
}

pub(crate) fn open_opts(cli: &Cli) -> Result<OpenOptions> {
    Ok(OpenOptions {
        pack: pack_sources(cli.pack.as_deref())?,
        master_key: ops::master_key(cli)?,
        ..OpenOptions::default()
    })
}

/// Where the vault's stores are: the embedded files in `--data`, or
/// PostgreSQL.
pub(crate) enum Location<'a> {
    Dir,
    Postgres { store: &'a str, keys: &'a str },
}

pub(crate) fn location(cli: &Cli) -> Result<Location<'_>> {
    match (cli.store.as_deref(), cli.keys.as_deref()) {
        (None | Some(""), None | Some("")) => Ok(Location::Dir),
        (None | Some(""), Some(_)) => {
            bail!("`--keys` (POSTVAULT_KEYS) needs a PostgreSQL `--store` (POSTVAULT_STORE)")
        }
        (Some(s), keys) if postvault_store_pg::is_postgres_url(s) => {
            let keys = keys.filter(|k| !k.is_empty()).unwrap_or(s);
            if !postvault_store_pg::is_postgres_url(keys) {
                bail!("`--keys` must be a postgres:// URL");
            }
            Ok(Location::Postgres { store: s, keys })
        }
        (Some(_), _) => bail!(
            "`--store` must be a postgres:// URL (or unset for the embedded store in `--data`)"
        ),
    }
}

/// Opens the PostgreSQL stores; `create` for `init`.
fn pg_stores(
    store: &str,
    keys: &str,
    create: bool,
) -> Result<(
    PathBuf,
    postvault_store_pg::PgStore,
    postvault_store_pg::PgKeyStore,
)> {
    let opts = postvault_store_pg::PgOptions {
        create,
        ..postvault_store_pg::PgOptions::default()
    };
    let shown = postvault_store_pg::redact(store);
    // Keys first, as for the embedded store.
    let k = postvault_store_pg::PgKeyStore::open(keys, &opts).with_context(|| {
        format!(
            "opening the key store at `{}`",
            postvault_store_pg::redact(keys)
        )
    })?;
    let s = postvault_store_pg::PgStore::open(store, &opts)
        .with_context(|| format!("opening the data store at `{shown}`"))?;
    Ok((PathBuf::from(shown), s, k))
}

/// Opens the vault the global flags name, with their witnesses.
pub(crate) fn open_vault(cli: &Cli) -> Result<Vault> {
    let opts = open_opts(cli)?;
    let v = match location(cli)? {
        Location::Dir => Vault::open(&cli.data, opts)?,
        Location::Postgres { store, keys } => {
            let (at, s, k) = pg_stores(store, keys, false)?;
            Vault::open_with(&at, Box::new(s), Box::new(k), opts)?
        }
    };
    if cli.pack.is_none() {
        policy::built_in_notice(&v);
    }
    witness_cmd::configure(v, &cli.witnesses)
}

/// The stores the global flags name, without opening a vault over them
/// (for `log recover`, which must look at stores the vault refuses).
pub(crate) fn raw_stores(
    cli: &Cli,
) -> Result<(
    Box<dyn postvault_store::Store>,
    Box<dyn postvault_store::KeyStore>,
)> {
    Ok(match location(cli)? {
        Location::Dir => {
            use postvault_store::{OpenMode, SqliteKeyStore, SqliteStore};
            let data = cli.data.join(postvault::DATA_FILE);
            let keys = cli.data.join(postvault::KEYS_FILE);
            if !data.exists() {
                return Err(VaultError::NotInitialized(cli.data.display().to_string()).into());
            }
            if !keys.exists() {
                return Err(VaultError::KeysMissing(keys.display().to_string()).into());
            }
            let k = SqliteKeyStore::open(&keys, OpenMode::Existing)?;
            let s = SqliteStore::open(&data, OpenMode::Existing)?;
            (Box::new(s), Box::new(k))
        }
        Location::Postgres { store, keys } => {
            let (_, s, k) = pg_stores(store, keys, false)?;
            (Box::new(s), Box::new(k))
        }
    })
}

/// Creates the vault the global flags name; returns it and where it is.
fn init_vault(cli: &Cli, a: &InitArgs) -> Result<(Vault, String)> {
    let opts = open_opts(cli)?;
    let init = postvault::InitOptions { replace: a.replace };
    Ok(match location(cli)? {
        Location::Dir => (
            Vault::create(&cli.data, opts, &init)?,
            cli.data.display().to_string(),
        ),
        Location::Postgres { store, keys } => {
            let (at, s, k) = pg_stores(store, keys, true)?;
            let v = Vault::create_with(&at, Box::new(s), Box::new(k), opts, &init)?;
            (v, at.display().to_string())
        }
    })
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(postvault::pretty_json(v)?.as_bytes())?;
    writeln!(out)?;
    Ok(())
}

pub fn progress_bar(len: Option<u64>, what: &str) -> ProgressBar {
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let style = ProgressStyle::with_template(
        "{spinner} {msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

fn run(cli: Cli) -> Result<u8> {
    match &cli.command {
        Command::Init(a) => {
            let (v, at) = init_vault(&cli, a)?;
            errln!("postvault: created a vault in `{at}`");
            print_json(&serde_json::json!({
                "data": at,
                "pack": v.pack().version(),
                "master_key_external": v.master_key_is_external(),
            }))?;
            Ok(0)
        }
        Command::Check => ops::check(&cli),
        Command::Stats(c) => stats::run(&cli, c),
        Command::Backup(a) => ops::backup(&cli, a),
        Command::Restore(a) => ops::restore(&cli, a),
        Command::Keys(c) => ops::keys(&cli, c),
        Command::Principal(PrincipalCmd::Add { name, role }) => {
            let v = open_vault(&cli)?;
            let token = v.add_principal(name, role)?;
            errln!("postvault: the token is shown once; store it now");
            print_json(&serde_json::json!({"name": name, "role": role, "token": token}))?;
            Ok(0)
        }
        Command::Principal(PrincipalCmd::List) => {
            let v = open_vault(&cli)?;
            let list: Vec<_> = v
                .principals()?
                .into_iter()
                .map(|p| serde_json::json!({"name": p.name, "role": p.role}))
                .collect();
            print_json(&list)?;
            Ok(0)
        }
        Command::Principal(PrincipalCmd::Revoke { name }) => principal::revoke(&cli, name),
        Command::Principal(PrincipalCmd::Rotate { name }) => principal::rotate(&cli, name),
        Command::Collect(a) => collect(&cli, a),
        Command::Read(a) => {
            let v = open_vault(&cli)?;
            let p = v.principal(&a.principal)?;
            let r = v.read(&p, &a.subject, &a.purpose)?;
            print_json(&r)?;
            if r.denied() {
                errln!(
                    "postvault: denied: purpose `{}` may see nothing for role `{}`",
                    a.purpose,
                    p.role
                );
                return Ok(EXIT_DENIED);
            }
            Ok(0)
        }
        Command::Policy(PolicyCmd::Check { dir }) => {
            let src = match dir {
                Some(d) => pack_sources(Some(d))?,
                None => pack_sources(cli.pack.as_deref())?,
            }
            .unwrap_or_else(PackSources::postal);
            let pack = Pack::load(&src).map_err(VaultError::from)?;
            let t = pack.taxonomy();
            let (mut allow, mut deny) = (0u64, 0u64);
            for r in pack.requests() {
                if pack.decide(&r).allowed() {
                    allow += 1;
                } else {
                    deny += 1;
                }
            }
            print_json(&serde_json::json!({
                "pack": t.name,
                "pack_release": t.version,
                "version": pack.version(),
                "categories": t.categories.len(),
                "purposes": t.purposes.len(),
                "roles": t.roles.len(),
                "policies": pack.policy_count(),
                "change_notice_days": t.change_notice_days,
                "decisions": {"allow": allow, "deny": deny},
                "valid": true,
            }))?;
            Ok(0)
        }
        Command::Policy(PolicyCmd::Table { format }) => {
            let src = pack_sources(cli.pack.as_deref())?.unwrap_or_else(PackSources::postal);
            let pack = Pack::load(&src).map_err(VaultError::from)?;
            policy::print_table(&pack, *format)?;
            Ok(0)
        }
        Command::Policy(PolicyCmd::Stage { dir }) => policy::stage(&cli, dir.as_deref()),
        Command::Policy(PolicyCmd::Diff { dir, from, format }) => {
            policy::diff(&cli, dir.as_deref(), from.as_ref(), *format)
        }
        Command::Simulate(a) => simulate(a),
        Command::Demo(a) => demo::run(a, ops::master_key(&cli)?),
        Command::Log(cmd) => log_cmd::run(&cli, cmd),
        Command::Subject(SubjectCmd::Report(a)) => rights::report(&cli, a),
        Command::Retention(c) => rights::retention(&cli, c),
        Command::Erase(a) => rights::erase(&cli, a),
        Command::Hold(c) => rights::hold(&cli, c),
        Command::Consent(c) => rights::consent(&cli, c),
        Command::Correct(a) => rights::correct(&cli, a),
        Command::Serve(a) => serve::serve(&cli, a),
        Command::Witness(a) => witness_cmd::run(a),
        Command::Subject(SubjectCmd::AccessCode { principal, subject }) => {
            let v = open_vault(&cli)?;
            let p = v.principal(principal)?;
            print_json(&v.issue_access_code(&p, subject)?)?;
            Ok(0)
        }
        Command::Subject(SubjectCmd::TagKey { subject }) => {
            let v = open_vault(&cli)?;
            match v.subject_tag_key(subject)? {
                Some(key) => {
                    print_json(&serde_json::json!({"subject": subject, "tag_key": key}))?;
                    Ok(0)
                }
                None => bail!("the vault holds no keys for this subject"),
            }
        }
        Command::Disclose(cmd) => disclose::run(&cli, cmd),
        Command::Report(cmd) => disclose::report(&cli, cmd),
        Command::Bench(b) => bench::forward(&b.args),
    }
}

fn collect(cli: &Cli, a: &CollectArgs) -> Result<u8> {
    let v = crate::open_vault(cli)?;
    let p = v.principal(&a.principal)?;
    let (mut input, len): (Box<dyn BufRead>, Option<u64>) = match a.file.as_deref() {
        None => (Box::new(std::io::stdin().lock()), None),
        Some(f) if f == Path::new("-") => (Box::new(std::io::stdin().lock()), None),
        Some(f) => {
            let file =
                std::fs::File::open(f).with_context(|| format!("opening `{}`", f.display()))?;
            (Box::new(BufReader::with_capacity(1 << 20, file)), None)
        }
    };
    let run = ops::batch_id(a.file.as_deref(), a.batch_id.as_deref(), a.no_resume)?;
    let bar = progress_bar(len, "collecting");
    let opts = CollectOptions {
        default_purpose: a.purpose.clone(),
        batch_size: a.batch_size,
        run,
    };
    let report = v.collect(&p, &mut input, &opts, &mut |n| bar.set_position(n));
    bar.finish_and_clear();
    let report = report?;
    if let Some(run) = &report.run {
        if run.replayed {
            errln!(
                "postvault: this input was collected in full before (batch id {}): nothing was stored again; the report is that run's",
                run.id
            );
        } else if run.resumed_after_line > 0 {
            errln!(
                "postvault: resumed batch id {} after line {}, which an earlier run had committed: those lines were not stored again",
                run.id,
                run.resumed_after_line
            );
        }
    }
    if let Some(f) = &report.failure {
        print_json(&report)?;
        errln!(
            "postvault: error: collection stopped after line {}: {} (lines up to it are handled; resume from the next)",
            report.committed_through_line,
            f.message
        );
        return Ok(EXIT_ERROR);
    }
    // One signed checkpoint per collection run (never per record), and
    // the witnesses' cosignatures of it.
    match v.cosign() {
        Ok(r) if !r.checkpoint.is_final => errln!(
            "postvault: warning: checkpoint {} is pending: {} of {} witness cosignatures",
            r.checkpoint.size,
            r.checkpoint.cosigners.len(),
            r.checkpoint.quorum
        ),
        Ok(_) => {}
        Err(e) => {
            errln!("postvault: warning: records are stored, but no checkpoint was signed: {e}")
        }
    }
    for e in &report.errors {
        errln!("postvault: line {}: {}", e.line, e.message);
    }
    print_json(&report)?;
    if report.rejected > 0 {
        errln!(
            "postvault: {} accepted, {} rejected",
            report.accepted,
            report.rejected
        );
        return Ok(EXIT_REJECTED);
    }
    Ok(0)
}
