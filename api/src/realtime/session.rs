//! The session core: what a realtime client may do, whatever its protocol.
//!
//! A [`Session`] holds one client's subscriptions and rules; it never touches a socket. Its
//! protocol adapter owns the connection, turns client frames into [`Command`]s, and renders the
//! session's [`Output`]s through its [`Outbox`]. The adapter's loop waits on, in order of
//! priority: [`Ending::wait`] (shutdown, the token's expiry), its own client frames,
//! [`Inbox::next`] (answers of sends, hub items of joined spaces), its own timers; it hands what
//! it got to [`Session::command`] / [`Session::wake`], then calls [`Session::drain_ready`] so
//! everything already waiting goes out in the same socket write.
//!
//! Rules kept here, so every protocol has them:
//! - events of a space reach the client in seq order, never twice, without gaps: a gap (the hub
//!   delivers only what was published after subscribing) is repaired from the store first;
//! - a subscription that falls behind its queue (`Lagged`) ends the session as a slow consumer
//!   (4008): a slow client never slows the space or other subscribers;
//! - at most `max_spaces_per_session` subscriptions, and per-space state only for those;
//! - at most [`MAX_INFLIGHT_SENDS`] sends awaiting their ack;
//! - every session receives its user's channel ([`Session::subscribe_user`], called by the
//!   adapter at connect; released at close): notifications and other events for that user
//!   only, under the same slow-consumer rule (`Lagged` ends the session, 4008);
//! - the session ends at its token's `exp` unless refreshed.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use prometheus::IntCounter;
use spacecast_engine::hub::HubItem;
use spacecast_engine::model::{Message, Seq, SpaceId};
use spacecast_engine::users::UserItem;
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_stream::StreamMap;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::output::{CommandError, Correlation, Outbox, Output};
use super::{Command, Disconnect};
use crate::app::AppRef;
use crate::auth::User;

/// Sends a session may have waiting for their ack at once.
pub const MAX_INFLIGHT_SENDS: usize = 64;

/// The outcome of a send, back from the task that waited for it.
#[derive(Debug)]
pub(super) struct SendOutcome {
    pub correlation: Option<Correlation>,
    /// The space as the client named it (for the error's `space_id`).
    pub raw_space: String,
    pub result: Result<Message, CommandError>,
    /// When the session received the send (`spacecast_realtime_op_duration_seconds{op="send"}`
    /// runs until its ack or error).
    pub started: Instant,
}

/// One joined space's hub items, as the session receives them.
pub(super) type Subscription = BoxStream<'static, Result<HubItem, BroadcastStreamRecvError>>;

