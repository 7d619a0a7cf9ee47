//! `/v1/media/{id}`: signed uploads (PUT, streamed to storage) and downloads (GET, with
//! `Range`) of the local media backend.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use natter_bridge::media::TransferError;
use natter_media::MediaError;
use serde::Deserialize;
use serde_json::json;

use super::{header, AppState};
use crate::api_error::{ApiError, ApiPath, ApiQuery};

/// How long an upload may send nothing before it is dropped (a stalled or idle client).
const UPLOAD_IDLE: Duration = Duration::from_secs(30);

/// Most bytes of a refused upload read after the refusal, so that the client sees the answer.
const UPLOAD_DRAIN: usize = 16 << 20;

/// The query of a signed media URL.
#[derive(Deserialize)]
pub(super) struct Signed {
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
pub(super) async fn media_put(
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

/// The policy of every download: a file opened as a page of natter's origin runs nothing,
/// loads nothing and is a sandboxed (unique) origin, whatever its type claims.
const MEDIA_CSP: &str =
    "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'";

/// Whether a download of type `mime` is shown inline: only the passive types a chat app
/// shows (images, video, audio), never a type that can carry script or markup (SVG, anything
/// `+xml`, HTML); the rest is an attachment, so an upload never renders as a page of this
/// origin.
fn shown_inline(mime: &str) -> bool {
    let essence = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    matches!(kind, "image" | "video" | "audio")
        && !sub.is_empty()
        && !sub.contains("svg")
        && !sub.contains("xml")
        && !sub.contains("html")
}

/// `GET /v1/media/{id}?exp&sig`: the bytes, with the type they were announced as; one `Range`
/// is served as a 206.
pub(super) async fn media_get(
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
    let disposition = if shown_inline(&rec.mime) {
        "inline"
    } else {
        "attachment"
    };
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
            (header::CONTENT_SECURITY_POLICY, MEDIA_CSP.to_owned()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_passive_media_is_shown_inline() {
        for inline in [
            "image/png",
            "IMAGE/JPEG",
            "video/mp4",
            "audio/ogg; codecs=opus",
        ] {
            assert!(shown_inline(inline), "{inline}");
        }
        for attached in [
            "image/svg+xml",
            "Image/SVG+XML; charset=utf-8",
            "text/html",
            "application/xhtml+xml",
            "text/xml",
            "image/x-weird+xml",
            "application/pdf",
            "image/",
            "image",
            "",
        ] {
            assert!(!shown_inline(attached), "{attached}");
        }
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
