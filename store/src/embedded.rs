//! The embedded backend: one redb file, crash-safe at every commit.
//!
//! Sends are committed by one writer thread in groups: it takes every send waiting (up to
//! `max_batch`), writes them in one transaction and fsyncs once, then answers them all. Under load
//! many sends share one fsync; alone, a send waits for just its own. Being the only writer of
//! messages is also what makes each user's inbox seq gap-free without locks.

use natter_types::clock::now_ms;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use natter_types::{ChatKey, GroupId, MsgId, Seq, UserId};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::user_cache::UserCache;
use crate::{
    Appended, ChatSummary, GroupRecord, InboxItem, MediaRecord, MediaState, NewMessage, PushJob,
    PushPlatform, PushToken, ReadOutcome, ReceiptMark, ReceiptStatus, Result, StoreError,
    StoredMessage, UserRecord,
};
use natter_types::{DeviceId, MediaId};

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// (chat key, message id) → message JSON.
const MESSAGES: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("messages");
/// (user, seq) → inbox entry JSON.
const INBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("inbox");
/// user → last seq given out.
const INBOX_HEAD: TableDefinition<&str, u64> = TableDefinition::new("inbox_head");
/// (sender, cid) → dedup entry JSON.
const DEDUP: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("dedup");
/// (user, chat key) → chat state JSON.
const CHATS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("chats");
/// group id → group record JSON.
const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
/// (chat key, message id, recipient) → receipt status (1 delivered, 2 read).
const RECEIPTS: TableDefinition<(&str, u128, &str), u8> = TableDefinition::new("receipts");
/// Most inbox entries one read-pointer move looks at, and most messages it reports as newly
/// read: bounds the work of `{"upto": …}` after a long absence.
const READ_SCAN: usize = 5000;
const READ_REPORT: usize = 1000;
/// (user, group id) → (): who is in which group now.
const MEMBERSHIPS: TableDefinition<(&str, &str), ()> = TableDefinition::new("memberships");
/// (user, device) → push token JSON.
const PUSH_TOKENS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("push_tokens");
/// (platform, token) → (user, device): who holds a token, so that it has one owner.
const PUSH_OWNERS: TableDefinition<(&str, &str), (&str, &str)> =
    TableDefinition::new("push_owners");
/// (user, device, collapse key) → push job JSON. Small: only jobs not yet sent.
const PUSH_JOBS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("push_jobs");
/// media id → media record JSON, for uploads pending or ready. Ids sort by time, so the
/// retention sweep reads the oldest first and stops at its cut-off.
const MEDIA: TableDefinition<&str, &[u8]> = TableDefinition::new("media");
/// media id → (): the uploads still pending, so the sweep for abandoned ones skips the rest.
const MEDIA_PENDING: TableDefinition<&str, ()> = TableDefinition::new("media_pending");
/// media id → media record JSON, for expired uploads: kept (small) so that a member asking for
/// one hears that it expired, and out of `MEDIA` so sweeps never read them again.
const MEDIA_GONE: TableDefinition<&str, &[u8]> = TableDefinition::new("media_gone");

#[derive(Serialize, Deserialize)]
struct InboxEntry {
    chat: ChatKey,
    id: MsgId,
}

#[derive(Serialize, Deserialize)]
struct DedupEntry {
    chat: ChatKey,
    id: MsgId,
    ts: u64,
}

/// One reader's view of one chat. Written for every reader of every message (a thousand per
/// message in a big group), so it is a fixed 40 bytes rather than JSON.
struct ChatState {
    last_id: MsgId,
    last_seq: Seq,
    unread: u64,
    /// The reader's read pointer: the inbox seq up to which they have read this chat.
    read_seq: Seq,
}

impl ChatState {
    fn encode(&self) -> [u8; 40] {
        let mut b = [0u8; 40];
        b[..16].copy_from_slice(&self.last_id.0.to_be_bytes());
        b[16..24].copy_from_slice(&self.last_seq.to_be_bytes());
        b[24..32].copy_from_slice(&self.unread.to_be_bytes());
        b[32..].copy_from_slice(&self.read_seq.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<ChatState> {
        let b: &[u8; 40] = b
            .try_into()
            .map_err(|_| corrupt("chat state is not 40 bytes"))?;
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap_or_default());
        let id = u128::from_be_bytes(b[..16].try_into().unwrap_or_default());
        Ok(ChatState {
            last_id: MsgId(id),
            last_seq: u64_at(16),
            unread: u64_at(24),
            read_seq: u64_at(32),
        })
    }
}

/// How the embedded store is tuned.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Most sends per transaction.
    pub max_batch: usize,
    /// Sends waiting before new ones get [`StoreError::Busy`].
    pub max_queue: usize,
    /// How long a `(sender, cid)` pair deduplicates, in ms.
    pub dedup_ms: u64,
    /// redb's page cache, in bytes (its own default, 1 GiB, is too much for a chat server that
    /// also holds every connection).
    pub cache_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            max_batch: 512,
            max_queue: 16_384,
            dedup_ms: 48 * 3600 * 1000,
            cache_bytes: 64 << 20,
        }
    }
}

