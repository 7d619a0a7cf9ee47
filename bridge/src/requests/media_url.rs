//! `media.url {media}`: a download URL, for the uploader and members of a chat it was sent in.

use natter_media::Verb;
use natter_store::MediaState;
use natter_types::{Client, MediaId};
use serde_json::{json, Map, Value};

use super::{params, Answer, Method};
use crate::media::not_yours;
use crate::wire::obj;
use crate::{Bridge, ChatError};

/// The parameters of `media.url`.
pub(crate) struct MediaUrl {
    media: MediaId,
}

impl Method for MediaUrl {
    fn parse(p: &Map<String, Value>) -> Result<Self, ChatError> {
        // `media`, not `id`: `id` is the request's own.
        let media = params::string(p, "media")?
            .parse()
            .map_err(|e: natter_types::NameError| ChatError::BadRequest(e.to_string()))?;
        Ok(MediaUrl { media })
    }

    async fn run(self, b: &Bridge, client: &Client) -> Result<Answer, ChatError> {
        let id = &self.media;
        let rec = b.store.media(id).await?.ok_or_else(|| not_yours(id))?;
        if !b.may_download(&client.user, &rec).await? {
            return Err(not_yours(id));
        }
        match rec.state {
            MediaState::Ready => {}
            MediaState::Pending => {
                return Err(ChatError::BadRequest(format!(
                    "media {id} is not uploaded yet"
                )))
            }
            MediaState::Expired => return Err(ChatError::Gone(format!("media {id} expired"))),
        }
        let url = b.media.signed_url(&Verb::Get, id).await?;
        Ok(obj(json!({
            "media": id,
            "url": url.url,
            "expires": url.expires_ms,
            "mime": rec.mime,
            "size": rec.size,
        })))
    }
}
