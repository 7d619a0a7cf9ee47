//! The HTTP API: `POST /v1/token`, `/v1/admin/users…` (bearer admin token), `/healthz`,
//! `/readyz`, `/metrics` (Prometheus text) and `/v1/media/{id}` (signed upload and download
//! URLs of the local media backend), served by natter's own accept loop with header and idle
//! timeouts and a cap on connections ([`serve`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use futures::StreamExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use natter_bridge::media::TransferError;
use natter_bridge::users::{self, UserError};
use natter_bridge::Bridge;
use natter_media::MediaError;
use natter_types::UserId;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::api_error::{self, ApiError, ApiJson, ApiPath, ApiQuery};

#[derive(Clone)]
struct AppState {
    bridge: Arc<Bridge>,
    admin_token: Arc<str>,
    metrics: PrometheusHandle,
}

/// Largest request body accepted (every body here is a small JSON object).
const MAX_BODY: usize = 16 * 1024;

/// The API's routes. Every refusal, axum's included, is an [`ApiError`]: unknown routes and
/// methods answer through the fallbacks, bad bodies, paths and queries through the extractors.
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
        // After every route: it is set on the routes there are.
        .method_not_allowed_fallback(api_error::method_not_allowed)
        .fallback(api_error::not_found)
        .with_state(state)
}

/// Ready when the store answers and, where presence is shared, Redis does: a load balancer
/// sends no clients to a node that would refuse their messages.
async fn readyz(State(s): State<AppState>) -> Response {
    match s.bridge.ready().await {
        Ok(()) => "ready".into_response(),
        Err(why) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why).into_response()
        }
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

impl From<UserError> for ApiError {
    fn from(e: UserError) -> ApiError {
        match e {
            UserError::Name(_) | UserError::Password => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e)
            }
            UserError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "exists", e),
            UserError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e),
            UserError::Store(_) | UserError::Groups { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e)
            }
            // Nothing was stored: the account does not exist (or kept its old password).
            UserError::Hash(_) => {
                tracing::error!(error = %crate::report(&e), "user command failed");
                ApiError::internal(e)
            }
        }
    }
}

/// A token for `user`'s account and when it expires (Unix seconds).
fn issue(s: &AppState, user: &natter_store::UserRecord) -> Result<(String, u64), ApiError> {
    s.bridge.tokens().issue(user).map_err(|e| {
        tracing::error!(error = %crate::report(&e), "cannot issue a token");
        ApiError::internal(e)
    })
}

/// Constant-time comparison, so the admin token cannot be guessed byte by byte from timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A header's value, if present and text.
fn header(headers: &HeaderMap, name: axum::http::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Refuses a request that does not carry the admin token (no header is no token).
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = header(headers, axum::http::header::AUTHORIZATION)
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if same(given.as_bytes(), state.admin_token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "admin token required",
        ))
    }
}

fn bad_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "bad_credentials",
        "wrong user or password",
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
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = UserId::new(&req.user).map_err(|_| bad_credentials())?;
    let checked = s
        .bridge
        .check_credentials(&user, req.password.as_bytes(), Some(remote.ip()))
        .await
        .map_err(UserError::from)?;
    let user = checked.ok_or_else(bad_credentials)?;
    let (token, expires) = issue(&s, &user)?;
    Ok(Json(json!({"token": token, "expires": expires})))
}

async fn list_users(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&s, &headers)?;
    let list = s.bridge.store().users().await.map_err(UserError::from)?;
    Ok(Json(json!({"users": list})))
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    password: String,
}

async fn add_user(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    authorize(&s, &headers)?;
    let id = users::add(&**s.bridge.store(), &req.name, &req.password).await?;
    // The new account's first token comes with it (as Synapse's admin registration does), so
    // a bot or device can be provisioned in one call without its password being checked again.
    let rec = s
        .bridge
        .store()
        .user(&id)
        .await
        .map_err(UserError::from)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "not_found",
                "the user was removed meanwhile",
            )
        })?;
    let (token, expires) = issue(&s, &rec)?;
    let body = json!({"name": id, "token": token, "expires": expires});
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
}

