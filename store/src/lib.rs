//! Durable state: users, messages, inboxes, receipts, groups, push tokens and jobs, uploads,
//! and the dedup memory.
//!
//! This crate owns [`Store`], the one interface to that state, with what both backends share:
//! the records ([`UserRecord`], [`StoredMessage`], …), [`StoreError`], the bounds in [`limits`]
//! and, with the `conformance` feature, the suite every backend must pass (`conformance`).
//! [`embedded::EmbeddedStore`] (a fjall database, the default) is the first backend; the
//! `natter-cassandra` crate is the second. The store is the truth: what a call returned `Ok`
//! for is kept as [`Store`]'s "Durability" section says for each backend. The store must never
//! know about MQTT, topics or JSON payloads on the wire: it stores what the bridge decided, in
//! the bridge's types.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod embedded;
pub mod limits;
mod model;
mod user_cache;

pub use model::*;
pub use natter_types::PushPlatform;

use async_trait::async_trait;
use natter_types::{ChatKey, DeviceId, GroupId, MediaId, MsgId, Seq, UserId};

/// What can go wrong in a store.
///
/// `Storage` and `Corrupt` keep the error that caused them, if any, as their
/// [`source`](std::error::Error::source); their message already includes its words, so a
/// log line with the error alone says everything.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Too many writes are waiting; the caller should refuse this one (quota exceeded) and the
    /// client retry later.
    #[error("the store is busy: too many writes waiting")]
    Busy,
    /// The store was shut down.
    #[error("the store is closed")]
    Closed,
    /// The disk, database or cluster failed (full disk, I/O error, replicas unavailable). The
    /// embedded store kept nothing of the failed write; Cassandra may still apply it (see
    /// [`Store`]'s "Durability").
    #[error("storage failure: {what}")]
    Storage {
        /// What failed, in words that include the cause's.
        what: String,
        /// The error underneath, where there was one.
        #[source]
        cause: Option<Cause>,
    },
    /// Stored data could not be read back.
    #[error("corrupt record: {what}")]
    Corrupt {
        /// What could not be read, in words that include the cause's.
        what: String,
        /// The error underneath, where there was one.
        #[source]
        cause: Option<Cause>,
    },
}

impl StoreError {
    /// A storage failure with no error underneath (one the store itself decided).
    pub fn storage(what: impl Into<String>) -> StoreError {
        StoreError::Storage {
            what: what.into(),
            cause: None,
        }
    }

    /// A storage failure caused by `cause`; `what` says what failed and includes `cause`'s words.
    pub fn storage_from(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Storage {
            what: what.into(),
            cause: Some(Cause::new(cause)),
        }
    }

    /// A record that does not decode, with no error underneath.
    pub fn corrupt(what: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            what: what.into(),
            cause: None,
        }
    }

    /// A record that does not decode because of `cause`; `what` includes `cause`'s words.
    pub fn corrupt_from(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Corrupt {
            what: what.into(),
            cause: Some(Cause::new(cause)),
        }
    }
}

/// The error underneath a [`StoreError`], shared so that the error stays `Clone` (the embedded
/// writer answers every send of a failed batch with the same error).
///
/// It derefs to the error itself, which is what [`StoreError`]'s `source()` returns: a caller
/// can `downcast_ref` it to the backend's own error type (fjall's, the driver's, `io::Error`).
#[derive(Debug, Clone)]
pub struct Cause(std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    /// Keeps `e`.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause(std::sync::Arc::new(e))
    }
}

