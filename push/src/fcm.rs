//! FCM HTTP v1: `POST {base}/v1/projects/{project}/messages:send` with an OAuth2 access token.
//!
//! The token comes from the service account: an RS256-signed JWT assertion posted to its
//! `token_uri` (the JWT bearer grant). It is cached until a minute before it expires, and
//! fetched again at once when FCM answers 401.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use natter_config::FcmConfig;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::{
    exchange, http_client, now_secs, read_key, Answer, KeyError, Notification, Outcome, PushError,
};

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    token_uri: String,
    #[serde(default)]
    project_id: String,
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

pub(crate) struct Fcm {
    http: reqwest::Client,
    account: ServiceAccount,
    key: EncodingKey,
    send_url: String,
    ttl: Duration,
    token: Mutex<Option<(String, Instant)>>,
}

impl Fcm {
    pub(crate) fn new(cfg: &FcmConfig, ttl: Duration) -> Result<Fcm, PushError> {
        let key_err = |source: KeyError| PushError::Key {
            key: "push.fcm.service_account_file",
            path: cfg.service_account_file.display().to_string(),
            source,
        };
        let raw = read_key("push.fcm.service_account_file", &cfg.service_account_file)?;
        let account: ServiceAccount =
            serde_json::from_slice(&raw).map_err(|e| key_err(KeyError::NotServiceAccount(e)))?;
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| key_err(KeyError::NotRsaKey(e)))?;
        let project = if cfg.project_id.is_empty() {
            account.project_id.clone()
        } else {
            cfg.project_id.clone()
        };
        if project.is_empty() {
            return Err(key_err(KeyError::NoProject));
        }
        let base = cfg.base_url.trim_end_matches('/');
        Ok(Fcm {
            http: http_client(false)?,
            account,
            key,
            send_url: format!("{base}/v1/projects/{project}/messages:send"),
            ttl,
            token: Mutex::new(None),
        })
    }

    /// The cached access token, or a new one when `fresh` or when it is about to expire.
    async fn access_token(&self, fresh: bool) -> Result<String, Outcome> {
        let mut slot = self.token.lock().await;
        if let Some((t, until)) = slot.as_ref() {
            if !fresh && Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let iat = now_secs();
        let claims = Assertion {
            iss: &self.account.client_email,
            scope: SCOPE,
            aud: &self.account.token_uri,
            iat,
            exp: iat + 3600,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.account.private_key_id.clone();
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| Outcome::Rejected(format!("cannot sign the OAuth assertion: {e}")))?;
        let req = self.http.post(&self.account.token_uri).form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ]);
        let Answer {
            status,
            after,
            body,
        } = exchange(req, "OAuth token endpoint").await?;
        if !(200..300).contains(&status) {
            // A refused grant is a configuration problem; it is retried (and counted) so that a
            // fixed clock or a restored key lets the queue drain.
            return Err(Outcome::Retry {
                after,
                reason: format!("OAuth token refused (HTTP {status}): {body}"),
            });
        }
        let (Some(token), Some(expires_in)) =
            (body["access_token"].as_str(), body["expires_in"].as_u64())
        else {
            return Err(Outcome::Retry {
                after,
                reason: format!("OAuth answer without access_token/expires_in: {body}"),
            });
        };
        let until = Instant::now() + Duration::from_secs(expires_in.saturating_sub(60));
        *slot = Some((token.to_owned(), until));
        Ok(token.to_owned())
    }

    fn message(&self, n: &Notification) -> Value {
        json!({"message": {
            "token": n.token,
            "notification": {"title": n.title, "body": n.body},
            "data": {"chat": n.chat, "id": n.msg},
            "android": {
                "collapse_key": n.collapse,
                "priority": "HIGH",
                "ttl": format!("{}s", self.ttl.as_secs()),
                "notification": {"tag": n.collapse, "notification_count": n.badge},
            },
        }})
    }

    pub(crate) async fn send(&self, n: &Notification) -> Outcome {
        let body = self.message(n);
        let mut fresh = false;
        loop {
            let token = match self.access_token(fresh).await {
                Ok(t) => t,
                Err(o) => return o,
            };
            let req = self
                .http
                .post(&self.send_url)
                .bearer_auth(token)
                .json(&body);
            let a = match exchange(req, "FCM").await {
                Ok(a) => a,
                Err(o) => return o,
            };
            if a.status == 401 && !fresh {
                // The access token was revoked or expired early: one more try with a new one.
                fresh = true;
                continue;
            }
            return classify(a.status, a.after, &a.body);
        }
    }
}

