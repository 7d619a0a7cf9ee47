//! The JSON that crosses the wire: what clients send (parsed strictly, with errors a person can
//! act on) and what natter publishes (messages, receipts, answers, errors).

use bytes::Bytes;
use natter_store::{Content, StoredMessage};
use natter_types::{ChatKey, MediaId, MsgId, Seq, UserId};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::ChatError;
use crate::outbound::Receipt;

/// Message types a client may send.
pub const SEND_TYPES: [&str; 7] = [
    "text", "image", "video", "audio", "file", "location", "contact",
];

/// The longest `cid` accepted, in bytes.
pub const MAX_CID_BYTES: usize = 128;
/// The longest file name kept with media, in bytes.
pub const MAX_MEDIA_NAME: usize = 255;

/// A message as a client sends it on `m/{chat}`, validated (the protocol calls it a Send).
#[derive(Debug)]
pub struct MessageIn {
    /// The client's id for it.
    pub cid: Option<String>,
    /// What it says (its `media` is filled in once the upload is checked).
    pub content: Content,
    /// The upload it carries, as the client named it.
    pub media: Option<MediaRef>,
}

/// The `media` of a Send: which upload, and the file name to show. The rest of what the
/// message says about it (type, size, hash) comes from the upload's record, not the client.
#[derive(Debug)]
pub struct MediaRef {
    /// The upload.
    pub id: MediaId,
    /// The file name to show.
    pub name: Option<String>,
}

fn parse_media_ref(v: Value) -> Result<Option<MediaRef>, ChatError> {
    let bad = |what: &str| ChatError::BadRequest(format!("`media`: {what}"));
    let mut o = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        _ => return Err(bad("expected an object with the `id` of an upload")),
    };
    let id = match o.remove("id") {
        Some(Value::String(id)) => id
            .parse()
            .map_err(|e: natter_types::NameError| bad(&e.to_string()))?,
        _ => return Err(bad("`id` (from media.upload) is required")),
    };
    let name = match o.remove("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) if n.len() <= MAX_MEDIA_NAME && !n.chars().any(char::is_control) => {
            Some(n)
        }
        Some(_) => {
            return Err(bad(&format!(
                "`name` must be text of at most {MAX_MEDIA_NAME} bytes"
            )))
        }
    };
    Ok(Some(MediaRef { id, name }))
}

/// Parses a Send payload: a JSON object, or (the shortcut for stock clients) any UTF-8 text that
/// does not start like an object, which becomes a text message.
pub fn parse_send(payload: &[u8]) -> Result<MessageIn, ChatError> {
    let text = std::str::from_utf8(payload).map_err(|e| ChatError::BadUtf8(e.valid_up_to()))?;
    if !text.trim_start().starts_with('{') {
        if text.trim().is_empty() {
            return Err(ChatError::BadRequest("an empty message".into()));
        }
        let content = Content {
            kind: "text".into(),
            body: text.to_owned(),
            media: None,
            reply_to: None,
            ttl: None,
            event: None,
        };
        return Ok(MessageIn {
            cid: None,
            content,
            media: None,
        });
    }
    let v: Value = serde_json::from_str(text).map_err(|e| ChatError::BadJson(e.to_string()))?;
    let Value::Object(mut o) = v else {
        return Err(ChatError::BadJson("expected a JSON object".into()));
    };
    let cid = match o.remove("cid") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if !c.is_empty() && c.len() <= MAX_CID_BYTES => Some(c),
        Some(_) => {
            return Err(ChatError::BadRequest(format!(
                "`cid` must be a string of 1 to {MAX_CID_BYTES} bytes"
            )))
        }
    };
    let kind = match o.remove("type") {
        None | Some(Value::Null) => "text".to_owned(),
        Some(Value::String(t)) if SEND_TYPES.contains(&t.as_str()) => t,
        Some(other) => {
            return Err(ChatError::BadRequest(format!(
                "`type` {other} is not one of {SEND_TYPES:?}"
            )))
        }
    };
    let body = match o.remove("body") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(b)) => b,
        Some(_) => return Err(ChatError::BadRequest("`body` must be a string".into())),
    };
    let media = parse_media_ref(o.remove("media").unwrap_or(Value::Null))?;
    if body.is_empty() && media.is_none() && kind == "text" {
        return Err(ChatError::BadRequest(
            "a text message needs a non-empty `body` (or `media`)".into(),
        ));
    }
    let reply_to =
        match o.remove("reply_to") {
            None | Some(Value::Null) => None,
            Some(Value::String(r)) => Some(r.parse::<MsgId>().map_err(|_| {
                ChatError::BadRequest(format!("`reply_to` {r:?} is not a message id"))
            })?),
            Some(_) => {
                return Err(ChatError::BadRequest(
                    "`reply_to` must be a message id string".into(),
                ))
            }
        };
    let ttl = match o.remove("ttl") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|t| t > 0) => n.as_u64(),
        Some(_) => {
            return Err(ChatError::BadRequest(
                "`ttl` must be a positive number of seconds".into(),
            ))
        }
    };
    Ok(MessageIn {
        cid,
        content: Content {
            kind,
            body,
            media: None,
            reply_to,
            ttl,
            event: None,
        },
        media,
    })
}

