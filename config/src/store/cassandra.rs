//! `[store.cassandra]` and `[store.cassandra.tls]`: where the cluster is, how natter's keyspace
//! is replicated, and how natter talks to the nodes.
//!
//! Validation checks the values, one concern at a time; it must never connect to a node or
//! read the password or TLS files (the Cassandra store does, and names the key if it cannot).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::check::{in_range, invalid};
use crate::ConfigError;

/// `[store.cassandra]`: where the cluster is and how natter talks to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CassandraConfig {
    /// `host:port` of a few nodes; the driver learns the rest of the cluster from them.
    pub contact_points: Vec<String>,
    /// natter's keyspace; created with `replication` if missing.
    pub keyspace: String,
    /// How the keyspace is replicated, if natter creates it.
    pub replication_class: ReplicationClass,
    /// Copies of each row, for `SimpleStrategy`.
    pub replication_factor: u32,
    /// Copies per datacenter, for `NetworkTopologyStrategy`: `{ dc1 = 3, dc2 = 3 }`.
    pub datacenters: BTreeMap<String, u32>,
    /// The datacenter natter runs in: requests go to its nodes first. "" means any.
    pub local_datacenter: String,
    /// Consistency of reads and writes.
    pub consistency: Consistency,
    /// Username for PasswordAuthenticator; "" for none.
    pub username: String,
    /// Its password (or `password_file`).
    pub password: String,
    /// A file holding the password (first line), so it need not sit in the config.
    pub password_file: Option<PathBuf>,
    /// Days messages and inbox entries are kept (a TTL on each row); 0 keeps them forever.
    pub message_ttl_days: f64,
    /// Seconds to open a connection to a node.
    pub connect_timeout_secs: u64,
    /// Seconds one request may take before it fails.
    pub request_timeout_secs: u64,
    /// TLS to the nodes; off unless this table is present.
    pub tls: Option<CassandraTlsConfig>,
    /// Read the cluster's keyspaces and tables (`system_schema`), which token-aware routing
    /// needs. Off only for nodes without it (Cassandra before 3.0, behind a protocol bridge).
    pub schema_metadata: bool,
}

impl Default for CassandraConfig {
    fn default() -> Self {
        CassandraConfig {
            contact_points: vec!["127.0.0.1:9042".into()],
            keyspace: "natter".into(),
            replication_class: ReplicationClass::SimpleStrategy,
            replication_factor: 1,
            datacenters: BTreeMap::new(),
            local_datacenter: String::new(),
            consistency: Consistency::LocalQuorum,
            username: String::new(),
            password: String::new(),
            password_file: None,
            message_ttl_days: 0.0,
            connect_timeout_secs: 5,
            request_timeout_secs: 10,
            tls: None,
            schema_metadata: true,
        }
    }
}

/// `[store.cassandra.tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CassandraTlsConfig {
    /// PEM file of the CA(s) that signed the nodes' certificates.
    pub ca_file: PathBuf,
    /// Client certificate chain (PEM), where the cluster requires one.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `[store.cassandra] replication_class`, written as Cassandra names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum ReplicationClass {
    /// One datacenter (tests): `replication_factor` copies.
    #[default]
    SimpleStrategy,
    /// Production: `datacenters` gives the copies in each datacenter.
    NetworkTopologyStrategy,
}

/// `[store.cassandra] consistency`: the consistency of every read and write, written as CQL
/// names it (`LOCAL_QUORUM`). The serial levels are not among them: they are for lightweight
/// transactions only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Consistency {
    /// A quorum of the local datacenter's replicas.
    #[default]
    LocalQuorum,
    /// A quorum of all replicas.
    Quorum,
    /// One replica in the local datacenter.
    LocalOne,
    /// One replica anywhere.
    One,
    /// A quorum in every datacenter.
    EachQuorum,
    /// Every replica.
    All,
}

impl CassandraConfig {
    /// Checks `[store.cassandra]`. `dedup_hours` is `limits.dedup_hours`: a message must live
    /// at least that long for a resend to find it.
    pub(crate) fn validate(&self, dedup_hours: u64) -> Result<(), ConfigError> {
        self.check_contact_points()?;
        self.check_keyspace()?;
        self.check_replication()?;
        self.check_message_ttl(dedup_hours)?;
        self.check_timeouts()?;
        self.check_credentials()?;
        self.check_tls()
    }

