//! The directory: the one place that resolves a space id to the actor that owns it.
//!
//! Every command reaches its space through `Directory::call`. Today the answer is always a
//! local actor; in cluster mode the directory resolves the space's owner node and forwards, and
//! callers do not change.
//!
//! Parts:
//! - a read-mostly map `space id → live actor` for the fast path (a std `RwLock`, never held
//!   across an await);
//! - `SpaceSupervisor`, a ractor actor that spawns space actors as its linked children, removes
//!   them from the map when they stop or fail, and runs passivation. A failed space is rebuilt
//!   from the store lazily, by the next command that reaches it;
//! - per-space admission control: at most `max_inflight_per_space` commands admitted and not yet
//!   answered; beyond that, [`EngineError::Overloaded`] (503 + Retry-After at the edge).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use spacecast_observability::Metrics;

use crate::EngineConfig;
use crate::error::{EngineError, Result};
use crate::hub::Hub;
use crate::space::SpaceMsg;
use crate::space::actor::{SpaceActor, SpaceArgs};
use crate::space::cache::CacheBudget;
use crate::store::Store;

/// A live space actor and its admission counter.
#[derive(Clone)]
pub(crate) struct Entry {
    actor: ActorRef<SpaceMsg>,
    inflight: Arc<AtomicUsize>,
}

type Map = Arc<RwLock<HashMap<crate::model::SpaceId, Entry>>>;

/// Resolves spaces to their actors. Cheap to clone.
#[derive(Clone)]
pub struct Directory {
    map: Map,
    supervisor: ActorRef<SupervisorMsg>,
    store: Arc<dyn Store>,
    metrics: Metrics,
    config: Arc<EngineConfig>,
}

/// Messages of [`SpaceSupervisor`].
pub(crate) enum SupervisorMsg {
    /// Ensure a live actor for the space and return it.
    Resolve(crate::model::SpaceId, RpcReplyPort<Result<Entry>>),
    /// A space actor found itself idle.
    Passivate(crate::model::SpaceId, ActorId),
    /// A space actor's `pre_start` failed (e.g. the store was unreachable).
    StartFailed(crate::model::SpaceId, ActorId, String),
}

/// Decrements a space's in-flight count when a call ends, however it ends.
struct Admitted {
    inflight: Arc<AtomicUsize>,
    metrics: Metrics,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.inflight.fetch_sub(1, Ordering::AcqRel);
        self.metrics.space_commands_inflight.dec();
    }
}

/// A command delivered to its space actor's mailbox, whose answer has not arrived yet. It keeps
/// its admission slot until it is awaited or dropped.
///
/// Commands delivered one after another from one task are handled by the actor in that order
/// (a ractor mailbox is FIFO), so their effects are sequenced in submission order however their
/// answers are awaited: one connection can pipeline sends and still see them in order.
#[must_use = "a submitted command's outcome is only known by awaiting it"]
pub struct Pending<T> {
    rx: tokio::sync::oneshot::Receiver<Result<T>>,
    timeout: Duration,
    _admitted: Admitted,
}

impl<T> Pending<T> {
    /// Waits for the actor's answer.
    ///
    /// # Errors
    /// Whatever the actor answers; `SpaceUnavailable` if it died with the command in flight or did
    /// not answer within the call timeout.
    pub async fn wait(self) -> Result<T> {
        match tokio::time::timeout(self.timeout, self.rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_dropped)) => Err(EngineError::SpaceUnavailable),
            Err(_elapsed) => Err(EngineError::SpaceUnavailable),
        }
    }
}

