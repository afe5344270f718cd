//! One native stream connection: a single task that owns the WebSocket and drives its
//! [`Session`].
//!
//! It waits on, in order of priority: the session's end (shutdown → 1001, the token's expiry →
//! 4001 `token_expired`), the client's frames, the write-delay timer, the session's inbox (send
//! answers, hub events), and a keep-alive ping timer.
//!
//! **Coalescing.** A wake-up that finds events ready renders them all (up to
//! [`DRAIN_BUDGET`] hub items) into the WebSocket's write buffer and flushes once: under load, one
//! socket write carries many events, so the cost per delivery falls as the rate rises. With
//! `--ws-write-delay` the flush waits that long after the first ready event, to gather more at
//! moderate rates (off by default; it adds its length to every delivery's latency).
//!
//! **Zero copy.** An event's frame is rendered once for every native subscriber
//! ([`super::frames::NATIVE`]); each connection's message points at those shared bytes, and the
//! WebSocket layer (tokio-websockets) queues a small header beside each payload and writes the
//! queue with one vectored write: no payload is copied per connection, and no write buffer stays
//! allocated after a burst.
//!
//! **Bounded.** Bytes in memory are bounded per connection: queued frames go to the socket once
//! they pass [`WRITE_BUFFER`] bytes; when the socket would block, the next write waits until it
//! drains, under [`WRITE_STALL`] (then 4008). A session therefore holds at most that much plus
//! one frame, whatever it writes (live events, replay pages, acks). A peer whose pong does not
//! come back within one ping interval is closed (4002); a client frame over `MAX_FRAME_BYTES`
//! closes with 1009.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_websockets::{CloseCode, Message, WebSocketStream};

use super::frames;
use crate::app::AppRef;
use crate::auth::{AuthError, User};
use crate::connections::ConnectionPermit;
use crate::realtime::{CommandError, Disconnect, Outbox, Output, Session};

/// Longest a write may stay blocked on a client that does not read.
pub const WRITE_STALL: Duration = Duration::from_secs(15);
/// Bytes of queued frames that go to the socket without waiting for the flush.
pub const WRITE_BUFFER: usize = 64 * 1024;
/// Hub items handled per wake-up before the socket is flushed and other connections get a turn.
const DRAIN_BUDGET: usize = 256;

/// A native stream connection's WebSocket over `io` (after the handshake).
pub fn websocket<S: AsyncRead + AsyncWrite + Unpin>(io: S) -> WebSocketStream<S> {
    tokio_websockets::ServerBuilder::new()
        .config(tokio_websockets::Config::default().flush_threshold(WRITE_BUFFER))
        .limits(tokio_websockets::Limits::default().max_payload_len(Some(super::MAX_FRAME_BYTES)))
        .serve(io)
}

/// The connection's write side: the session's [`Outbox`] for the native wire format.
struct NativeOut<S> {
    ws: WebSocketStream<S>,
    /// Hub frames queued since the last flush.
    unflushed: u32,
    /// `spacecast_fanout_writes_total{protocol="native"}`.
    writes: prometheus::IntCounter,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Outbox for NativeOut<S> {
    async fn put(&mut self, out: Output<'_>) -> Result<(), Disconnect> {
        if matches!(
            out,
            Output::Event(_) | Output::Typing(_) | Output::User(_) | Output::Presence(_)
        ) {
            self.unflushed += 1;
        }
        let text = frames::render(&out);
        unless_stalled(self.ws.feed(Message::text(text))).await
    }

    async fn flush(&mut self) -> Result<(), Disconnect> {
        if self.unflushed > 0 {
            self.unflushed = 0;
            self.writes.inc();
        }
        unless_stalled(self.ws.flush()).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> NativeOut<S> {
    /// Sends `end`'s close frame (if it has one) and closes; gives up, dropping the connection,
    /// if the client does not take it in time.
    async fn close(&mut self, end: Disconnect) {
        let close = async {
            // Our codes are registered or private (4000–4999) and our reasons short, so the
            // close frame is valid; one that is not is skipped rather than sent.
            if let Some(code) = end.code.and_then(|c| CloseCode::try_from(c).ok())
                && !code.is_reserved()
                && end.reason.len() <= 123
            {
                let _ = self.ws.send(Message::close(Some(code), end.reason)).await;
            }
            let _ = self.ws.close().await;
        };
        let _ = tokio::time::timeout(end.close_within(), close).await;
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
    let mut out = NativeOut {
        ws,
        unflushed: 0,
        writes: app.metrics.fanout_writes.with_label_values(&["native"]),
    };
    let user = match user {
        Ok(u) => u,
        Err(e) => {
            app.metrics
                .ws_closed
                .with_label_values(&["native", "auth_failed"])
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
    let end = match session.subscribe_user().await {
        Ok(()) => drive(&mut session, &mut out, &app).await,
        Err(d) => d,
    };
    session.ended(end);
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
            // Before the inbox: a busy inbox must not hold back what is already due.
            () = wait_armed(&mut flush_timer), if armed => {
                armed = false;
                flush_ready(s, out).await
            }
            wake = s.inbox.next() => {
                deliver(s, out, wake, delay, &mut flush_timer, &mut armed).await
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
    incoming: Option<Result<Message, tokio_websockets::Error>>,
    awaiting_pong: &mut bool,
) -> Result<(), Disconnect>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let msg = match incoming {
        None => return Err(Disconnect::CLIENT_CLOSED),
        // The WebSocket layer has already queued its own 1009 close frame.
        Some(Err(tokio_websockets::Error::PayloadTooLong { .. })) => {
            return Err(Disconnect::MESSAGE_TOO_BIG);
        }
        Some(Err(_)) => return Err(Disconnect::CLIENT_CLOSED),
        Some(Ok(msg)) => msg,
    };
    if msg.is_close() {
        Err(Disconnect::CLIENT_CLOSED)
    } else if msg.is_pong() {
        *awaiting_pong = false;
        Ok(())
    } else if let Some(text) = msg.as_text() {
        {
            match frames::parse(text) {
                // Boxed: commands are rare next to deliveries, and their futures (store reads,
                // replay) would otherwise make every idle connection's task that much larger.
                Ok(cmd) => Box::pin(s.command(cmd, out)).await?,
                Err((e, correlation)) => s.invalid(e, correlation, out).await?,
            }
            out.flush().await
        }
    } else if msg.is_binary() {
        let e = CommandError::new("invalid_frame", "Frames must be JSON text");
        s.invalid(e, None, out).await?;
        out.flush().await
    } else {
        // A ping: the WebSocket layer queued its pong; it goes out with this flush.
        out.flush().await
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
    // Everything ready joins the pending write now, so the loop turns once per wake-up, not
    // once per item.
    s.drain_ready(out, DRAIN_BUDGET).await?;
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
    unless_stalled(out.ws.feed(Message::ping(Bytes::new()))).await?;
    out.flush().await
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
