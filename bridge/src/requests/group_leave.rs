//! `group.leave {group}`: the asker leaves; if she was the last admin, another member becomes
//! one (the system message says who).

use natter_types::{Client, GroupId};
use serde_json::{Map, Value};

use super::{params, Answer, Method};
use crate::groups::without;
use crate::{Bridge, ChatError};

/// The parameters of `group.leave`.
pub(crate) struct GroupLeave {
    group: GroupId,
}

impl Method for GroupLeave {
    fn parse(p: &Map<String, Value>) -> Result<Self, ChatError> {
        Ok(GroupLeave {
            group: params::group(p)?,
        })
    }

    async fn run(self, b: &Bridge, c: &Client) -> Result<Answer, ChatError> {
        let _guard = b.groups.changing().await;
        let g = b.groups.of_member(&self.group, &c.user).await?;
        let (next, body) = without(&g, &c.user, format!("{} left", c.user));
        let who = std::slice::from_ref(&c.user);
        b.announce(c, Some(&g), next, "left", who, body).await?;
        Ok(Map::new())
    }
}
