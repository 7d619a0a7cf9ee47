//! Messages: storing a send (in the writer's batch), reading a chat's history, and the dedup
//! memory of `(sender, cid)` pairs.

use natter_types::clock::now_ms;
use natter_types::{ChatKey, MsgId};

use super::tables::{from_json, get_json, load_message, message_key, rows, rows_in, to_json};
use super::tables::{DedupEntry, Key};
use super::writer::Batch;
use super::{groups, inbox, media, EmbeddedStore};
use crate::{Appended, NewMessage, Result, StoredMessage};

/// Stores `msg` inside the writer's transaction: the message once, one inbox and chat log
/// entry per reader, the dedup pair, and the group or upload it changes. Every row is written
/// blind (no read of the row it replaces) except the dedup lookup.
pub(super) fn append(b: &mut Batch<'_, '_>, msg: &NewMessage) -> Result<Appended> {
    let now = now_ms();
    if let Some(first) = earlier_send(b, msg, now)? {
        return Ok(Appended {
            message: first,
            seqs: Vec::new(),
            duplicate: true,
        });
    }
    let id = new_id(b.next_id);
    let message = msg.stored(id, now);
    b.tx.insert(
        &b.t.messages,
        message_key(&msg.chat, id),
        to_json(&message)?,
    );
    let seqs = inbox::deliver(b, msg, id)?;
    if let Some(cid) = &msg.cid {
        let d = to_json(&DedupEntry {
            chat: msg.chat.clone(),
            id,
            ts: now,
        })?;
        b.tx.insert(&b.t.dedup, dedup_key(msg, cid), d);
    }
    if let Some(g) = &msg.group_update {
        groups::put_group(b.tx, b.t, g)?;
    }
    if let Some(upload) = &msg.media {
        media::link_media(b.tx, b.t, upload, &msg.chat, id)?;
    }
    Ok(Appended {
        message,
        seqs,
        duplicate: false,
    })
}

/// A `(sender, cid)` pair's key in `dedup`.
fn dedup_key(msg: &NewMessage, cid: &str) -> Vec<u8> {
    Key::name(msg.from.as_str()).last(cid)
}

/// The message this `(sender, cid)` made within the last `dedup_ms`, if any.
fn earlier_send(b: &Batch<'_, '_>, msg: &NewMessage, now: u64) -> Result<Option<StoredMessage>> {
    let Some(cid) = &msg.cid else {
        return Ok(None);
    };
    let Some(entry) = get_json::<DedupEntry>(b.tx, &b.t.dedup, &dedup_key(msg, cid))? else {
        return Ok(None);
    };
    if entry.ts + b.dedup_ms > now {
        return load_message(b.tx, &b.t.messages, &entry.chat, entry.id).map(Some);
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

/// [`crate::Store::history`]: a range scan of the chat's messages, newest first.
pub(super) async fn history(
    store: &EmbeddedStore,
    chat: &ChatKey,
    before: Option<MsgId>,
    limit: usize,
) -> Result<(Vec<StoredMessage>, bool)> {
    let chat = chat.clone();
    store
        .read(move |snap, t| {
            let end = before.unwrap_or(MsgId(u128::MAX));
            let from = Key::name(chat.as_str()).done();
            let to = message_key(&chat, end);
            let mut out = Vec::new();
            let mut more = false;
            for row in rows_in(snap, &t.messages, &from, &to).rev() {
                let (_, v) = row?;
                if out.len() == limit {
                    more = true;
                    break;
                }
                out.push(from_json(&v)?);
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
        .read(move |snap, t| get_json(snap, &t.messages, &message_key(&chat, id)))
        .await
}

/// [`crate::Store::purge_dedup`].
pub(super) async fn purge_dedup(store: &EmbeddedStore, older_than_ms: u64) -> Result<usize> {
    store
        .write(None, move |tx, t| {
            let mut old = Vec::new();
            for row in rows(&*tx, &t.dedup, b"") {
                let (k, v) = row?;
                let entry: DedupEntry = from_json(&v)?;
                if entry.ts < older_than_ms {
                    old.push(k);
                }
            }
            let n = old.len();
            for k in old {
                tx.remove(&t.dedup, k);
            }
            Ok(n)
        })
        .await
}
