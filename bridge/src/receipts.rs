//! Receipts (`delivered`, `read`), read pointers, typing, and presence transitions.
//!
//! `delivered` comes from a device's PUBACK of its QoS 1 delivery and from `sync`; `read` from
//! `r/{chat}`. Each is sent to the sender once per recipient user per message: the store
//! decides "once" (a second device's ack changes nothing).

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use natter_broker::BrokerHandle;
use natter_store::{ReceiptMark, ReceiptStatus, StoredMessage};
use natter_types::{ChatAddr, ChatKey, Client, DeviceId, GroupId, MsgId, UserId};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::limits::Bucket;
use crate::wire::Receipted;
use crate::{delivered, now_ms, wire, Bridge, ChatError};

/// Typing indicators a device may send in a burst, and per second after it.
const TYPING_BURST: f64 = 5.0;
const TYPING_PER_SEC: f64 = 1.0;
/// Most ids one `{"ids": […]}` read receipt may name; most users one `presence` asks about.
pub const MAX_READ_IDS: usize = 100;
pub const MAX_PRESENCE_USERS: usize = 100;
/// Users a `presence` request may ask about per token of the request allowance it takes.
const PRESENCE_USERS_PER_TOKEN: usize = 10;

/// Per-connection state: how many connections a device has (takeovers overlap), and its typing
/// allowance; and how many devices each user has connected.
#[derive(Default)]
pub(crate) struct Devices {
    map: std::sync::Mutex<DeviceMap>,
}

#[derive(Default)]
struct DeviceMap {
    devices: HashMap<(UserId, DeviceId), DeviceState>,
    per_user: HashMap<UserId, usize>,
}

struct DeviceState {
    connections: usize,
    typing: Bucket,
}

impl Devices {
    fn lock(&self) -> std::sync::MutexGuard<'_, DeviceMap> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a connection; `true` if it is the device's first.
    fn up(&self, c: &Client) -> bool {
        let mut m = self.lock();
        let e = m
            .devices
            .entry((c.user.clone(), c.device.clone()))
            .or_insert(DeviceState {
                connections: 0,
                typing: Bucket::full(TYPING_BURST),
            });
        e.connections += 1;
        let first = e.connections == 1;
        metrics::gauge!("natter_connections").increment(1.0);
        if first {
            let n = m.per_user.entry(c.user.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                metrics::gauge!("natter_online_users").increment(1.0);
            }
        }
        first
    }

    /// Drops a connection; `true` if it was the device's last.
    fn down(&self, c: &Client) -> bool {
        let mut m = self.lock();
        let key = (c.user.clone(), c.device.clone());
        let last = match m.devices.get_mut(&key) {
            Some(e) if e.connections > 1 => {
                e.connections -= 1;
                false
            }
            Some(_) => {
                m.devices.remove(&key);
                true
            }
            None => return false,
        };
        metrics::gauge!("natter_connections").decrement(1.0);
        if last {
            if let Some(n) = m.per_user.get_mut(&c.user) {
                *n -= 1;
                if *n == 0 {
                    m.per_user.remove(&c.user);
                    metrics::gauge!("natter_online_users").decrement(1.0);
                }
            }
        }
        last
    }

    /// Takes one typing token; `false` when the device is over its rate.
    fn allow_typing(&self, c: &Client) -> bool {
        let mut m = self.lock();
        match m.devices.get_mut(&(c.user.clone(), c.device.clone())) {
            Some(e) => e.typing.take(TYPING_PER_SEC, TYPING_BURST),
            None => false,
        }
    }

    /// How many devices are connected to this node.
    pub(crate) fn count(&self) -> usize {
        self.lock().devices.len()
    }

    /// Every device connected to this node.
    pub(crate) fn all(&self) -> Vec<(UserId, DeviceId)> {
        self.lock().devices.keys().cloned().collect()
    }
}

/// The fields of a delivered message the acked hook needs.
#[derive(Deserialize)]
struct Acked {
    id: MsgId,
    chat: ChatAddr,
    from: UserId,
    #[serde(rename = "type")]
    kind: String,
    /// When natter accepted it (ms since the epoch).
    ts: u64,
    /// The sender's client id for it, echoed in the receipt.
    #[serde(default)]
    cid: Option<String>,
}

