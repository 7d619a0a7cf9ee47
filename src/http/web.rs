//! The web client: `GET /` (the page), `GET /web/{file}` (its modules, styles and the vendored
//! MQTT.js) and `GET /v1/client-config` (the MQTT-over-WebSocket URL the page connects to).
//!
//! The files under `web/` are compiled into the binary with `include_dir`, which embeds the same
//! bytes in debug and release builds (rust-embed reads them from disk in debug builds, so a test
//! would not run what ships) and needs nothing beyond its macro; `cargo run --release -- serve`
//! serves the client on a machine without Node or the source tree.
//!
//! Every answer carries `X-Content-Type-Options: nosniff` and an `ETag` (revalidated each time,
//! `Cache-Control: no-cache`, so an upgraded server is never hidden behind a stale module). The
//! page carries a strict Content-Security-Policy: scripts and styles only from this origin,
//! connections only to this origin, the WebSocket URL and the media storage, no frames.
//! Must never: put request data into a header without checking it (the `Host` header only
//! chooses a host name of letters, digits, dots, dashes or a bracketed IPv6 address).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use include_dir::{include_dir, Dir};
use natter_config::{Config, MediaBackend};
use serde_json::json;

use crate::api_error::{ApiError, ApiPath};

/// The client's files, as they were when natter was built.
static WEB: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/web");

/// Where the page's WebSocket URL comes from.
#[derive(Debug, Clone)]
enum WsUrl {
    /// `web.ws_url`, as the operator wrote it.
    Fixed(String),
    /// The page's own host with this scheme, port and path `/mqtt`; `fallback` is the host
    /// when the request names none that can be used.
    Derived {
        scheme: &'static str,
        port: u16,
        fallback: String,
    },
    /// No WebSocket listener is on: the page says so.
    Off,
}

#[derive(Clone)]
struct WebState {
    ws: Arc<WsUrl>,
    /// Origins besides this one that uploads and downloads go to (CSP `connect-src`, `img-src`).
    media: Arc<str>,
    /// Each file's ETag, by path.
    etags: Arc<HashMap<String, String>>,
}

/// The web client's routes, or none with `web.enabled = false`. The state is its own, so the
/// router fits into any other.
pub fn router<S: Clone + Send + Sync + 'static>(config: &Config) -> Router<S> {
    if !config.web.enabled {
        return Router::new();
    }
    let mut etags = HashMap::new();
    collect_etags(&WEB, &mut etags);
    let state = WebState {
        ws: Arc::new(ws_source(config)),
        media: media_origins(config).into(),
        etags: Arc::new(etags),
    };
    Router::new()
        .route("/", get(index))
        .route("/web/{*path}", get(asset))
        .route("/v1/client-config", get(client_config))
        .with_state(state)
}

fn collect_etags(dir: &Dir<'static>, out: &mut HashMap<String, String>) {
    for f in dir.files() {
        let mut h = DefaultHasher::new();
        h.write(f.contents());
        let key = f.path().to_string_lossy().into_owned();
        out.insert(
            key,
            format!("\"{:016x}-{:x}\"", h.finish(), f.contents().len()),
        );
    }
    for d in dir.dirs() {
        collect_etags(d, out);
    }
}

/// How the WebSocket URL is found: `web.ws_url`, else plain WebSocket, else secure WebSocket.
fn ws_source(config: &Config) -> WsUrl {
    if !config.web.ws_url.is_empty() {
        return WsUrl::Fixed(config.web.ws_url.clone());
    }
    let (scheme, addr) = match (config.mqtt.ws, config.mqtt.tls.as_ref().and_then(|t| t.wss)) {
        (Some(ws), _) => ("ws", ws),
        (None, Some(wss)) => ("wss", wss),
        (None, None) => return WsUrl::Off,
    };
    let ip = addr.ip();
    let fallback = match ip {
        _ if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        std::net::IpAddr::V4(v4) => v4.to_string(),
    };
    WsUrl::Derived {
        scheme,
        port: addr.port(),
        fallback,
    }
}

/// The origins of the media storage, for the page's CSP: the local backend's public URL (or
/// `http://{http.listen}`), or the S3 endpoint (AWS when none is set).
fn media_origins(config: &Config) -> String {
    let m = &config.media;
    let url = match (m.backend, m.s3.as_ref()) {
        (MediaBackend::S3, Some(s3)) if !s3.endpoint.is_empty() => s3.endpoint.clone(),
        (MediaBackend::S3, _) => return "https://*.amazonaws.com".into(),
        _ if !m.public_url.is_empty() => m.public_url.clone(),
        _ => format!("http://{}", config.http.listen),
    };
    origin_of(&url).unwrap_or_default()
}

/// `scheme://host[:port]` of an http(s) URL, if it is one that can stand in a CSP.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let safe = !authority.is_empty()
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '*'));
    safe.then(|| format!("{scheme}://{authority}"))
}

/// The host part of a `Host` header, if it is a plain name or address (no user info, no odd
/// characters): a bracketed IPv6 address keeps its brackets.
fn host_of(value: &str) -> Option<&str> {
    let host = if value.starts_with('[') {
        let end = value.find(']')?;
        let v6 = value.get(1..end)?;
        if v6.is_empty()
            || !v6
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return None;
        }
        value.get(..=end)?
    } else {
        let host = value.split(':').next()?;
        if value.matches(':').count() > 1 {
            return None;
        }
        host
    };
    let plain = host.starts_with('[')
        || (!host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
    plain.then_some(host)
}

