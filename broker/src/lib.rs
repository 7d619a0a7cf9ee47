//! The embedded MQTT broker: listeners, CONNECT and CONNACK, the topic ACL, retained messages,
//! and delivery to subscribers, on `rmqtt`.
//!
//! The broker knows MQTT and the operator's ACL rules (`[[acl]]`, `[anonymous]`), nothing of
//! chats: every decision about a chat topic or a credential goes to a [`Gate`] that the bridge
//! implements, and the bridge speaks back through [`BrokerHandle::publish`]. No rmqtt type
//! crosses this crate's public API, so the bridge never depends on the MQTT library.

mod acl;
mod hooks;
mod retain;
mod sessions;
mod shared;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use natter_config::Config;
use natter_types::Client;
use rmqtt::context::ServerContext;
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::session::SessionState;
use rmqtt::types::{CodecPublish, From, Id, Publish, QoS};

pub use acl::{filter_covers, reaches_chat, topic_matches, Rules};

/// The Topic Alias Maximum natter advertises to MQTT 5 clients.
pub const MAX_TOPIC_ALIASES: u16 = 64;

/// How a CONNECT on the credentialed listener ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthVerdict {
    /// Accepted.
    Accept,
    /// Wrong or unknown credentials: CONNACK 3.1.1 `4` / 5.0 `0x86`.
    BadCredentials,
    /// Client id not `{user}:{device}`, or of another user: CONNACK 3.1.1 `5` / 5.0 `0x87`.
    NotAuthorized,
}

/// Why a publish was refused; each maps to an MQTT 5 PUBACK reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `0x87`: topic not allowed, chat the sender is not in, unknown user or method.
    NotAuthorized,
    /// `0x99`: malformed JSON, invalid UTF-8, bad fields.
    PayloadFormatInvalid,
    /// `0x83`: payload over the chat message limit (MQTT 5 has no "too large" PUBACK code).
    TooLarge,
    /// `0x97`: rate or queue limit.
    QuotaExceeded,
    /// `0x80`: natter cannot take it now (the store or media storage failed, or it is shutting
    /// down); nothing was kept, the client should resend.
    Unavailable,
}

/// The answer to a publish on the credentialed listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishVerdict {
    /// Handled: PUBACK success. The broker routes nothing further.
    Handled,
    /// Refused with a reason code and a human-readable reason string.
    Refused(Refusal, String),
}

/// The chat rules, seen from the broker. Implemented by the bridge.
#[async_trait]
pub trait Gate: Send + Sync + 'static {
    /// Checks a CONNECT's credentials: client id, username and password exactly as the client
    /// sent them, and the address it came from (for throttling failed attempts). The device
    /// limit is the broker's, checked after an `Accept`.
    async fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
        remote: Option<IpAddr>,
    ) -> AuthVerdict;
    /// Whether `client` may subscribe to `filter` (not covered by any `[[acl]]` rule).
    async fn may_subscribe(&self, client: &Client, filter: &str) -> bool;
    /// A publish by `client` to `topic` that no `[[acl]]` rule covers. Returns only once the
    /// publish is fully handled (for a message: durable), because the PUBACK follows it.
    async fn publish(&self, client: &Client, topic: &str, payload: Bytes) -> PublishVerdict;
    /// A device acknowledged (PUBACK) a QoS 1 delivery on `topic`.
    async fn acked(&self, client: &Client, topic: &str, payload: &Bytes);
    /// A device connected (after CONNACK).
    async fn connected(&self, client: &Client);
    /// A device's connection ended, however it ended.
    async fn disconnected(&self, client: &Client);
}

