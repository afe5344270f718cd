//! The native realtime stream, `GET /v1/stream` (CONTRACT.md §6): JSON text frames over a
//! WebSocket.
//!
//! - `mod.rs`: the route: connection limit, authentication (header or `token` query), upgrade;
//! - [`session`]: one connection's loop: reads client frames, writes hub events, acks, typing;
//! - [`join`], [`send`], [`typing`], [`refresh`]: one file per client command;
//! - [`frames`]: the frame types.
//!
//! Close codes: 1001 going away (shutdown), 1009 a client frame over [`MAX_FRAME_BYTES`], 4001
//! authentication failed or the token expired (reason `token_expired`), 4002 a ping went
//! unanswered, 4008 slow consumer (its queue overflowed; it may reconnect and resume with
//! `since_seq`).

pub mod frames;
pub mod join;
pub mod refresh;
pub mod send;
pub mod session;
pub mod typing;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use crate::app::AppRef;
use crate::connections::Refusal;
use crate::error::ApiError;
use crate::routes::{authorization, with_app};

/// Largest client frame accepted.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Close codes of the stream.
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const TOO_BIG: u16 = 1009;
    pub const AUTH_FAILED: u16 = 4001;
    pub const PONG_TIMEOUT: u16 = 4002;
    pub const SLOW_CONSUMER: u16 = 4008;
}

/// `Retry-After` of a per-user refusal: a connection of the same user must close first.
const USER_FULL_RETRY: Duration = Duration::from_secs(5);

/// A refused upgrade: counted (an attacker can cause it at will, so it is not logged).
fn refuse(app: &AppRef, reason: &str, e: ApiError) -> Response {
    app.metrics.ws_refused.with_label_values(&[reason]).inc();
    e.into_response()
}

/// `GET /v1/stream`: checks the caps, authenticates, and upgrades to a session.
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
                    return refuse(
                        &app,
                        "shutting_down",
                        ApiError::unavailable("shutting_down", "Server is shutting down"),
                    );
                }
                // Header first, then the `token` query parameter (browsers cannot set headers on WebSockets).
                let user = match (auth.as_deref(), query.get("token")) {
                    (Some(h), _) => app.authenticate(Some(h)),
                    (None, Some(t)) => app.auth.verify(t),
                    (None, None) => Err(crate::auth::AuthError::Missing),
                };
                // The connection's place is taken before the upgrade is answered, so a burst
                // cannot exceed the caps; the session holds it to its end.
                let permit = match app
                    .connections
                    .try_admit(user.as_ref().ok().map(crate::auth::User::id))
                {
                    Ok(p) => p,
                    Err(Refusal::NodeFull) => {
                        return refuse(
                            &app,
                            "overloaded",
                            ApiError::unavailable(
                                "overloaded",
                                "Too many realtime connections; retry shortly",
                            ),
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
                        return refuse(&app, "too_many_connections", e);
                    }
                };
                let ws = ws
                    .max_message_size(MAX_FRAME_BYTES)
                    .max_frame_size(MAX_FRAME_BYTES);
                let tracker = app.sessions.clone();
                ws.on_upgrade(move |socket| {
                    tracker.track_future(session::run(app, user, socket, permit))
                })
                .into_response()
            },
        )
        .boxed()
}
