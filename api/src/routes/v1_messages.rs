//! The native message surface (CONTRACT §5): `/v1/spaces/{space_id}/messages…`.
//!
//! Pages are keyset pages with an opaque cursor (see [`Cursor`] and the engine's
//! `spacecast_engine::listing` for what a filter costs).

use std::collections::HashMap;
use std::future::Future;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use spacecast_engine::model::{
    Gif, JsonObject, MAX_IDEMPOTENCY_KEY_BYTES, MAX_MEDIA, MSGTYPE_TEXT, MediaItem, Message,
    MessageId, MessageVersion, Seq, Timestamp, UserRef, validate_rich_fields,
};
use spacecast_engine::{Direction, EngineError, MessageFilter, MessageQuery, SendMessage};
use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{KnownFormat, RefOr, SchemaFormat};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use super::media::{MULTIPART_OVERHEAD, bytes_stream, is_multipart, store_upload};
use super::messages::{message_target, refused_before_write};
use super::{
    authorization, body_within, json_body_limit, parse_json, read_body, respond, started, user,
    with_app,
};
use crate::app::AppRef;
use crate::auth::User;
use crate::error::{ApiError, json_response};
use crate::input::{normalize_content, parse_space_id};
use crate::media;
use crate::openapi::OptionalBody;
use crate::openapi::links::MessageLinks;
use crate::openapi::params::{MessagePath, SpacePath};
use crate::openapi::rules;
use crate::ratelimit::{Surface, Write};

/// The native message operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_messages,
        send_message,
        get_message,
        edit_message,
        redact_message,
        message_history,
        thread
    ),
    modifiers(&AtLeastOneOf, &OPTIONAL_REDACT_BODY, &SEND_LINKS)
)]
pub struct Doc;

/// A new message's links, on the send's 201.
const SEND_LINKS: MessageLinks = MessageLinks {
    path: "/v1/spaces/{spaceId}/messages",
    status: "201",
};

/// The body of a redaction may be left out (the reason is optional).
const OPTIONAL_REDACT_BODY: OptionalBody =
    OptionalBody("/v1/spaces/{spaceId}/messages/{messageId}/redact");

/// Adds to the send and edit bodies the rule utoipa has no attribute for: at least one content
/// field (`anyOf` of `required` lists; the `empty_message` check).
struct AtLeastOneOf;

impl utoipa::Modify for AtLeastOneOf {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let Some(components) = doc.components.as_mut() else {
            return;
        };
        let content = serde_json::json!({
            "required": ["content"],
            "properties": {"content": {"type": "string", "pattern": rules::content_pattern()}},
        });
        let body = serde_json::json!({
            "required": ["body"],
            "properties": {"body": {"type": "object"}},
        });
        let send = serde_json::json!([
            content,
            body,
            {"required": ["gif"], "properties": {"gif": {"type": "object"}}},
            {"required": ["media_ids"], "properties": {"media_ids": {"type": "array", "minItems": 1}}},
        ]);
        for (name, alternatives) in [
            ("SendMessageV1", send),
            ("EditMessageV1", serde_json::json!([content, body])),
        ] {
            if let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut(name) {
                o.extensions
                    .get_or_insert_with(Default::default)
                    .insert("anyOf".into(), alternatives);
            }
        }
    }
}

/// The query of `GET /v1/spaces/{spaceId}/messages` in the document (the handler reads the raw
/// query; [`parse_list_query`] enforces these rules).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ListQuery {
    /// `next_cursor` of the previous page (opaque; it carries its direction, so `direction` is
    /// ignored with it).
    #[param(pattern = "^[s8][Q-Za-f][A-Za-z0-9_-]{10}$")]
    cursor: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 50)]
    limit: Option<u32>,
    /// `backward`: newest first; `forward`: oldest first. Ignored with a cursor (which
    /// continues its own direction).
    #[param(inline, default = "backward")]
    direction: Option<DirectionParam>,
    /// Messages of this sender.
    #[param(min_length = 1, max_length = 256)]
    sender_id: Option<String>,
    /// With (`true`) or without (`false`) attachments.
    has_attachment: Option<bool>,
    /// Created at or after (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// Created at or before (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
    /// Messages of this `msgtype`.
    #[param(
        max_length = 64,
        pattern = "^(text|code|media|system|[a-z0-9_-]+(\\.[a-z0-9_-]+)+)$"
    )]
    msgtype: Option<String>,
    /// Replies to this message.
    #[param(value_type = Option<String>, format = Uuid)]
    parent_id: Option<String>,
}

/// `backward` (newest first) or `forward` (oldest first).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum DirectionParam {
    Backward,
    Forward,
}

/// The `Idempotency-Key` header in the document ([`validate_send`] enforces it).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct IdempotencyKeyHeader {
    /// Replays within 5 minutes answer the original message (200) instead of sending again;
    /// the same as the body's `idempotency_key` (the two must agree).
    #[param(
        rename = "Idempotency-Key",
        value_type = String,
        required = false,
        min_length = 1,
        max_length = 128,
        pattern = "^[!-~]+$"
    )]
    idempotency_key: Option<String>,
}

crate::openapi::errors!(ListMessagesErrors {
    400 "Invalid query parameter." [invalid_pagination, invalid_cursor, invalid_filter],
    401,
    404 "Unknown space, or a private space the caller is not a member of." [not_found],
    500,
    503 [store_unavailable],
});

crate::openapi::errors!(SendMessageErrors {
    400 "Invalid message, or (multipart) a file whose bytes are not its declared type."
        [empty_message, content_too_long, invalid_content, invalid_msgtype, invalid_mentions,
         invalid_gif, too_many_media, invalid_media, invalid_parent, invalid_quote,
         invalid_as_user, invalid_idempotency_key, invalid_json, invalid_request,
         media_type_mismatch, empty_media, invalid_image],
    401,
    403 "Not a member, not allowed to post, or `as_user_id` without power 100."
        [not_a_member, forbidden],
    404 "Unknown space, or a private space the caller is not a member of." [not_found],
    409 "The idempotency key's message was deleted." [idempotency_key_reused],
    413 "`body` over 64 KB, `metadata` over 10 KB, or the request over `max_body_bytes`."
        [payload_too_large],
    415 "(multipart) A file of a type not accepted." [unsupported_media_type],
    429 "Over `--send-rate-limit`." [rate_limited],
    500,
} + [SPACE_BUSY]);

crate::openapi::errors!(GetMessageErrors {
    401,
    404 "Unknown or malformed space or message id, or a private space the caller is not a member of."
        [not_found],
    500,
    503 [store_unavailable],
});

crate::openapi::errors!(EditMessageErrors {
    400 "Invalid edit." [empty_message, content_too_long, invalid_content, invalid_json],
    401,
    403 "Not the author." [forbidden],
    404 "Unknown space or message, or a private space the caller is not a member of."
        [not_found],
    409 "Too late, or redacted." [edit_window_closed, message_redacted],
    413 "`body` over 64 KB, or the request over `max_body_bytes`." [payload_too_large],
    500,
} + [WRITE_LIMITED, SPACE_BUSY]);

