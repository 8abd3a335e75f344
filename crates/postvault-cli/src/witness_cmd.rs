//! `postvault witness`: run a C2SP tlog-witness (its own key, the logs it
//! follows, their state in one SQLite file), and the vault side: the
//! `--log-witness` flags every command takes, `log recover`, and the
//! background cosigning round of `serve`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use postvault::{ConfiguredWitness, Vault, WitnessPolicy};
use postvault_witness::Cosigner;

use crate::{Cli, print_json};

/// The witness database file in the witness directory.
pub const WITNESS_FILE: &str = "witness.db";

#[derive(Args, Debug)]
pub struct WitnessArgs {
    /// The witness's directory (its key and state, `witness.db`, mode 0600).
    #[arg(
        long,
        env = "POSTVAULT_WITNESS_DIR",
        default_value = "./postvault-witness"
    )]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub cmd: WitnessCmd,
}

#[derive(Subcommand, Debug)]
pub enum WitnessCmd {
    /// Make a witness: a new Ed25519 cosigner key named NAME; prints its
    /// verifier key (tlog-cosignature/v1, type 0x04) for the logs' clients.
    Init {
        /// The cosigner name, a schema-less URL (e.g. witness.example.org/w1).
        #[arg(long)]
        name: String,
    },
    /// Print the witness's verifier key.
    Key,
    /// Follow a log: `ORIGIN=VKEY`, or `VKEY` alone when the key's name is
    /// the origin (a second key for an origin is trusted too).
    AddLog { log: String },
    /// The logs followed, with the size and root last cosigned (JSON).
    Logs,
    /// Serve `POST /add-checkpoint` (C2SP tlog-witness).
    Serve {
        /// Address to listen on (port 0: any free port; printed as JSON).
        #[arg(long, default_value = "127.0.0.1:7380")]
        listen: std::net::SocketAddr,
        /// Also follow these logs (`ORIGIN=VKEY` or `VKEY`), recorded as
        /// with `add-log`.
        #[arg(long = "log")]
        logs: Vec<String>,
    },
}

/// `ORIGIN=VKEY` or `VKEY` (origin = the key's name).
fn parse_log(s: &str) -> Result<(String, String)> {
    if let Ok(name) = postvault_log::log_key_name(s) {
        return Ok((name, s.to_string()));
    }
    let Some((origin, vkey)) = s.split_once('=') else {
        bail!("`{s}` is neither a log verifier key nor ORIGIN=VKEY");
    };
    postvault_log::log_key_name(vkey).with_context(|| format!("the verifier key of `{origin}`"))?;
    Ok((origin.to_string(), vkey.to_string()))
}

pub fn run(a: &WitnessArgs) -> Result<u8> {
    let path = a.dir.join(WITNESS_FILE);
    match &a.cmd {
        WitnessCmd::Init { name } => {
            std::fs::create_dir_all(&a.dir)
                .with_context(|| format!("creating `{}`", a.dir.display()))?;
            let w = Cosigner::create(&path, name)?;
            errln!(
                "postvault: made witness `{}` in `{}`; give its verifier key to the logs' clients",
                w.name(),
                a.dir.display()
            );
            print_json(&serde_json::json!({"name": w.name(), "vkey": w.verifier_key()}))?;
        }
        WitnessCmd::Key => outln!("{}", Cosigner::open(&path)?.verifier_key()),
        WitnessCmd::AddLog { log } => {
            let w = Cosigner::open(&path)?;
            let (origin, vkey) = parse_log(log)?;
            w.add_log(&origin, &vkey)?;
            print_json(&serde_json::json!({"origin": origin, "vkey": vkey}))?;
        }
        WitnessCmd::Logs => {
            use base64::Engine as _;
            let w = Cosigner::open(&path)?;
            let logs: Vec<_> = w
                .logs()?
                .into_iter()
                .map(|l| {
                    serde_json::json!({
                        "origin": l.origin,
                        "vkeys": l.vkeys,
                        "size": l.size,
                        "root": l.root.map(|r| base64::engine::general_purpose::STANDARD.encode(r)),
                        "cosigned_at": l.cosigned_at,
                    })
                })
                .collect();
            print_json(&logs)?;
        }
        WitnessCmd::Serve { listen, logs } => {
            let w = Cosigner::open(&path)?;
            for l in logs {
                let (origin, vkey) = parse_log(l)?;
                w.add_log(&origin, &vkey)?;
            }
            if w.logs()?.is_empty() {
                bail!(
                    "the witness follows no log: give --log ORIGIN=VKEY or run `postvault witness add-log`"
                );
            }
            serve(Arc::new(w), *listen)?;
        }
    }
    Ok(0)
}