/// The items of a hub subscription; each one taken records the subscriber's queue depth at that
/// moment (items waiting, the taken one included) in
/// `spacecast_subscriber_queue_depth_max{protocol}`. Ends when the hub drops the space.
pub(super) fn subscription(
    rx: broadcast::Receiver<HubItem>,
    metrics: spacecast_observability::Metrics,
    protocol: &'static str,
) -> Subscription {
    futures::stream::unfold((rx, metrics), move |(mut rx, metrics)| async move {
        let item = match rx.recv().await {
            Ok(item) => {
                metrics.subscriber_queue_max(protocol).observe(rx.len() + 1);
                Ok(item)
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                metrics.subscriber_queue_max(protocol).observe(rx.len());
                Err(BroadcastStreamRecvError::Lagged(n))
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((item, (rx, metrics)))
    })
    .boxed()
}

/// The session's user-channel items, as the session receives them.
pub(super) type UserSubscription = BoxStream<'static, Result<UserItem, BroadcastStreamRecvError>>;

/// The items of a user-channel subscription. Ends if the channel is dropped.
fn user_subscription(rx: broadcast::Receiver<UserItem>) -> UserSubscription {
    futures::stream::unfold(rx, |mut rx| async move {
        let item = match rx.recv().await {
            Ok(item) => Ok(item),
            Err(broadcast::error::RecvError::Lagged(n)) => Err(BroadcastStreamRecvError::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((item, rx))
    })
    .boxed()
}

/// What ends a session from the inside: shutdown and the token's expiry.
pub struct Ending {
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Fires at the token's `exp`; `refresh` moves it.
    pub(super) expires: Pin<Box<tokio::time::Sleep>>,
}

impl Ending {
    /// Resolves with the reason once the session must end. Cancel-safe.
    pub async fn wait(&mut self) -> Disconnect {
        tokio::select! {
            biased;
            () = self.shutdown.as_mut() => Disconnect::SHUTDOWN,
            () = self.expires.as_mut() => Disconnect::TOKEN_EXPIRED,
        }
    }
}

/// The channel send answers come back on.
pub(super) type Results = (
    mpsc::Sender<Box<SendOutcome>>,
    mpsc::Receiver<Box<SendOutcome>>,
);

/// What the session waits on besides the client: the hub and the answers of its sends.
pub struct Inbox {
    pub(super) subs: StreamMap<SpaceId, Subscription>,
    /// Created by the first send (an idle session holds no channel).
    pub(super) results: Option<Results>,
    /// The user's channel, once [`Session::subscribe_user`] made it.
    pub(super) user: Option<UserSubscription>,
    /// Fires when the session's presence may change by itself (see `presence.rs`).
    pub(super) presence_timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Something for [`Session::wake`] to handle.
#[derive(Debug)]
pub struct Wake(WakeKind);

#[derive(Debug)]
enum WakeKind {
    Sent(Box<SendOutcome>),
    Hub(SpaceId, Result<HubItem, BroadcastStreamRecvError>),
    User(Result<UserItem, BroadcastStreamRecvError>),
    Presence,
}

impl Inbox {
    /// Waits for the next send answer, presence deadline, user-channel event or hub item.
    /// Cancel-safe; never resolves for a session with no subscription (user channel included),
    /// no send in flight and no presence deadline.
    pub async fn next(&mut self) -> Wake {
        let results = async {
            match &mut self.results {
                Some((_, rx)) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let user = async {
            match &mut self.user {
                Some(u) => u.next().await,
                None => std::future::pending().await,
            }
        };
        let presence = async {
            match &mut self.presence_timer {
                Some(t) => t.as_mut().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            Some(outcome) = results => Wake(WakeKind::Sent(outcome)),
            () = presence => Wake(WakeKind::Presence),
            Some(item) = user => Wake(WakeKind::User(item)),
            Some((space, item)) = self.subs.next(), if !self.subs.is_empty() => {
                Wake(WakeKind::Hub(space, item))
            }
        }
    }

    /// The next wake that is ready now, if any.
    fn ready(&mut self) -> Option<Wake> {
        self.next().now_or_never()
    }
}

/// One realtime client's state.
pub struct Session {
    pub app: AppRef,
    pub user: User,
    /// Process-unique; typing is not echoed to the session that sent it.
    pub id: u64,
    pub ending: Ending,
    pub inbox: Inbox,
    /// Highest seq given to the client, per joined space.
    pub(super) delivered: HashMap<SpaceId, Seq>,
    pub(super) send_permits: Arc<Semaphore>,
    /// Last typing relay, per joined space.
    pub(super) last_typing: HashMap<SpaceId, Instant>,
    /// `spacecast_fanout_deliveries_total{protocol}`, resolved once.
    deliveries: IntCounter,
    pub(super) protocol: &'static str,
    /// The session's presence (see `presence.rs`) and the status last given to its spaces.
    pub(super) presence: spacecast_engine::presence::SessionPresence,
    pub(super) presence_shown: spacecast_engine::presence::Status,
}

impl Session {
    /// A session of an authenticated `user` over `protocol` (the metrics label).
    pub fn new(app: AppRef, user: User, protocol: &'static str) -> Self {
        Session {
            id: app.next_session_id(),
            ending: Ending {
                shutdown: Box::pin(app.stop.clone().cancelled_owned()),
                expires: Box::pin(tokio::time::sleep_until(super::refresh::deadline(user.exp))),
            },
            inbox: Inbox {
                subs: StreamMap::new(),
                results: None,
                user: None,
                presence_timer: None,
            },
            delivered: HashMap::new(),
            send_permits: Arc::new(Semaphore::new(MAX_INFLIGHT_SENDS)),
            last_typing: HashMap::new(),
            deliveries: app.metrics.fanout_deliveries.with_label_values(&[protocol]),
            // Socket.IO's transport has its own heartbeat (Engine.IO ping/pong) and closes a
            // silent socket itself: its sessions do not time out here.
            presence: spacecast_engine::presence::SessionPresence::new(
                tokio::time::Instant::now(),
                protocol != "socketio",
            ),
            presence_shown: spacecast_engine::presence::Status::Online,
            protocol,
            user,
            app,
        }
    }

    /// Subscribes the session to its user's channel (see `spacecast_engine::users`); the
    /// adapter calls it once, at connect. Released by [`Session::close`].
    ///
    /// # Errors
    /// [`Disconnect::BUS_UNAVAILABLE`] when the subscription cannot be made (cluster mode, NATS
    /// unreachable): the session ends, and the client reconnects.
    pub async fn subscribe_user(&mut self) -> Result<(), Disconnect> {
        if self.inbox.user.is_some() {
            return Ok(());
        }
        match self.app.engine.subscribe_user(self.user.id()).await {
            Ok(rx) => {
                self.inbox.user = Some(user_subscription(rx));
                Ok(())
            }
            Err(e) => {
                tracing::debug!(session = self.id, error = %e, "could not subscribe to the user's channel");
                Err(Disconnect::BUS_UNAVAILABLE)
            }
        }
    }

    /// `{node_id}-{id}`: the session's name for clients and logs.
    pub fn session_id(&self) -> String {
        format!("{}-{}", self.app.config.node_id, self.id)
    }

    /// Handles one client command. A refused command is answered with an error output; only a
    /// failed transport ends the session.
    pub async fn command<O: Outbox>(
        &mut self,
        cmd: Command,
        out: &mut O,
    ) -> Result<(), Disconnect> {
        let kind = cmd.kind();
        let started = Instant::now();
        self.presence_frame(cmd.is_activity());
        let result = match cmd {
            Command::Join {
                space_id,
                since_seq,
            } => self
                .join(out, &space_id, since_seq)
                .await
                .map_err(|e| (e, None, Some(space_id))),
            Command::Leave { space_id } => self
                .leave(out, &space_id)
                .await
                .map_err(|e| (e, None, Some(space_id))),
            Command::Send {
                space_id,
                body,
                correlation,
            } => match self.send(&space_id, *body, correlation, started).await {
                Ok(()) => Ok(()),
                Err((e, correlation)) => Err((Refused::Command(e), correlation, Some(space_id))),
            },
            Command::Typing { space_id } => self
                .typing(&space_id)
                .map_err(|e| (Refused::Command(e), None, Some(space_id))),
            Command::Refresh { token } => {
                self.refresh(out, &token).await.map_err(|e| (e, None, None))
            }
            Command::Presence { status } => {
                self.choose_presence(status);
                Ok(())
            }
            Command::Heartbeat => Ok(()),
        };
        self.app
            .metrics
            .ws_frames_in
            .with_label_values(&[self.protocol, kind])
            .inc();
        match &result {
            // A send's time runs until its ack (`wake`).
            Ok(()) if kind == "send" => {}
            Ok(()) | Err((Refused::Closed(_), _, _)) => self.op_done(kind, started, None),
            Err((Refused::Command(e), _, _)) => self.op_done(kind, started, Some(e.code)),
        }
        match result {
            Ok(()) => Ok(()),
            Err((Refused::Closed(d), _, _)) => Err(d),
            Err((Refused::Command(error), correlation, space_id)) => {
                out.put(Output::Error {
                    correlation: correlation.as_ref(),
                    space_id: space_id.as_deref(),
                    error: &error,
                })
                .await
            }
        }
    }

    /// Records a command's latency (`spacecast_realtime_op_duration_seconds{protocol, op}`)
    /// and, if it was answered with an error, its code
    /// (`spacecast_realtime_op_errors_total{protocol, op, code}`).
    fn op_done(&self, op: &'static str, started: Instant, error: Option<&'static str>) {
        let m = &self.app.metrics;
        m.realtime_op_duration
            .with_label_values(&[self.protocol, op])
            .observe(started.elapsed().as_secs_f64());
        if let Some(code) = error {
            m.realtime_op_errors
                .with_label_values(&[self.protocol, op, code])
                .inc();
        }
    }

    /// Tells the client a frame could not be understood (the session stays open).
    pub async fn invalid<O: Outbox>(
        &mut self,
        error: CommandError,
        correlation: Option<Correlation>,
        out: &mut O,
    ) -> Result<(), Disconnect> {
        // Any frame is a heartbeat.
        self.presence_frame(false);
        self.app
            .metrics
            .ws_frames_in
            .with_label_values(&[self.protocol, "invalid"])
            .inc();
        out.put(Output::Error {
            correlation: correlation.as_ref(),
            space_id: None,
            error: &error,
        })
        .await
    }

    /// Handles what [`Inbox::next`] returned.
    pub async fn wake<O: Outbox>(&mut self, wake: Wake, out: &mut O) -> Result<(), Disconnect> {
        match wake.0 {
            WakeKind::Sent(outcome) => {
                let SendOutcome {
                    correlation,
                    raw_space,
                    result,
                    started,
                } = *outcome;
                let code = result.as_ref().err().map(|e| e.code);
                self.op_done("send", started, code);
                match result {
                    Ok(message) => {
                        out.put(Output::Ack {
                            correlation: correlation.as_ref(),
                            message: &message,
                        })
                        .await
                    }
                    Err(error) => {
                        out.put(Output::Error {
                            correlation: correlation.as_ref(),
                            space_id: Some(&raw_space),
                            error: &error,
                        })
                        .await
                    }
                }
            }
            WakeKind::Hub(space_id, item) => self.on_hub_item(out, space_id, item).await,
            WakeKind::Presence => {
                self.presence_due();
                Ok(())
            }
            WakeKind::User(Ok(item)) => {
                out.put(Output::User(&item)).await?;
                self.app
                    .metrics
                    .user_events_delivered
                    .with_label_values(&[self.protocol])
                    .inc();
                Ok(())
            }
            WakeKind::User(Err(BroadcastStreamRecvError::Lagged(n))) => {
                tracing::debug!(session = self.id, protocol = self.protocol, user = %self.user.id(), skipped = n, "closing slow consumer of its user channel");
                Err(Disconnect::SLOW_CONSUMER)
            }
        }
    }

    /// Handles every wake already waiting, at most `budget` of them, without waiting for more:
    /// called after a wake so one socket write carries everything that was ready. Returns how
    /// many it handled.
    pub async fn drain_ready<O: Outbox>(
        &mut self,
        out: &mut O,
        budget: usize,
    ) -> Result<usize, Disconnect> {
        let mut n = 0;
        while n < budget {
            let Some(wake) = self.inbox.ready() else {
                break;
            };
            self.wake(wake, out).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Writes one hub item, skipping events the client already has.
    async fn on_hub_item<O: Outbox>(
        &mut self,
        out: &mut O,
        space_id: SpaceId,
        item: Result<HubItem, BroadcastStreamRecvError>,
    ) -> Result<(), Disconnect> {
        match item {
            Ok(HubItem::Events(batch)) => {
                let Some(first) = batch.first() else {
                    return Ok(());
                };
                let last = self.delivered.get(&space_id).copied().unwrap_or(0);
                if first.event.seq > last + 1 {
                    // Published events are durable: repair any gap from the store first (boxed:
                    // rare, and it keeps the delivery path's future small).
                    Box::pin(self.repair(out, space_id, last)).await?;
                }
                let delivered = self.delivered.get(&space_id).copied().unwrap_or(0);
                if first.event.seq > delivered + 1 {
                    // The repair could not read the missing events: never deliver past a gap.
                    return Err(Disconnect::RESYNC);
                }
                let mut last = delivered;
                let mut written = 0;
                let mut removed = false;
                for p in batch.iter().filter(|p| p.event.seq > delivered) {
                    if out.carries(p) {
                        out.put(Output::Event(p)).await?;
                        written += 1;
                    }
                    last = p.event.seq;
                    if super::membership::removes(&p.event, self.user.id()) {
                        // Nothing after the removal: access is decided first.
                        removed = true;
                        break;
                    }
                }
                if last > delivered {
                    self.delivered.insert(space_id, last);
                }
                if written > 0 {
                    self.deliveries.inc_by(written);
                }
                if removed {
                    return Box::pin(self.recheck_access(out, space_id)).await;
                }
                Ok(())
            }
            Ok(HubItem::Typing(t)) => {
                if t.origin_session == self.id {
                    return Ok(());
                }
                out.put(Output::Typing(&t)).await
            }
            Ok(HubItem::Presence(p)) => out.put(Output::Presence(&p)).await,
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                // Counted by `ws_closed{reason="slow_consumer"}`; a client can cause it at will.
                tracing::debug!(session = self.id, protocol = self.protocol, user = %self.user.id(), %space_id, skipped = n, "closing slow consumer");
                Err(Disconnect::SLOW_CONSUMER)
            }
        }
    }

    /// The session ended with `end`: stops every subscription (before the adapter's possibly slow
    /// close of its transport) and counts the end (`spacecast_ws_closed_total{protocol,
    /// reason}`) when it is decided.
    pub fn ended(&mut self, end: Disconnect) {
        self.close();
        tracing::debug!(
            session = self.id,
            protocol = self.protocol,
            reason = end.label,
            "realtime session ending"
        );
        self.app
            .metrics
            .ws_closed
            .with_label_values(&[self.protocol, end.label])
            .inc();
    }

    /// Stops every subscription (the hub forgets spaces nobody on this node watches).
    pub fn close(&mut self) {
        let spaces: Vec<SpaceId> = self.inbox.subs.keys().copied().collect();
        for space in spaces {
            self.inbox.subs.remove(&space);
            self.app.engine.unsubscribe(space);
            self.app
                .engine
                .presence()
                .remove(space, self.id, self.user.id());
        }
        self.inbox.presence_timer = None;
        if self.inbox.user.take().is_some() {
            self.app.engine.unsubscribe_user(self.user.id());
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

/// A refused command: answered with an error, or the transport failed while answering.
pub(super) enum Refused {
    Command(CommandError),
    Closed(Disconnect),
}

impl From<CommandError> for Refused {
    fn from(e: CommandError) -> Self {
        Refused::Command(e)
    }
}

impl From<Disconnect> for Refused {
    fn from(d: Disconnect) -> Self {
        Refused::Closed(d)
    }
}
