//! The embedded backend: one fjall database (a log-structured engine) in a directory, durable at
//! every commit.
//!
//! This module owns the store's life: opening the file, the writer thread that commits sends,
//! receipts and read pointers in batches (`writer`), and the blocking threads that run reads
//! and small writes. Each section of [`crate::Store`] is a module of its own (users, messages,
//! inbox, receipts, groups, push, media) over the tables in `tables`. Nothing here may block
//! the async runtime: every fjall call runs on the writer thread or on a blocking thread.

mod db;
mod groups;
mod import;
mod inbox;
mod media;
mod messages;
mod push;
mod receipts;
mod refresh;
mod tables;
mod users;
mod writer;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use natter_types::{ChatKey, DeviceId, GroupId, MediaId, MsgId, Seq, UserId};
use tokio::sync::{mpsc, oneshot};

use crate::limits;
use crate::user_cache::UserCache;
use crate::{
    Appended, ChatSummary, GroupRecord, InboxItem, MediaRecord, MediaState, NewMessage, PushJob,
    PushPlatform, PushToken, ReadOutcome, ReceiptMark, ReceiptStatus, RefreshGrant, Result,
    Rotation, StoreError, StoredMessage, UserRecord,
};
use db::{storage, Handle, Tables};
use fjall::PersistMode;
pub use import::{import_redb, Imported};

/// A write transaction: the writer's batch, or one small write.
type Tx<'a> = fjall::SingleWriterWriteTx<'a>;
use writer::{Done, Job, Op};

/// How the embedded store is tuned.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Most sends per transaction.
    pub max_batch: usize,
    /// Sends waiting before new ones get [`StoreError::Busy`].
    pub max_queue: usize,
    /// How long a `(sender, cid)` pair deduplicates, in ms.
    pub dedup_ms: u64,
    /// fjall's block cache, in bytes.
    pub cache_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            max_batch: 512,
            max_queue: limits::DEFAULT_MAX_WAITING,
            dedup_ms: limits::DEFAULT_DEDUP_MS,
            cache_bytes: 64 << 20,
        }
    }
}

/// The fjall-backed [`crate::Store`].
pub struct EmbeddedStore {
    db: Arc<Handle>,
    writer: mpsc::Sender<Job>,
    users: Arc<UserCache>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in the directory `path` and starts its writer thread. The
    /// thread ends, and the database is closed, once the store is dropped and its queue is
    /// drained. Opening reads no more than fjall's journal (at most 64 MiB), whatever the
    /// store holds.
    pub fn open(path: &Path, opts: EmbeddedOptions) -> Result<EmbeddedStore> {
        let db = Arc::new(Handle::open(path, opts.cache_bytes)?);
        let (tx, rx) = mpsc::channel(opts.max_queue.max(1));
        let writer_db = db.clone();
        std::thread::Builder::new()
            .name("natter-store-writer".into())
            .spawn(move || writer::run(writer_db, rx, opts))
            .map_err(storage)?;
        Ok(EmbeddedStore {
            db,
            writer: tx,
            users: Arc::default(),
        })
    }

    /// Hands an operation to the writer thread and waits for its commit.
    async fn submit(&self, op: Op) -> Result<Done> {
        submit(&self.writer, op).await
    }

    /// Runs a read-only closure on a blocking thread, so that long reads never stall the
    /// async runtime.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&fjall::Snapshot, &Tables) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let db = db.get()?;
            f(&db.db.read_tx(), &db.t)
        })
        .await
        .map_err(storage)?
    }

    /// Runs a small write (user admin, push, media) on a blocking thread, committed durably.
    /// fjall serialises it with the message writer's transactions. With `changes` set, the user cache forgets that user once the
    /// write has ended, on the blocking thread: a caller that stops waiting cannot leave it
    /// stale.
    async fn write<T, F>(&self, changes: Option<&UserId>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>, &Tables) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        let forget = changes.map(|u| (self.users.clone(), u.clone()));
        tokio::task::spawn_blocking(move || {
            let out = db.get().and_then(|db| {
                let mut tx = db.db.write_tx().durability(Some(PersistMode::SyncAll));
                let out = f(&mut tx, &db.t)?;
                tx.commit().map_err(storage)?;
                Ok(out)
            });
            if let Some((cache, user)) = forget {
                cache.forget(&user);
            }
            out
        })
        .await
        .map_err(storage)?
    }
}

/// Hands an operation to the writer thread behind `writer` and waits for its commit.
async fn submit(writer: &mpsc::Sender<Job>, op: Op) -> Result<Done> {
    let (reply, rx) = oneshot::channel();
    writer.try_send(Job { op, reply }).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => StoreError::Busy,
        mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
    })?;
    rx.await.map_err(|_| StoreError::Closed)?
}

/// Each call is its section module's function; the writer's four (append, mark, read_upto,
/// remove_user)
/// go through the writer thread (`EmbeddedStore::submit`).
#[async_trait]
impl crate::Store for EmbeddedStore {
    async fn create_user(&self, user: UserRecord) -> Result<bool> {
        users::create_user(self, user).await
    }
    async fn set_password(&self, user: &UserId, password_hash: String) -> Result<bool> {
        users::set_password(self, user, password_hash).await
    }
    async fn user(&self, user: &UserId) -> Result<Option<UserRecord>> {
        users::user(self, user).await
    }
    async fn users(&self) -> Result<Vec<UserId>> {
        users::users(self).await
    }
    async fn remove_user(&self, user: &UserId) -> Result<bool> {
        users::remove_user(self, user).await
    }

