//! The native realtime stream, `GET /v1/stream` (CONTRACT.md §6): JSON text frames over a
//! WebSocket. This is the native protocol's adapter around the session core
//! ([`crate::realtime`]):
//!
//! - `mod.rs`: the upgrade: connection limit, authentication (header or `token` query), the
//!   WebSocket handshake, and the hand-over of the socket to a session task;
//! - [`conn`]: one connection's loop (reads client frames, writes session outputs, coalesces);
//! - [`frames`]: the wire format (client frames → commands, outputs → text frames).
//!
//! The edge upgrades the connection itself rather than through warp's `ws()` filter: warp fixes
//! tungstenite's buffers at their defaults (a 128 KiB read buffer per connection, zero-filled
//! again before every read, and text frames that own a `String`, copied per subscriber). Here
//! the socket goes straight from hyper to tokio-websockets ([`conn::websocket`]), which reads
//! into a small growable buffer and writes shared payloads with vectored writes; BENCHMARKS.md
//! has the measurements behind the choice.
//!
//! Close codes: see [`crate::realtime::Disconnect`] (1001 going away, 1009 frame too big, 4001
//! authentication failed / `token_expired`, 4002 pong timeout, 4008 slow consumer).

pub mod conn;
pub mod frames;

use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use tokio::io::AsyncReadExt;
use warp::reply::{Reply, Response};

use crate::app::AppRef;
use crate::connections::{ConnectionPermit, Refusal};
use crate::error::ApiError;

/// The stream's path.
pub const PATH: &str = "/v1/stream";

/// The stream in the OpenAPI document: the upgrade, and the frame schemas.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(open_stream),
    components(schemas(
        frames::ServerFrame,
        frames::ClientFrame,
        spacecast_engine::users::UserEvent,
        spacecast_engine::presence::PresenceFrame
    ))
)]
pub struct Doc;

/// Native realtime stream (WebSocket)
#[utoipa::path(get, path = "/v1/stream", operation_id = "openStream", tag = "realtime",
    description = include_str!("protocol.md"),
    security(("bearerAuth" = []), ("tokenQuery" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol. The first frame is \
            `hello` (or, when authentication failed, a close with code 4001)."),
        StreamErrors,
    ))]
#[allow(dead_code)] // The document's entry; `upgrade` serves it.
fn open_stream() {}

crate::openapi::errors!(StreamErrors {
    400 "Not a WebSocket upgrade request." [invalid_request],
    429 "The user already holds `--max-connections-per-user` realtime connections (default 32); \
         retry after `Retry-After` seconds or close one." [too_many_connections],
    503 "The node is at its connection limit or shutting down." [overloaded, shutting_down],
});

/// Largest client frame accepted.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// `Retry-After` of a per-user refusal: a connection of the same user must close first.
const USER_FULL_RETRY: Duration = Duration::from_secs(5);

/// A refused upgrade: counted (an attacker can cause it at will, so it is not logged).
fn refuse(app: &AppRef, reason: &str, e: ApiError) -> Response {
    app.metrics
        .ws_refused
        .with_label_values(&["native", reason])
        .inc();
    e.into_response()
}

/// `GET /v1/stream`: checks the caps, authenticates, answers the WebSocket handshake and starts
/// the session once hyper hands the socket over.
pub fn upgrade(app: &AppRef, mut req: Request<Incoming>) -> Response {
    if req.method() != Method::GET {
        // The edge's route table refuses this first; kept so the upgrade stands on its own.
        return crate::routes::table::method_not_allowed(&[&Method::GET]);
    }
    let key = match handshake_key(&req) {
        Ok(key) => key,
        Err(e) => return e.into_response(),
    };
    if !app.accepting.load(Ordering::Acquire) {
        return refuse(
            app,
            "shutting_down",
            ApiError::unavailable("shutting_down", "Server is shutting down"),
        );
    }
    // Header first, then the `token` query parameter (browsers cannot set headers on WebSockets).
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = match (header, query_token(&req)) {
        (Some(h), _) => app.authenticate(Some(h)),
        (None, Some(t)) => app.auth.verify(&t),
        (None, None) => Err(crate::auth::AuthError::Missing),
    };
    // The connection's place is taken before the upgrade is answered, so a burst cannot exceed
    // the caps; the session holds it to its end.
    let permit = match app
        .connections
        .try_admit(user.as_ref().ok().map(crate::auth::User::id))
    {
        Ok(p) => p,
        Err(Refusal::NodeFull) => {
            return refuse(
                app,
                "overloaded",
                ApiError::unavailable("overloaded", "Too many realtime connections; retry shortly"),
            );
        }
        Err(Refusal::UserFull) => {
            let e = ApiError {
                retry_after: Some(USER_FULL_RETRY),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_connections",
                    format!(
                        "At most {} realtime connections per user; close one first",
                        app.config.max_connections_per_user
                    ),
                )
            };
            return refuse(app, "too_many_connections", e);
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let session = {
        let app = app.clone();
        async move {
            match on_upgrade.await {
                Ok(upgraded) => start(app, user, upgraded, permit).await,
                // The client went away between the answer and the hand-over.
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade did not complete"),
            }
        }
    };
    let session = app.sessions.track_future(session);
    match &app.realtime {
        Some(rt) => drop(rt.spawn(session)),
        None => drop(tokio::spawn(session)),
    }
    let mut res =
        warp::reply::with_status(warp::reply(), StatusCode::SWITCHING_PROTOCOLS).into_response();
    let headers = res.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) =
        HeaderValue::from_str(&tungstenite::handshake::derive_accept_key(key.as_bytes()))
    {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    res
}

/// Runs the session on the upgraded socket: the raw TCP stream when it is one of ours (no
/// wrapper on the hot path), else hyper's upgraded IO.
async fn start(
    app: AppRef,
    user: Result<crate::auth::User, crate::auth::AuthError>,
    upgraded: hyper::upgrade::Upgraded,
    permit: ConnectionPermit,
) {
    match crate::listener::into_tcp(upgraded) {
        Ok((tcp, read)) if read.is_empty() => {
            conn::run(app, user, conn::websocket(tcp), permit).await;
        }
        Ok((tcp, read)) => {
            // The client sent before the 101: those bytes are read first.
            let (rd, wr) = tcp.into_split();
            let io = tokio::io::join(std::io::Cursor::new(read).chain(rd), wr);
            conn::run(app, user, conn::websocket(io), permit).await;
        }
        Err(upgraded) => {
            let io = hyper_util::rt::TokioIo::new(upgraded);
            conn::run(app, user, conn::websocket(io), permit).await;
        }
    }
}

/// The `Sec-WebSocket-Key` of a valid WebSocket upgrade request (RFC 6455 §4.2.1).
///
/// # Errors
/// 400 `invalid_request` naming what is missing.
pub(crate) fn handshake_key(req: &Request<Incoming>) -> Result<String, ApiError> {
    let headers = req.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(ApiError::bad_request(
            "invalid_request",
            "Expected a WebSocket upgrade (Connection: upgrade, Upgrade: websocket)",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(ApiError::bad_request(
            "invalid_request",
            "Missing header sec-websocket-version (must be 13)",
        ));
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 64)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::bad_request("invalid_request", "Missing header sec-websocket-key"))
}

/// The `token` query parameter, decoded.
fn query_token(req: &Request<Incoming>) -> Option<String> {
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}
