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
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, ToSchema};
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
use crate::openapi::params::SpacePath;
use crate::ratelimit::Write;

/// The member operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_members, get_member, set_power, remove_member, patch_space))]
pub struct Doc;

/// `{spaceId}` and `{userId}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
#[allow(dead_code)]
struct MemberPath {
    /// The space's id (a UUID). A value that is not a UUID gives 404 `not_found`.
    #[param(value_type = String, format = Uuid)]
    space_id: String,
    /// The member's user id (percent-encoded in the path): 1 to 128 bytes, no whitespace,
    /// control, format or separator characters (else 400 `invalid_user_id`).
    // The pattern is the token rules' ([`check_user_id`]): the common format and separator
    // characters are listed (the server's rule is the Unicode categories); those outside the
    // BMP are written as themselves, so the pattern means the same to ECMA-262 (with the `u`
    // flag) and to Python's `re` (Schemathesis). 32 characters are at most 128 bytes, whatever
    // they are.
    #[param(
        min_length = 1,
        max_length = 32,
        pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890\\u0891\\u08e2\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb\u{110bd}\u{110cd}\u{13430}-\u{1343f}\u{1bca0}-\u{1bca3}\u{1d173}-\u{1d17a}\u{e0001}-\u{e007f}]+$"
    )]
    user_id: String,
}

/// The query of `GET …/members` in the document ([`parse_page_query`] enforces it).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct MembersQuery {
    /// `next_cursor` of the previous page (opaque).
    #[param(pattern = "^M[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 50)]
    limit: Option<u32>,
}

crate::openapi::errors!(ListMembersErrors {
    400 "Invalid query parameter." [invalid_pagination, invalid_cursor],
    401,
    404 "Unknown space, or a private space the caller is not a member of." [not_found],
    500,
    503 [store_unavailable],
});

crate::openapi::errors!(GetMemberErrors {
    400 "Invalid user id." [invalid_user_id],
    401,
    404 "Unknown space, a private space the caller is not a member of, or a user who is not a member."
        [not_found, member_not_found],
    500,
    503 [store_unavailable],
});

crate::openapi::errors!(SetPowerErrors {
    400 "Invalid body or user id." [invalid_power_level, invalid_user_id, invalid_json],
    401,
    403 "Not allowed by the rule, or not a member." [forbidden, not_a_member],
    404 "Unknown space, or a private space the caller is not a member of." [not_found],
    413 "The request body is larger than `max_body_bytes` (default 256 KiB)." [payload_too_large],
    500,
} + [WRITE_LIMITED, SPACE_BUSY]);

crate::openapi::errors!(RemoveMemberErrors {
    400 "Invalid user id." [invalid_user_id],
    401,
    403 "Not allowed." [forbidden, not_a_member],
    404 "Unknown space, a private space the caller is not a member of, or a user who is not a member."
        [not_found, member_not_found],
    409 "The last admin cannot leave while others remain." [last_admin],
    500,
} + [WRITE_LIMITED, SPACE_BUSY]);

crate::openapi::errors!(PatchSpaceErrors {
    400 "Invalid body." [invalid_posting_permission, invalid_json],
    401,
    403 "Not an admin, or not a member." [forbidden, not_a_member],
    404 "Unknown space, or a private space the caller is not a member of." [not_found],
    413 "The request body is larger than `max_body_bytes` (default 256 KiB)." [payload_too_large],
    500,
} + [WRITE_LIMITED, SPACE_BUSY]);

/// The 200 of `PATCH /v1/spaces/{spaceId}`: the `Space` schema of the Space7 surface (declared
/// with the Space7 routes; named here so this module does not depend on how they build it).
struct SpaceAfterPatch;

impl utoipa::IntoResponses for SpaceAfterPatch {
    fn responses() -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::response::Response>>
    {
        let content = utoipa::openapi::content::ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Space")))
            .build();
        let response = utoipa::openapi::response::ResponseBuilder::new()
            .description("The space after the change.")
            .content("application/json", content)
            .build();
        [("200".to_owned(), RefOr::T(response))].into()
    }
}

