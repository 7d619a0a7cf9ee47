//! `chats`: the asking user's chats, each with its last message and unread count, and a group's
//! name.

use natter_types::{ChatAddr, Client};
use serde_json::{json, Map, Value};

use super::{Answer, Method};
use crate::wire::{obj, MessageOut};
use crate::{Bridge, ChatError};

/// `chats` takes no parameters.
pub(crate) struct Chats;

impl Method for Chats {
    fn parse(_: &Map<String, Value>) -> Result<Self, ChatError> {
        Ok(Chats)
    }

    async fn run(self, b: &Bridge, client: &Client) -> Result<Answer, ChatError> {
        let list = b.store.chats(&client.user).await?;
        let entries = list.iter().map(|c| async move {
            let addr = c.chat.addr_for(&client.user);
            let mut entry = json!({
                "chat": addr.as_ref().map(|a| a.to_string()),
                "last": MessageOut::new(&c.last, &client.user, Some(c.last_seq)),
                "unread": c.unread,
            });
            // A group's name, so a chat list needs no `group.info` per group (groups cache).
            if let Some(ChatAddr::Group(g)) = &addr {
                if let Some(g) = b.groups.get(g).await? {
                    entry["name"] = json!(g.name);
                }
            }
            Ok::<_, ChatError>(entry)
        });
        let chats = futures::future::try_join_all(entries).await?;
        Ok(obj(json!({"chats": chats})))
    }
}
