//! The HTTP API: `POST /v1/token`, `/v1/admin/users…` (bearer admin token), `/healthz`,
//! `/readyz`, `/metrics` (Prometheus text) and `/v1/media/{id}` (signed upload and download
//! URLs of the local media backend), served by natter's own accept loop with header and idle
//! timeouts and a cap on connections ([`serve`]); the web client at `/` (its own module, `web`).
//! Pages of the origins in `http.cors_origins` may call the API from a browser.

mod accounts;
mod conn;
mod cors;
mod media;
mod web;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use natter_bridge::Bridge;

use crate::api_error::{self, ApiError};

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
    let web = web::router(bridge.config());
    let cors = cors::layer(&bridge.config().http.cors_origins);
    let state = AppState {
        bridge,
        admin_token: admin_token.into(),
        metrics,
    };
    let routes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/v1/token", post(accounts::token))
        .route("/v1/token/refresh", post(accounts::refresh))
        .route("/v1/token/revoke", post(accounts::revoke))
        .route(
            "/v1/admin/users",
            get(accounts::list_users).post(accounts::add_user),
        )
        .route("/v1/admin/users/{name}", delete(accounts::remove_user))
        .route(
            "/v1/admin/users/{name}/password",
            put(accounts::set_password),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // Uploads stream to storage with their own bound: the size announced and signed.
        .merge(
            Router::new()
                .route(
                    "/v1/media/{id}",
                    put(media::media_put).get(media::media_get),
                )
                .layer(DefaultBodyLimit::disable()),
        )
        .merge(web)
        // After every route: it is set on the routes there are.
        .method_not_allowed_fallback(api_error::method_not_allowed)
        .fallback(api_error::not_found)
        .with_state(state);
    match cors {
        Some(cors) => routes.layer(cors),
        None => routes,
    }
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

/// A header's value, if present and text.
pub(super) fn header(headers: &HeaderMap, name: axum::http::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub use conn::{serve, ConnLimits};
