//! TLS for the service (rustls): the certificate chain and private key
//! from PEM files, checked when the service starts so a bad file is a clear
//! error, not a handshake that fails later.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the certificate or key cannot be used. Messages name the file and
/// what is wrong with it, never key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("`{0}` holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----` blocks)")]
    NoCertificate(String),
    #[error("`{path}` is not a PEM certificate chain: {why}")]
    BadCertificate { path: String, why: String },
    #[error(
        "`{0}` holds no private key (expected a PEM PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key)"
    )]
    NoKey(String),
    #[error("`{path}` is not a PEM private key: {why}")]
    BadKey { path: String, why: String },
    #[error("the key `{key}` and the certificate `{cert}` cannot be used together: {why}")]
    Mismatch {
        cert: String,
        key: String,
        why: String,
    },
}

/// A loaded server certificate and key, ready to accept TLS connections.
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) server: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl TlsConfig {
    /// The chain in `cert` (leaf first) and the key in `key`, both PEM.
    /// HTTP/1.1 only (ALPN `http/1.1`), TLS 1.2 and 1.3.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<TlsConfig, TlsError> {
        let (cert_bytes, key_bytes) = (read(cert)?, read(key)?);
        TlsConfig::from_pem(&cert_bytes, &key_bytes, cert, key)
    }

    /// As [`TlsConfig::from_pem_files`], from bytes; the paths are for
    /// messages.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        cert: &Path,
        key: &Path,
    ) -> Result<TlsConfig, TlsError> {
        let (cert_name, key_name) = (cert.display().to_string(), key.display().to_string());
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, pem::Error>>()
            .map_err(|e| TlsError::BadCertificate {
                path: cert_name.clone(),
                why: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate(cert_name));
        }
        let key_der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            pem::Error::NoItemsFound => TlsError::NoKey(key_name.clone()),
            e => TlsError::BadKey {
                path: key_name.clone(),
                why: e.to_string(),
            },
        })?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Mismatch {
                cert: cert_name.clone(),
                key: key_name.clone(),
                why: e.to_string(),
            })?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| TlsError::Mismatch {
                cert: cert_name,
                key: key_name,
                why: e.to_string(),
            })?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConfig {
            server: Arc::new(server),
        })
    }
}
