//! Media: who may send and fetch an upload, the upload a message carries, the checks behind
//! the local upload and download routes, and the retention sweep (the `media.upload` and
//! `media.url` requests are in `requests`).
//!
//! Who may do what lives here, not in the media service: only the uploader may send an upload, only
//! the uploader and current members of a chat it was sent in may download it, and an upload counts
//! only once its bytes matched what was announced.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, Stream};
use natter_media::{MediaError, Verb};
use natter_store::{MediaRecord, MediaState, StoreError};
use natter_types::clock::now_ms;
use natter_types::{ChatKey, MediaId, UserId};
use serde_json::{json, Value};

use crate::wire::MediaRef;
use crate::{Bridge, ChatError};

/// Most messages one upload may be sent in (forwards): bounds its record.
const MAX_SENDS: usize = 1000;
/// How long an abandoned upload (announced, never completed) is kept after its URL expired.
const ABANDONED_AFTER_MS: u64 = 3600 * 1000;
/// Records handled per store read in a sweep.
const SWEEP_BATCH: usize = 200;

/// Why an upload to, or a download from, natter's own media route was refused.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The media service refused (signature, expiry, size, hash, MIME, storage).
    #[error(transparent)]
    Media(#[from] MediaError),
    /// The upload already completed; its bytes never change.
    #[error("this upload is complete; ask for a new one to send other bytes")]
    Finished,
    /// Another upload to the same URL is running.
    #[error("another upload of this media is running")]
    Running,
    /// The uploader already has `media.max_uploads_per_user` uploads running.
    #[error("{user} already has {limit} uploads running; finish one first")]
    TooMany {
        /// The uploader.
        user: UserId,
        /// `media.max_uploads_per_user`.
        limit: usize,
    },
    /// Retention deleted it.
    #[error("this media expired and was deleted")]
    Expired,
    /// The store failed.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
}

/// Uploads running now, so that two PUTs of one upload never write at once and one user's
/// uploads cannot take every upload slot.
#[derive(Default)]
pub(crate) struct Running(Mutex<RunningSets>);

#[derive(Default)]
struct RunningSets {
    ids: HashSet<MediaId>,
    per_user: HashMap<UserId, usize>,
}

/// Holds an upload's place in [`Running`] while it runs.
struct RunningGuard<'a> {
    running: &'a Running,
    id: MediaId,
    user: UserId,
}

impl Running {
    /// Enters upload `id` of `user`, unless it is already running or `user` has `limit`
    /// uploads running.
    fn enter(
        &self,
        id: &MediaId,
        user: &UserId,
        limit: usize,
    ) -> Result<RunningGuard<'_>, TransferError> {
        let mut sets = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if sets.ids.contains(id) {
            return Err(TransferError::Running);
        }
        let mine = sets.per_user.entry(user.clone()).or_default();
        if *mine >= limit {
            return Err(TransferError::TooMany {
                user: user.clone(),
                limit,
            });
        }
        *mine += 1;
        sets.ids.insert(id.clone());
        metrics::gauge!("natter_media_uploads_running").increment(1.0);
        Ok(RunningGuard {
            running: self,
            id: id.clone(),
            user: user.clone(),
        })
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        let mut sets = self.running.0.lock().unwrap_or_else(|p| p.into_inner());
        sets.ids.remove(&self.id);
        if let Some(n) = sets.per_user.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                sets.per_user.remove(&self.user);
            }
        }
        metrics::gauge!("natter_media_uploads_running").decrement(1.0);
    }
}

/// A media service refusal as a chat error (for requests and Sends).
impl From<MediaError> for ChatError {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::TooLarge { .. } | MediaError::Oversize { .. } => {
                ChatError::MediaTooLarge(e.to_string())
            }
            MediaError::MimeRefused(_) => ChatError::MediaType(e.to_string()),
            MediaError::Busy => ChatError::Busy,
            // Only an upload's body has a deadline; no request meets it.
            MediaError::Deadline => ChatError::BadRequest(e.to_string()),
            MediaError::Full | MediaError::Storage(_) | MediaError::Config(_) => {
                ChatError::MediaStorage(e)
            }
            MediaError::BadSignature | MediaError::UrlExpired => {
                ChatError::NotAuthorized(e.to_string())
            }
            MediaError::Empty
            | MediaError::SizeMismatch { .. }
            | MediaError::HashMismatch
            | MediaError::NotUploaded
            | MediaError::Body(_) => ChatError::BadRequest(e.to_string()),
        }
    }
}

