//! `[[acl]]` and `[anonymous]`: topic rights for integrations, outside the chat namespaces.
//!
//! Validation checks that every filter is a well-formed MQTT filter whose first level is not a
//! chat namespace ([`natter_types::topic::names_chat`]), so no config rule can widen the chat
//! ACL; a wildcard first level (`#`, `+/…`) is allowed and covers only integration topics. It
//! must never match topics itself: the broker's ACL does.

use std::net::SocketAddr;

use natter_types::topic::{names_chat, CHAT_NAMESPACES};
use serde::Deserialize;

use crate::addr::addr;
use crate::check::invalid;
use crate::mqtt::MqttConfig;
use crate::ConfigError;

/// Extra rights for users whose name matches `user` (`*` matches any run of characters).
/// Topic filters may use `%u` for the user's own name, as Mosquitto's `pattern` does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    /// User name or pattern, e.g. `sensor-*`, `*`.
    pub user: String,
    /// Filters the user may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Filters the user may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<String>,
}

/// A listener for clients without credentials, with its own topic rights. Clients on it never
/// reach the chat namespaces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonymousConfig {
    /// Where it listens (TCP).
    #[serde(deserialize_with = "addr")]
    pub listen: SocketAddr,
    /// Filters anonymous clients may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Filters anonymous clients may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<String>,
}

impl AclRule {
    /// Checks the rule at `acl[i]`.
    pub(crate) fn validate(&self, i: usize) -> Result<(), ConfigError> {
        if self.user.is_empty() {
            return invalid(
                &format!("acl[{i}].user"),
                "\"\"".into(),
                "a user name or pattern",
            );
        }
        check_filters(&format!("acl[{i}].publish"), &self.publish)?;
        check_filters(&format!("acl[{i}].subscribe"), &self.subscribe)
    }
}

impl AnonymousConfig {
    /// Checks `[anonymous]`: its filters, and that it does not listen where `mqtt` does.
    pub(crate) fn validate(&self, mqtt: &MqttConfig) -> Result<(), ConfigError> {
        check_filters("anonymous.publish", &self.publish)?;
        check_filters("anonymous.subscribe", &self.subscribe)?;
        if mqtt.plain_listener_at(self.listen) {
            return invalid(
                "anonymous.listen",
                self.listen.to_string(),
                "an address no other MQTT listener uses",
            );
        }
        Ok(())
    }
}

/// Refuses the first of `filters` that is not an MQTT filter or could reach a chat topic.
fn check_filters(key: &str, filters: &[String]) -> Result<(), ConfigError> {
    for f in filters {
        if !is_filter(f) {
            return invalid(
                key,
                format!("{f:?}"),
                "an MQTT topic filter (`+` and `#` as whole levels, `#` last)",
            );
        }
        // The chat ACL is not something an integration rule can widen. A rule like `#` or
        // `+/…` is allowed: the broker never delivers a chat topic through it, nor lets it
        // publish to one (broker/src/acl.rs, broker/src/hooks.rs).
        if names_chat(f) {
            return invalid(
                key,
                format!("{f:?}"),
                &format!(
                    "a filter whose first level is not one of the chat namespaces {CHAT_NAMESPACES:?}"
                ),
            );
        }
    }
    Ok(())
}

/// Whether `f` is a non-empty MQTT filter: `+` and `#` only as whole levels, `#` only last.
fn is_filter(f: &str) -> bool {
    let levels: Vec<&str> = f.split('/').collect();
    !f.is_empty()
        && levels.iter().enumerate().all(|(i, l)| {
            (*l != "#" || i == levels.len() - 1)
                && (!l.contains('#') || *l == "#")
                && (!l.contains('+') || *l == "+")
        })
}
