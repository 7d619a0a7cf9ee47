//! Every CQL statement natter runs after start, prepared once.
//!
//! The list below is the only place a statement is written: the macro makes of it the
//! [`Statements`] struct (one field per statement, named after what it does), the public
//! [`STATEMENTS`] list, and the code that prepares them all, so a statement can never be listed
//! and left unprepared. No CQL may be written anywhere else in this crate except the schema.

use std::collections::HashMap;

use natter_store::StoreError;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use crate::Result;

/// Rows per page of a read that pages (`execute_iter`).
const PAGE_SIZE: i32 = 1000;

/// Defines [`Statements`] and [`STATEMENTS`] from `name: "CQL",` pairs.
macro_rules! statements {
    ($($name:ident: $cql:literal,)*) => {
        /// Every prepared statement, prepared once at start (the driver re-prepares on a node
        /// that lost them). Fields are named after what they do.
        pub(super) struct Statements {
            $(pub(super) $name: PreparedStatement,)*
        }

        /// Every CQL statement natter runs after start, by name; public so that a test (or an
        /// operator's check) can prepare them against a cluster.
        pub const STATEMENTS: &[(&str, &str)] = &[$((stringify!($name), $cql),)*];

        impl Statements {
            /// Takes each statement out of `prepared`, by name.
            fn take_all(mut prepared: HashMap<&str, PreparedStatement>) -> Result<Statements> {
                let mut take = |name: &str| {
                    prepared
                        .remove(name)
                        .ok_or_else(|| StoreError::storage(format!("statement {name} not prepared")))
                };
                Ok(Statements {
                    $($name: take(stringify!($name))?,)*
                })
            }
        }
    };
}

