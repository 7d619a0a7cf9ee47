//! Groups end to end: membership, admin rules, system messages and events, fan-out to every
//! device of every member.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Mqtt, Server};
use rumqttc::v5::mqttbytes::v5::PubAckReason;
use serde_json::{json, Value};

async fn ok(c: &mut Mqtt, method: &str, params: Value) -> Value {
    let a = c.request(method, params).await;
    assert_eq!(a["ok"], true, "{method}: {a}");
    a
}

async fn err(c: &mut Mqtt, method: &str, params: Value) -> String {
    let a = c.request(method, params).await;
    assert_eq!(a["ok"], false, "{method} must fail: {a}");
    a["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn membership_changes_follow_the_admin_rules_and_show_in_the_chat() {
    let s = Server::with_users(&["alice", "bob", "carol", "dave"]);
    let mut alice = s.online("alice", "phone").await;
    let mut bob = s.online("bob", "phone").await;
    let mut carol = s.online("carol", "phone").await;

    let g = ok(
        &mut alice,
        "group.create",
        json!({"name": "team", "members": ["bob"]}),
    )
    .await["group"]
        .clone();
    let gid = g["id"].as_str().unwrap().to_owned();
    let chat = format!("g/{gid}");
    assert_eq!(g["chat"], chat);
    assert_eq!(g["members"], json!(["alice", "bob"]));
    assert_eq!(g["admins"], json!(["alice"]));
    let created = bob.recv("u/bob/m").await;
    assert_eq!(
        (created["type"].as_str(), created["chat"].as_str()),
        (Some("system"), Some(chat.as_str()))
    );
    assert_eq!(created["event"]["action"], "created");
    assert_eq!(bob.recv("u/bob/e").await["action"], "created");

    // Only admins add.
    assert_eq!(
        err(
            &mut bob,
            "group.add",
            json!({"group": gid, "members": ["carol"]})
        )
        .await,
        "not_authorized"
    );
    let g = ok(
        &mut alice,
        "group.add",
        json!({"group": gid, "members": ["carol"]}),
    )
    .await["group"]
        .clone();
    assert_eq!(g["members"], json!(["alice", "bob", "carol"]));
    let added = carol.recv("u/carol/m").await;
    assert_eq!(added["event"]["action"], "added");
    assert_eq!(added["event"]["members"], json!(["carol"]));
    assert_eq!(carol.recv("u/carol/e").await["group"]["name"], "team");
    assert_eq!(bob.recv("u/bob/m").await["event"]["action"], "added");
    assert_eq!(bob.recv("u/bob/e").await["action"], "added");

    // Only admins remove; the removed member sees the removal, then nothing more.
    assert_eq!(
        err(
            &mut carol,
            "group.remove",
            json!({"group": gid, "members": ["bob"]})
        )
        .await,
        "not_authorized"
    );
    ok(
        &mut alice,
        "group.remove",
        json!({"group": chat, "members": ["bob"]}),
    )
    .await;
    let removed = bob.recv("u/bob/m").await;
    assert_eq!(removed["event"]["action"], "removed");
    assert_eq!(bob.recv("u/bob/e").await["action"], "removed");
    carol.recv("u/carol/m").await;
    alice
        .send(
            &chat,
            json!({"cid": "after-removal", "body": "bob is gone"}),
        )
        .await;
    assert_eq!(carol.recv("u/carol/m").await["body"], "bob is gone");
    bob.nothing_on("u/bob/m", Duration::from_millis(400)).await;
    let r = bob
        .publish(
            &format!("m/{chat}"),
            json!({"body": "let me back"}).to_string(),
        )
        .await;
    assert_eq!(r, PubAckReason::NotAuthorized);
    assert_eq!(
        bob.recv("d/bob/phone").await["error"]["code"],
        "not_authorized"
    );
    assert_eq!(
        err(&mut bob, "history", json!({"chat": chat})).await,
        "not_authorized"
    );
    assert_eq!(
        err(&mut bob, "group.info", json!({"group": gid})).await,
        "not_authorized"
    );

    // The last admin leaving promotes the oldest member.
    ok(&mut alice, "group.leave", json!({"group": gid})).await;
    let info = ok(&mut carol, "group.info", json!({"group": gid})).await;
    assert_eq!(info["group"]["members"], json!(["carol"]));
    assert_eq!(info["group"]["admins"], json!(["carol"]));
    assert_eq!(
        err(
            &mut alice,
            "group.add",
            json!({"group": gid, "members": ["dave"]})
        )
        .await,
        "not_authorized"
    );
    ok(
        &mut carol,
        "group.add",
        json!({"group": gid, "members": ["dave"]}),
    )
    .await;
}

#[tokio::test]
async fn non_members_and_strangers_are_refused_the_same_way() {
    let s = Server::with_users(&["alice", "bob", "eve"]);
    let mut alice = s.online("alice", "phone").await;
    let mut eve = s.online("eve", "phone").await;
    let gid = ok(
        &mut alice,
        "group.create",
        json!({"name": "private", "members": ["bob"]}),
    )
    .await["group"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for group in [gid.as_str(), "no-such-group"] {
        let r = eve.publish(&format!("m/g/{group}"), "hello?").await;
        assert_eq!(r, PubAckReason::NotAuthorized, "{group}");
        assert_eq!(
            eve.recv("d/eve/phone").await["error"]["code"],
            "not_authorized"
        );
        assert_eq!(
            err(&mut eve, "group.info", json!({"group": group})).await,
            "not_authorized"
        );
        assert_eq!(
            err(&mut eve, "group.leave", json!({"group": group})).await,
            "not_authorized"
        );
    }
    assert_eq!(
        err(
            &mut alice,
            "group.create",
            json!({"name": "x", "members": ["nobody"]})
        )
        .await,
        "unknown_user"
    );
    assert_eq!(
        err(
            &mut alice,
            "group.create",
            json!({"name": "", "members": []})
        )
        .await,
        "bad_request"
    );
    assert_eq!(
        err(&mut alice, "group.add", json!({"members": ["bob"]})).await,
        "bad_request"
    );
}

#[tokio::test]
async fn the_group_size_limit_is_a_clear_error() {
    let s = Server::start_with_users(
        "[limits]\nmax_group_members = 3\n",
        &["alice", "bob", "carol", "dave"],
    );
    let mut alice = s.online("alice", "phone").await;
    let a = alice
        .publish(
            "q/group.create",
            json!({"id": "x", "name": "big", "members": ["bob", "carol", "dave"]}).to_string(),
        )
        .await;
    assert_eq!(a, PubAckReason::QuotaExceeded);
    assert_eq!(
        alice.recv("d/alice/phone").await["error"]["code"],
        "limit_exceeded"
    );
    let gid = ok(
        &mut alice,
        "group.create",
        json!({"name": "ok", "members": ["bob", "carol"]}),
    )
    .await["group"]["id"]
        .clone();
    assert_eq!(
        err(
            &mut alice,
            "group.add",
            json!({"group": gid, "members": ["dave"]})
        )
        .await,
        "limit_exceeded"
    );
}

#[tokio::test]
async fn three_members_with_two_devices_each_get_every_message_exactly_once() {
    let s = Server::with_users(&["alice", "bob", "carol"]);
    let mut devices = Vec::new();
    for u in ["alice", "bob", "carol"] {
        for d in ["phone", "laptop"] {
            devices.push(s.online(u, d).await);
        }
    }
    let gid = ok(
        &mut devices[0],
        "group.create",
        json!({"name": "trio", "members": ["bob", "carol"]}),
    )
    .await["group"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for d in devices.iter_mut() {
        let topic = format!("u/{}/m", d.user);
        assert_eq!(d.recv(&topic).await["type"], "system");
    }
    for i in 0..3 {
        let who = i * 2; // alice, bob, carol's phones take turns
        devices[who]
            .send(
                &format!("g/{gid}"),
                json!({"cid": format!("t{i}"), "body": format!("msg {i}")}),
            )
            .await;
    }
    for d in devices.iter_mut() {
        let topic = format!("u/{}/m", d.user);
        let mut bodies = Vec::new();
        for _ in 0..3 {
            let m = d.recv(&topic).await;
            assert_eq!(m["chat"], format!("g/{gid}"));
            bodies.push(m["body"].as_str().unwrap().to_owned());
        }
        bodies.sort();
        assert_eq!(
            bodies,
            ["msg 0", "msg 1", "msg 2"],
            "{}:{}",
            d.user,
            d.device
        );
        d.nothing_on(&topic, Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_offline_member_syncs_group_messages_in_order_and_chats_lists_the_group() {
    let s = Server::with_users(&["alice", "bob"]);
    let mut alice = s.online("alice", "phone").await;
    let gid = ok(
        &mut alice,
        "group.create",
        json!({"name": "news", "members": ["bob"]}),
    )
    .await["group"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..5 {
        alice
            .send(
                &format!("g/{gid}"),
                json!({"cid": format!("n{i}"), "body": format!("news {i}")}),
            )
            .await;
    }
    let mut bob = s.online("bob", "tablet").await;
    let inbox = bob.sync_all(0).await;
    let bodies: Vec<_> = inbox.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(
        &bodies[1..],
        ["news 0", "news 1", "news 2", "news 3", "news 4"]
    );
    assert_eq!(inbox[0]["type"], "system");
    let seqs: Vec<_> = inbox.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    let chats = ok(&mut bob, "chats", json!({})).await;
    assert_eq!(chats["chats"][0]["chat"], format!("g/{gid}"));
    assert_eq!(
        chats["chats"][0]["name"], "news",
        "the list can show the group's name"
    );
    assert_eq!(chats["chats"][0]["unread"], 6);
    let history = ok(
        &mut bob,
        "history",
        json!({"chat": format!("g/{gid}"), "limit": 2}),
    )
    .await;
    assert_eq!(history["messages"][0]["body"], "news 4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_thousand_member_group_reaches_every_online_member() {
    const N: usize = 1000;
    let s = Server::with_users(&[]);
    let names: Vec<String> = (0..N).map(|i| format!("m{i:04}")).collect();
    // Users in parallel through the admin API (hashing is the slow part).
    let url = s.http_url("/v1/admin/users");
    let started = std::time::Instant::now();
    let chunks: Vec<Vec<String>> = names.chunks(N / 4).map(|c| c.to_vec()).collect();
    let mut makers = Vec::new();
    for chunk in chunks {
        let url = url.clone();
        makers.push(std::thread::spawn(move || {
            // Each new account comes with its first token: no password check per login.
            let mut tokens = Vec::new();
            for n in chunk {
                let (st, b) = common::http(
                    "POST",
                    &url,
                    Some(common::ADMIN_TOKEN),
                    Some(json!({"name": n, "password": "pw"})),
                );
                assert_eq!(st, 201, "{b}");
                tokens.push((n, b["token"].as_str().unwrap().to_owned()));
            }
            tokens
        }));
    }
    let mut tokens = Vec::with_capacity(N);
    for m in makers {
        tokens.extend(m.join().unwrap());
    }
    eprintln!("{N} users created in {:?}", started.elapsed());
    let mut members = Vec::with_capacity(N);
    for (n, token) in &tokens {
        let mut c = common::connect_with(common::options(s.mqtt, &format!("{n}:phone"), n, token))
            .await
            .unwrap();
        let topic = format!("u/{n}/m");
        c.subscribe(&topic).await;
        members.push(c);
    }
    eprintln!("{N} members connected at {:?}", started.elapsed());
    let owner = &mut members[0];
    assert!(owner.still_connected().await); // also subscribes to its d/ topic for answers
    let g = ok(
        owner,
        "group.create",
        json!({"name": "everyone", "members": names[1..]}),
    )
    .await;
    let gid = g["group"]["id"].as_str().unwrap().to_owned();
    owner
        .send(
            &format!("g/{gid}"),
            json!({"cid": "all", "body": "hello, all 1000"}),
        )
        .await;
    for (n, c) in names.iter().zip(members.iter_mut()) {
        let topic = format!("u/{n}/m");
        assert_eq!(c.recv(&topic).await["type"], "system", "{n}");
        let m = c.recv(&topic).await;
        assert_eq!(m["body"], "hello, all 1000", "{n}");
        assert_eq!(m["seq"], 2, "{n}");
    }
}

#[tokio::test]
async fn a_user_in_too_many_groups_cannot_join_another() {
    let s = Server::start_with_users(
        "[limits]\nmax_groups_per_user = 2\n",
        &["alice", "bob", "carol"],
    );
    let mut alice = s.online("alice", "phone").await;
    let mut carol = s.online("carol", "phone").await;
    for name in ["one", "two"] {
        ok(
            &mut alice,
            "group.create",
            json!({"name": name, "members": ["bob"]}),
        )
        .await;
    }
    // Alice is in two groups already: she cannot create a third.
    let a = alice
        .publish(
            "q/group.create",
            json!({"id": "x", "name": "three", "members": []}).to_string(),
        )
        .await;
    assert_eq!(a, PubAckReason::QuotaExceeded);
    assert_eq!(
        alice.recv("d/alice/phone").await["error"]["code"],
        "limit_exceeded"
    );
    // Carol has room, but Bob does not: adding him is refused and names him.
    let gid = ok(
        &mut carol,
        "group.create",
        json!({"name": "c", "members": []}),
    )
    .await["group"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = carol
        .publish(
            "q/group.add",
            json!({"id": "y", "group": gid, "members": ["bob"]}).to_string(),
        )
        .await;
    assert_eq!(a, PubAckReason::QuotaExceeded);
    let e = carol.recv("d/carol/phone").await;
    assert_eq!(e["error"]["code"], "limit_exceeded");
    assert!(e["error"]["message"].as_str().unwrap().contains("bob"));
}
