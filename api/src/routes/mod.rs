//! HTTP routes: one file per resource, each handler's doc starting with its method and path.
//!
//! - [`health`] serves `/healthz`, `/readyz`, `/metrics`, `/openapi.json` (no auth);
//! - [`spaces`] serves Space7 `/api/spaces…`
//! - [`messages`] serves Space7 `/api/messages…`
//! - [`media`] serves `/api/media/{id}` (capability links, no auth) and `/v1/media…` (uploads
//!   and downloads of the native surface)
//! - [`console`] serves the web console, `/console…` (static files; dev login when enabled)
//! - [`node`] serves `/v1/node` (this node's status and rates, for operators)
//! - [`v1_messages`] serves the native `/v1/spaces/{id}/messages…`
//! - [`v1_members`] serves the native `/v1/spaces/{id}/members…` and `PATCH /v1/spaces/{id}`
//! - [`v1_reactions`] serves `PUT`/`DELETE /v1/spaces/{id}/messages/{mid}/reactions/{key}`
//! - [`v1_stats`] serves `/v1/spaces/{id}/stats`
//! - [`discovery`] serves `/api/spaces/trending`, `/recommended`, `/search`, `/tag/{tag}` (issue 12;
//!   tried before [`spaces`], whose `/api/spaces/{spaceId}` would take them)
//! - [`v1_users`] serves `/v1/users/{id}/stats`
//! - [`notifications`] serves Space7 `/api/notifications…`
//! - [`v1_reads`] serves `POST /v1/spaces/{id}/read`, `GET /v1/me/unread`, `GET /v1/me/spaces`
//! - [`v1_search`] serves `GET /v1/spaces/{id}/messages/search` and `GET /v1/search/messages`
//!   (issue 12; tried before [`v1_messages`], whose `…/messages/{messageId}` would take `search`)
//! - [`v1_presence`] serves `GET /v1/spaces/{id}/presence`
//!
//! Handlers return `Result<Response, ApiError>`; [`respond`] renders errors (the only place)
//! and records the request metrics under the route's template name. Requests no route matches
//! are rendered by [`recover`], also as JSON. [`table`] lists every (method, path) served; the
//! edge refuses anything else (404, or 405 with `Allow`) before these filters run.

pub mod console;
pub mod discovery;
pub mod health;
pub mod media;
pub mod messages;
pub mod node;
pub mod notifications;
pub mod spaces;
pub mod table;
pub mod v1_members;
pub mod v1_messages;
pub mod v1_presence;
pub mod v1_reactions;
pub mod v1_reads;
pub mod v1_search;
pub mod v1_stats;
pub mod v1_users;

use std::convert::Infallible;
use std::future::Future;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use spacecast_observability::trace::TraceParent;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::app::AppRef;
use crate::auth::User;
use crate::error::ApiError;

/// Every route of the server.
pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    health::routes(app.clone())
        .or(discovery::routes(app.clone()))
        .unify()
        .or(spaces::routes(app.clone()))
        .unify()
        .or(messages::routes(app.clone()))
        .unify()
        .or(media::routes(app.clone()))
        .unify()
        .or(console::routes(app.clone()))
        .unify()
        .or(v1_search::routes(app.clone()))
        .unify()
        .or(v1_messages::routes(app.clone()))
        .unify()
        .or(v1_members::routes(app.clone()))
        .unify()
        .or(v1_reactions::routes(app.clone()))
        .unify()
        .or(v1_stats::routes(app.clone()))
        .unify()
        .or(v1_users::routes(app.clone()))
        .unify()
        .or(notifications::routes(app.clone()))
        .unify()
        .or(v1_reads::routes(app.clone()))
        .unify()
        .or(v1_presence::routes(app.clone()))
        .unify()
        .or(node::routes(app))
        .unify()
        .boxed()
}

/// Passes the app to a handler.
pub fn with_app(app: AppRef) -> impl Filter<Extract = (AppRef,), Error = Infallible> + Clone {
    warp::any().map(move || app.clone())
}

/// The start time of a request, for its latency metric.
pub fn started() -> impl Filter<Extract = (Instant,), Error = Infallible> + Clone {
    warp::any().map(Instant::now)
}

/// The raw `Authorization` header, checked by the handler (so a bad token is a 401, never a
/// fall-through to another route).
pub fn authorization() -> impl Filter<Extract = (Option<String>,), Error = Infallible> + Clone {
    warp::header::optional::<String>("authorization")
        .or(warp::any().map(|| None))
        .unify()
}

/// The query string as a map; an unparsable one is read as empty (each handler checks the
/// parameters it knows, and ignores the rest).
pub fn query_map()
-> impl Filter<Extract = (std::collections::HashMap<String, String>,), Error = Infallible> + Clone {
    warp::query::<std::collections::HashMap<String, String>>()
        .or(warp::any().map(std::collections::HashMap::new))
        .unify()
}