// Deliberately no `Error` impl: thiserror then reaches through `Deref` for `source()`, so the
// source is the caused error itself, not a wrapper that would defeat `downcast_ref`.
impl std::ops::Deref for Cause {
    type Target = dyn std::error::Error + Send + Sync + 'static;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// The result type of every store call.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Everything natter keeps. Implementations are shared between tasks (`Send + Sync`).
///
/// The calls come in sections (users, messages, inbox, receipts, groups, push, media); each
/// backend keeps one module per section.
///
/// # Durability
///
/// **Embedded** ([`embedded::EmbeddedStore`]). Every call that writes is one fjall write
/// transaction committed with `PersistMode::SyncAll`: the commit has written and fsynced
/// fjall's journal before the call returns `Ok`, so once it has returned,
/// `kill -9` or a power cut loses nothing of it (on a disk that honours fsync). `append`,
/// `mark` and `read_upto` are committed by one writer thread in batches of up to `max_batch`
/// calls, one transaction per batch, and none returns before its batch's commit: a crash loses
/// only calls that had not returned yet, each entirely (never a message without its inbox
/// entries). A batch that fails keeps none of its calls, and every call in it gets the error
/// (a commit whose write or fsync failed is settled by re-opening the journal: found whole, the
/// batch is synced and its calls succeed; otherwise none of it is there).
/// A caller that stops waiting may still find its write committed. Reads see committed data
/// only, each call one consistent snapshot.
///
/// **Cassandra** (`natter-cassandra`). Every read and write runs at the one configured
/// consistency (`store.cassandra.consistency`, `LOCAL_QUORUM` by default); lightweight
/// transactions (creating, re-passwording and removing a user, an upload's state changes)
/// take `LOCAL_SERIAL` for their Paxos round. `Ok` means that many replicas acknowledged the
/// write: with `LOCAL_QUORUM` and 3 replicas per datacenter, losing one node loses nothing
/// acknowledged and calls go on; losing two replicas of a partition makes the calls on it fail
/// ([`StoreError::Storage`]) until one is back. A replica acknowledges once the write is in its
/// commit log, which Cassandra fsyncs every `commitlog_sync_period` by default (`periodic`):
/// acknowledged writes survive a node's crash through the other replicas, but a power cut of
/// every replica within that period can lose them. With `ONE`/`LOCAL_ONE`, losing the one
/// replica that acknowledged can lose a write, and a read may miss a write just made. A send is
/// one logged batch (applied entirely, or replayed until it is) unless its values pass about
/// 40 KiB (a big group): then it is several batches in order, message first and dedup pair
/// last, each applied entirely. Other calls that write several rows (`remove_user`, an upload's
/// state change and its index) are not one transaction either. A call that fails, a timeout
/// above all, may still be applied.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Users.

    /// Creates a user, or returns `false` if one with that id exists.
    async fn create_user(&self, user: UserRecord) -> Result<bool>;
    /// Replaces a user's password hash; `false` if there is no such user.
    async fn set_password(&self, user: &UserId, password_hash: String) -> Result<bool>;
    /// A user, if it exists.
    async fn user(&self, user: &UserId) -> Result<Option<UserRecord>>;
    /// Every user id, sorted.
    async fn users(&self) -> Result<Vec<UserId>>;
    /// Removes a user (their messages stay in their chats); `false` if there was none.
    async fn remove_user(&self, user: &UserId) -> Result<bool>;

    // Messages.

    /// Stores a message and one inbox entry per reader, durably (see "Durability": one
    /// transaction in the embedded store, one logged batch where it fits in Cassandra).
    ///
    /// A `(sender, cid)` seen before (within the dedup window) returns the first message with
    /// `duplicate: true` and writes nothing.
    async fn append(&self, msg: NewMessage) -> Result<Appended>;
    /// A chat's messages before `before` (or the newest), newest first; `true` if older ones exist.
    async fn history(
        &self,
        chat: &ChatKey,
        before: Option<MsgId>,
        limit: usize,
    ) -> Result<(Vec<StoredMessage>, bool)>;
    /// One message of a chat, if it exists.
    async fn message(&self, chat: &ChatKey, id: MsgId) -> Result<Option<StoredMessage>>;
    /// Forgets `(sender, cid)` pairs older than `older_than_ms` (Unix ms); returns how many.
    async fn purge_dedup(&self, older_than_ms: u64) -> Result<usize>;

    // Inbox.

    /// The inbox of `user` after `after`, in seq order, at most `limit`; `true` if more follow.
    async fn sync(&self, user: &UserId, after: Seq, limit: usize)
        -> Result<(Vec<InboxItem>, bool)>;
    /// The chats `user` has messages in, with the last message and unread count, newest first.
    async fn chats(&self, user: &UserId) -> Result<Vec<ChatSummary>>;
    /// Whether `user` has an inbox entry in `chat`.
    async fn in_chat(&self, user: &UserId, chat: &ChatKey) -> Result<bool>;

    // Receipts.

    /// Records receipts; for each mark, `true` if `user` reached that status for that message
    /// just now (so the sender is told once), `false` if it already had.
    async fn mark(&self, marks: Vec<ReceiptMark>) -> Result<Vec<bool>>;
    /// Moves `user`'s read pointer in `chat` up to inbox seq `upto` (never back) and marks the
    /// messages from others it passes as read (at most [`limits::READ_SCAN`] inbox entries
    /// looked at, the newest [`limits::READ_REPORT`] reported).
    async fn read_upto(&self, user: &UserId, chat: &ChatKey, upto: Seq) -> Result<ReadOutcome>;
    /// How far `user` has got with message `id` of `chat`, if anywhere.
    async fn receipt(
        &self,
        chat: &ChatKey,
        id: MsgId,
        user: &UserId,
    ) -> Result<Option<ReceiptStatus>>;

