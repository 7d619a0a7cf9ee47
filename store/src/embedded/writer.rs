//! The writer thread: every change to inboxes, chat logs, read pointers and receipts, in
//! batches.
//!
//! It takes every job waiting (up to `max_batch`), applies them in order in one transaction and
//! commits once, synced to disk, then answers them all: under load many sends share one fsync;
//! alone, a send waits for just its own. Being the only writer of these keyspaces is what makes
//! each user's inbox seq gap-free and read pointers race-free without locks, and what lets it
//! keep each inbox's head in memory ([`Heads`]) instead of reading it back per message. It must
//! never answer a job before its batch is committed.

use std::collections::HashMap;
use std::sync::Arc;

use fjall::{PersistMode, Readable};
use natter_types::{ChatKey, Seq, UserId};
use tokio::sync::{mpsc, oneshot};

use super::db::{storage, Db, Handle, Tables, BATCH_KEY};
use super::tables::{u64_at_end, user_chat, Key, LogEntry};
use super::{messages, receipts, users, EmbeddedOptions, Tx};
use crate::{Appended, NewMessage, ReadOutcome, ReceiptMark, Result, StoreError};

/// Most inbox and chat heads kept in memory; past it the memory starts again from empty (a
/// miss costs one read of the last key).
const MAX_HEADS: usize = 1 << 18;

/// What the writer thread does; everything that changes inboxes or chat logs goes through it,
/// so seqs, counts and read pointers never race.
pub(super) enum Op {
    /// [`crate::Store::append`].
    Append(Box<NewMessage>),
    /// [`crate::Store::mark`].
    Mark(Vec<ReceiptMark>),
    /// [`crate::Store::read_upto`].
    Read {
        user: UserId,
        chat: ChatKey,
        upto: Seq,
    },
    /// [`crate::Store::remove_user`]: it empties an inbox, so the heads must know.
    RemoveUser(UserId),
    /// [`crate::Store::checkpoint`]: done by the writer so that no batch runs meanwhile.
    Checkpoint,
}

/// The answer to an [`Op`], of the same kind.
pub(super) enum Done {
    Appended(Box<Appended>),
    Marked(Vec<bool>),
    Read(ReadOutcome),
    Removed(bool),
    Checkpointed,
}

/// An operation and where its answer goes.
pub(super) struct Job {
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<Result<Done>>,
}

/// The last row of each inbox and of each reader's chat log, as committed plus what the batch
/// in progress wrote. Only the writer changes those keyspaces, so this memory is exact; a failed
/// batch forgets it all.
#[derive(Default)]
pub(super) struct Heads {
    inbox: HashMap<UserId, Seq>,
    chats: HashMap<(UserId, ChatKey), (Seq, LogEntry)>,
}

impl Heads {
    /// The last seq of `user`'s inbox (0 for an empty one).
    pub(super) fn inbox(&mut self, tx: &Tx<'_>, t: &Tables, user: &UserId) -> Result<Seq> {
        if let Some(seq) = self.inbox.get(user) {
            return Ok(*seq);
        }
        let last = tx
            .prefix(&t.inbox, Key::name(user.as_str()).done())
            .next_back();
        let seq = match last {
            Some(g) => u64_at_end(&g.key().map_err(storage)?)?,
            None => 0,
        };
        self.bound();
        self.inbox.insert(user.clone(), seq);
        Ok(seq)
    }

    /// The last entry of `user`'s log of `chat`, with its seq; `None` if they have none.
    pub(super) fn chat(
        &mut self,
        tx: &Tx<'_>,
        t: &Tables,
        user: &UserId,
        chat: &ChatKey,
    ) -> Result<Option<(Seq, LogEntry)>> {
        let key = (user.clone(), chat.clone());
        if let Some(head) = self.chats.get(&key) {
            return Ok(Some(*head));
        }
        let Some(g) = tx.prefix(&t.chat_log, user_chat(user, chat)).next_back() else {
            return Ok(None);
        };
        let (k, v) = g.into_inner().map_err(storage)?;
        let head = (u64_at_end(&k)?, LogEntry::decode(&v)?);
        self.bound();
        self.chats.insert(key, head);
        Ok(Some(head))
    }

