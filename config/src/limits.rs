//! `[limits]`: what one user may send, hold and join.
//!
//! Validation checks the values, and that a chat message fits in an MQTT packet; it must never
//! count anything (the bridge enforces these limits).

use serde::Deserialize;

use crate::check::{at_least_one, in_range, invalid};
use crate::ConfigError;

/// Chat limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest chat message payload, in bytes.
    pub max_message_bytes: usize,
    /// Hours a `cid` is remembered for deduplication (24 at least).
    pub dedup_hours: u64,
    /// Most members in a group, the creator included.
    pub max_group_members: usize,
    /// Chat messages (`m/…`) one user may send per second, all devices together, sustained.
    pub messages_per_sec: f64,
    /// Chat messages one user may send at once above the sustained rate.
    pub messages_burst: u32,
    /// Requests (`q/…`) one user may make per second, all devices together, sustained.
    pub requests_per_sec: f64,
    /// Requests one user may make at once above the sustained rate.
    pub requests_burst: u32,
    /// Devices of one user with a session, connected or kept offline (persistent sessions).
    pub max_connections_per_user: usize,
    /// Groups one user may be a member of.
    pub max_groups_per_user: usize,
    /// Whose group adds make a user a member at once; anyone else's add is an invitation she
    /// accepts (`group.join`) or declines.
    pub group_adds: GroupAdds,
}

/// Who may add a user to a group without asking her.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupAdds {
    /// Anyone: an add makes a member at once (anyone can fill a user's group allowance).
    Anyone,
    /// Someone she has written to in their one-to-one chat; anyone else's add is an invitation.
    #[default]
    Contacts,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: 64 * 1024,
            dedup_hours: 48,
            max_group_members: 1024,
            messages_per_sec: 20.0,
            messages_burst: 100,
            requests_per_sec: 20.0,
            requests_burst: 100,
            max_connections_per_user: 16,
            max_groups_per_user: 1000,
            group_adds: GroupAdds::Contacts,
        }
    }
}

impl LimitsConfig {
    /// Checks `[limits]`; `max_packet_size` is `mqtt.max_packet_size`, which a chat message
    /// must fit in.
    pub(crate) fn validate(&self, max_packet_size: u32) -> Result<(), ConfigError> {
        self.check_messages(max_packet_size)?;
        self.check_groups()?;
        self.check_rates()?;
        at_least_one(
            "limits.max_connections_per_user",
            self.max_connections_per_user as u64,
        )
    }

    fn check_messages(&self, max_packet_size: u32) -> Result<(), ConfigError> {
        in_range(
            "limits.max_message_bytes",
            self.max_message_bytes as u64,
            1..=max_packet_size.into(),
            "between 1 and mqtt.max_packet_size",
        )?;
        in_range(
            "limits.dedup_hours",
            self.dedup_hours,
            24..=u64::MAX,
            "at least 24",
        )
    }

    fn check_groups(&self) -> Result<(), ConfigError> {
        in_range(
            "limits.max_group_members",
            self.max_group_members as u64,
            2..=u64::MAX,
            "at least 2",
        )?;
        at_least_one(
            "limits.max_groups_per_user",
            self.max_groups_per_user as u64,
        )
    }

    /// The two token buckets: a rate above 0 and a burst of at least 1 each.
    fn check_rates(&self) -> Result<(), ConfigError> {
        for (key, rate) in [
            ("limits.messages_per_sec", self.messages_per_sec),
            ("limits.requests_per_sec", self.requests_per_sec),
        ] {
            if !(rate.is_finite() && rate > 0.0) {
                return invalid(key, rate.to_string(), "a number above 0");
            }
        }
        at_least_one("limits.messages_burst", self.messages_burst.into())?;
        at_least_one("limits.requests_burst", self.requests_burst.into())
    }
}
