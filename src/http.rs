//! The HTTP API: `POST /v1/token`, `/v1/admin/users…` (bearer admin token), `/healthz`,
//! `/readyz`, `/metrics` (Prometheus text) and `/v1/media/{id}` (signed upload and download
//! URLs of the local media backend).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use futures::StreamExt;
use metrics_exporter_prometheus::PrometheusHandle;
use natter_bridge::media::TransferError;
use natter_bridge::users::{self, UserError};
use natter_bridge::Bridge;
use natter_media::MediaError;
use natter_types::UserId;
use serde::Deserialize;
use serde_json::json;

#[derive(Clone)]
struct AppState {
    bridge: Arc<Bridge>,
    admin_token: Arc<str>,
    metrics: PrometheusHandle,
}

/// Largest request body accepted (every body here is a small JSON object).
const MAX_BODY: usize = 16 * 1024;

/// The API's routes.
pub fn router(bridge: Arc<Bridge>, admin_token: String, metrics: PrometheusHandle) -> Router {
    let state = AppState {
        bridge,
        admin_token: admin_token.into(),
        metrics,
    };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/v1/token", post(token))
        .route("/v1/admin/users", get(list_users).post(add_user))
        .route("/v1/admin/users/{name}", delete(remove_user))
        .route("/v1/admin/users/{name}/password", put(set_password))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // Uploads stream to storage with their own bound: the size announced and signed.
        .merge(
            Router::new()
                .route("/v1/media/{id}", put(media_put).get(media_get))
                .layer(DefaultBodyLimit::disable()),
        )
        .with_state(state)
}

/// Ready when the store answers and, where presence is shared, Redis does: a load balancer
/// sends no clients to a node that would refuse their messages.
async fn readyz(State(s): State<AppState>) -> Response {
    match s.bridge.ready().await {
        Ok(()) => "ready".into_response(),
        Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why),
    }
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

fn error(status: StatusCode, code: &str, message: impl ToString) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.to_string()}})),
    )
        .into_response()
}

fn user_error(e: UserError) -> Response {
    match e {
        UserError::Name(_) | UserError::Password => {
            error(StatusCode::BAD_REQUEST, "bad_request", e)
        }
        UserError::Exists(_) => error(StatusCode::CONFLICT, "exists", e),
        UserError::NotFound(_) => error(StatusCode::NOT_FOUND, "not_found", e),
        UserError::Store(_) | UserError::Groups { .. } | UserError::Hash => {
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e)
        }
    }
}

/// Constant-time comparison, so the admin token cannot be guessed byte by byte from timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A header's value, if present and text.
fn header(headers: &HeaderMap, name: axum::http::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let given = header(headers, axum::http::header::AUTHORIZATION)
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    same(given.as_bytes(), state.admin_token.as_bytes())
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "admin token required",
    )
}

#[derive(Deserialize)]
struct TokenRequest {
    user: String,
    password: String,
}

async fn token(
    State(s): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Json(req): Json<TokenRequest>,
) -> Response {
    let Ok(user) = UserId::new(&req.user) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "wrong user or password",
        );
    };
    let checked = s
        .bridge
        .check_credentials(&user, req.password.as_bytes(), Some(remote.ip()))
        .await;
    match checked {
        Ok(Some(user)) => {
            let (token, expires) = s.bridge.tokens().issue(&user);
            Json(json!({"token": token, "expires": expires})).into_response()
        }
        Ok(None) => error(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "wrong user or password",
        ),
        Err(e) => user_error(e.into()),
    }
}

async fn list_users(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    match s.bridge.store().users().await {
        Ok(list) => Json(json!({"users": list})).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e),
    }
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    password: String,
}

async fn add_user(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<NewUser>,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let id = match users::add(&**s.bridge.store(), &req.name, &req.password).await {
        Ok(id) => id,
        Err(e) => return user_error(e),
    };
    // The new account's first token comes with it (as Synapse's admin registration does), so
    // a bot or device can be provisioned in one call without its password being checked again.
    match s.bridge.store().user(&id).await {
        Ok(Some(rec)) => {
            let (token, expires) = s.bridge.tokens().issue(&rec);
            let body = json!({"name": id, "token": token, "expires": expires});
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Ok(None) => error(
            StatusCode::CONFLICT,
            "not_found",
            "the user was removed meanwhile",
        ),
        Err(e) => user_error(e.into()),
    }
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
}

async fn set_password(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(req): Json<NewPassword>,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    match s.bridge.set_password(&name, &req.password).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => user_error(e),
    }
}

async fn remove_user(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    match s.bridge.remove_user(&name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => user_error(e),
    }
}

/// How long an upload may send nothing before it is dropped (a stalled or idle client).
const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// Most bytes of a refused upload read after the refusal, so that the client sees the answer.
const UPLOAD_DRAIN: usize = 16 << 20;

/// The query of a signed media URL.
#[derive(Deserialize)]
struct Signed {
    exp: u64,
    sig: String,
}

