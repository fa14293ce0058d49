//! `[tls]`: the certificate and key regproxy serves. Without the table the
//! listener speaks plain HTTP (for a TLS-terminating balancer in front).

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Loader};

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    cert: Spanned<PathBuf>,
    key: Spanned<PathBuf>,
}

impl RawTls {
    pub(super) fn build(self, l: &Loader) -> Result<TlsFiles, ConfigError> {
        Ok(TlsFiles {
            cert: l.existing_file("tls.cert", &self.cert)?,
            key: l.existing_file("tls.key", &self.key)?,
        })
    }
}
