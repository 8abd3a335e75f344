//! The demo's witness scene: two witnesses on loopback cosign the vault's
//! checkpoint; then an older copy of the vault is restored and the vault
//! refuses to sign, and a checkpoint signed behind the vault's back is
//! refused by a witness with 409.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use postvault::{OpenOptions, Vault, WitnessCallError};
use postvault_server::LocalWitnesses;

fn copy_files(from: &Path, to: &Path, names: &[&str]) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for n in names {
        let _ = std::fs::remove_file(to.join(n));
        if from.join(n).exists() {
            std::fs::copy(from.join(n), to.join(n))?;
        }
    }
    Ok(())
}

const DATA: [&str; 3] = ["data.db", "data.db-wal", "data.db-shm"];
const KEYS: [&str; 3] = ["keys.db", "keys.db-wal", "keys.db-shm"];

pub fn scene(dir: &Path, vault: Vault, opts: OpenOptions, person: &str) -> Result<()> {
    outln!("\nWitnesses: nobody can be shown a different log");
    outln!("==============================================");
    let state = tempfile::tempdir().context("creating a temporary directory")?;
    let ws = LocalWitnesses::start(state.path(), 2, &vault.log_verifier_key())?;
    for (w, url) in ws.cosigners.iter().zip(&ws.urls) {
        outln!("A witness at {url}: {}", w.verifier_key());
    }
    let vault = vault.with_witnesses(ws.policy()?)?;
    let r = vault.cosign()?;
    outln!(
        "The vault submits its checkpoint to both (C2SP tlog-witness); each checks it extends what it saw and cosigns (tlog-cosignature/v1). {}:",
        if r.checkpoint.is_final {
            "Final, 2 of 2"
        } else {
            "NOT final"
        }
    );
    for l in r.checkpoint.note.lines() {
        outln!("   {l}");
    }
    drop(vault);
    let old = tempfile::tempdir()?;
    copy_files(dir, old.path(), &DATA)?;
    copy_files(dir, old.path(), &KEYS)?;
    outln!(
        "\nAn operator keeps a copy of the vault ({} leaves signed).",
        r.checkpoint.size
    );
    let vault = Vault::open(dir, opts.clone())?.with_witnesses(ws.policy()?)?;
    let sorting = vault.principal("sorting")?;
    for _ in 0..3 {
        vault.read(&sorting, person, "delivery")?;
    }
    let newer = vault.cosign()?;
    outln!(
        "Three more reads; checkpoint {} is cosigned and published.",
        newer.checkpoint.size
    );
    drop(vault);

    outln!("\nThe older data.db is put back beside the current key store:");
    copy_files(old.path(), dir, &DATA)?;
    match Vault::open(dir, opts.clone()) {
        Err(e) => outln!("   postvault refuses to open: {e}"),
        Ok(_) => outln!("   postvault OPENED it (it should not have)"),
    }

    outln!("\nThe whole older copy is put back, key store too (they agree with each other):");
    copy_files(old.path(), dir, &KEYS)?;
    let vault = Vault::open(dir, opts)?.with_witnesses(ws.policy()?)?;
    vault.read(&sorting, person, "delivery")?;
    match vault.checkpoint() {
        Err(e) => outln!("   before signing, it asks its witnesses, and refuses: {e}"),
        Ok(_) => outln!("   it SIGNED a checkpoint (it should not have)"),
    }

    outln!(
        "\nSomeone with the log's key signs a different tree of the published size, behind the vault's back:"
    );
    use postvault_store::KeyStore as _;
    let seed = postvault_store::SqliteKeyStore::open(
        &dir.join(postvault::KEYS_FILE),
        postvault_store::OpenMode::Existing,
    )?
    .secret("log_signing_key")?
    .context("no log key")?;
    if seed.len() != 32 {
        // Sealed under the external master key: the forger would need it.
        outln!(
            "   (shown only for a vault whose master key is in its key store: this one's log key is sealed under the external master key)"
        );
        return Ok(());
    }
    let signer = postvault_log::LogSigner::from_bytes(vault.log_origin(), &seed)?;
    let forged = signer.sign(&postvault_log::Checkpoint::new(
        vault.log_origin(),
        newer.checkpoint.size,
        [7; 32],
    ))?;
    let client = postvault_server::HttpWitness::new(&ws.urls[0], Duration::from_secs(5))
        .map_err(anyhow::Error::msg)?;
    match postvault::Witness::add_checkpoint(&client, newer.checkpoint.size, &[], &forged) {
        Err(WitnessCallError::Conflict(n)) => outln!(
            "   the witness answers 409 Conflict (text/x.tlog.size: {n}): it cosigned another tree of that size, and never cosigns this one"
        ),
        Err(e) => outln!("   the witness refuses: {e}"),
        Ok(_) => outln!("   the witness COSIGNED it (it should not have)"),
    }
    Ok(())
}
