//! Push notifications: the FCM HTTP v1 and APNs clients, the provider credentials they need
//! (an OAuth2 access token from a service account; an ES256 provider JWT), and what each
//! provider answer means for a notification: sent, try again later, the token is dead, or
//! refused for good.
//!
//! This crate sends what it is given and classifies the answer. It must never learn about MQTT,
//! chats or the store: the bridge decides who gets a notification, keeps the durable queue and
//! acts on the [`Outcome`].

mod apns;
mod fcm;

use natter_types::clock::now_secs;
use std::time::Duration;

use natter_config::PushConfig;
pub use natter_types::PushPlatform;

/// One notification for one device token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The provider's token for the device.
    pub token: String,
    /// First line: who wrote.
    pub title: String,
    /// Second line: the text, or a neutral phrase when previews are off.
    pub body: String,
    /// The app icon's badge.
    pub badge: u64,
    /// Notifications with the same key replace each other on the device (one per chat).
    pub collapse: String,
    /// The chat, as the recipient addresses it, for the app to open.
    pub chat: String,
    /// The newest message's id.
    pub msg: String,
}

/// What a provider's answer means for a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the provider.
    Sent,
    /// A passing failure (429, 5xx, network): send again later, not before `after` if the
    /// provider said so.
    Retry {
        /// The provider's `Retry-After`, if any.
        after: Option<Duration>,
        /// What happened, for logs.
        reason: String,
    },
    /// The token will never work again: forget it.
    DeadToken(String),
    /// This notification will never be accepted (too large, malformed, bad credentials).
    Rejected(String),
}

impl Outcome {
    /// The `class` label of `natter_push_total`.
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Retry { .. } => "retry",
            Outcome::DeadToken(_) => "dead_token",
            Outcome::Rejected(_) => "rejected",
        }
    }
}

/// Push could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// A key file is missing or unusable; names the config key and the file.
    #[error("config key `{key}` = {path}: {source}")]
    Key {
        /// The config key.
        key: &'static str,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// The HTTP client could not be built.
    #[error("push HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

/// Why a provider's key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// It cannot be read.
    #[error(transparent)]
    Read(#[from] std::io::Error),
    /// FCM: the file is not a service account's JSON.
    #[error("not a service account JSON: {0}")]
    NotServiceAccount(#[source] serde_json::Error),
    /// FCM: the service account's `private_key` is not an RSA key.
    #[error("`private_key` is not an RSA PEM key: {0}")]
    NotRsaKey(#[source] jsonwebtoken::errors::Error),
    /// FCM: no project named, in the file or the config.
    #[error("no `project_id` in it, and push.fcm.project_id is empty")]
    NoProject,
    /// APNs: the file is not a `.p8` key.
    #[error("not a .p8 (PKCS#8 EC P-256) key: {0}")]
    NotP8(#[source] jsonwebtoken::errors::Error),
}

/// The configured providers.
pub struct Pusher {
    fcm: Option<fcm::Fcm>,
    apns: Option<apns::Apns>,
}

impl Pusher {
    /// Reads the keys of every configured provider; `None` when push is off.
    pub fn from_config(cfg: &PushConfig) -> Result<Option<Pusher>, PushError> {
        if !cfg.enabled {
            return Ok(None);
        }
        let ttl = Duration::from_secs(cfg.ttl_secs);
        let fcm = cfg
            .fcm
            .as_ref()
            .map(|f| fcm::Fcm::new(f, ttl))
            .transpose()?;
        let apns = cfg
            .apns
            .as_ref()
            .map(|a| apns::Apns::new(a, ttl))
            .transpose()?;
        Ok(Some(Pusher { fcm, apns }))
    }

    /// Whether `platform` is configured.
    pub fn serves(&self, platform: PushPlatform) -> bool {
        match platform {
            PushPlatform::Fcm => self.fcm.is_some(),
            PushPlatform::Apns => self.apns.is_some(),
        }
    }

    /// Sends one notification and says what came of it.
    pub async fn send(&self, platform: PushPlatform, n: &Notification) -> Outcome {
        match platform {
            PushPlatform::Fcm => match &self.fcm {
                Some(f) => f.send(n).await,
                None => Outcome::Rejected("FCM is not configured".into()),
            },
            PushPlatform::Apns => match &self.apns {
                Some(a) => a.send(n).await,
                None => Outcome::Rejected("APNs is not configured".into()),
            },
        }
    }
}

/// The delay before attempt `attempt + 1`: `base` doubled per attempt up to `max`, then a
/// random point between half of that and all of it (so that clients that failed together do
/// not retry together), never less than the provider's `Retry-After`.
pub fn backoff(
    attempt: u32,
    base: Duration,
    max: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(20)).min(max);
    let jittered = ceiling.mul_f64(0.5 + rand::random::<f64>() / 2.0);
    jittered.max(retry_after.unwrap_or_default())
}

/// What a provider answered: status, `Retry-After`, JSON body (`Null` if none).
struct Answer {
    status: u16,
    after: Option<Duration>,
    body: serde_json::Value,
}

/// Sends a request to a provider; a provider out of reach is a retry, for both.
async fn exchange(req: reqwest::RequestBuilder, provider: &str) -> Result<Answer, Outcome> {
    let resp = req.send().await.map_err(|e| Outcome::Retry {
        after: None,
        reason: format!("{provider} unreachable: {e}"),
    })?;
    let status = resp.status().as_u16();
    let after = retry_after(resp.headers());
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    Ok(Answer {
        status,
        after,
        body,
    })
}

/// `Retry-After` in seconds, as both providers send it.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// One HTTP client per provider: HTTP/2 (APNs requires it; over `http://`, as test servers
/// are, with prior knowledge), bounded waits.
fn http_client(h2_prior_knowledge: bool) -> Result<reqwest::Client, PushError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .pool_idle_timeout(Duration::from_secs(600));
    if h2_prior_knowledge {
        b = b.http2_prior_knowledge();
    }
    b.build().map_err(PushError::Http)
}

fn read_key(key: &'static str, path: &std::path::Path) -> Result<Vec<u8>, PushError> {
    std::fs::read(path).map_err(|e| PushError::Key {
        key,
        path: path.display().to_string(),
        source: e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_stays_under_the_cap_and_honours_retry_after() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        for attempt in 0..30 {
            let d = backoff(attempt, base, max, None);
            let ceiling = base.saturating_mul(1 << attempt.min(20)).min(max);
            assert!(d <= ceiling && d >= ceiling / 2, "{attempt}: {d:?}");
        }
        let d = backoff(0, base, max, Some(Duration::from_secs(30)));
        assert_eq!(d, Duration::from_secs(30));
    }
}
