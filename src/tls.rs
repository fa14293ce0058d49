//! TLS with rustls: the server configuration built from the operator's PEM
//! files, the client configuration for a registry reached over TLS
//! (`[upstream] tls`) and for an OIDC issuer's JWKS URL, and the stream
//! the workers run handshakes and bodies through on both sides
//! (`tls/stream.rs`); a client's is started once its ClientHello is queued
//! (`tls/hello.rs`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::config::{TlsFiles, UpstreamConfig};

pub mod hello;
mod stream;

pub use stream::{accept, connect, TlsStream};

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

/// How regproxy reaches the registry over TLS: one client configuration
/// for the process, and the name the registry's certificate must carry.
#[derive(Debug, Clone)]
pub struct RegistryTls {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

/// The registry's TLS client when `[upstream] tls = true`: TLS 1.2 and
/// 1.3, ALPN `http/1.1`, trusting only the CAs of `ca_file`. Built once at
/// start; a CA file with no usable certificate stops the start, naming it.
/// rustls' default resumption (an in-memory session cache per
/// `ClientConfig`) is kept: its mutex is taken only on handshakes.
pub fn registry_client(upstream: &UpstreamConfig) -> anyhow::Result<Option<RegistryTls>> {
    let Some(tls) = &upstream.tls else {
        return Ok(None);
    };
    let name = ServerName::try_from(tls.server_name.clone())
        .map_err(|e| anyhow!("upstream.server_name {:?}: {e}", tls.server_name))?;
    Ok(Some(RegistryTls {
        config: client_trusting(&tls.ca_file, "upstream.ca_file")?,
        name,
    }))
}

/// A TLS client (ring, TLS 1.2 and 1.3, ALPN `http/1.1`) trusting only the
/// CAs of the PEM bundle `file`; `key` names the setting in the error when
/// the file holds no usable certificate. Shared by the registry's client
/// and the JWKS fetcher (`auth::jwks`).
pub fn client_trusting(file: &Path, key: &str) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(load_certs(file)?);
    if added == 0 {
        return Err(anyhow!(
            "{}: {key} holds no usable CA certificate",
            file.display()
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
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
