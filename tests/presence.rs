//! Presence: online while any device is connected, offline with last_seen however the last one
//! goes. The same suite runs on the in-process backend and on a real redis-server.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{connect, raw_connect, Mqtt, Redis, Server};
use serde_json::{json, Value};

async fn next_presence(alice: &mut Mqtt) -> Value {
    alice.recv("p/bob").await
}

async fn asked(alice: &mut Mqtt) -> Value {
    let a = alice.request("presence", json!({"users": ["bob"]})).await;
    assert_eq!(a["ok"], true, "{a}");
    a["presence"][0].clone()
}

async fn presence_suite(s: &Server) {
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut alice = connect(s.mqtt, "alice", "phone", "pw").await;
    alice.subscribe_all().await;
    alice
        .send("u/bob", json!({"body": "now we share a chat"}))
        .await;
    assert!(matches!(
        alice.subscribe("p/bob").await,
        rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
    ));
    assert_eq!(asked(&mut alice).await["state"], "offline");

    // Clean DISCONNECT.
    let mut bob = raw_connect(s.mqtt, "bob:phone", "bob", "pw", 60);
    assert_eq!(next_presence(&mut alice).await["state"], "online");
    assert_eq!(asked(&mut alice).await["state"], "online");
    let before = common_now();
    // DISCONNECT, then close, as the spec has clients do.
    std::io::Write::write_all(&mut bob, &[0xE0, 0x00]).unwrap();
    drop(bob);
    let off = next_presence(&mut alice).await;
    assert_eq!(off["state"], "offline");
    assert!(off["last_seen"].as_u64().unwrap() >= before);
    let q = asked(&mut alice).await;
    assert_eq!(q["state"], "offline");
    assert_eq!(q["last_seen"], off["last_seen"]);

    // Two devices: offline only when the last goes; a dropped socket counts as gone.
    let bob_phone = raw_connect(s.mqtt, "bob:phone2", "bob", "pw", 60);
    assert_eq!(next_presence(&mut alice).await["state"], "online");
    let bob_laptop = connect(s.mqtt, "bob", "laptop", "pw").await;
    drop(bob_phone);
    alice.nothing_on("p/bob", Duration::from_millis(500)).await;
    assert_eq!(asked(&mut alice).await["state"], "online");
    drop(bob_laptop);
    assert_eq!(next_presence(&mut alice).await["state"], "offline");

    // A device that goes silent is offline once its keepalive expires.
    let silent = raw_connect(s.mqtt, "bob:watch", "bob", "pw", 1);
    assert_eq!(next_presence(&mut alice).await["state"], "online");
    assert_eq!(
        next_presence(&mut alice).await["state"],
        "offline",
        "keepalive expiry"
    );
    drop(silent);
}

fn common_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn presence_follows_devices_in_process() {
    let s = Server::start();
    presence_suite(&s).await;
}

#[tokio::test]
async fn presence_follows_devices_in_redis() {
    let redis = Redis::start();
    let s = Server::start_with(&format!(
        "[presence]\nbackend = \"redis\"\nredis_url = \"{}\"\nttl_secs = 3\n",
        redis.url()
    ));
    presence_suite(&s).await;
}

#[tokio::test]
async fn messaging_survives_redis_going_away_and_presence_recovers() {
    let mut redis = Redis::start();
    let s = Server::start_with_users(
        &format!(
            "[presence]\nbackend = \"redis\"\nredis_url = \"{}\"\nttl_secs = 3\n",
            redis.url()
        ),
        &["alice", "bob"],
    );
    let mut alice = connect(s.mqtt, "alice", "phone", "pw").await;
    alice.subscribe_all().await;
    let mut bob = connect(s.mqtt, "bob", "phone", "pw").await;
    bob.subscribe_all().await;
    alice.send("u/bob", json!({"body": "before"})).await;
    bob.recv("u/bob/m").await;
    assert_eq!(asked(&mut alice).await["state"], "online");

    redis.kill();
    alice
        .send("u/bob", json!({"cid": "during", "body": "redis is down"}))
        .await;
    assert_eq!(bob.recv("u/bob/m").await["body"], "redis is down");
    assert_eq!(asked(&mut alice).await["state"], "unknown");
    let carol_can_still_connect = {
        s.add_user("carol", "pw");
        connect(s.mqtt, "carol", "phone", "pw").await
    };
    drop(carol_can_still_connect);

    redis.restart();
    // The refresh loop (every ttl/3 = 1 s) puts this node's devices back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if asked(&mut alice).await["state"] == "online" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "presence did not recover"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn strangers_see_no_presence() {
    let s = Server::with_users(&["alice", "bob", "eve"]);
    let mut eve = connect(s.mqtt, "eve", "phone", "pw").await;
    eve.subscribe_all().await;
    let _bob = connect(s.mqtt, "bob", "phone", "pw").await;
    let a = eve
        .request("presence", json!({"users": ["bob", "eve"]}))
        .await;
    assert_eq!(a["presence"][0]["state"], "not_allowed");
    assert_eq!(a["presence"][1]["state"], "online");
    assert!(!matches!(
        eve.subscribe("p/bob").await,
        rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
    ));
}
