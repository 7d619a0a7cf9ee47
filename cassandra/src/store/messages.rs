//! Messages: a send as one logged batch (message, inbox and chat log entries, dedup pair), a
//! chat's history across its buckets, and the dedup memory of `(sender, cid)` pairs.

use std::sync::atomic::Ordering;

use futures::{StreamExt, TryStreamExt};
use natter_store::{Appended, NewMessage, StoreError, StoredMessage};
use natter_types::clock::now_ms;
use natter_types::{ChatKey, MsgId, UserId};
use scylla::value::CqlValue;

use super::exec::Write;
use super::values::{as_u64, big, blob, from_json, int64, text, to_json};
use super::{inbox, CassandraStore, FAN_OUT};
use crate::buckets::{blob_id, id_blob, message_bucket, DEDUP_BUCKET_MS};
use crate::{corrupt, storage, Result};

/// [`natter_store::Store::append`]: under the locks of the sender and every reader, the
/// message, its group or upload change, each reader's inbox head, inbox entry and chat log entry
/// (and the sender's read pointer), and the dedup pair, written in that order.
pub(super) async fn append(s: &CassandraStore, msg: NewMessage) -> Result<Appended> {
    let _permit = s
        .in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| StoreError::Busy)?;
    let mut users: Vec<&UserId> = msg.readers.iter().collect();
    users.push(&msg.from);
    // The sender's lock also orders two sends of one cid; the readers' locks their seqs.
    let mut guards = s.owners.lock(&users).await;
    let now = now_ms();
    if let Some(message) = earlier_send(s, &msg, now).await? {
        return Ok(Appended {
            message,
            seqs: Vec::new(),
            duplicate: true,
        });
    }
    let id = s.next_id();
    let message = msg.stored(id, now);
    let mut writes = message_writes(s, &message)?;
    if let Some(g) = &msg.group_update {
        s.group_writes(g, &mut writes).await?;
    }
    if let Some(upload) = &msg.media {
        s.link_writes(upload, &msg.chat, id, &mut writes).await?;
    }
    let mut chats = inbox::chat_heads(s, &msg, &guards).await?;
    let mut heads = inbox::heads(s, &mut guards).await?;
    let seqs = inbox::deliver(s, &msg, id, &mut chats, &mut heads, &mut writes);
    // The dedup pair goes last: if a large send is cut by a crash, the client's resend is not
    // taken for a duplicate of a message some readers never got.
    if let Some(cid) = &msg.cid {
        writes.extend(dedup_writes(s, &msg, cid, id, now));
    }
    let written = s.write_all(writes).await;
    // The seqs are spent whether or not the write went through: a timed-out batch may still be
    // applied (Cassandra replays logged batches), and a seq must never be given twice. A failed
    // send leaves a gap, which `sync` steps over.
    // A chat log entry is remembered only once written: after a failure it is read again, so
    // the count goes on from what was stored, whichever way the batch went.
    for (user, guard) in guards.iter_mut() {
        guard.seq = heads.get(user).copied();
        match (&written, chats.get(user)) {
            (Ok(()), Some(head)) => guard.set_chat(msg.chat.as_str(), *head),
            (Err(_), Some(_)) => guard.forget_chat(msg.chat.as_str()),
            (_, None) => {}
        }
    }
    written?;
    Ok(Appended {
        message,
        seqs,
        duplicate: false,
    })
}

/// The message this `(sender, cid)` made within the dedup window, if it is still there.
async fn earlier_send(
    s: &CassandraStore,
    msg: &NewMessage,
    now: u64,
) -> Result<Option<StoredMessage>> {
    let Some(cid) = &msg.cid else {
        return Ok(None);
    };
    let seen: Option<(String, Vec<u8>, i64)> = s
        .one(&s.st.dedup_get, (msg.from.as_str(), cid.as_str()))
        .await?;
    let Some((chat, id, ts)) = seen else {
        return Ok(None);
    };
    let id = blob_id(&id).ok_or_else(|| StoreError::corrupt("dedup id is not 16 bytes"))?;
    if as_u64(ts) + s.opts.dedup_ms > now {
        return s.message_at(&ChatKey::from_stored(chat), id).await;
    }
    Ok(None)
}

/// The message's row and its bucket's entry in the chat's bucket list.
fn message_writes(s: &CassandraStore, message: &StoredMessage) -> Result<Vec<Write>> {
    let chat = message.chat.as_str();
    let bucket = message_bucket(message.id);
    Ok(vec![
        s.w(
            &s.st.msg_insert,
            vec![
                text(chat),
                CqlValue::Int(bucket),
                blob(message.id),
                CqlValue::Text(to_json(message)?),
                s.ttl(),
            ],
        ),
        s.w(&s.st.bucket_insert, vec![text(chat), CqlValue::Int(bucket)]),
    ])
}

