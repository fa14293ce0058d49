//! TLS termination with rustls: the server configuration built from the
//! operator's PEM files, and the stream the workers run handshakes and
//! bodies through (`tls/stream.rs`), started once the ClientHello is queued
//! (`tls/hello.rs`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

pub mod hello;
mod stream;

pub use stream::{accept, TlsStream};

/// Builds the server configuration: TLS 1.2 and 1.3, ALPN `http/1.1`,
/// stateless session tickets so resumption needs no shared cache.
pub fn server_config(files: &TlsFiles) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow!(
                "{} and {} do not form a usable certificate and key: {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new().context("TLS session ticketer")?;
    Ok(Arc::new(config))
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("{}: cannot read PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{}: no CERTIFICATE block found", path.display()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        anyhow!(
            "{}: no usable private key (PKCS#8, RSA or EC PEM expected): {e}",
            path.display()
        )
    })
}
