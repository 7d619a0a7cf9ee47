//! natter as a plain MQTT broker for integrations (issue 20): what a conformant MQTT 3.1.1 or
//! 5.0 client notices on the `[anonymous]` listener and on `[[acl]]` topics. Packets the usual
//! client libraries will not send (Topic Alias 0, an empty client id, a reconnect right behind a
//! DISCONNECT) are written by hand ([`Raw`]).

// An integration test: helpers are not `#[test]` functions, so clippy.toml does not cover them;
// a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{connect, free_port, metric, packet, string, varint, Server, WAIT};
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Config of an anonymous listener on `port` whose clients may use every integration topic.
fn anonymous(port: u16) -> String {
    format!("[anonymous]\nlisten = \"127.0.0.1:{port}\"\npublish = [\"#\"]\nsubscribe = [\"#\"]\n")
}

// ---- a hand-written MQTT client ----

/// A CONNECT: MQTT 5 when `v5`, else 3.1.1; no credentials, keepalive 30 s.
fn connect_packet(v5: bool, client_id: &str, clean: bool, session_expiry: Option<u32>) -> Vec<u8> {
    let mut b = Vec::new();
    string("MQTT", &mut b);
    b.push(if v5 { 5 } else { 4 });
    b.push(if clean { 0x02 } else { 0 });
    b.extend(30u16.to_be_bytes());
    if v5 {
        let mut props = Vec::new();
        if let Some(e) = session_expiry {
            props.push(0x11);
            props.extend(e.to_be_bytes());
        }
        varint(props.len(), &mut b);
        b.extend(props);
    }
    string(client_id, &mut b);
    packet(0x10, &b)
}

/// A QoS 0 PUBLISH; MQTT 5 with a Topic Alias when `alias` is given.
fn publish_packet(v5: bool, topic: &str, alias: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    string(topic, &mut b);
    if v5 {
        let mut props = Vec::new();
        if let Some(a) = alias {
            props.push(0x23);
            props.extend(a.to_be_bytes());
        }
        varint(props.len(), &mut b);
        b.extend(props);
    }
    b.extend(payload);
    packet(0x30, &b)
}

/// A CONNACK as read.
#[derive(Debug)]
struct ConnAck {
    session_present: bool,
    code: u8,
    /// MQTT 5 properties: (identifier, raw value bytes).
    props: Vec<(u8, Vec<u8>)>,
}

impl ConnAck {
    fn prop(&self, id: u8) -> Option<&[u8]> {
        self.props
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| v.as_slice())
    }
}

/// One MQTT connection written and read by hand.
struct Raw {
    s: TcpStream,
    v5: bool,
}

impl Raw {
    async fn open(port: u16, v5: bool) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.set_nodelay(true).unwrap();
        Raw { s, v5 }
    }

    /// Connects and returns the CONNACK.
    async fn connect(port: u16, v5: bool, client_id: &str, clean: bool) -> (Raw, ConnAck) {
        Self::connect_with(port, v5, client_id, clean, None).await
    }

    async fn connect_with(
        port: u16,
        v5: bool,
        client_id: &str,
        clean: bool,
        session_expiry: Option<u32>,
    ) -> (Raw, ConnAck) {
        let mut r = Raw::open(port, v5).await;
        r.send(&connect_packet(v5, client_id, clean, session_expiry))
            .await;
        let (h, body) = r.read().await.expect("a CONNACK, not a closed socket");
        assert_eq!(h, 0x20, "a CONNACK");
        let mut props = Vec::new();
        if v5 && body.len() > 2 {
            let mut i = 2;
            let (len, n) = read_varint(&body[i..]);
            i += n;
            let end = i + len;
            while i < end {
                let id = body[i];
                i += 1;
                let size = match id {
                    0x12 | 0x1A | 0x1C | 0x1F | 0x15 => {
                        2 + u16::from_be_bytes([body[i], body[i + 1]]) as usize
                    }
                    0x11 | 0x27 => 4,
                    0x13 | 0x21 | 0x22 => 2,
                    0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
                    0x26 => {
                        let k = 2 + u16::from_be_bytes([body[i], body[i + 1]]) as usize;
                        k + 2 + u16::from_be_bytes([body[i + k], body[i + k + 1]]) as usize
                    }
                    other => panic!("unexpected CONNACK property {other:#x}"),
                };
                props.push((id, body[i..i + size].to_vec()));
                i += size;
            }
        }
        let ack = ConnAck {
            session_present: body[0] & 1 == 1,
            code: body[1],
            props,
        };
        (r, ack)
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    async fn disconnect(&mut self) {
        let p = if self.v5 {
            vec![0xE0, 1, 0]
        } else {
            vec![0xE0, 0]
        };
        self.send(&p).await;
    }

    /// The next packet (fixed header byte, body), or `None` once the server closed.
    async fn read(&mut self) -> Option<(u8, Vec<u8>)> {
        tokio::time::timeout(WAIT, async {
            let mut h = [0u8; 1];
            if self.s.read_exact(&mut h).await.is_err() {
                return None;
            }
            let mut len = 0usize;
            let mut mul = 1usize;
            loop {
                let mut b = [0u8; 1];
                self.s.read_exact(&mut b).await.ok()?;
                len += (b[0] & 0x7F) as usize * mul;
                mul *= 128;
                if b[0] & 0x80 == 0 {
                    break;
                }
            }
            let mut body = vec![0u8; len];
            self.s.read_exact(&mut body).await.ok()?;
            Some((h[0], body))
        })
        .await
        .expect("a packet or a close in time")
    }

    /// Reads to the end: the reason code of the DISCONNECT the server sent before it closed,
    /// `None` if it closed without one.
    async fn disconnect_reason(&mut self) -> Option<u8> {
        let mut reason = None;
        while let Some((h, body)) = self.read().await {
            if h == 0xE0 {
                reason = Some(body.first().copied().unwrap_or(0));
            }
        }
        reason
    }
}