fn transfer_error(e: TransferError) -> Response {
    let (status, code) = match &e {
        TransferError::Media(m) => match m {
            MediaError::TooLarge { .. } | MediaError::Oversize { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
            }
            MediaError::SizeMismatch { .. } | MediaError::Empty => {
                (StatusCode::BAD_REQUEST, "size_mismatch")
            }
            MediaError::HashMismatch => (StatusCode::BAD_REQUEST, "hash_mismatch"),
            MediaError::Body(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            MediaError::MimeRefused(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_type"),
            MediaError::BadSignature => (StatusCode::FORBIDDEN, "bad_signature"),
            MediaError::UrlExpired => (StatusCode::FORBIDDEN, "url_expired"),
            MediaError::NotUploaded => (StatusCode::NOT_FOUND, "not_found"),
            MediaError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            MediaError::Full => (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
            MediaError::Storage(_) | MediaError::Config(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
        },
        TransferError::Finished => (StatusCode::CONFLICT, "complete"),
        TransferError::Running => (StatusCode::CONFLICT, "in_progress"),
        TransferError::Expired => (StatusCode::GONE, "expired"),
        TransferError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    metrics::counter!("natter_media_refused_total", "code" => code).increment(1);
    error(status, code, e)
}

/// `PUT /v1/media/{id}?exp&sig`: the bytes of an upload, exactly as announced.
async fn media_put(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Signed>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let content_type = header(&headers, axum::http::header::CONTENT_TYPE);
    let content_length =
        header(&headers, axum::http::header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    // Each read waits at most UPLOAD_IDLE: a client that stops sending frees its slot.
    let mut stream = Box::pin(
        futures::stream::unfold(body.into_data_stream(), |mut data| async move {
            match tokio::time::timeout(UPLOAD_IDLE, data.next()).await {
                Ok(Some(Ok(bytes))) => Some((Ok(bytes), data)),
                Ok(Some(Err(e))) => Some((Err(e.to_string()), data)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(format!("nothing received for {} s", UPLOAD_IDLE.as_secs())),
                    data,
                )),
            }
        })
        // Once ended it stays ended: the drain below may ask again.
        .fuse(),
    );
    match s
        .bridge
        .receive_upload(
            &id,
            q.exp,
            &q.sig,
            content_type,
            content_length,
            &mut stream,
        )
        .await
    {
        Ok(rec) => {
            metrics::counter!("natter_media_uploads_total").increment(1);
            metrics::counter!("natter_media_upload_bytes_total").increment(rec.size);
            Json(json!({"media": rec.id, "size": rec.size})).into_response()
        }
        Err(e) => {
            // Read (and drop) what the client is still sending, up to a bound, so that it gets
            // to read the refusal instead of a reset connection.
            let mut drained = 0;
            while drained < UPLOAD_DRAIN {
                match stream.next().await {
                    Some(Ok(bytes)) => drained += bytes.len(),
                    _ => break,
                }
            }
            transfer_error(e)
        }
    }
}

/// What a `Range` header asks of a file of `size` bytes: `Ok(None)` the whole file (no header,
/// or one natter does not serve in parts, such as several ranges), `Err` a range outside it.
fn byte_range(header: Option<&str>, size: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (first, last) = spec.split_once('-').ok_or(())?;
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        // The last N bytes.
        let n: u64 = last.parse().map_err(|_| ())?;
        size.saturating_sub(n)..size
    } else {
        let a: u64 = first.parse().map_err(|_| ())?;
        let b = if last.is_empty() {
            size.saturating_sub(1)
        } else {
            last.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        if b < a {
            return Err(());
        }
        a..b + 1
    };
    if range.start >= size || range.is_empty() {
        return Err(());
    }
    Ok(Some(range))
}

/// `GET /v1/media/{id}?exp&sig`: the bytes, with the type they were announced as; one `Range`
/// is served as a 206.
async fn media_get(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Signed>,
    headers: HeaderMap,
) -> Response {
    use axum::http::header;
    let asked = header(&headers, axum::http::header::RANGE);
    let rec = match s.bridge.check_download(&id, q.exp, &q.sig).await {
        Ok(rec) => rec,
        Err(e) => return transfer_error(e),
    };
    let Ok(range) = byte_range(asked, rec.size) else {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{}", rec.size))],
        )
            .into_response();
    };
    let bytes = match s.bridge.download(&rec, range.clone()).await {
        Ok(b) => b,
        Err(e) => return transfer_error(e),
    };
    // Only what a chat app shows inline is shown inline; the rest downloads, so an upload can
    // never run as a page of this origin.
    let inline = ["image/", "video/", "audio/"]
        .iter()
        .any(|p| rec.mime.starts_with(p));
    let disposition = if inline { "inline" } else { "attachment" };
    let (status, length) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, rec.size),
    };
    let mut resp = (
        status,
        [
            (header::CONTENT_TYPE, rec.mime.clone()),
            (header::CONTENT_LENGTH, length.to_string()),
            (header::CONTENT_DISPOSITION, disposition.to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CACHE_CONTROL, "private, max-age=3600".to_owned()),
            (header::ACCEPT_RANGES, "bytes".to_owned()),
        ],
        Body::from_stream(bytes),
    )
        .into_response();
    if let Some(r) = range {
        if let Ok(v) = format!("bytes {}-{}/{}", r.start, r.end - 1, rec.size).parse() {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn a_range_header_picks_bytes_inside_the_file() {
        assert_eq!(byte_range(None, 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-9"), 100), Ok(Some(0..10)));
        assert_eq!(byte_range(Some("bytes=90-"), 100), Ok(Some(90..100)));
        assert_eq!(byte_range(Some("bytes=-5"), 100), Ok(Some(95..100)));
        assert_eq!(byte_range(Some("bytes=-500"), 100), Ok(Some(0..100)));
        assert_eq!(byte_range(Some("bytes=50-5000"), 100), Ok(Some(50..100)));
        assert_eq!(byte_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(byte_range(Some("items=0-1"), 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=9-3"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=x-3"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=-0"), 100), Err(()));
    }
}
