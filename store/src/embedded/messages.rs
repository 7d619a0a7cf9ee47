//! Messages: storing a send (in the writer's batch), reading a chat's history, and the dedup
//! memory of `(sender, cid)` pairs.

use natter_types::clock::now_ms;
use natter_types::{ChatKey, MsgId};
use redb::{ReadableTable, WriteTransaction};

use super::db::storage;
use super::tables::{from_json, load_message, to_json, BatchTables, DedupEntry, DEDUP, MESSAGES};
use super::{groups, inbox, media, EmbeddedStore};
use crate::{Appended, NewMessage, Result, StoredMessage};

/// Stores `msg` inside the writer's transaction: the message, one inbox entry and chat state
/// per reader, the dedup pair, and the group or upload it changes. `next_id` is the newest id
/// given out in this batch.
pub(super) fn append(
    txn: &WriteTransaction,
    t: &mut BatchTables<'_>,
    msg: &NewMessage,
    next_id: &mut u128,
    dedup_ms: u64,
) -> Result<Appended> {
    let now = now_ms();
    if let Some(first) = earlier_send(t, msg, now, dedup_ms)? {
        return Ok(Appended {
            message: first,
            seqs: Vec::new(),
            duplicate: true,
        });
    }
    let id = new_id(next_id);
    let message = msg.stored(id, now);
    let bytes = to_json(&message)?;
    t.messages
        .insert((msg.chat.as_str(), id.0), bytes.as_slice())
        .map_err(storage)?;
    let seqs = inbox::deliver(t, msg, id)?;
    if let Some(cid) = &msg.cid {
        remember_cid(t, msg, cid, id, now)?;
    }
    if let Some(g) = &msg.group_update {
        groups::put_group(txn, g)?;
    }
    if let Some(upload) = &msg.media {
        media::link_media(txn, upload, &msg.chat, id)?;
    }
    Ok(Appended {
        message,
        seqs,
        duplicate: false,
    })
}

/// The message this `(sender, cid)` made within the last `dedup_ms`, if any.
fn earlier_send(
    t: &BatchTables<'_>,
    msg: &NewMessage,
    now: u64,
    dedup_ms: u64,
) -> Result<Option<StoredMessage>> {
    let Some(cid) = &msg.cid else {
        return Ok(None);
    };
    let seen = t
        .dedup
        .get((msg.from.as_str(), cid.as_str()))
        .map_err(storage)?;
    let Some(seen) = seen else {
        return Ok(None);
    };
    let entry: DedupEntry = from_json(seen.value())?;
    if entry.ts + dedup_ms > now {
        return load_message(&t.messages, &entry.chat, entry.id).map(Some);
    }
    Ok(None)
}

/// The next message id after `next_id`, which it becomes.
fn new_id(next_id: &mut u128) -> MsgId {
    // Ids are ULIDs (time first) forced to grow, so chat order is id order even when the clock
    // stalls or steps back.
    *next_id = ulid::Ulid::new().0.max(*next_id + 1);
    MsgId(*next_id)
}

/// Notes that `(msg.from, cid)` made message `id` at `now`.
fn remember_cid(
    t: &mut BatchTables<'_>,
    msg: &NewMessage,
    cid: &str,
    id: MsgId,
    now: u64,
) -> Result<()> {
    let d = to_json(&DedupEntry {
        chat: msg.chat.clone(),
        id,
        ts: now,
    })?;
    t.dedup
        .insert((msg.from.as_str(), cid), d.as_slice())
        .map_err(storage)?;
    Ok(())
}

/// [`crate::Store::history`].
pub(super) async fn history(
    store: &EmbeddedStore,
    chat: &ChatKey,
    before: Option<MsgId>,
    limit: usize,
) -> Result<(Vec<StoredMessage>, bool)> {
    let chat = chat.clone();
    store
        .read(move |txn| {
            let messages = txn.open_table(MESSAGES).map_err(storage)?;
            let end = before.map(|b| b.0).unwrap_or(u128::MAX);
            let mut out = Vec::new();
            let mut more = false;
            let range = messages
                .range((chat.as_str(), 0u128)..(chat.as_str(), end))
                .map_err(storage)?;
            for row in range.rev() {
                let (_, v) = row.map_err(storage)?;
                if out.len() == limit {
                    more = true;
                    break;
                }
                out.push(from_json(v.value())?);
            }
            Ok((out, more))
        })
        .await
}

/// [`crate::Store::message`].
pub(super) async fn message(
    store: &EmbeddedStore,
    chat: &ChatKey,
    id: MsgId,
) -> Result<Option<StoredMessage>> {
    let chat = chat.clone();
    store
        .read(move |txn| {
            let messages = txn.open_table(MESSAGES).map_err(storage)?;
            let m = messages.get((chat.as_str(), id.0)).map_err(storage)?;
            m.map(|m| from_json(m.value())).transpose()
        })
        .await
}

/// [`crate::Store::purge_dedup`].
pub(super) async fn purge_dedup(store: &EmbeddedStore, older_than_ms: u64) -> Result<usize> {
    store
        .write(None, move |txn| {
            let mut dedup = txn.open_table(DEDUP).map_err(storage)?;
            let mut old = Vec::new();
            for row in dedup.iter().map_err(storage)? {
                let (k, v) = row.map_err(storage)?;
                let entry: DedupEntry = from_json(v.value())?;
                if entry.ts < older_than_ms {
                    let (s, c) = k.value();
                    old.push((s.to_owned(), c.to_owned()));
                }
            }
            for (s, c) in &old {
                dedup.remove((s.as_str(), c.as_str())).map_err(storage)?;
            }
            Ok(old.len())
        })
        .await
}
