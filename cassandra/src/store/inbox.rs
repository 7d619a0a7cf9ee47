//! Inboxes: each reader's run of seqs (given by the reader's owner, see [`crate::owner`]), and
//! their log of each chat, which gives the chat list, last messages and unread counts without
//! a summary row rewritten per message.
//!
//! Per reader, a message writes its inbox entry, its chat log entry (with the running count of
//! messages from others in the chat) and the inbox head; the sender's read pointer moves too.
//! Nothing is read per reader: the owner remembers each user's last seq and each chat's newest
//! log entry, read once on a miss. Unread is the newest log entry's count less the read
//! pointer's.

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};
use natter_store::{ChatSummary, InboxItem, NewMessage, StoreError};
use natter_types::{ChatKey, MsgId, Seq, UserId};
use scylla::value::CqlValue;
use tokio::sync::OwnedMutexGuard;

use super::exec::Write;
use super::values::{as_u64, big, blob, int64, text};
use super::{CassandraStore, FAN_OUT};
use crate::buckets::{blob_id, inbox_bucket};
use crate::owner::{ChatHead, UserHead};
use crate::Result;

/// A `chat_log` row: seq, message id, own flag, count from others (cells may be null once the
/// message TTL passed).
type LogRow = (i64, Option<Vec<u8>>, Option<bool>, Option<i64>);

/// One entry of a reader's log of a chat.
#[derive(Debug, Clone, Copy)]
pub(super) struct LogEntry {
    /// The reader's inbox seq of the message.
    pub(super) seq: Seq,
    /// The message.
    pub(super) id: MsgId,
    /// The reader sent it.
    pub(super) own: bool,
    /// Messages from others the reader has had in the chat up to and including this one.
    pub(super) from_others: u64,
}

impl LogEntry {
    /// The entry a row holds; `None` for a row whose cells expired.
    fn of(row: LogRow) -> Result<Option<LogEntry>> {
        let (seq, id, own, from_others) = row;
        let Some(id) = id else {
            return Ok(None);
        };
        let id = blob_id(&id).ok_or_else(|| StoreError::corrupt("chat log id is not 16 bytes"))?;
        Ok(Some(LogEntry {
            seq: as_u64(seq),
            id,
            own: own.unwrap_or(false),
            from_others: as_u64(from_others.unwrap_or(0)),
        }))
    }

    /// The entry's seq and count, as the owner remembers them.
    pub(super) fn head(&self) -> ChatHead {
        ChatHead {
            seq: self.seq,
            from_others: self.from_others,
        }
    }
}

/// A read pointer: the seq a reader has read a chat up to, and the log's count there.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ReadPtr {
    /// The seq read up to.
    pub(super) seq: Seq,
    /// The chat log's count of messages from others at that seq.
    pub(super) from_others: u64,
}

/// The newest log entry of `chat` for each reader of a message (`None`: their log of it is
/// empty), from the owners' memory, or read at once where it is not remembered.
pub(super) async fn chat_heads(
    s: &CassandraStore,
    msg: &NewMessage,
    guards: &[(UserId, OwnedMutexGuard<UserHead>)],
) -> Result<HashMap<UserId, Option<ChatHead>>> {
    let chat = msg.chat.as_str();
    let mut known = HashMap::new();
    let mut missing = Vec::new();
    for (user, guard) in guards {
        if !msg.readers.contains(user) {
            continue;
        }
        match guard.chat(chat) {
            Some(head) => {
                known.insert(user.clone(), head);
            }
            None => missing.push(user.clone()),
        }
    }
    // A big group's first message after a restart reads a thousand: at once, not in turn.
    let loaded: Vec<(UserId, Option<ChatHead>)> = futures::stream::iter(missing)
        .map(|u| async move {
            let newest = s.newest_in_chat(&u, &msg.chat).await?;
            Ok::<_, StoreError>((u, newest.map(|e| e.head())))
        })
        .buffered(FAN_OUT)
        .try_collect()
        .await?;
    known.extend(loaded);
    Ok(known)
}

/// The last seq given to each locked user, which the owner now remembers.
pub(super) async fn heads(
    s: &CassandraStore,
    guards: &mut [(UserId, OwnedMutexGuard<UserHead>)],
) -> Result<HashMap<UserId, u64>> {
    // Heads not cached yet (first send to a user since start) are read at once, not one after
    // another: a big group's first message after a restart needs a thousand.
    let uncached: Vec<UserId> = guards
        .iter()
        .filter(|(_, g)| g.seq.is_none())
        .map(|(u, _)| u.clone())
        .collect();
    let loaded: HashMap<UserId, u64> = futures::stream::iter(uncached)
        .map(|u| async move { Ok::<_, StoreError>((u.clone(), s.stored_head(&u).await?)) })
        .buffered(FAN_OUT)
        .try_collect()
        .await?;
    let mut heads = HashMap::new();
    for (user, guard) in guards.iter_mut() {
        let head = guard.seq.or_else(|| loaded.get(user).copied()).unwrap_or(0);
        guard.seq = Some(head);
        heads.insert(user.clone(), head);
    }
    Ok(heads)
}

