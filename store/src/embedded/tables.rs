//! The keyspaces of the embedded store, how their keys are laid out, and how their rows are
//! encoded.
//!
//! This module owns the on-disk layout: every key's parts and order, the records kept, and the
//! codecs between rows and the store's types. It must never decide anything about chats or
//! users: the section modules do, through these helpers.
//!
//! Keys are byte strings that sort the way reads scan them, so that one chat's messages, one
//! user's inbox and one user's entries in one chat each lie side by side (a sync or a history
//! page is one range scan). A key is its parts in order: a name part (user, chat, group,
//! device: ASCII that never holds a NUL, checked by `natter_types`) ends with a NUL byte;
//! numbers are big-endian; a free-form last part (a client's `cid`, a push token) ends the key.
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `users` | user | user record JSON |
//! | `messages` | chat, id (u128) | message JSON |
//! | `inbox` | user, seq (u64) | [`InboxEntry`] (which message) |
//! | `chat_log` | user, chat, seq | [`LogEntry`] (which message, running count from others) |
//! | `read_ptrs` | user, chat | [`ReadPtr`] (the read pointer) |
//! | `dedup` | sender, cid | [`DedupEntry`] JSON |
//! | `groups` | group | group record JSON |
//! | `memberships` | user, group | empty |
//! | `receipts` | chat, id, recipient | one byte: 1 delivered, 2 read |
//! | `push_tokens` | user, device | push token JSON |
//! | `push_owners` | platform, token | (user, device) JSON |
//! | `push_jobs` | user, device, collapse key | push job JSON (only jobs not yet sent) |
//! | `media` / `media_gone` | media id (sorts by time) | media record JSON |
//! | `media_pending` | media id | empty |

use fjall::Readable;
use natter_types::{ChatKey, MsgId, Seq, UserId};
use serde::{Deserialize, Serialize};

use super::db::{corrupt, storage, Ks};
use crate::{Result, StoreError, StoredMessage};

/// A key being built part by part (see the module docs for the layout).
#[derive(Default)]
pub(super) struct Key(Vec<u8>);

impl Key {
    /// A key that starts with the name `s`.
    pub(super) fn name(s: &str) -> Key {
        Key::default().then(s)
    }

    /// Appends a name part (NUL-free by `natter_types`' checks) and its NUL end.
    pub(super) fn then(mut self, s: &str) -> Key {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }

    /// Appends a free-form last part.
    pub(super) fn last(mut self, s: &str) -> Vec<u8> {
        self.0.extend_from_slice(s.as_bytes());
        self.0
    }

    /// Appends a u64, big-endian so that numbers sort as bytes.
    pub(super) fn u64(mut self, n: u64) -> Key {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }

    /// Appends a message id.
    pub(super) fn id(mut self, id: MsgId) -> Key {
        self.0.extend_from_slice(&id.0.to_be_bytes());
        self
    }

    /// The key's bytes.
    pub(super) fn done(self) -> Vec<u8> {
        self.0
    }
}

/// The name part of `key` that starts at `at` (up to its NUL), and where the next part starts.
pub(super) fn name_at(key: &[u8], at: usize) -> Result<(&str, usize)> {
    let rest = key
        .get(at..)
        .ok_or_else(|| StoreError::corrupt("a key is shorter than its layout"))?;
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| StoreError::corrupt("a key's name part has no end"))?;
    let s = std::str::from_utf8(&rest[..end]).map_err(corrupt)?;
    Ok((s, at + end + 1))
}

/// The free-form text from `at` to the end of `key`.
pub(super) fn text_at(key: &[u8], at: usize) -> Result<&str> {
    let rest = key
        .get(at..)
        .ok_or_else(|| StoreError::corrupt("a key is shorter than its layout"))?;
    std::str::from_utf8(rest).map_err(corrupt)
}

/// The u64 that ends `key`.
pub(super) fn u64_at_end(key: &[u8]) -> Result<u64> {
    let tail = key
        .len()
        .checked_sub(8)
        .and_then(|i| key.get(i..))
        .ok_or_else(|| StoreError::corrupt("a key is shorter than its layout"))?;
    let b: [u8; 8] = tail
        .try_into()
        .map_err(|_| StoreError::corrupt("a key's number is not 8 bytes"))?;
    Ok(u64::from_be_bytes(b))
}

/// An `inbox` row: which message a reader's seq points at. 17 bytes and the chat key.
pub(super) struct InboxEntry {
    pub(super) id: MsgId,
    /// The reader sent it (their own message, on another device).
    pub(super) own: bool,
    pub(super) chat: ChatKey,
}

impl InboxEntry {
    /// The row: own flag, id, chat key.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(17 + self.chat.as_str().len());
        b.push(u8::from(self.own));
        b.extend_from_slice(&self.id.0.to_be_bytes());
        b.extend_from_slice(self.chat.as_str().as_bytes());
        b
    }

    /// The entry a row written by [`InboxEntry::encode`] holds.
    pub(super) fn decode(b: &[u8]) -> Result<InboxEntry> {
        let (own, id) = flag_and_id(b)?;
        let chat = std::str::from_utf8(&b[17..]).map_err(corrupt)?;
        Ok(InboxEntry {
            id,
            own,
            chat: ChatKey::from_stored(chat.to_owned()),
        })
    }
}

