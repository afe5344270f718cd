//! Space7 spaces: create, read, join, list mine (reference/space7.md §3 "Spaces").

use serde::{Deserialize, Serialize};
use spacecast_engine::NewSpace;
use spacecast_engine::model::{
    Member, POWER_ADMIN, POWER_MODERATOR, PostingPermission, SpaceId, SpaceView, Timestamp,
    UserRef, Visibility,
};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{
    authorization, body_within, json_body_limit, parse_json, read_body, respond, started, user,
    with_app,
};
use crate::app::AppRef;
use crate::auth::User;
use crate::error::{ApiError, json_response};
use crate::input::{has_control_chars, parse_space_id};

/// Most members listed inline by `GET /api/spaces/{id}`.
const INLINE_MEMBERS: usize = 100;

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    let base = || with_app(app.clone()).and(started()).and(authorization());
    let create = warp::path!("api" / "spaces")
        .and(warp::post())
        .and(body_within(app.clone(), json_body_limit))
        .and(base())
        .and(warp::body::stream())
        .then(|app: AppRef, t, auth, body| async move {
            let limit = app.config.max_body_bytes;
            respond(app.clone(), "POST /api/spaces", t, async move {
                let user = user(&app, auth)?;
                let body = read_body(body, limit).await?;
                create_space(app, user, parse_json(&body)?).await
            })
            .await
        });
    let mine = warp::path!("api" / "spaces" / "my")
        .and(warp::get())
        .and(base())
        .then(|app: AppRef, t, auth| {
            respond(app.clone(), "GET /api/spaces/my", t, my_spaces(app, auth))
        });
    let get = warp::path!("api" / "spaces" / String)
        .and(warp::get())
        .and(base())
        .then(|id: String, app: AppRef, t, auth| {
            respond(
                app.clone(),
                "GET /api/spaces/:id",
                t,
                get_space(app, auth, id),
            )
        });
    let join = warp::path!("api" / "spaces" / String / "join")
        .and(warp::post())
        .and(body_within(app.clone(), json_body_limit))
        .and(base())
        .and(warp::body::stream())
        .then(|id: String, app: AppRef, t, auth, body| async move {
            let limit = app.config.max_body_bytes;
            respond(app.clone(), "POST /api/spaces/:id/join", t, async move {
                let user = user(&app, auth)?;
                let body = read_body(body, limit).await?;
                join_space(app, user, id, parse_json(&body)?).await
            })
            .await
        });
    create
        .or(mine)
        .unify()
        .or(get)
        .unify()
        .or(join)
        .unify()
        .boxed()
}

/// A hashtag as the Space7 client reads it. `tag_id` is a stable number derived from the name.
#[derive(Serialize)]
struct TagJson<'a> {
    tag_id: u32,
    tag_name: &'a str,
}

fn tag_id(name: &str) -> u32 {
    // FNV-1a: stable across processes and versions, unlike std's hasher. Kept below 2^31.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h & 0x7fff_ffff
}

#[derive(Serialize)]
struct MemberJson<'a> {
    user_id: &'a str,
    username: &'a str,
    profile_picture: &'a str,
    power_level: i32,
    role: &'static str,
    joined_at: Timestamp,
}

fn role_of(view: &SpaceView, m: &Member) -> &'static str {
    if m.user.user_id == view.space.creator.user_id {
        "creator"
    } else if m.power_level >= POWER_ADMIN {
        "admin"
    } else if m.power_level >= POWER_MODERATOR {
        "moderator"
    } else {
        "member"
    }
}

/// The Space7 `Space` shape plus Spacecast's fields.
#[derive(Serialize)]
pub(crate) struct SpaceJson<'a> {
    space_id: SpaceId,
    title: &'a str,
    description: &'a str,
    visibility: Visibility,
    creator: &'a UserRef,
    creator_id: &'a str,
    participant_count: u64,
    tags: Vec<TagJson<'a>>,
    posting_permission: PostingPermission,
    is_locked: bool,
    is_archived: bool,
    message_count: u64,
    head_seq: u64,
    created_at: Timestamp,
    updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    power_level: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<Vec<MemberJson<'a>>>,
}

pub(crate) fn space_json<'a>(view: &'a SpaceView, me: Option<&Member>) -> SpaceJson<'a> {
    let s = &view.space;
    SpaceJson {
        space_id: s.space_id,
        title: &s.title,
        description: &s.description,
        visibility: s.visibility,
        creator: &s.creator,
        creator_id: &s.creator.user_id,
        participant_count: view.counters.member_count,
        tags: s
            .tags
            .iter()
            .map(|t| TagJson {
                tag_id: tag_id(t),
                tag_name: t,
            })
            .collect(),
        posting_permission: s.posting_permission,
        is_locked: false,
        is_archived: false,
        message_count: view.counters.message_count,
        head_seq: view.counters.head_seq,
        created_at: s.created_at,
        updated_at: s.created_at,
        role: me.map(|m| role_of(view, m)),
        power_level: me.map(|m| m.power_level),
        members: None,
    }
}

#[derive(Deserialize)]
struct CreateSpace {
    title: Option<String>,
    description: Option<String>,
    visibility: Option<String>,
    hashtags: Option<Vec<String>>,
    posting_permission: Option<String>,
}

