//! The test harness: a real `natter serve` process on free ports with its own data directory,
//! and real MQTT clients (rumqttc, MQTT 5 unless a test says otherwise).
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PubAckReason, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub mod providers;
pub mod s3;

/// A port nothing listens on, for a server this test starts.
///
/// Not one the kernel hands out for port 0: between this call and natter's bind, another test in
/// the same binary may bind port 0 (a fake push provider) or open a connection, and the kernel
/// could give it this very port (CI once failed with `Address already in use` that way). Ports
/// below Linux's ephemeral range (32768–60999) are never handed out like that, and a counter
/// keeps two tests of one binary apart; the bind check skips what other programs hold.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 22_000; // up to 31999
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Test binaries run one after another, but a new start point per process keeps a port that
    // the last binary's servers left in TIME_WAIT out of the way.
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN);
}

/// A natter process. Killed when dropped; its log is printed if the test failed.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub data: Option<PathBuf>,
    pub mqtt: u16,
    pub ws: u16,
    pub http: u16,
    pub extra: String,
    /// More `[http]` keys (the harness writes that table itself, with `listen`).
    pub http_extra: String,
    /// A soft limit on open files to start natter under (`ulimit -Sn`), if not the inherited one.
    pub soft_nofile: Option<u64>,
    child: Option<Child>,
}

impl Server {
    pub fn start() -> Server {
        Self::start_with("")
    }

    /// Starts natter with these users, each with the password `pw`.
    pub fn with_users(users: &[&str]) -> Server {
        Self::start_with_users("", users)
    }

    /// Starts natter with `extra` TOML appended to the test config and these users, each with
    /// the password `pw`.
    pub fn start_with_users(extra: &str, users: &[&str]) -> Server {
        let s = Self::start_with(extra);
        for u in users {
            s.add_user(u, "pw");
        }
        s
    }

    /// Connects `user:device` (password `pw`) subscribed to `u/{user}/#` and its `d/` topic.
    pub async fn online(&self, user: &str, device: &str) -> Mqtt {
        let mut c = connect(self.mqtt, user, device, "pw").await;
        c.subscribe_all().await;
        c
    }

    /// Starts natter with `extra` TOML appended to the test config.
    pub fn start_with(extra: &str) -> Server {
        Self::start_with_http("", extra)
    }

    /// Starts natter with `http` keys in its `[http]` table (`header_timeout_secs = 1`) and
    /// `extra` TOML appended to the test config.
    pub fn start_with_http(http: &str, extra: &str) -> Server {
        let mut s = Self::unstarted();
        s.extra = extra.into();
        s.http_extra = http.into();
        s.spawn();
        s
    }

    /// Starts natter under a soft limit of `soft` open files (its hard limit unchanged).
    pub fn start_with_soft_nofile(soft: u64) -> Server {
        let mut s = Self::unstarted();
        s.soft_nofile = Some(soft);
        s.spawn();
        s
    }

    /// Starts natter with its data directory at `data` (e.g. on a small disk).
    pub fn start_on_data_dir(data: &Path) -> Server {
        Self::start_on_data_dir_with(data, "")
    }

    /// Starts natter with its data in `data` and `extra` TOML appended to the test config.
    pub fn start_on_data_dir_with(data: &Path, extra: &str) -> Server {
        let mut s = Self::unstarted();
        s.data = Some(data.to_owned());
        s.extra = extra.into();
        s.spawn();
        s
    }

