//! The HTTP API: `POST /v1/token`, `/v1/admin/users…` (bearer admin token), `/healthz`,
//! `/readyz` and `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use natter_bridge::users::{self, UserError};
use natter_bridge::Bridge;
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
        UserError::Store(_) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e),
    }
}

/// Constant-time comparison, so the admin token cannot be guessed byte by byte from timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
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

async fn token(State(s): State<AppState>, Json(req): Json<TokenRequest>) -> Response {
    match users::check(&**s.bridge.store(), &req.user, &req.password).await {
        Ok(Some(user)) => {
            let (token, expires) = s.bridge.tokens().issue(&user);
            Json(json!({"token": token, "expires": expires})).into_response()
        }
        Ok(None) => error(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "wrong user or password",
        ),
        Err(e) => user_error(e),
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
    match users::add(&**s.bridge.store(), &req.name, &req.password).await {
        Ok(id) => (StatusCode::CREATED, Json(json!({"name": id}))).into_response(),
        Err(e) => user_error(e),
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
    match users::passwd(&**s.bridge.store(), &name, &req.password).await {
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
    match users::remove(&**s.bridge.store(), &name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => user_error(e),
    }
}
