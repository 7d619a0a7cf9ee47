//! `group.remove {group, members}`: an admin removes members (not herself: that is
//! `group.leave`). A removed member reads the message that says so, and nothing after it.

use natter_types::{Client, GroupId, UserId};
use serde_json::{json, Map, Value};

use super::{params, Answer, Method};
use crate::groups::describe;
use crate::wire::obj;
use crate::{Bridge, ChatError};

/// The parameters of `group.remove`.
pub(crate) struct GroupRemove {
    group: GroupId,
    members: Vec<UserId>,
}

impl Method for GroupRemove {
    fn parse(p: &Map<String, Value>) -> Result<Self, ChatError> {
        Ok(GroupRemove {
            group: params::group(p)?,
            members: params::members(p, true)?,
        })
    }

    async fn run(self, b: &Bridge, c: &Client) -> Result<Answer, ChatError> {
        if self.members.contains(&c.user) {
            return Err(ChatError::BadRequest(
                "to remove yourself, use group.leave".into(),
            ));
        }
        let _guard = b.groups.changing().await;
        let g = b.as_admin(&self.group, &c.user, "remove").await?;
        let gone: Vec<UserId> = self
            .members
            .into_iter()
            .filter(|u| g.member(u).is_some())
            .collect();
        if gone.is_empty() {
            return Ok(obj(json!({ "group": describe(&g) })));
        }
        let mut next = (*g).clone();
        next.members.retain(|m| !gone.contains(&m.user));
        b.members_changed(c, &g, next, "removed", &gone).await
    }
}
