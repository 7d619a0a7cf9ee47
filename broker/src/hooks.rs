//! The rmqtt hooks: where MQTT events become [`Gate`] calls.
//!
//! rmqtt awaits the publish-ACL hook before it sends the PUBACK, and turns a refusal into the
//! PUBACK reason code; so the whole send pipeline runs inside that hook, and "PUBACK only after
//! the message is durable" holds by construction.
//!
//! The trust boundary lives here too. rmqtt publishes a CONNECT's will without asking the
//! publish ACL, so a will is checked at CONNECT against the operator's rules only (`[[acl]]`,
//! `[anonymous]`): a will can never be on a chat topic. And,
//! whatever else rmqtt does, nothing is delivered on a chat topic (`u/`, `d/`, `p/`…) unless
//! natter's bridge published it and the receiving session's user may read it; an ack is only
//! believed for a delivery the bridge made.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use natter_types::Client;
use rmqtt::codec::v5::{
    ConnectAckReason as ConnectAckReasonV5, PublishAckReason, SubscribeAckReason,
};
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::session::Session;
use rmqtt::types::{
    AuthResult, ConnectInfo, Id, LastWill, PublishAclResult, PublishResult, Reason,
    SubscribeAclResult,
};

use crate::acl::{names_chat, reaches_chat, topic_matches};
use crate::retain::Retained;
use crate::sessions::Sessions;
use crate::{AuthVerdict, Gate, PublishVerdict, Refusal, Rules};

/// The listener id of the anonymous listener (the credentialed ones are 1 tcp, 2 ws, 4 tls,
/// 5 wss: see `Broker::start`).
pub(crate) const ANONYMOUS_LISTENER: u16 = 3;

/// What the hooks share.
pub(crate) struct Parts {
    pub gate: Arc<dyn Gate>,
    pub rules: Arc<Rules>,
    pub sessions: Arc<Sessions>,
    pub retained: Arc<Retained>,
}

struct Hooks {
    gate: Arc<dyn Gate>,
    rules: Arc<Rules>,
    sessions: Arc<Sessions>,
    retained: Arc<Retained>,
    scx: ServerContext,
    overflowed: Arc<Overflowed>,
}

/// Sessions whose queue overflowed, so that each is logged once, not once per lost message.
#[derive(Default)]
struct Overflowed(Mutex<HashSet<(u16, String)>>);

impl Overflowed {
    /// Whether this is the first overflow of the session `id` (since it started).
    fn first(&self, id: &Id) -> bool {
        self.0
            .lock()
            .map(|mut s| s.insert((id.lid, id.client_id.to_string())))
            .unwrap_or(false)
    }

    /// The session `id` ended: a later session of that client is logged again.
    fn forget(&self, id: &Id) {
        if let Ok(mut s) = self.0.lock() {
            s.remove(&(id.lid, id.client_id.to_string()));
        }
    }
}

/// The `kind` label of the messages-out counter, from the topic a delivery went out on.
fn out_kind(topic: &str) -> &'static str {
    let mut levels = topic.split('/');
    match (levels.next(), levels.nth(1)) {
        (Some("u"), Some("m")) => "message",
        (Some("u"), Some("r")) => "receipt",
        (Some("u"), Some("e")) => "event",
        (Some("d"), _) => "reply",
        (Some("p"), _) => "presence",
        _ => "integration",
    }
}

/// Who is behind a session, as far as the topic rules care.
enum Who {
    Anonymous,
    User(Client),
}

fn who(s: &Session) -> Option<Who> {
    if s.id.lid == ANONYMOUS_LISTENER {
        return Some(Who::Anonymous);
    }
    // Authentication accepted only well-formed client ids, so this parses; if it ever does not,
    // the session gets no rights at all.
    Client::parse(&s.id.client_id).map(Who::User)
}

pub(crate) async fn install(scx: &ServerContext, parts: Parts) {
    let register = scx.extends.hook_mgr().register();
    let overflowed = Arc::new(Overflowed::default());
    for typ in [
        Type::ClientAuthenticate,
        Type::ClientSubscribeCheckAcl,
        Type::MessagePublishCheckAcl,
        Type::MessageExpiryCheck,
        Type::MessageAcked,
        Type::MessageDelivered,
        Type::ClientConnected,
        Type::ClientDisconnected,
        Type::SessionTerminated,
        Type::MessageDropped,
    ] {
        register
            .add(
                typ,
                Box::new(Hooks {
                    gate: parts.gate.clone(),
                    rules: parts.rules.clone(),
                    sessions: parts.sessions.clone(),
                    retained: parts.retained.clone(),
                    scx: scx.clone(),
                    overflowed: overflowed.clone(),
                }),
            )
            .await;
    }
    register.start().await;
}

