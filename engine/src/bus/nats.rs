//! The NATS bus: core NATS for forwarded commands and events, JetStream KV for leases.
//!
//! Subjects (one token per space id, so a node hears only what it needs):
//! - `spacecast.cmd.<space>`: commands for the space's owner, which alone subscribes (in a queue
//!   group, so a command is handled once even while an old and a new owner overlap); the answer
//!   goes to the requester's reply subject `spacecast.reply.<node>.<n>`. A command published
//!   while nobody subscribes comes back at once as NATS "no responders": nothing ran.
//! - `spacecast.ev.<space>`: each durable commit's events, published by the owner; a node
//!   subscribes only while it has local subscribers of the space.
//! - `spacecast.user.<token>`: events for one user's sessions ([`crate::users`]), `<token>` the
//!   hex of a hash of the user id ([`crate::users::subject_token`]); a node subscribes only while
//!   it has a session of that user, and checks the user id each message carries.
//! - `spacecast.pr.<space>`: presence ([`crate::presence`]): each node following the space
//!   publishes its changes and, every 15 s, its full snapshot there, and subscribes while it
//!   follows the space.
//! - `spacecast.prq.<space>`: requests for presence snapshots (a node asked about a space it does
//!   not follow); every node following the space answers with its snapshot on the reply subject.
//! - KV bucket `spacecast_leases`, key `space.<space>`, value the owner's node id, expiring one
//!   lease TTL after its last write (see [`super::lease`]).
//!
//! While the connection is down, nothing is queued for later: commands and leases fail at once
//! with `BusUnavailable`, and leases run out by their own deadline. When it comes back, every
//! watched space catches up from the store ([`super::Fanout::catch_up_all`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use spacecast_observability::Metrics;
use spacecast_observability::trace::{self, TraceParent};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::Instrument;

use super::lease::{Clock, KvError, Lease, LeaseKv, LeaseTiming, Leases, Renewal, SystemClock};
use super::{Answer, Bus, CommandSink, Fanout, Forwarded, Serving, unavailable};
use crate::error::{EngineError, Result};
use crate::event::{EventTraces, Published, SpaceEvent};
use crate::hub::Typing;
use crate::model::SpaceId;
use crate::presence::{Presence, PresenceWire};
use crate::space::command::{Command, WireResult};
use crate::users::{UserChannels, UserEvent, subject_token};

/// The KV bucket of ownership leases.
pub const LEASE_BUCKET: &str = "spacecast_leases";

/// How to join the cluster.
#[derive(Clone, Debug)]
pub struct NatsConfig {
    pub url: String,
    /// Unique in the cluster; letters, digits, `-` and `_` (it is a subject token).
    pub node_id: String,
    pub lease: LeaseTiming,
}

/// Whether `id` can name a node (it becomes a NATS subject token and a KV value).
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Leases held by this node, by space.
type Held = Arc<Mutex<HashMap<SpaceId, Arc<Lease>>>>;

/// Gives up every held lease at once (the connection is gone) and reports each space lost.
fn drop_all(held: &Held, lost: &mpsc::UnboundedSender<SpaceId>, metrics: &Metrics) {
    let dropped: Vec<Arc<Lease>> = {
        let mut h = held.lock().unwrap_or_else(|p| p.into_inner());
        metrics.leases_held.set(0);
        h.drain().map(|(_, l)| l).collect()
    };
    for lease in dropped {
        lease.lose();
        let _ = lost.send(lease.space_id);
    }
}

/// One message for [`publish_in_order`]: its subject, payload, headers, and when it was handed
/// over (for `spacecast_bus_publish_duration_seconds`).
type Outgoing = (String, Bytes, Option<async_nats::HeaderMap>, Instant);

/// The header listing a commit message's sampled events: `<seq>` for an event whose delivery
/// continues the message's own `traceparent` (the owner's `bus.publish` span), `<seq>=<W3C
/// traceparent>` for one in another trace; comma-separated. Absent when no event is sampled.
pub const EVENT_TRACES_HEADER: &str = "Spacecast-Event-Traces";

