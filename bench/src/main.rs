//! natter-bench: drives a broker with real MQTT clients and reports throughput and latency.
//!
//! `raw` is plain MQTT publish → subscribe through any broker (natter with an `[[acl]]` rule, or
//! Mosquitto), so both are measured by the same tool. `direct` speaks natter's chat protocol:
//! senders message their peers at QoS 1 and each send is timed from PUBLISH to PUBACK (durable)
//! and from PUBLISH to the peer's delivery. Run it against a server, never from a test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::json;
use std::sync::Mutex;

#[derive(Parser)]
#[command(name = "natter-bench")]
struct Cli {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1", global = true)]
    host: String,
    /// Broker MQTT port.
    #[arg(long, default_value_t = 1883, global = true)]
    port: u16,
    /// Publishing clients.
    #[arg(long, default_value_t = 10, global = true)]
    senders: usize,
    /// Messages per sender.
    #[arg(long, default_value_t = 2000, global = true)]
    messages: usize,
    /// QoS 1 publishes in flight per sender.
    #[arg(long, default_value_t = 16, global = true)]
    window: u16,
    /// Payload bytes.
    #[arg(long, default_value_t = 100, global = true)]
    size: usize,
    /// Publishes per second per sender, paced (open loop); 0: as fast as the window allows.
    #[arg(long, default_value_t = 0.0, global = true)]
    rate: f64,
    /// Seconds to send for; senders then stop early instead of at `--messages`.
    #[arg(long, global = true)]
    duration: Option<f64>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Plain MQTT pub → sub (any broker). Credentials optional.
    Raw {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        password: Option<String>,
        /// Topic prefix (natter needs an `[[acl]]` rule opening it for the user).
        #[arg(long, default_value = "bench")]
        prefix: String,
    },
    /// natter's groups: one sender, one group of `members`, `sends` messages one at a time;
    /// times each until the last member has it.
    Group {
        /// natter's HTTP address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: String,
        /// natter's admin token (default: read from ./data/admin.token).
        #[arg(long)]
        admin_token: Option<String>,
        /// Members, the sender included, all online.
        #[arg(long, default_value_t = 1000)]
        members: usize,
        /// Messages sent, one after another.
        #[arg(long, default_value_t = 100)]
        sends: usize,
    },
    /// Idle connections: `connections` devices connect (MQTT 3.1.1, a token as password) and
    /// stay; natter's RSS before and after gives its memory per connection.
    Idle {
        /// natter's HTTP address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: String,
        /// natter's admin token (default: read from ./data/admin.token).
        #[arg(long)]
        admin_token: Option<String>,
        /// Connections to open and hold.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Devices per user (natter's `limits.max_connections_per_user` must allow as many).
        #[arg(long, default_value_t = 1000)]
        per_user: usize,
        /// natter's process id, whose RSS is read from /proc.
        #[arg(long)]
        pid: u32,
        /// Seconds to hold the connections after measuring.
        #[arg(long, default_value_t = 0)]
        hold: u64,
    },
    /// natter's protocol: sender i messages receiver i (or a random receiver each time), and
    /// times PUBACK, delivery and its `delivered` receipt; users are created through the admin
    /// API.
    Direct {
        /// natter's HTTP address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: String,
        /// natter's admin token (default: read from ./data/admin.token).
        #[arg(long)]
        admin_token: Option<String>,
        /// Each message goes to a receiver picked at random (so every sender has a chat with
        /// every receiver) instead of sender i's own.
        #[arg(long)]
        random_peers: bool,
    },
}

fn now_ns(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

fn options(cli: &Cli, client_id: &str, cred: Option<(&str, &str)>) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, &cli.host, cli.port);
    if let Some((u, p)) = cred {
        o.set_credentials(u, p);
    }
    o.set_keep_alive(Duration::from_secs(60));
    o.set_inflight(cli.window);
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

/// Connects and waits for CONNACK; the event loop keeps running in a task that feeds `on_event`.
async fn connect(
    opts: MqttOptions,
    mut on_event: impl FnMut(Event) + Send + 'static,
) -> anyhow::Result<AsyncClient> {
    let (client, mut el) = AsyncClient::new(opts, 10_000);
    // Packets are small and timed one by one: none may wait in Nagle's algorithm.
    el.network_options.set_tcp_nodelay(true);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), el.poll())
            .await
            .context("CONNACK timeout")?
        {
            Ok(Event::Incoming(Packet::ConnAck(_))) => break,
            Ok(_) => {}
            Err(e) => bail!("connect failed: {e}"),
        }
    }
    tokio::spawn(async move {
        while let Ok(ev) = el.poll().await {
            on_event(ev);
        }
    });
    Ok(client)
}

