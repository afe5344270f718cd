//! Read markers, unread counts and the inbox (issue 12):
//! - `POST /v1/spaces/{space_id}/read` `{seq}` or `{message_id}` → the caller's marker;
//! - `GET /v1/me/unread` → the caller's unread counts over all their spaces;
//! - `GET /v1/me/spaces?cursor=&limit=` → the inbox: the caller's spaces, unread first.
//!
//! Unread means top-level messages (not thread replies) created after the caller's marker; the
//! counters are kept by each space's actor, so every number here is O(1) per space and no request
//! reads a message (see `spacecast_engine::unread` for the definitions, deletions and bounds).
//! Spacecast has no archived or locked spaces, so every space of the caller is listed; only
//! members ever see a space here (the list is the caller's own memberships).

use std::cmp::Ordering;
use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use spacecast_engine::model::{MessageId, Seq, SpaceId, Timestamp, UserRef};
use spacecast_engine::unread::{Membership, ReadTarget};
use spacecast_engine::users::UserEvent;
use utoipa::{IntoParams, ToSchema};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::spaces::{SpaceJson, space_json};
use super::v1_messages::{DEFAULT_LIMIT, MAX_LIMIT};
use super::{
    authorization, body_within, json_body_limit, parse_json, query_map, read_body, respond,
    started, user, with_app,
};
use crate::app::AppRef;
use crate::error::{ApiError, json_response};
use crate::input::parse_space_id;
use crate::openapi::params::SpacePath;
use crate::ratelimit::Write;

/// The read-marker and inbox operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(mark_read, my_unread, my_spaces), modifiers(&ExactlyOne))]
pub struct Doc;

/// The mark's body in the document: exactly one of `seq` and `message_id` (`oneOf` of
/// `required` lists, which utoipa has no attribute for), neither of them `null`.
struct ExactlyOne;

impl utoipa::Modify for ExactlyOne {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::Schema;
        let Some(components) = doc.components.as_mut() else {
            return;
        };
        if let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut("MarkReadRequest") {
            // Each is optional on its own; `oneOf` requires exactly one.
            o.required.clear();
            o.extensions.get_or_insert_with(Default::default).insert(
                "oneOf".into(),
                serde_json::json!([{"required": ["seq"]}, {"required": ["message_id"]}]),
            );
        }
    }
}

crate::openapi::errors!(MarkReadErrors {
    400 "Not exactly one of `seq` (an integer ≥ 0) and `message_id` (a UUID), or not JSON."
        [invalid_read_marker, invalid_json],
    401,
    403 "The caller is not a member of this (public) space." [not_a_member],
    404 "Unknown space, a private space the caller is not a member of, or a `message_id` that is \
         not a message of the space." [not_found],
    413 "The request body is larger than `max_body_bytes` (default 256 KiB)." [payload_too_large],
    500,
} + [WRITE_LIMITED, SPACE_BUSY]);

crate::openapi::errors!(UnreadErrors {
    401,
    500,
    503 [store_unavailable],
});

crate::openapi::errors!(InboxErrors {
    400 "Invalid query parameter." [invalid_pagination, invalid_cursor],
    401,
    500,
    503 [store_unavailable],
});

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    let mark = warp::path!("v1" / "spaces" / String / "read")
        .and(warp::post())
        .and(body_within(app.clone(), json_body_limit))
        .and(with_app(app.clone()))
        .and(started())
        .and(authorization())
        .and(warp::body::stream())
        .then(|space: String, app: AppRef, t, auth, body| async move {
            respond(app.clone(), "POST /v1/spaces/:space/read", t, async move {
                // The caller and the write limit first: a refused mark costs no body read.
                let user = user(&app, auth)?;
                app.write_limit.check(user.id(), Write::Read)?;
                let bytes = read_body(body, app.config.max_body_bytes).await?;
                mark_read(app, user, space, bytes).await
            })
            .await
        });
    let unread = warp::path!("v1" / "me" / "unread")
        .and(warp::get())
        .and(with_app(app.clone()))
        .and(started())
        .and(authorization())
        .then(|app: AppRef, t, auth| {
            respond(app.clone(), "GET /v1/me/unread", t, my_unread(app, auth))
        });
    let inbox = warp::path!("v1" / "me" / "spaces")
        .and(warp::get())
        .and(with_app(app))
        .and(started())
        .and(authorization())
        .and(query_map())
        .then(|app: AppRef, t, auth, q| {
            respond(app.clone(), "GET /v1/me/spaces", t, my_spaces(app, auth, q))
        });
    mark.or(unread).unify().or(inbox).unify().boxed()
}

