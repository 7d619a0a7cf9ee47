//! `media.upload {mime, size, sha256?}`: records an upload and hands out where to PUT it.

use natter_media::Verb;
use natter_store::{MediaRecord, MediaState};
use natter_types::{Client, MediaId};
use serde_json::{json, Map, Value};

use super::{params, Answer, Method};
use crate::media::essence;
use crate::wire::obj;
use crate::{Bridge, ChatError};

/// Longest MIME type accepted.
const MAX_MIME: usize = 127;

/// The parameters of `media.upload`.
pub(crate) struct MediaUpload {
    mime: String,
    size: u64,
    sha256: Option<String>,
}

impl Method for MediaUpload {
    fn parse(p: &Map<String, Value>) -> Result<Self, ChatError> {
        let mime = essence(params::string(p, "mime")?);
        if mime.len() > MAX_MIME || !mime.contains('/') {
            return Err(ChatError::BadRequest(format!(
                "`mime` {mime:?} is not a MIME type"
            )));
        }
        let size = p
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| ChatError::BadRequest("`size` (bytes, a number) is required".into()))?;
        let sha256 = match p.get("sha256") {
            None | Some(Value::Null) => None,
            Some(Value::String(h)) if h.len() == 64 && h.bytes().all(|c| c.is_ascii_hexdigit()) => {
                Some(h.to_ascii_lowercase())
            }
            Some(_) => {
                return Err(ChatError::BadRequest(
                    "`sha256` must be 64 hex digits".into(),
                ))
            }
        };
        Ok(MediaUpload { mime, size, sha256 })
    }

    async fn run(self, b: &Bridge, client: &Client) -> Result<Answer, ChatError> {
        let MediaUpload { mime, size, sha256 } = self;
        b.media.check_announce(&mime, size)?;
        let id = MediaId::generate();
        let url = b
            .media
            .signed_url(&Verb::Put { size, mime: &mime }, &id)
            .await?;
        b.store
            .media_create(MediaRecord {
                id: id.clone(),
                owner: client.user.clone(),
                mime: mime.clone(),
                size,
                sha256,
                state: MediaState::Pending,
                sent_in: Vec::new(),
            })
            .await?;
        Ok(obj(json!({
            "media": id,
            "url": url.url,
            "method": "PUT",
            "headers": {"content-type": mime},
            "expires": url.expires_ms,
        })))
    }
}