    /// A server on free ports with its own directory, not started yet.
    fn unstarted() -> Server {
        Server {
            dir: tempfile::tempdir().unwrap(),
            data: None,
            mqtt: free_port(),
            ws: free_port(),
            http: free_port(),
            extra: String::new(),
            http_extra: String::new(),
            soft_nofile: None,
            child: None,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("natter.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("natter.log")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data
            .clone()
            .unwrap_or_else(|| self.dir.path().join("data"))
    }

    fn write_config(&self) {
        let mut extra = self.extra.clone();
        // Most tests make groups of users who never wrote to each other: they are added at once
        // unless a test asks for natter's default (invitations) by naming `group_adds` itself.
        let group_adds = if extra.contains("group_adds") {
            String::new()
        } else {
            "group_adds = \"anyone\"\n".to_owned()
        };
        // The test's own settings go into its `[mqtt]`, `[http]` and `[limits]` tables, which
        // `extra` may have opened already (TOML allows a table once).
        for (table, keys) in [
            ("[limits]\n", group_adds),
            (
                "[mqtt]\n",
                format!(
                    "tcp = \"127.0.0.1:{}\"\nws = \"127.0.0.1:{}\"\n",
                    self.mqtt, self.ws
                ),
            ),
            (
                "[http]\n",
                format!(
                    "listen = \"127.0.0.1:{}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n{}\n",
                    self.http, self.http_extra
                ),
            ),
        ] {
            if extra.starts_with(table) || extra.contains(&format!("\n{table}")) {
                extra = extra.replacen(table, &format!("{table}{keys}"), 1);
            } else {
                extra = format!("{extra}\n{table}{keys}");
            }
        }
        let cfg = format!(
            "data_dir = {data:?}\n{extra}",
            data = self.data_dir().display().to_string(),
        );
        std::fs::write(self.config_path(), cfg).unwrap();
    }

    fn spawn(&mut self) {
        self.write_config();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = match self.soft_nofile {
            // The shell lowers its soft limit and becomes natter (same pid).
            Some(soft) => {
                let mut c = Command::new("sh");
                c.args([
                    "-c",
                    "ulimit -Sn \"$0\" && exec \"$1\" serve --config \"$2\"",
                ])
                .arg(soft.to_string())
                .arg(env!("CARGO_BIN_EXE_natter"))
                .arg(self.config_path());
                c
            }
            None => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_natter"));
                c.args(["serve", "--config"]).arg(self.config_path());
                c
            }
        };
        let child = cmd
            .env("RUST_LOG", "info,rmqtt=warn,rmqtt_net=warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("natter exited during start-up ({status}):\n{}", self.log());
            }
            let up = |p: u16| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok();
            if up(self.mqtt) && up(self.http) && up(self.ws) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "natter did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The natter process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("natter running").id()
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Sends a signal (`TERM`, `HUP`, …) to the natter process.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("natter running").id();
        let ok = Command::new("kill")
            .args(["-s", sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -s {sig} {pid}");
    }

    /// Waits up to `limit` for natter to exit by itself; its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().expect("natter running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "natter still running after {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts natter again after it exited by itself (same ports and data).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "natter is still running");
        self.spawn();
    }

    /// `GET /metrics`, as Prometheus scrapes it.
    pub fn metrics(&self) -> String {
        ureq::get(&self.http_url("/metrics"))
            .call()
            .expect("/metrics answers")
            .body_mut()
            .read_to_string()
            .unwrap()
    }

    /// Starts natter again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.http, path)
    }

    /// Creates a user through the admin API.
    pub fn add_user(&self, name: &str, password: &str) {
        let (status, body) = http(
            "POST",
            &self.http_url("/v1/admin/users"),
            Some(ADMIN_TOKEN),
            Some(json!({"name": name, "password": password})),
        );
        assert_eq!(status, 201, "creating {name}: {body}");
    }

    /// A token for `user` from `POST /v1/token`.
    pub fn token(&self, user: &str, password: &str) -> String {
        let (status, body) = http(
            "POST",
            &self.http_url("/v1/token"),
            None,
            Some(json!({"user": user, "password": password})),
        );
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// Runs `natter ARGS --config <this server's config>`, with `stdin` as its input.
    pub fn cli(&self, args: &[&str], stdin: &str) -> (bool, String, String) {
        run_cli(&self.config_path(), args, stdin)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- natter log ----\n{}", self.log());
        }
    }
}

pub fn run_cli(config: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A blocking HTTP call; returns the status and the JSON body (Null if none).
pub fn http(method: &str, url: &str, bearer: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .build()
        .into();
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let resp = match (method, body) {
        ("POST", Some(b)) => {
            let mut r = agent.post(url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.send_json(b)
        }
        ("PUT", Some(b)) => {
            let mut r = agent.put(url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.send_json(b)
        }
        ("DELETE", None) => {
            let mut r = agent.delete(url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.call()
        }
        ("GET", None) => {
            let mut r = agent.get(url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.call()
        }
        other => panic!("unsupported request {other:?}"),
    };
    let mut resp = resp.unwrap();
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_json::<Value>().unwrap_or(Value::Null);
    (status, body)
}

/// What the client's event loop saw.
#[derive(Debug)]
pub enum Seen {
    Publish { topic: String, payload: Vec<u8> },
    PubAck { pkid: u16, reason: PubAckReason },
    PubComp(u16),
    SubAck(Vec<SubscribeReasonCode>),
    OutgoingPublish(u16),
    Closed(String),
}

/// An MQTT 5 client with its event loop running in a task.
pub struct Mqtt {
    pub client: AsyncClient,
    pub user: String,
    pub device: String,
    events: mpsc::UnboundedReceiver<Seen>,
    /// Publishes received but not yet consumed by a `recv`.
    pending: Vec<(String, Vec<u8>)>,
    next_request: u64,
    pump: tokio::task::JoinHandle<()>,
}

impl Drop for Mqtt {
    /// Dropping a client drops its socket at once, as a killed app does (no DISCONNECT).
    fn drop(&mut self) {
        self.pump.abort();
    }
}

pub fn options(port: u16, client_id: &str, user: &str, password: &str) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_credentials(user, password);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(Some(1024 * 1024));
    // rumqttc sizes its in-flight table by the server's receive maximum (65535 by default):
    // megabytes per client, which a thousand-client test cannot afford.
    o.set_outgoing_inflight_upper_limit(64);
    o
}

/// Connects and waits for CONNACK; the refusal code if refused.
pub async fn connect_with(opts: MqttOptions) -> Result<Mqtt, ConnectReturnCode> {
    let client_id = opts.client_id();
    let (client, mut el) = AsyncClient::new(opts, 1000);
    loop {
        match tokio::time::timeout(WAIT, el.poll())
            .await
            .expect("CONNACK in time")
        {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                if ack.code == ConnectReturnCode::Success {
                    break;
                }
                return Err(ack.code);
            }
            Ok(_) => continue,
            Err(ConnectionError::ConnectionRefused(code)) => return Err(code),
            Err(e) => panic!("connect failed: {e}"),
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let pump = tokio::spawn(pump(el, tx));
    let (user, device) = client_id
        .split_once(':')
        .map(|(u, d)| (u.to_owned(), d.to_owned()))
        .unwrap_or_default();
    Ok(Mqtt {
        client,
        user,
        device,
        events: rx,
        pending: Vec::new(),
        next_request: 0,
        pump,
    })
}

async fn pump(mut el: EventLoop, tx: mpsc::UnboundedSender<Seen>) {
    loop {
        let seen = match el.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => Seen::Publish {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload.to_vec(),
            },
            Ok(Event::Incoming(Packet::PubAck(a))) => Seen::PubAck {
                pkid: a.pkid,
                reason: a.reason,
            },
            Ok(Event::Incoming(Packet::SubAck(a))) => Seen::SubAck(a.return_codes),
            Ok(Event::Incoming(Packet::PubComp(c))) => Seen::PubComp(c.pkid),
            Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => Seen::OutgoingPublish(pkid),
            Ok(Event::Incoming(Packet::Disconnect(d))) => Seen::Closed(format!("{d:?}")),
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Seen::Closed(e.to_string()));
                return;
            }
        };
        if tx.send(seen).is_err() {
            return;
        }
    }
}

/// Connects `user:device` with `password`; panics if refused.
pub async fn connect(port: u16, user: &str, device: &str, password: &str) -> Mqtt {
    connect_with(options(port, &format!("{user}:{device}"), user, password))
        .await
        .expect("connection accepted")
}

impl Mqtt {
    async fn next_event(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("an MQTT event in time")
            .expect("event loop alive")
    }

    /// Subscribes and returns the SUBACK code.
    pub async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            match self.next_event().await {
                Seen::SubAck(codes) => return codes[0],
                Seen::Publish { topic, payload } => self.pending.push((topic, payload)),
                Seen::Closed(why) => panic!("connection closed while subscribing: {why}"),
                _ => {}
            }
        }
    }

    /// Subscribes to `u/{me}/#` and this device's `d/…`, as every chat client does.
    pub async fn subscribe_all(&mut self) {
        let own = format!("u/{}/#", self.user);
        let dev = format!("d/{}/{}", self.user, self.device);
        assert!(matches!(
            self.subscribe(&own).await,
            SubscribeReasonCode::Success(_)
        ));
        assert!(matches!(
            self.subscribe(&dev).await,
            SubscribeReasonCode::Success(_)
        ));
    }

    /// Publishes at QoS 1 and returns the PUBACK reason.
    pub async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) -> PubAckReason {
        self.publish_with(topic, QoS::AtLeastOnce, false, payload)
            .await
    }