/// The body of `POST /v1/spaces/{spaceId}/read`: exactly one of the two.
#[derive(Deserialize, ToSchema)]
#[schema(as = MarkReadRequest)]
#[allow(dead_code)] // Parsed as JSON values (for stable error codes); this is the document's.
struct MarkBody {
    /// Read up to this seq (a seq above the space's head counts as the head). At most 2^53 − 1,
    /// the largest integer every JSON parser reads exactly.
    #[schema(value_type = u64, minimum = 0, maximum = 9007199254740991.0)]
    seq: Option<u64>,
    /// Read up to this message of the space (its creation seq).
    #[schema(value_type = String, format = Uuid)]
    message_id: Option<String>,
}

/// The largest `seq` a mark accepts: 2^53 − 1 (a space never gets near it).
const MAX_SEQ: u64 = (1 << 53) - 1;

/// The target of a mark.
///
/// # Errors
/// 400 `invalid_read_marker` unless the body has exactly one of `seq` (an integer from 0 to
/// [`MAX_SEQ`]) and
/// `message_id` (a UUID); `invalid_json` for a body that is not JSON.
fn read_target(bytes: &[u8]) -> Result<ReadTarget, ApiError> {
    let v: serde_json::Value = parse_json(bytes)?;
    let bad = || {
        ApiError::bad_request(
            "invalid_read_marker",
            "Give exactly one of seq (an integer ≥ 0) and message_id (a message's UUID)",
        )
    };
    let obj = v.as_object().ok_or_else(bad)?;
    // A `null` is given, and invalid: the document allows neither field to be null.
    let seq = obj.get("seq");
    let message = obj.get("message_id");
    match (seq, message) {
        // JSON Schema's `integer` includes integral numbers written with a fraction (`3.0`).
        (Some(s), None) => s
            .as_u64()
            .or_else(|| {
                s.as_f64()
                    .filter(|f| f.fract() == 0.0 && (0.0..=MAX_SEQ as f64).contains(f))
                    .map(|f| f as u64)
            })
            .filter(|&n| n <= MAX_SEQ)
            .map(ReadTarget::Seq)
            .ok_or_else(bad),
        (None, Some(m)) => m
            .as_str()
            .and_then(|m| m.parse::<MessageId>().ok())
            .map(ReadTarget::Message)
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// What a mark answers.
#[derive(Serialize, ToSchema)]
#[schema(as = ReadMarker)]
struct Marked {
    #[schema(value_type = String, format = Uuid)]
    space_id: SpaceId,
    /// The caller's marker after the call (it never moves back).
    #[schema(value_type = u64, minimum = 0)]
    last_read_seq: Seq,
    /// Top-level messages created after the marker.
    #[schema(minimum = 0)]
    unread: u64,
}

/// Mark a space read
///
/// Moves the caller's read marker forward to `seq` (one above the head counts as the head) or
/// to `message_id`'s seq. Only forward: a target at or below the current marker changes nothing
/// and answers the current one. Marks of several sessions are serialised by the space's actor,
/// so the marker never moves back. No event, no seq; durable when answered. Members only. Unread
/// counts top-level messages (not thread replies) after the marker.
#[utoipa::path(post, path = "/v1/spaces/{spaceId}/read", operation_id = "markReadV1", tag = "v1",
    params(SpacePath),
    request_body = MarkBody,
    responses(
        (status = 200, description = "The caller's marker and unread count, once durable.",
            body = Marked),
        MarkReadErrors,
    ))]
async fn mark_read(
    app: AppRef,
    user: crate::auth::User,
    space: String,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let space_id = parse_space_id(&space)?;
    let target = read_target(&bytes)?;
    let r = app
        .engine
        .space(space_id)
        .mark_read(user.id().to_owned(), target)
        .await?;
    if r.changed {
        // Durable here; to every session of the caller, on every node (best effort, like the
        // user channel: a session that missed it reads the marker from `GET /v1/me/unread`).
        app.engine.publish_to_user(
            user.id(),
            UserEvent::ReadMarker {
                space_id,
                seq: r.last_read_seq,
                unread: r.unread,
            },
        );
    }
    Ok(json_response(
        StatusCode::OK,
        &Marked {
            space_id,
            last_read_seq: r.last_read_seq,
            unread: r.unread,
        },
    ))
}