/// `power_level` as the document states it: 0, 50 or 100.
fn power_level_schema() -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .enum_values(Some([0, 50, 100]))
        .description(Some("0 member, 50 moderator, 100 admin."))
        .build()
}

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    let base = || with_app(app.clone()).and(started()).and(authorization());
    let list = warp::path!("v1" / "spaces" / String / "members")
        .and(warp::get())
        .and(base())
        .and(super::query_map())
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
#[derive(Serialize, ToSchema)]
#[schema(as = MemberV1)]
pub struct MemberJson<'a> {
    pub user_id: &'a str,
    /// The user id for a user added by `PUT`, until their first send stores their token's
    /// profile.
    pub username: &'a str,
    /// URL, or `""` when none is known.
    pub profile_picture: &'a str,
    #[schema(schema_with = power_level_schema)]
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

#[derive(Serialize, ToSchema)]
#[schema(as = MemberPageV1)]
struct Page<'a> {
    /// At most `limit`, by user id.
    #[schema(max_items = 100)]
    data: Vec<MemberJson<'a>>,
    /// Continues after this page; `null` on the last page.
    #[schema(required = true)]
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
    let limit = crate::input::parse_limit(q, DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = q.get("cursor").map(|c| decode_cursor(c)).transpose()?;
    Ok((after, limit))
}

/// A user id from a path segment: percent-decoded, then held to the token's rules.
///
/// # Errors
/// 400 `invalid_user_id`.
pub(crate) fn path_user_id(raw: &str) -> Result<String, ApiError> {
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

/// A cursor page of a space's members, by user id
///
/// Members ordered by user id (byte order), keyset pages (`limit` default 50, at most 100):
/// every member present during the whole walk is listed exactly once; one added or removed
/// meanwhile may or may not be. Visible to any authenticated caller for a public space, to
/// members only for a private one (404 `not_found` to anyone else, as for an unknown space).
#[utoipa::path(get, path = "/v1/spaces/{spaceId}/members", operation_id = "listMembersV1",
    tag = "v1",
    params(SpacePath, MembersQuery),
    responses(
        (status = 200, description = "One page.", body = Page),
        ListMembersErrors,
    ))]
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

/// One member
///
/// Visible to any authenticated caller for a public space, to members only for a private one
/// (404 `not_found` to anyone else, as for an unknown space).
#[utoipa::path(get, path = "/v1/spaces/{spaceId}/members/{userId}",
    operation_id = "getMemberV1", tag = "v1",
    params(MemberPath),
    responses(
        (status = 200, description = "The member.", body = MemberJson),
        GetMemberErrors,
    ))]
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

#[derive(Deserialize, ToSchema)]
#[schema(as = SetPowerV1)]
struct PowerBody {
    /// Read as any JSON value, so a missing or wrong one is 400 `invalid_power_level`.
    #[schema(schema_with = power_level_schema, required = true)]
    power_level: Option<serde_json::Value>,
}

/// Set a member's power level, or add a member
///
/// `{power_level}` (0, 50, 100) → the member. Only a member whose power level is higher than
/// both the target's current level and the new one may change it (a non-member counts as 0 and
/// is added: this is how a private space gets members). So nobody changes their own or an
/// equal's level, an admin (100) grants 0 or 50 but never 100, and an admin's level (the
/// creator's included) never changes. Event `member_updated`; setting the current level changes
/// nothing. A user added this way has their user id as username and no picture until their own
/// token is seen (their first send stores its profile).
#[utoipa::path(put, path = "/v1/spaces/{spaceId}/members/{userId}",
    operation_id = "setMemberPowerV1", tag = "v1",
    params(MemberPath),
    request_body = PowerBody,
    responses(
        (status = 200, description = "The member after the change.", body = MemberJson),
        SetPowerErrors,
    ))]
