//! The send pipeline: validate, commit (message + every inbox entry, one transaction), then
//! the `sent` receipt and the fan-out. The caller PUBACKs only after this returns.

use natter_store::NewMessage;
use natter_types::{ChatAddr, Client};

use crate::chats::Members;
use crate::outbound::Receipt;
use crate::wire;
use crate::{Bridge, ChatError};

/// A top-level field of a JSON payload (`cid`, `id`), for error reports about payloads that
/// failed validation.
pub(crate) fn peek_field(payload: &[u8], field: &str) -> Option<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v.get_mut(field).map(serde_json::Value::take)
}

impl Bridge {
    pub(crate) async fn send(
        &self,
        client: &Client,
        chat: &ChatAddr,
        payload: &[u8],
    ) -> Result<(), ChatError> {
        let started = std::time::Instant::now();
        let mut send = wire::parse_send(payload)?;
        let Members { key, readers } = self.members(&client.user, chat).await?;
        let media = match send.media.take() {
            Some(r) => {
                let (id, described) = self.attach_media(&client.user, r).await?;
                send.content.media = Some(described);
                Some(id)
            }
            None => None,
        };
        let appended = self
            .store
            .append(NewMessage {
                chat: key,
                from: client.user.clone(),
                dev: client.device.clone(),
                cid: send.cid,
                readers: readers.clone(),
                content: send.content,
                group_update: None,
                media,
            })
            .await?;
        let committed = started.elapsed();
        let m = &appended.message;
        self.outbox.receipt(m.into(), Receipt::Sent, m.ts).await;
        // A resend of a known cid gets its receipt again (the first may have been lost with the
        // PUBACK) but is delivered to nobody a second time (a duplicate has no seqs).
        self.outbox.messages(&appended).await;
        if !appended.duplicate {
            self.push_candidate(m, &readers);
        }
        tracing::debug!(
            chat = %chat,
            readers = appended.seqs.len(),
            commit_us = committed.as_micros() as u64,
            total_us = started.elapsed().as_micros() as u64,
            "message stored and fanned out"
        );
        Ok(())
    }
}
