//! Space7 discovery (issue 12): `GET /api/spaces/trending`, `/api/spaces/recommended`,
//! `/api/spaces/search` and `/api/spaces/tag/{tag}`, each a list of the `Space` shape
//! ([`super::spaces::space_json`]) of public spaces only. The ranking, index and bounds are
//! [`spacecast_engine::discovery`]'s. These filters are tried before `GET /api/spaces/{spaceId}`
//! (see [`super::routes`]), so `trending`, `recommended` and `search` are never read as space
//! ids.

use std::collections::HashMap;

use percent_encoding::percent_decode_str;
use spacecast_engine::discovery::{MAX_LIST_LIMIT, MAX_QUERY_CHARS, MAX_QUERY_WORDS, query_words};
use spacecast_engine::model::SpaceView;
use utoipa::IntoParams;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::spaces::{SpaceJson, space_json};
use super::{authorization, query_map, respond, started, user, with_app};
use crate::app::AppRef;
use crate::error::{ApiError, json_response};

/// The discovery operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(trending_doc, recommended_doc, search_doc, tag_doc))]
pub struct Doc;

/// Lists returned when `limit` is absent.
const DEFAULT_LIMIT: usize = 10;

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    let base = || with_app(app.clone()).and(started());
    let trending = warp::path!("api" / "spaces" / "trending")
        .and(warp::get())
        .and(base())
        .and(query_map())
        .then(|app: AppRef, t, q: HashMap<String, String>| {
            respond(app.clone(), "GET /api/spaces/trending", t, trending(app, q))
        });
    let recommended = warp::path!("api" / "spaces" / "recommended")
        .and(warp::get())
        .and(base())
        .and(authorization())
        .and(query_map())
        .then(|app: AppRef, t, auth, q: HashMap<String, String>| {
            respond(
                app.clone(),
                "GET /api/spaces/recommended",
                t,
                recommended(app, auth, q),
            )
        });
    let search = warp::path!("api" / "spaces" / "search")
        .and(warp::get())
        .and(base())
        .and(query_map())
        .then(|app: AppRef, t, q: HashMap<String, String>| {
            respond(app.clone(), "GET /api/spaces/search", t, search(app, q))
        });
    let tag = warp::path!("api" / "spaces" / "tag" / String)
        .and(warp::get())
        .and(base())
        .then(|tag: String, app: AppRef, t| {
            respond(app.clone(), "GET /api/spaces/tag/:tag", t, by_tag(app, tag))
        });
    trending
        .or(recommended)
        .unify()
        .or(search)
        .unify()
        .or(tag)
        .unify()
        .boxed()
}

fn list(views: &[SpaceView]) -> Response {
    let out: Vec<SpaceJson> = views.iter().map(|v| space_json(v, None)).collect();
    json_response(StatusCode::OK, &out)
}

/// `limit`: absent → 10; else an integer 1..=50, written plainly (an empty value or one with
/// spaces is refused, as the schema says).
fn parse_limit(q: &HashMap<String, String>) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(l) => Some(l)
            .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| (1..=MAX_LIST_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_pagination",
                    format!("limit must be between 1 and {MAX_LIST_LIMIT}"),
                )
            }),
    }
}

/// `limit` and `visibility` of the trending and recommended lists.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ListQuery {
    /// Spaces returned at most, 1–50 (else `invalid_pagination`).
    #[param(required = false, minimum = 1, maximum = 50, default = json!(10))]
    limit: u64,
    /// Accepted for the Space7 client and ignored: only public spaces are ever listed.
    #[param(required = false)]
    visibility: Option<String>,
}

crate::openapi::errors!(TrendingErrors {
    400 "Invalid `limit`." [invalid_pagination],
    500,
    503 [store_unavailable],
});

/// Trending public spaces
///
/// Public spaces ranked by recent activity: messages created and joins, counted per UTC hour;
/// score = Σ over the last 24 hourly counts of count × 0.5^(age in hours / 6), ties by the newer
/// space. When fewer than `limit` spaces were active in the last 24 hours, the newest public
/// spaces fill the list. No authentication (a token, if sent, is ignored). Each node computes
/// the ranking (and the list of the 200 newest public spaces) at most once every 5 seconds and
/// serves it from memory in between, so new activity or a new space may show up to 5 seconds
/// late.
#[utoipa::path(get, path = "/api/spaces/trending", operation_id = "trendingSpaces",
    tag = "spaces", security(()),
    params(ListQuery),
    responses(
        (status = 200, description = "Public spaces, most active first.", body = Vec<SpaceJson>),
        TrendingErrors,
    ))]
