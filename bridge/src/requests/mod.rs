//! Requests on `q/{method}`: parsed once into a typed [`Request`], run, and answered on the
//! asking device's `d/{me}/{device}` (matched by the request's `id`).
//!
//! One method, one file: each defines its parameters as a struct, how they are read from the
//! request's JSON object ([`Method::parse`]) and what running it does ([`Method::run`]). Adding
//! a method is a new file here plus one line in the [`requests!`] list below. A method must
//! never publish its own answer: the caller sends what `run` returns, or the error.

mod chats;
mod group_add;
mod group_create;
mod group_decline;
mod group_info;
mod group_join;
mod group_leave;
mod group_remove;
mod history;
mod media_upload;
mod media_url;
pub(crate) mod params;
mod presence;
mod push_register;
mod push_unregister;
mod sync;

use natter_types::Client;
use serde_json::{Map, Value};

use crate::{Bridge, ChatError};

/// What a method answers: the fields of its result object (beside `id` and `ok`).
pub(crate) type Answer = Map<String, Value>;

/// A request method: its parameters, read from the request object, and what it does.
pub(crate) trait Method: Sized {
    /// Reads the parameters; an error names the field and what was expected.
    fn parse(params: &Map<String, Value>) -> Result<Self, ChatError>;
    /// Runs the request for `client`; the answer's fields, or why it failed.
    fn run(
        self,
        bridge: &Bridge,
        client: &Client,
    ) -> impl std::future::Future<Output = Result<Answer, ChatError>> + Send;
}

/// Declares [`Request`], one variant per method, with its wire name and its type.
macro_rules! requests {
    ($($name:literal => $variant:ident($ty:ty),)*) => {
        /// A request, as its method and parameters were read.
        pub(crate) enum Request {
            $(
                #[doc = concat!("`q/", $name, "`")]
                $variant($ty),
            )*
        }

        impl Request {
            /// Reads `q/{method}`'s parameters; an unknown method is an error.
            pub(crate) fn parse(method: &str, params: &Map<String, Value>) -> Result<Request, ChatError> {
                match method {
                    $($name => Ok(Request::$variant(<$ty as Method>::parse(params)?)),)*
                    other => Err(ChatError::UnknownMethod(other.to_owned())),
                }
            }

            /// Runs it for `client`.
            pub(crate) async fn run(self, bridge: &Bridge, client: &Client) -> Result<Answer, ChatError> {
                match self {
                    $(Request::$variant(r) => r.run(bridge, client).await,)*
                }
            }
        }
    };
}

requests! {
    "sync" => Sync(sync::Sync),
    "history" => History(history::History),
    "chats" => Chats(chats::Chats),
    "group.create" => GroupCreate(group_create::GroupCreate),
    "group.add" => GroupAdd(group_add::GroupAdd),
    "group.remove" => GroupRemove(group_remove::GroupRemove),
    "group.leave" => GroupLeave(group_leave::GroupLeave),
    "group.info" => GroupInfo(group_info::GroupInfo),
    "group.join" => GroupJoin(group_join::GroupJoin),
    "group.decline" => GroupDecline(group_decline::GroupDecline),
    "presence" => Presence(presence::Presence),
    "push.register" => PushRegister(push_register::PushRegister),
    "push.unregister" => PushUnregister(push_unregister::PushUnregister),
    "media.upload" => MediaUpload(media_upload::MediaUpload),
    "media.url" => MediaUrl(media_url::MediaUrl),
}

impl Bridge {
    /// `q/{method}`: reads the request object and its `id`, runs the method, and sends the
    /// answer to the asking device. An error is returned (and reported by the caller with
    /// the `id`, see [`crate::wire::answer_err`]).
    pub(crate) async fn request(
        &self,
        client: &Client,
        method: &str,
        payload: &[u8],
    ) -> Result<(), ChatError> {
        let v = crate::wire::parse_json(payload)?;
        let Value::Object(params) = v else {
            return Err(ChatError::BadJson("expected a JSON object".into()));
        };
        let Some(id) = params
            .get("id")
            .filter(|i| i.is_string() || i.is_number())
            .cloned()
        else {
            return Err(ChatError::BadRequest(
                "a request needs an `id` (string or number)".into(),
            ));
        };
        let answer = Request::parse(method, &params)?.run(self, client).await?;
        self.outbox
            .to_device(client, crate::wire::answer_ok(&id, answer))
            .await;
        Ok(())
    }
}
