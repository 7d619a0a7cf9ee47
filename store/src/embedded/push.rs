//! Push: each device's token (one owner per token) and the queue of notifications not yet sent.

use natter_types::{DeviceId, UserId};
use redb::ReadableTable;

use super::db::storage;
use super::tables::{
    from_json, from_json_opt, to_json, user_prefix, PUSH_JOBS, PUSH_OWNERS, PUSH_TOKENS,
};
use super::EmbeddedStore;
use crate::{PushJob, PushPlatform, PushToken, Result};

/// A push token's row in `PUSH_OWNERS`.
pub(super) fn owner_key(t: &PushToken) -> (&str, &str) {
    (t.platform.as_str(), t.token.as_str())
}

/// A push job's row in `PUSH_JOBS`.
fn job_key(j: &PushJob) -> (&str, &str, &str) {
    (j.user.as_str(), j.device.as_str(), j.collapse.as_str())
}

/// [`crate::Store::push_register`].
pub(super) async fn push_register(store: &EmbeddedStore, token: PushToken) -> Result<()> {
    store
        .write(None, move |txn| {
            let mut tokens = txn.open_table(PUSH_TOKENS).map_err(storage)?;
            let mut owners = txn.open_table(PUSH_OWNERS).map_err(storage)?;
            let key = owner_key(&token);
            // The token moves: a phone that logs into another account stops notifying the first.
            let previous = owners
                .get(key)
                .map_err(storage)?
                .map(|g| (g.value().0.to_owned(), g.value().1.to_owned()));
            if let Some((u, d)) = previous {
                tokens.remove((u.as_str(), d.as_str())).map_err(storage)?;
            }
            let mine = (token.user.as_str(), token.device.as_str());
            let old: Option<PushToken> = from_json_opt(tokens.get(mine).map_err(storage)?)?;
            if let Some(old) = old {
                owners.remove(owner_key(&old)).map_err(storage)?;
            }
            tokens
                .insert(mine, to_json(&token)?.as_slice())
                .map_err(storage)?;
            owners.insert(key, mine).map_err(storage)?;
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
    let (user, device) = (user.clone(), device.clone());
    store
        .write(None, move |txn| {
            let mut tokens = txn.open_table(PUSH_TOKENS).map_err(storage)?;
            let mut owners = txn.open_table(PUSH_OWNERS).map_err(storage)?;
            let old: Option<PushToken> = from_json_opt(
                tokens
                    .remove((user.as_str(), device.as_str()))
                    .map_err(storage)?,
            )?;
            if let Some(old) = &old {
                owners.remove(owner_key(old)).map_err(storage)?;
            }
            Ok(old.is_some())
        })
        .await
}

/// [`crate::Store::push_tokens`].
pub(super) async fn push_tokens(store: &EmbeddedStore, user: &UserId) -> Result<Vec<PushToken>> {
    let user = user.clone();
    store
        .read(move |txn| {
            let t = txn.open_table(PUSH_TOKENS).map_err(storage)?;
            let mut out = Vec::new();
            for row in t.range(user_prefix(&user)).map_err(storage)? {
                let (_, v) = row.map_err(storage)?;
                out.push(from_json(v.value())?);
            }
            Ok(out)
        })
        .await
}

/// [`crate::Store::push_forget`].
pub(super) async fn push_forget(
    store: &EmbeddedStore,
    platform: PushPlatform,
    token: &str,
) -> Result<bool> {
    let token = token.to_owned();
    store
        .write(None, move |txn| {
            let mut tokens = txn.open_table(PUSH_TOKENS).map_err(storage)?;
            let mut owners = txn.open_table(PUSH_OWNERS).map_err(storage)?;
            let owner = owners
                .remove((platform.as_str(), token.as_str()))
                .map_err(storage)?
                .map(|g| (g.value().0.to_owned(), g.value().1.to_owned()));
            match owner {
                Some((u, d)) => {
                    tokens.remove((u.as_str(), d.as_str())).map_err(storage)?;
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
        .write(None, move |txn| {
            let mut t = txn.open_table(PUSH_JOBS).map_err(storage)?;
            for mut job in jobs {
                let waiting: Option<PushJob> =
                    from_json_opt(t.get(job_key(&job)).map_err(storage)?)?;
                if let Some(w) = waiting {
                    job.collapse_into(&w);
                }
                t.insert(job_key(&job), to_json(&job)?.as_slice())
                    .map_err(storage)?;
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
        .read(move |txn| {
            let t = txn.open_table(PUSH_JOBS).map_err(storage)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(storage)? {
                let (_, v) = row.map_err(storage)?;
                let job: PushJob = from_json(v.value())?;
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
        .write(None, move |txn| {
            let mut t = txn.open_table(PUSH_JOBS).map_err(storage)?;
            let key = job_key(&job);
            let waiting: Option<PushJob> = from_json_opt(t.get(key).map_err(storage)?)?;
            let Some(mut w) = waiting else {
                return Ok(());
            };
            match retry {
                None if w.version == job.version => {
                    t.remove(key).map_err(storage)?;
                }
                None => {}
                Some((attempts, due_ms)) => {
                    w.attempts = attempts;
                    w.due_ms = due_ms;
                    t.insert(key, to_json(&w)?.as_slice()).map_err(storage)?;
                }
            }
            Ok(())
        })
        .await
}
