//! Space7 messages: send (multipart or JSON), list, appreciate, delete
//! (reference/space7.md §3 "Messages").

use std::collections::HashMap;

use bytes::{Buf, Bytes};
use futures::{Stream, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use spacecast_engine::model::{MediaType, Message, MessageId, SpaceId};
use spacecast_engine::{EngineError, MessageOrder, SendMessage};
use utoipa::openapi::RefOr;
use utoipa::openapi::encoding::EncodingBuilder;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{IntoParams, ToSchema};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{authorization, body_within, parse_json, read_body, respond, started, user, with_app};
use crate::app::AppRef;
use crate::auth::User;
use crate::error::{ApiError, json_response};
use crate::input::{normalize_content, parse_message_id, parse_space_id};
use crate::media::{self, MediaOwner};
use crate::openapi::links::MessageLinks;
use crate::openapi::params::{MessagePath, SpacePath};
use crate::openapi::rules;
use crate::ratelimit::{Surface, Write};

/// A new message's links, on the send's 201.
const SEND_LINKS: MessageLinks = MessageLinks {
    path: "/api/messages/{spaceId}",
    status: "201",
};

/// The Space7 message operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_messages_doc, send_message_doc, appreciate_doc, delete_message_doc),
    components(schemas(SendMessageForm)),
    modifiers(&MediaPartEncoding, &SEND_LINKS),
)]
pub struct Doc;

/// The Content-Type a multipart send's `media` part may declare (the bytes decide, not this).
const MEDIA_PART_TYPES: &str = "image/*, video/*, audio/*, application/octet-stream";

/// Adds the `media` part's encoding to the multipart send body (utoipa has no attribute for
/// a request body's `encoding`).
struct MediaPartEncoding;

impl utoipa::Modify for MediaPartEncoding {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let form = crate::openapi::post_mut(openapi, "/api/messages/{spaceId}")
            .and_then(|op| op.request_body.as_mut())
            .and_then(|body| body.content.get_mut("multipart/form-data"));
        if let Some(form) = form {
            form.encoding.insert(
                "media".into(),
                EncodingBuilder::new()
                    .content_type(Some(MEDIA_PART_TYPES))
                    .build(),
            );
        }
    }
}

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    let base = || with_app(app.clone()).and(started()).and(authorization());
    let send = warp::path!("api" / "messages" / String)
        .and(warp::post())
        .and(body_within(app.clone(), send_body_limit))
        .and(base())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::body::stream())
        .then(
            |space: String, app: AppRef, t, auth, ct: Option<String>, body| async move {
                respond(app.clone(), "POST /api/messages/:space", t, async move {
                    let user = user(&app, auth)?;
                    let space_id = parse_space_id(&space)?;
                    app.send_limit.check(user.id(), Surface::Space7)?;
                    let body = bytes_stream(body);
                    let draft = parse_send(&app, ct.as_deref(), body).await?;
                    send_message(app, user, space_id, draft).await
                })
                .await
            },
        );
    let list = warp::path!("api" / "messages" / String)
        .and(warp::get())
        .and(base())
        .and(super::query_map())
        .then(
            |space: String, app: AppRef, t, auth, q: HashMap<String, String>| {
                respond(
                    app.clone(),
                    "GET /api/messages/:space",
                    t,
                    list_messages(app, auth, space, q),
                )
            },
        );
    let appreciate = warp::path!("api" / "messages" / String / String / "appreciate")
        .and(warp::post())
        .and(base())
        .then(|space: String, msg: String, app: AppRef, t, auth| {
            respond(
                app.clone(),
                "POST /api/messages/:space/:message/appreciate",
                t,
                appreciate(app, auth, space, msg),
            )
        });
    let delete = warp::path!("api" / "messages" / String / String)
        .and(warp::delete())
        .and(base())
        .then(|space: String, msg: String, app: AppRef, t, auth| {
            respond(
                app.clone(),
                "DELETE /api/messages/:space/:message",
                t,
                delete_message(app, auth, space, msg),
            )
        });
    send.or(list)
        .unify()
        .or(appreciate)
        .unify()
        .or(delete)
        .unify()
        .boxed()
}

