//! Local stand-ins for Google's and Apple's push services, speaking their protocols: an OAuth2
//! token endpoint that verifies the RS256 JWT assertion, the FCM HTTP v1 send endpoint that
//! checks the bearer token and the message JSON, and an HTTP/2 APNs endpoint that verifies the
//! ES256 provider token and the `apns-*` headers. Their error bodies are the real ones.
//! Answers can be scripted per device token.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

pub const PROJECT: &str = "natter-test";
pub const CLIENT_EMAIL: &str = "push@natter-test.iam.gserviceaccount.com";
pub const KEY_ID: &str = "KEY1234567";
pub const TEAM_ID: &str = "TEAM123456";
pub const TOPIC: &str = "com.example.natter";

/// A scripted answer: status, JSON body, `Retry-After` seconds.
#[derive(Clone)]
pub struct Answer(pub u16, pub Value, pub Option<u64>);

/// One request a fake provider accepted or refused.
#[derive(Clone, Debug)]
pub struct Seen {
    pub token: String,
    pub status: u16,
    pub body: Value,
    pub headers: HashMap<String, String>,
}

#[derive(Default)]
pub struct Book {
    /// Per device token: answers to give, in order, before the normal success.
    pub script: HashMap<String, VecDeque<Answer>>,
    /// Per device token: an answer given every time.
    pub always: HashMap<String, Answer>,
    pub seen: Vec<Seen>,
    /// FCM: access tokens issued and still valid; OAuth exchanges made.
    pub access_tokens: HashSet<String>,
    pub oauth_calls: usize,
    /// APNs: provider tokens seen; those issued before this Unix second are "expired".
    pub jwts: HashSet<String>,
    pub expire_iat_before: u64,
}

/// A running fake provider.
#[derive(Clone)]
pub struct Provider {
    pub port: u16,
    pub book: Arc<Mutex<Book>>,
}

impl Provider {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn script(&self, token: &str, answers: Vec<Answer>) {
        self.book
            .lock()
            .unwrap()
            .script
            .insert(token.into(), answers.into());
    }

    pub fn always(&self, token: &str, answer: Answer) {
        self.book
            .lock()
            .unwrap()
            .always
            .insert(token.into(), answer);
    }

    /// Requests for `token`, oldest first.
    pub fn seen(&self, token: &str) -> Vec<Seen> {
        let b = self.book.lock().unwrap();
        b.seen
            .iter()
            .filter(|s| s.token == token)
            .cloned()
            .collect()
    }

    /// Waits until `n` requests for `token` came, then returns them.
    pub async fn wait_for(&self, token: &str, n: usize) -> Vec<Seen> {
        let deadline = std::time::Instant::now() + super::WAIT;
        loop {
            let s = self.seen(token);
            if s.len() >= n {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{n} pushes to {token} expected, {} came",
                s.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    fn answer(&self, token: &str) -> Option<Answer> {
        let mut b = self.book.lock().unwrap();
        if let Some(a) = b.script.get_mut(token).and_then(VecDeque::pop_front) {
            return Some(a);
        }
        b.always.get(token).cloned()
    }

    fn record(&self, token: &str, status: u16, body: Value, headers: &HeaderMap) {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        self.book.lock().unwrap().seen.push(Seen {
            token: token.into(),
            status,
            body,
            headers,
        });
    }
}

fn reply(a: Answer) -> Response {
    let mut r = (StatusCode::from_u16(a.0).unwrap(), axum::Json(a.1)).into_response();
    if let Some(s) = a.2 {
        r.headers_mut()
            .insert("retry-after", s.to_string().parse().unwrap());
    }
    r
}

async fn serve(app: Router) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    port
}

/// An RSA service-account key, made with openssl; returns (private PEM, public PEM).
fn rsa_pair(dir: &Path) -> (String, String) {
    let key = dir.join("sa-key.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl genpkey");
    let out = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    (
        std::fs::read_to_string(&key).unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[derive(Clone)]
struct Google {
    p: Provider,
    public: Arc<DecodingKey>,
    token_uri: String,
}

/// Starts the fake Google (OAuth + FCM) and writes the service-account JSON to
/// `dir/sa.json`.
pub async fn google(dir: &Path) -> Provider {
    let (private, public) = rsa_pair(dir);
    let book = Arc::new(Mutex::new(Book::default()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let p = Provider { port, book };
    let token_uri = format!("http://127.0.0.1:{port}/token");
    let sa = json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "k1",
        "private_key": private,
        "client_email": CLIENT_EMAIL,
        "token_uri": token_uri,
    });
    std::fs::write(dir.join("sa.json"), sa.to_string()).unwrap();
    let g = Google {
        p: p.clone(),
        public: Arc::new(DecodingKey::from_rsa_pem(public.as_bytes()).unwrap()),
        token_uri,
    };
    let app = Router::new()
        .route("/token", post(oauth))
        .fallback(fcm_send)
        .with_state(g);
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    p
}

async fn oauth(State(g): State<Google>, body: String) -> Response {
    let form: HashMap<String, String> = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), urldecode(v)))
        .collect();
    let bad = |d: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant", "error_description": d})),
        )
            .into_response()
    };
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return bad("Invalid grant_type.");
    }
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[&g.token_uri]);
    v.set_issuer(&[CLIENT_EMAIL]);
    v.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let Some(assertion) = form.get("assertion") else {
        return bad("Missing assertion.");
    };
    let claims = match jsonwebtoken::decode::<Value>(assertion, &g.public, &v) {
        Ok(t) => t.claims,
        Err(_) => return bad("Invalid JWT Signature."),
    };
    if claims["scope"] != "https://www.googleapis.com/auth/firebase.messaging" {
        return bad("Invalid OAuth scope or ID token audience provided.");
    }
    let mut b = g.p.book.lock().unwrap();
    b.oauth_calls += 1;
    let token = format!("ya29.test-{}", b.oauth_calls);
    b.access_tokens.insert(token.clone());
    axum::Json(json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}))
        .into_response()
}