/// One space in `GET /v1/me/unread`.
#[derive(Serialize, ToSchema)]
#[schema(as = SpaceUnread)]
struct SpaceUnread {
    #[schema(value_type = String, format = Uuid)]
    space_id: SpaceId,
    #[schema(minimum = 0)]
    unread: u64,
    /// 0 when the caller never marked the space (and has not posted or joined since markers
    /// exist).
    #[schema(value_type = u64, minimum = 0)]
    last_read_seq: Seq,
}

/// The body of `GET /v1/me/unread`.
#[derive(Serialize, ToSchema)]
#[schema(as = UnreadCounts)]
struct UnreadBody {
    /// The sum of `spaces[].unread`.
    #[schema(minimum = 0)]
    total_unread: u64,
    /// Every space of the caller, newest space first, those without unread messages included.
    spaces: Vec<SpaceUnread>,
}

/// The caller's unread counts
///
/// Every space the caller is a member of (private ones included, those at 0 too), newest space
/// first, with its unread count (top-level messages, not thread replies, after the caller's
/// marker) and the marker; `total_unread` is their sum. One read of the caller's membership list
/// plus each space's counters: O(spaces of the caller), no message is read.
#[utoipa::path(get, path = "/v1/me/unread", operation_id = "myUnreadV1", tag = "v1",
    responses(
        (status = 200, description = "The caller's unread counts.", body = UnreadBody),
        UnreadErrors,
    ))]
async fn my_unread(app: AppRef, auth: Option<String>) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let all = app.engine.memberships(user.id()).await?;
    let spaces: Vec<SpaceUnread> = all
        .iter()
        .map(|m| SpaceUnread {
            space_id: m.view.space.space_id,
            unread: m.unread(),
            last_read_seq: m.last_read_seq(),
        })
        .collect();
    let total_unread = spaces.iter().map(|s| s.unread).sum();
    Ok(json_response(
        StatusCode::OK,
        &UnreadBody {
            total_unread,
            spaces,
        },
    ))
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct InboxQuery {
    /// `next_cursor` of the previous page (opaque).
    #[param(pattern = "^S[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 50)]
    limit: Option<u32>,
}

/// A space's newest top-level message, in the inbox.
#[derive(Serialize, ToSchema)]
#[schema(as = LastMessage)]
struct LastMessageJson<'a> {
    #[schema(value_type = String, format = Uuid)]
    message_id: MessageId,
    #[schema(value_type = u64, minimum = 1)]
    seq: Seq,
    sender_id: &'a str,
    #[schema(value_type = UserRef)]
    sender: &'a UserRef,
    /// The text's first 100 characters (characters, not bytes); a message without text names
    /// what it carries: `[image]`, `[video]`, `[audio]`, `[file]`, `[GIF]`, or `[<msgtype>]`.
    #[schema(max_length = 100)]
    preview: &'a str,
    created_at: Timestamp,
}

/// One space of the inbox.
#[derive(Serialize, ToSchema)]
#[schema(as = InboxItem)]
struct InboxItem<'a> {
    /// The space, as `/v1` shows it (the caller's `role` and `power_level` included).
    space: SpaceJson<'a>,
    #[schema(minimum = 0)]
    unread: u64,
    #[schema(value_type = u64, minimum = 0)]
    last_read_seq: Seq,
    #[schema(value_type = u64, minimum = 0)]
    head_seq: Seq,
    /// The newest top-level message that exists and is not redacted, or `null` (none, or
    /// not within the bounded look-back after deletions).
    #[schema(required = true)]
    last_message: Option<LastMessageJson<'a>>,
}

