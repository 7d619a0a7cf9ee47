//! The small checks every section's validation is made of, and the error they all return.
//!
//! Each check names the dotted key, the value as written and what would have been accepted, so
//! every refusal reads the same. Nothing here knows about a particular section.

use crate::ConfigError;

/// Refuses a value: `key` = `value`, and what would have been accepted.
pub(crate) fn invalid(key: &str, value: String, expected: &str) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key: key.into(),
        value,
        expected: expected.into(),
    })
}

/// Refuses `n` at `key` if it is 0.
pub(crate) fn at_least_one(key: &str, n: u64) -> Result<(), ConfigError> {
    if n == 0 {
        return invalid(key, "0".into(), "at least 1");
    }
    Ok(())
}

/// Refuses `s` at `key` unless it is empty or an `http://` or `https://` URL.
pub(crate) fn empty_or_http_url(key: &str, s: &str) -> Result<(), ConfigError> {
    if !(s.is_empty() || s.starts_with("http://") || s.starts_with("https://")) {
        return invalid(key, format!("{s:?}"), "an http:// or https:// URL");
    }
    Ok(())
}
