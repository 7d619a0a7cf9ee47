//! The open redb file, which can be closed and opened again, and how redb's errors become
//! [`StoreError`]s.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

use crate::{Result, StoreError};

/// The open database, which can be closed and opened again.
///
/// After an I/O error (a full disk, say) redb refuses every later write until the database is
/// re-opened, so the writer re-opens it; meanwhile calls fail with a storage error instead of
/// waiting.
pub(super) struct Handle {
    path: PathBuf,
    cache_bytes: usize,
    db: RwLock<Option<Arc<Database>>>,
}

impl Handle {
    /// Opens (or creates) the file at `path` with a page cache of `cache_bytes`.
    pub(super) fn open(path: &Path, cache_bytes: usize) -> Result<Handle> {
        Ok(Handle {
            path: path.to_owned(),
            cache_bytes,
            db: RwLock::new(Some(Arc::new(open_db(path, cache_bytes)?))),
        })
    }

    /// The database, unless it is being re-opened.
    pub(super) fn get(&self) -> Result<Arc<Database>> {
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
        let db = open_db(&self.path, self.cache_bytes)?;
        *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(db));
        tracing::warn!(path = %self.path.display(), "store re-opened after an I/O error");
        Ok(())
    }
}

fn open_db(path: &Path, cache_bytes: usize) -> Result<Database> {
    redb::Builder::new()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(storage)
}

/// A failure of the file or of redb, in its own words.
pub(super) fn storage<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::storage_from(e.to_string(), e)
}

/// A row that does not decode, in the decoder's words.
pub(super) fn corrupt<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::corrupt_from(e.to_string(), e)
}
