//! Stock clients from outside Rust: Debian's mosquitto_pub and mosquitto_sub.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{connect, Server};
use serde_json::{json, Value};

fn mosquitto_sub(
    port: u16,
    user: &str,
    device: &str,
    topic: &str,
    count: u32,
) -> std::process::Child {
    Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-V",
            "mqttv311",
            "-q",
            "1",
        ])
        .args([
            "-i",
            &format!("{user}:{device}"),
            "-u",
            user,
            "-P",
            "pw",
            "-t",
            topic,
        ])
        .args(["-C", &count.to_string(), "-W", "10"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub is installed (apt-get install mosquitto-clients)")
}

fn mosquitto_pub(port: u16, user: &str, topic: &str, message: &str) {
    let status = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-V",
            "5",
            "-q",
            "1",
        ])
        .args([
            "-i",
            &format!("{user}:cli"),
            "-u",
            user,
            "-P",
            "pw",
            "-t",
            topic,
            "-m",
            message,
        ])
        .status()
        .expect("mosquitto_pub is installed (apt-get install mosquitto-clients)");
    assert!(status.success(), "mosquitto_pub got its PUBACK");
}

#[tokio::test]
async fn mosquitto_clients_send_and_receive_a_message() {
    let s = Server::start();
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let bob_sub = mosquitto_sub(s.mqtt, "bob", "shell", "u/bob/m", 1);
    let alice_receipts = mosquitto_sub(s.mqtt, "alice", "shell", "u/alice/r", 1);
    tokio::time::sleep(Duration::from_millis(500)).await;

    mosquitto_pub(s.mqtt, "alice", "m/u/bob", "door open");

    let out = bob_sub.wait_with_output().unwrap();
    let m: Value =
        serde_json::from_slice(&out.stdout).expect("bob's mosquitto_sub printed the message");
    assert_eq!(m["body"], "door open");
    assert_eq!(m["from"], "alice");
    assert_eq!(m["dev"], "cli");
    let out = alice_receipts.wait_with_output().unwrap();
    let r: Value =
        serde_json::from_slice(&out.stdout).expect("alice's mosquitto_sub printed the receipt");
    assert_eq!(r["status"], "sent");
    assert_eq!(r["id"], m["id"]);

    // And the other way: a rumqttc client's message reaches a mosquitto_sub.
    let alice_sub = mosquitto_sub(s.mqtt, "alice", "shell2", "u/alice/m", 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut bob = connect(s.mqtt, "bob", "app", "pw").await;
    bob.send("u/alice", json!({"cid": "r1", "body": "seen it"}))
        .await;
    let out = alice_sub.wait_with_output().unwrap();
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["body"], "seen it");
    assert_eq!(m["chat"], "u/bob");
}
