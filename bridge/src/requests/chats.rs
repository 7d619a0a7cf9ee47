//! `chats`: the asking user's chats, each with its last message and unread count.

use natter_types::Client;
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
        let chats: Vec<Value> = list
            .iter()
            .map(|c| {
                json!({
                    "chat": c.chat.addr_for(&client.user).map(|a| a.to_string()),
                    "last": MessageOut::new(&c.last, &client.user, Some(c.last_seq)),
                    "unread": c.unread,
                })
            })
            .collect();
        Ok(obj(json!({"chats": chats})))
    }
}
