//! Space7 spaces: create, read, join, list mine (reference/space7.md §3 "Spaces").

use serde::{Deserialize, Serialize};
use serde_json::json;
use spacecast_engine::NewSpace;
use spacecast_engine::model::{
    Member, POWER_ADMIN, POWER_MODERATOR, PostingPermission, SpaceId, SpaceView, Timestamp,
    UserRef, Visibility,
};
use utoipa::ToSchema;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, SchemaType, Type};
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
use crate::openapi::OptionalBody;
use crate::openapi::params::SpacePath;
use crate::openapi::rules;
use crate::ratelimit::Write;

/// The Space7 space operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create_space_doc, my_spaces_doc, get_space_doc, join_space_doc),
    modifiers(&OPTIONAL_JOIN_BODY),
)]
pub struct Doc;

/// The join body is optional: `{invite_code}` is needed only for a private space.
const OPTIONAL_JOIN_BODY: OptionalBody = OptionalBody("/api/spaces/{spaceId}/join");

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
                app.write_limit.check(user.id(), Write::Space)?;
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
                app.write_limit.check(user.id(), Write::Member)?;
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
#[derive(Serialize, ToSchema)]
#[schema(as = Tag)]
struct TagJson<'a> {
    /// A stable number derived from the name (FNV-1a, below 2^31).
    #[schema(minimum = 0, maximum = 2147483647)]
    tag_id: u32,
    /// Lowercase, without a leading `#`.
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

/// A member as `GET /api/spaces/{spaceId}` lists it.
#[derive(Serialize, ToSchema)]
#[schema(as = Member)]
struct MemberJson<'a> {
    user_id: &'a str,
    username: &'a str,
    profile_picture: &'a str,
    /// 0 member, 50 moderator, 100 admin (the creator).
    power_level: i32,
    role: Role,
    joined_at: Timestamp,
}

/// `creator` for the space's creator; otherwise from the power level: ≥ 100 `admin`, ≥ 50
/// `moderator`, else `member`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Role {
    Creator,
    Admin,
    Moderator,
    Member,
}

fn role_of(view: &SpaceView, m: &Member) -> Role {
    if m.user.user_id == view.space.creator.user_id {
        Role::Creator
    } else if m.power_level >= POWER_ADMIN {
        Role::Admin
    } else if m.power_level >= POWER_MODERATOR {
        Role::Moderator
    } else {
        Role::Member
    }
}

/// The Space7 `Space` shape plus Spacecast's fields. `role` and `power_level` are the caller's
/// membership, present when the caller is a member (always in `POST /api/spaces` and
/// `GET /api/spaces/my`); `members` is present only in `GET /api/spaces/{spaceId}`.
/// `updated_at` equals `created_at` in this version.
#[derive(Serialize, ToSchema)]
#[schema(as = Space)]
pub(crate) struct SpaceJson<'a> {
    #[schema(value_type = String, format = Uuid)]
    space_id: SpaceId,
    title: &'a str,
    description: &'a str,
    visibility: Visibility,
    #[schema(value_type = UserRef)]
    creator: &'a UserRef,
    /// Same as `creator.user_id`.
    creator_id: &'a str,
    /// Number of members.
    participant_count: u64,
    tags: Vec<TagJson<'a>>,
    posting_permission: PostingPermission,
    /// Always false in this version.
    is_locked: bool,
    /// Always false in this version.
    is_archived: bool,
    /// Messages that exist (created and not deleted).
    message_count: u64,
    /// The space's last `seq`; 0 when it has no events yet.
    head_seq: u64,
    created_at: Timestamp,
    updated_at: Timestamp,
    /// The caller's role, when the caller is a member.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Role, inline)]
    role: Option<Role>,
    /// The caller's power level, when the caller is a member.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = i32)]
    power_level: Option<i32>,
    /// The first 100 members, highest power level first, then earliest joined.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<MemberJson>, max_items = 100)]
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

