//! `natter serve`: open everything in dependency order, fail early with the config key at
//! fault, then run until told to stop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use natter_bridge::{auth, Bridge};
use natter_broker::Broker;
use natter_config::{Config, LogFormat};
use natter_store::embedded::{EmbeddedOptions, EmbeddedStore};
use natter_store::Store;
use tracing_subscriber::EnvFilter;

fn init_logging(config: &Config) {
    // rmqtt logs every refused connection at info; natter logs those itself, once, at info.
    let default = format!("{},rmqtt=warn,rmqtt_net=warn", config.log.level);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The admin token: from the config, or made now and left in `{data_dir}/admin.token` for the
/// CLI on this machine.
fn admin_token(config: &Config) -> anyhow::Result<String> {
    if !config.http.admin_token.is_empty() {
        return Ok(config.http.admin_token.clone());
    }
    let token: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
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

/// Opens the embedded store under `data_dir`.
pub fn open_store(config: &Config) -> anyhow::Result<EmbeddedStore> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "config key `data_dir` = {}: cannot create the directory",
            config.data_dir.display()
        )
    })?;
    let path = config.data_dir.join("natter.redb");
    let opts = EmbeddedOptions {
        max_batch: config.store.max_batch,
        max_queue: config.store.max_queue,
        dedup_ms: config.limits.dedup_hours * 3600 * 1000,
        cache_bytes: config.store.cache_mb << 20,
    };
    EmbeddedStore::open(&path, opts).with_context(|| {
        format!(
            "cannot open the store {} (is another natter using it?)",
            path.display()
        )
    })
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    init_logging(&config);
    let config = Arc::new(config);
    let store: Arc<dyn Store> = Arc::new(open_store(&config)?);
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

    let presence: Arc<dyn natter_bridge::presence::PresenceBackend> =
        match config.presence.backend.as_str() {
            "redis" => Arc::new(
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
            _ => Arc::new(natter_bridge::presence::MemoryPresence::default()),
        };
    let broker = Broker::new(config.clone()).await;
    let bridge = Arc::new(Bridge::new(
        store.clone(),
        broker.handle(),
        tokens,
        config.clone(),
        presence,
    ));
    let running = broker.start(bridge.clone()).await?;

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

    let app = crate::http::router(bridge.clone(), admin_token);
    let http_addr = http_listener.local_addr()?;
    let http_task = tokio::spawn(async move {
        if let Err(e) = axum::serve(http_listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });

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
        http = %http_addr,
        data_dir = %config.data_dir.display(),
        "natter is serving"
    );

    tokio::select! {
        _ = shutdown_signal() => tracing::info!("stopping"),
        _ = running.task => anyhow::bail!("the MQTT server stopped"),
        _ = http_task => anyhow::bail!("the HTTP server stopped"),
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
