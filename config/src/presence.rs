//! `[presence]`: where "online" and "last seen" are kept.
//!
//! Validation checks the values only; it must never connect to Redis (`natter serve` does, and
//! names `presence.redis_url` if it cannot).

use serde::Deserialize;

use crate::check::in_range;
use crate::ConfigError;

/// Presence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// Where presence is kept.
    pub backend: PresenceBackend,
    /// Redis URL, for `backend = "redis"`.
    pub redis_url: String,
    /// Seconds a device stays online in Redis without a refresh (a crashed node's users go
    /// offline after this).
    pub ttl_secs: u64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            backend: PresenceBackend::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            ttl_secs: 60,
        }
    }
}

/// `[presence] backend`: where presence is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceBackend {
    /// `memory`: in this process, for one node.
    #[default]
    Memory,
    /// `redis`: in Redis at `redis_url`, shared by every node.
    Redis,
}

impl PresenceConfig {
    /// Checks `[presence]`.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        in_range(
            "presence.ttl_secs",
            self.ttl_secs,
            3..=u64::MAX,
            "at least 3",
        )
    }
}
