//! What a browser needs of natter: MQTT over WebSocket opened the way browsers open it (a list
//! of subprotocols, or none), an answer instead of a closed socket when it is refused, an
//! optional allowlist of page origins, and CORS for pages of other origins.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{Server, WAIT};
use serde_json::Value;

/// Sends one raw HTTP/1.1 request to `port` (it ends the connection) and returns the status
/// and the response's head (lower-cased header lines) and body. A WebSocket upgrade that
/// succeeds leaves the socket open: only the head is read then.
fn raw(port: u16, request: &str) -> (u16, Vec<String>, String) {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    sock.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "no answer from natter ({e}); got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
        // A 101 never ends; anything else is closed by `Connection: close` or read in full.
        if got.starts_with(b"HTTP/1.1 101") && got.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let headers = lines.map(str::to_ascii_lowercase).collect();
    (status, headers, body.to_owned())
}

/// The value of header `name` in `headers` (lower-cased), if present.
fn value<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| {
        h.split_once(':')
            .filter(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim())
    })
}

/// A WebSocket upgrade of `/mqtt` with `extra` header lines.
fn upgrade(port: u16, extra: &str) -> (u16, Vec<String>, String) {
    raw(
        port,
        &format!(
            "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        ),
    )
}

#[test]
fn a_browser_offering_a_list_of_subprotocols_gets_mqtt_and_others_get_a_clear_400() {
    let s = Server::start();
    // What `new WebSocket(url, ['mqtt', 'mqttv3.1'])` sends.
    let (status, headers, _) = upgrade(s.ws, "Sec-WebSocket-Protocol: mqtt, mqttv3.1\r\n");
    assert_eq!(status, 101);
    assert_eq!(value(&headers, "sec-websocket-protocol"), Some("mqtt"));
    // The order is the client's preference.
    let (status, headers, _) = upgrade(s.ws, "Sec-WebSocket-Protocol: mqttv3.1,mqtt\r\n");
    assert_eq!(status, 101);
    assert_eq!(value(&headers, "sec-websocket-protocol"), Some("mqttv3.1"));
    // Sent as two header lines.
    let (status, headers, _) = upgrade(
        s.ws,
        "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: mqtt\r\n",
    );
    assert_eq!(status, 101);
    assert_eq!(value(&headers, "sec-websocket-protocol"), Some("mqtt"));
    // `new WebSocket(url)`: no subprotocol asked, none chosen.
    let (status, headers, _) = upgrade(s.ws, "");
    assert_eq!(status, 101);
    assert_eq!(value(&headers, "sec-websocket-protocol"), None);
    // A list without MQTT is refused with an answer that says why, not a dropped socket.
    let (status, _, body) = upgrade(s.ws, "Sec-WebSocket-Protocol: chat, superchat\r\n");
    assert_eq!(status, 400);
    assert!(body.contains("mqtt"), "{body}");
    // A refused handshake is the client's business: anyone can make one per attempt, so it
    // costs no warning in natter's log (nor does the harness's own port probe).
    assert!(!s.log().contains("accept error"), "{}", s.log());
}

#[test]
fn pages_of_origins_off_the_websocket_allowlist_are_refused_and_other_clients_are_not() {
    let s = Server::start_with("[mqtt]\nws_origins = [\"https://chat.example.com\"]\n");
    let mqtt = "Sec-WebSocket-Protocol: mqtt\r\n";
    let (status, _, body) = upgrade(s.ws, &format!("{mqtt}Origin: https://evil.example\r\n"));
    assert_eq!(status, 403, "{body}");
    let (status, _, _) = upgrade(s.ws, &format!("{mqtt}Origin: https://chat.example.com\r\n"));
    assert_eq!(status, 101);
    // A phone app or a bot sends no Origin at all.
    let (status, _, _) = upgrade(s.ws, mqtt);
    assert_eq!(status, 101);
}

/// A CORS preflight for `method` on `path` from `origin`.
fn preflight(s: &Server, path: &str, origin: &str, method: &str) -> (u16, Vec<String>) {
    let (status, headers, _) = raw(
        s.http,
        &format!(
            "OPTIONS {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Origin: {origin}\r\nAccess-Control-Request-Method: {method}\r\n\
             Access-Control-Request-Headers: content-type, authorization\r\n\r\n"
        ),
    );
    (status, headers)
}

/// `POST /v1/token` for bob from a page of `origin`.
fn token_from(s: &Server, origin: &str) -> (u16, Vec<String>, String) {
    let body = r#"{"user":"bob","password":"pw"}"#;
    raw(
        s.http,
        &format!(
            "POST /v1/token HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Origin: {origin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn a_page_of_an_allowed_origin_gets_a_token_and_uploads_across_origins_and_others_cannot() {
    let s = Server::start_with_http("cors_origins = [\"https://chat.example.com\"]", "");
    s.add_user("bob", "pw");
    let page = "https://chat.example.com";
    let (status, headers) = preflight(&s, "/v1/token", page, "POST");
    assert_eq!(status, 200);
    assert_eq!(value(&headers, "access-control-allow-origin"), Some(page));
    let methods = value(&headers, "access-control-allow-methods").unwrap_or("");
    assert!(methods.contains("post"), "{methods}");
    let allowed = value(&headers, "access-control-allow-headers").unwrap_or("");
    assert!(
        allowed.contains("content-type") && allowed.contains("authorization"),
        "{allowed}"
    );
    // Uploads are a PUT to the media URL.
    let (status, headers) = preflight(&s, "/v1/media/x", page, "PUT");
    assert_eq!(status, 200);
    assert_eq!(value(&headers, "access-control-allow-origin"), Some(page));

    let (status, headers, body) = token_from(&s, page);
    assert_eq!(status, 200, "{body}");
    assert_eq!(value(&headers, "access-control-allow-origin"), Some(page));
    let token: Value = serde_json::from_str(&body).unwrap();
    assert!(token["token"].as_str().is_some_and(|t| !t.is_empty()));

    // Another site's page: the browser sees no permission and hands its script nothing.
    let (_, headers) = preflight(&s, "/v1/token", "https://evil.example", "POST");
    assert_eq!(value(&headers, "access-control-allow-origin"), None);
    let (_, headers, _) = token_from(&s, "https://evil.example");
    assert_eq!(value(&headers, "access-control-allow-origin"), None);
}

#[test]
fn without_cors_origins_no_page_of_another_origin_is_let_in() {
    let s = Server::with_users(&["bob"]);
    let (status, headers) = preflight(&s, "/v1/token", "https://chat.example.com", "POST");
    assert_eq!(status, 405);
    assert_eq!(value(&headers, "access-control-allow-origin"), None);
    let (status, headers, _) = token_from(&s, "https://chat.example.com");
    assert_eq!(
        status, 200,
        "a same-origin page or a non-browser still gets its token"
    );
    assert_eq!(value(&headers, "access-control-allow-origin"), None);
}

#[test]
fn any_origin_may_call_when_the_operator_says_star() {
    let s = Server::start_with_http("cors_origins = [\"*\"]", "");
    let (status, headers) = preflight(&s, "/v1/token", "https://anything.example", "POST");
    assert_eq!(status, 200);
    assert_eq!(value(&headers, "access-control-allow-origin"), Some("*"));
}
