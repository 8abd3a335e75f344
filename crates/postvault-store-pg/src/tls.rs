//! TLS to PostgreSQL (rustls), with libpq's `sslmode` and `sslrootcert`
//! URL parameters honoured:
//!
//! | `sslmode` | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | - |
//! | `prefer` (default) | if the server offers it | not checked |
//! | `require` | always | not checked; checked as `verify-ca` when `sslrootcert` is given |
//! | `verify-ca` | always | signed by a CA in `sslrootcert` |
//! | `verify-full` | always | as `verify-ca`, and issued for the host of the URL |
//!
//! `sslrootcert` is a PEM file of CA certificates; for `verify-ca` and
//! `verify-full` it defaults, as in libpq, to `~/.postgresql/root.crt`.
//! tokio-postgres itself knows only `disable`, `prefer` and `require`, so
//! these parameters are taken out of the URL here and the rest is given to
//! it unchanged.

use std::sync::Arc;

use postvault_store::StoreError;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// libpq's `sslmode`, as postvault honours it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(s: &str) -> Option<TlsMode> {
        Some(match s {
            "disable" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            _ => return None,
        })
    }
}

/// What to connect with: the URL for tokio-postgres (without the TLS
/// parameters), its `sslmode`, and the rustls connector.
pub(crate) struct Connect {
    pub(crate) url: String,
    pub(crate) ssl_mode: SslMode,
    pub(crate) tls: MakeRustlsConnect,
}

fn bad(shown: &str, why: String) -> StoreError {
    StoreError::NotAStore(shown.to_string(), why)
}

/// Splits the TLS parameters off `url` and builds the connector they ask for.
pub(crate) fn connect_params(url: &str) -> Result<Connect, StoreError> {
    let shown = crate::redact(url);
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut kept = Vec::new();
    let mut mode = TlsMode::Prefer;
    let mut root: Option<String> = None;
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(v)
            .decode_utf8()
            .map_err(|_| bad(&shown, format!("the value of `{k}` is not UTF-8")))?
            .into_owned();
        match k {
            "sslmode" => {
                mode = TlsMode::parse(&value).ok_or_else(|| {
                    bad(
                        &shown,
                        format!(
                            "`sslmode={value}` is not one of disable, prefer, require, verify-ca, verify-full"
                        ),
                    )
                })?;
            }
            "sslrootcert" => root = Some(value),
            "sslcert" | "sslkey" | "sslcrl" | "sslpassword" => {
                return Err(bad(
                    &shown,
                    format!("`{k}` is not supported (client certificates, CRLs)"),
                ));
            }
            _ => kept.push(pair),
        }
    }
    let ssl_mode = match mode {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
    };
    // The root certificates the chain is checked against, if it is.
    let chain_roots = match mode {
        TlsMode::Disable | TlsMode::Prefer => None,
        TlsMode::Require => root,
        TlsMode::VerifyCa | TlsMode::VerifyFull => Some(root.unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            std::path::Path::new(&home)
                .join(".postgresql/root.crt")
                .display()
                .to_string()
        })),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match chain_roots {
        None => Arc::new(DangerUnverified(provider.clone())),
        Some(path) => {
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(&path, &shown)?),
                provider.clone(),
            )
            .build()
            .map_err(|e| bad(&shown, format!("`sslrootcert={path}`: {e}")))?;
            if mode == TlsMode::VerifyFull {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            }
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&shown, e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(Connect {
        url,
        ssl_mode,
        tls: MakeRustlsConnect::new(config),
    })
}

/// The CA certificates of a PEM file.
fn roots(path: &str, shown: &str) -> Result<rustls::RootCertStore, StoreError> {
    let pem = std::fs::read(path).map_err(|e| {
        bad(
            shown,
            format!("reading the root certificates `sslrootcert={path}`: {e}"),
        )
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        let c = c.map_err(|e| bad(shown, format!("`sslrootcert={path}` is not PEM: {e}")))?;
        roots
            .add(c)
            .map_err(|e| bad(shown, format!("`sslrootcert={path}`: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad(
            shown,
            format!("`sslrootcert={path}` holds no certificate"),
        ));
    }
    Ok(roots)
}

/// `prefer` and `require` without root certificates: the connection is
/// encrypted, but any certificate is taken (libpq's behaviour). The
/// handshake's signatures are still checked against the certificate.
#[derive(Debug)]
struct DangerUnverified(Arc<CryptoProvider>);

impl DangerUnverified {
    fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.0.signature_verification_algorithms
    }
}

impl ServerCertVerifier for DangerUnverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, self.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, self.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms().supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a root of `sslrootcert`; the name
/// the certificate was issued for is not compared with the host.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
