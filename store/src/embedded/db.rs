//! The open fjall database, which can be closed and opened again, and how fjall's errors
//! become [`StoreError`]s.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use fjall::{KeyspaceCreateOptions, SingleWriterTxDatabase, SingleWriterTxKeyspace};

use crate::{Result, StoreError};

/// The journal fjall keeps before it flushes memtables into sorted files: it is what a restart
/// replays, so it is kept at fjall's smallest (64 MiB) to make opening fast at any store size.
const MAX_JOURNAL_BYTES: u64 = 64 << 20;

/// One keyspace (fjall's word for a table: its own LSM-tree).
pub(super) type Ks = SingleWriterTxKeyspace;

/// Every keyspace of the store. Keys and values are laid out in `tables`.
pub(super) struct Tables {
    pub(super) users: Ks,
    pub(super) messages: Ks,
    pub(super) inbox: Ks,
    pub(super) chat_log: Ks,
    pub(super) read_ptrs: Ks,
    pub(super) dedup: Ks,
    pub(super) groups: Ks,
    pub(super) memberships: Ks,
    pub(super) receipts: Ks,
    pub(super) push_tokens: Ks,
    pub(super) push_owners: Ks,
    pub(super) push_jobs: Ks,
    pub(super) media: Ks,
    pub(super) media_pending: Ks,
    pub(super) media_gone: Ks,
    /// Refresh grants: `user\0family` → the grant (JSON).
    pub(super) refresh: Ks,
    /// The writer's own bookkeeping: [`BATCH_KEY`], the number of the last batch committed.
    pub(super) meta: Ks,
}

impl Tables {
    /// Every keyspace.
    pub(super) fn all(&self) -> [&Ks; 17] {
        [
            &self.users,
            &self.messages,
            &self.inbox,
            &self.chat_log,
            &self.read_ptrs,
            &self.dedup,
            &self.groups,
            &self.memberships,
            &self.receipts,
            &self.push_tokens,
            &self.push_owners,
            &self.push_jobs,
            &self.media,
            &self.media_pending,
            &self.media_gone,
            &self.refresh,
            &self.meta,
        ]
    }
}

/// `meta`'s key for the number of the last batch the writer committed (u64, big-endian).
pub(super) const BATCH_KEY: &[u8] = b"batch";

/// The database and its keyspaces, opened together.
pub(super) struct Db {
    pub(super) db: SingleWriterTxDatabase,
    pub(super) t: Tables,
}

impl Db {
    /// Opens (or creates) the database in the directory `path` and every keyspace.
    pub(super) fn open(path: &Path, cache_bytes: usize) -> Result<Db> {
        let db = SingleWriterTxDatabase::builder(path)
            .cache_size(cache_bytes as u64)
            .max_journaling_size(MAX_JOURNAL_BYTES)
            // natter says when a commit must reach the disk (every batch, before it answers).
            .manual_journal_persist(true)
            .open()
            .map_err(storage)?;
        let ks = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(storage)
        };
        let t = Tables {
            users: ks("users")?,
            messages: ks("messages")?,
            inbox: ks("inbox")?,
            chat_log: ks("chat_log")?,
            read_ptrs: ks("read_ptrs")?,
            dedup: ks("dedup")?,
            groups: ks("groups")?,
            memberships: ks("memberships")?,
            receipts: ks("receipts")?,
            push_tokens: ks("push_tokens")?,
            push_owners: ks("push_owners")?,
            push_jobs: ks("push_jobs")?,
            media: ks("media")?,
            media_pending: ks("media_pending")?,
            media_gone: ks("media_gone")?,
            refresh: ks("refresh")?,
            meta: ks("meta")?,
        };
        Ok(Db { db, t })
    }
}

/// The open database, which can be closed and opened again.
///
/// After a failed write (a full disk, say) fjall refuses every later write ("poisoned") until
/// the database is opened again, so the writer re-opens it; meanwhile calls fail with a storage
/// error instead of waiting.
pub(super) struct Handle {
    path: PathBuf,
    cache_bytes: usize,
    db: RwLock<Option<Arc<Db>>>,
}

impl Handle {
    /// Opens (or creates) the database in the directory `path` with a block cache of
    /// `cache_bytes`.
    pub(super) fn open(path: &Path, cache_bytes: usize) -> Result<Handle> {
        Ok(Handle {
            path: path.to_owned(),
            cache_bytes,
            db: RwLock::new(Some(Arc::new(Db::open(path, cache_bytes)?))),
        })
    }

    /// The database, unless it is being re-opened.
    pub(super) fn get(&self) -> Result<Arc<Db>> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        guard
            .clone()
            .ok_or_else(|| StoreError::storage("the store is re-opening after an I/O error"))
    }

    /// Closes the database (once the reads in progress let go of it) and opens it again.
    pub(super) fn reopen(&self) -> Result<()> {
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
                        return Err(StoreError::storage(
                            "reads kept the store busy; not re-opened",
                        ));
                    }
                }
            }
        }
        // fjall's background workers let go of the directory's lock shortly after the last
        // handle is dropped.
        let deadline = Instant::now() + Duration::from_secs(10);
        let db = loop {
            match Db::open(&self.path, self.cache_bytes) {
                Ok(db) => break db,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(e),
            }
        };
        *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(db));
        tracing::warn!(path = %self.path.display(), "store re-opened after an I/O error");
        Ok(())
    }
}

/// A failure of the disk or of fjall, in its own words.
pub(super) fn storage<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::storage_from(e.to_string(), e)
}

/// A row that does not decode, in the decoder's words.
pub(super) fn corrupt<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::corrupt_from(e.to_string(), e)
}
