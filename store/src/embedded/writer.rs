//! The writer thread: every change to inboxes, chat state and receipts, in batches.
//!
//! It takes every job waiting (up to `max_batch`), applies them in order in one transaction and
//! commits once, then answers them all: under load many sends share one fsync; alone, a send
//! waits for just its own. Being the only writer of these tables is what makes each user's
//! inbox seq gap-free, and unread counts and read pointers race-free, without locks. It must
//! never answer a job before its batch is committed.

use std::sync::Arc;

use natter_types::{ChatKey, Seq, UserId};
use redb::Database;
use tokio::sync::{mpsc, oneshot};

use super::db::{storage, Handle};
use super::tables::BatchTables;
use super::{messages, receipts, EmbeddedOptions};
use crate::{Appended, NewMessage, ReadOutcome, ReceiptMark, Result, StoreError};

/// What the writer thread does; everything that changes inboxes or chat state goes through it,
/// so seqs, unread counts and read pointers never race.
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
}

/// The answer to an [`Op`], of the same kind.
pub(super) enum Done {
    Appended(Box<Appended>),
    Marked(Vec<bool>),
    Read(ReadOutcome),
}

/// An operation and where its answer goes.
pub(super) struct Job {
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<Result<Done>>,
}

/// Runs until every sender of `rx` is gone (the store was dropped).
pub(super) fn run(db: Arc<Handle>, mut rx: mpsc::Receiver<Job>, opts: EmbeddedOptions) {
    // The newest message id given out; only a committed batch moves it.
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
            Err(e) => refuse(&db, batch, e),
        }
    }
}

/// Answers every job of a failed batch with its error and, after an I/O error, re-opens the
/// file (redb refuses every later write until then).
fn refuse(db: &Handle, batch: Vec<Job>, e: StoreError) {
    metrics::counter!("natter_store_commit_failures_total").increment(1);
    tracing::error!(error = %e, sends = batch.len(), "store commit failed; sends refused");
    for job in batch {
        let _ = job.reply.send(Err(e.clone()));
    }
    if let StoreError::Storage { .. } = e {
        if let Err(e) = db.reopen() {
            tracing::error!(error = %e, "store could not be re-opened; will retry");
        }
    }
}

/// Applies every operation of a batch in one transaction; all or nothing.
fn write_batch(db: &Database, ops: &[&Op], last_id: &mut u128, dedup_ms: u64) -> Result<Vec<Done>> {
    let txn = db.begin_write().map_err(storage)?;
    let mut next_id = *last_id;
    let out = {
        let mut tables = BatchTables::open(&txn)?;
        ops.iter()
            .map(|op| apply(&txn, &mut tables, op, &mut next_id, dedup_ms))
            .collect::<Result<Vec<Done>>>()?
    };
    txn.commit().map_err(storage)?;
    // Only a committed batch moves the id floor; a failed one leaves it as it was.
    *last_id = next_id;
    Ok(out)
}

/// Applies one operation inside the batch's transaction.
fn apply(
    txn: &redb::WriteTransaction,
    tables: &mut BatchTables<'_>,
    op: &Op,
    next_id: &mut u128,
    dedup_ms: u64,
) -> Result<Done> {
    Ok(match op {
        Op::Append(msg) => Done::Appended(Box::new(messages::append(
            txn, tables, msg, next_id, dedup_ms,
        )?)),
        Op::Mark(marks) => Done::Marked(receipts::mark(&mut tables.receipts, marks)?),
        Op::Read { user, chat, upto } => {
            Done::Read(receipts::read_upto(tables, user, chat, *upto)?)
        }
    })
}
