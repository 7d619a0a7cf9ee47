//! The redb tables of the embedded store and how their rows are encoded.
//!
//! This module owns the file's layout: every table's name and key, the records kept in them,
//! and the codecs between rows and the store's types. It must never decide anything about chats
//! or users: the section modules do, through these tables.

use natter_types::{ChatKey, MsgId, Seq, UserId};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::db::{corrupt, storage};
use crate::{Result, StoreError, StoredMessage};

/// user id → user record JSON.
pub(super) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// (chat key, message id) → message JSON.
pub(super) const MESSAGES: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("messages");
/// (user, seq) → inbox entry JSON.
pub(super) const INBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("inbox");
/// user → last seq given out.
pub(super) const INBOX_HEAD: TableDefinition<&str, u64> = TableDefinition::new("inbox_head");
/// (sender, cid) → dedup entry JSON.
pub(super) const DEDUP: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("dedup");
/// (user, chat key) → chat state (see [`ChatState`]).
pub(super) const CHATS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("chats");
/// group id → group record JSON.
pub(super) const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
/// (chat key, message id, recipient) → receipt status (1 delivered, 2 read).
pub(super) const RECEIPTS: TableDefinition<(&str, u128, &str), u8> =
    TableDefinition::new("receipts");
/// (user, group id) → (): who is in which group now.
pub(super) const MEMBERSHIPS: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("memberships");
/// (user, device) → push token JSON.
pub(super) const PUSH_TOKENS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("push_tokens");
/// (platform, token) → (user, device): who holds a token, so that it has one owner.
pub(super) const PUSH_OWNERS: TableDefinition<(&str, &str), (&str, &str)> =
    TableDefinition::new("push_owners");
/// (user, device, collapse key) → push job JSON. Small: only jobs not yet sent.
pub(super) const PUSH_JOBS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("push_jobs");
/// media id → media record JSON, for uploads pending or ready. Ids sort by time, so the
/// retention sweep reads the oldest first and stops at its cut-off.
pub(super) const MEDIA: TableDefinition<&str, &[u8]> = TableDefinition::new("media");
/// media id → (): the uploads still pending, so the sweep for abandoned ones skips the rest.
pub(super) const MEDIA_PENDING: TableDefinition<&str, ()> = TableDefinition::new("media_pending");
/// media id → media record JSON, for expired uploads: kept (small) so that a member asking for
/// one hears that it expired, and out of `MEDIA` so sweeps never read them again.
pub(super) const MEDIA_GONE: TableDefinition<&str, &[u8]> = TableDefinition::new("media_gone");

/// Creates every table a new file lacks, so that reads never meet a missing one.
pub(super) fn create_all(txn: &WriteTransaction) -> Result<()> {
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
    Ok(())
}

/// The tables the writer thread changes for sends, receipts and read pointers, opened once per
/// batch (opening a table is a lookup in the transaction's root).
pub(super) struct BatchTables<'t> {
    pub(super) messages: redb::Table<'t, (&'static str, u128), &'static [u8]>,
    pub(super) inbox: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    pub(super) heads: redb::Table<'t, &'static str, u64>,
    pub(super) dedup: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    pub(super) chats: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    pub(super) receipts: redb::Table<'t, (&'static str, u128, &'static str), u8>,
}

impl<'t> BatchTables<'t> {
    /// Opens the writer's tables in `txn`.
    pub(super) fn open(txn: &'t WriteTransaction) -> Result<BatchTables<'t>> {
        Ok(BatchTables {
            messages: txn.open_table(MESSAGES).map_err(storage)?,
            inbox: txn.open_table(INBOX).map_err(storage)?,
            heads: txn.open_table(INBOX_HEAD).map_err(storage)?,
            dedup: txn.open_table(DEDUP).map_err(storage)?,
            chats: txn.open_table(CHATS).map_err(storage)?,
            receipts: txn.open_table(RECEIPTS).map_err(storage)?,
        })
    }
}

/// An `INBOX` row: which message a reader's seq points at.
#[derive(Serialize, Deserialize)]
pub(super) struct InboxEntry {
    pub(super) chat: ChatKey,
    pub(super) id: MsgId,
}

/// A `DEDUP` row: the message a `(sender, cid)` pair made, and when.
#[derive(Serialize, Deserialize)]
pub(super) struct DedupEntry {
    pub(super) chat: ChatKey,
    pub(super) id: MsgId,
    pub(super) ts: u64,
}

/// One reader's view of one chat. Written for every reader of every message (a thousand per
/// message in a big group), so it is a fixed 40 bytes rather than JSON.
pub(super) struct ChatState {
    pub(super) last_id: MsgId,
    pub(super) last_seq: Seq,
    pub(super) unread: u64,
    /// The reader's read pointer: the inbox seq up to which they have read this chat.
    pub(super) read_seq: Seq,
}

impl ChatState {
    /// The row's 40 bytes: id, last seq, unread, read pointer, each big-endian.
    pub(super) fn encode(&self) -> [u8; 40] {
        let mut b = [0u8; 40];
        b[..16].copy_from_slice(&self.last_id.0.to_be_bytes());
        b[16..24].copy_from_slice(&self.last_seq.to_be_bytes());
        b[24..32].copy_from_slice(&self.unread.to_be_bytes());
        b[32..].copy_from_slice(&self.read_seq.to_be_bytes());
        b
    }

    /// The state a row written by [`ChatState::encode`] holds.
    pub(super) fn decode(b: &[u8]) -> Result<ChatState> {
        let b: &[u8; 40] = b
            .try_into()
            .map_err(|_| StoreError::corrupt("chat state is not 40 bytes"))?;
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

/// Decodes a stored JSON record.
pub(super) fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(corrupt)
}

/// Decodes what a `get` or `remove` found, if anything.
pub(super) fn from_json_opt<T: serde::de::DeserializeOwned>(
    found: Option<redb::AccessGuard<'_, &[u8]>>,
) -> Result<Option<T>> {
    found.map(|g| from_json(g.value())).transpose()
}

/// Encodes a record as JSON for storage.
pub(super) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(corrupt)
}

/// Every key of a `(user, text)` table that belongs to `user`.
pub(super) fn user_prefix(user: &UserId) -> std::ops::Range<(&str, &str)> {
    // Any text key sorts at or after "" and before a lone U+10FFFF.
    (user.as_str(), "")..(user.as_str(), "\u{10FFFF}")
}

/// Message `id` of `chat`, which an inbox, dedup or chat row points at: its absence is
/// corruption.
pub(super) fn load_message(
    messages: &impl ReadableTable<(&'static str, u128), &'static [u8]>,
    chat: &ChatKey,
    id: MsgId,
) -> Result<StoredMessage> {
    let m = messages
        .get((chat.as_str(), id.0))
        .map_err(storage)?
        .ok_or_else(|| StoreError::corrupt(format!("missing message {id} of {}", chat.as_str())))?;
    from_json(m.value())
}