/// Whether session `s` may receive a delivery on chat topic `topic`: its user's own `u/{me}/…`,
/// its own device's `d/{me}/{device}`, and presence (`p/…`, whose subscription the bridge
/// checked); an anonymous session none. Runs for every chat delivery, so it reads the client
/// id in place (authentication accepted only `{user}:{device}` ids on the other listeners).
fn may_receive(s: &Session, topic: &str) -> bool {
    if s.id.lid == ANONYMOUS_LISTENER {
        return false;
    }
    let Some((user, device)) = s.id.client_id.split_once(':') else {
        return false;
    };
    let mut levels = topic.split('/');
    match (levels.next(), levels.next(), levels.next(), levels.next()) {
        (Some("u"), Some(u), _, _) => u == user,
        (Some("d"), Some(u), Some(d), None) => u == user && d == device,
        (Some("p"), Some(_), None, _) => true,
        _ => false,
    }
}

/// Whether `s` holds a subscription that names a chat namespace and matches `topic`: the bridge
/// granted it. A subscription whose first level is a wildcard (`#`, `+/…`, which an operator
/// rule may grant) never carries a chat topic, even one the session's user may read.
async fn subscribed_to_chat(s: &Session, topic: &str) -> bool {
    match s.subscriptions().await {
        Ok(subs) => subs
            .read()
            .await
            .keys()
            .any(|f| names_chat(f) && topic_matches(f, topic)),
        Err(_) => false,
    }
}

/// The topic of a CONNECT's will, if it has one.
fn will_topic(ci: &ConnectInfo) -> Option<String> {
    ci.last_will().map(|lw| match lw {
        LastWill::V3(w) => w.topic.to_string(),
        LastWill::V5(w) => w.topic.to_string(),
    })
}

/// What an MQTT 5 client whose client id breaks the rule is told (CONNACK `0x85`'s reason
/// string; MQTT 3.1.1 clients get return code 2, identifier rejected).
fn client_id_rule(username: Option<&str>) -> String {
    match username.filter(|u| natter_types::UserId::new(u).is_ok()) {
        Some(u) => format!(
            "client id must be \"{u}:DEVICE\": the user name, ':', then a device name of 1 to 64 \
             letters, digits, '_' or '-'"
        ),
        None => "client id must be \"USER:DEVICE\" with USER the MQTT user name, and a user \
                 name is required"
            .to_owned(),
    }
}

fn auth(r: AuthResult) -> ReturnType {
    (false, Some(HookResult::AuthResult(r)))
}

fn allow() -> ReturnType {
    (
        false,
        Some(HookResult::PublishAclResult(PublishAclResult::allow())),
    )
}

