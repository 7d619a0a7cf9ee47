//! Receipts: how far each recipient has got with each message, and the read pointer that marks
//! a run of messages read at once. Both run under the recipient's owner lock.

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};
use natter_store::limits::{trim_newly_read, READ_SCAN};
use natter_store::{ReadOutcome, ReceiptMark, ReceiptStatus, StoredMessage};
use natter_types::{ChatKey, MsgId, Seq, UserId};
use scylla::value::CqlValue;

use super::exec::Write;
use super::inbox::ReadPtr;
use super::values::{blob, text};
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

/// [`natter_store::Store::read_upto`]: under the user's owner lock, the chat's newest log
/// entry (remembered, or read), the read pointer, and the log entries the pointer passes; the
/// messages from others among them are marked read and the pointer moves, in one batch.
pub(super) async fn read_upto(
    s: &CassandraStore,
    user: &UserId,
    chat: &ChatKey,
    upto: Seq,
) -> Result<ReadOutcome> {
    let mut held = s.owners.lock(&[user]).await;
    let Some((_, guard)) = held.first_mut() else {
        return Ok(ReadOutcome::default());
    };
    let last = match guard.chat(chat.as_str()) {
        Some(head) => head,
        None => {
            let head = s.newest_in_chat(user, chat).await?.map(|e| e.head());
            guard.set_chat(chat.as_str(), head);
            head
        }
    };
    let Some(last) = last else {
        return Ok(ReadOutcome::default());
    };
    let ptr = s.read_ptr(user, chat).await?;
    let upto = upto.min(last.seq);
    if upto <= ptr.seq {
        return Ok(ReadOutcome {
            newly_read: Vec::new(),
            unread: last.from_others.saturating_sub(ptr.from_others),
            read_seq: ptr.seq,
        });
    }
    let passed = s
        .log_range(user, chat, ptr.seq + 1, upto, READ_SCAN)
        .await?;
    // The count at `upto` is the newest entry's at or before it: the last one passed, unless
    // the scan was cut short (then read), or none was passed (then the pointer's).
    let at_upto = if passed.len() >= READ_SCAN {
        s.log_at_or_before(user, chat, upto)
            .await?
            .map_or(ptr.from_others, |e| e.from_others)
    } else {
        passed.last().map_or(ptr.from_others, |e| e.from_others)
    };
    let from_others: Vec<MsgId> = passed.iter().filter(|e| !e.own).map(|e| e.id).collect();
    let levels = s
        .receipt_levels(
            from_others
                .iter()
                .map(|id| (chat.clone(), *id, user.clone()))
                .collect(),
        )
        .await?;
    let read = ReceiptStatus::Read as i32;
    let unread_ids: Vec<MsgId> = from_others
        .into_iter()
        .zip(levels)
        .filter(|(_, level)| *level < read)
        .map(|(id, _)| id)
        .collect();
    let mut writes: Vec<Write> = unread_ids
        .iter()
        .map(|id| s.receipt_write(chat, *id, user, read))
        .collect();
    let messages = s
        .messages_at(unread_ids.iter().map(|id| (chat.clone(), *id)).collect())
        .await?;
    let mut newly: Vec<StoredMessage> = messages.into_iter().flatten().collect();
    trim_newly_read(&mut newly);
    writes.push(s.ptr_write(
        user,
        chat,
        ReadPtr {
            seq: upto,
            from_others: at_upto,
        },
    ));
    s.write_all(writes).await?;
    Ok(ReadOutcome {
        newly_read: newly,
        unread: last.from_others.saturating_sub(at_upto),
        read_seq: upto,
    })
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