    async fn append(&self, msg: NewMessage) -> Result<Appended> {
        match self.submit(Op::Append(Box::new(msg))).await? {
            Done::Appended(a) => Ok(*a),
            _ => Err(StoreError::corrupt(
                "writer answered an append with something else",
            )),
        }
    }
    async fn history(
        &self,
        chat: &ChatKey,
        before: Option<MsgId>,
        limit: usize,
    ) -> Result<(Vec<StoredMessage>, bool)> {
        messages::history(self, chat, before, limit).await
    }
    async fn message(&self, chat: &ChatKey, id: MsgId) -> Result<Option<StoredMessage>> {
        messages::message(self, chat, id).await
    }
    async fn purge_dedup(&self, older_than_ms: u64) -> Result<usize> {
        messages::purge_dedup(self, older_than_ms).await
    }

    async fn sync(
        &self,
        user: &UserId,
        after: Seq,
        limit: usize,
    ) -> Result<(Vec<InboxItem>, bool)> {
        inbox::sync(self, user, after, limit).await
    }
    async fn chats(&self, user: &UserId) -> Result<Vec<ChatSummary>> {
        inbox::chats(self, user).await
    }
    async fn in_chat(&self, user: &UserId, chat: &ChatKey) -> Result<bool> {
        inbox::in_chat(self, user, chat).await
    }

    async fn mark(&self, marks: Vec<ReceiptMark>) -> Result<Vec<bool>> {
        if marks.is_empty() {
            return Ok(Vec::new());
        }
        match self.submit(Op::Mark(marks)).await? {
            Done::Marked(m) => Ok(m),
            _ => Err(StoreError::corrupt(
                "writer answered a mark with something else",
            )),
        }
    }
    async fn read_upto(&self, user: &UserId, chat: &ChatKey, upto: Seq) -> Result<ReadOutcome> {
        let op = Op::Read {
            user: user.clone(),
            chat: chat.clone(),
            upto,
        };
        match self.submit(op).await? {
            Done::Read(r) => Ok(r),
            _ => Err(StoreError::corrupt(
                "writer answered a read with something else",
            )),
        }
    }
    async fn receipt(
        &self,
        chat: &ChatKey,
        id: MsgId,
        user: &UserId,
    ) -> Result<Option<ReceiptStatus>> {
        receipts::receipt(self, chat, id, user).await
    }

    async fn group(&self, id: &GroupId) -> Result<Option<GroupRecord>> {
        groups::group(self, id).await
    }
    async fn groups_of(&self, user: &UserId) -> Result<Vec<GroupId>> {
        groups::groups_of(self, user).await
    }

    async fn push_register(&self, token: PushToken) -> Result<()> {
        push::push_register(self, token).await
    }
    async fn push_unregister(&self, user: &UserId, device: &DeviceId) -> Result<bool> {
        push::push_unregister(self, user, device).await
    }
    async fn push_tokens(&self, user: &UserId) -> Result<Vec<PushToken>> {
        push::push_tokens(self, user).await
    }
    async fn push_forget(&self, platform: PushPlatform, token: &str) -> Result<bool> {
        push::push_forget(self, platform, token).await
    }
    async fn push_enqueue(&self, jobs: Vec<PushJob>) -> Result<()> {
        push::push_enqueue(self, jobs).await
    }
    async fn push_due(&self, now_ms: u64, limit: usize) -> Result<Vec<PushJob>> {
        push::push_due(self, now_ms, limit).await
    }
    async fn push_settle(&self, job: &PushJob, retry: Option<(u32, u64)>) -> Result<()> {
        push::push_settle(self, job, retry).await
    }

    async fn media_create(&self, media: MediaRecord) -> Result<()> {
        media::media_create(self, media).await
    }
    async fn media(&self, id: &MediaId) -> Result<Option<MediaRecord>> {
        media::media(self, id).await
    }
    async fn media_ready(&self, id: &MediaId) -> Result<bool> {
        media::media_ready(self, id).await
    }
    async fn media_older(
        &self,
        state: MediaState,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<MediaRecord>> {
        media::media_older(self, state, before_ms, limit).await
    }
    async fn media_expire(&self, id: &MediaId) -> Result<Option<MediaRecord>> {
        media::media_expire(self, id).await
    }

    async fn refresh_save(&self, grant: RefreshGrant, max_per_user: usize) -> Result<()> {
        refresh::save(self, grant, max_per_user).await
    }
    async fn refresh_rotate(
        &self,
        user: &UserId,
        family: &str,
        token_hash: &str,
        next_hash: &str,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<Rotation> {
        let next = (next_hash.to_owned(), expires_ms);
        refresh::rotate(self, user, family, token_hash, next, now_ms).await
    }
    async fn refresh_revoke(&self, user: &UserId, family: &str, token_hash: &str) -> Result<bool> {
        refresh::revoke(self, user, family, token_hash).await
    }

    async fn checkpoint(&self) -> Result<()> {
        self.submit(Op::Checkpoint).await.map(|_| ())
    }
}
