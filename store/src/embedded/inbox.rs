//! Inboxes: each reader's gap-free run of seqs, and their log of each chat (which gives the
//! chat list, last messages and unread counts without a summary row rewritten per message).

use fjall::Readable;
use natter_types::{ChatKey, MsgId, Seq, UserId};

use super::db::{storage, Tables};
use super::tables::{load_message, name_at, rows, rows_in, u64_at_end, user_chat};
use super::tables::{InboxEntry, Key, LogEntry, ReadPtr};
use super::writer::Batch;
use super::EmbeddedStore;
use crate::{ChatSummary, InboxItem, NewMessage, Result};

/// Gives every reader of `msg` (stored as `id`) the next seq of their inbox, pointing at it,
/// and the next entry of their log of the chat; returns each reader's seq. Runs in the writer's
/// batch, the only writer of inboxes: this is what keeps seqs gap-free. Three small rows per
/// reader, none read back: the inbox entry, the chat log entry, and for the sender their read
/// pointer (writing in a chat reads it).
pub(super) fn deliver(
    b: &mut Batch<'_, '_>,
    msg: &NewMessage,
    id: MsgId,
) -> Result<Vec<(UserId, Seq)>> {
    let mut seqs = Vec::with_capacity(msg.readers.len());
    for reader in &msg.readers {
        let own = *reader == msg.from;
        let seq = b.heads.inbox(b.tx, b.t, reader)? + 1;
        let before = b
            .heads
            .chat(b.tx, b.t, reader, &msg.chat)?
            .map_or(0, |(_, e)| e.from_others);
        let entry = LogEntry {
            id,
            own,
            from_others: before + u64::from(!own),
        };
        let inbox = InboxEntry {
            id,
            own,
            chat: msg.chat.clone(),
        };
        let uc = user_chat(reader, &msg.chat);
        b.tx.insert(
            &b.t.inbox,
            Key::name(reader.as_str()).u64(seq).done(),
            inbox.encode(),
        );
        b.tx.insert(&b.t.chat_log, log_key(&uc, seq), entry.encode());
        if own {
            let ptr = ReadPtr {
                seq,
                from_others: entry.from_others,
            };
            b.tx.insert(&b.t.read_ptrs, uc, ptr.encode());
        }
        b.heads.moved(reader, &msg.chat, seq, entry);
        seqs.push((reader.clone(), seq));
    }
    Ok(seqs)
}

/// The `chat_log` key of seq `seq` under a `(user, chat)` prefix.
pub(super) fn log_key(user_chat: &[u8], seq: Seq) -> Vec<u8> {
    let mut k = Vec::with_capacity(user_chat.len() + 8);
    k.extend_from_slice(user_chat);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// `user`'s read pointer in `chat` (zero where they never read it).
pub(super) fn read_ptr(
    r: &impl Readable,
    t: &Tables,
    user: &UserId,
    chat: &ChatKey,
) -> Result<ReadPtr> {
    r.get(&t.read_ptrs, user_chat(user, chat))
        .map_err(storage)?
        .map_or(Ok(ReadPtr::default()), |v| ReadPtr::decode(&v))
}

/// [`crate::Store::sync`]: one range scan of the inbox, and each message by its key.
pub(super) async fn sync(
    store: &EmbeddedStore,
    user: &UserId,
    after: Seq,
    limit: usize,
) -> Result<(Vec<InboxItem>, bool)> {
    let user = user.clone();
    store
        .read(move |snap, t| {
            let mut out = Vec::new();
            let mut more = false;
            let from = Key::name(user.as_str()).u64(after.saturating_add(1)).done();
            let to = Key::name(user.as_str()).u64(u64::MAX).done();
            for row in rows_in(snap, &t.inbox, &from, &to) {
                let (k, v) = row?;
                if out.len() == limit {
                    more = true;
                    break;
                }
                let entry = InboxEntry::decode(&v)?;
                let message = load_message(snap, &t.messages, &entry.chat, entry.id)?;
                out.push(InboxItem {
                    seq: u64_at_end(&k)?,
                    message,
                });
            }
            Ok((out, more))
        })
        .await
}

/// [`crate::Store::chats`]: walks `user`'s chat logs a chat at a time, reading each one's last
/// entry; the unread count is that entry's count from others less the read pointer's.
pub(super) async fn chats(store: &EmbeddedStore, user: &UserId) -> Result<Vec<ChatSummary>> {
    let user = user.clone();
    store
        .read(move |snap, t| {
            let prefix = Key::name(user.as_str()).done();
            let end = prefix_end(&prefix);
            let mut out = Vec::new();
            let mut from = prefix.clone();
            loop {
                // The first key at or after `from` names the next chat.
                let Some(first) = rows_in(snap, &t.chat_log, &from, &end).next() else {
                    break;
                };
                let (k, _) = first?;
                let (chat, _) = name_at(&k, prefix.len())?;
                let chat = ChatKey::from_stored(chat.to_owned());
                let uc = user_chat(&user, &chat);
                let Some(last) = rows(snap, &t.chat_log, &uc).next_back() else {
                    break;
                };
                let (k, v) = last?;
                let entry = LogEntry::decode(&v)?;
                let ptr = read_ptr(snap, t, &user, &chat)?;
                out.push(ChatSummary {
                    last: load_message(snap, &t.messages, &chat, entry.id)?,
                    last_seq: u64_at_end(&k)?,
                    unread: entry.from_others.saturating_sub(ptr.from_others),
                    chat,
                });
                from = prefix_end(&uc);
            }
            out.sort_by_key(|c| std::cmp::Reverse(c.last.id));
            Ok(out)
        })
        .await
}

/// The first key past every key that starts with `prefix` (a name prefix, ending in NUL: 0x01
/// in its place sorts after all of them).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last = 1;
    }
    end
}

/// [`crate::Store::in_chat`].
pub(super) async fn in_chat(store: &EmbeddedStore, user: &UserId, chat: &ChatKey) -> Result<bool> {
    let (user, chat) = (user.clone(), chat.clone());
    store
        .read(move |snap, t| {
            Ok(rows(snap, &t.chat_log, &user_chat(&user, &chat))
                .next()
                .is_some())
        })
        .await
}
