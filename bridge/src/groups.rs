//! Groups: the group cache, admin and consent rules, and how a change is committed and told
//! (a system message in the group and a `group` event on `u/{member}/e`). The `group.*`
//! requests themselves are in [`crate::requests`].
//!
//! A change is one store append: the `system` message that announces it carries the group's
//! new record, so membership and the chat's account of it are committed together. Changes (the
//! `group.*` requests, and an account removal leaving its groups) are serialised by one lock
//! (they are rare next to messages); sends read the group from a cache
//! that every change replaces. Both assume one natter node; with several, the owner of a group
//! (as for a user's seq) would apply its changes.

use std::collections::HashMap;
use std::sync::Arc;

use natter_config::GroupAdds;
use natter_store::{Appended, Content, GroupRecord, NewMessage, Store};
use natter_types::{ChatAddr, ChatKey, Client, GroupId, UserId};
use serde_json::{json, Map, Value};

use crate::wire::obj;
use crate::{Bridge, ChatError};

/// Longest group name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// The newest messages of a one-to-one chat looked at to tell whether a user has written to
/// whoever adds her to a group (`limits.group_adds = "contacts"`).
const CONTACT_SCAN: usize = 200;

/// Groups as the send path reads them: from a cache every change replaces, or the store.
pub(crate) struct Groups {
    store: Arc<dyn Store>,
    cache: std::sync::RwLock<HashMap<GroupId, Arc<GroupRecord>>>,
    /// Held while a change is read, decided and committed: changes never interleave.
    changes: tokio::sync::Mutex<()>,
}

impl Groups {
    /// Groups read from `store`.
    pub(crate) fn new(store: Arc<dyn Store>) -> Groups {
        Groups {
            store,
            cache: std::sync::RwLock::default(),
            changes: tokio::sync::Mutex::new(()),
        }
    }

    /// The group, from the cache or the store.
    pub(crate) async fn get(&self, id: &GroupId) -> Result<Option<Arc<GroupRecord>>, ChatError> {
        if let Some(g) = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(Some(g.clone()));
        }
        let Some(g) = self.store.group(id).await? else {
            return Ok(None);
        };
        Ok(Some(self.remember(g)))
    }

    /// Puts `g` in the cache (after a committed change, or a store read).
    fn remember(&self, g: GroupRecord) -> Arc<GroupRecord> {
        let g = Arc::new(g);
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(g.id.clone(), g.clone());
        g
    }

    /// The group if `user` is a member; the same error whether it does not exist or they are
    /// not in it, so group ids cannot be probed.
    pub(crate) async fn of_member(
        &self,
        id: &GroupId,
        user: &UserId,
    ) -> Result<Arc<GroupRecord>, ChatError> {
        match self.get(id).await? {
            Some(g) if g.member(user).is_some() => Ok(g),
            _ => Err(ChatError::NotAuthorized(format!(
                "you are not a member of group {id}"
            ))),
        }
    }

    /// Waits for the change lock: hold the guard from reading the group to committing it.
    pub(crate) async fn changing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changes.lock().await
    }
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
        "chat": ChatAddr::Group(g.id.clone()),
        "name": g.name,
        "created_by": g.created_by,
        "created": g.created_ms,
        "members": g.members.iter().map(|m| m.user.as_str()).collect::<Vec<_>>(),
        "admins": g.members.iter().filter(|m| m.admin).map(|m| m.user.as_str()).collect::<Vec<_>>(),
        "invited": g.invited.iter().map(|m| m.user.as_str()).collect::<Vec<_>>(),
    })
}

impl Bridge {
    /// Every user exists and may join one more group (`limits.max_groups_per_user`).
    pub(crate) async fn check_may_join(&self, users: &[UserId]) -> Result<(), ChatError> {
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
    pub(crate) async fn check_exist(&self, users: &[UserId]) -> Result<(), ChatError> {
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
    pub(crate) async fn by_consent(
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
    pub(crate) async fn send_invitations(
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
                "group": {"id": g.id, "chat": ChatAddr::Group(g.id.clone()), "name": g.name},
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
            self.outbox.messages(&appended).await;
        }
        Ok(())
    }

    pub(crate) fn check_size(&self, n: usize) -> Result<(), ChatError> {
        let max = self.config.limits.max_group_members;
        if n > max {
            return Err(ChatError::Limit(format!(
                "a group has at most {max} members ({n} asked)"
            )));
        }
        Ok(())
    }

    /// The group, if `user` is an admin of it (`verb` names what they tried, for the error).
    pub(crate) async fn as_admin(
        &self,
        id: &GroupId,
        user: &UserId,
        verb: &str,
    ) -> Result<Arc<GroupRecord>, ChatError> {
        let g = self.groups.of_member(id, user).await?;
        if !g.member(user).is_some_and(|m| m.admin) {
            return Err(ChatError::NotAuthorized(format!(
                "only admins {verb} members"
            )));
        }
        Ok(g)
    }

    /// Commits `g` with a system message from `actor`, then tells the readers (see
    /// [`commit_change`]). Returns the group's new description.
    pub(crate) async fn announce(
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
        let g = self.groups.remember(change.group.clone());
        self.outbox.messages(&change.appended).await;
        let desc = describe(&g);
        let mut ev = change.event.clone();
        ev["type"] = json!("group");
        ev["group"] = desc.clone();
        for (reader, _) in &change.appended.seqs {
            self.outbox.event(reader, &ev).await;
        }
        desc
    }

    /// The group, if `user` has an invitation to it made since her account exists; the same
    /// error as for non-members otherwise, so group ids cannot be probed.
    pub(crate) async fn invited_to(
        &self,
        id: &GroupId,
        user: &UserId,
    ) -> Result<Arc<GroupRecord>, ChatError> {
        let since = self.account_since(user).await?;
        match self.groups.get(id).await? {
            Some(g) if g.invitation(user).is_some_and(|i| i.joined_ms >= since) => Ok(g),
            _ => Err(ChatError::NotAuthorized(format!(
                "you have no invitation to group {id}"
            ))),
        }
    }

    /// Announces that `actor` `action` (`added`, `removed`) `who`, and answers with the group.
    pub(crate) async fn members_changed(
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
}