crate::openapi::errors!(RedactMessageErrors {
    400 "Invalid reason." [invalid_reason, invalid_json],
    401,
    403 "Neither the author nor power ≥ 50." [forbidden],
    404 "Unknown space or message, or a private space the caller is not a member of."
        [not_found],
    413 "The request over `max_body_bytes`." [payload_too_large],
    500,
} + [WRITE_LIMITED, SPACE_BUSY]);

crate::openapi::errors!(MessageReadErrors {
    401,
    404 "Unknown space or message, or a private space the caller is not a member of."
        [not_found],
    500,
    503 [store_unavailable],
});

/// Default page size.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest page size (`limit` above it is refused).
pub const MAX_LIMIT: usize = spacecast_engine::listing::MAX_PAGE;
/// Longest `sender_id` filter, in characters (user ids are at most 128 bytes).
const MAX_FILTER_ID: usize = 256;

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    let base = || with_app(app.clone()).and(started()).and(authorization());
    let list = warp::path!("v1" / "spaces" / String / "messages")
        .and(warp::get())
        .and(base())
        .and(super::query_map())
        .then(
            |space: String, app: AppRef, t, auth, q: HashMap<String, String>| {
                respond(
                    app.clone(),
                    "GET /v1/spaces/:space/messages",
                    t,
                    list_messages(app, auth, space, q),
                )
            },
        );
    let get = warp::path!("v1" / "spaces" / String / "messages" / String)
        .and(warp::get())
        .and(base())
        .then(|space: String, msg: String, app: AppRef, t, auth| {
            respond(
                app.clone(),
                "GET /v1/spaces/:space/messages/:message",
                t,
                get_message(app, auth, space, msg),
            )
        });
    let send = warp::path!("v1" / "spaces" / String / "messages")
        .and(warp::post())
        .and(body_within(app.clone(), send_body_limit))
        .and(base())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            |space: String, app: AppRef, t, auth, headers: HeaderMap, body| async move {
                respond(
                    app.clone(),
                    "POST /v1/spaces/:space/messages",
                    t,
                    async move {
                        let user = user(&app, auth)?;
                        let space_id = parse_space_id(&space)?;
                        let key = idempotency_header(&headers)?;
                        app.send_limit.check(user.id(), Surface::V1)?;
                        let ct = headers
                            .get(warp::http::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .filter(|ct| is_multipart(ct))
                            .map(str::to_owned);
                        if let Some(ct) = ct {
                            let body = bytes_stream(body);
                            return send_multipart(app, user, space_id, key, &ct, body).await;
                        }
                        let bytes = read_body(body, app.config.max_body_bytes).await?;
                        send_message(app, user, space_id, key, &bytes).await
                    },
                )
                .await
            },
        );
    let edit = message_action(
        &app,
        "edit",
        "POST /v1/spaces/:space/messages/:message/edit",
        edit_message,
    );
    let redact = message_action(
        &app,
        "redact",
        "POST /v1/spaces/:space/messages/:message/redact",
        redact_message,
    );
    let history = warp::path!("v1" / "spaces" / String / "messages" / String / "history")
        .and(warp::get())
        .and(base())
        .then(|space: String, msg: String, app: AppRef, t, auth| {
            respond(
                app.clone(),
                "GET /v1/spaces/:space/messages/:message/history",
                t,
                message_history(app, auth, space, msg),
            )
        });
    let thread = warp::path!("v1" / "spaces" / String / "messages" / String / "thread")
        .and(warp::get())
        .and(base())
        .then(|space: String, msg: String, app: AppRef, t, auth| {
            respond(
                app.clone(),
                "GET /v1/spaces/:space/messages/:message/thread",
                t,
                thread(app, auth, space, msg),
            )
        });
    list.or(get)
        .unify()
        .or(send)
        .unify()
        .or(edit)
        .unify()
        .or(redact)
        .unify()
        .or(history)
        .unify()
        .or(thread)
        .unify()
        .boxed()
}

/// `POST /v1/spaces/{space}/messages/{message}/{action}` with a JSON body (at most
/// `max_body_bytes`), answered by `handler(app, authorization, space, message, body)`.
fn message_action<F, Fut>(
    app: &AppRef,
    action: &'static str,
    route: &'static str,
    handler: F,
) -> BoxedFilter<(Response,)>
where
    F: Fn(AppRef, Option<String>, String, String, Bytes) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response, ApiError>> + Send + 'static,
{
    warp::path!("v1" / "spaces" / String / "messages" / String / ..)
        .and(warp::path(action))
        .and(warp::path::end())
        .and(warp::post())
        .and(body_within(app.clone(), json_body_limit))
        .and(with_app(app.clone()))
        .and(started())
        .and(authorization())
        .and(warp::body::stream())
        .then(
            move |space: String, msg: String, app: AppRef, t, auth, body| {
                let handler = handler.clone();
                async move {
                    respond(app.clone(), route, t, async move {
                        let bytes = read_body(body, app.config.max_body_bytes).await?;
                        handler(app, auth, space, msg, bytes).await
                    })
                    .await
                }
            },
        )
        .boxed()
}

/// The `Idempotency-Key` header, if any.
///
/// # Errors
/// 400 `invalid_idempotency_key` for a value that is not text.
fn idempotency_header(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str().map(str::to_owned).map_err(|_| {
                ApiError::bad_request(
                    "invalid_idempotency_key",
                    "Idempotency-Key must be printable ASCII",
                )
            })
        })
        .transpose()
}

/// A page position: where the next page of one direction starts. Opaque to clients: the
/// base64url (no padding) of a version-and-direction byte and the big-endian seq, so it is
/// short, URL-safe, and refused when altered into something else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub direction: Direction,
    /// The last position read; the next page starts after it.
    pub seq: Seq,
}

const CURSOR_BACKWARD_V1: u8 = 0xb1;
const CURSOR_FORWARD_V1: u8 = 0xf1;

