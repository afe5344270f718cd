//! The Socket.IO handshake of the default namespace: a connect middleware authenticates the
//! socket, counts it under its user's cap and puts its event handlers in place; the connect
//! handler then starts its session task ([`super::conn`]).
//!
//! **No event is lost** between the handshake and the session, although the app emits
//! `join_space` right after `connect()`: socket.io-client holds what is emitted before the
//! server's CONNECT answer and sends it after; socketioxide (0.18) sends that answer only once
//! the middleware has returned, and the middleware has by then registered the socket's
//! handlers, which push into a channel created with them and read by the session task (an
//! event that comes before the task has started waits there). socketioxide runs a handler's
//! closure body at once, on the socket's reader, in the order of the socket's frames (only the
//! future it returns is spawned), so commands keep the client's order. A client that sends an
//! event before it got the CONNECT answer (which socket.io-client never does) is disconnected
//! by socketioxide.
//!
//! A socket that floods commands faster than its session handles them finds the command queue
//! ([`COMMAND_QUEUE`]) full: the command is dropped and answered with `spacecast_error`
//! `overloaded` (counted as `overflow`). The app's relays (`send_message`,
//! `message_appreciated`) and unknown events are counted and dropped in the handler itself.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::IntCounter;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{Event, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::DisconnectReason;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use super::conn::{self, Inbound, Pending};
use super::events::{self, Parsed};
use super::{ClaimRefused, EioConn};
use crate::app::AppRef;
use crate::auth::{AuthError, User, bearer};

/// Commands a socket may have waiting for its session; beyond it a command is dropped and
/// answered with `spacecast_error` `overloaded`.
pub const COMMAND_QUEUE: usize = 32;

/// Why a handshake was refused; its `Display` is the connect error's message, which clients
/// match on (the first two are the Space7 backend's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No token in `auth.token`, the `token` query parameter or `Authorization`.
    AuthRequired,
    /// The token does not verify, has expired, or breaks the claims' bounds.
    InvalidToken,
    /// The user holds `--max-connections-per-user` realtime connections.
    TooManyConnections,
    /// This Engine.IO connection already carries a Socket.IO connection.
    AlreadyConnected,
    ShuttingDown,
    /// The socket did not come through the edge (a bug): refused rather than uncounted.
    NotAdmitted,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::AuthRequired => "Authentication required",
            Refused::InvalidToken => "Invalid token",
            Refused::TooManyConnections => "Too many connections",
            Refused::AlreadyConnected => "Already connected",
            Refused::ShuttingDown => "Server is shutting down",
            Refused::NotAdmitted => "Connection not admitted",
        })
    }
}

impl Refused {
    /// The `reason` label of `spacecast_ws_refused_total{protocol="socketio"}`.
    fn label(self) -> &'static str {
        match self {
            Refused::AuthRequired | Refused::InvalidToken => "auth_failed",
            Refused::TooManyConnections => "too_many_connections",
            Refused::AlreadyConnected => "already_connected",
            Refused::ShuttingDown => "shutting_down",
            Refused::NotAdmitted => "not_admitted",
        }
    }
}

/// The events a socket sends that never reach its session, counted.
struct Counters {
    relay_ignored: IntCounter,
    unknown: IntCounter,
    overflow: IntCounter,
}

impl Counters {
    fn new(app: &AppRef) -> Self {
        let count = |kind| {
            app.metrics
                .ws_frames_in
                .with_label_values(&["socketio", kind])
        };
        Counters {
            relay_ignored: count("relay_ignored"),
            unknown: count("unknown"),
            overflow: count("overflow"),
        }
    }
}

/// A socket's handlers' way to its session.
#[derive(Clone)]
struct Link {
    commands: mpsc::Sender<Inbound>,
    counters: Arc<Counters>,
}

/// What the middleware leaves for the connect handler, in the socket's extensions.
#[derive(Clone)]
struct Handover(Arc<Mutex<Option<Pending>>>);

/// Registers the default namespace: [`admit`] as its connect middleware, [`start`] as its
/// connect handler.
pub fn register(io: &SocketIo, app: &AppRef) {
    let counters = Arc::new(Counters::new(app));
    let on_connect = {
        let app = app.clone();
        move |s: SocketRef| {
            start(&app, s);
            std::future::ready(())
        }
    };
    let middleware = {
        let app = app.clone();
        move |s: SocketRef, TryData(auth): TryData<Value>| {
            std::future::ready(admit(&app, &counters, &s, auth.ok()))
        }
    };
    io.ns("/", on_connect.with(middleware));
}

/// The connect middleware: authenticates, counts the connection as its user's, and registers
/// the socket's handlers. A refusal becomes the client's `connect_error` (and is counted).
fn admit(
    app: &AppRef,
    counters: &Arc<Counters>,
    s: &SocketRef,
    auth: Option<Value>,
) -> Result<(), Refused> {
    let admitted = try_admit(app, counters, s, auth);
    if let Err(r) = admitted {
        app.metrics
            .ws_refused
            .with_label_values(&["socketio", r.label()])
            .inc();
    }
    admitted
}

