//! Typing indicators on `t/{chat}`: relayed at most once (QoS 0) to the other readers'
//! `u/{x}/e`, never stored, at most [`crate::devices::TYPING_BURST`] at once and then
//! [`crate::devices::TYPING_PER_SEC`] a second per device.

use natter_types::{ChatAddr, Client};
use serde_json::{json, Value};

use crate::{wire, Bridge, ChatError};

impl Bridge {
    /// `t/{chat}`: relayed at QoS 0 to the other members' `u/{x}/e`, never stored.
    pub(crate) async fn typing(
        &self,
        client: &Client,
        chat: &ChatAddr,
        payload: &[u8],
    ) -> Result<(), ChatError> {
        let v = wire::parse_json(payload)?;
        let state = v.get("state").and_then(Value::as_str).unwrap_or("");
        if state != "typing" && state != "paused" {
            return Err(ChatError::BadRequest(
                "`state` must be \"typing\" or \"paused\"".into(),
            ));
        }
        let readers = self.members(&client.user, chat).await?.readers;
        if !self.devices.allow_typing(client) {
            return Err(ChatError::RateLimited(
                "typing indicators: at most 5 at once, then 1 a second".into(),
            ));
        }
        // The chat as the readers name it: a one-to-one chat is the typist's name to them.
        let their_chat = match chat {
            ChatAddr::User(_) => ChatAddr::User(client.user.clone()),
            ChatAddr::Group(g) => ChatAddr::Group(g.clone()),
        };
        let ev = json!({"type": "typing", "chat": their_chat, "from": client.user, "state": state});
        for r in readers.iter().filter(|r| **r != client.user) {
            self.outbox.typing(r, &ev).await;
        }
        Ok(())
    }
}
