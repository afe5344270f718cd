//! The bus: how one node's engine meets the others.
//!
//! [`Bus`] is the seam between the engine and the cluster, beside [`crate::store::Store`]:
//! - **ownership**: a space's commands run on exactly one node at a time, the holder of the
//!   space's [`Lease`] (see [`lease`]); the store's fencing epoch neutralises a holder that lost
//!   its lease without knowing it (`docs/cluster.md`);
//! - **forwarding**: a node that does not own a space sends the command to the owner and awaits
//!   its answer;
//! - **events**: the owner publishes each durable commit for the other nodes, and a node receives
//!   a space's events only while it has local subscribers of it ([`Bus::watch`]).
//!
//! Two implementations: [`LocalBus`] (single node, no network: every space is owned here and
//! nothing is published) and [`nats::NatsBus`] (core NATS for commands and events, JetStream KV
//! for leases). The edge never knows which one runs.
//!
//! [`Fanout`] sits between the writer, the bus and the hub: it delivers every commit to this
//! node's subscribers exactly once and in `seq` order, whether it was committed here or arrived
//! from another node, repairing a gap from the store before delivering past it.

pub mod lease;
pub mod nats;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use spacecast_observability::trace::TraceParent;
use tokio::sync::oneshot;

pub use self::lease::Lease;
use crate::directory::Pending;
use crate::error::{EngineError, Result};
use crate::event::{Published, SpaceEvent};
use crate::hub::{Hub, HubItem, Typing};
use crate::model::{Seq, SpaceId};
use crate::presence::{Presence, PresenceWire};
use crate::space::command::{Command, Outcome};
use crate::store::Store;
use crate::users::{UserChannels, UserEvent};

/// The answer to a forwarded command, once it arrives.
pub type Answer = oneshot::Receiver<Forwarded>;

/// What a forwarded command came back with.
// One per command, moved once through a oneshot: boxing the outcome would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Forwarded {
    /// The owner ran it: its outcome.
    Ran(Result<Outcome>),
    /// Nobody serves the space (no owner, or it just died): nothing ran.
    NoOwner,
    /// The node that received it does not own the space (any more): nothing ran.
    NotOwner,
}

/// What serves commands forwarded to this node: the directory.
#[async_trait]
pub trait CommandSink: Send + Sync + 'static {
    /// Puts a command in the mailbox of a space this node owns (commands submitted one after
    /// another keep their order). `None`: not owned here, nothing ran.
    async fn submit_owned(
        &self,
        space_id: SpaceId,
        cmd: Command,
    ) -> Option<Result<Pending<Outcome>>>;
}

/// Stops serving a space's forwarded commands when dropped.
pub struct Serving(Option<Box<dyn FnOnce() + Send + Sync>>);

impl Serving {
    pub fn none() -> Self {
        Serving(None)
    }

