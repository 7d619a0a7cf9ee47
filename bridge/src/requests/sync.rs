//! `sync {after?, limit?}`: the asking user's inbox after seq `after`, oldest first. What a
//! device fetched counts as delivered, as much as what it PUBACKed.

use natter_types::{Client, Seq};
use serde_json::{json, Map, Value};

use super::{params, Answer, Method};
use crate::wire::{obj, page, MessageOut};
use crate::{Bridge, ChatError};

/// Most messages one `sync` returns.
pub const SYNC_MAX: usize = 500;

/// The parameters of `sync`.
pub(crate) struct Sync {
    after: Seq,
    limit: usize,
}

impl Method for Sync {
    fn parse(p: &Map<String, Value>) -> Result<Self, ChatError> {
        let after = match p.get("after") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| ChatError::BadRequest("`after` must be a seq number".into()))?,
        };
        Ok(Sync {
            after,
            limit: params::limit(p, 100, SYNC_MAX)?,
        })
    }

    async fn run(self, b: &Bridge, client: &Client) -> Result<Answer, ChatError> {
        let (items, more) = b.store.sync(&client.user, self.after, self.limit).await?;
        let (messages, cut) = page(
            items
                .iter()
                .map(|i| MessageOut::new(&i.message, &client.user, Some(i.seq))),
        );
        let fetched: Vec<_> = items
            .iter()
            .take(messages.len())
            .map(|i| i.message.clone())
            .collect();
        if let Err(e) = b.delivered_by_sync(&client.user, &fetched).await {
            tracing::warn!(error = %e, "delivered receipts for a sync not recorded");
        }
        Ok(obj(json!({"messages": messages, "more": more || cut})))
    }
}