/// The trace headers of a commit message, or `None` when none of its events is sampled (always,
/// with traces off): `traceparent` from `span` (the publish span) and [`EVENT_TRACES_HEADER`].
fn event_trace_headers(
    span: &tracing::Span,
    events: &[Published],
) -> Option<async_nats::HeaderMap> {
    if !events.iter().any(|p| p.trace.is_some()) {
        return None;
    }
    let own = TraceParent::of(span);
    let mut list = String::new();
    for p in events {
        let Some(t) = p.trace else { continue };
        if !list.is_empty() {
            list.push(',');
        }
        list.push_str(&p.event.seq.to_string());
        if own.is_none_or(|o| !o.same_trace(&t)) {
            list.push('=');
            list.push_str(&t.header());
        }
    }
    let mut headers = async_nats::HeaderMap::new();
    trace::inject(span, |k, v| headers.insert(k, v));
    headers.insert(EVENT_TRACES_HEADER, list);
    Some(headers)
}

/// The trace each sampled event of a received commit continues (see [`EVENT_TRACES_HEADER`]);
/// malformed entries are skipped (their deliveries are simply not traced).
fn received_event_traces(headers: Option<&async_nats::HeaderMap>) -> EventTraces {
    let Some(h) = headers else {
        return EventTraces::new();
    };
    let Some(list) = h.get(EVENT_TRACES_HEADER) else {
        return EventTraces::new();
    };
    let own = trace::extract_parent(|k| h.get(k).map(|v| v.as_str()));
    let mut out: EventTraces = list
        .as_str()
        .split(',')
        .filter_map(|item| {
            let (seq, tp) = match item.split_once('=') {
                Some((seq, tp)) => (seq, TraceParent::parse(tp)?),
                None => (item, own?),
            };
            Some((seq.trim().parse().ok()?, tp))
        })
        .collect();
    out.sort_unstable_by_key(|(seq, _)| *seq);
    out
}

/// Answers in flight, by reply id, with when each command was sent (for
/// `spacecast_bus_forward_duration_seconds`).
type Waiting = Arc<Mutex<HashMap<u64, (oneshot::Sender<Forwarded>, Instant)>>>;

/// What an event subject carries. `node` is the publishing node, which delivered it to its own
/// subscribers already.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Envelope<N, E> {
    /// A durable commit's events, in seq order.
    Events { node: N, events: E },
    /// Somebody is typing.
    Typing { node: N, user_id: N, username: N },
}

/// What a user subject carries: the publishing node (which delivered it to its own sessions
/// already), the user it is for, and the event.
#[derive(Serialize, Deserialize)]
struct UserEnvelope<N, E> {
    node: N,
    user_id: N,
    event: E,
}

/// The JetStream KV store under [`LeaseKv`].
struct NatsKv(kv::Store);

fn kv_unavailable(e: impl std::fmt::Display) -> KvError {
    KvError::Unavailable(e.to_string())
}

#[async_trait]
impl LeaseKv for NatsKv {
    async fn create(&self, key: &str, value: &[u8]) -> Result<u64, KvError> {
        match self.0.create(key, Bytes::copy_from_slice(value)).await {
            Ok(rev) => Ok(rev),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(KvError::Conflict),
            Err(e) => Err(kv_unavailable(e)),
        }
    }