/// The body limit of a send: multipart carries media (`max_media_bytes` plus 64 KiB for the
/// other fields and the framing, as [`parse_multipart`] enforces), JSON only text.
fn send_body_limit(app: &AppRef, content_type: Option<&str>) -> usize {
    if content_type.is_some_and(is_multipart) {
        app.config.max_media_bytes.saturating_add(64 * 1024)
    } else {
        app.config.max_body_bytes
    }
}

/// Whether a `Content-Type` is `multipart/form-data`.
fn is_multipart(content_type: &str) -> bool {
    content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
}

/// The request body as a stream of `Bytes` (zero-copy for hyper's chunks).
fn bytes_stream<S, B>(body: S) -> impl Stream<Item = Result<Bytes, warp::Error>> + Send + 'static
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    body.map_ok(|mut b| b.copy_to_bytes(b.remaining()))
}

/// A send request as parsed from either body format, before validation.
#[derive(Default, Debug)]
pub struct Draft {
    pub content: Option<String>,
    pub media: Option<Bytes>,
    pub media_type: Option<String>,
}

/// Text only: a JSON body cannot carry media (a `media_type` field is ignored, as are unknown
/// fields).
#[derive(Deserialize, ToSchema)]
#[schema(as = SendMessageJson)]
struct JsonSend {
    #[schema(required = true, schema_with = json_content)]
    content: Option<String>,
    #[schema(ignore)]
    media_type: Option<String>,
}

/// Text a send may carry: [`rules::content_pattern`], at most the default `max_content_chars`.
fn content(description: &str) -> ObjectBuilder {
    rules::string(description)
        .max_length(Some(DEFAULT_MAX_CONTENT_CHARS))
        .pattern(Some(rules::content_pattern()))
}

/// The default of `--max-content-chars`.
const DEFAULT_MAX_CONTENT_CHARS: usize = 5000;

fn json_content() -> Object {
    content(
        "Trimmed; required non-empty (`empty_message`); no control characters other than tab, \
         newline and carriage return (`invalid_content`); at most `max_content_chars` characters \
         (`content_too_long`).",
    )
    .min_length(Some(1))
    .build()
}

/// The Space7 client's multipart send body (documentation only: [`parse_multipart`] reads it).
struct SendMessageForm;

impl utoipa::PartialSchema for SendMessageForm {
    fn schema() -> RefOr<Schema> {
        // At least one of content and media; media needs its media_type.
        let mut keywords = Extensions::default();
        keywords.insert(
            "anyOf".into(),
            json!([{"required": ["content"]}, {"required": ["media"]}]),
        );
        keywords.insert("dependentRequired".into(), json!({"media": ["media_type"]}));
        let media_types = [MediaType::Image, MediaType::Video, MediaType::Audio].map(|t| json!(t));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "The Space7 client's multipart body. Other field names give 400 `invalid_request`.",
            ))
            .property(
                "content",
                content(
                    "Trimmed; optional when `media` is given. No control characters other than \
                     tab, newline and carriage return (`invalid_content`). At most \
                     `max_content_chars` (default 5000) characters (`content_too_long`); a field \
                     over 64 KiB gives 413.",
                ),
            )
            .property(
                "media",
                rules::string(
                    "One file, at most `max_media_bytes` (default 10 MiB, else 413). Its bytes \
                     must be a recognised format of `media_type`'s kind (checked by signature, \
                     not by the part's Content-Type), else `invalid_media_type`. An empty part \
                     counts as no media.",
                )
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
                .content_media_type("application/octet-stream"),
            )
            .property(
                "media_type",
                rules::string(
                    "Required with `media` (else `invalid_media_type`); ignored without it.",
                )
                .enum_values(Some(media_types)),
            )
            .extensions(Some(keywords))
            .into()
    }
}

impl ToSchema for SendMessageForm {
    fn name() -> std::borrow::Cow<'static, str> {
        "SendMessageForm".into()
    }
}

