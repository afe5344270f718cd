//! Members and roles on the native surface (CONTRACT §5): `/v1/spaces/{space_id}/members…` and
//! `PATCH /v1/spaces/{space_id}`.
//!
//! - `GET …/members?cursor=&limit=` → `{data, next_cursor}`: members ordered by user id (byte
//!   order), a keyset page (`limit` default 50, at most 100) with an opaque cursor naming the
//!   last user id of the page; `next_cursor` is `null` on the last page. Every member present
//!   during the whole walk is listed exactly once; one added or removed meanwhile may or may not
//!   be.
//! - `GET …/members/{user_id}` → the member; 404 `member_not_found`.
//! - `PUT …/members/{user_id}` `{power_level}` (0, 50, 100) → 200 the member: sets the level,
//!   or adds the user as a member with it (how a private space gets members). The rule: the
//!   caller's level must be higher than both the target's current level (0 for a non-member)
//!   and the new one; so an admin grants 0 or 50 but never 100, and an admin's level never
//!   changes (see `SpaceHandle::set_power`).
//! - `DELETE …/members/{user_id}` → 204: a kick (power ≥ 50 and above the member's), or leaving
//!   when it is the caller; the last admin cannot leave while others remain (409 `last_admin`).
//! - `PATCH /v1/spaces/{space_id}` `{posting_permission}` (`everyone` | `admins`) → 200 the space
//!   (the Space7 space shape); power 100.
//!
//! Visibility is the read rule of every space read: any authenticated caller for a public space,
//! members only for a private one (404 `not_found` to anyone else, as for an unknown space).
//! Changes are sequenced events of the space (`member_updated`, `member_removed`,
//! `space_updated`), seen by every observer of the native stream in the space's order.
//!
//! Member JSON: `{user_id, username, profile_picture, power_level, joined_at}`. A user added by
//! `PUT` has their user id as username and no picture until their own token is seen (their
//! first send stores its profile; see `SpaceHandle::set_power`).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use spacecast_engine::model::{Member, PostingPermission, Timestamp};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::spaces::space_json;
use super::v1_messages::{DEFAULT_LIMIT, MAX_LIMIT};
use super::{
    authorization, body_within, json_body_limit, parse_json, read_body, respond, started, user,
    with_app,
};
use crate::app::AppRef;
use crate::auth::check_user_id;
use crate::error::{ApiError, json_response};
use crate::input::parse_space_id;

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    let base = || with_app(app.clone()).and(started()).and(authorization());
    let list = warp::path!("v1" / "spaces" / String / "members")
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
                    "GET /v1/spaces/:space/members",
                    t,
                    list_members(app, auth, space, q),
                )
            },
        );
    let get = warp::path!("v1" / "spaces" / String / "members" / String)
        .and(warp::get())
        .and(base())
        .then(|space: String, uid: String, app: AppRef, t, auth| {
            respond(
                app.clone(),
                "GET /v1/spaces/:space/members/:user",
                t,
                get_member(app, auth, space, uid),
            )
        });
    let put = warp::path!("v1" / "spaces" / String / "members" / String)
        .and(warp::put())
        .and(body_within(app.clone(), json_body_limit))
        .and(base())
        .and(warp::body::stream())
        .then(
            |space: String, uid: String, app: AppRef, t, auth, body| async move {
                respond(
                    app.clone(),
                    "PUT /v1/spaces/:space/members/:user",
                    t,
                    async move {
                        let bytes = read_body(body, app.config.max_body_bytes).await?;
                        set_power(app, auth, space, uid, bytes).await
                    },
                )
                .await
            },
        );
    let delete = warp::path!("v1" / "spaces" / String / "members" / String)
        .and(warp::delete())
        .and(base())
        .then(|space: String, uid: String, app: AppRef, t, auth| {
            respond(
                app.clone(),
                "DELETE /v1/spaces/:space/members/:user",
                t,
                remove_member(app, auth, space, uid),
            )
        });
    let patch = warp::path!("v1" / "spaces" / String)
        .and(warp::patch())
        .and(body_within(app.clone(), json_body_limit))
        .and(base())
        .and(warp::body::stream())
        .then(|space: String, app: AppRef, t, auth, body| async move {
            respond(app.clone(), "PATCH /v1/spaces/:space", t, async move {
                let bytes = read_body(body, app.config.max_body_bytes).await?;
                patch_space(app, auth, space, bytes).await
            })
            .await
        });
    list.or(get)
        .unify()
        .or(put)
        .unify()
        .or(delete)
        .unify()
        .or(patch)
        .unify()
        .boxed()
}