impl Directory {
    /// Starts the supervisor. Space actors are spawned on demand.
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        hub: Hub,
        metrics: Metrics,
        config: Arc<EngineConfig>,
    ) -> Result<Self> {
        let map: Map = Arc::default();
        let sup = SpaceSupervisor;
        let args = SupervisorArgs {
            map: map.clone(),
            store: store.clone(),
            hub,
            cache_budget: CacheBudget::new(config.message_cache_bytes, metrics.clone()),
            metrics: metrics.clone(),
            config: config.clone(),
        };
        let (supervisor, _join) = SpaceSupervisor::spawn(None, sup, args)
            .await
            .map_err(|e| EngineError::Internal(format!("space supervisor failed to start: {e}")))?;
        Ok(Directory {
            map,
            supervisor,
            store,
            metrics,
            config,
        })
    }

    /// Sends a command built by `make` to the space's actor and waits for its answer.
    ///
    /// # Errors
    /// Those of [`Directory::submit`] and [`Pending::wait`].
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        space_id: crate::model::SpaceId,
        make: impl Fn(RpcReplyPort<Result<T>>) -> SpaceMsg,
    ) -> Result<T> {
        self.submit(space_id, make).await?.wait().await
    }

    /// Delivers a command built by `make` to the space's actor mailbox and returns without waiting
    /// for its answer. When this returns `Ok`, the command is in the mailbox, behind every command
    /// this task submitted before (see [`Pending`]).
    ///
    /// A command that could not be delivered because the actor was stopping is retried on a
    /// fresh actor (which starts only after the old one's writer settled everything, so order is
    /// kept); one that was delivered is never retried (it may have been written).
    ///
    /// # Errors
    /// `SpaceNotFound`, `Overloaded` (the space's admission limit), `SpaceUnavailable` (no live
    /// actor after retries), `ShuttingDown`, `StoreUnavailable` (resolving a cold space).
    pub(crate) async fn submit<T: Send + 'static>(
        &self,
        space_id: crate::model::SpaceId,
        make: impl Fn(RpcReplyPort<Result<T>>) -> SpaceMsg,
    ) -> Result<Pending<T>> {
        for _attempt in 0..3 {
            let entry = self.resolve(space_id).await?;
            let admitted = entry.inflight.fetch_add(1, Ordering::AcqRel) + 1;
            self.metrics.space_commands_inflight.inc();
            let guard = Admitted {
                inflight: entry.inflight.clone(),
                metrics: self.metrics.clone(),
            };
            if admitted > self.config.max_inflight_per_space {
                self.metrics.space_admission_rejected.inc();
                return Err(EngineError::Overloaded {
                    retry_after: Duration::from_secs(1),
                });
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            if entry.actor.send_message(make(tx.into())).is_err() {
                // Not delivered: the actor is draining or gone. Forget it and try a fresh one.
                self.forget(space_id, entry.actor.get_id());
                continue;
            }
            return Ok(Pending {
                rx,
                timeout: self.config.call_timeout,
                _admitted: guard,
            });
        }
        Err(EngineError::SpaceUnavailable)
    }

    async fn resolve(&self, space_id: crate::model::SpaceId) -> Result<Entry> {
        if let Some(e) = self
            .map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&space_id)
        {
            return Ok(e.clone());
        }
        // Cold path: check existence here, off the supervisor, so a burst of unknown ids does not
        // queue behind store reads.
        if self.store.get_space(space_id).await?.is_none() {
            return Err(EngineError::SpaceNotFound);
        }
        ractor::call!(self.supervisor, SupervisorMsg::Resolve, space_id)
            .map_err(|_| EngineError::ShuttingDown)?
    }

    fn forget(&self, space_id: crate::model::SpaceId, actor: ActorId) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map
            .get(&space_id)
            .is_some_and(|e| e.actor.get_id() == actor)
        {
            map.remove(&space_id);
        }
    }

    /// Space actors alive on this node.
    pub fn live_spaces(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Drains every space actor (each settles what it accepted), then stops the supervisor.
    pub async fn shutdown(&self, timeout: Duration) {
        self.supervisor.drain_children_and_wait(Some(timeout)).await;
        let _ = self.supervisor.stop_and_wait(None, Some(timeout)).await;
    }
}

/// The parent of every space actor on this node. See the module doc.
pub(crate) struct SpaceSupervisor;

pub(crate) struct SupervisorArgs {
    map: Map,
    store: Arc<dyn Store>,
    hub: Hub,
    cache_budget: CacheBudget,
    metrics: Metrics,
    config: Arc<EngineConfig>,
}

