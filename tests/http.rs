//! The HTTP listener's own bounds: a connection that never finishes its request head is closed
//! after `http.header_timeout_secs`, an idle keep-alive one after `http.idle_timeout_secs`, at
//! most `http.max_connections` are open (more wait), and natter raises its open files limit.
//! Every refusal, axum's own included, is natter's one JSON error shape. Real sockets against a
//! real natter process.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, ADMIN_TOKEN, WAIT};
use serde_json::Value;

/// What a slowloris client sends of a request before it stalls.
const HALF_REQUESTS: [&[u8]; 3] = [
    b"",
    b"GET /hea",
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
];

/// A connection that sends `start` of a request and then nothing.
fn stall(port: u16, start: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(start).unwrap();
    s
}

/// Waits (up to `limit`) for natter to close `s`; whether it did. Any bytes natter sends first
/// are read and ignored.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            // A reset is a close too.
            Err(_) => return true,
        }
    }
}

/// `GET /healthz` on a fresh connection; the status.
fn healthz(s: &Server) -> u16 {
    common::http("GET", &s.http_url("/healthz"), None, None).0
}

/// One request on an open keep-alive connection; the status line. Reads the whole answer
/// (`/healthz` answers `ok`, with a Content-Length).
fn request_on(s: &mut TcpStream, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = s.read(&mut buf).expect("an answer on the open connection");
        assert!(n > 0, "the connection closed before answering");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().unwrap())
                })
                .expect("a Content-Length");
            if body.len() >= length {
                return head.lines().next().unwrap_or_default().to_owned();
            }
        }
    }
}

#[test]
fn half_sent_requests_are_closed_after_the_header_timeout_and_healthz_answers_meanwhile() {
    let s = Server::start_with_http("header_timeout_secs = 2\n", "");
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..60)
        .map(|i| stall(s.http, HALF_REQUESTS[i % HALF_REQUESTS.len()]))
        .collect();
    assert_eq!(healthz(&s), 200, "/healthz answers beside stalled requests");
    for (i, c) in slow.iter_mut().enumerate() {
        assert!(
            closed_within(c, Duration::from_secs(2) + WAIT),
            "stalled connection {i} ({:?}) still open",
            String::from_utf8_lossy(HALF_REQUESTS[i % HALF_REQUESTS.len()])
        );
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "closed by the header timeout, not before"
    );
    assert_eq!(healthz(&s), 200);
}

#[test]
fn an_idle_keep_alive_connection_outlives_the_header_timeout_and_closes_at_the_idle_timeout() {
    let s = Server::start_with_http("header_timeout_secs = 1\nidle_timeout_secs = 6\n", "");
    let mut c = TcpStream::connect(("127.0.0.1", s.http)).unwrap();
    assert_eq!(request_on(&mut c, "/healthz"), "HTTP/1.1 200 OK");
    // Three header timeouts of quiet between two requests: the header timeout counts from a
    // request's first byte, not from the last answer.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(request_on(&mut c, "/healthz"), "HTTP/1.1 200 OK");
    let quiet_from = Instant::now();
    assert!(
        closed_within(&mut c, Duration::from_secs(6) + WAIT),
        "an idle connection is closed"
    );
    assert!(
        quiet_from.elapsed() >= Duration::from_secs(3),
        "closed by the idle timeout, not the header timeout"
    );
}

#[test]
fn more_connections_than_the_cap_wait_and_healthz_answers_once_slow_ones_time_out() {
    let s = Server::start_with_http("header_timeout_secs = 1\nmax_connections = 8\n", "");
    let started = Instant::now();
    // Twenty stalled connections against a cap of eight: eight are served (and time out), the
    // rest wait in the listen backlog for their turn.
    let mut slow: Vec<TcpStream> = (0..20).map(|_| stall(s.http, b"GET /hea")).collect();
    // /healthz queues behind them and is answered once the header timeout frees slots.
    assert_eq!(healthz(&s), 200);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "at the cap, a new connection waits for a slot"
    );
    for (i, c) in slow.iter_mut().enumerate() {
        assert!(
            closed_within(c, Duration::from_secs(10) + WAIT),
            "stalled connection {i} still open"
        );
    }
    assert!(s.log().contains("new ones wait"), "the cap is logged");
    assert_eq!(healthz(&s), 200);
}

