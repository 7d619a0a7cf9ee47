//! natter's development tasks, run as `cargo xtask …` (an alias in `.cargo/config.toml`).
//!
//! Owns: knowing which programs the test suite starts (one table, [`TOOLS`]), finding them
//! on `PATH`, installing the missing ones through the system package manager when it runs as
//! root, and then running `cargo test --workspace` with the arguments it was given.
//!
//! Must never: depend on a crate (on a fresh machine it compiles before anything else, in
//! seconds); install anything when it is not root (it names the command instead); run the
//! tests while a tool they need is missing (they would fail later, on a less clear message);
//! touch natter's code, config or data.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// A program the tests start, the Debian package that brings it, and who needs it.
struct Tool {
    /// The executable looked for on `PATH`.
    program: &'static str,
    /// The Debian package that installs it.
    package: &'static str,
    /// The tests that start it.
    used_by: &'static str,
}

/// Every program the test suite starts that the Rust toolchain does not bring. The S3 test
/// server is s3s-fs, in-process (a dev-dependency): nothing to install for it.
const TOOLS: &[Tool] = &[
    Tool {
        program: "redis-server",
        package: "redis-server",
        used_by: "presence and readiness tests (presence.backend = \"redis\")",
    },
    Tool {
        program: "mosquitto_pub",
        package: "mosquitto-clients",
        used_by: "interoperability tests (tests/interop.rs)",
    },
    Tool {
        program: "mosquitto_sub",
        package: "mosquitto-clients",
        used_by: "interoperability tests (tests/interop.rs)",
    },
    Tool {
        program: "chromium",
        package: "chromium",
        used_by: "the web client's browser test (tests/web.rs)",
    },
    Tool {
        program: "chromedriver",
        package: "chromium-driver",
        used_by: "the web client's browser test (tests/web.rs), which drives chromium through it",
    },
    Tool {
        program: "openssl",
        package: "openssl",
        used_by: "token and push tests (keys for RS256, ES256 and EdDSA)",
    },
];

/// What `cargo xtask` with no task, or an unknown one, prints.
const USAGE: &str = "\
usage: cargo xtask <task> [args]

tasks:
  test [cargo test args]  install what the tests need if it is missing (as root, via apt-get),
                          then run `cargo test --workspace [cargo test args]`
  deps                    only the first half: check for the tools, install the missing ones";

fn main() -> ExitCode {
    let mut args = env::args_os().skip(1);
    let task = args.next();
    match task.as_ref().and_then(|t| t.to_str()) {
        Some("test") => match ensure_tools() {
            Ok(()) => run_tests(args.collect()),
            Err(message) => fail(&message),
        },
        Some("deps") => match ensure_tools() {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => fail(&message),
        },
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Prints `message` as the task's error and returns a failing exit code.
fn fail(message: &str) -> ExitCode {
    eprintln!("xtask: {message}");
    ExitCode::FAILURE
}

/// Makes sure every tool in [`TOOLS`] is on `PATH`: installs the missing ones as root through
/// apt-get, or returns a message naming the command that would.
fn ensure_tools() -> Result<(), String> {
    let path = env::var_os("PATH").unwrap_or_default();
    let missing = missing_tools(&path);
    if missing.is_empty() {
        eprintln!("xtask: found {}", program_list(TOOLS.iter()));
        return Ok(());
    }
    let packages = packages_of(&missing);
    let apt_get = find_program("apt-get", &path);
    if !is_root() || apt_get.is_none() {
        return Err(not_installed_message(
            &missing,
            &packages,
            apt_get.is_some(),
        ));
    }
    eprintln!(
        "xtask: installing {} (for {})",
        packages.join(" "),
        program_list(missing.iter().copied())
    );
    run_apt_get(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(packages.iter().copied());
    run_apt_get(&install)?;
    let still = missing_tools(&path);
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "apt-get installed {} but {} is still not on PATH",
            packages.join(" "),
            program_list(still.iter().copied())
        ))
    }
}

