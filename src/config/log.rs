//! `[log]`: where the access log goes.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::Loader;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    Off,
    File(PathBuf),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    #[serde(default = "default_access_log")]
    access: Spanned<String>,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            access: default_access_log(),
        }
    }
}

fn default_access_log() -> Spanned<String> {
    Spanned::new(0..0, "stdout".to_owned())
}

impl RawLog {
    pub(super) fn build(self, l: &Loader) -> AccessLogTarget {
        match self.access.get_ref().as_str() {
            "stdout" | "-" => AccessLogTarget::Stdout,
            "off" => AccessLogTarget::Off,
            other => AccessLogTarget::File(l.resolve(Path::new(other))),
        }
    }
}
