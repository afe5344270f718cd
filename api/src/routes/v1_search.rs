//! Message search (issue 12): `GET /v1/spaces/{spaceId}/messages/search` and
//! `GET /v1/search/messages`. The index, its freshness and the checks every hit passes are
//! [`spacecast_engine::search`]'s; this module parses the query and shapes the answer. The
//! per-space filter is tried before `GET /v1/spaces/{spaceId}/messages/{messageId}` (see
//! [`super::routes`]), so `search` is never read as a message id.

use std::collections::HashMap;

use serde::Serialize;
use spacecast_engine::model::{Message, SpaceId};
use spacecast_engine::search::{DEFAULT_LIMIT, Highlight, MAX_DEPTH, MAX_LIMIT, SearchPage};
use utoipa::{IntoParams, ToSchema};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{authorization, query_map, respond, started, user, with_app};
use crate::app::AppRef;
use crate::error::{ApiError, json_response};
use crate::input::parse_space_id;
use crate::openapi::params::SpacePath;

/// The search operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(search_space, search_all))]
pub struct Doc;

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    let base = || {
        with_app(app.clone())
            .and(started())
            .and(authorization())
            .and(query_map())
    };
    let in_space = warp::path!("v1" / "spaces" / String / "messages" / "search")
        .and(warp::get())
        .and(base())
        .then(
            |space: String, app: AppRef, t, auth, q: HashMap<String, String>| {
                respond(
                    app.clone(),
                    "GET /v1/spaces/:space/messages/search",
                    t,
                    search_space(app, auth, space, q),
                )
            },
        );
    let all = warp::path!("v1" / "search" / "messages")
        .and(warp::get())
        .and(base())
        .then(|app: AppRef, t, auth, q: HashMap<String, String>| {
            respond(
                app.clone(),
                "GET /v1/search/messages",
                t,
                search_all(app, auth, q),
            )
        });
    in_space.or(all).unify().boxed()
}

/// The query of both search operations (the handlers read the raw query; [`parse`] enforces
/// these rules).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct SearchParams {
    /// The words to find (user text, not query syntax: every word must be in a result, in any
    /// case; punctuation separates words). 1–256 characters once trimmed, else
    /// `invalid_query`.
    #[param(min_length = 1, max_length = 256, pattern = "\\S")]
    q: String,
    /// `next_cursor` of the previous page (opaque; results reach at most 1000 deep).
    #[param(pattern = "^[0-9]{1,3}$")]
    cursor: Option<String>,
    /// Page size, 1–50 (else `invalid_pagination`).
    #[param(minimum = 1, maximum = 50, default = 20)]
    limit: Option<u32>,
}

/// One result.
#[derive(Serialize, ToSchema)]
#[schema(as = SearchHitV1)]
struct HitJson<'a> {
    /// The message as stored now (the shape of `GET /v1/spaces/{spaceId}/messages/{messageId}`).
    message: &'a Message,
    /// BM25 relevance (higher is better); comparable within one answer only.
    score: f32,
    /// Where the words are: at most one fragment (of `content`, else of the text of `body`),
    /// empty when only an earlier version matched.
    highlights: &'a [Highlight],
}

/// A page of results.
#[derive(Serialize, ToSchema)]
#[schema(as = SearchPageV1)]
struct PageJson<'a> {
    /// Best first: relevance, then recency. At most `limit`; fewer when results the index still
    /// had are gone (deleted, redacted, no longer readable), with a `next_cursor` to continue.
    #[schema(max_items = 50)]
    data: Vec<HitJson<'a>>,
    /// Continues this page; `null`: no more results, or the 1000th is reached.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

struct Parsed {
    q: String,
    offset: usize,
    limit: usize,
}

/// `q`, `cursor` and `limit` (see [`SearchParams`]).
fn parse(q: &HashMap<String, String>) -> Result<Parsed, ApiError> {
    let text = q.get("q").map(String::as_str).unwrap_or("");
    let text = spacecast_engine::search::check_query(text)?.to_owned();
    let limit = match q.get("limit").map(|l| l.trim()) {
        None | Some("") => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_pagination",
                    format!("limit must be between 1 and {MAX_LIMIT}"),
                )
            })?,
    };
    let offset = match q.get("cursor").map(|c| c.trim()) {
        None | Some("") => 0,
        Some(c) => c
            .parse::<usize>()
            .ok()
            .filter(|o| *o < MAX_DEPTH && c.len() <= 4 && c.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                ApiError::bad_request("invalid_cursor", "cursor is not one this server made")
            })?,
    };
    Ok(Parsed {
        q: text,
        offset,
        limit,
    })
}

