//! Shared subscriptions (`$share/{group}/{filter}`, MQTT 5 §4.8.2, also accepted from 3.1.1
//! clients): each message on the filter goes to one member of the group, in turn, preferring
//! members that are connected. The ACL is applied to the filter part (rmqtt hands the hooks the
//! filter without `$share/{group}/`).

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::subscribe::SharedSubscription;
use rmqtt::types::{
    ClientId, Id, IsOnline, NodeId, SharedGroup, SubscriptionIdentifier, SubscriptionOptions,
    TopicName,
};

/// Round-robin choice of a group member.
#[derive(Default)]
pub(crate) struct RoundRobin {
    next: AtomicUsize,
}

type Member = (
    NodeId,
    ClientId,
    SubscriptionOptions,
    Option<Vec<SubscriptionIdentifier>>,
    Option<IsOnline>,
);

#[async_trait]
impl SharedSubscription for RoundRobin {
    fn is_supported(&self) -> bool {
        true
    }

    async fn choice(
        &self,
        _scx: &ServerContext,
        _group: &SharedGroup,
        _publisher: &Id,
        _topic: &TopicName,
        members: &[Member],
    ) -> Option<(usize, IsOnline)> {
        let n = members.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // The next connected member; if none is, the next one's queue (its session keeps it).
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| members[i].4.unwrap_or(true))
            .map(|i| (i, true))
            .or(Some((start % n, false)))
    }
}
