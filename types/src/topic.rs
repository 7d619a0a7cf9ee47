//! The topic scheme (docs/protocol.md, "Topics"): every topic a client publishes to is parsed
//! here ([`Inbound`]), and every topic natter publishes to is formatted here ([`Outbound`]).
//! Subscription filters and deliveries are still matched level by level where they are checked
//! (the bridge's `may_subscribe`; the broker's `may_receive` and retained presence).
//!
//! Clients publish to [`Inbound`] topics (`m/`, `r/`, `t/`, `q/`); natter publishes to
//! [`Outbound`] topics (`u/{me}/m|r|e`, `d/{me}/{device}`, `p/{user}`). Both sets live in the
//! [`CHAT_NAMESPACES`], which operator rules may never open.

use std::fmt;

use crate::{ChatAddr, Client, DeviceId, UserId};

/// First topic levels that belong to the chat protocol (`g` is reserved for group topics).
pub const CHAT_NAMESPACES: [&str; 8] = ["u", "d", "p", "m", "r", "t", "q", "g"];

/// Whether `filter` (or a topic) could reach a chat topic: its first level is a chat
/// namespace or a wildcard.
pub fn reaches_chat(filter: &str) -> bool {
    let first = filter.split('/').next().unwrap_or_default();
    first == "+" || first == "#" || names_chat(filter)
}

/// Whether `filter`'s (or a topic's) first level names a chat namespace. An operator rule may
/// grant a filter whose first level is a wildcard (`#`, `+/…`): the broker never delivers a
/// chat topic through such a subscription, so it covers the integration topics only.
pub fn names_chat(filter: &str) -> bool {
    let first = filter.split('/').next().unwrap_or_default();
    CHAT_NAMESPACES.contains(&first)
}

/// A topic a client publishes to, as the protocol reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// `m/{chat}`: a message.
    Message(ChatAddr),
    /// `r/{chat}`: a read receipt.
    Read(ChatAddr),
    /// `t/{chat}`: a typing indicator.
    Typing(ChatAddr),
    /// `q/{method}`: a request (the method is one level, not empty).
    Request(&'a str),
}

impl<'a> Inbound<'a> {
    /// Reads `topic`; `None` for anything outside the protocol.
    pub fn parse(topic: &'a str) -> Option<Inbound<'a>> {
        let (head, rest) = topic.split_once('/')?;
        match head {
            "m" => rest.parse().ok().map(Inbound::Message),
            "r" => rest.parse().ok().map(Inbound::Read),
            "t" => rest.parse().ok().map(Inbound::Typing),
            "q" if !rest.is_empty() && !rest.contains('/') => Some(Inbound::Request(rest)),
            _ => None,
        }
    }

    /// A short name of the kind of topic (a metrics label).
    pub fn kind(&self) -> &'static str {
        match self {
            Inbound::Message(_) => "message",
            Inbound::Read(_) => "read",
            Inbound::Typing(_) => "typing",
            Inbound::Request(_) => "request",
        }
    }
}

impl fmt::Display for Inbound<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Inbound::Message(c) => write!(f, "m/{c}"),
            Inbound::Read(c) => write!(f, "r/{c}"),
            Inbound::Typing(c) => write!(f, "t/{c}"),
            Inbound::Request(m) => write!(f, "q/{m}"),
        }
    }
}

/// A topic natter publishes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound<'a> {
    /// `u/{user}/m`: messages for every device of the user.
    Messages(&'a UserId),
    /// `u/{user}/r`: receipts for the user's messages.
    Receipts(&'a UserId),
    /// `u/{user}/e`: events (group changes, typing, reads on other devices).
    Events(&'a UserId),
    /// `d/{user}/{device}`: answers and errors for one device.
    Device(&'a UserId, &'a DeviceId),
    /// `p/{user}`: the user's presence (retained).
    Presence(&'a UserId),
}

impl<'a> Outbound<'a> {
    /// The answer topic of a connected device.
    pub fn device(c: &'a Client) -> Outbound<'a> {
        Outbound::Device(&c.user, &c.device)
    }
}

impl fmt::Display for Outbound<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outbound::Messages(u) => write!(f, "u/{u}/m"),
            Outbound::Receipts(u) => write!(f, "u/{u}/r"),
            Outbound::Events(u) => write!(f, "u/{u}/e"),
            Outbound::Device(u, d) => write!(f, "d/{u}/{d}"),
            Outbound::Presence(u) => write!(f, "p/{u}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_topics_read_back_as_written() {
        for t in ["m/u/bob", "r/g/team", "t/u/alice", "q/sync"] {
            let parsed = Inbound::parse(t).expect(t);
            assert_eq!(parsed.to_string(), t);
        }
        for t in ["m/x/bob", "q/", "q/a/b", "u/bob/m", "m", ""] {
            assert_eq!(Inbound::parse(t), None, "{t}");
        }
    }

    #[test]
    fn outbound_topics_are_in_chat_namespaces() {
        let u = UserId::new("alice").unwrap();
        let d = DeviceId::new("phone").unwrap();
        for t in [
            Outbound::Messages(&u),
            Outbound::Receipts(&u),
            Outbound::Events(&u),
            Outbound::Device(&u, &d),
            Outbound::Presence(&u),
        ] {
            assert!(reaches_chat(&t.to_string()), "{t}");
        }
        assert_eq!(Outbound::Device(&u, &d).to_string(), "d/alice/phone");
    }

    proptest::proptest! {
        /// Any topic a client may publish to: read as one of the protocol's, or as none, never
        /// a panic; a request method is one level.
        #[test]
        fn any_topic_is_read_or_refused(topic in "[a-z/+#$]{0,3}(/[a-zA-Z0-9_.:+#-]{0,8}){0,4}") {
            if let Some(Inbound::Request(m)) = Inbound::parse(&topic) {
                proptest::prop_assert!(!m.is_empty() && !m.contains('/'));
            }
        }
    }
}
