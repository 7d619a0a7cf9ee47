//! Receipts: how far each recipient has got with each message, and the read pointer that marks
//! a run of messages read at once.

use fjall::Readable;
use natter_types::{ChatKey, MsgId, Seq, UserId};

use super::db::{storage, Tables};
use super::inbox::{log_key, read_ptr};
use super::tables::{load_message, rows_in, user_chat, Key, LogEntry, ReadPtr};
use super::writer::Batch;
use super::{EmbeddedStore, Tx};
use crate::limits::{trim_newly_read, READ_SCAN};
use crate::{ReadOutcome, ReceiptMark, ReceiptStatus, Result};

/// A receipt's key: the message's, then the recipient.
pub(super) fn receipt_key(chat: &ChatKey, id: MsgId, user: &UserId) -> Vec<u8> {
    Key::name(chat.as_str()).id(id).last(user.as_str())
}

/// The stored level of a receipt (0 where there is none).
fn level(r: &impl Readable, t: &Tables, key: &[u8]) -> Result<u8> {
    Ok(r.get(&t.receipts, key)
        .map_err(storage)?
        .and_then(|v| v.first().copied())
        .unwrap_or(0))
}

/// Raises receipt statuses; `true` where one was raised. Runs in the writer's batch.
pub(super) fn mark(tx: &mut Tx<'_>, t: &Tables, marks: &[ReceiptMark]) -> Result<Vec<bool>> {
    let mut out = Vec::with_capacity(marks.len());
    for m in marks {
        let key = receipt_key(&m.chat, m.id, &m.user);
        let now = m.status as u8;
        let raised = now > level(&*tx, t, &key)?;
        if raised {
            tx.insert(&t.receipts, key, [now]);
        }
        out.push(raised);
    }
    Ok(out)
}

/// Moves `user`'s read pointer in `chat` up to `upto`, marking what it passes as read. Runs in
/// the writer's batch, the only writer of read pointers. Only this chat's log is scanned.
pub(super) fn read_upto(
    b: &mut Batch<'_, '_>,
    user: &UserId,
    chat: &ChatKey,
    upto: Seq,
) -> Result<ReadOutcome> {
    let Some((last_seq, last)) = b.heads.chat(b.tx, b.t, user, chat)? else {
        return Ok(ReadOutcome::default());
    };
    let ptr = read_ptr(&*b.tx, b.t, user, chat)?;
    let upto = upto.min(last_seq);
    if upto <= ptr.seq {
        return Ok(ReadOutcome {
            newly_read: Vec::new(),
            unread: last.from_others.saturating_sub(ptr.from_others),
            read_seq: ptr.seq,
        });
    }
    let uc = user_chat(user, chat);
    let mut newly = mark_passed_read(b.tx, b.t, user, chat, &uc, ptr.seq + 1, upto)?;
    trim_newly_read(&mut newly);
    // The count from others at `upto`: the last log entry at or before it.
    let at_upto = rows_in(
        &*b.tx,
        &b.t.chat_log,
        &log_key(&uc, 0),
        &log_key(&uc, upto + 1),
    )
    .next_back()
    .transpose()?
    .map(|(_, v)| LogEntry::decode(&v))
    .transpose()?
    .map_or(ptr.from_others, |e| e.from_others);
    let moved = ReadPtr {
        seq: upto,
        from_others: at_upto,
    };
    b.tx.insert(&b.t.read_ptrs, uc, moved.encode());
    Ok(ReadOutcome {
        newly_read: newly,
        unread: last.from_others.saturating_sub(at_upto),
        read_seq: upto,
    })
}

/// Marks read the messages from others in `user`'s log of `chat` at seqs `from..=to` (at most
/// [`READ_SCAN`] entries looked at). Returns those not read before.
fn mark_passed_read(
    tx: &mut Tx<'_>,
    t: &Tables,
    user: &UserId,
    chat: &ChatKey,
    uc: &[u8],
    from: Seq,
    to: Seq,
) -> Result<Vec<crate::StoredMessage>> {
    let passed: Vec<LogEntry> =
        rows_in(&*tx, &t.chat_log, &log_key(uc, from), &log_key(uc, to + 1))
            .take(READ_SCAN)
            .map(|row| row.and_then(|(_, v)| LogEntry::decode(&v)))
            .collect::<Result<_>>()?;
    let mut newly = Vec::new();
    for entry in passed.into_iter().filter(|e| !e.own) {
        let key = receipt_key(chat, entry.id, user);
        if level(&*tx, t, &key)? < ReceiptStatus::Read as u8 {
            tx.insert(&t.receipts, key, [ReceiptStatus::Read as u8]);
            newly.push(load_message(&*tx, &t.messages, chat, entry.id)?);
        }
    }
    Ok(newly)
}

/// [`crate::Store::receipt`].
pub(super) async fn receipt(
    store: &EmbeddedStore,
    chat: &ChatKey,
    id: MsgId,
    user: &UserId,
) -> Result<Option<ReceiptStatus>> {
    let (chat, user) = (chat.clone(), user.clone());
    store
        .read(move |snap, t| {
            let l = level(snap, t, &receipt_key(&chat, id, &user))?;
            Ok(ReceiptStatus::from_level(l.into()))
        })
        .await
}
