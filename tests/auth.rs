//! CONNECT: every credential case gets the CONNACK code PROTOCOL.md names, in MQTT 3.1.1 and 5.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{connect_with, http, options, Server, WAIT};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as V5;
use serde_json::json;

/// Connects over MQTT 3.1.1 and returns the CONNACK return code.
async fn connack_v311(
    port: u16,
    client_id: &str,
    user: Option<&str>,
    password: &str,
) -> rumqttc::ConnectReturnCode {
    let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
    if let Some(u) = user {
        o.set_credentials(u, password);
    }
    let (_client, mut el) = rumqttc::AsyncClient::new(o, 10);
    loop {
        match tokio::time::timeout(WAIT, el.poll())
            .await
            .expect("CONNACK in time")
        {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => return a.code,
            Ok(_) => continue,
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return code,
            Err(e) => panic!("no CONNACK, the connection broke instead: {e}"),
        }
    }
}

async fn connack_v5(port: u16, client_id: &str, user: &str, password: &str) -> V5 {
    match connect_with(options(port, client_id, user, password)).await {
        Ok(_) => V5::Success,
        Err(code) => code,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(key: &[u8], claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key),
    )
    .unwrap()
}

#[tokio::test]
async fn every_credential_case_gets_its_connack_code_in_both_mqtt_versions() {
    let s = Server::start();
    s.add_user("alice", "alice-pw");
    s.add_user("bob", "bob-pw");
    let alice_token = s.token("alice", "alice-pw");
    let bob_token = s.token("bob", "bob-pw");
    let key = std::fs::read(s.data_dir().join("token.key")).unwrap();
    let expired = hs256(
        &key,
        json!({"sub": "alice", "iss": "natter", "iat": now() - 7200, "exp": now() - 3600}),
    );
    let forged = hs256(
        b"not-the-server-key-not-the-server-key",
        json!({"sub": "alice", "iss": "natter", "exp": now() + 3600}),
    );
    let p = s.mqtt;

    use rumqttc::ConnectReturnCode as V3;
    let cases: Vec<(&str, &str, &str, V3, V5)> = vec![
        (
            "good password",
            "alice:phone",
            "alice-pw",
            V3::Success,
            V5::Success,
        ),
        (
            "good token",
            "alice:tablet",
            &alice_token,
            V3::Success,
            V5::Success,
        ),
        (
            "expired token",
            "alice:phone",
            &expired,
            V3::BadUserNamePassword,
            V5::BadUserNamePassword,
        ),
        (
            "forged token",
            "alice:phone",
            &forged,
            V3::BadUserNamePassword,
            V5::BadUserNamePassword,
        ),
        (
            "another user's token",
            "alice:phone",
            &bob_token,
            V3::BadUserNamePassword,
            V5::BadUserNamePassword,
        ),
        (
            "wrong password",
            "alice:phone",
            "nope",
            V3::BadUserNamePassword,
            V5::BadUserNamePassword,
        ),
        (
            "client id without device",
            "alice",
            "alice-pw",
            V3::BadClientId,
            V5::ClientIdentifierNotValid,
        ),
        (
            "client id with a bad device",
            "alice:ph/one",
            "alice-pw",
            V3::BadClientId,
            V5::ClientIdentifierNotValid,
        ),
        (
            "client id of another user",
            "bob:phone",
            "alice-pw",
            V3::BadClientId,
            V5::ClientIdentifierNotValid,
        ),
    ];
    for (what, client_id, password, v3, v5) in &cases {
        assert_eq!(
            connack_v311(p, client_id, Some("alice"), password).await,
            *v3,
            "3.1.1: {what}"
        );
        assert_eq!(
            // Its own client id: rmqtt answers "server unavailable" to a CONNECT that races the
            // clean-up of the previous session with the same client id (a per-client-id lock).
            connack_v5(p, &format!("{client_id}5"), "alice", password).await,
            *v5,
            "5.0: {what}"
        );
    }
    assert_eq!(
        connack_v311(p, "mallory:phone", Some("mallory"), "pw").await,
        V3::BadUserNamePassword,
        "3.1.1: unknown user"
    );
    assert_eq!(
        connack_v5(p, "mallory:phone", "mallory", "pw").await,
        V5::BadUserNamePassword,
        "5.0: unknown user"
    );
    assert_eq!(
        connack_v311(p, "alice:phone", None, "").await,
        V3::NotAuthorized,
        "3.1.1: no username"
    );
}

/// Sends an MQTT 5 CONNECT by hand and returns the CONNACK's reason code and reason string.
async fn connack_v5_reason(port: u16, client_id: &str, user: &str, password: &str) -> (u8, String) {
    use common::{packet, string, varint};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut body = Vec::new();
    string("MQTT", &mut body);
    body.push(5);
    body.push(0xC2); // user name, password, clean start
    body.extend(30u16.to_be_bytes());
    varint(0, &mut body); // no properties
    string(client_id, &mut body);
    string(user, &mut body);
    string(password, &mut body);
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(&packet(0x10, &body)).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut got))
        .await
        .expect("CONNACK and close in time")
        .unwrap();
    assert_eq!(got[0], 0x20, "a CONNACK: {got:?}");
    // Fixed header (remaining length < 128 here), flags, reason code, properties length.
    let code = got[3];
    let props = &got[5..];
    let mut at = 0;
    while at < props.len() {
        let id = props[at];
        if id == 0x1F {
            let len = u16::from_be_bytes([props[at + 1], props[at + 2]]) as usize;
            let text = String::from_utf8(props[at + 3..at + 3 + len].to_vec()).unwrap();
            return (code, text);
        }
        panic!("unexpected CONNACK property {id:#x}");
    }
    (code, String::new())
}