/// System messages (group changes) are the chat's, not their author's: no receipts for them.
fn wants_receipts(m: &StoredMessage, by: &UserId) -> bool {
    m.from != *by && m.content.kind != "system"
}

/// Publishes `by`'s `status` for `m` to the sender's `u/{from}/r`.
pub(crate) async fn tell_sender(
    broker: &BrokerHandle,
    m: Receipted<'_>,
    status: ReceiptStatus,
    by: &UserId,
) {
    let word = if status == ReceiptStatus::Read {
        "read"
    } else {
        "delivered"
    };
    let r = wire::receipt(m, word, Some(by), now_ms());
    broker
        .publish(&format!("u/{}/r", m.from), r, true, false)
        .await;
}

impl Bridge {
    /// Tells the senders of `msgs` that `by` reached `status`, where that is news.
    async fn receipts(
        &self,
        msgs: &[StoredMessage],
        by: &UserId,
        status: ReceiptStatus,
    ) -> Result<(), ChatError> {
        let others: Vec<&StoredMessage> = msgs.iter().filter(|m| wants_receipts(m, by)).collect();
        let marks = others
            .iter()
            .map(|m| ReceiptMark {
                chat: m.chat.clone(),
                id: m.id,
                user: by.clone(),
                status,
            })
            .collect();
        let fresh = self.store.mark(marks).await?;
        for (m, new) in others.iter().zip(fresh) {
            if new {
                tell_sender(&self.broker, (*m).into(), status, by).await;
            }
        }
        Ok(())
    }

    /// `delivered` for messages a device fetched with `sync`.
    pub(crate) async fn delivered_by_sync(
        &self,
        reader: &UserId,
        msgs: &[StoredMessage],
    ) -> Result<(), ChatError> {
        self.receipts(msgs, reader, ReceiptStatus::Delivered).await
    }

    /// A device PUBACKed a delivery: `delivered`, if it was a message from someone else.
    pub(crate) async fn on_acked(&self, client: &Client, topic: &str, payload: &Bytes) {
        if topic != format!("u/{}/m", client.user) {
            return;
        }
        let Ok(a) = serde_json::from_slice::<Acked>(payload) else {
            return;
        };
        metrics::histogram!("natter_send_deliver_seconds")
            .record(now_ms().saturating_sub(a.ts) as f64 / 1000.0);
        if a.from == client.user || a.kind == "system" {
            return;
        }
        // Recorded together with the other acks waiting; the sender is told then (see
        // `delivered`).
        self.delivered
            .ack(delivered::Ack {
                chat: a.chat.key(&client.user),
                id: a.id,
                from: a.from,
                cid: a.cid,
                by: client.user.clone(),
            })
            .await;
    }

