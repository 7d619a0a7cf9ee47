//! `[mqtt]` and `[mqtt.tls]`: the MQTT listeners and the bounds of one connection, one session
//! and the integrations' retained messages.
//!
//! Validation checks the values and that no two MQTT listeners share an address; it must never
//! bind a socket or read the TLS files (the broker does, and names the key if it cannot).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::addr::{addr, opt_addr};
use crate::check::{at_least_one, in_range, invalid, web_origins};
use crate::ConfigError;

/// MQTT listeners and per-connection bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// MQTT over TCP.
    #[serde(deserialize_with = "addr")]
    pub tcp: SocketAddr,
    /// MQTT over WebSocket (path `/mqtt`); absent or empty turns it off.
    #[serde(deserialize_with = "opt_addr")]
    pub ws: Option<SocketAddr>,
    /// Web origins whose pages may open MQTT over WebSocket (`ws` and `mqtt.tls.wss`), such as
    /// `"https://chat.example.com"`: a handshake from a page of another origin is answered
    /// 403. Empty (the default): any origin. Clients that are not browsers send no `Origin`
    /// and are never refused by it.
    pub ws_origins: Vec<String>,
    /// Most connections accepted at once, per listener.
    pub max_connections: usize,
    /// Largest MQTT packet accepted, in bytes; a bigger one breaks MQTT and closes the connection.
    pub max_packet_size: u32,
    /// Smallest keepalive a client may ask for, in seconds (0 = any).
    pub min_keepalive: u16,
    /// Largest keepalive a client may ask for, in seconds.
    pub max_keepalive: u16,
    /// QoS 1/2 messages in flight to one client before the rest queue.
    pub max_inflight: u16,
    /// Messages queued for one offline persistent session; beyond it the oldest are dropped
    /// (the store still has them: `sync` recovers them).
    pub max_queue: usize,
    /// Seconds a connection may take to send CONNECT (from the first byte it may send).
    pub handshake_timeout_secs: u64,
    /// Longest MQTT 5 session expiry a client may ask for, in seconds; a longer one is cut to
    /// this. MQTT 3.1.1 persistent sessions (clean session off) expire after the smaller of this
    /// and 2 hours. The store keeps every message regardless: `sync` recovers what a session
    /// that expired would have held.
    pub max_session_expiry_secs: u64,
    /// Most retained topics kept for integrations (`[[acl]]` and `[anonymous]` topics).
    pub retained_max_topics: usize,
    /// Most retained bytes (payloads and topic names) kept for integrations, all topics together.
    pub retained_max_bytes: usize,
    /// Largest retained payload, in bytes; a larger retained publish is refused (`0x97`).
    pub retained_max_payload: usize,
    /// MQTT over TLS (and optionally secure WebSocket); absent turns TLS off.
    pub tls: Option<TlsConfig>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            tcp: SocketAddr::from(([127, 0, 0, 1], 1883)),
            ws: Some(SocketAddr::from(([127, 0, 0, 1], 8083))),
            ws_origins: Vec::new(),
            max_connections: 100_000,
            max_packet_size: 1024 * 1024,
            min_keepalive: 0,
            max_keepalive: 3600,
            max_inflight: 32,
            max_queue: 1000,
            handshake_timeout_secs: 10,
            max_session_expiry_secs: 86_400,
            retained_max_topics: 100_000,
            retained_max_bytes: 64 * 1024 * 1024,
            retained_max_payload: 64 * 1024,
            tls: None,
        }
    }
}

/// TLS listeners. The certificate and key are read at start and again on SIGHUP; connections
/// already open keep the certificate they started with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// MQTT over TLS.
    #[serde(deserialize_with = "addr", default = "default_tls_listen")]
    pub listen: SocketAddr,
    /// Secure WebSocket (path `/mqtt`); absent or empty turns it off.
    #[serde(deserialize_with = "opt_addr", default)]
    pub wss: Option<SocketAddr>,
    /// PEM certificate chain, the server's certificate first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

fn default_tls_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8883))
}

impl MqttConfig {
    /// Checks `[mqtt]` and `[mqtt.tls]`.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        in_range(
            "mqtt.max_packet_size",
            self.max_packet_size.into(),
            1024..=u64::MAX,
            "at least 1024",
        )?;
        web_origins("mqtt.ws_origins", &self.ws_origins, false)?;
        self.check_tls_listeners()?;
        self.check_sessions()?;
        self.check_retained()
    }

    /// Whether `a` is the address of the plain TCP or WebSocket listener.
    pub(crate) fn plain_listener_at(&self, a: SocketAddr) -> bool {
        a == self.tcp || Some(a) == self.ws
    }

    fn check_tls_listeners(&self) -> Result<(), ConfigError> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        if self.plain_listener_at(tls.listen)
            || tls
                .wss
                .is_some_and(|w| self.plain_listener_at(w) || w == tls.listen)
        {
            return invalid(
                "mqtt.tls.listen",
                tls.listen.to_string(),
                "addresses no other MQTT listener uses",
            );
        }
        Ok(())
    }

    fn check_sessions(&self) -> Result<(), ConfigError> {
        at_least_one("mqtt.max_inflight", self.max_inflight.into())?;
        in_range(
            "mqtt.min_keepalive",
            self.min_keepalive.into(),
            0..=self.max_keepalive.into(),
            "no more than mqtt.max_keepalive",
        )?;
        at_least_one("mqtt.max_session_expiry_secs", self.max_session_expiry_secs)
    }

    fn check_retained(&self) -> Result<(), ConfigError> {
        at_least_one("mqtt.retained_max_topics", self.retained_max_topics as u64)?;
        in_range(
            "mqtt.retained_max_payload",
            self.retained_max_payload as u64,
            1..=self.retained_max_bytes as u64,
            "between 1 and mqtt.retained_max_bytes",
        )
    }
}
