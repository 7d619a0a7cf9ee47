//! Users: accounts, and everything that goes when one is removed.

use natter_types::UserId;

use super::db::{corrupt, Tables};
use super::groups::{membership_key, memberships_of};
use super::push::drop_owner;
use super::tables::{from_json, get_json, rows, text_at, to_json, Key};
use super::writer::{Done, Op};
use super::{EmbeddedStore, Tx};
use crate::{GroupRecord, PushToken, Result, StoreError, UserRecord};

/// [`crate::Store::create_user`].
pub(super) async fn create_user(store: &EmbeddedStore, user: UserRecord) -> Result<bool> {
    let id = user.id.clone();
    store
        .write(Some(&id), move |tx, t| {
            let key = user.id.as_str().as_bytes();
            if get_json::<UserRecord>(&*tx, &t.users, key)?.is_some() {
                return Ok(false);
            }
            tx.insert(&t.users, key, to_json(&user)?);
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
        .write(changed, move |tx, t| {
            let key = user.as_str().as_bytes();
            let Some(mut rec) = get_json::<UserRecord>(&*tx, &t.users, key)? else {
                return Ok(false);
            };
            rec.password_hash = password_hash;
            tx.insert(&t.users, key, to_json(&rec)?);
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
        .read(move |snap, t| get_json(snap, &t.users, id.as_str().as_bytes()))
        .await?;
    store.users.fill(generation, user.clone(), found.clone());
    Ok(found)
}

/// [`crate::Store::users`].
pub(super) async fn users(store: &EmbeddedStore) -> Result<Vec<UserId>> {
    store
        .read(|snap, t| {
            rows(snap, &t.users, b"")
                .map(|row| row.and_then(|(k, _)| UserId::new(text_at(&k, 0)?).map_err(corrupt)))
                .collect()
        })
        .await
}

/// [`crate::Store::remove_user`]: through the writer thread, which owns inboxes. The user cache
/// forgets the user once the removal has ended, in a task of its own: a caller that stops
/// waiting cannot leave a removed user in the cache.
pub(super) async fn remove_user(store: &EmbeddedStore, user: &UserId) -> Result<bool> {
    let (writer, cache, user) = (store.writer.clone(), store.users.clone(), user.clone());
    let removal = tokio::spawn(async move {
        let out = super::submit(&writer, Op::RemoveUser(user.clone())).await;
        cache.forget(&user);
        out
    });
    match removal
        .await
        .map_err(|e| StoreError::storage(e.to_string()))??
    {
        Done::Removed(r) => Ok(r),
        _ => Err(StoreError::corrupt(
            "writer answered a removal with something else",
        )),
    }
}

/// Removes the account, its devices' push state, its own inbox, chat logs, read pointers and
/// dedup memory, and its place in groups, inside the writer's transaction.
pub(super) fn remove_user_in(tx: &mut Tx<'_>, t: &Tables, user: &UserId) -> Result<bool> {
    let key = user.as_str().as_bytes();
    let removed = get_json::<UserRecord>(&*tx, &t.users, key)?.is_some();
    tx.remove(&t.users, key);
    forget_devices(tx, t, user)?;
    drop_own_state(tx, t, user)?;
    leave_groups(tx, t, user)?;
    Ok(removed)
}

/// Removes every row of `ks` under `user`'s name.
fn remove_under(tx: &mut Tx<'_>, ks: &super::db::Ks, user: &UserId) -> Result<()> {
    let keys: Vec<_> = rows(&*tx, ks, &Key::name(user.as_str()).done())
        .map(|row| row.map(|(k, _)| k))
        .collect::<Result<_>>()?;
    for k in keys {
        tx.remove(ks, k);
    }
    Ok(())
}

/// A removed user's devices get no more notifications: their tokens (with the rows that say
/// who owns each) and jobs go.
fn forget_devices(tx: &mut Tx<'_>, t: &Tables, user: &UserId) -> Result<()> {
    let tokens: Vec<(fjall::Slice, PushToken)> =
        rows(&*tx, &t.push_tokens, &Key::name(user.as_str()).done())
            .map(|row| row.and_then(|(k, v)| Ok((k, from_json(&v)?))))
            .collect::<Result<_>>()?;
    for (key, token) in &tokens {
        tx.remove(&t.push_tokens, key.clone());
        drop_owner(tx, t, token);
    }
    remove_under(tx, &t.push_jobs, user)
}

/// The account's own state goes with it, so a user later created under the same name starts
/// empty (seq 1, no chats, no dedup memory).
fn drop_own_state(tx: &mut Tx<'_>, t: &Tables, user: &UserId) -> Result<()> {
    for ks in [&t.inbox, &t.chat_log, &t.read_ptrs, &t.dedup, &t.refresh] {
        remove_under(tx, ks, user)?;
    }
    Ok(())
}

/// Drops the user's memberships. The bridge takes a removed user out of each group with a
/// system message first; a group still listing them (a removal with no server running) is
/// mended here.
fn leave_groups(tx: &mut Tx<'_>, t: &Tables, user: &UserId) -> Result<()> {
    for gid in memberships_of(tx, t, user)? {
        tx.remove(&t.memberships, membership_key(user, &gid));
        let key = gid.as_bytes();
        if let Some(g) = get_json::<GroupRecord>(&*tx, &t.groups, key)? {
            tx.insert(&t.groups, key, to_json(&g.without(user))?);
        }
    }
    Ok(())
}