fn read_varint(b: &[u8]) -> (usize, usize) {
    let (mut v, mut mul) = (0usize, 1usize);
    for (i, byte) in b.iter().enumerate() {
        v += (byte & 0x7F) as usize * mul;
        mul *= 128;
        if byte & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    panic!("bad variable byte integer");
}

// ---- an MQTT 5 client that keeps the properties of what it receives ----

struct Seen {
    topic: String,
    payload: Vec<u8>,
    props: Option<PublishProperties>,
}

async fn client(port: u16, id: &str) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_outgoing_inflight_upper_limit(64);
    let (c, mut el) = AsyncClient::new(o, 100);
    loop {
        if let Event::Incoming(Packet::ConnAck(_)) = tokio::time::timeout(WAIT, el.poll())
            .await
            .expect("CONNACK in time")
            .expect("connected")
        {
            return (c, el);
        }
    }
}

async fn subscribed(c: &AsyncClient, el: &mut EventLoop, filter: &str) -> SubscribeReasonCode {
    c.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(a)) = tokio::time::timeout(WAIT, el.poll())
            .await
            .expect("SUBACK in time")
            .unwrap()
        {
            return a.return_codes[0];
        }
    }
}

/// Publishes received within `quiet` of each other.
async fn received(el: &mut EventLoop, quiet: Duration) -> Vec<Seen> {
    let mut seen = Vec::new();
    while let Ok(ev) = tokio::time::timeout(quiet, el.poll()).await {
        if let Event::Incoming(Packet::Publish(p)) = ev.unwrap() {
            seen.push(Seen {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload.to_vec(),
                props: p.properties,
            });
        }
    }
    seen
}

async fn publish_from(port: u16, id: &str, topic: &str, payload: &str, props: PublishProperties) {
    let (c, mut el) = client(port, id).await;
    c.publish_with_properties(topic, QoS::AtLeastOnce, true, payload.to_owned(), props)
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::PubAck(_)) = el.poll().await.unwrap() {
            break;
        }
    }
}

// ---- 1. message expiry ----

