//! The route table: every (method, path template) the server serves, in one list.
//!
//! The edge ([`crate::edge`]) consults it before anything else answers a request: a path that no
//! template matches gets 404 `not_found`, a path that some template matches with a method none of
//! them serves gets 405 `method_not_allowed` with an `Allow` header listing the methods that path
//! serves (RFC 9110 §15.5.6). So a route that is missing here cannot be reached, and every served
//! route is in the list. The other direction (an entry here that no handler serves) is checked by
//! the black-box test `api/tests/routes.rs`, and the OpenAPI document is compared with this list,
//! both ways, by the unit test below.
//!
//! Templates use the OpenAPI document's spelling: `{name}` is one non-empty path segment. Matching
//! ignores one trailing slash, as warp's `path!` does (`/healthz/` is `/healthz`, and `/socket.io`
//! is `/socket.io/`).
//!
//! To add a route: add its warp filter (or upgrade), add `(method, template)` here, and put a
//! `#[utoipa::path]` on its handler listed in its module's `Doc` ([`crate::openapi`]); the tests
//! fail until all three agree.

use warp::http::{HeaderValue, Method, StatusCode};
use warp::reply::Response;

use crate::error::ApiError;

/// Every (method, path template) the server serves. `HEAD` is not served anywhere.
pub const ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/healthz"),
    (Method::GET, "/readyz"),
    (Method::GET, "/metrics"),
    (Method::GET, "/openapi.json"),
    (Method::POST, "/api/spaces"),
    (Method::GET, "/api/spaces/my"),
    (Method::GET, "/api/spaces/{spaceId}"),
    (Method::POST, "/api/spaces/{spaceId}/join"),
    (Method::GET, "/api/messages/{spaceId}"),
    (Method::POST, "/api/messages/{spaceId}"),
    (
        Method::POST,
        "/api/messages/{spaceId}/{messageId}/appreciate",
    ),
    (Method::DELETE, "/api/messages/{spaceId}/{messageId}"),
    (Method::GET, "/api/media/{mediaId}"),
    (Method::GET, crate::stream::PATH),
    (Method::GET, crate::socketio::PATH),
    (Method::POST, "/v1/media"),
    (Method::GET, "/v1/media/{mediaId}"),
    (Method::GET, "/v1/media/{mediaId}/thumbnail"),
    (Method::GET, "/v1/node"),
    (Method::GET, "/console"),
    (Method::GET, "/console/{asset}"),
    (Method::GET, "/console/dev-login"),
    (Method::POST, "/console/dev-login"),
    (Method::GET, "/v1/spaces/{spaceId}/messages"),
    (Method::POST, "/v1/spaces/{spaceId}/messages"),
    (Method::GET, "/v1/spaces/{spaceId}/messages/{messageId}"),
    (
        Method::POST,
        "/v1/spaces/{spaceId}/messages/{messageId}/edit",
    ),
    (
        Method::POST,
        "/v1/spaces/{spaceId}/messages/{messageId}/redact",
    ),
    (
        Method::GET,
        "/v1/spaces/{spaceId}/messages/{messageId}/history",
    ),
    (
        Method::GET,
        "/v1/spaces/{spaceId}/messages/{messageId}/thread",
    ),
    (Method::PATCH, "/v1/spaces/{spaceId}"),
    (Method::GET, "/v1/spaces/{spaceId}/members"),
    (Method::GET, "/v1/spaces/{spaceId}/members/{userId}"),
    (Method::PUT, "/v1/spaces/{spaceId}/members/{userId}"),
    (Method::DELETE, "/v1/spaces/{spaceId}/members/{userId}"),
    (
        Method::PUT,
        "/v1/spaces/{spaceId}/messages/{messageId}/reactions/{key}",
    ),
    (
        Method::DELETE,
        "/v1/spaces/{spaceId}/messages/{messageId}/reactions/{key}",
    ),
    (Method::GET, "/v1/spaces/{spaceId}/stats"),
    // disc (issue 12)
    (Method::GET, "/api/spaces/trending"),
    (Method::GET, "/api/spaces/recommended"),
    (Method::GET, "/api/spaces/search"),
    (Method::GET, "/api/spaces/tag/{tag}"),
    (Method::GET, "/v1/users/{userId}/stats"),
    (Method::GET, "/api/notifications"),
    (Method::PUT, "/api/notifications/read-all"),
    (Method::PUT, "/api/notifications/{id}/read"),
    (Method::POST, "/v1/spaces/{spaceId}/read"),
    (Method::GET, "/v1/me/unread"),
    (Method::GET, "/v1/me/spaces"),
    // search (issue 12)
    (Method::GET, "/v1/spaces/{spaceId}/messages/search"),
    (Method::GET, "/v1/search/messages"),
    (Method::GET, "/v1/spaces/{spaceId}/presence"),
];