impl Cursor {
    pub fn encode(self) -> String {
        let mut bytes = [0u8; 9];
        bytes[0] = match self.direction {
            Direction::Backward => CURSOR_BACKWARD_V1,
            Direction::Forward => CURSOR_FORWARD_V1,
        };
        bytes[1..].copy_from_slice(&self.seq.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// # Errors
    /// 400 `invalid_cursor` for anything [`Cursor::encode`] did not make.
    pub fn decode(s: &str) -> Result<Cursor, ApiError> {
        let bad = || ApiError::bad_request("invalid_cursor", "cursor is not one this server made");
        let bytes = URL_SAFE_NO_PAD.decode(s.trim()).map_err(|_| bad())?;
        let [tag, rest @ ..] = bytes.as_slice() else {
            return Err(bad());
        };
        let seq = Seq::from_be_bytes(rest.try_into().map_err(|_| bad())?);
        let direction = match *tag {
            CURSOR_BACKWARD_V1 => Direction::Backward,
            CURSOR_FORWARD_V1 => Direction::Forward,
            _ => return Err(bad()),
        };
        Ok(Cursor { direction, seq })
    }
}

/// The query of `GET /v1/spaces/{id}/messages`, validated.
///
/// # Errors
/// 400 `invalid_pagination` (`limit`, `direction`), `invalid_cursor`, `invalid_filter`.
pub fn parse_list_query(q: &HashMap<String, String>) -> Result<MessageQuery, ApiError> {
    let pagination = |m: &str| ApiError::bad_request("invalid_pagination", m.to_owned());
    let filter_err = |m: String| ApiError::bad_request("invalid_filter", m);
    let limit = crate::input::parse_limit(q, DEFAULT_LIMIT, MAX_LIMIT)?;
    let direction = match q.get("direction").map(|d| d.trim()) {
        None => None,
        Some("backward") => Some(Direction::Backward),
        Some("forward") => Some(Direction::Forward),
        Some(_) => return Err(pagination("direction must be \"backward\" or \"forward\"")),
    };
    let cursor = q.get("cursor").map(|c| Cursor::decode(c)).transpose()?;
    // A cursor continues its own direction; `direction` only chooses where a first page starts.
    let direction = match cursor {
        Some(c) => c.direction,
        None => direction.unwrap_or(Direction::Backward),
    };
    let mut filter = MessageFilter::default();
    if let Some(s) = q.get("sender_id") {
        if s.is_empty() || s.chars().count() > MAX_FILTER_ID {
            return Err(filter_err(format!(
                "sender_id must be 1 to {MAX_FILTER_ID} bytes"
            )));
        }
        filter.sender_id = Some(s.clone());
    }
    if let Some(h) = q.get("has_attachment") {
        filter.has_attachment = Some(match h.trim() {
            "true" => true,
            "false" => false,
            _ => return Err(filter_err("has_attachment must be true or false".into())),
        });
    }
    if let Some(t) = q.get("msgtype") {
        if !spacecast_engine::model::valid_msgtype(t) {
            return Err(filter_err(format!("msgtype {t:?} is not a valid msgtype")));
        }
        filter.msgtype = Some(t.clone());
    }
    if let Some(p) = q.get("parent_id") {
        filter.parent_id = Some(
            p.trim()
                .parse()
                .map_err(|_| filter_err("parent_id must be a message id".into()))?,
        );
    }
    let time = |name: &str| -> Result<Option<Timestamp>, ApiError> {
        q.get(name)
            .map(|t| {
                serde_json::from_value::<Timestamp>(serde_json::Value::String(t.trim().into()))
                    .map_err(|_| {
                        filter_err(format!(
                            "{name} must be an RFC 3339 time, e.g. 2026-12-06T10:00:00Z"
                        ))
                    })
            })
            .transpose()
    };
    filter.since = time("since")?;
    filter.until = time("until")?;
    Ok(MessageQuery {
        direction,
        from: cursor.map(|c| c.seq),
        limit,
        filter,
    })
}

/// A page of messages (`GET …/messages`).
#[derive(Serialize, ToSchema)]
#[schema(as = MessageCursorPage)]
struct Page<'a> {
    /// At most `limit`.
    #[schema(max_items = 100)]
    data: &'a [Message],
    /// Continues this page (same direction); `null`: nothing more now.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// A cursor page of messages, with filters
///
/// Newest first (`direction=backward`, the default) or oldest first (`forward`), `limit` 1–100
/// (default 50). Keyset pages: across pages every message appears exactly once, even while new
/// ones arrive. Filters are applied while scanning the space in seq order, at most 1000 messages
/// per request: a page may then hold fewer than `limit` matches (even none) with a
/// `next_cursor` to continue. `since` (forward) and `until` (backward) start the scan by binary
/// search. `next_cursor` is `null` when there is nothing more now. 404 for an unknown space and
/// a private one the caller is not a member of.
#[utoipa::path(get, path = "/v1/spaces/{spaceId}/messages", operation_id = "listMessagesV1",
    tag = "v1",
    params(SpacePath, ListQuery),
    responses(
        (status = 200, description = "One page.", body = Page),
        ListMessagesErrors,
    ))]
async fn list_messages(
    app: AppRef,
    auth: Option<String>,
    space: String,
    q: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let space_id = parse_space_id(&space)?;
    let query = parse_list_query(&q)?;
    let reader = app.engine.reader(space_id);
    let mut page = reader.list_messages(user.id(), &query).await?;
    reader
        .with_viewer_reactions(user.id(), &mut page.messages)
        .await?;
    let next_cursor = page.next.map(|seq| {
        Cursor {
            direction: query.direction,
            seq,
        }
        .encode()
    });
    Ok(json_response(
        StatusCode::OK,
        &Page {
            data: &page.messages,
            next_cursor,
        },
    ))
}

/// One message
///
/// 404 when it does not exist in that space, or the space is not readable by the caller.
#[utoipa::path(get, path = "/v1/spaces/{spaceId}/messages/{messageId}",
    operation_id = "getMessageV1", tag = "v1",
    params(MessagePath),
    responses(
        (status = 200, description = "The message.", body = Message),
        GetMessageErrors,
    ))]
async fn get_message(
    app: AppRef,
    auth: Option<String>,
    space: String,
    message: String,
) -> Result<Response, ApiError> {
    let (user, space_id, message_id) = message_target(&app, auth, &space, &message)?;
    let reader = app.engine.reader(space_id);
    let mut m = reader.message(user.id(), message_id).await?;
    reader
        .with_viewer_reactions(user.id(), std::slice::from_mut(&mut m))
        .await?;
    Ok(json_response(StatusCode::OK, &m))
}

/// The body of `POST /v1/spaces/{space_id}/messages` (CONTRACT §5). Unknown fields are ignored.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, ToSchema)]
#[schema(
    as = SendMessageV1,
    description = "One of a non-blank `content`, `body`, `gif` or `media_ids` is required \
        (`empty_message`). `null` is the same as absent. Unknown fields are ignored."
)]
pub struct SendBody {
    #[schema(schema_with = content_schema)]
    pub content: Option<String>,
    /// Free-form JSON object, at most 64 KB serialized (413 above).
    #[schema(value_type = Option<Object>)]
    pub body: Option<JsonObject>,
    /// `text`, `code`, `media`, `system`, or a namespaced lowercase name (`x.poll`).
    #[schema(
        max_length = 64,
        pattern = "^(text|code|media|system|[a-z0-9_-]+(\\.[a-z0-9_-]+)+)$",
        default = "text"
    )]
    pub msgtype: Option<String>,
    /// A message of this space that is not itself a reply (else `invalid_parent`).
    #[schema(format = Uuid)]
    pub parent_id: Option<String>,
    /// A message of this space (else `invalid_quote`).
    #[schema(format = Uuid)]
    pub quoted_message_id: Option<String>,
    #[serde(default)]
    #[schema(schema_with = mentions_schema)]
    pub mentions: Vec<String>,
    /// JSON object, at most 10 KB serialized (413 above).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<JsonObject>,
    pub gif: Option<Gif>,
    #[serde(default)]
    #[schema(schema_with = media_ids_schema)]
    pub media_ids: Vec<String>,
    /// Echoed in the response (and the stream's ack); never stored.
    #[schema(schema_with = local_id_schema)]
    pub local_id: Option<serde_json::Value>,
    /// Or the `Idempotency-Key` header (the two must agree).
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]+$")]
    pub idempotency_key: Option<String>,
    /// Send on behalf of this member (caller's power ≥ 100).
    #[schema(min_length = 1, max_length = 128, pattern = "^\\S+$")]
    pub as_user_id: Option<String>,
}