/// A retained message without an expiry is kept and delivered with no Message Expiry Interval
/// (rmqtt stamped every delivery with 300 s and dropped it then); one with an expiry of its own
/// goes when it runs out.
#[tokio::test]
async fn a_message_without_expiry_never_expires() {
    let anon = free_port();
    let _s = Server::start_with(&anonymous(anon));
    publish_from(anon, "cfg-writer", "cfg/plant", "keep", Default::default()).await;
    let short = PublishProperties {
        message_expiry_interval: Some(1),
        ..Default::default()
    };
    publish_from(anon, "cfg-writer2", "cfg/flash", "brief", short).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let (c, mut el) = client(anon, "reader").await;
    assert!(matches!(
        subscribed(&c, &mut el, "cfg/#").await,
        SubscribeReasonCode::Success(_)
    ));
    let seen = received(&mut el, Duration::from_millis(500)).await;
    let topics: Vec<&str> = seen.iter().map(|s| s.topic.as_str()).collect();
    assert_eq!(
        topics,
        ["cfg/plant"],
        "the message with no expiry, not the expired one"
    );
    assert_eq!(seen[0].payload, b"keep");
    let expiry = seen[0]
        .props
        .as_ref()
        .and_then(|p| p.message_expiry_interval);
    assert_eq!(expiry, None, "no expiry was set, so none is delivered");
}

// ---- 2. zero-length client ids ----

#[tokio::test]
async fn a_zero_length_client_id_gets_a_session_of_its_own() {
    let anon = free_port();
    let s = Server::start_with_users(&anonymous(anon), &["alice"]);
    // 3.1.1, clean session: accepted with a session the server names [MQTT-3.1.3-6/7].
    let (_a, ack) = Raw::connect(anon, false, "", true).await;
    assert_eq!(ack.code, 0, "accepted");
    assert!(!ack.session_present);
    // 3.1.1 without clean session: Identifier rejected [MQTT-3.1.3-8].
    let (_b, ack) = Raw::connect(anon, false, "", false).await;
    assert_eq!(ack.code, 2, "CONNACK 2, identifier rejected");
    // MQTT 5: accepted, with the Assigned Client Identifier, different each time.
    let (_c, ack1) = Raw::connect(anon, true, "", true).await;
    let (_d, ack2) = Raw::connect(anon, true, "", true).await;
    assert_eq!((ack1.code, ack2.code), (0, 0), "accepted");
    let id1 = ack1
        .prop(0x12)
        .expect("an Assigned Client Identifier")
        .to_vec();
    let id2 = ack2
        .prop(0x12)
        .expect("an Assigned Client Identifier")
        .to_vec();
    assert!(id1.len() > 2 && id1 != id2, "two distinct ids");
    // A user's connection still needs `{user}:{device}` (docs/protocol.md): 5 / 0x87.
    let (_e, ack) = Raw::connect(s.mqtt, false, "", true).await;
    assert_eq!(
        ack.code, 5,
        "3.1.1 on the credentialed listener: not authorized"
    );
    let (_f, ack) = Raw::connect(s.mqtt, true, "", true).await;
    assert_eq!(
        ack.code, 0x87,
        "5.0 on the credentialed listener: not authorized"
    );
}

// ---- 3. wildcard grants ----

/// `#` granted by a rule shows every integration topic and never a chat topic: not other users'
/// messages or presence, not even the monitor's own.
#[tokio::test]
async fn a_wildcard_grant_sees_all_integration_traffic_and_no_chat() {
    let anon = free_port();
    let cfg = format!(
        "{}[[acl]]\nuser = \"mon\"\nsubscribe = [\"#\"]\n\n[[acl]]\nuser = \"sensor\"\npublish = [\"tele/#\"]\n",
        anonymous(anon)
    );
    let s = Server::start_with_users(&cfg, &["alice", "bob", "mon", "sensor"]);
    let mut mon = connect(s.mqtt, "mon", "laptop", "pw").await;
    for f in ["#", "+/+/+", "+/temp"] {
        assert!(
            matches!(mon.subscribe(f).await, SubscribeReasonCode::Success(_)),
            "mon may subscribe to {f}"
        );
    }
    for f in ["u/bob/m", "u/+/m", "p/alice", "$SYS/#", "m/u/bob"] {
        assert_eq!(
            mon.subscribe(f).await,
            SubscribeReasonCode::NotAuthorized,
            "mon subscribing to {f}"
        );
    }
    let (ac, mut anon_el) = client(anon, "watcher").await;
    assert!(matches!(
        subscribed(&ac, &mut anon_el, "#").await,
        SubscribeReasonCode::Success(_)
    ));

    // Chat traffic: a message, receipts, presence of alice and bob coming online.
    let mut bob = s.online("bob", "phone").await;
    let mut alice = s.online("alice", "phone").await;
    alice.send("u/bob", json!({"body": "private"})).await;
    assert_eq!(bob.recv("u/bob/m").await["body"], "private");
    alice.recv("u/alice/r").await;
    // Integration traffic.
    let mut sensor = connect(s.mqtt, "sensor", "s1", "pw").await;
    sensor.publish("tele/boiler/temp", "71").await;
    sensor.publish("tele/pump", "on").await;

    let anon_seen = received(&mut anon_el, Duration::from_millis(700)).await;
    let anon_topics: Vec<&str> = anon_seen.iter().map(|s| s.topic.as_str()).collect();
    assert_eq!(anon_topics, ["tele/boiler/temp", "tele/pump"]);
    assert_eq!(mon.recv_raw("tele/boiler/temp").await, b"71");
    assert_eq!(mon.recv_raw("tele/pump").await, b"on");
    for t in [
        "u/bob/m",
        "u/alice/r",
        "u/alice/m",
        "p/alice",
        "p/bob",
        "p/mon",
    ] {
        mon.nothing_on(t, Duration::from_millis(200)).await;
    }
}

