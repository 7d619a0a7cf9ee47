//! Media: `media.upload`, the PUT of the bytes, a Send that carries them, `media.url` and the
//! GET, on the local disk backend (natter's signed URLs) and on a real S3-compatible server
//! (presigned URLs); every refusal a client or an attacker can run into; retention.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::s3::S3;
use common::{metric, Mqtt, Server, WAIT};
use rumqttc::v5::mqttbytes::v5::PubAckReason;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .build()
        .into()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A PNG-ish payload of `n` bytes.
fn picture(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

/// PUTs `body` to `url` as `mime` with a Content-Length; the status and JSON body (if any).
fn put(url: &str, mime: &str, body: &[u8]) -> (u16, Value) {
    let mut resp = agent()
        .put(url)
        .header("content-type", mime)
        .send(body)
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        resp.body_mut().read_json::<Value>().unwrap_or(Value::Null),
    )
}

/// PUTs `body` chunked, without saying its length first.
fn put_chunked(url: &str, mime: &str, body: &[u8]) -> (u16, Value) {
    let mut reader = body;
    let mut resp = agent()
        .put(url)
        .header("content-type", mime)
        .send(ureq::SendBody::from_reader(&mut reader))
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        resp.body_mut().read_json::<Value>().unwrap_or(Value::Null),
    )
}

/// GETs `url`: the status, the content type and the bytes.
fn get(url: &str) -> (u16, String, Vec<u8>) {
    let mut resp = agent().get(url).call().unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (
        status,
        ct,
        resp.body_mut().read_to_vec().unwrap_or_default(),
    )
}

/// Asks for an upload of `bytes` as `mime`; returns the answer (checked ok).
async fn announce(c: &mut Mqtt, mime: &str, bytes: &[u8]) -> Value {
    let a = c
        .request(
            "media.upload",
            json!({"mime": mime, "size": bytes.len(), "sha256": sha256(bytes)}),
        )
        .await;
    assert_eq!(a["ok"], true, "{a}");
    assert_eq!(a["method"], "PUT");
    assert!(a["expires"].as_u64().unwrap() > 0);
    a
}

/// Announces and PUTs `bytes`; returns the media id.
async fn upload(c: &mut Mqtt, mime: &str, bytes: &[u8]) -> String {
    let a = announce(c, mime, bytes).await;
    let (status, body) = put(a["url"].as_str().unwrap(), mime, bytes);
    assert_eq!(status, 200, "{body}");
    a["media"].as_str().unwrap().to_owned()
}

/// The download URL `c` gets for `id`, or the error answer.
async fn media_url(c: &mut Mqtt, id: &str) -> Result<String, Value> {
    let a = c.request("media.url", json!({"media": id})).await;
    if a["ok"] == true {
        Ok(a["url"].as_str().unwrap().to_owned())
    } else {
        Err(a["error"].clone())
    }
}

/// Sends a message carrying `id` and returns the PUBACK reason (and the error, if refused).
/// Sending upload `id` in `chat` is refused because its bytes never arrived (nothing was kept).
async fn refused_as_not_uploaded(c: &mut Mqtt, chat: &str, id: &str, cid: &str) {
    let (r, err) = send_media(c, chat, id, cid).await;
    assert_eq!(r, PubAckReason::PayloadFormatInvalid);
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("not uploaded"), "{err}");
}

async fn send_media(c: &mut Mqtt, chat: &str, id: &str, cid: &str) -> (PubAckReason, Value) {
    let payload = json!({"cid": cid, "type": "image", "body": "look",
                         "media": {"id": id, "name": "cat.png"}});
    let r = c.publish(&format!("m/{chat}"), payload.to_string()).await;
    if r == PubAckReason::Success {
        return (r, Value::Null);
    }
    let topic = format!("d/{}/{}", c.user, c.device);
    (r, c.recv(&topic).await)
}

