//! MQTT over TLS and secure WebSocket: clients that trust natter's CA chat as over TCP, others
//! are refused, and SIGHUP puts a new certificate in place without dropping anyone.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{connect_with, free_port, Mqtt, Server};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rumqttc::v5::MqttOptions;
use rumqttc::{TlsConfiguration, Transport};
use serde_json::json;

/// A certificate authority made for one test.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A server certificate for 127.0.0.1, as PEM (certificate, key).
    fn issue(&self) -> (String, String) {
        let p =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// What a client that trusts only this CA uses.
    fn client(&self) -> TlsConfiguration {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        TlsConfiguration::Rustls(Arc::new(config))
    }
}

struct TlsServer {
    s: Server,
    tls: u16,
    wss: u16,
    _keys: tempfile::TempDir,
}

impl TlsServer {
    fn start(ca: &Ca) -> TlsServer {
        let keys = tempfile::tempdir().unwrap();
        let dir = keys.path();
        let (cert, key) = ca.issue();
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        let (tls, wss) = (free_port(), free_port());
        let s = Server::start_with_users(
            &format!(
                "[mqtt.tls]\nlisten = \"127.0.0.1:{tls}\"\nwss = \"127.0.0.1:{wss}\"\n\
             cert_file = {:?}\nkey_file = {:?}\n",
                dir.join("cert.pem"),
                dir.join("key.pem"),
            ),
            &["alice", "bob"],
        );
        TlsServer {
            s,
            tls,
            wss,
            _keys: keys,
        }
    }

    /// Replaces the certificate files with one from `ca`.
    fn install(&self, ca: &Ca) {
        let (cert, key) = ca.issue();
        let text = std::fs::read_to_string(self.s.config_path()).unwrap();
        let path = |name: &str| {
            let line = text.lines().find(|l| l.starts_with(name)).unwrap();
            line.split('"').nth(1).unwrap().to_owned()
        };
        std::fs::write(path("cert_file"), cert).unwrap();
        std::fs::write(path("key_file"), key).unwrap();
    }

    async fn connect(&self, device: &str, trusts: &Ca) -> Result<Mqtt, String> {
        let mut o = MqttOptions::new(format!("alice:{device}"), "127.0.0.1", self.tls);
        o.set_credentials("alice", "pw");
        o.set_transport(Transport::tls_with_config(trusts.client()));
        try_connect(o).await
    }
}

/// Connects, turning a TLS failure into an error instead of a panic.
async fn try_connect(o: MqttOptions) -> Result<Mqtt, String> {
    tokio::spawn(connect_with(o))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|code| format!("{code:?}"))
}

#[tokio::test]
async fn a_client_that_trusts_the_ca_chats_over_tls() {
    let ca = Ca::new("natter test CA");
    let t = TlsServer::start(&ca);
    let mut bob = t.s.online("bob", "phone").await;
    let mut alice = t.connect("phone", &ca).await.expect("TLS CONNECT accepted");
    alice.subscribe_all().await;
    alice.send("u/bob", json!({"body": "over TLS"})).await;
    assert_eq!(bob.recv("u/bob/m").await["body"], "over TLS");
    bob.send("u/alice", json!({"body": "back over TCP"})).await;
    // Alice's devices get her own message too, then Bob's answer.
    assert_eq!(alice.recv("u/alice/m").await["body"], "over TLS");
    assert_eq!(alice.recv("u/alice/m").await["body"], "back over TCP");
}

#[tokio::test]
async fn a_client_that_trusts_another_ca_is_refused() {
    let ca = Ca::new("natter test CA");
    let t = TlsServer::start(&ca);
    let stranger = Ca::new("some other CA");
    let e = t.connect("phone", &stranger).await.err().expect("refused");
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("Tls"),
        "{e}"
    );
    // Plain MQTT on the TLS port is not MQTT to it either.
    let o = common::options(t.tls, "alice:plain", "alice", "pw");
    assert!(try_connect(o).await.is_err());
}

#[tokio::test]
async fn secure_websocket_clients_chat_too() {
    let ca = Ca::new("natter test CA");
    let t = TlsServer::start(&ca);
    let mut bob = t.s.online("bob", "phone").await;
    let mut o = MqttOptions::new(
        "alice:web",
        format!("wss://127.0.0.1:{}/mqtt", t.wss),
        t.wss,
    );
    o.set_credentials("alice", "pw");
    o.set_transport(Transport::wss_with_config(ca.client()));
    let mut alice = try_connect(o).await.expect("wss CONNECT accepted");
    alice.send("u/bob", json!({"body": "over wss"})).await;
    assert_eq!(bob.recv("u/bob/m").await["body"], "over wss");
}

#[tokio::test]
async fn sighup_serves_a_new_certificate_and_keeps_open_connections() {
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let t = TlsServer::start(&old_ca);
    let mut bob = t.s.online("bob", "phone").await;
    let mut before = t
        .connect("phone", &old_ca)
        .await
        .expect("TLS with the old CA");

    t.install(&new_ca);
    t.s.signal("HUP");
    let deadline = std::time::Instant::now() + common::WAIT;
    while !t.s.log().contains("TLS certificate reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload:\n{}",
            t.s.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        t.connect("tablet", &new_ca).await.is_ok(),
        "new certificate served"
    );
    assert!(
        t.connect("laptop", &old_ca).await.is_err(),
        "old certificate gone"
    );
    // The connection made before the reload carries on.
    before.send("u/bob", json!({"body": "still here"})).await;
    assert_eq!(bob.recv("u/bob/m").await["body"], "still here");

    // A broken pair is refused and the certificate in use stays.
    let text = std::fs::read_to_string(t.s.config_path()).unwrap();
    let key_line = text.lines().find(|l| l.starts_with("key_file")).unwrap();
    std::fs::write(key_line.split('"').nth(1).unwrap(), "not a key").unwrap();
    t.s.signal("HUP");
    let deadline = std::time::Instant::now() + common::WAIT;
    while !t.s.log().contains("TLS certificate not reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "no error:\n{}",
            t.s.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(t.s.log().contains("mqtt.tls.key_file"));
    assert!(t.connect("desktop", &new_ca).await.is_ok());
}
