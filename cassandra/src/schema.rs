//! The keyspace and its tables, created and migrated by `natter serve` itself.
//!
//! Each migration is a list of idempotent statements (`IF NOT EXISTS`), applied in order and
//! recorded in `natter_schema`, so two nodes starting at once, or a start that died half-way,
//! apply the same thing again harmlessly. A migration is never edited once released: a change is
//! a new one appended to [`MIGRATIONS`].
//!
//! Only CQL that Cassandra 3.0+ and ScyllaDB both accept is used (no `tinyint`-only tricks, no
//! materialized views, no secondary indexes): every read names a partition.

use futures::TryStreamExt;
use natter_store::limits::READ_SCAN;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use crate::buckets::inbox_bucket;
use crate::{corrupt, storage, Result};

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

/// The schema versions, oldest first: version `i + 1` is `MIGRATIONS[i]`. A version may also
/// move data once its tables exist (`move_data`), before it is recorded.
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
], &[
    // Version 2: a reader's view of a chat is derived, not rewritten per message. Each reader's
    // log of each chat, newest first: the message at each of their seqs in the chat, whether
    // they sent it, and how many messages from others they have had in the chat up to it (so
    // an unread count is the difference of two counts). Rows carry the message TTL.
    "CREATE TABLE IF NOT EXISTS chat_log (uid text, chat text, seq bigint, id blob, \
     own boolean, from_others bigint, PRIMARY KEY ((uid, chat), seq)) \
     WITH CLUSTERING ORDER BY (seq DESC)",
    // Each reader's read pointer per chat (the seq read up to, and the log's count there),
    // written on a read and for the sender of a message; a reader's first message in a chat
    // writes one at zero, so the rows of a user are also the list of their chats. No TTL.
    // `chat_state` (version 1) is copied into these two by `move_data` and no longer used.
    "CREATE TABLE IF NOT EXISTS read_ptrs (uid text, chat text, read_seq bigint, \
     from_others bigint, PRIMARY KEY (uid, chat))",
], &[
    // Version 3: refresh grants, one row per signed-in session (only the SHA-256 of its current
    // token), with a TTL to when it lapses unless used.
    "CREATE TABLE IF NOT EXISTS refresh_grants (uid text, family text, token_hash text, \
     generation text, expires_ms bigint, PRIMARY KEY (uid, family))",
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
        move_data(session, keyspace, version).await?;
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

/// The rows version `version` moves once its tables exist, before it is recorded (a start that
/// dies half-way moves them again: every write is an idempotent insert of the same values).
async fn move_data(session: &Session, keyspace: &str, version: i32) -> Result<()> {
    if version == 2 {
        chat_state_to_chat_log(session, keyspace).await?;
    }
    Ok(())
}

/// A `chat_state` row (version 1): reader, chat, last message id and seq, unread count, read
/// pointer, and the TTL left on it.
type ChatStateRow = (
    String,
    String,
    Option<Vec<u8>>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i32>,
);

/// Rows moved at once by [`chat_state_to_chat_log`].
const MOVE_FAN_OUT: usize = 16;

/// Version 2's data move: each `chat_state` row becomes a read pointer at its `read_seq` with
/// count 0, and chat log rows whose counts end at its unread count: one per inbox entry of the
/// chat after the read pointer (all from others: a sender's own message moves their pointer),
/// at most [`READ_SCAN`] inbox entries looked at, and the last message itself. The unread
/// count, the chat list and reads up to any seq then read as they did. One full scan of
/// `chat_state`, once per keyspace.
async fn chat_state_to_chat_log(session: &Session, keyspace: &str) -> Result<()> {
    let log_put = session
        .prepare(format!(
            "INSERT INTO {keyspace}.chat_log (uid, chat, seq, id, own, from_others) \
             VALUES (?, ?, ?, ?, ?, ?) USING TTL ?"
        ))
        .await
        .map_err(storage)?;
    let ptr_put = session
        .prepare(format!(
            "INSERT INTO {keyspace}.read_ptrs (uid, chat, read_seq, from_others) \
             VALUES (?, ?, ?, 0)"
        ))
        .await
        .map_err(storage)?;
    let inbox_page = session
        .prepare(format!(
            "SELECT seq, chat, id FROM {keyspace}.inbox \
             WHERE uid = ? AND bucket = ? AND seq > ? AND seq <= ? LIMIT ?"
        ))
        .await
        .map_err(storage)?;
    let moves = MoveStatements {
        log_put,
        ptr_put,
        inbox_page,
    };
    let moved = session
        .query_iter(
            format!(
                "SELECT uid, chat, last_id, last_seq, unread, read_seq, TTL(last_id) \
                 FROM {keyspace}.chat_state"
            ),
            (),
        )
        .await
        .map_err(storage)?
        .rows_stream::<ChatStateRow>()
        .map_err(corrupt)?
        .map_err(storage)
        .map_ok(|row| move_chat_state(session, &moves, row))
        .try_buffer_unordered(MOVE_FAN_OUT)
        .try_fold(0usize, |n, _| async move { Ok(n + 1) })
        .await?;
    tracing::info!(
        keyspace,
        rows = moved,
        "chat_state copied into chat_log and read_ptrs"
    );
    Ok(())
}

/// The statements of version 2's data move.
struct MoveStatements {
    log_put: PreparedStatement,
    ptr_put: PreparedStatement,
    inbox_page: PreparedStatement,
}

/// Moves one `chat_state` row (see [`chat_state_to_chat_log`]).
async fn move_chat_state(session: &Session, st: &MoveStatements, row: ChatStateRow) -> Result<()> {
    let (uid, chat, last_id, last_seq, unread, read_seq, ttl) = row;
    // A row whose last message expired is no chat any more: nothing to move.
    let (Some(last_id), Some(last_seq)) = (last_id, last_seq) else {
        return Ok(());
    };
    let unread = unread.unwrap_or(0).max(0);
    let read_seq = read_seq.unwrap_or(0).clamp(0, last_seq);
    let ttl = ttl.unwrap_or(0).max(0);
    // The chat's inbox entries after the pointer, before the last message.
    let mut earlier: Vec<(i64, Vec<u8>)> = Vec::new();
    if unread > 0 {
        let (mut looked, mut bucket) = (0usize, inbox_bucket(as_u64(read_seq) + 1));
        while looked < READ_SCAN && bucket <= inbox_bucket(as_u64(last_seq)) {
            let want = (READ_SCAN - looked) as i32;
            let rows = session
                .execute_unpaged(
                    &st.inbox_page,
                    (uid.as_str(), bucket, read_seq, last_seq - 1, want),
                )
                .await
                .map_err(storage)?
                .into_rows_result()
                .map_err(storage)?;
            for r in rows.rows::<(i64, String, Vec<u8>)>().map_err(corrupt)? {
                let (seq, c, id) = r.map_err(corrupt)?;
                looked += 1;
                if c == chat {
                    earlier.push((seq, id));
                }
            }
            bucket += 1;
        }
    }
    let own = unread == 0 && read_seq == last_seq;
    let mut rows: Vec<(i64, Vec<u8>, bool, i64)> = earlier
        .into_iter()
        .enumerate()
        .map(|(i, (seq, id))| (seq, id, false, (i as i64 + 1).min(unread)))
        .collect();
    rows.push((last_seq, last_id, own, unread));
    for (seq, id, own, count) in rows {
        session
            .execute_unpaged(
                &st.log_put,
                (uid.as_str(), chat.as_str(), seq, id, own, count, ttl),
            )
            .await
            .map_err(storage)?;
    }
    session
        .execute_unpaged(&st.ptr_put, (uid.as_str(), chat.as_str(), read_seq))
        .await
        .map_err(storage)?;
    Ok(())
}

/// A stored `bigint` as a seq (never negative).
fn as_u64(n: i64) -> u64 {
    n.max(0) as u64
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
