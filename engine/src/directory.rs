//! The directory: the one place that resolves a space id to the actor that owns it.
//!
//! Every command reaches its space through [`Directory::submit`] (pipelined) or
//! [`Directory::execute`] (one at a time, retried across an ownership change). On one node the
//! answer is always a local actor. In a cluster ([`crate::bus`]) a space runs here only while this
//! node holds its lease; otherwise the command is forwarded to the owner, and a space nobody owns
//! is taken over by the first node that needs it. Callers do not change.
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
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use spacecast_observability::Metrics;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::EngineConfig;
use crate::bus::{Answer, Bus, CommandSink, Fanout, Forwarded, Lease};
use crate::error::{EngineError, Result};
use crate::model::SpaceId;
use crate::space::SpaceMsg;
use crate::space::actor::{SpaceActor, SpaceArgs};
use crate::space::cache::CacheBudget;
use crate::space::command::{Command, Outcome};
use crate::store::Store;

/// A live space actor and its admission counter.
#[derive(Clone)]
pub(crate) struct Entry {
    actor: ActorRef<SpaceMsg>,
    inflight: Arc<AtomicUsize>,
}

type Map = Arc<RwLock<HashMap<SpaceId, Entry>>>;

/// How long a space answered by another node is assumed to stay there before this node tries to
/// take it again (a forward that finds no owner forgets it at once).
const REMOTE_TTL: Duration = Duration::from_secs(2);
/// Pause between attempts while a space changes owner.
const ROUTE_RETRY: Duration = Duration::from_millis(50);

/// Resolves spaces to their actors. Cheap to clone.
#[derive(Clone)]
pub struct Directory {
    map: Map,
    supervisor: ActorRef<SupervisorMsg>,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    /// Spaces recently answered by another node, and when.
    remote: Arc<Mutex<HashMap<SpaceId, Instant>>>,
    /// Spaces whose owner was found gone (a forwarded command found no owner), and when it was
    /// first found gone: the start of a failover, observed when this node takes the space
    /// (`spacecast_space_failover_seconds`) and forgotten when another node answers for it.
    orphaned: Arc<Failovers>,
    metrics: Metrics,
    config: Arc<EngineConfig>,
}

/// Where a command goes.
enum Route {
    Local(Entry),
    Remote,
}

/// Messages of [`SpaceSupervisor`].
pub(crate) enum SupervisorMsg {
    /// Ensure a live actor for the space, owning it under the lease, and return it.
    Resolve(SpaceId, Arc<Lease>, RpcReplyPort<Result<Entry>>),
    /// This node lost the space's lease: stop its actor.
    LeaseLost(SpaceId),
    /// A space actor found itself idle.
    Passivate(SpaceId, ActorId),
    /// A space actor's `pre_start` failed (e.g. the store was unreachable).
    StartFailed(SpaceId, ActorId, String),
    /// The directory itself, once built.
    SetSink(Arc<dyn CommandSink>),
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

/// Where a pending command's answer comes from.
enum Source {
    Local(oneshot::Receiver<Result<Outcome>>),
    /// The span is the forward's (`bus.forward`), ended when the answer is settled.
    Remote(Answer, Directory, SpaceId, tracing::Span),
}

/// A command delivered to its space actor's mailbox (or sent to the owner node), whose answer has
/// not arrived yet. It keeps its admission slot until it is awaited or dropped.
///
/// Commands delivered one after another from one task are handled by the actor in that order
/// (a ractor mailbox is FIFO, and so is one NATS connection's stream to one subscriber), so their
/// effects are sequenced in submission order however their answers are awaited: one connection
/// can pipeline sends and still see them in order.
#[must_use = "a submitted command's outcome is only known by awaiting it"]
pub struct Pending<T> {
    source: Source,
    map: fn(Outcome) -> Result<T>,
    timeout: Duration,
    _admitted: Option<Admitted>,
}

/// What a pending command came to.
// One per command, returned once: boxing the outcome would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Settled {
    Ran(Result<Outcome>),
    /// Nothing ran: the space had no owner, or the node asked no longer owns it.
    Unrouted,
}

