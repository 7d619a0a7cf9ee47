//! Media: uploads from announced to ready to expired, and the messages that carry each.

use natter_types::{ChatKey, MediaId, MsgId};

use super::db::Tables;
use super::tables::{get_json, load_message, message_key, rows_in, to_json};
use super::{EmbeddedStore, Tx};
use crate::{MediaRecord, MediaState, Result, StoreError};

/// Notes that message `id` of `chat` carries `media`. An upload expired meanwhile is left as
/// it is: the message still names it, and asking for it says it expired. Runs in the
/// transaction of the message.
pub(super) fn link_media(
    tx: &mut Tx<'_>,
    t: &Tables,
    media: &MediaId,
    chat: &ChatKey,
    id: MsgId,
) -> Result<()> {
    let key = media.as_str().as_bytes();
    if let Some(mut rec) = get_json::<MediaRecord>(&*tx, &t.media, key)? {
        rec.sent_in.push((chat.clone(), id));
        tx.insert(&t.media, key, to_json(&rec)?);
    }
    Ok(())
}

/// [`crate::Store::media_create`].
pub(super) async fn media_create(store: &EmbeddedStore, media: MediaRecord) -> Result<()> {
    store
        .write(None, move |tx, t| {
            tx.insert(&t.media, media.id.as_str(), to_json(&media)?);
            if media.state == MediaState::Pending {
                tx.insert(&t.media_pending, media.id.as_str(), b"");
            }
            Ok(())
        })
        .await
}

/// [`crate::Store::media`].
pub(super) async fn media(store: &EmbeddedStore, id: &MediaId) -> Result<Option<MediaRecord>> {
    let id = id.clone();
    store
        .read(move |snap, t| {
            let key = id.as_str().as_bytes();
            if let Some(rec) = get_json(snap, &t.media, key)? {
                return Ok(Some(rec));
            }
            get_json(snap, &t.media_gone, key)
        })
        .await
}

/// [`crate::Store::media_ready`].
pub(super) async fn media_ready(store: &EmbeddedStore, id: &MediaId) -> Result<bool> {
    let id = id.clone();
    store
        .write(None, move |tx, t| {
            let key = id.as_str().as_bytes();
            let found: Option<MediaRecord> = get_json(&*tx, &t.media, key)?;
            let Some(mut rec) = found.filter(|r| r.state == MediaState::Pending) else {
                return Ok(false);
            };
            rec.state = MediaState::Ready;
            tx.insert(&t.media, key, to_json(&rec)?);
            tx.remove(&t.media_pending, key);
            Ok(true)
        })
        .await
}

/// [`crate::Store::media_older`]: ids sort by time, so the sweep reads the oldest first and
/// stops at its cut-off.
pub(super) async fn media_older(
    store: &EmbeddedStore,
    state: MediaState,
    before_ms: u64,
    limit: usize,
) -> Result<Vec<MediaRecord>> {
    let floor = MediaId::floor_at(before_ms);
    store
        .read(move |snap, t| {
            let index = match state {
                // The pending index skips every upload that completed.
                MediaState::Pending => &t.media_pending,
                MediaState::Ready => &t.media,
                // Expired uploads are never swept again.
                MediaState::Expired => return Ok(Vec::new()),
            };
            let mut out = Vec::new();
            for row in rows_in(snap, index, b"", floor.as_str().as_bytes()) {
                let (k, _) = row?;
                let rec: Option<MediaRecord> = get_json(snap, &t.media, &k)?;
                if let Some(rec) = rec.filter(|r| r.state == state) {
                    out.push(rec);
                }
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
}

/// [`crate::Store::media_expire`].
pub(super) async fn media_expire(
    store: &EmbeddedStore,
    id: &MediaId,
) -> Result<Option<MediaRecord>> {
    let id = id.clone();
    store
        .write(None, move |tx, t| {
            let key = id.as_str().as_bytes();
            let Some(rec) = get_json::<MediaRecord>(&*tx, &t.media, key)? else {
                return Ok(None);
            };
            tx.remove(&t.media, key);
            tx.remove(&t.media_pending, key);
            if rec.state == MediaState::Ready {
                mark_messages_expired(tx, t, &rec)?;
                let gone = MediaRecord {
                    state: MediaState::Expired,
                    ..rec.clone()
                };
                tx.insert(&t.media_gone, key, to_json(&gone)?);
            }
            Ok(Some(rec))
        })
        .await
}

/// Marks `"expired": true` in the `media` of every message that carries `rec`.
fn mark_messages_expired(tx: &mut Tx<'_>, t: &Tables, rec: &MediaRecord) -> Result<()> {
    for (chat, msg) in &rec.sent_in {
        let mut m = match load_message(&*tx, &t.messages, chat, *msg) {
            Ok(m) => m,
            // A message gone (a removed chat) has nothing left to mark.
            Err(StoreError::Corrupt { .. }) => continue,
            Err(e) => return Err(e),
        };
        m.mark_media_expired();
        tx.insert(&t.messages, message_key(chat, *msg), to_json(&m)?);
    }
    Ok(())
}
