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
