//! Requests on `q/{method}`: parsed once into a typed [`Request`], run, and answered on the
//! asking device's `d/{me}/{device}` (matched by the request's `id`).
//!
//! One method, one file: each defines its parameters as a struct, how they are read from the
//! request's JSON object ([`Method::parse`]) and what running it does ([`Method::run`]). Adding
//! a method is a new file here plus one line in the `requests!` list below. A method must
//! never publish its own answer: the caller sends what `run` returns, or the error.

pub(crate) mod params;

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

/// Declares the method modules and [`Request`], one variant per method, named after the
/// method's type, with the method's wire name.
macro_rules! requests {
    ($($module:ident :: $ty:ident = $name:literal,)*) => {
        $(mod $module;)*

        /// A request, as its method and parameters were read.
        pub(crate) enum Request {
            $(
                #[doc = concat!("`q/", $name, "`")]
                $ty($module::$ty),
            )*
        }

        impl Request {
            /// Reads `q/{method}`'s parameters; an unknown method is an error.
            pub(crate) fn parse(method: &str, params: &Map<String, Value>) -> Result<Request, ChatError> {
                match method {
                    $($name => Ok(Request::$ty(<$module::$ty as Method>::parse(params)?)),)*
                    other => Err(ChatError::UnknownMethod(other.to_owned())),
                }
            }

            /// Runs it for `client`.
            pub(crate) async fn run(self, bridge: &Bridge, client: &Client) -> Result<Answer, ChatError> {
                match self {
                    $(Request::$ty(r) => r.run(bridge, client).await,)*
                }
            }
        }
    };
}

// Every method: its module (a file of this directory), its type, its name on the wire.
requests! {
    sync::Sync = "sync",
    history::History = "history",
    chats::Chats = "chats",
    group_create::GroupCreate = "group.create",
    group_add::GroupAdd = "group.add",
    group_remove::GroupRemove = "group.remove",
    group_leave::GroupLeave = "group.leave",
    group_info::GroupInfo = "group.info",
    group_join::GroupJoin = "group.join",
    group_decline::GroupDecline = "group.decline",
    presence::Presence = "presence",
    push_register::PushRegister = "push.register",
    push_unregister::PushUnregister = "push.unregister",
    media_upload::MediaUpload = "media.upload",
    media_url::MediaUrl = "media.url",
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