/// Authenticates a request.
///
/// # Errors
/// 401 for a missing or invalid token.
pub fn user(app: &AppRef, authorization: Option<String>) -> Result<User, ApiError> {
    Ok(app.authenticate(authorization.as_deref())?)
}

/// Renders a handler's result and records its metrics.
pub async fn respond(
    app: AppRef,
    route: &'static str,
    start: Instant,
    fut: impl Future<Output = Result<Response, ApiError>>,
) -> Response {
    // Debug level: free when disabled (the default filter is info), a full trace when enabled.
    let span = tracing::debug_span!("request", route);
    let res = match tracing::Instrument::instrument(fut, span).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    let class = match res.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    app.metrics
        .http_requests
        .with_label_values(&[route, class])
        .inc();
    let seconds = start.elapsed().as_secs_f64();
    app.metrics
        .http_duration
        .with_label_values(&[route])
        .observe(seconds);
    // The edge's `http.request` span, when this request's trace is sampled.
    if let Some(t) = TraceParent::of(&tracing::Span::current()) {
        app.metrics.http_exemplar(route, seconds, t.trace_id_hex());
    }
    res
}

/// The largest body a route accepts, chosen from the request's `Content-Type`.
pub type BodyLimit = fn(&AppRef, Option<&str>) -> usize;

/// `max_body_bytes`, whatever the content type (JSON routes).
pub fn json_body_limit(app: &AppRef, _content_type: Option<&str>) -> usize {
    app.config.max_body_bytes
}

/// A request refused by its declared `Content-Length`, before its body was read.
#[derive(Debug)]
pub struct BodyTooLarge {
    pub limit: usize,
}

impl warp::reject::Reject for BodyTooLarge {}

/// Refuses (413 `payload_too_large`, via [`recover`]) a request whose `Content-Length` exceeds
/// the route's `limit`, before anything polls its body. hyper sends `100 Continue` to an
/// `Expect: 100-continue` client only once the body is polled, so such a client is refused
/// without being invited to upload. Put it before the body filter of every route with a body;
/// a body without a length (chunked) is still bounded while it is read ([`read_body`]).
pub fn body_within(
    app: AppRef,
    limit: BodyLimit,
) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("content-length")
        .and(warp::header::optional::<String>("content-type"))
        .and_then(move |length: Option<String>, ct: Option<String>| {
            let app = app.clone();
            async move {
                let limit = limit(&app, ct.as_deref());
                match length.and_then(|l| l.trim().parse::<u64>().ok()) {
                    Some(n) if n > limit as u64 => {
                        Err(warp::reject::custom(BodyTooLarge { limit }))
                    }
                    _ => Ok(()),
                }
            }
        })
        .untuple_one()
}

/// Reads a request body of at most `limit` bytes.
///
/// # Errors
/// 413 `payload_too_large` beyond the limit; 400 if the body cannot be read.
pub async fn read_body<S, B>(body: S, limit: usize) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                "invalid_request",
                format!("Could not read the request body: {e}"),
            )
        })?;
        if out.len() + chunk.remaining() > limit {
            return Err(ApiError::too_large(format!(
                "The request body exceeds {limit} bytes"
            )));
        }
        while chunk.has_remaining() {
            let n = chunk.chunk().len();
            out.extend_from_slice(chunk.chunk());
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

/// Parses a JSON body; an empty body parses as `{}`.
///
/// # Errors
/// 400 `invalid_json` with the parser's explanation.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("Invalid JSON body: {e}")))
}

/// Turns requests no route accepted into JSON errors.
pub async fn recover(rej: warp::Rejection) -> Result<Response, Infallible> {
    let e = if let Some(t) = rej.find::<BodyTooLarge>() {
        ApiError::too_large(format!("The request body exceeds {} bytes", t.limit))
    } else if rej.is_not_found() {
        ApiError::not_found(table::NO_ROUTE)
    } else if rej.find::<warp::reject::MethodNotAllowed>().is_some() {
        // The edge answers a method a path does not serve (405 with `Allow`, from the route
        // table) before warp sees the request; this is only reached if a filter and the table
        // disagree, which api/tests/routes.rs checks does not happen.
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "HTTP method not allowed",
        )
    } else if rej.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::too_large("The request payload is too large")
    } else if rej.find::<warp::reject::UnsupportedMediaType>().is_some() {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported content type",
        )
    } else if rej.find::<warp::reject::InvalidQuery>().is_some() {
        ApiError::bad_request("invalid_request", "Invalid query string")
    } else if let Some(h) = rej.find::<warp::reject::InvalidHeader>() {
        ApiError::bad_request("invalid_request", format!("Invalid header {}", h.name()))
    } else if let Some(h) = rej.find::<warp::reject::MissingHeader>() {
        ApiError::bad_request("invalid_request", format!("Missing header {}", h.name()))
    } else {
        tracing::debug!(?rej, "unhandled rejection");
        ApiError::bad_request("invalid_request", "Invalid request")
    };
    Ok(e.into_response())
}
