//! natter on Cassandra, end to end: a real `natter serve` whose store is a Cassandra or
//! ScyllaDB node, and real MQTT clients.
//!
//! The chat tests need a node: they run where `NATTER_TEST_CASSANDRA=host:port` names one (set
//! `NATTER_TEST_CASSANDRA_V3=1` as well for a pre-3.0 node behind `cassandra/tools/`'s bridge)
//! and say that they did not run elsewhere. Each uses its own keyspace.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{connect, Server};
use serde_json::json;

fn cluster() -> Option<String> {
    std::env::var("NATTER_TEST_CASSANDRA")
        .ok()
        .filter(|s| !s.is_empty())
}

fn store_config(node: &str, keyspace: &str) -> String {
    let legacy = std::env::var("NATTER_TEST_CASSANDRA_V3").is_ok();
    format!(
        "[store]\nbackend = \"cassandra\"\n[store.cassandra]\ncontact_points = [\"{node}\"]\n\
         keyspace = \"{keyspace}\"\nschema_metadata = {}\n",
        !legacy
    )
}

#[test]
fn natter_refuses_to_start_when_the_cluster_cannot_be_reached() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("natter.toml");
    let dead = format!("127.0.0.1:{}", common::free_port());
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n{}connect_timeout_secs = 2\n",
            dir.path().join("data"),
            store_config(&dead, "natter")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "natter must not serve without its store"
    );
    assert!(
        err.contains("store.cassandra.contact_points") && err.contains(&dead),
        "the error names the key and the address: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_gets_what_alice_sent_while_he_was_offline_after_natter_restarts_on_cassandra() {
    let Some(node) = cluster() else {
        eprintln!("NATTER_TEST_CASSANDRA is not set: natter on Cassandra was not run");
        return;
    };
    let keyspace = format!(
        "natter_e2e_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    );
    let mut s = Server::start_with(&store_config(&node, &keyspace));
    s.add_user("alice", "alice-pw");
    s.add_user("bob", "bob-pw");
    let mut alice = connect(s.mqtt, "alice", "phone", "alice-pw").await;
    alice.subscribe_all().await;
    for i in 0..3 {
        alice
            .send(
                "u/bob",
                json!({"cid": format!("c{i}"), "body": format!("msg {i}")}),
            )
            .await;
        assert_eq!(alice.recv("u/alice/r").await["status"], "sent");
    }
    // A resend is still one message.
    alice
        .send("u/bob", json!({"cid": "c1", "body": "msg 1"}))
        .await;
    drop(alice);

    // Everything lives in the cluster: a restarted natter (kill -9) serves it.
    s.restart();
    let mut bob = connect(s.mqtt, "bob", "phone", "bob-pw").await;
    bob.subscribe_all().await;
    let all = bob.sync_all(0).await;
    let bodies: Vec<_> = all.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["msg 0", "msg 1", "msg 2"]);
    let seqs: Vec<_> = all.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);

    let page = bob
        .request("history", json!({"chat": "u/alice", "limit": 2}))
        .await;
    assert_eq!(page["ok"], true, "{page}");
    assert_eq!(page["messages"][0]["body"], "msg 2");
    assert_eq!(page["more"], true);
    let chats = bob.request("chats", json!({})).await;
    assert_eq!(chats["chats"][0]["chat"], "u/alice");
    assert_eq!(chats["chats"][0]["unread"], 3);

    // New messages after the restart continue Bob's seqs where they were.
    let mut alice = connect(s.mqtt, "alice", "phone", "alice-pw").await;
    alice.send("u/bob", json!({"body": "after"})).await;
    let m = bob.recv("u/bob/m").await;
    assert_eq!(
        (m["body"].as_str(), m["seq"].as_u64()),
        (Some("after"), Some(4))
    );
}