#[allow(dead_code)] // The document's entry; `trending` serves it.
fn trending_doc() {}

/// `GET /api/spaces/trending?limit=10&visibility=public` → public spaces, most active first.
async fn trending(app: AppRef, q: HashMap<String, String>) -> Result<Response, ApiError> {
    let limit = parse_limit(&q)?;
    Ok(list(&app.engine.trending_spaces(limit).await?))
}

crate::openapi::errors!(RecommendedErrors {
    400 "Invalid `limit`." [invalid_pagination],
    401,
    500,
    503 [store_unavailable],
});

/// Recommended public spaces
///
/// Public spaces the caller is not a member of, best first: the trending order, then the newest
/// public spaces. At most `limit`; it examines the trending ranking and at most the 200 newest
/// public spaces, so a caller who joined all of those gets fewer.
#[utoipa::path(get, path = "/api/spaces/recommended", operation_id = "recommendedSpaces",
    tag = "spaces",
    params(ListQuery),
    responses(
        (status = 200, description = "Public spaces the caller has not joined.",
            body = Vec<SpaceJson>),
        RecommendedErrors,
    ))]
#[allow(dead_code)] // The document's entry; `recommended` serves it.
fn recommended_doc() {}

/// `GET /api/spaces/recommended?limit=10` → public spaces the caller has not joined.
async fn recommended(
    app: AppRef,
    auth: Option<String>,
    q: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let limit = parse_limit(&q)?;
    Ok(list(
        &app.engine.recommended_spaces(user.id(), limit).await?,
    ))
}

/// `q` of the space search.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct SearchQuery {
    /// Words to find (at most 200 characters and 8 distinct words of 2 characters or more,
    /// else `invalid_query`). Absent or blank: `[]`.
    #[param(required = false, max_length = 200)]
    q: Option<String>,
}

crate::openapi::errors!(SearchErrors {
    400 "`q` is too long or has too many words." [invalid_query],
    500,
    503 [store_unavailable],
});

/// Search public spaces
///
/// Public spaces whose title or description has, for every word of `q`, a word starting with
/// it (case-insensitive, Unicode lowercase; words are runs of letters and digits). Query words
/// of one character are ignored; a query without a longer word finds nothing. At most 20, title
/// matches (every word in the title) first, then newest. A space is searchable by its first 64
/// distinct words (title first); each query word examines at most 1000 index entries. No
/// authentication.
#[utoipa::path(get, path = "/api/spaces/search", operation_id = "searchSpaces",
    tag = "spaces", security(()),
    params(SearchQuery),
    responses(
        (status = 200, description = "Matching public spaces, best first.",
            body = Vec<SpaceJson>),
        SearchErrors,
    ))]
#[allow(dead_code)] // The document's entry; `search` serves it.
fn search_doc() {}

/// `GET /api/spaces/search?q=` → public spaces matching `q`, at most 20.
async fn search(app: AppRef, q: HashMap<String, String>) -> Result<Response, ApiError> {
    let q = q.get("q").map(String::as_str).unwrap_or("");
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("q must be at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    if query_words(q).len() > MAX_QUERY_WORDS {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("q may have at most {MAX_QUERY_WORDS} words"),
        ));
    }
    Ok(list(&app.engine.search_spaces(q).await?))
}

/// `{tag}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct TagPath {
    /// The tag, percent-encoded; normalised like creation (leading `#` dropped, lowercase).
    tag: String,
}

crate::openapi::errors!(TagErrors {
    500,
    503 [store_unavailable],
});

/// Public spaces with a tag
///
/// Public spaces created with the tag, newest first, at most 50. An unknown tag gives `[]`. No
/// authentication.
#[utoipa::path(get, path = "/api/spaces/tag/{tag}", operation_id = "spacesByTag",
    tag = "spaces", security(()),
    params(TagPath),
    responses(
        (status = 200, description = "Public spaces with the tag, newest first.",
            body = Vec<SpaceJson>),
        TagErrors,
    ))]
#[allow(dead_code)] // The document's entry; `by_tag` serves it.
fn tag_doc() {}

/// `GET /api/spaces/tag/{tag}` → public spaces with the tag, newest first, at most 50.
async fn by_tag(app: AppRef, raw: String) -> Result<Response, ApiError> {
    // A tag that is not UTF-8 once decoded names no space.
    let Ok(tag) = percent_decode_str(&raw).decode_utf8() else {
        return Ok(list(&[]));
    };
    Ok(list(&app.engine.spaces_with_tag(&tag).await?))
}
