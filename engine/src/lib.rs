//! The Spacecast engine: everything between the edge and the disk, with no HTTP in it.
//!
//! The path of one message, by file:
//!
//! 1. [`engine`](Engine) — wiring: builds the store, hub and directory from config.
//! 2. [`space`] — [`SpaceHandle`]: the typed call an edge route makes (`send` / `post`, `edit`,
//!    `redact`, `delete`, …).
//! 3. [`directory`] — resolves the space to its actor (spawning it from the store if needed)
//!    and applies admission control.
//! 4. `space/actor.rs` — `SpaceActor` validates, assigns the next gapless `seq`, updates members,
//!    likes and counts in memory.
//! 5. `space/writer.rs` — group commit: one store call per batch of commands, then the callers
//!    are answered and the events published.
//! 6. [`store`] — the [`store::Store`] trait; `store/embedded.rs` (fjall, the default)
//!    makes each batch durable with one fsync shared across spaces; `store/cql/` (ScyllaDB /
//!    Cassandra, `--store cql`) writes its new rows as one unlogged batch per partition, then
//!    moves the space's head row with a lightweight transaction, then changes existing rows.
//!    Either way the actor first `claim`s the space, and the store refuses commits of any earlier
//!    claimer (fencing).
//! 7. [`bus`] — the cluster seam: ownership leases, forwarding to the owner node, and commits
//!    published to other nodes ([`bus::LocalBus`] on a single node, [`bus::nats::NatsBus`] over
//!    NATS); [`bus::Fanout`] hands each commit to this node's hub once, in seq order.
//! 8. [`hub`] — fan-out to this node's subscribers: one `Arc` per commit, shared by all.
//!
//! Reads take the other way: [`reads`] — [`SpaceReader`] (from [`Engine::reader`]) reads the
//! store directly, never the actor, and applies the visibility and membership rules, so the
//! edge never holds the store.
//!
//! Also: [`model`] (spaces, members, messages), [`event`] (the sequenced events and their
//! once-serialized frames), [`error`] (the one error enum with stable codes), [`stats`] (the
//! space statistics the actor maintains), [`users`] (the per-user channel: events for one user's
//! sessions on every node, [`Engine::subscribe_user`] / [`Engine::publish_to_user`]),
//! [`notifications`] (what users are told about others' actions: created by the space actor in
//! the commit that causes them, stored per user, pushed on the user's channel once durable),
//! [`discovery`] (trending, recommended, search and tag lists of public spaces, and users'
//! profile stats), [`unread`] (read markers, unread counts and the inbox), [`search`] (message
//! search: each node's full-text index, fed by every durable commit, queried with the store as
//! the truth), [`presence`] (who is watching a space: session statuses with heartbeat and idle timeouts,
//! per-user aggregation, change events or periodic counts on the hub; in memory; in a cluster each
//! node is the authority for its sessions and the nodes following a space merge their views over
//! the bus).
//!
//! With the `testkit` feature: `testkit`, the storage conformance suite every
//! [`store::Store`] backend must pass.

pub mod bus;
pub mod directory;
pub mod discovery;
pub mod error;
pub mod event;
pub mod hub;
pub mod listing;
pub mod model;
pub mod notifications;
pub mod presence;
pub mod reads;
pub mod search;
pub mod space;
pub mod stats;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod unread;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use spacecast_observability::Metrics;

pub use directory::Pending;
pub use error::{EngineError, Result};
pub use listing::{CursorPage, MessageFilter, MessageQuery};
pub use reads::{EventLog, MessagePage, SpaceMembers, SpaceReader};
pub use space::{
    Appreciation, Command, Outcome, Reaction, Redacted, SendMessage, Sent, SpaceHandle,
};
pub use store::{Direction, MessageOrder};

use crate::bus::{Bus, Fanout, LocalBus};
use crate::directory::Directory;
use crate::hub::{Hub, HubItem};
use crate::model::{
    Member, POWER_ADMIN, PostingPermission, Space, SpaceId, SpaceView, Timestamp, UserRef,
    Visibility, new_id,
};
use crate::store::Store;

