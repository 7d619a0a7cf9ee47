//! `[http]`: the HTTP API's listener, admin token, connection bounds and CORS origins.
//!
//! Validation checks the values only; it must never bind the listener or write the admin token
//! (`natter serve` does both).

use std::net::SocketAddr;

use serde::Deserialize;

use crate::addr::addr;
use crate::check::{at_least_one, web_origins};
use crate::ConfigError;

/// The HTTP API: tokens, admin, health.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where the HTTP API listens.
    #[serde(deserialize_with = "addr")]
    pub listen: SocketAddr,
    /// Bearer token for `/v1/admin/*`. Empty: one is made at start and written to
    /// `{data_dir}/admin.token`, where `natter user …` finds it.
    pub admin_token: String,
    /// Seconds a connection has to send a request's headers, counted from its first byte (or
    /// from the connection's start); a request body is not counted.
    pub header_timeout_secs: u64,
    /// Seconds a connection may move no bytes, between requests or during one, before it is
    /// closed.
    pub idle_timeout_secs: u64,
    /// HTTP connections open at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Web origins whose pages may call the API and the local media URLs from a browser
    /// (CORS), such as `"https://chat.example.com"`; `["*"]` allows any origin. Empty (the
    /// default): no cross-origin access; the web client natter serves itself needs none.
    pub cors_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: String::new(),
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 1024,
            cors_origins: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// Checks `[http]`: every timeout and bound is at least 1, every CORS origin an origin.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        at_least_one("http.header_timeout_secs", self.header_timeout_secs)?;
        at_least_one("http.idle_timeout_secs", self.idle_timeout_secs)?;
        at_least_one("http.max_connections", self.max_connections as u64)?;
        web_origins("http.cors_origins", &self.cors_origins, true)
    }
}