/// The body of `GET /v1/me/spaces`.
#[derive(Serialize, ToSchema)]
#[schema(as = InboxPage)]
struct InboxPage<'a> {
    /// At most `limit`: spaces with unread messages first, then by most recent activity (the
    /// last message's time, else the space's creation), then by space id.
    #[schema(max_items = 100)]
    data: Vec<InboxItem<'a>>,
    /// Continues after this page; `null` on the last page.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// A position in the inbox order: (no unread, activity time, space id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InboxKey {
    read: bool,
    active_ms: i64,
    space_id: SpaceId,
}

impl InboxKey {
    fn of(m: &Membership) -> Self {
        InboxKey {
            read: m.unread() == 0,
            active_ms: m.active_at().0,
            space_id: m.view.space.space_id,
        }
    }

    /// The inbox order: unread first, then most recent activity first, then space id.
    fn cmp(&self, other: &Self) -> Ordering {
        self.read
            .cmp(&other.read)
            .then(other.active_ms.cmp(&self.active_ms))
            .then(self.space_id.cmp(&other.space_id))
    }
}

/// The inbox cursor's version tag.
const INBOX_CURSOR_V1: u8 = 0x49;

/// An inbox position: base64url (no padding) of a version byte, the read flag, the activity
/// time (ms, big-endian) and the space id. Opaque to clients.
fn encode_cursor(k: &InboxKey) -> String {
    let mut b = Vec::with_capacity(26);
    b.push(INBOX_CURSOR_V1);
    b.push(u8::from(k.read));
    b.extend_from_slice(&k.active_ms.to_be_bytes());
    b.extend_from_slice(k.space_id.as_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

/// # Errors
/// 400 `invalid_cursor` for anything [`encode_cursor`] did not make.
fn decode_cursor(s: &str) -> Result<InboxKey, ApiError> {
    let bad = || ApiError::bad_request("invalid_cursor", "cursor is not one this server made");
    let bytes = URL_SAFE_NO_PAD.decode(s.trim()).map_err(|_| bad())?;
    let [INBOX_CURSOR_V1, read @ (0 | 1), rest @ ..] = bytes.as_slice() else {
        return Err(bad());
    };
    let (ms, id) = rest.split_at_checked(8).ok_or_else(bad)?;
    let ms: [u8; 8] = ms.try_into().map_err(|_| bad())?;
    let space_id = SpaceId::from_slice(id).map_err(|_| bad())?;
    Ok(InboxKey {
        read: *read == 1,
        active_ms: i64::from_be_bytes(ms),
        space_id,
    })
}

/// # Errors
/// 400 `invalid_pagination`, `invalid_cursor`.
fn parse_inbox_query(q: &HashMap<String, String>) -> Result<(Option<InboxKey>, usize), ApiError> {
    let limit = crate::input::parse_limit(q, DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = q.get("cursor").map(|c| decode_cursor(c)).transpose()?;
    Ok((after, limit))
}

/// The caller's inbox
///
/// The caller's spaces (members only: private ones included, never another's), spaces with
/// unread messages first, then by most recent activity (the last message's time, else the
/// space's creation), then by space id; each with the caller's unread count and marker, the
/// space's head and its newest top-level message. Keyset pages over that order (`next_cursor`):
/// no space appears twice and none is skipped while the order does not change between pages (a
/// space whose unread count or activity changes in between moves, as in any inbox). A page is
/// computed from the caller's whole membership list: O(spaces of the caller) per page, never a
/// message read.
#[utoipa::path(get, path = "/v1/me/spaces", operation_id = "mySpacesV1", tag = "v1",
    params(InboxQuery),
    responses(
        (status = 200, description = "A page of the caller's inbox.", body = InboxPage),
        InboxErrors,
    ))]
async fn my_spaces(
    app: AppRef,
    auth: Option<String>,
    q: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let (after, limit) = parse_inbox_query(&q)?;
    let all = app.engine.memberships(user.id()).await?;
    let mut keyed: Vec<(InboxKey, &Membership)> = all
        .iter()
        .map(|m| (InboxKey::of(m), m))
        .filter(|(k, _)| after.is_none_or(|a| k.cmp(&a) == Ordering::Greater))
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let more = keyed.len() > limit;
    keyed.truncate(limit);
    let next_cursor = more
        .then(|| keyed.last().map(|(k, _)| encode_cursor(k)))
        .flatten();
    let data = keyed
        .iter()
        .map(|(_, m)| InboxItem {
            space: space_json(&m.view, Some(&m.member)),
            unread: m.unread(),
            last_read_seq: m.last_read_seq(),
            head_seq: m.view.counters.head_seq,
            last_message: m.last_message().map(|l| LastMessageJson {
                message_id: l.message_id,
                seq: l.seq,
                sender_id: &l.sender.user_id,
                sender: &l.sender,
                preview: &l.preview,
                created_at: l.created_at,
            }),
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &InboxPage { data, next_cursor },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_names_exactly_one_target() {
        assert_eq!(read_target(br#"{"seq": 7}"#).unwrap(), ReadTarget::Seq(7));
        let id = uuid::Uuid::now_v7();
        assert_eq!(
            read_target(format!(r#"{{"message_id": "{id}"}}"#).as_bytes()).unwrap(),
            ReadTarget::Message(id)
        );
        assert_eq!(read_target(br#"{"seq": 3.0}"#).unwrap(), ReadTarget::Seq(3));
        assert_eq!(
            read_target(br#"{"seq": 9007199254740991}"#).unwrap(),
            ReadTarget::Seq(MAX_SEQ)
        );
        for bad in [
            &br#"{}"#[..],
            br#""#,
            br#"[]"#,
            br#"{"seq": -1}"#,
            br#"{"seq": null}"#,
            br#"{"seq": 3, "message_id": null}"#,
            br#"{"seq": 9007199254740992}"#,
            br#"{"seq": 1.5}"#,
            br#"{"seq": "3"}"#,
            br#"{"message_id": "nope"}"#,
            br#"{"seq": 1, "message_id": "0190a0a0-0000-7000-8000-000000000000"}"#,
        ] {
            let e = read_target(bad).expect_err(std::str::from_utf8(bad).unwrap());
            assert_eq!(e.code, "invalid_read_marker");
        }
        assert_eq!(read_target(b"{").unwrap_err().code, "invalid_json");
    }

    #[test]
    fn inbox_cursors_round_trip_and_anything_else_is_refused() {
        let k = InboxKey {
            read: true,
            active_ms: 1_700_000_000_123,
            space_id: uuid::Uuid::now_v7(),
        };
        let c = encode_cursor(&k);
        assert!(c.starts_with('S'), "{c}");
        assert_eq!(decode_cursor(&c).unwrap(), k);
        for bad in ["", "S", "not base64!", &URL_SAFE_NO_PAD.encode([0x49, 2])] {
            assert_eq!(decode_cursor(bad).unwrap_err().code, "invalid_cursor");
        }
    }

    #[test]
    fn the_inbox_order_is_unread_first_then_recent_then_id() {
        let id = |n: u8| uuid::Uuid::from_bytes([n; 16]);
        let k = |read, active_ms, n| InboxKey {
            read,
            active_ms,
            space_id: id(n),
        };
        let mut v = vec![
            k(true, 9, 1),
            k(false, 1, 2),
            k(false, 5, 3),
            k(false, 5, 1),
        ];
        v.sort_by(InboxKey::cmp);
        assert_eq!(
            v,
            vec![
                k(false, 5, 1),
                k(false, 5, 3),
                k(false, 1, 2),
                k(true, 9, 1)
            ]
        );
    }

    #[test]
    fn the_schemas_state_what_the_handlers_serialize() {
        let body = Marked {
            space_id: uuid::Uuid::nil(),
            last_read_seq: 3,
            unread: 1,
        };
        crate::routes::v1_messages::assert_wire_matches_schema(
            "ReadMarker",
            &serde_json::to_value(&body).unwrap(),
        );
        let body = UnreadBody {
            total_unread: 0,
            spaces: vec![],
        };
        crate::routes::v1_messages::assert_wire_matches_schema(
            "UnreadCounts",
            &serde_json::to_value(&body).unwrap(),
        );
        let sender = UserRef {
            user_id: "u".into(),
            username: "u".into(),
            profile_picture: String::new(),
        };
        let last = LastMessageJson {
            message_id: uuid::Uuid::nil(),
            seq: 1,
            sender_id: "u",
            sender: &sender,
            preview: "hi",
            created_at: Timestamp(0),
        };
        crate::routes::v1_messages::assert_wire_matches_schema(
            "LastMessage",
            &serde_json::to_value(&last).unwrap(),
        );
    }
}
