//! The vocabulary every natter crate shares: who is speaking ([`UserId`], [`DeviceId`],
//! [`Client`]), where a message goes ([`ChatAddr`], [`ChatKey`], [`GroupId`]), how it is ordered
//! ([`MsgId`], [`Seq`]), uploads ([`MediaId`]) and push platforms ([`PushPlatform`]); the topic
//! scheme ([`topic`]) and the clock ([`clock`]).
//!
//! Each type is validated once, where it enters the system (a CONNECT, a topic, a request), so the
//! rest of the code can trust it. This crate must never grow behaviour beyond parsing,
//! formatting, making fresh ids and reading the clock: it sits below every other crate, and
//! anything it depends on, they all do.

pub mod clock;
pub mod topic;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A user id must match `[a-z0-9][a-z0-9_.-]{0,63}`.
    #[error("{0:?} is not a valid user id: expected [a-z0-9][a-z0-9_.-]{{0,63}}")]
    User(String),
    /// A device id must match `[A-Za-z0-9_-]{1,64}`.
    #[error("{0:?} is not a valid device id: expected [A-Za-z0-9_-]{{1,64}}")]
    Device(String),
    /// A group id must match the user id rules (it shares the topic level).
    #[error("{0:?} is not a valid group id")]
    Group(String),
    /// A chat address must be `u/{user}` or `g/{group}`.
    #[error("{0:?} is not a chat address: expected u/{{user}} or g/{{group}}")]
    Chat(String),
    /// A message id is a 26-character ULID.
    #[error("{0:?} is not a message id")]
    MsgId(String),
    /// A media id is a lowercase 26-character ULID.
    #[error("{0:?} is not a media id")]
    Media(String),
}

fn is_user_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b[1..].iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-')
        })
}

/// Declares a validated string newtype with `Display`, `FromStr`, serde and `as_str`.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $check:expr, $err:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `s`.
            pub fn new(s: &str) -> Result<Self, NameError> {
                if ($check)(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(NameError::$err(s.to_owned()))
                }
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A user's id: `[a-z0-9][a-z0-9_.-]{0,63}`. Also the MQTT username.
    UserId,
    is_user_name,
    User
);

name_type!(
    /// One of a user's devices: `[A-Za-z0-9_-]{1,64}`. The part after `:` in the MQTT client id.
    DeviceId,
    |s: &str| !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'),
    Device
);

name_type!(
    /// A group's id. Server-made, but shaped like a user id so it fits one topic level.
    GroupId,
    is_user_name,
    Group
);

impl GroupId {
    /// A fresh server-made id: a lowercase ULID, so ids sort by creation time and fit a topic
    /// level.
    pub fn generate() -> GroupId {
        GroupId(ulid::Ulid::new().to_string().to_ascii_lowercase())
    }
}

name_type!(
    /// An uploaded file's id: a server-made lowercase ULID, so ids sort by upload time (the
    /// retention sweep reads them oldest first) and are safe as an object name and a URL segment.
    MediaId,
    |s: &str| s.len() == 26
        && s.bytes().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        && ulid::Ulid::from_string(s).is_ok(),
    Media
);

impl MediaId {
    /// A fresh id.
    pub fn generate() -> MediaId {
        MediaId(ulid::Ulid::new().to_string().to_ascii_lowercase())
    }

    /// The smallest id made at `ms` (Unix ms): every id made before it sorts below.
    pub fn floor_at(ms: u64) -> MediaId {
        MediaId(
            ulid::Ulid::from_parts(ms, 0)
                .to_string()
                .to_ascii_lowercase(),
        )
    }

    /// When it was made, Unix ms.
    pub fn timestamp_ms(&self) -> u64 {
        ulid::Ulid::from_string(&self.0)
            .map(|u| u.timestamp_ms())
            .unwrap_or(0)
    }
}

/// Who is connected: the user and the device, from the MQTT client id `{user}:{device}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Client {
    /// The authenticated user.
    pub user: UserId,
    /// The device of that user.
    pub device: DeviceId,
}

impl Client {
    /// Parses an MQTT client id of the form `{user}:{device}`.
    pub fn parse(client_id: &str) -> Option<Client> {
        let (u, d) = client_id.split_once(':')?;
        Some(Client {
            user: UserId::new(u).ok()?,
            device: DeviceId::new(d).ok()?,
        })
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.user, self.device)
    }
}

/// A chat as one reader names it: `u/{peer}` or `g/{group}`.
///
/// The same one-to-one chat has two addresses (Alice's `u/bob` is Bob's `u/alice`); the store
/// keys it once by [`ChatKey`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChatAddr {
    /// A one-to-one chat with this peer.
    User(UserId),
    /// A group chat.
    Group(GroupId),
}

impl ChatAddr {
    /// The store's key for this chat as seen by `me`.
    pub fn key(&self, me: &UserId) -> ChatKey {
        match self {
            ChatAddr::User(peer) => ChatKey::direct(me, peer),
            ChatAddr::Group(g) => ChatKey(format!("g:{g}")),
        }
    }
}

impl fmt::Display for ChatAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatAddr::User(u) => write!(f, "u/{u}"),
            ChatAddr::Group(g) => write!(f, "g/{g}"),
        }
    }
}

