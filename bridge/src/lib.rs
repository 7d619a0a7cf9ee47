//! The chat logic between the broker and the store: who may connect, subscribe and publish;
//! the send pipeline (validate, deduplicate, commit, receipt, fan-out); requests (`q/…`).
//!
//! The bridge implements the broker's [`natter_broker::Gate`] and publishes back through a
//! [`natter_broker::BrokerHandle`]; it never sees an MQTT library type. It must never answer a
//! publish before the store has committed what that answer promises.

pub mod auth;
mod error;
mod groups;
pub mod presence;
mod receipts;
mod requests;
mod send;
pub mod users;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use natter_broker::{AuthVerdict, BrokerHandle, Gate, PublishVerdict};
use natter_config::Config;
use natter_store::Store;
use natter_types::{ChatAddr, Client, UserId};

pub use error::ChatError;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The chat side of natter. One per process, shared by every connection.
pub struct Bridge {
    store: Arc<dyn Store>,
    broker: BrokerHandle,
    tokens: Arc<auth::Tokens>,
    config: Arc<Config>,
    groups: groups::Groups,
    presence: Arc<dyn presence::PresenceBackend>,
    devices: receipts::Devices,
}

/// A topic a client published to, as the protocol reads it.
enum Inbound<'a> {
    Message(ChatAddr),
    Read(ChatAddr),
    Typing(ChatAddr),
    Request(&'a str),
}

fn parse_topic(topic: &str) -> Option<Inbound<'_>> {
    let (head, rest) = topic.split_once('/')?;
    match head {
        "m" => rest.parse().ok().map(Inbound::Message),
        "r" => rest.parse().ok().map(Inbound::Read),
        "t" => rest.parse().ok().map(Inbound::Typing),
        "q" if !rest.is_empty() && !rest.contains('/') => Some(Inbound::Request(rest)),
        _ => None,
    }
}

impl Bridge {
    /// A bridge over `store`, publishing through `broker`.
    pub fn new(
        store: Arc<dyn Store>,
        broker: BrokerHandle,
        tokens: Arc<auth::Tokens>,
        config: Arc<Config>,
        presence: Arc<dyn presence::PresenceBackend>,
    ) -> Bridge {
        Bridge {
            store,
            broker,
            tokens,
            config,
            groups: groups::Groups::default(),
            presence,
            devices: receipts::Devices::default(),
        }
    }

    /// The store, for the admin API.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The token service, for `POST /v1/token`.
    pub fn tokens(&self) -> &auth::Tokens {
        &self.tokens
    }

    /// Publishes `payload` to one device's `d/{user}/{device}` topic.
    async fn to_device(&self, client: &Client, payload: Bytes) {
        self.broker
            .publish(
                &format!("d/{}/{}", client.user, client.device),
                payload,
                true,
                false,
            )
            .await;
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
        match parse_topic(topic) {
            Some(Inbound::Message(chat)) => self.send(client, &chat, &payload).await,
            Some(Inbound::Request(method)) => self.request(client, method, &payload).await,
            Some(Inbound::Read(chat)) => self.read(client, &chat, &payload).await,
            Some(Inbound::Typing(chat)) => self.typing(client, &chat, &payload).await,
            None => Err(ChatError::UnknownTopic(topic.to_owned())),
        }
    }

    /// Whether the asking user may read chat `chat` (as they address it).
    async fn may_read(&self, me: &UserId, chat: &ChatAddr) -> Result<bool, ChatError> {
        match chat {
            // Anyone may open a one-to-one chat with an existing user; its key contains the
            // asker, so it can only ever be their own chat.
            ChatAddr::User(peer) => Ok(self.store.user(peer).await?.is_some()),
            // Only current members read a group: a removed member reads nothing more.
            ChatAddr::Group(g) => Ok(self.group(g).await?.is_some_and(|g| g.member(me).is_some())),
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
        let user = match self.store.user(&client.user).await {
            Ok(Some(u)) => u,
            Ok(None) => return AuthVerdict::BadCredentials,
            Err(e) => {
                tracing::error!(error = %e, "cannot read users; refusing CONNECT");
                return AuthVerdict::BadCredentials;
            }
        };
        let ok = if auth::looks_like_jwt(password) {
            std::str::from_utf8(password).is_ok_and(|t| self.tokens.verify(t, &client.user))
        } else {
            auth::verify_password_async(password.to_vec(), user.password_hash).await
        };
        if ok {
            AuthVerdict::Accept
        } else {
            tracing::info!(client = client_id, "CONNECT refused: bad credentials");
            AuthVerdict::BadCredentials
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
        match self.handle_publish(client, topic, payload.clone()).await {
            Ok(()) => PublishVerdict::Handled,
            Err(e) => {
                tracing::debug!(client = %client, topic, code = e.code(), "publish refused");
                // A request's error is its answer (matched by `id`); any other publish's error
                // names its topic and `cid`.
                let report = if topic.starts_with("q/") {
                    wire::answer_err(&send::peek_field(&payload, "id").unwrap_or_default(), &e)
                } else {
                    let cid = send::peek_field(&payload, "cid");
                    wire::publish_error(topic, cid.as_ref().and_then(|c| c.as_str()), &e)
                };
                self.to_device(client, report).await;
                PublishVerdict::Refused(e.refusal(), e.to_string())
            }
        }
    }

    async fn acked(&self, client: &Client, topic: &str, payload: &Bytes) {
        self.on_acked(client, topic, payload).await;
    }

    async fn connected(&self, client: &Client) {
        self.device_connected(client).await;
    }

    async fn disconnected(&self, client: &Client) {
        self.device_disconnected(client).await;
    }
}
