//! Groups: create, add, remove, leave, info; admin rules; system messages and `u/{me}/e`
//! events for every change.
//!
//! A change is one store append: the `system` message that announces it carries the group's
//! new record, so membership and the chat's account of it are committed together. Changes are
//! serialised by one lock (they are rare next to messages); sends read the group from a cache
//! that every change replaces. Both assume one natter node; with several, the owner of a group
//! (as for a user's seq) would apply its changes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use natter_config::GroupAdds;
use natter_store::{Appended, Content, GroupRecord, Member, NewMessage, Store};
use natter_types::{ChatAddr, ChatKey, Client, GroupId, UserId};
use serde_json::{json, Map, Value};

use crate::wire::{obj, MessageOut};
use crate::{now_ms, Bridge, ChatError};

/// Longest group name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// The newest messages of a one-to-one chat looked at to tell whether a user has written to
/// whoever adds her to a group (`limits.group_adds = "contacts"`).
const CONTACT_SCAN: usize = 200;

/// In-memory view of groups, for the send path.
#[derive(Default)]
pub(crate) struct Groups {
    cache: std::sync::RwLock<HashMap<GroupId, Arc<GroupRecord>>>,
    changes: tokio::sync::Mutex<()>,
}

fn group_param(params: &Map<String, Value>) -> Result<GroupId, ChatError> {
    let raw = params.get("group").and_then(Value::as_str).ok_or_else(|| {
        ChatError::BadRequest("`group` (a group id or g/{id}) is required".into())
    })?;
    let id = raw.strip_prefix("g/").unwrap_or(raw);
    GroupId::new(id).map_err(|e| ChatError::BadRequest(e.to_string()))
}

fn members_param(params: &Map<String, Value>, required: bool) -> Result<Vec<UserId>, ChatError> {
    let list = match params.get("members") {
        None | Some(Value::Null) if !required => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        _ => {
            return Err(ChatError::BadRequest(
                "`members` must be an array of user ids".into(),
            ))
        }
    };
    let mut out: Vec<UserId> = Vec::with_capacity(list.len());
    for v in list {
        let s = v
            .as_str()
            .ok_or_else(|| ChatError::BadRequest("`members` must be user id strings".into()))?;
        let u = UserId::new(s).map_err(|e| ChatError::BadRequest(e.to_string()))?;
        if !out.contains(&u) {
            out.push(u);
        }
    }
    Ok(out)
}

/// A group change as committed: the record after it, the system message, the event.
pub(crate) struct Change {
    /// The group after the change.
    pub group: GroupRecord,
    /// The system message and every reader's seq.
    pub appended: Appended,
    /// `{"action", "by", "members"}`.
    pub event: Value,
}

/// Commits `g` with a system message from `actor`, in one store append.
///
/// The readers are everyone in the group before or after the change, so a member who is
/// removed or leaves reads the message that says so, and nothing after it.
pub(crate) async fn commit_change(
    store: &dyn Store,
    actor: &Client,
    before: Option<&GroupRecord>,
    g: GroupRecord,
    action: &str,
    members: &[UserId],
    body: String,
) -> Result<Change, ChatError> {
    let mut readers: Vec<UserId> = g.members.iter().map(|m| m.user.clone()).collect();
    for m in before.map(|b| b.members.as_slice()).unwrap_or_default() {
        if g.member(&m.user).is_none() {
            readers.push(m.user.clone());
        }
    }
    let event = json!({"action": action, "by": actor.user, "members": members});
    let appended = store
        .append(NewMessage {
            chat: ChatAddr::Group(g.id.clone()).key(&actor.user),
            from: actor.user.clone(),
            dev: actor.device.clone(),
            cid: None,
            readers,
            content: Content {
                kind: "system".into(),
                body,
                media: None,
                reply_to: None,
                ttl: None,
                event: Some(event.clone()),
            },
            group_update: Some(g.clone()),
            media: None,
        })
        .await?;
    Ok(Change {
        group: g,
        appended,
        event,
    })
}