fn try_admit(
    app: &AppRef,
    counters: &Arc<Counters>,
    s: &SocketRef,
    auth: Option<Value>,
) -> Result<(), Refused> {
    let conn = s
        .req_parts()
        .extensions
        .get::<Arc<EioConn>>()
        .cloned()
        .ok_or(Refused::NotAdmitted)?;
    let user = authenticate(app, s, auth.as_ref())?;
    if !app.accepting.load(Ordering::Acquire) {
        return Err(Refused::ShuttingDown);
    }
    conn.claim(&app.connections, user.id())
        .map_err(|e| match e {
            ClaimRefused::UserFull => Refused::TooManyConnections,
            ClaimRefused::AlreadyConnected => Refused::AlreadyConnected,
        })?;
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let link = Link {
        commands: commands_tx,
        counters: counters.clone(),
    };
    s.on_fallback(
        move |s: SocketRef, Event(name): Event, TryData(data): TryData<Value>| {
            deliver(&s, &link, &name, data.ok());
            std::future::ready(())
        },
    );
    let (closed_tx, closed) = oneshot::channel();
    let closed_tx = Arc::new(Mutex::new(Some(closed_tx)));
    s.on_disconnect(move |reason: DisconnectReason| {
        let tx = closed_tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(tx) = tx {
            let _ = tx.send(reason);
        }
        std::future::ready(())
    });
    s.extensions
        .insert(Handover(Arc::new(Mutex::new(Some(Pending {
            commands,
            closed,
            user,
            conn,
        })))));
    Ok(())
}

/// The user of a handshake: the token from `auth.token`, else the `token` query parameter,
/// else `Authorization: Bearer`.
fn authenticate(app: &AppRef, s: &SocketRef, auth: Option<&Value>) -> Result<User, Refused> {
    let parts = s.req_parts();
    let token = auth
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .or_else(|| query_token(parts.uri.query()))
        .or_else(|| {
            let header = parts
                .headers
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            bearer(header).map(str::to_owned)
        })
        .ok_or(Refused::AuthRequired)?;
    app.auth.verify(&token).map_err(|e| match e {
        AuthError::Missing => Refused::AuthRequired,
        AuthError::Invalid | AuthError::InvalidClaims { .. } => Refused::InvalidToken,
    })
}

/// The non-empty `token` query parameter, decoded.
fn query_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .filter(|t| !t.is_empty())
}

/// The handler of every client event: hands commands to the session, in the order they came.
fn deliver(s: &SocketRef, link: &Link, name: &str, data: Option<Value>) {
    let inbound = match events::parse(name, data) {
        Parsed::Command(c) => Inbound::Command(c),
        Parsed::Invalid(e) => Inbound::Invalid(e),
        Parsed::Relay => {
            link.counters.relay_ignored.inc();
            return;
        }
        Parsed::Unknown => {
            link.counters.unknown.inc();
            return;
        }
    };
    match link.commands.try_send(inbound) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            link.counters.overflow.inc();
            let r = events::overflow();
            // Best effort: a socket that floods and does not read finds its queue full too.
            let _ = s.emit(r.event, &*r.data);
        }
        // The session has ended; the socket is on its way out.
        Err(TrySendError::Closed(_)) => {}
    }
}

/// The connect handler (the handshake is answered): starts the socket's session task on the
/// realtime runtime, tracked for shutdown.
fn start(app: &AppRef, s: SocketRef) {
    let pending = s
        .extensions
        .remove::<Handover>()
        .and_then(|h| h.0.lock().unwrap_or_else(PoisonError::into_inner).take());
    let Some(pending) = pending else {
        return;
    };
    let session = app
        .sessions
        .track_future(conn::run(app.clone(), s, pending));
    match &app.realtime {
        Some(rt) => drop(rt.spawn(session)),
        None => drop(tokio::spawn(session)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_say_what_the_space7_backend_says() {
        assert_eq!(Refused::AuthRequired.to_string(), "Authentication required");
        assert_eq!(Refused::InvalidToken.to_string(), "Invalid token");
        assert_eq!(
            Refused::TooManyConnections.to_string(),
            "Too many connections"
        );
        assert_eq!(Refused::InvalidToken.label(), "auth_failed");
    }

    #[test]
    fn query_tokens_are_decoded_and_never_empty() {
        assert_eq!(
            query_token(Some("EIO=4&token=a%2Eb&transport=websocket")).as_deref(),
            Some("a.b")
        );
        assert_eq!(query_token(Some("EIO=4&token=")), None);
        assert_eq!(query_token(None), None);
    }
}
