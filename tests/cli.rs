//! The operator's side: `natter user …` with and without a running server, and start-up errors
//! that name the config key, the value and what was expected.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{http, run_cli, Server};
use serde_json::json;

fn token_status(s: &Server, user: &str, password: &str) -> u16 {
    http(
        "POST",
        &s.http_url("/v1/token"),
        None,
        Some(json!({"user": user, "password": password})),
    )
    .0
}

#[tokio::test]
async fn user_commands_work_while_the_server_runs() {
    let s = Server::start();
    let (ok, out, err) = s.cli(&["user", "add", "carol", "--password-stdin"], "first-pw\n");
    assert!(ok, "{err}");
    assert!(out.contains("carol"), "{out}");
    assert_eq!(
        token_status(&s, "carol", "first-pw"),
        200,
        "the running server knows carol at once"
    );

    let (ok, _, err) = s.cli(&["user", "add", "carol", "--password-stdin"], "again\n");
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");

    let (ok, _, err) = s.cli(
        &["user", "passwd", "carol", "--password-stdin"],
        "second-pw\n",
    );
    assert!(ok, "{err}");
    assert_eq!(token_status(&s, "carol", "first-pw"), 401);
    assert_eq!(token_status(&s, "carol", "second-pw"), 200);

    s.cli(&["user", "add", "dave", "--password-stdin"], "pw\n");
    let (ok, out, _) = s.cli(&["user", "list"], "");
    assert!(ok);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["carol", "dave"]);

    let (ok, _, err) = s.cli(&["user", "remove", "carol"], "");
    assert!(ok, "{err}");
    assert_eq!(token_status(&s, "carol", "second-pw"), 401);
    let (ok, _, err) = s.cli(&["user", "remove", "carol"], "");
    assert!(!ok);
    assert!(err.contains("no such user"), "{err}");

    let (ok, _, err) = s.cli(&["user", "add", "Not Valid", "--password-stdin"], "pw\n");
    assert!(!ok);
    assert!(err.contains("not a valid user id"), "{err}");
    let (ok, _, err) = s.cli(&["user", "add", "erin", "--password-stdin"], "\n");
    assert!(!ok);
    assert!(err.contains("password"), "{err}");
}

#[tokio::test]
async fn user_commands_work_with_no_server_and_the_server_sees_the_result() {
    let mut s = Server::start();
    s.kill9();
    let (ok, _, err) = s.cli(&["user", "add", "frank", "--password-stdin"], "pw\n");
    assert!(ok, "{err}");
    let (ok, out, _) = s.cli(&["user", "list"], "");
    assert!(ok);
    assert_eq!(out.trim(), "frank");
    s.restart();
    let mut frank = common::connect(s.mqtt, "frank", "phone", "pw").await;
    assert!(frank.still_connected().await);
}

#[tokio::test]
async fn the_admin_api_wants_the_admin_token() {
    let s = Server::start();
    let (status, _) = http("GET", &s.http_url("/v1/admin/users"), None, None);
    assert_eq!(status, 401);
    let (status, _) = http("GET", &s.http_url("/v1/admin/users"), Some("wrong"), None);
    assert_eq!(status, 401);
    let (status, body) = http(
        "GET",
        &s.http_url("/v1/admin/users"),
        Some(common::ADMIN_TOKEN),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(body["users"], json!([]));
}

/// Runs `natter serve` on `config` text and returns its error output (it must fail).
fn serve_fails(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let config = config.replace("DATA", &dir.path().join("data").display().to_string());
    std::fs::write(&path, config).unwrap();
    let (ok, _, err) = run_cli(&path, &["serve"], "");
    assert!(!ok, "natter serve must refuse this config");
    err
}

#[test]
fn a_bad_config_stops_start_up_naming_key_value_and_expectation() {
    let err = serve_fails("data_dir = \"DATA\"\n[mqtt]\ntcpp = \"127.0.0.1:1\"\n");
    assert!(err.contains("tcpp"), "unknown key: {err}");
    let err = serve_fails("data_dir = \"DATA\"\n[mqtt]\nmax_connections = \"lots\"\n");
    assert!(
        err.contains("mqtt.max_connections") && err.contains("lots"),
        "wrong type: {err}"
    );
    let err = serve_fails("data_dir = \"DATA\"\n[http]\nlisten = \"eight-thousand\"\n");
    assert!(
        err.contains("http.listen")
            && err.contains("eight-thousand")
            && err.contains("socket address"),
        "{err}"
    );
    let err = serve_fails("data_dir = \"DATA\"\n[limits]\nmax_message_bytes = 0\n");
    assert!(
        err.contains("limits.max_message_bytes") && err.contains("between"),
        "{err}"
    );
    let err = serve_fails("data_dir = \"DATA\"\n[[auth.trusted_issuers]]\nissuer = \"x\"\nalgorithm = \"RS256\"\npublic_key_file = \"/nonexistent/key.pem\"\n");
    assert!(
        err.contains("auth.trusted_issuers[0].public_key_file")
            && err.contains("/nonexistent/key.pem"),
        "{err}"
    );
}

#[test]
fn an_unreadable_config_file_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["serve", "--config", "/nonexistent/natter.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/natter.toml"), "{err}");
}

#[test]
fn a_port_in_use_is_named_with_its_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = serve_fails(&format!(
        "data_dir = \"DATA\"\n[mqtt]\ntcp = \"127.0.0.1:{port}\"\nws = \"\"\n[http]\nlisten = \"127.0.0.1:{}\"\n",
        common::free_port()
    ));
    assert!(
        err.contains("mqtt.tcp") && err.contains(&port.to_string()),
        "{err}"
    );
    let err = serve_fails(&format!(
        "data_dir = \"DATA\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    assert!(
        err.contains("http.listen") && err.contains(&port.to_string()),
        "{err}"
    );
}
