//! The web client in a real browser: Debian's headless Chromium, driven through chromedriver
//! (WebDriver, `fantoccini`), against a real natter. Alice (a desktop window) and Bob (a
//! phone-sized one, his own browser profile) sign in and chat as people would: by typing and
//! clicking. What is asserted is what they would see: text in the page, a message's tick, an
//! image that loaded, each message once after natter was killed and started again.
//!
//! chromedriver and chromium must be installed (`cargo xtask test` installs them); without
//! them the test fails, naming the package. Screenshots go to `$NATTER_SCREENSHOTS` if set
//! (the docs' are made with `NATTER_SCREENSHOTS=docs/img`), else to Cargo's test temp dir.

// An integration test: a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Server};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long the page may take to show something (a reconnect after natter restarts included).
const PAGE_WAIT: Duration = Duration::from_secs(20);
/// WebDriver's Enter key.
const ENTER: &str = "\u{E007}";

/// A chromedriver process in a process group of its own; the group (its browsers too) is
/// killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver is installed (apt-get install chromium chromium-driver)");
        let deadline = Instant::now() + common::WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port }
    }

    /// `who`'s page in a browser of their own (profile under `profiles`), `width`×`height`.
    async fn page(&self, who: &'static str, profiles: &Path, width: u32, height: u32) -> Page {
        let c = self.browser(&profiles.join(who), width, height).await;
        Page { who, c }
    }

    /// A browser with a fresh profile in `profile`, its window `width`×`height`.
    async fn browser(&self, profile: &Path, width: u32, height: u32) -> Client {
        assert!(
            Path::new("/usr/bin/chromium").exists(),
            "chromium is not installed (apt-get install chromium)"
        );
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--window-size={width},{height}"),
        ];
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("chromedriver starts chromium")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// One person's browser window.
struct Page {
    who: &'static str,
    c: Client,
}

impl Page {
    /// Evaluates a JavaScript expression in the page.
    async fn eval(&self, expr: &str) -> Value {
        self.c
            .execute(&format!("return ({expr});"), vec![])
            .await
            .unwrap_or_else(|e| panic!("{}: evaluating {expr}: {e}", self.who))
    }