    async fn update(&self, key: &str, value: &[u8], revision: u64) -> Result<u64, KvError> {
        match self
            .0
            .update(key, Bytes::copy_from_slice(value), revision)
            .await
        {
            Ok(rev) => Ok(rev),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(KvError::Conflict),
            Err(e) => Err(kv_unavailable(e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, KvError> {
        match self.0.entry(key).await.map_err(kv_unavailable)? {
            Some(e) if e.operation == kv::Operation::Put => {
                Ok(Some((e.value.to_vec(), e.revision)))
            }
            _ => Ok(None),
        }
    }

    async fn delete(&self, key: &str, revision: u64) -> Result<(), KvError> {
        self.0
            .delete_expect_revision(key, Some(revision))
            .await
            .map_err(kv_unavailable)
    }
}

/// See the module doc.
pub struct NatsBus {
    client: async_nats::Client,
    node_id: String,
    leases: Leases<NatsKv>,
    /// Leases held by this node.
    held: Held,
    /// One acquisition at a time: two local callers of a cold space must not race for its key.
    acquiring: tokio::sync::Mutex<()>,
    connected: Arc<AtomicBool>,
    waiting: Waiting,
    next_reply: AtomicU64,
    /// Commits to publish, in order, by one task (with trace headers when one is sampled), with
    /// when each was handed over.
    outgoing: mpsc::UnboundedSender<Outgoing>,
    /// Spaces whose lease was lost, for the directory to stop their actors.
    lost: mpsc::UnboundedSender<SpaceId>,
    /// Signalled when the connection comes back.
    reconnected: Arc<Notify>,
    metrics: Metrics,
}

impl NatsBus {
    /// Connects, opens the lease bucket, and starts the reply, publish and renewal tasks.
    /// Returns the bus and the stream of spaces whose lease this node lost.
    ///
    /// # Errors
    /// `BusUnavailable` if NATS cannot be reached or JetStream is not enabled there.
    pub async fn connect(
        cfg: NatsConfig,
        metrics: Metrics,
    ) -> Result<(Arc<NatsBus>, mpsc::UnboundedReceiver<SpaceId>)> {
        if !valid_node_id(&cfg.node_id) {
            return Err(EngineError::Invalid(
                "invalid_node_id",
                format!(
                    "node id {:?}: use 1-64 letters, digits, - and _",
                    cfg.node_id
                ),
            ));
        }
        let connected = Arc::new(AtomicBool::new(false));
        let reconnected = Arc::new(Notify::new());
        let held: Held = Arc::default();
        let (lost, lost_rx) = mpsc::unbounded_channel();
        let (c, r, m) = (connected.clone(), reconnected.clone(), metrics.clone());
        let (h, l) = (held.clone(), lost.clone());
        let node = cfg.node_id.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("spacecast-{}", cfg.node_id))
            .connection_timeout(Duration::from_secs(3))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64 * 100).min(1000))
            })
            .event_callback(move |ev| {
                let (c, r, m, node) = (c.clone(), r.clone(), m.clone(), node.clone());
                let (h, l) = (h.clone(), l.clone());
                async move {
                    match ev {
                        async_nats::Event::Connected => {
                            m.bus_connected.set(1);
                            if !c.swap(true, Ordering::AcqRel) {
                                tracing::info!(node = %node, "NATS connection is back");
                            }
                            r.notify_waiters();
                        }
                        async_nats::Event::Disconnected | async_nats::Event::Closed => {
                            m.bus_connected.set(0);
                            if c.swap(false, Ordering::AcqRel) {
                                tracing::error!(node = %node, "lost the NATS connection: cluster work is refused (503 bus_unavailable) and this node gives up every space it owned");
                            }
                            // Without the bus, leases cannot be renewed and other nodes cannot
                            // reach this one: stop writing now rather than at each deadline.
                            drop_all(&h, &l, &m);
                        }
                        other => tracing::warn!(node = %node, event = %other, "NATS event"),
                    }
                }
            })
            .connect(&cfg.url)
            .await
            .map_err(|e| unavailable(format!("cannot connect to NATS at {}: {e}", cfg.url)))?;
        connected.store(true, Ordering::Release);
        metrics.bus_connected.set(1);
        let mut js = async_nats::jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(1));
        let store = js
            .create_or_update_key_value(kv::Config {
                bucket: LEASE_BUCKET.into(),
                description: "Spacecast space ownership leases".into(),
                history: 1,
                max_age: cfg.lease.ttl,
                storage: async_nats::jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                unavailable(format!(
                    "cannot open the JetStream KV bucket {LEASE_BUCKET} (is JetStream enabled, `nats-server -js`?): {e}"
                ))
            })?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
        let leases = Leases::new(
            Arc::new(NatsKv(store)),
            cfg.node_id.clone(),
            cfg.lease,
            clock,
        );
        let waiting: Waiting = Arc::default();
        let replies = client
            .subscribe(format!("spacecast.reply.{}.>", cfg.node_id))
            .await
            .map_err(unavailable)?;
        tokio::spawn(route_replies(replies, waiting.clone(), metrics.clone()));
        let (outgoing, out_rx) = mpsc::unbounded_channel();
        tokio::spawn(publish_in_order(client.clone(), out_rx, metrics.clone()));
        let bus = Arc::new(NatsBus {
            client,
            node_id: cfg.node_id,
            leases,
            held,
            acquiring: tokio::sync::Mutex::new(()),
            connected,
            waiting,
            next_reply: AtomicU64::new(1),
            outgoing,
            lost,
            reconnected,
            metrics,
        });
        tokio::spawn(renew_forever(Arc::downgrade(&bus)));
        Ok((bus, lost_rx))
    }

    /// Calls `f` (with a clone of `fanout`) every time the connection comes back.
    pub fn on_reconnect(self: &Arc<Self>, fanout: Fanout) {
        let notify = self.reconnected.clone();
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                notify.notified().await;
                if weak.upgrade().is_none() {
                    return;
                }
                fanout.catch_up_all().await;
            }
        });
    }

    fn check_connected(&self) -> Result<()> {
        if self.connected.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(unavailable("NATS is unreachable"))
        }
    }

    /// Spaces whose lease this node holds.
    pub fn held_leases(&self) -> usize {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Hands each answer to its waiting caller; NATS "no responders" means nobody owns the space.
async fn route_replies(mut sub: async_nats::Subscriber, waiting: Waiting, metrics: Metrics) {
    let mut swept = tokio::time::Instant::now();
    while let Some(msg) = sub.next().await {
        let id = msg
            .subject
            .rsplit('.')
            .next()
            .and_then(|t| t.parse::<u64>().ok());
        let tx = id.and_then(|id| {
            waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id)
        });
        if let Some((tx, sent)) = tx {
            metrics
                .bus_forward_duration
                .observe(sent.elapsed().as_secs_f64());
            let answer = if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                Forwarded::NoOwner
            } else {
                match serde_json::from_slice::<WireResult>(&msg.payload) {
                    Ok(WireResult::NotOwner) => Forwarded::NotOwner,
                    Ok(r) => Forwarded::Ran(r.into()),
                    Err(e) => Forwarded::Ran(Err(EngineError::Internal(format!(
                        "unreadable answer from the owner node: {e}"
                    )))),
                }
            };
            let _ = tx.send(answer);
        }
        // Callers that gave up (timeout) leave their slot behind; drop those now and then.
        if swept.elapsed() > Duration::from_secs(5) {
            swept = tokio::time::Instant::now();
            waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, (tx, _)| !tx.is_closed());
        }
    }
}