/// A broker that could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A listener could not bind; names the config key.
    #[error("config key `{key}` = {addr}: cannot listen there: {reason}")]
    Bind {
        /// The config key of the listener.
        key: &'static str,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Turns any listening failure (rmqtt's or the socket's own) into an error naming the key.
fn bind_err<E: std::fmt::Display>(
    key: &'static str,
    addr: SocketAddr,
) -> impl Fn(E) -> BrokerError {
    move |e| BrokerError::Bind {
        key,
        addr,
        reason: e.to_string(),
    }
}

/// Sends messages into the broker, to whoever is subscribed. Cheap to clone.
#[derive(Clone)]
pub struct BrokerHandle {
    scx: ServerContext,
    from: From,
}

impl BrokerHandle {
    /// Publishes `payload` to `topic` at QoS 1 (or 0), to every matching subscription, and to
    /// the queues of offline persistent sessions.
    pub async fn publish(&self, topic: &str, payload: Bytes, qos1: bool, retain: bool) {
        let p = CodecPublish {
            dup: false,
            retain,
            qos: if qos1 {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            },
            topic: topic.into(),
            packet_id: None,
            payload,
            properties: None,
        };
        let p = Publish::from(p).create_time(rmqtt::utils::timestamp_millis());
        if let Err(e) = SessionState::forwards(&self.scx, self.from.clone(), p, false, None).await {
            tracing::warn!(topic, error = %e, "broker could not route a message");
        }
    }

    /// Ends every session of `user` on this node, connected or kept offline: the connection
    /// is closed and the session, its subscriptions and its queue are dropped. Returns how many
    /// sessions there were. For a removed user or a changed password.
    pub async fn end_sessions(&self, user: &str) -> usize {
        let prefix = format!("{user}:");
        let shared = self.scx.extends.shared().await;
        let ids: Vec<Id> = shared
            .iter()
            .map(|e| e.id())
            .filter(|id| id.lid != hooks::ANONYMOUS_LISTENER && id.client_id.starts_with(&prefix))
            .collect();
        let mut ended = 0;
        for id in ids {
            let entry = shared.entry(id.clone());
            match entry.try_lock().await {
                Ok(mut e) => match e.kick(true, true, true).await {
                    Ok(_) => ended += 1,
                    Err(err) => {
                        tracing::warn!(client = %id.client_id, error = %err, "session not ended")
                    }
                },
                Err(err) => {
                    tracing::warn!(client = %id.client_id, error = %err, "session busy; not ended")
                }
            }
        }
        ended
    }
}

/// The broker, configured but not yet listening.
pub struct Broker {
    scx: ServerContext,
    config: Arc<Config>,
    retained: Arc<retain::Retained>,
}

/// A listening broker.
pub struct RunningBroker {
    /// Where each listener ended up (useful when a port was 0).
    pub tcp_addr: SocketAddr,
    /// The WebSocket listener's address, if on.
    pub ws_addr: Option<SocketAddr>,
    /// The anonymous listener's address, if on.
    pub anonymous_addr: Option<SocketAddr>,
    /// The MQTT-over-TLS listener's address, if on.
    pub tls_addr: Option<SocketAddr>,
    /// The secure WebSocket listener's address, if on.
    pub wss_addr: Option<SocketAddr>,
    /// The TLS certificate in use, to reload on SIGHUP.
    pub certs: Option<tls::Certs>,
    /// Runs until the process ends.
    pub task: tokio::task::JoinHandle<()>,
    /// The TLS accept loops.
    tls_tasks: Vec<tokio::task::JoinHandle<()>>,
    scx: ServerContext,
}

impl RunningBroker {
    /// Closes every listener: no new connection is accepted; open ones go on.
    pub fn stop_accepting(&self) {
        // Dropping rmqtt's server future drops its listening sockets; each connection runs in a
        // task of its own and is untouched.
        self.task.abort();
        for t in &self.tls_tasks {
            t.abort();
        }
    }

    /// Ends every connection; MQTT 5 clients get DISCONNECT `0x8B` (server shutting down).
    /// Returns how many sessions were told.
    pub async fn disconnect_all(&self) -> usize {
        let shared = self.scx.extends.shared().await;
        let mut told = 0;
        for entry in shared.iter() {
            if let Some(tx) = entry.tx() {
                if tx
                    .unbounded_send(rmqtt::types::Message::Closed(
                        rmqtt::types::Reason::ConnectRemoteClose,
                    ))
                    .is_ok()
                {
                    told += 1;
                }
            }
        }
        told
    }

    /// Open MQTT connections, of users and integrations alike.
    pub fn connections(&self) -> usize {
        usize::try_from(self.scx.connections.count()).unwrap_or(0)
    }

    /// Sessions (connected or kept for a persistent client) this node holds.
    pub async fn sessions(&self) -> usize {
        self.scx.extends.shared().await.sessions_count()
    }
}

impl Broker {
    /// Prepares a broker for `config`.
    pub async fn new(config: Arc<Config>) -> Broker {
        // rmqtt refuses CONNECTs ("server unavailable") while the machine's load average is
        // high, whatever causes it; natter bounds its own work (connection and handshake limits,
        // the store's queue) instead of refusing users for another process's load.
        let scx = ServerContext::new().busy_check_enable(false).build().await;
        let m = &config.mqtt;
        let retained = retain::Retained::new(retain::RetainLimits {
            topics: m.retained_max_topics,
            bytes: m.retained_max_bytes,
            payload: m.retained_max_payload,
        });
        *scx.extends.retain_mut().await = Box::new(retain::Storage(retained.clone()));
        *scx.extends.shared_subscription_mut().await = Box::new(shared::RoundRobin::default());
        Broker {
            scx,
            config,
            retained,
        }
    }

    /// The handle the bridge publishes through.
    pub fn handle(&self) -> BrokerHandle {
        let id = Id::new(self.scx.node.id(), 0, None, None, "natter".into(), None);
        BrokerHandle {
            scx: self.scx.clone(),
            from: From::from_system(id),
        }
    }

    fn listener(&self, name: &str, addr: SocketAddr) -> Builder {
        let m = &self.config.mqtt;
        Builder::new()
            .name(name)
            .laddr(addr)
            // Chat packets are small and latency is what users feel: no Nagle delay.
            .nodelay(true)
            // A restarted natter must bind while the old connections sit in TIME_WAIT.
            .reuseaddr(Some(true))
            .max_connections(m.max_connections)
            .max_handshaking_limit(m.max_connections.clamp(1, 5_000))
            .max_packet_size(m.max_packet_size)
            // Never rmqtt's own anonymous shortcut (it skips the authenticate hook when a CONNECT
            // has no user name): the hook gives the anonymous listener its rights and checks.
            .allow_anonymous(false)
            .min_keepalive(m.min_keepalive)
            .max_keepalive(m.max_keepalive)
            .allow_zero_keepalive(m.min_keepalive == 0)
            .max_inflight(NonZeroU16::new(m.max_inflight).unwrap_or(NonZeroU16::MIN))
            .max_mqueue_len(m.max_queue)
            .handshake_timeout(Duration::from_secs(m.handshake_timeout_secs))
            .max_session_expiry_interval(Duration::from_secs(m.max_session_expiry_secs))
            .session_expiry_interval(Duration::from_secs(m.max_session_expiry_secs.min(7200)))
            .max_clientid_len(160)
            // A message without a Message Expiry Interval never expires [MQTT-3.3.2-5]: rmqtt's
            // default (300 s) dropped retained messages and offline queues after five minutes.
            // Zero is rmqtt's "no expiry"; a publisher's own interval still applies.
            .message_expiry_interval(Duration::ZERO)
            // Aliases 1..=MAX_TOPIC_ALIASES are accepted from MQTT 5 clients (CONNACK says so);
            // 0 or above is DISCONNECT 0x94 (third_party/rmqtt).
            .max_topic_aliases(MAX_TOPIC_ALIASES)
            // Browsers' pages from other origins (`mqtt.ws_origins`; empty: any), checked in the
            // WebSocket handshake (third_party/rmqtt-net).
            .ws_allowed_origins(m.ws_origins.clone())
    }

    /// Binds every listener, installs the hooks and starts serving.
    pub async fn start(self, gate: Arc<dyn Gate>) -> Result<RunningBroker, BrokerError> {
        let cfg = self.config.clone();
        let tcp = self
            .listener("tcp", cfg.mqtt.tcp)
            .bind()
            .map_err(bind_err("mqtt.tcp", cfg.mqtt.tcp))?
            .tcp()
            .map_err(bind_err("mqtt.tcp", cfg.mqtt.tcp))?;
        let tcp_addr = tcp
            .local_addr()
            .map_err(bind_err("mqtt.tcp", cfg.mqtt.tcp))?;
        let mut server = MqttServer::new(self.scx.clone()).listener_by_id(tcp, 1);
        let mut ws_addr = None;
        if let Some(addr) = cfg.mqtt.ws {
            let ws = self
                .listener("ws", addr)
                .bind()
                .map_err(bind_err("mqtt.ws", addr))?
                .ws()
                .map_err(bind_err("mqtt.ws", addr))?;
            ws_addr = Some(ws.local_addr().map_err(bind_err("mqtt.ws", addr))?);
            server = server.listener_by_id(ws, 2);
        }
        let mut anonymous_addr = None;
        if let Some(anon) = &cfg.anonymous {
            let l = self
                .listener("anonymous", anon.listen)
                .bind()
                .map_err(bind_err("anonymous.listen", anon.listen))?
                .tcp()
                .map_err(bind_err("anonymous.listen", anon.listen))?;
            anonymous_addr = Some(
                l.local_addr()
                    .map_err(bind_err("anonymous.listen", anon.listen))?,
            );
            server = server.listener_by_id(l, hooks::ANONYMOUS_LISTENER);
        }
        let mut tls_addr = None;
        let mut wss_addr = None;
        let mut certs = None;
        let mut tls_tasks = Vec::new();
        if let Some(t) = &cfg.mqtt.tls {
            let c = tls::Certs::open(&t.cert_file, &t.key_file)?;
            let mut fronts = vec![("mqtt.tls.listen", t.listen, 4, false)];
            if let Some(w) = t.wss {
                fronts.push(("mqtt.tls.wss", w, 5, true));
            }
            for (key, addr, id, ws) in fronts {
                // The broker side of the TLS front: loopback only, behind the PROXY line.
                let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
                let inner = self
                    .listener(key, loopback)
                    .proxy_protocol(true)
                    .proxy_protocol_timeout(Duration::from_secs(2))
                    .bind()
                    .map_err(bind_err(key, addr))?;
                let inner =
                    if ws { inner.ws() } else { inner.tcp() }.map_err(bind_err(key, addr))?;
                let inner_addr = inner.local_addr().map_err(bind_err(key, addr))?;
                server = server.listener_by_id(inner, id);
                let front =
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(|e| BrokerError::Bind {
                            key,
                            addr,
                            reason: e.to_string(),
                        })?;
                let front_addr = front.local_addr().map_err(bind_err(key, addr))?;
                if ws {
                    wss_addr = Some(front_addr);
                } else {
                    tls_addr = Some(front_addr);
                }
                tls_tasks.push(tokio::spawn(tls::terminate(
                    front,
                    inner_addr,
                    c.clone(),
                    cfg.mqtt.max_connections,
                    Duration::from_secs(cfg.mqtt.handshake_timeout_secs),
                )));
            }
            certs = Some(c);
        }
        let parts = hooks::Parts {
            gate,
            rules: Arc::new(Rules::from_config(&cfg)),
            sessions: Arc::new(sessions::Sessions::new(
                cfg.limits.max_connections_per_user,
                // A CONNECT admitted but not yet a session is kept this long.
                Duration::from_secs(5),
            )),
            retained: self.retained.clone(),
        };
        hooks::install(&self.scx, parts).await;
        let server = server.build();
        let task = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!(error = %e, "MQTT server stopped");
            }
        });
        Ok(RunningBroker {
            tcp_addr,
            ws_addr,
            anonymous_addr,
            tls_addr,
            wss_addr,
            certs,
            task,
            tls_tasks,
            scx: self.scx.clone(),
        })
    }
}
