//! `push.register {platform, token}`: the asking device gets notifications through FCM or
//! APNs while it has no connection.

use natter_push::PushPlatform;
use natter_store::PushToken;
use natter_types::Client;
use serde_json::{json, Map, Value};

use super::{Answer, Method};
use crate::wire::obj;
use crate::{Bridge, ChatError};

/// Longest push token accepted (FCM's are ~160 bytes, APNs' 64 hex digits).
const MAX_TOKEN: usize = 4096;

/// The parameters of `push.register`.
pub(crate) struct PushRegister {
    platform: PushPlatform,
    token: String,
}

impl Method for PushRegister {
    fn parse(p: &Map<String, Value>) -> Result<Self, ChatError> {
        let platform: PushPlatform = p
            .get("platform")
            .and_then(Value::as_str)
            .unwrap_or("")
            .parse()
            .map_err(ChatError::BadRequest)?;
        let token = p.get("token").and_then(Value::as_str).unwrap_or("");
        if token.is_empty()
            || token.len() > MAX_TOKEN
            || !token.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ChatError::BadRequest(format!(
                "`token` must be 1 to {MAX_TOKEN} printable ASCII characters"
            )));
        }
        Ok(PushRegister {
            platform,
            token: token.to_owned(),
        })
    }

    async fn run(self, b: &Bridge, c: &Client) -> Result<Answer, ChatError> {
        let platform = self.platform;
        if !b.push.as_ref().is_some_and(|p| p.serves(platform)) {
            return Err(ChatError::Unsupported(format!(
                "this server does not send {} push notifications",
                platform.as_str()
            )));
        }
        b.store
            .push_register(PushToken {
                user: c.user.clone(),
                device: c.device.clone(),
                platform,
                token: self.token,
            })
            .await?;
        Ok(obj(json!({"platform": platform.as_str()})))
    }
}
