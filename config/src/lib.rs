//! natter's configuration: one TOML file, every key optional, every default the embedded
//! single-machine setup (`config/natter.toml` documents each key).
//!
//! This crate owns parsing and validation, so that a bad file stops start-up with an error naming
//! the key, the value and what was expected. It must never open sockets or files other than the
//! config file itself: checking that a port is free or a key file readable belongs to the code
//! that uses them, which names the key in its own error.
//!
//! Each section of the file has its own module, which owns the section's types, defaults and
//! validation. Keys that take one of a few words are enums, so a wrong word is refused while
//! parsing, with the key, the word and the words accepted. This module holds [`Config`], the
//! parsing, [`ConfigError`], and the order in which the sections are checked.

mod acl;
mod addr;
mod auth;
mod check;
mod http;
mod limits;
mod log;
mod media;
mod mqtt;
mod presence;
mod push;
mod store;
#[cfg(test)]
mod tests;
mod web;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use acl::{AclRule, AnonymousConfig};
pub use auth::{AuthConfig, IssuerAlgorithm, TrustedIssuer};
pub use http::HttpConfig;
pub use limits::{GroupAdds, LimitsConfig};
pub use log::{LogConfig, LogFormat};
pub use media::{MediaBackend, MediaConfig, S3Config};
pub use mqtt::{MqttConfig, TlsConfig};
pub use presence::{PresenceBackend, PresenceConfig};
pub use push::{ApnsConfig, FcmConfig, PushConfig};
pub use store::{
    CassandraConfig, CassandraTlsConfig, Consistency, ReplicationClass, StoreBackend, StoreConfig,
};
pub use web::WebConfig;

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file named on the command line.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a key has a value of the wrong shape, such as a word
    /// the key does not accept.
    #[error("config {path}: key `{key}`: {message}")]
    Parse {
        /// The file named on the command line.
        path: String,
        /// The dotted key, e.g. `mqtt.tcp`.
        key: String,
        /// What was wrong, with the value and the expectation where the parser gives them.
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("config key `{key}` = {value}: expected {expected}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// The offending value as written.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded store, keys and tokens live.
    pub data_dir: PathBuf,
    /// The MQTT listeners and their bounds.
    pub mqtt: MqttConfig,
    /// The HTTP API.
    pub http: HttpConfig,
    /// Passwords and tokens.
    pub auth: AuthConfig,
    /// The message store.
    pub store: StoreConfig,
    /// Chat limits.
    pub limits: LimitsConfig,
    /// Extra topic rights outside the chat namespaces, Mosquitto-style.
    pub acl: Vec<AclRule>,
    /// An optional listener for clients without credentials.
    pub anonymous: Option<AnonymousConfig>,
    /// Presence (online / last seen).
    pub presence: PresenceConfig,
    /// Logging.
    pub log: LogConfig,
    /// Push notifications for users with no device online.
    pub push: PushConfig,
    /// Uploaded files: where they live, what is accepted, how long they are kept.
    pub media: MediaConfig,
    /// The browser client served at `/`.
    pub web: WebConfig,
    /// Seconds `natter serve` takes at most, after SIGTERM or SIGINT, to finish the commits in
    /// flight, tell clients and exit.
    pub shutdown_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            mqtt: MqttConfig::default(),
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            store: StoreConfig::default(),
            limits: LimitsConfig::default(),
            acl: Vec::new(),
            anonymous: None,
            presence: PresenceConfig::default(),
            log: LogConfig::default(),
            push: PushConfig::default(),
            media: MediaConfig::default(),
            web: WebConfig::default(),
            shutdown_timeout_secs: 10,
        }
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::Parse {
                path: origin.to_owned(),
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                message: inner.message().trim().to_owned(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every section; the first value refused is the error. Sections that depend on
    /// another get the values they need from it.
    fn validate(&self) -> Result<(), ConfigError> {
        self.store.validate(self.limits.dedup_hours)?;
        self.presence.validate()?;
        self.mqtt.validate()?;
        self.limits.validate(self.mqtt.max_packet_size)?;
        check::at_least_one("shutdown_timeout_secs", self.shutdown_timeout_secs)?;
        self.http.validate()?;
        self.push.validate()?;
        self.media.validate()?;
        self.auth.validate()?;
        self.web.validate()?;
        for (i, rule) in self.acl.iter().enumerate() {
            rule.validate(i)?;
        }
        match &self.anonymous {
            Some(anonymous) => anonymous.validate(&self.mqtt),
            None => Ok(()),
        }
    }
}
