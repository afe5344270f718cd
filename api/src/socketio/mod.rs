//! Socket.IO for the Space7 app (CONTRACT.md §4, reference/space7.md §4): Engine.IO v4 /
//! Socket.IO v5, websocket transport only, at `/socket.io/` on the same listener as everything
//! else. It is the second protocol adapter of the session core ([`crate::realtime`]): the same
//! join / resume / typing / slow-consumer / limit rules as the native stream, served by
//! socketioxide (engineioxide underneath).
//!
//! - `mod.rs`: the upgrade, answered below warp by [`crate::edge`]: websocket transport only,
//!   the node's connection cap, then socketioxide's service (built once per node, [`build`]);
//! - [`handshake`]: the Socket.IO handshake: authentication (a connect middleware), the per-user
//!   cap, the socket's event handlers, and the start of its session task;
//! - [`conn`]: one socket's session task (client commands in, hub events out);
//! - [`events`]: the wire format: client events → commands, session outputs → server events.
//!
//! # Protocol
//! Handshake: `auth.token` (else the `token` query parameter, else `Authorization: Bearer`); a
//! missing token is refused with the connect error `Authentication required`, a bad, expired or
//! out-of-bounds one with `Invalid token` (the Space7 backend's words), a user at
//! `--max-connections-per-user` with `Too many connections`. Client events: `join_space`,
//! `leave_space`, `typing`, `presence`, `heartbeat`; `send_message` and `message_appreciated` (the app's relays of its own
//! REST calls) are ignored. Server events: `receive_message`, `message_appreciated`, plus the
//! extensions `joined_space`, `left_space`, `typing`, `presence`, `presence_count`,
//! `spacecast_error`, `spacecast_disconnect`.
//! [`events`] has the payloads. Server events come only from the engine's durable events (REST,
//! native or any other origin alike), never to the sockets of the user who acted; deletes have
//! no Space7 event and send nothing here.
//!
//! # Connections
//! The upgrade takes a place under `--max-connections` (503 `overloaded` beyond) before
//! socketioxide sees the request, and the handshake counts it as its user's under
//! `--max-connections-per-user`; the place is given back when the Engine.IO connection is gone.
//! One Socket.IO connection per Engine.IO connection (the default namespace, once). The
//! upgraded socket leaves the HTTP connection count and its timeouts, as the native stream's
//! does. An Engine.IO connection that does not complete the Socket.IO handshake within
//! `--http-header-timeout` is closed. Keep-alive is Engine.IO's: a ping every
//! `--ws-ping-interval`, and a client whose pong is not back within one more interval is closed
//! (`pong_timeout`). Every task of a Socket.IO connection (engineioxide's reader, writer and
//! heartbeat, and the session) runs on the realtime runtime (`--realtime-threads`).
//!
//! Endings: shutdown closes every Engine.IO connection (clients see a transport close and
//! reconnect to another node); a token's `exp` (`token_expired`) or a gap that could not be
//! repaired (`resync`) sends `spacecast_disconnect {code, reason}` and a Socket.IO disconnect; a
//! slow consumer's connection is cut at the transport (see below).
//!
//! # Memory and copies per socket
//! Each event's Socket.IO payload is serialized once for every Socket.IO subscriber of the node
//! ([`events::SOCKETIO`], a shared `RawValue`). socketioxide has no public call that takes a
//! pre-encoded packet, so every socket's `emit` still copies those bytes three times: into the
//! `["event", payload]` array (socketioxide's serializer, a growing `Vec`), into the Socket.IO
//! packet (`2…`, a sized buffer), and into the Engine.IO packet (`4…`), a `String` that
//! engineioxide builds for tungstenite, which copies it once more into its write buffer. The
//! native stream writes the shared bytes themselves. BENCHMARKS.md measures what that costs.
//!
//! A socket's outgoing packets wait in engineioxide's channel of [`MAX_QUEUED_PACKETS`]
//! packets (each the socket's own copy, so at most that many events: ≈ 64 × 1 KiB for ordinary
//! messages, ≈ 64 × 23 KiB = 1.4 MiB for 5,000-character messages of four-byte characters from
//! senders with the longest profiles), then in tungstenite's write buffer (≈ 128 KiB before it
//! writes to the socket).
//! engineioxide's writer drains the whole channel and flushes once per wake, so a busy socket
//! gets many events per write. When the channel is full the session waits for room, at most
//! [`crate::stream::conn::WRITE_STALL`]; then it ends as a slow consumer (`slow_consumer`), and
//! its connection is cut at the transport ([`crate::listener::ConnControl::abort`]):
//! engineioxide's writer would otherwise wait on the client for as long as it keeps the socket
//! open. A subscription that falls `--subscriber-queue` commits behind ends the same way. A slow
//! client never slows the space or the other subscribers.
//!
//! Client messages are bounded as on the native stream ([`crate::stream::MAX_FRAME_BYTES`]
//! per message and per frame); engineioxide closes a connection that sends a larger one. A
//! client so far behind that engineioxide cannot even queue its ping is closed by engineioxide
//! (`pong_timeout`).

