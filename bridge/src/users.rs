//! User administration, shared by the HTTP admin API and `natter user …` when no server runs.

use natter_store::{Store, StoreError, UserRecord};
use natter_types::UserId;

use crate::auth;

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
}

fn check_password(p: &str) -> Result<(), UserError> {
    if p.is_empty() || p.len() > MAX_PASSWORD_BYTES {
        return Err(UserError::Password);
    }
    Ok(())
}

async fn hash(password: &str) -> String {
    auth::hash_password_async(password.to_owned()).await
}

/// Creates `name` with `password`.
pub async fn add(store: &dyn Store, name: &str, password: &str) -> Result<UserId, UserError> {
    let id = UserId::new(name)?;
    check_password(password)?;
    let created_ms = crate::now_ms();
    let rec = UserRecord {
        id: id.clone(),
        password_hash: hash(password).await,
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
    if !store.set_password(&id, hash(password).await).await? {
        return Err(UserError::NotFound(name.to_owned()));
    }
    Ok(())
}

/// Removes `name`; its messages stay in their chats.
pub async fn remove(store: &dyn Store, name: &str) -> Result<(), UserError> {
    let id = UserId::new(name)?;
    if !store.remove_user(&id).await? {
        return Err(UserError::NotFound(name.to_owned()));
    }
    Ok(())
}

/// Checks `name`'s password (for `POST /v1/token`).
pub async fn check(
    store: &dyn Store,
    name: &str,
    password: &str,
) -> Result<Option<UserId>, UserError> {
    let Ok(id) = UserId::new(name) else {
        return Ok(None);
    };
    if password.len() > MAX_PASSWORD_BYTES {
        return Ok(None);
    }
    let Some(rec) = store.user(&id).await? else {
        return Ok(None);
    };
    let ok = auth::verify_password_async(password.as_bytes().to_vec(), rec.password_hash).await;
    Ok(ok.then_some(id))
}
