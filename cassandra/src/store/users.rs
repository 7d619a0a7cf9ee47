//! Users: accounts (lightweight transactions, so two creations of one name never both win), and
//! everything that goes when one is removed.

use natter_store::{GroupRecord, UserRecord};
use natter_types::UserId;
use scylla::value::CqlValue;

use super::exec::Write;
use super::push::shard_of;
use super::values::{as_u64, from_json, int64, text, to_json};
use super::CassandraStore;
use crate::buckets::inbox_bucket;
use crate::{corrupt, Result};

/// [`natter_store::Store::create_user`].
pub(super) async fn create_user(s: &CassandraStore, user: UserRecord) -> Result<bool> {
    s.lwt(
        &s.st.user_insert,
        (
            user.id.as_str(),
            user.password_hash.as_str(),
            int64(user.created_ms),
        ),
    )
    .await
}

/// [`natter_store::Store::set_password`].
pub(super) async fn set_password(
    s: &CassandraStore,
    user: &UserId,
    password_hash: String,
) -> Result<bool> {
    let Some(found) = self::user(s, user).await? else {
        return Ok(false);
    };
    s.lwt(
        &s.st.user_set_password,
        (
            password_hash.as_str(),
            user.as_str(),
            int64(found.created_ms),
        ),
    )
    .await
}

/// [`natter_store::Store::user`].
pub(super) async fn user(s: &CassandraStore, user: &UserId) -> Result<Option<UserRecord>> {
    let row: Option<(String, Option<String>, Option<i64>)> =
        s.one(&s.st.user_get, (user.as_str(),)).await?;
    row.map(|(id, hash, created)| {
        Ok(UserRecord {
            id: UserId::new(&id).map_err(corrupt)?,
            password_hash: hash.unwrap_or_default(),
            created_ms: as_u64(created.unwrap_or(0)),
        })
    })
    .transpose()
}

/// [`natter_store::Store::users`].
pub(super) async fn users(s: &CassandraStore) -> Result<Vec<UserId>> {
    // A full scan, paged: only the admin API lists users.
    let rows: Vec<(String,)> = s.all(&s.st.user_ids, ()).await?;
    let mut out = rows
        .into_iter()
        .map(|(id,)| UserId::new(&id).map_err(corrupt))
        .collect::<Result<Vec<_>>>()?;
    out.sort();
    Ok(out)
}

/// [`natter_store::Store::remove_user`]: the account, then its devices' push state, its own
/// inbox, chat logs and read pointers, and its place in groups, in logged batches.
pub(super) async fn remove_user(s: &CassandraStore, user: &UserId) -> Result<bool> {
    let removed = s.lwt(&s.st.user_delete, (user.as_str(),)).await?;
    let mut writes = device_writes(s, user).await?;
    // The account's own state goes with it, so a user later created under the same name
    // starts empty (seq 1, no chats, no memberships, no dedup memory). The seq owner's lock
    // keeps appends to this user out while its inbox goes.
    let mut held = s.owners.lock(&[user]).await;
    let head = s.stored_head(user).await?;
    for bucket in 0..=inbox_bucket(head.max(1)) {
        writes.push(s.w(
            &s.st.inbox_drop,
            vec![text(user.as_str()), CqlValue::BigInt(bucket)],
        ));
    }
    // Every chat log of the user has a read pointer (a reader's first message in a chat
    // writes one), so the pointers name the logs to drop.
    type PtrRow = (String, Option<i64>, Option<i64>);
    let chats: Vec<PtrRow> = s.all(&s.st.ptrs_of, (user.as_str(),)).await?;
    for (chat, _, _) in chats {
        writes.push(s.w(&s.st.log_drop, vec![text(user.as_str()), text(&chat)]));
    }
    for stmt in [
        &s.st.head_drop,
        &s.st.ptr_drop,
        &s.st.state_drop,
        &s.st.dedup_drop,
        &s.st.refresh_drop_user,
    ] {
        writes.push(s.w(stmt, vec![text(user.as_str())]));
    }
    leave_groups(s, user, &mut writes).await?;
    s.write_all(writes).await?;
    if let Some((_, head)) = held.first_mut() {
        head.seq = Some(0);
        head.forget_chats();
    }
    Ok(removed)
}

/// The writes that forget a removed user's devices: their tokens and their push jobs.
async fn device_writes(s: &CassandraStore, user: &UserId) -> Result<Vec<Write>> {
    let tokens: Vec<(String, Option<String>, Option<String>)> =
        s.all(&s.st.tokens_of, (user.as_str(),)).await?;
    let mut writes = Vec::new();
    for (device, platform, token) in tokens {
        if let (Some(p), Some(t)) = (platform, token) {
            writes.push(s.w(&s.st.owner_delete, vec![text(&p), text(&t)]));
        }
        writes.push(s.w(&s.st.token_delete, vec![text(user.as_str()), text(&device)]));
    }
    let shard = shard_of(user);
    let jobs: Vec<(String, String)> = s.all(&s.st.jobs_of_user, (shard, user.as_str())).await?;
    for (device, collapse) in jobs {
        writes.push(s.w(
            &s.st.job_delete,
            vec![
                CqlValue::Int(shard),
                text(user.as_str()),
                text(&device),
                text(&collapse),
            ],
        ));
    }
    Ok(writes)
}

/// The writes that drop the user's memberships. The bridge takes a removed user out of each
/// group with a system message first; a group still listing them (a removal with no server
/// running) is mended here.
async fn leave_groups(s: &CassandraStore, user: &UserId, writes: &mut Vec<Write>) -> Result<()> {
    let groups: Vec<(String,)> = s.all(&s.st.groups_of, (user.as_str(),)).await?;
    for (gid,) in groups {
        writes.push(s.w(&s.st.member_delete, vec![text(user.as_str()), text(&gid)]));
        let rec: Option<(String,)> = s.one(&s.st.group_get, (gid.as_str(),)).await?;
        if let Some((json,)) = rec {
            let g: GroupRecord = from_json(&json)?;
            writes.push(s.w(
                &s.st.group_put,
                vec![text(&gid), text(&to_json(&g.without(user))?)],
            ));
        }
    }
    Ok(())
}
