//! The records a store keeps, in the bridge's terms.

use natter_types::{ChatKey, DeviceId, GroupId, MediaId, MsgId, PushPlatform, Seq, UserId};
use serde::{Deserialize, Serialize};

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The id, also the MQTT username.
    pub id: UserId,
    /// The argon2id PHC string of the password.
    pub password_hash: String,
    /// When it was created, Unix ms.
    pub created_ms: u64,
}

/// What a message says, as the sender wrote it (after validation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// `text`, `image`, `video`, `audio`, `file`, `location`, `contact` (and `system` later).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text, caption or structured body.
    pub body: String,
    /// Media reference, kept as sent (validated by the media service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<serde_json::Value>,
    /// The id of the message this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MsgId>,
    /// Seconds after which clients should hide it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// For `system` messages: what happened, structured (`action`, `by`, `members`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<serde_json::Value>,
}

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The chat it belongs to.
    pub chat: ChatKey,
    /// The sender.
    pub from: UserId,
    /// The sender's device.
    pub dev: DeviceId,
    /// The sender's own id for it, for deduplication.
    pub cid: Option<String>,
    /// Every user whose inbox gets an entry, the sender included. No duplicates.
    pub readers: Vec<UserId>,
    /// The message itself.
    pub content: Content,
    /// A group's new state, written in the same transaction as this message (the system
    /// message that announces a membership change), so the two never disagree after a crash.
    pub group_update: Option<GroupRecord>,
    /// The upload this message carries: the message is linked to it in the same transaction,
    /// which is what later lets the chat's members download it and retention mark it expired.
    pub media: Option<MediaId>,
}

impl NewMessage {
    /// The message as stored under `id`, written at `ts` (Unix ms).
    pub fn stored(&self, id: MsgId, ts: u64) -> StoredMessage {
        StoredMessage {
            id,
            chat: self.chat.clone(),
            from: self.from.clone(),
            dev: self.dev.clone(),
            ts,
            cid: self.cid.clone(),
            content: self.content.clone(),
        }
    }
}

/// A group and its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// Server-made id.
    pub id: GroupId,
    /// Display name.
    pub name: String,
    /// Who made it.
    pub created_by: UserId,
    /// When, Unix ms.
    pub created_ms: u64,
    /// Current members, oldest first.
    pub members: Vec<Member>,
    /// Users invited and not yet joined (`joined_ms` is when they were invited). Someone who
    /// did not agree to be added (see the bridge's group rules) is invited instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invited: Vec<Member>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The user.
    pub user: UserId,
    /// May add and remove members.
    pub admin: bool,
    /// When they joined, Unix ms.
    pub joined_ms: u64,
}

impl GroupRecord {
    /// The member entry of `user`, if a member.
    pub fn member(&self, user: &UserId) -> Option<&Member> {
        self.members.iter().find(|m| m.user == *user)
    }

    /// The invitation of `user`, if invited.
    pub fn invitation(&self, user: &UserId) -> Option<&Member> {
        self.invited.iter().find(|m| m.user == *user)
    }

    /// The group without `user`, as a member or as invited. A group is never left without an
    /// admin while it has members: the oldest member takes over (members are kept oldest first).
    pub fn without(&self, user: &UserId) -> GroupRecord {
        let mut next = self.clone();
        next.members.retain(|m| m.user != *user);
        next.invited.retain(|m| m.user != *user);
        if !next.members.iter().any(|m| m.admin) {
            if let Some(first) = next.members.first_mut() {
                first.admin = true;
            }
        }
        next
    }
}

/// A message as stored, once per chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Server id; chat order is id order.
    pub id: MsgId,
    /// The chat.
    pub chat: ChatKey,
    /// The sender.
    pub from: UserId,
    /// The sender's device.
    pub dev: DeviceId,
    /// When it was stored, Unix ms.
    pub ts: u64,
    /// The sender's id for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    /// What it says.
    #[serde(flatten)]
    pub content: Content,
}

impl StoredMessage {
    /// Marks the upload it carries as deleted by retention: `"expired": true` in its `media`
    /// (a message without a `media` object is left as it is).
    pub fn mark_media_expired(&mut self) {
        if let Some(serde_json::Value::Object(media)) = &mut self.content.media {
            media.insert("expired".into(), serde_json::Value::Bool(true));
        }
    }
}

/// The outcome of [`crate::Store::append`].
#[derive(Debug, Clone)]
pub struct Appended {
    /// The message as stored (for a duplicate: the first one).
    pub message: StoredMessage,
    /// Each reader's new inbox position; empty for a duplicate.
    pub seqs: Vec<(UserId, Seq)>,
    /// `true` if `(sender, cid)` was seen before and nothing was written.
    pub duplicate: bool,
}

/// One inbox entry with its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    /// Position in the reader's inbox.
    pub seq: Seq,
    /// The message.
    pub message: StoredMessage,
}

/// One chat in a user's chat list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSummary {
    /// The chat.
    pub chat: ChatKey,
    /// Its newest message.
    pub last: StoredMessage,
    /// The reader's inbox position of that message.
    pub last_seq: Seq,
    /// Messages from others not yet read.
    pub unread: u64,
}

