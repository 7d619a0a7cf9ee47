//! Refresh grants: one row per signed-in session in the user's partition of
//! `refresh_grants`, with a TTL to when it lapses. A rotation is a lightweight transaction
//! conditional on the current token, so of two uses of one token exactly one rotates.

use natter_store::{RefreshGrant, Rotation};
use natter_types::clock::now_ms;
use natter_types::UserId;
use scylla::value::CqlValue;

use super::values::{as_u64, big, int64, text};
use super::CassandraStore;
use crate::Result;

/// The longest TTL Cassandra accepts (20 years); a longer one is refused as invalid.
const MAX_TTL_SECS: u64 = 630_720_000;

/// The last second a row may be set to expire at: Cassandra before 4.1 keeps expiry times as
/// 32-bit seconds, so a later one is refused (3.11) or wraps and expires the row at once
/// (2.1; CASSANDRA-14092).
const LAST_EXPIRY_SECS: u64 = i32::MAX as u64 - 1;

/// Seconds from `now_ms` to `expires_ms`, from 1 (CQL's TTL is whole seconds, 0 is none) to
/// what Cassandra can keep; `expires_ms` itself is still checked on every use.
fn ttl(expires_ms: u64, now_ms: u64) -> i32 {
    let secs = expires_ms.saturating_sub(now_ms).div_ceil(1000);
    let room = LAST_EXPIRY_SECS.saturating_sub(now_ms / 1000);
    secs.clamp(1, MAX_TTL_SECS.min(room).max(1)) as i32
}

/// [`natter_store::Store::refresh_save`].
pub(super) async fn save(s: &CassandraStore, g: RefreshGrant, max_per_user: usize) -> Result<()> {
    let now = now_ms();
    type Row = (String, Option<String>, Option<String>, Option<i64>);
    let rows: Vec<Row> = s.all(&s.st.refresh_of, (g.user.as_str(),)).await?;
    // Lapsed rows are gone by their TTL; past the bound, the soonest to lapse make room.
    let mut live: Vec<(String, u64)> = rows
        .into_iter()
        .map(|(family, _, _, exp)| (family, exp.map(as_u64).unwrap_or(0)))
        .filter(|(_, exp)| *exp > now)
        .collect();
    live.sort_by_key(|(_, exp)| *exp);
    let excess = (live.len() + 1).saturating_sub(max_per_user.max(1));
    for (family, _) in live.into_iter().take(excess) {
        s.lwt(&s.st.refresh_drop_any, (g.user.as_str(), family.as_str()))
            .await?;
    }
    let values = vec![
        text(g.user.as_str()),
        text(&g.family),
        text(&g.token_hash),
        text(&g.generation),
        big(g.expires_ms),
        CqlValue::Int(ttl(g.expires_ms, now)),
    ];
    s.write_batch(vec![s.w(&s.st.refresh_put, values)]).await
}

/// [`natter_store::Store::refresh_revoke`]. A token that names no grant (anyone may send one)
/// costs a read, never a Paxos round.
pub(super) async fn revoke(
    s: &CassandraStore,
    user: &UserId,
    family: &str,
    token_hash: &str,
) -> Result<bool> {
    type Row = (Option<String>, Option<String>, Option<i64>);
    let row: Option<Row> = s.one(&s.st.refresh_get, (user.as_str(), family)).await?;
    if row.is_none_or(|(current, _, _)| current.as_deref() != Some(token_hash)) {
        return Ok(false);
    }
    let values = (user.as_str(), family, token_hash);
    s.lwt(&s.st.refresh_drop_if, values).await
}

/// [`natter_store::Store::refresh_rotate`]; `next` is the next token's hash and expiry.
pub(super) async fn rotate(
    s: &CassandraStore,
    user: &UserId,
    family: &str,
    token_hash: &str,
    next: (&str, u64),
    now_ms: u64,
) -> Result<Rotation> {
    type Row = (Option<String>, Option<String>, Option<i64>);
    let row: Option<Row> = s.one(&s.st.refresh_get, (user.as_str(), family)).await?;
    let Some((Some(current), Some(generation), Some(exp))) = row else {
        return Ok(Rotation::Unknown);
    };
    let was = RefreshGrant {
        user: user.clone(),
        family: family.to_owned(),
        token_hash: current,
        generation,
        expires_ms: as_u64(exp),
    };
    if was.expires_ms <= now_ms {
        return Ok(Rotation::Unknown);
    }
    if was.token_hash == token_hash {
        let (next_hash, expires_ms) = next;
        // The TTL counts from the real clock, which Cassandra's expiry uses; `now_ms` is only
        // what the caller calls now for the lapse check.
        let values = (
            ttl(expires_ms, natter_types::clock::now_ms()),
            next_hash,
            was.generation.as_str(),
            int64(expires_ms),
            user.as_str(),
            family,
            token_hash,
        );
        if s.lwt(&s.st.refresh_swap, values).await? {
            return Ok(Rotation::Rotated(was));
        }
    }
    // Not the current token (now, or by the time the swap ran): it was used before.
    s.lwt(&s.st.refresh_drop_any, (user.as_str(), family))
        .await?;
    Ok(Rotation::Reused)
}
