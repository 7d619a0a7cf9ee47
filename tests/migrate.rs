//! A data dir written by natter before the fjall store: `natter serve` refuses it naming the
//! command that converts it, `natter store migrate` converts it, and then every user finds
//! their chats, unread counts, inbox and groups as they left them.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{connect, Server};
use serde_json::{json, Value};

/// Puts the old store of tests/fixtures into `s`'s data dir, in place of its own.
fn put_old_store(s: &Server) {
    let data = s.data_dir();
    std::fs::remove_dir_all(data.join("store")).unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/natter-0.1.redb.gz"
    );
    let out = Command::new("gzip")
        .args(["-dc", fixture])
        .output()
        .unwrap();
    assert!(out.status.success(), "gzip -dc {fixture}");
    std::fs::write(data.join("natter.redb"), out.stdout).unwrap();
}

/// `(chat kind, last seq, last body, unread)` of each chat `user` lists, newest first.
async fn chats_of(s: &Server, user: &str) -> Vec<(String, u64, String, u64)> {
    let mut c = connect(s.mqtt, user, "tab", &format!("pw-{user}-123456")).await;
    c.subscribe_all().await;
    let answer = c.request("chats", json!({})).await;
    answer["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c: &Value| {
            let chat = c["chat"].as_str().unwrap();
            let kind = if chat.starts_with("g/") {
                "g/trio"
            } else {
                chat
            };
            (
                kind.to_owned(),
                c["last"]["seq"].as_u64().unwrap(),
                c["last"]["body"].as_str().unwrap().to_owned(),
                c["unread"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn chat(kind: &str, seq: u64, body: &str, unread: u64) -> (String, u64, String, u64) {
    (kind.to_owned(), seq, body.to_owned(), unread)
}

#[tokio::test]
async fn an_old_store_is_refused_then_migrated_and_every_user_finds_their_chats() {
    let mut s = Server::start();
    s.kill9();
    put_old_store(&s);

    let (ok, _, err) = s.cli(&["serve"], "");
    assert!(!ok, "natter serve must refuse a data dir it would not read");
    assert!(err.contains("natter store migrate"), "{err}");
    assert!(err.contains("natter.redb"), "{err}");

    let (ok, out, err) = s.cli(&["store", "migrate"], "");
    assert!(ok, "{err}");
    assert!(out.contains("3 users, 6 messages"), "{out}");
    assert!(err.contains("inbox entries"), "progress is shown: {err}");
    // A second run finds the new store there and changes nothing.
    let (ok, _, err) = s.cli(&["store", "migrate"], "");
    assert!(!ok);
    assert!(err.contains("already holds a store"), "{err}");

    s.start_again();
    assert_eq!(
        chats_of(&s, "alice").await,
        [chat("g/trio", 6, "hi trio", 1), chat("u/bob", 4, "good", 0)]
    );
    assert_eq!(
        chats_of(&s, "bob").await,
        [
            chat("g/trio", 6, "hi trio", 2),
            chat("u/alice", 4, "good", 1)
        ]
    );
    assert_eq!(
        chats_of(&s, "carol").await,
        [chat("g/trio", 2, "hi trio", 0)]
    );

    // Bob's inbox is whole and goes on without a gap; his unread count follows his reads.
    let mut bob = connect(s.mqtt, "bob", "laptop", "pw-bob-123456").await;
    bob.subscribe_all().await;
    let bodies: Vec<String> = bob
        .sync_all(0)
        .await
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies.len(), 6);
    assert_eq!(
        bodies[..4],
        ["hello bob", "are you there?", "yes, hi alice", "good"]
    );
    let mut alice = connect(s.mqtt, "alice", "phone", "pw-alice-123456").await;
    alice.subscribe_all().await;
    alice
        .send("u/bob", json!({"cid": "a4", "body": "after the move"}))
        .await;
    let m = bob.recv("u/bob/m").await;
    assert_eq!(
        (m["seq"].as_u64(), m["body"].as_str()),
        (Some(7), Some("after the move"))
    );
    assert_eq!(
        chats_of(&s, "bob").await[0],
        chat("u/alice", 7, "after the move", 2)
    );
    bob.publish("r/u/alice", json!({"upto": 7}).to_string())
        .await;
    let mut unread = u64::MAX;
    for _ in 0..50 {
        unread = chats_of(&s, "bob").await[0].3;
        if unread == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(unread, 0);
    // The group goes on too: carol is still a member.
    let mut carol = connect(s.mqtt, "carol", "phone", "pw-carol-123456").await;
    carol.subscribe_all().await;
    let info = carol.request("chats", json!({})).await;
    let group = info["chats"][0]["chat"].as_str().unwrap().to_owned();
    carol.send(&group, json!({"body": "still here"})).await;
    assert_eq!(bob.recv("u/bob/m").await["body"], "still here");
}