/// Runs `apt-get ARGS` without questions, and names the command when it fails.
fn run_apt_get(args: &[&str]) -> Result<(), String> {
    let shown = format!("apt-get {}", args.join(" "));
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

/// Runs `cargo test --workspace EXTRA` in the workspace root and exits with its status.
/// `--workspace` is left out when EXTRA picks packages (`-p NAME`), which it would override.
fn run_tests(extra: Vec<OsString>) -> ExitCode {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root()).arg("test");
    if !picks_packages(&extra) {
        command.arg("--workspace");
    }
    let status = command.args(extra).status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => ExitCode::from(s.code().map_or(1, |c| u8::try_from(c).unwrap_or(1))),
        Err(e) => fail(&format!("cannot run cargo test: {e}")),
    }
}

/// Whether cargo arguments (before a `--`) name packages: `-p NAME`, `-pNAME`, `--package …`.
fn picks_packages(args: &[OsString]) -> bool {
    args.iter()
        .map(|a| a.to_string_lossy())
        .take_while(|a| a != "--")
        .any(|a| a.starts_with("-p") || a == "--package" || a.starts_with("--package="))
}

/// The workspace root: the folder above this crate's.
fn workspace_root() -> PathBuf {
    // `cargo run` sets it for the checkout being worked in; the path compiled in is only a
    // fallback (a binary built in another checkout that shares the target directory would
    // otherwise test that checkout).
    let manifest = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// The tools of [`TOOLS`] that no folder of `path` holds.
fn missing_tools(path: &OsString) -> Vec<&'static Tool> {
    TOOLS
        .iter()
        .filter(|t| find_program(t.program, path).is_none())
        .collect()
}

/// The Debian packages that bring `tools`, each once, in table order.
fn packages_of(tools: &[&Tool]) -> Vec<&'static str> {
    let mut packages: Vec<&'static str> = Vec::new();
    for t in tools {
        if !packages.contains(&t.package) {
            packages.push(t.package);
        }
    }
    packages
}

/// `redis-server, openssl`: the programs' names, for messages.
fn program_list<'a>(tools: impl Iterator<Item = &'a Tool>) -> String {
    tools.map(|t| t.program).collect::<Vec<_>>().join(", ")
}

/// The message for a user who is not root (or has no apt-get): what is missing, who needs
/// it, and the exact command to run before trying again.
fn not_installed_message(missing: &[&Tool], packages: &[&str], has_apt_get: bool) -> String {
    let mut m = String::from("the tests need programs that are not on PATH:\n");
    for t in missing {
        m.push_str(&format!("  {:<14} for the {}\n", t.program, t.used_by));
    }
    if has_apt_get {
        m.push_str(&format!(
            "install them (this needs root) with\n  sudo apt-get install -y {}\n",
            packages.join(" ")
        ));
    } else {
        m.push_str(&format!(
            "install them with the system's package manager (Debian packages: {})\n",
            packages.join(" ")
        ));
    }
    m.push_str("then run `cargo xtask test` again");
    m
}

/// The first executable file called `program` in the folders of `path`.
fn find_program(program: &str, path: &OsString) -> Option<PathBuf> {
    env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

/// Whether `p` is a file that someone may execute.
fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// Whether this process runs as root (effective uid 0), as `id -u` tells.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.trim_ascii() == b"0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_is_named_once_for_all_its_programs() {
        let all: Vec<&Tool> = TOOLS.iter().collect();
        assert_eq!(
            packages_of(&all),
            [
                "redis-server",
                "mosquitto-clients",
                "chromium",
                "chromium-driver",
                "openssl"
            ]
        );
    }

    #[test]
    fn nothing_is_found_on_an_empty_path() {
        assert_eq!(missing_tools(&OsString::new()).len(), TOOLS.len());
    }

    #[test]
    fn named_packages_replace_the_whole_workspace() {
        let args = |s: &[&str]| s.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(picks_packages(&args(&["-p", "natter-store"])));
        assert!(picks_packages(&args(&["-pnatter-store"])));
        assert!(picks_packages(&args(&["--package=natter-store"])));
        assert!(!picks_packages(&args(&["--test", "operations"])));
        assert!(!picks_packages(&args(&["--", "-p"])));
    }

    #[test]
    fn the_message_names_the_command_to_run() {
        let missing = [&TOOLS[0], &TOOLS[1]];
        let m = not_installed_message(&missing, &packages_of(&missing), true);
        assert!(m.contains("sudo apt-get install -y redis-server mosquitto-clients\n"));
        assert!(m.contains("redis-server "));
        assert!(m.contains("mosquitto_pub "));
    }
}