    pub fn on_drop(f: impl FnOnce() + Send + Sync + 'static) -> Self {
        Serving(Some(Box::new(f)))
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// See the module doc.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// This node's id (unique in the cluster).
    fn node_id(&self) -> &str;

    /// Whether other nodes exist: if not, every space is owned here without a lease.
    fn clustered(&self) -> bool;

    /// Whether the bus is reachable now (readiness; cluster work is refused while it is not).
    fn healthy(&self) -> bool;

    /// Tries to become the space's owner. `Ok(None)`: another node owns it.
    ///
    /// # Errors
    /// `BusUnavailable`.
    async fn acquire(&self, space_id: SpaceId) -> Result<Option<Arc<Lease>>>;

    /// Gives a lease up (the space's actor stopped).
    async fn release(&self, lease: Arc<Lease>);

    /// Starts serving the space's forwarded commands with `sink`, until the guard is dropped.
    ///
    /// # Errors
    /// `BusUnavailable`.
    async fn serve(&self, space_id: SpaceId, sink: Arc<dyn CommandSink>) -> Result<Serving>;

    /// Sends a command to the space's owner; returns once it is on its way (commands forwarded
    /// one after another by one task arrive in that order).
    ///
    /// # Errors
    /// `BusUnavailable`.
    async fn forward(&self, space_id: SpaceId, cmd: &Command) -> Result<Answer>;

    /// Hands a durable commit's events to the other nodes.
    fn publish(&self, space_id: SpaceId, events: &[Published]);

    /// Hands a typing signal to the other nodes (not stored, best effort).
    fn publish_typing(&self, typing: &Typing);

    /// Starts receiving the space's events from other nodes into `fanout`, until the guard is
    /// dropped; returns once they will be received (so an event published after this returns
    /// is not missed).
    ///
    /// # Errors
    /// `BusUnavailable`.
    async fn watch(&self, space_id: SpaceId, fanout: Fanout) -> Result<Serving>;

    /// Hands an event for one user's sessions to the other nodes (not stored, best effort; see
    /// [`crate::users`]). A single node has nobody to tell.
    fn publish_user(&self, _user_id: &str, _event: &UserEvent) {}

    /// Starts receiving the events other nodes publish to `user_id` into `users`, until the
    /// guard is dropped; returns once they will be received.
    ///
    /// # Errors
    /// `BusUnavailable`.
    async fn watch_user(&self, _user_id: &str, _users: UserChannels) -> Result<Serving> {
        Ok(Serving::none())
    }

    /// search (issue 12): starts receiving every space's durable commits published by the
    /// other nodes into `indexer`, until the guard is dropped (best effort: what the bus loses
    /// is caught up from the store, see [`crate::search`]). A single node has no other nodes.
    ///
    /// # Errors
    /// `BusUnavailable`.
    async fn watch_all(&self, _indexer: crate::search::Indexer) -> Result<Serving> {
        Ok(Serving::none())
    }

    // ---- presence (issue 12) ----

    /// Hands this node's presence message about a space (a change or a snapshot part) to the
    /// other nodes; messages handed over one after another arrive in that order (best effort:
    /// lost while the bus is down). A single node has nobody to tell.
    fn publish_presence(&self, _space_id: SpaceId, _msg: &PresenceWire) {}

    /// Starts receiving the other nodes' presence messages about `space_id` into `presence`,
    /// and answering their requests for this node's snapshot, until the guard is dropped;
    /// returns once both subscriptions are registered.
    ///
    /// # Errors
    /// `BusUnavailable`.
    async fn watch_presence(&self, _space_id: SpaceId, _presence: Presence) -> Result<Serving> {
        Ok(Serving::none())
    }

    /// Asks every node that follows `space_id` for its snapshot, and returns what arrives within
    /// `window` (this node's own excluded).
    ///
    /// # Errors
    /// `BusUnavailable`.
    async fn gather_presence(
        &self,
        _space_id: SpaceId,
        _window: std::time::Duration,
    ) -> Result<Vec<PresenceWire>> {
        Ok(Vec::new())
    }
}

/// Single node: every space is owned here, nothing crosses a network.
pub struct LocalBus {
    node_id: String,
}

impl LocalBus {
    pub fn new(node_id: impl Into<String>) -> Self {
        LocalBus {
            node_id: node_id.into(),
        }
    }
}

#[async_trait]
impl Bus for LocalBus {
    fn node_id(&self) -> &str {
        &self.node_id
    }
    fn clustered(&self) -> bool {
        false
    }
    fn healthy(&self) -> bool {
        true
    }
    async fn acquire(&self, space_id: SpaceId) -> Result<Option<Arc<Lease>>> {
        Ok(Some(Lease::local(space_id)))
    }
    async fn release(&self, lease: Arc<Lease>) {
        lease.lose();
    }
    async fn serve(&self, _: SpaceId, _: Arc<dyn CommandSink>) -> Result<Serving> {
        Ok(Serving::none())
    }
    async fn forward(&self, _: SpaceId, _: &Command) -> Result<Answer> {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Forwarded::NoOwner);
        Ok(rx)
    }
    fn publish(&self, _: SpaceId, _: &[Published]) {}
    fn publish_typing(&self, _: &Typing) {}
    async fn watch(&self, _: SpaceId, _: Fanout) -> Result<Serving> {
        Ok(Serving::none())
    }
}

