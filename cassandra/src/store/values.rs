//! Conversions between the store's types and CQL values and columns.

use natter_types::MsgId;
use scylla::value::CqlValue;

use crate::buckets::id_blob;
use crate::{corrupt, Result};

/// A `text` value.
pub(super) fn text(s: &str) -> CqlValue {
    CqlValue::Text(s.to_owned())
}

/// A `bigint` value (saturating: CQL has no unsigned integers).
pub(super) fn big(n: u64) -> CqlValue {
    CqlValue::BigInt(int64(n))
}

/// A message id as its `blob` value.
pub(super) fn blob(id: MsgId) -> CqlValue {
    CqlValue::Blob(id_blob(id))
}

/// `n` as a `bigint` column's Rust type, saturating.
pub(super) fn int64(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

/// A stored `bigint` as a count or time (never negative).
pub(super) fn as_u64(n: i64) -> u64 {
    n.max(0) as u64
}

/// A record as the JSON text kept in a `text` column.
pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(corrupt)
}

/// The record a `text` column's JSON holds.
pub(super) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(corrupt)
}