#[cfg(target_os = "linux")]
#[test]
fn natter_raises_its_open_files_limit_to_the_hard_limit() {
    let s = Server::start_with_soft_nofile(256);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers.len(), 2, "{line}");
    assert_eq!(
        numbers[0], numbers[1],
        "soft limit raised to the hard one: {line}"
    );
    assert_ne!(numbers[0], "256", "{line}");
    assert!(s.log().contains("open files limit"), "{}", s.log());
}

/// One request with `body` (sent as `content_type`) or none; the status, the `Allow` header and
/// the body as JSON (`Null` if it is not JSON).
fn raw(
    s: &Server,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<&[u8]>,
) -> (u16, Option<String>, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .build()
        .into();
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(s.http_url(path))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", content_type);
    let mut resp = match body {
        Some(b) => agent.run(req.body(b.to_vec()).unwrap()),
        None => agent.run(req.body(()).unwrap()),
    }
    .unwrap();
    let allow = resp
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.body_mut().read_to_string().unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (resp.status().as_u16(), allow, json)
}

/// Asserts natter's error shape, `{"error": {"code", "message"}}` and nothing else, with
/// `status` and `code`.
fn assert_refused(got: (u16, Option<String>, Value), status: u16, code: &str) {
    let (got_status, _, body) = got;
    assert_eq!(got_status, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "a message for people: {body}"
    );
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
    assert_eq!(
        body["error"].as_object().map(|o| o.len()),
        Some(2),
        "{body}"
    );
}

#[test]
fn a_malformed_json_body_is_refused_with_the_json_error_shape() {
    let s = Server::start();
    let json = "application/json";
    for (method, path) in [
        ("POST", "/v1/token"),
        ("POST", "/v1/admin/users"),
        ("PUT", "/v1/admin/users/alice/password"),
    ] {
        let refused = raw(&s, method, path, json, Some(b"{\"user\": "));
        assert_refused(refused, 400, "bad_json");
        // JSON, but not the object the route takes.
        let refused = raw(&s, method, path, json, Some(b"{\"who\": 1}"));
        assert_refused(refused, 400, "bad_request");
        let refused = raw(&s, method, path, "text/plain", Some(b"{}"));
        assert_refused(refused, 415, "unsupported_type");
    }
    let big = format!("{{\"user\": \"{}\"}}", "a".repeat(32 * 1024));
    let refused = raw(&s, "POST", "/v1/token", json, Some(big.as_bytes()));
    assert_refused(refused, 413, "too_large");
    // The API still works after each refusal.
    s.add_user("alice", "pw");
    assert!(!s.token("alice", "pw").is_empty());
}

#[test]
fn unknown_routes_wrong_methods_and_bad_queries_get_the_json_error_shape() {
    let s = Server::start();
    assert_refused(raw(&s, "GET", "/nowhere", "", None), 404, "not_found");
    assert_refused(raw(&s, "GET", "/v1/admin", "", None), 404, "not_found");
    let refused = raw(&s, "DELETE", "/v1/token", "", None);
    assert_eq!(
        refused.1.as_deref(),
        Some("POST"),
        "405 says what is allowed"
    );
    assert_refused(refused, 405, "method_not_allowed");
    let refused = raw(&s, "POST", "/v1/media/01jq0000000000000000000000", "", None);
    assert_refused(refused, 405, "method_not_allowed");
    // A signed media URL without its signature.
    let refused = raw(&s, "GET", "/v1/media/01jq0000000000000000000000", "", None);
    assert_refused(refused, 400, "bad_request");
    // natter's own refusals have the same shape.
    let (status, body) = common::http("GET", &s.http_url("/v1/admin/users"), None, None);
    assert_refused((status, None, body), 401, "unauthorized");
    let (status, _, body) = raw(&s, "GET", "/v1/admin/users", "", None);
    assert_eq!(status, 200, "{body}");
}
