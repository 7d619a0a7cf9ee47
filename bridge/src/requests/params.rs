//! Reading request parameters that several methods share: a group, a member list, a page
//! limit, a required string. Each error names the field and what was expected.

use std::collections::HashSet;

use natter_types::{GroupId, UserId};
use serde_json::{Map, Value};

use crate::ChatError;

/// `group`: a group id, bare or as `g/{id}`.
pub(crate) fn group(params: &Map<String, Value>) -> Result<GroupId, ChatError> {
    let raw = params.get("group").and_then(Value::as_str).ok_or_else(|| {
        ChatError::BadRequest("`group` (a group id or g/{id}) is required".into())
    })?;
    let id = raw.strip_prefix("g/").unwrap_or(raw);
    GroupId::new(id).map_err(|e| ChatError::BadRequest(e.to_string()))
}

/// `members`: user ids, each once; an empty list when absent and not `required`.
pub(crate) fn members(
    params: &Map<String, Value>,
    required: bool,
) -> Result<Vec<UserId>, ChatError> {
    let list = match params.get("members") {
        None | Some(Value::Null) if !required => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        _ => {
            return Err(ChatError::BadRequest(
                "`members` must be an array of user ids".into(),
            ))
        }
    };
    let mut out: Vec<UserId> = Vec::with_capacity(list.len());
    // A set beside the list: a 64 KiB payload names thousands of ids, and checking each against
    // the list would cost their square.
    let mut seen = HashSet::with_capacity(list.len());
    for v in list {
        let s = v
            .as_str()
            .ok_or_else(|| ChatError::BadRequest("`members` must be user id strings".into()))?;
        let u = UserId::new(s).map_err(|e| ChatError::BadRequest(e.to_string()))?;
        if seen.insert(u.clone()) {
            out.push(u);
        }
    }
    Ok(out)
}

/// `limit`: 1 to `max`, `default` when absent.
pub(crate) fn limit(
    params: &Map<String, Value>,
    default: usize,
    max: usize,
) -> Result<usize, ChatError> {
    match params.get("limit") {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 && n as usize <= max => Ok(n as usize),
            _ => Err(ChatError::BadRequest(format!(
                "`limit` must be a number from 1 to {max}"
            ))),
        },
    }
}

/// A required string field.
pub(crate) fn string<'a>(params: &'a Map<String, Value>, key: &str) -> Result<&'a str, ChatError> {
    params
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ChatError::BadRequest(format!("`{key}` (a string) is required")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any JSON value at all, a few levels deep.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            "(g/)?[a-z0-9]{0,30}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::hash_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The group parameters of any request: read or refused, never a panic; what is read
        /// is valid ids, each member once.
        #[test]
        fn group_request_parameters_are_read_or_refused(g in json_value(), m in json_value()) {
            let mut p = Map::new();
            p.insert("group".into(), g);
            p.insert("members".into(), m);
            if let Ok(id) = group(&p) {
                prop_assert!(GroupId::new(id.as_str()).is_ok());
            }
            if let Ok(list) = members(&p, true) {
                let unique: HashSet<&UserId> = list.iter().collect();
                prop_assert_eq!(unique.len(), list.len());
                prop_assert!(list.iter().all(|u| UserId::new(u.as_str()).is_ok()));
            }
        }
    }
}
