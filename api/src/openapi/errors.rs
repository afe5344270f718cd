//! Error responses in the document: the `Error` schema (its `code` enum is [`CODES`]), one example
//! per code, and [`errors!`](crate::openapi::errors), which declares an operation's error
//! responses next to its handler.

use std::collections::BTreeMap;

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};

use crate::error::CODES;

/// Codes that occur only in realtime frames (stream `error` frames, Socket.IO `spacecast_error`
/// events), never in an HTTP answer.
pub const STREAM_ONLY_CODES: &[&str] = &[
    "invalid_frame",
    "not_joined",
    "too_many_spaces",
    "refresh_refused",
    "invalid_event",
];

/// A typical message per code: the examples of every error response.
const EXAMPLES: &[(&str, &str)] = &[
    ("unauthenticated", "Authentication required"),
    ("invalid_token", "Invalid or expired token"),
    (
        "invalid_claims",
        "Invalid token claim `username`: must be at most 64 characters",
    ),
    (
        "invalid_json",
        "Invalid JSON body: expected value at line 1 column 1",
    ),
    ("invalid_request", "Invalid request"),
    ("uri_too_long", "The request URI is too long"),
    ("headers_too_large", "The request headers are too large"),
    ("empty_message", "Message must have text or media"),
    (
        "content_too_long",
        "content must be at most 5000 characters",
    ),
    (
        "invalid_content",
        "content must not contain control characters other than tab, newline and carriage return",
    ),
    (
        "invalid_media_type",
        "media_type must be \"image\", \"video\" or \"audio\"",
    ),
    (
        "media_type_mismatch",
        "The file was declared image/jpeg but its bytes are image/png",
    ),
    ("empty_media", "The file is empty"),
    (
        "invalid_image",
        "The image cannot be processed: The Image's dimensions are either too small or too large",
    ),
    (
        "expected_one_file",
        "Send exactly one multipart part named \"file\": several parts",
    ),
    ("too_many_media", "A message carries at most 10 media"),
    (
        "invalid_media",
        "A media id is unknown, not yours, or already used by another message",
    ),
    (
        "invalid_sort",
        "sort must be \"recent\" or \"most_appreciated\"",
    ),
    ("invalid_pagination", "limit must be between 1 and 100"),
    ("invalid_cursor", "cursor is not one this server made"),
    (
        "invalid_read_marker",
        "Give exactly one of seq (an integer ≥ 0) and message_id (a message's UUID)",
    ),
    ("invalid_filter", "has_attachment must be true or false"),
    (
        "invalid_parent",
        "parent_id must name a message of this space that is not itself a reply",
    ),
    (
        "invalid_quote",
        "quoted_message_id must name a message of this space",
    ),
    (
        "invalid_as_user",
        "as_user_id must name a member of this space",
    ),
    (
        "invalid_msgtype",
        "msgtype must be text, code, media, system or a namespaced name such as x.poll",
    ),
    (
        "invalid_mentions",
        "at most 50 mentions, each a user id of 1 to 128 bytes",
    ),
    (
        "invalid_gif",
        "gif needs an http(s) url of at most 2048 bytes, width and height",
    ),
    ("invalid_reason", "reason is longer than 128 characters"),
    (
        "invalid_idempotency_key",
        "an idempotency key is 1 to 128 printable ASCII characters",
    ),
    (
        "edit_window_closed",
        "The edit window of this message has closed",
    ),
    ("message_redacted", "This message was redacted"),
    (
        "idempotency_key_reused",
        "The message this idempotency key created was deleted",
    ),
    (
        "invalid_reaction_key",
        "A reaction key is an emoji or a short name: 1 to 64 bytes of UTF-8, without spaces, control characters or /",
    ),
    (
        "too_many_reactions",
        "a message has at most 50 different reactions",
    ),
    ("invalid_title", "title must be 3 to 200 characters"),
    (
        "invalid_description",
        "description must be at most 5000 characters",
    ),
    (
        "invalid_hashtags",
        "each hashtag must be 1 to 50 characters without spaces",
    ),
    (
        "invalid_visibility",
        "visibility must be \"public\" or \"private\"",
    ),
    (
        "invalid_invite",
        "A valid invite code is required to join this private space",
    ),
    (
        "invalid_power_level",
        "power_level is required: 0, 50 or 100",
    ),
    (
        "invalid_posting_permission",
        "posting_permission is required: \"everyone\" or \"admins\"",
    ),
    ("member_not_found", "Member not found"),
    ("invalid_user_id", "user id must not contain whitespace"),
    (
        "last_admin",
        "The last admin cannot leave while other members remain",
    ),
    ("not_a_member", "You must be a member to send messages"),
    ("already_member", "Already a member"),
    ("forbidden", "Not authorised to delete this message"),
    ("not_found", "Space not found"),
    ("method_not_allowed", "HTTP method not allowed"),
    (
        "unsupported_media_type",
        "Send multipart/form-data or application/json",
    ),
    ("payload_too_large", "The request body exceeds 262144 bytes"),
    (
        "overloaded",
        "Too many pending commands for this space; retry shortly",
    ),
    (
        "store_unavailable",
        "Storage is temporarily unavailable; retry shortly",
    ),
    ("unavailable", "The space is restarting; retry shortly"),
    ("shutting_down", "Server is shutting down"),
    (
        "bus_unavailable",
        "The cluster bus is unavailable; retry shortly",
    ),
    ("internal", "Internal error"),
    (
        "too_many_connections",
        "At most 32 realtime connections per user; close one first",
    ),
    (
        "transport_unsupported",
        "Only the websocket transport is served: connect with transports: [\"websocket\"]",
    ),
    (
        "unsupported_protocol",
        "Only Engine.IO protocol 4 (Socket.IO v3 and later clients) is served",
    ),
    (
        "invalid_username",
        "username may contain only letters, digits, '_', '-' and '.'",
    ),
    ("rate_limited", "Too many messages; retry in 12 s"),
    ("invalid_query", "q must be at most 200 characters"),
    ("search_disabled", "search is off on this server"),
];