/// Reads a send body: `multipart/form-data` (`content`, `media`, `media_type`) as the Space7 client
/// sends, or JSON `{content}`.
async fn parse_send<S>(app: &AppRef, content_type: Option<&str>, body: S) -> Result<Draft, ApiError>
where
    S: Stream<Item = Result<Bytes, warp::Error>> + Send + 'static,
{
    let ct = content_type.unwrap_or("application/json");
    if ct
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return parse_multipart(ct, body, app.config.max_media_bytes).await;
    }
    let is_json = ct.to_ascii_lowercase().contains("json");
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send multipart/form-data or application/json",
        ));
    }
    let bytes = read_body(body, app.config.max_body_bytes).await?;
    let req: JsonSend = parse_json(&bytes)?;
    Ok(Draft {
        content: req.content,
        media_type: req.media_type,
        ..Draft::default()
    })
}

/// Reads a `multipart/form-data` send body (`content`, `media`, `media_type`) with content type
/// `ct`, holding at most `max_media_bytes` of media (plus 64 KiB for the rest) in memory.
///
/// # Errors
/// 413 `payload_too_large` over the limits; 400 `invalid_request` for a malformed body, an
/// unknown field or text that is not UTF-8.
pub async fn parse_multipart<S, E>(
    ct: &str,
    body: S,
    max_media_bytes: usize,
) -> Result<Draft, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let boundary = multer::parse_boundary(ct).map_err(|_| {
        ApiError::bad_request(
            "invalid_request",
            "multipart/form-data without a valid boundary",
        )
    })?;
    let media_limit = max_media_bytes as u64;
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["content", "media", "media_type"])
        .size_limit(
            multer::SizeLimit::new()
                .whole_stream(media_limit + 64 * 1024)
                .for_field("media", media_limit)
                .for_field("content", 64 * 1024)
                .for_field("media_type", 64),
        );
    let mut mp = multer::Multipart::with_constraints(body, boundary, constraints);
    let mut draft = Draft::default();
    let map_err = |e: multer::Error| match e {
        multer::Error::FieldSizeExceeded { field_name, .. }
            if field_name.as_deref() == Some("media") =>
        {
            ApiError::too_large(format!("media exceeds {media_limit} bytes"))
        }
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            ApiError::too_large("The request body is too large")
        }
        multer::Error::UnknownField { field_name } => ApiError::bad_request(
            "invalid_request",
            format!(
                "Unknown form field {:?}; expected content, media, media_type",
                field_name.unwrap_or_default()
            ),
        ),
        other => ApiError::bad_request(
            "invalid_request",
            format!("Malformed multipart body: {other}"),
        ),
    };
    while let Some(field) = mp.next_field().await.map_err(map_err)? {
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(map_err)?;
        match name.as_str() {
            "media" => draft.media = Some(bytes),
            "content" | "media_type" => {
                let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                    ApiError::bad_request("invalid_request", format!("{name} is not valid UTF-8"))
                })?;
                if name == "content" {
                    draft.content = Some(text);
                } else {
                    draft.media_type = Some(text);
                }
            }
            _ => {}
        }
    }
    Ok(draft)
}

crate::openapi::errors!(SendMessageErrors {
    400 "Invalid message." [empty_message, invalid_media_type, content_too_long, invalid_content,
        invalid_json, invalid_request],
    401,
    403 "The caller is not a member, or may not post in this space." [not_a_member, forbidden],
    404 "Unknown space, or a private space the caller is not a member of." [not_found],
    413 "The media part exceeds `max_media_bytes` (default 10 MiB), another part or the JSON body \
        is too large." [payload_too_large],
    415 "The body is neither multipart/form-data nor JSON." [unsupported_media_type],
    429 "The sender is over `--send-rate-limit` (default 60 messages a minute: a burst of 60, \
        then one a second), checked before the body is read; retry after `Retry-After` seconds."
        [rate_limited],
    500,
} + [SPACE_BUSY]);