/// Gives every reader of `msg` (stored as `id`) the seq after their head, pointing at it, and
/// the next entry of their log of the chat, counting on from `chats` (which it moves on); the
/// sender's read pointer moves to their message (writing in a chat reads it). Returns each
/// reader's seq.
pub(super) fn deliver(
    s: &CassandraStore,
    msg: &NewMessage,
    id: MsgId,
    chats: &mut HashMap<UserId, Option<ChatHead>>,
    heads: &mut HashMap<UserId, u64>,
    writes: &mut Vec<Write>,
) -> Vec<(UserId, Seq)> {
    let chat = msg.chat.as_str();
    let mut seqs = Vec::with_capacity(msg.readers.len());
    for reader in &msg.readers {
        let seq = heads.get(reader).copied().unwrap_or(0) + 1;
        heads.insert(reader.clone(), seq);
        let own = *reader == msg.from;
        let before = chats.get(reader).copied().flatten();
        let from_others = before.map_or(0, |h| h.from_others) + u64::from(!own);
        let r = reader.as_str();
        writes.push(s.w(&s.st.head_set, vec![text(r), big(seq)]));
        writes.push(s.w(
            &s.st.inbox_insert,
            vec![
                text(r),
                CqlValue::BigInt(inbox_bucket(seq)),
                big(seq),
                text(chat),
                blob(id),
                s.ttl(),
            ],
        ));
        writes.push(s.w(
            &s.st.log_insert,
            vec![
                text(r),
                text(chat),
                big(seq),
                blob(id),
                CqlValue::Boolean(own),
                big(from_others),
                s.ttl(),
            ],
        ));
        // The sender has read up to their own message. A reader whose log of the chat is empty
        // (their first message in it, or all of it expired) starts at zero, as the count does:
        // that row also lists the chat among theirs.
        let ptr = if own {
            Some(ReadPtr { seq, from_others })
        } else if before.is_none() {
            Some(ReadPtr::default())
        } else {
            None
        };
        if let Some(p) = ptr {
            writes.push(s.ptr_write(reader, &msg.chat, p));
        }
        chats.insert(reader.clone(), Some(ChatHead { seq, from_others }));
        seqs.push((reader.clone(), seq));
    }
    seqs
}

impl CassandraStore {
    /// The last seq given to `user`, as stored.
    pub(super) async fn stored_head(&self, user: &UserId) -> Result<u64> {
        let row: Option<(Option<i64>,)> = self.one(&self.st.head_get, (user.as_str(),)).await?;
        Ok(row.and_then(|(s,)| s).map(as_u64).unwrap_or(0))
    }

    /// Inbox entries of `user` with `from <= seq <= to`, at most `limit`, across buckets.
    pub(super) async fn inbox_range(
        &self,
        user: &UserId,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, ChatKey, MsgId)>> {
        let mut out = Vec::new();
        if from > to || limit == 0 {
            return Ok(out);
        }
        let mut bucket = inbox_bucket(from);
        while out.len() < limit && bucket <= inbox_bucket(to) {
            let want = (limit - out.len()).min(i32::MAX as usize) as i32;
            let rows: Vec<(i64, String, Vec<u8>)> = self
                .rows(
                    &self.st.inbox_page,
                    (
                        user.as_str(),
                        bucket,
                        from.min(i64::MAX as u64) as i64,
                        to.min(i64::MAX as u64) as i64,
                        want,
                    ),
                )
                .await?;
            for (seq, chat, id) in rows {
                let id =
                    blob_id(&id).ok_or_else(|| StoreError::corrupt("inbox id is not 16 bytes"))?;
                out.push((as_u64(seq), ChatKey::from_stored(chat), id));
            }
            bucket += 1;
        }
        Ok(out)
    }

    /// The newest entry of `user`'s log of `chat`, if it has one.
    pub(super) async fn newest_in_chat(
        &self,
        user: &UserId,
        chat: &ChatKey,
    ) -> Result<Option<LogEntry>> {
        let row: Option<LogRow> = self
            .one(&self.st.log_last, (user.as_str(), chat.as_str()))
            .await?;
        Ok(row.map(LogEntry::of).transpose()?.flatten())
    }

