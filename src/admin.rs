//! `natter user …`: through the running server's admin API when one answers on `http.listen`,
//! else straight in the store (which a running server would hold locked).

use std::time::Duration;

use anyhow::{bail, Context};
use natter_bridge::users;
use natter_config::Config;
use serde_json::{json, Value};

/// A user command with its arguments.
pub enum Cmd {
    Add { name: String, password: String },
    Passwd { name: String, password: String },
    List,
    Remove { name: String },
}

fn admin_token(config: &Config) -> anyhow::Result<String> {
    if !config.http.admin_token.is_empty() {
        return Ok(config.http.admin_token.clone());
    }
    let path = config.data_dir.join("admin.token");
    let t = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "a server answers on {} but {} cannot be read",
            config.http.listen,
            path.display()
        )
    })?;
    Ok(t.trim().to_owned())
}

pub async fn run(config: &Config, cmd: Cmd) -> anyhow::Result<()> {
    let addr = config.http.listen;
    let server_up =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .is_ok_and(|r| r.is_ok());
    if server_up {
        let token = admin_token(config)?;
        let config = config.clone();
        return tokio::task::spawn_blocking(move || over_http(&config, &token, cmd)).await?;
    }
    let store = crate::serve::open_store(config).await?;
    let store = &*store;
    match cmd {
        Cmd::Add { name, password } => {
            users::add(store, &name, &password).await?;
            println!("user {name} created");
        }
        Cmd::Passwd { name, password } => {
            users::passwd(store, &name, &password).await?;
            println!("password of {name} changed");
        }
        Cmd::List => {
            for u in store.users().await? {
                println!("{u}");
            }
        }
        Cmd::Remove { name } => {
            users::remove(store, &name).await?;
            println!("user {name} removed");
        }
    }
    Ok(())
}

fn over_http(config: &Config, token: &str, cmd: Cmd) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let base = format!("http://{}/v1/admin/users", config.http.listen);
    let auth = format!("Bearer {token}");
    let (what, resp) = match &cmd {
        Cmd::Add { name, password } => (
            format!("user {name} created"),
            agent
                .post(&base)
                .header("authorization", &auth)
                .send_json(json!({"name": name, "password": password})),
        ),
        Cmd::Passwd { name, password } => (
            format!("password of {name} changed"),
            agent
                .put(&format!("{base}/{name}/password"))
                .header("authorization", &auth)
                .send_json(json!({"password": password})),
        ),
        Cmd::List => (
            String::new(),
            agent.get(&base).header("authorization", &auth).call(),
        ),
        Cmd::Remove { name } => (
            format!("user {name} removed"),
            agent
                .delete(&format!("{base}/{name}"))
                .header("authorization", &auth)
                .call(),
        ),
    };
    let mut resp =
        resp.with_context(|| format!("talking to the server at {}", config.http.listen))?;
    let status = resp.status();
    let body = resp.body_mut().read_json::<Value>();
    if !status.is_success() {
        // A refusal without natter's JSON (a proxy's page, say) is still a refusal.
        let body = body.unwrap_or(Value::Null);
        let msg = body["error"]["message"].as_str().unwrap_or("no details");
        bail!("the server refused ({status}): {msg}");
    }
    if let Cmd::List = cmd {
        let body = body.context("the server's list of users is not JSON")?;
        let users = body["users"]
            .as_array()
            .context("the server's answer has no list of users")?;
        for u in users {
            let name = u
                .as_str()
                .context("the server's list of users holds a non-name")?;
            println!("{name}");
        }
    } else {
        println!("{what}");
    }
    Ok(())
}