    /// Publishes and waits for the flow to finish: nothing for QoS 0, PUBACK (its reason) for
    /// QoS 1, PUBCOMP for QoS 2.
    pub async fn publish_with(
        &mut self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) -> PubAckReason {
        self.client
            .publish(topic, qos, retain, payload.into())
            .await
            .unwrap();
        let mut mine = None;
        loop {
            match self.next_event().await {
                Seen::OutgoingPublish(_) if qos == QoS::AtMostOnce => return PubAckReason::Success,
                Seen::OutgoingPublish(p) if mine.is_none() => mine = Some(p),
                Seen::PubAck { pkid, reason } if Some(pkid) == mine && qos == QoS::AtLeastOnce => {
                    return reason
                }
                Seen::PubComp(pkid) if Some(pkid) == mine => return PubAckReason::Success,
                Seen::Publish { topic, payload } => self.pending.push((topic, payload)),
                Seen::Closed(why) => panic!("connection closed while publishing: {why}"),
                _ => {}
            }
        }
    }

    /// Sends a chat message and expects PUBACK success.
    pub async fn send(&mut self, chat: &str, payload: Value) {
        let r = self
            .publish(&format!("m/{chat}"), payload.to_string())
            .await;
        assert_eq!(r, PubAckReason::Success, "send to {chat} refused");
    }