/// Any JSON payload (requests, read receipts, typing).
pub fn parse_json(payload: &[u8]) -> Result<Value, ChatError> {
    serde_json::from_slice(payload).map_err(|e| ChatError::BadJson(e.to_string()))
}

/// A message as one reader sees it.
#[derive(Serialize)]
pub struct MessageOut<'a> {
    // A device's PUBACK hands this payload back: `receipts::on_acked` reads `id`, `chat`,
    // `from`, `type`, `ts` and `cid` from it to make the delivered receipt without a store read.
    id: MsgId,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<Seq>,
    chat: String,
    from: &'a UserId,
    dev: &'a str,
    ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cid: Option<&'a str>,
    #[serde(flatten)]
    content: &'a Content,
}

impl<'a> MessageOut<'a> {
    /// `m` as `reader` sees it, at `seq` in their inbox (none for history).
    pub fn new(m: &'a StoredMessage, reader: &UserId, seq: Option<Seq>) -> MessageOut<'a> {
        MessageOut {
            id: m.id,
            seq,
            // Every reader of a stored message is one of its chat's users, and a stored group
            // key always names a group: the empty default would be a store bug, never input.
            chat: m
                .chat
                .addr_for(reader)
                .map(|a| a.to_string())
                .unwrap_or_default(),
            from: &m.from,
            dev: m.dev.as_str(),
            ts: m.ts,
            cid: m.cid.as_deref(),
            content: &m.content,
        }
    }

    /// As a payload.
    pub fn bytes(&self) -> Bytes {
        // Serialising it cannot fail: strings, numbers and a JSON value, no non-string map keys.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// What a receipt is about: the message's chat, sender, id and the sender's own id for it.
/// Built from a stored message, or from the copy a device acknowledged (which carries all four),
/// so a delivered receipt needs no store read.
#[derive(Debug, Clone, Copy)]
pub struct Receipted<'a> {
    /// The chat, as stored.
    pub chat: &'a ChatKey,
    /// Who sent the message (who gets the receipt).
    pub from: &'a UserId,
    /// The message.
    pub id: MsgId,
    /// The sender's client id for it.
    pub cid: Option<&'a str>,
}

impl<'a> From<&'a StoredMessage> for Receipted<'a> {
    fn from(m: &'a StoredMessage) -> Self {
        Receipted {
            chat: &m.chat,
            from: &m.from,
            id: m.id,
            cid: m.cid.as_deref(),
        }
    }
}

/// A receipt for the sender of `m`: `what` (`sent`, `delivered`, `read`) at `ts`, `by` the
/// recipient (none for `sent`), with the chat as the sender names it.
pub fn receipt(m: Receipted<'_>, what: Receipt<'_>, ts: u64) -> Bytes {
    // The sender is always one of the chat's users (see `MessageOut::new`).
    let chat = m
        .chat
        .addr_for(m.from)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut v = json!({"chat": chat, "id": m.id, "cid": m.cid, "status": what.word(), "ts": ts});
    if let Some(by) = what.by() {
        v["by"] = json!(by);
    }
    Bytes::from(v.to_string())
}

/// Most bytes of messages one answer carries: a page stops early (with `more: true`) rather
/// than outgrow what clients accept as one MQTT packet.
pub const ANSWER_BYTES: usize = 256 * 1024;

/// Serialises messages until [`ANSWER_BYTES`] are spent (always at least one); `true` if it
/// stopped early.
pub fn page<'a>(msgs: impl Iterator<Item = MessageOut<'a>>) -> (Vec<Value>, bool) {
    let mut out = Vec::new();
    let mut bytes = 0;
    for m in msgs {
        // Cannot fail (see `MessageOut::bytes`).
        let v = serde_json::to_value(m).unwrap_or_default();
        bytes += v.to_string().len();
        if bytes > ANSWER_BYTES && !out.is_empty() {
            return (out, true);
        }
        out.push(v);
    }
    (out, false)
}

