//! Media: uploads from announced to ready to expired, and the messages that carry each.

use natter_types::{ChatKey, MediaId, MsgId};
use redb::{ReadableTable, WriteTransaction};

use super::db::storage;
use super::tables::{
    from_json_opt, load_message, to_json, MEDIA, MEDIA_GONE, MEDIA_PENDING, MESSAGES,
};
use super::EmbeddedStore;
use crate::{MediaRecord, MediaState, Result, StoreError};

/// Notes that message `id` of `chat` carries `media`. An upload expired meanwhile is left as
/// it is: the message still names it, and asking for it says it expired. Runs in the
/// transaction of the message.
pub(super) fn link_media(
    txn: &WriteTransaction,
    media: &MediaId,
    chat: &ChatKey,
    id: MsgId,
) -> Result<()> {
    let mut t = txn.open_table(MEDIA).map_err(storage)?;
    let found: Option<MediaRecord> = from_json_opt(t.get(media.as_str()).map_err(storage)?)?;
    if let Some(mut rec) = found {
        rec.sent_in.push((chat.clone(), id));
        t.insert(media.as_str(), to_json(&rec)?.as_slice())
            .map_err(storage)?;
    }
    Ok(())
}

/// [`crate::Store::media_create`].
pub(super) async fn media_create(store: &EmbeddedStore, media: MediaRecord) -> Result<()> {
    store
        .write(None, move |txn| {
            let mut t = txn.open_table(MEDIA).map_err(storage)?;
            t.insert(media.id.as_str(), to_json(&media)?.as_slice())
                .map_err(storage)?;
            if media.state == MediaState::Pending {
                let mut p = txn.open_table(MEDIA_PENDING).map_err(storage)?;
                p.insert(media.id.as_str(), ()).map_err(storage)?;
            }
            Ok(())
        })
        .await
}

/// [`crate::Store::media`].
pub(super) async fn media(store: &EmbeddedStore, id: &MediaId) -> Result<Option<MediaRecord>> {
    let id = id.clone();
    store
        .read(move |txn| {
            let t = txn.open_table(MEDIA).map_err(storage)?;
            if let Some(rec) = from_json_opt(t.get(id.as_str()).map_err(storage)?)? {
                return Ok(Some(rec));
            }
            let gone = txn.open_table(MEDIA_GONE).map_err(storage)?;
            from_json_opt(gone.get(id.as_str()).map_err(storage)?)
        })
        .await
}

/// [`crate::Store::media_ready`].
pub(super) async fn media_ready(store: &EmbeddedStore, id: &MediaId) -> Result<bool> {
    let id = id.clone();
    store
        .write(None, move |txn| {
            let mut t = txn.open_table(MEDIA).map_err(storage)?;
            let found: Option<MediaRecord> = from_json_opt(t.get(id.as_str()).map_err(storage)?)?;
            let Some(mut rec) = found.filter(|r| r.state == MediaState::Pending) else {
                return Ok(false);
            };
            rec.state = MediaState::Ready;
            t.insert(id.as_str(), to_json(&rec)?.as_slice())
                .map_err(storage)?;
            let mut p = txn.open_table(MEDIA_PENDING).map_err(storage)?;
            p.remove(id.as_str()).map_err(storage)?;
            Ok(true)
        })
        .await
}

/// [`crate::Store::media_older`].
pub(super) async fn media_older(
    store: &EmbeddedStore,
    state: MediaState,
    before_ms: u64,
    limit: usize,
) -> Result<Vec<MediaRecord>> {
    let floor = MediaId::floor_at(before_ms);
    store
        .read(move |txn| {
            let t = txn.open_table(MEDIA).map_err(storage)?;
            let mut out = Vec::new();
            let mut take = |id: &str| -> Result<bool> {
                if let Some(rec) = from_json_opt::<MediaRecord>(t.get(id).map_err(storage)?)? {
                    if rec.state == state {
                        out.push(rec);
                    }
                }
                Ok(out.len() < limit)
            };
            match state {
                MediaState::Pending => {
                    let p = txn.open_table(MEDIA_PENDING).map_err(storage)?;
                    for row in p.range(..floor.as_str()).map_err(storage)? {
                        let (k, _) = row.map_err(storage)?;
                        if !take(k.value())? {
                            break;
                        }
                    }
                }
                MediaState::Ready => {
                    for row in t.range(..floor.as_str()).map_err(storage)? {
                        let (k, _) = row.map_err(storage)?;
                        if !take(k.value())? {
                            break;
                        }
                    }
                }
                // Expired uploads are never swept again.
                MediaState::Expired => {}
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
        .write(None, move |txn| {
            let mut t = txn.open_table(MEDIA).map_err(storage)?;
            let Some(rec) = from_json_opt::<MediaRecord>(t.remove(id.as_str()).map_err(storage)?)?
            else {
                return Ok(None);
            };
            let mut p = txn.open_table(MEDIA_PENDING).map_err(storage)?;
            p.remove(id.as_str()).map_err(storage)?;
            if rec.state == MediaState::Ready {
                mark_messages_expired(txn, &rec)?;
                let gone = MediaRecord {
                    state: MediaState::Expired,
                    ..rec.clone()
                };
                let mut g = txn.open_table(MEDIA_GONE).map_err(storage)?;
                g.insert(id.as_str(), to_json(&gone)?.as_slice())
                    .map_err(storage)?;
            }
            Ok(Some(rec))
        })
        .await
}

/// Marks `"expired": true` in the `media` of every message that carries `rec`.
fn mark_messages_expired(txn: &WriteTransaction, rec: &MediaRecord) -> Result<()> {
    let mut messages = txn.open_table(MESSAGES).map_err(storage)?;
    for (chat, msg) in &rec.sent_in {
        let mut m = match load_message(&messages, chat, *msg) {
            Ok(m) => m,
            // A message gone (a removed chat) has nothing left to mark.
            Err(StoreError::Corrupt { .. }) => continue,
            Err(e) => return Err(e),
        };
        m.mark_media_expired();
        messages
            .insert((chat.as_str(), msg.0), to_json(&m)?.as_slice())
            .map_err(storage)?;
    }
    Ok(())
}
