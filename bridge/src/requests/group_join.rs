//! `group.join {group}`: an invited user becomes a member.

use natter_store::Member;
use natter_types::{clock::now_ms, Client, GroupId};
use serde_json::{json, Map, Value};

use super::{params, Answer, Method};
use crate::wire::obj;
use crate::{Bridge, ChatError};

/// The parameters of `group.join`.
pub(crate) struct GroupJoin {
    group: GroupId,
}

impl Method for GroupJoin {
    fn parse(p: &Map<String, Value>) -> Result<Self, ChatError> {
        Ok(GroupJoin {
            group: params::group(p)?,
        })
    }

    async fn run(self, b: &Bridge, c: &Client) -> Result<Answer, ChatError> {
        let _guard = b.groups.changing().await;
        let g = b.invited_to(&self.group, &c.user).await?;
        b.check_size(g.members.len() + 1)?;
        b.check_may_join(std::slice::from_ref(&c.user)).await?;
        let mut next = (*g).clone();
        next.invited.retain(|m| m.user != c.user);
        next.members.push(Member {
            user: c.user.clone(),
            admin: false,
            joined_ms: now_ms(),
        });
        let who = std::slice::from_ref(&c.user);
        let body = format!("{} joined", c.user);
        let desc = b.announce(c, Some(&g), next, "joined", who, body).await?;
        Ok(obj(json!({ "group": desc })))
    }
}
