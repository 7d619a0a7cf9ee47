//! `natter serve`: open everything in dependency order, fail early with the config key at
//! fault, then run until told to stop.

use natter_types::clock::now_ms;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use natter_bridge::{auth, Bridge};
use natter_broker::Broker;
use natter_cassandra::{CassandraOptions, CassandraStore, Replication, TlsFiles};
use natter_config::{Config, LogFormat, PresenceBackend, ReplicationClass, StoreBackend};
use natter_store::embedded::{EmbeddedOptions, EmbeddedStore};
use natter_store::Store;
use tracing_subscriber::EnvFilter;

fn init_logging(config: &Config) {
    // rmqtt logs every refused connection at info; natter logs those itself, once, at info.
    // The scylla driver logs each connection it opens at info; fjall and its LSM-tree log each
    // keyspace they open and each flush at info.
    let default = format!(
        "{},rmqtt=warn,rmqtt_net=warn,scylla=warn,fjall=warn,lsm_tree=warn",
        config.log.level
    );
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only where a person reads them, never in files or collectors.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // Fails only if a subscriber is already installed (a test's); that one logs instead.
    let _ = match config.log.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Installs the process-wide metrics recorder that `/metrics` renders.
fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    // Latencies from a fast local commit (~1 ms) to a slow fan-out or a stalled client.
    let seconds = [
        0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let sizes = [
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)?
        .set_buckets_for_metric(Matcher::Full("natter_store_batch_size".into()), &sizes)?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    metrics::describe_counter!(
        "natter_messages_in_total",
        "Publishes received from clients, by kind (message, read, typing, request, unknown)"
    );
    metrics::describe_counter!(
        "natter_messages_out_total",
        "Deliveries to clients, by kind (message, receipt, event, reply, presence, integration)"
    );
    metrics::describe_counter!("natter_errors_total", "Refused publishes, by error code");
    metrics::describe_counter!(
        "natter_messages_dropped_total",
        "Deliveries lost because a session's queue (mqtt.max_queue) was full, by reason"
    );
    metrics::describe_histogram!(
        "natter_send_deliver_seconds",
        "From a message's acceptance to a device's PUBACK of it"
    );
    metrics::describe_histogram!(
        "natter_store_commit_seconds",
        "One store write transaction, fsync included"
    );
    metrics::describe_histogram!("natter_store_batch_size", "Operations per store commit");
    metrics::describe_gauge!(
        "natter_store_queue_depth",
        "Operations waiting for the store writer"
    );
    metrics::describe_gauge!("natter_connections", "Open MQTT connections of users");
    metrics::describe_gauge!(
        "natter_online_users",
        "Users with a device connected to this node"
    );
    metrics::describe_gauge!(
        "natter_media_uploads_running",
        "Uploads being received through natter's media route (or waiting for a slot)"
    );
    metrics::gauge!("natter_connections").set(0.0);
    metrics::gauge!("natter_media_uploads_running").set(0.0);
    metrics::gauge!("natter_online_users").set(0.0);
    metrics::gauge!("natter_store_queue_depth").set(0.0);
    Ok(handle)
}

/// The admin token: from the config, or made now and left in `{data_dir}/admin.token` for the
/// CLI on this machine.
fn admin_token(config: &Config) -> anyhow::Result<String> {
    if !config.http.admin_token.is_empty() {
        return Ok(config.http.admin_token.clone());
    }
    let token = auth::hex(&rand::random::<[u8; 32]>());
    let path = config.data_dir.join("admin.token");
    auth::write_private(&path, token.as_bytes()).with_context(|| {
        format!(
            "config key `data_dir` = {}: cannot write {}",
            config.data_dir.display(),
            path.display()
        )
    })?;
    Ok(token)
}

/// Opens the store the config names: the embedded one under `data_dir`, or the Cassandra
/// cluster (creating or migrating natter's schema there).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    // Keys and tokens live under data_dir whichever store holds the messages.
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "config key `data_dir` = {}: cannot create the directory",
            config.data_dir.display()
        )
    })?;
    match config.store.backend {
        StoreBackend::Cassandra => {
            let opts = cassandra_options(config)?;
            let points = opts.contact_points.join(", ");
            let store = CassandraStore::connect(opts).await.with_context(|| {
                format!(
                    "config key `store.cassandra.contact_points` = [{points}]: cannot use the cluster"
                )
            })?;
            return Ok(Arc::new(store));
        }
        StoreBackend::Embedded => {}
    }
    let path = embedded_dir(config);
    let legacy = legacy_file(config);
    if !path.exists() && legacy.exists() {
        anyhow::bail!(
            "{} holds a store written by an earlier natter (one redb file); this natter keeps \
             its store in {}. Convert it first with `natter store migrate{}` (the old file is \
             kept), then start again",
            legacy.display(),
            path.display(),
            config_arg(),
        );
    }
    let opts = EmbeddedOptions {
        max_batch: config.store.max_batch,
        max_queue: config.store.max_queue,
        dedup_ms: config.limits.dedup_hours * 3600 * 1000,
        cache_bytes: config.store.cache_mb << 20,
    };
    let store = EmbeddedStore::open(&path, opts).with_context(|| {
        format!(
            "cannot open the store {} (is another natter using it?)",
            path.display()
        )
    })?;
    Ok(Arc::new(store))
}

