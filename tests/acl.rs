//! The topic ACL: what PROTOCOL.md forbids is refused and leaks nothing; what the operator's
//! `[[acl]]` and `[anonymous]` rules open works like a plain MQTT broker.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{connect, connect_with, Server};
use rumqttc::v5::mqttbytes::v5::{PubAckReason, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use serde_json::json;

fn refused(code: SubscribeReasonCode) -> bool {
    !matches!(code, SubscribeReasonCode::Success(_))
}

#[tokio::test]
async fn forbidden_subscriptions_are_refused_and_nothing_leaks() {
    let s = Server::with_users(&["alice", "bob", "eve"]);
    let mut eve = connect(s.mqtt, "eve", "phone", "pw").await;
    for filter in [
        "#",
        "+/+/+",
        "u/+/m",
        "u/bob/m",
        "u/bob/#",
        "u/+/#",
        "d/bob/phone",
        "d/eve/otherdev",
        "d/eve/+",
        "m/u/bob",
        "q/sync",
        "p/bob",
        "p/+",
        "$SYS/#",
        "tele/#",
    ] {
        assert_eq!(
            eve.subscribe(filter).await,
            SubscribeReasonCode::NotAuthorized,
            "eve subscribing to {filter}"
        );
    }
    for filter in [
        "u/eve/m",
        "u/eve/r",
        "u/eve/e",
        "u/eve/#",
        "d/eve/phone",
        "p/eve",
    ] {
        assert!(
            !refused(eve.subscribe(filter).await),
            "eve may subscribe to {filter}"
        );
    }
    let mut bob = connect(s.mqtt, "bob", "phone", "pw").await;
    bob.subscribe_all().await;
    let mut alice = connect(s.mqtt, "alice", "phone", "pw").await;
    alice.subscribe_all().await;
    alice.send("u/bob", json!({"body": "private"})).await;
    assert_eq!(bob.recv("u/bob/m").await["body"], "private");
    alice.recv("u/alice/r").await;
    // Eve holds only her own subscriptions: nothing of Alice's or Bob's reaches her.
    for topic in ["u/bob/m", "u/alice/m", "u/alice/r", "m/u/bob", "u/eve/m"] {
        eve.nothing_on(topic, Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn presence_of_a_user_is_open_only_to_who_shares_a_chat() {
    let s = Server::with_users(&["alice", "bob", "eve"]);
    let mut alice = connect(s.mqtt, "alice", "phone", "pw").await;
    assert!(
        refused(alice.subscribe("p/bob").await),
        "no chat with bob yet"
    );
    alice.send("u/bob", json!({"body": "hi"})).await;
    assert!(
        !refused(alice.subscribe("p/bob").await),
        "alice and bob share a chat now"
    );
    let mut bob = connect(s.mqtt, "bob", "phone", "pw").await;
    assert!(!refused(bob.subscribe("p/alice").await));
    assert!(refused(bob.subscribe("p/eve").await));
}

#[tokio::test]
async fn forbidden_publishes_are_refused_and_reach_nobody() {
    let s = Server::with_users(&["alice", "bob"]);
    let mut bob = connect(s.mqtt, "bob", "phone", "pw").await;
    bob.subscribe_all().await;
    let mut alice = connect(s.mqtt, "alice", "phone", "pw").await;
    alice.subscribe_all().await;
    for topic in [
        "u/bob/m",
        "u/bob/r",
        "d/bob/phone",
        "p/alice",
        "m/u/nobody",
        "m/g/somegroup",
        "tele/x",
        "m/u/Bob",
        "m/x/bob",
    ] {
        let r = alice
            .publish(topic, json!({"cid": "x", "body": "forged"}).to_string())
            .await;
        assert_eq!(r, PubAckReason::NotAuthorized, "publishing to {topic}");
        let err = alice.recv("d/alice/phone").await;
        assert_eq!(err["ok"], false);
        assert_eq!(err["topic"], topic);
        assert_eq!(err["cid"], "x");
    }
    let err_unknown_user = alice.publish("m/u/nobody", "x").await;
    assert_eq!(err_unknown_user, PubAckReason::NotAuthorized);
    assert_eq!(
        alice.recv("d/alice/phone").await["error"]["code"],
        "unknown_user"
    );
    bob.nothing_on("u/bob/m", Duration::from_millis(300)).await;
    bob.nothing_on("u/bob/r", Duration::from_millis(100)).await;
    assert!(
        bob.sync_all(0).await.is_empty(),
        "nothing was stored for bob"
    );
}

#[tokio::test]
async fn mqtt_3_clients_get_a_failure_suback_for_forbidden_filters() {
    let s = Server::start();
    s.add_user("eve", "pw");
    let mut o = rumqttc::MqttOptions::new("eve:phone", "127.0.0.1", s.mqtt);
    o.set_credentials("eve", "pw");
    let (client, mut el) = rumqttc::AsyncClient::new(o, 10);
    client
        .subscribe("u/+/m", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .subscribe("u/eve/m", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut codes = Vec::new();
    while codes.len() < 2 {
        let ev = tokio::time::timeout(common::WAIT, el.poll())
            .await
            .unwrap()
            .unwrap();
        if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(a)) = ev {
            codes.extend(a.return_codes);
        }
    }
    assert_eq!(codes[0], rumqttc::SubscribeReasonCode::Failure);
    assert_eq!(
        codes[1],
        rumqttc::SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce)
    );
}

const INTEGRATIONS: &str = r#"
[[acl]]
user = "sensor-*"
publish = ["tele/%u/#"]

[[acl]]
user = "ops"
subscribe = ["tele/#"]
publish = ["cmd/+"]
"#;

#[tokio::test]
async fn acl_rules_open_integration_topics_with_retain_and_every_qos() {
    let s = Server::start_with_users(INTEGRATIONS, &["sensor-1", "ops", "alice"]);
    let mut sensor = connect(s.mqtt, "sensor-1", "dev", "pw").await;
    // Retained, before anyone listens.
    assert_eq!(
        sensor
            .publish_with("tele/sensor-1/temp", QoS::AtLeastOnce, true, "21.5")
            .await,
        PubAckReason::Success
    );
    let mut ops = connect(s.mqtt, "ops", "console", "pw").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!refused(ops.subscribe("tele/#").await));
    assert_eq!(
        ops.recv_raw("tele/sensor-1/temp").await,
        b"21.5",
        "the retained value arrives on subscribe"
    );
    sensor
        .publish_with("tele/sensor-1/hum", QoS::ExactlyOnce, false, "40")
        .await;
    assert_eq!(
        ops.recv_raw("tele/sensor-1/hum").await,
        b"40",
        "QoS 2 passes through"
    );
    sensor
        .publish_with("tele/sensor-1/x", QoS::AtMostOnce, false, "0")
        .await;
    assert_eq!(
        ops.recv_raw("tele/sensor-1/x").await,
        b"0",
        "QoS 0 passes through"
    );

    assert_eq!(
        sensor.publish("tele/sensor-2/temp", "spoof").await,
        PubAckReason::NotAuthorized
    );
    assert!(
        refused(sensor.subscribe("tele/#").await),
        "sensors may only publish"
    );
    let mut alice = connect(s.mqtt, "alice", "phone", "pw").await;
    assert!(
        refused(alice.subscribe("tele/#").await),
        "rules apply to the users they name"
    );
    assert_eq!(
        alice.publish("tele/alice/x", "x").await,
        PubAckReason::NotAuthorized
    );
    ops.nothing_on("tele/sensor-2/temp", Duration::from_millis(200))
        .await;
}

#[tokio::test]
async fn the_anonymous_listener_has_its_own_rules_and_no_chat_access() {
    let anon_port = common::free_port();
    let s = Server::start_with_users(
        &format!(
            "[anonymous]\nlisten = \"127.0.0.1:{anon_port}\"\npublish = [\"public/#\"]\nsubscribe = [\"public/#\"]\n"
        ),
        &["alice"],
    );
    let o = rumqttc::v5::MqttOptions::new("any-device-7", "127.0.0.1", anon_port);
    let mut anon = connect_with(o).await.expect("anonymous CONNECT accepted");
    assert!(!refused(anon.subscribe("public/#").await));
    assert_eq!(
        anon.publish("public/news", "hello").await,
        PubAckReason::Success
    );
    assert_eq!(anon.recv_raw("public/news").await, b"hello");
    assert!(refused(anon.subscribe("u/alice/m").await));
    assert!(refused(anon.subscribe("#").await));
    assert_eq!(
        anon.publish("m/u/alice", "spam").await,
        PubAckReason::NotAuthorized
    );
    // Without credentials, the main listener still refuses.
    let o = rumqttc::v5::MqttOptions::new("alice:phone", "127.0.0.1", s.mqtt);
    assert!(connect_with(o).await.is_err());
    let mut alice = connect(s.mqtt, "alice", "phone", "pw").await;
    alice.subscribe_all().await;
    assert!(
        alice.sync_all(0).await.is_empty(),
        "the anonymous send stored nothing"
    );
}
