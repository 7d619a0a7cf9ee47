//! `natter`: the server and its admin commands.
//!
//! `natter serve` wires config → store → broker ⇄ bridge → HTTP; `natter user …` manages
//! accounts through the running server's admin API, or directly in the store when no server
//! runs. Only this binary uses `anyhow`; the libraries return typed errors.

mod admin;
mod api_error;
mod http;
mod migrate;
mod serve;

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use natter_config::Config;

/// Tunes glibc's allocator, natter's allocator, before any thread starts.
///
/// Idle connections cost 16.7 KiB each under glibc against 25.6 KiB under mimalloc (measured with
/// `natter-bench idle`, 19,000 connections): each connection held two 8 KiB codec buffers that
/// were mostly never written, and glibc leaves untouched pages out of RSS (the buffers now start
/// empty, third_party/rmqtt-net; docs/benchmarks.md has today's figures). glibc's weakness
/// here was large short-lived buffers (argon2's 19 MiB per hash, the store's) kept in whichever
/// thread's arena freed them (377 MiB to 1.7 GiB RSS for 30 MiB of live heap): a fixed mmap
/// threshold gives every allocation over 256 KiB a mapping of its own, returned when freed
/// (glibc otherwise raises the threshold after the first such free).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called once, before other threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

#[derive(Parser)]
#[command(
    name = "natter",
    version,
    about = "A chat platform whose clients speak MQTT"
)]
struct Cli {
    /// Config file (TOML). Without it natter runs on its embedded defaults.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server.
    Serve,
    /// Manages users (works with or without a running server).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manages the embedded store (with no server running).
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Converts a store written by natter before 0.2 (`{data_dir}/natter.redb`) into
    /// `{data_dir}/store`; the old file is kept.
    Migrate,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Creates a user.
    Add {
        /// The user id: `[a-z0-9][a-z0-9_.-]{0,63}`.
        name: String,
        /// Read the password from the first line of standard input instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Sets a user's password.
    Passwd {
        /// The user id.
        name: String,
        /// Read the password from the first line of standard input instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Lists users.
    List,
    /// Removes a user (their messages stay in their chats).
    Remove {
        /// The user id.
        name: String,
    },
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
    }
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        Ok(line.trim_end_matches(['\n', '\r']).to_owned())
    } else {
        let p = rpassword::prompt_password("password: ").context("reading the password")?;
        let again = rpassword::prompt_password("again: ").context("reading the password")?;
        anyhow::ensure!(p == again, "the passwords differ");
        Ok(p)
    }
}

/// `e` and each of its causes that its message does not already end with, joined by ": ", as
/// `{:#}` joins an `anyhow` chain. natter's error types both name their cause in their message
/// and keep it as their `source`, so that the message stands alone in a log line or an answer;
/// this says each cause once.
pub(crate) fn report(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = c.source();
    }
    text
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let result = (|| -> anyhow::Result<()> {
        let config = load_config(cli.config.as_ref())?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        match cli.command {
            Command::Serve => rt.block_on(serve::run(config)),
            Command::User { command } => {
                let cmd = match command {
                    UserCommand::Add {
                        name,
                        password_stdin,
                    } => admin::Cmd::Add {
                        password: read_password(password_stdin)?,
                        name,
                    },
                    UserCommand::Passwd {
                        name,
                        password_stdin,
                    } => admin::Cmd::Passwd {
                        password: read_password(password_stdin)?,
                        name,
                    },
                    UserCommand::List => admin::Cmd::List,
                    UserCommand::Remove { name } => admin::Cmd::Remove { name },
                };
                rt.block_on(admin::run(&config, cmd))
            }
            Command::Store {
                command: StoreCommand::Migrate,
            } => migrate::run(&config),
        }
    })();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natter: {}", report(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
