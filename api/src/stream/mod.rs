//! The native realtime stream, `GET /v1/stream` (CONTRACT.md §6): JSON text frames over a
//! WebSocket.
//!
//! - `mod.rs`: the route: connection limit, authentication (header or `token` query), upgrade;
//! - [`session`]: one connection's loop: reads client frames, writes hub events, acks, typing;
//! - [`join`], [`send`], [`typing`]: one file per client command;
//! - [`frames`]: the frame types.
//!
//! Close codes: 1001 going away (shutdown), 4001 authentication failed, 4008 slow consumer
//! (its queue overflowed; it may reconnect and resume with `since_seq`).

pub mod frames;
pub mod join;
pub mod send;
pub mod session;
pub mod typing;

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};

use crate::app::AppRef;
use crate::error::ApiError;
use crate::routes::{authorization, with_app};

/// Largest client frame accepted.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Close codes of the stream.
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const AUTH_FAILED: u16 = 4001;
    pub const SLOW_CONSUMER: u16 = 4008;
}

pub fn route(app: AppRef) -> BoxedFilter<(Response,)> {
    warp::path!("v1" / "stream")
        .and(warp::ws())
        .and(with_app(app))
        .and(authorization())
        .and(
            warp::query::<HashMap<String, String>>()
                .or(warp::any().map(HashMap::new))
                .unify(),
        )
        .map(
            |ws: warp::ws::Ws,
             app: AppRef,
             auth: Option<String>,
             query: HashMap<String, String>| {
                if !app.accepting.load(Ordering::Acquire) {
                    return ApiError::unavailable("shutting_down", "Server is shutting down")
                        .into_response();
                }
                if app.open_sessions.load(Ordering::Acquire) >= app.config.max_connections {
                    return ApiError::unavailable(
                        "overloaded",
                        "Too many realtime connections; retry shortly",
                    )
                    .into_response();
                }
                // Header first, then the `token` query parameter (browsers cannot set headers on WebSockets).
                let user = match (auth.as_deref(), query.get("token")) {
                    (Some(h), _) => app.authenticate(Some(h)),
                    (None, Some(t)) => app.auth.verify(t),
                    (None, None) => Err(crate::auth::AuthError::Missing),
                };
                let ws = ws
                    .max_message_size(MAX_FRAME_BYTES)
                    .max_frame_size(MAX_FRAME_BYTES);
                let tracker = app.sessions.clone();
                ws.on_upgrade(move |socket| tracker.track_future(session::run(app, user, socket)))
                    .into_response()
            },
        )
        .boxed()
}
