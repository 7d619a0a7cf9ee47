//! Inboxes: each reader's run of seqs (given by the reader's owner, see [`crate::owner`]), and
//! their view of each chat (last message, unread count, read pointer).

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};
use natter_store::{ChatSummary, InboxItem, NewMessage, StoreError};
use natter_types::{ChatKey, MsgId, Seq, UserId};
use scylla::value::CqlValue;
use tokio::sync::OwnedMutexGuard;

use super::exec::Write;
use super::values::{as_u64, big, blob, text};
use super::{CassandraStore, FAN_OUT};
use crate::buckets::{blob_id, inbox_bucket};
use crate::owner::UserHead;
use crate::Result;

/// A `chat_state` row: last message id, last seq, unread, read pointer (any may be null once
/// the message TTL passed).
pub(super) type ChatStateRow = (Option<Vec<u8>>, Option<i64>, Option<i64>, Option<i64>);

/// A reader's unread count and read pointer in a chat, as stored (null where unknown).
pub(super) type View = (Option<i64>, Option<i64>);

/// Each reader's view of `msg`'s chat before it, read at once, except the sender's (sending
/// resets it).
pub(super) async fn views_before<'m>(
    s: &CassandraStore,
    msg: &'m NewMessage,
) -> Result<HashMap<&'m UserId, View>> {
    let others: Vec<&UserId> = msg.readers.iter().filter(|r| **r != msg.from).collect();
    let owned: Vec<UserId> = others.iter().map(|r| (*r).clone()).collect();
    let states: Vec<Option<View>> = futures::stream::iter(owned)
        .map(|r: UserId| s.unread_and_pointer(r, msg.chat.clone()))
        .buffered(FAN_OUT)
        .try_collect()
        .await?;
    let mut before = HashMap::new();
    for (r, state) in others.iter().zip(states) {
        before.insert(*r, state.unwrap_or((None, None)));
    }
    Ok(before)
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
/// moves their view of the chat: the writes, and each reader's seq.
pub(super) fn deliver(
    s: &CassandraStore,
    msg: &NewMessage,
    id: MsgId,
    before: &HashMap<&UserId, View>,
    heads: &mut HashMap<UserId, u64>,
    writes: &mut Vec<Write>,
) -> Vec<(UserId, Seq)> {
    let chat = msg.chat.as_str();
    let mut seqs = Vec::with_capacity(msg.readers.len());
    for reader in &msg.readers {
        let seq = heads.get(reader).copied().unwrap_or(0) + 1;
        heads.insert(reader.clone(), seq);
        // Writing in a chat reads it: the sender's own message clears their unread.
        let (unread, read_seq) = if *reader == msg.from {
            (0, seq)
        } else {
            let (u, r) = before.get(reader).copied().unwrap_or((None, None));
            (as_u64(u.unwrap_or(0)) + 1, as_u64(r.unwrap_or(0)))
        };
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
            &s.st.state_put,
            vec![
                text(r),
                text(chat),
                blob(id),
                big(seq),
                big(unread),
                big(read_seq),
                s.ttl(),
            ],
        ));
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

    /// A reader's row of a chat, if they have one.
    pub(super) async fn chat_state(
        &self,
        user: &UserId,
        chat: &ChatKey,
    ) -> Result<Option<ChatStateRow>> {
        self.one(&self.st.state_get, (user.as_str(), chat.as_str()))
            .await
    }

    /// A reader's unread count and read pointer in a chat, if they have its row.
    async fn unread_and_pointer(&self, user: UserId, chat: ChatKey) -> Result<Option<View>> {
        let row = self.chat_state(&user, &chat).await?;
        Ok(row.map(|(_, _, unread, read)| (unread, read)))
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

/// [`natter_store::Store::chats`].
pub(super) async fn chats(s: &CassandraStore, user: &UserId) -> Result<Vec<ChatSummary>> {
    type StateRow = (String, Option<Vec<u8>>, Option<i64>, Option<i64>);
    let rows: Vec<StateRow> = s.all(&s.st.state_all, (user.as_str(),)).await?;
    let mut listed = Vec::new();
    for (chat, last_id, last_seq, unread) in rows {
        // A row whose last message expired with its TTL is no chat any more.
        let Some(last) = last_id.as_deref().and_then(blob_id) else {
            continue;
        };
        listed.push((ChatKey::from_stored(chat), last, last_seq, unread));
    }
    let keys = listed
        .iter()
        .map(|(c, id, _, _)| (c.clone(), *id))
        .collect();
    let messages = s.messages_at(keys).await?;
    let mut out: Vec<ChatSummary> = listed
        .into_iter()
        .zip(messages)
        .filter_map(|((chat, _, last_seq, unread), m)| {
            m.map(|last| ChatSummary {
                chat,
                last,
                last_seq: as_u64(last_seq.unwrap_or(0)),
                unread: as_u64(unread.unwrap_or(0)),
            })
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.last.id));
    Ok(out)
}

/// [`natter_store::Store::in_chat`].
pub(super) async fn in_chat(s: &CassandraStore, user: &UserId, chat: &ChatKey) -> Result<bool> {
    let row = s.chat_state(user, chat).await?;
    Ok(row.is_some_and(|(last, ..)| last.is_some()))
}