/// The embedded store's directory under `data_dir`.
pub fn embedded_dir(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("store")
}

/// Where natter before the fjall store kept its store: one redb file under `data_dir`.
pub fn legacy_file(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("natter.redb")
}

/// ` --config FILE` as this process was started with it, for a command it names.
fn config_arg() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .map(|f| format!(" --config {f}"))
        .or_else(|| {
            args.iter().find_map(|a| {
                a.strip_prefix("--config=")
                    .map(|f| format!(" --config {f}"))
            })
        })
        .unwrap_or_default()
}

/// `[store.cassandra]` as the Cassandra store's options (the config already checked them).
fn cassandra_options(config: &Config) -> anyhow::Result<CassandraOptions> {
    let c = &config.store.cassandra;
    let replication = match c.replication_class {
        ReplicationClass::NetworkTopologyStrategy => {
            Replication::NetworkTopology(c.datacenters.clone().into_iter().collect())
        }
        ReplicationClass::SimpleStrategy => Replication::Simple {
            factor: c.replication_factor,
        },
    };
    let password = match &c.password_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| {
                format!(
                    "config key `store.cassandra.password_file` = {}: cannot read it",
                    path.display()
                )
            })?
            .lines()
            .next()
            .unwrap_or("")
            .to_owned(),
        None => c.password.clone(),
    };
    Ok(CassandraOptions {
        contact_points: c.contact_points.clone(),
        keyspace: c.keyspace.clone(),
        replication,
        local_datacenter: Some(c.local_datacenter.clone()).filter(|d| !d.is_empty()),
        consistency: driver_consistency(c.consistency),
        credentials: (!c.username.is_empty()).then(|| (c.username.clone(), password)),
        tls: c.tls.as_ref().map(|t| TlsFiles {
            ca_file: t.ca_file.clone(),
            client: t.cert_file.clone().zip(t.key_file.clone()),
        }),
        dedup_ms: config.limits.dedup_hours * 3600 * 1000,
        message_ttl_secs: (c.message_ttl_days * 86_400.0).round() as u32,
        max_in_flight: config.store.max_queue,
        connect_timeout: Duration::from_secs(c.connect_timeout_secs),
        request_timeout: Duration::from_secs(c.request_timeout_secs),
        schema_metadata: c.schema_metadata,
    })
}

