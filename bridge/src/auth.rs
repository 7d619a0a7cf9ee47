//! Credentials: argon2id password hashes, natter's own access tokens (HS256 JWTs), and tokens
//! from trusted issuers (RS256, ES256, EdDSA public keys named in the config).
//!
//! Password checks are deliberately slow (argon2id), so they run on dedicated hashing threads
//! ([`verify_password_async`], [`hash_password_async`]) and never stall the connections being
//! served.

use natter_types::clock::now_secs;
use std::path::{Path, PathBuf};

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use natter_config::{AuthConfig, IssuerAlgorithm};
use natter_store::UserRecord;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A credential setup that cannot be used: names the config key and the file.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A key file could not be read or written.
    #[error("config key `{key}`: cannot use key file {path}: {source}")]
    KeyFile {
        /// The config key that names (or defaults) the file.
        key: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KeyFileError,
    },
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// It could not be read or written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// natter's signing key is too short to be a key.
    #[error("the key is shorter than 32 bytes")]
    Short,
    /// A trusted issuer's file is not a public key of its algorithm.
    #[error("not a PEM public key for {algorithm:?}: {source}")]
    NotPublicKey {
        /// The issuer's configured algorithm.
        algorithm: IssuerAlgorithm,
        /// What the PEM parser said.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
}

/// A token that could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign a token: {0}")]
pub struct IssueError(#[source] jsonwebtoken::errors::Error);

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// argon2 refused the password or its parameters.
    #[error("argon2 refused it: {0}")]
    Argon2(#[source] argon2::password_hash::Error),
    /// The hashing threads are gone: they could not start, or one panicked.
    #[error("the password hashing threads are gone")]
    Threads,
}

/// Claims of natter's tokens; `sub` is the user, `gen` the account's credential generation
/// (see [`generation`]): a token outlives neither a password change nor its account.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    #[serde(default)]
    iat: u64,
    exp: u64,
    #[serde(default)]
    gen: String,
}

/// The generation of an account's credentials: a digest of its password hash, which changes
/// (a fresh salt) with every password change and every account, even one re-created under
/// the same name. It reveals nothing of the password.
pub(crate) fn generation(user: &UserRecord) -> String {
    hex(&Sha256::digest(user.password_hash.as_bytes())[..12])
}

/// `bytes` as lowercase hex, as every key, digest and random text of this crate is written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Issuer {
    name: String,
    algorithm: Algorithm,
    key: DecodingKey,
    audience: Option<String>,
}

/// Issues and checks tokens.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl_secs: u64,
    leeway_secs: u64,
    issuers: Vec<Issuer>,
}

/// The `iss` of natter's own tokens.
pub const NATTER_ISSUER: &str = "natter";