/// The body of `POST /api/spaces`. Unknown fields are ignored.
#[derive(Deserialize, ToSchema)]
#[schema(as = CreateSpaceRequest)]
struct CreateSpace {
    #[schema(required = true, schema_with = create_title)]
    title: Option<String>,
    #[schema(schema_with = create_description)]
    description: Option<String>,
    #[schema(schema_with = create_visibility)]
    visibility: Option<String>,
    #[schema(schema_with = create_hashtags)]
    hashtags: Option<Vec<String>>,
    #[schema(schema_with = create_posting_permission)]
    posting_permission: Option<String>,
}

/// `title`: [`rules::title`], which the server trims before counting.
fn create_title() -> Object {
    let mut title = rules::title();
    title.description = Some(
        "Trimmed; 3–200 characters, one line without control characters (else \
         `invalid_title`). The pattern asks for no surrounding whitespace, which the server \
         would trim."
            .into(),
    );
    title
}

/// A string or `null`.
fn nullable_string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some(description))
}

fn create_description() -> Object {
    nullable_string(
        "`null` is the default. Trimmed; at most 5000 characters, no control characters other \
         than tab, newline and carriage return (else `invalid_description`). Defaults to `\"\"`.",
    )
    .max_length(Some(5000))
    .pattern(Some(rules::text_pattern()))
    .build()
}

fn create_visibility() -> Object {
    nullable_string("`null` is the default. Anything else gives `invalid_visibility`.")
        .enum_values(Some([json!("public"), json!("private"), json!(null)]))
        .default(Some(json!("public")))
        .build()
}

fn create_posting_permission() -> Object {
    nullable_string("`null` is the default. Anything else gives `invalid_request`.")
        .enum_values(Some([json!("everyone"), json!("admins"), json!(null)]))
        .default(Some(json!("everyone")))
        .build()
}

fn create_hashtags() -> utoipa::openapi::schema::Array {
    let control = rules::CONTROL;
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!("^#?[^\\s#{control}][^\\s{control}]{{0,49}}$"))),
        )
        .max_items(Some(10))
        .description(Some(
            "`null` is none. At most 10; each is trimmed, a leading `#` removed, lowercased, and \
             must then be 1–50 characters without whitespace (else `invalid_hashtags`). \
             Duplicates are dropped.",
        ))
        .build()
}