/// The WebSocket URL for a page loaded with these request headers.
fn ws_url(ws: &WsUrl, headers: &HeaderMap) -> Option<String> {
    match ws {
        WsUrl::Fixed(url) => Some(url.clone()),
        WsUrl::Off => None,
        WsUrl::Derived {
            scheme,
            port,
            fallback,
        } => {
            let host = super::header(headers, header::HOST)
                .and_then(host_of)
                .unwrap_or(fallback);
            Some(format!("{scheme}://{host}:{port}/mqtt"))
        }
    }
}

/// The page's policy: nothing runs or loads that is not this origin's, the WebSocket's or the
/// media storage's. `worker-src blob:` is for MQTT.js, which runs its keepalive timer in a
/// worker made from a blob (timers of a hidden tab are throttled to once a minute, which would
/// let the connection time out); only a script of this origin can make one.
fn page_csp(ws: Option<&str>, media: &str) -> String {
    let ws = ws.unwrap_or("");
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; worker-src blob:; \
         img-src 'self' blob: data: {media}; media-src 'self' blob: {media}; \
         connect-src 'self' {ws} {media}; manifest-src 'self'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'"
    )
}

/// The Content-Type of a file, by its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "text/plain; charset=utf-8",
    }
}

/// A file's answer: 304 when the browser holds this version already.
fn file_response(path: &str, etags: &HashMap<String, String>, headers: &HeaderMap) -> Response {
    let Some(file) = WEB.get_file(path) else {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such file").into_response();
    };
    let etag = etags.get(path).map(String::as_str).unwrap_or("");
    let fresh = super::header(headers, header::IF_NONE_MATCH)
        .is_some_and(|v| !etag.is_empty() && v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, content_type(path))],
            file.contents(),
        )
            .into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

async fn index(State(s): State<WebState>, headers: HeaderMap) -> Response {
    let mut resp = file_response("index.html", &s.etags, &headers);
    let csp = page_csp(ws_url(&s.ws, &headers).as_deref(), &s.media);
    match HeaderValue::from_str(&csp) {
        Ok(v) => {
            let h = resp.headers_mut();
            h.insert(header::CONTENT_SECURITY_POLICY, v);
            h.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            resp
        }
        // Every part was checked when it was made; a page without its policy is not served.
        Err(e) => {
            tracing::error!(error = %e, "the web client's CSP is not a header value");
            ApiError::internal("the page's security policy could not be made").into_response()
        }
    }
}

async fn asset(
    State(s): State<WebState>,
    ApiPath(path): ApiPath<String>,
    headers: HeaderMap,
) -> Response {
    // index.html is only served at `/`, with its policy.
    if path == "index.html" {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such file").into_response();
    }
    file_response(&path, &s.etags, &headers)
}

/// `{"ws_url": "ws://host:8083/mqtt"}` (null when no WebSocket listener is on).
async fn client_config(State(s): State<WebState>, headers: HeaderMap) -> Response {
    let body = Json(json!({"ws_url": ws_url(&s.ws, &headers)}));
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_hosts_are_taken_from_the_host_header() {
        assert_eq!(host_of("chat.example.com:8080"), Some("chat.example.com"));
        assert_eq!(host_of("127.0.0.1"), Some("127.0.0.1"));
        assert_eq!(host_of("[::1]:8080"), Some("[::1]"));
        for bad in [
            "", "a b", "x;y", "a'b", "[zz]", "[::1", "u@h", "a:b:c", "h/x",
        ] {
            assert_eq!(host_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_url_follows_the_page_host_and_the_listener_port() {
        let ws = WsUrl::Derived {
            scheme: "ws",
            port: 8083,
            fallback: "127.0.0.1".into(),
        };
        let mut h = HeaderMap::new();
        assert_eq!(ws_url(&ws, &h).unwrap(), "ws://127.0.0.1:8083/mqtt");
        h.insert(header::HOST, HeaderValue::from_static("chat.local:8080"));
        assert_eq!(ws_url(&ws, &h).unwrap(), "ws://chat.local:8083/mqtt");
        h.insert(
            header::HOST,
            HeaderValue::from_static("evil'; script-src *"),
        );
        assert_eq!(ws_url(&ws, &h).unwrap(), "ws://127.0.0.1:8083/mqtt");
    }

    #[test]
    fn media_origins_stop_at_the_authority() {
        assert_eq!(
            origin_of("https://m.example.com/v1/x?y").as_deref(),
            Some("https://m.example.com")
        );
        assert_eq!(origin_of("ftp://x"), None);
        assert_eq!(origin_of("http://a b/"), None);
    }

    #[test]
    fn every_file_the_page_names_is_embedded() {
        let index = WEB
            .get_file("index.html")
            .and_then(|f| f.contents_utf8())
            .unwrap();
        for part in index.split("\"/web/").skip(1) {
            let path = part.split('"').next().unwrap();
            assert!(WEB.get_file(path).is_some(), "{path} is not embedded");
        }
    }
}