/// The example message of `code`; `None` for a code without one (a unit test keeps every code
/// covered).
pub fn example_message(code: &str) -> Option<&'static str> {
    EXAMPLES.iter().find(|(c, _)| *c == code).map(|(_, m)| *m)
}

/// The `Error` component: `{error, code}`.
pub struct ErrorBody;

impl utoipa::PartialSchema for ErrorBody {
    fn schema() -> RefOr<Schema> {
        let codes = CODES.iter().chain(STREAM_ONLY_CODES).copied();
        ObjectBuilder::new()
            .description(Some(
                "The error envelope of every failed request (extra fields may be added).",
            ))
            .property(
                "error",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("Human-readable explanation.")),
            )
            .required("error")
            .property(
                "code",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(codes))
                    .description(Some(
                        "Stable snake_case code. `invalid_frame`, `not_joined`, `too_many_spaces` \
                         and `refresh_refused` occur only in stream `error` frames, \
                         `invalid_event` only in Socket.IO `spacecast_error` events.",
                    )),
            )
            .required("code")
            .examples([serde_json::json!({
                "error": "Space not found",
                "code": "not_found",
            })])
            .into()
    }
}

impl utoipa::ToSchema for ErrorBody {
    fn name() -> std::borrow::Cow<'static, str> {
        "Error".into()
    }
}

/// The `Retry-After` header of 429 and 503 answers.
fn retry_after() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1)),
        )
        .description(Some("Seconds to wait before retrying (at least 1)."))
        .build()
}

/// One error response: `description` then the codes it can carry, an example of each, and
/// `Retry-After` on 429 and 503.
pub fn error_response(status: u16, description: &str, codes: &[&str]) -> Response {
    let examples: Vec<(&str, &str)> = codes
        .iter()
        .map(|code| (*code, example_message(code).unwrap_or("(no example)")))
        .collect();
    error_response_with(status, description, &examples)
}

/// [`error_response`] with the example messages given: `(code, message)`.
pub fn error_response_with(status: u16, description: &str, examples: &[(&str, &str)]) -> Response {
    let listed: Vec<String> = examples.iter().map(|(c, _)| format!("`{c}`")).collect();
    let description = if examples.is_empty() {
        description.to_owned()
    } else {
        format!("{description} Codes: {}.", listed.join(", "))
    };
    let examples = examples.iter().map(|(code, message)| {
        let example = ExampleBuilder::new()
            .value(Some(serde_json::json!({"error": message, "code": code})))
            .build();
        (*code, example)
    });
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Error")))
        .examples_from_iter(examples)
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content("application/json", content);
    if status == 429 || status == 503 {
        response = response.header("Retry-After", retry_after());
    }
    response.build()
}