    /// The next publish on `topic`, as JSON (earlier ones on other topics are kept).
    pub async fn recv(&mut self, topic: &str) -> Value {
        let raw = self.recv_raw(topic).await;
        serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("JSON on {topic}: {e}"))
    }

    pub async fn recv_raw(&mut self, topic: &str) -> Vec<u8> {
        if let Some(i) = self.pending.iter().position(|(t, _)| t == topic) {
            return self.pending.remove(i).1;
        }
        loop {
            match self.next_event().await {
                Seen::Publish { topic: t, payload } if t == topic => return payload,
                Seen::Publish { topic: t, payload } => self.pending.push((t, payload)),
                Seen::Closed(why) => panic!("connection closed waiting on {topic}: {why}"),
                _ => {}
            }
        }
    }

    /// Asserts nothing arrives on `topic` for `quiet`.
    pub async fn nothing_on(&mut self, topic: &str, quiet: Duration) {
        if let Some((_, p)) = self.pending.iter().find(|(t, _)| t == topic) {
            panic!("unexpected on {topic}: {}", String::from_utf8_lossy(p));
        }
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(ev) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            match ev {
                Some(Seen::Publish { topic: t, payload }) if t == topic => {
                    panic!(
                        "unexpected on {topic}: {}",
                        String::from_utf8_lossy(&payload)
                    )
                }
                Some(Seen::Publish { topic: t, payload }) => self.pending.push((t, payload)),
                Some(_) => {}
                None => return,
            }
        }
    }

    /// Sends request `method` with `params` and returns the answer (with its `ok` checked by the
    /// caller).
    pub async fn request(&mut self, method: &str, mut params: Value) -> Value {
        self.next_request += 1;
        let id = format!("r{}", self.next_request);
        params["id"] = json!(id);
        self.client
            .publish(
                format!("q/{method}"),
                QoS::AtLeastOnce,
                false,
                params.to_string(),
            )
            .await
            .unwrap();
        let topic = format!("d/{}/{}", self.user, self.device);
        loop {
            let a = self.recv(&topic).await;
            if a["id"] == json!(id) {
                return a;
            }
        }
    }

    /// Every message after `after` via `sync`, following `more`.
    pub async fn sync_all(&mut self, mut after: u64) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            let a = self
                .request("sync", json!({"after": after, "limit": 500}))
                .await;
            assert_eq!(a["ok"], true, "{a}");
            let msgs = a["messages"].as_array().unwrap().clone();
            if let Some(last) = msgs.last() {
                after = last["seq"].as_u64().unwrap();
            }
            all.extend(msgs);
            if a["more"] != true {
                return all;
            }
        }
    }

    /// Whether the connection is still up (a PINGREQ round trip via a harmless subscribe).
    pub async fn still_connected(&mut self) -> bool {
        let dev = format!("d/{}/{}", self.user, self.device);
        matches!(self.subscribe(&dev).await, SubscribeReasonCode::Success(_))
    }

    /// Waits until the server closes this connection (a DISCONNECT or the socket); `false` if
    /// it is still open after [`WAIT`].
    pub async fn closed_by_server(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Seen::Closed(_))) | Ok(None) => return true,
                Ok(Some(Seen::Publish { topic, payload })) => self.pending.push((topic, payload)),
                Ok(Some(_)) => {}
                Err(_) => return false,
            }
        }
    }

    pub fn try_event(&mut self) -> Option<Seen> {
        self.events.try_recv().ok()
    }

    pub async fn event(&mut self) -> Seen {
        self.next_event().await
    }
}