impl Hooks {
    /// Whether rmqtt holds a session for `client_id` (connected or offline).
    async fn exists(&self) -> impl Fn(&str) -> bool + '_ {
        let shared = self.scx.extends.shared().await;
        move |id: &str| shared.exist(id)
    }

    /// A CONNECT on the anonymous listener: no credentials, the anonymous rights, and client
    /// ids that can never be a user's (`{user}:{device}`), so no one takes over a user's session.
    fn authenticate_anonymous(&self, ci: &ConnectInfo) -> ReturnType {
        if ci.client_id().contains(':') {
            tracing::info!(client = %ci.client_id(), "anonymous CONNECT refused: `:` in client id");
            return auth(AuthResult::NotAuthorized);
        }
        if let Some(t) = will_topic(ci) {
            if !self.rules.anonymous_may_publish(&t) {
                tracing::info!(client = %ci.client_id(), will = t, "anonymous CONNECT refused: will topic");
                return auth(AuthResult::NotAuthorized);
            }
        }
        auth(AuthResult::Allow(false, None))
    }

    /// A CONNECT on a credentialed listener: the will's topic, then the credentials (the
    /// bridge), then the user's device limit, in that order (a wrong password learns nothing).
    async fn authenticate(&self, ci: &ConnectInfo) -> ReturnType {
        let client = Client::parse(ci.client_id());
        let username = ci.username().map(|u| u.as_ref());
        // The client-id rule is public (docs/protocol.md): saying which part is wrong tells an
        // attacker nothing, and saves a developer whose library made up a client id an hour.
        if username.is_some()
            && client
                .as_ref()
                .is_none_or(|c| Some(c.user.as_str()) != username)
        {
            tracing::info!(client = %ci.client_id(), "CONNECT refused: client id is not {{user}}:{{device}}");
            return auth(AuthResult::Refused(
                ConnectAckReasonV5::ClientIdentifierNotValid,
                Some(client_id_rule(username)),
            ));
        }
        if let Some(t) = will_topic(ci) {
            let allowed = client
                .as_ref()
                .is_some_and(|c| self.rules.user_may_publish(c.user.as_str(), &t));
            if !allowed {
                tracing::info!(client = %ci.client_id(), will = t, "CONNECT refused: will topic not allowed");
                return auth(AuthResult::NotAuthorized);
            }
        }
        let password = ci.password().map(|p| p.as_ref());
        let remote = ci.id().remote_addr.map(|a| a.ip());
        let verdict = self
            .gate
            .authenticate(ci.client_id(), username, password, remote)
            .await;
        let r = match (verdict, client) {
            (AuthVerdict::Accept, Some(c)) => {
                let exists = self.exists().await;
                if self.sessions.admit(c.user.as_str(), ci.client_id(), exists) {
                    AuthResult::Allow(false, None)
                } else {
                    tracing::info!(client = %c, "CONNECT refused: too many devices connected or holding a session");
                    AuthResult::NotAuthorized
                }
            }
            (AuthVerdict::Accept, None) | (AuthVerdict::NotAuthorized, _) => {
                AuthResult::NotAuthorized
            }
            (AuthVerdict::BadCredentials, _) => AuthResult::BadUsernameOrPassword,
        };
        auth(r)
    }

    /// An integration publish the rules allow: routed, unless it is a retained one that does
    /// not fit the retained budget.
    async fn integration_publish(&self, topic: &str, retain: bool, len: usize) -> ReturnType {
        if retain {
            if let Err(why) = self.retained.admits(topic, len).await {
                return publish_result(PublishAckReason::QuotaExceeded, Some(why));
            }
        }
        allow()
    }
}

fn refusal_code(r: Refusal) -> PublishAckReason {
    match r {
        Refusal::NotAuthorized => PublishAckReason::NotAuthorized,
        Refusal::PayloadFormatInvalid => PublishAckReason::PayloadFormatInvalid,
        Refusal::TooLarge => PublishAckReason::ImplementationSpecificError,
        Refusal::QuotaExceeded => PublishAckReason::QuotaExceeded,
        Refusal::Unavailable => PublishAckReason::UnspecifiedError,
    }
}

fn publish_result(code: PublishAckReason, reason: Option<String>) -> ReturnType {
    let res = PublishResult {
        reason_code: code,
        properties: Default::default(),
        reason_string: reason.map(Into::into),
        // A refused publish never costs the client its connection.
        disconnect: false,
    };
    (
        false,
        Some(HookResult::PublishAclResult(PublishAclResult(res))),
    )
}

