//! Groups: their records (written in the batch of the system message that announces a change)
//! and the index of who is in which group now.

use natter_store::GroupRecord;
use natter_types::{GroupId, UserId};
use scylla::value::CqlValue;

use super::exec::Write;
use super::values::{from_json, text, to_json};
use super::CassandraStore;
use crate::{corrupt, Result};

impl CassandraStore {
    /// The writes that make `g` the group's state and its membership index follow.
    pub(super) async fn group_writes(
        &self,
        g: &GroupRecord,
        writes: &mut Vec<Write>,
    ) -> Result<()> {
        let old: Option<(String,)> = self.one(&self.st.group_get, (g.id.as_str(),)).await?;
        if let Some((old,)) = old {
            let old: GroupRecord = from_json(&old)?;
            for m in &old.members {
                if g.member(&m.user).is_none() {
                    writes.push(self.w(
                        &self.st.member_delete,
                        vec![text(m.user.as_str()), text(g.id.as_str())],
                    ));
                }
            }
        }
        for m in &g.members {
            writes.push(self.w(
                &self.st.member_put,
                vec![text(m.user.as_str()), text(g.id.as_str())],
            ));
        }
        writes.push(self.w(
            &self.st.group_put,
            vec![text(g.id.as_str()), CqlValue::Text(to_json(g)?)],
        ));
        Ok(())
    }
}

/// [`natter_store::Store::group`].
pub(super) async fn group(s: &CassandraStore, id: &GroupId) -> Result<Option<GroupRecord>> {
    let row: Option<(Option<String>,)> = s.one(&s.st.group_get, (id.as_str(),)).await?;
    row.and_then(|(r,)| r).map(|r| from_json(&r)).transpose()
}

/// [`natter_store::Store::groups_of`].
pub(super) async fn groups_of(s: &CassandraStore, user: &UserId) -> Result<Vec<GroupId>> {
    let rows: Vec<(String,)> = s.all(&s.st.groups_of, (user.as_str(),)).await?;
    rows.into_iter()
        .map(|(g,)| GroupId::new(&g).map_err(corrupt))
        .collect()
}
