//! One realtime connection: a single task that owns the socket and every subscription.
//!
//! It waits on, in order of priority: shutdown (close 1001), the token's expiry (close 4001
//! `token_expired`), the client's frames, answers of the sends it started, the hub's events for
//! the spaces it joined, and a keep-alive ping timer. Event bytes come from the hub already
//! serialized and are written as they are. A subscription that falls behind its queue (`Lagged`)
//! closes the connection with 4008: a slow client never slows the space or other subscribers.
//!
//! Bounds, so that nothing a client does grows a session without limit: at most
//! `max_spaces_per_session` subscriptions, and `delivered` / `last_typing` only for those (cleaned
//! on leave); at most `MAX_INFLIGHT_SENDS` sends awaiting their ack; client frames of at most
//! `MAX_FRAME_BYTES` (close 1009 beyond); written bytes wait for the socket (see `Out`); a peer
//! whose pong does not come back within one ping interval is closed (4002).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use spacecast_engine::hub::HubItem;
use spacecast_engine::model::{Seq, SpaceId};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::StreamMap;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use warp::ws::{Message, WebSocket};

use super::close;
use super::frames::{self, ClientFrame, FrameError};
use crate::app::AppRef;
use crate::auth::{AuthError, User};
use crate::connections::ConnectionPermit;

/// Sends a session may have waiting for their ack at once.
const MAX_INFLIGHT_SENDS: usize = 64;
/// Longest a write may stay blocked on a client that does not read.
const WRITE_STALL: Duration = Duration::from_secs(15);
/// Longest the close frame to a peer that stopped answering pings may take.
const UNRESPONSIVE_CLOSE: Duration = Duration::from_secs(1);

/// Why a session ended, for the close metric.
#[derive(Clone, Copy)]
pub(super) enum End {
    ClientClosed,
    SlowConsumer,
    Shutdown,
    Error,
    /// The token's `exp` passed without a refresh.
    TokenExpired,
    /// A ping went unanswered for a whole interval.
    PongTimeout,
    /// A client frame exceeded `MAX_FRAME_BYTES`.
    TooBig,
}

impl End {
    fn label(self) -> &'static str {
        match self {
            End::ClientClosed => "client",
            End::SlowConsumer => "slow_consumer",
            End::Shutdown => "shutdown",
            End::Error => "error",
            End::TokenExpired => "token_expired",
            End::PongTimeout => "pong_timeout",
            End::TooBig => "message_too_big",
        }
    }
}

/// The socket's write half.
///
/// Bytes in memory are bounded per session: tungstenite's sink buffers frames until
/// `write_buffer_size` (128 KiB), then writes to the socket; when the socket would block, the
/// frame is kept and the *next* `feed` waits (`poll_ready` flushes first) until the socket drains,
/// under [`WRITE_STALL`]. So a session holds at most that buffer plus one frame, whatever it is
/// writing (live events, replay pages, acks); a client that reads nothing is closed after 15 s.
pub(super) struct Out {
    sink: SplitSink<WebSocket, Message>,
}

impl Out {
    /// Writes one text frame.
    ///
    /// # Errors
    /// The connection is gone.
    pub(super) async fn text(&mut self, bytes: &Bytes) -> Result<(), End> {
        self.feed(bytes).await?;
        self.flush().await
    }

    /// Queues one text frame without flushing, so a batch of events costs one write.
    pub(super) async fn feed(&mut self, bytes: &Bytes) -> Result<(), End> {
        // warp's text frames own a String: this copies the shared bytes once per subscriber,
        // but serialization happened once, in the hub.
        let text = std::str::from_utf8(bytes).map_err(|_| End::Error)?;
        self.feed_message(Message::text(text)).await
    }

    async fn feed_message(&mut self, msg: Message) -> Result<(), End> {
        unless_stalled(self.sink.feed(msg)).await
    }

