//! One native stream connection: a single task that owns the WebSocket and drives its
//! [`Session`].
//!
//! It waits on, in order of priority: the session's end (shutdown → 1001, the token's expiry →
//! 4001 `token_expired`), the client's frames, the session's inbox (send answers, hub events),
//! the write-delay timer, and a keep-alive ping timer.
//!
//! **Coalescing.** A wake-up that finds events ready renders them all (up to
//! [`DRAIN_BUDGET`] hub items) into the WebSocket's write buffer and flushes once: under load, one
//! socket write carries many events, so the cost per delivery falls as the rate rises. With
//! `--ws-write-delay` the flush waits that long after the first ready event, to gather more at
//! moderate rates (off by default; it adds its length to every delivery's latency).
//!
//! **Zero copy.** An event's frame is rendered once for every native subscriber
//! ([`super::frames::NATIVE`]); each connection's message points at those shared bytes
//! (`Utf8Bytes` is a `Bytes`), and the only per-connection copy is into that connection's own
//! write buffer, the one that gathers frames for a single write.
//!
//! **Bounded.** Bytes in memory are bounded per connection: frames gather in the WebSocket's
//! write buffer up to [`WRITE_BUFFER`], then go to the socket; when the socket would block, the
//! next write waits until it drains, under [`WRITE_STALL`] (then 4008). A session therefore holds
//! at most that buffer plus one frame, whatever it writes (live events, replay pages, acks). A
//! peer whose pong does not come back within one ping interval is closed (4002); a client frame
//! over `MAX_FRAME_BYTES` closes with 1009.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use super::frames;
use crate::app::AppRef;
use crate::auth::{AuthError, User};
use crate::connections::ConnectionPermit;
use crate::realtime::{CommandError, Disconnect, Outbox, Output, Session};

/// Longest a write may stay blocked on a client that does not read.
pub const WRITE_STALL: Duration = Duration::from_secs(15);
/// Bytes of frames gathered before they go to the socket without waiting for the flush.
pub const WRITE_BUFFER: usize = 64 * 1024;
/// The WebSocket read buffer: allocated per connection, so small; a client frame larger than it
/// is read in several steps.
pub const READ_BUFFER: usize = 4 * 1024;
/// Hub items handled per wake-up before the socket is flushed and other connections get a turn.
const DRAIN_BUDGET: usize = 256;

/// The WebSocket settings of a native stream connection.
pub fn ws_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER + super::MAX_FRAME_BYTES + 64 * 1024)
        .max_message_size(Some(super::MAX_FRAME_BYTES))
        .max_frame_size(Some(super::MAX_FRAME_BYTES))
}

