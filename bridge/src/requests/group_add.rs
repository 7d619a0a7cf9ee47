//! `group.add {group, members}`: an admin adds members; those who do not consent to being
//! added (`limits.group_adds`) are invited instead. Members and invitees already there are
//! skipped.

use natter_store::Member;
use natter_types::{clock::now_ms, Client, GroupId, UserId};
use serde_json::{json, Map, Value};

use super::{params, Answer, Method};
use crate::groups::describe;
use crate::wire::obj;
use crate::{Bridge, ChatError};

/// The parameters of `group.add`.
pub(crate) struct GroupAdd {
    group: GroupId,
    members: Vec<UserId>,
}

impl Method for GroupAdd {
    fn parse(p: &Map<String, Value>) -> Result<Self, ChatError> {
        Ok(GroupAdd {
            group: params::group(p)?,
            members: params::members(p, true)?,
        })
    }

    async fn run(self, b: &Bridge, c: &Client) -> Result<Answer, ChatError> {
        let _guard = b.groups.changing().await;
        let g = b.as_admin(&self.group, &c.user, "add").await?;
        let new: Vec<UserId> = self
            .members
            .into_iter()
            .filter(|u| g.member(u).is_none() && g.invitation(u).is_none())
            .collect();
        if new.is_empty() {
            return Ok(obj(json!({ "group": describe(&g) })));
        }
        b.check_size(g.members.len() + g.invited.len() + new.len())?;
        b.check_exist(&new).await?;
        let (added, invited) = b.by_consent(&c.user, new).await?;
        b.check_may_join(&added).await?;
        let mut next = (*g).clone();
        let now = now_ms();
        let member = |u: &UserId| Member {
            user: u.clone(),
            admin: false,
            joined_ms: now,
        };
        next.members.extend(added.iter().map(member));
        next.invited.extend(invited.iter().map(member));
        let record = next.clone();
        let answer = if added.is_empty() {
            b.members_changed(c, &g, next, "invited", &invited).await?
        } else {
            b.members_changed(c, &g, next, "added", &added).await?
        };
        b.send_invitations(c, &record, &invited).await?;
        Ok(answer)
    }
}
