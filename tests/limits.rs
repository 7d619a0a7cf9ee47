//! Per-user limits: message and request rates, devices at once, groups. Hitting one refuses
//! that user's next publish with a clear error and never slows anyone else.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{connect, options, Server};
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, PubAckReason};
use serde_json::json;

#[tokio::test]
async fn a_user_over_the_message_rate_is_told_and_others_go_on() {
    let s = Server::start_with_users(
        "[limits]\nmessages_per_sec = 2.0\nmessages_burst = 3\n",
        &["alice", "bob"],
    );
    let mut alice = s.online("alice", "phone").await;
    let mut bob = s.online("bob", "phone").await;
    for i in 0..3 {
        alice
            .send("u/bob", json!({"cid": format!("a{i}"), "body": "hi"}))
            .await;
    }
    let r = alice
        .publish(
            "m/u/bob",
            json!({"cid": "a3", "body": "one too many"}).to_string(),
        )
        .await;
    assert_eq!(r, PubAckReason::QuotaExceeded);
    let err = alice.recv("d/alice/phone").await;
    assert_eq!(err["error"]["code"], "rate_limited");
    assert_eq!(err["cid"], "a3");

    // Bob's own allowance is untouched by Alice's.
    bob.send("u/alice", json!({"cid": "b0", "body": "fine here"}))
        .await;

    // The bucket refills at 2 per second: half a second later one more goes through.
    tokio::time::sleep(Duration::from_millis(600)).await;
    alice
        .send("u/bob", json!({"cid": "a3", "body": "now it fits"}))
        .await;
    let got: Vec<String> = bob
        .sync_all(0)
        .await
        .iter()
        .filter(|m| m["from"] == "alice")
        .map(|m| m["cid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        got,
        ["a0", "a1", "a2", "a3"],
        "the refused send was not kept"
    );
}

#[tokio::test]
async fn requests_have_their_own_rate() {
    let s = Server::start_with_users(
        "[limits]\nrequests_per_sec = 1.0\nrequests_burst = 2\n",
        &["alice"],
    );
    let mut alice = s.online("alice", "phone").await;
    assert_eq!(alice.request("chats", json!({})).await["ok"], true);
    assert_eq!(alice.request("chats", json!({})).await["ok"], true);
    let r = alice
        .publish("q/chats", json!({"id": "third"}).to_string())
        .await;
    assert_eq!(r, PubAckReason::QuotaExceeded);
    let answer = alice.recv("d/alice/phone").await;
    assert_eq!(answer["id"], "third");
    assert_eq!(answer["error"]["code"], "rate_limited");
    // Messages are not requests: sending is still allowed.
    alice.send("u/alice", json!({"body": "note to self"})).await;
}

#[tokio::test]
async fn one_device_more_than_the_limit_is_refused_until_one_leaves() {
    let s = Server::start_with_users("[limits]\nmax_connections_per_user = 2\n", &["alice"]);
    let phone = connect(s.mqtt, "alice", "phone", "pw").await;
    let _laptop = connect(s.mqtt, "alice", "laptop", "pw").await;
    let refused = common::connect_with(options(s.mqtt, "alice:tablet", "alice", "pw")).await;
    assert_eq!(refused.err(), Some(ConnectReturnCode::NotAuthorized));
    assert!(s.log().contains("too many devices connected"));

    drop(phone);
    // The server notices the dropped socket, then the tablet fits.
    let deadline = std::time::Instant::now() + common::WAIT;
    loop {
        match common::connect_with(options(s.mqtt, "alice:tablet2", "alice", "pw")).await {
            Ok(_) => break,
            Err(code) => {
                assert_eq!(code, ConnectReturnCode::NotAuthorized);
                assert!(std::time::Instant::now() < deadline, "the phone never left");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
