//! Groups: their records (written with the system message that announces a change) and the
//! index of who is in which group now.

use natter_types::{GroupId, UserId};
use redb::{ReadableTable, WriteTransaction};

use super::db::{corrupt, storage};
use super::tables::{from_json, from_json_opt, to_json, user_prefix, GROUPS, MEMBERSHIPS};
use super::EmbeddedStore;
use crate::{GroupRecord, Result};

/// Writes a group record and keeps the membership index in step with it. Runs in the
/// transaction of the message that announces the change.
pub(super) fn put_group(txn: &WriteTransaction, g: &GroupRecord) -> Result<()> {
    let mut groups = txn.open_table(GROUPS).map_err(storage)?;
    let mut members = txn.open_table(MEMBERSHIPS).map_err(storage)?;
    let old: Option<GroupRecord> = match groups.get(g.id.as_str()).map_err(storage)? {
        Some(v) => Some(from_json(v.value())?),
        None => None,
    };
    if let Some(old) = old {
        for m in &old.members {
            if g.member(&m.user).is_none() {
                members
                    .remove((m.user.as_str(), g.id.as_str()))
                    .map_err(storage)?;
            }
        }
    }
    for m in &g.members {
        members
            .insert((m.user.as_str(), g.id.as_str()), ())
            .map_err(storage)?;
    }
    let bytes = to_json(g)?;
    groups
        .insert(g.id.as_str(), bytes.as_slice())
        .map_err(storage)?;
    Ok(())
}

/// [`crate::Store::group`].
pub(super) async fn group(store: &EmbeddedStore, id: &GroupId) -> Result<Option<GroupRecord>> {
    let id = id.clone();
    store
        .read(move |txn| {
            let t = txn.open_table(GROUPS).map_err(storage)?;
            from_json_opt(t.get(id.as_str()).map_err(storage)?)
        })
        .await
}

/// [`crate::Store::groups_of`].
pub(super) async fn groups_of(store: &EmbeddedStore, user: &UserId) -> Result<Vec<GroupId>> {
    let user = user.clone();
    store
        .read(move |txn| {
            let t = txn.open_table(MEMBERSHIPS).map_err(storage)?;
            let mut out = Vec::new();
            for row in t.range(user_prefix(&user)).map_err(storage)? {
                let (k, _) = row.map_err(storage)?;
                out.push(GroupId::new(k.value().1).map_err(corrupt)?);
            }
            Ok(out)
        })
        .await
}