/// Publishes commits one after another, so a space's commits leave in seq order.
async fn publish_in_order(
    client: async_nats::Client,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    metrics: Metrics,
) {
    while let Some((subject, payload, headers, queued)) = rx.recv().await {
        metrics.bus_publish_queue.dec();
        // Shared bytes: the clone for the log line below costs no copy.
        let subject = async_nats::Subject::from(subject);
        let sent = match headers {
            None => client.publish(subject.clone(), payload).await,
            Some(h) => {
                client
                    .publish_with_headers(subject.clone(), h, payload)
                    .await
            }
        };
        metrics
            .bus_publish_duration
            .observe(queued.elapsed().as_secs_f64());
        if let Err(e) = sent {
            // Subscribers on other nodes repair the gap from the store on the next commit, or
            // when the connection comes back.
            tracing::debug!(%subject, error = %e, "could not publish a commit's events");
        }
    }
}

/// Renews every held lease each `ttl / 3`; a lease found lost is reported to the directory.
async fn renew_forever(bus: std::sync::Weak<NatsBus>) {
    let every = match bus.upgrade() {
        Some(b) => b.leases.timing().renew_every(),
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(bus) = bus.upgrade() else { return };
        let held: Vec<Arc<Lease>> = bus
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let outcomes = futures::future::join_all(held.iter().map(|l| bus.leases.renew(l))).await;
        for (lease, outcome) in held.iter().zip(outcomes) {
            let label = match outcome {
                Renewal::Renewed => "renewed",
                Renewal::Unconfirmed => "unconfirmed",
                Renewal::Lost => "lost",
            };
            bus.metrics.lease_renewals.with_label_values(&[label]).inc();
            if outcome == Renewal::Lost {
                let mut h = bus.held.lock().unwrap_or_else(|p| p.into_inner());
                if h.get(&lease.space_id)
                    .is_some_and(|l| Arc::ptr_eq(l, lease))
                {
                    h.remove(&lease.space_id);
                }
                bus.metrics.leases_held.set(h.len() as i64);
                drop(h);
                tracing::warn!(space_id = %lease.space_id, "lost the lease of a space; its actor stops and another node takes it over");
                let _ = bus.lost.send(lease.space_id);
            }
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[async_trait]
impl Bus for NatsBus {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn clustered(&self) -> bool {
        true
    }

    fn healthy(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    async fn acquire(&self, space_id: SpaceId) -> Result<Option<Arc<Lease>>> {
        self.check_connected()?;
        let _one = self.acquiring.lock().await;
        if let Some(l) = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&space_id)
            .filter(|l| l.is_valid())
        {
            return Ok(Some(l.clone()));
        }
        let acquired = self.leases.acquire(space_id).await;
        let outcome = match &acquired {
            Ok(Some(_)) => "acquired",
            Ok(None) => "held_elsewhere",
            Err(_) => "unavailable",
        };
        self.metrics
            .lease_acquisitions
            .with_label_values(&[outcome])
            .inc();
        match acquired {
            Ok(Some(lease)) => {
                let mut h = self.held.lock().unwrap_or_else(|p| p.into_inner());
                h.insert(space_id, lease.clone());
                self.metrics.leases_held.set(h.len() as i64);
                Ok(Some(lease))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(unavailable(format!("{e:?}"))),
        }
    }

    async fn release(&self, lease: Arc<Lease>) {
        {
            let mut h = self.held.lock().unwrap_or_else(|p| p.into_inner());
            if h.get(&lease.space_id)
                .is_some_and(|l| Arc::ptr_eq(l, &lease))
            {
                h.remove(&lease.space_id);
            }
            self.metrics.leases_held.set(h.len() as i64);
        }
        if self.connected.load(Ordering::Acquire) {
            self.leases.release(&lease).await;
        } else {
            lease.lose();
        }
    }

    async fn serve(&self, space_id: SpaceId, sink: Arc<dyn CommandSink>) -> Result<Serving> {
        self.check_connected()?;
        let mut sub = self
            .client
            .queue_subscribe(format!("spacecast.cmd.{space_id}"), "owner".into())
            .await
            .map_err(unavailable)?;
        self.client.flush().await.map_err(unavailable)?;
        let client = self.client.clone();
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Some(reply) = msg.reply else { continue };
                // The owner's side of a forward, child of the requester's `bus.forward` span
                // (its context is in the request headers); ends when the answer is sent.
                // Only for a sampled requester (see `trace::ROOT_SPANS`).
                let sampled = msg
                    .headers
                    .as_ref()
                    .filter(|h| trace::extract_parent(|k| h.get(k).map(|v| v.as_str())).is_some());
                let span = match sampled {
                    Some(h) => {
                        let span = tracing::debug_span!(
                            parent: None,
                            "bus.command",
                            space_id = %space_id,
                            op = tracing::field::Empty,
                        );
                        trace::extract(&span, |k| h.get(k).map(|v| v.as_str()));
                        span
                    }
                    None => tracing::Span::none(),
                };
                let outcome = match serde_json::from_slice::<Command>(&msg.payload) {
                    Err(e) => Some(Err(EngineError::Internal(format!(
                        "unreadable forwarded command: {e}"
                    )))),
                    // Submitted in arrival order (one requester's commands keep their order);
                    // answered when each is done.
                    Ok(cmd) => {
                        span.record("op", cmd.name());
                        match sink
                            .submit_owned(space_id, cmd)
                            .instrument(span.clone())
                            .await
                        {
                            None => None,
                            Some(Err(e)) => Some(Err(e)),
                            Some(Ok(pending)) => {
                                let client = client.clone();
                                tokio::spawn(
                                    async move {
                                        let r = WireResult::from(pending.wait().await);
                                        answer(&client, reply, &r).await;
                                    }
                                    .instrument(span),
                                );
                                continue;
                            }
                        }
                    }
                };
                let r = match outcome {
                    None => WireResult::NotOwner,
                    Some(r) => WireResult::from(r),
                };
                answer(&client, reply, &r).await;
            }
        });
        let abort = AbortOnDrop(task.abort_handle());
        Ok(Serving::on_drop(move || drop(abort)))
    }

    async fn forward(&self, space_id: SpaceId, cmd: &Command) -> Result<Answer> {
        self.check_connected()?;
        let payload = serde_json::to_vec(cmd).map_err(|e| EngineError::Internal(e.to_string()))?;
        let id = self.next_reply.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, (tx, Instant::now()));
        // The caller's `bus.forward` span (see `Directory::submit`), for the owner's side.
        let mut headers: Option<async_nats::HeaderMap> = None;
        trace::inject(&tracing::Span::current(), |k, v| {
            headers
                .get_or_insert_with(async_nats::HeaderMap::new)
                .insert(k, v)
        });
        let subject = format!("spacecast.cmd.{space_id}");
        let reply = format!("spacecast.reply.{}.{id}", self.node_id);
        let sent = match headers {
            None => {
                self.client
                    .publish_with_reply(subject, reply, payload.into())
                    .await
            }
            Some(h) => {
                self.client
                    .publish_with_reply_and_headers(subject, reply, h, payload.into())
                    .await
            }
        };
        if let Err(e) = sent {
            self.waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            return Err(unavailable(e));
        }
        Ok(rx)
    }

    fn publish(&self, space_id: SpaceId, events: &[Published]) {
        // Child of the commit span; its context goes in the message for the other nodes'
        // deliveries. It covers the encoding and the hand-over to the publishing task.
        let span = tracing::debug_span!("bus.publish", space_id = %space_id, batch.events = events.len() as i64);
        let _in = span.enter();
        let headers = event_trace_headers(&span, events);
        let evs: Vec<&SpaceEvent> = events.iter().map(|p| &p.event).collect();
        match serde_json::to_vec(&Envelope::Events {
            node: &self.node_id,
            events: evs,
        }) {
            Ok(payload) => {
                if self
                    .outgoing
                    .send((
                        format!("spacecast.ev.{space_id}"),
                        payload.into(),
                        headers,
                        Instant::now(),
                    ))
                    .is_ok()
                {
                    self.metrics.bus_publish_queue.inc();
                }
            }
            Err(e) => {
                tracing::error!(%space_id, error = %e, "could not encode a commit for the bus")
            }
        }
    }

    fn publish_typing(&self, t: &Typing) {
        let env: Envelope<&str, ()> = Envelope::Typing {
            node: &self.node_id,
            user_id: &t.user_id,
            username: &t.username,
        };
        if let Ok(payload) = serde_json::to_vec(&env)
            && self
                .outgoing
                .send((
                    format!("spacecast.ev.{}", t.space_id),
                    payload.into(),
                    None,
                    Instant::now(),
                ))
                .is_ok()
        {
            self.metrics.bus_publish_queue.inc();
        }
    }

    async fn watch(&self, space_id: SpaceId, fanout: Fanout) -> Result<Serving> {
        self.check_connected()?;
        let mut sub = self
            .client
            .subscribe(format!("spacecast.ev.{space_id}"))
            .await
            .map_err(unavailable)?;
        // The server has registered the subscription once the flush's round trip is done.
        self.client.flush().await.map_err(unavailable)?;
        let me = self.node_id.clone();
        let metrics = self.metrics.clone();
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                match serde_json::from_slice::<Envelope<String, Vec<SpaceEvent>>>(&msg.payload) {
                    Ok(Envelope::Events { node, .. } | Envelope::Typing { node, .. })
                        if node == me => {}
                    Ok(Envelope::Events { events, .. }) => {
                        metrics.bus_events_received.inc_by(events.len() as u64);
                        let traces = received_event_traces(msg.headers.as_ref());
                        fanout.received_traced(space_id, events, &traces).await
                    }
                    Ok(Envelope::Typing {
                        user_id, username, ..
                    }) => fanout.typing_received(Typing::new(
                        space_id,
                        user_id,
                        username,
                        Typing::REMOTE,
                    )),
                    Err(e) => {
                        tracing::warn!(%space_id, error = %e, "unreadable commit on the bus; the gap is repaired from the store")
                    }
                }
            }
        });
        let abort = AbortOnDrop(task.abort_handle());
        Ok(Serving::on_drop(move || drop(abort)))
    }

    fn publish_user(&self, user_id: &str, event: &UserEvent) {
        let env = UserEnvelope {
            node: self.node_id.as_str(),
            user_id,
            event,
        };
        match serde_json::to_vec(&env) {
            Ok(payload) => {
                if self
                    .outgoing
                    .send((
                        format!("spacecast.user.{}", subject_token(user_id)),
                        payload.into(),
                        None,
                        Instant::now(),
                    ))
                    .is_ok()
                {
                    self.metrics.bus_publish_queue.inc();
                }
            }
            Err(e) => tracing::error!(error = %e, "could not encode a user event for the bus"),
        }
    }

    async fn watch_user(&self, user_id: &str, users: UserChannels) -> Result<Serving> {
        self.check_connected()?;
        let mut sub = self
            .client
            .subscribe(format!("spacecast.user.{}", subject_token(user_id)))
            .await
            .map_err(unavailable)?;
        // The server has registered the subscription once the flush's round trip is done.
        self.client.flush().await.map_err(unavailable)?;
        let me = self.node_id.clone();
        let user = user_id.to_owned();
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                match serde_json::from_slice::<UserEnvelope<String, UserEvent>>(&msg.payload) {
                    Ok(env) if for_this_node(&env, &me, &user) => users.received(&user, env.event),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable user event on the bus; dropped")
                    }
                }
            }
        });
        let abort = AbortOnDrop(task.abort_handle());
        Ok(Serving::on_drop(move || drop(abort)))
    }
    async fn watch_all(&self, indexer: crate::search::Indexer) -> Result<Serving> {
        self.check_connected()?;
        let mut sub = self
            .client
            .subscribe("spacecast.ev.*")
            .await
            .map_err(unavailable)?;
        self.client.flush().await.map_err(unavailable)?;
        let me = self.node_id.clone();
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                // Typing signals carry no events: only commits are decoded.
                match serde_json::from_slice::<Envelope<String, Vec<SpaceEvent>>>(&msg.payload) {
                    // This node's own commits reach the indexer through its commit path.
                    Ok(Envelope::Events { node, .. }) if node == me => {}
                    Ok(Envelope::Events { events, .. }) => {
                        if let Some(space_id) = events.first().map(|e| e.space_id) {
                            indexer.offer(space_id, &events);
                        }
                    }
                    Ok(Envelope::Typing { .. }) => {}
                    Err(e) => {
                        tracing::debug!(subject = %msg.subject, error = %e, "unreadable commit on the bus; search repairs the gap from the store")
                    }
                }
            }
        });
        let abort = AbortOnDrop(task.abort_handle());
        Ok(Serving::on_drop(move || drop(abort)))
    }

    // ---- presence ----

    fn publish_presence(&self, space_id: SpaceId, msg: &PresenceWire) {
        match serde_json::to_vec(msg) {
            Ok(payload) => {
                // Through the ordered publishing task: this node's messages keep their order.
                if self
                    .outgoing
                    .send((
                        format!("spacecast.pr.{space_id}"),
                        payload.into(),
                        None,
                        Instant::now(),
                    ))
                    .is_ok()
                {
                    self.metrics.bus_publish_queue.inc();
                }
            }
            Err(e) => {
                tracing::error!(%space_id, error = %e, "could not encode presence for the bus")
            }
        }
    }

    async fn watch_presence(&self, space_id: SpaceId, presence: Presence) -> Result<Serving> {
        self.check_connected()?;
        let mut changes = self
            .client
            .subscribe(format!("spacecast.pr.{space_id}"))
            .await
            .map_err(unavailable)?;
        let mut asks = self
            .client
            .subscribe(format!("spacecast.prq.{space_id}"))
            .await
            .map_err(unavailable)?;
        // The server has registered both subscriptions once the flush's round trip is done.
        self.client.flush().await.map_err(unavailable)?;
        let client = self.client.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    msg = changes.next() => {
                        let Some(msg) = msg else { return };
                        match serde_json::from_slice::<PresenceWire>(&msg.payload) {
                            Ok(w) => presence.received(space_id, w),
                            Err(e) => tracing::warn!(%space_id, error = %e, "unreadable presence on the bus; dropped"),
                        }
                    }
                    msg = asks.next() => {
                        let Some(msg) = msg else { return };
                        let Some(reply) = msg.reply else { continue };
                        for part in presence.snapshot(space_id) {
                            let Ok(payload) = serde_json::to_vec(&part) else { continue };
                            if let Err(e) = client.publish(reply.clone(), payload.into()).await {
                                tracing::debug!(error = %e, "could not answer a presence request");
                                break;
                            }
                        }
                    }
                }
            }
        });
        let abort = AbortOnDrop(task.abort_handle());
        Ok(Serving::on_drop(move || drop(abort)))
    }

    async fn gather_presence(
        &self,
        space_id: SpaceId,
        window: Duration,
    ) -> Result<Vec<PresenceWire>> {
        self.check_connected()?;
        let inbox = self.client.new_inbox();
        let mut sub = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(unavailable)?;
        self.client
            .publish_with_reply(format!("spacecast.prq.{space_id}"), inbox, Bytes::new())
            .await
            .map_err(unavailable)?;
        let deadline = tokio::time::Instant::now() + window;
        let mut out = Vec::new();
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
            match serde_json::from_slice::<PresenceWire>(&msg.payload) {
                Ok(w) if w.node != self.node_id => out.push(w),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%space_id, error = %e, "unreadable presence answer; dropped")
                }
            }
        }
        let _ = sub.unsubscribe().await;
        Ok(out)
    }
}

