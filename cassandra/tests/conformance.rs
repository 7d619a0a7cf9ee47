//! The store conformance suite against a real Cassandra or ScyllaDB node.
//!
//! No such server can be installed on the machines this project is built on, so this runs only
//! where `NATTER_TEST_CASSANDRA=host:port` names one (e.g. `docker run -p 9042:9042
//! scylladb/scylla --smp 1` or Cassandra 4/5); elsewhere it says so and passes without
//! checking anything. Each run makes its own keyspace and drops it after.

use std::sync::Arc;

use natter_cassandra::{CassandraOptions, CassandraStore};
use natter_store::conformance;

fn cluster() -> Option<String> {
    std::env::var("NATTER_TEST_CASSANDRA")
        .ok()
        .filter(|s| !s.is_empty())
}

fn options(node: String) -> CassandraOptions {
    let keyspace = format!(
        "natter_test_{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    );
    CassandraOptions {
        contact_points: vec![node],
        keyspace,
        // A node older than Cassandra 3.0 (through tools/cql_v4_to_v3.py) has no
        // system_schema for the driver to read.
        schema_metadata: std::env::var("NATTER_TEST_CASSANDRA_V3").is_err(),
        ..CassandraOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cassandra_store_passes_the_conformance_suite() {
    let Some(node) = cluster() else {
        eprintln!("NATTER_TEST_CASSANDRA is not set: the Cassandra conformance suite did not run");
        return;
    };
    // RUST_LOG=scylla=debug shows what the driver does.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let opts = options(node);
    let store = Arc::new(
        CassandraStore::connect(opts.clone())
            .await
            .expect("connect"),
    );
    conformance::run_all(store.clone()).await;
    // Starting again on the same keyspace finds the schema current and the data there.
    let again = CassandraStore::connect(opts).await.expect("reconnect");
    drop(store);
    again.drop_keyspace().await.expect("drop the test keyspace");
}