pub(crate) struct SupervisorState {
    args: SupervisorArgs,
    /// Live children by actor id.
    children: HashMap<ActorId, (crate::model::SpaceId, ActorCell)>,
    /// One local lease per space that has (or recently had) an actor.
    leases: HashMap<crate::model::SpaceId, Arc<tokio::sync::Mutex<()>>>,
}

impl Actor for SpaceSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            args,
            children: HashMap::new(),
            leases: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        me: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Resolve(space_id, reply) => {
                let _ = reply.send(state.resolve(&me, space_id));
            }
            SupervisorMsg::Passivate(space_id, actor_id) => {
                if state.remove(space_id, actor_id) {
                    if let Some((_, cell)) = state.children.get(&actor_id) {
                        // Finish what is queued, then stop; later sends fail and are retried.
                        let _ = cell.drain();
                    }
                    state.args.metrics.space_passivations.inc();
                    tracing::debug!(%space_id, "space passivated");
                }
            }
            SupervisorMsg::StartFailed(space_id, actor_id, reason) => {
                state.remove(space_id, actor_id);
                state.children.remove(&actor_id);
                state.release_lease(space_id);
                tracing::warn!(%space_id, %reason, "space actor failed to start; the next command retries");
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _me: ActorRef<SupervisorMsg>,
        evt: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some((space_id, _)) = state.children.remove(&cell.get_id()) {
                    state.remove(space_id, cell.get_id());
                    state.release_lease(space_id);
                }
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some((space_id, _)) = state.children.remove(&cell.get_id()) {
                    state.remove(space_id, cell.get_id());
                    state.release_lease(space_id);
                    state.args.metrics.space_restarts.inc();
                    tracing::warn!(%space_id, error = %err, "space actor failed; it is rebuilt from the store on its next command");
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl SupervisorState {
    fn resolve(
        &mut self,
        me: &ActorRef<SupervisorMsg>,
        space_id: crate::model::SpaceId,
    ) -> Result<Entry> {
        if let Some(e) = self
            .args
            .map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&space_id)
        {
            return Ok(e.clone());
        }
        let lease = self.leases.entry(space_id).or_default().clone();
        let args = SpaceArgs {
            space_id,
            store: self.args.store.clone(),
            hub: self.args.hub.clone(),
            cache_budget: self.args.cache_budget.clone(),
            metrics: self.args.metrics.clone(),
            config: self.args.config.clone(),
            lease,
            supervisor: me.clone(),
        };
        // Spawn without waiting for pre_start (it loads the space): commands queue meanwhile, and
        // the supervisor stays responsive.
        let (actor, started) =
            ractor::ActorRuntime::spawn_linked_instant(None, SpaceActor, args, me.get_cell())
                .map_err(|e| EngineError::Internal(format!("spawn failed: {e}")))?;
        let actor_id = actor.get_id();
        let me = me.clone();
        tokio::spawn(async move {
            let failure = match started.await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(reason) = failure {
                let _ = me.send_message(SupervisorMsg::StartFailed(space_id, actor_id, reason));
            }
        });
        let entry = Entry {
            actor,
            inflight: Arc::default(),
        };
        self.children
            .insert(actor_id, (space_id, entry.actor.get_cell()));
        self.args
            .map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(space_id, entry.clone());
        Ok(entry)
    }

    /// Removes the space from the map if `actor_id` is still the one registered for it.
    fn remove(&mut self, space_id: crate::model::SpaceId, actor_id: ActorId) -> bool {
        let mut map = self.args.map.write().unwrap_or_else(|p| p.into_inner());
        if map
            .get(&space_id)
            .is_some_and(|e| e.actor.get_id() == actor_id)
        {
            map.remove(&space_id);
            return true;
        }
        false
    }

    /// Forgets a lease nobody holds or waits for.
    fn release_lease(&mut self, space_id: crate::model::SpaceId) {
        if self
            .leases
            .get(&space_id)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            self.leases.remove(&space_id);
        }
    }
}
