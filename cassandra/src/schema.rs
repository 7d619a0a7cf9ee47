//! The keyspace and its tables, created and migrated by `natter serve` itself.
//!
//! Each migration is a list of idempotent statements (`IF NOT EXISTS`), applied in order and
//! recorded in `natter_schema`, so two nodes starting at once, or a start that died half-way,
//! apply the same thing again harmlessly. A migration is never edited once released: a change is
//! a new one appended to [`MIGRATIONS`].
//!
//! Only CQL that Cassandra 3.0+ and ScyllaDB both accept is used (no `tinyint`-only tricks, no
//! materialized views, no secondary indexes): every read names a partition.

use scylla::client::session::Session;

use crate::{storage, Result};

/// How the keyspace is replicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// One datacenter, `factor` copies (development, tests).
    Simple {
        /// Copies of each row.
        factor: u32,
    },
    /// Copies per named datacenter (production).
    NetworkTopology(Vec<(String, u32)>),
}

impl Replication {
    /// The CQL map literal of `WITH replication = …`.
    pub fn cql(&self) -> String {
        match self {
            Replication::Simple { factor } => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {factor}}}")
            }
            Replication::NetworkTopology(dcs) => {
                let mut s = String::from("{'class': 'NetworkTopologyStrategy'");
                for (dc, n) in dcs {
                    // Names were checked by the config (letters, digits, `_-.`): no quotes.
                    s.push_str(&format!(", '{dc}': {n}"));
                }
                s.push('}');
                s
            }
        }
    }
}

/// The schema versions, oldest first: version `i + 1` is `MIGRATIONS[i]`.
pub const MIGRATIONS: &[&[&str]] = &[&[
    // Accounts. Listed by a full scan, which only the admin API does.
    "CREATE TABLE IF NOT EXISTS users (id text PRIMARY KEY, password_hash text, created_ms bigint)",
    // A chat's messages, partitioned by (chat, 10-day bucket) and newest first in a partition.
    // `body` is the stored message as JSON, the same record the embedded store keeps.
    "CREATE TABLE IF NOT EXISTS messages (chat text, bucket int, id blob, body text, \
     PRIMARY KEY ((chat, bucket), id)) WITH CLUSTERING ORDER BY (id DESC)",
    // The buckets a chat has messages in, newest first, so history skips empty windows.
    "CREATE TABLE IF NOT EXISTS chat_buckets (chat text, bucket int, \
     PRIMARY KEY (chat, bucket)) WITH CLUSTERING ORDER BY (bucket DESC)",
    // Each user's inbox: (user, run of 10,000 seqs) → the message it points at.
    "CREATE TABLE IF NOT EXISTS inbox (uid text, bucket bigint, seq bigint, chat text, id blob, \
     PRIMARY KEY ((uid, bucket), seq))",
    // The last seq given out per user: where the seq owner resumes after a restart.
    "CREATE TABLE IF NOT EXISTS inbox_heads (uid text PRIMARY KEY, seq bigint)",
    // One reader's view of one chat: last message, unread count, read pointer.
    "CREATE TABLE IF NOT EXISTS chat_state (uid text, chat text, last_id blob, last_seq bigint, \
     unread bigint, read_seq bigint, PRIMARY KEY (uid, chat))",
    // (sender, cid) → the first message, with a TTL of the dedup window.
    "CREATE TABLE IF NOT EXISTS dedup (sender text, cid text, chat text, id blob, ts bigint, \
     PRIMARY KEY (sender, cid))",
    // The same pairs by the hour they were written, so a purge reads only the hours it cuts.
    "CREATE TABLE IF NOT EXISTS dedup_by_hour (hour bigint, sender text, cid text, ts bigint, \
     PRIMARY KEY (hour, sender, cid))",
    // Groups (the record as JSON) and who is in which now.
    "CREATE TABLE IF NOT EXISTS groups (id text PRIMARY KEY, record text)",
    "CREATE TABLE IF NOT EXISTS memberships (uid text, grp text, PRIMARY KEY (uid, grp))",
    // Receipts per message: 1 delivered, 2 read.
    "CREATE TABLE IF NOT EXISTS receipts (chat text, id blob, uid text, status int, \
     PRIMARY KEY ((chat, id), uid))",
    // Push tokens by device, and who holds each token (one owner).
    "CREATE TABLE IF NOT EXISTS push_tokens (uid text, device text, platform text, \
     push_token text, PRIMARY KEY (uid, device))",
    "CREATE TABLE IF NOT EXISTS push_owners (platform text, push_token text, uid text, \
     device text, PRIMARY KEY ((platform, push_token)))",
    // Push jobs not yet sent, spread over 16 shards by user; the job as JSON.
    "CREATE TABLE IF NOT EXISTS push_jobs (shard int, uid text, device text, collapse text, \
     job text, PRIMARY KEY (shard, uid, device, collapse))",
    // Uploads, and the messages that carry each ("{msg id}/{chat}").
    "CREATE TABLE IF NOT EXISTS media (id text PRIMARY KEY, owner text, mime text, size bigint, \
     sha256 text, state text, sent_in set<text>)",
    // Uploads by state and day, oldest first, for the retention sweeps; and the days that have
    // any, so a sweep starts at the oldest.
    "CREATE TABLE IF NOT EXISTS media_index (state text, day int, id text, \
     PRIMARY KEY ((state, day), id))",
    "CREATE TABLE IF NOT EXISTS media_days (state text, day int, PRIMARY KEY (state, day))",
]];

