//! `history {chat, before?, limit?}`: a chat's messages before a message id, newest first,
//! for members only, and nothing from before the reader's account existed. In a one-to-one
//! chat, the asker's own messages carry how far the peer got with each (`status`).

use natter_store::ReceiptStatus;
use natter_types::{ChatAddr, Client, MsgId};
use serde_json::{json, Map, Value};

use super::{params, Answer, Method};
use crate::wire::{obj, page, MessageOut};
use crate::{Bridge, ChatError};

/// Most messages one `history` returns.
pub const HISTORY_MAX: usize = 200;

/// The parameters of `history`.
pub(crate) struct History {
    chat: ChatAddr,
    before: Option<MsgId>,
    limit: usize,
}

impl Method for History {
    fn parse(p: &Map<String, Value>) -> Result<Self, ChatError> {
        let chat: ChatAddr = p
            .get("chat")
            .and_then(|c| c.as_str())
            .ok_or_else(|| {
                ChatError::BadRequest("`chat` (u/{user} or g/{group}) is required".into())
            })?
            .parse()
            .map_err(|e: natter_types::NameError| ChatError::BadRequest(e.to_string()))?;
        let before = match p.get("before") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.parse::<MsgId>().map_err(|_| {
                ChatError::BadRequest(format!("`before` {s:?} is not a message id"))
            })?),
            Some(_) => {
                return Err(ChatError::BadRequest(
                    "`before` must be a message id".into(),
                ))
            }
        };
        Ok(History {
            chat,
            before,
            limit: params::limit(p, 50, HISTORY_MAX)?,
        })
    }

    async fn run(self, b: &Bridge, client: &Client) -> Result<Answer, ChatError> {
        let chat = &self.chat;
        if !b.may_read(&client.user, chat).await? {
            return Err(ChatError::NotAuthorized(format!(
                "you are not in chat {chat}"
            )));
        }
        let (mut msgs, mut more) = b
            .store
            .history(&chat.key(&client.user), self.before, self.limit)
            .await?;
        // Nothing from before the reader's account existed (a removed namesake's chat).
        let since = b.account_since(&client.user).await?;
        if let Some(i) = msgs.iter().position(|m| m.id.timestamp_ms() < since) {
            msgs.truncate(i);
            more = false;
        }
        let (mut messages, cut) =
            page(msgs.iter().map(|m| MessageOut::new(m, &client.user, None)));
        if let ChatAddr::User(peer) = chat {
            let key = chat.key(&client.user);
            let own = msgs.iter().zip(messages.iter_mut()).filter(|(m, _)| m.from == client.user);
            // The peer's receipt of each of my messages, read at once (a page is at most 200).
            let looked = own.map(|(m, out)| {
                let key = &key;
                async move {
                    let status = b.store.receipt(key, m.id, peer).await?;
                    Ok::<_, ChatError>((out, status))
                }
            });
            for (out, status) in futures::future::try_join_all(looked).await? {
                out["status"] = json!(status_word(status));
            }
        }
        Ok(obj(json!({"messages": messages, "more": more || cut})))
    }
}

/// What the asker sees of the peer's receipt of her message in a one-to-one chat.
fn status_word(s: Option<ReceiptStatus>) -> &'static str {
    match s {
        None => "sent",
        Some(ReceiptStatus::Delivered) => "delivered",
        Some(ReceiptStatus::Read) => "read",
    }
}
