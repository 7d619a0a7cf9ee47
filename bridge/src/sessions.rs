//! Signed-in sessions: an access token (short-lived, the MQTT password) with a refresh token
//! that gets the next pair. Each refresh token works once: using it returns a new one and ends
//! it; an ended one used again (it leaked, and someone else used it first, or the other way
//! round) ends the whole session, as OAuth 2.0's refresh-token rotation does. A password
//! change ends every session of the account, and removing the account removes them.
//!
//! A refresh token is `nrt1.{session}.{secret}.{user}`: the store keeps only the secret's
//! SHA-256, so a copy of the store signs no one in.

use natter_store::{RefreshGrant, Rotation, StoreError, UserRecord};
use natter_types::clock::now_ms;
use natter_types::UserId;
use sha2::{Digest, Sha256};

use crate::auth::{generation, hex, IssueError};
use crate::Bridge;

/// What a refresh token starts with, naming its format's version.
const PREFIX: &str = "nrt1";

/// What a sign-in or a refresh gives a client.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The access token: the MQTT password and the API's bearer token.
    pub token: String,
    /// When the access token expires, Unix seconds.
    pub expires: u64,
    /// The refresh token and when it lapses unless used (Unix seconds); none when the
    /// operator turned refresh tokens off (`auth.refresh_ttl_secs = 0`).
    pub refresh: Option<(String, u64)>,
}

/// Why a refresh or a sign-out was refused.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Not a refresh token, or one that no longer works (used, lapsed, signed out, the
    /// password changed, the account removed). The client signs in again.
    #[error("the refresh token is not valid (used, expired or revoked): sign in again")]
    Invalid,
    /// The store could not answer; nothing changed, the client may try again.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The access token could not be signed.
    #[error(transparent)]
    Issue(#[from] IssueError),
}

/// A refresh token taken apart.
struct Presented<'a> {
    user: UserId,
    family: &'a str,
    secret: &'a str,
}

fn parse(token: &str) -> Option<Presented<'_>> {
    let mut parts = token.splitn(4, '.');
    let (prefix, family, secret, user) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if prefix != PREFIX || !hex(family, 32) || !hex(secret, 64) {
        return None;
    }
    Some(Presented {
        user: UserId::new(user).ok()?,
        family,
        secret,
    })
}

fn random_hex(bytes: usize) -> String {
    hex(&(0..bytes)
        .map(|_| rand::random::<u8>())
        .collect::<Vec<u8>>())
}

fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

impl Bridge {
    /// Lifetime of a refresh token in ms; `None` when refresh tokens are off.
    fn refresh_ttl_ms(&self) -> Option<u64> {
        let secs = self.config.auth.refresh_ttl_secs;
        (secs > 0).then(|| secs.saturating_mul(1000))
    }

    /// Signs `user` in (the password was checked): an access token and, unless turned off,
    /// the refresh token of a new session.
    pub async fn sign_in(&self, user: &UserRecord) -> Result<SignedIn, SessionError> {
        let (token, expires) = self.tokens.issue(user)?;
        let Some(ttl) = self.refresh_ttl_ms() else {
            return Ok(SignedIn {
                token,
                expires,
                refresh: None,
            });
        };
        let (family, secret) = (random_hex(16), random_hex(32));
        let expires_ms = now_ms().saturating_add(ttl);
        let grant = RefreshGrant {
            user: user.id.clone(),
            family: family.clone(),
            token_hash: hash(&secret),
            generation: generation(user),
            expires_ms,
        };
        let max = self.config.auth.max_refresh_tokens_per_user;
        self.store.refresh_save(grant, max).await?;
        let refresh = format!("{PREFIX}.{family}.{secret}.{}", user.id);
        Ok(SignedIn {
            token,
            expires,
            refresh: Some((refresh, expires_ms / 1000)),
        })
    }

    /// Exchanges a refresh token for a new access token and the session's next refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> Result<SignedIn, SessionError> {
        let p = parse(refresh_token).ok_or(SessionError::Invalid)?;
        let ttl = self.refresh_ttl_ms().ok_or(SessionError::Invalid)?;
        let now = now_ms();
        let next = random_hex(32);
        let expires_ms = now.saturating_add(ttl);
        let rotation = self
            .store
            .refresh_rotate(
                &p.user,
                p.family,
                &hash(p.secret),
                &hash(&next),
                expires_ms,
                now,
            )
            .await?;
        let was = match rotation {
            Rotation::Rotated(was) => was,
            Rotation::Reused => {
                tracing::warn!(user = %p.user, "a refresh token was used twice: session ended");
                metrics::counter!("natter_refresh_reused_total").increment(1);
                return Err(SessionError::Invalid);
            }
            Rotation::Unknown => return Err(SessionError::Invalid),
        };
        // The account as it is now: gone, or its password changed since, ends the session.
        let user = self.store.user(&p.user).await?;
        let Some(user) = user.filter(|u| generation(u) == was.generation) else {
            self.store
                .refresh_revoke(&p.user, p.family, &hash(&next))
                .await?;
            return Err(SessionError::Invalid);
        };
        let (token, expires) = self.tokens.issue(&user)?;
        let refresh = format!("{PREFIX}.{}.{next}.{}", p.family, user.id);
        Ok(SignedIn {
            token,
            expires,
            refresh: Some((refresh, expires_ms / 1000)),
        })
    }

    /// Signs out the session of `refresh_token` (its access token lapses by itself, within
    /// `auth.token_ttl_secs`); `false` if it was not a current refresh token.
    pub async fn sign_out(&self, refresh_token: &str) -> Result<bool, SessionError> {
        let Some(p) = parse(refresh_token) else {
            return Ok(false);
        };
        Ok(self
            .store
            .refresh_revoke(&p.user, p.family, &hash(p.secret))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_refresh_tokens_are_taken_apart() {
        let (f, s) = ("a".repeat(32), "b".repeat(64));
        let ok = format!("nrt1.{f}.{s}.alice.smith");
        let p = parse(&ok).unwrap();
        assert_eq!(
            (p.user.as_str(), p.family, p.secret),
            ("alice.smith", f.as_str(), s.as_str())
        );
        for bad in [
            String::new(),
            format!("nrt2.{f}.{s}.alice"),
            format!("nrt1.{f}.{s}"),
            format!("nrt1.{f}.{}.alice", "b".repeat(63)),
            format!("nrt1.{}.{s}.alice", "g".repeat(32)),
            format!("nrt1.{f}.{s}.Alice!"),
        ] {
            assert!(parse(&bad).is_none(), "{bad}");
        }
    }
}
