//! User administration, shared by the HTTP admin API and `natter user …` when no server runs.
//!
//! Removing a user removes the account, not only its name: it leaves every group (each group is
//! told, as when a member leaves), and the store forgets its inbox, chats, read state, memberships,
//! dedup memory and push tokens. Someone later created under the same name starts empty: they see
//! no message from before their account existed (see `Bridge::account_since`), own none of the old
//! uploads, and no token of the old account works. The running server also ends the user's sessions
//! ([`crate::Bridge::remove_user`]).

use natter_store::{Store, StoreError, UserRecord};
use natter_types::{Client, DeviceId, UserId};

use crate::groups::{self, Change};
use crate::{auth, ChatError};

/// Longest password accepted, in bytes (argon2 input is bounded so a request cannot make the
/// server hash megabytes).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a user command failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name is not a valid user id.
    #[error(transparent)]
    Name(#[from] natter_types::NameError),
    /// The password is empty or too long.
    #[error("a password must be 1 to {MAX_PASSWORD_BYTES} bytes")]
    Password,
    /// The user exists already.
    #[error("user {0} already exists")]
    Exists(String),
    /// There is no such user.
    #[error("no such user {0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Leaving a group failed while removing the user.
    #[error("cannot take {user} out of their groups: {source}")]
    Groups {
        /// The user being removed.
        user: String,
        /// Why.
        #[source]
        source: ChatError,
    },
    /// The password could not be hashed (the hashing threads are gone, or argon2 refused it);
    /// nothing was stored.
    #[error("the password could not be hashed")]
    Hash(#[source] auth::HashError),
}

fn check_password(p: &str) -> Result<(), UserError> {
    if p.is_empty() || p.len() > MAX_PASSWORD_BYTES {
        return Err(UserError::Password);
    }
    Ok(())
}

async fn hash(password: &str) -> Result<String, UserError> {
    auth::hash_password_async(password.to_owned())
        .await
        .map_err(UserError::Hash)
}

/// Creates `name` with `password`.
pub async fn add(store: &dyn Store, name: &str, password: &str) -> Result<UserId, UserError> {
    let id = UserId::new(name)?;
    check_password(password)?;
    let created_ms = natter_types::clock::now_ms();
    let rec = UserRecord {
        id: id.clone(),
        password_hash: hash(password).await?,
        created_ms,
    };
    if !store.create_user(rec).await? {
        return Err(UserError::Exists(name.to_owned()));
    }
    Ok(id)
}

/// Sets a new password for `name`.
pub async fn passwd(store: &dyn Store, name: &str, password: &str) -> Result<(), UserError> {
    let id = UserId::new(name)?;
    check_password(password)?;
    if !store.set_password(&id, hash(password).await?).await? {
        return Err(UserError::NotFound(name.to_owned()));
    }
    Ok(())
}

/// Removes the account `name` (see the module docs); its messages stay in their chats for the
/// others.
pub async fn remove(store: &dyn Store, name: &str) -> Result<(), UserError> {
    remove_account(store, name).await.map(drop)
}

/// [`remove`], returning the group changes committed on the way, for a running server to tell.
async fn remove_account(store: &dyn Store, name: &str) -> Result<Vec<Change>, UserError> {
    let id = UserId::new(name)?;
    if store.user(&id).await?.is_none() {
        return Err(UserError::NotFound(name.to_owned()));
    }
    let groups_err = |source| UserError::Groups {
        user: name.to_owned(),
        source,
    };
    // The account leaves as its own actor, from no device of its own ("account" is a valid
    // device id: the `?` never refuses it).
    let actor = Client {
        user: id.clone(),
        device: DeviceId::new("account")?,
    };
    let mut changes = Vec::new();
    for gid in store.groups_of(&id).await? {
        let Some(g) = store.group(&gid).await? else {
            continue;
        };
        let (next, body) = groups::without(&g, &id, format!("{id}'s account was removed"));
        let change = groups::commit_change(
            store,
            &actor,
            Some(&g),
            next,
            "left",
            std::slice::from_ref(&id),
            body,
        )
        .await
        .map_err(groups_err)?;
        changes.push(change);
    }
    if !store.remove_user(&id).await? {
        return Err(UserError::NotFound(name.to_owned()));
    }
    Ok(changes)
}

impl crate::Bridge {
    /// Removes the account `name` on the running server: as [`remove`], then every member of
    /// its groups is told, and every session of the user on this node (connected or kept
    /// offline) ends at once, so an open connection cannot go on sending or syncing.
    pub async fn remove_user(&self, name: &str) -> Result<(), UserError> {
        // The same lock as the `group.*` requests, held until the group cache has the new
        // records: a removal's leave changes never interleave with a change to the same group.
        let guard = self.groups.changing().await;
        let changes = remove_account(&*self.store, name).await?;
        for change in &changes {
            self.tell_change(change).await;
        }
        drop(guard);
        let id = UserId::new(name)?;
        self.logins.forget(&id);
        let ended = self.outbox.end_sessions(&id).await;
        tracing::info!(user = %id, sessions = ended, groups = changes.len(), "user removed");
        Ok(())
    }

    /// Sets a new password on the running server: as [`passwd`], then every session of the
    /// user ends (each device logs in again with the new password) and every token issued
    /// before stops working (tokens carry the credential generation).
    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), UserError> {
        passwd(&*self.store, name, password).await?;
        let id = UserId::new(name)?;
        self.logins.forget(&id);
        let ended = self.outbox.end_sessions(&id).await;
        tracing::info!(user = %id, sessions = ended, "password changed");
        Ok(())
    }
}
