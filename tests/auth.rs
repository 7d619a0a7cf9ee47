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
use serde_json::{json, Value};

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
    // The only property natter puts in a refusal is the reason string (0x1F).
    match &got[5..] {
        [] => (code, String::new()),
        [0x1F, hi, lo, text @ ..] => {
            let len = u16::from_be_bytes([*hi, *lo]) as usize;
            (code, String::from_utf8(text[..len].to_vec()).unwrap())
        }
        other => panic!("unexpected CONNACK properties {other:?}"),
    }
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
    // Access tokens are short-lived (an hour by default); the refresh token keeps a client in.
    let expires = body["expires"].as_u64().unwrap();
    assert!(expires > now() + 3000 && expires <= now() + 3600, "{body}");
    assert!(body["refresh_expires"].as_u64().unwrap() > now() + 29 * 86_400);
}

/// `POST /v1/token/refresh` with `refresh`: the status and body.
fn refresh(s: &Server, refresh: &Value) -> (u16, Value) {
    http(
        "POST",
        &s.http_url("/v1/token/refresh"),
        None,
        Some(json!({ "refresh_token": refresh })),
    )
}

/// Alice signs in with her password: the access token and the refresh token.
fn sign_in(s: &Server, password: &str) -> (String, Value) {
    let (status, body) = http(
        "POST",
        &s.http_url("/v1/token"),
        None,
        Some(json!({"user": "alice", "password": password})),
    );
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    (token, body["refresh_token"].clone())
}

#[tokio::test]
async fn a_refresh_token_keeps_a_client_signed_in_once_per_token_and_a_reused_one_ends_it() {
    let s = Server::start();
    s.add_user("alice", "alice-pw");
    let (_, r1) = sign_in(&s, "alice-pw");
    let (status, next) = refresh(&s, &r1);
    assert_eq!(status, 200, "{next}");
    let token = next["token"].as_str().unwrap();
    assert_eq!(
        connack_v5(s.mqtt, "alice:web", "alice", token).await,
        V5::Success
    );
    let r2 = next["refresh_token"].clone();
    assert_ne!(r1, r2, "each use gives a new refresh token");
    // The first one was used: whoever holds a copy of it (a thief, or the client sending it
    // twice) ends the session, so the rightful holder's next refresh fails too and she signs
    // in again.
    let (status, body) = refresh(&s, &r1);
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("bad_refresh_token"))
    );
    let (status, _) = refresh(&s, &r2);
    assert_eq!(status, 401, "the session ended");

    // Signing out ends a session; another one of hers goes on.
    let (_, phone) = sign_in(&s, "alice-pw");
    let (_, laptop) = sign_in(&s, "alice-pw");
    let (status, _) = http(
        "POST",
        &s.http_url("/v1/token/revoke"),
        None,
        Some(json!({ "refresh_token": laptop })),
    );
    assert_eq!(status, 204);
    assert_eq!(refresh(&s, &laptop).0, 401);
    let (status, body) = refresh(&s, &phone);
    assert_eq!(status, 200);
    let phone = body["refresh_token"].clone();

    // A password change ends every session; garbage is refused the same way.
    let (status, _) = http(
        "PUT",
        &s.http_url("/v1/admin/users/alice/password"),
        Some(common::ADMIN_TOKEN),
        Some(json!({"password": "new-pw"})),
    );
    assert_eq!(status, 204);
    assert_eq!(refresh(&s, &phone).0, 401);
    for junk in [json!("nrt1.x.y.alice"), json!(""), json!("a".repeat(5000))] {
        assert_eq!(refresh(&s, &junk).0, 401, "{junk}");
    }
    // And a removed account's sessions go with it.
    let (_, r) = sign_in(&s, "new-pw");
    let (ok, _, err) = s.cli(&["user", "remove", "alice"], "");
    assert!(ok, "{err}");
    assert_eq!(refresh(&s, &r).0, 401);
}

#[tokio::test]
async fn refresh_tokens_survive_a_restart_and_can_be_turned_off() {
    let mut s = Server::start();
    s.add_user("alice", "alice-pw");
    let (_, r) = sign_in(&s, "alice-pw");
    s.restart();
    assert_eq!(refresh(&s, &r).0, 200, "sessions are in the store");
    let off = Server::start_with("[auth]\nrefresh_ttl_secs = 0\n");
    off.add_user("alice", "alice-pw");
    let (status, body) = http(
        "POST",
        &off.http_url("/v1/token"),
        None,
        Some(json!({"user": "alice", "password": "alice-pw"})),
    );
    assert_eq!(status, 200);
    assert!(body.get("refresh_token").is_none(), "{body}");
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
