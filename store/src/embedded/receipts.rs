//! Receipts: how far each recipient has got with each message, and the read pointer that marks
//! a run of messages read at once.

use natter_types::{ChatKey, MsgId, Seq, UserId};
use redb::ReadableTable;

use super::db::storage;
use super::tables::{from_json, load_message, BatchTables, ChatState, InboxEntry, RECEIPTS};
use super::EmbeddedStore;
use crate::limits::{trim_newly_read, READ_SCAN};
use crate::{ReadOutcome, ReceiptMark, ReceiptStatus, Result};

/// The `RECEIPTS` table as the writer has it open.
type Receipts<'t> = redb::Table<'t, (&'static str, u128, &'static str), u8>;

/// Raises receipt statuses; `true` where one was raised. Runs in the writer's batch.
pub(super) fn mark(receipts: &mut Receipts<'_>, marks: &[ReceiptMark]) -> Result<Vec<bool>> {
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

/// Moves `user`'s read pointer in `chat` up to `upto`, marking what it passes as read. Runs in
/// the writer's batch, the only writer of chat state.
pub(super) fn read_upto(
    t: &mut BatchTables<'_>,
    user: &UserId,
    chat: &ChatKey,
    upto: Seq,
) -> Result<ReadOutcome> {
    let key = (user.as_str(), chat.as_str());
    let Some(mut st) = t
        .chats
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
    let (mut newly, passed) = mark_passed_read(t, user, chat, st.read_seq + 1, upto)?;
    trim_newly_read(&mut newly);
    st.unread = st.unread.saturating_sub(passed);
    st.read_seq = upto;
    t.chats
        .insert(key, st.encode().as_slice())
        .map_err(storage)?;
    Ok(ReadOutcome {
        newly_read: newly,
        unread: st.unread,
        read_seq: upto,
    })
}

/// Marks read the messages from others in `chat` at seqs `from..=to` of `user`'s inbox (at
/// most [`READ_SCAN`] entries looked at). Returns those not read before, and how many messages
/// from others it passed.
fn mark_passed_read(
    t: &mut BatchTables<'_>,
    user: &UserId,
    chat: &ChatKey,
    from: Seq,
    to: Seq,
) -> Result<(Vec<crate::StoredMessage>, u64)> {
    let mut newly = Vec::new();
    let mut passed = 0u64;
    let range = t
        .inbox
        .range((user.as_str(), from)..=(user.as_str(), to))
        .map_err(storage)?;
    for row in range.take(READ_SCAN) {
        let (_, v) = row.map_err(storage)?;
        let entry: InboxEntry = from_json(v.value())?;
        if entry.chat != *chat {
            continue;
        }
        let m = load_message(&t.messages, chat, entry.id)?;
        if m.from == *user {
            continue;
        }
        passed += 1;
        let rkey = (chat.as_str(), m.id.0, user.as_str());
        let before = t
            .receipts
            .get(rkey)
            .map_err(storage)?
            .map(|g| g.value())
            .unwrap_or(0);
        if before < ReceiptStatus::Read as u8 {
            t.receipts
                .insert(rkey, ReceiptStatus::Read as u8)
                .map_err(storage)?;
            newly.push(m);
        }
    }
    Ok((newly, passed))
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
        .read(move |txn| {
            let t = txn.open_table(RECEIPTS).map_err(storage)?;
            let v = t
                .get((chat.as_str(), id.0, user.as_str()))
                .map_err(storage)?;
            Ok(v.and_then(|g| ReceiptStatus::from_level(g.value().into())))
        })
        .await
}