/// Send a message
///
/// Posts a message (text and/or one media file) as the caller, who must be a member (and, in a
/// space with `posting_permission` `admins`, have power level ≥ 50). Answered 201 only once the
/// message is durable. A body without Content-Type is read as JSON; any Content-Type other than
/// `multipart/form-data` or one containing `json` gives 415.
#[utoipa::path(post, path = "/api/messages/{spaceId}", operation_id = "sendMessage",
    tag = "messages",
    params(SpacePath),
    request_body(content(
        (SendMessageForm = "multipart/form-data"),
        (JsonSend = "application/json"),
    )),
    responses(
        (status = 201, description = "The message as stored (`likes` empty, `appreciation_count` 0).",
            body = Message),
        SendMessageErrors,
    ))]
#[allow(dead_code)] // The document's entry; the route serves it.
fn send_message_doc() {}

/// `POST /api/messages/{space_id}` → 201 Message, once durable.
///
/// `content` is trimmed; no content and no media → 400 `empty_message`; media without a valid
/// `media_type`, or whose bytes are not that kind of file → 400 `invalid_media_type`; content
/// over the limit → 400 `content_too_long`; control characters → 400 `invalid_content`; not a
/// member → 403 `not_a_member`; not allowed to post → 403 `forbidden`. Over the sender's rate
/// limit → 429 `rate_limited` + `Retry-After`, checked before the body is read (see the route).
async fn send_message(
    app: AppRef,
    user: User,
    space_id: SpaceId,
    draft: Draft,
) -> Result<Response, ApiError> {
    let content = normalize_content(draft.content, app.config.max_content_chars)?;
    let media = draft.media.filter(|m| !m.is_empty());
    let media_type = match (&media, draft.media_type.as_deref()) {
        (Some(_), Some(t)) => Some(MediaType::parse(t).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_media_type",
                "media_type must be \"image\", \"video\" or \"audio\"",
            )
        })?),
        (Some(_), None) => {
            return Err(ApiError::bad_request(
                "invalid_media_type",
                "media_type is required with media",
            ));
        }
        (None, _) => None,
    };
    if content.is_none() && media.is_none() {
        return Err(ApiError::bad_request(
            "empty_message",
            "Message must have text or media",
        ));
    }
    // The space actor checks membership and permission; with media, check everything that
    // can be checked before the file is written (type, membership, posting permission), so
    // almost every refused send writes nothing. The edge names the message, and the file's
    // record names it too, so a file whose send never landed is found by the sweep.
    let mut media_id = None;
    let mut message_id = None;
    if let (Some(bytes), Some(kind)) = (media, media_type) {
        let content_type = media::sniff_as(kind, &bytes)?;
        app.engine
            .reader(space_id)
            .ensure_can_post(user.id())
            .await?;
        let id = uuid::Uuid::now_v7();
        let owner = MediaOwner {
            space_id,
            message_id: id,
        };
        let saved = app
            .media
            .save(bytes, content_type, owner)
            .await
            .map_err(|e| media::failed(&app, "write", e))?;
        media_id = Some(saved.media_id);
        message_id = Some(id);
    }
    let cmd = SendMessage {
        message_id,
        sender: user.profile,
        content,
        media_url: media_id.map(|id| media_url(&app, id)),
        media_type,
        ..Default::default()
    };
    match app.engine.space(space_id).send(cmd).await {
        Ok(message) => Ok(json_response(StatusCode::CREATED, &message)),
        Err(e) => {
            if let Some(id) = media_id
                && refused_before_write(&e)
            {
                // Nothing references the file: remove it now rather than at the next sweep.
                if let Err(err) = app.media.delete(id).await {
                    tracing::debug!(error = %err, "could not remove the media of a refused send");
                }
            }
            Err(e.into())
        }
    }
}

/// Whether the engine refused a send before writing anything, so the message will never
/// exist. Other failures (a timeout, a store error, a restarting actor) leave the outcome
/// unknown: the message may still land, so its file stays and the sweep decides later.
pub(super) fn refused_before_write(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::SpaceNotFound
            | EngineError::MessageNotFound
            | EngineError::NotAMember
            | EngineError::AlreadyMember
            | EngineError::Forbidden(_)
            | EngineError::Invalid(..)
            | EngineError::Conflict(..)
            | EngineError::Overloaded { .. }
    )
}

