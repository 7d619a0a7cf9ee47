//! Receipts: how far each recipient has got with each message, and the read pointer that marks
//! a run of messages read at once. Both run under the recipient's owner lock.

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};
use natter_store::limits::{trim_newly_read, READ_SCAN};
use natter_store::{ReadOutcome, ReceiptMark, ReceiptStatus, StoredMessage};
use natter_types::{ChatKey, MsgId, Seq, UserId};
use scylla::value::CqlValue;

use super::exec::Write;
use super::values::{as_u64, big, blob, text};
use super::{CassandraStore, FAN_OUT};
use crate::buckets::id_blob;
use crate::Result;

impl CassandraStore {
    /// How far `user` has got with message `id` of `chat`: 0 nowhere, 1 delivered, 2 read.
    async fn receipt_level(&self, chat: ChatKey, id: MsgId, user: UserId) -> Result<i32> {
        let row: Option<(Option<i32>,)> = self
            .one(
                &self.st.receipt_get,
                (chat.as_str(), id_blob(id), user.as_str()),
            )
            .await?;
        Ok(row.and_then(|(s,)| s).unwrap_or(0))
    }

    /// [`Self::receipt_level`] of many messages, read at once, in the order asked.
    async fn receipt_levels(&self, keys: Vec<(ChatKey, MsgId, UserId)>) -> Result<Vec<i32>> {
        futures::stream::iter(keys)
            .map(|(chat, id, user)| self.receipt_level(chat, id, user))
            .buffered(FAN_OUT)
            .try_collect()
            .await
    }

    /// The write that raises `user`'s receipt for message `id` of `chat` to `status`.
    fn receipt_write(&self, chat: &ChatKey, id: MsgId, user: &UserId, status: i32) -> Write {
        self.w(
            &self.st.receipt_put,
            vec![
                text(chat.as_str()),
                blob(id),
                text(user.as_str()),
                CqlValue::Int(status),
                self.ttl(),
            ],
        )
    }
}

/// [`natter_store::Store::mark`].
pub(super) async fn mark(s: &CassandraStore, marks: Vec<ReceiptMark>) -> Result<Vec<bool>> {
    if marks.is_empty() {
        return Ok(Vec::new());
    }
    let users: Vec<&UserId> = marks.iter().map(|m| &m.user).collect();
    let _guards = s.owners.lock(&users).await;
    // Marks of one message may repeat in a batch (two devices): later ones see earlier ones.
    let mut raised: HashMap<(ChatKey, MsgId, UserId), i32> = HashMap::new();
    let mut keys: Vec<(ChatKey, MsgId, UserId)> = marks
        .iter()
        .map(|m| (m.chat.clone(), m.id, m.user.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    let levels = s.receipt_levels(keys.clone()).await?;
    raised.extend(keys.into_iter().zip(levels));
    let mut out = Vec::with_capacity(marks.len());
    let mut writes = Vec::new();
    for m in &marks {
        let level = raised
            .entry((m.chat.clone(), m.id, m.user.clone()))
            .or_insert(0);
        let now = m.status as i32;
        if now > *level {
            writes.push(s.receipt_write(&m.chat, m.id, &m.user, now));
            *level = now;
            out.push(true);
        } else {
            out.push(false);
        }
    }
    s.write_all(writes).await?;
    Ok(out)
}

/// [`natter_store::Store::read_upto`].
pub(super) async fn read_upto(
    s: &CassandraStore,
    user: &UserId,
    chat: &ChatKey,
    upto: Seq,
) -> Result<ReadOutcome> {
    let _guard = s.owners.lock(&[user]).await;
    let row = s.chat_state(user, chat).await?;
    let Some((_, last_seq, unread, read_seq)) = row else {
        return Ok(ReadOutcome::default());
    };
    let (last_seq, unread, read_seq) = (
        as_u64(last_seq.unwrap_or(0)),
        as_u64(unread.unwrap_or(0)),
        as_u64(read_seq.unwrap_or(0)),
    );
    let upto = upto.min(last_seq);
    if upto <= read_seq {
        return Ok(ReadOutcome {
            newly_read: Vec::new(),
            unread,
            read_seq,
        });
    }
    let from_others = passed_from_others(s, user, chat, read_seq + 1, upto).await?;
    let passed = from_others.len() as u64;
    let levels = s
        .receipt_levels(
            from_others
                .iter()
                .map(|m| (chat.clone(), m.id, user.clone()))
                .collect(),
        )
        .await?;
    let read = ReceiptStatus::Read as i32;
    let mut newly = Vec::new();
    let mut writes = Vec::new();
    for (m, level) in from_others.into_iter().zip(levels) {
        if level < read {
            writes.push(s.receipt_write(chat, m.id, user, read));
            newly.push(m);
        }
    }
    trim_newly_read(&mut newly);
    let unread = unread.saturating_sub(passed);
    writes.push(s.w(
        &s.st.state_read,
        vec![
            big(unread),
            big(upto),
            text(user.as_str()),
            text(chat.as_str()),
        ],
    ));
    s.write_all(writes).await?;
    Ok(ReadOutcome {
        newly_read: newly,
        unread,
        read_seq: upto,
    })
}

/// The messages from others in `chat` at seqs `from..=to` of `user`'s inbox (at most
/// [`READ_SCAN`] entries looked at), those still there.
async fn passed_from_others(
    s: &CassandraStore,
    user: &UserId,
    chat: &ChatKey,
    from: Seq,
    to: Seq,
) -> Result<Vec<StoredMessage>> {
    let entries = s.inbox_range(user, from, to, READ_SCAN).await?;
    let keys: Vec<(ChatKey, MsgId)> = entries
        .into_iter()
        .filter(|(_, c, _)| c == chat)
        .map(|(_, c, id)| (c, id))
        .collect();
    let messages = s.messages_at(keys).await?;
    Ok(messages
        .into_iter()
        .flatten()
        .filter(|m| m.from != *user)
        .collect())
}

/// [`natter_store::Store::receipt`].
pub(super) async fn receipt(
    s: &CassandraStore,
    chat: &ChatKey,
    id: MsgId,
    user: &UserId,
) -> Result<Option<ReceiptStatus>> {
    Ok(
        match s.receipt_level(chat.clone(), id, user.clone()).await? {
            1 => Some(ReceiptStatus::Delivered),
            2 => Some(ReceiptStatus::Read),
            _ => None,
        },
    )
}