/// A member as `/v1` shows it.
#[derive(Serialize)]
pub struct MemberJson<'a> {
    pub user_id: &'a str,
    pub username: &'a str,
    pub profile_picture: &'a str,
    pub power_level: i32,
    pub joined_at: Timestamp,
}

impl<'a> From<&'a Member> for MemberJson<'a> {
    fn from(m: &'a Member) -> Self {
        MemberJson {
            user_id: &m.user.user_id,
            username: &m.user.username,
            profile_picture: &m.user.profile_picture,
            power_level: m.power_level,
            joined_at: m.joined_at,
        }
    }
}

#[derive(Serialize)]
struct Page<'a> {
    data: Vec<MemberJson<'a>>,
    next_cursor: Option<String>,
}

/// The members cursor's version tag.
const MEMBER_CURSOR_V1: u8 = 0x31;

/// A members page position (the last user id of a page): base64url (no padding) of a version
/// byte and the user id's bytes. Opaque to clients.
pub fn encode_cursor(last_user_id: &str) -> String {
    let mut bytes = Vec::with_capacity(1 + last_user_id.len());
    bytes.push(MEMBER_CURSOR_V1);
    bytes.extend_from_slice(last_user_id.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// # Errors
/// 400 `invalid_cursor` for anything [`encode_cursor`] did not make.
pub fn decode_cursor(s: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request("invalid_cursor", "cursor is not one this server made");
    let bytes = URL_SAFE_NO_PAD.decode(s.trim()).map_err(|_| bad())?;
    let [MEMBER_CURSOR_V1, rest @ ..] = bytes.as_slice() else {
        return Err(bad());
    };
    let id = std::str::from_utf8(rest).map_err(|_| bad())?;
    check_user_id(id).map_err(|_| bad())?;
    Ok(id.to_owned())
}

/// `limit` and `cursor` of the list.
///
/// # Errors
/// 400 `invalid_pagination`, `invalid_cursor`.
fn parse_page_query(q: &HashMap<String, String>) -> Result<(Option<String>, usize), ApiError> {
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_pagination",
                    format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                ));
            }
        },
    };
    let after = q.get("cursor").map(|c| decode_cursor(c)).transpose()?;
    Ok((after, limit))
}

/// A user id from a path segment: percent-decoded, then held to the token's rules.
///
/// # Errors
/// 400 `invalid_user_id`.
fn path_user_id(raw: &str) -> Result<String, ApiError> {
    let bad = |why: &str| ApiError::bad_request("invalid_user_id", format!("user id {why}"));
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next(), bytes.next()];
            let [Some(h), Some(l)] = hex else {
                return Err(bad("has a broken percent escape"));
            };
            let v = std::str::from_utf8(&[h, l])
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(|| bad("has a broken percent escape"))?;
            out.push(v);
        } else {
            out.push(b);
        }
    }
    let id = String::from_utf8(out).map_err(|_| bad("is not UTF-8"))?;
    check_user_id(&id).map_err(bad)?;
    Ok(id)
}

/// `GET /v1/spaces/{space_id}/members` → `{data, next_cursor}`.
async fn list_members(
    app: AppRef,
    auth: Option<String>,
    space: String,
    q: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let space_id = parse_space_id(&space)?;
    let (after, limit) = parse_page_query(&q)?;
    // One more than the page, to know whether another page follows.
    let mut members = app
        .engine
        .reader(space_id)
        .members_page(user.id(), after.as_deref(), limit + 1)
        .await?;
    let more = members.len() > limit;
    members.truncate(limit);
    let next_cursor = more
        .then(|| members.last().map(|m| encode_cursor(&m.user.user_id)))
        .flatten();
    Ok(json_response(
        StatusCode::OK,
        &Page {
            data: members.iter().map(MemberJson::from).collect(),
            next_cursor,
        },
    ))
}