/// The connection's write side: the session's [`Outbox`] for the native wire format.
struct NativeOut<S> {
    ws: WebSocketStream<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Outbox for NativeOut<S> {
    async fn put(&mut self, out: Output<'_>) -> Result<(), Disconnect> {
        let text = frames::render(&out);
        unless_stalled(self.ws.feed(Message::Text(text))).await
    }

    async fn flush(&mut self) -> Result<(), Disconnect> {
        unless_stalled(self.ws.flush()).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> NativeOut<S> {
    /// Sends `end`'s close frame (if it has one) and closes; gives up, dropping the connection,
    /// if the client does not take it in time.
    async fn close(&mut self, end: Disconnect) {
        let frame = end.code.map(|code| CloseFrame {
            code: CloseCode::from(code),
            reason: end.reason.into(),
        });
        let _ = tokio::time::timeout(end.close_within(), self.ws.close(frame)).await;
    }
}

/// Runs a connection to its end. Authentication already happened; a failure closes with 4001.
/// `permit` is the connection's place under the node's and the user's caps, given back when this
/// returns.
pub async fn run<S>(
    app: AppRef,
    user: Result<User, AuthError>,
    ws: WebSocketStream<S>,
    permit: ConnectionPermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let _permit = permit;
    let mut out = NativeOut { ws };
    let user = match user {
        Ok(u) => u,
        Err(e) => {
            app.metrics
                .ws_closed
                .with_label_values(&["auth_failed"])
                .inc();
            out.close(if e == AuthError::Missing {
                Disconnect::AUTH_MISSING
            } else {
                Disconnect::AUTH_INVALID
            })
            .await;
            return;
        }
    };
    let gauge = app.metrics.ws_sessions.with_label_values(&["native"]);
    gauge.inc();
    let mut session = Session::new(app.clone(), user, "native");
    let end = drive(&mut session, &mut out, &app).await;
    // Stop receiving before the (possibly slow) close, and count the end when it is decided.
    session.close();
    tracing::debug!(
        session = session.id,
        reason = end.label,
        "realtime session ending"
    );
    app.metrics.ws_closed.with_label_values(&[end.label]).inc();
    drop(session);
    out.close(end).await;
    gauge.dec();
}

/// The connection's loop; returns why it ended.
async fn drive<S>(s: &mut Session, out: &mut NativeOut<S>, app: &AppRef) -> Disconnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let session_id = s.session_id();
    let hello = Output::Hello {
        session_id: &session_id,
        node_id: &app.config.node_id,
    };
    if let Err(d) = write_now(out, hello).await {
        return d;
    }
    let every = app.config.ws_ping_interval;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    // After a long blocked write, one late tick, not a burst (a burst would see its own ping
    // unanswered).
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A ping is out and no pong came back since.
    let mut awaiting_pong = false;
    let delay = app.config.ws_write_delay;
    // Armed when events wait in the write buffer for the write delay to pass.
    let mut flush_timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut armed = false;
    loop {
        let step = tokio::select! {
            biased;
            d = s.ending.wait() => Err(d),
            incoming = out.ws.next() => on_incoming(s, out, incoming, &mut awaiting_pong).await,
            wake = s.inbox.next() => {
                deliver(s, out, wake, delay, &mut flush_timer, &mut armed).await
            }
            () = wait_armed(&mut flush_timer), if armed => {
                armed = false;
                flush_ready(s, out).await
            }
            _ = ping.tick() => {
                if awaiting_pong {
                    Err(Disconnect::PONG_TIMEOUT)
                } else {
                    awaiting_pong = true;
                    ping_now(out).await
                }
            }
        };
        if let Err(d) = step {
            return d;
        }
    }
}

/// Handles what the client sent.
async fn on_incoming<S>(
    s: &mut Session,
    out: &mut NativeOut<S>,
    incoming: Option<Result<Message, tungstenite::Error>>,
    awaiting_pong: &mut bool,
) -> Result<(), Disconnect>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    match incoming {
        None => Err(Disconnect::CLIENT_CLOSED),
        Some(Err(e)) if too_big(&e) => Err(Disconnect::MESSAGE_TOO_BIG),
        Some(Err(_)) | Some(Ok(Message::Close(_))) => Err(Disconnect::CLIENT_CLOSED),
        Some(Ok(Message::Pong(_))) => {
            *awaiting_pong = false;
            Ok(())
        }
        Some(Ok(Message::Text(text))) => {
            match frames::parse(text.as_str()) {
                Ok(cmd) => s.command(cmd, out).await?,
                Err((e, correlation)) => s.invalid(e, correlation, out).await?,
            }
            out.flush().await
        }
        Some(Ok(Message::Binary(_))) => {
            let e = CommandError::new("invalid_frame", "Frames must be JSON text");
            s.invalid(e, None, out).await?;
            out.flush().await
        }
        // The WebSocket layer queues the pong of a ping; it goes out with this flush.
        Some(Ok(Message::Ping(_) | Message::Frame(_))) => out.flush().await,
    }
}

/// Writes what the inbox woke the session for, with everything else already ready; flushes
/// now, or arms the write delay.
async fn deliver<S>(
    s: &mut Session,
    out: &mut NativeOut<S>,
    wake: crate::realtime::Wake,
    delay: Duration,
    flush_timer: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    armed: &mut bool,
) -> Result<(), Disconnect>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    s.wake(wake, out).await?;
    if delay.is_zero() {
        return flush_ready(s, out).await;
    }
    if !*armed {
        let at = tokio::time::Instant::now() + delay;
        match flush_timer {
            Some(t) => t.as_mut().reset(at),
            None => *flush_timer = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        *armed = true;
    }
    Ok(())
}

/// Handles every wake already waiting (bounded), then writes them all in one flush.
async fn flush_ready<S>(s: &mut Session, out: &mut NativeOut<S>) -> Result<(), Disconnect>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    s.drain_ready(out, DRAIN_BUDGET).await?;
    out.flush().await
}

async fn wait_armed(timer: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn write_now<S>(out: &mut NativeOut<S>, o: Output<'_>) -> Result<(), Disconnect>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    out.put(o).await?;
    out.flush().await
}

/// A keep-alive ping, under the same stall rule as every write.
async fn ping_now<S>(out: &mut NativeOut<S>) -> Result<(), Disconnect>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    unless_stalled(out.ws.feed(Message::Ping(Bytes::new()))).await?;
    out.flush().await
}

/// Whether a read failed because the client's message exceeded `MAX_FRAME_BYTES` (tungstenite
/// refuses it before buffering it whole).
fn too_big(e: &tungstenite::Error) -> bool {
    use tungstenite::error::{CapacityError, Error as WsError};
    matches!(e, WsError::Capacity(CapacityError::MessageTooLong { .. }))
}

/// Runs a socket write; one that cannot complete within [`WRITE_STALL`] ends the session as a
/// slow consumer. The timer is armed only when the write does not complete at once, which is
/// the rare case: the hot path pays one poll, not a timer per frame.
async fn unless_stalled<E>(write: impl Future<Output = Result<(), E>>) -> Result<(), Disconnect> {
    let mut write = std::pin::pin!(write);
    let done = match futures::poll!(write.as_mut()) {
        Poll::Ready(done) => done,
        Poll::Pending => tokio::time::timeout(WRITE_STALL, write)
            .await
            .map_err(|_| Disconnect::SLOW_CONSUMER)?,
    };
    done.map_err(|_| Disconnect::TRANSPORT_ERROR)
}