// ---- 4. topic aliases and shared subscriptions ----

#[tokio::test]
async fn a_bad_topic_alias_gets_disconnect_0x94() {
    let anon = free_port();
    let _s = Server::start_with(&anonymous(anon));
    let (mut r, ack) = Raw::connect(anon, true, "aliaser", true).await;
    assert_eq!(ack.code, 0);
    let max = u16::from_be_bytes(
        ack.prop(0x22)
            .expect("a Topic Alias Maximum")
            .try_into()
            .unwrap(),
    );
    assert!(max > 0);
    // A good alias works: set, then used with an empty topic.
    let (sub, mut sub_el) = client(anon, "alias-reader").await;
    subscribed(&sub, &mut sub_el, "al/#").await;
    r.send(&publish_packet(true, "al/one", Some(1), b"first"))
        .await;
    r.send(&publish_packet(true, "", Some(1), b"second")).await;
    let seen = received(&mut sub_el, Duration::from_millis(500)).await;
    let got: Vec<(&str, &[u8])> = seen
        .iter()
        .map(|s| (s.topic.as_str(), s.payload.as_slice()))
        .collect();
    assert_eq!(got, [("al/one", &b"first"[..]), ("al/one", &b"second"[..])]);

    for alias in [0, max + 1] {
        let (mut r, _) = Raw::connect(anon, true, "aliaser", true).await;
        r.send(&publish_packet(true, "al/x", Some(alias), b"x"))
            .await;
        assert_eq!(
            r.disconnect_reason().await,
            Some(0x94),
            "alias {alias}: DISCONNECT Topic Alias invalid, then the close"
        );
    }
}

#[tokio::test]
async fn a_shared_subscription_balances_the_group_under_the_acl() {
    let anon = free_port();
    let cfg = format!(
        "[anonymous]\nlisten = \"127.0.0.1:{anon}\"\npublish = [\"jobs/#\"]\nsubscribe = [\"jobs/#\"]\n"
    );
    let _s = Server::start_with(&cfg);
    let (_r, ack) = Raw::connect(anon, true, "probe", true).await;
    assert_ne!(
        ack.prop(0x2A),
        Some(&[0u8][..]),
        "shared subscriptions available"
    );
    let (w1, mut el1) = client(anon, "worker-1").await;
    let (w2, mut el2) = client(anon, "worker-2").await;
    for (w, el) in [(&w1, &mut el1), (&w2, &mut el2)] {
        assert!(matches!(
            subscribed(w, el, "$share/workers/jobs/#").await,
            SubscribeReasonCode::Success(_)
        ));
        // The ACL applies to the filter part.
        assert_eq!(
            subscribed(w, el, "$share/workers/secret/#").await,
            SubscribeReasonCode::NotAuthorized
        );
        assert_eq!(
            subscribed(w, el, "$share/workers/u/bob/m").await,
            SubscribeReasonCode::NotAuthorized
        );
    }
    let (p, mut pel) = client(anon, "producer").await;
    for i in 0..20 {
        p.publish(format!("jobs/{i}"), QoS::AtLeastOnce, false, "job")
            .await
            .unwrap();
    }
    let pump = tokio::spawn(async move { received(&mut pel, Duration::from_millis(800)).await });
    let (a, b) = tokio::join!(
        received(&mut el1, Duration::from_millis(800)),
        received(&mut el2, Duration::from_millis(800))
    );
    pump.await.unwrap();
    assert_eq!(
        a.len() + b.len(),
        20,
        "each job delivered once to the group"
    );
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both workers got jobs: {} and {}",
        a.len(),
        b.len()
    );
}

