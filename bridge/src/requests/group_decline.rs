//! `group.decline {group}`: an invited user says no; the invitation is gone.

use natter_types::{Client, GroupId};
use serde_json::{Map, Value};

use super::{params, Answer, Method};
use crate::{Bridge, ChatError};

/// The parameters of `group.decline`.
pub(crate) struct GroupDecline {
    group: GroupId,
}

impl Method for GroupDecline {
    fn parse(p: &Map<String, Value>) -> Result<Self, ChatError> {
        Ok(GroupDecline {
            group: params::group(p)?,
        })
    }

    async fn run(self, b: &Bridge, c: &Client) -> Result<Answer, ChatError> {
        let _guard = b.groups.changing().await;
        let g = b.invited_to(&self.group, &c.user).await?;
        let next = g.without(&c.user);
        let body = format!("{} declined the invitation", c.user);
        let who = std::slice::from_ref(&c.user);
        b.announce(c, Some(&g), next, "declined", who, body).await?;
        Ok(Map::new())
    }
}