impl FromStr for ChatAddr {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let bad = || NameError::Chat(s.to_owned());
        match s.split_once('/') {
            Some(("u", u)) => Ok(ChatAddr::User(UserId::new(u).map_err(|_| bad())?)),
            Some(("g", g)) => Ok(ChatAddr::Group(GroupId::new(g).map_err(|_| bad())?)),
            _ => Err(bad()),
        }
    }
}

impl Serialize for ChatAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChatAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The store's name for a chat, the same for every member: `d:{a}:{b}` (a < b) for a one-to-one
/// chat, `g:{group}` for a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChatKey(String);

impl ChatKey {
    /// The key of the one-to-one chat between `a` and `b`, whichever side asks.
    pub fn direct(a: &UserId, b: &UserId) -> ChatKey {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        ChatKey(format!("d:{lo}:{hi}"))
    }

    /// Rebuilds a key read back from storage.
    pub fn from_stored(s: String) -> ChatKey {
        ChatKey(s)
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address `reader` uses for this chat; none for a one-to-one chat `reader` is not one
    /// of the two users of (whether they may read a group is membership, not the key's).
    pub fn addr_for(&self, reader: &UserId) -> Option<ChatAddr> {
        if let Some(g) = self.0.strip_prefix("g:") {
            return GroupId::new(g).ok().map(ChatAddr::Group);
        }
        let rest = self.0.strip_prefix("d:")?;
        let (a, b) = rest.split_once(':')?;
        let peer = match reader.as_str() {
            r if r == a => b,
            r if r == b => a,
            _ => return None,
        };
        UserId::new(peer).ok().map(ChatAddr::User)
    }
}

/// A message's server id: a ULID, unique and sortable by time. Chat order is id order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgId(pub u128);

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&ulid::Ulid(self.0), f)
    }
}

impl FromStr for MsgId {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        ulid::Ulid::from_string(s)
            .map(|u| MsgId(u.0))
            .map_err(|_| NameError::MsgId(s.to_owned()))
    }
}

impl MsgId {
    /// Milliseconds since the Unix epoch at which this id was made.
    pub fn timestamp_ms(&self) -> u64 {
        ulid::Ulid(self.0).timestamp_ms()
    }
}

impl Serialize for MsgId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MsgId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A position in one user's inbox: starts at 1, strictly increasing, no gaps.
pub type Seq = u64;

/// The push service a device token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushPlatform {
    /// Firebase Cloud Messaging (Android, web).
    Fcm,
    /// Apple Push Notification service.
    Apns,
}

impl PushPlatform {
    /// `fcm` or `apns`, as in the protocol and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PushPlatform::Fcm => "fcm",
            PushPlatform::Apns => "apns",
        }
    }
}

impl FromStr for PushPlatform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fcm" => Ok(PushPlatform::Fcm),
            "apns" => Ok(PushPlatform::Apns),
            other => Err(format!(
                "unknown push platform {other:?}: expected \"fcm\" or \"apns\""
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_follow_the_protocol_pattern() {
        assert!(UserId::new("alice").is_ok());
        assert!(UserId::new("0bot.v2-x_y").is_ok());
        assert!(UserId::new("").is_err());
        assert!(UserId::new("Alice").is_err());
        assert!(UserId::new("_alice").is_err());
        assert!(UserId::new(&"a".repeat(65)).is_err());
        assert!(UserId::new("a/b").is_err());
        assert!(UserId::new("a+").is_err());
    }

    #[test]
    fn media_ids_are_lowercase_ulids_that_sort_by_time() {
        let id = MediaId::generate();
        assert_eq!(MediaId::new(id.as_str()), Ok(id.clone()));
        assert!(MediaId::new(&id.as_str().to_ascii_uppercase()).is_err());
        assert!(MediaId::new("../etc/passwd").is_err());
        assert!(MediaId::floor_at(id.timestamp_ms()) <= id);
        assert!(MediaId::floor_at(id.timestamp_ms() + 1) > id);
    }

    #[test]
    fn client_ids_split_into_user_and_device() {
        let c = Client::parse("alice:Phone-1").unwrap();
        assert_eq!(c.user.as_str(), "alice");
        assert_eq!(c.device.as_str(), "Phone-1");
        assert!(Client::parse("alice").is_none());
        assert!(Client::parse("alice:").is_none());
        assert!(Client::parse("alice:ph:one").is_none());
    }

    #[test]
    fn a_direct_chat_has_one_key_and_two_addresses() {
        let a = UserId::new("alice").unwrap();
        let b = UserId::new("bob").unwrap();
        let k = ChatKey::direct(&b, &a);
        assert_eq!(k, ChatKey::direct(&a, &b));
        assert_eq!(k.addr_for(&a), Some(ChatAddr::User(b.clone())));
        assert_eq!(k.addr_for(&b), Some(ChatAddr::User(a.clone())));
        assert_eq!(k.addr_for(&UserId::new("carol").unwrap()), None);
        assert_eq!("u/bob".parse::<ChatAddr>().unwrap().key(&a), k);
        let notes = ChatKey::direct(&a, &a);
        assert_eq!(notes.addr_for(&a), Some(ChatAddr::User(a.clone())));
    }

    #[test]
    fn message_ids_round_trip_as_text() {
        let id = MsgId(ulid::Ulid::new().0);
        assert_eq!(id.to_string().parse::<MsgId>().unwrap(), id);
        assert!("nope".parse::<MsgId>().is_err());
    }
}
