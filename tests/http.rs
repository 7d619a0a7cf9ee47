//! The HTTP listener's own bounds: a connection that never finishes its request head is closed
//! after `http.header_timeout_secs`, an idle keep-alive one after `http.idle_timeout_secs`, at
//! most `http.max_connections` are open (more wait), and natter raises its open files limit.
//! Real sockets against a real natter process.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, WAIT};

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