    /// Notes a new last inbox seq and chat log entry of `user`.
    pub(super) fn moved(&mut self, user: &UserId, chat: &ChatKey, seq: Seq, entry: LogEntry) {
        self.inbox.insert(user.clone(), seq);
        self.chats
            .insert((user.clone(), chat.clone()), (seq, entry));
    }

    /// Forgets `user`'s heads (their inbox was emptied).
    pub(super) fn forget(&mut self, user: &UserId) {
        self.inbox.remove(user);
        self.chats.retain(|(u, _), _| u != user);
    }

    /// Keeps the memory bounded: full, it starts again from empty.
    fn bound(&mut self) {
        if self.inbox.len() >= MAX_HEADS || self.chats.len() >= MAX_HEADS {
            self.inbox.clear();
            self.chats.clear();
        }
    }
}

/// What a batch works with: its transaction, the keyspaces, the heads, and the newest message
/// id given out.
pub(super) struct Batch<'a, 'tx> {
    pub(super) tx: &'a mut Tx<'tx>,
    pub(super) t: &'a Tables,
    pub(super) heads: &'a mut Heads,
    pub(super) next_id: &'a mut u128,
    pub(super) dedup_ms: u64,
}

/// Why a batch was not committed.
enum Failed {
    /// An operation failed before the commit: nothing was written.
    Apply(StoreError),
    /// The commit itself failed (a full disk): fjall's journal may hold all of the batch or none
    /// of it, so its answers are kept until that is settled.
    Commit(StoreError, Vec<Done>),
}

/// Runs until every sender of `rx` is gone (the store was dropped).
pub(super) fn run(db: Arc<Handle>, mut rx: mpsc::Receiver<Job>, opts: EmbeddedOptions) {
    // The newest message id given out; only a committed batch moves it.
    let mut last_id: u128 = 0;
    let mut heads = Heads::default();
    let mut batch_no = db.get().and_then(|d| last_batch(&d)).unwrap_or(0);
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
        let (checkpoints, batch): (Vec<Job>, Vec<Job>) = batch
            .into_iter()
            .partition(|j| matches!(j.op, Op::Checkpoint));
        if !checkpoints.is_empty() {
            // Before the batch is fine: a checkpoint only saves time at the next open.
            let done = db.get().and_then(|d| checkpoint(&d));
            for job in checkpoints {
                let _ = job.reply.send(done.clone().map(|()| Done::Checkpointed));
            }
        }
        if batch.is_empty() {
            continue;
        }
        let ops: Vec<&Op> = batch.iter().map(|j| &j.op).collect();
        let started = std::time::Instant::now();
        batch_no += 1;
        let mut next_id = last_id;
        let result = db
            .get()
            .map_err(Failed::Apply)
            .and_then(|d| write_batch(&d, &ops, &mut heads, &mut next_id, opts.dedup_ms, batch_no));
        let answers = match result {
            Ok(out) => Ok(out),
            Err(Failed::Commit(e, out)) => match settle(&db, batch_no) {
                Ok(true) => {
                    tracing::warn!(error = %e, "store commit reported a failure, but the batch was \
                        written whole and is now synced; sends answered as stored");
                    Ok(out)
                }
                Ok(false) => Err((e, false)),
                Err(again) => {
                    tracing::error!(error = %again, "store could not be re-opened; will retry");
                    Err((e, false))
                }
            },
            Err(Failed::Apply(e)) => Err((e, true)),
        };
        match answers {
            Ok(out) => {
                // Only a committed batch moves the id floor; a failed one leaves it as it was.
                last_id = next_id;
                metrics::histogram!("natter_store_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                for (job, r) in batch.into_iter().zip(out) {
                    let _ = job.reply.send(Ok(r));
                }
            }
            Err((e, reopen)) => {
                heads = Heads::default();
                refuse(&db, batch, e, reopen)
            }
        }
    }
}