#[tokio::test]
async fn bob_downloads_the_photo_alice_sent_him_and_carol_cannot() {
    let s = Server::with_users(&["alice", "bob", "carol"]);
    let mut alice = s.online("alice", "phone").await;
    let mut bob = s.online("bob", "phone").await;
    let mut carol = s.online("carol", "phone").await;
    let photo = picture(300_000);
    let id = upload(&mut alice, "image/png", &photo).await;

    // Nobody but Alice may fetch it before it is sent.
    assert_eq!(
        media_url(&mut bob, &id).await.unwrap_err()["code"],
        "not_authorized"
    );
    let (r, _) = send_media(&mut alice, "u/bob", &id, "m1").await;
    assert_eq!(r, PubAckReason::Success);

    let m = bob.recv("u/bob/m").await;
    assert_eq!(m["type"], "image");
    assert_eq!(
        m["media"],
        json!({"id": id, "mime": "image/png", "size": photo.len(),
               "sha256": sha256(&photo), "name": "cat.png"})
    );
    let url = media_url(&mut bob, &id).await.unwrap();
    let (status, ct, bytes) = get(&url);
    assert_eq!((status, ct.as_str()), (200, "image/png"));
    assert!(bytes == photo, "Bob gets the very bytes Alice uploaded");
    // A player seeking, or a download resuming, gets just the part it asks for.
    let ranged = |range: &str| {
        let mut resp = agent().get(&url).header("range", range).call().unwrap();
        let cr = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let status = resp.status().as_u16();
        (
            status,
            cr,
            resp.body_mut().read_to_vec().unwrap_or_default(),
        )
    };
    let (status, cr, part) = ranged("bytes=1000-1999");
    assert_eq!((status, cr.as_str()), (206, "bytes 1000-1999/300000"));
    assert!(part == photo[1000..2000]);
    let (status, _, tail) = ranged("bytes=-10");
    assert!(status == 206 && tail == photo[photo.len() - 10..]);
    let (status, cr, _) = ranged("bytes=300000-");
    assert_eq!((status, cr.as_str()), (416, "bytes */300000"));

    // Carol is in no chat the photo was sent in, and a made-up id says the same.
    let err = media_url(&mut carol, &id).await.unwrap_err();
    assert_eq!(err["code"], "not_authorized");
    let unknown = media_url(&mut carol, "01jd0000000000000000000000")
        .await
        .unwrap_err();
    assert_eq!(unknown["code"], "not_authorized");
    assert_eq!(
        media_url(&mut carol, "../../etc/passwd").await.unwrap_err()["code"],
        "bad_request"
    );
}

#[tokio::test]
async fn tampered_and_expired_urls_are_refused() {
    let s = Server::start_with_users("[media]\nurl_ttl_secs = 2\n", &["alice", "bob"]);
    let mut alice = s.online("alice", "phone").await;
    let mut bob = s.online("bob", "phone").await;
    let photo = picture(1000);
    let a = announce(&mut alice, "image/png", &photo).await;
    let url = a["url"].as_str().unwrap().to_owned();
    let id = a["media"].as_str().unwrap().to_owned();

    // Each part of the URL is bound by the signature.
    let mut sig_flipped = url.clone();
    let last = sig_flipped.pop().unwrap();
    sig_flipped.push(if last == '0' { '1' } else { '0' });
    let (exp, _) = url.split_once("&sig=").unwrap();
    let exp_value: u64 = exp.rsplit("exp=").next().unwrap().parse().unwrap();
    let later = url.replace(
        &format!("exp={exp_value}"),
        &format!("exp={}", exp_value + 3600),
    );
    let other_id = url.replace(&id, "01jd0000000000000000000000");
    for bad in [&sig_flipped, &later, &other_id] {
        let (status, body) = put(bad, "image/png", &photo);
        assert_eq!(status, 403, "{bad}: {body}");
    }
    // A refused PUT kept nothing: the upload cannot be sent.
    refused_as_not_uploaded(&mut alice, "u/bob", &id, "early").await;

    assert_eq!(put(&url, "image/png", &photo).0, 200);
    let (r, _) = send_media(&mut alice, "u/bob", &id, "m1").await;
    assert_eq!(r, PubAckReason::Success);
    let get_url = media_url(&mut bob, &id).await.unwrap();
    let mut tampered = get_url.clone();
    tampered.push('0');
    assert_eq!(get(&tampered).0, 403);
    // An upload URL is not a download URL.
    assert_eq!(get(&url).0, 403);
    assert_eq!(get(&get_url).0, 200);

    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(get(&get_url).0, 403, "an expired download URL");
    let b = announce(&mut alice, "image/png", &photo).await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (status, body) = put(b["url"].as_str().unwrap(), "image/png", &photo);
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("url_expired"))
    );
    // A fresh URL works again.
    assert!(get(&media_url(&mut bob, &id).await.unwrap()).0 == 200);
}