struct Stats {
    puback: Histogram<u64>,
    delivery: Histogram<u64>,
    /// Send → the sender's `delivered` receipt (`direct` only).
    receipt: Histogram<u64>,
    received: usize,
}

/// A latency histogram from 1 µs to 60 s, in ns.
fn hist() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).context("histogram bounds")
}

/// Records the time from `sent` (ns since `start`) to now; the histogram's floor is 1 µs.
fn record_since(h: &mut Histogram<u64>, start: Instant, sent: u64) {
    let _ = h.record(now_ns(start).saturating_sub(sent).max(1_000));
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn print_report(name: &str, total: usize, elapsed: Duration, stats: &Stats) {
    let rate = total as f64 / elapsed.as_secs_f64();
    let q = |h: &Histogram<u64>, p: f64| ms(h.value_at_quantile(p));
    println!("scenario        {name}");
    println!(
        "messages        {total} acked, {} delivered",
        stats.received
    );
    println!("elapsed         {:.2} s", elapsed.as_secs_f64());
    println!("throughput      {rate:.0} msg/s");
    for (label, h) in [
        ("PUBACK", &stats.puback),
        ("delivery", &stats.delivery),
        ("receipt", &stats.receipt),
    ] {
        if !h.is_empty() {
            println!(
                "{label:<15} p50 {:.2} ms  p99 {:.2} ms  p999 {:.2} ms  max {:.2} ms",
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99)),
                ms(h.value_at_quantile(0.999)),
                ms(h.max())
            );
        }
    }
    let j = json!({
        "scenario": name, "messages": total, "delivered": stats.received,
        "elapsed_s": elapsed.as_secs_f64(), "msgs_per_s": rate,
        "puback_p50_ms": q(&stats.puback, 0.5), "puback_p99_ms": q(&stats.puback, 0.99),
        "puback_p999_ms": q(&stats.puback, 0.999),
        "delivery_p50_ms": q(&stats.delivery, 0.5), "delivery_p99_ms": q(&stats.delivery, 0.99),
        "delivery_p999_ms": q(&stats.delivery, 0.999),
        "receipt_p50_ms": q(&stats.receipt, 0.5), "receipt_p99_ms": q(&stats.receipt, 0.99),
        "receipts": stats.receipt.len(),
    });
    println!("json            {j}");
}

/// Extracts the send timestamp the sender put at the start of the body: `t=<ns>;`.
fn sent_at(payload: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(payload).ok()?;
    let i = s.find("t=")? + 2;
    let end = s[i..].find(';')? + i;
    s[i..end].parse().ok()
}

/// A user name and its password.
type Credentials = (String, String);

/// Who connects, and what they publish.
struct Plan {
    /// (client id, credentials, topic to subscribe) per receiver.
    receivers: Vec<(String, Option<Credentials>, String)>,
    /// Per sender: client id, credentials, the topics it publishes to (one picked at random
    /// per publish), and a topic whose `delivered` receipts it times (`direct`).
    senders: Vec<Sender>,
    /// Builds a payload around the timing marker.
    payload: fn(&str, usize, usize) -> String,
}

struct Sender {
    id: String,
    cred: Option<Credentials>,
    topics: Vec<String>,
    receipts: Option<String>,
}

/// Whether a receipt says `delivered` (a `sent` one comes first and is not timed).
fn is_delivered(payload: &[u8]) -> bool {
    std::str::from_utf8(payload).is_ok_and(|s| s.contains("\"status\":\"delivered\""))
}

