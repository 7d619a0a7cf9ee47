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

/// A keyspace of schema version 1 (a reader's view of a chat in one `chat_state` row) is
/// moved at start: unread counts, the chat list and reads up to a seq read as they did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_keyspace_keeps_its_unread_counts() {
    let Some(node) = cluster() else {
        eprintln!("NATTER_TEST_CASSANDRA is not set: the migration check did not run");
        return;
    };
    use natter_store::Store;
    use natter_types::{ChatKey, UserId};
    let opts = options(node);
    let ks = opts.keyspace.clone();
    let store = CassandraStore::connect(opts.clone())
        .await
        .expect("connect");
    let (a, b) = (UserId::new("mv-a").unwrap(), UserId::new("mv-b").unwrap());
    let chat = ChatKey::direct(&a, &b);
    let mut sent = Vec::new();
    for i in 0..4 {
        let ap = store
            .append(conformance::text(&a, &b, None, &format!("m{i}")))
            .await
            .unwrap();
        let seq = |u: &UserId| ap.seqs.iter().find(|(r, _)| r == u).unwrap().1;
        sent.push((ap.message.id, seq(&a), seq(&b)));
    }
    drop(store);
    // What version 1 had written for these sends, had Bob read up to the first message.
    let raw = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&opts.contact_points)
        .fetch_schema_metadata(opts.schema_metadata)
        .build()
        .await
        .expect("a session of our own");
    let id = |i: usize| sent[i].0 .0.to_be_bytes().to_vec();
    let (last_a, last_b, first_b) = (sent[3].1 as i64, sent[3].2 as i64, sent[0].2 as i64);
    let state = format!(
        "INSERT INTO {ks}.chat_state (uid, chat, last_id, last_seq, unread, read_seq) \
         VALUES (?, ?, ?, ?, ?, ?)"
    );
    for (uid, seq, unread, read) in [("mv-a", last_a, 0i64, last_a), ("mv-b", last_b, 3, first_b)] {
        raw.query_unpaged(
            state.clone(),
            (uid, chat.as_str(), id(3), seq, unread, read),
        )
        .await
        .unwrap();
        raw.query_unpaged(
            format!("DELETE FROM {ks}.chat_log WHERE uid = ? AND chat = ?"),
            (uid, chat.as_str()),
        )
        .await
        .unwrap();
        raw.query_unpaged(format!("DELETE FROM {ks}.read_ptrs WHERE uid = ?"), (uid,))
            .await
            .unwrap();
    }
    raw.query_unpaged(
        format!("INSERT INTO {ks}.natter_schema (component, version) VALUES ('store', 1)"),
        (),
    )
    .await
    .unwrap();
    let store = CassandraStore::connect(opts).await.expect("migrate");
    let bob = store.chats(&b).await.unwrap();
    assert_eq!(bob.len(), 1);
    assert_eq!((bob[0].unread, bob[0].last_seq), (3, sent[3].2));
    assert_eq!(store.chats(&a).await.unwrap()[0].unread, 0);
    let r = store.read_upto(&b, &chat, sent[1].2).await.unwrap();
    let bodies: Vec<_> = r
        .newly_read
        .iter()
        .map(|m| m.content.body.clone())
        .collect();
    assert_eq!(bodies, ["m1"]);
    assert_eq!((r.unread, r.read_seq), (2, sent[1].2));
    store
        .append(conformance::text(&a, &b, None, "m4"))
        .await
        .unwrap();
    assert_eq!(store.chats(&b).await.unwrap()[0].unread, 3);
    let rest = store.read_upto(&b, &chat, u64::MAX).await.unwrap();
    assert_eq!((rest.newly_read.len(), rest.unread), (3, 0));
    store.drop_keyspace().await.expect("drop the test keyspace");
}
