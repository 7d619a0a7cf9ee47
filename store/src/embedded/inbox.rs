//! Inboxes: each reader's gap-free run of seqs, and their view of each chat (last message,
//! unread count, read pointer).

use natter_types::{ChatKey, MsgId, Seq, UserId};
use redb::ReadableTable;

use super::db::storage;
use super::tables::{
    from_json, load_message, to_json, user_prefix, BatchTables, ChatState, InboxEntry, CHATS,
    INBOX, MESSAGES,
};
use super::EmbeddedStore;
use crate::{ChatSummary, InboxItem, NewMessage, Result};

/// Gives every reader of `msg` (stored as `id`) the next seq of their inbox, pointing at it,
/// and moves their view of the chat; returns each reader's seq. Runs in the writer's batch,
/// the only writer of heads: this is what keeps seqs gap-free.
pub(super) fn deliver(
    t: &mut BatchTables<'_>,
    msg: &NewMessage,
    id: MsgId,
) -> Result<Vec<(UserId, Seq)>> {
    let entry = to_json(&InboxEntry {
        chat: msg.chat.clone(),
        id,
    })?;
    let mut seqs = Vec::with_capacity(msg.readers.len());
    for reader in &msg.readers {
        let seq = t
            .heads
            .get(reader.as_str())
            .map_err(storage)?
            .map(|g| g.value())
            .unwrap_or(0)
            + 1;
        t.heads.insert(reader.as_str(), seq).map_err(storage)?;
        t.inbox
            .insert((reader.as_str(), seq), entry.as_slice())
            .map_err(storage)?;
        move_view(t, reader, msg, id, seq)?;
        seqs.push((reader.clone(), seq));
    }
    Ok(seqs)
}

/// Makes message `id` (at `seq` in `reader`'s inbox) the last of `reader`'s view of its chat.
fn move_view(
    t: &mut BatchTables<'_>,
    reader: &UserId,
    msg: &NewMessage,
    id: MsgId,
    seq: Seq,
) -> Result<()> {
    let key = (reader.as_str(), msg.chat.as_str());
    let (unread_before, read_before) = match t.chats.get(key).map_err(storage)? {
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
    t.chats.insert(key, state.as_slice()).map_err(storage)?;
    Ok(())
}

/// [`crate::Store::sync`].
pub(super) async fn sync(
    store: &EmbeddedStore,
    user: &UserId,
    after: Seq,
    limit: usize,
) -> Result<(Vec<InboxItem>, bool)> {
    let user = user.clone();
    store
        .read(move |txn| {
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

/// [`crate::Store::chats`].
pub(super) async fn chats(store: &EmbeddedStore, user: &UserId) -> Result<Vec<ChatSummary>> {
    let user = user.clone();
    store
        .read(move |txn| {
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

/// [`crate::Store::in_chat`].
pub(super) async fn in_chat(store: &EmbeddedStore, user: &UserId, chat: &ChatKey) -> Result<bool> {
    let (user, chat) = (user.clone(), chat.clone());
    store
        .read(move |txn| {
            let chats = txn.open_table(CHATS).map_err(storage)?;
            Ok(chats
                .get((user.as_str(), chat.as_str()))
                .map_err(storage)?
                .is_some())
        })
        .await
}
