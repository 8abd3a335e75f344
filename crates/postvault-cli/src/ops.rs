//! Operating a vault: `check` (fsck), `backup` and `restore`, the master
//! key (`--master-key-file`, `--master-key-command`, `keys externalize`,
//! `keys rotate-master`), and the batch id of a collection.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use postvault::{ExternalKey, Vault};

use crate::{Cli, EXIT_ERROR, EXIT_KEYS_MISSING, EXIT_VERIFY_FAILED, print_json};

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Where the copy of the data store goes (`DIR/data.db`, created).
    #[arg(long, value_name = "DIR")]
    pub data_to: PathBuf,
    /// Where the copy of the key store goes (`DIR/keys.db`): another
    /// place than the data, so that a copy of the data holds no key.
    #[arg(long, value_name = "DIR")]
    pub keys_to: PathBuf,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The directory of the data store's copy (`data.db`).
    #[arg(long, value_name = "DIR")]
    pub data_from: PathBuf,
    /// The directory of the key store's copy (`keys.db`).
    #[arg(long, value_name = "DIR")]
    pub keys_from: PathBuf,
    /// Where to restore (default: `--data`); must be new or empty.
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// Restore over the vault in the target: it is moved aside (its new
    /// place is printed), never deleted, and must not be in use.
    #[arg(long)]
    pub replace: bool,
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Move the master key out of the key store: seal it under an external
    /// key (a file, or a KMS command), wrap every key again under a new
    /// wrapping key, and destroy the plain master key, in one transaction.
    /// Afterwards every command needs --master-key-file or
    /// --master-key-command. Stop every other process using the vault first.
    Externalize(NewKeyArgs),
    /// Seal the master key under a new external key and wrap every key
    /// again, in one transaction (interrupted, the old key still opens the
    /// vault whole). Give the current key as usual (--master-key-file);
    /// stop every other process using the vault first.
    RotateMaster(NewKeyArgs),
}

#[derive(Args, Debug)]
pub struct NewKeyArgs {
    /// The new external key's file (32 bytes: raw, 64 hex digits or base64).
    #[arg(long, value_name = "PATH", required_unless_present = "new_key_command")]
    pub new_key_file: Option<PathBuf>,
    /// A command printing the new external key.
    #[arg(long, value_name = "CMD", conflicts_with = "new_key_file")]
    pub new_key_command: Option<String>,
    /// Make a new random key and write it to --new-key-file (mode 0600;
    /// refused if the file exists).
    #[arg(long, requires = "new_key_file")]
    pub generate: bool,
}

/// The external master key the global flags name, if any.
pub fn master_key(cli: &Cli) -> Result<Option<Arc<ExternalKey>>> {
    match (&cli.master_key_file, &cli.master_key_command) {
        (Some(p), _) if !p.as_os_str().is_empty() => Ok(Some(Arc::new(key_file(p)?))),
        (_, Some(c)) if !c.is_empty() => Ok(Some(Arc::new(key_command(c)?))),
        _ => Ok(None),
    }
}

/// A key file: it must not be readable by others (like an SSH key).
fn key_file(path: &Path) -> Result<ExternalKey> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("reading the master key file `{}`", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o007 != 0 {
            bail!(
                "the master key file `{}` is readable by others: `chmod 600` it (or 640 for a group)",
                path.display()
            );
        }
    }
    let _ = meta;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("reading the master key file `{}`", path.display()))?;
    ExternalKey::parse(&bytes).with_context(|| format!("the master key file `{}`", path.display()))
}

/// What a command prints: the key (a KMS client decrypting it).
fn key_command(cmd: &str) -> Result<ExternalKey> {
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", cmd])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the master key command")?;
    let stdout = zeroize::Zeroizing::new(out.stdout);
    if !out.status.success() {
        bail!("the master key command failed ({})", out.status);
    }
    ExternalKey::parse(&stdout).context("the master key command's output")
}

/// The new key of `keys externalize` / `rotate-master`, made if asked.
fn new_key(a: &NewKeyArgs) -> Result<ExternalKey> {
    if a.generate {
        let Some(path) = &a.new_key_file else {
            bail!("--generate writes the key to --new-key-file");
        };
        let key = ExternalKey::generate(&aws_lc_rs::rand::SystemRandom::new())?;
        #[cfg(unix)]
        let mut f = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
        }
        .with_context(|| format!("creating `{}`", path.display()))?;
        #[cfg(not(unix))]
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("creating `{}`", path.display()))?;
        use std::io::Write;
        f.write_all(key.to_text().as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing `{}`", path.display()))?;
        return Ok(key);
    }
    match (&a.new_key_file, &a.new_key_command) {
        (Some(p), _) => key_file(p),
        (None, Some(c)) => key_command(c),
        (None, None) => bail!("give --new-key-file or --new-key-command"),
    }
}