#[tokio::test]
async fn a_client_id_off_the_rule_is_refused_with_a_reason_that_names_the_rule() {
    let s = Server::start();
    s.add_user("alice", "alice-pw");
    // MQTT.js makes up `mqttjs_…` when a page sets no client id.
    for client_id in ["mqttjs_3f2a9c1b", "bob:phone", "alice:", "alice:ph one"] {
        let (code, reason) = connack_v5_reason(s.mqtt, client_id, "alice", "alice-pw").await;
        assert_eq!(code, 0x85, "{client_id}: client identifier not valid");
        assert!(
            reason.contains("client id must be \"alice:DEVICE\""),
            "{client_id}: {reason}"
        );
    }
    // A wrong password is still only a wrong password, with no words to learn from.
    let (code, reason) = connack_v5_reason(s.mqtt, "alice:phone", "alice", "nope").await;
    assert_eq!((code, reason.as_str()), (0x86, ""));
}

#[tokio::test]
async fn a_token_stops_working_once_its_user_is_removed() {
    let s = Server::start();
    s.add_user("alice", "alice-pw");
    let token = s.token("alice", "alice-pw");
    assert_eq!(
        connack_v5(s.mqtt, "alice:phone", "alice", &token).await,
        V5::Success
    );
    let (ok, _, err) = s.cli(&["user", "remove", "alice"], "");
    assert!(ok, "{err}");
    assert_eq!(
        connack_v5(s.mqtt, "alice:phone", "alice", &token).await,
        V5::BadUserNamePassword
    );
}

#[tokio::test]
async fn the_token_endpoint_refuses_wrong_passwords() {
    let s = Server::start();
    s.add_user("alice", "alice-pw");
    let (status, body) = http(
        "POST",
        &s.http_url("/v1/token"),
        None,
        Some(json!({"user": "alice", "password": "x"})),
    );
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "bad_credentials");
    let (status, _) = http(
        "POST",
        &s.http_url("/v1/token"),
        None,
        Some(json!({"user": "nobody", "password": "x"})),
    );
    assert_eq!(status, 401);
    let (status, body) = http(
        "POST",
        &s.http_url("/v1/token"),
        None,
        Some(json!({"user": "alice", "password": "alice-pw"})),
    );
    assert_eq!(status, 200);
    assert!(body["expires"].as_u64().unwrap() > now() + 3600);
}

#[tokio::test]
async fn tokens_from_a_trusted_issuer_are_accepted_and_others_are_not() {
    let keys = tempfile::tempdir().unwrap();
    let private = keys.path().join("issuer.pem");
    let public = keys.path().join("issuer.pub.pem");
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&private)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl genpkey");
    let ok = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap();
    assert!(ok.success(), "openssl pkey -pubout");
    let s = Server::start_with(&format!(
        "[[auth.trusted_issuers]]\nissuer = \"https://id.example\"\nalgorithm = \"ES256\"\npublic_key_file = {:?}\naudience = \"natter\"\n",
        public.display().to_string()
    ));
    s.add_user("alice", "alice-pw");
    let key = EncodingKey::from_ec_pem(&std::fs::read(&private).unwrap()).unwrap();
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap()
    };
    let good = sign(
        json!({"sub": "alice", "iss": "https://id.example", "aud": "natter", "exp": now() + 600}),
    );
    let wrong_aud = sign(
        json!({"sub": "alice", "iss": "https://id.example", "aud": "other", "exp": now() + 600}),
    );
    let wrong_iss = sign(
        json!({"sub": "alice", "iss": "https://evil.example", "aud": "natter", "exp": now() + 600}),
    );
    let expired = sign(
        json!({"sub": "alice", "iss": "https://id.example", "aud": "natter", "exp": now() - 3600}),
    );
    let no_aud = sign(json!({"sub": "alice", "iss": "https://id.example", "exp": now() + 600}));
    let not_yet = sign(
        json!({"sub": "alice", "iss": "https://id.example", "aud": "natter", "exp": now() + 600, "nbf": now() + 300}),
    );
    // Expired 45 s ago: past the default leeway of 30 s.
    let just_expired = sign(
        json!({"sub": "alice", "iss": "https://id.example", "aud": "natter", "exp": now() - 45}),
    );
    // Issued an hour before alice's account existed: for a former account of that name.
    let before_account = sign(
        json!({"sub": "alice", "iss": "https://id.example", "aud": "natter", "exp": now() + 600, "iat": now() - 3600}),
    );
    assert_eq!(
        connack_v5(s.mqtt, "alice:phone", "alice", &good).await,
        V5::Success
    );
    for (what, t) in [
        ("audience", &wrong_aud),
        ("issuer", &wrong_iss),
        ("expired", &expired),
        ("no audience although one is configured", &no_aud),
        ("not valid before a time to come", &not_yet),
        ("expired beyond the leeway", &just_expired),
        ("issued before the account existed", &before_account),
    ] {
        assert_eq!(
            connack_v5(s.mqtt, "alice:phone", "alice", t).await,
            V5::BadUserNamePassword,
            "{what}"
        );
    }
}

#[tokio::test]
async fn a_second_connection_with_the_same_client_id_takes_over_and_other_devices_stay() {
    let s = Server::start();
    s.add_user("alice", "alice-pw");
    let mut first = common::connect(s.mqtt, "alice", "phone", "alice-pw").await;
    let mut other = common::connect(s.mqtt, "alice", "laptop", "alice-pw").await;
    let _second = common::connect(s.mqtt, "alice", "phone", "alice-pw").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, first.event())
            .await
            .expect("the first connection is closed")
        {
            common::Seen::Closed(_) => break,
            _ => continue,
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(other.still_connected().await);
}
