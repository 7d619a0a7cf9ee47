//! Push notifications through local FCM and APNs servers that speak the real protocols: who
//! gets one and when, what it says, collapse, each class of provider error, and a restart.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::providers::{self, Provider};
use common::{metric, Server, WAIT};
use rumqttc::v5::mqttbytes::v5::PubAckReason;
use serde_json::{json, Value};

struct Setup {
    s: Server,
    google: Provider,
    apple: Provider,
    _keys: tempfile::TempDir,
}

/// natter with push through both fakes; `push_extra` goes into its `[push]` table.
async fn setup(push_extra: &str) -> Setup {
    let keys = tempfile::tempdir().unwrap();
    let google = providers::google(keys.path()).await;
    let apple = providers::apple(keys.path()).await;
    let cfg = providers::config(keys.path(), &google, &apple)
        .replace("[push]\n", &format!("[push]\n{push_extra}"));
    let s = Server::start_with_users(&cfg, &["alice", "bob"]);
    Setup {
        s,
        google,
        apple,
        _keys: keys,
    }
}

/// Registers `token` for `bob:{device}` and leaves (the app goes to the background).
async fn register_and_leave(s: &Server, device: &str, platform: &str, token: &str) {
    let mut bob = s.online("bob", device).await;
    let a = bob
        .request(
            "push.register",
            json!({"platform": platform, "token": token}),
        )
        .await;
    assert_eq!(a["ok"], true, "{a}");
    drop(bob);
}