    /// The newest entry of `user`'s log of `chat` at or before `seq`, if any.
    pub(super) async fn log_at_or_before(
        &self,
        user: &UserId,
        chat: &ChatKey,
        seq: Seq,
    ) -> Result<Option<LogEntry>> {
        let row: Option<LogRow> = self
            .one(
                &self.st.log_at_or_before,
                (user.as_str(), chat.as_str(), int64(seq)),
            )
            .await?;
        Ok(row.map(LogEntry::of).transpose()?.flatten())
    }

    /// The entries of `user`'s log of `chat` with `from <= seq <= to`, oldest first, at most
    /// `limit`.
    pub(super) async fn log_range(
        &self,
        user: &UserId,
        chat: &ChatKey,
        from: Seq,
        to: Seq,
        limit: usize,
    ) -> Result<Vec<LogEntry>> {
        let rows: Vec<LogRow> = self
            .rows(
                &self.st.log_range,
                (
                    user.as_str(),
                    chat.as_str(),
                    int64(from),
                    int64(to),
                    limit.min(i32::MAX as usize) as i32,
                ),
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.extend(LogEntry::of(row)?);
        }
        Ok(out)
    }

    /// `user`'s read pointer in `chat` (zero where there is none).
    pub(super) async fn read_ptr(&self, user: &UserId, chat: &ChatKey) -> Result<ReadPtr> {
        let row: Option<(Option<i64>, Option<i64>)> = self
            .one(&self.st.ptr_get, (user.as_str(), chat.as_str()))
            .await?;
        Ok(row.map_or_else(ReadPtr::default, |(seq, n)| ReadPtr {
            seq: as_u64(seq.unwrap_or(0)),
            from_others: as_u64(n.unwrap_or(0)),
        }))
    }

    /// The write that sets `user`'s read pointer in `chat`.
    pub(super) fn ptr_write(&self, user: &UserId, chat: &ChatKey, ptr: ReadPtr) -> Write {
        self.w(
            &self.st.ptr_put,
            vec![
                text(user.as_str()),
                text(chat.as_str()),
                big(ptr.seq),
                big(ptr.from_others),
            ],
        )
    }
}

/// [`natter_store::Store::sync`]: up to the stored head (a seq spent by a failed send is a gap
/// stepped over), the messages read at once.
pub(super) async fn sync(
    s: &CassandraStore,
    user: &UserId,
    after: Seq,
    limit: usize,
) -> Result<(Vec<InboxItem>, bool)> {
    let head = s.stored_head(user).await?;
    let mut entries = s
        .inbox_range(user, after.saturating_add(1), head, limit.saturating_add(1))
        .await?;
    let more = entries.len() > limit;
    entries.truncate(limit);
    let keys = entries.iter().map(|(_, c, id)| (c.clone(), *id)).collect();
    let messages = s.messages_at(keys).await?;
    Ok((
        entries
            .into_iter()
            .zip(messages)
            .filter_map(|((seq, _, _), m)| m.map(|message| InboxItem { seq, message }))
            .collect(),
        more,
    ))
}

/// [`natter_store::Store::chats`]: the user's read pointers name their chats; each chat's
/// newest log entry (read at once) gives its last message and, less the pointer's count, its
/// unread count.
pub(super) async fn chats(s: &CassandraStore, user: &UserId) -> Result<Vec<ChatSummary>> {
    type PtrRow = (String, Option<i64>, Option<i64>);
    let rows: Vec<PtrRow> = s.all(&s.st.ptrs_of, (user.as_str(),)).await?;
    let newest: Vec<Option<(ChatKey, LogEntry, u64)>> = futures::stream::iter(rows)
        .map(|(chat, _, read_count)| async move {
            let chat = ChatKey::from_stored(chat);
            let last = s.newest_in_chat(user, &chat).await?;
            Ok::<_, StoreError>(last.map(|e| (chat, e, as_u64(read_count.unwrap_or(0)))))
        })
        .buffered(FAN_OUT)
        .try_collect()
        .await?;
    // A chat whose log expired with its TTL is no chat any more.
    let listed: Vec<(ChatKey, LogEntry, u64)> = newest.into_iter().flatten().collect();
    let keys = listed.iter().map(|(c, e, _)| (c.clone(), e.id)).collect();
    let messages = s.messages_at(keys).await?;
    let mut out: Vec<ChatSummary> = listed
        .into_iter()
        .zip(messages)
        .filter_map(|((chat, entry, read_count), m)| {
            m.map(|last| ChatSummary {
                chat,
                last,
                last_seq: entry.seq,
                unread: entry.from_others.saturating_sub(read_count),
            })
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.last.id));
    Ok(out)
}

/// [`natter_store::Store::in_chat`]: whether `user`'s log of `chat` has an entry.
pub(super) async fn in_chat(s: &CassandraStore, user: &UserId, chat: &ChatKey) -> Result<bool> {
    Ok(s.newest_in_chat(user, chat).await?.is_some())
}
