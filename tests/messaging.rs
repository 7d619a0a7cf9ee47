//! One-to-one messaging end to end: a real natter process, real MQTT clients.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{connect, Server};
use serde_json::json;

fn server_with_alice_and_bob() -> Server {
    let s = Server::start();
    s.add_user("alice", "alice-pw");
    s.add_user("bob", "bob-pw");
    s
}

#[tokio::test]
async fn bob_receives_what_alice_sent_and_alice_gets_a_sent_receipt() {
    let s = server_with_alice_and_bob();
    let mut bob = connect(s.mqtt, "bob", "phone", "bob-pw").await;
    bob.subscribe_all().await;
    let mut alice = connect(s.mqtt, "alice", "phone", "alice-pw").await;
    alice.subscribe_all().await;

    alice
        .send(
            "u/bob",
            json!({"cid": "c-1", "type": "text", "body": "hi bob"}),
        )
        .await;

    let m = bob.recv("u/bob/m").await;
    assert_eq!(m["body"], "hi bob");
    assert_eq!(m["chat"], "u/alice");
    assert_eq!(m["from"], "alice");
    assert_eq!(m["dev"], "phone");
    assert_eq!(m["cid"], "c-1");
    assert_eq!(m["seq"], 1);
    assert_eq!(m["id"].as_str().unwrap().len(), 26, "a ULID");

    let r = alice.recv("u/alice/r").await;
    assert_eq!(r["status"], "sent");
    assert_eq!(r["id"], m["id"]);
    assert_eq!(r["cid"], "c-1");
    assert_eq!(r["chat"], "u/bob");
}

#[tokio::test]
async fn bob_gets_what_alice_sent_while_he_was_offline_by_sync() {
    let s = server_with_alice_and_bob();
    let mut alice = connect(s.mqtt, "alice", "phone", "alice-pw").await;
    for i in 0..3 {
        alice
            .send(
                "u/bob",
                json!({"cid": format!("c{i}"), "body": format!("msg {i}")}),
            )
            .await;
    }
    let mut bob = connect(s.mqtt, "bob", "phone", "bob-pw").await;
    bob.subscribe_all().await;
    let all = bob.sync_all(0).await;
    let bodies: Vec<_> = all.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["msg 0", "msg 1", "msg 2"]);
    let seqs: Vec<_> = all.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
    // A device that holds seq 2 gets only what follows.
    let rest = bob.sync_all(2).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["body"], "msg 2");
}

#[tokio::test]
async fn both_of_bobs_devices_get_the_message_and_alices_other_device_gets_her_copy() {
    let s = server_with_alice_and_bob();
    let mut bob_phone = connect(s.mqtt, "bob", "phone", "bob-pw").await;
    bob_phone.subscribe_all().await;
    let mut bob_laptop = connect(s.mqtt, "bob", "laptop", "bob-pw").await;
    bob_laptop.subscribe_all().await;
    let mut alice_tablet = connect(s.mqtt, "alice", "tablet", "alice-pw").await;
    alice_tablet.subscribe_all().await;
    let mut alice_phone = connect(s.mqtt, "alice", "phone", "alice-pw").await;

    alice_phone
        .send("u/bob", json!({"cid": "x", "body": "to all devices"}))
        .await;

    for bob in [&mut bob_phone, &mut bob_laptop] {
        let m = bob.recv("u/bob/m").await;
        assert_eq!(m["body"], "to all devices");
        assert_eq!(m["chat"], "u/alice");
    }
    let own = alice_tablet.recv("u/alice/m").await;
    assert_eq!(own["body"], "to all devices");
    assert_eq!(own["chat"], "u/bob", "her copy is addressed from her side");
    assert_eq!(own["dev"], "phone");
    assert_eq!(own["seq"], 1);
}

#[tokio::test]
async fn a_resend_with_the_same_cid_is_delivered_once_and_keeps_its_id() {
    let s = server_with_alice_and_bob();
    let mut bob = connect(s.mqtt, "bob", "phone", "bob-pw").await;
    bob.subscribe_all().await;
    let mut alice = connect(s.mqtt, "alice", "phone", "alice-pw").await;
    alice.subscribe_all().await;

    alice
        .send("u/bob", json!({"cid": "dup", "body": "once"}))
        .await;
    let first = alice.recv("u/alice/r").await;
    alice
        .send("u/bob", json!({"cid": "dup", "body": "once"}))
        .await;
    let second = alice.recv("u/alice/r").await;
    assert_eq!(
        first["id"], second["id"],
        "the resend names the first message"
    );

    let m = bob.recv("u/bob/m").await;
    assert_eq!(m["body"], "once");
    bob.nothing_on("u/bob/m", Duration::from_millis(500)).await;
    assert_eq!(bob.sync_all(0).await.len(), 1);
}