async fn run(cli: &Cli, name: &str, plan: Plan) -> anyhow::Result<()> {
    let start = Instant::now();
    let stats = Arc::new(Mutex::new(Stats {
        puback: hist()?,
        delivery: hist()?,
        receipt: hist()?,
        received: 0,
    }));
    let mut keep = Vec::new();
    for (id, cred, topic) in &plan.receivers {
        let stats = stats.clone();
        let c = connect(
            options(
                cli,
                id,
                cred.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
            ),
            move |ev| {
                if let Event::Incoming(Packet::Publish(p)) = ev {
                    if let Some(t) = sent_at(&p.payload) {
                        if let Ok(mut s) = stats.lock() {
                            record_since(&mut s.delivery, start, t);
                            s.received += 1;
                        }
                    }
                }
            },
        )
        .await?;
        c.subscribe(topic, QoS::AtLeastOnce).await?;
        keep.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let deadline = cli.duration.map(|d| t0 + Duration::from_secs_f64(d));
    // Each sender reports (published, acknowledged) when it is done.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, usize)>();
    for (i, sender) in plan.senders.iter().enumerate() {
        let stats_in = stats.clone();
        // A closed loop: at most `window` publishes in flight, so a message's send time is when
        // it goes on the wire, not when it joined a client-side queue.
        let window = Arc::new(tokio::sync::Semaphore::new(cli.window as usize));
        let freed = window.clone();
        // Publishes leave in order and PUBACKs name packet ids.
        let times = Arc::new(std::sync::Mutex::new(
            std::collections::VecDeque::<u64>::new(),
        ));
        let times_in = times.clone();
        let mut sent: std::collections::HashMap<u16, u64> = Default::default();
        let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let acked_in = acked.clone();
        let receipts = sender.receipts.clone();
        let c = connect(
            options(
                cli,
                &sender.id,
                sender.cred.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
            ),
            move |ev| match ev {
                Event::Outgoing(Outgoing::Publish(pkid)) => {
                    if let Some(t) = times_in.lock().ok().and_then(|mut q| q.pop_front()) {
                        sent.insert(pkid, t);
                    }
                }
                Event::Incoming(Packet::PubAck(a)) => {
                    if let Some(t) = sent.remove(&a.pkid) {
                        if let Ok(mut s) = stats_in.lock() {
                            record_since(&mut s.puback, start, t);
                        }
                    }
                    freed.add_permits(1);
                    acked_in.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Event::Incoming(Packet::Publish(p)) if is_delivered(&p.payload) => {
                    if let Some(t) = sent_at(&p.payload) {
                        if let Ok(mut s) = stats_in.lock() {
                            record_since(&mut s.receipt, start, t);
                        }
                    }
                }
                _ => {}
            },
        )
        .await?;
        if let Some(r) = receipts {
            c.subscribe(r, QoS::AtLeastOnce).await?;
        }
        let topics = sender.topics.clone();
        let size = cli.size;
        let make = plan.payload;
        let n = cli.messages;
        let pace = (cli.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / cli.rate));
        let done = done_tx.clone();
        tokio::spawn(async move {
            let mut published = 0;
            // Senders start spread over one interval, so paced load is smooth.
            let mut next = tokio::time::Instant::now()
                + pace.map_or(Duration::ZERO, |p| p.mul_f64(i as f64 / 97.0 % 1.0));
            for k in 0..n {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if let Some(p) = pace {
                    tokio::time::sleep_until(next).await;
                    next += p;
                }
                match window.acquire().await {
                    Ok(p) => p.forget(),
                    Err(_) => break,
                }
                let t = now_ns(start);
                if let Ok(mut q) = times.lock() {
                    q.push_back(t);
                }
                let topic = &topics[rand::random::<usize>() % topics.len()];
                let body = make(&format!("t={t};s={i};k={k};"), k, size);
                if c.publish(topic, QoS::AtLeastOnce, false, body)
                    .await
                    .is_err()
                {
                    break;
                }
                published += 1;
            }
            // Wait for the last PUBACKs (bounded).
            let until = Instant::now() + Duration::from_secs(60);
            while acked.load(std::sync::atomic::Ordering::SeqCst) < published
                && Instant::now() < until
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = done.send((published, acked.load(std::sync::atomic::Ordering::SeqCst)));
            // Keep the connection (and its receipts) until the run ends.
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(c);
        });
    }
    drop(done_tx);
    let (mut published, mut acked) = (0, 0);
    for _ in 0..plan.senders.len() {
        match tokio::time::timeout(Duration::from_secs(600), done_rx.recv()).await {
            Ok(Some((p, a))) => {
                published += p;
                acked += a;
            }
            _ => bail!("senders did not finish in 600 s"),
        }
    }
    let elapsed = t0.elapsed();
    if acked < published {
        bail!("only {acked} of {published} publishes were acknowledged");
    }
    // Let the last deliveries and receipts land.
    let expect_receipts = plan.senders.iter().any(|s| s.receipts.is_some());
    let settle = Instant::now() + Duration::from_secs(5);
    while Instant::now() < settle {
        let (got, receipts) = stats
            .lock()
            .map(|s| (s.received, s.receipt.len() as usize))
            .unwrap_or((published, published));
        if got >= published && (!expect_receipts || receipts >= published) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = stats
        .lock()
        .map_err(|_| anyhow::anyhow!("stats lock poisoned"))?;
    print_report(name, acked, elapsed, &s);
    Ok(())
}

fn pad(marker: &str, size: usize) -> String {
    let mut s = marker.to_owned();
    while s.len() < size {
        s.push('x');
    }
    s
}

fn admin_token(given: &Option<String>) -> anyhow::Result<String> {
    match given {
        Some(t) => Ok(t.clone()),
        None => Ok(std::fs::read_to_string("data/admin.token")
            .context("reading data/admin.token (or pass --admin-token)")?
            .trim()
            .to_owned()),
    }
}

fn create_user(http: &str, token: &str, name: &str, password: &str) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .post(&format!("http://{http}/v1/admin/users"))
        .header("authorization", &format!("Bearer {token}"))
        .send_json(json!({"name": name, "password": password}))?;
    match resp.status().as_u16() {
        201 | 409 => Ok(()),
        s => bail!("creating {name}: HTTP {s}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.scenario {
        Scenario::Raw {
            user,
            password,
            prefix,
        } => {
            let cred = user.clone().zip(password.clone());
            let id = |role: &str, i: usize| match user {
                Some(u) => format!("{u}:{role}{i}"),
                None => format!("bench-{role}{i}"),
            };
            let plan = Plan {
                receivers: (0..cli.senders)
                    .map(|i| (id("r", i), cred.clone(), format!("{prefix}/{i}")))
                    .collect(),
                senders: (0..cli.senders)
                    .map(|i| Sender {
                        id: id("s", i),
                        cred: cred.clone(),
                        topics: vec![format!("{prefix}/{i}")],
                        receipts: None,
                    })
                    .collect(),
                payload: |m, _, size| pad(m, size),
            };
            run(&cli, "raw", plan).await
        }
        Scenario::Group {
            http,
            admin_token: t,
            members,
            sends,
        } => group(&cli, http, &admin_token(t)?, *members, *sends).await,
        Scenario::Idle {
            http,
            admin_token: t,
            connections,
            per_user,
            pid,
            hold,
        } => {
            idle(
                &cli,
                http,
                &admin_token(t)?,
                *connections,
                *per_user,
                *pid,
                *hold,
            )
            .await
        }
        Scenario::Direct {
            http,
            admin_token: t,
            random_peers,
        } => {
            let token = admin_token(t)?;
            let pw = "bench-pw".to_owned();
            for i in 0..cli.senders {
                create_user(http, &token, &format!("bench-s{i}"), &pw)?;
                create_user(http, &token, &format!("bench-r{i}"), &pw)?;
            }
            let cred = |u: String| Some((u, pw.clone()));
            let plan = Plan {
                receivers: (0..cli.senders)
                    .map(|i| {
                        (
                            format!("bench-r{i}:dev"),
                            cred(format!("bench-r{i}")),
                            format!("u/bench-r{i}/m"),
                        )
                    })
                    .collect(),
                senders: (0..cli.senders)
                    .map(|i| Sender {
                        id: format!("bench-s{i}:dev"),
                        cred: cred(format!("bench-s{i}")),
                        topics: if *random_peers {
                            (0..cli.senders)
                                .map(|j| format!("m/u/bench-r{j}"))
                                .collect()
                        } else {
                            vec![format!("m/u/bench-r{i}")]
                        },
                        receipts: Some(format!("u/bench-s{i}/r")),
                    })
                    .collect(),
                payload: |m, k, size| {
                    json!({"cid": format!("{m}{k}"), "body": pad(m, size)}).to_string()
                },
            };
            run(&cli, "direct", plan).await
        }
    }
}

/// Per send: how many members have it, and when the last one got it.
type Arrivals = Arc<Mutex<Vec<(usize, Option<Instant>)>>>;

async fn group(
    cli: &Cli,
    http: &str,
    token: &str,
    members: usize,
    sends: usize,
) -> anyhow::Result<()> {
    let pw = "bench-pw";
    let names: Vec<String> = (0..members).map(|i| format!("bench-gm{i}")).collect();
    let t = Instant::now();
    std::thread::scope(|s| {
        for chunk in names.chunks(members.div_ceil(4).max(1)) {
            s.spawn(move || {
                chunk
                    .iter()
                    .try_for_each(|n| create_user(http, token, n, pw))
            });
        }
    });
    println!(
        "users           {members} ready in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let run = now_ns(t);
    let arrivals: Arrivals = Arc::new(Mutex::new(vec![(0, None); sends]));
    let (answers_tx, mut answers) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let mut clients = Vec::with_capacity(members);
    let t = Instant::now();
    for (i, n) in names.iter().enumerate() {
        let arrivals = arrivals.clone();
        let answers_tx = answers_tx.clone();
        let prefix = format!("g{run}-");
        let c = connect(
            options(cli, &format!("{n}:dev"), Some((n, pw))),
            move |ev| {
                if let Event::Incoming(Packet::Publish(p)) = ev {
                    if p.topic.starts_with("d/") {
                        let _ = answers_tx.send(p.payload.to_vec());
                        return;
                    }
                    let v: serde_json::Value =
                        serde_json::from_slice(&p.payload).unwrap_or_default();
                    let k = v["cid"]
                        .as_str()
                        .and_then(|c| c.strip_prefix(&prefix))
                        .and_then(|k| k.parse::<usize>().ok());
                    if let (Some(k), Ok(mut a)) = (k, arrivals.lock()) {
                        if let Some(slot) = a.get_mut(k) {
                            slot.0 += 1;
                            slot.1 = Some(Instant::now());
                        }
                    }
                }
            },
        )
        .await?;
        c.subscribe(format!("u/{n}/m"), QoS::AtLeastOnce).await?;
        if i == 0 {
            c.subscribe(format!("d/{n}/dev"), QoS::AtLeastOnce).await?;
        }
        clients.push(c);
    }
    println!(
        "connected       {members} in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let owner = &clients[0];
    let create = json!({"id": "create", "name": "bench", "members": names[1..]});
    owner
        .publish(
            "q/group.create",
            QoS::AtLeastOnce,
            false,
            create.to_string(),
        )
        .await?;
    let answer = tokio::time::timeout(Duration::from_secs(30), answers.recv())
        .await
        .context("group.create answer")?;
    let answer = answer.context("the connection ended before group.create was answered")?;
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    let gid = answer["group"]["id"]
        .as_str()
        .context("group.create failed")?
        .to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut h = hist()?;
    let mut incomplete = 0;
    for k in 0..sends {
        let t0 = Instant::now();
        let body = json!({"cid": format!("g{run}-{k}"), "body": "group bench"});
        owner
            .publish(
                format!("m/g/{gid}"),
                QoS::AtLeastOnce,
                false,
                body.to_string(),
            )
            .await?;
        let deadline = t0 + Duration::from_secs(10);
        loop {
            let (count, last) = arrivals.lock().map(|a| a[k]).unwrap_or((0, None));
            if count >= members {
                let _ = h.record(
                    last.map(|l| (l - t0).as_nanos() as u64)
                        .unwrap_or(0)
                        .max(1_000),
                );
                break;
            }
            if Instant::now() > deadline {
                incomplete += 1;
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    println!("scenario        group ({members} members, all online, {sends} sends one at a time)");
    println!(
        "last member     p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({incomplete} sends not seen by everyone in 10 s)",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    );
    println!("store writes    1 transaction (1 fsync) per send (embedded store): 1 message row + {members} inbox entries + {members} chat log entries");
    println!(
        "json            {}",
        json!({"scenario": "group", "members": members, "sends": sends, "incomplete": incomplete,
               "last_member_p50_ms": ms(h.value_at_quantile(0.5)), "last_member_p99_ms": ms(h.value_at_quantile(0.99)), "max_ms": ms(h.max())})
    );
    Ok(())
}

/// natter's resident memory, from /proc.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

/// A natter access token for `user` (one argon2 check per user, not per connection).
fn access_token(http: &str, user: &str, password: &str) -> anyhow::Result<String> {
    let mut resp = ureq::post(&format!("http://{http}/v1/token"))
        .send_json(json!({"user": user, "password": password}))?;
    let v: serde_json::Value = resp.body_mut().read_json()?;
    v["token"]
        .as_str()
        .map(str::to_owned)
        .context("no token in the answer")
}

/// An MQTT 3.1.1 CONNECT, written by hand: an idle client needs nothing more than its socket.
fn connect_packet(client_id: &str, user: &str, password: &str, keepalive: u16) -> Vec<u8> {
    let field = |b: &mut Vec<u8>, s: &[u8]| {
        b.extend_from_slice(&(s.len() as u16).to_be_bytes());
        b.extend_from_slice(s);
    };
    let mut body = Vec::new();
    field(&mut body, b"MQTT");
    body.push(4); // 3.1.1
    body.push(0b1100_0010); // username, password, clean session
    body.extend_from_slice(&keepalive.to_be_bytes());
    field(&mut body, client_id.as_bytes());
    field(&mut body, user.as_bytes());
    field(&mut body, password.as_bytes());
    let mut p = vec![0x10];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        p.push(byte);
        if len == 0 {
            break;
        }
    }
    p.extend_from_slice(&body);
    p
}

async fn idle(
    cli: &Cli,
    http: &str,
    token: &str,
    connections: usize,
    per_user: usize,
    pid: u32,
    hold: u64,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let users = connections.div_ceil(per_user.max(1));
    let pw = "bench-pw";
    let mut tokens = Vec::with_capacity(users);
    for u in 0..users {
        let name = format!("bench-idle{u}");
        create_user(http, token, &name, pw)?;
        tokens.push(access_token(http, &name, pw)?);
    }
    let before = rss_kib(pid)?;
    let port: u16 = cli.port;
    let started = Instant::now();
    let mut held = Vec::with_capacity(connections);
    // A few hundred handshakes at a time; each loopback source address has ~28k ports, so
    // connections are spread over 127.R.x.y, 20,000 per address; R is random per run because
    // the ports of an earlier run sit in TIME_WAIT for a minute.
    let net = rand_octet();
    let mut wave = tokio::task::JoinSet::new();
    for i in 0..connections {
        let user = format!("bench-idle{}", i / per_user);
        let password = tokens[i / per_user].clone();
        let k = i / 20_000;
        let source = std::net::Ipv4Addr::new(127, net, (k / 250) as u8, (2 + k % 250) as u8);
        wave.spawn(async move {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind((source, 0).into())?;
            let mut s = sock.connect(([127, 0, 0, 1], port).into()).await?;
            s.write_all(&connect_packet(
                &format!("{user}:d{i}"),
                &user,
                &password,
                3600,
            ))
            .await?;
            let mut ack = [0u8; 4];
            tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut ack)).await??;
            if ack[0] != 0x20 || ack[3] != 0 {
                bail!("CONNACK {ack:?}");
            }
            anyhow::Ok(s)
        });
        if wave.len() >= 256 || i + 1 == connections {
            while let Some(r) = wave.join_next().await {
                held.push(r??);
            }
        }
    }
    let connect_s = started.elapsed().as_secs_f64();
    // Let natter settle (its per-connection tasks and buffers) before reading its memory.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(pid)?;
    let per_conn = (after.saturating_sub(before)) as f64 / held.len() as f64;
    println!(
        "scenario        idle ({} connections, {users} users)",
        held.len()
    );
    println!("connect time    {connect_s:.1} s");
    println!(
        "natter RSS      {:.1} MiB before, {:.1} MiB after",
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
    println!("per connection  {per_conn:.1} KiB");
    println!(
        "json            {}",
        json!({"scenario": "idle", "connections": held.len(), "rss_before_kib": before,
               "rss_after_kib": after, "per_connection_kib": per_conn, "connect_s": connect_s})
    );
    tokio::time::sleep(Duration::from_secs(hold)).await;
    drop(held);
    Ok(())
}

/// A byte from 1 to 250, different from run to run.
fn rand_octet() -> u8 {
    1 + rand::random::<u8>() % 250
}