pub mod conn;
pub mod events;
pub mod handshake;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::Service;
use hyper::{Method, Request, StatusCode};
use socketioxide::{SocketIo, TransportType};
use warp::reply::Response;

use crate::app::AppRef;
use crate::connections::{ConnectionLimits, ConnectionPermit, Refusal};
use crate::error::ApiError;
use crate::listener::ConnControl;

/// Where Socket.IO is served (the Socket.IO client's default path).
pub const PATH: &str = "/socket.io/";

/// Socket.IO in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(open_socket_io))]
pub struct Doc;

/// The query of a Socket.IO upgrade.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, non_snake_case)] // Only its `IntoParams` is used; the names are the wire's.
struct Handshake {
    /// Engine.IO protocol version: `4`.
    #[param(inline)]
    EIO: EngineIoVersion,
    /// `websocket` (long-polling is not served).
    #[param(inline)]
    transport: Transport,
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
enum EngineIoVersion {
    #[serde(rename = "4")]
    V4,
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum Transport {
    Websocket,
}

/// Socket.IO for the Space7 client (WebSocket)
#[utoipa::path(get, path = "/socket.io/", operation_id = "openSocketIo", tag = "realtime",
    description = include_str!("protocol.md"),
    security(()),
    params(Handshake),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; Engine.IO and \
            Socket.IO follow (the token is checked in the Socket.IO handshake)."),
        SocketIoErrors,
    ))]
#[allow(dead_code)] // The document's entry; `SocketIoEdge::upgrade` serves it.
fn open_socket_io() {}

crate::openapi::errors!(SocketIoErrors {
    400 "Not an Engine.IO 4 websocket upgrade: `transport_unsupported` for HTTP long-polling or \
         any other transport, `unsupported_protocol` for another `EIO`, `invalid_request` for a \
         request that is not a WebSocket upgrade."
        [transport_unsupported, unsupported_protocol, invalid_request],
    503 "The node is at its connection limit (`--max-connections`) or shutting down."
        [overloaded, shutting_down],
});

/// Packets engineioxide queues per socket before `emit` reports the channel full.
pub const MAX_QUEUED_PACKETS: usize = 64;

/// socketioxide's service, type-erased: a request in, the response head out (its bodies are
/// empty or replaced by JSON here).
type Call = dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = hyper::http::response::Parts> + Send>>
    + Send
    + Sync;

/// The node's Socket.IO server: socketioxide's service and its handle. Built once by the
/// server ([`build`]) and kept in the [`crate::edge::Edge`].
#[derive(Clone)]
pub struct SocketIoEdge {
    call: Arc<Call>,
    io: SocketIo,
}

impl std::fmt::Debug for SocketIoEdge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIoEdge").finish_non_exhaustive()
    }
}

/// Builds the node's Socket.IO server: websocket transport only, Engine.IO keep-alive every
/// `--ws-ping-interval`, the handshake within `--http-header-timeout`, and the default
/// namespace's handlers ([`handshake::register`]).
pub fn build(app: &AppRef) -> SocketIoEdge {
    let ping = app.config.ws_ping_interval;
    let (svc, io) = SocketIo::builder()
        .req_path("/socket.io")
        .transports([TransportType::Websocket])
        .max_buffer_size(MAX_QUEUED_PACKETS)
        .ws_max_message_size(crate::stream::MAX_FRAME_BYTES)
        .ws_max_frame_size(crate::stream::MAX_FRAME_BYTES)
        .ping_interval(ping)
        .ping_timeout(ping)
        .connect_timeout(app.config.http_header_timeout)
        .build_svc();
    handshake::register(&io, app);
    let call = move |req: Request<Incoming>| {
        let res = svc.call(req);
        let fut: Pin<Box<dyn Future<Output = hyper::http::response::Parts> + Send>> =
            Box::pin(async move {
                match res.await {
                    Ok(res) => res.into_parts().0,
                    Err(never) => match never {},
                }
            });
        fut
    };
    SocketIoEdge {
        call: Arc::new(call),
        io,
    }
}

