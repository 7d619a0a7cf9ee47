//! `[auth]` and `[[auth.trusted_issuers]]`: natter's own tokens, the issuers whose tokens are
//! accepted, and login throttling.
//!
//! Validation checks the values only; it must never read a key file (the bridge's token code
//! does, and names the key if it cannot).

use std::path::PathBuf;

use serde::Deserialize;

use crate::check::{at_least_one, in_range};
use crate::ConfigError;

/// Passwords and tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of the access tokens `POST /v1/token` and `/v1/token/refresh` issue, in
    /// seconds. Short: a client keeps itself signed in with its refresh token.
    pub token_ttl_secs: u64,
    /// How long a refresh token stays usable unless used, in seconds; each use gives a new one
    /// with a fresh lifetime. 0: no refresh tokens (clients sign in with the password again).
    pub refresh_ttl_secs: u64,
    /// Signed-in sessions (refresh tokens) one user may hold; a new sign-in past it ends the
    /// session that would lapse soonest.
    pub max_refresh_tokens_per_user: usize,
    /// Key that signs natter's own tokens (HS256). Empty: `{data_dir}/token.key`, made at first
    /// start.
    pub token_key_file: String,
    /// Other issuers whose tokens are accepted as MQTT passwords.
    pub trusted_issuers: Vec<TrustedIssuer>,
    /// Clock skew allowed when checking a token's `exp` and `nbf`, in seconds (at most 300).
    pub leeway_secs: u64,
    /// Failed logins (MQTT CONNECT or `POST /v1/token`) one source address may make in
    /// `failure_window_secs`; past it, password attempts from that address are refused without
    /// being checked until the window lets more through (tokens are still checked).
    pub max_failures_per_ip: u32,
    /// Failed password logins one account may take in `failure_window_secs`; past it, password
    /// attempts for that account are refused without being checked, except from addresses the
    /// account logged in from successfully before (so a user is not locked out of her own
    /// devices) and with tokens.
    pub max_failures_per_account: u32,
    /// The window of the two failure counts above, in seconds: the allowance refills evenly
    /// over it.
    pub failure_window_secs: u64,
    /// Whether loopback addresses count per address too. Off by default (as fail2ban's
    /// `ignoreip`): behind a reverse proxy on the same machine every client shares one loopback
    /// address, and one attacker would lock everyone out.
    pub throttle_loopback: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_ttl_secs: 3600,
            refresh_ttl_secs: 30 * 24 * 3600,
            max_refresh_tokens_per_user: 32,
            token_key_file: String::new(),
            trusted_issuers: Vec::new(),
            leeway_secs: 30,
            max_failures_per_ip: 20,
            max_failures_per_account: 10,
            failure_window_secs: 300,
            throttle_loopback: false,
        }
    }
}

/// An identity provider whose signed tokens natter accepts. The token's `sub` is the user id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    /// The `iss` claim the token must carry.
    pub issuer: String,
    /// The signing algorithm.
    pub algorithm: IssuerAlgorithm,
    /// PEM public key of the issuer.
    pub public_key_file: PathBuf,
    /// The `aud` claim required, if any.
    #[serde(default)]
    pub audience: Option<String>,
}

/// Asymmetric algorithms accepted from trusted issuers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum IssuerAlgorithm {
    /// RSA PKCS#1 v1.5 with SHA-256.
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl AuthConfig {
    /// Checks `[auth]`: token lifetime and leeway, then the throttling bounds.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.check_tokens()?;
        self.check_throttling()
    }

    fn check_tokens(&self) -> Result<(), ConfigError> {
        at_least_one("auth.token_ttl_secs", self.token_ttl_secs)?;
        at_least_one(
            "auth.max_refresh_tokens_per_user",
            self.max_refresh_tokens_per_user as u64,
        )?;
        in_range(
            "auth.leeway_secs",
            self.leeway_secs,
            0..=300,
            "0 to 300 seconds",
        )
    }

    fn check_throttling(&self) -> Result<(), ConfigError> {
        at_least_one("auth.max_failures_per_ip", self.max_failures_per_ip.into())?;
        at_least_one(
            "auth.max_failures_per_account",
            self.max_failures_per_account.into(),
        )?;
        at_least_one("auth.failure_window_secs", self.failure_window_secs)
    }
}
