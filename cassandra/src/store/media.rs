//! Media: uploads from announced to ready to expired, each state change a lightweight
//! transaction, and the per-state, per-day index the retention sweeps read.

use natter_store::{MediaRecord, MediaState, StoreError, StoredMessage};
use natter_types::clock::now_ms;
use natter_types::{ChatKey, MediaId, MsgId, UserId};
use scylla::value::CqlValue;

use super::exec::Write;
use super::values::{as_u64, big, blob, from_json, text, to_json};
use super::CassandraStore;
use crate::buckets::{bucket_of_ms, id_blob, message_bucket, MEDIA_BUCKET_MS};
use crate::{corrupt, Result};

/// A state as its `media.state` and `media_index.state` text.
fn state_name(s: MediaState) -> &'static str {
    match s {
        MediaState::Pending => "pending",
        MediaState::Ready => "ready",
        MediaState::Expired => "expired",
    }
}

/// The state a `state` column names.
fn parse_state(s: &str) -> Result<MediaState> {
    match s {
        "pending" => Ok(MediaState::Pending),
        "ready" => Ok(MediaState::Ready),
        "expired" => Ok(MediaState::Expired),
        other => Err(StoreError::corrupt(format!(
            "unknown media state {other:?}"
        ))),
    }
}

/// A message that carries an upload, as kept in `media.sent_in`: the 26-character id first, so
/// the set sorts by time and the chat key (which may hold any character) is the rest.
fn sent_in_entry(chat: &ChatKey, id: MsgId) -> String {
    format!("{id}/{}", chat.as_str())
}

/// The message a [`sent_in_entry`] names.
fn parse_sent_in(s: &str) -> Result<(ChatKey, MsgId)> {
    let (id, chat) = s
        .split_once('/')
        .ok_or_else(|| StoreError::corrupt(format!("media sent_in entry {s:?}")))?;
    let id: MsgId = id
        .parse()
        .map_err(|e| StoreError::corrupt_from(format!("media sent_in id {id:?}"), e))?;
    Ok((ChatKey::from_stored(chat.to_owned()), id))
}

impl CassandraStore {
    /// [`natter_store::Store::media`]: the upload's row, if it is one.
    pub(super) async fn media_record(&self, id: &MediaId) -> Result<Option<MediaRecord>> {
        type MediaRow = (
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<Vec<String>>,
        );
        let row: Option<MediaRow> = self.one(&self.st.media_get, (id.as_str(),)).await?;
        let Some((owner, mime, size, sha256, state, sent_in)) = row else {
            return Ok(None);
        };
        // A row with only `sent_in` is a link written after the upload was forgotten.
        let (Some(owner), Some(state)) = (owner, state) else {
            return Ok(None);
        };
        Ok(Some(MediaRecord {
            id: id.clone(),
            owner: UserId::new(&owner).map_err(corrupt)?,
            mime: mime.unwrap_or_default(),
            size: as_u64(size.unwrap_or(0)),
            sha256: sha256.filter(|s| !s.is_empty()),
            state: parse_state(&state)?,
            sent_in: sent_in
                .unwrap_or_default()
                .iter()
                .map(|s| parse_sent_in(s))
                .collect::<Result<_>>()?,
        }))
    }

    /// The write that notes message `id` of `chat` carries `media`, into a send's batch.
    /// Linked only while the upload is known, as in the embedded store.
    pub(super) async fn link_writes(
        &self,
        media: &MediaId,
        chat: &ChatKey,
        id: MsgId,
        writes: &mut Vec<Write>,
    ) -> Result<()> {
        if self.media_record(media).await?.is_some() {
            writes.push(self.w(
                &self.st.media_link,
                vec![
                    CqlValue::Set(vec![text(&sent_in_entry(chat, id))]),
                    text(media.as_str()),
                ],
            ));
        }
        Ok(())
    }

    /// Moves an upload's index entry from one state's list to another's (or off the lists).
    async fn reindex(&self, id: &MediaId, from: MediaState, to: Option<MediaState>) -> Result<()> {
        let day = bucket_of_ms(id.timestamp_ms(), MEDIA_BUCKET_MS);
        let mut writes = vec![self.w(
            &self.st.index_delete,
            vec![
                text(state_name(from)),
                CqlValue::Int(day),
                text(id.as_str()),
            ],
        )];
        if let Some(to) = to {
            writes.push(self.w(
                &self.st.index_put,
                vec![text(state_name(to)), CqlValue::Int(day), text(id.as_str())],
            ));
            writes.push(self.w(
                &self.st.day_put,
                vec![text(state_name(to)), CqlValue::Int(day)],
            ));
        }
        self.write_all(writes).await
    }