/// `content` of a send or an edit: nullable, any lines, at most the default `max_content_chars`.
fn content_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .max_length(Some(5000))
        .pattern(Some(rules::text_pattern()))
        .description(Some(
            "Trimmed (blank is no content); no control characters other than tab, newline and \
             carriage return (`invalid_content`); at most `max_content_chars` characters \
             (`content_too_long`; 5000 unless configured).",
        ))
        .build()
}

/// `mentions`: at most 50 user ids.
fn mentions_schema() -> utoipa::openapi::schema::Array {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(128))
                .pattern(Some("^\\S+$"))
                .description(Some("A user id: no whitespace, at most 128 characters.")),
        )
        .max_items(Some(spacecast_engine::model::MAX_MENTIONS))
        .description(Some("User ids to mention (`invalid_mentions`)."))
        .build()
}

/// `media_ids`: at most [`MAX_MEDIA`] upload ids.
fn media_ids_schema() -> utoipa::openapi::schema::Array {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                .description(Some(
                    "An upload of the caller (`POST /v1/media`) not used by another message.",
                )),
        )
        .max_items(Some(MAX_MEDIA))
        .description(Some(
            "Uploads to attach (`invalid_media`); with the files of a multipart send, at most 10.",
        ))
        .build()
}

/// `local_id`: any JSON value.
fn local_id_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .description(Some(
            "Echoed in the response; not stored. At most 256 bytes of JSON.",
        ))
        .build()
}

/// The multipart form of a send, in the document only (the handler reads the parts as a
/// stream: [`send_multipart`]).
#[derive(ToSchema)]
#[schema(
    as = SendMessageV1Form,
    description = "A first part `payload` (the JSON send), then up to 10 parts `file` (with \
        `media_ids`, at most 10 together; each at most `--max-media-bytes`, its Content-Type the \
        declared type, checked against the bytes as by `POST /v1/media`). Files count as \
        content. One file is held at a time; nothing is stored before the payload is valid, the \
        key is not a replay and the caller may post; the files of a refused send are deleted."
)]
#[allow(dead_code)]
struct SendForm {
    payload: SendBody,
    #[serde(default)]
    #[schema(schema_with = files_schema)]
    file: Vec<Vec<u8>>,
}

/// The `file` parts of a multipart send.
fn files_schema() -> utoipa::openapi::schema::Array {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary))),
        )
        .max_items(Some(MAX_MEDIA))
        .build()
}

/// Longest GIF URL the edge accepts, in characters.
pub const MAX_GIF_URL_CHARS: usize = 512;
/// Longest GIF title the edge accepts, in characters.
pub const MAX_GIF_TITLE_CHARS: usize = 128;
/// Longest redaction reason, in characters (at most 512 bytes, the engine's bound).
pub const MAX_REASON_CHARS: usize = 128;

/// Longest `local_id`, in bytes of its JSON form.
pub const MAX_LOCAL_ID: usize = 256;

/// A validated send, before its media are attached.
pub struct SendDraft {
    pub cmd: SendMessage,
    pub media_ids: Vec<Uuid>,
    pub local_id: Option<serde_json::Value>,
}

/// Validates a `/v1` send of `caller` (every rule the edge can check without the space: sizes,
/// shapes, the content rule); the space actor checks the rest.
///
/// # Errors
/// 400 `empty_message`, `content_too_long`, `invalid_content`, `invalid_msgtype`,
/// `invalid_mentions`, `invalid_gif`, `too_many_media`, `invalid_media`, `invalid_parent`,
/// `invalid_quote`, `invalid_idempotency_key`, `invalid_request` (`local_id`, `as_user_id`);
/// 413 `payload_too_large` (`body` over 64 KB, `metadata` over 10 KB).
pub fn validate_send(
    caller: &UserRef,
    b: SendBody,
    header_key: Option<String>,
    max_content_chars: usize,
) -> Result<SendDraft, ApiError> {
    validate_send_with(caller, b, header_key, max_content_chars, false)
}

/// [`validate_send`], for a body whose files follow it (`files_follow`: a multipart send), so
/// "no content" is not yet an empty message: the caller checks that once the files are read.
fn validate_send_with(
    caller: &UserRef,
    b: SendBody,
    header_key: Option<String>,
    max_content_chars: usize,
    files_follow: bool,
) -> Result<SendDraft, ApiError> {
    let content = normalize_content(b.content, max_content_chars)?;
    let msgtype = b.msgtype.unwrap_or_else(|| MSGTYPE_TEXT.to_owned());
    if b.media_ids.len() > MAX_MEDIA {
        return Err(ApiError::bad_request(
            "too_many_media",
            format!("at most {MAX_MEDIA} media_ids per message"),
        ));
    }
    let media_ids = b
        .media_ids
        .iter()
        .map(|id| id.trim().parse::<Uuid>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ApiError::bad_request("invalid_media", "media_ids must be upload ids"))?;
    // The uploads are counted above and checked when they are attached; the rest here.
    validate_rich_fields(
        &msgtype,
        b.body.as_ref(),
        b.metadata.as_ref(),
        &b.mentions,
        &[],
        b.gif.as_ref(),
    )?;
    if !files_follow
        && content.is_none()
        && b.body.is_none()
        && b.gif.is_none()
        && media_ids.is_empty()
    {
        return Err(ApiError::bad_request(
            "empty_message",
            "A message needs content, body, gif or media_ids",
        ));
    }
    let id = |raw: Option<String>, code: &'static str, what: &str| {
        raw.map(|r| {
            r.trim()
                .parse::<MessageId>()
                .map_err(|_| ApiError::bad_request(code, format!("{what} must be a message id")))
        })
        .transpose()
    };
    // The edge's bounds in characters, as the OpenAPI document states them (JSON Schema counts
    // characters). They never refuse a real user id (at most 128 bytes, so at most 128
    // characters); the engine's bounds in bytes still apply after them.
    if b.mentions
        .iter()
        .any(|u| u.chars().count() > 128 || u.chars().any(char::is_whitespace))
    {
        return Err(ApiError::bad_request(
            "invalid_mentions",
            "each mention is a user id: no whitespace, at most 128 characters",
        ));
    }
    if let Some(g) = &b.gif
        && (g.url.chars().count() > MAX_GIF_URL_CHARS
            || g.title
                .as_ref()
                .is_some_and(|t| t.chars().count() > MAX_GIF_TITLE_CHARS))
    {
        return Err(ApiError::bad_request(
            "invalid_gif",
            format!(
                "gif url at most {MAX_GIF_URL_CHARS} characters, title at most {MAX_GIF_TITLE_CHARS}"
            ),
        ));
    }
    let parent_id = id(b.parent_id, "invalid_parent", "parent_id")?;
    let quoted_message_id = id(b.quoted_message_id, "invalid_quote", "quoted_message_id")?;
    let idempotency_key = match (b.idempotency_key, header_key) {
        (Some(a), Some(h)) if a != h => {
            return Err(ApiError::bad_request(
                "invalid_idempotency_key",
                "idempotency_key and the Idempotency-Key header differ",
            ));
        }
        (Some(k), _) | (None, Some(k)) => Some(k),
        (None, None) => None,
    };
    if let Some(k) = &idempotency_key
        && (k.is_empty()
            || k.len() > MAX_IDEMPOTENCY_KEY_BYTES
            || k.bytes().any(|c| !(0x21..=0x7e).contains(&c)))
    {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            format!(
                "an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY_BYTES} printable ASCII characters"
            ),
        ));
    }
    if let Some(l) = &b.local_id
        && l.to_string().len() > MAX_LOCAL_ID
    {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("local_id longer than {MAX_LOCAL_ID} bytes"),
        ));
    }
    let (sender, actor) = match b.as_user_id {
        None => (caller.clone(), None),
        Some(uid) if uid == caller.user_id => (caller.clone(), None),
        Some(uid) => {
            if uid.is_empty() || uid.chars().count() > 128 || uid.chars().any(char::is_whitespace) {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "as_user_id must be a user id",
                ));
            }
            // The space actor fills in the member's stored profile.
            let sender = UserRef {
                user_id: uid,
                username: String::new(),
                profile_picture: String::new(),
            };
            (sender, Some(caller.clone()))
        }
    };
    Ok(SendDraft {
        cmd: SendMessage {
            sender,
            actor,
            content,
            msgtype: Some(msgtype),
            body: b.body,
            parent_id,
            quoted_message_id,
            mentions: b.mentions,
            metadata: b.metadata,
            gif: b.gif,
            idempotency_key,
            ..SendMessage::default()
        },
        media_ids,
        local_id: b.local_id,
    })
}

