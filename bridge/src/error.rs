//! Chat errors: each has a stable `code` for clients and maps to an MQTT 5 reason code.

use natter_broker::Refusal;
use natter_store::StoreError;

/// Everything a client can get wrong, or natter can fail at, while handling a publish.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A topic outside the protocol.
    #[error("unknown topic {0:?}: publish to m/…, r/…, t/… or q/{{method}}")]
    UnknownTopic(String),
    /// `q/{method}` with a method natter does not have.
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    /// A one-to-one chat with a user who does not exist.
    #[error("no such user {0:?}")]
    UnknownUser(String),
    /// A chat the sender is not in, or a right the sender lacks.
    #[error("{0}")]
    NotAuthorized(String),
    /// Not JSON (or not the JSON expected).
    #[error("malformed JSON: {0}")]
    BadJson(String),
    /// Not UTF-8.
    #[error("payload is not valid UTF-8 (first bad byte at offset {0})")]
    BadUtf8(usize),
    /// JSON, but a field is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// Over the message size limit.
    #[error("payload of {size} bytes is over the limit of {limit}")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An upload over the size limit, or more bytes than announced.
    #[error("{0}")]
    MediaTooLarge(String),
    /// An upload of a MIME type not accepted.
    #[error("{0}")]
    MediaType(String),
    /// Media deleted by retention.
    #[error("{0}")]
    Gone(String),
    /// Too many of something too fast (messages, requests, presence look-ups, typing).
    #[error("{0}")]
    RateLimited(String),
    /// A configured limit (group size) would be exceeded.
    #[error("{0}")]
    Limit(String),
    /// Something this server is not set up to do (a push platform it has no credentials for).
    #[error("{0}")]
    Unsupported(String),
    /// The store refused for load; retry later.
    #[error("server busy, retry later")]
    Busy,
    /// natter cannot take it now (shutting down); nothing was kept.
    #[error("message not stored: {0}")]
    Unavailable(String),
    /// The store failed; nothing was kept.
    #[error("message not stored: {0}")]
    Store(#[source] StoreError),
    /// The media storage failed (full, unreachable, misconfigured).
    #[error("{0}")]
    MediaStorage(#[source] natter_media::MediaError),
}

impl ChatError {
    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            ChatError::UnknownTopic(_) => "unknown_topic",
            ChatError::UnknownMethod(_) => "unknown_method",
            ChatError::UnknownUser(_) => "unknown_user",
            ChatError::NotAuthorized(_) => "not_authorized",
            ChatError::BadJson(_) => "bad_json",
            ChatError::BadUtf8(_) => "bad_utf8",
            ChatError::BadRequest(_) => "bad_request",
            ChatError::TooLarge { .. } | ChatError::MediaTooLarge(_) => "too_large",
            ChatError::MediaType(_) => "unsupported_type",
            ChatError::Gone(_) => "expired",
            ChatError::Limit(_) => "limit_exceeded",
            ChatError::RateLimited(_) => "rate_limited",
            ChatError::Unsupported(_) => "unsupported",
            ChatError::Busy => "busy",
            ChatError::Unavailable(_) | ChatError::Store(_) | ChatError::MediaStorage(_) => {
                "unavailable"
            }
        }
    }

    /// The MQTT 5 PUBACK reason it becomes.
    pub fn refusal(&self) -> Refusal {
        match self {
            ChatError::UnknownTopic(_)
            | ChatError::UnknownMethod(_)
            | ChatError::UnknownUser(_)
            | ChatError::NotAuthorized(_)
            | ChatError::Unsupported(_) => Refusal::NotAuthorized,
            ChatError::BadJson(_)
            | ChatError::BadUtf8(_)
            | ChatError::BadRequest(_)
            | ChatError::MediaType(_)
            | ChatError::Gone(_) => Refusal::PayloadFormatInvalid,
            ChatError::TooLarge { .. } | ChatError::MediaTooLarge(_) => Refusal::TooLarge,
            ChatError::Busy | ChatError::Limit(_) | ChatError::RateLimited(_) => {
                Refusal::QuotaExceeded
            }
            ChatError::Unavailable(_) | ChatError::Store(_) | ChatError::MediaStorage(_) => {
                Refusal::Unavailable
            }
        }
    }
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Busy => ChatError::Busy,
            other => ChatError::Store(other),
        }
    }
}