    /// A keep-alive ping, under the same stall rule as every write.
    async fn ping(&mut self) -> Result<(), End> {
        self.feed_message(Message::ping(Bytes::new())).await?;
        self.flush().await
    }

    /// Writes what is queued. A client that has not read anything for [`WRITE_STALL`] is closed
    /// as slow, even if its queue has not overflowed (quiet spaces, or shutdown).
    pub(super) async fn flush(&mut self) -> Result<(), End> {
        unless_stalled(self.sink.flush()).await
    }

    /// Sends a close frame and closes; gives up (dropping the connection) if the client does not
    /// take it within `within`.
    async fn close(&mut self, code: u16, reason: &'static str, within: Duration) {
        let close = async {
            let _ = self.sink.send(Message::close_with(code, reason)).await;
            let _ = self.sink.close().await;
        };
        let _ = tokio::time::timeout(within, close).await;
    }
}

/// A live session's state.
pub(super) struct Session {
    pub app: AppRef,
    pub user: User,
    pub id: u64,
    pub subs: StreamMap<SpaceId, BroadcastStream<HubItem>>,
    /// Highest seq written to the client, per joined space.
    pub delivered: HashMap<SpaceId, Seq>,
    pub results_tx: mpsc::Sender<Bytes>,
    pub send_permits: Arc<Semaphore>,
    /// Last typing relay, per joined space.
    pub last_typing: HashMap<SpaceId, Instant>,
    /// Fires at the token's `exp`; `refresh` moves it.
    pub expires: Pin<Box<tokio::time::Sleep>>,
}

