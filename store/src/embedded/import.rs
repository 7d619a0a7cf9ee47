//! Conversion of a store written by natter before the fjall store (one redb file,
//! `natter.redb`) into the fjall layout of `tables`.
//!
//! It reads the old file in one read transaction and writes the new store in chunks, each
//! committed without a sync, then syncs once at the end; the caller writes into a directory of
//! its own and renames it into place only after success, so an interrupted conversion leaves
//! nothing half-made where `natter serve` looks. It never changes the old file.

use std::collections::HashMap;
use std::path::Path;

use fjall::PersistMode;
use natter_types::{ChatKey, MsgId, Seq};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Deserialize;

use super::db::{storage, Db, Ks};
use super::groups::membership_key;
use super::inbox::log_key;
use super::push::{device_key, job_key, owner_key};
use super::receipts::receipt_key;
use super::tables::{from_json, message_key, to_json, InboxEntry, Key, LogEntry, ReadPtr};
use super::Tx;
use crate::{PushJob, PushToken, Result, StoredMessage};

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const MESSAGES: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("messages");
const INBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("inbox");
const INBOX_HEAD: TableDefinition<&str, u64> = TableDefinition::new("inbox_head");
const DEDUP: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("dedup");
const CHATS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("chats");
const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
const RECEIPTS: TableDefinition<(&str, u128, &str), u8> = TableDefinition::new("receipts");
const MEMBERSHIPS: TableDefinition<(&str, &str), ()> = TableDefinition::new("memberships");
const PUSH_TOKENS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("push_tokens");
const PUSH_JOBS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("push_jobs");
const MEDIA: TableDefinition<&str, &[u8]> = TableDefinition::new("media");
const MEDIA_PENDING: TableDefinition<&str, ()> = TableDefinition::new("media_pending");
const MEDIA_GONE: TableDefinition<&str, &[u8]> = TableDefinition::new("media_gone");

/// Rows written per chunk (one unsynced commit each).
const CHUNK: usize = 50_000;

/// What a conversion copied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Users.
    pub users: u64,
    /// Messages.
    pub messages: u64,
    /// Inbox entries (one per reader per message).
    pub inbox_entries: u64,
    /// Every row written, all keyspaces together.
    pub rows: u64,
}

/// An old `INBOX` row.
#[derive(Deserialize)]
struct OldInboxEntry {
    chat: ChatKey,
    id: MsgId,
}

/// The read pointer of an old `CHATS` row (bytes 32..40 of its 40).
fn old_read_seq(row: &[u8]) -> Option<Seq> {
    row.get(32..40)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

/// Writes rows in chunks of [`CHUNK`], each its own unsynced commit.
struct Writer<'d> {
    db: &'d Db,
    tx: Option<Tx<'d>>,
    pending: usize,
    rows: u64,
    progress: &'d mut dyn FnMut(&str, u64),
}

