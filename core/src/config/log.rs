//! `[log]`: where the access log goes and in which format.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Loader};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    Off,
    File(PathBuf),
}

/// `[log] format`: the access log's line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One space-separated line, the default (`access_log::format_entry`).
    #[default]
    Text,
    /// One JSON object per line (`access_log::json`).
    Json,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    #[serde(default = "default_access_log")]
    access: Spanned<String>,
    format: Option<Spanned<String>>,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            access: default_access_log(),
            format: None,
        }
    }
}

fn default_access_log() -> Spanned<String> {
    Spanned::new(0..0, "stdout".to_owned())
}

impl RawLog {
    pub(super) fn build(self, l: &Loader) -> Result<(AccessLogTarget, LogFormat), ConfigError> {
        let target = match self.access.get_ref().as_str() {
            "stdout" | "-" => AccessLogTarget::Stdout,
            "off" => AccessLogTarget::Off,
            other => AccessLogTarget::File(l.resolve(Path::new(other))),
        };
        let format = match &self.format {
            None => LogFormat::Text,
            Some(f) => match f.get_ref().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(l.located(
                        f.span(),
                        format!("log.format: \"{other}\" is not a format (text, json)"),
                    ))
                }
            },
        };
        Ok((target, format))
    }
}
