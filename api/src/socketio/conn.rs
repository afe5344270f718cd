//! One Socket.IO socket's session: a task that owns the socket's [`Session`] and its outbox.
//!
//! It waits on, in order of priority: the session's end (shutdown, the token's expiry), the
//! socket's disconnect (reported by socketioxide's disconnect handler), the socket's commands
//! (pushed by its event handlers, [`super::handshake`]), and the session's inbox (hub events of
//! joined spaces). A wake-up hands everything already ready to socketioxide at once (up to
//! [`DRAIN_BUDGET`] hub items), whose writer then writes it with one flush.
//!
//! Writes go through socketioxide's `emit`, which never waits: when the socket's packet queue
//! is full (the client reads slower than its events come) the session retries, backing off,
//! for at most [`WRITE_STALL`]; then it ends as a slow consumer and the connection is cut at
//! the transport. See the module doc of [`super`] for the per-socket memory this bounds.

use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;
use serde_json::value::RawValue;
use socketioxide::extract::SocketRef;
use socketioxide::socket::DisconnectReason;
use socketioxide::{SendError, SocketError};
use spacecast_engine::event::Published;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::EioConn;
use super::events;
use crate::app::AppRef;
use crate::auth::User;
use crate::realtime::{Command, CommandError, Disconnect, Outbox, Output, Session, Wake};
use crate::stream::conn::WRITE_STALL;

/// Hub items handled per wake-up before the socket gets what was rendered and other sessions
/// get a turn.
const DRAIN_BUDGET: usize = 256;
/// The first wait for room in a full packet queue; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const MAX_PAUSE: Duration = Duration::from_millis(50);
/// At shutdown, how long a connection has to close by itself before it is cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What a socket's handlers hand its session.
#[derive(Debug)]
pub enum Inbound {
    Command(Command),
    /// A known event with a payload it does not take: answered with `spacecast_error`.
    Invalid(CommandError),
}

/// Everything a session task starts from, prepared by the handshake.
pub struct Pending {
    pub(super) commands: mpsc::Receiver<Inbound>,
    /// Resolves with socketioxide's reason when the socket is disconnected.
    pub(super) closed: oneshot::Receiver<DisconnectReason>,
    pub(super) user: User,
    /// The Engine.IO connection's place under the caps, and its transport.
    pub(super) conn: Arc<EioConn>,
}

/// The session's write side: renders outputs as Socket.IO events and emits them.
struct SioOut {
    socket: SocketRef,
    /// Events this user caused are not sent to their sockets.
    user_id: String,
    /// Hub outputs emitted since the last flush.
    unflushed: u32,
    /// `spacecast_fanout_writes_total{protocol="socketio"}`: batches handed to socketioxide
    /// (its writer flushes once per wake, so each batch is one socket write or fewer).
    writes: IntCounter,
}

impl Outbox for SioOut {
    async fn put(&mut self, out: Output<'_>) -> Result<(), Disconnect> {
        let Some(r) = events::render(&out) else {
            return Ok(());
        };
        if matches!(
            out,
            Output::Event(_) | Output::Typing(_) | Output::User(_) | Output::Presence(_)
        ) {
            self.unflushed += 1;
        }
        emit(&self.socket, r.event, &r.data).await
    }

    async fn flush(&mut self) -> Result<(), Disconnect> {
        if self.unflushed > 0 {
            self.unflushed = 0;
            self.writes.inc();
        }
        Ok(())
    }

    fn carries(&self, event: &Published) -> bool {
        events::carried(&event.event).is_some_and(|actor| actor != self.user_id)
    }
}

/// Emits one event. A full packet queue is waited on (backing off from [`FIRST_PAUSE`] to
/// [`MAX_PAUSE`]) for at most [`WRITE_STALL`].
///
/// # Errors
/// `SLOW_CONSUMER` when the queue stays full; `CLIENT_CLOSED` when the socket is gone.
async fn emit(socket: &SocketRef, event: &str, data: &RawValue) -> Result<(), Disconnect> {
    let mut stalled: Option<(Instant, Duration)> = None;
    loop {
        match socket.emit(event, data) {
            Ok(()) => return Ok(()),
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                let (since, pause) = stalled.get_or_insert((Instant::now(), FIRST_PAUSE));
                if since.elapsed() >= WRITE_STALL {
                    return Err(Disconnect::SLOW_CONSUMER);
                }
                tokio::time::sleep(*pause).await;
                *pause = (*pause * 2).min(MAX_PAUSE);
            }
            Err(SendError::Socket(SocketError::Closed)) => return Err(Disconnect::CLIENT_CLOSED),
            // Serializing JSON that is already JSON cannot fail.
            Err(SendError::Serialize(_)) => return Err(Disconnect::TRANSPORT_ERROR),
        }
    }
}

