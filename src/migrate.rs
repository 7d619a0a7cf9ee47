//! `natter store migrate`: converts a store written by natter before the fjall store (one redb
//! file, `{data_dir}/natter.redb`) into `{data_dir}/store`. It writes into a directory of its
//! own and renames it into place only once everything is copied and synced, so an interrupted
//! run leaves nothing `natter serve` would open; the old file is never changed.

use anyhow::Context;
use natter_config::{Config, StoreBackend};
use natter_store::embedded::import_redb;

use crate::serve::{embedded_dir, legacy_file};

/// Runs the conversion, printing progress to standard error.
pub fn run(config: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.store.backend == StoreBackend::Embedded,
        "config key `store.backend` = cassandra: only the embedded store is migrated (Cassandra \
         keeps its own schema migrations, run at start)"
    );
    let (from, to) = (legacy_file(config), embedded_dir(config));
    anyhow::ensure!(
        from.exists(),
        "nothing to migrate: {} does not exist",
        from.display()
    );
    anyhow::ensure!(
        !to.exists(),
        "{} already holds a store; move it away to migrate {} again",
        to.display(),
        from.display()
    );
    let work = config.data_dir.join("store.migrating");
    if work.exists() {
        // What an interrupted run left; it was never in use.
        std::fs::remove_dir_all(&work)
            .with_context(|| format!("cannot remove {}", work.display()))?;
    }
    eprintln!("natter: migrating {} into {}", from.display(), to.display());
    let started = std::time::Instant::now();
    let done = import_redb(&from, &work, &mut |what, n| {
        eprintln!(
            "natter: … {n} {what} ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    })
    .with_context(|| format!("migrating {}", from.display()))?;
    std::fs::rename(&work, &to)
        .with_context(|| format!("cannot rename {} to {}", work.display(), to.display()))?;
    println!(
        "migrated {} users, {} messages and {} inbox entries ({} rows) in {:.1} s into {}; \
         {} is kept: remove it once natter runs on the new store",
        done.users,
        done.messages,
        done.inbox_entries,
        done.rows,
        started.elapsed().as_secs_f64(),
        to.display(),
        from.display(),
    );
    Ok(())
}
