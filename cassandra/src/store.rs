//! Each [`Store`] call as CQL: which partitions it reads, which rows it writes and in which
//! batches.

use natter_types::clock::now_ms;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use natter_store::{
    Appended, ChatSummary, GroupRecord, InboxItem, MediaRecord, MediaState, NewMessage, PushJob,
    PushPlatform, PushToken, ReadOutcome, ReceiptMark, ReceiptStatus, Store, StoreError,
    StoredMessage, UserRecord,
};
use natter_types::{ChatKey, DeviceId, GroupId, MediaId, MsgId, Seq, UserId};
use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};
use tokio::sync::Semaphore;

use crate::buckets::{
    blob_id, bucket_of_ms, id_blob, inbox_bucket, message_bucket, DEDUP_BUCKET_MS, MEDIA_BUCKET_MS,
};
use crate::owner::Owners;
use crate::{corrupt, storage, CassandraOptions, Result};

/// Most inbox entries one read-pointer move looks at, and most messages it reports, as in the
/// embedded store.
const READ_SCAN: usize = 5000;
const READ_REPORT: usize = 1000;
/// Shards of the push job queue (a user's jobs live in one).
const PUSH_SHARDS: i32 = 16;
/// Reads issued at once when one call needs many rows (an inbox page's messages).
const FAN_OUT: usize = 32;
/// A logged batch larger than this (in bytes of values) is split. Cassandra refuses batches
/// over `batch_size_fail_threshold` (50 KiB by default) and warns from 5 KiB.
const BATCH_BYTES: usize = 40 * 1024;

/// A `chat_state` row: last message id, last seq, unread, read pointer (any may be null once
/// the message TTL passed).
type ChatStateRow = (Option<Vec<u8>>, Option<i64>, Option<i64>, Option<i64>);

/// One write: a prepared statement and its values, so that writes of different shapes can go
/// into one batch.
struct Write {
    stmt: PreparedStatement,
    values: Vec<CqlValue>,
}

impl Write {
    fn size(&self) -> usize {
        self.values
            .iter()
            .map(|v| match v {
                CqlValue::Text(s) => s.len(),
                CqlValue::Blob(b) => b.len(),
                CqlValue::Set(items) => items.len() * 48,
                _ => 8,
            })
            .sum::<usize>()
            + 32
    }
}

fn text(s: &str) -> CqlValue {
    CqlValue::Text(s.to_owned())
}

fn big(n: u64) -> CqlValue {
    CqlValue::BigInt(n.min(i64::MAX as u64) as i64)
}

fn blob(id: MsgId) -> CqlValue {
    CqlValue::Blob(id_blob(id))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(corrupt)
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(corrupt)
}

fn as_u64(n: i64) -> u64 {
    n.max(0) as u64
}

/// The push-queue shard of a user: FNV-1a, stable across processes and versions.
fn shard_of(user: &UserId) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in user.as_str().bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % PUSH_SHARDS as u32) as i32
}

/// The primary key of a push job's row: shard, user, device, collapse key.
fn job_key(job: &PushJob) -> Vec<CqlValue> {
    vec![
        CqlValue::Int(shard_of(&job.user)),
        text(job.user.as_str()),
        text(job.device.as_str()),
        text(&job.collapse),
    ]
}

fn state_name(s: MediaState) -> &'static str {
    match s {
        MediaState::Pending => "pending",
        MediaState::Ready => "ready",
        MediaState::Expired => "expired",
    }
}

fn parse_state(s: &str) -> Result<MediaState> {
    match s {
        "pending" => Ok(MediaState::Pending),
        "ready" => Ok(MediaState::Ready),
        "expired" => Ok(MediaState::Expired),
        other => Err(corrupt(format!("unknown media state {other:?}"))),
    }
}

/// A message that carries an upload, as kept in `media.sent_in`: the 26-character id first, so
/// the set sorts by time and the chat key (which may hold any character) is the rest.
fn sent_in_entry(chat: &ChatKey, id: MsgId) -> String {
    format!("{id}/{}", chat.as_str())
}

fn parse_sent_in(s: &str) -> Result<(ChatKey, MsgId)> {
    let (id, chat) = s
        .split_once('/')
        .ok_or_else(|| corrupt(format!("media sent_in entry {s:?}")))?;
    let id: MsgId = id
        .parse()
        .map_err(|_| corrupt(format!("media sent_in id {id:?}")))?;
    Ok((ChatKey::from_stored(chat.to_owned()), id))
}

/// Every prepared statement, prepared once at start (the driver re-prepares on a node that lost
/// them). Fields are named after what they do.
struct Statements {
    user_insert: PreparedStatement,
    user_set_password: PreparedStatement,
    user_get: PreparedStatement,
    user_ids: PreparedStatement,
    user_delete: PreparedStatement,
    msg_insert: PreparedStatement,
    msg_get: PreparedStatement,
    msg_get_ttl: PreparedStatement,
    msg_page: PreparedStatement,
    bucket_insert: PreparedStatement,
    buckets_upto: PreparedStatement,
    inbox_insert: PreparedStatement,
    inbox_page: PreparedStatement,
    head_set: PreparedStatement,
    head_get: PreparedStatement,
    state_put: PreparedStatement,
    state_get: PreparedStatement,
    state_all: PreparedStatement,
    state_read: PreparedStatement,
    dedup_get: PreparedStatement,
    dedup_insert: PreparedStatement,
    dedup_delete: PreparedStatement,
    dedup_hour_insert: PreparedStatement,
    dedup_hour_list: PreparedStatement,
    dedup_hour_delete: PreparedStatement,
    group_get: PreparedStatement,
    group_put: PreparedStatement,
    member_put: PreparedStatement,
    member_delete: PreparedStatement,
    groups_of: PreparedStatement,
    receipt_get: PreparedStatement,
    receipt_put: PreparedStatement,
    token_get: PreparedStatement,
    tokens_of: PreparedStatement,
    token_put: PreparedStatement,
    token_delete: PreparedStatement,
    owner_get: PreparedStatement,
    owner_put: PreparedStatement,
    owner_delete: PreparedStatement,
    job_get: PreparedStatement,
    job_put: PreparedStatement,
    job_delete: PreparedStatement,
    jobs_in_shard: PreparedStatement,
    jobs_of_user: PreparedStatement,
    media_insert: PreparedStatement,
    media_get: PreparedStatement,
    media_advance: PreparedStatement,
    media_link: PreparedStatement,
    media_delete: PreparedStatement,
    index_put: PreparedStatement,
    index_delete: PreparedStatement,
    index_page: PreparedStatement,
    day_put: PreparedStatement,
    days_upto: PreparedStatement,
    day_delete: PreparedStatement,
    inbox_drop: PreparedStatement,
    head_drop: PreparedStatement,
    state_drop: PreparedStatement,
    dedup_drop: PreparedStatement,
}