/// FCM v1 errors: `{"error": {"code", "message", "status", "details": [{"@type":
/// "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": …}, {"@type":
/// "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field", …}]}]}}`.
fn classify(status: u16, after: Option<Duration>, answer: &Value) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Sent;
    }
    let err = &answer["error"];
    let details = err["details"].as_array().cloned().unwrap_or_default();
    let code = details
        .iter()
        .find_map(|d| d["errorCode"].as_str())
        .or_else(|| err["status"].as_str())
        .unwrap_or("")
        .to_owned();
    let message = err["message"].as_str().unwrap_or("").to_owned();
    let about_token = details.iter().any(|d| {
        d["fieldViolations"]
            .as_array()
            .is_some_and(|v| v.iter().any(|f| f["field"] == "message.token"))
    }) || message.to_lowercase().contains("registration token");
    let reason = format!("FCM {status} {code}: {message}");
    match (status, code.as_str()) {
        (_, "UNREGISTERED") | (_, "SENDER_ID_MISMATCH") => Outcome::DeadToken(reason),
        (_, "INVALID_ARGUMENT") if about_token => Outcome::DeadToken(reason),
        (429, _)
        | (500..=599, _)
        | (_, "QUOTA_EXCEEDED")
        | (_, "UNAVAILABLE")
        | (_, "INTERNAL") => Outcome::Retry { after, reason },
        _ => Outcome::Rejected(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: u16, status: &str, fcm: &str, message: &str) -> Value {
        json!({"error": {"code": code, "message": message, "status": status, "details": [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm}
        ]}})
    }

    #[test]
    fn fcm_answers_are_classified_as_google_documents_them() {
        assert_eq!(
            classify(200, None, &json!({"name": "projects/p/messages/1"})),
            Outcome::Sent
        );
        assert!(matches!(
            classify(
                404,
                None,
                &err(
                    404,
                    "NOT_FOUND",
                    "UNREGISTERED",
                    "Requested entity was not found."
                )
            ),
            Outcome::DeadToken(_)
        ));
        assert!(matches!(
            classify(
                403,
                None,
                &err(
                    403,
                    "PERMISSION_DENIED",
                    "SENDER_ID_MISMATCH",
                    "SenderId mismatch"
                )
            ),
            Outcome::DeadToken(_)
        ));
        assert!(matches!(
            classify(
                400,
                None,
                &err(
                    400,
                    "INVALID_ARGUMENT",
                    "INVALID_ARGUMENT",
                    "The registration token is not a valid FCM registration token"
                )
            ),
            Outcome::DeadToken(_)
        ));
        assert!(matches!(
            classify(
                400,
                None,
                &err(
                    400,
                    "INVALID_ARGUMENT",
                    "INVALID_ARGUMENT",
                    "Message is too big"
                )
            ),
            Outcome::Rejected(_)
        ));
        assert_eq!(
            classify(
                429,
                Some(Duration::from_secs(7)),
                &err(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "quota")
            ),
            Outcome::Retry {
                after: Some(Duration::from_secs(7)),
                reason: "FCM 429 QUOTA_EXCEEDED: quota".into()
            }
        );
        assert!(matches!(
            classify(503, None, &Value::Null),
            Outcome::Retry { .. }
        ));
    }
}
