//! Retained messages, kept in memory (rmqtt's own default keeps none).
//!
//! Two budgets: presence (`p/{user}`, retained by natter itself, one small payload per user) is
//! kept apart, so that integrations filling their budget never stop a user's presence from being
//! retained; integrations' retained topics are bounded by count, by bytes in all and by payload
//! size (`mqtt.retained_max_*`). A retained publish that does not fit is refused before it is
//! routed ([`Retained::admits`]), with quota exceeded, and never half-kept. Nothing reaches a
//! chat topic unless natter's bridge published it: a retained message on a chat namespace from
//! anyone else is dropped here too. A linear scan answers a subscription; fine for the
//! integration and presence topics this serves, and noted as a scaling limit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rmqtt::retain::RetainStorage;
use rmqtt::types::{Retain, TopicFilter, TopicName};
use tokio::sync::RwLock;

use crate::acl::{reaches_chat, topic_matches};

/// The bounds of the integrations' budget.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetainLimits {
    /// Most topics.
    pub topics: usize,
    /// Most bytes (topic names and payloads) in all.
    pub bytes: usize,
    /// Largest payload.
    pub payload: usize,
}

type Entry = (Retain, Option<Instant>);

#[derive(Default)]
struct Budgets {
    /// `p/{user}`, published by natter.
    presence: HashMap<String, Entry>,
    /// Everything else.
    integrations: HashMap<String, Entry>,
    /// Bytes held in `integrations`.
    bytes: usize,
}

fn size(topic: &str, r: &Retain) -> usize {
    topic.len() + r.publish.payload.len()
}

/// The retained store; shared by the broker's hooks (which ask [`Retained::admits`] first) and
/// rmqtt (through [`Storage`]).
pub(crate) struct Retained {
    limits: RetainLimits,
    inner: RwLock<Budgets>,
}

impl Retained {
    pub(crate) fn new(limits: RetainLimits) -> Arc<Self> {
        Arc::new(Retained {
            limits,
            inner: RwLock::new(Budgets::default()),
        })
    }

    /// Whether an integration's retained publish of `len` payload bytes on `topic` fits, or why
    /// not. An empty payload (which deletes) always fits.
    pub(crate) async fn admits(&self, topic: &str, len: usize) -> Result<(), String> {
        if len == 0 {
            return Ok(());
        }
        let l = self.limits;
        if len > l.payload {
            return Err(format!(
                "retained payload of {len} bytes is over mqtt.retained_max_payload ({})",
                l.payload
            ));
        }
        let b = self.inner.read().await;
        let old = b.integrations.get(topic).map(|(r, _)| size(topic, r));
        if old.is_none() && b.integrations.len() >= l.topics {
            return Err(format!(
                "the retained store holds mqtt.retained_max_topics ({}) topics",
                l.topics
            ));
        }
        if b.bytes - old.unwrap_or(0) + topic.len() + len > l.bytes {
            return Err(format!(
                "the retained store would exceed mqtt.retained_max_bytes ({})",
                l.bytes
            ));
        }
        Ok(())
    }

    async fn set(&self, topic: &str, retain: Retain, expiry: Option<Duration>) {
        let from_natter = retain.from.is_system();
        if reaches_chat(topic) && !from_natter {
            tracing::warn!(
                topic,
                "retained message on a chat topic not from natter: dropped"
            );
            return;
        }
        let mut b = self.inner.write().await;
        let b = &mut *b;
        let presence = from_natter && topic.starts_with("p/");
        if !presence {
            if let Some((r, _)) = b.integrations.remove(topic) {
                b.bytes -= size(topic, &r);
            }
        }
        if retain.publish.payload.is_empty() {
            if presence {
                b.presence.remove(topic);
            }
            return;
        }
        let deadline = expiry.filter(|d| !d.is_zero()).map(|d| Instant::now() + d);
        if presence {
            b.presence.insert(topic.to_owned(), (retain, deadline));
            return;
        }
        // `admits` was asked before routing; a race between two publishes can still overshoot,
        // so the bound is enforced again here.
        let l = self.limits;
        let n = size(topic, &retain);
        if retain.publish.payload.len() > l.payload
            || b.integrations.len() >= l.topics
            || b.bytes + n > l.bytes
        {
            tracing::warn!(
                topic,
                "retained message refused: the retained budget is full"
            );
            return;
        }
        b.bytes += n;
        b.integrations.insert(topic.to_owned(), (retain, deadline));
    }
}

/// rmqtt's view of [`Retained`].
pub(crate) struct Storage(pub(crate) Arc<Retained>);

#[async_trait]
impl RetainStorage for Storage {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: Retain,
        expiry: Option<Duration>,
    ) -> rmqtt::Result<()> {
        self.0.set(topic, retain, expiry).await;
        Ok(())
    }

    async fn get(&self, filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        let now = Instant::now();
        let b = self.0.inner.read().await;
        Ok(b.presence
            .iter()
            .chain(b.integrations.iter())
            .filter(|(t, (_, deadline))| {
                deadline.is_none_or(|d| d > now) && topic_matches(filter, t)
            })
            .map(|(t, (r, _))| (TopicName::from(t.as_str()), r.clone()))
            .collect())
    }

    async fn count(&self) -> isize {
        let b = self.0.inner.read().await;
        (b.presence.len() + b.integrations.len()) as isize
    }

    async fn max(&self) -> isize {
        // Only rmqtt's statistics read this.
        self.0.limits.topics as isize
    }
}