/// `[store.cassandra] consistency` as the driver's level.
fn driver_consistency(c: natter_config::Consistency) -> natter_cassandra::Consistency {
    use natter_cassandra::Consistency as Driver;
    use natter_config::Consistency as Config;
    match c {
        Config::LocalQuorum => Driver::LocalQuorum,
        Config::Quorum => Driver::Quorum,
        Config::LocalOne => Driver::LocalOne,
        Config::One => Driver::One,
        Config::EachQuorum => Driver::EachQuorum,
        Config::All => Driver::All,
    }
}

/// Raises the soft limit on open files to the hard limit (every connection is a file
/// descriptor, and a soft limit of 1024 is common) and logs what natter got.
fn raise_open_files_limit(config: &Config) {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit`, which `limit` is.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            let e = std::io::Error::last_os_error();
            tracing::warn!(error = %e, "cannot read the open files limit");
            return;
        }
        let was = limit.rlim_cur;
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: setrlimit reads one `rlimit`, which `raised` is.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit = raised;
            } else {
                let e = std::io::Error::last_os_error();
                tracing::warn!(error = %e, hard = limit.rlim_max, "cannot raise the open files limit");
            }
        }
        tracing::info!(
            soft = limit.rlim_cur,
            hard = limit.rlim_max,
            was,
            "open files limit"
        );
        let http = config.http.max_connections as u64;
        if limit.rlim_cur <= http + 64 {
            tracing::warn!(
                open_files = limit.rlim_cur,
                http_max_connections = http,
                "http.max_connections leaves almost no file descriptors for MQTT and the store; \
                 raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower the cap"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = config;
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    init_logging(&config);
    raise_open_files_limit(&config);
    let metrics = install_metrics()?;
    let config = Arc::new(config);
    let store: Arc<dyn Store> = open_store(&config).await?;
    let tokens = Arc::new(auth::Tokens::load(&config.auth, &config.data_dir)?);
    let admin_token = admin_token(&config)?;

    let http_listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| {
            format!(
                "config key `http.listen` = {}: cannot listen there",
                config.http.listen
            )
        })?;

    let presence: Arc<dyn natter_bridge::presence::PresenceBackend> = match config.presence.backend
    {
        PresenceBackend::Redis => Arc::new(
            natter_bridge::presence::RedisPresence::new(
                &config.presence.redis_url,
                Duration::from_secs(config.presence.ttl_secs),
            )
            .with_context(|| {
                format!(
                    "config key `presence.redis_url` = {:?}",
                    config.presence.redis_url
                )
            })?,
        ),
        PresenceBackend::Memory => Arc::new(natter_bridge::presence::MemoryPresence::default()),
    };
    let pusher = natter_push::Pusher::from_config(&config.push)?;
    let media = Arc::new(natter_media::Media::open(
        &config.media,
        &config.data_dir,
        config.http.listen,
    )?);
    let broker = Broker::new(config.clone()).await;
    let bridge = Arc::new(Bridge::new(
        store.clone(),
        Arc::new(broker.handle()),
        tokens,
        config.clone(),
        presence,
        pusher,
        media,
    ));
    bridge.start_push();
    bridge.start_media_sweep();
    let mut running = broker.start(bridge.clone()).await?;

    // Devices connected here stay online in a shared presence backend only while refreshed.
    let refresher = bridge.clone();
    let every = Duration::from_secs((config.presence.ttl_secs / 3).max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            refresher.refresh_presence().await;
        }
    });

    if let Some(certs) = running.certs.clone() {
        tokio::spawn(reload_on_sighup(certs));
    }
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });

    let app = crate::http::router(bridge.clone(), admin_token, metrics);
    let http_addr = http_listener.local_addr()?;
    let http_task = tokio::spawn(crate::http::serve(
        http_listener,
        app,
        crate::http::ConnLimits::from_config(&config.http),
    ));

    let dedup_ms = config.limits.dedup_hours * 3600 * 1000;
    let purge_store = store.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            let cutoff = now_ms().saturating_sub(dedup_ms);
            match purge_store.purge_dedup(cutoff).await {
                Ok(n) if n > 0 => tracing::info!(forgotten = n, "old message cids purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cid purge failed"),
            }
        }
    });

    tracing::info!(
        mqtt = %running.tcp_addr,
        ws = ?running.ws_addr.map(|a| format!("ws://{a}/mqtt")),
        anonymous = ?running.anonymous_addr,
        tls = ?running.tls_addr,
        wss = ?running.wss_addr.map(|a| format!("wss://{a}/mqtt")),
        http = %http_addr,
        data_dir = %config.data_dir.display(),
        "natter is serving"
    );

    tokio::select! {
        _ = shutdown_signal() => {}
        // Each runs until natter exits; a panic is the reason it stopped.
        ended = &mut running.task => {
            ended.context("the MQTT server failed")?;
            anyhow::bail!("the MQTT server stopped")
        }
        ended = http_task => {
            ended.context("the HTTP server failed")?;
            anyhow::bail!("the HTTP server stopped")
        }
    }
    let limit = Duration::from_secs(config.shutdown_timeout_secs);
    let started = tokio::time::Instant::now();
    shut_down(&running, &bridge, limit).await;
    // What is left of the limit goes to making the next start quick.
    let left = limit.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, store.checkpoint()).await {
        Ok(Ok(())) => tracing::info!("store checkpointed: the next start replays nothing"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "store not checkpointed; the next start replays its journal")
        }
        Err(_) => tracing::warn!("store checkpoint cut short by shutdown_timeout_secs"),
    }
    Ok(())
}

/// Stops within `limit`: no new connections, no new publishes (refused with `unavailable`, so
/// clients keep them), the commits in flight finish and are acknowledged, then every client is
/// told (MQTT 5 DISCONNECT 0x8B) and the connections close.
async fn shut_down(running: &natter_broker::RunningBroker, bridge: &Bridge, limit: Duration) {
    let started = tokio::time::Instant::now();
    tracing::info!(
        limit_secs = limit.as_secs(),
        "shutting down: no new connections"
    );
    running.stop_accepting();
    let unfinished = bridge.close(limit.mul_f32(0.8)).await;
    if unfinished > 0 {
        tracing::warn!(unfinished, "shutdown: publishes still running at the limit");
    }
    let told = running.disconnect_all().await;
    // Wait for the DISCONNECTs to go out and the connections to close.
    // Integrations count too: an MQTT 5 client of theirs is owed its DISCONNECT 0x8B as well.
    while (bridge.connected_devices() > 0 || running.connections() > 0) && started.elapsed() < limit
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::info!(
        sessions = told,
        still_connected = bridge.connected_devices(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "stopped"
    );
}

/// Reads the TLS certificate and key again at every SIGHUP. A bad pair is logged and the
/// certificate in use stays.
async fn reload_on_sighup(certs: natter_broker::tls::Certs) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; TLS certificates will not be reloaded");
            return;
        };
        while hup.recv().await.is_some() {
            match certs.reload() {
                Ok(()) => {
                    metrics::counter!("natter_tls_reloads_total", "result" => "ok").increment(1);
                    tracing::info!("TLS certificate reloaded");
                }
                Err(e) => {
                    metrics::counter!("natter_tls_reloads_total", "result" => "error").increment(1);
                    tracing::error!(error = %e, "TLS certificate not reloaded; the old one stays");
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = certs;
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM: no clean shutdown");
                    return std::future::pending().await;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::driver_consistency;
    use natter_config::Consistency;

    #[test]
    fn each_configured_consistency_is_the_drivers_level_of_the_same_name() {
        for c in [
            Consistency::LocalQuorum,
            Consistency::Quorum,
            Consistency::LocalOne,
            Consistency::One,
            Consistency::EachQuorum,
            Consistency::All,
        ] {
            assert_eq!(format!("{c:?}"), format!("{:?}", driver_consistency(c)));
        }
    }
}