/// Runs a connection to its end. Authentication already happened; a failure closes with 4001.
/// `permit` is the connection's place under the node's and the user's caps, given back when this
/// returns.
pub async fn run(
    app: AppRef,
    user: Result<User, AuthError>,
    socket: WebSocket,
    permit: ConnectionPermit,
) {
    let _permit = permit;
    let (sink, mut stream) = socket.split();
    let mut out = Out { sink };
    let user = match user {
        Ok(u) => u,
        Err(e) => {
            app.metrics
                .ws_closed
                .with_label_values(&["auth_failed"])
                .inc();
            let reason = if e == AuthError::Missing {
                "authentication required"
            } else {
                "invalid or expired token"
            };
            out.close(close::AUTH_FAILED, reason, WRITE_STALL).await;
            return;
        }
    };
    let gauge = app.metrics.ws_sessions.with_label_values(&["native"]);
    gauge.inc();
    let (results_tx, mut results_rx) = mpsc::channel(MAX_INFLIGHT_SENDS);
    let mut s = Session {
        id: app.next_session_id(),
        app: app.clone(),
        subs: StreamMap::new(),
        delivered: HashMap::new(),
        results_tx,
        send_permits: Arc::new(Semaphore::new(MAX_INFLIGHT_SENDS)),
        last_typing: HashMap::new(),
        expires: Box::pin(tokio::time::sleep_until(super::refresh::deadline(user.exp))),
        user,
    };
    let session_id = format!("{}-{}", app.config.node_id, s.id);
    let mut shutdown = app.shutdown.clone();
    let every = app.config.ws_ping_interval;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    // After a long blocked write, one late tick, not a burst (a burst would see its own ping
    // unanswered).
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A ping is out and no pong came back since.
    let mut awaiting_pong = false;

    let mut end = match out
        .text(&frames::hello(&session_id, &app.config.node_id))
        .await
    {
        Ok(()) => End::ClientClosed,
        Err(e) => e,
    };
    if !matches!(end, End::Error) {
        end = loop {
            tokio::select! {
                biased;
                () = stopped(&mut shutdown) => break End::Shutdown,
                () = &mut s.expires => break End::TokenExpired,
                incoming = stream.next() => match incoming {
                    None => break End::ClientClosed,
                    Some(Err(e)) if too_big(&e) => break End::TooBig,
                    Some(Err(_)) => break End::ClientClosed,
                    Some(Ok(msg)) if msg.is_close() => break End::ClientClosed,
                    Some(Ok(msg)) if msg.is_pong() => awaiting_pong = false,
                    Some(Ok(msg)) if msg.is_text() => {
                        let text = msg.to_str().unwrap_or_default();
                        if let Err(e) = s.on_frame(&mut out, text).await {
                            break e;
                        }
                    }
                    Some(Ok(msg)) if msg.is_binary() => {
                        let e = FrameError::new("invalid_frame", "Frames must be JSON text");
                        if let Err(e) = out.text(&frames::error(None, None, &e)).await {
                            break e;
                        }
                    }
                    Some(Ok(_)) => {} // ping/pong are answered by the WebSocket layer
                },
                Some(result) = results_rx.recv() => {
                    if let Err(e) = out.text(&result).await {
                        break e;
                    }
                }
                Some((space_id, item)) = s.subs.next(), if !s.subs.is_empty() => {
                    if let Err(e) = s.on_hub_item(&mut out, space_id, item).await {
                        break e;
                    }
                }
                _ = ping.tick() => {
                    if awaiting_pong {
                        break End::PongTimeout;
                    }
                    if let Err(e) = out.ping().await {
                        break e;
                    }
                    awaiting_pong = true;
                }
            }
        };
    }
    // Stop receiving before the (possibly slow) close, and count the end when it is decided.
    let spaces: Vec<SpaceId> = s.subs.keys().copied().collect();
    drop(s.subs);
    for space in spaces {
        app.engine.hub().release(space);
    }
    tracing::debug!(
        session = s.id,
        reason = end.label(),
        "realtime session ending"
    );
    app.metrics
        .ws_closed
        .with_label_values(&[end.label()])
        .inc();
    match end {
        End::Shutdown => {
            out.close(close::GOING_AWAY, "server shutting down", WRITE_STALL)
                .await;
        }
        End::SlowConsumer => {
            out.close(close::SLOW_CONSUMER, "slow consumer", WRITE_STALL)
                .await;
        }
        End::TokenExpired => {
            out.close(close::AUTH_FAILED, "token_expired", WRITE_STALL)
                .await;
        }
        End::PongTimeout => {
            out.close(close::PONG_TIMEOUT, "pong timeout", UNRESPONSIVE_CLOSE)
                .await;
        }
        End::TooBig => {
            out.close(close::TOO_BIG, "message too big", WRITE_STALL)
                .await;
        }
        End::ClientClosed | End::Error => {
            let _ = out.sink.close().await;
        }
    }
    gauge.dec();
}

/// Whether a read failed because the client's message exceeded `MAX_FRAME_BYTES` (tungstenite
/// refuses it before buffering it whole).
fn too_big(e: &warp::Error) -> bool {
    use tungstenite::error::{CapacityError, Error as WsError};
    std::error::Error::source(e)
        .and_then(|inner| inner.downcast_ref::<WsError>())
        .is_some_and(|inner| {
            matches!(
                inner,
                WsError::Capacity(CapacityError::MessageTooLong { .. })
            )
        })
}

/// Runs a socket write; one that cannot complete within [`WRITE_STALL`] ends the session as a
/// slow consumer. The timer is armed only when the write does not complete at once, which is
/// the rare case: the hot path pays one poll, not a timer per frame.
async fn unless_stalled<E>(
    write: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), End> {
    let mut write = std::pin::pin!(write);
    let done = match futures::poll!(write.as_mut()) {
        std::task::Poll::Ready(done) => done,
        std::task::Poll::Pending => tokio::time::timeout(WRITE_STALL, write)
            .await
            .map_err(|_| End::SlowConsumer)?,
    };
    done.map_err(|_| End::Error)
}

/// Resolves once shutdown has started.
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