/// `m` as the native surface shows it to `viewer`: with `user_reactions`, without Space7's
/// `likes` (see `SpaceReader::with_viewer_reactions`).
async fn native(
    app: &AppRef,
    space_id: Uuid,
    viewer: &str,
    mut m: Message,
) -> Result<Message, ApiError> {
    app.engine
        .reader(space_id)
        .with_viewer_reactions(viewer, std::slice::from_mut(&mut m))
        .await?;
    Ok(m)
}

/// A message as a `/v1` write answers it: the message, with the client's `local_id` echoed.
fn message_reply(status: StatusCode, m: &Message, local_id: Option<serde_json::Value>) -> Response {
    let mut v = serde_json::to_value(m).unwrap_or_default();
    if let (Some(l), Some(o)) = (local_id, v.as_object_mut()) {
        o.insert("local_id".into(), l);
    }
    json_response(status, &v)
}

/// A validated send made ready for its space: the original message of a replayed key, or the
/// command with its uploads attached.
pub enum Prepared {
    /// The same sender already sent with this idempotency key: nothing is to be created.
    Replay(Message),
    Send {
        cmd: SendMessage,
        /// The uploads bound to the message about to be sent, to give back if it is refused.
        attached: Option<Attached>,
    },
}

/// Uploads bound to a message that does not exist yet.
pub struct Attached {
    media_ids: Vec<Uuid>,
    space_id: uuid::Uuid,
    message_id: MessageId,
}

impl Attached {
    /// Gives the uploads back when the engine refused the send before writing anything (the
    /// message will never exist); otherwise the outcome is unknown and the sweep decides.
    pub async fn release_if_refused(self, app: &AppRef, e: &EngineError) {
        if refused_before_write(e) {
            media::detach(&*app.media, &self.media_ids, self.space_id, self.message_id).await;
        }
    }
}

/// Makes a validated send ready: with uploads, first the replay check (a replay must not touch
/// them: they belong to the original message), then the posting pre-check (so a send that will
/// be refused binds nothing), then the uploads are bound to the message id chosen here. Without
/// uploads, nothing is awaited: the space actor decides everything.
///
/// # Errors
/// Those of the pre-check (`not_a_member`, `forbidden`, …) and of
/// [`media::attach_for_send`] (`invalid_media`, …).
pub async fn prepare_send(
    app: &AppRef,
    caller: &User,
    space_id: uuid::Uuid,
    mut cmd: SendMessage,
    media_ids: Vec<Uuid>,
) -> Result<Prepared, ApiError> {
    if media_ids.is_empty() {
        return Ok(Prepared::Send {
            cmd,
            attached: None,
        });
    }
    let reader = app.engine.reader(space_id);
    if let Some(key) = &cmd.idempotency_key
        && let Some(original) = reader.replayed_send(&cmd.sender.user_id, key).await?
    {
        return Ok(Prepared::Replay(original));
    }
    reader.ensure_can_post(&cmd.sender.user_id).await?;
    let message_id = Uuid::now_v7();
    // The caller's own uploads (a bot sending on behalf attaches what it uploaded).
    let uploads =
        media::attach_for_send(&*app.media, caller.id(), &media_ids, space_id, message_id).await?;
    cmd.message_id = Some(message_id);
    cmd.media = uploads
        .into_iter()
        .map(|u| MediaItem {
            media_id: u.media_id,
            content_type: u.content_type,
            size: u.size,
            sha256: u.sha256,
            thumbnail_id: u.thumbnail_id,
        })
        .collect();
    Ok(Prepared::Send {
        cmd,
        attached: Some(Attached {
            media_ids,
            space_id,
            message_id,
        }),
    })
}

/// Send a message (the native model)
///
/// → 201 the message once durable (200 and the original message when the same sender already
/// sent with the same idempotency key within 5 minutes: nothing is created, whatever this body
/// says). `media_ids` (≤ 10) must be the caller's own uploads not used by another message; they
/// are attached before the send (400 `invalid_media`). `as_user_id` sends on behalf of that
/// member (power ≥ 100, else 403). 429 `rate_limited` over the caller's send rate limit. As
/// `multipart/form-data`: a first part `payload` (this JSON), then parts `file`, which become
/// the message's media as uploads named in `media_ids` would.
#[utoipa::path(post, path = "/v1/spaces/{spaceId}/messages", operation_id = "sendMessageV1",
    tag = "v1",
    params(SpacePath, IdempotencyKeyHeader),
    request_body(content(
        (SendBody = "application/json"),
        (SendForm = "multipart/form-data", encoding(
            ("payload" = (content_type = "application/json")),
            ("file" = (content_type = "application/octet-stream")),
        )),
    )),
    responses(
        (status = 200, description = "The same sender already sent with this idempotency key \
            within 5 minutes: the original message; nothing was created.", body = Message),
        (status = 201, description = "The message, once durable (with `local_id` echoed).",
            body = Message),
        SendMessageErrors,
    ))]
async fn send_message(
    app: AppRef,
    user: User,
    space_id: uuid::Uuid,
    header_key: Option<String>,
    bytes: &Bytes,
) -> Result<Response, ApiError> {
    let body: SendBody = parse_json(bytes)?;
    let SendDraft {
        cmd,
        media_ids,
        local_id,
    } = validate_send(
        &user.profile,
        body,
        header_key,
        app.config.max_content_chars,
    )?;
    send_prepared(&app, &user, space_id, cmd, media_ids, local_id).await
}

/// The rest of a validated send: uploads attached, the message sent, the answer.
async fn send_prepared(
    app: &AppRef,
    user: &User,
    space_id: Uuid,
    cmd: SendMessage,
    media_ids: Vec<Uuid>,
    local_id: Option<serde_json::Value>,
) -> Result<Response, ApiError> {
    let app = app.clone();
    let (cmd, attached) = match prepare_send(&app, user, space_id, cmd, media_ids).await? {
        Prepared::Replay(original) => {
            let original = native(&app, space_id, user.id(), original).await?;
            return Ok(message_reply(StatusCode::OK, &original, local_id));
        }
        Prepared::Send { cmd, attached } => (cmd, attached),
    };
    let viewer = user.id().to_owned();
    match app.engine.space(space_id).post(cmd).await {
        Ok(sent) => {
            let status = if sent.replayed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            let m = native(&app, space_id, &viewer, sent.message).await?;
            Ok(message_reply(status, &m, local_id))
        }
        Err(e) => {
            if let Some(a) = attached {
                a.release_if_refused(&app, &e).await;
            }
            Err(e.into())
        }
    }
}