/// Reads the HS256 key, making a random one (mode 0600) when the file does not exist yet.
fn load_or_make_key(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    match std::fs::read(path) {
        Ok(k) if k.len() >= 32 => Ok(k),
        Ok(_) => Err(KeyFileError::Short),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            let text = hex(&key);
            write_private(path, text.as_bytes())?;
            Ok(text.into_bytes())
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes a file only its owner may read.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

impl Tokens {
    /// Loads the signing key (from `auth.token_key_file`, or `{data_dir}/token.key`) and every
    /// trusted issuer's public key.
    pub fn load(cfg: &AuthConfig, data_dir: &Path) -> Result<Tokens, AuthSetupError> {
        let path = if cfg.token_key_file.is_empty() {
            data_dir.join("token.key")
        } else {
            PathBuf::from(&cfg.token_key_file)
        };
        let secret = load_or_make_key(&path).map_err(|source| AuthSetupError::KeyFile {
            key: "auth.token_key_file".into(),
            path: path.clone(),
            source,
        })?;
        let mut issuers = Vec::new();
        for (i, iss) in cfg.trusted_issuers.iter().enumerate() {
            let err = |source: KeyFileError| AuthSetupError::KeyFile {
                key: format!("auth.trusted_issuers[{i}].public_key_file"),
                path: iss.public_key_file.clone(),
                source,
            };
            let pem = std::fs::read(&iss.public_key_file).map_err(|e| err(e.into()))?;
            let (algorithm, key) = match iss.algorithm {
                IssuerAlgorithm::RS256 => (Algorithm::RS256, DecodingKey::from_rsa_pem(&pem)),
                IssuerAlgorithm::ES256 => (Algorithm::ES256, DecodingKey::from_ec_pem(&pem)),
                IssuerAlgorithm::EdDSA => (Algorithm::EdDSA, DecodingKey::from_ed_pem(&pem)),
            };
            let key = key.map_err(|source| {
                err(KeyFileError::NotPublicKey {
                    algorithm: iss.algorithm,
                    source,
                })
            })?;
            issuers.push(Issuer {
                name: iss.issuer.clone(),
                algorithm,
                key,
                audience: iss.audience.clone(),
            });
        }
        Ok(Tokens {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            ttl_secs: cfg.token_ttl_secs,
            leeway_secs: cfg.leeway_secs,
            issuers,
        })
    }

    /// A signed token for `user`'s account as it is now, and when it expires (Unix seconds).
    pub fn issue(&self, user: &UserRecord) -> Result<(String, u64), IssueError> {
        let iat = now_secs();
        let exp = iat + self.ttl_secs;
        let claims = Claims {
            sub: user.id.to_string(),
            iss: NATTER_ISSUER.into(),
            iat,
            exp,
            gen: generation(user),
        };
        // HS256 over serde_json claims does not fail; were it to, an empty token is no answer.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(IssueError)?;
        Ok((token, exp))
    }

    /// The checks every token gets: signature, `iss`, `exp` and `nbf` with the configured
    /// leeway.
    fn validation(&self, alg: Algorithm, issuer: &str) -> Validation {
        let mut v = Validation::new(alg);
        v.set_issuer(&[issuer]);
        v.set_required_spec_claims(&["exp", "sub", "iss"]);
        v.validate_nbf = true;
        v.leeway = self.leeway_secs;
        v
    }

    /// Whether `token` is a valid, unexpired token for `user`'s account, from natter or a
    /// trusted issuer. natter's tokens must carry the account's current credential generation;
    /// a trusted issuer's token, if it says when it was issued (`iat`), must be younger than
    /// the account.
    pub fn verify(&self, token: &str, user: &UserRecord) -> bool {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return false;
        };
        let iss = peek_issuer(token);
        if header.alg == Algorithm::HS256 && iss.as_deref() == Some(NATTER_ISSUER) {
            let v = self.validation(Algorithm::HS256, NATTER_ISSUER);
            return jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).is_ok_and(|d| {
                d.claims.sub == user.id.as_str() && d.claims.gen == generation(user)
            });
        }
        self.issuers
            .iter()
            .filter(|i| i.algorithm == header.alg && iss.as_deref() == Some(i.name.as_str()))
            .any(|i| {
                let mut v = self.validation(i.algorithm, &i.name);
                match &i.audience {
                    // A configured audience is required, not only checked when present.
                    Some(aud) => {
                        v.set_audience(&[aud]);
                        v.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
                    }
                    None => v.validate_aud = false,
                }
                let Ok(d) = jsonwebtoken::decode::<serde_json::Value>(token, &i.key, &v) else {
                    return false;
                };
                let sub_ok = d.claims.get("sub").and_then(|s| s.as_str()) == Some(user.id.as_str());
                let iat_ok = d
                    .claims
                    .get("iat")
                    .and_then(serde_json::Value::as_u64)
                    .is_none_or(|iat| iat.saturating_mul(1000) + 999 >= user.created_ms);
                sub_ok && iat_ok
            })
    }
}

/// The `iss` claim, read without checking the signature: only to pick which key checks it.
fn peek_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(str::to_owned)
}

/// Whether a password looks like a JWT rather than a password (three base64url parts).
pub fn looks_like_jwt(password: &[u8]) -> bool {
    password.starts_with(b"eyJ")
        && password.iter().filter(|&&c| c == b'.').count() == 2
        && password
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
}

/// An argon2id PHC string for `password`, or why argon2 refused it (absurd lengths, which
/// callers bound; never an empty hash that would lock the account).
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(HashError::Argon2)
}

