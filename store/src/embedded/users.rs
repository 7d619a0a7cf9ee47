//! Users: accounts, and everything that goes when one is removed.

use natter_types::UserId;
use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::db::{corrupt, storage};
use super::push::owner_key;
use super::tables::{
    from_json, from_json_opt, to_json, user_prefix, CHATS, DEDUP, GROUPS, INBOX, INBOX_HEAD,
    MEMBERSHIPS, PUSH_JOBS, PUSH_OWNERS, PUSH_TOKENS, USERS,
};
use super::EmbeddedStore;
use crate::{GroupRecord, PushToken, Result, UserRecord};

/// [`crate::Store::create_user`].
pub(super) async fn create_user(store: &EmbeddedStore, user: UserRecord) -> Result<bool> {
    let id = user.id.clone();
    store
        .write(Some(&id), move |txn| {
            let mut t = txn.open_table(USERS).map_err(storage)?;
            if t.get(user.id.as_str()).map_err(storage)?.is_some() {
                return Ok(false);
            }
            let bytes = to_json(&user)?;
            t.insert(user.id.as_str(), bytes.as_slice())
                .map_err(storage)?;
            Ok(true)
        })
        .await
}

/// [`crate::Store::set_password`].
pub(super) async fn set_password(
    store: &EmbeddedStore,
    user: &UserId,
    password_hash: String,
) -> Result<bool> {
    let changed = Some(user);
    let user = user.clone();
    store
        .write(changed, move |txn| {
            let mut t = txn.open_table(USERS).map_err(storage)?;
            let mut rec: UserRecord = match t.get(user.as_str()).map_err(storage)? {
                Some(g) => from_json(g.value())?,
                None => return Ok(false),
            };
            rec.password_hash = password_hash;
            let bytes = to_json(&rec)?;
            t.insert(user.as_str(), bytes.as_slice()).map_err(storage)?;
            Ok(true)
        })
        .await
}

/// [`crate::Store::user`], from the cache where it can.
pub(super) async fn user(store: &EmbeddedStore, user: &UserId) -> Result<Option<UserRecord>> {
    let (cached, generation) = store.users.get(user);
    if let Some(known) = cached {
        return Ok(known);
    }
    let id = user.clone();
    let found: Option<UserRecord> = store
        .read(move |txn| {
            let t = txn.open_table(USERS).map_err(storage)?;
            from_json_opt(t.get(id.as_str()).map_err(storage)?)
        })
        .await?;
    store.users.fill(generation, user.clone(), found.clone());
    Ok(found)
}

/// [`crate::Store::users`].
pub(super) async fn users(store: &EmbeddedStore) -> Result<Vec<UserId>> {
    store
        .read(|txn| {
            let t = txn.open_table(USERS).map_err(storage)?;
            let mut out = Vec::with_capacity(t.len().map_err(storage)? as usize);
            for row in t.iter().map_err(storage)? {
                let (k, _) = row.map_err(storage)?;
                out.push(UserId::new(k.value()).map_err(corrupt)?);
            }
            Ok(out)
        })
        .await
}

/// [`crate::Store::remove_user`]: the account, its devices' push state, its own inbox and chat
/// state, and its place in groups, in one transaction.
pub(super) async fn remove_user(store: &EmbeddedStore, user: &UserId) -> Result<bool> {
    let changed = Some(user);
    let user = user.clone();
    store
        .write(changed, move |txn| {
            let mut t = txn.open_table(USERS).map_err(storage)?;
            let removed = t.remove(user.as_str()).map_err(storage)?.is_some();
            forget_devices(txn, &user)?;
            drop_own_state(txn, &user)?;
            leave_groups(txn, &user)?;
            Ok(removed)
        })
        .await
}

/// A removed user's devices get no more notifications: their tokens and jobs go.
fn forget_devices(txn: &WriteTransaction, user: &UserId) -> Result<()> {
    let mut tokens = txn.open_table(PUSH_TOKENS).map_err(storage)?;
    let mut owners = txn.open_table(PUSH_OWNERS).map_err(storage)?;
    let gone: Vec<PushToken> = tokens
        .extract_from_if(user_prefix(user), |_, _| true)
        .map_err(storage)?
        .map(|row| row.map_err(storage).and_then(|(_, v)| from_json(v.value())))
        .collect::<Result<_>>()?;
    for t in gone {
        owners.remove(owner_key(&t)).map_err(storage)?;
    }
    let mut jobs = txn.open_table(PUSH_JOBS).map_err(storage)?;
    let range = (user.as_str(), "", "")..(user.as_str(), "\u{10FFFF}", "");
    jobs.retain_in(range, |_, _| false).map_err(storage)?;
    Ok(())
}

/// The account's own state goes with it, so a user later created under the same name starts
/// empty (seq 1, no chats, no dedup memory).
fn drop_own_state(txn: &WriteTransaction, user: &UserId) -> Result<()> {
    let mut inbox = txn.open_table(INBOX).map_err(storage)?;
    inbox
        .retain_in((user.as_str(), 0)..=(user.as_str(), u64::MAX), |_, _| false)
        .map_err(storage)?;
    txn.open_table(INBOX_HEAD)
        .map_err(storage)?
        .remove(user.as_str())
        .map_err(storage)?;
    for table in [CHATS, DEDUP] {
        txn.open_table(table)
            .map_err(storage)?
            .retain_in(user_prefix(user), |_, _| false)
            .map_err(storage)?;
    }
    Ok(())
}

/// Drops the user's memberships. The bridge takes a removed user out of each group with a
/// system message first; a group still listing them (a removal with no server running) is
/// mended here.
fn leave_groups(txn: &WriteTransaction, user: &UserId) -> Result<()> {
    let mut memberships = txn.open_table(MEMBERSHIPS).map_err(storage)?;
    let mut groups = txn.open_table(GROUPS).map_err(storage)?;
    let left: Vec<String> = memberships
        .extract_from_if(user_prefix(user), |_, _| true)
        .map_err(storage)?
        .map(|row| row.map(|(k, _)| k.value().1.to_owned()).map_err(storage))
        .collect::<Result<_>>()?;
    for gid in left {
        let rec: Option<GroupRecord> = from_json_opt(groups.get(gid.as_str()).map_err(storage)?)?;
        if let Some(g) = rec {
            let next = g.without(user);
            groups
                .insert(gid.as_str(), to_json(&next)?.as_slice())
                .map_err(storage)?;
        }
    }
    Ok(())
}
