//! Each [`Store`] call as CQL: which partitions it reads, which rows it writes and in which
//! batches.
//!
//! This module owns the connected store: the session, the prepared statements
//! (`statements`), the per-user owners, the bound on writes in flight and the id clock. Each
//! section of [`Store`] is a module of its own (users, messages, inbox, receipts, groups, push,
//! media) over the helpers in `exec` (running statements) and `values` (CQL values). It must
//! never run CQL that `statements` does not list, nor read a table without naming a partition
//! (the admin-only user list aside).

mod exec;
mod groups;
mod inbox;
mod media;
mod messages;
mod push;
mod receipts;
mod refresh;
mod statements;
mod users;
mod values;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex as StdMutex};

use async_trait::async_trait;
use natter_store::{
    Appended, ChatSummary, GroupRecord, InboxItem, MediaRecord, MediaState, NewMessage, PushJob,
    PushPlatform, PushToken, ReadOutcome, ReceiptMark, ReceiptStatus, RefreshGrant, Rotation,
    Store, StoredMessage, UserRecord,
};
use natter_types::{ChatKey, DeviceId, GroupId, MediaId, MsgId, Seq, UserId};
use scylla::client::session::Session;
use scylla::value::CqlValue;
use tokio::sync::Semaphore;

use crate::owner::Owners;
use crate::{storage, CassandraOptions, Result};
use statements::Statements;
pub use statements::STATEMENTS;

/// Reads issued at once when one call needs many rows (an inbox page's messages).
const FAN_OUT: usize = 32;

/// The Cassandra/ScyllaDB-backed [`Store`].
pub struct CassandraStore {
    session: Session,
    st: Statements,
    opts: CassandraOptions,
    owners: Owners,
    /// Bounds the writes in flight: past it, sends are refused (`Busy`) rather than queued.
    in_flight: Arc<Semaphore>,
    /// The last message id given out: ids are ULIDs forced to grow, as in the embedded store.
    last_id: StdMutex<u128>,
    /// The dedup hours already purged up to, so a purge reads only the hours since.
    purged_hour: AtomicU64,
}

impl CassandraStore {
    /// Connects, creates or migrates the schema, and prepares every statement.
    pub async fn connect(opts: CassandraOptions) -> Result<CassandraStore> {
        let session = crate::connect(&opts).await?;
        let st = Statements::prepare(&session).await?;
        Ok(CassandraStore {
            session,
            st,
            in_flight: Arc::new(Semaphore::new(opts.max_in_flight.max(1))),
            opts,
            owners: Owners::default(),
            last_id: StdMutex::new(0),
            purged_hour: AtomicU64::new(0),
        })
    }

    /// Drops natter's whole keyspace, every table and row in it. For tests that made their
    /// own keyspace; never called by natter itself.
    pub async fn drop_keyspace(self) -> Result<()> {
        let ks = self.opts.keyspace.clone();
        self.session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
            .await
            .map_err(storage)?;
        Ok(())
    }

    /// The TTL of message, inbox, chat log and receipt rows (0: none).
    fn ttl(&self) -> CqlValue {
        CqlValue::Int(self.opts.message_ttl_secs.min(i32::MAX as u32) as i32)
    }

    /// The TTL of dedup rows: the dedup window, in whole seconds.
    fn dedup_ttl(&self) -> CqlValue {
        let secs = self.opts.dedup_ms.div_ceil(1000).clamp(1, i32::MAX as u64);
        CqlValue::Int(secs as i32)
    }

    /// A new message id, greater than every one this process gave out.
    fn next_id(&self) -> MsgId {
        let mut last = self.last_id.lock().unwrap_or_else(|e| e.into_inner());
        *last = ulid::Ulid::new().0.max(*last + 1);
        MsgId(*last)
    }
}

/// Each call is its section module's function.
#[async_trait]
impl Store for CassandraStore {
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
        messages::append(self, msg).await
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
        self.message_at(chat, id).await
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
        receipts::mark(self, marks).await
    }
    async fn read_upto(&self, user: &UserId, chat: &ChatKey, upto: Seq) -> Result<ReadOutcome> {
        receipts::read_upto(self, user, chat, upto).await
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
        self.media_record(id).await
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
        let next = (next_hash, expires_ms);
        refresh::rotate(self, user, family, token_hash, next, now_ms).await
    }
    async fn refresh_revoke(&self, user: &UserId, family: &str, token_hash: &str) -> Result<bool> {
        refresh::revoke(self, user, family, token_hash).await
    }
}