/// The body limit of a send: `max_body_bytes` for JSON; for multipart, that for the `payload`
/// part plus [`MAX_MEDIA`] files of `max_media_bytes` and their framing.
fn send_body_limit(app: &AppRef, content_type: Option<&str>) -> usize {
    if content_type.is_some_and(is_multipart) {
        multipart_send_limit(app)
    } else {
        json_body_limit(app, content_type)
    }
}

fn multipart_send_limit(app: &AppRef) -> usize {
    app.config
        .max_body_bytes
        .saturating_add(MAX_MEDIA.saturating_mul(app.config.max_media_bytes))
        .saturating_add(MULTIPART_OVERHEAD)
}

/// `POST /v1/spaces/{space_id}/messages` as `multipart/form-data`: a first part `payload` (the
/// JSON body of a send, every field as in JSON), then up to [`MAX_MEDIA`] parts `file` (each at
/// most `--max-media-bytes`, its Content-Type the declared type), which become the message's
/// media exactly as uploads named in `media_ids` would (type checked against the bytes,
/// thumbnails for images). `media_ids` and files together are at most [`MAX_MEDIA`]; files
/// count as content.
///
/// One file is held at a time: each is stored as soon as it is read. Nothing is stored before
/// the payload is valid, the key is not a replay (a replay answers the original and stores
/// nothing) and the caller may post; the files of a send refused after that are deleted at once.
///
/// # Errors
/// Those of a JSON send; 400 `invalid_request` (no `payload` first, a malformed body), 400
/// `too_many_media`, 413 `payload_too_large` (a part or the body over its limit), and those of
/// `POST /v1/media` for a file.
async fn send_multipart<S>(
    app: AppRef,
    user: User,
    space_id: Uuid,
    header_key: Option<String>,
    ct: &str,
    body: S,
) -> Result<Response, ApiError>
where
    S: futures::Stream<Item = Result<Bytes, warp::Error>> + Send + 'static,
{
    let boundary = multer::parse_boundary(ct).map_err(|_| {
        ApiError::bad_request(
            "invalid_request",
            "multipart/form-data without a valid boundary",
        )
    })?;
    let (payload_limit, file_limit) = (app.config.max_body_bytes, app.config.max_media_bytes);
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["payload", "file"])
        .size_limit(
            multer::SizeLimit::new()
                .whole_stream(multipart_send_limit(&app) as u64)
                .for_field("payload", payload_limit as u64)
                .for_field("file", file_limit as u64),
        );
    let mut mp = multer::Multipart::with_constraints(body, boundary, constraints);
    let map_err = |e: multer::Error| match e {
        multer::Error::FieldSizeExceeded { field_name, .. } => ApiError::too_large(format!(
            "The part {:?} exceeds its limit ({payload_limit} bytes for payload, {file_limit} for a file)",
            field_name.unwrap_or_default()
        )),
        multer::Error::StreamSizeExceeded { .. } => {
            ApiError::too_large("The request body is too large")
        }
        multer::Error::UnknownField { field_name } => ApiError::bad_request(
            "invalid_request",
            format!(
                "unexpected part {:?}: send a part payload, then parts file",
                field_name.unwrap_or_default()
            ),
        ),
        other => ApiError::bad_request(
            "invalid_request",
            format!("Malformed multipart body: {other}"),
        ),
    };
    let no_payload = || {
        ApiError::bad_request(
            "invalid_request",
            "The first part must be payload (the message as JSON), then the files as parts file",
        )
    };
    let first = match mp.next_field().await {
        Err(multer::Error::IncompleteStream) => return Err(no_payload()),
        other => other.map_err(map_err)?.ok_or_else(no_payload)?,
    };
    if first.name() != Some("payload") {
        return Err(no_payload());
    }
    let payload = first.bytes().await.map_err(map_err)?;
    let b: SendBody = parse_json(&payload)?;
    let SendDraft {
        cmd,
        mut media_ids,
        local_id,
    } = validate_send_with(
        &user.profile,
        b,
        header_key,
        app.config.max_content_chars,
        true,
    )?;
    // Content of the payload itself (normalized: blank text is none); the files come next.
    let has_content =
        cmd.content.is_some() || cmd.body.is_some() || cmd.gif.is_some() || !media_ids.is_empty();
    // Refuse before storing anything: a replay (the files belong to nobody), or a caller who
    // may not post.
    let reader = app.engine.reader(space_id);
    if let Some(key) = &cmd.idempotency_key
        && let Some(original) = reader.replayed_send(&cmd.sender.user_id, key).await?
    {
        drain(&mut mp).await;
        let original = native(&app, space_id, user.id(), original).await?;
        return Ok(message_reply(StatusCode::OK, &original, local_id));
    }
    if let Err(e) = reader.ensure_can_post(&cmd.sender.user_id).await {
        drain(&mut mp).await;
        return Err(e.into());
    }
    let mut stored: Vec<Uuid> = Vec::new();
    let files = async {
        while let Some(field) = mp.next_field().await.map_err(map_err)? {
            if field.name() != Some("file") {
                return Err(no_payload());
            }
            if media_ids.len() >= MAX_MEDIA {
                return Err(ApiError::bad_request(
                    "too_many_media",
                    format!("at most {MAX_MEDIA} files and media_ids per message"),
                ));
            }
            let declared = field.content_type().map(ToString::to_string);
            let bytes = field.bytes().await.map_err(map_err)?;
            let record = store_upload(&app, user.id(), bytes, declared).await?;
            stored.push(record.media_id);
            media_ids.push(record.media_id);
        }
        Ok(())
    }
    .await;
    if files.is_err() {
        drain(&mut mp).await;
    }
    let sent = match files {
        Ok(()) if !has_content && stored.is_empty() => Err(ApiError::bad_request(
            "empty_message",
            "A message needs content, body, gif, media_ids or a file",
        )),
        Ok(()) => send_prepared(&app, &user, space_id, cmd, media_ids, local_id).await,
        Err(e) => Err(e),
    };
    if sent.is_err() && !stored.is_empty() {
        // Refused: nothing names these files (a send whose outcome is unknown was not refused:
        // its files stay attached, and the sweep decides).
        if let Err(e) = media::delete_media(&*app.media, &stored).await {
            tracing::debug!(error = %e, "could not remove the files of a refused send");
        }
    }
    sent
}

/// Reads what is left of a multipart body (within its stream limit, one chunk at a time), so a
/// client still sending gets the answer rather than a reset connection.
async fn drain(mp: &mut multer::Multipart<'_>) {
    while let Ok(Some(mut field)) = mp.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(
    as = EditMessageV1,
    description = "A non-blank `content`, or `body`, or both. `null` is the same as absent."
)]
struct EditBody {
    #[schema(schema_with = content_schema)]
    content: Option<String>,
    /// At most 64 KB serialized.
    #[schema(value_type = Option<Object>)]
    body: Option<JsonObject>,
}