/// Alice's phone sending `total` messages (`cid` `k{i}`) to Bob as fast as QoS 1 allows,
/// with each PUBACK matched to the message it answers.
pub struct Burst {
    el: EventLoop,
    sender: tokio::task::JoinHandle<()>,
    /// Packet id → message number, for messages sent and not yet answered.
    in_flight: std::collections::HashMap<u16, usize>,
    /// Messages that left the client.
    pub sent: usize,
}

/// What a [`Burst`] saw next.
pub enum BurstStep {
    /// Message `n` got a PUBACK with this reason.
    PubAck(usize, PubAckReason),
    /// The server sent DISCONNECT.
    Disconnect(rumqttc::v5::mqttbytes::v5::DisconnectReasonCode),
    /// Anything else.
    Other,
    /// The connection ended.
    Ended,
}

impl Burst {
    pub fn start(port: u16, total: usize) -> Burst {
        let (client, el) =
            AsyncClient::new(options(port, "alice:phone", "alice", "pw"), total + 10);
        let sender = tokio::spawn(async move {
            for i in 0..total {
                let body =
                    json!({"cid": format!("k{i}"), "body": format!("message {i}")}).to_string();
                if client
                    .publish("m/u/bob", QoS::AtLeastOnce, false, body)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Burst {
            el,
            sender,
            in_flight: Default::default(),
            sent: 0,
        }
    }

    pub async fn step(&mut self) -> BurstStep {
        match tokio::time::timeout(WAIT, self.el.poll())
            .await
            .expect("progress")
        {
            // Publishes leave in request order, so the n-th outgoing PUBLISH is message n;
            // packet ids are reused once acked, so the map holds only those in flight.
            Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => {
                self.in_flight.insert(pkid, self.sent);
                self.sent += 1;
                BurstStep::Other
            }
            Ok(Event::Incoming(Packet::PubAck(a))) => {
                let n = self
                    .in_flight
                    .remove(&a.pkid)
                    .expect("a PUBACK for a message in flight");
                BurstStep::PubAck(n, a.reason)
            }
            Ok(Event::Incoming(Packet::Disconnect(d))) => BurstStep::Disconnect(d.reason_code),
            Ok(_) => BurstStep::Other,
            Err(_) => BurstStep::Ended,
        }
    }

    /// Messages sent that got no answer.
    pub fn unanswered(&self) -> usize {
        self.in_flight.len()
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.sender.abort();
    }
}

/// Bob's whole inbox after a restart: no `cid` twice, and every message in `acked` (by number)
/// present. Returns the inbox.
pub async fn every_acked_message_kept_once(
    s: &Server,
    acked: &std::collections::HashSet<usize>,
) -> Vec<Value> {
    let mut bob = s.online("bob", "phone").await;
    let inbox = bob.sync_all(0).await;
    let mut seen = std::collections::HashSet::new();
    for m in &inbox {
        let cid = m["cid"].as_str().unwrap().to_owned();
        assert!(seen.insert(cid.clone()), "{cid} delivered twice");
    }
    for n in acked {
        assert!(
            seen.contains(&format!("k{n}")),
            "message {n} got a PUBACK but was lost"
        );
    }
    inbox
}

/// The value of one series (`name{labels}` exactly as rendered) in a `/metrics` text; 0 when
/// it is absent (a counter not yet moved).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
        .unwrap_or(0.0)
}

/// A real `redis-server` on a free port, killed when dropped.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Appends `n` as an MQTT variable byte integer (7 bits a byte).
pub fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let b = (n % 128) as u8;
        n /= 128;
        out.push(if n > 0 { b | 0x80 } else { b });
        if n == 0 {
            break;
        }
    }
}

