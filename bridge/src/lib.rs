//! The chat logic between the broker and the store: who may connect, subscribe and publish;
//! the send pipeline (validate, deduplicate, commit, receipt, fan-out); requests (`q/…`).
//!
//! The bridge implements the broker's [`natter_broker::Gate`] and publishes back through
//! [`outbound::Outbox`] over an [`outbound::Broker`]; it never sees an MQTT library type. It
//! must never answer a publish before the store has committed what that answer promises.
//!
//! One module per concept, each owning its state: `chats` (who may use a chat), `send`
//! (the send pipeline), `receipts` and `delivered` (receipts), `typing`, `devices`
//! (connections and presence transitions), `presence` (the presence backends: memory,
//! Redis), `groups` (the group cache and change rules), `requests` (one file per
//! `q/{method}`), `push`, `media`, `users`, `auth` and `logins` (credentials),
//! `limits` (rate buckets), `outbound` (everything natter publishes), `wire` (the JSON),
//! `error` (`ChatError`, its codes and MQTT reasons).

pub mod auth;
mod chats;
mod delivered;
mod devices;
mod error;
mod groups;
mod limits;
mod logins;
pub mod media;
pub mod outbound;
pub mod presence;
mod push;
mod receipts;
mod requests;
mod send;
pub mod sessions;
mod typing;
pub mod users;
mod wire;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use natter_broker::{AuthVerdict, Gate, PublishVerdict};
use natter_config::Config;
use natter_store::Store;
use natter_types::topic::Inbound;
use natter_types::{Client, UserId};

pub use error::ChatError;

/// The chat side of natter. One per process, shared by every connection.
pub struct Bridge {
    store: Arc<dyn Store>,
    /// Everything natter publishes goes through it.
    outbox: outbound::Outbox,
    tokens: Arc<auth::Tokens>,
    config: Arc<Config>,
    groups: groups::Groups,
    presence: Arc<dyn presence::PresenceBackend>,
    devices: devices::Devices,
    /// Device acks waiting to become delivered receipts.
    delivered: delivered::Delivered,
    message_rate: limits::Rate<UserId>,
    request_rate: limits::Rate<UserId>,
    /// Failed-login allowances.
    logins: logins::Logins,
    /// Publishes and acks being handled now; shutdown waits for them.
    busy: AtomicUsize,
    /// Set at shutdown: new publishes are refused, so what is in flight can finish.
    closing: AtomicBool,
    /// Push notifications, when enabled.
    push: Option<push::Push>,
    /// Where uploads live.
    media: Arc<natter_media::Media>,
    /// Uploads being received now.
    uploads_running: media::Running,
}

/// Counts one publish or ack in [`Bridge::busy`] while it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(n: &'a AtomicUsize) -> InFlight<'a> {
        n.fetch_add(1, Ordering::SeqCst);
        InFlight(n)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Bridge {
    /// A bridge over `store`, publishing through `broker`.
    pub fn new(
        store: Arc<dyn Store>,
        broker: Arc<dyn outbound::Broker>,
        tokens: Arc<auth::Tokens>,
        config: Arc<Config>,
        presence: Arc<dyn presence::PresenceBackend>,
        pusher: Option<natter_push::Pusher>,
        media: Arc<natter_media::Media>,
    ) -> Bridge {
        let outbox = outbound::Outbox::new(broker);
        let delivered = delivered::Delivered::start(store.clone(), outbox.clone());
        Bridge {
            delivered,
            groups: groups::Groups::new(store.clone()),
            store,
            outbox,
            tokens,
            presence,
            devices: devices::Devices::default(),
            message_rate: limits::Rate::new(
                config.limits.messages_per_sec,
                config.limits.messages_burst,
            ),
            request_rate: limits::Rate::new(
                config.limits.requests_per_sec,
                config.limits.requests_burst,
            ),
            logins: logins::Logins::new(&config.auth),
            busy: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            push: pusher.map(push::Push::new),
            media,
            uploads_running: media::Running::default(),
            config,
        }
    }

    /// Starts a shutdown: from now on every publish is refused with `unavailable` (MQTT 5
    /// `0x80`), so the client keeps it and sends it again elsewhere or later; then waits, up to
    /// `limit`, until the publishes and acks already being handled are done. Returns how many
    /// were still running at the limit (0: all finished).
    pub async fn close(&self, limit: Duration) -> usize {
        self.closing.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let n = self.busy.load(Ordering::SeqCst) + self.delivered.pending();
            if n == 0 || tokio::time::Instant::now() >= deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Devices connected to this node now.
    pub fn connected_devices(&self) -> usize {
        self.devices.count()
    }

    /// Whether this node takes work: not shutting down, the store answers, and so does the
    /// presence backend where one is shared. `Err` names what is not.
    pub async fn ready(&self) -> Result<(), String> {
        if self.closing.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        let probe = UserId::new("ready").map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(2), self.store.user(&probe)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("store: {e}")),
            Err(_) => return Err("store: no answer within 2 s".into()),
        }
        self.presence
            .ready()
            .await
            .map_err(|e| format!("presence: {e}"))
    }

    /// The store, for the admin API.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The configuration natter was started with, for the HTTP routes that depend on it.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The token service, for `POST /v1/token`.
    pub fn tokens(&self) -> &auth::Tokens {
        &self.tokens
    }

    /// Checks `user`'s password or token, as a CONNECT or `POST /v1/token` presents it, from
    /// `remote`: the account if it is right, `None` if not (or if the attempt is throttled).
    ///
    /// Tokens are always checked (cheap). A password is refused unchecked when it is longer
    /// than [`users::MAX_PASSWORD_BYTES`], or while its address or its account is over the
    /// failed-login allowance (`logins`); otherwise it costs one argon2 verification whether
    /// or not the user exists, so names cannot be told apart.
    pub async fn check_credentials(
        &self,
        user: &UserId,
        password: &[u8],
        remote: Option<IpAddr>,
    ) -> Result<Option<natter_store::UserRecord>, natter_store::StoreError> {
        let record = self.store.user(user).await?;
        if auth::looks_like_jwt(password) {
            let ok = std::str::from_utf8(password)
                .ok()
                .zip(record.as_ref())
                .is_some_and(|(t, r)| self.tokens.verify(t, r));
            if !ok {
                self.logins.failed(remote, None);
            }
            return Ok(record.filter(|_| ok));
        }
        if password.len() > users::MAX_PASSWORD_BYTES {
            self.logins.failed(remote, Some(user));
            return Ok(None);
        }
        if let Err(why) = self.logins.check(remote, user) {
            tracing::info!(%user, remote = ?remote, ?why, "password attempt throttled");
            metrics::counter!("natter_logins_throttled_total").increment(1);
            return Ok(None);
        }
        let hash = record.as_ref().map(|r| r.password_hash.clone());
        // Counted for known and unknown users alike: both cost one argon2 check.
        metrics::counter!("natter_password_checks_total").increment(1);
        let ok = auth::verify_password_async(password.to_vec(), hash).await;
        if ok {
            self.logins.succeeded(remote, user);
            Ok(record)
        } else {
            self.logins.failed(remote, Some(user));
            Ok(None)
        }
    }

    async fn handle_publish(
        &self,
        client: &Client,
        topic: &str,
        payload: Bytes,
    ) -> Result<(), ChatError> {
        let limit = self.config.limits.max_message_bytes;
        if payload.len() > limit {
            return Err(ChatError::TooLarge {
                size: payload.len(),
                limit,
            });
        }
        let inbound = Inbound::parse(topic);
        let kind = inbound.as_ref().map_or("unknown", Inbound::kind);
        metrics::counter!("natter_messages_in_total", "kind" => kind).increment(1);
        if self.closing.load(Ordering::SeqCst) {
            return Err(ChatError::Unavailable(
                "server shutting down; send it again after reconnecting".into(),
            ));
        }
        let limited = match &inbound {
            Some(Inbound::Message(_)) => Some((&self.message_rate, "messages")),
            Some(Inbound::Request(_)) => Some((&self.request_rate, "requests")),
            _ => None,
        };
        if let Some((rate, what)) = limited {
            if !rate.allow(&client.user) {
                return Err(ChatError::RateLimited(format!(
                    "too many {what}: slow down and send again"
                )));
            }
        }
        match inbound {
            Some(Inbound::Message(chat)) => self.send(client, &chat, &payload).await,
            Some(Inbound::Request(method)) => self.request(client, method, &payload).await,
            Some(Inbound::Read(chat)) => self.read(client, &chat, &payload).await,
            Some(Inbound::Typing(chat)) => self.typing(client, &chat, &payload).await,
            None => Err(ChatError::UnknownTopic(topic.to_owned())),
        }
    }
}