/// Edit a message
///
/// `{content?, body?}` → the message after the edit. Author only (403), within `--edit-window`
/// (default 24 h) of its creation (409 `edit_window_closed`); a redacted message: 409
/// `message_redacted`. The previous version is kept (`…/history`); event `message_edited`.
#[utoipa::path(post, path = "/v1/spaces/{spaceId}/messages/{messageId}/edit",
    operation_id = "editMessageV1", tag = "v1",
    params(MessagePath),
    request_body(content = EditBody, description = "The new content and/or body."),
    responses(
        (status = 200, description = "The message after the change.", body = Message),
        EditMessageErrors,
    ))]
async fn edit_message(
    app: AppRef,
    auth: Option<String>,
    space: String,
    message: String,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let (user, space_id, message_id) = message_target(&app, auth, &space, &message)?;
    app.write_limit.check(user.id(), Write::Edit)?;
    let b: EditBody = parse_json(&bytes)?;
    let content = normalize_content(b.content, app.config.max_content_chars)?;
    if content.is_none() && b.body.is_none() {
        return Err(ApiError::bad_request(
            "empty_message",
            "An edit needs content or body",
        ));
    }
    validate_rich_fields(MSGTYPE_TEXT, b.body.as_ref(), None, &[], &[], None)?;
    let viewer = user.id().to_owned();
    let m = app
        .engine
        .space(space_id)
        .edit(message_id, user.profile, content, b.body)
        .await?;
    let m = native(&app, space_id, &viewer, m).await?;
    Ok(json_response(StatusCode::OK, &m))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = RedactMessageV1)]
struct RedactBody {
    /// At most 128 characters after trimming (`invalid_reason`).
    #[schema(max_length = 128)]
    reason: Option<String>,
}

/// Redact a message
///
/// `{reason?}` → the message after the redaction. Its author, or power ≥ 50 (403). Content,
/// body, media (files deleted), metadata, gif and mentions are wiped; id, seq and thread
/// position kept; edit history removed. Event `message_redacted`. Redacting again answers the
/// message as it is.
#[utoipa::path(post, path = "/v1/spaces/{spaceId}/messages/{messageId}/redact",
    operation_id = "redactMessageV1", tag = "v1",
    params(MessagePath),
    request_body(content = RedactBody, description = "An optional reason (an empty body is `{}`)."),
    responses(
        (status = 200, description = "The message after the change.", body = Message),
        RedactMessageErrors,
    ))]
async fn redact_message(
    app: AppRef,
    auth: Option<String>,
    space: String,
    message: String,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let (user, space_id, message_id) = message_target(&app, auth, &space, &message)?;
    app.write_limit.check(user.id(), Write::Edit)?;
    let b: RedactBody = parse_json(&bytes)?;
    let reason = b
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
    {
        return Err(ApiError::bad_request(
            "invalid_reason",
            format!("reason is longer than {MAX_REASON_CHARS} characters"),
        ));
    }
    let viewer = user.id().to_owned();
    let r = app
        .engine
        .space(space_id)
        .redact(message_id, user.profile, reason)
        .await?;
    // The message no longer names its files: delete them now (a failure leaves them to the
    // sweep only if their records still name a message that exists, so log it).
    let mut ids: Vec<Uuid> = r.wiped_media.iter().map(|m| m.media_id).collect();
    ids.extend(
        r.wiped_media_url
            .as_deref()
            .and_then(media::media_id_of_url),
    );
    if !ids.is_empty()
        && let Err(e) = media::delete_media(&*app.media, &ids).await
    {
        tracing::warn!(error = %e, %message_id, "could not delete the files of a redacted message");
    }
    let m = native(&app, space_id, &viewer, r.message).await?;
    Ok(json_response(StatusCode::OK, &m))
}

/// A message's previous versions.
#[derive(Serialize, ToSchema)]
struct History<'a> {
    /// Newest first; empty when never edited (a redaction removes them).
    data: &'a [MessageVersion],
}

/// A message's previous versions, newest first
///
/// `{data}`: empty when never edited; wiped by a redaction.
#[utoipa::path(get, path = "/v1/spaces/{spaceId}/messages/{messageId}/history",
    operation_id = "messageHistoryV1", tag = "v1",
    params(MessagePath),
    responses(
        (status = 200, description = "`{data}`", body = inline(History)),
        MessageReadErrors,
    ))]
async fn message_history(
    app: AppRef,
    auth: Option<String>,
    space: String,
    message: String,
) -> Result<Response, ApiError> {
    let (user, space_id, message_id) = message_target(&app, auth, &space, &message)?;
    let versions = app
        .engine
        .reader(space_id)
        .message_history(user.id(), message_id)
        .await?;
    Ok(json_response(StatusCode::OK, &History { data: &versions }))
}

/// Most replies `…/thread` returns in one answer.
pub const MAX_THREAD: usize = 1000;

/// The replies of a thread.
#[derive(Serialize, ToSchema)]
struct Thread<'a> {
    /// Oldest first. Pages of the scan are added while fewer than 1000 are held, so at most
    /// 1099.
    data: &'a [Message],
    /// Continues the thread with `GET …/messages?parent_id=<id>&direction=forward&cursor=…`
    /// when it is longer than one answer (or its scan was cut by its budget); else `null`.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// A message's replies, oldest first
///
/// `{data, next_cursor}`: a thread is one level (a reply of a reply is refused at send). About
/// 1000 replies per answer (pages of the scan forward from the parent are added while fewer
/// than 1000 are held, within 10 scan budgets); `next_cursor` (non-null) continues with
/// `GET …/messages?parent_id=<id>&direction=forward&cursor=…`.
#[utoipa::path(get, path = "/v1/spaces/{spaceId}/messages/{messageId}/thread",
    operation_id = "threadV1", tag = "v1",
    params(MessagePath),
    responses(
        (status = 200, description = "`{data, next_cursor}`", body = inline(Thread)),
        MessageReadErrors,
    ))]
async fn thread(
    app: AppRef,
    auth: Option<String>,
    space: String,
    message: String,
) -> Result<Response, ApiError> {
    let (user, space_id, message_id) = message_target(&app, auth, &space, &message)?;
    let reader = app.engine.reader(space_id);
    let parent = reader.message(user.id(), message_id).await?;
    let mut q = MessageQuery {
        direction: Direction::Forward,
        from: Some(parent.seq),
        limit: MAX_LIMIT,
        filter: MessageFilter {
            parent_id: Some(message_id),
            ..MessageFilter::default()
        },
    };
    let mut replies = Vec::new();
    let mut next = None;
    for _ in 0..10 {
        let page = reader.list_messages(user.id(), &q).await?;
        replies.extend(page.messages);
        next = page.next;
        match next {
            Some(seq) if replies.len() < MAX_THREAD => q.from = Some(seq),
            _ => break,
        }
    }
    reader
        .with_viewer_reactions(user.id(), &mut replies)
        .await?;
    let next_cursor = next.map(|seq| {
        Cursor {
            direction: Direction::Forward,
            seq,
        }
        .encode()
    });
    Ok(json_response(
        StatusCode::OK,
        &Thread {
            data: &replies,
            next_cursor,
        },
    ))
}