impl SocketIoEdge {
    /// Whether `path` is Socket.IO's.
    pub fn handles(path: &str) -> bool {
        path == PATH || path == "/socket.io"
    }

    /// `GET /socket.io/?EIO=4&transport=websocket`: checks the request and the node's cap, then
    /// hands it to socketioxide, which answers the WebSocket handshake and runs the connection.
    ///
    /// Refusals are JSON, as every answer: 400 `transport_unsupported` for any transport but
    /// `websocket` (HTTP long-polling is not served), 400 `unsupported_protocol` for an
    /// Engine.IO version other than 4, 400 `invalid_request` for a request that is not a
    /// WebSocket upgrade, 405 for a method other than `GET`, 503 `shutting_down` / `overloaded`.
    pub fn upgrade(
        &self,
        app: &AppRef,
        mut req: Request<Incoming>,
    ) -> Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>> {
        let refused = |reason: &str, e: ApiError| -> Pin<Box<_>> {
            refuse(app, reason);
            Box::pin(std::future::ready(Ok(e.into_response())))
        };
        if req.method() != Method::GET {
            // The edge's route table refuses this first; kept so the upgrade stands on its own.
            refuse(app, "invalid_request");
            let res = crate::routes::table::method_not_allowed(&[&Method::GET]);
            return Box::pin(std::future::ready(Ok(res)));
        }
        let query = Query::of(&req);
        if query.transport.as_deref() != Some("websocket") {
            return refused(
                "transport_unsupported",
                ApiError::bad_request(
                    "transport_unsupported",
                    "Only the websocket transport is served: connect with transports: [\"websocket\"]",
                ),
            );
        }
        if query.eio.as_deref() != Some("4") {
            return refused(
                "invalid_request",
                ApiError::bad_request(
                    "unsupported_protocol",
                    "Only Engine.IO protocol 4 (Socket.IO v3 and later clients) is served",
                ),
            );
        }
        if query.sid {
            return refused(
                "invalid_request",
                ApiError::bad_request(
                    "invalid_request",
                    "No session to upgrade: the websocket transport is the only one",
                ),
            );
        }
        if let Err(e) = crate::stream::handshake_key(&req) {
            return refused("invalid_request", e);
        }
        if !app.accepting.load(Ordering::Acquire) {
            return refused(
                "shutting_down",
                ApiError::unavailable("shutting_down", "Server is shutting down"),
            );
        }
        // The place is taken before socketioxide sees the request, so a burst cannot exceed
        // the cap; the user is known (and counted) only at the Socket.IO handshake.
        let Ok(permit) = app.connections.try_admit(None) else {
            return refused(
                "overloaded",
                ApiError::unavailable("overloaded", "Too many realtime connections; retry shortly"),
            );
        };
        let control = req.extensions().get::<ConnControl>().cloned();
        req.extensions_mut()
            .insert(Arc::new(EioConn::new(permit, control)));
        // socketioxide spawns the connection's tasks where it is called: on the realtime
        // runtime, as the native sessions.
        let response = {
            let _runtime = app.realtime.as_ref().map(tokio::runtime::Handle::enter);
            (self.call)(req)
        };
        let app = app.clone();
        Box::pin(async move {
            let head = response.await;
            if head.status == StatusCode::SWITCHING_PROTOCOLS {
                let mut res = Response::default();
                *res.status_mut() = head.status;
                *res.headers_mut() = head.headers;
                return Ok(res);
            }
            let e = ApiError::new(
                head.status,
                "invalid_request",
                format!(
                    "Socket.IO handshake refused ({})",
                    head.status.canonical_reason().unwrap_or("error")
                ),
            );
            refuse(&app, "invalid_request");
            Ok(e.into_response())
        })
    }

    /// Closes every Engine.IO connection (shutdown): clients see their transport close and
    /// reconnect, to another node. Waits for socketioxide to let go of them, at most `within`.
    pub async fn close(&self, within: Duration) {
        if tokio::time::timeout(within, self.io.close()).await.is_err() {
            tracing::warn!("some Socket.IO connections did not close in time");
        }
    }
}

/// Counts a refused connection (a client can cause it at will, so it is not logged).
fn refuse(app: &AppRef, reason: &str) {
    app.metrics
        .ws_refused
        .with_label_values(&["socketio", reason])
        .inc();
}