async fn answer(
    app: &AppRef,
    viewer: &str,
    space: Option<SpaceId>,
    p: Parsed,
) -> Result<Response, ApiError> {
    let SearchPage { mut results, next } = app
        .engine
        .search_messages(viewer, space, &p.q, p.offset, p.limit)
        .await?;
    // The viewer's own reactions, as every /v1 message read has them, space by space.
    let mut by_space: HashMap<SpaceId, Vec<usize>> = HashMap::new();
    for (i, r) in results.iter().enumerate() {
        by_space.entry(r.message.space_id).or_default().push(i);
    }
    for (space_id, idx) in by_space {
        let mut ms: Vec<Message> = idx.iter().map(|i| results[*i].message.clone()).collect();
        app.engine
            .reader(space_id)
            .with_viewer_reactions(viewer, &mut ms)
            .await?;
        for (i, m) in idx.into_iter().zip(ms) {
            results[i].message = m;
        }
    }
    let data = results
        .iter()
        .map(|r| HitJson {
            message: &r.message,
            score: r.score,
            highlights: &r.highlights,
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &PageJson {
            data,
            next_cursor: next.map(|n| n.to_string()),
        },
    ))
}

crate::openapi::errors!(SearchSpaceErrors {
    400 "Invalid `q`, `cursor` or `limit`, or search is off on this server."
        [invalid_query, invalid_cursor, invalid_pagination, search_disabled],
    401,
    404 "Unknown or malformed space id, or a private space the caller is not a member of."
        [not_found],
    500,
    503 [store_unavailable],
});

crate::openapi::errors!(SearchAllErrors {
    400 "Invalid `q`, `cursor` or `limit`, or search is off on this server."
        [invalid_query, invalid_cursor, invalid_pagination, search_disabled],
    401,
    500,
    503 [store_unavailable],
});

/// Search one space's messages
///
/// Messages of the space containing every word of `q` (case-insensitive; no stemming), best
/// first: BM25 relevance, then newest. Read access as `GET …/messages` requires (404 for an
/// unknown space and a private one the caller is not a member of). Every result is read from the
/// store when answered: deleted and redacted messages never appear, and the message and its
/// highlight are its current version. A message is searchable about 0.5–2 s after its write is
/// acknowledged; after a restart with a missing index, results are partial until the rebuild
/// from the store is done (`spacecast_search_catchup_running`). Pages by `cursor` (an offset)
/// reach at most the 1000th result (a deeper `cursor` is `invalid_cursor`).
#[utoipa::path(get, path = "/v1/spaces/{spaceId}/messages/search", operation_id = "searchSpaceMessagesV1",
    tag = "v1",
    params(SpacePath, SearchParams),
    responses(
        (status = 200, description = "One page of results.", body = PageJson),
        SearchSpaceErrors,
    ))]
async fn search_space(
    app: AppRef,
    auth: Option<String>,
    space: String,
    q: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let space_id = parse_space_id(&space)?;
    let parsed = parse(&q)?;
    answer(&app, user.id(), Some(space_id), parsed).await
}

/// Search messages in every readable space
///
/// Like the per-space search, over every space the caller can read now: public spaces and the
/// private spaces the caller is a member of. Nothing of any other private space is ever
/// answered.
#[utoipa::path(get, path = "/v1/search/messages", operation_id = "searchMessagesV1",
    tag = "v1",
    params(SearchParams),
    responses(
        (status = 200, description = "One page of results.", body = PageJson),
        SearchAllErrors,
    ))]
async fn search_all(
    app: AppRef,
    auth: Option<String>,
    q: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let parsed = parse(&q)?;
    answer(&app, user.id(), None, parsed).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn code(r: Result<Parsed, ApiError>) -> &'static str {
        r.err().map(|e| e.code).unwrap_or("ok")
    }

    #[test]
    fn queries_are_validated_with_stable_codes() {
        let ok = parse(&q(&[("q", " hello ")])).unwrap();
        assert_eq!((ok.q.as_str(), ok.offset, ok.limit), ("hello", 0, 20));
        let ok = parse(&q(&[("q", "x"), ("cursor", "40"), ("limit", "50")])).unwrap();
        assert_eq!((ok.offset, ok.limit), (40, 50));
        assert_eq!(code(parse(&q(&[]))), "invalid_query");
        assert_eq!(code(parse(&q(&[("q", "   ")]))), "invalid_query");
        assert_eq!(code(parse(&q(&[("q", &"é".repeat(257))]))), "invalid_query");
        assert_eq!(code(parse(&q(&[("q", &"é".repeat(256))]))), "ok");
        for bad in ["0", "51", "-1", "x"] {
            assert_eq!(
                code(parse(&q(&[("q", "a"), ("limit", bad)]))),
                "invalid_pagination"
            );
        }
        for bad in ["1000", "-1", "+1", "abc", "99999"] {
            assert_eq!(
                code(parse(&q(&[("q", "a"), ("cursor", bad)]))),
                "invalid_cursor",
                "{bad}"
            );
        }
    }
}
