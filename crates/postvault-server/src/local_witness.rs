//! Witnesses served from this process on loopback, each with its SQLite
//! state in a directory the caller owns: the demo's witness scene and the
//! witness benchmark run real C2SP witnesses over HTTP without a second
//! process.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use postvault::{ConfiguredWitness, WitnessPolicy};
use postvault_witness::Cosigner;

#[derive(Debug, thiserror::Error)]
pub enum LocalWitnessError {
    #[error("starting a local witness: {0}")]
    Io(#[from] std::io::Error),
    #[error("local witness: {0}")]
    Witness(#[from] postvault_witness::WitnessError),
    #[error("a local witness's key: {0}")]
    Key(#[from] postvault_log::LogError),
    #[error("a client of a local witness: {0}")]
    Client(String),
}

/// Witnesses served from this process: their cosigners, their URLs, and
/// the runtime serving them (stopped on drop).
pub struct LocalWitnesses {
    pub cosigners: Vec<Arc<Cosigner>>,
    pub urls: Vec<String>,
    _rt: tokio::runtime::Runtime,
}

impl LocalWitnesses {
    /// Starts `n` witnesses following the log `log_vkey`, their state files
    /// in `dir`.
    pub fn start(
        dir: &Path,
        n: usize,
        log_vkey: &str,
    ) -> Result<LocalWitnesses, LocalWitnessError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let origin = log_vkey.split('+').next().unwrap_or_default();
        let mut cosigners = Vec::new();
        let mut urls = Vec::new();
        for i in 1..=n {
            let w = Arc::new(Cosigner::create(
                &dir.join(format!("w{i}.db")),
                &format!("witness-{i}.example"),
            )?);
            w.add_log(origin, log_vkey)?;
            let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
            urls.push(format!("http://{}", listener.local_addr()?));
            let served = w.clone();
            rt.spawn(async move {
                let _ = crate::serve_witness(listener, served, std::future::pending::<()>()).await;
            });
            cosigners.push(w);
        }
        Ok(LocalWitnesses {
            cosigners,
            urls,
            _rt: rt,
        })
    }

    /// The vault's witness policy over HTTP, all of them required.
    pub fn policy(&self) -> Result<WitnessPolicy, LocalWitnessError> {
        let mut witnesses = Vec::new();
        for (w, url) in self.cosigners.iter().zip(&self.urls) {
            witnesses.push(ConfiguredWitness {
                verifier: postvault_log::CosignatureVerifier::new(&w.verifier_key())?,
                client: crate::http_witness(url, Duration::from_secs(5))
                    .map_err(LocalWitnessError::Client)?,
            });
        }
        let quorum = witnesses.len();
        Ok(WitnessPolicy { witnesses, quorum })
    }
}
