//! `kill -9` in the middle of a burst: every message that got a PUBACK survives, exactly once,
//! with gap-free seqs.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::{connect, Burst, BurstStep, Server};
use serde_json::json;

const TOTAL: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_acked_before_kill_9_is_in_bobs_sync_exactly_once() {
    // A burst far over the default per-user rate: this test is about durability.
    let mut s = Server::start_with_users(
        "[limits]\nmessages_per_sec = 100000.0\nmessages_burst = 100000\n",
        &["alice", "bob"],
    );

    let mut burst = Burst::start(s.mqtt, TOTAL);
    let mut acked: HashSet<usize> = HashSet::new();
    let kill_after = 300;
    loop {
        match burst.step().await {
            BurstStep::PubAck(n, _) => {
                acked.insert(n);
                if acked.len() == kill_after {
                    s.kill9();
                }
            }
            BurstStep::Ended => break,
            _ => {}
        }
    }
    let sent = burst.sent;
    drop(burst);
    assert!(acked.len() >= kill_after, "natter was killed mid-burst");
    assert!(
        sent > acked.len(),
        "some messages were still in flight at the kill (sent {sent})"
    );

    s.restart();
    let inbox = common::every_acked_message_kept_once(&s, &acked).await;
    for (i, m) in inbox.iter().enumerate() {
        assert_eq!(
            m["seq"].as_u64().unwrap(),
            i as u64 + 1,
            "seqs are gap-free"
        );
    }
    let mut bob = s.online("bob", "laptop").await;
    // The inbox goes on where it stopped.
    let mut alice = connect(s.mqtt, "alice", "phone", "pw").await;
    alice
        .send("u/bob", json!({"cid": "after", "body": "after restart"}))
        .await;
    let m = bob.recv("u/bob/m").await;
    assert_eq!(m["seq"].as_u64().unwrap(), inbox.len() as u64 + 1);
}