async fn set_password(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<NewPassword>,
) -> Result<StatusCode, ApiError> {
    authorize(&s, &headers)?;
    s.bridge.set_password(&name, &req.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_user(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&s, &headers)?;
    s.bridge.remove_user(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How long an upload may send nothing before it is dropped (a stalled or idle client).
const UPLOAD_IDLE: Duration = Duration::from_secs(30);

/// Most bytes of a refused upload read after the refusal, so that the client sees the answer.
const UPLOAD_DRAIN: usize = 16 << 20;

/// The query of a signed media URL.
#[derive(Deserialize)]
struct Signed {
    exp: u64,
    sig: String,
}

fn transfer_error(e: TransferError) -> ApiError {
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
            MediaError::Deadline => (StatusCode::REQUEST_TIMEOUT, "url_expired"),
            MediaError::Full => (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
            MediaError::Storage(_) | MediaError::Config(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
        },
        TransferError::Finished => (StatusCode::CONFLICT, "complete"),
        TransferError::Running => (StatusCode::CONFLICT, "in_progress"),
        TransferError::TooMany { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_uploads"),
        TransferError::Expired => (StatusCode::GONE, "expired"),
        TransferError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    metrics::counter!("natter_media_refused_total", "code" => code).increment(1);
    ApiError::new(status, code, e)
}

/// `PUT /v1/media/{id}?exp&sig`: the bytes of an upload, exactly as announced.
async fn media_put(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<Signed>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let content_type = header(&headers, axum::http::header::CONTENT_TYPE);
    // None without one (a chunked body): hyper answers a malformed one 400 before this runs.
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
            // Read (and drop) what the client is still sending, up to a bound and never past
            // the URL's expiry, so that it gets to read the refusal instead of a reset
            // connection. A body cut off at the expiry is not read further.
            let until = natter_media::url_deadline(q.exp);
            let mut drained = 0;
            while drained < UPLOAD_DRAIN {
                match tokio::time::timeout_at(until, stream.next()).await {
                    Ok(Some(Ok(bytes))) => drained += bytes.len(),
                    _ => break,
                }
            }
            transfer_error(e).into_response()
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
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<Signed>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use axum::http::header;
    let asked = header(&headers, axum::http::header::RANGE);
    let rec = s
        .bridge
        .check_download(&id, q.exp, &q.sig)
        .await
        .map_err(transfer_error)?;
    let Ok(range) = byte_range(asked, rec.size) else {
        let refused = ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            format!("the file has {} bytes", rec.size),
        );
        return Ok((
            [(header::CONTENT_RANGE, format!("bytes */{}", rec.size))],
            refused,
        )
            .into_response());
    };
    let bytes = s
        .bridge
        .download(&rec, range.clone())
        .await
        .map_err(transfer_error)?;
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
    Ok(resp)
}

/// Bounds on HTTP connections (`[http]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// From a request's first byte (or the connection's start) to the end of its headers.
    pub header_timeout: Duration,
    /// No bytes moved, between requests or during one.
    pub idle_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl ConnLimits {
    /// The `[http]` bounds of `config`.
    pub fn from_config(config: &natter_config::HttpConfig) -> ConnLimits {
        ConnLimits {
            header_timeout: Duration::from_secs(config.header_timeout_secs),
            idle_timeout: Duration::from_secs(config.idle_timeout_secs),
            max_connections: config.max_connections,
        }
    }
}

/// How often, at most, natter says that new connections wait for a free one.
const FULL_WARN_EVERY: Duration = Duration::from_secs(60);

/// Serves `app` over HTTP/1.1 on `listener` for as long as the future runs (natter stops it by
/// exiting, as it did with `axum::serve`: `/readyz` answers 503 during shutdown).
///
/// At most `max_connections` connections are open: at the cap natter stops accepting, so
/// new connections wait in the kernel's listen backlog, holding no file descriptor of natter's,
/// until one closes. A connection that has not sent a whole request head within
/// `header_timeout` of its first byte (or of its start), or that moves no bytes for
/// `idle_timeout`, is closed; a request body that keeps arriving is never cut by either (an
/// upload is bounded by its URL's expiry instead).
pub async fn serve(listener: TcpListener, app: Router, limits: ConnLimits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = http1::Builder::new();
    // natter times headers itself (below): hyper's header timeout also runs while a keep-alive
    // connection waits for its next request, so it would close idle connections at the header
    // timeout.
    builder.header_read_timeout(None);
    let service = TowerToHyperService::new(app);
    let mut last_full_warning: Option<Instant> = None;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if last_full_warning.is_none_or(|t| t.elapsed() >= FULL_WARN_EVERY) {
                    last_full_warning = Some(Instant::now());
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "HTTP connections at http.max_connections; new ones wait until one closes"
                    );
                }
                match slots.clone().acquire_owned().await {
                    Ok(slot) => slot,
                    // Never closed; were it, there would be nothing left to serve.
                    Err(_) => return,
                }
            }
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionRefused
                ) {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        let watch = Arc::new(Watch::new());
        let conn = builder.serve_connection(
            TokioIo::new(Watched {
                inner: stream,
                watch: watch.clone(),
            }),
            Tracked {
                inner: service.clone(),
                watch: watch.clone(),
                peer,
            },
        );
        tokio::spawn(async move {
            let _slot = slot;
            tokio::pin!(conn);
            loop {
                let deadline = watch.deadline(&limits);
                tokio::select! {
                    done = conn.as_mut() => {
                        if let Err(e) = done {
                            tracing::debug!(error = %e, "HTTP connection ended");
                        }
                        return;
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        // Bytes that moved meanwhile pushed the deadline on.
                        if watch.deadline(&limits) <= Instant::now() {
                            tracing::debug!("HTTP connection closed: header or idle timeout");
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// What one connection has been doing, for its timeouts.
struct Watch(Mutex<WatchState>);

struct WatchState {
    /// Requests whose handler is running.
    requests: usize,
    /// When the request head being read now began (its first byte, or the connection's start).
    head_since: Option<Instant>,
    /// When bytes last moved (or a handler started or ended).
    last: Instant,
}

impl Watch {
    fn new() -> Watch {
        let now = Instant::now();
        Watch(Mutex::new(WatchState {
            requests: 0,
            head_since: Some(now),
            last: now,
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the connection is to be closed unless something happens first.
    fn deadline(&self, limits: &ConnLimits) -> Instant {
        let s = self.state();
        match s.head_since {
            Some(t) if s.requests == 0 => t + limits.header_timeout,
            _ => s.last + limits.idle_timeout,
        }
    }

    fn read(&self) {
        let mut s = self.state();
        let now = Instant::now();
        s.last = now;
        if s.requests == 0 && s.head_since.is_none() {
            s.head_since = Some(now);
        }
    }

    fn wrote(&self) {
        self.state().last = Instant::now();
    }

    /// A request's head is complete and its handler starts.
    fn request(self: &Arc<Self>) -> RequestGuard {
        let mut s = self.state();
        s.requests += 1;
        s.head_since = None;
        s.last = Instant::now();
        RequestGuard(self.clone())
    }
}

/// A running handler; its end counts as activity.
struct RequestGuard(Arc<Watch>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.requests = s.requests.saturating_sub(1);
        s.last = Instant::now();
    }
}

/// A TCP stream that tells its [`Watch`] when bytes move.
struct Watched {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.watch.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.watch.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.watch.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The router, telling the connection's [`Watch`] while a handler runs.
#[derive(Clone)]
struct Tracked {
    inner: TowerToHyperService<Router>,
    watch: Arc<Watch>,
    /// The client's address, for handlers that count per address (`POST /v1/token`).
    peer: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Self::Error>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let running = self.watch.request();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let answered = answer.await;
            drop(running);
            answered
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use natter_bridge::auth::HashError;

    #[tokio::test]
    async fn a_password_that_cannot_be_hashed_is_a_500_in_the_json_shape() {
        let resp = ApiError::from(UserError::Hash(HashError::Threads)).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), MAX_BODY)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            json!({"error": {"code": "internal", "message": "the password could not be hashed"}})
        );
    }

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
