//! `[push]`, `[push.fcm]` and `[push.apns]`: notifications for users with no device online.
//!
//! Validation checks the values, and that push has a provider to send through when it is on;
//! it must never read a key file or reach a provider (the push crate does).

use std::path::PathBuf;

use serde::Deserialize;

use crate::check::{at_least_one, invalid};
use crate::ConfigError;

/// Push notifications (FCM, APNs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Off: no push job is ever made.
    pub enabled: bool,
    /// Seconds natter waits for an online device to acknowledge a message before it pushes
    /// anyway (a phone whose app is in the background may hold a dead connection).
    pub grace_secs: u64,
    /// Put the message text in the notification. Off: only who wrote (end-to-end friendly).
    pub preview: bool,
    /// Sending attempts for one notification before it is dropped (and counted).
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubled at each attempt, with jitter.
    pub retry_base_ms: u64,
    /// Longest retry delay, in seconds (a `Retry-After` from the provider wins).
    pub retry_max_secs: u64,
    /// Seconds a provider should keep trying to reach a device.
    pub ttl_secs: u64,
    /// Firebase Cloud Messaging, HTTP v1.
    pub fcm: Option<FcmConfig>,
    /// Apple Push Notification service.
    pub apns: Option<ApnsConfig>,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            enabled: false,
            grace_secs: 5,
            preview: false,
            max_attempts: 8,
            retry_base_ms: 1000,
            retry_max_secs: 600,
            ttl_secs: 86_400,
            fcm: None,
            apns: None,
        }
    }
}

/// FCM HTTP v1.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// The Google service-account JSON (`client_email`, `private_key`, `token_uri`,
    /// `project_id`).
    pub service_account_file: PathBuf,
    /// Where FCM is.
    #[serde(default = "default_fcm_url")]
    pub base_url: String,
    /// The Firebase project; empty: the service account's `project_id`.
    #[serde(default)]
    pub project_id: String,
}

fn default_fcm_url() -> String {
    "https://fcm.googleapis.com".into()
}

/// APNs with a token-based (.p8) provider key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    /// The .p8 signing key from the Apple developer account.
    pub key_file: PathBuf,
    /// Its key id (10 characters).
    pub key_id: String,
    /// The developer team id.
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// Where APNs is (`https://api.sandbox.push.apple.com` for development builds).
    #[serde(default = "default_apns_url")]
    pub base_url: String,
}

fn default_apns_url() -> String {
    "https://api.push.apple.com".into()
}

impl PushConfig {
    /// Checks `[push]` and its providers.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled && self.fcm.is_none() && self.apns.is_none() {
            return invalid(
                "push.enabled",
                "true".into(),
                "a [push.fcm] or [push.apns] table to send through",
            );
        }
        at_least_one("push.max_attempts", self.max_attempts.into())?;
        match &self.apns {
            Some(apns) => apns.validate(),
            None => Ok(()),
        }
    }
}

impl ApnsConfig {
    /// Checks `[push.apns]`: the ids APNs needs are all given.
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("push.apns.key_id", &self.key_id),
            ("push.apns.team_id", &self.team_id),
            ("push.apns.topic", &self.topic),
        ] {
            if v.is_empty() {
                return invalid(key, "\"\"".into(), "a non-empty value");
            }
        }
        Ok(())
    }
}