    /// `r/{chat}`: `{"upto": SEQ}` moves the read pointer; `{"ids": […]}` marks messages read.
    pub(crate) async fn read(
        &self,
        client: &Client,
        chat: &ChatAddr,
        payload: &[u8],
    ) -> Result<(), ChatError> {
        let v = wire::parse_json(payload)?;
        let (key, _) = self.chat_members(&client.user, chat).await?;
        let mut event = json!({"type": "read", "chat": chat.to_string(), "dev": client.device});
        if let Some(upto) = v.get("upto") {
            let upto = upto
                .as_u64()
                .ok_or_else(|| ChatError::BadRequest("`upto` must be a seq number".into()))?;
            let r = self.store.read_upto(&client.user, &key, upto).await?;
            for m in r
                .newly_read
                .iter()
                .filter(|m| wants_receipts(m, &client.user))
            {
                tell_sender(&self.broker, m.into(), ReceiptStatus::Read, &client.user).await;
            }
            event["upto"] = json!(r.read_seq);
            event["unread"] = json!(r.unread);
        } else if let Some(ids) = v.get("ids").and_then(Value::as_array) {
            if ids.is_empty() || ids.len() > MAX_READ_IDS {
                return Err(ChatError::BadRequest(format!(
                    "`ids` must hold 1 to {MAX_READ_IDS} message ids"
                )));
            }
            let mut msgs = Vec::with_capacity(ids.len());
            let since = self.account_since(&client.user).await?;
            for id in ids {
                let id: MsgId = id
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| ChatError::BadRequest(format!("{id} is not a message id")))?;
                // A message from before the reader's account existed is not theirs to mark.
                if id.timestamp_ms() >= since {
                    msgs.extend(self.store.message(&key, id).await?);
                }
            }
            self.receipts(&msgs, &client.user, ReceiptStatus::Read)
                .await?;
            event["ids"] = json!(msgs.iter().map(|m| m.id).collect::<Vec<_>>());
        } else {
            return Err(ChatError::BadRequest(
                "a read receipt needs `upto` (a seq) or `ids`".into(),
            ));
        }
        // The reader's other devices learn what was read here.
        self.broker
            .publish(
                &format!("u/{}/e", client.user),
                Bytes::from(event.to_string()),
                true,
                false,
            )
            .await;
        Ok(())
    }

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
        let (_, readers) = self.chat_members(&client.user, chat).await?;
        if !self.devices.allow_typing(client) {
            return Err(ChatError::RateLimited(
                "typing indicators: at most 5 at once, then 1 a second".into(),
            ));
        }
        for r in readers.iter().filter(|r| **r != client.user) {
            let their_chat = match chat {
                ChatAddr::User(_) => format!("u/{}", client.user),
                ChatAddr::Group(g) => format!("g/{g}"),
            };
            let ev =
                json!({"type": "typing", "chat": their_chat, "from": client.user, "state": state});
            self.broker
                .publish(
                    &format!("u/{r}/e"),
                    Bytes::from(ev.to_string()),
                    false,
                    false,
                )
                .await;
        }
        Ok(())
    }

    async fn publish_presence(&self, user: &UserId, online: bool, last_seen: u64) {
        let state = if online { "online" } else { "offline" };
        let v = json!({"state": state, "last_seen": last_seen});
        self.broker
            .publish(&format!("p/{user}"), Bytes::from(v.to_string()), true, true)
            .await;
    }

    /// A connection of `c` is up.
    pub(crate) async fn device_connected(&self, c: &Client) {
        if !self.devices.up(c) {
            return;
        }
        match self.presence.device_up(&c.user, &c.device).await {
            Ok(true) => self.publish_presence(&c.user, true, now_ms()).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, user = %c.user, "presence not updated"),
        }
    }

    /// A connection of `c` ended.
    pub(crate) async fn device_disconnected(&self, c: &Client) {
        if !self.devices.down(c) {
            return;
        }
        let now = now_ms();
        match self.presence.device_down(&c.user, &c.device, now).await {
            Ok(true) => self.publish_presence(&c.user, false, now).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, user = %c.user, "presence not updated"),
        }
    }

    /// Keeps this node's devices alive in the presence backend; run every `ttl / 3`.
    pub async fn refresh_presence(&self) {
        if let Err(e) = self.presence.refresh(&self.devices.all()).await {
            tracing::warn!(error = %e, "presence refresh failed");
        }
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
    /// about up to 100 users).
    async fn may_see_presence_in(
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

    /// The `presence` request.
    pub(crate) async fn presence_request(
        &self,
        c: &Client,
        p: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ChatError> {
        let users = p
            .get("users")
            .and_then(Value::as_array)
            .filter(|u| !u.is_empty() && u.len() <= MAX_PRESENCE_USERS)
            .ok_or_else(|| {
                ChatError::BadRequest(format!(
                    "`users` must list 1 to {MAX_PRESENCE_USERS} user ids"
                ))
            })?;
        // Each user asked about is work (store reads): beyond the request's own token, every
        // ten users take one more from the user's request allowance.
        if !self
            .request_rate
            .allow_n(&c.user, (users.len() / PRESENCE_USERS_PER_TOKEN) as f64)
        {
            return Err(ChatError::RateLimited(
                "too many presence look-ups: slow down and ask again".into(),
            ));
        }
        let my_groups = self.groups_set(&c.user).await?;
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            let name = u.as_str().unwrap_or_default();
            let Ok(user) = UserId::new(name) else {
                out.push(json!({"user": u, "state": "not_allowed"}));
                continue;
            };
            if !self.may_see_presence_in(&c.user, &my_groups, &user).await {
                out.push(json!({"user": user, "state": "not_allowed"}));
                continue;
            }
            out.push(match self.presence.seen(&user).await {
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