/// How far a recipient has got with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReceiptStatus {
    /// A device of the recipient has it.
    Delivered = 1,
    /// The recipient read it.
    Read = 2,
}

impl ReceiptStatus {
    /// The status a stored level means (`status as u8` wrote it: 1 delivered, 2 read); `None`
    /// for 0 (nowhere yet) or anything else.
    pub fn from_level(level: i64) -> Option<ReceiptStatus> {
        match level {
            1 => Some(ReceiptStatus::Delivered),
            2 => Some(ReceiptStatus::Read),
            _ => None,
        }
    }
}

/// "`user` has reached `status` for message `id` of `chat`".
#[derive(Debug, Clone)]
pub struct ReceiptMark {
    /// The message's chat.
    pub chat: ChatKey,
    /// The message.
    pub id: MsgId,
    /// The recipient.
    pub user: UserId,
    /// How far.
    pub status: ReceiptStatus,
}

/// The result of moving a read pointer.
#[derive(Debug, Clone, Default)]
pub struct ReadOutcome {
    /// Messages from others that became read now (at most a bounded number, newest kept).
    pub newly_read: Vec<StoredMessage>,
    /// Unread messages left in the chat.
    pub unread: u64,
    /// The read pointer now (an inbox seq).
    pub read_seq: Seq,
}

/// A device's push token. One per device; a token belongs to one device at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushToken {
    /// The user.
    pub user: UserId,
    /// The device that registered it.
    pub device: DeviceId,
    /// Where to send.
    pub platform: PushPlatform,
    /// The provider's registration token (FCM) or device token (APNs).
    pub token: String,
}

/// A notification waiting to be sent to one device token. Jobs are collapsed per (user,
/// device, chat): a newer message replaces the text and badge of a job not yet sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushJob {
    /// Whose device.
    pub user: UserId,
    /// Which device.
    pub device: DeviceId,
    /// The collapse key: the chat, as the store keys it.
    pub collapse: String,
    /// Where to send.
    pub platform: PushPlatform,
    /// The token at the time the job was made.
    pub token: String,
    /// Notification title (who wrote).
    pub title: String,
    /// Notification text.
    pub body: String,
    /// The badge: the user's unread messages.
    pub badge: u64,
    /// The chat as the recipient addresses it (`u/alice`, `g/…`), for the app to open.
    pub chat: String,
    /// The newest message the job is about.
    pub msg: MsgId,
    /// Sending attempts that failed so far.
    pub attempts: u32,
    /// Not to be sent before this, Unix ms (backoff).
    pub due_ms: u64,
    /// Bumped at every collapse, so that settling an older send never drops newer content.
    pub version: u64,
}

impl PushJob {
    /// Collapses this newer job into `waiting`, the one not yet sent for the same (user,
    /// device, chat): the new content, the waiting job's attempts and backoff (never skipped),
    /// and a new version.
    pub fn collapse_into(&mut self, waiting: &PushJob) {
        self.attempts = waiting.attempts;
        self.due_ms = waiting.due_ms.max(self.due_ms);
        self.version = waiting.version + 1;
    }
}

/// Where an upload is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaState {
    /// Announced; the bytes are not (known to be) there yet.
    Pending,
    /// Uploaded and checked (size, and sha256 if announced); may be sent.
    Ready,
    /// Deleted by retention; its messages say so.
    Expired,
}

/// An upload: who made it, what it is, and the messages that carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRecord {
    /// Server-made id, also the object's name.
    pub id: MediaId,
    /// The uploader; only they may send it.
    pub owner: UserId,
    /// The announced MIME type.
    pub mime: String,
    /// The announced (and checked) size in bytes.
    pub size: u64,
    /// The announced SHA-256, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Where it is in its life. (When it was announced is in the id: a ULID.)
    pub state: MediaState,
    /// Every message that carries it: their chats' members may download it.
    #[serde(default)]
    pub sent_in: Vec<(ChatKey, MsgId)>,
}

/// One signed-in session's refresh grant: the chain of refresh tokens that replace each other
/// as they are used. Only the SHA-256 of the current token is kept, with the account's
/// credential generation it was granted under (a password change ends it) and when it lapses
/// unless used again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshGrant {
    /// Whose session.
    pub user: UserId,
    /// The session's id (random, server-made), the same for every token of the chain.
    pub family: String,
    /// SHA-256 of the current token's secret, lowercase hex.
    pub token_hash: String,
    /// The account's credential generation when the session began.
    pub generation: String,
    /// When it lapses, Unix ms.
    pub expires_ms: u64,
}

/// What [`crate::Store::refresh_rotate`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was the current one: the grant as it was before (it now holds the next
    /// token).
    Rotated(RefreshGrant),
    /// The grant holds another token: this one was used before (it leaked, or a client sent it
    /// twice). The grant is dropped, so neither token works any more.
    Reused,
    /// No such grant, or it lapsed.
    Unknown,
}