fn serve(w: Arc<Cosigner>, listen: std::net::SocketAddr) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr()?;
        outln!(
            "{}",
            serde_json::json!({"listening": addr.to_string(), "vkey": w.verifier_key()})
        );
        errln!(
            "postvault: witness `{}` on http://{addr}/add-checkpoint",
            w.name()
        );
        postvault_server::serve_witness(listener, w, postvault_server::shutdown_signal())
            .await
            .context("serving")?;
        Ok::<_, anyhow::Error>(())
    })
}

/// `postvault log witnesses`.
#[derive(Subcommand, Debug)]
pub enum WitnessesCmd {
    /// The recorded witness policy beside the one this command runs with
    /// (JSON); exit 5 if the vault would refuse to sign with it.
    Show,
    /// Record a new witness policy (one leaf): the vault signs from then on
    /// only when configured with exactly these witnesses and quorum.
    Set {
        /// A witness's tlog-cosignature/v1 verifier key; repeat.
        #[arg(long = "witness", value_name = "VKEY")]
        witness: Vec<String>,
        /// Cosignatures a checkpoint needs (default: every witness).
        #[arg(long)]
        quorum: Option<usize>,
        /// Record that the vault has no witnesses (instead of --witness).
        #[arg(long, conflicts_with_all = ["witness", "quorum"])]
        none: bool,
    },
}

/// `postvault log witnesses show|set`.
pub fn witnesses(v: &Vault, cmd: &WitnessesCmd) -> Result<u8> {
    match cmd {
        WitnessesCmd::Show => {
            let s = v.witness_policy_status()?;
            if !s.may_sign {
                errln!(
                    "postvault: the configured witnesses are not the recorded ones: the vault refuses to sign"
                );
            }
            print_json(&s)?;
            Ok(if s.may_sign {
                0
            } else {
                crate::EXIT_VERIFY_FAILED
            })
        }
        WitnessesCmd::Set {
            witness,
            quorum,
            none,
        } => {
            if witness.is_empty() && !none {
                bail!("give --witness VKEY (repeat), or --none for a vault without witnesses");
            }
            let p = v.set_witness_policy(witness, quorum.unwrap_or(witness.len()))?;
            errln!(
                "postvault: recorded witness policy version {}: {} witness(es), quorum {}; the vault signs only with exactly these",
                p.version,
                p.witnesses.len(),
                p.quorum
            );
            print_json(&p)?;
            Ok(0)
        }
    }
}

/// The vault's witnesses, from the global flags.
#[derive(Args, Debug, Clone)]
pub struct LogWitnessArgs {
    /// A witness that cosigns the vault's checkpoints: `URL=VKEY`, its
    /// submission URL (http:// or https://) and its tlog-cosignature/v1
    /// verifier key; repeat, or list them comma-separated in the variable.
    #[arg(
        long = "log-witness",
        global = true,
        env = "POSTVAULT_LOG_WITNESSES",
        value_delimiter = ',',
        value_name = "URL=VKEY"
    )]
    pub log_witness: Vec<String>,
    /// Cosignatures a checkpoint needs to be final (default: every witness).
    #[arg(long, global = true, env = "POSTVAULT_LOG_WITNESS_QUORUM")]
    pub log_witness_quorum: Option<usize>,
    /// Seconds before a witness that does not answer is given up on.
    #[arg(
        long,
        global = true,
        env = "POSTVAULT_LOG_WITNESS_TIMEOUT",
        default_value_t = 10
    )]
    pub log_witness_timeout: u64,
}

