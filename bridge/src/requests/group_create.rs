//! `group.create {name, members?}`: a new group with the asker as its admin; members who do
//! not consent to being added (`limits.group_adds`) are invited instead.

use natter_store::{GroupRecord, Member};
use natter_types::{clock::now_ms, Client, GroupId, UserId};
use serde_json::{json, Map, Value};

use super::{params, Answer, Method};
use crate::groups::MAX_NAME_CHARS;
use crate::wire::obj;
use crate::{Bridge, ChatError};

/// The parameters of `group.create`.
pub(crate) struct GroupCreate {
    name: String,
    members: Vec<UserId>,
}

impl Method for GroupCreate {
    fn parse(p: &Map<String, Value>) -> Result<Self, ChatError> {
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or("");
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(ChatError::BadRequest(format!(
                "`name` must be 1 to {MAX_NAME_CHARS} characters"
            )));
        }
        Ok(GroupCreate {
            name: name.to_owned(),
            members: params::members(p, false)?,
        })
    }

    async fn run(self, b: &Bridge, c: &Client) -> Result<Answer, ChatError> {
        let mut others = self.members;
        others.retain(|u| *u != c.user);
        b.check_size(others.len() + 1)?;
        b.check_exist(&others).await?;
        let (others, invited) = b.by_consent(&c.user, others).await?;
        b.check_may_join(&others).await?;
        b.check_may_join(std::slice::from_ref(&c.user)).await?;
        let now = now_ms();
        let member = |u: &UserId, admin| Member {
            user: u.clone(),
            admin,
            joined_ms: now,
        };
        let mut members = vec![member(&c.user, true)];
        members.extend(others.iter().map(|u| member(u, false)));
        let g = GroupRecord {
            id: GroupId::generate(),
            name: self.name.clone(),
            created_by: c.user.clone(),
            created_ms: now,
            members,
            invited: invited.iter().map(|u| member(u, false)).collect(),
        };
        let record = g.clone();
        let _guard = b.groups.changing().await;
        let body = format!("{} created the group \"{}\"", c.user, self.name);
        let desc = b.announce(c, None, g, "created", &others, body).await?;
        b.send_invitations(c, &record, &invited).await?;
        Ok(obj(json!({ "group": desc })))
    }
}