statements! {
    user_insert: "INSERT INTO users (id, password_hash, created_ms) VALUES (?, ?, ?) IF NOT EXISTS",
    // Conditional on the creation time read just before: a user removed (or removed and made
    // again) meanwhile is not changed.
    user_set_password: "UPDATE users SET password_hash = ? WHERE id = ? IF created_ms = ?",
    user_get: "SELECT id, password_hash, created_ms FROM users WHERE id = ?",
    user_ids: "SELECT id FROM users",
    user_delete: "DELETE FROM users WHERE id = ? IF EXISTS",
    refresh_of: "SELECT family, token_hash, generation, expires_ms FROM refresh_grants WHERE uid = ?",
    refresh_get: "SELECT token_hash, generation, expires_ms FROM refresh_grants WHERE uid = ? AND family = ?",
    refresh_put: "INSERT INTO refresh_grants (uid, family, token_hash, generation, expires_ms) \
                  VALUES (?, ?, ?, ?, ?) USING TTL ?",
    // Every column is written again, so the whole row takes the new TTL.
    refresh_swap: "UPDATE refresh_grants USING TTL ? SET token_hash = ?, generation = ?, expires_ms = ? \
                   WHERE uid = ? AND family = ? IF token_hash = ?",
    refresh_drop_if: "DELETE FROM refresh_grants WHERE uid = ? AND family = ? IF token_hash = ?",
    refresh_drop_any: "DELETE FROM refresh_grants WHERE uid = ? AND family = ? IF EXISTS",
    refresh_drop_user: "DELETE FROM refresh_grants WHERE uid = ?",
    msg_insert: "INSERT INTO messages (chat, bucket, id, body) VALUES (?, ?, ?, ?) USING TTL ?",
    msg_get: "SELECT body FROM messages WHERE chat = ? AND bucket = ? AND id = ?",
    msg_get_ttl: "SELECT body, TTL(body) FROM messages WHERE chat = ? AND bucket = ? AND id = ?",
    msg_page: "SELECT body FROM messages WHERE chat = ? AND bucket = ? AND id < ? LIMIT ?",
    bucket_insert: "INSERT INTO chat_buckets (chat, bucket) VALUES (?, ?)",
    buckets_upto: "SELECT bucket FROM chat_buckets WHERE chat = ? AND bucket <= ?",
    inbox_insert: "INSERT INTO inbox (uid, bucket, seq, chat, id) VALUES (?, ?, ?, ?, ?) USING TTL ?",
    inbox_page: "SELECT seq, chat, id FROM inbox WHERE uid = ? AND bucket = ? AND seq >= ? AND seq <= ? LIMIT ?",
    head_set: "INSERT INTO inbox_heads (uid, seq) VALUES (?, ?)",
    head_get: "SELECT seq FROM inbox_heads WHERE uid = ?",
    log_insert: "INSERT INTO chat_log (uid, chat, seq, id, own, from_others) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?",
    log_last: "SELECT seq, id, own, from_others FROM chat_log WHERE uid = ? AND chat = ? LIMIT 1",
    log_at_or_before: "SELECT seq, id, own, from_others FROM chat_log WHERE uid = ? AND chat = ? AND seq <= ? LIMIT 1",
    log_range: "SELECT seq, id, own, from_others FROM chat_log WHERE uid = ? AND chat = ? AND seq >= ? AND seq <= ? ORDER BY seq ASC LIMIT ?",
    ptr_put: "INSERT INTO read_ptrs (uid, chat, read_seq, from_others) VALUES (?, ?, ?, ?)",
    ptr_get: "SELECT read_seq, from_others FROM read_ptrs WHERE uid = ? AND chat = ?",
    ptrs_of: "SELECT chat, read_seq, from_others FROM read_ptrs WHERE uid = ?",
    dedup_get: "SELECT chat, id, ts FROM dedup WHERE sender = ? AND cid = ?",
    dedup_insert: "INSERT INTO dedup (sender, cid, chat, id, ts) VALUES (?, ?, ?, ?, ?) USING TTL ?",
    dedup_delete: "DELETE FROM dedup WHERE sender = ? AND cid = ?",
    dedup_hour_insert: "INSERT INTO dedup_by_hour (hour, sender, cid, ts) VALUES (?, ?, ?, ?) USING TTL ?",
    dedup_hour_list: "SELECT sender, cid, ts FROM dedup_by_hour WHERE hour = ?",
    dedup_hour_delete: "DELETE FROM dedup_by_hour WHERE hour = ? AND sender = ? AND cid = ?",
    group_get: "SELECT record FROM groups WHERE id = ?",
    group_put: "INSERT INTO groups (id, record) VALUES (?, ?)",
    member_put: "INSERT INTO memberships (uid, grp) VALUES (?, ?)",
    member_delete: "DELETE FROM memberships WHERE uid = ? AND grp = ?",
    groups_of: "SELECT grp FROM memberships WHERE uid = ?",
    receipt_get: "SELECT status FROM receipts WHERE chat = ? AND id = ? AND uid = ?",
    receipt_put: "INSERT INTO receipts (chat, id, uid, status) VALUES (?, ?, ?, ?) USING TTL ?",
    token_get: "SELECT platform, push_token FROM push_tokens WHERE uid = ? AND device = ?",
    tokens_of: "SELECT device, platform, push_token FROM push_tokens WHERE uid = ?",
    token_put: "INSERT INTO push_tokens (uid, device, platform, push_token) VALUES (?, ?, ?, ?)",
    token_delete: "DELETE FROM push_tokens WHERE uid = ? AND device = ?",
    owner_get: "SELECT uid, device FROM push_owners WHERE platform = ? AND push_token = ?",
    owner_put: "INSERT INTO push_owners (platform, push_token, uid, device) VALUES (?, ?, ?, ?)",
    owner_delete: "DELETE FROM push_owners WHERE platform = ? AND push_token = ?",
    job_get: "SELECT job FROM push_jobs WHERE shard = ? AND uid = ? AND device = ? AND collapse = ?",
    job_put: "INSERT INTO push_jobs (shard, uid, device, collapse, job) VALUES (?, ?, ?, ?, ?)",
    job_delete: "DELETE FROM push_jobs WHERE shard = ? AND uid = ? AND device = ? AND collapse = ?",
    jobs_in_shard: "SELECT job FROM push_jobs WHERE shard = ?",
    jobs_of_user: "SELECT device, collapse FROM push_jobs WHERE shard = ? AND uid = ?",
    media_insert: "INSERT INTO media (id, owner, mime, size, sha256, state) VALUES (?, ?, ?, ?, ?, ?)",
    media_get: "SELECT owner, mime, size, sha256, state, sent_in FROM media WHERE id = ?",
    // Every state change is a lightweight transaction from the state it expects, so a sweep
    // and an upload finishing at once cannot both win.
    media_advance: "UPDATE media SET state = ? WHERE id = ? IF state = ?",
    media_link: "UPDATE media SET sent_in = sent_in + ? WHERE id = ?",
    media_delete: "DELETE FROM media WHERE id = ? IF state = ?",
    index_put: "INSERT INTO media_index (state, day, id) VALUES (?, ?, ?)",
    index_delete: "DELETE FROM media_index WHERE state = ? AND day = ? AND id = ?",
    index_page: "SELECT id FROM media_index WHERE state = ? AND day = ? AND id < ? LIMIT ?",
    day_put: "INSERT INTO media_days (state, day) VALUES (?, ?)",
    days_upto: "SELECT day FROM media_days WHERE state = ? AND day <= ?",
    day_delete: "DELETE FROM media_days WHERE state = ? AND day = ?",
    // A removed user's own state, partition by partition.
    inbox_drop: "DELETE FROM inbox WHERE uid = ? AND bucket = ?",
    head_drop: "DELETE FROM inbox_heads WHERE uid = ?",
    // `chat_state` is no longer written (schema version 2 moved it): a removed user's old rows
    // still go, so nothing of theirs is left behind.
    state_drop: "DELETE FROM chat_state WHERE uid = ?",
    log_drop: "DELETE FROM chat_log WHERE uid = ? AND chat = ?",
    ptr_drop: "DELETE FROM read_ptrs WHERE uid = ?",
    dedup_drop: "DELETE FROM dedup WHERE sender = ?",
}