/// Runs a socket's session to its end, then ends the socket as its ending asks.
pub async fn run(app: AppRef, socket: SocketRef, pending: Pending) {
    let Pending {
        mut commands,
        mut closed,
        user,
        conn,
    } = pending;
    let gauge = app.metrics.ws_sessions.with_label_values(&["socketio"]);
    gauge.inc();
    let mut out = SioOut {
        socket: socket.clone(),
        user_id: user.id().to_owned(),
        unflushed: 0,
        writes: app.metrics.fanout_writes.with_label_values(&["socketio"]),
    };
    let mut session = Session::new(app.clone(), user, "socketio");
    let end = match session.subscribe_user().await {
        Ok(()) => drive(&mut session, &mut out, &mut commands, &mut closed).await,
        Err(d) => d,
    };
    session.ended(end);
    drop(session);
    drop(out);
    finish(&socket, &conn, end);
    gauge.dec();
}

/// Ends the socket after its session ended with `end`.
fn finish(socket: &SocketRef, conn: &Arc<EioConn>, end: Disconnect) {
    if end == Disconnect::CLIENT_CLOSED
        || end == Disconnect::TRANSPORT_ERROR
        || end == Disconnect::PONG_TIMEOUT
    {
        // socketioxide has already let the socket go.
        return;
    }
    if end == Disconnect::SHUTDOWN {
        // The server closes every Engine.IO connection itself (`SocketIoEdge::close`), and the
        // clients reconnect to another node. A client that reads nothing would hold that close
        // up (engineioxide's writer waits on it): its connection is cut after a grace.
        let conn = conn.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            conn.abort();
        });
        return;
    }
    if end == Disconnect::SLOW_CONSUMER {
        // Its queue is full, so no disconnect packet could be queued; engineioxide's writer
        // would wait on the client for as long as it keeps the socket open. The client sees its
        // transport close, reconnects, and may resume with `since_seq`.
        conn.abort();
        return;
    }
    let r = events::disconnect(end);
    let _ = socket.emit(r.event, &*r.data);
    if socket.clone().disconnect().is_err() {
        conn.abort();
    }
}

/// The session's loop; returns why it ended.
async fn drive(
    s: &mut Session,
    out: &mut SioOut,
    commands: &mut mpsc::Receiver<Inbound>,
    closed: &mut oneshot::Receiver<DisconnectReason>,
) -> Disconnect {
    loop {
        let step = tokio::select! {
            biased;
            d = s.ending.wait() => Err(d),
            reason = &mut *closed => Err(disconnected(reason.ok())),
            cmd = commands.recv() => on_command(s, out, cmd).await,
            wake = s.inbox.next() => deliver(s, out, wake).await,
        };
        if let Err(d) = step {
            return d;
        }
    }
}

/// Runs one client command.
async fn on_command(
    s: &mut Session,
    out: &mut SioOut,
    cmd: Option<Inbound>,
) -> Result<(), Disconnect> {
    match cmd {
        // The handlers went away with the socket.
        None => Err(Disconnect::CLIENT_CLOSED),
        // Boxed: commands are rare next to deliveries, and their futures (store reads, replay)
        // would otherwise make every idle session's task that much larger.
        Some(Inbound::Command(c)) => {
            Box::pin(s.command(c, out)).await?;
            out.flush().await
        }
        Some(Inbound::Invalid(e)) => {
            s.invalid(e, None, out).await?;
            out.flush().await
        }
    }
}

/// Hands what the inbox woke the session for, and everything else already ready, to the socket.
async fn deliver(s: &mut Session, out: &mut SioOut, wake: Wake) -> Result<(), Disconnect> {
    s.wake(wake, out).await?;
    s.drain_ready(out, DRAIN_BUDGET).await?;
    out.flush().await
}

/// The session's end for socketioxide's disconnect reason (`None`: the socket was dropped
/// without one).
fn disconnected(reason: Option<DisconnectReason>) -> Disconnect {
    match reason {
        Some(DisconnectReason::HeartbeatTimeout) => Disconnect::PONG_TIMEOUT,
        Some(DisconnectReason::ClosingServer) => Disconnect::SHUTDOWN,
        Some(
            DisconnectReason::TransportError
            | DisconnectReason::PacketParsingError
            | DisconnectReason::MultipleHttpPollingError
            | DisconnectReason::ServerNSDisconnect,
        ) => Disconnect::TRANSPORT_ERROR,
        Some(DisconnectReason::TransportClose | DisconnectReason::ClientNSDisconnect) | None => {
            Disconnect::CLIENT_CLOSED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socketioxide_reasons_map_to_the_stream_endings() {
        assert_eq!(
            disconnected(Some(DisconnectReason::TransportClose)),
            Disconnect::CLIENT_CLOSED
        );
        assert_eq!(
            disconnected(Some(DisconnectReason::ClientNSDisconnect)),
            Disconnect::CLIENT_CLOSED
        );
        assert_eq!(
            disconnected(Some(DisconnectReason::HeartbeatTimeout)),
            Disconnect::PONG_TIMEOUT
        );
        assert_eq!(
            disconnected(Some(DisconnectReason::ClosingServer)),
            Disconnect::SHUTDOWN
        );
        assert_eq!(
            disconnected(Some(DisconnectReason::PacketParsingError)),
            Disconnect::TRANSPORT_ERROR
        );
        assert_eq!(disconnected(None), Disconnect::CLIENT_CLOSED);
    }
}
