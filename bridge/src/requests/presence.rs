//! `presence {users}`: who of up to 100 users is online, for users the asker shares a chat
//! with (`not_allowed` for the others, `unknown` when the presence backend is down).

use natter_types::{Client, UserId};
use serde_json::{json, Map, Value};

use super::{Answer, Method};
use crate::{Bridge, ChatError};

/// Most users one `presence` request asks about.
pub const MAX_PRESENCE_USERS: usize = 100;
/// Users a `presence` request may ask about per token of the request allowance it takes.
const PRESENCE_USERS_PER_TOKEN: usize = 10;

/// The parameters of `presence`: the users as asked (a name that is not a user id is
/// answered `not_allowed`, not refused).
pub(crate) struct Presence {
    users: Vec<Value>,
}

impl Method for Presence {
    fn parse(p: &Map<String, Value>) -> Result<Self, ChatError> {
        let users = p
            .get("users")
            .and_then(Value::as_array)
            .filter(|u| !u.is_empty() && u.len() <= MAX_PRESENCE_USERS)
            .ok_or_else(|| {
                ChatError::BadRequest(format!(
                    "`users` must list 1 to {MAX_PRESENCE_USERS} user ids"
                ))
            })?;
        Ok(Presence {
            users: users.clone(),
        })
    }

    async fn run(self, b: &Bridge, c: &Client) -> Result<Answer, ChatError> {
        // Each user asked about is work (store reads): beyond the request's own token, every
        // ten users take one more from the user's request allowance.
        let cost = (self.users.len() / PRESENCE_USERS_PER_TOKEN) as f64;
        if !b.request_rate.allow_n(&c.user, cost) {
            return Err(ChatError::RateLimited(
                "too many presence look-ups: slow down and ask again".into(),
            ));
        }
        let my_groups = b.groups_set(&c.user).await?;
        let mut out = Vec::with_capacity(self.users.len());
        for u in &self.users {
            let name = u.as_str().unwrap_or_default();
            let Ok(user) = UserId::new(name) else {
                out.push(json!({"user": u, "state": "not_allowed"}));
                continue;
            };
            if !b.may_see_presence_in(&c.user, &my_groups, &user).await {
                out.push(json!({"user": user, "state": "not_allowed"}));
                continue;
            }
            out.push(match b.presence.seen(&user).await {
                Ok(s) => json!({
                    "user": user,
                    "state": if s.online { "online" } else { "offline" },
                    "last_seen": s.last_seen,
                }),
                Err(_) => json!({"user": user, "state": "unknown"}),
            });
        }
        let mut m = Map::new();
        m.insert("presence".into(), Value::Array(out));
        Ok(m)
    }
}