#[tokio::test]
async fn oversized_and_mismatched_uploads_are_refused_and_keep_nothing() {
    let s = Server::start_with_users("[media]\nmax_bytes = 100000\n", &["alice", "bob"]);
    let mut alice = s.online("alice", "phone").await;

    let too_big = alice
        .request(
            "media.upload",
            json!({"mime": "image/png", "size": 100_001}),
        )
        .await;
    assert_eq!(too_big["error"]["code"], "too_large", "{too_big}");
    for bad in [
        json!({"mime": "image/png"}),
        json!({"mime": "image/png", "size": -1}),
        json!({"mime": "image/png", "size": 0}),
        json!({"size": 10}),
        json!({"mime": "image/png", "size": 10, "sha256": "abc"}),
    ] {
        let a = alice.request("media.upload", bad.clone()).await;
        assert_eq!(a["error"]["code"], "bad_request", "{bad} → {a}");
    }

    let photo = picture(5000);
    let a = announce(&mut alice, "image/png", &photo).await;
    let url = a["url"].as_str().unwrap();
    let id = a["media"].as_str().unwrap();
    let mut longer = photo.clone();
    longer.push(0);
    let (status, body) = put(url, "image/png", &longer);
    assert_eq!((status, &body["error"]["code"]), (413, &json!("too_large")));
    let (status, body) = put(url, "image/png", &photo[..4999]);
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("size_mismatch"))
    );
    // Without a Content-Length, natter counts while it streams.
    let (status, _) = put_chunked(url, "image/png", &longer);
    assert_eq!(status, 413);
    let (status, _) = put_chunked(url, "image/png", &photo[..10]);
    assert_eq!(status, 400);
    let mut other = photo.clone();
    other[0] ^= 1;
    let (status, body) = put(url, "image/png", &other);
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("hash_mismatch"))
    );
    let files = |dir: std::path::PathBuf| {
        std::fs::read_dir(dir)
            .map(|d| d.count())
            .unwrap_or_default()
    };
    assert_eq!(
        files(s.data_dir().join("media")),
        0,
        "nothing of a refused upload is kept"
    );
    let (r, _) = send_media(&mut alice, "u/bob", id, "early").await;
    assert_eq!(r, PubAckReason::PayloadFormatInvalid);

    let (status, body) = put(url, "image/png", &photo);
    assert_eq!((status, &body["size"]), (200, &json!(5000)));
    let (status, body) = put(url, "image/png", &photo);
    assert_eq!((status, &body["error"]["code"]), (409, &json!("complete")));
    let (r, _) = send_media(&mut alice, "u/bob", id, "m1").await;
    assert_eq!(r, PubAckReason::Success);
    let m = s.metrics();
    assert_eq!(metric(&m, "natter_media_uploads_total"), 1.0);
    assert_eq!(metric(&m, "natter_media_upload_bytes_total"), 5000.0);
    assert_eq!(
        metric(&m, "natter_media_refused_total{code=\"too_large\"}"),
        2.0
    );
    assert_eq!(
        metric(&m, "natter_media_refused_total{code=\"hash_mismatch\"}"),
        1.0
    );
}

/// The request head of a PUT of `size` bytes of `mime` to `url` (natter's own route).
fn put_head(url: &str, mime: &str, size: usize) -> (u16, String) {
    let rest = url.strip_prefix("http://127.0.0.1:").expect("a local URL");
    let (port, path) = rest.split_once('/').unwrap();
    let head = format!(
        "PUT /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {mime}\r\n\
         Content-Length: {size}\r\n\r\n"
    );
    (port.parse().unwrap(), head)
}

/// Uploads on a very slow link (or from an attacker): each sends its head and one byte, then
/// one more byte a second, and never finishes. Closed when dropped.
struct SlowUploads {
    socks: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    trickler: Option<std::thread::JoinHandle<()>>,
}