/// Waits until the server has noticed that every device left (their dropped sockets).
async fn until_offline(s: &Server) {
    let deadline = std::time::Instant::now() + WAIT;
    while metric(&s.metrics(), "natter_online_users") != 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "bob never went offline"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_user_gets_a_push_per_device_saying_who_wrote_not_what() {
    let t = setup("").await;
    register_and_leave(&t.s, "phone", "fcm", "fcm-bob-phone").await;
    register_and_leave(&t.s, "ipad", "apns", "apns-bob-ipad").await;
    until_offline(&t.s).await;
    let mut alice = t.s.online("alice", "phone").await;
    alice
        .send("u/bob", json!({"body": "the secret plan"}))
        .await;

    let fcm = t.google.wait_for("fcm-bob-phone", 1).await;
    let m = &fcm[0].body["message"];
    assert_eq!(fcm[0].status, 200);
    assert_eq!(m["notification"]["title"], "alice");
    assert_eq!(m["notification"]["body"], "New message");
    assert_eq!(m["android"]["collapse_key"], "d:alice:bob");
    assert_eq!(m["android"]["notification"]["notification_count"], 1);
    assert_eq!(m["data"]["chat"], "u/alice");
    assert!(
        !fcm[0].body.to_string().contains("secret"),
        "the text leaked: {}",
        fcm[0].body
    );
    assert_eq!(t.google.book.lock().unwrap().oauth_calls, 1);

    let apns = t.apple.wait_for("apns-bob-ipad", 1).await;
    assert_eq!(apns[0].status, 200);
    assert_eq!(apns[0].body["aps"]["alert"]["title"], "alice");
    assert_eq!(apns[0].body["aps"]["badge"], 1);
    assert_eq!(apns[0].headers["apns-topic"], providers::TOPIC);
    assert_eq!(apns[0].headers["apns-collapse-id"], "d:alice:bob");
    assert!(!apns[0].body.to_string().contains("secret"));

    // The second message raises the badge; each device still gets one notification per push.
    alice.send("u/bob", json!({"body": "and another"})).await;
    let fcm = t.google.wait_for("fcm-bob-phone", 2).await;
    assert_eq!(
        fcm[1].body["message"]["android"]["notification"]["notification_count"],
        2
    );
    // Exactly one access token was fetched: it is cached.
    assert_eq!(t.google.book.lock().unwrap().oauth_calls, 1);
    let m = t.s.metrics();
    assert_eq!(
        metric(&m, "natter_push_total{provider=\"fcm\",class=\"sent\"}"),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_show_the_text_when_the_operator_allows_them() {
    let t = setup("preview = true\n").await;
    register_and_leave(&t.s, "phone", "fcm", "fcm-preview").await;
    until_offline(&t.s).await;
    let mut alice = t.s.online("alice", "phone").await;
    alice.send("u/bob", json!({"body": "lunch at noon?"})).await;
    let fcm = t.google.wait_for("fcm-preview", 1).await;
    assert_eq!(
        fcm[0].body["message"]["notification"]["body"],
        "lunch at noon?"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_push_when_a_device_acknowledges_within_the_grace() {
    let t = setup("").await;
    let mut bob = t.s.online("bob", "phone").await;
    let a = bob
        .request(
            "push.register",
            json!({"platform": "fcm", "token": "fcm-online"}),
        )
        .await;
    assert_eq!(a["ok"], true);
    let mut alice = t.s.online("alice", "phone").await;
    alice.send("u/bob", json!({"body": "you are here"})).await;
    assert_eq!(bob.recv("u/bob/m").await["body"], "you are here");
    // grace_secs = 1: wait well past it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        t.google.seen("fcm-online").is_empty(),
        "pushed to an online device"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_waiting_for_a_retry_collapse_into_one_push() {
    let t = setup("").await;
    register_and_leave(&t.s, "phone", "fcm", "fcm-collapse").await;
    t.google
        .script("fcm-collapse", vec![providers::fcm_unavailable(1)]);
    until_offline(&t.s).await;
    let mut alice = t.s.online("alice", "phone").await;
    alice.send("u/bob", json!({"body": "one"})).await;
    let first = t.google.wait_for("fcm-collapse", 1).await;
    assert_eq!(first[0].status, 503);
    alice.send("u/bob", json!({"body": "two"})).await;
    alice.send("u/bob", json!({"body": "three"})).await;
    let all = t.google.wait_for("fcm-collapse", 2).await;
    assert_eq!(all[1].status, 200);
    assert_eq!(
        all[1].body["message"]["android"]["notification"]["notification_count"],
        3
    );
    // Retry-After: 1 was honoured.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        t.google.seen("fcm-collapse").len(),
        2,
        "one push for three messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_tokens_are_forgotten() {
    let t = setup("").await;
    register_and_leave(&t.s, "phone", "fcm", "fcm-dead").await;
    register_and_leave(&t.s, "ipad", "apns", "apns-gone").await;
    register_and_leave(&t.s, "mini", "apns", "apns-bad").await;
    t.google.always("fcm-dead", providers::fcm_unregistered());
    t.apple
        .always("apns-gone", providers::apns(410, "Unregistered"));
    t.apple
        .always("apns-bad", providers::apns(400, "BadDeviceToken"));
    until_offline(&t.s).await;
    let mut alice = t.s.online("alice", "phone").await;
    alice.send("u/bob", json!({"body": "anyone?"})).await;
    t.google.wait_for("fcm-dead", 1).await;
    t.apple.wait_for("apns-gone", 1).await;
    t.apple.wait_for("apns-bad", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.send("u/bob", json!({"body": "still nobody"})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        t.google.seen("fcm-dead").len(),
        1,
        "a dead FCM token was used again"
    );
    assert_eq!(t.apple.seen("apns-gone").len(), 1);
    assert_eq!(t.apple.seen("apns-bad").len(), 1);
    let m = t.s.metrics();
    assert_eq!(
        metric(
            &m,
            "natter_push_total{provider=\"apns\",class=\"dead_token\"}"
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_access_token_and_an_expired_provider_token_are_renewed() {
    let t = setup("").await;
    register_and_leave(&t.s, "phone", "fcm", "fcm-renew").await;
    register_and_leave(&t.s, "ipad", "apns", "apns-renew").await;
    until_offline(&t.s).await;
    let mut alice = t.s.online("alice", "phone").await;
    alice.send("u/bob", json!({"body": "first"})).await;
    t.google.wait_for("fcm-renew", 1).await;
    t.apple.wait_for("apns-renew", 1).await;

    providers::revoke_access_tokens(&t.google);
    // A provider token made in this same second would still count as old: wait past it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    providers::expire_provider_tokens(&t.apple);
    alice.send("u/bob", json!({"body": "second"})).await;
    let fcm = t.google.wait_for("fcm-renew", 3).await;
    assert_eq!((fcm[1].status, fcm[2].status), (401, 200));
    assert_eq!(t.google.book.lock().unwrap().oauth_calls, 2);
    // APNs refused the old JWT (403 ExpiredProviderToken), then accepted a new one. Waiting
    // for two requests only raced the retry: the refusal is the second.
    let apns = t.apple.wait_for("apns-renew", 3).await;
    assert_eq!(
        apns.iter().map(|s| s.status).collect::<Vec<_>>(),
        [200, 403, 200]
    );
    assert_eq!(t.apple.book.lock().unwrap().jwts.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_retried_up_to_the_limit_and_too_large_is_dropped_at_once() {
    let t = setup("").await;
    register_and_leave(&t.s, "ipad", "apns", "apns-busy").await;
    register_and_leave(&t.s, "mini", "apns", "apns-huge").await;
    t.apple
        .always("apns-busy", providers::apns(429, "TooManyRequests"));
    t.apple
        .always("apns-huge", providers::apns(413, "PayloadTooLarge"));
    until_offline(&t.s).await;
    let mut alice = t.s.online("alice", "phone").await;
    alice.send("u/bob", json!({"body": "hello"})).await;
    // max_attempts = 3: three tries, then the job is dropped and counted.
    t.apple.wait_for("apns-busy", 3).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(t.apple.seen("apns-busy").len(), 3);
    assert_eq!(t.apple.seen("apns-huge").len(), 1, "413 is not retried");
    let m = t.s.metrics();
    assert_eq!(
        metric(&m, "natter_push_total{provider=\"apns\",class=\"gave_up\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "natter_push_total{provider=\"apns\",class=\"rejected\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&m, "natter_push_total{provider=\"apns\",class=\"retry\"}"),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_pending_pushes() {
    let mut t = setup("").await;
    register_and_leave(&t.s, "phone", "fcm", "fcm-restart").await;
    t.google.script(
        "fcm-restart",
        vec![providers::fcm_unavailable(2), providers::fcm_unavailable(2)],
    );
    until_offline(&t.s).await;
    let mut alice = t.s.online("alice", "phone").await;
    alice
        .send("u/bob", json!({"body": "while FCM is down"}))
        .await;
    t.google.wait_for("fcm-restart", 1).await;
    drop(alice);
    t.s.kill9();
    t.s.start_again();
    // The job survived: after its Retry-After it is sent (one more 503, then success).
    let seen = t.google.wait_for("fcm-restart", 3).await;
    assert_eq!(
        seen.iter().map(|s| s.status).collect::<Vec<_>>(),
        [503, 503, 200]
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(t.google.seen("fcm-restart").len(), 3, "sent twice");
}

#[tokio::test]
async fn registering_is_refused_where_push_is_off_or_the_token_is_bad() {
    let s = Server::with_users(&["bob"]);
    let mut bob = s.online("bob", "phone").await;
    let a = bob
        .request("push.register", json!({"platform": "fcm", "token": "t"}))
        .await;
    assert_eq!(a["error"]["code"], "unsupported");
    for bad in [
        json!({"platform": "sms", "token": "t"}),
        json!({"platform": "fcm", "token": "has space"}),
    ] {
        let r = bob
            .publish("q/push.register", {
                let mut b = bad.clone();
                b["id"] = json!("x");
                b.to_string()
            })
            .await;
        assert_eq!(r, PubAckReason::PayloadFormatInvalid, "{bad}");
        let e: Value = bob.recv("d/bob/phone").await;
        assert_eq!(e["error"]["code"], "bad_request");
    }
    assert_eq!(
        bob.request("push.unregister", json!({})).await["removed"],
        false
    );
}

#[test]
fn a_missing_push_key_stops_start_up_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("natter.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[push]\nenabled = true\n[push.apns]\nkey_file = \"/nonexistent/AuthKey.p8\"\n\
             key_id = \"K\"\nteam_id = \"T\"\ntopic = \"x\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let (ok, _, err) = common::run_cli(&cfg, &["serve"], "");
    assert!(!ok);
    assert!(err.contains("push.apns.key_file"), "{err}");
    assert!(err.contains("/nonexistent/AuthKey.p8"), "{err}");
}
