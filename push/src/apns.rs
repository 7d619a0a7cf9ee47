//! APNs over HTTP/2: `POST {base}/3/device/{token}` with an ES256 provider token.
//!
//! The provider token is a JWT signed with the team's .p8 key (`kid` = key id, `iss` = team id,
//! `iat`); Apple refuses one older than an hour and one renewed more often than every 20
//! minutes, so it is reused for 50 minutes, and made anew at once on `ExpiredProviderToken`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use natter_config::ApnsConfig;
use serde::Serialize;
use serde_json::json;

use crate::{
    exchange, http_client, now_secs, read_key, KeyError, Notification, Outcome, PushError,
};

/// How long one provider token is used.
const TOKEN_LIFE: Duration = Duration::from_secs(50 * 60);
/// `apns-collapse-id` may be at most this many bytes.
const COLLAPSE_MAX: usize = 64;

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

pub(crate) struct Apns {
    http: reqwest::Client,
    key: EncodingKey,
    key_id: String,
    team_id: String,
    topic: String,
    base: String,
    ttl: Duration,
    token: Mutex<Option<(String, Instant)>>,
}

impl Apns {
    pub(crate) fn new(cfg: &ApnsConfig, ttl: Duration) -> Result<Apns, PushError> {
        let pem = read_key("push.apns.key_file", &cfg.key_file)?;
        let key = EncodingKey::from_ec_pem(&pem).map_err(|e| PushError::Key {
            key: "push.apns.key_file",
            path: cfg.key_file.display().to_string(),
            source: KeyError::NotP8(e),
        })?;
        let base = cfg.base_url.trim_end_matches('/').to_owned();
        Ok(Apns {
            // Apple speaks only HTTP/2; over TLS it is negotiated, over plain HTTP (a local
            // test server) it must be assumed.
            http: http_client(base.starts_with("http://"))?,
            key,
            key_id: cfg.key_id.clone(),
            team_id: cfg.team_id.clone(),
            topic: cfg.topic.clone(),
            base,
            ttl,
            token: Mutex::new(None),
        })
    }

    fn provider_token(&self, fresh: bool) -> Result<String, Outcome> {
        let mut slot = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((t, made)) = slot.as_ref() {
            if !fresh && made.elapsed() < TOKEN_LIFE {
                return Ok(t.clone());
            }
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = Claims {
            iss: &self.team_id,
            iat: now_secs(),
        };
        let t = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| Outcome::Rejected(format!("cannot sign the APNs provider token: {e}")))?;
        *slot = Some((t.clone(), Instant::now()));
        Ok(t)
    }

    pub(crate) async fn send(&self, n: &Notification) -> Outcome {
        let body = json!({
            "aps": {
                "alert": {"title": n.title, "body": n.body},
                "badge": n.badge,
                "sound": "default",
                "thread-id": n.collapse,
            },
            "chat": n.chat,
            "id": n.msg,
        });
        let url = format!("{}/3/device/{}", self.base, n.token);
        let mut fresh = false;
        loop {
            let jwt = match self.provider_token(fresh) {
                Ok(t) => t,
                Err(o) => return o,
            };
            let req = self
                .http
                .post(&url)
                .header("authorization", format!("bearer {jwt}"))
                .header("apns-topic", &self.topic)
                .header("apns-push-type", "alert")
                .header("apns-priority", "10")
                .header("apns-collapse-id", collapse_id(&n.collapse))
                .header(
                    "apns-expiration",
                    (now_secs() + self.ttl.as_secs()).to_string(),
                )
                .json(&body);
            let a = match exchange(req, "APNs").await {
                Ok(a) => a,
                Err(o) => return o,
            };
            let reason = a.body["reason"].as_str().unwrap_or("");
            if a.status == 403 && reason == "ExpiredProviderToken" && !fresh {
                fresh = true;
                continue;
            }
            return classify(a.status, a.after, reason);
        }
    }
}

/// The chat key when it fits Apple's 64 bytes, else a stable digest of it.
fn collapse_id(key: &str) -> String {
    if key.len() <= COLLAPSE_MAX {
        return key.to_owned();
    }
    // FNV-1a: stable across builds and machines, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("c-{h:016x}")
}

/// APNs answers: status plus `{"reason": …}` (and `timestamp` with 410).
fn classify(status: u16, after: Option<Duration>, reason: &str) -> Outcome {
    let why = format!("APNs {status} {reason}");
    match (status, reason) {
        (200, _) => Outcome::Sent,
        (410, _) | (400, "BadDeviceToken") | (400, "DeviceTokenNotForTopic") => {
            Outcome::DeadToken(why)
        }
        (429, _) | (500..=599, _) => Outcome::Retry { after, reason: why },
        _ => Outcome::Rejected(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apns_answers_are_classified_as_apple_documents_them() {
        assert_eq!(classify(200, None, ""), Outcome::Sent);
        assert!(matches!(
            classify(410, None, "Unregistered"),
            Outcome::DeadToken(_)
        ));
        assert!(matches!(
            classify(400, None, "BadDeviceToken"),
            Outcome::DeadToken(_)
        ));
        assert!(matches!(
            classify(400, None, "DeviceTokenNotForTopic"),
            Outcome::DeadToken(_)
        ));
        assert!(matches!(
            classify(413, None, "PayloadTooLarge"),
            Outcome::Rejected(_)
        ));
        assert!(matches!(
            classify(403, None, "InvalidProviderToken"),
            Outcome::Rejected(_)
        ));
        assert!(matches!(
            classify(429, None, "TooManyRequests"),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(503, None, "ServiceUnavailable"),
            Outcome::Retry { .. }
        ));
    }

    #[test]
    fn long_chat_keys_collapse_to_a_short_stable_id() {
        assert_eq!(collapse_id("d:alice:bob"), "d:alice:bob");
        let long = format!("d:{}:{}", "a".repeat(60), "b".repeat(60));
        let id = collapse_id(&long);
        assert!(id.len() <= COLLAPSE_MAX);
        assert_eq!(id, collapse_id(&long));
    }
}
