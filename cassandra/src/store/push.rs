//! Push: each device's token (one owner per token) and the queue of notifications not yet
//! sent, spread over [`PUSH_SHARDS`] partitions by user.

use natter_store::{PushJob, PushPlatform, PushToken, StoreError};
use natter_types::{DeviceId, UserId};
use scylla::value::CqlValue;

use super::values::{from_json, text, to_json};
use super::CassandraStore;
use crate::{corrupt, Result};

/// Shards of the push job queue (a user's jobs live in one).
const PUSH_SHARDS: i32 = 16;

/// The push-queue shard of a user: FNV-1a, stable across processes and versions.
pub(super) fn shard_of(user: &UserId) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in user.as_str().bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % PUSH_SHARDS as u32) as i32
}

/// The primary key of a push job's row: shard, user, device, collapse key.
fn job_key(job: &PushJob) -> Vec<CqlValue> {
    vec![
        CqlValue::Int(shard_of(&job.user)),
        text(job.user.as_str()),
        text(job.device.as_str()),
        text(&job.collapse),
    ]
}

/// The job waiting for `job`'s (user, device, chat), if any.
async fn waiting_job(s: &CassandraStore, job: &PushJob) -> Result<Option<PushJob>> {
    let row: Option<(String,)> = s.one(&s.st.job_get, job_key(job)).await?;
    row.map(|(w,)| from_json(&w)).transpose()
}

/// [`natter_store::Store::push_register`].
pub(super) async fn push_register(s: &CassandraStore, token: PushToken) -> Result<()> {
    let (platform, tok) = (token.platform.as_str(), token.token.as_str());
    let mut writes = Vec::new();
    // The token moves: a phone that logs into another account stops notifying the first.
    let previous: Option<(String, String)> = s.one(&s.st.owner_get, (platform, tok)).await?;
    if let Some((u, d)) = previous {
        writes.push(s.w(&s.st.token_delete, vec![text(&u), text(&d)]));
    }
    let (user, device) = (token.user.as_str(), token.device.as_str());
    let old: Option<(Option<String>, Option<String>)> =
        s.one(&s.st.token_get, (user, device)).await?;
    if let Some((Some(p), Some(t))) = old {
        writes.push(s.w(&s.st.owner_delete, vec![text(&p), text(&t)]));
    }
    writes.push(s.w(
        &s.st.token_put,
        vec![text(user), text(device), text(platform), text(tok)],
    ));
    writes.push(s.w(
        &s.st.owner_put,
        vec![text(platform), text(tok), text(user), text(device)],
    ));
    s.write_all(writes).await
}

/// [`natter_store::Store::push_unregister`].
pub(super) async fn push_unregister(
    s: &CassandraStore,
    user: &UserId,
    device: &DeviceId,
) -> Result<bool> {
    let old: Option<(Option<String>, Option<String>)> = s
        .one(&s.st.token_get, (user.as_str(), device.as_str()))
        .await?;
    let Some((platform, token)) = old else {
        return Ok(false);
    };
    let mut writes = vec![s.w(
        &s.st.token_delete,
        vec![text(user.as_str()), text(device.as_str())],
    )];
    if let (Some(p), Some(t)) = (platform, token) {
        writes.push(s.w(&s.st.owner_delete, vec![text(&p), text(&t)]));
    }
    s.write_all(writes).await?;
    Ok(true)
}

/// [`natter_store::Store::push_tokens`].
pub(super) async fn push_tokens(s: &CassandraStore, user: &UserId) -> Result<Vec<PushToken>> {
    let rows: Vec<(String, Option<String>, Option<String>)> =
        s.all(&s.st.tokens_of, (user.as_str(),)).await?;
    let mut out = Vec::new();
    for (device, platform, token) in rows {
        let (Some(platform), Some(token)) = (platform, token) else {
            continue;
        };
        out.push(PushToken {
            user: user.clone(),
            device: DeviceId::new(&device).map_err(corrupt)?,
            platform: platform
                .parse::<PushPlatform>()
                .map_err(|_| StoreError::corrupt(format!("push platform {platform:?}")))?,
            token,
        });
    }
    Ok(out)
}

/// [`natter_store::Store::push_forget`].
pub(super) async fn push_forget(
    s: &CassandraStore,
    platform: PushPlatform,
    token: &str,
) -> Result<bool> {
    let owner: Option<(String, String)> =
        s.one(&s.st.owner_get, (platform.as_str(), token)).await?;
    let Some((u, d)) = owner else {
        return Ok(false);
    };
    s.write_all(vec![
        s.w(
            &s.st.owner_delete,
            vec![text(platform.as_str()), text(token)],
        ),
        s.w(&s.st.token_delete, vec![text(&u), text(&d)]),
    ])
    .await?;
    Ok(true)
}

/// [`natter_store::Store::push_enqueue`].
pub(super) async fn push_enqueue(s: &CassandraStore, jobs: Vec<PushJob>) -> Result<()> {
    let mut writes = Vec::with_capacity(jobs.len());
    for mut job in jobs {
        if let Some(w) = waiting_job(s, &job).await? {
            job.collapse_into(&w);
        }
        let mut values = job_key(&job);
        values.push(CqlValue::Text(to_json(&job)?));
        writes.push(s.w(&s.st.job_put, values));
    }
    s.write_all(writes).await
}

/// [`natter_store::Store::push_due`]: shard by shard, until `limit`.
pub(super) async fn push_due(
    s: &CassandraStore,
    now_ms: u64,
    limit: usize,
) -> Result<Vec<PushJob>> {
    let mut out = Vec::new();
    for shard in 0..PUSH_SHARDS {
        let rows: Vec<(String,)> = s.all(&s.st.jobs_in_shard, (shard,)).await?;
        for (job,) in rows {
            let job: PushJob = from_json(&job)?;
            if job.due_ms <= now_ms {
                out.push(job);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// [`natter_store::Store::push_settle`].
pub(super) async fn push_settle(
    s: &CassandraStore,
    job: &PushJob,
    retry: Option<(u32, u64)>,
) -> Result<()> {
    let Some(mut w) = waiting_job(s, job).await? else {
        return Ok(());
    };
    let key_values = job_key(job);
    match retry {
        None if w.version == job.version => {
            s.write_batch(vec![s.w(&s.st.job_delete, key_values)]).await
        }
        None => Ok(()),
        Some((attempts, due_ms)) => {
            w.attempts = attempts;
            w.due_ms = due_ms;
            let mut values = key_values;
            values.push(CqlValue::Text(to_json(&w)?));
            s.write_batch(vec![s.w(&s.st.job_put, values)]).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_push_shard_is_stable_and_in_range() {
        let u = UserId::new("alice").unwrap();
        assert_eq!(shard_of(&u), shard_of(&UserId::new("alice").unwrap()));
        for name in ["a", "bob", "carol", "x-1", "zzzzzzzz"] {
            let s = shard_of(&UserId::new(name).unwrap());
            assert!((0..PUSH_SHARDS).contains(&s));
        }
        // FNV-1a of "alice" is 0x872213e7, fixed forever: jobs written under it must be found.
        assert_eq!(shard_of(&u), (0x8722_13e7_u32 % 16) as i32);
    }
}