/// A `chat_log` row: one message of one chat in one reader's inbox, with how many messages
/// from others the reader has had in this chat up to and including it. The difference of two
/// such counts is an unread count, so no row is rewritten per message to keep one.
#[derive(Clone, Copy)]
pub(super) struct LogEntry {
    pub(super) id: MsgId,
    pub(super) own: bool,
    pub(super) from_others: u64,
}

impl LogEntry {
    /// The row's 25 bytes: own flag, id, count, big-endian.
    pub(super) fn encode(&self) -> [u8; 25] {
        let mut b = [0u8; 25];
        b[0] = u8::from(self.own);
        b[1..17].copy_from_slice(&self.id.0.to_be_bytes());
        b[17..].copy_from_slice(&self.from_others.to_be_bytes());
        b
    }

    /// The entry a row written by [`LogEntry::encode`] holds.
    pub(super) fn decode(b: &[u8]) -> Result<LogEntry> {
        if b.len() != 25 {
            return Err(StoreError::corrupt("a chat log row is not 25 bytes"));
        }
        let (own, id) = flag_and_id(b)?;
        let n: [u8; 8] = b[17..25].try_into().unwrap_or_default();
        Ok(LogEntry {
            id,
            own,
            from_others: u64::from_be_bytes(n),
        })
    }
}

/// The own flag and message id that open an inbox or chat log row.
fn flag_and_id(b: &[u8]) -> Result<(bool, MsgId)> {
    let id: [u8; 16] = b
        .get(1..17)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| StoreError::corrupt("an inbox row is shorter than 17 bytes"))?;
    Ok((b[0] == 1, MsgId(u128::from_be_bytes(id))))
}

/// A `read_ptrs` row: the inbox seq up to which a reader has read a chat, and the chat log's
/// count of messages from others at that seq.
#[derive(Clone, Copy, Default)]
pub(super) struct ReadPtr {
    pub(super) seq: Seq,
    pub(super) from_others: u64,
}

impl ReadPtr {
    /// The row's 16 bytes.
    pub(super) fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..].copy_from_slice(&self.from_others.to_be_bytes());
        b
    }

    /// The pointer a row written by [`ReadPtr::encode`] holds.
    pub(super) fn decode(b: &[u8]) -> Result<ReadPtr> {
        let b: &[u8; 16] = b
            .try_into()
            .map_err(|_| StoreError::corrupt("a read pointer is not 16 bytes"))?;
        let at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap_or_default());
        Ok(ReadPtr {
            seq: at(0),
            from_others: at(8),
        })
    }
}

/// A `dedup` row: the message a `(sender, cid)` pair made, and when.
#[derive(Serialize, Deserialize)]
pub(super) struct DedupEntry {
    pub(super) chat: ChatKey,
    pub(super) id: MsgId,
    pub(super) ts: u64,
}

/// `(user, chat)`'s key prefix in `chat_log`, and its key in `read_ptrs`.
pub(super) fn user_chat(user: &UserId, chat: &ChatKey) -> Vec<u8> {
    Key::name(user.as_str()).then(chat.as_str()).done()
}

/// A message's key.
pub(super) fn message_key(chat: &ChatKey, id: MsgId) -> Vec<u8> {
    Key::name(chat.as_str()).id(id).done()
}

/// Decodes a stored JSON record.
pub(super) fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(corrupt)
}

/// Encodes a record as JSON for storage.
pub(super) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(corrupt)
}

/// The JSON record at `key` of `ks`, if any.
pub(super) fn get_json<T: serde::de::DeserializeOwned>(
    r: &impl Readable,
    ks: &Ks,
    key: &[u8],
) -> Result<Option<T>> {
    r.get(ks, key)
        .map_err(storage)?
        .map(|v| from_json(&v))
        .transpose()
}

/// Every row of `ks` whose key starts with `prefix`, in key order.
pub(super) fn rows(
    r: &impl Readable,
    ks: &Ks,
    prefix: &[u8],
) -> impl DoubleEndedIterator<Item = Result<(fjall::Slice, fjall::Slice)>> {
    r.prefix(ks, prefix)
        .map(|g| g.into_inner().map_err(storage))
}

/// Every row of `ks` with a key in `from..to`, in key order.
pub(super) fn rows_in(
    r: &impl Readable,
    ks: &Ks,
    from: &[u8],
    to: &[u8],
) -> impl DoubleEndedIterator<Item = Result<(fjall::Slice, fjall::Slice)>> {
    r.range(ks, from.to_vec()..to.to_vec())
        .map(|g| g.into_inner().map_err(storage))
}

/// Message `id` of `chat`, which an inbox, dedup or chat log row points at: its absence is
/// corruption.
pub(super) fn load_message(
    r: &impl Readable,
    messages: &Ks,
    chat: &ChatKey,
    id: MsgId,
) -> Result<StoredMessage> {
    get_json(r, messages, &message_key(chat, id))?
        .ok_or_else(|| StoreError::corrupt(format!("missing message {id} of {}", chat.as_str())))
}