/// What the writer thread does; everything that changes inboxes or chat state goes through it,
/// so seqs, unread counts and read pointers never race.
enum Op {
    Append(Box<NewMessage>),
    Mark(Vec<ReceiptMark>),
    Read {
        user: UserId,
        chat: ChatKey,
        upto: Seq,
    },
}

enum Done {
    Appended(Box<Appended>),
    Marked(Vec<bool>),
    Read(ReadOutcome),
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Done>>,
}

/// The redb-backed [`crate::Store`].
pub struct EmbeddedStore {
    db: Arc<Handle>,
    writer: mpsc::Sender<Job>,
    users: Arc<UserCache>,
}

/// The open database, which can be closed and opened again.
///
/// After an I/O error (a full disk, say) redb refuses every later write until the database is
/// re-opened, so the writer re-opens it; meanwhile calls fail with a storage error instead of
/// waiting.
struct Handle {
    path: PathBuf,
    cache_bytes: usize,
    db: RwLock<Option<Arc<Database>>>,
}

impl Handle {
    fn get(&self) -> Result<Arc<Database>> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        guard
            .clone()
            .ok_or_else(|| StoreError::Storage("the store is re-opening after an I/O error".into()))
    }

    /// Closes the database (once the reads in progress let go of it) and opens it again.
    fn reopen(&self) -> Result<()> {
        let old = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut db) = old {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match Arc::try_unwrap(db) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) if Instant::now() < deadline => {
                        db = still_shared;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(still_shared) => {
                        *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(still_shared);
                        return Err(StoreError::Storage(
                            "reads kept the store busy; not re-opened".into(),
                        ));
                    }
                }
            }
        }
        let db = open_db(&self.path, self.cache_bytes)?;
        *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(db));
        tracing::warn!(path = %self.path.display(), "store re-opened after an I/O error");
        Ok(())
    }
}

fn open_db(path: &Path, cache_bytes: usize) -> Result<Database> {
    redb::Builder::new()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(storage)
}

fn storage<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Storage(e.to_string())
}