/// Checks a serialized wire value against its component schema in the document: every key it
/// has is a property of the schema, and every required property is there.
#[cfg(test)]
pub(crate) fn assert_wire_matches_schema(name: &str, value: &serde_json::Value) {
    let doc = serde_json::to_value(crate::openapi::document()).expect("the document serializes");
    let schema = &doc["components"]["schemas"][name];
    let properties = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{name} has properties"));
    let keys = value.as_object().expect("an object");
    for key in keys.keys() {
        assert!(
            properties.contains_key(key),
            "{name}: {key} is not in the schema"
        );
    }
    for required in schema["required"].as_array().into_iter().flatten() {
        let required = required.as_str().expect("a name");
        assert!(
            keys.contains_key(required),
            "{name}: required {required} is missing"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served() -> serde_json::Value {
        serde_json::from_slice(&crate::openapi::document_json()).expect("the document is JSON")
    }

    #[test]
    fn the_message_schema_states_what_both_surfaces_serialize() {
        let gif = Gif {
            url: "https://media.example/cat.gif".into(),
            width: 2,
            height: 1,
            title: None,
        };
        let native = Message {
            user_reactions: Some(vec!["👍".into()]),
            gif: Some(gif),
            media: vec![MediaItem::default()],
            ..Message::default()
        };
        let native = serde_json::to_value(&native).unwrap();
        assert_wire_matches_schema("Message", &native);
        assert_wire_matches_schema("Gif", &native["gif"]);
        assert_wire_matches_schema("MediaItem", &native["media"][0]);
        let space7 = Message {
            likes: Some(vec![]),
            ..Message::default()
        };
        let space7 = serde_json::to_value(&space7).unwrap();
        assert_wire_matches_schema("Message", &space7);
        // Every property is on the wire of one surface or the other, and only `likes` and
        // `user_reactions` are optional.
        let doc = served();
        let schema = &doc["components"]["schemas"]["Message"];
        let mut optional: Vec<&String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| {
                !schema["required"]
                    .as_array()
                    .unwrap()
                    .contains(&(*k).clone().into())
            })
            .collect();
        optional.sort();
        assert_eq!(optional, ["likes", "user_reactions"]);
        assert!(native.get("likes").is_none() && space7.get("user_reactions").is_none());
    }

    #[test]
    fn the_pages_state_what_the_handlers_serialize() {
        let m = Message::default();
        let page = Page {
            data: std::slice::from_ref(&m),
            next_cursor: None,
        };
        assert_wire_matches_schema("MessageCursorPage", &serde_json::to_value(&page).unwrap());
        let version = MessageVersion {
            seq: 2,
            content: None,
            body: None,
            valid_from: Timestamp(0),
            replaced_at: Timestamp(1),
        };
        assert_wire_matches_schema("MessageVersion", &serde_json::to_value(&version).unwrap());
    }

    #[test]
    fn send_and_edit_bodies_need_some_content_and_a_redaction_body_is_optional() {
        let doc = served();
        let schemas = &doc["components"]["schemas"];
        let alternatives = |name: &str| -> Vec<String> {
            schemas[name]["anyOf"]
                .as_array()
                .unwrap_or_else(|| panic!("{name} has anyOf"))
                .iter()
                .map(|a| a["required"][0].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            alternatives("SendMessageV1"),
            ["content", "body", "gif", "media_ids"]
        );
        assert_eq!(alternatives("EditMessageV1"), ["content", "body"]);
        let redact = &doc["paths"]["/v1/spaces/{spaceId}/messages/{messageId}/redact"]["post"];
        assert_eq!(redact["requestBody"]["required"], false);
        // And the server agrees: an empty body is `{}`.
        assert!(parse_json::<RedactBody>(b"").unwrap().reason.is_none());
    }

    #[test]
    fn links_name_their_operations_by_operation_id() {
        let doc = served();
        let mut ids = std::collections::BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                ids.insert(op["operationId"].as_str().unwrap().to_owned());
            }
        }
        let links =
            doc["paths"]["/v1/spaces/{spaceId}/messages"]["post"]["responses"]["201"]["links"]
                .as_object()
                .expect("the send's 201 has links");
        assert_eq!(links.len(), 10);
        for (name, link) in links {
            assert!(link.get("operation_id").is_none(), "{name}: operation_id");
            let id = link["operationId"].as_str().unwrap_or_default();
            assert!(ids.contains(id), "{name}: unknown operation {id:?}");
            assert_eq!(link["parameters"]["spaceId"], "$response.body#/space_id");
        }
    }

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn cursors_round_trip_and_anything_else_is_refused() {
        for direction in [Direction::Backward, Direction::Forward] {
            for seq in [0, 1, 49, 10_000, u64::MAX] {
                let c = Cursor { direction, seq };
                let s = c.encode();
                assert!(s.len() <= 12, "{s}");
                assert!(
                    s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                );
                assert_eq!(Cursor::decode(&s).unwrap(), c);
            }
        }
        let good = Cursor {
            direction: Direction::Forward,
            seq: 7,
        }
        .encode();
        for bad in [
            "",
            "!",
            "AAAA",
            &good[..good.len() - 1],
            &format!("{good}AA"),
            "AAAAAAAAAAAH",
        ] {
            let e = Cursor::decode(bad).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.code),
                (400, "invalid_cursor"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn list_queries_have_defaults_and_refuse_what_is_out_of_bounds() {
        let d = parse_list_query(&q(&[])).unwrap();
        assert_eq!(
            (d.direction, d.from, d.limit),
            (Direction::Backward, None, 50)
        );
        assert_eq!(d.filter, MessageFilter::default());
        let c = Cursor {
            direction: Direction::Forward,
            seq: 9,
        }
        .encode();
        let f = parse_list_query(&q(&[
            ("cursor", &c),
            ("limit", "100"),
            ("sender_id", "u1"),
            ("has_attachment", "false"),
            ("since", "2026-12-06T10:00:00Z"),
        ]))
        .unwrap();
        assert_eq!(
            (f.direction, f.from, f.limit),
            (Direction::Forward, Some(9), 100)
        );
        assert_eq!(f.filter.sender_id.as_deref(), Some("u1"));
        let g = parse_list_query(&q(&[("cursor", &c), ("direction", "backward")])).unwrap();
        assert_eq!(
            g.direction,
            Direction::Forward,
            "the cursor's direction wins"
        );
        assert_eq!(f.filter.has_attachment, Some(false));
        assert!(f.filter.since.is_some() && f.filter.until.is_none());
        for (pairs, code) in [
            (vec![("limit", "0")], "invalid_pagination"),
            (vec![("limit", "101")], "invalid_pagination"),
            (vec![("limit", "ten")], "invalid_pagination"),
            (vec![("direction", "up")], "invalid_pagination"),
            (vec![("cursor", "zzz")], "invalid_cursor"),
            (vec![("has_attachment", "yes")], "invalid_filter"),
            (vec![("since", "yesterday")], "invalid_filter"),
            (vec![("sender_id", "")], "invalid_filter"),
        ] {
            let e = parse_list_query(&q(&pairs)).unwrap_err();
            assert_eq!(e.code, code, "{pairs:?}");
        }
    }
}
