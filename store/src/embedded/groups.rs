//! Groups: their records (written with the system message that announces a change) and the
//! index of who is in which group now.

use natter_types::{GroupId, UserId};

use super::db::{corrupt, Tables};
use super::tables::{get_json, rows, text_at, to_json, Key};
use super::{EmbeddedStore, Tx};
use crate::{GroupRecord, Result};

/// `(user, group)`'s key in `memberships`.
pub(super) fn membership_key(user: &UserId, group: &str) -> Vec<u8> {
    Key::name(user.as_str()).last(group)
}

/// Writes a group record and keeps the membership index in step with it. Runs in the
/// transaction of the message that announces the change.
pub(super) fn put_group(tx: &mut Tx<'_>, t: &Tables, g: &GroupRecord) -> Result<()> {
    let old: Option<GroupRecord> = get_json(&*tx, &t.groups, g.id.as_str().as_bytes())?;
    if let Some(old) = old {
        for m in &old.members {
            if g.member(&m.user).is_none() {
                tx.remove(&t.memberships, membership_key(&m.user, g.id.as_str()));
            }
        }
    }
    for m in &g.members {
        tx.insert(&t.memberships, membership_key(&m.user, g.id.as_str()), b"");
    }
    tx.insert(&t.groups, g.id.as_str(), to_json(g)?);
    Ok(())
}

/// [`crate::Store::group`].
pub(super) async fn group(store: &EmbeddedStore, id: &GroupId) -> Result<Option<GroupRecord>> {
    let id = id.clone();
    store
        .read(move |snap, t| get_json(snap, &t.groups, id.as_str().as_bytes()))
        .await
}

/// [`crate::Store::groups_of`].
pub(super) async fn groups_of(store: &EmbeddedStore, user: &UserId) -> Result<Vec<GroupId>> {
    let user = user.clone();
    store
        .read(move |snap, t| {
            let prefix = Key::name(user.as_str()).done();
            let mut out = Vec::new();
            for row in rows(snap, &t.memberships, &prefix) {
                let (k, _) = row?;
                out.push(GroupId::new(text_at(&k, prefix.len())?).map_err(corrupt)?);
            }
            Ok(out)
        })
        .await
}

/// The groups `user` is in, by the membership index (for removing a user).
pub(super) fn memberships_of(tx: &Tx<'_>, t: &Tables, user: &UserId) -> Result<Vec<String>> {
    let prefix = Key::name(user.as_str()).done();
    rows(tx, &t.memberships, &prefix)
        .map(|row| row.and_then(|(k, _)| text_at(&k, prefix.len()).map(str::to_owned)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::tables::name_at;

    #[test]
    fn a_membership_key_splits_back_into_user_and_group() {
        let k = membership_key(&UserId::new("ann").unwrap(), "g1");
        let (user, at) = name_at(&k, 0).unwrap();
        assert_eq!((user, text_at(&k, at).unwrap()), ("ann", "g1"));
    }
}
