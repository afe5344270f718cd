//! The Spacecast engine: everything between the edge and the disk, with no HTTP in it.
//!
//! The path of one message, by file:
//!
//! 1. [`engine`](Engine) — wiring: builds the store, hub and directory from config.
//! 2. [`space`] — [`SpaceHandle`]: the typed call an edge route makes (`send`, `delete`, …).
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
//! 7. [`hub`] — fan-out to this node's subscribers: one `Arc` per commit, shared by all.
//!
//! Also: [`model`] (spaces, members, messages), [`event`] (the sequenced events and their
//! once-serialized frames), [`error`] (the one error enum with stable codes).
//!
//! With the `testkit` feature: `testkit`, the storage conformance suite every
//! [`store::Store`] backend must pass.

pub mod directory;
pub mod error;
pub mod event;
pub mod hub;
pub mod model;
pub mod space;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::sync::Arc;
use std::time::Duration;

use spacecast_observability::Metrics;

pub use directory::Pending;
pub use error::{EngineError, Result};
pub use space::{Appreciation, SendMessage, SpaceHandle};

use crate::directory::Directory;
use crate::hub::Hub;
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
    directory: Directory,
    metrics: Metrics,
}

impl Engine {
    /// Starts the engine over `store` (already opened). The store is wrapped so every call is
    /// timed and counted.
    ///
    /// # Errors
    /// `Internal` if the supervisor cannot start.
    pub async fn start(
        config: EngineConfig,
        store: Arc<dyn Store>,
        metrics: Metrics,
    ) -> Result<Self> {
        let store: Arc<dyn Store> = store::instrumented::Instrumented::new(store, metrics.clone());
        let config = Arc::new(config);
        let hub = Hub::new(config.subscriber_queue, metrics.clone());
        let directory =
            Directory::start(store.clone(), hub.clone(), metrics.clone(), config).await?;
        Ok(Engine {
            store,
            hub,
            directory,
            metrics,
        })
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

    /// Reads go straight to the store: it holds exactly what is durable.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
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
