//! Placeholder for the JWKS fetcher (the helper's branch replaces it).

use std::sync::{Arc, Mutex, PoisonError};

use regproxy_core::auth::jwt::KeySet;

#[derive(Debug)]
pub struct JwksHandle {
    keys: Mutex<Arc<KeySet>>,
}

impl JwksHandle {
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    pub fn generation(&self) -> u64 {
        0
    }
    pub fn kid_miss(&self) -> futures_channel::oneshot::Receiver<()> {
        futures_channel::oneshot::channel().1
    }
    pub fn fetches(&self) -> (u64, u64) {
        (0, 0)
    }
    pub fn new(_issuer: &str, _url: &str, _tls: Arc<rustls::ClientConfig>) -> Arc<JwksHandle> {
        Arc::new(JwksHandle {
            keys: Mutex::new(Arc::new(KeySet::new())),
        })
    }
}

pub fn spawn_refresher(
    _handles: Vec<Arc<JwksHandle>>,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    Ok(None)
}

pub fn client_config(
    _ca_file: Option<&std::path::Path>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    anyhow::bail!("placeholder")
}