/// Writes every keyspace's memory table into a sorted file and waits for it, so that the
/// journal holds nothing a later open must replay.
fn checkpoint(db: &Db) -> Result<()> {
    db.db.persist(PersistMode::SyncAll).map_err(storage)?;
    for ks in db.t.all() {
        // fjall 3.1 keeps this public but out of its docs (its own tests use it); the crate's
        // version is pinned to 3.1.x for it.
        ks.inner().rotate_memtable_and_wait().map_err(storage)?;
    }
    Ok(())
}

/// The number of the last batch committed (0 for a new store).
fn last_batch(db: &Db) -> Result<u64> {
    let v = db.t.meta.get(BATCH_KEY).map_err(storage)?;
    Ok(v.and_then(|v| v.as_ref().try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

/// After a failed commit: re-opens the database (fjall refuses every write until then) and
/// tells whether batch `batch_no` is in it. A journal entry is all or nothing, so if its number
/// is there so is the whole batch, which is then synced before anyone hears it was stored.
fn settle(db: &Handle, batch_no: u64) -> Result<bool> {
    db.reopen()?;
    let d = db.get()?;
    if last_batch(&d)? != batch_no {
        return Ok(false);
    }
    d.db.persist(PersistMode::SyncAll).map_err(storage)?;
    Ok(true)
}

/// Answers every job of a failed batch with its error and, after an I/O error not yet dealt
/// with (`reopen`), re-opens the database (fjall refuses every later write until then).
fn refuse(db: &Handle, batch: Vec<Job>, e: StoreError, reopen: bool) {
    metrics::counter!("natter_store_commit_failures_total").increment(1);
    tracing::error!(error = %e, sends = batch.len(), "store commit failed; sends refused");
    for job in batch {
        let _ = job.reply.send(Err(e.clone()));
    }
    if let (StoreError::Storage { .. }, true) = (&e, reopen) {
        if let Err(e) = db.reopen() {
            tracing::error!(error = %e, "store could not be re-opened; will retry");
        }
    }
}

/// Applies every operation of a batch in one transaction, with the batch's number, and commits
/// it synced to disk; all or nothing.
fn write_batch(
    db: &Db,
    ops: &[&Op],
    heads: &mut Heads,
    next_id: &mut u128,
    dedup_ms: u64,
    batch_no: u64,
) -> std::result::Result<Vec<Done>, Failed> {
    let mut tx = db.db.write_tx().durability(Some(PersistMode::SyncAll));
    let out = {
        let mut b = Batch {
            tx: &mut tx,
            t: &db.t,
            heads,
            next_id,
            dedup_ms,
        };
        ops.iter()
            .map(|op| apply(&mut b, op))
            .collect::<Result<Vec<Done>>>()
            .map_err(Failed::Apply)?
    };
    tx.insert(&db.t.meta, BATCH_KEY, batch_no.to_be_bytes());
    match tx.commit() {
        Ok(()) => Ok(out),
        Err(e) => Err(Failed::Commit(storage(e), out)),
    }
}

/// Applies one operation inside the batch's transaction.
fn apply(b: &mut Batch<'_, '_>, op: &Op) -> Result<Done> {
    Ok(match op {
        Op::Append(msg) => Done::Appended(Box::new(messages::append(b, msg)?)),
        Op::Mark(marks) => Done::Marked(receipts::mark(b.tx, b.t, marks)?),
        Op::Read { user, chat, upto } => Done::Read(receipts::read_upto(b, user, chat, *upto)?),
        // Taken out of every batch before it starts (see `run`).
        Op::Checkpoint => Done::Checkpointed,
        Op::RemoveUser(user) => {
            let removed = users::remove_user_in(b.tx, b.t, user)?;
            b.heads.forget(user);
            Done::Removed(removed)
        }
    })
}