/// A string that is always `value` (JSON Schema `const`, which utoipa has no attribute for).
pub(crate) fn const_string(value: &str) -> Object {
    let mut extensions = Extensions::default();
    extensions.insert("const".into(), json!(value));
    ObjectBuilder::new()
        .schema_type(Type::String)
        .extensions(Some(extensions))
        .build()
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

crate::openapi::errors!(CreateSpaceErrors {
    400 "Invalid body." [invalid_json, invalid_title, invalid_description, invalid_visibility,
        invalid_hashtags, invalid_request],
    401,
    413 "The request body is larger than `max_body_bytes` (default 256 KiB)." [payload_too_large],
    500,
    503 [store_unavailable],
} + [WRITE_LIMITED]);

/// Create a space
///
/// Creates a space; the caller becomes its creator with power level 100 (`role` `creator`).
/// Durable when answered.
#[utoipa::path(post, path = "/api/spaces", operation_id = "createSpace", tag = "spaces",
    request_body(content = CreateSpace, description = "JSON (the Content-Type header is not \
        checked). An empty body is `{}` and fails `invalid_title`."),
    responses(
        (status = 201, description = "The new space, with the caller's `role` and `power_level`.",
            body = SpaceJson,
            links(
                ("GetSpace" = (operation_id = "getSpace", description = "The new space.",
                    parameters(("spaceId" = "$response.body#/space_id")))),
                ("JoinSpace" = (operation_id = "joinSpace",
                    description = "Join the new space (409 for its creator).",
                    parameters(("spaceId" = "$response.body#/space_id")))),
                ("SendMessage" = (operation_id = "sendMessage", description = "Post in the new space.",
                    parameters(("spaceId" = "$response.body#/space_id")))),
                ("ListMessages" = (operation_id = "listMessages",
                    description = "The new space's messages.",
                    parameters(("spaceId" = "$response.body#/space_id")))),
                ("SendMessageV1" = (operation_id = "sendMessageV1",
                    description = "Post in the new space (native).",
                    parameters(("spaceId" = "$response.body#/space_id")))),
                ("ListMessagesV1" = (operation_id = "listMessagesV1",
                    description = "A cursor page of the new space.",
                    parameters(("spaceId" = "$response.body#/space_id")))),
                ("SpaceStatsV1" = (operation_id = "spaceStatsV1",
                    description = "The new space's statistics.",
                    parameters(("spaceId" = "$response.body#/space_id")))),
                ("ListMembersV1" = (operation_id = "listMembersV1",
                    description = "The new space's members.",
                    parameters(("spaceId" = "$response.body#/space_id")))),
                ("GetMemberV1" = (operation_id = "getMemberV1",
                    description = "The creator's membership.",
                    parameters(("spaceId" = "$response.body#/space_id"),
                        ("userId" = "$response.body#/creator_id")))),
                ("SetMemberPowerV1" = (operation_id = "setMemberPowerV1",
                    description = "Add the creator again (refused: an admin's level never changes).",
                    parameters(("spaceId" = "$response.body#/space_id"),
                        ("userId" = "$response.body#/creator_id")))),
                ("PatchSpaceV1" = (operation_id = "patchSpaceV1",
                    description = "Change the new space's posting permission.",
                    parameters(("spaceId" = "$response.body#/space_id")))),
            )),
        CreateSpaceErrors,
    ))]
#[allow(dead_code)] // The document's entry; `create_space` serves it.
fn create_space_doc() {}

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

crate::openapi::errors!(MySpacesErrors { 401, 500, 503 [store_unavailable] });

/// List the spaces the caller belongs to
///
/// Every space the caller created or joined, newest space first, each with the caller's `role`
/// and `power_level`. Query parameters are ignored.
#[utoipa::path(get, path = "/api/spaces/my", operation_id = "listMySpaces", tag = "spaces",
    responses(
        (status = 200, description = "The caller's spaces.", body = Vec<SpaceJson>),
        MySpacesErrors,
    ))]
#[allow(dead_code)] // The document's entry; `my_spaces` serves it.
fn my_spaces_doc() {}

/// `GET /api/spaces/my` → every space the caller belongs to (created or joined), newest first,
/// each with the caller's `role` and `power_level`.
async fn my_spaces(app: AppRef, auth: Option<String>) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let spaces = app.engine.spaces_of(user.id()).await?;
    let out: Vec<SpaceJson> = spaces.iter().map(|(v, m)| space_json(v, Some(m))).collect();
    Ok(json_response(StatusCode::OK, &out))
}

crate::openapi::errors!(GetSpaceErrors {
    401,
    404 "Unknown space, or a private space the caller is not a member of." [not_found],
    500,
    503 [store_unavailable],
});

/// Get a space with its members
///
/// A public space, or a private one the caller is a member of, with `members` (the first 100).
/// `role` and `power_level` are present when the caller is a member.
#[utoipa::path(get, path = "/api/spaces/{spaceId}", operation_id = "getSpace", tag = "spaces",
    params(SpacePath),
    responses(
        (status = 200, description = "The space.", body = SpaceJson),
        GetSpaceErrors,
    ))]
#[allow(dead_code)] // The document's entry; `get_space` serves it.
fn get_space_doc() {}

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

/// The optional body of `POST /api/spaces/{spaceId}/join`.
#[derive(Deserialize, ToSchema)]
struct JoinRequest {
    /// Accepted but not yet usable: joining a private space the caller is not a member of gives
    /// 404 `not_found`, exactly as an unknown space does.
    invite_code: Option<String>,
}