impl SlowUploads {
    fn new() -> SlowUploads {
        let socks: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (socks.clone(), stop.clone());
        let trickler = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                for c in s.lock().unwrap().iter_mut() {
                    let _ = c.write_all(&[7]);
                }
            }
        });
        SlowUploads {
            socks,
            stop,
            trickler: Some(trickler),
        }
    }

    /// Starts one to `url` (announced as a MiB, so it never completes).
    fn open(&self, url: &str, mime: &str) {
        let (port, head) = put_head(url, mime, 1 << 20);
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(head.as_bytes()).unwrap();
        c.write_all(&[7]).unwrap();
        self.socks.lock().unwrap().push(c);
    }

    /// Drops one connection, as a client that gives up does.
    fn close_one(&self) {
        let c = self
            .socks
            .lock()
            .unwrap()
            .pop()
            .expect("a slow upload open");
        c.shutdown(std::net::Shutdown::Both).unwrap();
    }

    fn close_all(&self) {
        while !self.socks.lock().unwrap().is_empty() {
            self.close_one();
        }
    }
}

impl Drop for SlowUploads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.trickler.take() {
            let _ = t.join();
        }
    }
}

/// Waits until natter counts `n` uploads running (`natter_media_uploads_running`).
fn wait_uploads_running(s: &Server, n: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = metric(&s.metrics(), "natter_media_uploads_running");
        if now == n as f64 {
            return;
        }
        assert!(Instant::now() < deadline, "{now} uploads running, not {n}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Announces an upload of `size` bytes of PNG; its URL and id.
async fn announce_size(c: &mut Mqtt, size: usize) -> (String, String) {
    let a = c
        .request("media.upload", json!({"mime": "image/png", "size": size}))
        .await;
    assert_eq!(a["ok"], true, "{a}");
    (
        a["url"].as_str().unwrap().to_owned(),
        a["media"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn one_user_holding_slow_uploads_does_not_block_anyone_else() {
    let s = Server::start_with_users("[media]\nmax_uploads_per_user = 3\n", &["alice", "mallory"]);
    let mut alice = s.online("alice", "phone").await;
    let mut mallory = s.online("mallory", "phone").await;
    let slow = SlowUploads::new();
    for _ in 0..3 {
        let (url, _) = announce_size(&mut mallory, 1 << 20).await;
        slow.open(&url, "image/png");
    }
    wait_uploads_running(&s, 3);

    // Alice's upload goes through while Mallory holds all she may hold.
    let photo = picture(50_000);
    let id = upload(&mut alice, "image/png", &photo).await;
    let (r, _) = send_media(&mut alice, "u/alice", &id, "a1").await;
    assert_eq!(r, PubAckReason::Success);

    // Mallory's next one is refused, whoever's URL it uses, and keeps nothing.
    let small = picture(1000);
    let a = announce(&mut mallory, "image/png", &small).await;
    let url = a["url"].as_str().unwrap().to_owned();
    let (status, body) = put(&url, "image/png", &small);
    assert_eq!(
        (status, &body["error"]["code"]),
        (429, &json!("too_many_uploads")),
        "{body}"
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("3 uploads"));
    assert!(!s
        .data_dir()
        .join("media")
        .join(a["media"].as_str().unwrap())
        .exists());

    // Once her slow uploads end, the same URL works.
    slow.close_all();
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = put(&url, "image/png", &small);
        if status == 200 {
            break;
        }
        assert_eq!(status, 429, "{body}");
        assert!(Instant::now() < deadline, "Mallory's slots never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_uploads_running(&s, 0);
}

#[tokio::test]
async fn an_upload_waits_for_a_free_slot_before_it_is_refused_as_busy() {
    // Four users with sixteen slow uploads each take all 64 of the server's upload slots.
    let users = ["u1", "u2", "u3", "u4", "alice"];
    let s = Server::start_with_users(
        "[media]\nmax_uploads_per_user = 16\nupload_wait_secs = 5\n",
        &users,
    );
    let slow = SlowUploads::new();
    for u in &users[..4] {
        let mut c = s.online(u, "phone").await;
        for _ in 0..16 {
            let (url, _) = announce_size(&mut c, 1 << 20).await;
            slow.open(&url, "image/png");
        }
    }
    wait_uploads_running(&s, 64);
    let mut alice = s.online("alice", "phone").await;
    let photo = picture(20_000);

    // No slot frees: Alice's upload waits upload_wait_secs, then is refused.
    let a = announce(&mut alice, "image/png", &photo).await;
    let url = a["url"].as_str().unwrap().to_owned();
    let asked = Instant::now();
    let (status, body) = put(&url, "image/png", &photo);
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("busy")),
        "{body}"
    );
    assert!(
        asked.elapsed() >= Duration::from_secs(5),
        "refused only after waiting for a slot"
    );

    // A slot that frees while she waits is hers.
    let waiting = std::thread::spawn(move || put(&url, "image/png", &photo));
    std::thread::sleep(Duration::from_secs(1));
    slow.close_one();
    let (status, body) = waiting.join().unwrap();
    assert_eq!((status, &body["size"]), (200, &json!(20_000)), "{body}");
}

#[tokio::test]
async fn an_upload_still_arriving_when_its_url_expires_is_cut_off_and_keeps_nothing() {
    // A one-second header timeout, too: it must not cut a body that keeps arriving.
    let s = Server::start_with_http("header_timeout_secs = 1\n", "[media]\nurl_ttl_secs = 3\n");
    s.add_user("alice", "pw");
    let mut alice = s.online("alice", "phone").await;
    let photo = picture(2000);
    let a = announce(&mut alice, "image/png", &photo).await;
    let url = a["url"].as_str().unwrap().to_owned();
    let id = a["media"].as_str().unwrap().to_owned();

    // A byte every 300 ms: never idle, but 2000 bytes would take ten minutes.
    let (port, head) = put_head(&url, "image/png", photo.len());
    let body = photo.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(head.as_bytes()).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let give_up = Instant::now() + Duration::from_secs(3) + WAIT;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let mut sent = 0;
        loop {
            match c.read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    // Nothing yet: keep sending, unless the answer has begun.
                    if got.is_empty() && sent < body.len() {
                        if c.write_all(&body[sent..sent + 1]).is_err() {
                            c.set_read_timeout(Some(WAIT)).unwrap();
                        }
                        sent += 1;
                    }
                }
                Err(_) => return got,
            }
            assert!(
                Instant::now() < give_up,
                "no answer while the body trickled"
            );
        }
    })
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("url_expired"), "{answer}");

    // Nothing was kept: no file, the upload cannot be sent or fetched, and a new one works.
    assert!(!s.data_dir().join("media").join(&id).exists());
    refused_as_not_uploaded(&mut alice, "u/alice", &id, "cut").await;
    assert_eq!(
        media_url(&mut alice, &id).await.unwrap_err()["code"],
        "bad_request"
    );
    let fresh = upload(&mut alice, "image/png", &photo).await;
    let (r, _) = send_media(&mut alice, "u/alice", &fresh, "whole").await;
    assert_eq!(r, PubAckReason::Success);
}