// ---- 5. shutdown ----

#[tokio::test]
async fn mqtt5_clients_get_disconnect_0x8b_at_shutdown() {
    let anon = free_port();
    let mut s = Server::start_with_users(&anonymous(anon), &["alice"]);
    let (mut integration, _) = Raw::connect(anon, true, "plc-7", true).await;
    s.signal("TERM");
    assert_eq!(
        integration.disconnect_reason().await,
        Some(0x8B),
        "server shutting down"
    );
    assert!(s.wait_exit(Duration::from_secs(15)).success());
}

// ---- 6. takeover right after DISCONNECT ----

/// A client that sends DISCONNECT and reconnects at once with the same id is always accepted,
/// and "session present" says whether a session was kept: never for a clean one.
#[tokio::test]
async fn reconnecting_right_after_disconnect_gets_session_present_right() {
    let anon = free_port();
    let _s = Server::start_with(&anonymous(anon));
    for round in 0..15 {
        let id = format!("racer-{round}");
        // 3.1.1: a clean session ends at DISCONNECT; a persistent one is kept.
        let (mut c, ack) = Raw::connect(anon, false, &id, true).await;
        assert_eq!((ack.code, ack.session_present), (0, false));
        c.disconnect().await;
        let (mut c, ack) = Raw::connect(anon, false, &id, false).await;
        assert_eq!(
            (ack.code, ack.session_present),
            (0, false),
            "round {round}: after a clean session, none is present"
        );
        c.disconnect().await;
        let (mut c, ack) = Raw::connect(anon, false, &id, false).await;
        assert_eq!(
            (ack.code, ack.session_present),
            (0, true),
            "round {round}: the persistent session is present"
        );
        c.disconnect().await;
        // MQTT 5: session expiry 0 ends with the connection; 60 s keeps it.
        let id5 = format!("racer5-{round}");
        let (mut c, _) = Raw::connect_with(anon, true, &id5, true, None).await;
        c.disconnect().await;
        let (mut c, ack) = Raw::connect_with(anon, true, &id5, false, Some(60)).await;
        assert_eq!(
            (ack.code, ack.session_present),
            (0, false),
            "round {round} (5.0)"
        );
        c.disconnect().await;
        let (_c, ack) = Raw::connect_with(anon, true, &id5, false, Some(60)).await;
        assert_eq!(
            (ack.code, ack.session_present),
            (0, true),
            "round {round} (5.0)"
        );
    }
}

// ---- 7. queue overflow ----

/// A subscriber that does not acknowledge fills its in-flight window and then its queue; what
/// does not fit is counted and logged once for the session, not lost in silence.
#[tokio::test]
async fn an_overflowing_session_queue_is_counted_and_logged_once() {
    let anon = free_port();
    let cfg = format!(
        "[mqtt]\nmax_inflight = 2\nmax_queue = 5\n{}",
        anonymous(anon)
    );
    let s = Server::start_with(&cfg);
    // Subscribes at QoS 1 and never reads or acknowledges anything.
    let (mut slow, _) = Raw::connect(anon, false, "slow", true).await;
    let mut sub = vec![0, 1];
    string("flood/#", &mut sub);
    sub.push(1);
    slow.send(&packet(0x82, &sub)).await;
    let (h, _) = slow.read().await.unwrap();
    assert_eq!(h, 0x90, "SUBACK");
    let (p, mut pel) = client(anon, "flooder").await;
    for i in 0..30 {
        p.publish(format!("flood/{i}"), QoS::AtLeastOnce, false, "x")
            .await
            .unwrap();
    }
    received(&mut pel, Duration::from_millis(800)).await;
    let dropped = metric(
        &s.metrics(),
        "natter_messages_dropped_total{reason=\"queue_full\"}",
    );
    assert!(
        dropped >= 20.0,
        "30 sent, at most 2 in flight and 5 queued: {dropped} counted"
    );
    let log = s.log();
    assert_eq!(
        log.matches("session queue full").count(),
        1,
        "one log line for the session:\n{log}"
    );
    assert!(log.contains("slow"));
}
