//! CORS: which web pages of other origins may call the API and the local media URLs.
//!
//! natter's API authenticates with bearer tokens and signed URLs, never cookies, so no
//! credentials are allowed across origins and a page can only act with what it holds.

use std::time::Duration;

use axum::http::{header, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The layer for `http.cors_origins` (validated at config load): `["*"]` is any origin, a
/// list is those origins exactly; an empty list is no layer, so other origins get no CORS
/// headers and a preflight is refused as any `OPTIONS` is.
pub(super) fn layer(origins: &[String]) -> Option<CorsLayer> {
    let allow = match origins {
        [] => return None,
        [any] if any == "*" => AllowOrigin::any(),
        list => AllowOrigin::list(
            list.iter()
                .filter_map(|o| HeaderValue::from_str(&o.to_ascii_lowercase()).ok()),
        ),
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::RANGE,
                header::IF_NONE_MATCH,
            ])
            // What a page may read of a media download (sizes, ranges) beyond the safe list.
            .expose_headers([
                header::CONTENT_LENGTH,
                header::CONTENT_RANGE,
                header::ACCEPT_RANGES,
                header::CONTENT_DISPOSITION,
                header::ETAG,
            ])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}
