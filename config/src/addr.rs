//! Socket addresses as config values: `"127.0.0.1:1883"`, with `""` meaning "off" where a
//! listener is optional.
//!
//! Only parsing lives here; whether the address is free is for the code that listens on it.

use std::fmt;
use std::net::SocketAddr;

use serde::Deserializer;

const EXPECTED: &str = "a socket address like \"127.0.0.1:1883\"";

struct AddrVisitor;

impl serde::de::Visitor<'_> for AddrVisitor {
    type Value = Option<SocketAddr>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.is_empty() {
            return Ok(None);
        }
        v.parse()
            .map(Some)
            .map_err(|_| E::custom(format!("invalid value {v:?}: expected {EXPECTED}")))
    }
}

/// A required address; `""` is refused.
pub(crate) fn addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    d.deserialize_str(AddrVisitor)?
        .ok_or_else(|| serde::de::Error::custom(format!("invalid value \"\": expected {EXPECTED}")))
}

/// An optional address; `""` (or no key) is `None`.
pub(crate) fn opt_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    d.deserialize_str(AddrVisitor)
}
