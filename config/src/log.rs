//! `[log]`: how natter writes its log.
//!
//! Only the shape of the values is checked here (by parsing); the filter in `level` is read by
//! `natter serve` when it sets up logging.

use serde::Deserialize;

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// How log lines are written.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `natter=debug,info`. `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

/// `[log] format`: how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `human`: for people at a terminal.
    Human,
    /// `json`: one JSON object a line, for collectors.
    Json,
}
