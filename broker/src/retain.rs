//! Retained messages, kept in memory (rmqtt's own default keeps none).
//!
//! Bounded: past `max` topics a new retained topic is refused with a warning, so a client
//! cannot grow the broker without limit. A linear scan answers a subscription; fine for the
//! integration and presence topics this serves, and noted as a scaling limit.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rmqtt::retain::RetainStorage;
use rmqtt::types::{Retain, TopicFilter, TopicName};
use tokio::sync::RwLock;

use crate::acl::topic_matches;

pub(crate) struct MemoryRetain {
    max: usize,
    messages: RwLock<HashMap<String, (Retain, Option<Instant>)>>,
}

impl MemoryRetain {
    pub(crate) fn new(max: usize) -> Self {
        MemoryRetain {
            max,
            messages: RwLock::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl RetainStorage for MemoryRetain {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: Retain,
        expiry: Option<Duration>,
    ) -> rmqtt::Result<()> {
        let mut m = self.messages.write().await;
        if retain.publish.payload.is_empty() {
            m.remove(topic.as_ref() as &str);
            return Ok(());
        }
        if m.len() >= self.max && !m.contains_key(topic.as_ref() as &str) {
            tracing::warn!(topic = %topic, max = self.max, "retained message refused: store full");
            return Ok(());
        }
        let deadline = expiry.filter(|d| !d.is_zero()).map(|d| Instant::now() + d);
        m.insert(topic.to_string(), (retain, deadline));
        Ok(())
    }

    async fn get(&self, filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        let now = Instant::now();
        let m = self.messages.read().await;
        Ok(m.iter()
            .filter(|(t, (_, deadline))| {
                deadline.is_none_or(|d| d > now) && topic_matches(filter, t)
            })
            .map(|(t, (r, _))| (TopicName::from(t.as_str()), r.clone()))
            .collect())
    }

    async fn count(&self) -> isize {
        self.messages.read().await.len() as isize
    }

    async fn max(&self) -> isize {
        self.max as isize
    }
}
