//! `group.info {group}`: the group as its members see it.

use natter_types::{Client, GroupId};
use serde_json::{json, Map, Value};

use super::{params, Answer, Method};
use crate::groups::describe;
use crate::wire::obj;
use crate::{Bridge, ChatError};

/// The parameters of `group.info`.
pub(crate) struct GroupInfo {
    group: GroupId,
}

impl Method for GroupInfo {
    fn parse(p: &Map<String, Value>) -> Result<Self, ChatError> {
        Ok(GroupInfo {
            group: params::group(p)?,
        })
    }

    async fn run(self, b: &Bridge, c: &Client) -> Result<Answer, ChatError> {
        let g = b.groups.of_member(&self.group, &c.user).await?;
        Ok(obj(json!({ "group": describe(&g) })))
    }
}