/// The dedup pair and its entry in the hour index the purge walks.
fn dedup_writes(
    s: &CassandraStore,
    msg: &NewMessage,
    cid: &str,
    id: MsgId,
    now: u64,
) -> [Write; 2] {
    let hour = now / DEDUP_BUCKET_MS;
    [
        s.w(
            &s.st.dedup_insert,
            vec![
                text(msg.from.as_str()),
                text(cid),
                text(msg.chat.as_str()),
                blob(id),
                big(now),
                s.dedup_ttl(),
            ],
        ),
        s.w(
            &s.st.dedup_hour_insert,
            vec![
                big(hour),
                text(msg.from.as_str()),
                text(cid),
                big(now),
                s.dedup_ttl(),
            ],
        ),
    ]
}

impl CassandraStore {
    /// Message `id` of `chat`, if it is there (its TTL may have passed).
    pub(super) async fn message_at(
        &self,
        chat: &ChatKey,
        id: MsgId,
    ) -> Result<Option<StoredMessage>> {
        let row: Option<(String,)> = self
            .one(
                &self.st.msg_get,
                (chat.as_str(), message_bucket(id), id_blob(id)),
            )
            .await?;
        row.map(|(body,)| from_json(&body)).transpose()
    }

    /// Many messages at once, in the order asked; `None` where one is gone (its TTL passed).
    pub(super) async fn messages_at(
        &self,
        keys: Vec<(ChatKey, MsgId)>,
    ) -> Result<Vec<Option<StoredMessage>>> {
        futures::stream::iter(keys)
            .map(|(chat, id)| async move { self.message_at(&chat, id).await })
            .buffered(FAN_OUT)
            .try_collect()
            .await
    }
}

/// [`natter_store::Store::history`]: the chat's buckets newest first, each read down from
/// `before` until the page is full.
pub(super) async fn history(
    s: &CassandraStore,
    chat: &ChatKey,
    before: Option<MsgId>,
    limit: usize,
) -> Result<(Vec<StoredMessage>, bool)> {
    let top = before.map(message_bucket).unwrap_or(i32::MAX);
    let bound = before.map(id_blob).unwrap_or_else(|| vec![0xff; 16]);
    let mut buckets = s
        .session
        .execute_iter(s.st.buckets_upto.clone(), (chat.as_str(), top))
        .await
        .map_err(storage)?
        .rows_stream::<(i32,)>()
        .map_err(corrupt)?;
    let mut out = Vec::new();
    let want = limit.saturating_add(1);
    while out.len() < want {
        let Some((bucket,)) = buckets.try_next().await.map_err(storage)? else {
            break;
        };
        let n = (want - out.len()).min(i32::MAX as usize) as i32;
        let rows: Vec<(String,)> = s
            .rows(&s.st.msg_page, (chat.as_str(), bucket, bound.as_slice(), n))
            .await?;
        for (body,) in rows {
            out.push(from_json::<StoredMessage>(&body)?);
        }
    }
    let more = out.len() > limit;
    out.truncate(limit);
    Ok((out, more))
}

/// [`natter_store::Store::purge_dedup`].
pub(super) async fn purge_dedup(s: &CassandraStore, older_than_ms: u64) -> Result<usize> {
    // The TTL forgets pairs by itself; a purge walks only the hours since the last one (or the
    // dedup window plus a day), so it never scans the table.
    let top = older_than_ms.min(now_ms()) / DEDUP_BUCKET_MS;
    let window = s.opts.dedup_ms / DEDUP_BUCKET_MS + 24;
    let done = s.purged_hour.load(Ordering::Relaxed);
    let start = if done == 0 {
        top.saturating_sub(window)
    } else {
        done.min(top)
    };
    let hours: Vec<u64> = (start..=top).collect();
    let found: Vec<Vec<(u64, String, String, i64)>> = futures::stream::iter(hours)
        .map(|hour| async move {
            let rows: Vec<(String, String, i64)> =
                s.all(&s.st.dedup_hour_list, (int64(hour),)).await?;
            Ok::<_, StoreError>(
                rows.into_iter()
                    .map(|(sender, cid, ts)| (hour, sender, cid, ts))
                    .collect(),
            )
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    let mut purged = 0;
    for (hour, sender, cid, ts) in found.into_iter().flatten() {
        if as_u64(ts) >= older_than_ms {
            continue;
        }
        // The pair may have been used again since: only the entry from that hour goes.
        let current: Option<(String, Vec<u8>, i64)> = s
            .one(&s.st.dedup_get, (sender.as_str(), cid.as_str()))
            .await?;
        let mut writes = vec![s.w(
            &s.st.dedup_hour_delete,
            vec![big(hour), text(&sender), text(&cid)],
        )];
        if current.is_some_and(|(_, _, t)| t == ts) {
            writes.push(s.w(&s.st.dedup_delete, vec![text(&sender), text(&cid)]));
            purged += 1;
        }
        s.write_all(writes).await?;
    }
    // The newest hour may still get pairs newer than the cut-off: the next purge reads it again.
    s.purged_hour.store(top.max(1), Ordering::Relaxed);
    Ok(purged)
}