impl Statements {
    /// Prepares every statement on `session`.
    pub(super) async fn prepare(session: &Session) -> Result<Statements> {
        let mut prepared = HashMap::new();
        for (name, cql) in STATEMENTS {
            let mut p = session.prepare(*cql).await.map_err(|e| {
                let what = format!("cassandra: cannot prepare {name} ({cql}): {e}");
                StoreError::storage_from(what, e)
            })?;
            // Reads and writes here are idempotent except the list/set appends and the LWTs,
            // which the driver never retries on its own (is_idempotent = false by default).
            let idempotent = !cql.contains(" IF ") && !cql.contains("sent_in +");
            p.set_is_idempotent(idempotent);
            p.set_page_size(PAGE_SIZE);
            prepared.insert(*name, p);
        }
        Statements::take_all(prepared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_has_a_field_and_names_only_natters_tables() {
        let tables = crate::schema::MIGRATIONS
            .iter()
            .flat_map(|m| m.iter())
            .map(|s| {
                s.trim_start_matches("CREATE TABLE IF NOT EXISTS ")
                    .split(' ')
                    .next()
                    .unwrap_or("")
            })
            .collect::<Vec<_>>();
        for (name, cql) in STATEMENTS {
            let table = cql
                .split_whitespace()
                .skip_while(|w| !["FROM", "INTO", "UPDATE"].contains(w))
                .nth(1)
                .unwrap_or("");
            assert!(
                tables.contains(&table),
                "{name} uses unknown table {table:?}"
            );
        }
        let mut names: Vec<_> = STATEMENTS.iter().map(|(n, _)| *n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), STATEMENTS.len(), "statement names are unique");
    }
}
