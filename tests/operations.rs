//! Running natter: `/metrics` moves with traffic, `/readyz` follows the store and Redis, and
//! SIGTERM stops it cleanly without losing a message it acknowledged.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{metric, Burst, BurstStep, Redis, Server, WAIT};
use rumqttc::v5::mqttbytes::v5::{DisconnectReasonCode, PubAckReason};
use serde_json::json;

fn status(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .build()
        .into();
    let mut r = agent.get(url).call().expect("HTTP answer");
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

#[tokio::test]
async fn metrics_count_what_users_did() {
    let s = Server::with_users(&["alice", "bob"]);
    let before = s.metrics();
    assert_eq!(metric(&before, "natter_connections"), 0.0);

    let mut alice = s.online("alice", "phone").await;
    let mut bob = s.online("bob", "phone").await;
    let _bob_laptop = s.online("bob", "laptop").await;
    for i in 0..3 {
        alice
            .send("u/bob", json!({"cid": format!("c{i}"), "body": "hi"}))
            .await;
        bob.recv("u/bob/m").await;
    }
    let r = alice.publish("m/u/bob", b"{not json".to_vec()).await;
    assert_eq!(r, PubAckReason::PayloadFormatInvalid);
    alice.recv("d/alice/phone").await;
    // Bob's read receipt travels back to Alice.
    bob.publish("r/u/alice", json!({"upto": 3}).to_string())
        .await;
    for _ in 0..3 {
        alice.recv("u/alice/r").await; // sent
    }

    // Deliveries are acknowledged by the clients asynchronously; give them a moment.
    let deadline = std::time::Instant::now() + WAIT;
    let after = loop {
        let m = s.metrics();
        if metric(&m, "natter_send_deliver_seconds_count") >= 6.0 {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no deliveries counted:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let moved = |series: &str| metric(&after, series) - metric(&before, series);
    assert_eq!(moved("natter_messages_in_total{kind=\"message\"}"), 4.0);
    assert_eq!(moved("natter_messages_in_total{kind=\"read\"}"), 1.0);
    assert_eq!(moved("natter_errors_total{code=\"bad_json\"}"), 1.0);
    // Each message reached Bob's two devices and Alice's phone.
    assert_eq!(moved("natter_messages_out_total{kind=\"message\"}"), 9.0);
    assert!(moved("natter_messages_out_total{kind=\"receipt\"}") >= 3.0);
    assert_eq!(metric(&after, "natter_connections"), 3.0);
    assert_eq!(metric(&after, "natter_online_users"), 2.0);
    assert!(metric(&after, "natter_store_commit_seconds_count") >= 3.0);
    assert!(metric(&after, "natter_store_batch_size_sum") >= 3.0);
    assert!(after.contains("# TYPE natter_send_deliver_seconds histogram"));
    assert!(after.contains("natter_send_deliver_seconds_bucket{le=\"0.01\"}"));

    drop(alice);
    let deadline = std::time::Instant::now() + WAIT;
    while metric(&s.metrics(), "natter_online_users") != 1.0 {
        assert!(std::time::Instant::now() < deadline, "Alice never left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readyz_is_unready_while_redis_is_down() {
    let mut redis = Redis::start();
    let s = Server::start_with(&format!(
        "[presence]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
        redis.url()
    ));
    assert_eq!(status(&s.http_url("/readyz")).0, 200);
    redis.kill();
    let (code, body) = status(&s.http_url("/readyz"));
    assert_eq!(code, 503);
    assert!(body.contains("presence"), "{body}");
    // Liveness is not readiness: natter itself is fine.
    assert_eq!(status(&s.http_url("/healthz")).0, 200);
    redis.restart();
    let deadline = std::time::Instant::now() + WAIT;
    while status(&s.http_url("/readyz")).0 != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const TOTAL: usize = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_loses_no_acknowledged_message() {
    let mut s = Server::start_with_users(
        "shutdown_timeout_secs = 5\n[limits]\nmessages_per_sec = 100000.0\nmessages_burst = 100000\n",
        &["alice", "bob"],
    );

    let mut burst = Burst::start(s.mqtt, TOTAL);
    let mut acked: HashSet<usize> = HashSet::new();
    let mut refused = 0usize;
    let mut told = None;
    let mut signalled = false;
    loop {
        match burst.step().await {
            BurstStep::PubAck(n, reason) => {
                match reason {
                    PubAckReason::Success => {
                        acked.insert(n);
                    }
                    // Refused during shutdown: the client still has it and sends it again.
                    PubAckReason::UnspecifiedError => refused += 1,
                    other => panic!("unexpected PUBACK {other:?}"),
                }
                if acked.len() == 300 && !signalled {
                    s.signal("TERM");
                    signalled = true;
                }
            }
            BurstStep::Disconnect(code) => told = Some(code),
            // The server closed the connection (the loop fails on a broken link otherwise).
            BurstStep::Ended => break,
            BurstStep::Other => {}
        }
    }
    let unanswered = burst.unanswered();
    drop(burst);
    assert!(signalled, "the burst was interrupted");
    // natter asks rmqtt to end every session with "server shutting down" (0x8B), but rmqtt
    // 0.24 closes the socket before it writes the DISCONNECT, so clients see the close; if a
    // later rmqtt sends it, it must carry 0x8B.
    assert!(
        told.is_none() || told == Some(DisconnectReasonCode::ServerShuttingDown),
        "{told:?}"
    );
    let status = s.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "natter exited with {status}");
    assert!(acked.len() < TOTAL, "SIGTERM came mid-burst");
    eprintln!(
        "acked {} refused {refused} unanswered {unanswered}",
        acked.len()
    );

    s.start_again();
    common::every_acked_message_kept_once(&s, &acked).await;
}

#[tokio::test]
async fn json_logs_have_one_line_per_connection_event_and_no_message_bodies() {
    let s = Server::start_with_users("[log]\nformat = \"json\"\n", &["alice", "bob"]);
    let mut alice = s.online("alice", "phone").await;
    alice
        .send("u/bob", json!({"body": "a very private sentence"}))
        .await;
    drop(alice);
    let deadline = std::time::Instant::now() + WAIT;
    while !s.log().contains("\"disconnected\"") {
        assert!(
            std::time::Instant::now() < deadline,
            "no disconnect line:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = s.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let events: Vec<&str> = lines
        .iter()
        .filter(|l| l["fields"]["client"] == "alice:phone")
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    assert_eq!(events, ["connected", "disconnected"]);
    assert!(lines.iter().all(|l| l["level"] != "ERROR"));
    assert!(!log.contains("very private"), "a message body was logged");
}
