//! Space7 messages: send (multipart or JSON), list, appreciate, delete
//! (reference/space7.md §3 "Messages").

use std::collections::HashMap;

use bytes::{Buf, Bytes};
use futures::{Stream, TryStreamExt};
use serde::{Deserialize, Serialize};
use spacecast_engine::model::{MediaType, Message, MessageId, SpaceId};
use spacecast_engine::{EngineError, MessageOrder, SendMessage};
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
use crate::ratelimit::Surface;

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
        .and(
            warp::query::<HashMap<String, String>>()
                .or(warp::any().map(HashMap::new))
                .unify(),
        )
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

#[derive(Deserialize)]
struct JsonSend {
    content: Option<String>,
    media_type: Option<String>,
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

#[derive(Serialize)]
struct Page<'a> {
    messages: &'a [Message],
    total: u64,
    page: u64,
    limit: u64,
    #[serde(rename = "totalPages")]
    total_pages: u64,
}

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

/// `POST /api/messages/{space_id}/{message_id}/appreciate` → `{appreciated, appreciation_count}`:
/// toggles the caller's appreciation. Anyone who can read the space may appreciate.
async fn appreciate(
    app: AppRef,
    auth: Option<String>,
    space: String,
    message: String,
) -> Result<Response, ApiError> {
    let (user, space_id, message_id) = message_target(&app, auth, &space, &message)?;
    app.engine.reader(space_id).view(user.id()).await?;
    let a = app
        .engine
        .space(space_id)
        .toggle_appreciation(message_id, user.profile)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "appreciated": a.appreciated,
            "appreciation_count": a.appreciation_count,
            "message_id": message_id,
            "space_id": space_id,
        }),
    ))
}

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
        &serde_json::json!({"message": "Message deleted", "message_id": message_id}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
