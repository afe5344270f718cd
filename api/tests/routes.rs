//! Black-box tests of the route table (api/src/routes/table.rs) against the real binary: every
//! (method, path) it lists is served by a handler (never the edge's "no route" 404 nor a 405), a
//! known path with a method it does not serve is 405 `method_not_allowed` with an `Allow` header
//! (RFC 9110 §15.5.6), and an unknown path is 404 `not_found`. The table's agreement with the
//! OpenAPI document is a unit test beside the table.

mod common;

use common::{Server, assert_json_error};
use reqwest::Method;
use spacecast_api::routes::table::{NO_ROUTE, ROUTES};

/// A concrete path for a template: each `{param}` becomes `probe`.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') { "probe" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_route_in_the_table_is_served() {
    let s = Server::start(&[]).await;
    for (method, template) in ROUTES {
        let path = concrete(template);
        let method = Method::from_bytes(method.as_str().as_bytes()).expect("a method");
        // No token, no body: a handler answers (401, 400, 404 of its own, 200...), the edge's
        // table never does.
        let res = s
            .http
            .request(method.clone(), s.url(&path))
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        let body = res.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            !body.contains(NO_ROUTE),
            "{method} {path} is in the route table but no handler serves it: {status} {body}"
        );
    }
}

#[tokio::test]
async fn a_method_a_path_does_not_serve_is_405_with_allow() {
    let s = Server::start(&[]).await;
    let cases: &[(Method, &str, &str)] = &[
        (Method::PUT, "/api/spaces", "POST"),
        (Method::DELETE, "/api/spaces/my", "GET"),
        (Method::PATCH, "/api/messages/s1", "GET, POST"),
        (Method::GET, "/api/messages/s1/m1", "DELETE"),
        (Method::GET, "/api/messages/s1/m1/appreciate", "POST"),
        (Method::POST, "/healthz", "GET"),
        (Method::HEAD, "/openapi.json", "GET"),
        (Method::DELETE, "/v1/media", "POST"),
        (Method::POST, "/v1/stream", "GET"),
        (Method::POST, "/socket.io/", "GET"),
        (Method::PUT, "/console/dev-login", "GET, POST"),
    ];
    for (method, path, allow) in cases {
        let res = s
            .http
            .request(method.clone(), s.url(path))
            .header("authorization", format!("Bearer {}", common::token("u1")))
            .send()
            .await
            .expect("request");
        let got = res
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        assert_eq!(got.as_deref(), Some(*allow), "{method} {path}: Allow");
        if *method == Method::HEAD {
            // A HEAD answer has no body to check.
            assert_eq!(res.status().as_u16(), 405, "{method} {path}");
        } else {
            assert_json_error(res, 405, "method_not_allowed").await;
        }
    }
}

#[tokio::test]
async fn an_unknown_path_is_404_whatever_the_method() {
    let s = Server::start(&[]).await;
    for (method, path) in [
        (Method::GET, "/nowhere"),
        (Method::POST, "/api/spaces/s1/leave"),
        (Method::DELETE, "/v1/media/a/b/c"),
        (Method::GET, "/api/spaces//join"),
    ] {
        let res = s
            .http
            .request(method.clone(), s.url(path))
            .send()
            .await
            .expect("request");
        assert!(res.headers().get("allow").is_none(), "{method} {path}");
        let (_, body) = assert_json_error(res, 404, "not_found").await;
        assert_eq!(body["error"], NO_ROUTE, "{method} {path}");
    }
}