/// A hash no password matches, checked for unknown users so that they cost what known ones do
/// and names cannot be told apart by timing. Made once, with the same parameters as real ones.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let random: [u8; 16] = rand::random();
        let text = hex(&random);
        hash_password(&text).unwrap_or_else(|e| {
            // The answer for an unknown user stays no (an empty hash matches nothing); only
            // the cost that hides the name is lost, so say so.
            tracing::error!(error = %e, "cannot make the decoy password hash");
            String::new()
        })
    })
}

/// Whether `password` matches the PHC string `hash`; a `hash` that is not a PHC string matches
/// no password (the decoy's, if it could not be made, is empty).
pub fn verify_password(password: &[u8], hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| Argon2::default().verify_password(password, &h).is_ok())
        .unwrap_or(false)
}

/// Threads that run argon2. Each hash touches 19 MiB; run on whatever blocking thread is free,
/// every thread's malloc arena ends up keeping its own 19 MiB, and a reconnect storm costs
/// hundreds of MiB of RSS. A fixed pair of threads bounds that (and the CPU a storm can take).
const HASH_THREADS: usize = 2;
/// Hash jobs waiting; further CONNECTs wait for room (the handshake timeout bounds the wait).
const HASH_QUEUE: usize = 1024;

type HashJob = Box<dyn FnOnce() + Send>;

fn hash_pool() -> &'static tokio::sync::mpsc::Sender<HashJob> {
    static POOL: std::sync::OnceLock<tokio::sync::mpsc::Sender<HashJob>> =
        std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = tokio::sync::mpsc::channel::<HashJob>(HASH_QUEUE);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..HASH_THREADS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("natter-argon2-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(mut r) => r.blocking_recv(),
                        Err(_) => None,
                    };
                    match job {
                        Some(job) => job(),
                        None => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        tx
    })
}

/// Runs `f` on the hashing threads and returns its result.
async fn on_hash_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HashError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: HashJob = Box::new(move || {
        // The caller stopped waiting (its request ended): nobody wants the result.
        let _ = tx.send(f());
    });
    hash_pool()
        .send(job)
        .await
        .map_err(|_| HashError::Threads)?;
    rx.await.map_err(|_| HashError::Threads)
}

/// [`verify_password`] on the hashing threads; with no hash (an unknown user), the password is
/// checked against `decoy_hash` (made there too, the first time) and `false` returned.
pub async fn verify_password_async(password: Vec<u8>, hash: Option<String>) -> bool {
    on_hash_thread(move || match hash {
        Some(h) => verify_password(&password, &h),
        None => {
            // The work is the point: the answer is no, whatever the decoy says.
            std::hint::black_box(verify_password(&password, decoy_hash()));
            false
        }
    })
    .await
    .unwrap_or_else(|e| {
        // Nobody logs in unchecked: the login is refused, and the log says why.
        tracing::error!(error = %e, "a password could not be checked");
        false
    })
}

/// [`hash_password`] on the hashing threads.
pub async fn hash_password_async(password: String) -> Result<String, HashError> {
    on_hash_thread(move || hash_password(&password)).await?
}

#[cfg(test)]
mod tests {
    use super::*;
    use natter_types::UserId;

    #[test]
    fn a_password_verifies_only_itself() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(b"correct horse", &h));
        assert!(!verify_password(b"wrong", &h));
        assert!(!verify_password(b"x", "not a hash"));
    }

    #[test]
    fn tokens_name_their_user_and_nobody_else() {
        let dir = std::env::temp_dir().join(format!("natter-auth-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = Tokens::load(&AuthConfig::default(), &dir).unwrap();
        let account = |name: &str, pw: &str| UserRecord {
            id: UserId::new(name).unwrap(),
            password_hash: hash_password(pw).unwrap(),
            created_ms: 0,
        };
        let alice = account("alice", "a");
        let (tok, _) = t.issue(&alice).unwrap();
        assert!(looks_like_jwt(tok.as_bytes()));
        assert!(t.verify(&tok, &alice));
        assert!(!t.verify(&tok, &account("bob", "a")));
        // A new password (or a re-created alice) is a new generation: the old token is dead.
        assert!(!t.verify(&tok, &account("alice", "a")));
        // The key persists: a second load accepts the first load's tokens.
        let t2 = Tokens::load(&AuthConfig::default(), &dir).unwrap();
        assert!(t2.verify(&tok, &alice));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
