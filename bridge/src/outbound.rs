//! Everything natter publishes goes out here: messages, receipts, events, answers, presence.
//!
//! The bridge never names a topic or a QoS itself: it asks [`Outbox`] for the kind of thing it
//! sends, and the outbox picks the topic ([`natter_types::topic::Outbound`]) and the
//! [`Delivery`]. Below it sits the [`Broker`] trait: the real broker in production
//! ([`natter_broker::BrokerHandle`]), a recorder in unit tests, so chat rules can be tested in
//! process without a socket. This module must never decide who may read what (that is
//! `chats`); it only sends where it is told.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use natter_broker::BrokerHandle;
use natter_store::{Appended, ReceiptStatus};
use natter_types::topic::Outbound;
use natter_types::{Client, UserId};
use serde_json::Value;

use crate::wire::{self, MessageOut, Receipted};

/// How a publish travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// QoS 1: kept in offline sessions' queues and sent again until acknowledged.
    Reliable,
    /// QoS 0: now or never (typing indicators).
    Transient,
    /// QoS 1 and retained: the topic's last value, for whoever subscribes later (presence).
    Retained,
}

/// What a receipt tells the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt<'a> {
    /// natter committed the message.
    Sent,
    /// A device of this recipient has it.
    Delivered(&'a UserId),
    /// This recipient read it.
    Read(&'a UserId),
}

impl<'a> Receipt<'a> {
    /// The receipt of a stored status reached by `by`.
    pub fn of(status: ReceiptStatus, by: &'a UserId) -> Receipt<'a> {
        match status {
            ReceiptStatus::Delivered => Receipt::Delivered(by),
            ReceiptStatus::Read => Receipt::Read(by),
        }
    }

    /// The `status` word on the wire.
    pub fn word(self) -> &'static str {
        match self {
            Receipt::Sent => "sent",
            Receipt::Delivered(_) => "delivered",
            Receipt::Read(_) => "read",
        }
    }

    /// The recipient it is about (none for `sent`).
    pub fn by(self) -> Option<&'a UserId> {
        match self {
            Receipt::Sent => None,
            Receipt::Delivered(u) | Receipt::Read(u) => Some(u),
        }
    }
}

/// What the bridge needs from the broker under it.
#[async_trait]
pub trait Broker: Send + Sync {
    /// Publishes `payload` to `topic`, to every subscription allowed to receive it.
    async fn publish(&self, topic: Outbound<'_>, payload: Bytes, how: Delivery);
    /// Ends every session of `user` on this node; returns how many there were.
    async fn end_sessions(&self, user: &UserId) -> usize;
}

#[async_trait]
impl Broker for BrokerHandle {
    async fn publish(&self, topic: Outbound<'_>, payload: Bytes, how: Delivery) {
        let (qos1, retain) = match how {
            Delivery::Reliable => (true, false),
            Delivery::Transient => (false, false),
            Delivery::Retained => (true, true),
        };
        BrokerHandle::publish(self, &topic.to_string(), payload, qos1, retain).await;
    }

    async fn end_sessions(&self, user: &UserId) -> usize {
        BrokerHandle::end_sessions(self, user.as_str()).await
    }
}

/// The bridge's one way out. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    broker: Arc<dyn Broker>,
}

impl Outbox {
    /// An outbox over `broker`.
    pub fn new(broker: Arc<dyn Broker>) -> Outbox {
        Outbox { broker }
    }

    /// Ends every session of `user` (a removed account, a changed password).
    pub(crate) async fn end_sessions(&self, user: &UserId) -> usize {
        self.broker.end_sessions(user).await
    }

    /// A stored message to each of its readers' `u/{reader}/m`, each with their own seq.
    pub(crate) async fn messages(&self, appended: &Appended) {
        let m = &appended.message;
        for (reader, seq) in &appended.seqs {
            let out = MessageOut::new(m, reader, Some(*seq)).bytes();
            self.broker
                .publish(Outbound::Messages(reader), out, Delivery::Reliable)
                .await;
        }
    }

    /// A receipt to the sender of `m`, as of `ts`. Every receipt natter sends, of every
    /// status, goes out here.
    pub(crate) async fn receipt(&self, m: Receipted<'_>, what: Receipt<'_>, ts: u64) {
        let payload = wire::receipt(m, what, ts);
        self.broker
            .publish(Outbound::Receipts(m.from), payload, Delivery::Reliable)
            .await;
    }

    /// An event (a group change, a read on another device) to every device of `to`.
    pub(crate) async fn event(&self, to: &UserId, event: &Value) {
        self.broker
            .publish(
                Outbound::Events(to),
                Bytes::from(event.to_string()),
                Delivery::Reliable,
            )
            .await;
    }

    /// A typing indicator to every device of `to`, at most once.
    pub(crate) async fn typing(&self, to: &UserId, event: &Value) {
        self.broker
            .publish(
                Outbound::Events(to),
                Bytes::from(event.to_string()),
                Delivery::Transient,
            )
            .await;
    }

    /// An answer or an error report to the one device `to`.
    pub(crate) async fn to_device(&self, to: &Client, payload: Bytes) {
        self.broker
            .publish(Outbound::device(to), payload, Delivery::Reliable)
            .await;
    }

    /// `user`'s presence, retained on `p/{user}`.
    pub(crate) async fn presence(&self, user: &UserId, online: bool, last_seen: u64) {
        let state = if online { "online" } else { "offline" };
        let v = serde_json::json!({"state": state, "last_seen": last_seen});
        self.broker
            .publish(
                Outbound::Presence(user),
                Bytes::from(v.to_string()),
                Delivery::Retained,
            )
            .await;
    }
}