/// Tunables of the engine. Defaults suit one node with a local disk.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Commands admitted per space and not yet answered; beyond it, `Overloaded`.
    pub max_inflight_per_space: usize,
    /// Most commands merged into one group commit.
    pub max_batch: usize,
    /// A space actor idle this long is stopped (and reloaded on demand).
    pub idle_timeout: Duration,
    /// Longest a caller waits for a space actor's answer before `SpaceUnavailable`.
    pub call_timeout: Duration,
    /// Per-subscriber queue length of the fan-out hub, in events.
    pub subscriber_queue: usize,
    /// Messages a space actor keeps cached once their changes are durable.
    pub message_cache: usize,
    /// Bytes all space actors' message caches may hold together before they drop what is
    /// durable (see `space/cache.rs`).
    pub message_cache_bytes: usize,
    /// How long after `created_at` (by the space actor's clock) a message may be edited; the
    /// edge sets it from `--edit-window`.
    pub edit_window: Duration,
    /// How long a send's idempotency key answers with the original message (CONTRACT §5: 5
    /// minutes); tests shorten it.
    pub idempotency_ttl: Duration,
    /// presence (issue 12): timeouts, threshold and count interval (see [`presence`]).
    pub presence: presence::PresenceConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_inflight_per_space: 4096,
            max_batch: 1024,
            idle_timeout: Duration::from_secs(300),
            call_timeout: Duration::from_secs(30),
            subscriber_queue: 1024,
            message_cache: 4096,
            message_cache_bytes: 64 * 1024 * 1024,
            edit_window: Duration::from_secs(24 * 60 * 60),
            idempotency_ttl: Duration::from_secs(300),
            presence: presence::PresenceConfig::default(),
        }
    }
}

impl EngineConfig {
    pub(crate) fn idle_check_interval(&self) -> Duration {
        (self.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(30))
    }
}

/// What a caller provides to create a space.
#[derive(Clone, Debug)]
pub struct NewSpace {
    pub title: String,
    pub description: String,
    pub visibility: Visibility,
    pub tags: Vec<String>,
    pub posting_permission: PostingPermission,
}

/// One node's engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    hub: Hub,
    fanout: Fanout,
    directory: Directory,
    metrics: Metrics,
    /// disc (issue 12): this node's trending ranking cache.
    trending: Arc<discovery::TrendingCache>,
    /// search (issue 12): set by [`Engine::start_search`].
    search: Arc<std::sync::OnceLock<search::Search>>,
    /// presence (issue 12): this node's presence by space.
    presence: presence::Presence,
}

impl Engine {
    /// Starts a single-node engine over `store` (already opened). The store is wrapped so every
    /// call is timed and counted.
    ///
    /// # Errors
    /// `Internal` if the supervisor cannot start.
    pub async fn start(
        config: EngineConfig,
        store: Arc<dyn Store>,
        metrics: Metrics,
    ) -> Result<Self> {
        let bus = Arc::new(LocalBus::new(new_id().to_string()));
        Self::start_with_bus(config, store, bus, None, metrics).await
    }

    /// Starts the engine over `store` as one node on `bus`. `lost` reports spaces whose
    /// ownership lease the bus lost (their actors are stopped).
    ///
    /// # Errors
    /// `Internal` if the supervisor cannot start.
    pub async fn start_with_bus(
        config: EngineConfig,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        lost: Option<tokio::sync::mpsc::UnboundedReceiver<SpaceId>>,
        metrics: Metrics,
    ) -> Result<Self> {
        let store: Arc<dyn Store> = store::instrumented::Instrumented::new(store, metrics.clone());
        let config = Arc::new(config);
        let hub = Hub::new(config.subscriber_queue, metrics.clone());
        if !bus.clustered() {
            metrics.bus_connected.set(1);
        }
        let presence =
            presence::Presence::new(hub.clone(), config.presence, metrics.clone(), bus.clone());
        presence.run_counts();
        if bus.clustered() {
            presence.run_cluster();
        }
        let fanout = Fanout::new(hub.clone(), store.clone(), bus);
        let directory =
            Directory::start(store.clone(), fanout.clone(), metrics.clone(), config, lost).await?;
        Ok(Engine {
            store,
            hub,
            fanout,
            directory,
            metrics,
            trending: Arc::default(),
            search: Arc::default(),
            presence,
        })
    }

    /// Subscribes to a space's events on this node. Once this returns, every event of the space
    /// made durable afterwards (on any node) reaches the receiver, in seq order; read the head
    /// and replay from the store *after* subscribing, and nothing is missed. Pair with
    /// [`Engine::unsubscribe`] once the receiver is dropped.
    ///
    /// # Errors
    /// `BusUnavailable` (cluster mode, NATS unreachable).
    pub async fn subscribe(
        &self,
        space_id: SpaceId,
    ) -> Result<tokio::sync::broadcast::Receiver<HubItem>> {
        self.fanout.watch(space_id).await?;
        // presence (issue 12): the other nodes' presence in the space, from now on.
        if let Err(e) = self.presence.watch(space_id).await {
            self.fanout.unwatch(space_id);
            return Err(e);
        }
        Ok(self.hub.subscribe(space_id))
    }