/// The URL of stored media: absolute under `--public-url` when it is configured, else the
/// relative `/api/media/<id>`. Never built from request headers: a forged `Host` would be
/// stored and shown to every reader.
fn media_url(app: &AppRef, media_id: uuid::Uuid) -> String {
    let base = app.config.public_url.as_deref().unwrap_or("");
    format!("{base}/api/media/{}", media_id.simple())
}

/// One page of a space's messages.
#[derive(Serialize, ToSchema)]
#[schema(as = MessagesPage)]
struct Page<'a> {
    /// Each with `likes` (the Space7 reads always include it).
    #[schema(value_type = Vec<Message>)]
    messages: &'a [Message],
    /// Messages in the space.
    total: u64,
    #[schema(minimum = 1)]
    page: u64,
    #[schema(minimum = 1, maximum = 100)]
    limit: u64,
    /// `ceil(total / limit)`.
    #[serde(rename = "totalPages")]
    total_pages: u64,
}

/// `sort` of `GET /api/messages/{spaceId}` (documentation only: the handler matches the text).
/// Written by hand: its enum includes `""`, which a derived enum cannot name.
struct SortQuery;

impl IntoParams for SortQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["recent", "most_appreciated", ""]))
            .default(Some(json!("recent")));
        vec![
            ParameterBuilder::new()
                .name("sort")
                .parameter_in(ParameterIn::Query)
                .required(utoipa::openapi::Required::False)
                .description(Some(
                    "`recent`: newest first. `most_appreciated`: highest `appreciation_count` \
                     first, ties newest first. Empty means `recent`; anything else gives \
                     `invalid_sort`.",
                ))
                .schema(Some(schema))
                .build(),
        ]
    }
}

/// `page` and `limit` of `GET /api/messages/{spaceId}` (documentation only: the handler reads
/// a map, so unknown parameters are ignored).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct PageQuery {
    /// 1-based page number, at most 1000000 (else `invalid_pagination`).
    #[param(required = false, minimum = 1, maximum = 1000000, default = json!(1))]
    page: u64,
    /// Messages per page, 1–100 (else `invalid_pagination`).
    #[param(required = false, minimum = 1, maximum = 100, default = json!(50))]
    limit: u64,
}

crate::openapi::errors!(ListMessagesErrors {
    400 "Invalid query parameter." [invalid_sort, invalid_pagination],
    401,
    404 "Unknown space, or a private space the caller is not a member of." [not_found],
    500,
    503 [store_unavailable],
});

/// List a space's messages, page by page
///
/// Readable by any authenticated user for a public space, and by members for a private one.
#[utoipa::path(get, path = "/api/messages/{spaceId}", operation_id = "listMessages",
    tag = "messages",
    params(SpacePath, SortQuery, PageQuery),
    responses(
        (status = 200, description = "One page of messages, each with `likes`.", body = Page),
        ListMessagesErrors,
    ))]
#[allow(dead_code)] // The document's entry; `list_messages` serves it.
fn list_messages_doc() {}