#[async_trait]
impl Gate for Bridge {
    async fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
        remote: Option<IpAddr>,
    ) -> AuthVerdict {
        let Some(client) = Client::parse(client_id) else {
            return AuthVerdict::NotAuthorized;
        };
        if username != Some(client.user.as_str()) {
            return AuthVerdict::NotAuthorized;
        }
        let Some(password) = password else {
            return AuthVerdict::BadCredentials;
        };
        match self.check_credentials(&client.user, password, remote).await {
            Ok(Some(_)) => AuthVerdict::Accept,
            Ok(None) => {
                tracing::info!(client = client_id, remote = ?remote, "CONNECT refused: bad credentials");
                AuthVerdict::BadCredentials
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read users; refusing CONNECT");
                AuthVerdict::BadCredentials
            }
        }
    }

    async fn may_subscribe(&self, client: &Client, filter: &str) -> bool {
        let me = client.user.as_str();
        let levels: Vec<&str> = filter.split('/').collect();
        match levels.as_slice() {
            ["u", user, "m" | "r" | "e" | "#"] => *user == me,
            ["d", user, device] => *user == me && *device == client.device.as_str(),
            ["p", user] => match UserId::new(user) {
                Ok(u) => self.may_see_presence(&client.user, &u).await,
                Err(_) => false,
            },
            _ => false,
        }
    }

    async fn publish(&self, client: &Client, topic: &str, payload: Bytes) -> PublishVerdict {
        let _busy = InFlight::enter(&self.busy);
        match self.handle_publish(client, topic, payload.clone()).await {
            Ok(()) => PublishVerdict::Handled,
            Err(e) => {
                tracing::debug!(client = %client, topic, code = e.code(), "publish refused");
                metrics::counter!("natter_errors_total", "code" => e.code()).increment(1);
                // A request's error is its answer (matched by `id`, null when the request had
                // none); any other publish's error names its topic and `cid`.
                let report = if topic.starts_with("q/") {
                    wire::answer_err(&send::peek_field(&payload, "id").unwrap_or_default(), &e)
                } else {
                    let cid = send::peek_field(&payload, "cid");
                    wire::publish_error(topic, cid.as_ref().and_then(|c| c.as_str()), &e)
                };
                self.outbox.to_device(client, report).await;
                PublishVerdict::Refused(e.refusal(), e.to_string())
            }
        }
    }

    async fn acked(&self, client: &Client, topic: &str, payload: &Bytes) {
        let _busy = InFlight::enter(&self.busy);
        self.on_acked(client, topic, payload).await;
    }

    async fn connected(&self, client: &Client) {
        self.device_connected(client).await;
    }

    async fn disconnected(&self, client: &Client) {
        self.device_disconnected(client).await;
    }
}

#[cfg(test)]
mod tests;
