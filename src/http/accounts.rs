//! Accounts over HTTP: `POST /v1/token`, `/v1/token/refresh` and `/v1/token/revoke`, and the
//! admin API (`/v1/admin/users…`, bearer admin token).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use natter_bridge::sessions::{SessionError, SignedIn};
use natter_bridge::users::{self, UserError};
use natter_types::UserId;
use serde::Deserialize;
use serde_json::json;

use super::{header, AppState};
use crate::api_error::{ApiError, ApiJson, ApiPath};

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
pub(super) struct TokenRequest {
    user: String,
    password: String,
}

pub(super) async fn token(
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
    let signed_in = s.bridge.sign_in(&user).await?;
    Ok(Json(signed_in_body(&signed_in)))
}

/// The answer to a sign-in or a refresh: the access token and, when refresh tokens are on, the
/// next refresh token.
fn signed_in_body(s: &SignedIn) -> serde_json::Value {
    let mut body = json!({"token": s.token, "expires": s.expires});
    if let Some((refresh, until)) = &s.refresh {
        body["refresh_token"] = json!(refresh);
        body["refresh_expires"] = json!(until);
    }
    body
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> ApiError {
        match e {
            SessionError::Invalid => {
                ApiError::new(StatusCode::UNAUTHORIZED, "bad_refresh_token", e)
            }
            SessionError::Store(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e)
            }
            SessionError::Issue(_) => {
                tracing::error!(error = %crate::report(&e), "cannot issue a token");
                ApiError::internal(e)
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct RefreshRequest {
    refresh_token: String,
}

/// `POST /v1/token/refresh`: the refresh token for a new access token and the next refresh
/// token (the one presented stops working).
pub(super) async fn refresh(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let signed_in = s.bridge.refresh(&req.refresh_token).await?;
    Ok(Json(signed_in_body(&signed_in)))
}

/// `POST /v1/token/revoke`: signs the refresh token's session out. Always 204, as RFC 7009
/// answers: a token that was not valid is signed out too.
pub(super) async fn revoke(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    s.bridge.sign_out(&req.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn list_users(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&s, &headers)?;
    let list = s.bridge.store().users().await.map_err(UserError::from)?;
    Ok(Json(json!({"users": list})))
}

#[derive(Deserialize)]
pub(super) struct NewUser {
    name: String,
    password: String,
}

pub(super) async fn add_user(
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
pub(super) struct NewPassword {
    password: String,
}

pub(super) async fn set_password(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<NewPassword>,
) -> Result<StatusCode, ApiError> {
    authorize(&s, &headers)?;
    s.bridge.set_password(&name, &req.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn remove_user(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&s, &headers)?;
    s.bridge.remove_user(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::MAX_BODY;
    use axum::response::IntoResponse;
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
}