#[async_trait]
impl Handler for Hooks {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(ci) => {
                if ci.id().lid == ANONYMOUS_LISTENER {
                    // Credentials mean nothing here: everyone gets the anonymous rights.
                    return self.authenticate_anonymous(ci);
                }
                self.authenticate(ci).await
            }
            Parameter::ClientSubscribeCheckAcl(s, sub) => {
                let filter: &str = &sub.topic_filter;
                let allowed = match who(s) {
                    None => false,
                    Some(Who::Anonymous) => self.rules.anonymous_may_subscribe(filter),
                    Some(Who::User(c)) => {
                        self.rules.user_may_subscribe(c.user.as_str(), filter)
                            || self.gate.may_subscribe(&c, filter).await
                    }
                };
                let r = if allowed {
                    SubscribeAclResult::new_success(sub.opts.qos(), None)
                } else {
                    tracing::info!(client = %s.id.client_id, filter, "subscription refused");
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(r)))
            }
            Parameter::MessagePublishCheckAcl(s, p) => {
                let topic: &str = &p.topic;
                match who(s) {
                    None => {
                        publish_result(PublishAckReason::NotAuthorized, Some("no identity".into()))
                    }
                    Some(Who::Anonymous) => {
                        if self.rules.anonymous_may_publish(topic) {
                            self.integration_publish(topic, p.retain, p.payload.len())
                                .await
                        } else {
                            publish_result(
                                PublishAckReason::NotAuthorized,
                                Some(format!("{topic}: not allowed")),
                            )
                        }
                    }
                    Some(Who::User(c)) => {
                        if self.rules.user_may_publish(c.user.as_str(), topic) {
                            // An integration topic: natter is a plain broker here.
                            return self
                                .integration_publish(topic, p.retain, p.payload.len())
                                .await;
                        }
                        match self.gate.publish(&c, topic, p.payload.clone()).await {
                            // The bridge has done everything. rmqtt then routes the chat topic
                            // itself, to nobody: no client may subscribe to `m/…`, `q/…`.
                            PublishVerdict::Handled => {
                                publish_result(PublishAckReason::Success, None)
                            }
                            PublishVerdict::Refused(r, why) => {
                                publish_result(refusal_code(r), Some(why))
                            }
                        }
                    }
                }
            }
            Parameter::MessageExpiryCheck(s, from, p) => {
                // The last gate before a delivery is written to a socket (or queued for an
                // offline session): a chat topic carries only what the bridge published, to
                // whoever may read it.
                if reaches_chat(&p.topic) {
                    let ok = from.is_system()
                        && may_receive(s, &p.topic)
                        && subscribed_to_chat(s, &p.topic).await;
                    if !ok {
                        // Expected, not a fault: a wildcard subscription (`#`) matches chat
                        // topics, clients' own publishes on `m/…` are routed after the bridge
                        // handled them; none of it is delivered.
                        tracing::debug!(
                            to = %s.id.client_id,
                            topic = %p.topic,
                            from = from.typ().as_str(),
                            "delivery on a chat topic dropped: not natter's, or not the reader's"
                        );
                        return (false, Some(HookResult::MessageExpiry));
                    }
                }
                (true, acc)
            }
            Parameter::MessageAcked(s, from, p) => {
                // Only an ack of natter's own delivery means anything to the chat rules.
                if let (true, Some(Who::User(c))) = (from.is_system(), who(s)) {
                    self.gate.acked(&c, &p.topic, &p.payload).await;
                }
                (true, acc)
            }
            Parameter::MessageDropped(Some(to), _, p, reason) => {
                // A delivery lost because the session's queue (`mqtt.max_queue`, behind
                // `mqtt.max_inflight` unacknowledged ones) was full: counted, and logged once
                // per session so that a slow consumer is seen without a line per message.
                if matches!(reason, Reason::MessageQueueFull) {
                    metrics::counter!("natter_messages_dropped_total", "reason" => "queue_full")
                        .increment(1);
                    if self.overflowed.first(to) {
                        tracing::warn!(
                            client = %to.client_id,
                            topic = %p.topic,
                            qos = p.qos.value(),
                            "session queue full: deliveries to this session are dropped \
                             (natter_messages_dropped_total; logged once per session)"
                        );
                    }
                }
                (true, acc)
            }
            Parameter::SessionTerminated(s, _) => {
                self.overflowed.forget(&s.id);
                if let Some(Who::User(c)) = who(s) {
                    // Looked at a moment later: a session taken over ends while its successor
                    // is being set up, and the client id must stay counted for the successor.
                    let (sessions, scx) = (self.sessions.clone(), self.scx.clone());
                    let client_id = s.id.client_id.to_string();
                    let at = std::time::Instant::now();
                    tokio::spawn(async move {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        let shared = scx.extends.shared().await;
                        sessions.ended(c.user.as_str(), &client_id, at, |id| shared.exist(id));
                    });
                }
                (true, acc)
            }
            Parameter::MessageDelivered(_, _, p) => {
                metrics::counter!("natter_messages_out_total", "kind" => out_kind(&p.topic))
                    .increment(1);
                (true, acc)
            }
            Parameter::ClientConnected(s) => {
                if let Some(Who::User(c)) = who(s) {
                    tracing::info!(client = %c, remote = ?s.id.remote_addr, "connected");
                    self.gate.connected(&c).await;
                }
                (true, acc)
            }
            Parameter::ClientDisconnected(s, reason) => {
                if let Some(Who::User(c)) = who(s) {
                    tracing::info!(client = %c, %reason, "disconnected");
                    self.gate.disconnected(&c).await;
                }
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}