impl<'d> Writer<'d> {
    fn put(&mut self, ks: &Ks, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        let db = self.db;
        let tx = self
            .tx
            .get_or_insert_with(|| db.db.write_tx().durability(None));
        tx.insert(ks, key, value);
        self.pending += 1;
        self.rows += 1;
        if self.pending >= CHUNK {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        if let Some(tx) = self.tx.take() {
            tx.commit().map_err(storage)?;
            (self.progress)("rows", self.rows);
        }
        self.pending = 0;
        Ok(())
    }
}

/// Converts the redb store at `from` into a new fjall store in the directory `to` (which must
/// not hold a store yet), reporting progress as (what, how many so far). Syncs before it
/// returns.
pub fn import_redb(
    from: &Path,
    to: &Path,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<Imported> {
    let old = redb::Database::open(from).map_err(storage)?;
    let r = old.begin_read().map_err(storage)?;
    let db = Db::open(to, 16 << 20)?;
    let t = &db.t;
    let mut out = Imported::default();
    let mut w = Writer {
        db: &db,
        tx: None,
        pending: 0,
        rows: 0,
        progress,
    };

    let users = r.open_table(USERS).map_err(storage)?;
    out.users = users.len().map_err(storage)?;
    for row in users.iter().map_err(storage)? {
        let (k, v) = row.map_err(storage)?;
        w.put(&t.users, k.value().as_bytes().to_vec(), v.value().to_vec())?;
    }
    let messages = r.open_table(MESSAGES).map_err(storage)?;
    out.messages = messages.len().map_err(storage)?;
    for row in messages.iter().map_err(storage)? {
        let (k, v) = row.map_err(storage)?;
        let (chat, id) = k.value();
        let key = message_key(&ChatKey::from_stored(chat.to_owned()), MsgId(id));
        w.put(&t.messages, key, v.value().to_vec())?;
    }
    (w.progress)("messages", out.messages);

    // Inboxes, a user at a time: each entry, the chat log with its running counts, and the
    // read pointer of each chat at the count it had reached.
    let inbox = r.open_table(INBOX).map_err(storage)?;
    let chats = r.open_table(CHATS).map_err(storage)?;
    for head in r
        .open_table(INBOX_HEAD)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (user, _) = head.map_err(storage)?;
        let user = user.value();
        let mut read_at: HashMap<String, (Seq, u64)> = HashMap::new();
        for row in chats
            .range((user, "")..(user, "\u{10FFFF}"))
            .map_err(storage)?
        {
            let (k, v) = row.map_err(storage)?;
            let seq = old_read_seq(v.value()).unwrap_or(0);
            read_at.insert(k.value().1.to_owned(), (seq, 0));
        }
        let mut counts: HashMap<String, u64> = HashMap::new();
        for row in inbox.range((user, 0)..=(user, u64::MAX)).map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            let seq = k.value().1;
            let e: OldInboxEntry = from_json(v.value())?;
            let m = messages
                .get((e.chat.as_str(), e.id.0))
                .map_err(storage)?
                .map(|m| from_json::<StoredMessage>(m.value()))
                .transpose()?;
            let own = m.is_some_and(|m| m.from.as_str() == user);
            let count = counts.entry(e.chat.as_str().to_owned()).or_default();
            *count += u64::from(!own);
            if let Some((read_seq, at)) = read_at.get_mut(e.chat.as_str()) {
                if seq <= *read_seq {
                    *at = *count;
                }
            }
            let uc = Key::name(user).then(e.chat.as_str()).done();
            let log = LogEntry {
                id: e.id,
                own,
                from_others: *count,
            };
            w.put(&t.chat_log, log_key(&uc, seq), log.encode().to_vec())?;
            let entry = InboxEntry {
                id: e.id,
                own,
                chat: e.chat,
            };
            w.put(&t.inbox, Key::name(user).u64(seq).done(), entry.encode())?;
            out.inbox_entries += 1;
        }
        for (chat, (seq, from_others)) in read_at {
            let uc = Key::name(user).then(&chat).done();
            w.put(
                &t.read_ptrs,
                uc,
                ReadPtr { seq, from_others }.encode().to_vec(),
            )?;
        }
    }
    (w.progress)("inbox entries", out.inbox_entries);

    for row in r
        .open_table(DEDUP)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (k, v) = row.map_err(storage)?;
        let (sender, cid) = k.value();
        w.put(&t.dedup, Key::name(sender).last(cid), v.value().to_vec())?;
    }
    for row in r
        .open_table(GROUPS)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (k, v) = row.map_err(storage)?;
        w.put(&t.groups, k.value().as_bytes().to_vec(), v.value().to_vec())?;
    }
    for row in r
        .open_table(MEMBERSHIPS)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (k, _) = row.map_err(storage)?;
        let (user, group) = k.value();
        let user = natter_types::UserId::new(user).map_err(super::db::corrupt)?;
        w.put(&t.memberships, membership_key(&user, group), Vec::new())?;
    }
    for row in r
        .open_table(RECEIPTS)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (k, v) = row.map_err(storage)?;
        let (chat, id, user) = k.value();
        let chat = ChatKey::from_stored(chat.to_owned());
        let user = natter_types::UserId::new(user).map_err(super::db::corrupt)?;
        w.put(
            &t.receipts,
            receipt_key(&chat, MsgId(id), &user),
            vec![v.value()],
        )?;
    }
    for row in r
        .open_table(PUSH_TOKENS)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (_, v) = row.map_err(storage)?;
        let token: PushToken = from_json(v.value())?;
        let owner = super::push::Owner {
            user: token.user.clone(),
            device: token.device.clone(),
        };
        w.put(&t.push_owners, owner_key(&token), to_json(&owner)?)?;
        w.put(
            &t.push_tokens,
            device_key(&token.user, &token.device),
            v.value().to_vec(),
        )?;
    }
    for row in r
        .open_table(PUSH_JOBS)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (_, v) = row.map_err(storage)?;
        let job: PushJob = from_json(v.value())?;
        w.put(&t.push_jobs, job_key(&job), v.value().to_vec())?;
    }
    for (def, ks) in [(MEDIA, &t.media), (MEDIA_GONE, &t.media_gone)] {
        for row in r
            .open_table(def)
            .map_err(storage)?
            .iter()
            .map_err(storage)?
        {
            let (k, v) = row.map_err(storage)?;
            w.put(ks, k.value().as_bytes().to_vec(), v.value().to_vec())?;
        }
    }
    for row in r
        .open_table(MEDIA_PENDING)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (k, _) = row.map_err(storage)?;
        w.put(&t.media_pending, k.value().as_bytes().to_vec(), Vec::new())?;
    }
    w.commit()?;
    out.rows = w.rows;
    drop(w);
    db.db.persist(PersistMode::SyncAll).map_err(storage)?;
    drop(db);
    // fjall's workers let go of the directory shortly after the last handle: once it opens
    // again, nothing of this run still writes into it (the caller renames it next).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Db::open(to, 1 << 20) {
            Ok(again) => break drop(again),
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
