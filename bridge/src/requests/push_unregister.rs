//! `push.unregister`: the asking device gets no more notifications.

use natter_types::Client;
use serde_json::{json, Map, Value};

use super::{Answer, Method};
use crate::wire::obj;
use crate::{Bridge, ChatError};

/// `push.unregister` takes no parameters.
pub(crate) struct PushUnregister;

impl Method for PushUnregister {
    fn parse(_: &Map<String, Value>) -> Result<Self, ChatError> {
        Ok(PushUnregister)
    }

    async fn run(self, b: &Bridge, c: &Client) -> Result<Answer, ChatError> {
        let removed = b.store.push_unregister(&c.user, &c.device).await?;
        Ok(obj(json!({"removed": removed})))
    }
}
