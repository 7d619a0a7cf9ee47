//! Receipts (`delivered`, `read`) and read pointers.
//!
//! `delivered` comes from a device's PUBACK of its QoS 1 delivery (batched in
//! [`crate::delivered`]) and from `sync`; `read` from `r/{chat}`. Each is sent to the sender
//! once per recipient user per message: the store decides "once" (a second device's ack
//! changes nothing). `sent` is the send pipeline's ([`crate::send`]); every receipt goes out
//! through [`crate::outbound::Outbox::receipt`].

use bytes::Bytes;
use natter_store::{ReceiptMark, ReceiptStatus, StoredMessage};
use natter_types::topic::Outbound;
use natter_types::{clock::now_ms, ChatAddr, Client, MsgId, UserId};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::delivered;
use crate::outbound::Receipt;
use crate::{wire, Bridge, ChatError};

/// Most ids one `{"ids": […]}` read receipt may name.
pub const MAX_READ_IDS: usize = 100;

/// The fields of a delivered message the acked hook needs.
#[derive(Deserialize)]
struct Acked {
    id: MsgId,
    chat: ChatAddr,
    from: UserId,
    #[serde(rename = "type")]
    kind: String,
    /// When natter accepted it (ms since the epoch).
    ts: u64,
    /// The sender's client id for it, echoed in the receipt.
    #[serde(default)]
    cid: Option<String>,
}

/// System messages (group changes) are the chat's, not their author's: no receipts for them.
fn wants_receipts(m: &StoredMessage, by: &UserId) -> bool {
    m.from != *by && m.content.kind != "system"
}

impl Bridge {
    /// Tells the senders of `msgs` that `by` reached `status`, where that is news.
    async fn receipts(
        &self,
        msgs: &[StoredMessage],
        by: &UserId,
        status: ReceiptStatus,
    ) -> Result<(), ChatError> {
        let others: Vec<&StoredMessage> = msgs.iter().filter(|m| wants_receipts(m, by)).collect();
        let marks = others
            .iter()
            .map(|m| ReceiptMark {
                chat: m.chat.clone(),
                id: m.id,
                user: by.clone(),
                status,
            })
            .collect();
        let fresh = self.store.mark(marks).await?;
        let now = now_ms();
        for (m, new) in others.iter().zip(fresh) {
            if new {
                let what = Receipt::of(status, by);
                self.outbox.receipt((*m).into(), what, now).await;
            }
        }
        Ok(())
    }

    /// `delivered` for messages a device fetched with `sync`.
    pub(crate) async fn delivered_by_sync(
        &self,
        reader: &UserId,
        msgs: &[StoredMessage],
    ) -> Result<(), ChatError> {
        self.receipts(msgs, reader, ReceiptStatus::Delivered).await
    }

    /// A device PUBACKed a delivery: `delivered`, if it was a message from someone else.
    pub(crate) async fn on_acked(&self, client: &Client, topic: &str, payload: &Bytes) {
        if topic != Outbound::Messages(&client.user).to_string() {
            return;
        }
        let Ok(a) = serde_json::from_slice::<Acked>(payload) else {
            return;
        };
        metrics::histogram!("natter_send_deliver_seconds")
            .record(now_ms().saturating_sub(a.ts) as f64 / 1000.0);
        if a.from == client.user || a.kind == "system" {
            return;
        }
        // Recorded together with the other acks waiting; the sender is told then (see
        // `delivered`).
        self.delivered
            .ack(delivered::Ack {
                chat: a.chat.key(&client.user),
                id: a.id,
                from: a.from,
                cid: a.cid,
                by: client.user.clone(),
            })
            .await;
    }

    /// `r/{chat}`: `{"upto": SEQ}` moves the read pointer; `{"ids": […]}` marks messages read.
    pub(crate) async fn read(
        &self,
        client: &Client,
        chat: &ChatAddr,
        payload: &[u8],
    ) -> Result<(), ChatError> {
        let v = wire::parse_json(payload)?;
        let key = self.members(&client.user, chat).await?.key;
        let mut event = json!({"type": "read", "chat": chat.to_string(), "dev": client.device});
        if let Some(upto) = v.get("upto") {
            let upto = upto
                .as_u64()
                .ok_or_else(|| ChatError::BadRequest("`upto` must be a seq number".into()))?;
            let r = self.store.read_upto(&client.user, &key, upto).await?;
            let now = now_ms();
            for m in r
                .newly_read
                .iter()
                .filter(|m| wants_receipts(m, &client.user))
            {
                let what = Receipt::Read(&client.user);
                self.outbox.receipt(m.into(), what, now).await;
            }
            event["upto"] = json!(r.read_seq);
            event["unread"] = json!(r.unread);
        } else if let Some(ids) = v.get("ids").and_then(Value::as_array) {
            if ids.is_empty() || ids.len() > MAX_READ_IDS {
                return Err(ChatError::BadRequest(format!(
                    "`ids` must hold 1 to {MAX_READ_IDS} message ids"
                )));
            }
            let mut msgs = Vec::with_capacity(ids.len());
            let since = self.account_since(&client.user).await?;
            for id in ids {
                let id: MsgId = id
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| ChatError::BadRequest(format!("{id} is not a message id")))?;
                // A message from before the reader's account existed is not theirs to mark.
                if id.timestamp_ms() >= since {
                    msgs.extend(self.store.message(&key, id).await?);
                }
            }
            self.receipts(&msgs, &client.user, ReceiptStatus::Read)
                .await?;
            event["ids"] = json!(msgs.iter().map(|m| m.id).collect::<Vec<_>>());
        } else {
            return Err(ChatError::BadRequest(
                "a read receipt needs `upto` (a seq) or `ids`".into(),
            ));
        }
        // The reader's other devices learn what was read here.
        self.outbox.event(&client.user, &event).await;
        Ok(())
    }
}