    /// Polls `expr` until it is truthy (not null, false, 0 or ""); its value. Fails after
    /// [`PAGE_WAIT`] with what the page showed.
    async fn until(&self, what: &str, expr: &str) -> Value {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let v = self.eval(expr).await;
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let text = self.eval("document.body.innerText").await;
                panic!(
                    "{}: {what}: not seen within {PAGE_WAIT:?}; the page shows:\n{}",
                    self.who,
                    text.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.c.find(Locator::Css(css)).await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    /// Clicks the element `css` finds. The page redraws lists as messages and presence come,
    /// which can replace the element between finding and clicking it: then it is found again.
    async fn click(&self, css: &str) {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let found = self.c.find(Locator::Css(css)).await;
            let clicked = match found {
                Ok(e) => e.click().await,
                Err(e) => Err(e),
            };
            match clicked {
                Ok(()) => return,
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::StaleElementReference
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{}: clicking {css}: {e}", self.who),
            }
        }
    }

    /// Opens natter's page and signs in with the password; returns once the first sync ran.
    async fn sign_in(&self, s: &Server, password: &str) {
        self.c.goto(&s.http_url("/")).await.unwrap();
        self.until(
            "the sign-in form",
            "!document.getElementById('signin').hidden",
        )
        .await;
        // From here on, a script error or a CSP refusal in the page fails the test at its end.
        self.eval(COLLECT_ERRORS).await;
        self.type_into("#user", self.who).await;
        self.type_into("#password", password).await;
        self.click("#signin-button").await;
        self.until("connected and synced", SYNCED).await;
    }

    /// How many messages in the open chat read exactly `body`.
    async fn count(&self, body: &str) -> u64 {
        let js = format!(
            "[...document.querySelectorAll('#messages .body')].filter(e => e.textContent === {}).length",
            json!(body)
        );
        self.eval(&js).await.as_u64().unwrap()
    }

    /// Waits for one of my messages, `body`, to show `status` (sent, delivered, read).
    async fn until_tick(&self, body: &str, status: &str) {
        let js = format!(
            "[...document.querySelectorAll('#messages li.mine')].some(li => \
             li.querySelector('.body')?.textContent === {} && li.dataset.status === {})",
            json!(body),
            json!(status)
        );
        self.until(&format!("{body:?} shown as {status}"), &js)
            .await;
    }

    async fn screenshot(&self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        let dir = std::env::var_os("NATTER_SCREENSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("web-{name}.png")), png).unwrap();
    }
}

/// Starts collecting the page's uncaught errors, rejected promises and CSP violations.
const COLLECT_ERRORS: &str = "(() => { window.seen_errors = []; \
    addEventListener('error', e => seen_errors.push('error: ' + e.message)); \
    addEventListener('unhandledrejection', e => seen_errors.push('rejection: ' + e.reason)); \
    document.addEventListener('securitypolicyviolation', e => \
      seen_errors.push('CSP: ' + e.violatedDirective + ' ' + e.blockedURI)); \
    return true; })()";

/// The page is connected and has synced since its last (re)connect.
const SYNCED: &str = "document.getElementById('app').dataset.synced === 'yes'";

/// The chat list's entry for `chat`: its text, or null.
fn list_entry(chat: &str) -> String {
    format!(
        "document.querySelector('#chat-list li[data-chat={}]')?.innerText",
        json!(chat)
    )
}

/// The unread badge of `chat` in the list: its text, or null when there is none.
fn unread(chat: &str) -> String {
    format!(
        "document.querySelector('#chat-list li[data-chat={}] .unread')?.textContent ?? null",
        json!(chat)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_chat_in_the_browser_through_a_restart() {
    let mut s = Server::with_users(&["alice", "bob", "carol"]);
    let driver = Driver::start();
    let profiles = tempfile::tempdir().unwrap();
    let alice = driver.page("alice", profiles.path(), 1100, 720).await;
    let bob = driver.page("bob", profiles.path(), 390, 780).await;
    alice.sign_in(&s, "pw").await;

    // Alice opens a chat with Bob by name and sends with the Enter key, while Bob is away:
    // natter has it (sent), no device of Bob's has.
    alice
        .type_into("#new-chat-user", &format!("bob{ENTER}"))
        .await;
    alice
        .until(
            "the chat with bob",
            "document.getElementById('chat-title').textContent === 'bob'",
        )
        .await;
    alice.type_into("#text", &format!("hello bob{ENTER}")).await;
    alice.until_tick("hello bob", "sent").await;

    // Bob signs in: his list shows it, unread; his page fetched it, so Alice sees "delivered".
    bob.sign_in(&s, "pw").await;
    bob.until(
        "alice's chat in the list",
        &format!("{}?.includes('hello bob')", list_entry("u/alice")),
    )
    .await;
    assert_eq!(bob.eval(&unread("u/alice")).await, json!("1"), "one unread");
    alice.until_tick("hello bob", "delivered").await;

    // Bob opens it: Alice's tick turns to read; she sees him online and typing.
    bob.click("#chat-list li[data-chat='u/alice'] button").await;
    alice.until_tick("hello bob", "read").await;
    alice
        .until(
            "bob online",
            "document.getElementById('chat-sub').textContent === 'online'",
        )
        .await;
    bob.type_into("#text", "hi al").await;
    alice
        .until(
            "bob typing",
            "document.getElementById('typing').textContent.includes('bob is typing')",
        )
        .await;
    bob.type_into("#text", &format!("ice{ENTER}")).await;
    alice
        .until("bob's answer", "[...document.querySelectorAll('#messages li.theirs .body')].some(e => e.textContent === 'hi alice')")
        .await;
    assert_eq!(bob.eval(&unread("u/alice")).await, Value::Null, "read");

    // Alice sends a picture: previewed, uploaded, shown to Bob as an image.
    let dir = tempfile::tempdir().unwrap();
    let picture = dir.path().join("gradient.png");
    std::fs::write(&picture, png(160, 120)).unwrap();
    alice.type_into("#attach", picture.to_str().unwrap()).await;
    alice
        .until("the preview", "!document.getElementById('preview').hidden && document.getElementById('preview-img').naturalWidth")
        .await;
    alice.click("#preview-send").await;
    let width = bob
        .until("the picture", "[...document.querySelectorAll('#messages li.theirs img.photo')].map(i => i.complete && i.naturalWidth).find(w => w)")
        .await;
    assert_eq!(width, json!(160), "Bob's picture is the one Alice sent");
    alice
        .until(
            "her picture read",
            "document.querySelector('#messages li.mine:last-child')?.dataset.status === 'read'",
        )
        .await;
    alice.screenshot("chat").await;
    bob.screenshot("phone").await;

    // natter dies; Alice writes meanwhile; natter comes back: the message arrives once, both
    // pages catch up by sync, and nothing shows twice.
    s.kill9();
    for page in [&alice, &bob] {
        page.until(
            "the connection lost",
            "document.getElementById('app').dataset.conn === 'down'",
        )
        .await;
    }
    alice
        .type_into("#text", &format!("sent while natter was down{ENTER}"))
        .await;
    s.start_again();
    alice.until("reconnected", SYNCED).await;
    bob.until("reconnected", SYNCED).await;
    alice.until_tick("sent while natter was down", "read").await;
    bob.type_into("#text", &format!("back again{ENTER}")).await;
    alice
        .until("bob's message after the restart", "[...document.querySelectorAll('#messages li.theirs .body')].some(e => e.textContent === 'back again')")
        .await;
    let bodies = [
        "hello bob",
        "hi alice",
        "sent while natter was down",
        "back again",
    ];
    for page in [&alice, &bob] {
        for body in bodies {
            assert_eq!(page.count(body).await, 1, "{}: {body:?} once", page.who);
        }
    }

    // natter dies again; Alice writes and leaves the page before it is back. Her browser kept
    // the message: it goes when she opens natter again, once.
    s.kill9();
    alice
        .until(
            "the connection lost again",
            "document.getElementById('app').dataset.conn === 'down'",
        )
        .await;
    alice
        .type_into("#text", &format!("kept by the browser{ENTER}"))
        .await;
    alice
        .until(
            "the message kept",
            "localStorage.getItem('natter.outbox.alice')?.includes('kept by the browser')",
        )
        .await;
    alice.c.goto("about:blank").await.unwrap();
    s.start_again();
    alice.c.goto(&s.http_url("/")).await.unwrap();
    alice.until("synced on coming back", SYNCED).await;
    alice.eval(COLLECT_ERRORS).await;
    bob.until("reconnected", SYNCED).await;
    bob.until(
        "the kept message",
        "[...document.querySelectorAll('#messages li.theirs .body')].some(e => e.textContent === 'kept by the browser')",
    )
    .await;
    alice
        .until(
            "the outbox emptied once natter has the message",
            "localStorage.getItem('natter.outbox.alice') === null",
        )
        .await;
    alice.click("#chat-list li[data-chat='u/bob'] button").await;
    alice.until_tick("kept by the browser", "read").await;
    let bodies = [
        "hello bob",
        "hi alice",
        "sent while natter was down",
        "back again",
        "kept by the browser",
    ];
    for page in [&alice, &bob] {
        assert_eq!(page.count("kept by the browser").await, 1, "{}", page.who);
    }

    // Bob reloads the page: still signed in (the token is in sessionStorage), the chat comes
    // back from natter, each message once, and a file Alice sends shows as a download.
    bob.c.refresh().await.unwrap();
    bob.eval(COLLECT_ERRORS).await;
    bob.until("synced after the reload", SYNCED).await;
    bob.click("#chat-list li[data-chat='u/alice'] button").await;
    bob.until(
        "the history",
        "document.querySelectorAll('#messages .body').length >= 5",
    )
    .await;
    for body in bodies {
        assert_eq!(
            bob.count(body).await,
            1,
            "bob after the reload: {body:?} once"
        );
    }
    // His own older messages keep their ticks: history says Alice read them.
    bob.until_tick("hi alice", "read").await;
    bob.until_tick("back again", "read").await;
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "bring snacks\n").unwrap();
    alice.type_into("#attach", notes.to_str().unwrap()).await;
    alice
        .until(
            "the file's preview",
            "document.getElementById('preview-name').textContent.startsWith('notes.txt')",
        )
        .await;
    alice.click("#preview-send").await;
    let link = bob
        .until("the file", "[...document.querySelectorAll('#messages li.theirs a.file')].find(a => a.href && a.textContent.includes('notes.txt (13 B)'))?.getAttribute('download')")
        .await;
    assert_eq!(link, json!("notes.txt"));

    // Groups: Alice creates one with Bob, adds Carol; Bob sees it, its message, and leaves.
    alice.click("#new-group summary").await;
    alice.type_into("#group-name", "team").await;
    alice
        .type_into("#group-members", &format!("bob{ENTER}"))
        .await;
    alice
        .until(
            "the new group",
            "document.getElementById('chat-title').textContent === 'team'",
        )
        .await;
    alice
        .type_into("#add-member-user", &format!("carol{ENTER}"))
        .await;
    alice
        .until(
            "three members",
            "document.getElementById('chat-sub').textContent.startsWith('3 members')",
        )
        .await;
    alice
        .type_into("#text", &format!("hello team{ENTER}"))
        .await;
    bob.click("#back").await;
    bob.until(
        "the group in the list",
        "document.getElementById('chat-list').innerText.includes('team')",
    )
    .await;
    bob.click("#chat-list li[data-chat^='g/'] button").await;
    bob.until(
        "the group's message",
        "[...document.querySelectorAll('#messages .body')].some(e => e.textContent === 'hello team')",
    )
    .await;
    bob.click("#leave-group").await;
    bob.until(
        "the composer gone",
        "document.getElementById('composer').hidden",
    )
    .await;
    alice
        .until(
            "bob has left",
            "document.getElementById('chat-sub').textContent.startsWith('2 members')",
        )
        .await;

    // A second tab of Alice's browser (signed in again: the token is per tab) connects as a
    // device of its own, so the two tabs do not take each other's connection over.
    let device = "sessionStorage.getItem('natter.device')";
    let first = alice.c.window().await.unwrap();
    let first_device = alice.eval(device).await;
    let tab = alice.c.new_window(true).await.unwrap();
    alice.c.switch_to_window(tab.handle).await.unwrap();
    alice.sign_in(&s, "pw").await;
    let second_device = alice.eval(device).await;
    assert!(first_device.is_string() && second_device.is_string());
    assert_ne!(
        first_device, second_device,
        "each tab has its own device id"
    );
    assert_eq!(
        alice.eval("window.seen_errors").await,
        json!([]),
        "alice's second tab"
    );
    alice.c.switch_to_window(first).await.unwrap();

    for page in [&alice, &bob] {
        assert_eq!(
            page.eval("window.seen_errors").await,
            json!([]),
            "{}",
            page.who
        );
    }
    alice.c.close().await.unwrap();
    bob.c.close().await.unwrap();
}

/// The page's refresh token, from its stored session.
const REFRESH_TOKEN: &str =
    "JSON.parse(sessionStorage.getItem('natter.session') || 'null')?.refresh_token ?? null";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_stays_signed_in_by_refresh_tokens_and_a_stolen_one_signs_it_out() {
    // Access tokens of 66 s: the page refreshes 60 s before expiry, so within seconds.
    let s = Server::start_with_users("[auth]\ntoken_ttl_secs = 66\n", &["alice", "bob"]);
    let driver = Driver::start();
    let profiles = tempfile::tempdir().unwrap();
    let alice = driver.page("alice", profiles.path(), 1100, 720).await;
    alice.sign_in(&s, "pw").await;
    let first = alice.eval(REFRESH_TOKEN).await;
    assert!(
        first.as_str().is_some_and(|t| t.starts_with("nrt1.")),
        "{first}"
    );
    let second = alice
        .until(
            "a refreshed session",
            &format!("({REFRESH_TOKEN}) !== {first} && ({REFRESH_TOKEN})"),
        )
        .await;
    // Still connected with it: what Bob sends shows in her chat list.
    let mut bob = s.online("bob", "phone").await;
    bob.send("u/alice", json!({"body": "still there?"})).await;
    alice
        .until(
            "bob's message in the list",
            &format!("({})?.includes('still there?')", list_entry("u/bob")),
        )
        .await;
    // Someone replays the refresh token the page already used: the session ends for both, and
    // the page asks Alice to sign in again at its next refresh instead of carrying on.
    let (status, _) = common::http(
        "POST",
        &s.http_url("/v1/token/refresh"),
        None,
        Some(json!({ "refresh_token": first })),
    );
    assert_eq!(status, 401);
    let (status, _) = common::http(
        "POST",
        &s.http_url("/v1/token/refresh"),
        None,
        Some(json!({ "refresh_token": second })),
    );
    assert_eq!(status, 401, "the whole session ended");
    alice
        .until(
            "the sign-in form again, saying why",
            "!document.getElementById('signin').hidden && \
             document.body.innerText.includes('session has expired')",
        )
        .await;
    alice.c.close().await.unwrap();
}

/// The page, its modules and its configuration are served with the right types and headers.
#[test]
fn the_page_is_served_with_its_policy() {
    let s = Server::start();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let get = |path: &str, etag: Option<&str>| {
        let mut r = agent.get(&s.http_url(path));
        if let Some(t) = etag {
            r = r.header("if-none-match", t);
        }
        let mut resp = r.call().unwrap();
        let h = |n: &str| {
            resp.headers()
                .get(n)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let head = (
            resp.status().as_u16(),
            h("content-type"),
            h("content-security-policy"),
            h("x-content-type-options"),
            h("etag"),
        );
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        (head, body)
    };

    let ((status, ctype, csp, nosniff, etag), body) = get("/", None);
    assert_eq!(status, 200);
    assert_eq!(ctype, "text/html; charset=utf-8");
    assert!(body.contains("/web/js/main.js"), "{body}");
    assert_eq!(nosniff, "nosniff");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let ws = format!("ws://127.0.0.1:{}/mqtt", s.ws);
    assert!(csp.contains(&format!("connect-src 'self' {ws}")), "{csp}");
    let ((again, ..), _) = get("/", Some(&etag));
    assert_eq!(again, 304, "the page is revalidated, not sent again");

    let ((status, ctype, _, nosniff, _), body) = get("/web/vendor/mqtt/mqtt.esm.js", None);
    assert_eq!(
        (status, ctype.as_str()),
        (200, "text/javascript; charset=utf-8")
    );
    assert_eq!(nosniff, "nosniff");
    assert!(body.contains("export default"));
    let ((status, ..), _) = get("/web/nope.js", None);
    assert_eq!(status, 404);

    let (status, cfg) = common::http("GET", &s.http_url("/v1/client-config"), None, None);
    assert_eq!((status, cfg), (200, json!({"ws_url": ws})));

    let off = Server::start_with("[web]\nenabled = false\n");
    assert_eq!(common::http("GET", &off.http_url("/"), None, None).0, 404);
}

/// A `width`×`height` PNG (a colour gradient), written by hand: stored (uncompressed) deflate.
fn png(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // no filter
        for x in 0..width {
            raw.extend([(x * 255 / width) as u8, (y * 255 / height) as u8, 170]);
        }
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        z.extend(len.to_le_bytes());
        z.extend((!len).to_le_bytes());
        z.extend(*block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend(((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}