fn corrupt<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path` and starts its writer thread.
    pub fn open(path: &Path, opts: EmbeddedOptions) -> Result<EmbeddedStore> {
        let db = open_db(path, opts.cache_bytes)?;
        let txn = db.begin_write().map_err(storage)?;
        {
            txn.open_table(USERS).map_err(storage)?;
            txn.open_table(MESSAGES).map_err(storage)?;
            txn.open_table(INBOX).map_err(storage)?;
            txn.open_table(INBOX_HEAD).map_err(storage)?;
            txn.open_table(DEDUP).map_err(storage)?;
            txn.open_table(CHATS).map_err(storage)?;
            txn.open_table(GROUPS).map_err(storage)?;
            txn.open_table(MEMBERSHIPS).map_err(storage)?;
            txn.open_table(RECEIPTS).map_err(storage)?;
            txn.open_table(PUSH_TOKENS).map_err(storage)?;
            txn.open_table(PUSH_OWNERS).map_err(storage)?;
            txn.open_table(PUSH_JOBS).map_err(storage)?;
            txn.open_table(MEDIA).map_err(storage)?;
            txn.open_table(MEDIA_PENDING).map_err(storage)?;
            txn.open_table(MEDIA_GONE).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        let db = Arc::new(Handle {
            path: path.to_owned(),
            cache_bytes: opts.cache_bytes,
            db: RwLock::new(Some(Arc::new(db))),
        });
        let (tx, rx) = mpsc::channel(opts.max_queue.max(1));
        let writer_db = db.clone();
        std::thread::Builder::new()
            .name("natter-store-writer".into())
            .spawn(move || writer_loop(writer_db, rx, opts))
            .map_err(storage)?;
        Ok(EmbeddedStore {
            db,
            writer: tx,
            users: Arc::default(),
        })
    }

    /// Hands an operation to the writer thread and waits for its commit.
    async fn submit(&self, op: Op) -> Result<Done> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .try_send(Job { op, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Busy,
                mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
            })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a read-only closure on a blocking thread, so that long reads never stall the
    /// async runtime.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.get()?.begin_read().map_err(storage)?;
            f(&txn)
        })
        .await
        .map_err(storage)?
    }

    /// Runs a small write (user admin) on a blocking thread. redb serialises it with the
    /// message writer. With `changes` set, the user cache forgets that user once the write has
    /// ended, on the blocking thread: a caller that stops waiting cannot leave it stale.
    async fn write<T, F>(&self, changes: Option<&UserId>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::WriteTransaction) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        let forget = changes.map(|u| (self.users.clone(), u.clone()));
        tokio::task::spawn_blocking(move || {
            let out = db.get().and_then(|db| {
                let txn = db.begin_write().map_err(storage)?;
                let out = f(&txn)?;
                txn.commit().map_err(storage)?;
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

fn writer_loop(db: Arc<Handle>, mut rx: mpsc::Receiver<Job>, opts: EmbeddedOptions) {
    let mut last_id: u128 = 0;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < opts.max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        metrics::gauge!("natter_store_queue_depth").set(rx.len() as f64);
        metrics::histogram!("natter_store_batch_size").record(batch.len() as f64);
        let ops: Vec<&Op> = batch.iter().map(|j| &j.op).collect();
        let started = std::time::Instant::now();
        let result = db
            .get()
            .and_then(|d| write_batch(&d, &ops, &mut last_id, opts.dedup_ms));
        match result {
            Ok(results) => {
                metrics::histogram!("natter_store_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                for (job, r) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(Ok(r));
                }
            }
            Err(e) => {
                metrics::counter!("natter_store_commit_failures_total").increment(1);
                tracing::error!(error = %e, sends = batch.len(), "store commit failed; sends refused");
                for job in batch {
                    let _ = job.reply.send(Err(e.clone()));
                }
                if let StoreError::Storage(_) = e {
                    if let Err(e) = db.reopen() {
                        tracing::error!(error = %e, "store could not be re-opened; will retry");
                    }
                }
            }
        }
    }
}

/// Writes every message of a batch in one transaction; all or nothing.
fn write_batch(db: &Database, ops: &[&Op], last_id: &mut u128, dedup_ms: u64) -> Result<Vec<Done>> {
    let txn = db.begin_write().map_err(storage)?;
    let mut out = Vec::with_capacity(ops.len());
    let next_id = {
        let mut messages = txn.open_table(MESSAGES).map_err(storage)?;
        let mut inbox = txn.open_table(INBOX).map_err(storage)?;
        let mut heads = txn.open_table(INBOX_HEAD).map_err(storage)?;
        let mut dedup = txn.open_table(DEDUP).map_err(storage)?;
        let mut chats = txn.open_table(CHATS).map_err(storage)?;
        let mut receipts = txn.open_table(RECEIPTS).map_err(storage)?;
        let mut next_id = *last_id;
        for op in ops {
            let msg = match op {
                Op::Append(msg) => msg,
                Op::Mark(marks) => {
                    out.push(Done::Marked(mark(&mut receipts, marks)?));
                    continue;
                }
                Op::Read { user, chat, upto } => {
                    let r = read_upto(
                        &inbox,
                        &messages,
                        &mut chats,
                        &mut receipts,
                        user,
                        chat,
                        *upto,
                    )?;
                    out.push(Done::Read(r));
                    continue;
                }
            };
            let now = now_ms();
            if let Some(cid) = &msg.cid {
                let seen = dedup
                    .get((msg.from.as_str(), cid.as_str()))
                    .map_err(storage)?;
                if let Some(seen) = seen {
                    let entry: DedupEntry = from_json(seen.value())?;
                    if entry.ts + dedup_ms > now {
                        let message = load_message(&messages, &entry.chat, entry.id)?;
                        out.push(Done::Appended(Box::new(Appended {
                            message,
                            seqs: Vec::new(),
                            duplicate: true,
                        })));
                        continue;
                    }
                }
            }
            // Ids are ULIDs (time first) forced to grow, so chat order is id order even when
            // the clock stalls or steps back.
            next_id = ulid::Ulid::new().0.max(next_id + 1);
            let id = MsgId(next_id);
            let message = msg.stored(id, now);
            let bytes = to_json(&message)?;
            messages
                .insert((msg.chat.as_str(), id.0), bytes.as_slice())
                .map_err(storage)?;
            let entry = to_json(&InboxEntry {
                chat: msg.chat.clone(),
                id,
            })?;
            let mut seqs = Vec::with_capacity(msg.readers.len());
            for reader in &msg.readers {
                let seq = heads
                    .get(reader.as_str())
                    .map_err(storage)?
                    .map(|g| g.value())
                    .unwrap_or(0)
                    + 1;
                heads.insert(reader.as_str(), seq).map_err(storage)?;
                inbox
                    .insert((reader.as_str(), seq), entry.as_slice())
                    .map_err(storage)?;
                let key = (reader.as_str(), msg.chat.as_str());
                let (unread_before, read_before) = match chats.get(key).map_err(storage)? {
                    Some(g) => {
                        let st = ChatState::decode(g.value())?;
                        (st.unread, st.read_seq)
                    }
                    None => (0, 0),
                };
                // Writing in a chat reads it: the sender's own message clears their unread.
                let (unread, read_seq) = if *reader == msg.from {
                    (0, seq)
                } else {
                    (unread_before + 1, read_before)
                };
                let state = ChatState {
                    last_id: id,
                    last_seq: seq,
                    unread,
                    read_seq,
                }
                .encode();
                chats.insert(key, state.as_slice()).map_err(storage)?;
                seqs.push((reader.clone(), seq));
            }
            if let Some(cid) = &msg.cid {
                let d = to_json(&DedupEntry {
                    chat: msg.chat.clone(),
                    id,
                    ts: now,
                })?;
                dedup
                    .insert((msg.from.as_str(), cid.as_str()), d.as_slice())
                    .map_err(storage)?;
            }
            if let Some(g) = &msg.group_update {
                put_group(&txn, g)?;
            }
            if let Some(media) = &msg.media {
                link_media(&txn, media, &msg.chat, id)?;
            }
            out.push(Done::Appended(Box::new(Appended {
                message,
                seqs,
                duplicate: false,
            })));
        }
        next_id
    };
    txn.commit().map_err(storage)?;
    // Only a committed batch moves the id floor; a failed one leaves it as it was.
    *last_id = next_id;
    Ok(out)
}

type Receipts<'t> = redb::Table<'t, (&'static str, u128, &'static str), u8>;

/// Raises receipt statuses; `true` where one was raised.
fn mark(receipts: &mut Receipts<'_>, marks: &[ReceiptMark]) -> Result<Vec<bool>> {
    let mut out = Vec::with_capacity(marks.len());
    for m in marks {
        let key = (m.chat.as_str(), m.id.0, m.user.as_str());
        let before = receipts
            .get(key)
            .map_err(storage)?
            .map(|g| g.value())
            .unwrap_or(0);
        let now = m.status as u8;
        if now > before {
            receipts.insert(key, now).map_err(storage)?;
            out.push(true);
        } else {
            out.push(false);
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)] // the tables of one write transaction, opened once per batch
fn read_upto(
    inbox: &redb::Table<'_, (&'static str, u64), &'static [u8]>,
    messages: &redb::Table<'_, (&'static str, u128), &'static [u8]>,
    chats: &mut redb::Table<'_, (&'static str, &'static str), &'static [u8]>,
    receipts: &mut Receipts<'_>,
    user: &UserId,
    chat: &ChatKey,
    upto: Seq,
) -> Result<ReadOutcome> {
    let key = (user.as_str(), chat.as_str());
    let Some(mut st) = chats
        .get(key)
        .map_err(storage)?
        .map(|g| ChatState::decode(g.value()))
        .transpose()?
    else {
        return Ok(ReadOutcome::default());
    };
    let upto = upto.min(st.last_seq);
    if upto <= st.read_seq {
        return Ok(ReadOutcome {
            newly_read: Vec::new(),
            unread: st.unread,
            read_seq: st.read_seq,
        });
    }
    let mut newly = Vec::new();
    let mut passed = 0u64;
    let range = inbox
        .range((user.as_str(), st.read_seq + 1)..=(user.as_str(), upto))
        .map_err(storage)?;
    for row in range.take(READ_SCAN) {
        let (_, v) = row.map_err(storage)?;
        let entry: InboxEntry = from_json(v.value())?;
        if entry.chat != *chat {
            continue;
        }
        let m = load_message(messages, chat, entry.id)?;
        if m.from == *user {
            continue;
        }
        passed += 1;
        let rkey = (chat.as_str(), m.id.0, user.as_str());
        let before = receipts
            .get(rkey)
            .map_err(storage)?
            .map(|g| g.value())
            .unwrap_or(0);
        if before < crate::ReceiptStatus::Read as u8 {
            receipts
                .insert(rkey, crate::ReceiptStatus::Read as u8)
                .map_err(storage)?;
            newly.push(m);
        }
    }
    if newly.len() > READ_REPORT {
        newly.drain(..newly.len() - READ_REPORT);
    }
    st.unread = st.unread.saturating_sub(passed);
    st.read_seq = upto;
    chats.insert(key, st.encode().as_slice()).map_err(storage)?;
    Ok(ReadOutcome {
        newly_read: newly,
        unread: st.unread,
        read_seq: upto,
    })
}

/// Writes a group record and keeps the membership index in step with it.
fn put_group(txn: &redb::WriteTransaction, g: &GroupRecord) -> Result<()> {
    let mut groups = txn.open_table(GROUPS).map_err(storage)?;
    let mut members = txn.open_table(MEMBERSHIPS).map_err(storage)?;
    let old: Option<GroupRecord> = match groups.get(g.id.as_str()).map_err(storage)? {
        Some(v) => Some(from_json(v.value())?),
        None => None,
    };
    if let Some(old) = old {
        for m in &old.members {
            if g.member(&m.user).is_none() {
                members
                    .remove((m.user.as_str(), g.id.as_str()))
                    .map_err(storage)?;
            }
        }
    }
    for m in &g.members {
        members
            .insert((m.user.as_str(), g.id.as_str()), ())
            .map_err(storage)?;
    }
    let bytes = to_json(g)?;
    groups
        .insert(g.id.as_str(), bytes.as_slice())
        .map_err(storage)?;
    Ok(())
}

/// Notes that message `id` of `chat` carries `media`. An upload expired meanwhile is left as
/// it is: the message still names it, and asking for it says it expired.
fn link_media(
    txn: &redb::WriteTransaction,
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

/// Decodes a stored JSON record.
fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(corrupt)
}

/// Decodes what a `get` or `remove` found, if anything.
fn from_json_opt<T: serde::de::DeserializeOwned>(
    found: Option<redb::AccessGuard<'_, &[u8]>>,
) -> Result<Option<T>> {
    found.map(|g| from_json(g.value())).transpose()
}

/// A push token's row in `PUSH_OWNERS`.
fn owner_key(t: &PushToken) -> (&str, &str) {
    (t.platform.as_str(), t.token.as_str())
}

/// A push job's row in `PUSH_JOBS`.
fn job_key(j: &PushJob) -> (&str, &str, &str) {
    (j.user.as_str(), j.device.as_str(), j.collapse.as_str())
}

/// Encodes a record as JSON for storage.
fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(corrupt)
}

/// Every key of a `(user, text)` table that belongs to `user`.
fn user_prefix(user: &UserId) -> std::ops::Range<(&str, &str)> {
    // Any text key sorts at or after "" and before a lone U+10FFFF.
    (user.as_str(), "")..(user.as_str(), "\u{10FFFF}")
}

fn load_message(
    messages: &impl ReadableTable<(&'static str, u128), &'static [u8]>,
    chat: &ChatKey,
    id: MsgId,
) -> Result<StoredMessage> {
    let m = messages
        .get((chat.as_str(), id.0))
        .map_err(storage)?
        .ok_or_else(|| corrupt(format!("missing message {id} of {}", chat.as_str())))?;
    from_json(m.value())
}

#[async_trait]
impl crate::Store for EmbeddedStore {
    async fn create_user(&self, user: UserRecord) -> Result<bool> {
        let id = user.id.clone();
        self.write(Some(&id), move |txn| {
            let mut t = txn.open_table(USERS).map_err(storage)?;
            if t.get(user.id.as_str()).map_err(storage)?.is_some() {
                return Ok(false);
            }
            let bytes = to_json(&user)?;
            t.insert(user.id.as_str(), bytes.as_slice())
                .map_err(storage)?;
            Ok(true)
        })
        .await
    }

    async fn set_password(&self, user: &UserId, password_hash: String) -> Result<bool> {
        let changed = Some(user);
        let user = user.clone();
        self.write(changed, move |txn| {
            let mut t = txn.open_table(USERS).map_err(storage)?;
            let mut rec: UserRecord = match t.get(user.as_str()).map_err(storage)? {
                Some(g) => from_json(g.value())?,
                None => return Ok(false),
            };
            rec.password_hash = password_hash;
            let bytes = to_json(&rec)?;
            t.insert(user.as_str(), bytes.as_slice()).map_err(storage)?;
            Ok(true)
        })
        .await
    }

    async fn user(&self, user: &UserId) -> Result<Option<UserRecord>> {
        let (cached, generation) = self.users.get(user);
        if let Some(known) = cached {
            return Ok(known);
        }
        let id = user.clone();
        let found: Option<UserRecord> = self
            .read(move |txn| {
                let t = txn.open_table(USERS).map_err(storage)?;
                from_json_opt(t.get(id.as_str()).map_err(storage)?)
            })
            .await?;
        self.users.fill(generation, user.clone(), found.clone());
        Ok(found)
    }

    async fn users(&self) -> Result<Vec<UserId>> {
        self.read(|txn| {
            let t = txn.open_table(USERS).map_err(storage)?;
            let mut out = Vec::with_capacity(t.len().map_err(storage)? as usize);
            for row in t.iter().map_err(storage)? {
                let (k, _) = row.map_err(storage)?;
                out.push(UserId::new(k.value()).map_err(corrupt)?);
            }
            Ok(out)
        })
        .await
    }

    async fn remove_user(&self, user: &UserId) -> Result<bool> {
        let changed = Some(user);
        let user = user.clone();
        self.write(changed, move |txn| {
            let mut t = txn.open_table(USERS).map_err(storage)?;
            let removed = t.remove(user.as_str()).map_err(storage)?.is_some();
            // A removed user's devices get no more notifications.
            let mut tokens = txn.open_table(PUSH_TOKENS).map_err(storage)?;
            let mut owners = txn.open_table(PUSH_OWNERS).map_err(storage)?;
            let gone: Vec<PushToken> = tokens
                .extract_from_if(user_prefix(&user), |_, _| true)
                .map_err(storage)?
                .map(|row| row.map_err(storage).and_then(|(_, v)| from_json(v.value())))
                .collect::<Result<_>>()?;
            for t in gone {
                owners.remove(owner_key(&t)).map_err(storage)?;
            }
            let mut jobs = txn.open_table(PUSH_JOBS).map_err(storage)?;
            let range = (user.as_str(), "", "")..(user.as_str(), "\u{10FFFF}", "");
            jobs.retain_in(range, |_, _| false).map_err(storage)?;
            // The account's own state goes with it, so a user later created under the same
            // name starts empty (seq 1, no chats, no memberships, no dedup memory).
            let mut inbox = txn.open_table(INBOX).map_err(storage)?;
            inbox
                .retain_in((user.as_str(), 0)..=(user.as_str(), u64::MAX), |_, _| false)
                .map_err(storage)?;
            txn.open_table(INBOX_HEAD)
                .map_err(storage)?
                .remove(user.as_str())
                .map_err(storage)?;
            for table in [CHATS, DEDUP] {
                txn.open_table(table)
                    .map_err(storage)?
                    .retain_in(user_prefix(&user), |_, _| false)
                    .map_err(storage)?;
            }
            let mut memberships = txn.open_table(MEMBERSHIPS).map_err(storage)?;
            let mut groups = txn.open_table(GROUPS).map_err(storage)?;
            let left: Vec<String> = memberships
                .extract_from_if(user_prefix(&user), |_, _| true)
                .map_err(storage)?
                .map(|row| row.map(|(k, _)| k.value().1.to_owned()).map_err(storage))
                .collect::<Result<_>>()?;
            // The bridge takes a removed user out of each group with a system message first;
            // a group still listing them (a removal with no server running) is mended here.
            for gid in left {
                let rec: Option<GroupRecord> =
                    from_json_opt(groups.get(gid.as_str()).map_err(storage)?)?;
                if let Some(g) = rec {
                    let next = g.without(&user);
                    groups
                        .insert(gid.as_str(), to_json(&next)?.as_slice())
                        .map_err(storage)?;
                }
            }
            Ok(removed)
        })
        .await
    }

    async fn append(&self, msg: NewMessage) -> Result<Appended> {
        match self.submit(Op::Append(Box::new(msg))).await? {
            Done::Appended(a) => Ok(*a),
            _ => Err(corrupt("writer answered an append with something else")),
        }
    }

    async fn mark(&self, marks: Vec<ReceiptMark>) -> Result<Vec<bool>> {
        if marks.is_empty() {
            return Ok(Vec::new());
        }
        match self.submit(Op::Mark(marks)).await? {
            Done::Marked(m) => Ok(m),
            _ => Err(corrupt("writer answered a mark with something else")),
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
            _ => Err(corrupt("writer answered a read with something else")),
        }
    }

    async fn sync(
        &self,
        user: &UserId,
        after: Seq,
        limit: usize,
    ) -> Result<(Vec<InboxItem>, bool)> {
        let user = user.clone();
        self.read(move |txn| {
            let inbox = txn.open_table(INBOX).map_err(storage)?;
            let messages = txn.open_table(MESSAGES).map_err(storage)?;
            let mut out = Vec::new();
            let mut more = false;
            let start = after.saturating_add(1);
            for row in inbox
                .range((user.as_str(), start)..=(user.as_str(), u64::MAX))
                .map_err(storage)?
            {
                let (k, v) = row.map_err(storage)?;
                if out.len() == limit {
                    more = true;
                    break;
                }
                let entry: InboxEntry = from_json(v.value())?;
                let message = load_message(&messages, &entry.chat, entry.id)?;
                out.push(InboxItem {
                    seq: k.value().1,
                    message,
                });
            }
            Ok((out, more))
        })
        .await
    }

    async fn history(
        &self,
        chat: &ChatKey,
        before: Option<MsgId>,
        limit: usize,
    ) -> Result<(Vec<StoredMessage>, bool)> {
        let chat = chat.clone();
        self.read(move |txn| {
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

    async fn message(&self, chat: &ChatKey, id: MsgId) -> Result<Option<StoredMessage>> {
        let chat = chat.clone();
        self.read(move |txn| {
            let messages = txn.open_table(MESSAGES).map_err(storage)?;
            let m = messages.get((chat.as_str(), id.0)).map_err(storage)?;
            m.map(|m| from_json(m.value())).transpose()
        })
        .await
    }

    async fn chats(&self, user: &UserId) -> Result<Vec<ChatSummary>> {
        let user = user.clone();
        self.read(move |txn| {
            let chats = txn.open_table(CHATS).map_err(storage)?;
            let messages = txn.open_table(MESSAGES).map_err(storage)?;
            let mut out = Vec::new();
            for row in chats.range(user_prefix(&user)).map_err(storage)? {
                let (k, v) = row.map_err(storage)?;
                let chat = ChatKey::from_stored(k.value().1.to_owned());
                let state = ChatState::decode(v.value())?;
                let last = load_message(&messages, &chat, state.last_id)?;
                out.push(ChatSummary {
                    chat,
                    last,
                    last_seq: state.last_seq,
                    unread: state.unread,
                });
            }
            out.sort_by_key(|c| std::cmp::Reverse(c.last.id));
            Ok(out)
        })
        .await
    }

    async fn in_chat(&self, user: &UserId, chat: &ChatKey) -> Result<bool> {
        let (user, chat) = (user.clone(), chat.clone());
        self.read(move |txn| {
            let chats = txn.open_table(CHATS).map_err(storage)?;
            Ok(chats
                .get((user.as_str(), chat.as_str()))
                .map_err(storage)?
                .is_some())
        })
        .await
    }

    async fn purge_dedup(&self, older_than_ms: u64) -> Result<usize> {
        self.write(None, move |txn| {
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

    async fn group(&self, id: &GroupId) -> Result<Option<GroupRecord>> {
        let id = id.clone();
        self.read(move |txn| {
            let t = txn.open_table(GROUPS).map_err(storage)?;
            from_json_opt(t.get(id.as_str()).map_err(storage)?)
        })
        .await
    }

    async fn groups_of(&self, user: &UserId) -> Result<Vec<GroupId>> {
        let user = user.clone();
        self.read(move |txn| {
            let t = txn.open_table(MEMBERSHIPS).map_err(storage)?;
            let mut out = Vec::new();
            for row in t.range(user_prefix(&user)).map_err(storage)? {
                let (k, _) = row.map_err(storage)?;
                out.push(GroupId::new(k.value().1).map_err(corrupt)?);
            }
            Ok(out)
        })
        .await
    }

    async fn receipt(
        &self,
        chat: &ChatKey,
        id: MsgId,
        user: &UserId,
    ) -> Result<Option<ReceiptStatus>> {
        let (chat, user) = (chat.clone(), user.clone());
        self.read(move |txn| {
            let t = txn.open_table(RECEIPTS).map_err(storage)?;
            let v = t
                .get((chat.as_str(), id.0, user.as_str()))
                .map_err(storage)?;
            Ok(match v.map(|g| g.value()) {
                Some(1) => Some(ReceiptStatus::Delivered),
                Some(2) => Some(ReceiptStatus::Read),
                _ => None,
            })
        })
        .await
    }

    async fn push_register(&self, token: PushToken) -> Result<()> {
        self.write(None, move |txn| {
            let mut tokens = txn.open_table(PUSH_TOKENS).map_err(storage)?;
            let mut owners = txn.open_table(PUSH_OWNERS).map_err(storage)?;
            let key = owner_key(&token);
            // The token moves: a phone that logs into another account stops notifying the first.
            let previous = owners
                .get(key)
                .map_err(storage)?
                .map(|g| (g.value().0.to_owned(), g.value().1.to_owned()));
            if let Some((u, d)) = previous {
                tokens.remove((u.as_str(), d.as_str())).map_err(storage)?;
            }
            let mine = (token.user.as_str(), token.device.as_str());
            let old: Option<PushToken> = from_json_opt(tokens.get(mine).map_err(storage)?)?;
            if let Some(old) = old {
                owners.remove(owner_key(&old)).map_err(storage)?;
            }
            tokens
                .insert(mine, to_json(&token)?.as_slice())
                .map_err(storage)?;
            owners.insert(key, mine).map_err(storage)?;
            Ok(())
        })
        .await
    }

    async fn push_unregister(&self, user: &UserId, device: &DeviceId) -> Result<bool> {
        let (user, device) = (user.clone(), device.clone());
        self.write(None, move |txn| {
            let mut tokens = txn.open_table(PUSH_TOKENS).map_err(storage)?;
            let mut owners = txn.open_table(PUSH_OWNERS).map_err(storage)?;
            let old: Option<PushToken> = from_json_opt(
                tokens
                    .remove((user.as_str(), device.as_str()))
                    .map_err(storage)?,
            )?;
            if let Some(old) = &old {
                owners.remove(owner_key(old)).map_err(storage)?;
            }
            Ok(old.is_some())
        })
        .await
    }

    async fn push_tokens(&self, user: &UserId) -> Result<Vec<PushToken>> {
        let user = user.clone();
        self.read(move |txn| {
            let t = txn.open_table(PUSH_TOKENS).map_err(storage)?;
            let mut out = Vec::new();
            for row in t.range(user_prefix(&user)).map_err(storage)? {
                let (_, v) = row.map_err(storage)?;
                out.push(from_json(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn push_forget(&self, platform: PushPlatform, token: &str) -> Result<bool> {
        let token = token.to_owned();
        self.write(None, move |txn| {
            let mut tokens = txn.open_table(PUSH_TOKENS).map_err(storage)?;
            let mut owners = txn.open_table(PUSH_OWNERS).map_err(storage)?;
            let owner = owners
                .remove((platform.as_str(), token.as_str()))
                .map_err(storage)?
                .map(|g| (g.value().0.to_owned(), g.value().1.to_owned()));
            match owner {
                Some((u, d)) => {
                    tokens.remove((u.as_str(), d.as_str())).map_err(storage)?;
                    Ok(true)
                }
                None => Ok(false),
            }
        })
        .await
    }

    async fn push_enqueue(&self, jobs: Vec<PushJob>) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        self.write(None, move |txn| {
            let mut t = txn.open_table(PUSH_JOBS).map_err(storage)?;
            for mut job in jobs {
                let waiting: Option<PushJob> =
                    from_json_opt(t.get(job_key(&job)).map_err(storage)?)?;
                if let Some(w) = waiting {
                    job.collapse_into(&w);
                }
                t.insert(job_key(&job), to_json(&job)?.as_slice())
                    .map_err(storage)?;
            }
            Ok(())
        })
        .await
    }

    async fn push_due(&self, now_ms: u64, limit: usize) -> Result<Vec<PushJob>> {
        self.read(move |txn| {
            let t = txn.open_table(PUSH_JOBS).map_err(storage)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(storage)? {
                let (_, v) = row.map_err(storage)?;
                let job: PushJob = from_json(v.value())?;
                if job.due_ms <= now_ms {
                    out.push(job);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn push_settle(&self, job: &PushJob, retry: Option<(u32, u64)>) -> Result<()> {
        let job = job.clone();
        self.write(None, move |txn| {
            let mut t = txn.open_table(PUSH_JOBS).map_err(storage)?;
            let key = job_key(&job);
            let waiting: Option<PushJob> = from_json_opt(t.get(key).map_err(storage)?)?;
            let Some(mut w) = waiting else {
                return Ok(());
            };
            match retry {
                None if w.version == job.version => {
                    t.remove(key).map_err(storage)?;
                }
                None => {}
                Some((attempts, due_ms)) => {
                    w.attempts = attempts;
                    w.due_ms = due_ms;
                    t.insert(key, to_json(&w)?.as_slice()).map_err(storage)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn media_create(&self, media: MediaRecord) -> Result<()> {
        self.write(None, move |txn| {
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

    async fn media(&self, id: &MediaId) -> Result<Option<MediaRecord>> {
        let id = id.clone();
        self.read(move |txn| {
            let t = txn.open_table(MEDIA).map_err(storage)?;
            if let Some(rec) = from_json_opt(t.get(id.as_str()).map_err(storage)?)? {
                return Ok(Some(rec));
            }
            let gone = txn.open_table(MEDIA_GONE).map_err(storage)?;
            from_json_opt(gone.get(id.as_str()).map_err(storage)?)
        })
        .await
    }

    async fn media_ready(&self, id: &MediaId) -> Result<bool> {
        let id = id.clone();
        self.write(None, move |txn| {
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

    async fn media_older(
        &self,
        state: MediaState,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<MediaRecord>> {
        let floor = MediaId::floor_at(before_ms);
        self.read(move |txn| {
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

    async fn media_expire(&self, id: &MediaId) -> Result<Option<MediaRecord>> {
        let id = id.clone();
        self.write(None, move |txn| {
            let mut t = txn.open_table(MEDIA).map_err(storage)?;
            let Some(rec) = from_json_opt::<MediaRecord>(t.remove(id.as_str()).map_err(storage)?)?
            else {
                return Ok(None);
            };
            let mut p = txn.open_table(MEDIA_PENDING).map_err(storage)?;
            p.remove(id.as_str()).map_err(storage)?;
            if rec.state == MediaState::Ready {
                let mut messages = txn.open_table(MESSAGES).map_err(storage)?;
                for (chat, msg) in &rec.sent_in {
                    let mut m = match load_message(&messages, chat, *msg) {
                        Ok(m) => m,
                        // A message gone (a removed chat) has nothing left to mark.
                        Err(StoreError::Corrupt(_)) => continue,
                        Err(e) => return Err(e),
                    };
                    if let Some(serde_json::Value::Object(media)) = &mut m.content.media {
                        media.insert("expired".into(), serde_json::Value::Bool(true));
                    }
                    messages
                        .insert((chat.as_str(), msg.0), to_json(&m)?.as_slice())
                        .map_err(storage)?;
                }
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
}
