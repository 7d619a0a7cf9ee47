//! `natter`: the server and its admin commands.
//!
//! `natter serve` wires config → store → broker ⇄ bridge → HTTP; `natter user …` manages
//! accounts through the running server's admin API, or directly in the store when no server
//! runs. Only this binary uses `anyhow`; the libraries return typed errors.

mod admin;
mod http;
mod serve;

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use natter_config::Config;

// glibc malloc keeps a 64 MiB arena per thread that ever allocated a lot (argon2's 19 MiB, redb's
// page buffers) and rarely gives it back: measured, natter sat at 377 MiB RSS after a 30k-message
// benchmark that peaked at 30 MiB of live heap. mimalloc returns freed memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
}

#[derive(Subcommand)]
enum UserCommand {
    /// Creates a user.
    Add {
        /// The user id: [a-z0-9][a-z0-9_.-]{0,63}.
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

fn main() -> std::process::ExitCode {
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
        }
    })();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natter: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