    fn check_contact_points(&self) -> Result<(), ConfigError> {
        if self.contact_points.is_empty() {
            return invalid(
                "store.cassandra.contact_points",
                "[]".into(),
                "at least one \"host:port\"",
            );
        }
        for p in &self.contact_points {
            let port_ok = p
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return invalid(
                    "store.cassandra.contact_points",
                    format!("{p:?}"),
                    "\"host:port\", e.g. \"10.0.0.5:9042\"",
                );
            }
        }
        Ok(())
    }

    /// The keyspace name goes into CQL text (it cannot be a bind marker), so only what CQL
    /// allows unquoted is accepted.
    fn check_keyspace(&self) -> Result<(), ConfigError> {
        let ks = &self.keyspace;
        let ks_ok = !ks.is_empty()
            && ks.len() <= 48
            && ks.starts_with(|ch: char| ch.is_ascii_alphabetic())
            && ks.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !ks_ok {
            return invalid(
                "store.cassandra.keyspace",
                format!("{ks:?}"),
                "a letter, then up to 47 letters, digits or underscores",
            );
        }
        Ok(())
    }

    fn check_replication(&self) -> Result<(), ConfigError> {
        match self.replication_class {
            ReplicationClass::SimpleStrategy if self.replication_factor == 0 => invalid(
                "store.cassandra.replication_factor",
                "0".into(),
                "at least 1",
            ),
            ReplicationClass::SimpleStrategy => Ok(()),
            ReplicationClass::NetworkTopologyStrategy => self.check_datacenters(),
        }
    }

    fn check_datacenters(&self) -> Result<(), ConfigError> {
        if self.datacenters.is_empty() {
            return invalid(
                "store.cassandra.datacenters",
                "{}".into(),
                "copies per datacenter, e.g. { dc1 = 3 }, for NetworkTopologyStrategy",
            );
        }
        for (dc, n) in &self.datacenters {
            let name_ok = !dc.is_empty()
                && dc
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch));
            if !name_ok || *n == 0 {
                return invalid(
                    "store.cassandra.datacenters",
                    format!("{dc:?} = {n}"),
                    "a datacenter name (letters, digits, _ - .) and at least 1 copy",
                );
            }
        }
        Ok(())
    }

    fn check_message_ttl(&self, dedup_hours: u64) -> Result<(), ConfigError> {
        let days = self.message_ttl_days;
        // Cassandra's TTL is an i32 of seconds.
        if !(days.is_finite() && days >= 0.0) || days * 86_400.0 > i32::MAX as f64 {
            return invalid(
                "store.cassandra.message_ttl_days",
                days.to_string(),
                "0 (keep) or a number of days up to 24855 (Cassandra's TTL limit)",
            );
        }
        if days > 0.0 && days * 24.0 < dedup_hours as f64 {
            return invalid(
                "store.cassandra.message_ttl_days",
                days.to_string(),
                "0 or at least limits.dedup_hours (a resent message must still find the first)",
            );
        }
        Ok(())
    }

    fn check_timeouts(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            (
                "store.cassandra.connect_timeout_secs",
                self.connect_timeout_secs,
            ),
            (
                "store.cassandra.request_timeout_secs",
                self.request_timeout_secs,
            ),
        ] {
            in_range(key, v, 1..=600, "1 to 600 seconds")?;
        }
        Ok(())
    }

    fn check_credentials(&self) -> Result<(), ConfigError> {
        if self.password_file.is_some() && !self.password.is_empty() {
            return invalid(
                "store.cassandra.password_file",
                "set".into(),
                "either password or password_file, not both",
            );
        }
        if self.username.is_empty() && (!self.password.is_empty() || self.password_file.is_some()) {
            return invalid(
                "store.cassandra.username",
                "\"\"".into(),
                "a username where a password is given",
            );
        }
        Ok(())
    }

    fn check_tls(&self) -> Result<(), ConfigError> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            let value = tls
                .key_file
                .as_ref()
                .map_or_else(|| "(not set)".into(), |k| format!("{k:?}"));
            return invalid(
                "store.cassandra.tls.key_file",
                value,
                "cert_file and key_file together, or neither",
            );
        }
        Ok(())
    }
}