pub fn keys(cli: &Cli, cmd: &KeysCmd) -> Result<u8> {
    let (a, externalize) = match cmd {
        KeysCmd::Externalize(a) => (a, true),
        KeysCmd::RotateMaster(a) => (a, false),
    };
    let v = crate::open_vault(cli)?;
    if externalize && v.master_key_is_external() {
        bail!(
            "the master key is already kept outside the key store: use `postvault keys rotate-master` to change it"
        );
    }
    if !externalize && !v.master_key_is_external() {
        bail!(
            "the master key is kept in the key store: move it out with `postvault keys externalize` first"
        );
    }
    if let crate::Location::Postgres { .. } = crate::location(cli)? {
        errln!(
            "postvault: on PostgreSQL every other node must be stopped first: a node left running would go on wrapping keys under the old master key"
        );
    }
    let new = new_key(a)?;
    let report = v.rotate_master(&new)?;
    errln!(
        "postvault: the master key is sealed under key {}; from now on give it with --master-key-file or --master-key-command (POSTVAULT_MASTER_KEY_FILE)",
        report.key_id
    );
    if report.moved_out_of_key_store {
        errln!(
            "postvault: the key store's plain master key is destroyed; key-store backups taken before now still hold it: rotate them out (docs/operations.md)"
        );
    }
    print_json(&report)?;
    Ok(0)
}

/// Exit code of a check: 0 clean, 6 records without keys, 5 a log that
/// does not match its leaves, 1 anything else.
pub(crate) fn check_exit(r: &postvault::CheckReport) -> u8 {
    if r.ok {
        0
    } else if r.keys_missing() {
        EXIT_KEYS_MISSING
    } else if r.log_mismatch() {
        EXIT_VERIFY_FAILED
    } else {
        EXIT_ERROR
    }
}

fn say_problems(r: &postvault::CheckReport) {
    if r.ok {
        errln!(
            "postvault: check: {} records of {} people, every key there; {} log leaves match their tree and {} checkpoints",
            r.records,
            r.subjects,
            r.log.leaves,
            r.log.checkpoints
        );
    }
    for p in &r.problems {
        errln!("postvault: check: {p}");
    }
}

pub fn check(cli: &Cli) -> Result<u8> {
    let v = crate::open_vault(cli)?;
    let r = v.check()?;
    say_problems(&r);
    print_json(&r)?;
    Ok(check_exit(&r))
}

pub fn backup(cli: &Cli, a: &BackupArgs) -> Result<u8> {
    let v = crate::open_vault(cli)?;
    let r = v.backup(&a.data_to, &a.keys_to)?;
    errln!(
        "postvault: backed up {} records and {} log leaves: data to `{}`, keys to `{}`; keep them apart",
        r.records,
        r.log_size,
        r.data,
        r.keys
    );
    print_json(&r)?;
    Ok(0)
}

pub fn restore(cli: &Cli, a: &RestoreArgs) -> Result<u8> {
    if let crate::Location::Postgres { .. } = crate::location(cli)? {
        bail!(
            "on PostgreSQL, restore the data schema, then the key store, with pg_restore (docs/operations.md); then run `postvault check`"
        );
    }
    let to = a.to.clone().unwrap_or_else(|| cli.data.clone());
    let (_, r) = Vault::restore(
        &a.data_from,
        &a.keys_from,
        &to,
        crate::open_opts(cli)?,
        a.replace,
    )?;
    if !r.paired {
        errln!(
            "postvault: warning: the two copies do not carry the same backup id: they were not taken together"
        );
    }
    if let Some(aside) = &r.replaced_moved_to {
        errln!(
            "postvault: the vault that was in `{}` is now in `{aside}`",
            r.to
        );
    }
    say_problems(&r.check);
    print_json(&r)?;
    Ok(check_exit(&r.check))
}

/// The batch id of a collection: `--batch-id`, or for a file the SHA-256 of
/// its content (the same file collected again resumes); `None` for
/// standard input without one, or with `--no-resume` (a new random id).
pub fn batch_id(
    file: Option<&Path>,
    given: Option<&str>,
    no_resume: bool,
) -> Result<Option<String>> {
    if let Some(id) = given {
        return Ok(Some(id.to_string()));
    }
    if no_resume {
        return Ok(Some(format!("run:{}", uuid::Uuid::now_v7())));
    }
    let Some(path) = file.filter(|f| *f != Path::new("-")) else {
        return Ok(None);
    };
    let mut f =
        std::fs::File::open(path).with_context(|| format!("opening `{}`", path.display()))?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading `{}`", path.display()))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(Some(format!("sha256:{}", hex::encode(ctx.finish()))))
}