/// The answer of a join.
#[derive(Serialize, ToSchema)]
struct JoinResult {
    #[schema(schema_with = joined_space)]
    message: &'static str,
    #[schema(value_type = String, format = Uuid)]
    space_id: SpaceId,
    /// The new member's power level (0).
    power_level: i32,
}

fn joined_space() -> Object {
    const_string(JOINED_SPACE)
}

const JOINED_SPACE: &str = "Joined space";

crate::openapi::errors!(JoinSpaceErrors {
    400 "Invalid body." [invalid_json, invalid_request],
    401,
    404 "Unknown space, or a private space the caller is not a member of (the same answer)."
        [not_found],
    409 "The caller already is a member (`{\"error\":\"Already a member\",\"code\":\"already_member\"}`)."
        [already_member],
    413 "The request body is larger than `max_body_bytes` (default 256 KiB)." [payload_too_large],
    500,
} + [WRITE_LIMITED, SPACE_BUSY]);

/// Join a space
///
/// Joins a public space as an ordinary member (power level 0). The Space7 client calls this
/// before every send and ignores exactly the 409 `Already a member` error. A private space
/// cannot be joined in this version: to a non-member it answers 404 `not_found` with the same
/// body as an unknown space, so join reveals nothing about which private spaces exist.
#[utoipa::path(post, path = "/api/spaces/{spaceId}/join", operation_id = "joinSpace",
    tag = "spaces",
    params(SpacePath),
    request_body(content = JoinRequest, description = "Optional JSON; an empty body is `{}`."),
    responses(
        (status = 200, description = "Joined.", body = JoinResult),
        JoinSpaceErrors,
    ))]
#[allow(dead_code)] // The document's entry; `join_space` serves it.
fn join_space_doc() {}

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
        &JoinResult {
            message: JOINED_SPACE,
            space_id,
            power_level: member.power_level,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> serde_json::Value {
        serde_json::from_slice(&crate::openapi::document_json()).expect("the document is JSON")
    }

    #[test]
    fn links_are_written_in_camel_case_and_name_operations_of_the_document() {
        let doc = document();
        let ops: std::collections::BTreeSet<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        let mut seen = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    for (name, link) in response["links"].as_object().into_iter().flatten() {
                        let target = link["operationId"].as_str().unwrap_or_default();
                        assert!(
                            ops.contains(target),
                            "{method} {path} {status}: link {name} names no operation: {link}"
                        );
                        assert!(link.get("operation_id").is_none(), "{name}: {link}");
                        seen += 1;
                    }
                }
            }
        }
        // createSpace alone has 11, sendMessage 10, uploadMedia 2.
        assert!(seen >= 23, "links were checked ({seen})");
        let create = &doc["paths"]["/api/spaces"]["post"]["responses"]["201"]["links"];
        assert_eq!(create.as_object().unwrap().len(), 11);
        assert_eq!(
            create["GetMemberV1"]["parameters"]["userId"],
            "$response.body#/creator_id"
        );
    }

    #[test]
    fn the_join_body_is_optional_but_never_null() {
        let doc = document();
        let body = &doc["paths"]["/api/spaces/{spaceId}/join"]["post"]["requestBody"];
        assert_eq!(body["required"], false);
        assert_eq!(
            body["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/JoinRequest"
        );
        // The handler's answer is exactly what the schema's `const` says.
        let answer = serde_json::to_value(JoinResult {
            message: JOINED_SPACE,
            space_id: uuid::Uuid::nil(),
            power_level: 0,
        })
        .unwrap();
        let schema = &doc["components"]["schemas"]["JoinResult"];
        assert_eq!(answer["message"], schema["properties"]["message"]["const"]);
        for field in schema["required"].as_array().unwrap() {
            assert!(answer.get(field.as_str().unwrap()).is_some(), "{field}");
        }
    }

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
