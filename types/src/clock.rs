//! natter's one clock: wall time in milliseconds since the Unix epoch.
//!
//! Every timestamp natter stores or sends (`ts`, `last_seen`, `created`, token times) reads
//! these functions, so a test or a future clock source changes one place. The time inside ids
//! (ULIDs: [`crate::MsgId`], [`crate::GroupId`], [`crate::MediaId`]) is read by the `ulid` crate
//! from the same system clock, not through here.

/// Milliseconds since the Unix epoch; 0 if the system clock is set before 1970.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch (token `iat`/`exp`, signed URL expiry).
pub fn now_secs() -> u64 {
    now_ms() / 1000
}