    // Groups.

    /// A group, if it exists. (Groups are written by [`Store::append`] with `group_update`.)
    async fn group(&self, id: &GroupId) -> Result<Option<GroupRecord>>;
    /// The groups `user` is a member of now.
    async fn groups_of(&self, user: &UserId) -> Result<Vec<GroupId>>;

    // Push.

    /// Registers a device's push token, replacing the device's previous one; a token registered
    /// by another device before moves to this one.
    async fn push_register(&self, token: PushToken) -> Result<()>;
    /// Removes a device's push token; `false` if it had none.
    async fn push_unregister(&self, user: &UserId, device: &DeviceId) -> Result<bool>;
    /// Every push token of `user`.
    async fn push_tokens(&self, user: &UserId) -> Result<Vec<PushToken>>;
    /// Forgets a token the provider called dead, whichever device had it; `false` if unknown.
    async fn push_forget(&self, platform: PushPlatform, token: &str) -> Result<bool>;
    /// Stores jobs. A job for a (user, device, collapse) already waiting is replaced by the new
    /// content but keeps its attempts and due time (a backoff is never skipped).
    async fn push_enqueue(&self, jobs: Vec<PushJob>) -> Result<()>;
    /// Jobs due at `now_ms`, at most `limit`.
    async fn push_due(&self, now_ms: u64, limit: usize) -> Result<Vec<PushJob>>;
    /// Settles a send of `job`: `None` deletes it (sent or given up), `Some((attempts, due_ms))`
    /// reschedules it. If the job was collapsed with newer content meanwhile, a success leaves
    /// the newer content waiting and a retry moves its due time.
    async fn push_settle(&self, job: &PushJob, retry: Option<(u32, u64)>) -> Result<()>;

    // Media.

    /// Records an announced upload ([`MediaState::Pending`]).
    async fn media_create(&self, media: MediaRecord) -> Result<()>;
    /// An upload, whatever its state, if known.
    async fn media(&self, id: &MediaId) -> Result<Option<MediaRecord>>;
    /// Marks a pending upload ready; `false` if it is not pending (unknown, ready or expired).
    async fn media_ready(&self, id: &MediaId) -> Result<bool>;
    /// Uploads in `state` announced before `before_ms` (Unix ms), oldest first, at most `limit`.
    async fn media_older(
        &self,
        state: MediaState,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<MediaRecord>>;
    /// Ends an upload's life: a pending one is forgotten; a ready one becomes
    /// [`MediaState::Expired`] and every message carrying it is marked `"expired": true` in its
    /// `media` (one transaction in the embedded store; in Cassandra the state change first,
    /// then each message). Returns the record as it was, if known.
    async fn media_expire(&self, id: &MediaId) -> Result<Option<MediaRecord>>;

    // Refresh grants (`POST /v1/token/refresh`).

    /// Saves a new session's grant. The user's lapsed grants are dropped and, past
    /// `max_per_user`, those that lapse soonest, so a user's grants stay bounded.
    async fn refresh_save(&self, grant: RefreshGrant, max_per_user: usize) -> Result<()>;
    /// Replaces the current token `token_hash` of `user`'s grant `family` by `next_hash`, to
    /// lapse at `expires_ms`, in one step: of two calls with the same token, one rotates and
    /// the other finds it [`Rotation::Reused`]. A grant lapsed at `now_ms` is
    /// [`Rotation::Unknown`].
    async fn refresh_rotate(
        &self,
        user: &UserId,
        family: &str,
        token_hash: &str,
        next_hash: &str,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<Rotation>;
    /// Drops `user`'s grant `family` if `token_hash` is its current token; `false` otherwise.
    async fn refresh_revoke(&self, user: &UserId, family: &str, token_hash: &str) -> Result<bool>;

    /// Called once at a clean shutdown, after the last write: leaves the store so that the
    /// next start is quick. The embedded store writes what its memory tables hold into its
    /// sorted files, so that opening it replays no journal; Cassandra has nothing to do.
    async fn checkpoint(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn a_storage_error_says_what_failed_and_keeps_its_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full");
        let e = StoreError::storage_from(io.to_string(), io);
        assert_eq!(e.to_string(), "storage failure: disk full");
        let cause = e.clone().source().map(|c| c.to_string());
        assert_eq!(cause.as_deref(), Some("disk full"));
        let io = e.source().and_then(|c| c.downcast_ref::<std::io::Error>());
        assert_eq!(io.map(|e| e.kind()), Some(std::io::ErrorKind::StorageFull));
        assert!(StoreError::corrupt("bad row").source().is_none());
    }
}