/// Every CQL statement natter runs after start, by name; public so that a test (or an
/// operator's check) can prepare them against a cluster.
pub const STATEMENTS: &[(&str, &str)] = &[
    ("user_insert", "INSERT INTO users (id, password_hash, created_ms) VALUES (?, ?, ?) IF NOT EXISTS"),
    // Conditional on the creation time read just before: a user removed (or removed and made
    // again) meanwhile is not changed.
    ("user_set_password", "UPDATE users SET password_hash = ? WHERE id = ? IF created_ms = ?"),
    ("user_get", "SELECT id, password_hash, created_ms FROM users WHERE id = ?"),
    ("user_ids", "SELECT id FROM users"),
    ("user_delete", "DELETE FROM users WHERE id = ? IF EXISTS"),
    ("msg_insert", "INSERT INTO messages (chat, bucket, id, body) VALUES (?, ?, ?, ?) USING TTL ?"),
    ("msg_get", "SELECT body FROM messages WHERE chat = ? AND bucket = ? AND id = ?"),
    ("msg_get_ttl", "SELECT body, TTL(body) FROM messages WHERE chat = ? AND bucket = ? AND id = ?"),
    ("msg_page", "SELECT body FROM messages WHERE chat = ? AND bucket = ? AND id < ? LIMIT ?"),
    ("bucket_insert", "INSERT INTO chat_buckets (chat, bucket) VALUES (?, ?)"),
    ("buckets_upto", "SELECT bucket FROM chat_buckets WHERE chat = ? AND bucket <= ?"),
    ("inbox_insert", "INSERT INTO inbox (uid, bucket, seq, chat, id) VALUES (?, ?, ?, ?, ?) USING TTL ?"),
    ("inbox_page", "SELECT seq, chat, id FROM inbox WHERE uid = ? AND bucket = ? AND seq >= ? AND seq <= ? LIMIT ?"),
    ("head_set", "INSERT INTO inbox_heads (uid, seq) VALUES (?, ?)"),
    ("head_get", "SELECT seq FROM inbox_heads WHERE uid = ?"),
    ("state_put", "INSERT INTO chat_state (uid, chat, last_id, last_seq, unread, read_seq) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?"),
    ("state_get", "SELECT last_id, last_seq, unread, read_seq FROM chat_state WHERE uid = ? AND chat = ?"),
    ("state_all", "SELECT chat, last_id, last_seq, unread FROM chat_state WHERE uid = ?"),
    ("state_read", "UPDATE chat_state SET unread = ?, read_seq = ? WHERE uid = ? AND chat = ?"),
    ("dedup_get", "SELECT chat, id, ts FROM dedup WHERE sender = ? AND cid = ?"),
    ("dedup_insert", "INSERT INTO dedup (sender, cid, chat, id, ts) VALUES (?, ?, ?, ?, ?) USING TTL ?"),
    ("dedup_delete", "DELETE FROM dedup WHERE sender = ? AND cid = ?"),
    ("dedup_hour_insert", "INSERT INTO dedup_by_hour (hour, sender, cid, ts) VALUES (?, ?, ?, ?) USING TTL ?"),
    ("dedup_hour_list", "SELECT sender, cid, ts FROM dedup_by_hour WHERE hour = ?"),
    ("dedup_hour_delete", "DELETE FROM dedup_by_hour WHERE hour = ? AND sender = ? AND cid = ?"),
    ("group_get", "SELECT record FROM groups WHERE id = ?"),
    ("group_put", "INSERT INTO groups (id, record) VALUES (?, ?)"),
    ("member_put", "INSERT INTO memberships (uid, grp) VALUES (?, ?)"),
    ("member_delete", "DELETE FROM memberships WHERE uid = ? AND grp = ?"),
    ("groups_of", "SELECT grp FROM memberships WHERE uid = ?"),
    ("receipt_get", "SELECT status FROM receipts WHERE chat = ? AND id = ? AND uid = ?"),
    ("receipt_put", "INSERT INTO receipts (chat, id, uid, status) VALUES (?, ?, ?, ?) USING TTL ?"),
    ("token_get", "SELECT platform, push_token FROM push_tokens WHERE uid = ? AND device = ?"),
    ("tokens_of", "SELECT device, platform, push_token FROM push_tokens WHERE uid = ?"),
    ("token_put", "INSERT INTO push_tokens (uid, device, platform, push_token) VALUES (?, ?, ?, ?)"),
    ("token_delete", "DELETE FROM push_tokens WHERE uid = ? AND device = ?"),
    ("owner_get", "SELECT uid, device FROM push_owners WHERE platform = ? AND push_token = ?"),
    ("owner_put", "INSERT INTO push_owners (platform, push_token, uid, device) VALUES (?, ?, ?, ?)"),
    ("owner_delete", "DELETE FROM push_owners WHERE platform = ? AND push_token = ?"),
    ("job_get", "SELECT job FROM push_jobs WHERE shard = ? AND uid = ? AND device = ? AND collapse = ?"),
    ("job_put", "INSERT INTO push_jobs (shard, uid, device, collapse, job) VALUES (?, ?, ?, ?, ?)"),
    ("job_delete", "DELETE FROM push_jobs WHERE shard = ? AND uid = ? AND device = ? AND collapse = ?"),
    ("jobs_in_shard", "SELECT job FROM push_jobs WHERE shard = ?"),
    ("jobs_of_user", "SELECT device, collapse FROM push_jobs WHERE shard = ? AND uid = ?"),
    ("media_insert", "INSERT INTO media (id, owner, mime, size, sha256, state) VALUES (?, ?, ?, ?, ?, ?)"),
    ("media_get", "SELECT owner, mime, size, sha256, state, sent_in FROM media WHERE id = ?"),
    // Every state change is a lightweight transaction from the state it expects, so a sweep
    // and an upload finishing at once cannot both win.
    ("media_advance", "UPDATE media SET state = ? WHERE id = ? IF state = ?"),
    ("media_link", "UPDATE media SET sent_in = sent_in + ? WHERE id = ?"),
    ("media_delete", "DELETE FROM media WHERE id = ? IF state = ?"),
    ("index_put", "INSERT INTO media_index (state, day, id) VALUES (?, ?, ?)"),
    ("index_delete", "DELETE FROM media_index WHERE state = ? AND day = ? AND id = ?"),
    ("index_page", "SELECT id FROM media_index WHERE state = ? AND day = ? AND id < ? LIMIT ?"),
    ("day_put", "INSERT INTO media_days (state, day) VALUES (?, ?)"),
    ("days_upto", "SELECT day FROM media_days WHERE state = ? AND day <= ?"),
    ("day_delete", "DELETE FROM media_days WHERE state = ? AND day = ?"),
    // A removed user's own state, partition by partition.
    ("inbox_drop", "DELETE FROM inbox WHERE uid = ? AND bucket = ?"),
    ("head_drop", "DELETE FROM inbox_heads WHERE uid = ?"),
    ("state_drop", "DELETE FROM chat_state WHERE uid = ?"),
    ("dedup_drop", "DELETE FROM dedup WHERE sender = ?"),
];