#[tokio::test]
async fn a_mime_type_off_the_allowlist_is_refused() {
    let s = Server::start_with_users(
        "[media]\nmime_types = [\"image/*\", \"application/pdf\"]\n",
        &["alice"],
    );
    let mut alice = s.online("alice", "phone").await;
    for mime in ["application/x-msdownload", "text/html", "imagex/png"] {
        let a = alice
            .request("media.upload", json!({"mime": mime, "size": 10}))
            .await;
        assert_eq!(a["error"]["code"], "unsupported_type", "{mime}: {a}");
    }
    let ok = alice
        .request("media.upload", json!({"mime": "Image/WebP", "size": 10}))
        .await;
    assert_eq!(ok["ok"], true, "a family allows its members: {ok}");
    // The PUT must be what was announced.
    let (status, body) = put(ok["url"].as_str().unwrap(), "text/html", &[1u8; 10]);
    assert_eq!(
        (status, &body["error"]["code"]),
        (415, &json!("unsupported_type"))
    );
    let (status, _) = put(ok["url"].as_str().unwrap(), "image/webp", &[1u8; 10]);
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_svg_with_a_script_downloads_as_a_sandboxed_attachment_never_as_a_page() {
    // An operator who allows `image/*` allows SVG, which can carry script: served inline it
    // would run as a page of natter's origin (stored XSS).
    let s = Server::start_with_users("[media]\nmime_types = [\"image/*\"]\n", &["alice"]);
    let mut alice = s.online("alice", "phone").await;
    let svg =
        br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>"#;
    let id = upload(&mut alice, "image/svg+xml", svg).await;
    let png = upload(&mut alice, "image/png", &picture(64)).await;
    let headers = |url: &str| {
        let resp = agent().get(url).call().unwrap();
        let h = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        (
            resp.status().as_u16(),
            h("content-disposition"),
            h("content-security-policy"),
            h("x-content-type-options"),
        )
    };
    let (status, disposition, csp, nosniff) = headers(&media_url(&mut alice, &id).await.unwrap());
    assert_eq!(status, 200);
    assert_eq!(disposition, "attachment");
    assert!(csp.split(';').any(|d| d.trim() == "sandbox"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(nosniff, "nosniff");
    // A photo still shows in the chat, under the same sandbox.
    let (status, disposition, csp, _) = headers(&media_url(&mut alice, &png).await.unwrap());
    assert_eq!((status, disposition.as_str()), (200, "inline"));
    assert!(csp.contains("sandbox"), "{csp}");
}

#[tokio::test]
async fn a_send_with_media_that_is_not_the_senders_is_refused() {
    let s = Server::with_users(&["alice", "bob"]);
    let mut alice = s.online("alice", "phone").await;
    let mut bob = s.online("bob", "phone").await;
    let bobs = upload(&mut bob, "image/jpeg", &picture(2000)).await;

    let (r, err) = send_media(&mut alice, "u/bob", &bobs, "c1").await;
    assert_eq!(r, PubAckReason::NotAuthorized);
    assert_eq!(err["error"]["code"], "not_authorized");
    assert_eq!(err["cid"], "c1");
    let (r, _) = send_media(&mut alice, "u/bob", "01jd0000000000000000000000", "c2").await;
    assert_eq!(r, PubAckReason::NotAuthorized);
    let r = alice
        .publish(
            "m/u/bob",
            json!({"cid": "c3", "media": {"id": 5}}).to_string(),
        )
        .await;
    assert_eq!(r, PubAckReason::PayloadFormatInvalid);
    // None of it reached Bob.
    bob.nothing_on("u/bob/m", Duration::from_millis(300)).await;
    // Bob may send his own, and Alice then fetch it.
    let (r, _) = send_media(&mut bob, "u/alice", &bobs, "b1").await;
    assert_eq!(r, PubAckReason::Success);
    let url = media_url(&mut alice, &bobs).await.unwrap();
    assert_eq!(get(&url).0, 200);
}

#[tokio::test]
async fn only_current_members_of_a_group_download_its_media() {
    let s = Server::with_users(&["alice", "bob", "carol"]);
    let mut alice = s.online("alice", "phone").await;
    let mut bob = s.online("bob", "phone").await;
    let mut carol = s.online("carol", "phone").await;
    let g = alice
        .request("group.create", json!({"name": "team", "members": ["bob"]}))
        .await;
    let chat = g["group"]["chat"].as_str().unwrap().to_owned();
    let gid = g["group"]["id"].as_str().unwrap().to_owned();
    let doc = b"%PDF-1.4 minutes of the meeting".to_vec();
    let id = upload(&mut alice, "application/pdf", &doc).await;
    let (r, _) = send_media(&mut alice, &chat, &id, "g1").await;
    assert_eq!(r, PubAckReason::Success);

    let url = media_url(&mut bob, &id).await.unwrap();
    let (status, ct, bytes) = get(&url);
    assert_eq!((status, ct.as_str(), bytes), (200, "application/pdf", doc));
    assert_eq!(
        media_url(&mut carol, &id).await.unwrap_err()["code"],
        "not_authorized"
    );
    let a = alice
        .request("group.remove", json!({"group": gid, "members": ["bob"]}))
        .await;
    assert_eq!(a["ok"], true, "{a}");
    assert_eq!(
        media_url(&mut bob, &id).await.unwrap_err()["code"],
        "not_authorized",
        "a removed member fetches nothing more"
    );
}

#[tokio::test]
async fn retention_deletes_old_media_and_its_messages_say_so() {
    // Three seconds of retention, swept every second.
    let s = Server::start_with_users(
        "[media]\nretention_days = 0.0000347\nsweep_secs = 1\n",
        &["alice", "bob"],
    );
    let mut alice = s.online("alice", "phone").await;
    let mut bob = s.online("bob", "phone").await;
    let id = upload(&mut alice, "image/png", &picture(4000)).await;
    let (r, _) = send_media(&mut alice, "u/bob", &id, "m1").await;
    assert_eq!(r, PubAckReason::Success);
    let m = bob.recv("u/bob/m").await;
    assert_eq!(m["media"]["id"], id.as_str());
    let url = media_url(&mut bob, &id).await.unwrap();
    let file = s.data_dir().join("media").join(&id);
    assert!(file.exists());

    let deadline = tokio::time::Instant::now() + WAIT;
    let expired = loop {
        let h = bob
            .request("history", json!({"chat": "u/alice", "limit": 1}))
            .await;
        let media = h["messages"][0]["media"].clone();
        if media["expired"] == true {
            break media;
        }
        assert!(tokio::time::Instant::now() < deadline, "never expired: {h}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(expired["id"], id.as_str(), "the message still names it");
    assert!(!file.exists(), "the bytes are deleted");
    assert_eq!(get(&url).0, 410);
    assert_eq!(
        media_url(&mut bob, &id).await.unwrap_err()["code"],
        "expired"
    );
    let synced = bob.sync_all(0).await;
    assert_eq!(synced[0]["media"]["expired"], true);
    let (r, err) = send_media(&mut alice, "u/bob", &id, "again").await;
    assert_eq!(r, PubAckReason::PayloadFormatInvalid);
    assert_eq!(err["error"]["code"], "expired");
}

#[tokio::test]
async fn on_s3_members_download_with_presigned_urls_and_bad_uploads_are_never_sent() {
    let bucket = S3::start();
    let s = Server::start_with_users(
        &bucket.config("url_ttl_secs = 3"),
        &["alice", "bob", "carol"],
    );
    let mut alice = s.online("alice", "phone").await;
    let mut bob = s.online("bob", "phone").await;
    let mut carol = s.online("carol", "phone").await;

    let clip = picture(200_000);
    let a = announce(&mut alice, "video/mp4", &clip).await;
    let url = a["url"].as_str().unwrap().to_owned();
    let id = a["media"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{}/", bucket.port))
            && url.contains("X-Amz-Signature="),
        "a presigned S3 URL: {url}"
    );
    // The bucket itself checks the signature.
    let mut tampered = url.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    // (A small body: the bucket answers before reading it, and a large one would meet a
    // closed socket.)
    assert_eq!(put(&tampered, "video/mp4", &clip[..10]).0, 403);
    // Sent before the bytes are there: refused.
    let (r, err) = send_media(&mut alice, "u/bob", &id, "early").await;
    assert_eq!(r, PubAckReason::PayloadFormatInvalid, "{err}");
    // Fewer bytes than announced reach the bucket (S3 cannot know), but natter will not send them.
    assert_eq!(put(&url, "video/mp4", &clip[..1000]).0, 200);
    let (r, err) = send_media(&mut alice, "u/bob", &id, "short").await;
    assert_eq!(r, PubAckReason::PayloadFormatInvalid);
    assert!(
        err["error"]["message"].as_str().unwrap().contains("1000"),
        "{err}"
    );
    // Other bytes of the right length: the hash catches them.
    let mut other = clip.clone();
    other[7] ^= 1;
    assert_eq!(put(&url, "video/mp4", &other).0, 200);
    let (r, err) = send_media(&mut alice, "u/bob", &id, "other").await;
    assert_eq!(r, PubAckReason::PayloadFormatInvalid);
    assert!(err["error"]["message"].as_str().unwrap().contains("sha256"));

    assert_eq!(put(&url, "video/mp4", &clip).0, 200);
    let (r, _) = send_media(&mut alice, "u/bob", &id, "m1").await;
    assert_eq!(r, PubAckReason::Success);
    let m = bob.recv("u/bob/m").await;
    assert_eq!(m["media"]["size"], clip.len());
    let get_url = media_url(&mut bob, &id).await.unwrap();
    let (status, _, bytes) = get(&get_url);
    assert_eq!(status, 200);
    assert!(bytes == clip, "Bob gets Alice's bytes from the bucket");
    assert!(bucket.object_path(&id).exists());
    assert_eq!(
        media_url(&mut carol, &id).await.unwrap_err()["code"],
        "not_authorized"
    );

    tokio::time::sleep(Duration::from_millis(4100)).await;
    assert_eq!(get(&get_url).0, 403, "an expired presigned URL");
    let b = announce(&mut alice, "image/png", &clip[..10]).await;
    tokio::time::sleep(Duration::from_millis(4100)).await;
    assert_eq!(
        put(b["url"].as_str().unwrap(), "image/png", &clip[..10]).0,
        403
    );
}
