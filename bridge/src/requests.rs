//! Requests on `q/{method}`: answered on the asking device's `d/{me}/{device}`.

use natter_types::{ChatAddr, Client, MsgId};
use serde_json::{json, Map, Value};

use crate::wire::{self, obj, MessageOut};
use crate::{Bridge, ChatError};

/// Most messages one `sync` returns.
pub const SYNC_MAX: usize = 500;
/// Most messages one `history` returns.
pub const HISTORY_MAX: usize = 200;
/// Most bytes of messages one answer carries: a page stops early (with `more: true`) rather
/// than outgrow what clients accept as one MQTT packet.
pub const ANSWER_BYTES: usize = 256 * 1024;

/// Serialises messages until the byte budget is spent (always at least one); `true` if it
/// stopped early.
fn page<'a>(msgs: impl Iterator<Item = MessageOut<'a>>) -> (Vec<Value>, bool) {
    let mut out = Vec::new();
    let mut bytes = 0;
    for m in msgs {
        let v = serde_json::to_value(m).unwrap_or_default();
        bytes += v.to_string().len();
        if bytes > ANSWER_BYTES && !out.is_empty() {
            return (out, true);
        }
        out.push(v);
    }
    (out, false)
}

fn limit(params: &Map<String, Value>, default: usize, max: usize) -> Result<usize, ChatError> {
    match params.get("limit") {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 && n as usize <= max => Ok(n as usize),
            _ => Err(ChatError::BadRequest(format!(
                "`limit` must be a number from 1 to {max}"
            ))),
        },
    }
}

impl Bridge {
    pub(crate) async fn request(
        &self,
        client: &Client,
        method: &str,
        payload: &[u8],
    ) -> Result<(), ChatError> {
        let v = wire::parse_json(payload)?;
        let Value::Object(params) = v else {
            return Err(ChatError::BadJson("expected a JSON object".into()));
        };
        let Some(id) = params
            .get("id")
            .filter(|i| i.is_string() || i.is_number())
            .cloned()
        else {
            return Err(ChatError::BadRequest(
                "a request needs an `id` (string or number)".into(),
            ));
        };
        let result = match method {
            "sync" => self.sync(client, &params).await,
            "history" => self.history(client, &params).await,
            "chats" => self.chats(client).await,
            "group.create" => self.group_create(client, &params).await,
            "group.add" => self.group_add(client, &params).await,
            "group.remove" => self.group_remove(client, &params).await,
            "group.leave" => self.group_leave(client, &params).await,
            "group.info" => self.group_info(client, &params).await,
            "group.join" => self.group_join(client, &params).await,
            "group.decline" => self.group_decline(client, &params).await,
            "presence" => self.presence_request(client, &params).await,
            "push.register" => self.push_register(client, &params).await,
            "push.unregister" => self.push_unregister(client).await,
            "media.upload" => self.media_upload(client, &params).await,
            "media.url" => self.media_url(client, &params).await,
            other => Err(ChatError::UnknownMethod(other.to_owned())),
        };
        self.to_device(client, wire::answer_ok(&id, result?)).await;
        Ok(())
    }

    async fn sync(
        &self,
        client: &Client,
        params: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ChatError> {
        let after = match params.get("after") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| ChatError::BadRequest("`after` must be a seq number".into()))?,
        };
        let limit = limit(params, 100, SYNC_MAX)?;
        let (items, more) = self.store.sync(&client.user, after, limit).await?;
        let (messages, cut) = page(
            items
                .iter()
                .map(|i| MessageOut::new(&i.message, &client.user, Some(i.seq))),
        );
        // What a device fetched is delivered, as much as what it PUBACKed.
        let fetched: Vec<_> = items
            .iter()
            .take(messages.len())
            .map(|i| i.message.clone())
            .collect();
        if let Err(e) = self.delivered_by_sync(&client.user, &fetched).await {
            tracing::warn!(error = %e, "delivered receipts for a sync not recorded");
        }
        Ok(obj(json!({"messages": messages, "more": more || cut})))
    }

    async fn history(
        &self,
        client: &Client,
        params: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ChatError> {
        let chat: ChatAddr = params
            .get("chat")
            .and_then(|c| c.as_str())
            .ok_or_else(|| {
                ChatError::BadRequest("`chat` (u/{user} or g/{group}) is required".into())
            })?
            .parse()
            .map_err(|e: natter_types::NameError| ChatError::BadRequest(e.to_string()))?;
        let before = match params.get("before") {
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
        let limit = limit(params, 50, HISTORY_MAX)?;
        if !self.may_read(&client.user, &chat).await? {
            return Err(ChatError::NotAuthorized(format!(
                "you are not in chat {chat}"
            )));
        }
        let (mut msgs, mut more) = self
            .store
            .history(&chat.key(&client.user), before, limit)
            .await?;
        // Nothing from before the reader's account existed (a removed namesake's chat).
        let since = self.account_since(&client.user).await?;
        if let Some(i) = msgs.iter().position(|m| m.id.timestamp_ms() < since) {
            msgs.truncate(i);
            more = false;
        }
        let (messages, cut) = page(msgs.iter().map(|m| MessageOut::new(m, &client.user, None)));
        Ok(obj(json!({"messages": messages, "more": more || cut})))
    }

    async fn chats(&self, client: &Client) -> Result<Map<String, Value>, ChatError> {
        let list = self.store.chats(&client.user).await?;
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