/// The schema version this natter writes.
pub fn current() -> i32 {
    MIGRATIONS.len() as i32
}

/// Creates the keyspace if missing, then applies every migration the keyspace has not had.
/// Returns the version found before.
pub async fn migrate(session: &Session, keyspace: &str, replication: &Replication) -> Result<i32> {
    // The keyspace name was checked by the config: a letter then letters, digits, `_`.
    let create = format!(
        "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {}",
        replication.cql()
    );
    if let Err(e) = session.query_unpaged(create, ()).await {
        // An operator may make the keyspace and give natter no right to create one: the
        // keyspace being there is what counts.
        if session.use_keyspace(keyspace, false).await.is_err() {
            let what = format!("cassandra: cannot create keyspace {keyspace}: {e}");
            return Err(crate::StoreError::storage_from(what, e));
        }
        tracing::warn!(keyspace, error = %e, "keyspace not created (it exists): using it");
    }
    session
        .query_unpaged(
            format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.natter_schema \
                 (component text PRIMARY KEY, version int)"
            ),
            (),
        )
        .await
        .map_err(storage)?;
    agree(session).await?;
    let found = session
        .query_unpaged(
            format!("SELECT version FROM {keyspace}.natter_schema WHERE component = 'store'"),
            (),
        )
        .await
        .map_err(storage)?
        .into_rows_result()
        .map_err(storage)?
        .maybe_first_row::<(i32,)>()
        .map_err(storage)?
        .map(|(v,)| v)
        .unwrap_or(0);
    if found > current() {
        return Err(crate::StoreError::storage(format!(
            "keyspace {keyspace} has schema version {found}, newer than this natter's {}: \
             run the newer natter",
            current()
        )));
    }
    for (i, statements) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i32 + 1;
        for s in *statements {
            let s = s.replacen("IF NOT EXISTS ", &format!("IF NOT EXISTS {keyspace}."), 1);
            session.query_unpaged(s, ()).await.map_err(storage)?;
        }
        agree(session).await?;
        session
            .query_unpaged(
                format!(
                    "INSERT INTO {keyspace}.natter_schema (component, version) \
                     VALUES ('store', {version})"
                ),
                (),
            )
            .await
            .map_err(storage)?;
        tracing::info!(keyspace, version, "store schema migrated");
    }
    Ok(found)
}

/// Waits until every node has the same schema, so statements prepared next find the tables.
async fn agree(session: &Session) -> Result<()> {
    session
        .await_schema_agreement()
        .await
        .map(|_| ())
        .map_err(storage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_is_written_as_cql() {
        assert_eq!(
            Replication::Simple { factor: 1 }.cql(),
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        assert_eq!(
            Replication::NetworkTopology(vec![("dc1".into(), 3), ("eu-west".into(), 2)]).cql(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'eu-west': 2}"
        );
    }

    #[test]
    fn every_table_is_created_in_natters_keyspace_and_only_if_missing() {
        for s in MIGRATIONS.iter().flat_map(|m| m.iter()) {
            assert!(s.starts_with("CREATE TABLE IF NOT EXISTS "), "{s}");
            let qualified = s.replacen("IF NOT EXISTS ", "IF NOT EXISTS ks.", 1);
            assert!(
                qualified.starts_with("CREATE TABLE IF NOT EXISTS ks."),
                "{s}"
            );
        }
    }
}