/// `GET /api/messages/{space_id}?sort=recent|most_appreciated&page=1&limit=50` →
/// `{messages, total, page, limit, totalPages}`; `limit` is 1–100.
async fn list_messages(
    app: AppRef,
    auth: Option<String>,
    space: String,
    query: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let space_id = parse_space_id(&space)?;
    let mut sort = MessageOrder::Recent;
    let mut page: u64 = 1;
    let mut limit: u64 = 50;
    for (k, v) in &query {
        match k.as_str() {
            "sort" => {
                sort = match v.trim() {
                    "recent" | "" => MessageOrder::Recent,
                    "most_appreciated" => MessageOrder::MostAppreciated,
                    _ => {
                        return Err(ApiError::bad_request(
                            "invalid_sort",
                            "sort must be \"recent\" or \"most_appreciated\"",
                        ));
                    }
                }
            }
            "page" => {
                page = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|p| *p >= 1 && *p <= 1_000_000)
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_pagination",
                            "page must be a positive integer",
                        )
                    })?
            }
            "limit" => {
                limit = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|l| (1..=100).contains(l))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_pagination",
                            "limit must be between 1 and 100",
                        )
                    })?
            }
            _ => {}
        }
    }
    let offset = ((page - 1) * limit) as usize;
    let found = app
        .engine
        .reader(space_id)
        .page_messages(user.id(), sort, offset, limit as usize)
        .await?;
    let total = found.total;
    let body = Page {
        messages: &found.messages,
        total,
        page,
        limit,
        total_pages: total.div_ceil(limit),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// Authenticates the caller and parses `/{space_id}/{message_id}`; whether the caller may read
/// that space is for the handler to ask the engine.
pub(super) fn message_target(
    app: &AppRef,
    auth: Option<String>,
    space: &str,
    message: &str,
) -> Result<(User, SpaceId, MessageId), ApiError> {
    let user = user(app, auth)?;
    let space_id = parse_space_id(space)?;
    let message_id = parse_message_id(message)?;
    Ok((user, space_id, message_id))
}

/// The outcome of a toggle.
#[derive(Serialize, ToSchema)]
struct Appreciation {
    /// Whether the caller appreciates the message after this toggle.
    appreciated: bool,
    appreciation_count: u32,
    #[schema(value_type = String, format = Uuid)]
    message_id: MessageId,
    #[schema(value_type = String, format = Uuid)]
    space_id: SpaceId,
}

crate::openapi::errors!(AppreciateErrors {
    401,
    403 "Private space and the caller is not a member." [not_a_member],
    404 "Unknown space or message, or a private space the caller is not a member of."
        [not_found],
    500,
} + [WRITE_LIMITED, SPACE_BUSY]);

/// Toggle the caller's appreciation of a message
///
/// Adds the caller's appreciation if absent, removes it if present. Anyone who can read the
/// space may appreciate (membership is needed only in a private space). No request body.
#[utoipa::path(post, path = "/api/messages/{spaceId}/{messageId}/appreciate",
    operation_id = "toggleAppreciation", tag = "messages",
    params(MessagePath),
    responses(
        (status = 200, description = "The outcome of the toggle.", body = Appreciation),
        AppreciateErrors,
    ))]
#[allow(dead_code)] // The document's entry; `appreciate` serves it.
fn appreciate_doc() {}

/// `POST /api/messages/{space_id}/{message_id}/appreciate` → `{appreciated, appreciation_count}`:
/// toggles the caller's appreciation. Anyone who can read the space may appreciate.
async fn appreciate(
    app: AppRef,
    auth: Option<String>,
    space: String,
    message: String,
) -> Result<Response, ApiError> {
    let (user, space_id, message_id) = message_target(&app, auth, &space, &message)?;
    app.write_limit.check(user.id(), Write::Reaction)?;
    app.engine.reader(space_id).view(user.id()).await?;
    let a = app
        .engine
        .space(space_id)
        .toggle_appreciation(message_id, user.profile)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &Appreciation {
            appreciated: a.appreciated,
            appreciation_count: a.appreciation_count,
            message_id,
            space_id,
        },
    ))
}

/// The answer of a delete.
#[derive(Serialize, ToSchema)]
struct DeleteResult {
    #[schema(schema_with = message_deleted)]
    message: &'static str,
    #[schema(value_type = String, format = Uuid)]
    message_id: MessageId,
}

const MESSAGE_DELETED: &str = "Message deleted";

fn message_deleted() -> Object {
    super::spaces::const_string(MESSAGE_DELETED)
}

crate::openapi::errors!(DeleteMessageErrors {
    401,
    403 "The caller is neither the author nor a moderator." [forbidden],
    404 "Unknown space or message, or a private space the caller is not a member of."
        [not_found],
    500,
} + [WRITE_LIMITED, SPACE_BUSY]);

/// Delete a message
///
/// Hard-deletes a message, and its media file (its `media_url` then answers 404). Allowed for
/// its author and for members with power level ≥ 50 (moderators, admins).
#[utoipa::path(delete, path = "/api/messages/{spaceId}/{messageId}",
    operation_id = "deleteMessage", tag = "messages",
    params(MessagePath),
    responses(
        (status = 200, description = "Deleted.", body = DeleteResult),
        DeleteMessageErrors,
    ))]
