//! Chat access: who is in a chat, who may read it, who may see whose presence.
//!
//! Every publish on `m/`, `r/`, `t/` and every request that names a chat asks here first, so
//! the rule "a one-to-one chat with an existing user, or a group you are a member of" lives in
//! one place. Nothing here writes or publishes.

use std::collections::HashSet;

use natter_types::{ChatAddr, ChatKey, GroupId, UserId};

use crate::{Bridge, ChatError};

/// A chat `me` may use: its store key and who reads it.
pub(crate) struct Members {
    /// The chat's key in the store.
    pub key: ChatKey,
    /// Everyone who reads it: the two users of a one-to-one chat (`me` alone for notes to
    /// self), or every member of a group.
    pub readers: Vec<UserId>,
}

impl Bridge {
    /// `chat` as `me` addresses it, if `me` may use it: a one-to-one chat with an existing
    /// user, or a group `me` is a member of.
    pub(crate) async fn members(&self, me: &UserId, chat: &ChatAddr) -> Result<Members, ChatError> {
        let readers = match chat {
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
                let g = self.groups.of_member(id, me).await?;
                g.members.iter().map(|m| m.user.clone()).collect()
            }
        };
        Ok(Members {
            key: chat.key(me),
            readers,
        })
    }

    /// Whether the asking user may read chat `chat` (as they address it).
    pub(crate) async fn may_read(&self, me: &UserId, chat: &ChatAddr) -> Result<bool, ChatError> {
        match chat {
            // Anyone may open a one-to-one chat with an existing user; its key contains the
            // asker, so it can only ever be their own chat.
            ChatAddr::User(peer) => Ok(self.store.user(peer).await?.is_some()),
            // Only current members read a group: a removed member reads nothing more.
            ChatAddr::Group(g) => Ok(self
                .groups
                .get(g)
                .await?
                .is_some_and(|g| g.member(me).is_some())),
        }
    }

    /// When `user`'s account was created (Unix ms): they see nothing older, so someone created
    /// under a removed user's name inherits none of it. 0 for no account.
    pub(crate) async fn account_since(&self, user: &UserId) -> Result<u64, ChatError> {
        Ok(self.store.user(user).await?.map_or(0, |u| u.created_ms))
    }

    /// The groups `user` is in, as a set to look others' groups up in.
    pub(crate) async fn groups_set(&self, user: &UserId) -> Result<HashSet<GroupId>, ChatError> {
        Ok(self.store.groups_of(user).await?.into_iter().collect())
    }

    /// Whether `b` is in one of the groups `mine`: one set lookup per group of `b`'s, so the
    /// work is linear in the groups, never their product.
    async fn in_one_of(&self, mine: &HashSet<GroupId>, b: &UserId) -> Result<bool, ChatError> {
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

    /// Whether `me` may see `user`'s presence: themselves, or someone they share a chat with.
    pub(crate) async fn may_see_presence(&self, me: &UserId, user: &UserId) -> bool {
        if me == user {
            return true;
        }
        match self.groups_set(me).await {
            Ok(mine) => self.may_see_presence_in(me, &mine, user).await,
            Err(_) => false,
        }
    }

    /// [`Self::may_see_presence`] with `me`'s groups read once (a `presence` request asks
    /// about up to 100 users). A store failure answers "no".
    pub(crate) async fn may_see_presence_in(
        &self,
        me: &UserId,
        my_groups: &HashSet<GroupId>,
        user: &UserId,
    ) -> bool {
        me == user
            || self
                .store
                .in_chat(me, &ChatKey::direct(me, user))
                .await
                .unwrap_or(false)
            || self.in_one_of(my_groups, user).await.unwrap_or(false)
    }
}
