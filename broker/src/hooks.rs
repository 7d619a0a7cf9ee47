//! The rmqtt hooks: where MQTT events become [`Gate`] calls.
//!
//! rmqtt awaits the publish-ACL hook before it sends the PUBACK, and turns a refusal into the
//! PUBACK reason code; so the whole send pipeline runs inside that hook, and "PUBACK only after
//! the message is durable" holds by construction.

use std::sync::Arc;

use async_trait::async_trait;
use natter_types::Client;
use rmqtt::codec::v5::{PublishAckReason, SubscribeAckReason};
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::session::Session;
use rmqtt::types::{AuthResult, PublishAclResult, PublishResult, SubscribeAclResult};

use crate::{AuthVerdict, Gate, PublishVerdict, Refusal, Rules};

/// The listener id of the anonymous listener (the credentialed ones are 1 and 2).
pub(crate) const ANONYMOUS_LISTENER: u16 = 3;

struct Hooks {
    gate: Arc<dyn Gate>,
    rules: Arc<Rules>,
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

pub(crate) async fn install(scx: &ServerContext, gate: Arc<dyn Gate>, rules: Arc<Rules>) {
    let register = scx.extends.hook_mgr().register();
    for typ in [
        Type::ClientAuthenticate,
        Type::ClientSubscribeCheckAcl,
        Type::MessagePublishCheckAcl,
        Type::MessageAcked,
        Type::MessageDelivered,
        Type::ClientConnected,
        Type::ClientDisconnected,
    ] {
        register
            .add(
                typ,
                Box::new(Hooks {
                    gate: gate.clone(),
                    rules: rules.clone(),
                }),
            )
            .await;
    }
    register.start().await;
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
                    return (
                        false,
                        Some(HookResult::AuthResult(AuthResult::Allow(false, None))),
                    );
                }
                let username = ci.username().map(|u| u.as_ref());
                let password = ci.password().map(|p| p.as_ref());
                let verdict = self
                    .gate
                    .authenticate(ci.client_id(), username, password)
                    .await;
                let r = match verdict {
                    AuthVerdict::Accept => AuthResult::Allow(false, None),
                    AuthVerdict::BadCredentials => AuthResult::BadUsernameOrPassword,
                    AuthVerdict::NotAuthorized => AuthResult::NotAuthorized,
                };
                (false, Some(HookResult::AuthResult(r)))
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
                            (
                                false,
                                Some(HookResult::PublishAclResult(PublishAclResult::allow())),
                            )
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
                            return (
                                false,
                                Some(HookResult::PublishAclResult(PublishAclResult::allow())),
                            );
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
            Parameter::MessageAcked(s, _from, p) => {
                if let Some(Who::User(c)) = who(s) {
                    self.gate.acked(&c, &p.topic, &p.payload).await;
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