async fn set_power(
    app: AppRef,
    auth: Option<String>,
    space: String,
    uid: String,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    app.write_limit.check(user.id(), Write::Member)?;
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

/// Remove a member, or leave
///
/// The caller's own id: leave (always allowed, except for the last admin while other members
/// remain: 409 `last_admin`). Another member: a kick, by power ≥ 50 and higher than the
/// member's. Event `member_removed`; in a private space the removed user loses read access
/// (REST reads 404, realtime subscriptions end with `left` / `left_space` and
/// `reason: "removed"`).
#[utoipa::path(delete, path = "/v1/spaces/{spaceId}/members/{userId}",
    operation_id = "removeMemberV1", tag = "v1",
    params(MemberPath),
    responses(
        (status = 204, description = "Removed (durable)."),
        RemoveMemberErrors,
    ))]
async fn remove_member(
    app: AppRef,
    auth: Option<String>,
    space: String,
    uid: String,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    app.write_limit.check(user.id(), Write::Member)?;
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

#[derive(Deserialize, ToSchema)]
#[schema(as = PatchSpaceV1)]
struct PatchBody {
    /// `admins`: only members with power ≥ 50 may post (403 `forbidden` on every surface).
    /// Read as text, so a missing or unknown value is 400 `invalid_posting_permission`.
    #[schema(value_type = PostingPermission, inline, required = true)]
    posting_permission: Option<String>,
}

/// Change a space's posting permission
///
/// `{posting_permission}` (`everyone` | `admins`) → the space (the Space7 space shape). Power
/// 100 only. Event `space_updated`; setting the current value changes nothing.
#[utoipa::path(patch, path = "/v1/spaces/{spaceId}", operation_id = "patchSpaceV1", tag = "v1",
    params(SpacePath),
    request_body = PatchBody,
    responses(
        SpaceAfterPatch,
        PatchSpaceErrors,
    ))]
async fn patch_space(
    app: AppRef,
    auth: Option<String>,
    space: String,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    app.write_limit.check(user.id(), Write::Space)?;
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
    fn the_member_schemas_state_what_the_handlers_serialize() {
        let m = Member {
            user: spacecast_engine::model::UserRef {
                user_id: "ada".into(),
                username: "Ada".into(),
                profile_picture: String::new(),
            },
            power_level: 100,
            joined_at: Timestamp(0),
        };
        let page = Page {
            data: vec![MemberJson::from(&m)],
            next_cursor: None,
        };
        let page = serde_json::to_value(&page).unwrap();
        crate::routes::v1_messages::assert_wire_matches_schema("MemberPageV1", &page);
        crate::routes::v1_messages::assert_wire_matches_schema("MemberV1", &page["data"][0]);
    }

    #[test]
    fn the_user_id_pattern_accepts_what_the_server_accepts() {
        // The pattern as the document has it, read by the `regex` crate (close enough to
        // ECMA-262 and Python for these classes): ids the server takes match, ids it refuses
        // for a listed character do not.
        let doc = serde_json::to_value(crate::openapi::document()).unwrap();
        let params = doc["paths"]["/v1/spaces/{spaceId}/members/{userId}"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .clone();
        let user = params.iter().find(|p| p["name"] == "userId").unwrap();
        assert_eq!(user["required"], true);
        let pattern = user["schema"]["pattern"].as_str().unwrap();
        let re = regex::Regex::new(pattern).expect("the pattern compiles");
        for ok in ["ada", "a@b", "ü", "用户"] {
            assert!(check_user_id(ok).is_ok() && re.is_match(ok), "{ok}");
        }
        for bad in ["a b", "a\u{200b}b", "a\u{e0001}", "a\u{1d173}", "\u{7f}"] {
            assert!(
                check_user_id(bad).is_err(),
                "{bad:?} is refused by the server"
            );
            assert!(!re.is_match(bad), "{bad:?} matches the pattern");
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