/// The fields of a JSON object (an answer's result), or none for anything else.
pub fn obj(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// An error about a publish, for `d/{me}/{device}`.
pub fn publish_error(topic: &str, cid: Option<&str>, e: &ChatError) -> Bytes {
    let v = json!({
        "cid": cid, "topic": topic, "ok": false,
        "error": {"code": e.code(), "message": e.to_string()},
    });
    Bytes::from(v.to_string())
}

/// A successful answer: `result`'s fields beside `"id"` and `"ok": true`.
pub fn answer_ok(id: &Value, mut result: serde_json::Map<String, Value>) -> Bytes {
    result.insert("id".into(), id.clone());
    result.insert("ok".into(), Value::Bool(true));
    Bytes::from(Value::Object(result).to_string())
}

/// A failed answer.
pub fn answer_err(id: &Value, e: &ChatError) -> Bytes {
    let v = json!({"id": id, "ok": false, "error": {"code": e.code(), "message": e.to_string()}});
    Bytes::from(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    proptest::proptest! {
        /// Any bytes at all: the send parser answers with a message or an error, never a
        /// panic, and what it accepts obeys the protocol's rules.
        #[test]
        fn the_send_parser_never_panics_on_any_bytes(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if let Ok(s) = parse_send(&payload) {
                proptest::prop_assert!(SEND_TYPES.contains(&s.content.kind.as_str()));
                proptest::prop_assert!(s.cid.as_ref().is_none_or(|c| !c.is_empty() && c.len() <= MAX_CID_BYTES));
                proptest::prop_assert!(s.content.kind != "text" || !s.content.body.is_empty() || s.media.is_some());
            }
            let _ = parse_json(&payload);
        }

        /// JSON objects with the Send's fields in random shapes: parsed or refused, never a
        /// panic.
        #[test]
        fn the_send_parser_judges_every_field_shape(
            cid in proptest::option::of(proptest::prop_oneof![
                proptest::strategy::Just(serde_json::json!(null)),
                proptest::strategy::Just(serde_json::json!(7)),
                ".{0,140}".prop_map(serde_json::Value::from),
            ]),
            kind in proptest::option::of(".{0,10}"),
            body in proptest::option::of(".{0,20}"),
            ttl in proptest::option::of(proptest::num::i64::ANY),
            reply_to in proptest::option::of(".{0,30}"),
        ) {
            let mut o = serde_json::Map::new();
            if let Some(c) = cid { o.insert("cid".into(), c); }
            if let Some(k) = kind { o.insert("type".into(), k.into()); }
            if let Some(b) = body { o.insert("body".into(), b.into()); }
            if let Some(t) = ttl { o.insert("ttl".into(), t.into()); }
            if let Some(r) = reply_to { o.insert("reply_to".into(), r.into()); }
            let payload = serde_json::Value::Object(o).to_string();
            if let Ok(s) = parse_send(payload.as_bytes()) {
                proptest::prop_assert!(s.content.ttl.is_none_or(|t| t > 0));
            }
        }
    }

    #[test]
    fn plain_text_is_a_text_message() {
        let s = parse_send(b"door open").unwrap();
        assert_eq!(s.content.kind, "text");
        assert_eq!(s.content.body, "door open");
        assert!(s.cid.is_none());
    }

    #[test]
    fn a_json_send_keeps_its_fields() {
        let s =
            parse_send(br#"{"cid":"c1","type":"location","body":"52.1,4.3","ttl":60}"#).unwrap();
        assert_eq!(s.cid.as_deref(), Some("c1"));
        assert_eq!(s.content.kind, "location");
        assert_eq!(s.content.ttl, Some(60));
    }

    #[test]
    fn bad_sends_get_their_own_error_codes() {
        assert_eq!(parse_send(b"{oops").unwrap_err().code(), "bad_json");
        assert_eq!(parse_send(&[0xff, 0xfe]).unwrap_err().code(), "bad_utf8");
        assert_eq!(
            parse_send(br#"{"body":"x","type":"gif"}"#)
                .unwrap_err()
                .code(),
            "bad_request"
        );
        assert_eq!(
            parse_send(br#"{"body":5}"#).unwrap_err().code(),
            "bad_request"
        );
        assert_eq!(
            parse_send(br#"{"cid":"x"}"#).unwrap_err().code(),
            "bad_request"
        );
        assert_eq!(
            parse_send(br#"{"body":"x","reply_to":"zz"}"#)
                .unwrap_err()
                .code(),
            "bad_request"
        );
    }
}