fn urldecode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn google_error(code: u16, status: &str, message: &str, fcm: Option<&str>) -> Value {
    let mut details = vec![];
    if let Some(f) = fcm {
        details.push(
            json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": f}),
        );
    }
    json!({"error": {"code": code, "message": message, "status": status, "details": details}})
}

/// FCM's `UNREGISTERED` answer, as Google sends it.
pub fn fcm_unregistered() -> Answer {
    Answer(
        404,
        google_error(
            404,
            "NOT_FOUND",
            "Requested entity was not found.",
            Some("UNREGISTERED"),
        ),
        None,
    )
}

/// FCM's overload answer with `Retry-After`.
pub fn fcm_unavailable(retry_after: u64) -> Answer {
    Answer(
        503,
        google_error(
            503,
            "UNAVAILABLE",
            "The service is currently unavailable.",
            Some("UNAVAILABLE"),
        ),
        Some(retry_after),
    )
}

async fn fcm_send(
    State(g): State<Google>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let expected = format!("/v1/projects/{PROJECT}/messages:send");
    if uri.path() != expected {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let token = msg["message"]["token"].as_str().unwrap_or("").to_owned();
    if !g.p.book.lock().unwrap().access_tokens.contains(bearer) {
        let a = Answer(401, google_error(401, "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", None), None);
        g.p.record(&token, 401, msg, &headers);
        return reply(a);
    }
    let m = &msg["message"];
    if token.is_empty()
        || !m["notification"]["title"].is_string()
        || !m["android"]["collapse_key"].is_string()
    {
        g.p.record(&token, 400, msg.clone(), &headers);
        return reply(Answer(
            400,
            google_error(
                400,
                "INVALID_ARGUMENT",
                "Invalid JSON payload received.",
                Some("INVALID_ARGUMENT"),
            ),
            None,
        ));
    }
    let a = g.p.answer(&token).unwrap_or(Answer(
        200,
        json!({"name": format!("projects/{PROJECT}/messages/1")}),
        None,
    ));
    g.p.record(&token, a.0, msg, &headers);
    reply(a)
}

/// Revokes every access token issued so far (FCM answers 401 until a new one is fetched).
pub fn revoke_access_tokens(p: &Provider) {
    p.book.lock().unwrap().access_tokens.clear();
}

#[derive(Clone)]
struct Apple {
    p: Provider,
    public: Arc<DecodingKey>,
}

/// Starts the fake APNs (HTTP/2 only) and writes the .p8 key to `dir/apns.p8`.
pub async fn apple(dir: &Path) -> Provider {
    let pair = rcgen::KeyPair::generate().unwrap(); // ECDSA P-256, PKCS#8 PEM like a .p8
    std::fs::write(dir.join("apns.p8"), pair.serialize_pem()).unwrap();
    let public = DecodingKey::from_ec_pem(pair.public_key_pem().as_bytes()).unwrap();
    let book = Arc::new(Mutex::new(Book::default()));
    let a = Apple {
        p: Provider {
            port: 0,
            book: book.clone(),
        },
        public: Arc::new(public),
    };
    let app = Router::new()
        .route("/3/device/{token}", post(apns_send))
        .with_state(a);
    let port = serve(app).await;
    Provider { port, book }
}

fn apns_reason(status: u16, reason: &str) -> Answer {
    let mut body = json!({"reason": reason});
    if status == 410 {
        body["timestamp"] = json!(1_700_000_000_000u64);
    }
    Answer(status, body, None)
}

/// APNs answers as Apple documents them.
pub fn apns(status: u16, reason: &str) -> Answer {
    apns_reason(status, reason)
}

async fn apns_send(
    State(a): State<Apple>,
    UrlPath(token): UrlPath<String>,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let refuse = |status: u16, reason: &str| {
        a.p.record(&token, status, payload.clone(), &headers);
        reply(apns_reason(status, reason))
    };
    if version != Version::HTTP_2 {
        return refuse(400, "BadRequest (HTTP/2 only)");
    }
    let jwt = h("authorization")
        .strip_prefix("bearer ")
        .unwrap_or("")
        .to_owned();
    let header = match jsonwebtoken::decode_header(&jwt) {
        Ok(hd) => hd,
        Err(_) => return refuse(403, "MissingProviderToken"),
    };
    let mut v = Validation::new(Algorithm::ES256);
    v.set_issuer(&[TEAM_ID]);
    v.set_required_spec_claims(&["iss"]);
    v.validate_exp = false;
    let claims = match jsonwebtoken::decode::<Value>(&jwt, &a.public, &v) {
        Ok(t) if header.kid.as_deref() == Some(KEY_ID) => t.claims,
        _ => return refuse(403, "InvalidProviderToken"),
    };
    let iat = claims["iat"].as_u64().unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if iat + 3600 < now || iat < a.p.book.lock().unwrap().expire_iat_before {
        return refuse(403, "ExpiredProviderToken");
    }
    a.p.book.lock().unwrap().jwts.insert(jwt);
    if h("apns-topic") != TOPIC {
        return refuse(400, "DeviceTokenNotForTopic");
    }
    if h("apns-push-type") != "alert" || h("apns-priority") != "10" {
        return refuse(400, "InvalidPushType");
    }
    let collapse = h("apns-collapse-id");
    if collapse.is_empty() || collapse.len() > 64 {
        return refuse(400, "BadCollapseId");
    }
    if h("apns-expiration").parse::<u64>().is_err() {
        return refuse(400, "BadExpirationDate");
    }
    if body.len() > 4096 {
        return refuse(413, "PayloadTooLarge");
    }
    if !payload["aps"]["alert"]["title"].is_string() {
        return refuse(400, "PayloadEmpty");
    }
    let ans = a.p.answer(&token).unwrap_or(Answer(200, Value::Null, None));
    a.p.record(&token, ans.0, payload, &headers);
    if ans.0 == 200 {
        // APNs answers success with an empty body and an `apns-id`.
        return (
            StatusCode::OK,
            [("apns-id", "5E2BA5A7-0000-0000-0000-000000000001")],
        )
            .into_response();
    }
    reply(ans)
}

/// Makes APNs call every provider token issued before now "expired".
pub fn expire_provider_tokens(p: &Provider) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    p.book.lock().unwrap().expire_iat_before = now;
}

/// The `[push]` config for both fakes.
pub fn config(dir: &Path, google: &Provider, apple: &Provider) -> String {
    format!(
        "[push]\nenabled = true\ngrace_secs = 1\nretry_base_ms = 200\nretry_max_secs = 2\nmax_attempts = 3\n\
         [push.fcm]\nservice_account_file = {sa:?}\nbase_url = \"{g}\"\n\
         [push.apns]\nkey_file = {p8:?}\nkey_id = \"{KEY_ID}\"\nteam_id = \"{TEAM_ID}\"\ntopic = \"{TOPIC}\"\nbase_url = \"{a}\"\n",
        sa = dir.join("sa.json"),
        p8 = dir.join("apns.p8"),
        g = google.url(),
        a = apple.url(),
    )
}