/// A watched space: one with local subscribers.
struct Watch {
    /// Local subscriptions (sessions) of the space.
    count: usize,
    /// The last seq handed to this node's hub, once one was.
    delivered: Option<Seq>,
    /// The bus subscription, made once by the first watcher; dropped with the last.
    receiving: Arc<tokio::sync::OnceCell<Serving>>,
}

#[derive(Default)]
struct FeedState {
    watched: HashMap<SpaceId, Watch>,
}

/// Delivers commits to this node's hub once each, in seq order (see the module doc). Cheap to
/// clone.
#[derive(Clone)]
pub struct Fanout {
    hub: Hub,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    state: Arc<Mutex<FeedState>>,
    /// One at a time per node: repairs read the store, and must not interleave with deliveries of
    /// the same space.
    repair: Arc<tokio::sync::Mutex<()>>,
    /// This node's per-user channels (the writer publishes a commit's notifications there).
    users: UserChannels,
    /// search (issue 12): sees every commit of this node (see [`Fanout::set_commit_tap`]).
    tap: Arc<std::sync::OnceLock<CommitTap>>,
}

/// What [`Fanout::set_commit_tap`] installs: called with each durable commit of this node.
pub type CommitTap = Arc<dyn Fn(SpaceId, &[SpaceEvent]) + Send + Sync>;

impl Fanout {
    pub fn new(hub: Hub, store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> Self {
        let users = UserChannels::new(bus.clone(), crate::users::USER_QUEUE, hub.metrics().clone());
        Fanout {
            hub,
            store,
            bus,
            state: Arc::default(),
            repair: Arc::default(),
            users,
            tap: Arc::default(),
        }
    }

    /// Installs `tap`, called with every commit this node's writer makes durable from now on,
    /// before it is published (once; later calls are ignored). It must not block: it runs on
    /// the commit path.
    pub fn set_commit_tap(&self, tap: CommitTap) {
        let _ = self.tap.set(tap);
    }

    /// This node's per-user channels.
    pub fn users(&self) -> &UserChannels {
        &self.users
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// A commit made durable by this node's writer: to local subscribers, then to other nodes.
    /// `traces` names the trace each sampled event continues ([`Published::trace`]).
    pub fn committed(
        &self,
        space_id: SpaceId,
        events: Vec<SpaceEvent>,
        traces: &[(Seq, TraceParent)],
    ) {
        if events.is_empty() {
            return;
        }
        if let Some(tap) = self.tap.get() {
            tap(space_id, &events);
        }
        let events = Published::all(events, traces);
        self.bus.publish(space_id, &events);
        let last = events[events.len() - 1].event.seq;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = st.watched.get_mut(&space_id).map(|w| &mut w.delivered) {
            if slot.is_some_and(|d| last <= d) {
                return;
            }
            // Ours is the authoritative order; a gap before it (a previous owner's last commits
            // not received yet) is repaired by each session from the store.
            *slot = Some(last);
        }
        // Published under the lock, so two deliveries of one space never cross.
        self.hub.publish(space_id, HubItem::Events(events));
        drop(st);
    }

    /// A commit received from another node: delivered after everything before it (read from the
    /// store if the bus lost it), duplicates dropped.
    pub async fn received(&self, space_id: SpaceId, events: Vec<SpaceEvent>) {
        self.received_traced(space_id, events, &[]).await
    }

    /// [`Fanout::received`], with the trace each sampled event's delivery continues.
    pub async fn received_traced(
        &self,
        space_id: SpaceId,
        events: Vec<SpaceEvent>,
        traces: &[(Seq, TraceParent)],
    ) {
        let Some(last) = events.last().map(|e| e.seq) else {
            return;
        };
        let first = events[0].seq;
        let d = match self.delivered(space_id) {
            // Not watched (any more).
            None => return,
            // The first commit seen since watching: sessions replayed their own past on join.
            Some(None) => return self.deliver(space_id, events, traces),
            Some(Some(d)) => d,
        };
        if last <= d {
            return;
        }
        if first > d + 1 {
            // A gap (d, first): fill it from the store before delivering further.
            self.hub.metrics().fanout_gap_repairs.inc();
            let _one = self.repair.lock().await;
            self.catch_up(space_id, first - 1).await;
        }
        self.deliver(space_id, events, traces);
    }

    /// A typing signal from this node's session: to local subscribers and to other nodes.
    pub fn typing(&self, typing: Typing) {
        self.bus.publish_typing(&typing);
        self.hub
            .publish(typing.space_id, HubItem::Typing(Arc::new(typing)));
    }

    /// A typing signal from another node: to local subscribers, if any.
    pub fn typing_received(&self, typing: Typing) {
        let watched = self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .watched
            .contains_key(&typing.space_id);
        if watched {
            self.hub
                .publish(typing.space_id, HubItem::Typing(Arc::new(typing)));
        }
    }

    /// Delivers, for every watched space, the durable events after what was delivered: after the
    /// bus reconnected (what was published meanwhile is lost to us).
    pub async fn catch_up_all(&self) {
        let spaces: Vec<SpaceId> = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.watched.keys().copied().collect()
        };
        let _one = self.repair.lock().await;
        for space_id in spaces {
            self.catch_up(space_id, Seq::MAX).await;
        }
    }

    /// Reads from the store and delivers a watched space's events after the last delivered one,
    /// up to `upto`.
    async fn catch_up(&self, space_id: SpaceId, upto: Seq) {
        const PAGE: usize = 500;
        loop {
            let Some(Some(d)) = self.delivered(space_id) else {
                return;
            };
            if d >= upto {
                return;
            }
            match self.store.read_events(space_id, d, PAGE).await {
                Ok(evs) if evs.is_empty() => return,
                Ok(evs) => {
                    let n = evs.len();
                    let evs: Vec<SpaceEvent> = evs.into_iter().filter(|e| e.seq <= upto).collect();
                    let stop = n < PAGE || evs.len() < n;
                    self.deliver(space_id, evs, &[]);
                    if stop {
                        return;
                    }
                }
                Err(e) => {
                    // Sessions see the gap on their next event and repair it themselves.
                    tracing::warn!(%space_id, error = %e, "could not repair a gap in a space's events from the store");
                    return;
                }
            }
        }
    }

    fn delivered(&self, space_id: SpaceId) -> Option<Option<Seq>> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.watched.get(&space_id).map(|w| w.delivered)
    }