#[allow(dead_code)] // The document's entry; `delete_message` serves it.
fn delete_message_doc() {}

/// `DELETE /api/messages/{space_id}/{message_id}` → `{"message": "Message deleted"}`. The author,
/// or a moderator/admin of the space (power ≥ 50); anyone else gets 403. The message's media
/// file is deleted with it.
async fn delete_message(
    app: AppRef,
    auth: Option<String>,
    space: String,
    message: String,
) -> Result<Response, ApiError> {
    let (user, space_id, message_id) = message_target(&app, auth, &space, &message)?;
    app.write_limit.check(user.id(), Write::Delete)?;
    // Learn the message's media before it is gone; the file is removed only once the delete
    // is durable. A file left by a failure here is the sweep's (its message no longer exists).
    // A message not found here is left to the space actor, which answers the delete.
    // Its files: the Space7 one and the `/v1` uploads (with their thumbnails).
    let media_ids: Vec<uuid::Uuid> = match app
        .engine
        .reader(space_id)
        .message(user.id(), message_id)
        .await
    {
        Ok(m) => m
            .media_url
            .as_deref()
            .and_then(media::media_id_of_url)
            .into_iter()
            .chain(m.media.iter().map(|i| i.media_id))
            .collect(),
        Err(EngineError::MessageNotFound) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    app.engine
        .space(space_id)
        .delete(message_id, user.profile)
        .await?;
    if !media_ids.is_empty()
        && let Err(e) = media::delete_media(&*app.media, &media_ids).await
    {
        tracing::warn!(error = %e, %message_id, "could not remove a deleted message's media");
    }
    Ok(json_response(
        StatusCode::OK,
        &DeleteResult {
            message: MESSAGE_DELETED,
            message_id,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_bodies_state_what_utoipa_has_no_attribute_for() {
        let doc: serde_json::Value =
            serde_json::from_slice(&crate::openapi::document_json()).unwrap();
        let body = &doc["paths"]["/api/messages/{spaceId}"]["post"]["requestBody"]["content"];
        assert_eq!(
            body["multipart/form-data"]["encoding"]["media"]["contentType"],
            MEDIA_PART_TYPES
        );
        let form = &doc["components"]["schemas"]["SendMessageForm"];
        assert_eq!(form["dependentRequired"], json!({"media": ["media_type"]}));
        assert_eq!(
            form["anyOf"],
            json!([{"required": ["content"]}, {"required": ["media"]}])
        );
        assert_eq!(form["properties"]["media"]["format"], "binary");
        // Every media_type the schema offers is one the handler parses.
        for kind in form["properties"]["media_type"]["enum"].as_array().unwrap() {
            assert!(MediaType::parse(kind.as_str().unwrap()).is_some(), "{kind}");
        }
        let deleted = serde_json::to_value(DeleteResult {
            message: MESSAGE_DELETED,
            message_id: uuid::Uuid::nil(),
        })
        .unwrap();
        assert_eq!(
            deleted["message"],
            doc["components"]["schemas"]["DeleteResult"]["properties"]["message"]["const"]
        );
    }

    #[test]
    fn only_definite_refusals_delete_the_media_of_a_failed_send() {
        for e in [
            EngineError::NotAMember,
            EngineError::SpaceNotFound,
            EngineError::Forbidden("x"),
            EngineError::Invalid("empty_message", String::new()),
            EngineError::Overloaded {
                retry_after: std::time::Duration::from_secs(1),
            },
        ] {
            assert!(refused_before_write(&e), "{e:?}");
        }
        // The message may still land: its file must stay (the sweep decides later).
        for e in [
            EngineError::SpaceUnavailable,
            EngineError::StoreUnavailable("disk".into()),
            EngineError::ShuttingDown,
            EngineError::Internal("x".into()),
        ] {
            assert!(!refused_before_write(&e), "{e:?}");
        }
    }
}
