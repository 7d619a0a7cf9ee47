//! The trust boundary: no client writes into another user's topics or inherits another's
//! account, and no client makes natter grow or stall for everyone else. Each test is an attack
//! tried with stock means (a will, a client id, a user name, a dropped socket, a flood) against
//! a real `natter serve`.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{connack_from, connect, connect_with, http, options, Server, ADMIN_TOKEN, WAIT};
use rumqttc::v5::mqttbytes::v5::{
    ConnectProperties, ConnectReturnCode, LastWill, PubAckReason, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use serde_json::json;

fn granted(code: SubscribeReasonCode) -> bool {
    matches!(code, SubscribeReasonCode::Success(_))
}

/// Options for `user:device` with a will on `topic`.
fn with_will(
    port: u16,
    user: &str,
    device: &str,
    topic: &str,
    payload: &str,
) -> rumqttc::v5::MqttOptions {
    let mut o = options(port, &format!("{user}:{device}"), user, "pw");
    o.set_last_will(LastWill::new(
        topic,
        payload.to_owned(),
        QoS::AtLeastOnce,
        false,
        None,
    ));
    o
}

/// Options for a persistent session of `user:device` that outlives its connection by
/// `expiry` seconds.
fn persistent(port: u16, user: &str, device: &str, expiry: u32) -> rumqttc::v5::MqttOptions {
    let mut o = options(port, &format!("{user}:{device}"), user, "pw");
    o.set_clean_start(false);
    o.set_connect_properties(ConnectProperties {
        session_expiry_interval: Some(expiry),
        ..ConnectProperties::new()
    });
    o
}

#[tokio::test]
async fn a_will_on_a_chat_topic_is_refused_at_connect_and_forges_nothing() {
    let s = Server::start_with_users(
        "[[acl]]\nuser = \"mallory\"\npublish = [\"status/%u\"]\nsubscribe = [\"status/#\"]\n",
        &["mallory", "bob", "carol"],
    );
    let mut bob = s.online("bob", "phone").await;
    let forged = json!({"id": "01J00000000000000000000000", "seq": 1, "chat": "u/carol",
        "from": "carol", "dev": "x", "ts": 1, "type": "text", "body": "forged"})
    .to_string();
    for topic in [
        "u/bob/m",
        "u/bob/r",
        "u/bob/e",
        "d/bob/phone",
        "p/carol",
        "m/u/bob",
        "q/sync",
    ] {
        let refused = connect_with(with_will(s.mqtt, "mallory", "laptop", topic, &forged)).await;
        assert_eq!(
            refused.err(),
            Some(ConnectReturnCode::NotAuthorized),
            "a will on {topic} is refused at CONNECT"
        );
    }
    // A will on a topic mallory may publish to is fine, and is published when she drops.
    let mut watcher = connect(s.mqtt, "mallory", "watch", "pw").await;
    assert!(granted(watcher.subscribe("status/#").await));
    let m = connect_with(with_will(
        s.mqtt,
        "mallory",
        "laptop",
        "status/mallory",
        "gone",
    ))
    .await
    .expect("a will on her own integration topic is accepted");
    drop(m);
    assert_eq!(watcher.recv_raw("status/mallory").await, b"gone");
    bob.nothing_on("u/bob/m", Duration::from_millis(300)).await;
    assert!(
        bob.sync_all(0).await.is_empty(),
        "nothing was stored for bob"
    );
}

#[tokio::test]
async fn an_anonymous_client_cannot_take_over_a_users_session() {
    let anon_port = common::free_port();
    let s = Server::start_with_users(
        &format!("[anonymous]\nlisten = \"127.0.0.1:{anon_port}\"\npublish = [\"public/#\"]\nsubscribe = [\"public/#\"]\n"),
        &["alice", "bob"],
    );
    let mut bob = connect_with(persistent(s.mqtt, "bob", "laptop", 3600))
        .await
        .expect("bob connects");
    bob.subscribe_all().await;
    let mut o = rumqttc::v5::MqttOptions::new("bob:laptop", "127.0.0.1", anon_port);
    o.set_clean_start(false);
    assert_eq!(
        connect_with(o).await.err(),
        Some(ConnectReturnCode::NotAuthorized),
        "a user's client id is refused on the anonymous listener"
    );
    // Bob was not kicked, and what Alice sends still reaches him and no one else.
    let mut alice = s.online("alice", "phone").await;
    alice.send("u/bob", json!({"body": "for bob"})).await;
    assert_eq!(bob.recv("u/bob/m").await["body"], "for bob");
    // Anonymous ids without a `:` still work.
    let anon = rumqttc::v5::MqttOptions::new("sensor-1", "127.0.0.1", anon_port);
    connect_with(anon)
        .await
        .expect("an anonymous id of its own");
}

#[tokio::test]
async fn percent_u_rules_never_open_chat_topics_whatever_the_user_is_called() {
    let s = Server::start_with_users(
        "[[acl]]\nuser = \"*\"\npublish = [\"%u/#\"]\nsubscribe = [\"%u/#\"]\n",
        &["u", "d", "p", "m", "q", "bob", "alice", "sensor"],
    );
    let mut bob = s.online("bob", "phone").await;
    for name in ["u", "d", "p"] {
        let mut c = connect(s.mqtt, name, "x", "pw").await;
        for filter in [
            "u/#",
            "u/bob/m",
            "u/+/m",
            "d/bob/phone",
            "d/#",
            "p/bob",
            "p/#",
        ] {
            assert!(
                !granted(c.subscribe(filter).await),
                "user {name} subscribing to {filter}"
            );
        }
        for topic in ["u/bob/m", "d/bob/phone", "p/bob"] {
            assert_eq!(
                c.publish(topic, json!({"body": "forged"}).to_string())
                    .await,
                PubAckReason::NotAuthorized,
                "user {name} publishing to {topic}"
            );
        }
    }
    for name in ["m", "q"] {
        let mut c = connect(s.mqtt, name, "x", "pw").await;
        assert!(!granted(c.subscribe(&format!("{name}/#")).await));
    }
    bob.nothing_on("u/bob/m", Duration::from_millis(300)).await;
    // The rule still works for a name that is no namespace.
    let mut sensor = connect(s.mqtt, "sensor", "x", "pw").await;
    assert!(granted(sensor.subscribe("sensor/#").await));
    assert_eq!(
        sensor.publish("sensor/temp", "21").await,
        PubAckReason::Success
    );
    assert_eq!(sensor.recv_raw("sensor/temp").await, b"21");
}

#[tokio::test]
async fn a_user_created_again_under_a_removed_name_inherits_nothing() {
    let s = Server::with_users(&["erin", "bob"]);
    let old_token = s.token("erin", "pw");
    let mut erin = s.online("erin", "phone").await;
    let g = erin
        .request(
            "group.create",
            json!({"name": "erin's", "members": ["bob"]}),
        )
        .await;
    assert_eq!(g["ok"], true, "{g}");
    let gid = g["group"]["id"].as_str().unwrap().to_owned();
    let mut bob = s.online("bob", "phone").await;
    bob.send("u/erin", json!({"body": "secret for the old erin"}))
        .await;
    erin.send("u/bob", json!({"cid": "c1", "body": "old erin speaking"}))
        .await;
    drop(erin);
    bob.recv("u/bob/m").await;

    let (status, _) = http(
        "DELETE",
        &s.http_url("/v1/admin/users/erin"),
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(status, 204);
    // Bob's group is told, and he is its admin now.
    let ev = loop {
        let ev = bob.recv("u/bob/e").await;
        if ev["type"] == "group" && ev["action"] == "left" {
            break ev;
        }
    };
    assert_eq!(ev["members"], json!(["erin"]));
    assert_eq!(ev["group"]["admins"], json!(["bob"]));
    s.add_user("erin", "new-pw");

    assert_eq!(
        connect_with(options(s.mqtt, "erin:phone", "erin", &old_token))
            .await
            .err(),
        Some(ConnectReturnCode::BadUserNamePassword),
        "the removed account's token does not log the new erin in"
    );
    let mut erin = connect(s.mqtt, "erin", "phone", "new-pw").await;
    erin.subscribe_all().await;
    assert!(erin.sync_all(0).await.is_empty(), "no old inbox");
    let chats = erin.request("chats", json!({})).await;
    assert_eq!(chats["chats"], json!([]), "{chats}");
    let history = erin.request("history", json!({"chat": "u/bob"})).await;
    assert_eq!(history["messages"], json!([]), "{history}");
    let info = erin.request("group.info", json!({"group": gid})).await;
    assert_eq!(info["error"]["code"], "not_authorized", "{info}");
    // Her first message starts her inbox at 1, and a cid the old erin used is new again.
    erin.send("u/bob", json!({"cid": "c1", "body": "new erin"}))
        .await;
    assert_eq!(erin.recv("u/erin/m").await["seq"], 1);
    // Bob's device also got the group's system message about it, and his own copies before.
    let mut seen = Vec::new();
    while seen.last() != Some(&json!("new erin")) {
        assert!(
            seen.len() < 10,
            "bob never got the new erin's message: {seen:?}"
        );
        seen.push(bob.recv("u/bob/m").await["body"].clone());
    }
}

#[tokio::test]
async fn removing_a_user_or_changing_her_password_ends_her_sessions_and_tokens() {
    let s = Server::with_users(&["erin", "bob"]);
    let mut erin = connect_with(persistent(s.mqtt, "erin", "phone", 3600))
        .await
        .expect("erin connects");
    erin.subscribe_all().await;
    let token = s.token("bob", "pw");
    let mut bob = connect(s.mqtt, "bob", "phone", &token).await;
    bob.subscribe_all().await;

    let (status, _) = http(
        "PUT",
        &s.http_url("/v1/admin/users/bob/password"),
        Some(ADMIN_TOKEN),
        Some(json!({"password": "new-pw"})),
    );
    assert!(status == 200 || status == 204, "{status}");
    assert!(
        bob.closed_by_server().await,
        "bob's session ends with his old password"
    );
    assert_eq!(
        connect_with(options(s.mqtt, "bob:phone", "bob", &token))
            .await
            .err(),
        Some(ConnectReturnCode::BadUserNamePassword),
        "a token from before the change is dead"
    );
    connect(s.mqtt, "bob", "phone", "new-pw").await;

    let (status, _) = http(
        "DELETE",
        &s.http_url("/v1/admin/users/erin"),
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(status, 204);
    assert!(
        erin.closed_by_server().await,
        "a removed user's connection is closed at once"
    );
    assert_eq!(
        connect_with(options(s.mqtt, "erin:phone", "erin", "pw"))
            .await
            .err(),
        Some(ConnectReturnCode::BadUserNamePassword)
    );
}

#[tokio::test]
async fn a_socket_that_never_sends_connect_is_closed_after_the_handshake_timeout() {
    use std::io::{Read, Write};
    let s = Server::start_with("[mqtt]\nhandshake_timeout_secs = 1\n");
    let silent = |port: u16, hello: &[u8]| {
        let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.write_all(hello).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        sock
    };
    let mut tcp = silent(s.mqtt, b"");
    let upgrade = format!(
        "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\r\n",
        s.ws
    );
    let mut ws = silent(s.ws, upgrade.as_bytes());
    for (what, sock) in [("TCP", &mut tcp), ("WebSocket", &mut ws)] {
        let mut buf = [0u8; 1024];
        let closed = loop {
            match sock.read(&mut buf) {
                Ok(0) => break true,
                // The WebSocket upgrade's answer comes first.
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        assert!(closed, "a silent {what} connection is closed by natter");
    }
}

#[tokio::test]
async fn failed_logins_are_throttled_without_locking_a_user_out_of_her_own_devices() {
    let s = Server::start_with_users(
        "[auth]\nmax_failures_per_ip = 5\nmax_failures_per_account = 5\nfailure_window_secs = 3600\nthrottle_loopback = true\n",
        &["bob"],
    );
    let token = s.token("bob", "pw");
    // Bob's phone has logged in from 127.0.0.1 before.
    assert_eq!(
        connack_from("127.0.0.1", s.mqtt, "bob:phone", "bob", "pw").await,
        0
    );
    // An attacker at 127.0.0.2 tries passwords, far past both allowances.
    for i in 0..30 {
        let code = connack_from("127.0.0.2", s.mqtt, "bob:x", "bob", &format!("guess{i}")).await;
        assert_eq!(code, 4, "bad user name or password");
    }
    let throttled = common::metric(&s.metrics(), "natter_logins_throttled_total");
    assert!(
        throttled >= 20.0,
        "most guesses were refused unchecked ({throttled})"
    );
    // Even the right password is refused from there, and from an address bob never used …
    assert_eq!(
        connack_from("127.0.0.2", s.mqtt, "bob:x", "bob", "pw").await,
        4
    );
    assert_eq!(
        connack_from("127.0.0.3", s.mqtt, "bob:x", "bob", "pw").await,
        4
    );
    // … but bob's own address still logs him in (any device of his there), and so does his
    // token from anywhere. (Each CONNECT has a client id of its own: rmqtt may answer a
    // takeover racing the previous socket's teardown with "server unavailable".)
    assert_eq!(
        connack_from("127.0.0.1", s.mqtt, "bob:tablet", "bob", "pw").await,
        0
    );
    assert_eq!(
        connack_from("127.0.0.2", s.mqtt, "bob:laptop", "bob", &token).await,
        0
    );
}

#[tokio::test]
async fn the_device_limit_is_told_only_after_the_password() {
    let s = Server::start_with_users("[limits]\nmax_connections_per_user = 1\n", &["bob"]);
    let _phone = connect(s.mqtt, "bob", "phone", "pw").await;
    // A wrong password learns nothing of how many devices bob has.
    assert_eq!(
        connack_from("127.0.0.1", s.mqtt, "bob:tablet", "bob", "wrong").await,
        4
    );
    assert_eq!(
        connack_from("127.0.0.1", s.mqtt, "bob:tablet", "bob", "pw").await,
        5
    );
}

#[tokio::test]
async fn sessions_kept_offline_count_toward_the_device_limit_and_expire_at_the_cap() {
    let s = Server::start_with_users(
        "[limits]\nmax_connections_per_user = 2\n[mqtt]\nmax_session_expiry_secs = 2\n",
        &["bob"],
    );
    for device in ["a", "b"] {
        let c = connect_with(persistent(s.mqtt, "bob", device, 86_400))
            .await
            .expect("a persistent session");
        drop(c);
    }
    assert_eq!(
        connect_with(persistent(s.mqtt, "bob", "c", 86_400))
            .await
            .err(),
        Some(ConnectReturnCode::NotAuthorized),
        "two sessions kept offline fill bob's two places"
    );
    // The expiry bob asked for (a day) was cut to the cap (2 s): his places free up.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if connect_with(options(s.mqtt, "bob:c", "bob", "pw"))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions never expired"
        );
    }
}

#[tokio::test]
async fn the_retained_store_is_bounded_in_bytes_and_presence_is_kept_apart() {
    let anon_port = common::free_port();
    let s = Server::start_with_users(
        &format!(
            "[mqtt]\nretained_max_bytes = 10000\nretained_max_payload = 1000\n\
             [anonymous]\nlisten = \"127.0.0.1:{anon_port}\"\npublish = [\"tele/#\"]\nsubscribe = [\"tele/#\"]\n"
        ),
        &["alice", "bob"],
    );
    let mut anon = connect_with(rumqttc::v5::MqttOptions::new(
        "filler",
        "127.0.0.1",
        anon_port,
    ))
    .await
    .expect("anonymous");
    let big = vec![b'x'; 1001];
    assert_eq!(
        anon.publish_with("tele/big", QoS::AtLeastOnce, true, big)
            .await,
        PubAckReason::QuotaExceeded,
        "a retained payload over the limit"
    );
    let mut kept = 0;
    for i in 0..30 {
        match anon
            .publish_with(
                &format!("tele/{i}"),
                QoS::AtLeastOnce,
                true,
                vec![b'x'; 900],
            )
            .await
        {
            PubAckReason::Success => kept += 1,
            PubAckReason::QuotaExceeded => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        (9..=11).contains(&kept),
        "about 10 KB kept, {kept} payloads of 900 B"
    );
    // Presence is still retained with the integrations' budget full.
    let mut alice = s.online("alice", "phone").await;
    alice.send("u/bob", json!({"body": "hi"})).await;
    let mut bob = connect(s.mqtt, "bob", "phone", "pw").await;
    assert!(granted(bob.subscribe("p/alice").await));
    assert_eq!(bob.recv("p/alice").await["state"], "online");
}

#[tokio::test]
async fn presence_look_ups_are_charged_by_the_users_they_name() {
    let s = Server::start_with_users(
        "[limits]\nrequests_per_sec = 0.01\nrequests_burst = 20\n",
        &["alice"],
    );
    let mut alice = s.online("alice", "phone").await;
    let users: Vec<String> = (0..100).map(|i| format!("user{i}")).collect();
    let first = alice.request("presence", json!({"users": users})).await;
    assert_eq!(first["ok"], true, "{first}");
    // One request of 100 users took 11 of 20 tokens: a second is refused, small ones are not.
    let second = alice.request("presence", json!({"users": users})).await;
    assert_eq!(second["error"]["code"], "rate_limited", "{second}");
    let small = alice.request("presence", json!({"users": ["alice"]})).await;
    assert_eq!(small["ok"], true, "{small}");
}

#[tokio::test]
async fn being_added_to_groups_by_a_stranger_is_an_invitation_that_fills_nothing() {
    let s = Server::start_with_users(
        "[limits]\ngroup_adds = \"contacts\"\nmax_groups_per_user = 3\n",
        &["mallory", "bob", "alice"],
    );
    let mut mallory = s.online("mallory", "phone").await;
    let mut bob = s.online("bob", "phone").await;
    let mut groups = Vec::new();
    for i in 0..3 {
        let g = mallory
            .request(
                "group.create",
                json!({"name": format!("spam {i}"), "members": ["bob"]}),
            )
            .await;
        assert_eq!(g["ok"], true, "{g}");
        assert_eq!(g["group"]["members"], json!(["mallory"]), "{g}");
        assert_eq!(g["group"]["invited"], json!(["bob"]), "{g}");
        groups.push(g["group"]["id"].as_str().unwrap().to_owned());
    }
    // Bob is told of each invitation in his chat with mallory, durably.
    let invites: Vec<_> = bob
        .sync_all(0)
        .await
        .into_iter()
        .filter(|m| m["event"]["action"] == "invited")
        .collect();
    assert_eq!(invites.len(), 3);
    assert_eq!(invites[0]["chat"], "u/mallory");
    // Not a member: he reads nothing of those groups, and his allowance is untouched.
    let info = bob.request("group.info", json!({"group": groups[0]})).await;
    assert_eq!(info["error"]["code"], "not_authorized", "{info}");
    let own = bob.request("group.create", json!({"name": "bob's"})).await;
    assert_eq!(own["ok"], true, "{own}");
    // He may accept one, and decline another (which is then gone).
    let joined = bob.request("group.join", json!({"group": groups[0]})).await;
    assert_eq!(
        joined["group"]["members"],
        json!(["mallory", "bob"]),
        "{joined}"
    );
    let declined = bob
        .request("group.decline", json!({"group": groups[1]}))
        .await;
    assert_eq!(declined["ok"], true, "{declined}");
    let again = bob.request("group.join", json!({"group": groups[1]})).await;
    assert_eq!(again["error"]["code"], "not_authorized", "{again}");
    // Someone bob has written to adds him at once.
    bob.send("u/alice", json!({"body": "hi alice"})).await;
    let mut alice = s.online("alice", "phone").await;
    let g = alice
        .request(
            "group.create",
            json!({"name": "friends", "members": ["bob"]}),
        )
        .await;
    assert_eq!(g["group"]["members"], json!(["alice", "bob"]), "{g}");
}

#[tokio::test]
async fn an_unknown_user_costs_the_same_password_check_as_a_known_one() {
    let s = Server::with_users(&["bob"]);
    let checks = || common::metric(&s.metrics(), "natter_password_checks_total");
    let before = checks();
    assert_eq!(
        connack_from("127.0.0.1", s.mqtt, "bob:x", "bob", "wrong").await,
        4
    );
    let known = checks() - before;
    assert_eq!(
        connack_from("127.0.0.1", s.mqtt, "nobody:x", "nobody", "wrong").await,
        4
    );
    let unknown = checks() - before - known;
    assert_eq!((known, unknown), (1.0, 1.0), "one argon2 check each");
}
