//! The HTTP API's one error shape: every refusal, from a handler or from axum itself (a body
//! that is not JSON, a missing query parameter, an unknown route, a wrong method, a body over
//! the limit), answers `{"error": {"code": …, "message": …}}` with its status.
//!
//! Handlers extract through [`ApiJson`], [`ApiPath`] and [`ApiQuery`], whose rejections are
//! [`ApiError`]s; the router's fallbacks ([`not_found`], [`method_not_allowed`]) answer routes
//! and methods that do not exist.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A refusal: the HTTP status, a stable machine-readable `code`, and a message for people.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// A refusal with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl ToString) -> ApiError {
        ApiError {
            status,
            code,
            message: message.to_string(),
        }
    }

    /// A failure of natter's own (500 `internal`): the request was fine, natter was not.
    pub fn internal(message: impl ToString) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

/// The code of a refused body by its status: too large and not JSON are told apart from a
/// body that is JSON but not the expected one.
fn body_code(status: StatusCode, otherwise: &'static str) -> &'static str {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_type",
        _ => otherwise,
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        let (status, code) = match &r {
            JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "bad_json"),
            // JSON, but a field is missing or of the wrong type (axum says 422): a bad request,
            // as an invalid field value is.
            JsonRejection::JsonDataError(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            _ => (r.status(), body_code(r.status(), "bad_request")),
        };
        ApiError::new(status, code, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        ApiError::new(
            r.status(),
            body_code(r.status(), "bad_request"),
            r.body_text(),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::new(r.status(), "bad_request", r.body_text())
    }
}

/// `axum::Json`, refusing with an [`ApiError`]; answers as `axum::Json` does.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Path`, refusing with an [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query`, refusing with an [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// The router's fallback: no route has this path.
pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {method} {}", uri.path()),
    )
}

/// The fallback of every route for a method it does not have (axum adds the `Allow` header).
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