/// The Engine.IO query parameters the edge checks.
#[derive(Debug, Default, PartialEq, Eq)]
struct Query {
    eio: Option<String>,
    transport: Option<String>,
    /// A `sid` is present: an upgrade from HTTP long-polling.
    sid: bool,
}

impl Query {
    fn of<B>(req: &Request<B>) -> Query {
        Query::parse(req.uri().query().unwrap_or(""))
    }

    fn parse(query: &str) -> Query {
        let mut q = Query::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "EIO" => q.eio = Some(v.into_owned()),
                "transport" => q.transport = Some(v.into_owned()),
                "sid" => q.sid = true,
                _ => {}
            }
        }
        q
    }
}

/// One Engine.IO connection's place under the connection caps, in its request's extensions
/// (socketioxide keeps the request's parts for the connection's lifetime), so the place is
/// given back exactly when the connection is gone, however it ends.
pub(crate) struct EioConn {
    place: Mutex<Place>,
    /// Ends the connection at the transport (`None` off our listener, e.g. in unit tests).
    control: Option<ConnControl>,
}

struct Place {
    permit: ConnectionPermit,
    /// The user whose Socket.IO connection this is, once the handshake admitted one.
    user: Option<String>,
}

/// Why a handshake could not have the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimRefused {
    /// The user holds `--max-connections-per-user` connections.
    UserFull,
    /// This Engine.IO connection already carries a Socket.IO connection.
    AlreadyConnected,
}

impl EioConn {
    fn new(permit: ConnectionPermit, control: Option<ConnControl>) -> Self {
        EioConn {
            place: Mutex::new(Place { permit, user: None }),
            control,
        }
    }

    /// Makes this connection `user`'s: counted under their cap until the connection is gone.
    /// Once per connection.
    ///
    /// # Errors
    /// The user is at their cap, or the connection already has a user.
    pub(crate) fn claim(&self, limits: &ConnectionLimits, user: &str) -> Result<(), ClaimRefused> {
        let mut place = self.place.lock().unwrap_or_else(PoisonError::into_inner);
        if place.user.is_some() {
            return Err(ClaimRefused::AlreadyConnected);
        }
        match limits.try_assign(&mut place.permit, user) {
            Ok(()) => {
                place.user = Some(user.to_owned());
                Ok(())
            }
            Err(Refusal::UserFull | Refusal::NodeFull) => Err(ClaimRefused::UserFull),
        }
    }

    /// Cuts the connection at the transport (see [`ConnControl::abort`]); `false` when it is not
    /// one of our listener's.
    pub(crate) fn abort(&self) -> bool {
        match &self.control {
            Some(c) => {
                c.abort();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_engine_io_4_websocket_queries_pass() {
        assert_eq!(
            Query::parse("EIO=4&transport=websocket"),
            Query {
                eio: Some("4".into()),
                transport: Some("websocket".into()),
                sid: false
            }
        );
        assert_eq!(
            Query::parse("EIO=4&transport=polling&t=abc")
                .transport
                .as_deref(),
            Some("polling")
        );
        assert!(Query::parse("EIO=4&transport=websocket&sid=AAAA").sid);
        assert_eq!(Query::parse(""), Query::default());
        assert!(SocketIoEdge::handles("/socket.io/"));
        assert!(SocketIoEdge::handles("/socket.io"));
        assert!(!SocketIoEdge::handles("/socket.io/x"));
    }

    #[test]
    fn a_connection_is_claimed_once_under_the_users_cap() {
        let limits = ConnectionLimits::new(4, 1);
        let conn = EioConn::new(limits.try_admit(None).unwrap(), None);
        assert_eq!(limits.open_for("a"), 0);
        conn.claim(&limits, "a").unwrap();
        assert_eq!(limits.open_for("a"), 1);
        assert_eq!(
            conn.claim(&limits, "a"),
            Err(ClaimRefused::AlreadyConnected)
        );
        let other = EioConn::new(limits.try_admit(None).unwrap(), None);
        assert_eq!(other.claim(&limits, "a"), Err(ClaimRefused::UserFull));
        assert_eq!(limits.open(), 2);
        drop(conn);
        assert_eq!((limits.open(), limits.open_for("a")), (1, 0));
        other.claim(&limits, "a").unwrap();
        assert!(!other.abort(), "no transport to cut off our listener");
    }
}