impl Pending<Outcome> {
    /// The same pending command, its outcome converted by `f`.
    pub(crate) fn map<U>(self, f: fn(Outcome) -> Result<U>) -> Pending<U> {
        Pending {
            source: self.source,
            map: f,
            timeout: self.timeout,
            _admitted: self._admitted,
        }
    }
}

impl<T> Pending<T> {
    /// Waits for the answer.
    ///
    /// # Errors
    /// Whatever the space answers; `SpaceUnavailable` if its actor died with the command in
    /// flight, did not answer within the call timeout, or (in a cluster) the space was changing
    /// owner and the command did not run.
    pub async fn wait(self) -> Result<T> {
        let map = self.map;
        match self.settle().await {
            Settled::Ran(r) => r.and_then(map),
            Settled::Unrouted => Err(EngineError::SpaceUnavailable),
        }
    }

    async fn settle(self) -> Settled {
        match self.source {
            Source::Local(rx) => match tokio::time::timeout(self.timeout, rx).await {
                Ok(Ok(result)) => Settled::Ran(result),
                Ok(Err(_)) | Err(_) => Settled::Ran(Err(EngineError::SpaceUnavailable)),
            },
            Source::Remote(rx, dir, space_id, _span) => {
                match tokio::time::timeout(self.timeout, rx).await {
                    Ok(Ok(Forwarded::Ran(r))) => {
                        dir.remember_remote(space_id);
                        dir.owner_found(space_id);
                        Settled::Ran(r)
                    }
                    Ok(Ok(Forwarded::NoOwner | Forwarded::NotOwner)) => {
                        dir.forget_remote(space_id);
                        dir.owner_gone(space_id);
                        Settled::Unrouted
                    }
                    Ok(Err(_dropped)) => Settled::Ran(Err(EngineError::BusUnavailable(
                        "the bus connection closed".into(),
                    ))),
                    Err(_) => Settled::Ran(Err(EngineError::SpaceUnavailable)),
                }
            }
        }
    }
}

/// When each space's owner was first found gone, for the failovers this node may finish
/// (`spacecast_space_failover_seconds`). Bounded: at [`Failovers::MAX`] entries it forgets
/// those older than [`Failovers::FORGET_AFTER`] (another node took the space and this one never
/// asked again), and if half of them are still recent (a mass failover) it forgets them all, so
/// the sweep costs O(1) amortised per failover and those failovers go unmeasured.
#[derive(Default)]
struct Failovers(Mutex<HashMap<SpaceId, Instant>>);

impl Failovers {
    const MAX: usize = 10_000;
    const FORGET_AFTER: Duration = Duration::from_secs(300);

    /// A failover of `space_id` started at `at`, unless one already had.
    fn started(&self, space_id: SpaceId, at: Instant) {
        let mut o = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if o.len() >= Self::MAX {
            o.retain(|_, since| since.elapsed() < Self::FORGET_AFTER);
            if o.len() >= Self::MAX / 2 {
                o.clear();
            }
        }
        o.entry(space_id).or_insert(at);
    }

