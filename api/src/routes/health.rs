//! Operational endpoints; no authentication.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use super::{respond, started, with_app};
use crate::app::AppRef;
use crate::error::{ApiError, json_response};

/// The OpenAPI document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .and(with_app(app.clone()))
        .and(started())
        .then(|app: AppRef, t: Instant| {
            respond(app, "healthz", t, async {
                Ok(json_response(StatusCode::OK, &json!({"status": "ok"})))
            })
        });
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(with_app(app.clone()))
        .and(started())
        .then(|app: AppRef, t: Instant| respond(app.clone(), "readyz", t, readyz(app)));
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_app(app.clone()))
        .then(|app: AppRef| async move {
            let mut res = Response::new(app.metrics.render().into());
            res.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            res
        });
    let openapi = warp::path!("openapi.json").and(warp::get()).map(|| {
        let mut res = Response::new(OPENAPI.into());
        res.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        res
    });
    healthz
        .or(readyz)
        .unify()
        .or(metrics)
        .unify()
        .or(openapi)
        .unify()
        .boxed()
}

/// How long `/readyz` waits for the media store's answer (probes time out after about a second).
const MEDIA_CHECK_TIMEOUT: Duration = Duration::from_millis(800);

/// `GET /readyz`: 200 when the store and the bus answer and the node accepts work, else 503.
///
/// The body also reports the media store (`"media": "ok" | "unavailable"`), without making the
/// node unready: every node shares the media store, so a media outage would take every node
/// out of its load balancer, text messages included, while media requests already fail alone
/// with 503 `store_unavailable`.
async fn readyz(app: AppRef) -> Result<Response, ApiError> {
    if !app.accepting.load(Ordering::Acquire) {
        return Err(ApiError::unavailable(
            "shutting_down",
            "Server is shutting down",
        ));
    }
    let bus = app.engine.bus();
    if !bus.healthy() {
        return Err(ApiError::unavailable(
            "bus_unavailable",
            "The cluster bus (NATS) is unreachable",
        ));
    }
    let bus = if bus.clustered() {
        "nats"
    } else {
        "in-process"
    };
    let (store, media) = tokio::join!(
        app.engine.ping(),
        tokio::time::timeout(MEDIA_CHECK_TIMEOUT, app.media.check())
    );
    let media = match media {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "readiness check: media store unreachable");
            "unavailable"
        }
        Err(_) => "unavailable",
    };
    match store {
        Ok(()) => Ok(json_response(
            StatusCode::OK,
            &json!({"status": "ready", "store": "ok", "media": media, "bus": bus, "node_id": app.config.node_id}),
        )),
        Err(e) => {
            // `/readyz` needs no token: anyone can call it, so its failures are not logged above
            // debug (the store's own failures are logged, rate-limited, where they happen).
            tracing::debug!(error = %e, "readiness check: store unreachable");
            Err(ApiError::unavailable(
                "store_unavailable",
                "Storage is unreachable",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OPENAPI;

    #[test]
    fn openapi_document_lists_every_error_code_and_the_main_paths() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert!(
            doc["openapi"]
                .as_str()
                .unwrap_or_default()
                .starts_with("3."),
            "an OpenAPI 3 document"
        );
        let codes: Vec<&str> = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
            .as_array()
            .expect("the Error schema has a code enum")
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect();
        for code in crate::error::CODES {
            assert!(
                codes.contains(code),
                "error code {code} missing from the Error schema"
            );
        }
        let paths = doc["paths"].as_object().expect("a paths object");
        for path in [
            "/api/spaces",
            "/api/messages/{spaceId}",
            "/v1/stream",
            "/socket.io/",
            "/v1/media",
            "/v1/media/{mediaId}",
            "/v1/media/{mediaId}/thumbnail",
        ] {
            assert!(paths.contains_key(path), "path {path} missing");
        }
    }
}
