//! Bad input gets a clear error on `d/{me}/{device}` and the MQTT 5 reason code; the connection
//! stays up and the next good message goes through.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{connect, Server, WAIT};
use rumqttc::v5::mqttbytes::v5::PubAckReason;
use serde_json::json;

fn server() -> Server {
    Server::start_with_users("[limits]\nmax_message_bytes = 1024\n", &["alice", "bob"])
}

#[tokio::test]
async fn each_bad_publish_gets_its_reason_code_and_error_and_nothing_is_lost() {
    let s = server();
    let mut bob = connect(s.mqtt, "bob", "phone", "pw").await;
    bob.subscribe_all().await;
    let mut alice = connect(s.mqtt, "alice", "phone", "pw").await;
    alice.subscribe_all().await;
    let err_topic = "d/alice/phone";

    let cases: Vec<(&str, Vec<u8>, PubAckReason, &str)> = vec![
        (
            "m/u/bob",
            b"{\"cid\": \"c1\", \"body\": ".to_vec(),
            PubAckReason::PayloadFormatInvalid,
            "bad_json",
        ),
        (
            "m/u/bob",
            vec![b'h', 0xff, 0xfe, b'i'],
            PubAckReason::PayloadFormatInvalid,
            "bad_utf8",
        ),
        (
            "m/u/bob",
            vec![b'x'; 2000],
            PubAckReason::ImplementationSpecificError,
            "too_large",
        ),
        (
            "m/u/bob",
            br#"{"cid":"c2","type":"hologram","body":"x"}"#.to_vec(),
            PubAckReason::PayloadFormatInvalid,
            "bad_request",
        ),
        (
            "m/u/bob",
            br#"{"cid":"c3","body":""}"#.to_vec(),
            PubAckReason::PayloadFormatInvalid,
            "bad_request",
        ),
        (
            "hello/world",
            b"hi".to_vec(),
            PubAckReason::NotAuthorized,
            "unknown_topic",
        ),
        (
            "m/u/nobody",
            b"hi".to_vec(),
            PubAckReason::NotAuthorized,
            "unknown_user",
        ),
    ];
    for (topic, payload, reason, code) in cases {
        assert_eq!(alice.publish(topic, payload).await, reason, "{code}");
        let e = alice.recv(err_topic).await;
        assert_eq!(e["ok"], false);
        assert_eq!(e["error"]["code"], code, "{e}");
        assert!(!e["error"]["message"].as_str().unwrap().is_empty());
        assert_eq!(e["topic"], topic);
    }
    // A request with an unknown method, a malformed request, a limit out of range.
    assert_eq!(
        alice
            .publish("q/teleport", json!({"id": "t1"}).to_string())
            .await,
        PubAckReason::NotAuthorized
    );
    let a = alice.recv(err_topic).await;
    assert_eq!(
        (a["id"].as_str(), a["ok"].as_bool()),
        (Some("t1"), Some(false))
    );
    assert_eq!(a["error"]["code"], "unknown_method");
    assert_eq!(
        alice.publish("q/sync", "{").await,
        PubAckReason::PayloadFormatInvalid
    );
    assert_eq!(alice.recv(err_topic).await["error"]["code"], "bad_json");
    let a = alice.request("sync", json!({"limit": 501})).await;
    assert_eq!(a["error"]["code"], "bad_request");
    let a = alice.request("history", json!({"chat": "x/y"})).await;
    assert_eq!(a["error"]["code"], "bad_request");

    // Still connected, and the next good message goes through; nothing bad was stored.
    assert!(alice.still_connected().await);
    alice
        .send("u/bob", json!({"cid": "good", "body": "after all that"}))
        .await;
    assert_eq!(bob.recv("u/bob/m").await["body"], "after all that");
    let inbox = bob.sync_all(0).await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["seq"], 1);
}

#[tokio::test]
async fn an_mqtt_3_client_gets_its_error_on_its_device_topic_and_stays_connected() {
    let s = server();
    let mut bob = connect(s.mqtt, "bob", "phone", "pw").await;
    bob.subscribe_all().await;
    let mut o = rumqttc::MqttOptions::new("alice:old-phone", "127.0.0.1", s.mqtt);
    o.set_credentials("alice", "pw");
    let (client, mut el) = rumqttc::AsyncClient::new(o, 10);
    client
        .subscribe("d/alice/old-phone", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .publish("m/u/bob", rumqttc::QoS::AtLeastOnce, false, "{not json")
        .await
        .unwrap();
    client
        .publish("m/u/bob", rumqttc::QoS::AtLeastOnce, false, "fine")
        .await
        .unwrap();
    let mut pubacks = 0;
    let mut error = None;
    while pubacks < 2 || error.is_none() {
        match tokio::time::timeout(WAIT, el.poll())
            .await
            .unwrap()
            .expect("connection stays up")
        {
            rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) => pubacks += 1,
            rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                error = Some(serde_json::from_slice::<serde_json::Value>(&p.payload).unwrap())
            }
            _ => {}
        }
    }
    assert_eq!(error.unwrap()["error"]["code"], "bad_json");
    assert_eq!(bob.recv("u/bob/m").await["body"], "fine");
}