/// The witness policy the flags give (None: no witness).
pub fn policy(a: &LogWitnessArgs) -> Result<Option<WitnessPolicy>> {
    let entries: Vec<&str> = a
        .log_witness
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    if entries.is_empty() {
        if a.log_witness_quorum.is_some_and(|q| q > 0) {
            bail!("--log-witness-quorum needs --log-witness");
        }
        return Ok(None);
    }
    let timeout = Duration::from_secs(a.log_witness_timeout.max(1));
    let mut witnesses = Vec::new();
    for e in entries {
        let Some((url, vkey)) = e.split_once('=') else {
            bail!("`--log-witness {e}`: give URL=VKEY");
        };
        let verifier = postvault_log::CosignatureVerifier::new(vkey)
            .with_context(|| format!("the witness key of `{url}`"))?;
        let client = postvault_server::http_witness(url, timeout)
            .map_err(|e| anyhow::anyhow!("the witness URL {e}"))?;
        witnesses.push(ConfiguredWitness { verifier, client });
    }
    let quorum = a.log_witness_quorum.unwrap_or(witnesses.len());
    Ok(Some(WitnessPolicy { witnesses, quorum }))
}

/// Applies the flags' witnesses to `v`.
pub fn configure(v: Vault, a: &LogWitnessArgs) -> Result<Vault> {
    Ok(match policy(a)? {
        Some(p) => v.with_witnesses(p)?,
        None => v,
    })
}

/// The `--demo` vault is made before the flags' witnesses could apply to
/// it; apply them now (a vault from `open_vault` has them already).
pub fn configure_demo(v: Vault, cli: &Cli, demo: bool) -> Result<Vault> {
    if demo {
        configure(v, &cli.witnesses)
    } else {
        Ok(v)
    }
}

/// `postvault log recover`: compares the data store with the key store's
/// last signed checkpoint; re-signs nothing. Exit 5 when data is missing.
pub fn recover(cli: &Cli) -> Result<u8> {
    let (store, keys) = crate::raw_stores(cli)?;
    let report = postvault::check_log_state(&*store, &*keys)?;
    // Put back the last signed checkpoint if that is all that is missing:
    // the exact note, from the key store.
    let mut restored = None;
    if report.ok
        && report.latest_checkpoint_missing
        && let Some(s) = keys.log_state()?
    {
        store.put_checkpoint(s.size, &s.note)?;
        restored = Some(s.size);
    }
    errln!("postvault: {}", report.message);
    if let Some(size) = restored {
        errln!(
            "postvault: put the signed checkpoint of size {size} back into the data store (from the key store; nothing was signed)"
        );
    }
    let mut out = serde_json::to_value(&report)?;
    out["restored_checkpoint"] = serde_json::json!(restored);
    print_json(&out)?;
    Ok(if report.ok {
        0
    } else {
        crate::EXIT_VERIFY_FAILED
    })
}

/// Serve's cosigning round: signs a checkpoint if the log grew and
/// gathers cosignatures, off every request's path; a checkpoint below the
/// quorum stays pending and is tried again next round.
pub fn spawn_rounds(vault: Arc<Vault>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let v = vault.clone();
            match tokio::task::spawn_blocking(move || v.cosign()).await {
                Ok(Ok(r)) if !r.checkpoint.is_final => {
                    let failed: Vec<String> = r
                        .witnesses
                        .iter()
                        .filter_map(|w| w.error.as_ref().map(|e| format!("{}: {e}", w.witness)))
                        .collect();
                    errln!(
                        "postvault: checkpoint {} is pending: {} of {} cosignatures ({}); serving checkpoint {} as final",
                        r.checkpoint.size,
                        r.checkpoint.cosigners.len(),
                        r.checkpoint.quorum,
                        failed.join("; "),
                        r.final_checkpoint
                            .as_ref()
                            .map_or("none".to_string(), |c| c.size.to_string())
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => errln!("postvault: checkpoint round failed: {e}"),
                Err(_) => errln!("postvault: checkpoint round stopped"),
            }
        }
    });
}