/// The same answer for an unknown id and someone else's: ids cannot be probed.
pub(crate) fn not_yours(id: &MediaId) -> ChatError {
    ChatError::NotAuthorized(format!("media {id} is not in any chat of yours"))
}

/// A MIME type without parameters, lowercase (`Image/PNG; q=1` → `image/png`).
pub(crate) fn essence(mime: &str) -> String {
    mime.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

impl Bridge {
    /// Whether `me` uploaded `rec`: the owner's name, and an upload not older than their
    /// account (one from before was a removed namesake's).
    async fn owns(&self, me: &UserId, rec: &MediaRecord) -> Result<bool, ChatError> {
        Ok(rec.owner == *me && rec.id.timestamp_ms() >= self.account_since(me).await?)
    }

    /// The uploader, and current members of a chat a message carrying it was sent in.
    pub(crate) async fn may_download(
        &self,
        me: &UserId,
        rec: &MediaRecord,
    ) -> Result<bool, ChatError> {
        if self.owns(me, rec).await? {
            return Ok(true);
        }
        let chats: HashSet<&ChatKey> = rec.sent_in.iter().map(|(c, _)| c).collect();
        for chat in chats {
            let Some(addr) = chat.addr_for(me) else {
                continue;
            };
            if self.may_read(me, &addr).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The `media` of a Send, checked: the sender's own upload, complete. Returns the id to
    /// link and what the message says about it (the server's size and type, the client's name).
    pub(crate) async fn attach_media(
        &self,
        me: &UserId,
        r: MediaRef,
    ) -> Result<(MediaId, Value), ChatError> {
        let rec = self
            .store
            .media(&r.id)
            .await?
            .ok_or_else(|| ChatError::NotAuthorized(format!("no upload {} of yours", r.id)))?;
        if !self.owns(me, &rec).await? {
            return Err(ChatError::NotAuthorized(format!(
                "media {} was uploaded by another user: upload it yourself to send it",
                r.id
            )));
        }
        match rec.state {
            MediaState::Ready => {}
            MediaState::Expired => {
                return Err(ChatError::Gone(format!("media {} expired", r.id)));
            }
            // Bytes PUT straight to a bucket are checked the first time they are sent.
            MediaState::Pending if !self.media.is_local() => {
                self.media
                    .check_stored(&rec.id, rec.size, rec.sha256.as_deref())
                    .await
                    .map_err(|e| match e {
                        MediaError::NotUploaded => ChatError::BadRequest(format!(
                            "media {} is not uploaded yet: PUT its bytes to the upload URL first",
                            r.id
                        )),
                        e => ChatError::from(e),
                    })?;
                self.store.media_ready(&rec.id).await?;
            }
            MediaState::Pending => {
                return Err(ChatError::BadRequest(format!(
                    "media {} is not uploaded yet: PUT its bytes to the upload URL first",
                    r.id
                )))
            }
        }
        if rec.sent_in.len() >= MAX_SENDS {
            return Err(ChatError::Limit(format!(
                "media {} was sent {MAX_SENDS} times; upload it again",
                r.id
            )));
        }
        let mut v = json!({"id": rec.id, "mime": rec.mime, "size": rec.size});
        if let Some(h) = &rec.sha256 {
            v["sha256"] = json!(h);
        }
        if let Some(name) = r.name {
            v["name"] = json!(name);
        }
        Ok((rec.id, v))
    }

    /// Receives the bytes of an upload PUT to natter's route with a signed URL: at most
    /// `media.max_uploads_per_user` at once per uploader, and the whole body before the URL
    /// expires.
    pub async fn receive_upload<S, E>(
        &self,
        id: &str,
        exp: u64,
        sig: &str,
        content_type: Option<&str>,
        content_length: Option<u64>,
        body: S,
    ) -> Result<MediaRecord, TransferError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        // An unknown id is refused like a tampered URL: ids cannot be probed.
        let id: MediaId = id.parse().map_err(|_| MediaError::BadSignature)?;
        let rec = self
            .store
            .media(&id)
            .await?
            .ok_or(MediaError::BadSignature)?;
        let verb = Verb::Put {
            size: rec.size,
            mime: &rec.mime,
        };
        self.media.check_url(&verb, &id, exp, sig)?;
        match rec.state {
            MediaState::Pending => {}
            MediaState::Ready => return Err(TransferError::Finished),
            MediaState::Expired => return Err(TransferError::Expired),
        }
        if let Some(ct) = content_type.map(essence) {
            if ct != rec.mime {
                return Err(MediaError::MimeRefused(ct).into());
            }
        }
        match content_length {
            Some(n) if n > rec.size => {
                return Err(MediaError::Oversize {
                    announced: rec.size,
                }
                .into())
            }
            Some(n) if n < rec.size => {
                return Err(MediaError::SizeMismatch {
                    announced: rec.size,
                    got: n,
                }
                .into())
            }
            _ => {}
        }
        let _running =
            self.uploads_running
                .enter(&id, &rec.owner, self.config.media.max_uploads_per_user)?;
        self.media
            .receive(
                &id,
                rec.size,
                rec.sha256.as_deref(),
                body,
                natter_media::url_deadline(exp),
            )
            .await?;
        self.store.media_ready(&id).await?;
        tracing::info!(media = %id, owner = %rec.owner, size = rec.size, "upload complete");
        Ok(MediaRecord {
            state: MediaState::Ready,
            ..rec
        })
    }

    /// Checks a GET with a signed URL: the upload it may read.
    pub async fn check_download(
        &self,
        id: &str,
        exp: u64,
        sig: &str,
    ) -> Result<MediaRecord, TransferError> {
        let id: MediaId = id.parse().map_err(|_| MediaError::BadSignature)?;
        self.media.check_url(&Verb::Get, &id, exp, sig)?;
        let rec = self
            .store
            .media(&id)
            .await?
            .ok_or(MediaError::NotUploaded)?;
        match rec.state {
            MediaState::Ready => Ok(rec),
            MediaState::Pending => Err(MediaError::NotUploaded.into()),
            MediaState::Expired => Err(TransferError::Expired),
        }
    }

    /// The bytes of an upload [`Bridge::check_download`] allowed, all or `range` of them.
    pub async fn download(
        &self,
        rec: &MediaRecord,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, MediaError>>, TransferError> {
        Ok(self.media.read_range(&rec.id, range).await?)
    }

    /// Starts the sweep that deletes expired media and abandoned uploads.
    pub fn start_media_sweep(self: &Arc<Self>) {
        let bridge = self.clone();
        let every = Duration::from_secs(self.config.media.sweep_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = bridge.sweep_media().await {
                    tracing::warn!(error = %e, "media sweep stopped early; next one goes on");
                }
            }
        });
    }

    /// One sweep: uploads never completed whose URL expired an hour ago, and (with retention
    /// on) media older than `media.retention_days`. Bytes go first, then the record: a crash
    /// between the two leaves a record the next sweep finishes.
    async fn sweep_media(&self) -> Result<(), ChatError> {
        let cfg = &self.config.media;
        let now = now_ms();
        let abandoned = now.saturating_sub(cfg.url_ttl_secs * 1000 + ABANDONED_AFTER_MS);
        let mut sweeps = vec![(MediaState::Pending, abandoned, "abandoned")];
        if cfg.retention_days > 0.0 {
            let keep_ms = (cfg.retention_days * 86_400_000.0) as u64;
            sweeps.push((MediaState::Ready, now.saturating_sub(keep_ms), "expired"));
        }
        for (state, before, what) in sweeps {
            loop {
                let batch = self.store.media_older(state, before, SWEEP_BATCH).await?;
                for rec in &batch {
                    self.media.delete(&rec.id).await?;
                    self.store.media_expire(&rec.id).await?;
                    metrics::counter!("natter_media_swept_total", "reason" => what).increment(1);
                    tracing::info!(media = %rec.id, owner = %rec.owner, reason = what, "media deleted");
                }
                if batch.len() < SWEEP_BATCH {
                    break;
                }
            }
        }
        Ok(())
    }
}
