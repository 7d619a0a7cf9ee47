//! `[store]`: which store holds the messages, and the bounds of its write queue.
//! `[store.cassandra]` lives in the submodule [`cassandra`].
//!
//! Validation checks the values, and the cluster's settings only where `backend = "cassandra"`;
//! it must never open the store or reach the cluster (`natter serve` does).

mod cassandra;

pub use cassandra::{CassandraConfig, CassandraTlsConfig, Consistency, ReplicationClass};

use serde::Deserialize;

use crate::check::at_least_one;
use crate::ConfigError;

/// The message store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Where the messages live.
    pub backend: StoreBackend,
    /// Most sends committed together in one transaction (embedded).
    pub max_batch: usize,
    /// Sends waiting for the writer (embedded) or in flight (cassandra) before new ones are
    /// refused (quota exceeded).
    pub max_queue: usize,
    /// Block cache of the embedded store, in MiB.
    pub cache_mb: usize,
    /// The Cassandra/ScyllaDB cluster, for `backend = "cassandra"`.
    pub cassandra: CassandraConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Embedded,
            max_batch: 512,
            max_queue: 16_384,
            cache_mb: 64,
            cassandra: CassandraConfig::default(),
        }
    }
}

/// `[store] backend`: where the messages live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// `embedded`: a fjall database in `{data_dir}/store`.
    #[default]
    Embedded,
    /// `cassandra`: a Cassandra or ScyllaDB cluster, set up in `[store.cassandra]`.
    Cassandra,
}

impl StoreConfig {
    /// Checks `[store]`, and `[store.cassandra]` where it is used. `dedup_hours` is
    /// `limits.dedup_hours`, which a message TTL must outlast.
    pub(crate) fn validate(&self, dedup_hours: u64) -> Result<(), ConfigError> {
        if self.backend == StoreBackend::Cassandra {
            self.cassandra.validate(dedup_hours)?;
        }
        at_least_one("store.max_batch", self.max_batch as u64)?;
        at_least_one("store.max_queue", self.max_queue as u64)
    }
}
