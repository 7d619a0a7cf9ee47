//! `kill -9` in the middle of a burst: every message that got a PUBACK survives, exactly once,
//! with gap-free seqs.

mod common;

use std::collections::{HashMap, HashSet};

use common::{connect, Server, WAIT};
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::Event;
use rumqttc::Outgoing;
use serde_json::json;

const TOTAL: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_acked_before_kill_9_is_in_bobs_sync_exactly_once() {
    // A burst far over the default per-user rate: this test is about durability.
    let mut s =
        Server::start_with("[limits]\nmessages_per_sec = 100000.0\nmessages_burst = 100000\n");
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");

    let (mut el, sender) = common::burst(s.mqtt, TOTAL);

    // Publishes leave in request order, so the n-th outgoing PUBLISH is message n; packet ids
    // are reused once acked, so the map holds only those in flight.
    let mut in_flight: HashMap<u16, usize> = HashMap::new();
    let mut sent = 0usize;
    let mut acked: HashSet<usize> = HashSet::new();
    let kill_after = 300;
    loop {
        match tokio::time::timeout(WAIT, el.poll())
            .await
            .expect("progress")
        {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                in_flight.insert(pkid, sent);
                sent += 1;
            }
            Ok(Event::Incoming(Packet::PubAck(a))) => {
                let n = in_flight
                    .remove(&a.pkid)
                    .expect("a PUBACK for a message in flight");
                acked.insert(n);
                if acked.len() == kill_after {
                    s.kill9();
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    sender.abort();
    assert!(acked.len() >= kill_after, "natter was killed mid-burst");
    assert!(
        sent > acked.len(),
        "some messages were still in flight at the kill (sent {sent})"
    );

    s.restart();
    let mut bob = connect(s.mqtt, "bob", "phone", "pw").await;
    bob.subscribe_all().await;
    let inbox = bob.sync_all(0).await;
    let mut seen = HashSet::new();
    for (i, m) in inbox.iter().enumerate() {
        assert_eq!(
            m["seq"].as_u64().unwrap(),
            i as u64 + 1,
            "seqs are gap-free"
        );
        let cid = m["cid"].as_str().unwrap().to_owned();
        assert!(seen.insert(cid.clone()), "{cid} delivered twice");
    }
    for n in &acked {
        assert!(
            seen.contains(&format!("k{n}")),
            "message {n} got a PUBACK but was lost"
        );
    }
    // The inbox goes on where it stopped.
    let mut alice = connect(s.mqtt, "alice", "phone", "pw").await;
    alice
        .send("u/bob", json!({"cid": "after", "body": "after restart"}))
        .await;
    let m = bob.recv("u/bob/m").await;
    assert_eq!(m["seq"].as_u64().unwrap(), inbox.len() as u64 + 1);
}
