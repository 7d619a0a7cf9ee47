//! Receipts (sent → delivered → read), read pointers and typing.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{connect, Mqtt, Server};
use rumqttc::v5::mqttbytes::v5::PubAckReason;
use rumqttc::v5::mqttbytes::QoS;
use serde_json::{json, Value};

async fn receipt(c: &mut Mqtt) -> Value {
    let topic = format!("u/{}/r", c.user);
    c.recv(&topic).await
}

#[tokio::test]
async fn a_one_to_one_message_goes_sent_delivered_read() {
    let s = Server::with_users(&["alice", "bob"]);
    let mut alice = s.online("alice", "phone").await;
    let mut bob = s.online("bob", "phone").await;
    let mut bob_laptop = s.online("bob", "laptop").await;
    alice
        .send("u/bob", json!({"cid": "m1", "body": "hello"}))
        .await;

    let sent = receipt(&mut alice).await;
    assert_eq!(sent["status"], "sent");
    let m = bob.recv("u/bob/m").await;
    bob_laptop.recv("u/bob/m").await;
    let delivered = receipt(&mut alice).await;
    assert_eq!(delivered["status"], "delivered");
    assert_eq!(delivered["id"], m["id"]);
    assert_eq!(delivered["cid"], "m1");
    assert_eq!(delivered["by"], "bob");
    assert_eq!(delivered["chat"], "u/bob");
    // Two devices acked; the receipt came once.
    alice
        .nothing_on("u/alice/r", Duration::from_millis(400))
        .await;

    assert_eq!(
        bob.publish("r/u/alice", json!({"upto": m["seq"]}).to_string())
            .await,
        PubAckReason::Success
    );
    let read = receipt(&mut alice).await;
    assert_eq!(
        (read["status"].as_str(), read["id"].clone()),
        (Some("read"), m["id"].clone())
    );
    assert_eq!(read["by"], "bob");
    // Bob's other device hears what was read, and the unread count follows.
    let ev = bob_laptop.recv("u/bob/e").await;
    assert_eq!(
        (ev["type"].as_str(), ev["chat"].as_str()),
        (Some("read"), Some("u/alice"))
    );
    assert_eq!(ev["upto"], m["seq"]);
    assert_eq!(ev["unread"], 0);
    let chats = bob_laptop.request("chats", json!({})).await;
    assert_eq!(chats["chats"][0]["unread"], 0);
    // Reading again tells nobody anything new.
    assert_eq!(
        bob.publish("r/u/alice", json!({"upto": m["seq"]}).to_string())
            .await,
        PubAckReason::Success
    );
    alice
        .nothing_on("u/alice/r", Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn alices_new_laptop_sees_in_history_how_far_bob_got_with_each_of_her_messages() {
    let s = Server::with_users(&["alice", "bob"]);
    let mut alice = s.online("alice", "phone").await;
    let mut bob = s.online("bob", "phone").await;
    let mut sent = Vec::new();
    for body in ["one", "two"] {
        alice
            .send("u/bob", json!({"cid": body, "body": body}))
            .await;
        sent.push(bob.recv("u/bob/m").await);
    }
    // Bob read the first; his phone has both (delivered). Then a third while he is away.
    assert_eq!(
        bob.publish("r/u/alice", json!({"upto": sent[0]["seq"]}).to_string())
            .await,
        PubAckReason::Success
    );
    // Her phone hears sent, delivered and read as they happen, in whatever order.
    let mut heard = std::collections::HashSet::new();
    while !(heard.contains("one read") && heard.contains("two delivered")) {
        let r = receipt(&mut alice).await;
        heard.insert(format!(
            "{} {}",
            r["cid"].as_str().unwrap(),
            r["status"].as_str().unwrap()
        ));
        assert!(heard.len() <= 6, "{heard:?}");
    }
    drop(bob);
    alice
        .send("u/bob", json!({"cid": "three", "body": "three"}))
        .await;
    while receipt(&mut alice).await["cid"] != "three" {}

    let mut laptop = s.online("alice", "laptop").await;
    let h = laptop.request("history", json!({"chat": "u/bob"})).await;
    let got: Vec<(&str, &str)> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["body"].as_str().unwrap(), m["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [("three", "sent"), ("two", "delivered"), ("one", "read")]
    );
    // Bob's history has no ticks on Alice's messages: they are not his to know.
    let mut bob = s.online("bob", "laptop").await;
    let h = bob.request("history", json!({"chat": "u/alice"})).await;
    assert!(
        h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m.get("status").is_none()),
        "{h}"
    );
}

#[tokio::test]
async fn messages_fetched_by_sync_are_delivered_and_read_by_ids_works_too() {
    let s = Server::with_users(&["alice", "bob"]);
    let mut alice = s.online("alice", "phone").await;
    alice
        .send("u/bob", json!({"cid": "a", "body": "while you were away"}))
        .await;
    alice
        .send("u/bob", json!({"cid": "b", "body": "and this"}))
        .await;
    assert_eq!(receipt(&mut alice).await["status"], "sent");
    assert_eq!(receipt(&mut alice).await["status"], "sent");
    alice
        .nothing_on("u/alice/r", Duration::from_millis(200))
        .await;

    // Bob's device only asks with sync; it never gets a live delivery.
    let mut bob = connect(s.mqtt, "bob", "tablet", "pw").await;
    assert!(bob.still_connected().await);
    let inbox = bob.sync_all(0).await;
    assert_eq!(inbox.len(), 2);
    let mut cids: Vec<String> = Vec::new();
    for _ in 0..2 {
        let r = receipt(&mut alice).await;
        assert_eq!(r["status"], "delivered");
        cids.push(r["cid"].as_str().unwrap().into());
    }
    cids.sort();
    assert_eq!(cids, ["a", "b"]);

    let second = inbox[1]["id"].clone();
    assert_eq!(
        bob.publish("r/u/alice", json!({"ids": [second]}).to_string())
            .await,
        PubAckReason::Success
    );
    let r = receipt(&mut alice).await;
    assert_eq!(
        (r["status"].as_str(), r["cid"].as_str()),
        (Some("read"), Some("b"))
    );
    // Bad read receipts are refused clearly.
    assert_eq!(
        bob.publish("r/u/alice", "{}").await,
        PubAckReason::PayloadFormatInvalid
    );
    assert_eq!(
        bob.publish("r/u/nobody", json!({"upto": 1}).to_string())
            .await,
        PubAckReason::NotAuthorized
    );
}

#[tokio::test]
async fn in_a_group_each_member_is_named_in_their_receipts() {
    let s = Server::with_users(&["alice", "bob", "carol"]);
    let mut alice = s.online("alice", "phone").await;
    let mut bob = s.online("bob", "phone").await;
    let mut carol = s.online("carol", "phone").await;
    let g = alice
        .request(
            "group.create",
            json!({"name": "trio", "members": ["bob", "carol"]}),
        )
        .await;
    let chat = format!("g/{}", g["group"]["id"].as_str().unwrap());
    bob.recv("u/bob/m").await;
    carol.recv("u/carol/m").await;
    alice.recv("u/alice/m").await;
    alice
        .send(&chat, json!({"cid": "gm", "body": "hi both"}))
        .await;
    assert_eq!(receipt(&mut alice).await["status"], "sent");
    let mut by = Vec::new();
    for _ in 0..2 {
        let r = receipt(&mut alice).await;
        assert_eq!(
            (r["status"].as_str(), r["chat"].as_str()),
            (Some("delivered"), Some(chat.as_str()))
        );
        by.push(r["by"].as_str().unwrap().to_owned());
    }
    by.sort();
    assert_eq!(by, ["bob", "carol"]);
    let mb = bob.recv("u/bob/m").await;
    let mc = carol.recv("u/carol/m").await;
    bob.publish(&format!("r/{chat}"), json!({"upto": mb["seq"]}).to_string())
        .await;
    carol
        .publish(&format!("r/{chat}"), json!({"upto": mc["seq"]}).to_string())
        .await;
    let mut by = Vec::new();
    for _ in 0..2 {
        let r = receipt(&mut alice).await;
        assert_eq!(r["status"], "read");
        by.push(r["by"].as_str().unwrap().to_owned());
    }
    by.sort();
    assert_eq!(by, ["bob", "carol"]);
}

#[tokio::test]
async fn typing_reaches_only_the_other_members_and_is_rate_limited() {
    let s = Server::with_users(&["alice", "bob", "carol"]);
    let mut alice = s.online("alice", "phone").await;
    let mut bob = s.online("bob", "phone").await;
    let mut carol = s.online("carol", "phone").await;
    alice
        .publish_with(
            "t/u/bob",
            QoS::AtMostOnce,
            false,
            json!({"state": "typing"}).to_string(),
        )
        .await;
    let ev = bob.recv("u/bob/e").await;
    assert_eq!(
        ev,
        json!({"type": "typing", "chat": "u/alice", "from": "alice", "state": "typing"})
    );
    carol
        .nothing_on("u/carol/e", Duration::from_millis(300))
        .await;
    alice
        .nothing_on("u/alice/e", Duration::from_millis(100))
        .await;

    let g = alice
        .request(
            "group.create",
            json!({"name": "g", "members": ["bob", "carol"]}),
        )
        .await;
    let gid = g["group"]["id"].as_str().unwrap().to_owned();
    for c in [&mut bob, &mut carol] {
        let topic = format!("u/{}/e", c.user);
        assert_eq!(c.recv(&topic).await["type"], "group");
    }
    assert_eq!(alice.recv("u/alice/e").await["action"], "created");
    // Four more fit the burst of five; the sixth is refused.
    for _ in 0..4 {
        let r = alice
            .publish(
                &format!("t/g/{gid}"),
                json!({"state": "typing"}).to_string(),
            )
            .await;
        assert_eq!(r, PubAckReason::Success);
    }
    assert_eq!(bob.recv("u/bob/e").await["chat"], format!("g/{gid}"));
    assert_eq!(carol.recv("u/carol/e").await["from"], "alice");
    let r = alice
        .publish(
            &format!("t/g/{gid}"),
            json!({"state": "paused"}).to_string(),
        )
        .await;
    assert_eq!(r, PubAckReason::QuotaExceeded);
    assert_eq!(
        alice.recv("d/alice/phone").await["error"]["code"],
        "rate_limited"
    );
    let r = alice
        .publish("t/u/bob", json!({"state": "dancing"}).to_string())
        .await;
    assert_eq!(r, PubAckReason::PayloadFormatInvalid);
    // Typing is never stored.
    assert!(bob.sync_all(0).await.iter().all(|m| m["type"] != "typing"));
}
