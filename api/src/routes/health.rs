//! Operational endpoints; no authentication.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use super::{respond, started, with_app};
use crate::app::AppRef;
use crate::error::{ApiError, json_response};

/// The operational endpoints in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz, readyz_doc, metrics, openapi))]
pub struct Doc;

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
struct Health {
    #[schema(inline)]
    status: Up,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Up {
    Ok,
}

/// `GET /readyz` when ready.
#[derive(Serialize, ToSchema)]
struct Ready<'a> {
    #[schema(inline)]
    status: IsReady,
    #[schema(inline)]
    store: Up,
    /// The media store's answer to a cheap check (S3: one HEAD, at most 0.8 s). Reported only:
    /// every node shares the media store, so its outage does not make a node unready.
    #[schema(inline)]
    media: MediaState,
    /// `in-process` on a single node, `nats` in cluster mode.
    #[schema(inline)]
    bus: BusKind,
    node_id: &'a str,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum IsReady {
    Ready,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum MediaState {
    Ok,
    Unavailable,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
enum BusKind {
    InProcess,
    Nats,
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    security(()),
    responses((status = 200, description = "The process is up.", body = Health)))]
fn healthz() -> Response {
    json_response(StatusCode::OK, &Health { status: Up::Ok })
}

/// Readiness: the store answers and the node accepts work
///
/// 200 when the store answers a ping, the bus (cluster mode: NATS) is connected and the node is
/// not shutting down. `media` reports the media store without affecting the status.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Ready.", body = Ready),
        ReadyErrors,
    ))]
#[allow(dead_code)] // The document's entry; `readyz` serves it.
fn readyz_doc() {}

crate::openapi::errors!(ReadyErrors {
    503 "Not ready: shutting down, or the store or (cluster mode) NATS is unreachable."
        [shutting_down, store_unavailable, bus_unavailable],
});

/// Prometheus metrics
///
/// The Prometheus text format by default; the OpenMetrics text format, with exemplars (the trace
/// id of a sampled request on the latency histogram bucket it fell in, while traces are on), when
/// the `Accept` header names `application/openmetrics-text`, as Prometheus does with exemplar
/// storage enabled.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    security(()),
    responses((status = 200,
        description = "Prometheus text exposition format (`Content-Type: text/plain; version=0.0.4; charset=utf-8`), or OpenMetrics 1.0 with exemplars (`application/openmetrics-text; version=1.0.0; charset=utf-8`) when asked for.",
        content(
            (String = "text/plain"),
            (String = "application/openmetrics-text"),
        ))))]
fn metrics(app: &AppRef, accept: Option<&str>) -> Response {
    use spacecast_observability::openmetrics;
    let (body, content_type) = if openmetrics::wanted(accept) {
        (app.metrics.render_openmetrics(), openmetrics::CONTENT_TYPE)
    } else {
        (
            app.metrics.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    };
    let mut res = Response::new(body.into());
    res.headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    res
}

/// This OpenAPI document
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "operations",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object)))]
fn openapi() -> Response {
    let mut res = Response::new(crate::openapi::document_json().into());
    res.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    res
}

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .and(with_app(app.clone()))
        .and(started())
        .then(|app: AppRef, t: Instant| respond(app, "healthz", t, async { Ok(healthz()) }));
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(with_app(app.clone()))
        .and(started())
        .then(|app: AppRef, t: Instant| respond(app.clone(), "readyz", t, readyz(app)));
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_app(app.clone()))
        .and(warp::header::optional::<String>("accept"))
        .then(
            |app: AppRef, accept: Option<String>| async move { metrics(&app, accept.as_deref()) },
        );
    let openapi = warp::path!("openapi.json").and(warp::get()).map(openapi);
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
        BusKind::Nats
    } else {
        BusKind::InProcess
    };
    let (store, media) = tokio::join!(
        app.engine.ping(),
        tokio::time::timeout(MEDIA_CHECK_TIMEOUT, app.media.check())
    );
    let media = match media {
        Ok(Ok(())) => MediaState::Ok,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "readiness check: media store unreachable");
            MediaState::Unavailable
        }
        Err(_) => MediaState::Unavailable,
    };
    match store {
        Ok(()) => Ok(json_response(
            StatusCode::OK,
            &Ready {
                status: IsReady::Ready,
                store: Up::Ok,
                media,
                bus,
                node_id: &app.config.node_id,
            },
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