impl Statements {
    async fn prepare(session: &Session) -> Result<Statements> {
        let mut prepared = std::collections::HashMap::new();
        for (name, cql) in STATEMENTS {
            let mut p = session.prepare(*cql).await.map_err(|e| {
                StoreError::Storage(format!("cassandra: cannot prepare {name} ({cql}): {e}"))
            })?;
            // Reads and writes here are idempotent except the list/set appends and the LWTs,
            // which the driver never retries on its own (is_idempotent = false by default).
            let idempotent = !cql.contains(" IF ") && !cql.contains("sent_in +");
            p.set_is_idempotent(idempotent);
            p.set_page_size(1000);
            prepared.insert(*name, p);
        }
        let mut take = |name: &str| {
            prepared
                .remove(name)
                .ok_or_else(|| StoreError::Storage(format!("statement {name} not prepared")))
        };
        Ok(Statements {
            user_insert: take("user_insert")?,
            user_set_password: take("user_set_password")?,
            user_get: take("user_get")?,
            user_ids: take("user_ids")?,
            user_delete: take("user_delete")?,
            msg_insert: take("msg_insert")?,
            msg_get: take("msg_get")?,
            msg_get_ttl: take("msg_get_ttl")?,
            msg_page: take("msg_page")?,
            bucket_insert: take("bucket_insert")?,
            buckets_upto: take("buckets_upto")?,
            inbox_insert: take("inbox_insert")?,
            inbox_page: take("inbox_page")?,
            head_set: take("head_set")?,
            head_get: take("head_get")?,
            state_put: take("state_put")?,
            state_get: take("state_get")?,
            state_all: take("state_all")?,
            state_read: take("state_read")?,
            dedup_get: take("dedup_get")?,
            dedup_insert: take("dedup_insert")?,
            dedup_delete: take("dedup_delete")?,
            dedup_hour_insert: take("dedup_hour_insert")?,
            dedup_hour_list: take("dedup_hour_list")?,
            dedup_hour_delete: take("dedup_hour_delete")?,
            group_get: take("group_get")?,
            group_put: take("group_put")?,
            member_put: take("member_put")?,
            member_delete: take("member_delete")?,
            groups_of: take("groups_of")?,
            receipt_get: take("receipt_get")?,
            receipt_put: take("receipt_put")?,
            token_get: take("token_get")?,
            tokens_of: take("tokens_of")?,
            token_put: take("token_put")?,
            token_delete: take("token_delete")?,
            owner_get: take("owner_get")?,
            owner_put: take("owner_put")?,
            owner_delete: take("owner_delete")?,
            job_get: take("job_get")?,
            job_put: take("job_put")?,
            job_delete: take("job_delete")?,
            jobs_in_shard: take("jobs_in_shard")?,
            jobs_of_user: take("jobs_of_user")?,
            media_insert: take("media_insert")?,
            media_get: take("media_get")?,
            media_advance: take("media_advance")?,
            media_link: take("media_link")?,
            media_delete: take("media_delete")?,
            index_put: take("index_put")?,
            index_delete: take("index_delete")?,
            index_page: take("index_page")?,
            day_put: take("day_put")?,
            days_upto: take("days_upto")?,
            day_delete: take("day_delete")?,
            inbox_drop: take("inbox_drop")?,
            head_drop: take("head_drop")?,
            state_drop: take("state_drop")?,
            dedup_drop: take("dedup_drop")?,
        })
    }
}

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

    fn ttl(&self) -> CqlValue {
        CqlValue::Int(self.opts.message_ttl_secs.min(i32::MAX as u32) as i32)
    }

    fn dedup_ttl(&self) -> CqlValue {
        let secs = self.opts.dedup_ms.div_ceil(1000).clamp(1, i32::MAX as u64);
        CqlValue::Int(secs as i32)
    }

    fn next_id(&self) -> MsgId {
        let mut last = self.last_id.lock().unwrap_or_else(|e| e.into_inner());
        *last = ulid::Ulid::new().0.max(*last + 1);
        MsgId(*last)
    }

    fn w(&self, stmt: &PreparedStatement, values: Vec<CqlValue>) -> Write {
        Write {
            stmt: stmt.clone(),
            values,
        }
    }

    /// Runs writes as logged batches of at most [`BATCH_BYTES`] (one batch: all or nothing).
    async fn write_all(&self, writes: Vec<Write>) -> Result<()> {
        let mut chunk: Vec<Write> = Vec::new();
        let mut size = 0;
        let mut chunks = Vec::new();
        for w in writes {
            let s = w.size();
            if !chunk.is_empty() && size + s > BATCH_BYTES {
                chunks.push(std::mem::take(&mut chunk));
                size = 0;
            }
            size += s;
            chunk.push(w);
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        for c in chunks {
            self.write_batch(c).await?;
        }
        Ok(())
    }

    async fn write_batch(&self, writes: Vec<Write>) -> Result<()> {
        if writes.len() == 1 {
            let w = &writes[0];
            self.session
                .execute_unpaged(&w.stmt, &w.values)
                .await
                .map_err(storage)?;
            return Ok(());
        }
        let mut batch = Batch::new(BatchType::Logged);
        let mut values = Vec::with_capacity(writes.len());
        for w in writes {
            batch.append_statement(w.stmt);
            values.push(w.values);
        }
        self.session.batch(&batch, values).await.map_err(storage)?;
        Ok(())
    }

    /// The rows of a bounded read (one partition, or a `LIMIT`).
    async fn rows<R>(&self, stmt: &PreparedStatement, values: impl SerializeRow) -> Result<Vec<R>>
    where
        R: for<'a> DeserializeRow<'a, 'a>,
    {
        let result = self
            .session
            .execute_unpaged(stmt, values)
            .await
            .map_err(storage)?;
        let rows = result.into_rows_result().map_err(storage)?;
        let out = rows
            .rows::<R>()
            .map_err(corrupt)?
            .collect::<std::result::Result<Vec<R>, _>>()
            .map_err(corrupt);
        out
    }

    /// The first row of a read, if any.
    async fn one<R>(&self, stmt: &PreparedStatement, values: impl SerializeRow) -> Result<Option<R>>
    where
        R: for<'a> DeserializeRow<'a, 'a>,
    {
        Ok(self.rows::<R>(stmt, values).await?.into_iter().next())
    }

    /// Every row of a read that may span pages (a partition of unknown size), page by page.
    async fn all<R>(&self, stmt: &PreparedStatement, values: impl SerializeRow) -> Result<Vec<R>>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm> + 'static,
    {
        self.session
            .execute_iter(stmt.clone(), values)
            .await
            .map_err(storage)?
            .rows_stream::<R>()
            .map_err(corrupt)?
            .try_collect()
            .await
            .map_err(storage)
    }

    /// Whether a lightweight transaction applied (its first column, `[applied]`).
    async fn lwt(&self, stmt: &PreparedStatement, values: impl SerializeRow) -> Result<bool> {
        let row: Option<Row> = self.one(stmt, values).await?;
        Ok(matches!(
            row.and_then(|r| r.columns.into_iter().next()),
            Some(Some(CqlValue::Boolean(true)))
        ))
    }

    async fn message_at(&self, chat: &ChatKey, id: MsgId) -> Result<Option<StoredMessage>> {
        let row: Option<(String,)> = self
            .one(
                &self.st.msg_get,
                (chat.as_str(), message_bucket(id), id_blob(id)),
            )
            .await?;
        row.map(|(body,)| from_json(&body)).transpose()
    }

    /// Many messages at once, in the order asked; `None` where one is gone (its TTL passed).
    async fn messages_at(&self, keys: Vec<(ChatKey, MsgId)>) -> Result<Vec<Option<StoredMessage>>> {
        futures::stream::iter(keys)
            .map(|(chat, id)| async move { self.message_at(&chat, id).await })
            .buffered(FAN_OUT)
            .try_collect()
            .await
    }

    /// The last seq given to `user`, as stored.
    async fn stored_head(&self, user: &UserId) -> Result<u64> {
        let row: Option<(Option<i64>,)> = self.one(&self.st.head_get, (user.as_str(),)).await?;
        Ok(row.and_then(|(s,)| s).map(as_u64).unwrap_or(0))
    }

    /// Inbox entries of `user` with `from <= seq <= to`, at most `limit`, across buckets.
    async fn inbox_range(
        &self,
        user: &UserId,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, ChatKey, MsgId)>> {
        let mut out = Vec::new();
        if from > to || limit == 0 {
            return Ok(out);
        }
        let mut bucket = inbox_bucket(from);
        while out.len() < limit && bucket <= inbox_bucket(to) {
            let want = (limit - out.len()).min(i32::MAX as usize) as i32;
            let rows: Vec<(i64, String, Vec<u8>)> = self
                .rows(
                    &self.st.inbox_page,
                    (
                        user.as_str(),
                        bucket,
                        from.min(i64::MAX as u64) as i64,
                        to.min(i64::MAX as u64) as i64,
                        want,
                    ),
                )
                .await?;
            for (seq, chat, id) in rows {
                let id = blob_id(&id).ok_or_else(|| corrupt("inbox id is not 16 bytes"))?;
                out.push((as_u64(seq), ChatKey::from_stored(chat), id));
            }
            bucket += 1;
        }
        Ok(out)
    }

    /// The writes that make `g` the group's state and its membership index follow.
    async fn group_writes(&self, g: &GroupRecord, writes: &mut Vec<Write>) -> Result<()> {
        let old: Option<(String,)> = self.one(&self.st.group_get, (g.id.as_str(),)).await?;
        if let Some((old,)) = old {
            let old: GroupRecord = from_json(&old)?;
            for m in &old.members {
                if g.member(&m.user).is_none() {
                    writes.push(self.w(
                        &self.st.member_delete,
                        vec![text(m.user.as_str()), text(g.id.as_str())],
                    ));
                }
            }
        }
        for m in &g.members {
            writes.push(self.w(
                &self.st.member_put,
                vec![text(m.user.as_str()), text(g.id.as_str())],
            ));
        }
        writes.push(self.w(
            &self.st.group_put,
            vec![text(g.id.as_str()), CqlValue::Text(to_json(g)?)],
        ));
        Ok(())
    }

    async fn media_record(&self, id: &MediaId) -> Result<Option<MediaRecord>> {
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

    /// How far `user` has got with message `id` of `chat`: 0 nowhere, 1 delivered, 2 read.
    async fn receipt_level(&self, chat: ChatKey, id: MsgId, user: UserId) -> Result<i32> {
        let row: Option<(Option<i32>,)> = self
            .one(
                &self.st.receipt_get,
                (chat.as_str(), id_blob(id), user.as_str()),
            )
            .await?;
        Ok(row.and_then(|(s,)| s).unwrap_or(0))
    }

    /// [`Self::receipt_level`] of many messages, read at once, in the order asked.
    async fn receipt_levels(&self, keys: Vec<(ChatKey, MsgId, UserId)>) -> Result<Vec<i32>> {
        futures::stream::iter(keys)
            .map(|(chat, id, user)| self.receipt_level(chat, id, user))
            .buffered(FAN_OUT)
            .try_collect()
            .await
    }

    /// The write that raises `user`'s receipt for message `id` of `chat` to `status`.
    fn receipt_write(&self, chat: &ChatKey, id: MsgId, user: &UserId, status: i32) -> Write {
        self.w(
            &self.st.receipt_put,
            vec![
                text(chat.as_str()),
                blob(id),
                text(user.as_str()),
                CqlValue::Int(status),
                self.ttl(),
            ],
        )
    }

    /// The job waiting for `job`'s (user, device, chat), if any.
    async fn waiting_job(&self, job: &PushJob) -> Result<Option<PushJob>> {
        let row: Option<(String,)> = self.one(&self.st.job_get, job_key(job)).await?;
        row.map(|(w,)| from_json(&w)).transpose()
    }

    /// A reader's row of a chat, if they have one.
    async fn chat_state(&self, user: &UserId, chat: &ChatKey) -> Result<Option<ChatStateRow>> {
        self.one(&self.st.state_get, (user.as_str(), chat.as_str()))
            .await
    }

    /// A reader's unread count and read pointer in a chat, if they have its row.
    async fn unread_and_pointer(
        &self,
        user: UserId,
        chat: ChatKey,
    ) -> Result<Option<(Option<i64>, Option<i64>)>> {
        let row = self.chat_state(&user, &chat).await?;
        Ok(row.map(|(_, _, unread, read)| (unread, read)))
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
        if let Some(serde_json::Value::Object(media)) = &mut m.content.media {
            media.insert("expired".into(), serde_json::Value::Bool(true));
        }
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

#[async_trait]
impl Store for CassandraStore {
    async fn create_user(&self, user: UserRecord) -> Result<bool> {
        self.lwt(
            &self.st.user_insert,
            (
                user.id.as_str(),
                user.password_hash.as_str(),
                user.created_ms.min(i64::MAX as u64) as i64,
            ),
        )
        .await
    }

    async fn set_password(&self, user: &UserId, password_hash: String) -> Result<bool> {
        let Some(found) = self.user(user).await? else {
            return Ok(false);
        };
        self.lwt(
            &self.st.user_set_password,
            (
                password_hash.as_str(),
                user.as_str(),
                found.created_ms.min(i64::MAX as u64) as i64,
            ),
        )
        .await
    }

    async fn user(&self, user: &UserId) -> Result<Option<UserRecord>> {
        let row: Option<(String, Option<String>, Option<i64>)> =
            self.one(&self.st.user_get, (user.as_str(),)).await?;
        row.map(|(id, hash, created)| {
            Ok(UserRecord {
                id: UserId::new(&id).map_err(corrupt)?,
                password_hash: hash.unwrap_or_default(),
                created_ms: as_u64(created.unwrap_or(0)),
            })
        })
        .transpose()
    }

    async fn users(&self) -> Result<Vec<UserId>> {
        // A full scan, paged: only the admin API lists users.
        let rows: Vec<(String,)> = self.all(&self.st.user_ids, ()).await?;
        let mut out = rows
            .into_iter()
            .map(|(id,)| UserId::new(&id).map_err(corrupt))
            .collect::<Result<Vec<_>>>()?;
        out.sort();
        Ok(out)
    }

    async fn remove_user(&self, user: &UserId) -> Result<bool> {
        let removed = self.lwt(&self.st.user_delete, (user.as_str(),)).await?;
        // A removed user's devices get no more notifications.
        let tokens: Vec<(String, Option<String>, Option<String>)> =
            self.all(&self.st.tokens_of, (user.as_str(),)).await?;
        let mut writes = Vec::new();
        for (device, platform, token) in tokens {
            if let (Some(p), Some(t)) = (platform, token) {
                writes.push(self.w(&self.st.owner_delete, vec![text(&p), text(&t)]));
            }
            writes.push(self.w(
                &self.st.token_delete,
                vec![text(user.as_str()), text(&device)],
            ));
        }
        let shard = shard_of(user);
        let jobs: Vec<(String, String)> = self
            .all(&self.st.jobs_of_user, (shard, user.as_str()))
            .await?;
        for (device, collapse) in jobs {
            writes.push(self.w(
                &self.st.job_delete,
                vec![
                    CqlValue::Int(shard),
                    text(user.as_str()),
                    text(&device),
                    text(&collapse),
                ],
            ));
        }
        // The account's own state goes with it, so a user later created under the same name
        // starts empty (seq 1, no chats, no memberships, no dedup memory). The seq owner's lock
        // keeps appends to this user out while its inbox goes.
        let mut held = self.owners.lock(&[user]).await;
        let head = self.stored_head(user).await?;
        for bucket in 0..=inbox_bucket(head.max(1)) {
            writes.push(self.w(
                &self.st.inbox_drop,
                vec![text(user.as_str()), CqlValue::BigInt(bucket)],
            ));
        }
        for stmt in [&self.st.head_drop, &self.st.state_drop, &self.st.dedup_drop] {
            writes.push(self.w(stmt, vec![text(user.as_str())]));
        }
        // The bridge takes a removed user out of each group with a system message first; a
        // group still listing them (a removal with no server running) is mended here.
        let groups: Vec<(String,)> = self.all(&self.st.groups_of, (user.as_str(),)).await?;
        for (gid,) in groups {
            writes.push(self.w(
                &self.st.member_delete,
                vec![text(user.as_str()), text(&gid)],
            ));
            let rec: Option<(String,)> = self.one(&self.st.group_get, (gid.as_str(),)).await?;
            if let Some((json,)) = rec {
                let g: GroupRecord = from_json(&json)?;
                writes.push(self.w(
                    &self.st.group_put,
                    vec![text(&gid), text(&to_json(&g.without(user))?)],
                ));
            }
        }
        self.write_all(writes).await?;
        if let Some((_, head)) = held.first_mut() {
            head.seq = Some(0);
        }
        Ok(removed)
    }

    async fn append(&self, msg: NewMessage) -> Result<Appended> {
        let _permit = self
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| StoreError::Busy)?;
        let mut users: Vec<&UserId> = msg.readers.iter().collect();
        users.push(&msg.from);
        // The sender's lock also orders two sends of one cid; the readers' locks their seqs.
        let mut guards = self.owners.lock(&users).await;
        let now = now_ms();
        if let Some(cid) = &msg.cid {
            let seen: Option<(String, Vec<u8>, i64)> = self
                .one(&self.st.dedup_get, (msg.from.as_str(), cid.as_str()))
                .await?;
            if let Some((chat, id, ts)) = seen {
                let id = blob_id(&id).ok_or_else(|| corrupt("dedup id is not 16 bytes"))?;
                if as_u64(ts) + self.opts.dedup_ms > now {
                    if let Some(message) = self.message_at(&ChatKey::from_stored(chat), id).await? {
                        return Ok(Appended {
                            message,
                            seqs: Vec::new(),
                            duplicate: true,
                        });
                    }
                }
            }
        }
        let id = self.next_id();
        let message = msg.stored(id, now);
        let chat = msg.chat.as_str();
        let bucket = message_bucket(id);
        let mut writes = vec![
            self.w(
                &self.st.msg_insert,
                vec![
                    text(chat),
                    CqlValue::Int(bucket),
                    blob(id),
                    CqlValue::Text(to_json(&message)?),
                    self.ttl(),
                ],
            ),
            self.w(
                &self.st.bucket_insert,
                vec![text(chat), CqlValue::Int(bucket)],
            ),
        ];
        if let Some(g) = &msg.group_update {
            self.group_writes(g, &mut writes).await?;
        }
        if let Some(media) = &msg.media {
            // Linked only while the upload is known, as in the embedded store.
            if self.media_record(media).await?.is_some() {
                writes.push(self.w(
                    &self.st.media_link,
                    vec![
                        CqlValue::Set(vec![text(&sent_in_entry(&msg.chat, id))]),
                        text(media.as_str()),
                    ],
                ));
            }
        }
        // Each reader's previous view of the chat (the sender's is reset by sending).
        let others: Vec<&UserId> = msg.readers.iter().filter(|r| **r != msg.from).collect();
        let owned: Vec<UserId> = others.iter().map(|r| (*r).clone()).collect();
        let states: Vec<Option<(Option<i64>, Option<i64>)>> = futures::stream::iter(owned)
            .map(|r: UserId| self.unread_and_pointer(r, msg.chat.clone()))
            .buffered(FAN_OUT)
            .try_collect()
            .await?;
        let mut before = std::collections::HashMap::new();
        for (r, s) in others.iter().zip(states) {
            before.insert(*r, s.unwrap_or((None, None)));
        }
        let mut seqs = Vec::with_capacity(msg.readers.len());
        // Heads not cached yet (first send to a user since start) are read at once, not one
        // after another: a big group's first message after a restart needs a thousand.
        let uncached: Vec<UserId> = guards
            .iter()
            .filter(|(_, g)| g.seq.is_none())
            .map(|(u, _)| u.clone())
            .collect();
        let loaded: std::collections::HashMap<UserId, u64> = futures::stream::iter(uncached)
            .map(|u| async move { Ok::<_, StoreError>((u.clone(), self.stored_head(&u).await?)) })
            .buffered(FAN_OUT)
            .try_collect()
            .await?;
        let mut heads = std::collections::HashMap::new();
        for (user, guard) in guards.iter_mut() {
            let head = guard.seq.or_else(|| loaded.get(user).copied()).unwrap_or(0);
            guard.seq = Some(head);
            heads.insert(user.clone(), head);
        }
        for reader in &msg.readers {
            let seq = heads.get(reader).copied().unwrap_or(0) + 1;
            heads.insert(reader.clone(), seq);
            let (unread, read_seq) = if *reader == msg.from {
                (0, seq)
            } else {
                let (u, r) = before.get(reader).copied().unwrap_or((None, None));
                (as_u64(u.unwrap_or(0)) + 1, as_u64(r.unwrap_or(0)))
            };
            let r = reader.as_str();
            writes.push(self.w(&self.st.head_set, vec![text(r), big(seq)]));
            writes.push(self.w(
                &self.st.inbox_insert,
                vec![
                    text(r),
                    CqlValue::BigInt(inbox_bucket(seq)),
                    big(seq),
                    text(chat),
                    blob(id),
                    self.ttl(),
                ],
            ));
            writes.push(self.w(
                &self.st.state_put,
                vec![
                    text(r),
                    text(chat),
                    blob(id),
                    big(seq),
                    big(unread),
                    big(read_seq),
                    self.ttl(),
                ],
            ));
            seqs.push((reader.clone(), seq));
        }
        // The dedup pair goes last: if a large send is cut by a crash, the client's resend is
        // not taken for a duplicate of a message some readers never got.
        if let Some(cid) = &msg.cid {
            let hour = now / DEDUP_BUCKET_MS;
            writes.push(self.w(
                &self.st.dedup_insert,
                vec![
                    text(msg.from.as_str()),
                    text(cid),
                    text(chat),
                    blob(id),
                    big(now),
                    self.dedup_ttl(),
                ],
            ));
            writes.push(self.w(
                &self.st.dedup_hour_insert,
                vec![
                    big(hour),
                    text(msg.from.as_str()),
                    text(cid),
                    big(now),
                    self.dedup_ttl(),
                ],
            ));
        }
        let written = self.write_all(writes).await;
        // The seqs are spent whether or not the write went through: a timed-out batch may still
        // be applied (Cassandra replays logged batches), and a seq must never be given twice. A
        // failed send leaves a gap, which `sync` steps over.
        for (user, guard) in guards.iter_mut() {
            guard.seq = heads.get(user).copied();
        }
        written?;
        Ok(Appended {
            message,
            seqs,
            duplicate: false,
        })
    }

    async fn sync(
        &self,
        user: &UserId,
        after: Seq,
        limit: usize,
    ) -> Result<(Vec<InboxItem>, bool)> {
        let head = self.stored_head(user).await?;
        let mut entries = self
            .inbox_range(user, after.saturating_add(1), head, limit.saturating_add(1))
            .await?;
        let more = entries.len() > limit;
        entries.truncate(limit);
        let keys = entries.iter().map(|(_, c, id)| (c.clone(), *id)).collect();
        let messages = self.messages_at(keys).await?;
        Ok((
            entries
                .into_iter()
                .zip(messages)
                .filter_map(|((seq, _, _), m)| m.map(|message| InboxItem { seq, message }))
                .collect(),
            more,
        ))
    }

    async fn history(
        &self,
        chat: &ChatKey,
        before: Option<MsgId>,
        limit: usize,
    ) -> Result<(Vec<StoredMessage>, bool)> {
        let top = before.map(message_bucket).unwrap_or(i32::MAX);
        let bound = before.map(id_blob).unwrap_or_else(|| vec![0xff; 16]);
        let mut buckets = self
            .session
            .execute_iter(self.st.buckets_upto.clone(), (chat.as_str(), top))
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
            let rows: Vec<(String,)> = self
                .rows(
                    &self.st.msg_page,
                    (chat.as_str(), bucket, bound.as_slice(), n),
                )
                .await?;
            for (body,) in rows {
                out.push(from_json::<StoredMessage>(&body)?);
            }
        }
        let more = out.len() > limit;
        out.truncate(limit);
        Ok((out, more))
    }

    async fn message(&self, chat: &ChatKey, id: MsgId) -> Result<Option<StoredMessage>> {
        self.message_at(chat, id).await
    }

    async fn chats(&self, user: &UserId) -> Result<Vec<ChatSummary>> {
        type StateRow = (String, Option<Vec<u8>>, Option<i64>, Option<i64>);
        let rows: Vec<StateRow> = self.all(&self.st.state_all, (user.as_str(),)).await?;
        let mut listed = Vec::new();
        for (chat, last_id, last_seq, unread) in rows {
            // A row whose last message expired with its TTL is no chat any more.
            let Some(last) = last_id.as_deref().and_then(blob_id) else {
                continue;
            };
            listed.push((ChatKey::from_stored(chat), last, last_seq, unread));
        }
        let keys = listed
            .iter()
            .map(|(c, id, _, _)| (c.clone(), *id))
            .collect();
        let messages = self.messages_at(keys).await?;
        let mut out: Vec<ChatSummary> = listed
            .into_iter()
            .zip(messages)
            .filter_map(|((chat, _, last_seq, unread), m)| {
                m.map(|last| ChatSummary {
                    chat,
                    last,
                    last_seq: as_u64(last_seq.unwrap_or(0)),
                    unread: as_u64(unread.unwrap_or(0)),
                })
            })
            .collect();
        out.sort_by_key(|c| std::cmp::Reverse(c.last.id));
        Ok(out)
    }

    async fn in_chat(&self, user: &UserId, chat: &ChatKey) -> Result<bool> {
        let row = self.chat_state(user, chat).await?;
        Ok(row.is_some_and(|(last, ..)| last.is_some()))
    }

    async fn purge_dedup(&self, older_than_ms: u64) -> Result<usize> {
        // The TTL forgets pairs by itself; a purge walks only the hours since the last one (or
        // the dedup window plus a day), so it never scans the table.
        let top = older_than_ms.min(now_ms()) / DEDUP_BUCKET_MS;
        let window = self.opts.dedup_ms / DEDUP_BUCKET_MS + 24;
        let done = self.purged_hour.load(Ordering::Relaxed);
        let start = if done == 0 {
            top.saturating_sub(window)
        } else {
            done.min(top)
        };
        let hours: Vec<u64> = (start..=top).collect();
        let found: Vec<Vec<(u64, String, String, i64)>> = futures::stream::iter(hours)
            .map(|hour| async move {
                let rows: Vec<(String, String, i64)> =
                    self.all(&self.st.dedup_hour_list, (int64(hour),)).await?;
                Ok::<_, StoreError>(
                    rows.into_iter()
                        .map(|(s, c, ts)| (hour, s, c, ts))
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
            let current: Option<(String, Vec<u8>, i64)> = self
                .one(&self.st.dedup_get, (sender.as_str(), cid.as_str()))
                .await?;
            let mut writes = vec![self.w(
                &self.st.dedup_hour_delete,
                vec![big(hour), text(&sender), text(&cid)],
            )];
            if current.is_some_and(|(_, _, t)| t == ts) {
                writes.push(self.w(&self.st.dedup_delete, vec![text(&sender), text(&cid)]));
                purged += 1;
            }
            self.write_all(writes).await?;
        }
        // The newest hour may still get pairs newer than the cut-off: the next purge reads it
        // again.
        self.purged_hour.store(top.max(1), Ordering::Relaxed);
        Ok(purged)
    }

    async fn mark(&self, marks: Vec<ReceiptMark>) -> Result<Vec<bool>> {
        if marks.is_empty() {
            return Ok(Vec::new());
        }
        let users: Vec<&UserId> = marks.iter().map(|m| &m.user).collect();
        let _guards = self.owners.lock(&users).await;
        // Marks of one message may repeat in a batch (two devices): later ones see earlier ones.
        let mut raised: std::collections::HashMap<(ChatKey, MsgId, UserId), i32> =
            std::collections::HashMap::new();
        let mut keys: Vec<(ChatKey, MsgId, UserId)> = marks
            .iter()
            .map(|m| (m.chat.clone(), m.id, m.user.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        let levels = self.receipt_levels(keys.clone()).await?;
        raised.extend(keys.into_iter().zip(levels));
        let mut out = Vec::with_capacity(marks.len());
        let mut writes = Vec::new();
        for m in &marks {
            let level = raised
                .entry((m.chat.clone(), m.id, m.user.clone()))
                .or_insert(0);
            let now = m.status as i32;
            if now > *level {
                writes.push(self.receipt_write(&m.chat, m.id, &m.user, now));
                *level = now;
                out.push(true);
            } else {
                out.push(false);
            }
        }
        self.write_all(writes).await?;
        Ok(out)
    }

    async fn read_upto(&self, user: &UserId, chat: &ChatKey, upto: Seq) -> Result<ReadOutcome> {
        let _guard = self.owners.lock(&[user]).await;
        let row = self.chat_state(user, chat).await?;
        let Some((_, last_seq, unread, read_seq)) = row else {
            return Ok(ReadOutcome::default());
        };
        let (last_seq, unread, read_seq) = (
            as_u64(last_seq.unwrap_or(0)),
            as_u64(unread.unwrap_or(0)),
            as_u64(read_seq.unwrap_or(0)),
        );
        let upto = upto.min(last_seq);
        if upto <= read_seq {
            return Ok(ReadOutcome {
                newly_read: Vec::new(),
                unread,
                read_seq,
            });
        }
        let entries = self
            .inbox_range(user, read_seq + 1, upto, READ_SCAN)
            .await?;
        let keys: Vec<(ChatKey, MsgId)> = entries
            .into_iter()
            .filter(|(_, c, _)| c == chat)
            .map(|(_, c, id)| (c, id))
            .collect();
        let messages = self.messages_at(keys).await?;
        let from_others: Vec<StoredMessage> = messages
            .into_iter()
            .flatten()
            .filter(|m| m.from != *user)
            .collect();
        let passed = from_others.len() as u64;
        let levels = self
            .receipt_levels(
                from_others
                    .iter()
                    .map(|m| (chat.clone(), m.id, user.clone()))
                    .collect(),
            )
            .await?;
        let read = ReceiptStatus::Read as i32;
        let mut newly = Vec::new();
        let mut writes = Vec::new();
        for (m, level) in from_others.into_iter().zip(levels) {
            if level < read {
                writes.push(self.receipt_write(chat, m.id, user, read));
                newly.push(m);
            }
        }
        if newly.len() > READ_REPORT {
            newly.drain(..newly.len() - READ_REPORT);
        }
        let unread = unread.saturating_sub(passed);
        writes.push(self.w(
            &self.st.state_read,
            vec![
                big(unread),
                big(upto),
                text(user.as_str()),
                text(chat.as_str()),
            ],
        ));
        self.write_all(writes).await?;
        Ok(ReadOutcome {
            newly_read: newly,
            unread,
            read_seq: upto,
        })
    }

    async fn group(&self, id: &GroupId) -> Result<Option<GroupRecord>> {
        let row: Option<(Option<String>,)> = self.one(&self.st.group_get, (id.as_str(),)).await?;
        row.and_then(|(r,)| r).map(|r| from_json(&r)).transpose()
    }

    async fn groups_of(&self, user: &UserId) -> Result<Vec<GroupId>> {
        let rows: Vec<(String,)> = self.all(&self.st.groups_of, (user.as_str(),)).await?;
        rows.into_iter()
            .map(|(g,)| GroupId::new(&g).map_err(corrupt))
            .collect()
    }

    async fn receipt(
        &self,
        chat: &ChatKey,
        id: MsgId,
        user: &UserId,
    ) -> Result<Option<ReceiptStatus>> {
        Ok(
            match self.receipt_level(chat.clone(), id, user.clone()).await? {
                1 => Some(ReceiptStatus::Delivered),
                2 => Some(ReceiptStatus::Read),
                _ => None,
            },
        )
    }

    async fn push_register(&self, token: PushToken) -> Result<()> {
        let (platform, tok) = (token.platform.as_str(), token.token.as_str());
        let mut writes = Vec::new();
        // The token moves: a phone that logs into another account stops notifying the first.
        let previous: Option<(String, String)> =
            self.one(&self.st.owner_get, (platform, tok)).await?;
        if let Some((u, d)) = previous {
            writes.push(self.w(&self.st.token_delete, vec![text(&u), text(&d)]));
        }
        let (user, device) = (token.user.as_str(), token.device.as_str());
        let old: Option<(Option<String>, Option<String>)> =
            self.one(&self.st.token_get, (user, device)).await?;
        if let Some((Some(p), Some(t))) = old {
            writes.push(self.w(&self.st.owner_delete, vec![text(&p), text(&t)]));
        }
        writes.push(self.w(
            &self.st.token_put,
            vec![text(user), text(device), text(platform), text(tok)],
        ));
        writes.push(self.w(
            &self.st.owner_put,
            vec![text(platform), text(tok), text(user), text(device)],
        ));
        self.write_all(writes).await
    }

    async fn push_unregister(&self, user: &UserId, device: &DeviceId) -> Result<bool> {
        let old: Option<(Option<String>, Option<String>)> = self
            .one(&self.st.token_get, (user.as_str(), device.as_str()))
            .await?;
        let Some((platform, token)) = old else {
            return Ok(false);
        };
        let mut writes = vec![self.w(
            &self.st.token_delete,
            vec![text(user.as_str()), text(device.as_str())],
        )];
        if let (Some(p), Some(t)) = (platform, token) {
            writes.push(self.w(&self.st.owner_delete, vec![text(&p), text(&t)]));
        }
        self.write_all(writes).await?;
        Ok(true)
    }

    async fn push_tokens(&self, user: &UserId) -> Result<Vec<PushToken>> {
        let rows: Vec<(String, Option<String>, Option<String>)> =
            self.all(&self.st.tokens_of, (user.as_str(),)).await?;
        let mut out = Vec::new();
        for (device, platform, token) in rows {
            let (Some(platform), Some(token)) = (platform, token) else {
                continue;
            };
            out.push(PushToken {
                user: user.clone(),
                device: DeviceId::new(&device).map_err(corrupt)?,
                platform: platform
                    .parse::<PushPlatform>()
                    .map_err(|_| corrupt(format!("push platform {platform:?}")))?,
                token,
            });
        }
        Ok(out)
    }

    async fn push_forget(&self, platform: PushPlatform, token: &str) -> Result<bool> {
        let owner: Option<(String, String)> = self
            .one(&self.st.owner_get, (platform.as_str(), token))
            .await?;
        let Some((u, d)) = owner else {
            return Ok(false);
        };
        self.write_all(vec![
            self.w(
                &self.st.owner_delete,
                vec![text(platform.as_str()), text(token)],
            ),
            self.w(&self.st.token_delete, vec![text(&u), text(&d)]),
        ])
        .await?;
        Ok(true)
    }

    async fn push_enqueue(&self, jobs: Vec<PushJob>) -> Result<()> {
        let mut writes = Vec::with_capacity(jobs.len());
        for mut job in jobs {
            if let Some(w) = self.waiting_job(&job).await? {
                job.collapse_into(&w);
            }
            let mut values = job_key(&job);
            values.push(CqlValue::Text(to_json(&job)?));
            writes.push(self.w(&self.st.job_put, values));
        }
        self.write_all(writes).await
    }

    async fn push_due(&self, now_ms: u64, limit: usize) -> Result<Vec<PushJob>> {
        let mut out = Vec::new();
        for shard in 0..PUSH_SHARDS {
            let rows: Vec<(String,)> = self.all(&self.st.jobs_in_shard, (shard,)).await?;
            for (job,) in rows {
                let job: PushJob = from_json(&job)?;
                if job.due_ms <= now_ms {
                    out.push(job);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn push_settle(&self, job: &PushJob, retry: Option<(u32, u64)>) -> Result<()> {
        let Some(mut w) = self.waiting_job(job).await? else {
            return Ok(());
        };
        let key_values = job_key(job);
        match retry {
            None if w.version == job.version => {
                self.write_batch(vec![self.w(&self.st.job_delete, key_values)])
                    .await
            }
            None => Ok(()),
            Some((attempts, due_ms)) => {
                w.attempts = attempts;
                w.due_ms = due_ms;
                let mut values = key_values;
                values.push(CqlValue::Text(to_json(&w)?));
                self.write_batch(vec![self.w(&self.st.job_put, values)])
                    .await
            }
        }
    }

    async fn media_create(&self, media: MediaRecord) -> Result<()> {
        let day = bucket_of_ms(media.id.timestamp_ms(), MEDIA_BUCKET_MS);
        let state = state_name(media.state);
        self.write_all(vec![
            self.w(
                &self.st.media_insert,
                vec![
                    text(media.id.as_str()),
                    text(media.owner.as_str()),
                    text(&media.mime),
                    big(media.size),
                    text(media.sha256.as_deref().unwrap_or("")),
                    text(state),
                ],
            ),
            self.w(
                &self.st.index_put,
                vec![text(state), CqlValue::Int(day), text(media.id.as_str())],
            ),
            self.w(&self.st.day_put, vec![text(state), CqlValue::Int(day)]),
        ])
        .await
    }

    async fn media(&self, id: &MediaId) -> Result<Option<MediaRecord>> {
        self.media_record(id).await
    }

    async fn media_ready(&self, id: &MediaId) -> Result<bool> {
        let applied = self
            .lwt(&self.st.media_advance, ("ready", id.as_str(), "pending"))
            .await?;
        if applied {
            // Not atomic with the state change: a crash here leaves the entry on the pending
            // list, and the pending sweep moves it when it meets it (see `media_older`).
            self.reindex(id, MediaState::Pending, Some(MediaState::Ready))
                .await?;
        }
        Ok(applied)
    }

    async fn media_older(
        &self,
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
        let days: Vec<(i32,)> = self.all(&self.st.days_upto, (name, top)).await?;
        let mut out = Vec::new();
        for (day,) in days {
            let want = (limit - out.len()).min(i32::MAX as usize) as i32;
            let ids: Vec<(String,)> = self
                .rows(&self.st.index_page, (name, day, floor.as_str(), want))
                .await?;
            if ids.is_empty() && day < today && day < top {
                // A past day with nothing left on this list gets no more entries: forget it
                // so sweeps stop reading it.
                self.write_batch(vec![
                    self.w(&self.st.day_delete, vec![text(name), CqlValue::Int(day)])
                ])
                .await?;
            }
            for (id,) in ids {
                let id = MediaId::new(&id).map_err(corrupt)?;
                match self.media_record(&id).await? {
                    Some(rec) if rec.state == state => out.push(rec),
                    // An index entry left behind by a crash between a state change and its
                    // reindex: put it where the record says.
                    Some(rec) => {
                        let to = (rec.state != MediaState::Expired).then_some(rec.state);
                        self.reindex(&id, state, to).await?;
                    }
                    None => self.reindex(&id, state, None).await?,
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn media_expire(&self, id: &MediaId) -> Result<Option<MediaRecord>> {
        let Some(rec) = self.media_record(id).await? else {
            return Ok(None);
        };
        match rec.state {
            MediaState::Expired => Ok(None),
            MediaState::Pending => {
                if !self
                    .lwt(&self.st.media_delete, (id.as_str(), "pending"))
                    .await?
                {
                    // It became ready meanwhile: the next sweep of ready uploads decides.
                    return Ok(None);
                }
                self.reindex(id, MediaState::Pending, None).await?;
                Ok(Some(rec))
            }
            MediaState::Ready => {
                if !self
                    .lwt(&self.st.media_advance, ("expired", id.as_str(), "ready"))
                    .await?
                {
                    return Ok(None);
                }
                for (chat, msg) in &rec.sent_in {
                    self.mark_expired(chat, *msg).await?;
                }
                self.reindex(id, MediaState::Ready, None).await?;
                Ok(Some(rec))
            }
        }
    }
}

fn int64(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_push_shard_is_stable_and_in_range() {
        let u = UserId::new("alice").unwrap();
        assert_eq!(shard_of(&u), shard_of(&UserId::new("alice").unwrap()));
        for name in ["a", "bob", "carol", "x-1", "zzzzzzzz"] {
            let s = shard_of(&UserId::new(name).unwrap());
            assert!((0..PUSH_SHARDS).contains(&s));
        }
        // FNV-1a of "alice" is 0x872213e7, fixed forever: jobs written under it must be found.
        assert_eq!(shard_of(&u), (0x8722_13e7_u32 % 16) as i32);
    }

    #[test]
    fn sent_in_entries_round_trip_with_any_chat_key() {
        let chat = ChatKey::from_stored("d:al/ice:bob".into());
        let id = MsgId(ulid::Ulid::from_parts(1_700_000_000_000, 9).0);
        let s = sent_in_entry(&chat, id);
        assert_eq!(parse_sent_in(&s).unwrap(), (chat, id));
        assert!(parse_sent_in("garbage").is_err());
    }

    #[test]
    fn every_statement_has_a_field_and_names_only_natters_tables() {
        let tables = crate::schema::MIGRATIONS
            .iter()
            .flat_map(|m| m.iter())
            .map(|s| {
                s.trim_start_matches("CREATE TABLE IF NOT EXISTS ")
                    .split(' ')
                    .next()
                    .unwrap_or("")
            })
            .collect::<Vec<_>>();
        for (name, cql) in STATEMENTS {
            let table = cql
                .split_whitespace()
                .skip_while(|w| !["FROM", "INTO", "UPDATE"].contains(w))
                .nth(1)
                .unwrap_or("");
            assert!(
                tables.contains(&table),
                "{name} uses unknown table {table:?}"
            );
        }
        let mut names: Vec<_> = STATEMENTS.iter().map(|(n, _)| *n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), STATEMENTS.len(), "statement names are unique");
    }
}
