//! The small checks every section's validation is made of, and the error they all return.
//!
//! Each check names the dotted key, the value as written and what would have been accepted, so
//! every refusal reads the same. Nothing here knows about a particular section.

use std::ops::RangeInclusive;

use crate::ConfigError;

/// Refuses a value: `key` = `value`, and what would have been accepted.
pub(crate) fn invalid(key: &str, value: String, expected: &str) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key: key.into(),
        value,
        expected: expected.into(),
    })
}

/// Refuses `n` at `key` unless it lies in `range`; `expected` says the range in words.
pub(crate) fn in_range(
    key: &str,
    n: u64,
    range: RangeInclusive<u64>,
    expected: &str,
) -> Result<(), ConfigError> {
    if !range.contains(&n) {
        return invalid(key, n.to_string(), expected);
    }
    Ok(())
}

/// Refuses `n` at `key` if it is 0.
pub(crate) fn at_least_one(key: &str, n: u64) -> Result<(), ConfigError> {
    in_range(key, n, 1..=u64::MAX, "at least 1")
}

/// Refuses `s` at `key` unless it is empty or an `http://` or `https://` URL.
pub(crate) fn empty_or_http_url(key: &str, s: &str) -> Result<(), ConfigError> {
    if !(s.is_empty() || s.starts_with("http://") || s.starts_with("https://")) {
        return invalid(key, format!("{s:?}"), "an http:// or https:// URL");
    }
    Ok(())
}

/// Refuses a list of web origins at `key` unless each is `http(s)://host[:port]`, as a browser
/// writes it in `Origin` (no path, no trailing slash, no user info); `allow_any` also lets the
/// list be exactly `["*"]`.
pub(crate) fn web_origins(key: &str, list: &[String], allow_any: bool) -> Result<(), ConfigError> {
    if allow_any && list.len() == 1 && list[0] == "*" {
        return Ok(());
    }
    let expected = if allow_any {
        "origins such as \"https://chat.example.com\" or \"http://localhost:3000\" (scheme, host, optional port; no path), or [\"*\"] alone"
    } else {
        "origins such as \"https://chat.example.com\" or \"http://localhost:3000\" (scheme, host, optional port; no path)"
    };
    for (i, o) in list.iter().enumerate() {
        let host = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"));
        let ok = host.is_some_and(|h| {
            !h.is_empty()
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        });
        if !ok {
            return invalid(&format!("{key}[{i}]"), format!("{o:?}"), expected);
        }
    }
    Ok(())
}
