//! Refresh grants: one row per signed-in session, `user\0family` → the grant as JSON, each
//! change one transaction.

use natter_types::clock::now_ms;
use natter_types::UserId;

use super::tables::{from_json, get_json, rows, to_json, Key};
use super::EmbeddedStore;
use crate::{RefreshGrant, Result, Rotation};

/// A grant's key.
fn key(user: &UserId, family: &str) -> Vec<u8> {
    Key::name(user.as_str()).last(family)
}

/// Whether a grant is stored under `k` (a snapshot read).
async fn exists(store: &EmbeddedStore, k: &[u8]) -> Result<bool> {
    let k = k.to_vec();
    store
        .read(move |snap, t| Ok(get_json::<RefreshGrant>(snap, &t.refresh, &k)?.is_some()))
        .await
}

/// [`crate::Store::refresh_save`].
pub(super) async fn save(
    store: &EmbeddedStore,
    grant: RefreshGrant,
    max_per_user: usize,
) -> Result<()> {
    let now = now_ms();
    store
        .write(None, move |tx, t| {
            let mut live: Vec<(fjall::Slice, u64)> = Vec::new();
            for row in rows(&*tx, &t.refresh, &Key::name(grant.user.as_str()).done()) {
                let (k, v) = row?;
                let g: RefreshGrant = from_json(&v)?;
                if g.expires_ms <= now {
                    tx.remove(&t.refresh, k);
                } else {
                    live.push((k, g.expires_ms));
                }
            }
            // Room for the new one: the sessions that would lapse soonest go first.
            live.sort_by_key(|(_, exp)| *exp);
            let excess = (live.len() + 1).saturating_sub(max_per_user.max(1));
            for (k, _) in live.into_iter().take(excess) {
                tx.remove(&t.refresh, k);
            }
            tx.insert(
                &t.refresh,
                key(&grant.user, &grant.family),
                to_json(&grant)?,
            );
            Ok(())
        })
        .await
}

/// [`crate::Store::refresh_rotate`]; `next` is the next token's hash and expiry.
pub(super) async fn rotate(
    store: &EmbeddedStore,
    user: &UserId,
    family: &str,
    token_hash: &str,
    next: (String, u64),
    now_ms: u64,
) -> Result<Rotation> {
    let (k, presented) = (key(user, family), token_hash.to_owned());
    // Anyone may present a made-up token: one that names no grant costs a read, never a
    // durable (fsync'd) write.
    if !exists(store, &k).await? {
        return Ok(Rotation::Unknown);
    }
    store
        .write(None, move |tx, t| {
            let Some(g) = get_json::<RefreshGrant>(&*tx, &t.refresh, &k)? else {
                return Ok(Rotation::Unknown);
            };
            if g.expires_ms <= now_ms {
                tx.remove(&t.refresh, k);
                return Ok(Rotation::Unknown);
            }
            if g.token_hash != presented {
                tx.remove(&t.refresh, k);
                return Ok(Rotation::Reused);
            }
            let (token_hash, expires_ms) = next;
            let rotated = RefreshGrant {
                token_hash,
                expires_ms,
                ..g.clone()
            };
            tx.insert(&t.refresh, k, to_json(&rotated)?);
            Ok(Rotation::Rotated(g))
        })
        .await
}

/// [`crate::Store::refresh_revoke`].
pub(super) async fn revoke(
    store: &EmbeddedStore,
    user: &UserId,
    family: &str,
    token_hash: &str,
) -> Result<bool> {
    let (k, presented) = (key(user, family), token_hash.to_owned());
    if !exists(store, &k).await? {
        return Ok(false);
    }
    store
        .write(None, move |tx, t| {
            let current = get_json::<RefreshGrant>(&*tx, &t.refresh, &k)?;
            if current.is_some_and(|g| g.token_hash == presented) {
                tx.remove(&t.refresh, k);
                return Ok(true);
            }
            Ok(false)
        })
        .await
}