/// The message of the 404 for a path no route serves (distinct from a handler's own 404s, such
/// as an unknown space, so a test can tell the two apart).
pub const NO_ROUTE: &str = "No route serves this path";

/// Whether `path` (a request's path, not decoded) matches `template`.
pub fn matches(template: &str, path: &str) -> bool {
    let mut want = segments(template);
    let mut have = segments(path);
    loop {
        match (want.next(), have.next()) {
            (None, None) => return true,
            (Some(w), Some(h)) => {
                let ok = if w.starts_with('{') && w.ends_with('}') {
                    !h.is_empty()
                } else {
                    w == h
                };
                if !ok {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

fn segments(path: &str) -> std::str::Split<'_, char> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    path.split('/')
}

/// The methods some route serves at `path`, in table order without repeats; empty when no
/// template matches it.
pub fn methods_at(path: &str) -> Vec<&'static Method> {
    let mut out: Vec<&'static Method> = Vec::new();
    for (method, template) in ROUTES {
        if matches(template, path) && !out.contains(&method) {
            out.push(method);
        }
    }
    out
}

/// The answer to a request the table refuses, or `None` when a route serves `method` at `path`:
/// 404 `not_found` for a path no route serves, 405 `method_not_allowed` with `Allow` for a
/// method the path does not serve.
pub fn refuse(method: &Method, path: &str) -> Option<Response> {
    let methods = methods_at(path);
    if methods.is_empty() {
        return Some(ApiError::not_found(NO_ROUTE).into_response());
    }
    if methods.contains(&method) {
        return None;
    }
    Some(method_not_allowed(&methods))
}

/// 405 `method_not_allowed` with `Allow: <methods>`.
pub fn method_not_allowed(methods: &[&Method]) -> Response {
    let allow = methods
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut res = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("HTTP method not allowed; this path serves {allow}"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&allow) {
        res.headers_mut().insert("allow", v);
    }
    res
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn templates_match_one_segment_per_parameter_and_ignore_one_trailing_slash() {
        assert!(matches("/api/spaces/{spaceId}", "/api/spaces/abc"));
        assert!(matches("/api/spaces/{spaceId}", "/api/spaces/abc/"));
        assert!(!matches("/api/spaces/{spaceId}", "/api/spaces/"));
        assert!(!matches("/api/spaces/{spaceId}", "/api/spaces/a/b"));
        assert!(!matches("/api/spaces/{spaceId}", "/api/spaces//"));
        assert!(matches("/socket.io/", "/socket.io"));
        assert!(matches("/healthz", "/healthz/"));
        assert!(!matches("/healthz", "/healthzz"));
        assert!(!matches("/healthz", "/"));
    }

    #[test]
    fn a_known_path_with_another_method_is_405_with_allow_and_an_unknown_path_is_404() {
        let res = refuse(&Method::DELETE, "/api/messages/s1").expect("refused");
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers()["allow"], "GET, POST");
        let res = refuse(&Method::PUT, "/console/dev-login").expect("refused");
        assert_eq!(res.headers()["allow"], "GET, POST");
        let res = refuse(&Method::GET, "/nowhere").expect("refused");
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert!(res.headers().get("allow").is_none());
        assert!(refuse(&Method::GET, "/api/spaces/my").is_none());
        assert!(refuse(&Method::HEAD, "/healthz").is_some());
    }

    /// The served OpenAPI document and the table list the same (method, path) pairs.
    #[test]
    fn the_openapi_document_and_the_route_table_agree_both_ways() {
        let doc: serde_json::Value =
            serde_json::from_slice(&crate::openapi::document_json()).expect("the document is JSON");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("a paths object") {
            for (key, _) in item.as_object().expect("a path item") {
                // A path item's other keys (parameters, summary, servers…) are not operations.
                if matches!(
                    key.as_str(),
                    "get" | "put" | "post" | "delete" | "options" | "head" | "patch" | "trace"
                ) {
                    documented.insert((key.to_ascii_uppercase(), path.clone()));
                }
            }
        }
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.as_str().to_owned(), (*p).to_owned()))
            .collect();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "served but not in the OpenAPI document: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "in the OpenAPI document but not in the route table: {unserved:?}"
        );
    }
}