fn validate_create(req: CreateSpace) -> Result<NewSpace, ApiError> {
    let title = req.title.unwrap_or_default().trim().to_owned();
    if !(3..=200).contains(&title.chars().count()) {
        return Err(ApiError::bad_request(
            "invalid_title",
            "title must be 3 to 200 characters",
        ));
    }
    if has_control_chars(&title, false) {
        return Err(ApiError::bad_request(
            "invalid_title",
            "title must be one line without control characters",
        ));
    }
    let description = req.description.unwrap_or_default().trim().to_owned();
    if has_control_chars(&description, true) {
        return Err(ApiError::bad_request(
            "invalid_description",
            "description must not contain control characters other than tab, newline and carriage return",
        ));
    }
    if description.chars().count() > 5000 {
        return Err(ApiError::bad_request(
            "invalid_description",
            "description must be at most 5000 characters",
        ));
    }
    let visibility = match req.visibility.as_deref().map(str::trim) {
        None | Some("") | Some("public") => Visibility::Public,
        Some("private") => Visibility::Private,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_visibility",
                "visibility must be \"public\" or \"private\"",
            ));
        }
    };
    let posting_permission = match req.posting_permission.as_deref() {
        None | Some("everyone") => PostingPermission::Everyone,
        Some("admins") => PostingPermission::Admins,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "posting_permission must be \"everyone\" or \"admins\"",
            ));
        }
    };
    let raw = req.hashtags.unwrap_or_default();
    if raw.len() > 10 {
        return Err(ApiError::bad_request(
            "invalid_hashtags",
            "at most 10 hashtags",
        ));
    }
    let mut tags: Vec<String> = Vec::with_capacity(raw.len());
    for t in raw {
        let t = t.trim().trim_start_matches('#').trim().to_lowercase();
        if t.is_empty() || t.chars().count() > 50 || t.chars().any(char::is_whitespace) {
            return Err(ApiError::bad_request(
                "invalid_hashtags",
                "each hashtag must be 1 to 50 characters without spaces",
            ));
        }
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    Ok(NewSpace {
        title,
        description,
        visibility,
        tags,
        posting_permission,
    })
}

/// `POST /api/spaces` `{title, description, visibility?, hashtags?, posting_permission?}` → 201 Space.
/// The creator becomes its admin (power level 100).
async fn create_space(app: AppRef, user: User, req: CreateSpace) -> Result<Response, ApiError> {
    let new = validate_create(req)?;
    let view = app.engine.create_space(new, user.profile.clone()).await?;
    let me = Member {
        user: user.profile,
        power_level: POWER_ADMIN,
        joined_at: view.space.created_at,
    };
    Ok(json_response(
        StatusCode::CREATED,
        &space_json(&view, Some(&me)),
    ))
}

/// `GET /api/spaces/my` → every space the caller belongs to (created or joined), newest first,
/// each with the caller's `role` and `power_level`.
async fn my_spaces(app: AppRef, auth: Option<String>) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let spaces = app.engine.spaces_of(user.id()).await?;
    let out: Vec<SpaceJson> = spaces.iter().map(|(v, m)| space_json(v, Some(m))).collect();
    Ok(json_response(StatusCode::OK, &out))
}

/// `GET /api/spaces/{space_id}` → Space with `members` (the first 100) and `message_count`.
/// 404 for an unknown space, and for a private one the caller is not a member of.
async fn get_space(app: AppRef, auth: Option<String>, id: String) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let space_id = parse_space_id(&id)?;
    let found = app
        .engine
        .reader(space_id)
        .view_with_members(user.id())
        .await?;
    let mut members: Vec<&Member> = found.members.iter().collect();
    members.sort_by_key(|m| (std::cmp::Reverse(m.power_level), m.joined_at));
    let mut json = space_json(&found.view, found.viewer.as_ref());
    json.members = Some(
        members
            .into_iter()
            .take(INLINE_MEMBERS)
            .map(|m| MemberJson {
                user_id: &m.user.user_id,
                username: &m.user.username,
                profile_picture: &m.user.profile_picture,
                power_level: m.power_level,
                role: role_of(&found.view, m),
                joined_at: m.joined_at,
            })
            .collect(),
    );
    Ok(json_response(StatusCode::OK, &json))
}

#[derive(Deserialize)]
struct JoinRequest {
    invite_code: Option<String>,
}

/// `POST /api/spaces/{space_id}/join` `{invite_code?}` → 200 `{message, space_id, power_level}`;
/// 409 `{"error":"Already a member"}` when the caller already is one (the Space7 client calls join
/// before every send and ignores exactly that error); 404 `not_found` for a private space the
/// caller is not a member of, exactly as for an unknown space (no existence oracle).
async fn join_space(
    app: AppRef,
    user: User,
    id: String,
    req: JoinRequest,
) -> Result<Response, ApiError> {
    let space_id = parse_space_id(&id)?;
    let member = app
        .engine
        .space(space_id)
        .join(user.profile, req.invite_code)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"message": "Joined space", "space_id": space_id, "power_level": member.power_level}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashtags_are_normalised_and_limited() {
        let req = CreateSpace {
            title: Some("  Rust  ".into()),
            description: None,
            visibility: None,
            hashtags: Some(vec!["#Rust".into(), "rust".into(), " #Async ".into()]),
            posting_permission: None,
        };
        let n = validate_create(req).unwrap();
        assert_eq!(n.title, "Rust");
        assert_eq!(n.tags, vec!["rust", "async"]);
        let req = CreateSpace {
            title: Some("ab".into()),
            description: None,
            visibility: None,
            hashtags: None,
            posting_permission: None,
        };
        assert_eq!(validate_create(req).unwrap_err().code, "invalid_title");
        let req = CreateSpace {
            title: Some("abc".into()),
            description: None,
            visibility: Some("secret".into()),
            hashtags: None,
            posting_permission: None,
        };
        assert_eq!(validate_create(req).unwrap_err().code, "invalid_visibility");
    }

    #[test]
    fn tag_ids_are_stable_numbers() {
        assert_eq!(tag_id("rust"), tag_id("rust"));
        assert_ne!(tag_id("rust"), tag_id("go"));
        assert!(tag_id("anything") < (1 << 31));
    }
}