    /// The failover of `space_id` is over (or was not this node's): when it started, if known.
    fn ended(&self, space_id: SpaceId) -> Option<Instant> {
        let mut o = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if o.is_empty() {
            return None;
        }
        o.remove(&space_id)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Directory {
    /// Starts the supervisor. Space actors are spawned on demand. `lost` reports spaces whose
    /// lease this node lost (cluster only).
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        fanout: Fanout,
        metrics: Metrics,
        config: Arc<EngineConfig>,
        lost: Option<mpsc::UnboundedReceiver<SpaceId>>,
    ) -> Result<Self> {
        let map: Map = Arc::default();
        let bus = fanout.bus().clone();
        let sup = SpaceSupervisor;
        let args = SupervisorArgs {
            map: map.clone(),
            store: store.clone(),
            fanout,
            cache_budget: CacheBudget::new(config.message_cache_bytes, metrics.clone()),
            metrics: metrics.clone(),
            config: config.clone(),
            sink: None,
        };
        let (supervisor, _join) = SpaceSupervisor::spawn(None, sup, args)
            .await
            .map_err(|e| EngineError::Internal(format!("space supervisor failed to start: {e}")))?;
        let dir = Directory {
            map,
            supervisor,
            store,
            bus,
            remote: Arc::default(),
            orphaned: Arc::default(),
            metrics,
            config,
        };
        dir.metrics
            .space_mailbox_limit
            .set(i64::try_from(dir.config.max_inflight_per_space).unwrap_or(i64::MAX));
        // The supervisor hands the directory to each space actor, which serves forwarded
        // commands through it.
        let _ = dir
            .supervisor
            .send_message(SupervisorMsg::SetSink(Arc::new(dir.clone())));
        if let Some(mut lost) = lost {
            let sup = dir.supervisor.clone();
            tokio::spawn(async move {
                while let Some(space_id) = lost.recv().await {
                    if sup
                        .send_message(SupervisorMsg::LeaseLost(space_id))
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
        Ok(dir)
    }

    /// Runs a command and waits for its outcome. While the space changes owner (in a cluster),
    /// a command that did not run is sent again, to the new owner, until the call timeout:
    /// safe because nothing ran, and because this caller has nothing else in flight.
    ///
    /// # Errors
    /// Those of the command, [`Directory::submit`] and [`Pending::wait`].
    pub(crate) async fn execute(&self, space_id: SpaceId, cmd: Command) -> Result<Outcome> {
        let deadline = Instant::now() + self.config.call_timeout;
        loop {
            let pending = self.submit(space_id, cmd.clone()).await?;
            match pending.settle().await {
                Settled::Ran(r) => return r,
                Settled::Unrouted if Instant::now() < deadline => {
                    self.metrics.space_reroutes.inc();
                    tokio::time::sleep(ROUTE_RETRY).await;
                }
                Settled::Unrouted => return Err(EngineError::SpaceUnavailable),
            }
        }
    }

    /// Delivers a command to the space's actor mailbox (here, or on its owner node) and returns
    /// without waiting for its answer. When this returns `Ok`, the command is on its way, behind
    /// every command this task submitted before (see [`Pending`]).
    ///
    /// A command that could not be delivered because the local actor was stopping is retried on a
    /// fresh actor (which starts only after the old one's writer settled everything, so order is
    /// kept); one that was delivered is never retried (it may have been written).
    ///
    /// # Errors
    /// `SpaceNotFound`, `Overloaded` (the space's admission limit), `SpaceUnavailable` (no live
    /// actor after retries), `ShuttingDown`, `StoreUnavailable` (resolving a cold space),
    /// `BusUnavailable` (cluster work while NATS is unreachable).
    pub(crate) async fn submit(&self, space_id: SpaceId, cmd: Command) -> Result<Pending<Outcome>> {
        for _attempt in 0..3 {
            match self.route(space_id).await? {
                Route::Remote => {
                    // Lives until the owner's answer arrives (or the caller gives up): the
                    // forward's round trip. The bus puts its context in the request headers.
                    let span =
                        tracing::debug_span!("bus.forward", space_id = %space_id, op = cmd.name());
                    let rx = self
                        .bus
                        .forward(space_id, &cmd)
                        .instrument(span.clone())
                        .await?;
                    self.metrics.commands_forwarded.inc();
                    return Ok(Pending {
                        source: Source::Remote(rx, self.clone(), space_id, span),
                        map: Ok,
                        timeout: self.config.call_timeout,
                        _admitted: None,
                    });
                }
                Route::Local(entry) => match self.submit_to(&entry, space_id, cmd.clone()) {
                    Some(r) => return r,
                    // Not delivered: the actor is draining or gone. Forget it, try a fresh one.
                    None => self.forget(space_id, entry.actor.get_id()),
                },
            }
        }
        Err(EngineError::SpaceUnavailable)
    }

    /// Admission control and delivery to a live local actor; `None` if it no longer takes
    /// messages.
    fn submit_to(
        &self,
        entry: &Entry,
        _space_id: SpaceId,
        cmd: Command,
    ) -> Option<Result<Pending<Outcome>>> {
        let admitted = entry.inflight.fetch_add(1, Ordering::AcqRel) + 1;
        self.metrics.space_commands_inflight.inc();
        let guard = Admitted {
            inflight: entry.inflight.clone(),
            metrics: self.metrics.clone(),
        };
        if admitted > self.config.max_inflight_per_space {
            self.metrics.space_admission_rejected.inc();
            return Some(Err(EngineError::Overloaded {
                retry_after: Duration::from_secs(1),
            }));
        }
        self.metrics.space_mailbox_max.observe(admitted);
        let (tx, rx) = oneshot::channel();
        if entry
            .actor
            .send_message(SpaceMsg::Command(cmd, tx.into(), tracing::Span::current()))
            .is_err()
        {
            return None;
        }
        Some(Ok(Pending {
            source: Source::Local(rx),
            map: Ok,
            timeout: self.config.call_timeout,
            _admitted: Some(guard),
        }))
    }

    /// Where the space's commands go now: its live local actor; a new local actor (single node,
    /// or a cluster node that just took the lease); or the owner node.
    async fn route(&self, space_id: SpaceId) -> Result<Route> {
        if self.bus.clustered() && !self.bus.healthy() {
            // Even a space owned here: its events could not reach the other nodes, and its
            // lease cannot be renewed (it is given up when the connection drops).
            return Err(EngineError::BusUnavailable("NATS is unreachable".into()));
        }
        if let Some(e) = self.local(space_id) {
            return Ok(Route::Local(e));
        }
        if self.bus.clustered() && self.known_remote(space_id) {
            return Ok(Route::Remote);
        }
        // Cold path: check existence here, off the supervisor, so a burst of unknown ids does not
        // queue behind store reads (nor take leases).
        if self.store.get_space(space_id).await?.is_none() {
            return Err(EngineError::SpaceNotFound);
        }
        let Some(lease) = self.bus.acquire(space_id).await? else {
            self.remember_remote(space_id);
            return Ok(Route::Remote);
        };
        self.forget_remote(space_id);
        self.took_over(space_id);
        let entry = ractor::call!(self.supervisor, SupervisorMsg::Resolve, space_id, lease)
            .map_err(|_| EngineError::ShuttingDown)??;
        Ok(Route::Local(entry))
    }

    fn local(&self, space_id: SpaceId) -> Option<Entry> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&space_id)
            .cloned()
    }

    fn known_remote(&self, space_id: SpaceId) -> bool {
        self.remote
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&space_id)
            .is_some_and(|at| at.elapsed() < REMOTE_TTL)
    }

    fn remember_remote(&self, space_id: SpaceId) {
        let mut r = self.remote.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() > 100_000 {
            r.retain(|_, at| at.elapsed() < REMOTE_TTL);
        }
        r.insert(space_id, Instant::now());
    }

    /// A forwarded command found no owner for the space: a failover starts (unless one is
    /// already under way).
    fn owner_gone(&self, space_id: SpaceId) {
        self.orphaned.started(space_id, Instant::now());
    }

    /// Another node answered for the space: no failover (by this node) under way.
    fn owner_found(&self, space_id: SpaceId) {
        self.orphaned.ended(space_id);
    }

    /// This node holds the space's lease now: observes the failover time if its owner had been
    /// found gone.
    fn took_over(&self, space_id: SpaceId) {
        if let Some(since) = self.orphaned.ended(space_id) {
            self.metrics
                .failover_duration
                .observe(since.elapsed().as_secs_f64());
        }
    }

    fn forget_remote(&self, space_id: SpaceId) {
        self.remote
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&space_id);
    }

    fn forget(&self, space_id: SpaceId, actor: ActorId) {
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

#[async_trait]
impl CommandSink for Directory {
    async fn submit_owned(
        &self,
        space_id: SpaceId,
        cmd: Command,
    ) -> Option<Result<Pending<Outcome>>> {
        // Only a live local actor: it exists only while this node holds the space's lease.
        let entry = self.local(space_id)?;
        self.submit_to(&entry, space_id, cmd)
    }
}

/// The parent of every space actor on this node. See the module doc.
pub(crate) struct SpaceSupervisor;

pub(crate) struct SupervisorArgs {
    map: Map,
    store: Arc<dyn Store>,
    fanout: Fanout,
    cache_budget: CacheBudget,
    metrics: Metrics,
    config: Arc<EngineConfig>,
    /// The directory, set right after it is built: space actors serve forwarded commands
    /// through it.
    sink: Option<Arc<dyn CommandSink>>,
}

pub(crate) struct SupervisorState {
    args: SupervisorArgs,
    /// Live children by actor id, with the ownership lease each runs under.
    children: HashMap<ActorId, (SpaceId, ActorCell, Arc<Lease>)>,
    /// One local lease per space that has (or recently had) an actor.
    leases: HashMap<SpaceId, Arc<tokio::sync::Mutex<()>>>,
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
            SupervisorMsg::SetSink(sink) => state.args.sink = Some(sink),
            SupervisorMsg::Resolve(space_id, ownership, reply) => {
                let _ = reply.send(state.resolve(&me, space_id, ownership));
            }
            SupervisorMsg::LeaseLost(space_id) => {
                let live = state
                    .args
                    .map
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&space_id)
                    .map(|e| e.actor.get_id());
                if let Some(actor_id) = live {
                    state.remove(space_id, actor_id);
                    if let Some((_, cell, _)) = state.children.get(&actor_id) {
                        // Its writer refuses to commit without a valid lease; stop now so the
                        // space's commands go to the new owner.
                        cell.stop(Some("lease lost".into()));
                    }
                    state.args.metrics.space_leases_lost.inc();
                }
            }
            SupervisorMsg::Passivate(space_id, actor_id) => {
                if state.remove(space_id, actor_id) {
                    if let Some((_, cell, _)) = state.children.get(&actor_id) {
                        // Finish what is queued, then stop; later sends fail and are retried.
                        let _ = cell.drain();
                    }
                    state.args.metrics.space_passivations.inc();
                    tracing::debug!(%space_id, "space passivated");
                }
            }
            SupervisorMsg::StartFailed(space_id, actor_id, reason) => {
                state.remove(space_id, actor_id);
                if let Some((_, _, ownership)) = state.children.remove(&actor_id) {
                    let bus = state.args.fanout.bus().clone();
                    tokio::spawn(async move { bus.release(ownership).await });
                }
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
                if let Some((space_id, _, _)) = state.children.remove(&cell.get_id()) {
                    state.remove(space_id, cell.get_id());
                    state.release_lease(space_id);
                }
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some((space_id, _, _)) = state.children.remove(&cell.get_id()) {
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
        space_id: SpaceId,
        ownership: Arc<Lease>,
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
        let Some(sink) = self.args.sink.clone() else {
            return Err(EngineError::Internal("directory not started".into()));
        };
        let lease = self.leases.entry(space_id).or_default().clone();
        let args = SpaceArgs {
            space_id,
            store: self.args.store.clone(),
            fanout: self.args.fanout.clone(),
            ownership: ownership.clone(),
            sink,
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
            .insert(actor_id, (space_id, entry.actor.get_cell(), ownership));
        self.args
            .map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(space_id, entry.clone());
        Ok(entry)
    }

    /// Removes the space from the map if `actor_id` is still the one registered for it.
    fn remove(&mut self, space_id: SpaceId, actor_id: ActorId) -> bool {
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
    fn release_lease(&mut self, space_id: SpaceId) {
        if self
            .leases
            .get(&space_id)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            self.leases.remove(&space_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::new_id;

    #[test]
    fn a_failover_is_timed_from_its_first_start_and_ends_once() {
        let f = Failovers::default();
        let space = new_id();
        let first = Instant::now();
        f.started(space, first);
        f.started(space, first + Duration::from_secs(1));
        assert_eq!(f.ended(space), Some(first), "the first start counts");
        assert_eq!(f.ended(space), None, "ended once");
        assert_eq!(f.ended(new_id()), None);
    }

    #[test]
    fn failovers_stay_bounded_in_a_mass_failover() {
        let f = Failovers::default();
        let old = Instant::now()
            .checked_sub(Failovers::FORGET_AFTER + Duration::from_secs(1))
            .expect("the clock is past the window");
        // Old entries are swept at the bound…
        for _ in 0..Failovers::MAX {
            f.started(new_id(), old);
        }
        f.started(new_id(), Instant::now());
        assert_eq!(f.len(), 1, "the stale ones were forgotten");
        // …and recent ones too when a mass failover fills it, in O(1) amortised.
        for _ in 0..3 * Failovers::MAX {
            f.started(new_id(), Instant::now());
            assert!(f.len() <= Failovers::MAX);
        }
    }
}