/// `GET /v1/spaces/{space_id}/members/{user_id}` → the member.
async fn get_member(
    app: AppRef,
    auth: Option<String>,
    space: String,
    uid: String,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let space_id = parse_space_id(&space)?;
    let uid = path_user_id(&uid)?;
    let m = app.engine.reader(space_id).member(user.id(), &uid).await?;
    Ok(json_response(StatusCode::OK, &MemberJson::from(&m)))
}

#[derive(Deserialize)]
struct PowerBody {
    power_level: Option<serde_json::Value>,
}

/// `PUT /v1/spaces/{space_id}/members/{user_id}` `{power_level}` → the member.
async fn set_power(
    app: AppRef,
    auth: Option<String>,
    space: String,
    uid: String,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let space_id = parse_space_id(&space)?;
    let uid = path_user_id(&uid)?;
    let b: PowerBody = parse_json(&bytes)?;
    let level = b
        .power_level
        .as_ref()
        .and_then(serde_json::Value::as_i64)
        .and_then(|v| i32::try_from(v).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_power_level",
                "power_level is required: 0, 50 or 100",
            )
        })?;
    let m = app
        .engine
        .space(space_id)
        .set_power(uid, level, user.profile)
        .await?;
    Ok(json_response(StatusCode::OK, &MemberJson::from(&m)))
}

/// `DELETE /v1/spaces/{space_id}/members/{user_id}` → 204.
async fn remove_member(
    app: AppRef,
    auth: Option<String>,
    space: String,
    uid: String,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let space_id = parse_space_id(&space)?;
    let uid = path_user_id(&uid)?;
    app.engine
        .space(space_id)
        .remove_member(uid, user.profile)
        .await?;
    let mut res = Response::new(Vec::new().into());
    *res.status_mut() = StatusCode::NO_CONTENT;
    Ok(res)
}

#[derive(Deserialize)]
struct PatchBody {
    posting_permission: Option<String>,
}

/// `PATCH /v1/spaces/{space_id}` `{posting_permission}` → the space.
async fn patch_space(
    app: AppRef,
    auth: Option<String>,
    space: String,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let space_id = parse_space_id(&space)?;
    let b: PatchBody = parse_json(&bytes)?;
    let permission = match b.posting_permission.as_deref() {
        Some("everyone") => PostingPermission::Everyone,
        Some("admins") => PostingPermission::Admins,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_posting_permission",
                "posting_permission is required: \"everyone\" or \"admins\"",
            ));
        }
    };
    let id = user.id().to_owned();
    app.engine
        .space(space_id)
        .set_posting_permission(permission, user.profile)
        .await?;
    // Durable before the command answered: this read sees it (or something later).
    let (view, me) = app.engine.reader(space_id).view(&id).await?;
    Ok(json_response(
        StatusCode::OK,
        &space_json(&view, me.as_ref()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_cursors_round_trip_and_anything_else_is_refused() {
        for id in ["a", "user-1", "ünï", &"x".repeat(128)] {
            assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), id);
        }
        for bad in [
            "",
            "!!",
            "AA",
            &URL_SAFE_NO_PAD.encode([0x31]),
            &URL_SAFE_NO_PAD.encode(b"\x31a b"),
        ] {
            let e = decode_cursor(bad).unwrap_err();
            assert_eq!(e.code, "invalid_cursor", "{bad:?}");
        }
    }

    #[test]
    fn path_user_ids_are_percent_decoded_and_checked() {
        assert_eq!(path_user_id("ada").unwrap(), "ada");
        assert_eq!(path_user_id("a%40b").unwrap(), "a@b");
        assert_eq!(path_user_id("%C3%BC").unwrap(), "ü");
        for bad in ["a%20b", "%", "%4", "%zz", "%FF", ""] {
            assert_eq!(
                path_user_id(bad).unwrap_err().code,
                "invalid_user_id",
                "{bad:?}"
            );
        }
    }
}