/// The default description of an error status.
pub fn default_description(status: u16) -> &'static str {
    match status {
        400 => "Invalid request.",
        401 => {
            "Missing, malformed, expired, not yet valid or wrongly signed token, or claims \
                outside their bounds (the only 401s)."
        }
        403 => "Not allowed.",
        404 => "Not found.",
        405 => "Method not allowed.",
        409 => "Conflict.",
        413 => "The request body is too large.",
        415 => "Unsupported content type.",
        429 => "Too many requests; retry after `Retry-After` seconds.",
        500 => "Unexpected failure; details are only logged.",
        503 => "Transient refusal; retry after `Retry-After` seconds.",
        _ => "Error.",
    }
}

/// An error answer as [`errors!`](crate::openapi::errors) lists them: status, description (or ""
/// for the status's default), codes.
pub type ErrorEntry = (u16, &'static str, &'static [&'static str]);

/// 429 of the writes that are not sends (`--write-rate-limit`).
pub const WRITE_LIMITED: ErrorEntry = (
    429,
    "The caller is over `--write-rate-limit` (default 300 changes a minute, apart from sends); \
     retry after `Retry-After` seconds.",
    &["rate_limited"],
);

/// 503 of an operation that goes through its space's actor: a full queue, a space restarting or
/// moving, the store or the bus unreachable, shutdown.
pub const SPACE_BUSY: ErrorEntry = (
    503,
    "",
    &[
        "overloaded",
        "unavailable",
        "store_unavailable",
        "bus_unavailable",
        "shutting_down",
    ],
);

/// The error responses of an operation: `(status, description or "", codes)`. A 401 or 500
/// without codes refers to the shared `Unauthorized` / `InternalError` responses.
pub fn error_responses(entries: &[(u16, &str, &[&str])]) -> BTreeMap<String, RefOr<Response>> {
    entries
        .iter()
        .map(|(status, description, codes)| {
            let response = match (status, codes.is_empty()) {
                (401, true) => RefOr::Ref(Ref::from_response_name("Unauthorized")),
                (500, true) => RefOr::Ref(Ref::from_response_name("InternalError")),
                _ => {
                    let description = if description.is_empty() {
                        default_description(*status)
                    } else {
                        description
                    };
                    RefOr::T(error_response(*status, description, codes))
                }
            };
            (status.to_string(), response)
        })
        .collect()
}

/// Declares a type whose `utoipa::IntoResponses` are an operation's error responses, for the
/// handler's `#[utoipa::path(responses(..., TheType))]`:
///
/// ```ignore
/// crate::openapi::errors!(CreateSpaceErrors {
///     400 "Invalid body." [invalid_json, invalid_title],
///     401,
///     413 [payload_too_large],
///     500,
///     503 [store_unavailable],
/// });
/// ```
///
/// Each entry is a status, an optional description (else the status's default) and the codes it
/// can carry (each gets an example; a unit test checks every code is one of [`CODES`]). `401` and
/// `500` alone are the shared `Unauthorized` and `InternalError` responses. 429 and 503 carry
/// `Retry-After`. Answers many operations share are constants of this module added after the
/// braces: `} + [WRITE_LIMITED, SPACE_BUSY]);`. Every operation also gets 414, 431 and the
/// connection cap's 503 `overloaded` (added when the document is built).
#[macro_export]
macro_rules! openapi_errors {
    ($name:ident { $( $status:literal $($description:literal)? $([ $($code:ident),* $(,)? ])? ),* $(,)? }
        $(+ [ $($shared:ident),* $(,)? ])?) => {
        pub(crate) struct $name;
        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                $crate::openapi::errors::error_responses(&[
                    $( (
                        $status,
                        concat!("" $(, $description)?),
                        &[ $($( stringify!($code) ),*)? ],
                    ), )*
                    $($( $crate::openapi::errors::$shared, )*)?
                ])
            }
        }
    };
}
pub use crate::openapi_errors as errors;