impl Session {
    /// Handles one client text frame. Invalid frames get an `error` frame; only a dead socket
    /// ends the session.
    async fn on_frame(&mut self, out: &mut Out, text: &str) -> Result<(), End> {
        let frame = match frames::parse(text) {
            Ok(f) => f,
            Err((e, local_id)) => {
                self.app
                    .metrics
                    .ws_frames_in
                    .with_label_values(&["invalid"])
                    .inc();
                return out.text(&frames::error(local_id.as_ref(), None, &e)).await;
            }
        };
        // Each command's outcome, with the `space_id` (as sent) its error frame names.
        let (kind, result) = match frame {
            ClientFrame::Join {
                space_id,
                since_seq,
            } => (
                "join",
                self.join(out, &space_id, since_seq)
                    .await
                    .map_err(|e| (e, Some(space_id))),
            ),
            ClientFrame::Leave { space_id } => (
                "leave",
                self.leave(out, &space_id)
                    .await
                    .map_err(|e| (e, Some(space_id))),
            ),
            ClientFrame::Send {
                space_id,
                content,
                local_id,
            } => (
                "send",
                self.send(out, &space_id, content, local_id)
                    .await
                    .map_err(|e| (e, Some(space_id))),
            ),
            ClientFrame::Typing { space_id } => (
                "typing",
                self.typing(&space_id).map_err(|e| (e, Some(space_id))),
            ),
            ClientFrame::Refresh { token } => (
                "refresh",
                self.refresh(out, &token).await.map_err(|e| (e, None)),
            ),
        };
        self.app
            .metrics
            .ws_frames_in
            .with_label_values(&[kind])
            .inc();
        match result {
            Ok(()) => Ok(()),
            Err((Reply::Closed(end), _)) => Err(end),
            Err((Reply::Refused(e, local_id), space_id)) => {
                out.text(&frames::error(local_id.as_ref(), space_id.as_deref(), &e))
                    .await
            }
        }
    }

    /// Writes one hub item, skipping events the client already has.
    async fn on_hub_item(
        &mut self,
        out: &mut Out,
        space_id: SpaceId,
        item: Result<HubItem, BroadcastStreamRecvError>,
    ) -> Result<(), End> {
        match item {
            Ok(HubItem::Events(batch)) => {
                let Some(first) = batch.first() else {
                    return Ok(());
                };
                let last = self.delivered.get(&space_id).copied().unwrap_or(0);
                if first.event.seq > last + 1 {
                    // Published events are durable: repair any gap from the store first.
                    self.replay(out, space_id, last).await?;
                }
                let delivered = self.delivered.get(&space_id).copied().unwrap_or(0);
                let mut last = delivered;
                let mut written = 0;
                for p in batch.iter().filter(|p| p.event.seq > delivered) {
                    out.feed(p.native_frame()).await?;
                    last = p.event.seq;
                    written += 1;
                }
                if written > 0 {
                    out.flush().await?;
                    self.delivered.insert(space_id, last);
                    self.app
                        .metrics
                        .fanout_deliveries
                        .with_label_values(&["native"])
                        .inc_by(written);
                }
                Ok(())
            }
            Ok(HubItem::Typing(t)) => {
                if t.origin_session == self.id {
                    return Ok(());
                }
                out.text(&t.frame).await
            }
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                // Counted by `ws_closed{reason="slow_consumer"}`; a client can cause it at will.
                tracing::debug!(session = self.id, user = %self.user.id(), %space_id, skipped = n, "closing slow consumer");
                Err(End::SlowConsumer)
            }
        }
    }
}

/// The outcome of a refused client command.
pub(super) enum Reply {
    /// Refused: answer with an `error` frame (with the command's `local_id`, if any).
    Refused(FrameError, Option<serde_json::Value>),
    /// The socket failed while answering.
    Closed(End),
}

impl From<FrameError> for Reply {
    fn from(e: FrameError) -> Self {
        Reply::Refused(e, None)
    }
}

impl From<End> for Reply {
    fn from(e: End) -> Self {
        Reply::Closed(e)
    }
}
