//! natter's [`Store`](natter_store::Store) on Cassandra or ScyllaDB, through the pure-Rust
//! `scylla` driver.
//!
//! This crate owns the CQL schema (created and migrated at start, see [`schema`]), the
//! prepared statements and how each `Store` call maps onto partitions: messages by (chat,
//! 10-day bucket) newest first, inboxes by (user, run of seqs), dedup pairs with a TTL,
//! retention as a TTL on messages and inbox entries. It must never know about MQTT or the wire
//! format, and it never reads a table without naming a partition, except the admin-only user
//! list.
//!
//! Cassandra has no multi-row transactions. What the embedded store does in one transaction is
//! done here as one *logged batch* where it fits (Cassandra applies all of a logged batch or,
//! after a coordinator failure, replays it until it is all applied), and the per-user order the
//! embedded writer thread gives is given by one owner per user ([`owner`]).

pub mod buckets;
pub mod owner;
pub mod schema;
mod store;

use std::path::PathBuf;
use std::time::Duration;

use natter_store::{limits, StoreError};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::SerialConsistency;

pub use schema::Replication;
/// The driver's consistency levels, for [`CassandraOptions::consistency`].
pub use scylla::statement::Consistency;
pub use store::{CassandraStore, STATEMENTS};

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Where the cluster is and how to talk to it.
#[derive(Debug, Clone)]
pub struct CassandraOptions {
    /// `host:port` of a few nodes.
    pub contact_points: Vec<String>,
    /// natter's keyspace (a checked CQL identifier).
    pub keyspace: String,
    /// How the keyspace is replicated, if natter creates it.
    pub replication: Replication,
    /// The local datacenter: requests go to its nodes first.
    pub local_datacenter: Option<String>,
    /// Consistency of every read and write (`LOCAL_QUORUM` by default).
    pub consistency: Consistency,
    /// Username and password for PasswordAuthenticator.
    pub credentials: Option<(String, String)>,
    /// TLS to the nodes.
    pub tls: Option<TlsFiles>,
    /// How long a `(sender, cid)` pair deduplicates, in ms.
    pub dedup_ms: u64,
    /// Seconds messages and inbox entries live (a TTL on each row); 0 keeps them.
    pub message_ttl_secs: u32,
    /// Writes in flight before new ones get [`StoreError::Busy`].
    pub max_in_flight: usize,
    /// How long to open a connection.
    pub connect_timeout: Duration,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// Read the cluster's keyspace and table list (`system_schema`), which token-aware routing
    /// needs. Off only for a node without `system_schema` (Cassandra before 3.0, reached
    /// through the v3 bridge in `tools/` for checks).
    pub schema_metadata: bool,
}

impl Default for CassandraOptions {
    fn default() -> Self {
        CassandraOptions {
            contact_points: vec!["127.0.0.1:9042".into()],
            keyspace: "natter".into(),
            replication: Replication::Simple { factor: 1 },
            local_datacenter: None,
            consistency: Consistency::LocalQuorum,
            credentials: None,
            tls: None,
            dedup_ms: limits::DEFAULT_DEDUP_MS,
            message_ttl_secs: 0,
            max_in_flight: limits::DEFAULT_MAX_WAITING,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            schema_metadata: true,
        }
    }
}

/// PEM files for TLS to the nodes.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA(s) the nodes' certificates chain to.
    pub ca_file: PathBuf,
    /// A client certificate chain and its key, where nodes require one.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Any driver or server failure, as a store failure that says what failed and keeps it.
pub(crate) fn storage<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::storage_from(format!("cassandra: {e}"), e)
}

/// A stored row that does not decode, in the decoder's words.
pub(crate) fn corrupt<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::corrupt_from(e.to_string(), e)
}

/// Connects to the cluster, creates or migrates natter's keyspace and returns a session that
/// uses it.
pub(crate) async fn connect(opts: &CassandraOptions) -> Result<Session> {
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &opts.local_datacenter {
        // Stay in the local datacenter: LOCAL_QUORUM means nothing if requests wander.
        policy = policy
            .prefer_datacenter(dc.clone())
            .permit_dc_failover(false);
    }
    let profile = ExecutionProfile::builder()
        .consistency(opts.consistency)
        // Lightweight transactions (user creation, media state) stay in the datacenter too.
        .serial_consistency(Some(SerialConsistency::LocalSerial))
        .request_timeout(Some(opts.request_timeout))
        .load_balancing_policy(policy.build())
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&opts.contact_points)
        .connection_timeout(opts.connect_timeout)
        .fetch_schema_metadata(opts.schema_metadata)
        // Routing needs keyspaces and tables, not their columns or types: lighter to fetch.
        .fetch_full_schema_metadata(false)
        .default_execution_profile_handle(profile.into_handle());
    if let Some((user, password)) = &opts.credentials {
        builder = builder.user(user, password);
    }
    if let Some(tls) = &opts.tls {
        builder = builder.tls_context(Some(tls_context(tls)?));
    }
    let session = builder.build().await.map_err(|e| {
        let what = format!(
            "cassandra: cannot connect to {}: {e}",
            opts.contact_points.join(", ")
        );
        StoreError::storage_from(what, e)
    })?;
    let before = schema::migrate(&session, &opts.keyspace, &opts.replication).await?;
    tracing::info!(
        keyspace = %opts.keyspace,
        schema = schema::current(),
        found = before,
        "cassandra store connected"
    );
    session
        .use_keyspace(&opts.keyspace, false)
        .await
        .map_err(storage)?;
    Ok(session)
}

/// An OpenSSL context that trusts `ca_file` and checks the node's certificate against it.
fn tls_context(tls: &TlsFiles) -> Result<openssl::ssl::SslContext> {
    use openssl::ssl::{SslContextBuilder, SslFiletype, SslMethod, SslVerifyMode};
    let file_err = |what: &str, path: &PathBuf, e: openssl::error::ErrorStack| {
        let what = format!("cassandra TLS: cannot use {what} {}: {e}", path.display());
        StoreError::storage_from(what, e)
    };
    let mut b = SslContextBuilder::new(SslMethod::tls_client()).map_err(storage)?;
    b.set_ca_file(&tls.ca_file)
        .map_err(|e| file_err("CA file", &tls.ca_file, e))?;
    if let Some((cert, key)) = &tls.client {
        b.set_certificate_chain_file(cert)
            .map_err(|e| file_err("certificate", cert, e))?;
        b.set_private_key_file(key, SslFiletype::PEM)
            .map_err(|e| file_err("key", key, e))?;
        b.check_private_key()
            .map_err(|e| file_err("key (does not match the certificate)", key, e))?;
    }
    b.set_verify(SslVerifyMode::PEER);
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_is_named() {
        let e = tls_context(&TlsFiles {
            ca_file: "/nonexistent/ca.pem".into(),
            client: None,
        })
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