    /// Marks message `id` of `chat` as carrying expired media, keeping its remaining TTL.
    async fn mark_expired(&self, chat: &ChatKey, id: MsgId) -> Result<()> {
        let bucket = message_bucket(id);
        let row: Option<(String, Option<i32>)> = self
            .one(&self.st.msg_get_ttl, (chat.as_str(), bucket, id_blob(id)))
            .await?;
        // A message gone (its TTL passed) has nothing left to mark.
        let Some((body, ttl)) = row else {
            return Ok(());
        };
        let mut m: StoredMessage = from_json(&body)?;
        m.mark_media_expired();
        let w = self.w(
            &self.st.msg_insert,
            vec![
                text(chat.as_str()),
                CqlValue::Int(bucket),
                blob(id),
                CqlValue::Text(to_json(&m)?),
                CqlValue::Int(ttl.unwrap_or(0).max(0)),
            ],
        );
        self.write_batch(vec![w]).await
    }
}

/// [`natter_store::Store::media_create`].
pub(super) async fn media_create(s: &CassandraStore, media: MediaRecord) -> Result<()> {
    let day = bucket_of_ms(media.id.timestamp_ms(), MEDIA_BUCKET_MS);
    let state = state_name(media.state);
    s.write_all(vec![
        s.w(
            &s.st.media_insert,
            vec![
                text(media.id.as_str()),
                text(media.owner.as_str()),
                text(&media.mime),
                big(media.size),
                text(media.sha256.as_deref().unwrap_or("")),
                text(state),
            ],
        ),
        s.w(
            &s.st.index_put,
            vec![text(state), CqlValue::Int(day), text(media.id.as_str())],
        ),
        s.w(&s.st.day_put, vec![text(state), CqlValue::Int(day)]),
    ])
    .await
}

/// [`natter_store::Store::media_ready`].
pub(super) async fn media_ready(s: &CassandraStore, id: &MediaId) -> Result<bool> {
    let applied = s
        .lwt(&s.st.media_advance, ("ready", id.as_str(), "pending"))
        .await?;
    if applied {
        // Not atomic with the state change: a crash here leaves the entry on the pending list,
        // and the pending sweep moves it when it meets it (see `media_older`).
        s.reindex(id, MediaState::Pending, Some(MediaState::Ready))
            .await?;
    }
    Ok(applied)
}

/// [`natter_store::Store::media_older`]: the state's days up to `before_ms`, oldest first,
/// mending index entries a crash left behind as it meets them.
pub(super) async fn media_older(
    s: &CassandraStore,
    state: MediaState,
    before_ms: u64,
    limit: usize,
) -> Result<Vec<MediaRecord>> {
    if state == MediaState::Expired {
        // Expired uploads are never swept again.
        return Ok(Vec::new());
    }
    let name = state_name(state);
    let floor = MediaId::floor_at(before_ms);
    let top = bucket_of_ms(before_ms, MEDIA_BUCKET_MS);
    let today = bucket_of_ms(now_ms(), MEDIA_BUCKET_MS);
    let days: Vec<(i32,)> = s.all(&s.st.days_upto, (name, top)).await?;
    let mut out = Vec::new();
    for (day,) in days {
        let want = (limit - out.len()).min(i32::MAX as usize) as i32;
        let ids: Vec<(String,)> = s
            .rows(&s.st.index_page, (name, day, floor.as_str(), want))
            .await?;
        if ids.is_empty() && day < today && day < top {
            // A past day with nothing left on this list gets no more entries: forget it so
            // sweeps stop reading it.
            s.write_batch(vec![
                s.w(&s.st.day_delete, vec![text(name), CqlValue::Int(day)])
            ])
            .await?;
        }
        for (id,) in ids {
            let id = MediaId::new(&id).map_err(corrupt)?;
            match s.media_record(&id).await? {
                Some(rec) if rec.state == state => out.push(rec),
                // An index entry left behind by a crash between a state change and its
                // reindex: put it where the record says.
                Some(rec) => {
                    let to = (rec.state != MediaState::Expired).then_some(rec.state);
                    s.reindex(&id, state, to).await?;
                }
                None => s.reindex(&id, state, None).await?,
            }
        }
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// [`natter_store::Store::media_expire`].
pub(super) async fn media_expire(s: &CassandraStore, id: &MediaId) -> Result<Option<MediaRecord>> {
    let Some(rec) = s.media_record(id).await? else {
        return Ok(None);
    };
    match rec.state {
        MediaState::Expired => Ok(None),
        MediaState::Pending => {
            if !s.lwt(&s.st.media_delete, (id.as_str(), "pending")).await? {
                // It became ready meanwhile: the next sweep of ready uploads decides.
                return Ok(None);
            }
            s.reindex(id, MediaState::Pending, None).await?;
            Ok(Some(rec))
        }
        MediaState::Ready => {
            if !s
                .lwt(&s.st.media_advance, ("expired", id.as_str(), "ready"))
                .await?
            {
                return Ok(None);
            }
            for (chat, msg) in &rec.sent_in {
                s.mark_expired(chat, *msg).await?;
            }
            s.reindex(id, MediaState::Ready, None).await?;
            Ok(Some(rec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_in_entries_round_trip_with_any_chat_key() {
        let chat = ChatKey::from_stored("d:al/ice:bob".into());
        let id = MsgId(ulid::Ulid::from_parts(1_700_000_000_000, 9).0);
        let s = sent_in_entry(&chat, id);
        assert_eq!(parse_sent_in(&s).unwrap(), (chat, id));
        assert!(parse_sent_in("garbage").is_err());
    }
}