/// Appends `s` as an MQTT string (two length bytes, then UTF-8).
pub fn string(s: &str, out: &mut Vec<u8>) {
    out.extend((s.len() as u16).to_be_bytes());
    out.extend(s.as_bytes());
}

/// A whole packet: the fixed header byte, the remaining length, `body`.
pub fn packet(header: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![header];
    varint(body.len(), &mut p);
    p.extend(body);
    p
}

/// An MQTT 3.1.1 CONNECT packet (clean session, user name and password).
fn connect_packet(client_id: &str, user: &str, password: &str, keepalive: u16) -> Vec<u8> {
    let mut body = Vec::new();
    string("MQTT", &mut body);
    body.push(4); // 3.1.1
    body.push(0xC2); // username, password, clean session
    body.extend(keepalive.to_be_bytes());
    string(client_id, &mut body);
    string(user, &mut body);
    string(password, &mut body);
    packet(0x10, &body)
}

/// The CONNACK return code of an MQTT 3.1.1 CONNECT (clean session) sent by hand from the
/// source address `from` (any of 127.0.0.0/8), so a test can be several clients on one machine.
pub async fn connack_from(
    from: &str,
    port: u16,
    client_id: &str,
    user: &str,
    password: &str,
) -> u8 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let packet = connect_packet(client_id, user, password, 30);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    s.write_all(&packet).await.unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, s.read_exact(&mut connack))
        .await
        .expect("CONNACK in time")
        .expect("a CONNACK, not a closed socket");
    assert_eq!(connack[0], 0x20, "a CONNACK");
    connack[3]
}

/// An MQTT 3.1.1 connection made by hand, so a test can go silent (no PINGREQ) or drop the
/// socket without DISCONNECT, as a phone in a tunnel does.
pub fn raw_connect(
    port: u16,
    client_id: &str,
    user: &str,
    password: &str,
    keepalive: u16,
) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let packet = connect_packet(client_id, user, password, keepalive);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&packet).unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK accepted");
    s
}