#[tokio::test]
async fn a_plain_text_payload_is_a_text_message() {
    let s = server_with_alice_and_bob();
    let mut bob = connect(s.mqtt, "bob", "phone", "bob-pw").await;
    bob.subscribe_all().await;
    let mut alice = connect(s.mqtt, "alice", "phone", "alice-pw").await;
    let r = alice.publish("m/u/bob", "door open").await;
    assert_eq!(r, rumqttc::v5::mqttbytes::v5::PubAckReason::Success);
    let m = bob.recv("u/bob/m").await;
    assert_eq!(m["type"], "text");
    assert_eq!(m["body"], "door open");
    assert!(m.get("cid").is_none());
}

#[tokio::test]
async fn history_pages_newest_first_and_chats_list_unread_counts() {
    let s = server_with_alice_and_bob();
    s.add_user("carol", "carol-pw");
    let mut alice = connect(s.mqtt, "alice", "phone", "alice-pw").await;
    alice.subscribe_all().await;
    let mut bob = connect(s.mqtt, "bob", "phone", "bob-pw").await;
    let mut carol = connect(s.mqtt, "carol", "phone", "carol-pw").await;
    for i in 0..5 {
        bob.send("u/alice", json!({"body": format!("b{i}")})).await;
    }
    carol.send("u/alice", json!({"body": "from carol"})).await;

    let page = alice
        .request("history", json!({"chat": "u/bob", "limit": 3}))
        .await;
    assert_eq!(page["ok"], true, "{page}");
    let bodies: Vec<_> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["b4", "b3", "b2"]);
    assert_eq!(page["more"], true);
    let before = page["messages"][2]["id"].clone();
    let older = alice
        .request(
            "history",
            json!({"chat": "u/bob", "before": before, "limit": 3}),
        )
        .await;
    let bodies: Vec<_> = older["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["b1", "b0"]);
    assert_eq!(older["more"], false);

    let chats = alice.request("chats", json!({})).await;
    assert_eq!(chats["ok"], true, "{chats}");
    let list = chats["chats"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["chat"], "u/carol");
    assert_eq!(list[0]["unread"], 1);
    assert_eq!(list[0]["last"]["body"], "from carol");
    assert_eq!(list[1]["chat"], "u/bob");
    assert_eq!(list[1]["unread"], 5);
}

#[tokio::test]
async fn websocket_clients_chat_too() {
    let s = server_with_alice_and_bob();
    let mut bob = connect(s.mqtt, "bob", "phone", "bob-pw").await;
    bob.subscribe_all().await;
    let mut o =
        rumqttc::v5::MqttOptions::new("alice:web", format!("ws://127.0.0.1:{}/mqtt", s.ws), s.ws);
    o.set_transport(rumqttc::Transport::Ws);
    o.set_credentials("alice", "alice-pw");
    let mut alice = common::connect_with(o)
        .await
        .expect("websocket CONNECT accepted");
    alice.send("u/bob", json!({"body": "over websocket"})).await;
    assert_eq!(bob.recv("u/bob/m").await["body"], "over websocket");
}

#[tokio::test]
async fn a_sync_page_stops_before_it_outgrows_one_mqtt_packet() {
    let s = server_with_alice_and_bob();
    let mut alice = connect(s.mqtt, "alice", "phone", "alice-pw").await;
    let big = "x".repeat(60_000);
    for i in 0..10 {
        alice
            .send("u/bob", json!({"cid": format!("big{i}"), "body": big}))
            .await;
    }
    let mut bob = connect(s.mqtt, "bob", "phone", "bob-pw").await;
    bob.subscribe_all().await;
    let first = bob.request("sync", json!({"after": 0, "limit": 500})).await;
    let n = first["messages"].as_array().unwrap().len();
    assert!(
        (1..10).contains(&n),
        "the first page holds some, not all ({n})"
    );
    assert_eq!(first["more"], true);
    let all = bob.sync_all(0).await;
    assert_eq!(all.len(), 10);
    assert!(all
        .iter()
        .all(|m| m["body"].as_str().unwrap().len() == 60_000));
}