/// `g` without `user` ([`GroupRecord::without`]), and `body` telling who became admin if
/// someone did.
pub(crate) fn without(g: &GroupRecord, user: &UserId, mut body: String) -> (GroupRecord, String) {
    let next = g.without(user);
    if let Some(heir) = next
        .members
        .iter()
        .find(|m| m.admin && !g.member(&m.user).is_some_and(|was| was.admin))
    {
        body.push_str(&format!("; {} is now an admin", heir.user));
    }
    (next, body)
}

/// The `group` object of answers and events.
pub(crate) fn describe(g: &GroupRecord) -> Value {
    json!({
        "id": g.id,
        "chat": format!("g/{}", g.id),
        "name": g.name,
        "created_by": g.created_by,
        "created": g.created_ms,
        "members": g.members.iter().map(|m| m.user.as_str()).collect::<Vec<_>>(),
        "admins": g.members.iter().filter(|m| m.admin).map(|m| m.user.as_str()).collect::<Vec<_>>(),
        "invited": g.invited.iter().map(|m| m.user.as_str()).collect::<Vec<_>>(),
    })
}

impl Bridge {
    /// The group, from the cache or the store.
    pub(crate) async fn group(&self, id: &GroupId) -> Result<Option<Arc<GroupRecord>>, ChatError> {
        if let Some(g) = self
            .groups
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return Ok(Some(g.clone()));
        }
        let Some(g) = self.store.group(id).await? else {
            return Ok(None);
        };
        let g = Arc::new(g);
        self.groups
            .cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), g.clone());
        Ok(Some(g))
    }

    /// The group if `user` is a member; the same error whether it does not exist or they are
    /// not in it, so group ids cannot be probed.
    pub(crate) async fn group_of_member(
        &self,
        id: &GroupId,
        user: &UserId,
    ) -> Result<Arc<GroupRecord>, ChatError> {
        match self.group(id).await? {
            Some(g) if g.member(user).is_some() => Ok(g),
            _ => Err(ChatError::NotAuthorized(format!(
                "you are not a member of group {id}"
            ))),
        }
    }

    /// Every user exists and may join one more group (`limits.max_groups_per_user`).
    async fn check_may_join(&self, users: &[UserId]) -> Result<(), ChatError> {
        let max = self.config.limits.max_groups_per_user;
        for u in users {
            if self.store.user(u).await?.is_none() {
                return Err(ChatError::UnknownUser(u.to_string()));
            }
            if self.store.groups_of(u).await?.len() >= max {
                return Err(ChatError::Limit(format!(
                    "{u} is already in {max} groups, the most a user may join"
                )));
            }
        }
        Ok(())
    }

    /// Every user exists (an invitation takes no group allowance of theirs).
    async fn check_exist(&self, users: &[UserId]) -> Result<(), ChatError> {
        for u in users {
            if self.store.user(u).await?.is_none() {
                return Err(ChatError::UnknownUser(u.to_string()));
            }
        }
        Ok(())
    }

    /// Whether `user` lets `adder` add her to a group without asking: always with
    /// `limits.group_adds = "anyone"`; with `"contacts"`, if she has written to `adder` in their
    /// one-to-one chat (among its newest messages).
    async fn consents(&self, adder: &UserId, user: &UserId) -> Result<bool, ChatError> {
        match self.config.limits.group_adds {
            GroupAdds::Anyone => Ok(true),
            GroupAdds::Contacts => {
                let chat = ChatKey::direct(adder, user);
                let (recent, _) = self.store.history(&chat, None, CONTACT_SCAN).await?;
                Ok(recent
                    .iter()
                    .any(|m| m.from == *user && m.content.kind != "system"))
            }
        }
    }

    /// `users` split into who may be added at once and who is invited instead.
    async fn by_consent(
        &self,
        adder: &UserId,
        users: Vec<UserId>,
    ) -> Result<(Vec<UserId>, Vec<UserId>), ChatError> {
        let (mut now, mut ask) = (Vec::new(), Vec::new());
        for u in users {
            if self.consents(adder, &u).await? {
                now.push(u);
            } else {
                ask.push(u);
            }
        }
        Ok((now, ask))
    }

    /// Tells each of `invited` in their one-to-one chat with `by` that they were invited to
    /// `g`: a system message, stored (so an offline user finds it with `sync`) and delivered.
    async fn send_invitations(
        &self,
        by: &Client,
        g: &GroupRecord,
        invited: &[UserId],
    ) -> Result<(), ChatError> {
        for u in invited {
            let event = json!({
                "action": "invited",
                "by": by.user,
                "members": [u],
                "group": {"id": g.id, "chat": format!("g/{}", g.id), "name": g.name},
            });
            let appended = self
                .store
                .append(NewMessage {
                    chat: ChatKey::direct(&by.user, u),
                    from: by.user.clone(),
                    dev: by.device.clone(),
                    cid: None,
                    readers: vec![u.clone(), by.user.clone()],
                    content: Content {
                        kind: "system".into(),
                        body: format!("{} invited {u} to \"{}\"", by.user, g.name),
                        media: None,
                        reply_to: None,
                        ttl: None,
                        event: Some(event),
                    },
                    group_update: None,
                    media: None,
                })
                .await?;
            self.deliver(&appended).await;
        }
        Ok(())
    }

    fn check_size(&self, n: usize) -> Result<(), ChatError> {
        let max = self.config.limits.max_group_members;
        if n > max {
            return Err(ChatError::Limit(format!(
                "a group has at most {max} members ({n} asked)"
            )));
        }
        Ok(())
    }

    /// The group, if `user` is an admin of it (`verb` names what they tried, for the error).
    async fn as_admin(
        &self,
        id: &GroupId,
        user: &UserId,
        verb: &str,
    ) -> Result<Arc<GroupRecord>, ChatError> {
        let g = self.group_of_member(id, user).await?;
        if !g.member(user).is_some_and(|m| m.admin) {
            return Err(ChatError::NotAuthorized(format!(
                "only admins {verb} members"
            )));
        }
        Ok(g)
    }

    /// Commits `g` with a system message from `actor`, then tells the readers (see
    /// [`commit_change`]). Returns the group's new description.
    async fn announce(
        &self,
        actor: &Client,
        before: Option<&GroupRecord>,
        g: GroupRecord,
        action: &str,
        members: &[UserId],
        body: String,
    ) -> Result<Value, ChatError> {
        let change = commit_change(&*self.store, actor, before, g, action, members, body).await?;
        Ok(self.tell_change(&change).await)
    }

    /// After a committed change: the cache holds the new record, every reader gets the system
    /// message and the `group` event. Returns the group's description.
    pub(crate) async fn tell_change(&self, change: &Change) -> Value {
        let g = Arc::new(change.group.clone());
        self.groups
            .cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(g.id.clone(), g.clone());
        self.deliver(&change.appended).await;
        let desc = describe(&g);
        let mut ev = change.event.clone();
        ev["type"] = json!("group");
        ev["group"] = desc.clone();
        let ev = bytes::Bytes::from(ev.to_string());
        for (reader, _) in &change.appended.seqs {
            self.broker
                .publish(&format!("u/{reader}/e"), ev.clone(), true, false)
                .await;
        }
        desc
    }

    /// Announces that `actor` `action` (`added`, `removed`) `who`, and answers with the group.
    async fn members_changed(
        &self,
        actor: &Client,
        before: &GroupRecord,
        next: GroupRecord,
        action: &str,
        who: &[UserId],
    ) -> Result<Map<String, Value>, ChatError> {
        let names: Vec<&str> = who.iter().map(UserId::as_str).collect();
        let body = format!("{} {action} {}", actor.user, names.join(", "));
        let desc = self
            .announce(actor, Some(before), next, action, who, body)
            .await?;
        Ok(obj(json!({ "group": desc })))
    }

    /// Publishes a stored message to each reader's devices, each with their own seq.
    pub(crate) async fn deliver(&self, appended: &Appended) {
        let m = &appended.message;
        for (reader, seq) in &appended.seqs {
            let out = MessageOut::new(m, reader, Some(*seq)).bytes();
            self.broker
                .publish(&format!("u/{reader}/m"), out, true, false)
                .await;
        }
    }

    pub(crate) async fn group_create(
        &self,
        c: &Client,
        p: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ChatError> {
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
        let mut others = members_param(p, false)?;
        others.retain(|u| *u != c.user);
        self.check_size(others.len() + 1)?;
        self.check_exist(&others).await?;
        let (others, invited) = self.by_consent(&c.user, others).await?;
        self.check_may_join(&others).await?;
        self.check_may_join(std::slice::from_ref(&c.user)).await?;
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
            name: name.to_owned(),
            created_by: c.user.clone(),
            created_ms: now,
            members,
            invited: invited.iter().map(|u| member(u, false)).collect(),
        };
        let record = g.clone();
        let _guard = self.groups.changes.lock().await;
        let desc = self
            .announce(
                c,
                None,
                g,
                "created",
                &others,
                format!("{} created the group \"{name}\"", c.user),
            )
            .await?;
        self.send_invitations(c, &record, &invited).await?;
        Ok(obj(json!({ "group": desc })))
    }

    pub(crate) async fn group_add(
        &self,
        c: &Client,
        p: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ChatError> {
        let id = group_param(p)?;
        let wanted = members_param(p, true)?;
        let _guard = self.groups.changes.lock().await;
        let g = self.as_admin(&id, &c.user, "add").await?;
        let new: Vec<UserId> = wanted
            .into_iter()
            .filter(|u| g.member(u).is_none() && g.invitation(u).is_none())
            .collect();
        if new.is_empty() {
            return Ok(obj(json!({ "group": describe(&g) })));
        }
        self.check_size(g.members.len() + g.invited.len() + new.len())?;
        self.check_exist(&new).await?;
        let (added, invited) = self.by_consent(&c.user, new).await?;
        self.check_may_join(&added).await?;
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
            self.members_changed(c, &g, next, "invited", &invited)
                .await?
        } else {
            self.members_changed(c, &g, next, "added", &added).await?
        };
        self.send_invitations(c, &record, &invited).await?;
        Ok(answer)
    }

    pub(crate) async fn group_remove(
        &self,
        c: &Client,
        p: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ChatError> {
        let id = group_param(p)?;
        let wanted = members_param(p, true)?;
        if wanted.contains(&c.user) {
            return Err(ChatError::BadRequest(
                "to remove yourself, use group.leave".into(),
            ));
        }
        let _guard = self.groups.changes.lock().await;
        let g = self.as_admin(&id, &c.user, "remove").await?;
        let gone: Vec<UserId> = wanted
            .into_iter()
            .filter(|u| g.member(u).is_some())
            .collect();
        if gone.is_empty() {
            return Ok(obj(json!({ "group": describe(&g) })));
        }
        let mut next = (*g).clone();
        next.members.retain(|m| !gone.contains(&m.user));
        self.members_changed(c, &g, next, "removed", &gone).await
    }

    pub(crate) async fn group_leave(
        &self,
        c: &Client,
        p: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ChatError> {
        let id = group_param(p)?;
        let _guard = self.groups.changes.lock().await;
        let g = self.group_of_member(&id, &c.user).await?;
        let (next, body) = without(&g, &c.user, format!("{} left", c.user));
        self.announce(
            c,
            Some(&g),
            next,
            "left",
            std::slice::from_ref(&c.user),
            body,
        )
        .await?;
        Ok(Map::new())
    }

    /// `group.join`: an invited user becomes a member.
    pub(crate) async fn group_join(
        &self,
        c: &Client,
        p: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ChatError> {
        let id = group_param(p)?;
        let _guard = self.groups.changes.lock().await;
        let g = self.invited_to(&id, &c.user).await?;
        self.check_size(g.members.len() + 1)?;
        self.check_may_join(std::slice::from_ref(&c.user)).await?;
        let mut next = (*g).clone();
        next.invited.retain(|m| m.user != c.user);
        next.members.push(Member {
            user: c.user.clone(),
            admin: false,
            joined_ms: now_ms(),
        });
        let who = std::slice::from_ref(&c.user);
        let body = format!("{} joined", c.user);
        let desc = self
            .announce(c, Some(&g), next, "joined", who, body)
            .await?;
        Ok(obj(json!({ "group": desc })))
    }

    /// `group.decline`: an invited user says no; the invitation is gone.
    pub(crate) async fn group_decline(
        &self,
        c: &Client,
        p: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ChatError> {
        let id = group_param(p)?;
        let _guard = self.groups.changes.lock().await;
        let g = self.invited_to(&id, &c.user).await?;
        let next = g.without(&c.user);
        let body = format!("{} declined the invitation", c.user);
        let who = std::slice::from_ref(&c.user);
        self.announce(c, Some(&g), next, "declined", who, body)
            .await?;
        Ok(Map::new())
    }

    /// The group, if `user` has an invitation to it made since her account exists; the same
    /// error as for non-members otherwise, so group ids cannot be probed.
    async fn invited_to(&self, id: &GroupId, user: &UserId) -> Result<Arc<GroupRecord>, ChatError> {
        let since = self.account_since(user).await?;
        match self.group(id).await? {
            Some(g) if g.invitation(user).is_some_and(|i| i.joined_ms >= since) => Ok(g),
            _ => Err(ChatError::NotAuthorized(format!(
                "you have no invitation to group {id}"
            ))),
        }
    }

    pub(crate) async fn group_info(
        &self,
        c: &Client,
        p: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ChatError> {
        let id = group_param(p)?;
        let g = self.group_of_member(&id, &c.user).await?;
        Ok(obj(json!({ "group": describe(&g) })))
    }

    /// The groups `user` is in, as a set to look others' groups up in.
    pub(crate) async fn groups_set(&self, user: &UserId) -> Result<HashSet<GroupId>, ChatError> {
        Ok(self.store.groups_of(user).await?.into_iter().collect())
    }

    /// Whether `b` is in one of the groups `mine`: one set lookup per group of `b`'s, so the
    /// work is linear in the groups, never their product.
    pub(crate) async fn in_one_of(
        &self,
        mine: &HashSet<GroupId>,
        b: &UserId,
    ) -> Result<bool, ChatError> {
        if mine.is_empty() {
            return Ok(false);
        }
        Ok(self
            .store
            .groups_of(b)
            .await?
            .iter()
            .any(|g| mine.contains(g)))
    }

    /// The store key of `chat` for `me` and who is in it, if `me` may use it: a one-to-one
    /// chat with an existing user (the two of them; `me` alone for notes to self), or a group
    /// `me` is a member of (every member).
    pub(crate) async fn chat_members(
        &self,
        me: &UserId,
        chat: &ChatAddr,
    ) -> Result<(ChatKey, Vec<UserId>), ChatError> {
        let members = match chat {
            ChatAddr::User(peer) => {
                if self.store.user(peer).await?.is_none() {
                    return Err(ChatError::UnknownUser(peer.to_string()));
                }
                if peer == me {
                    vec![me.clone()]
                } else {
                    vec![me.clone(), peer.clone()]
                }
            }
            ChatAddr::Group(id) => {
                let g = self.group_of_member(id, me).await?;
                g.members.iter().map(|m| m.user.clone()).collect()
            }
        };
        Ok((chat.key(me), members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any JSON value at all, a few levels deep.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            "(g/)?[a-z0-9]{0,30}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::hash_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The group parameters of any request: read or refused, never a panic; what is read
        /// is valid ids, each member once.
        #[test]
        fn group_request_parameters_are_read_or_refused(group in json_value(), members in json_value()) {
            let mut p = Map::new();
            p.insert("group".into(), group);
            p.insert("members".into(), members);
            if let Ok(id) = group_param(&p) {
                prop_assert!(GroupId::new(id.as_str()).is_ok());
            }
            if let Ok(list) = members_param(&p, true) {
                let unique: HashSet<&UserId> = list.iter().collect();
                prop_assert_eq!(unique.len(), list.len());
                prop_assert!(list.iter().all(|u| UserId::new(u.as_str()).is_ok()));
            }
        }
    }
}
