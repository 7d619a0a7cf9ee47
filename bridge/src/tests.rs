//! The chat rules, tested in process: a real bridge over a real embedded store, with a
//! recorder in place of the broker (what natter would publish, to which topic, how). The
//! end-to-end tests in `tests/` run the same rules through a real broker and real clients.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use natter_broker::{Gate, PublishVerdict};
use natter_config::Config;
use natter_store::embedded::{EmbeddedOptions, EmbeddedStore};
use natter_store::{Store, UserRecord};
use natter_types::topic::Outbound;
use natter_types::{Client, UserId};
use serde_json::Value;

use crate::outbound::{Broker, Delivery};
use crate::Bridge;

/// What the bridge published, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, Value, Delivery)>>);

#[async_trait]
impl Broker for Recorder {
    async fn publish(&self, topic: Outbound<'_>, payload: Bytes, how: Delivery) {
        let v = serde_json::from_slice(&payload).unwrap_or(Value::Null);
        self.0.lock().unwrap().push((topic.to_string(), v, how));
    }

    async fn end_sessions(&self, _user: &UserId) -> usize {
        0
    }
}

impl Recorder {
    /// Everything published to `topic`, and takes it out of the record.
    fn take(&self, topic: &str) -> Vec<(Value, Delivery)> {
        let mut all = self.0.lock().unwrap();
        let (mine, rest) = all.drain(..).partition(|(t, _, _)| t == topic);
        *all = rest;
        mine.into_iter().map(|(_, v, d)| (v, d)).collect()
    }
}

/// A bridge with users alice, bob and carol, and its recorder.
struct Chat {
    bridge: Bridge,
    out: Arc<Recorder>,
    _dir: tempfile::TempDir,
}

fn client(id: &str) -> Client {
    Client::parse(id).unwrap()
}

async fn chat() -> Chat {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(&dir.path().join("store"), EmbeddedOptions::default()).unwrap(),
    );
    for name in ["alice", "bob", "carol"] {
        let rec = UserRecord {
            id: UserId::new(name).unwrap(),
            password_hash: String::new(),
            created_ms: 1,
        };
        assert!(store.create_user(rec).await.unwrap());
    }
    // Groups here are made of users who never wrote to each other: add them, don't invite.
    let limits = natter_config::LimitsConfig {
        group_adds: natter_config::GroupAdds::Anyone,
        ..Default::default()
    };
    let config = Arc::new(Config {
        data_dir: dir.path().to_owned(),
        limits,
        ..Config::default()
    });
    let tokens = Arc::new(crate::auth::Tokens::load(&config.auth, dir.path()).unwrap());
    let media =
        Arc::new(natter_media::Media::open(&config.media, dir.path(), config.http.listen).unwrap());
    let out = Arc::new(Recorder::default());
    let bridge = Bridge::new(
        store,
        out.clone(),
        tokens,
        config,
        Arc::new(crate::presence::MemoryPresence::default()),
        None,
        media,
    );
    Chat {
        bridge,
        out,
        _dir: dir,
    }
}

impl Chat {
    async fn publish(&self, who: &str, topic: &str, payload: &str) -> PublishVerdict {
        let c = client(who);
        self.bridge
            .publish(&c, topic, Bytes::from(payload.to_owned()))
            .await
    }
}

#[tokio::test]
async fn bob_gets_what_alice_sent_and_alice_gets_sent() {
    let t = chat().await;
    let v = t
        .publish("alice:phone", "m/u/bob", r#"{"cid":"c1","body":"hi"}"#)
        .await;
    assert!(matches!(v, PublishVerdict::Handled));
    let to_bob = t.out.take("u/bob/m");
    assert_eq!(to_bob.len(), 1);
    let (m, how) = &to_bob[0];
    assert_eq!(*how, Delivery::Reliable);
    assert_eq!(m["chat"], "u/alice");
    assert_eq!(m["body"], "hi");
    assert_eq!(m["seq"], 1);
    // Alice's other devices get her message too, in her own chat's name.
    let to_alice = t.out.take("u/alice/m");
    assert_eq!(to_alice[0].0["chat"], "u/bob");
    let sent = t.out.take("u/alice/r");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0["status"], "sent");
    assert_eq!(sent[0].0["cid"], "c1");
    assert!(sent[0].0.get("by").is_none());
}