    /// Ends a subscription made with [`Engine::subscribe`] (call after dropping its receiver).
    pub fn unsubscribe(&self, space_id: SpaceId) {
        self.hub.release(space_id);
        self.fanout.unwatch(space_id);
        self.presence.unwatch(space_id);
    }

    /// Subscribes to `user_id`'s per-user channel on this node (see [`users`]): once this
    /// returns, every event published to the user afterwards, on any node, reaches the receiver
    /// (best effort: not while the bus is down). Pair with [`Engine::unsubscribe_user`] once the
    /// receiver is dropped.
    ///
    /// # Errors
    /// `BusUnavailable` (cluster mode, NATS unreachable).
    pub async fn subscribe_user(
        &self,
        user_id: &str,
    ) -> Result<tokio::sync::broadcast::Receiver<users::UserItem>> {
        self.fanout.users().subscribe(user_id).await
    }

    /// Ends a subscription made with [`Engine::subscribe_user`] (call after dropping its
    /// receiver).
    pub fn unsubscribe_user(&self, user_id: &str) {
        self.fanout.users().release(user_id);
    }

    /// Publishes `event` to every live session of `user_id`, on every node; never waits.
    pub fn publish_to_user(&self, user_id: &str, event: users::UserEvent) {
        self.fanout.users().publish(user_id, event);
    }

    /// `user_id`'s notifications, newest first, at most
    /// [`notifications::NOTIFICATIONS_KEPT`] (see [`notifications`]).
    ///
    /// # Errors
    /// `StoreUnavailable`.
    pub async fn notifications(&self, user_id: &str) -> Result<Vec<notifications::Notification>> {
        self.store.notifications(user_id).await
    }

    /// Marks `user_id`'s notifications `ids` read (unknown ids are ignored). Durable when it
    /// returns.
    ///
    /// # Errors
    /// `StoreUnavailable`.
    pub async fn mark_notifications_read(&self, user_id: &str, ids: &[uuid::Uuid]) -> Result<()> {
        self.store.mark_notifications_read(user_id, ids).await
    }

    /// This node's id in the cluster.
    pub fn node_id(&self) -> &str {
        self.fanout.bus().node_id()
    }

    /// The bus this node is on.
    pub fn bus(&self) -> &Arc<dyn Bus> {
        self.fanout.bus()
    }

    /// Delivery to this node's subscribers (for a bus that must catch up after reconnecting).
    /// This node's presence (see [`presence`]).
    pub fn presence(&self) -> &presence::Presence {
        &self.presence
    }

    pub fn fanout(&self) -> &Fanout {
        &self.fanout
    }

    /// The typed handle of a space (which may not exist: its calls then fail with
    /// `SpaceNotFound`).
    pub fn space(&self, space_id: SpaceId) -> SpaceHandle {
        SpaceHandle {
            directory: self.directory.clone(),
            space_id,
        }
    }

    /// Creates a space with `creator` as its admin (power 100). Durable when it returns.
    ///
    /// # Errors
    /// `StoreUnavailable`.
    pub async fn create_space(&self, new: NewSpace, creator: UserRef) -> Result<SpaceView> {
        let now = Timestamp::now();
        let space = Space {
            space_id: new_id(),
            title: new.title,
            description: new.description,
            visibility: new.visibility,
            creator: creator.clone(),
            tags: new.tags,
            posting_permission: new.posting_permission,
            created_at: now,
        };
        let member = Member {
            user: creator,
            power_level: POWER_ADMIN,
            joined_at: now,
        };
        self.store.create_space(&space, &member).await?;
        let counters = model::SpaceCounters {
            head_seq: 0,
            message_count: 0,
            member_count: 1,
        };
        Ok(SpaceView { space, counters })
    }

    /// This node's fan-out hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Space actors alive on this node.
    pub fn live_spaces(&self) -> usize {
        self.directory.live_spaces()
    }

    /// Drains every space (each settles what it accepted), then makes the store durable.
    pub async fn shutdown(&self, timeout: Duration) {
        self.directory.shutdown(timeout).await;
        if let Err(e) = self.store.close().await {
            tracing::error!(error = %e, "store close failed");
        }
    }
}