/// Whether a user event received on `user`'s subject is for this node's sessions of `user`: not
/// published by this node (which delivered it already), and for that very user (the subject is
/// a hash of the user id: a colliding user's events must not reach this one's sessions).
fn for_this_node(env: &UserEnvelope<String, UserEvent>, me: &str, user: &str) -> bool {
    env.node != me && env.user_id == user
}

async fn answer(client: &async_nats::Client, reply: async_nats::Subject, r: &WireResult) {
    match serde_json::to_vec(r) {
        Ok(payload) => {
            if let Err(e) = client.publish(reply, payload.into()).await {
                tracing::debug!(error = %e, "could not answer a forwarded command");
            }
        }
        Err(e) => tracing::error!(error = %e, "could not encode an answer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OTHER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const OWN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_commit_message_names_the_trace_of_each_sampled_event() {
        let mut h = async_nats::HeaderMap::new();
        h.insert("traceparent", OWN);
        // Out of order, one malformed entry, one unsampled, one of another trace.
        h.insert(
            EVENT_TRACES_HEADER,
            format!("9,x,7=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00,5={OTHER},3"),
        );
        let own = TraceParent::parse(OWN).unwrap();
        let other = TraceParent::parse(OTHER).unwrap();
        assert_eq!(
            received_event_traces(Some(&h)),
            vec![(3, own), (5, other), (9, own)]
        );
        // Without its own traceparent, bare seqs have nothing to continue.
        let mut bare = async_nats::HeaderMap::new();
        bare.insert(EVENT_TRACES_HEADER, format!("3,5={OTHER}"));
        assert_eq!(received_event_traces(Some(&bare)), vec![(5, other)]);
        assert!(received_event_traces(None).is_empty());
        assert!(received_event_traces(Some(&async_nats::HeaderMap::new())).is_empty());
    }

    #[test]
    fn a_user_event_reaches_only_the_user_it_names_and_not_its_own_node_twice() {
        let m = crate::model::new_id();
        let actor = crate::model::UserRef::default();
        let event = UserEvent::Notification {
            notification: crate::notifications::Notification::new(
                crate::notifications::appreciation_id(m, "a"),
                crate::notifications::NotificationKind::MessageAppreciated,
                "bob",
                &actor,
                m,
                "S",
                m,
                crate::model::Timestamp(0),
            ),
        };
        let env = |node: &str, user: &str| UserEnvelope {
            node: node.to_owned(),
            user_id: user.to_owned(),
            event: event.clone(),
        };
        assert!(for_this_node(&env("n2", "bob"), "n1", "bob"));
        assert!(
            !for_this_node(&env("n1", "bob"), "n1", "bob"),
            "published here"
        );
        // A user whose subject token collides with bob's: the subject matched, the id does not.
        assert!(!for_this_node(&env("n2", "mallory"), "n1", "bob"));
        // The envelope round-trips as the subscriber reads it.
        let bytes = serde_json::to_vec(&UserEnvelope {
            node: "n2",
            user_id: "bob",
            event: &event,
        })
        .unwrap();
        let back: UserEnvelope<String, UserEvent> = serde_json::from_slice(&bytes).unwrap();
        assert!(for_this_node(&back, "n1", "bob"));
        assert_eq!(back.event, event);
    }

    #[test]
    fn with_traces_off_a_commit_message_has_no_headers() {
        let events = [Published::new(SpaceEvent::any_at(
            crate::model::new_id(),
            1,
        ))];
        let span = tracing::debug_span!("bus.publish");
        assert!(event_trace_headers(&span, &events).is_none());
    }
}