    /// Hands the events after the last delivered one to the hub (if the space is still watched).
    fn deliver(&self, space_id: SpaceId, events: Vec<SpaceEvent>, traces: &[(Seq, TraceParent)]) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(slot) = st.watched.get_mut(&space_id).map(|w| &mut w.delivered) else {
            return;
        };
        let d = *slot;
        let events = Published::all(
            events.into_iter().filter(|e| d.is_none_or(|d| e.seq > d)),
            traces,
        );
        let Some(last) = events.last().map(|e| e.event.seq) else {
            return;
        };
        *slot = Some(last);
        self.hub.publish(space_id, HubItem::Events(events));
        drop(st);
    }

    /// Starts following a space for one more local subscriber; once this returns, every commit
    /// of the space made durable from now on reaches this node's hub.
    ///
    /// # Errors
    /// `BusUnavailable` (the watch is not counted then).
    pub async fn watch(&self, space_id: SpaceId) -> Result<()> {
        let receiving = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let w = st.watched.entry(space_id).or_insert_with(|| Watch {
                count: 0,
                delivered: None,
                receiving: Arc::default(),
            });
            w.count += 1;
            w.receiving.clone()
        };
        let made = receiving
            .get_or_try_init(|| self.bus.watch(space_id, self.clone()))
            .await;
        if let Err(e) = made {
            self.unwatch(space_id);
            return Err(e);
        }
        Ok(())
    }

    /// One local subscriber of the space left; the last one stops following it.
    pub fn unwatch(&self, space_id: SpaceId) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = st.watched.get_mut(&space_id) {
            w.count = w.count.saturating_sub(1);
            if w.count == 0 {
                // Dropping the bus subscription (once no watcher still awaits it) ends it.
                st.watched.remove(&space_id);
            }
        }
    }

    /// Spaces followed on this node.
    pub fn watched(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .watched
            .len()
    }
}

/// The error for cluster work while the bus is unreachable.
pub fn unavailable(e: impl std::fmt::Display) -> EngineError {
    EngineError::BusUnavailable(e.to_string())
}
