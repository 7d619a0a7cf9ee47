//! Push: each device's token (one owner per token) and the queue of notifications not yet sent.

use natter_types::{DeviceId, UserId};
use serde::{Deserialize, Serialize};

use super::db::Tables;
use super::tables::{from_json, get_json, rows, to_json, Key};
use super::{EmbeddedStore, Tx};
use crate::{PushJob, PushPlatform, PushToken, Result};

/// A push token's row in `push_owners`.
pub(super) fn owner_key(t: &PushToken) -> Vec<u8> {
    token_key(t.platform, &t.token)
}

/// `(platform, token)`'s key in `push_owners`.
fn token_key(platform: PushPlatform, token: &str) -> Vec<u8> {
    Key::name(platform.as_str()).last(token)
}

/// A device's key in `push_tokens`.
pub(super) fn device_key(user: &UserId, device: &DeviceId) -> Vec<u8> {
    Key::name(user.as_str()).last(device.as_str())
}

/// A push job's key in `push_jobs`.
pub(super) fn job_key(j: &PushJob) -> Vec<u8> {
    Key::name(j.user.as_str())
        .then(j.device.as_str())
        .last(&j.collapse)
}

/// A `push_owners` row: the device that holds a token.
#[derive(Serialize, Deserialize)]
pub(super) struct Owner {
    pub(super) user: UserId,
    pub(super) device: DeviceId,
}

/// Drops the row that says which device holds `token`.
pub(super) fn drop_owner(tx: &mut Tx<'_>, t: &Tables, token: &PushToken) {
    tx.remove(&t.push_owners, owner_key(token));
}

/// [`crate::Store::push_register`].
pub(super) async fn push_register(store: &EmbeddedStore, token: PushToken) -> Result<()> {
    store
        .write(None, move |tx, t| {
            let key = owner_key(&token);
            // The token moves: a phone that logs into another account stops notifying the first.
            if let Some(prev) = get_json::<Owner>(&*tx, &t.push_owners, &key)? {
                tx.remove(&t.push_tokens, device_key(&prev.user, &prev.device));
            }
            let mine = device_key(&token.user, &token.device);
            if let Some(old) = get_json::<PushToken>(&*tx, &t.push_tokens, &mine)? {
                drop_owner(tx, t, &old);
            }
            tx.insert(&t.push_tokens, mine, to_json(&token)?);
            let owner = Owner {
                user: token.user.clone(),
                device: token.device.clone(),
            };
            tx.insert(&t.push_owners, key, to_json(&owner)?);
            Ok(())
        })
        .await
}

/// [`crate::Store::push_unregister`].
pub(super) async fn push_unregister(
    store: &EmbeddedStore,
    user: &UserId,
    device: &DeviceId,
) -> Result<bool> {
    let key = device_key(user, device);
    store
        .write(None, move |tx, t| {
            let old = get_json::<PushToken>(&*tx, &t.push_tokens, &key)?;
            if let Some(old) = &old {
                tx.remove(&t.push_tokens, key);
                drop_owner(tx, t, old);
            }
            Ok(old.is_some())
        })
        .await
}

/// [`crate::Store::push_tokens`].
pub(super) async fn push_tokens(store: &EmbeddedStore, user: &UserId) -> Result<Vec<PushToken>> {
    let prefix = Key::name(user.as_str()).done();
    store
        .read(move |snap, t| {
            rows(snap, &t.push_tokens, &prefix)
                .map(|row| row.and_then(|(_, v)| from_json(&v)))
                .collect()
        })
        .await
}

/// [`crate::Store::push_forget`].
pub(super) async fn push_forget(
    store: &EmbeddedStore,
    platform: PushPlatform,
    token: &str,
) -> Result<bool> {
    let key = token_key(platform, token);
    store
        .write(None, move |tx, t| {
            match get_json::<Owner>(&*tx, &t.push_owners, &key)? {
                Some(owner) => {
                    tx.remove(&t.push_owners, key);
                    tx.remove(&t.push_tokens, device_key(&owner.user, &owner.device));
                    Ok(true)
                }
                None => Ok(false),
            }
        })
        .await
}

/// [`crate::Store::push_enqueue`].
pub(super) async fn push_enqueue(store: &EmbeddedStore, jobs: Vec<PushJob>) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    store
        .write(None, move |tx, t| {
            for mut job in jobs {
                let key = job_key(&job);
                if let Some(w) = get_json::<PushJob>(&*tx, &t.push_jobs, &key)? {
                    job.collapse_into(&w);
                }
                tx.insert(&t.push_jobs, key, to_json(&job)?);
            }
            Ok(())
        })
        .await
}

/// [`crate::Store::push_due`].
pub(super) async fn push_due(
    store: &EmbeddedStore,
    now_ms: u64,
    limit: usize,
) -> Result<Vec<PushJob>> {
    store
        .read(move |snap, t| {
            let mut out = Vec::new();
            for row in rows(snap, &t.push_jobs, b"") {
                let (_, v) = row?;
                let job: PushJob = from_json(&v)?;
                if job.due_ms <= now_ms {
                    out.push(job);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
}

/// [`crate::Store::push_settle`].
pub(super) async fn push_settle(
    store: &EmbeddedStore,
    job: &PushJob,
    retry: Option<(u32, u64)>,
) -> Result<()> {
    let job = job.clone();
    store
        .write(None, move |tx, t| {
            let key = job_key(&job);
            let Some(mut w) = get_json::<PushJob>(&*tx, &t.push_jobs, &key)? else {
                return Ok(());
            };
            match retry {
                None if w.version == job.version => tx.remove(&t.push_jobs, key),
                None => {}
                Some((attempts, due_ms)) => {
                    w.attempts = attempts;
                    w.due_ms = due_ms;
                    tx.insert(&t.push_jobs, key, to_json(&w)?);
                }
            }
            Ok(())
        })
        .await
}