#[tokio::test]
async fn a_resent_cid_gets_its_receipt_again_but_is_delivered_once() {
    let t = chat().await;
    for _ in 0..2 {
        t.publish("alice:phone", "m/u/bob", r#"{"cid":"same","body":"hi"}"#)
            .await;
    }
    assert_eq!(t.out.take("u/bob/m").len(), 1);
    assert_eq!(t.out.take("u/alice/r").len(), 2);
}

#[tokio::test]
async fn a_stranger_cannot_write_to_a_group_and_is_told_why_on_her_device() {
    let t = chat().await;
    t.publish(
        "alice:phone",
        "q/group.create",
        r#"{"id":1,"name":"team","members":["bob"]}"#,
    )
    .await;
    let answer = t.out.take("d/alice/phone");
    let chat = answer[0].0["group"]["chat"].as_str().unwrap().to_owned();
    t.out.0.lock().unwrap().clear();
    let v = t
        .publish(
            "carol:laptop",
            &format!("m/{chat}"),
            r#"{"cid":"x","body":"hi"}"#,
        )
        .await;
    assert!(matches!(v, PublishVerdict::Refused(..)));
    let report = t.out.take("d/carol/laptop");
    assert_eq!(report[0].0["error"]["code"], "not_authorized");
    assert_eq!(report[0].0["cid"], "x");
    assert!(t.out.0.lock().unwrap().is_empty(), "nothing else published");
}

#[tokio::test]
async fn typing_reaches_the_other_reader_at_most_once_and_is_rate_limited() {
    let t = chat().await;
    let alice = client("alice:phone");
    t.bridge.connected(&alice).await;
    for _ in 0..5 {
        let v = t
            .publish("alice:phone", "t/u/bob", r#"{"state":"typing"}"#)
            .await;
        assert!(matches!(v, PublishVerdict::Handled));
    }
    let got = t.out.take("u/bob/e");
    assert_eq!(got.len(), 5);
    assert_eq!(got[0].1, Delivery::Transient);
    assert_eq!(got[0].0["chat"], "u/alice");
    assert!(t.out.take("u/alice/e").is_empty(), "the typist is not told");
    let v = t
        .publish("alice:phone", "t/u/bob", r#"{"state":"typing"}"#)
        .await;
    assert!(matches!(v, PublishVerdict::Refused(..)));
}

#[tokio::test]
async fn a_request_is_answered_on_the_asking_device_with_its_id() {
    let t = chat().await;
    t.publish("bob:tablet", "q/chats", r#"{"id":"r1"}"#).await;
    let a = t.out.take("d/bob/tablet");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].0["id"], "r1");
    assert_eq!(a[0].0["ok"], true);
    t.publish("bob:tablet", "q/nope", r#"{"id":7}"#).await;
    let a = t.out.take("d/bob/tablet");
    assert_eq!(a[0].0["id"], 7);
    assert_eq!(a[0].0["error"]["code"], "unknown_method");
}

#[tokio::test]
async fn reading_tells_the_sender_once_and_the_readers_other_devices() {
    let t = chat().await;
    t.publish("alice:phone", "m/u/bob", r#"{"cid":"c1","body":"hi"}"#)
        .await;
    t.out.0.lock().unwrap().clear();
    for _ in 0..2 {
        t.publish("bob:tablet", "r/u/alice", r#"{"upto":1}"#).await;
    }
    let receipts = t.out.take("u/alice/r");
    assert_eq!(receipts.len(), 1, "read once, told once");
    assert_eq!(receipts[0].0["status"], "read");
    assert_eq!(receipts[0].0["by"], "bob");
    let events = t.out.take("u/bob/e");
    assert_eq!(events[0].0["type"], "read");
    assert_eq!(events[0].0["upto"], 1);
}

#[tokio::test]
async fn two_devices_acking_one_message_make_one_delivered_receipt() {
    let t = chat().await;
    t.publish("alice:phone", "m/u/bob", r#"{"cid":"c1","body":"hi"}"#)
        .await;
    let copy = Bytes::from(t.out.take("u/bob/m")[0].0.to_string());
    t.out.0.lock().unwrap().clear();
    for device in ["bob:tablet", "bob:phone"] {
        t.bridge.acked(&client(device), "u/bob/m", &copy).await;
    }
    // Acks are recorded by a task of their own: wait until it has told the sender.
    let mut delivered = Vec::new();
    for _ in 0..200 {
        delivered.extend(t.out.take("u/alice/r"));
        if !delivered.is_empty() && t.bridge.delivered.pending() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].0["status"], "delivered");
    assert_eq!(delivered[0].0["by"], "bob");
    assert_eq!(delivered[0].0["cid"], "c1");
}

/// Creates a group of alice (admin) and `members`; returns its chat address (`g/…`).
async fn group(t: &Chat, members: &str) -> String {
    let body = format!(r#"{{"id":1,"name":"team","members":{members}}}"#);
    t.publish("alice:phone", "q/group.create", &body).await;
    let answer = t.out.take("d/alice/phone");
    let chat = answer[0].0["group"]["chat"].as_str().unwrap().to_owned();
    t.out.0.lock().unwrap().clear();
    chat
}

#[tokio::test]
async fn a_group_message_reaches_every_member_once_with_their_own_seq() {
    let t = chat().await;
    let g = group(&t, r#"["bob","carol"]"#).await;
    t.publish("bob:tablet", &format!("m/{g}"), r#"{"body":"hello all"}"#)
        .await;
    for reader in ["alice", "bob", "carol"] {
        let got = t.out.take(&format!("u/{reader}/m"));
        assert_eq!(got.len(), 1, "{reader}");
        assert_eq!(got[0].0["chat"], g.as_str());
        assert_eq!(got[0].0["from"], "bob");
        // The group's creation message was each member's first; this is their second.
        assert_eq!(got[0].0["seq"], 2, "{reader}");
    }
}

#[tokio::test]
async fn a_removed_member_is_told_and_then_hears_nothing_more() {
    let t = chat().await;
    let g = group(&t, r#"["bob","carol"]"#).await;
    let id = g.trim_start_matches("g/");
    t.publish(
        "alice:phone",
        "q/group.remove",
        &format!(r#"{{"id":2,"group":"{id}","members":["carol"]}}"#),
    )
    .await;
    let told = t.out.take("u/carol/m");
    assert_eq!(told.len(), 1, "carol reads the message that removes her");
    assert_eq!(told[0].0["type"], "system");
    let event = t.out.take("u/carol/e");
    assert_eq!(event[0].0["action"], "removed");
    t.out.0.lock().unwrap().clear();
    t.publish("alice:phone", &format!("m/{g}"), r#"{"body":"after"}"#)
        .await;
    assert!(t.out.take("u/carol/m").is_empty());
    assert_eq!(t.out.take("u/bob/m").len(), 1);
    let v = t
        .publish(
            "carol:laptop",
            &format!("m/{g}"),
            r#"{"body":"still here?"}"#,
        )
        .await;
    assert!(matches!(v, PublishVerdict::Refused(..)));
}

#[tokio::test]
async fn presence_is_published_on_the_first_connection_and_the_last_disconnection_only() {
    let t = chat().await;
    let (phone, laptop) = (client("bob:phone"), client("bob:laptop"));
    t.bridge.connected(&phone).await;
    t.bridge.connected(&laptop).await;
    let up = t.out.take("p/bob");
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].0["state"], "online");
    assert_eq!(up[0].1, Delivery::Retained);
    t.bridge.disconnected(&phone).await;
    assert!(t.out.take("p/bob").is_empty(), "the laptop is still on");
    t.bridge.disconnected(&laptop).await;
    let down = t.out.take("p/bob");
    assert_eq!(down[0].0["state"], "offline");
}
