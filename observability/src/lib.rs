//! Spacecast observability: every metric the engine and the edge export, defined in one place.
//!
//! - [`Metrics`] is a plain handle (no global registry): the binary builds one, passes it to the
//!   engine and the edge, and serves [`Metrics::render`] at `/metrics`.
//! - [`names`] holds every metric name, so dashboards (`observability/dashboards/`) and alert rules
//!   (`observability/alerts/`) can be checked against one list.
//! - [`trace`] installs the log subscriber and, when traces are on, the OTLP exporter; it also
//!   carries W3C trace context across mailboxes and nodes. Library crates only emit through
//!   `tracing`.
//!
//! Label sets are deliberately small and bounded: no space id, user id or session id is ever a
//! label (that would make series unbounded).

use std::sync::Arc;

pub mod openmetrics;
pub mod trace;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric name, in one module.
pub mod names {
    pub const HTTP_REQUESTS: &str = "spacecast_http_requests_total";
    pub const HTTP_DURATION: &str = "spacecast_http_request_duration_seconds";
    pub const HTTP_CONNECTIONS: &str = "spacecast_http_connections";
    pub const HTTP_CONNECTIONS_CLOSED: &str = "spacecast_http_connections_closed_total";
    pub const HTTP_CONNECTIONS_REFUSED: &str = "spacecast_http_connections_refused_total";
    pub const HTTP_ACCEPT_ERRORS: &str = "spacecast_http_accept_errors_total";
    pub const CONNECTION_LIMIT: &str = "spacecast_connection_limit";
    pub const SPACE_ACTORS: &str = "spacecast_space_actors";
    pub const SPACE_COMMANDS_INFLIGHT: &str = "spacecast_space_commands_inflight";
    pub const SPACE_ADMISSION_REJECTED: &str = "spacecast_space_admission_rejected_total";
    pub const SPACE_RESTARTS: &str = "spacecast_space_restarts_total";
    pub const SPACE_PASSIVATIONS: &str = "spacecast_space_passivations_total";
    pub const COMMANDS_FORWARDED: &str = "spacecast_commands_forwarded_total";
    pub const SPACE_REROUTES: &str = "spacecast_space_reroutes_total";
    pub const LEASES_HELD: &str = "spacecast_leases_held";
    pub const LEASES_LOST: &str = "spacecast_leases_lost_total";
    pub const BUS_CONNECTED: &str = "spacecast_bus_connected";
    pub const BUS_PUBLISH_QUEUE: &str = "spacecast_bus_publish_queue_depth";
    pub const BUS_EVENTS_RECEIVED: &str = "spacecast_bus_events_received_total";
    pub const FANOUT_GAP_REPAIRS: &str = "spacecast_fanout_gap_repairs_total";
    pub const COMMIT_BATCH_SIZE: &str = "spacecast_commit_batch_size";
    pub const COMMIT_DURATION: &str = "spacecast_commit_duration_seconds";
    pub const COMMIT_QUEUE: &str = "spacecast_commit_queue_depth";
    pub const EVENTS_COMMITTED: &str = "spacecast_events_committed_total";
    pub const STORE_DURATION: &str = "spacecast_store_op_duration_seconds";
    pub const STORE_ERRORS: &str = "spacecast_store_errors_total";
    pub const STORE_WRITE_QUEUE: &str = "spacecast_store_write_queue_depth";
    pub const STORE_FSYNC_BATCH: &str = "spacecast_store_fsync_batch_size";
    pub const STORE_HEALTHY: &str = "spacecast_store_healthy";
    pub const MESSAGE_CACHE_BYTES: &str = "spacecast_message_cache_bytes";
    pub const STORE_RECOVERIES: &str = "spacecast_store_recoveries_total";
    pub const FANOUT_EVENTS: &str = "spacecast_fanout_events_total";
    pub const FANOUT_DELIVERIES: &str = "spacecast_fanout_deliveries_total";
    pub const FANOUT_TOPICS: &str = "spacecast_fanout_topics";
    pub const FANOUT_WRITES: &str = "spacecast_fanout_writes_total";
    pub const USER_EVENTS_PUBLISHED: &str = "spacecast_user_events_published_total";
    pub const USER_EVENTS_DELIVERED: &str = "spacecast_user_events_delivered_total";
    pub const USER_SUBSCRIPTIONS: &str = "spacecast_user_subscriptions";
    pub const USER_CHANNELS: &str = "spacecast_user_channels";
    pub const SEARCH_QUEUE: &str = "spacecast_search_queue_depth";
    pub const SEARCH_BATCHES_DROPPED: &str = "spacecast_search_batches_dropped_total";
    pub const SEARCH_OPS: &str = "spacecast_search_ops_applied_total";
    pub const SEARCH_COMMIT_DURATION: &str = "spacecast_search_commit_duration_seconds";
    pub const SEARCH_COMMIT_FAILURES: &str = "spacecast_search_commit_failures_total";
    pub const SEARCH_CATCHUP_SPACES: &str = "spacecast_search_catchup_spaces_behind";
    pub const SEARCH_CATCHUP_SCANNED: &str = "spacecast_search_catchup_spaces_scanned_total";
    pub const SEARCH_CATCHUP_RUNNING: &str = "spacecast_search_catchup_running";
    pub const SEARCH_QUERY_DURATION: &str = "spacecast_search_query_duration_seconds";
    pub const PRESENCE_ENTRIES: &str = "spacecast_presence_entries";
    pub const PRESENCE_EVENTS: &str = "spacecast_presence_events_total";
    pub const PRESENCE_COUNTS: &str = "spacecast_presence_counts_total";
    pub const PRESENCE_SNAPSHOTS: &str = "spacecast_presence_snapshots_total";
    pub const PRESENCE_ENTRIES_EXPIRED: &str = "spacecast_presence_entries_expired_total";
    pub const WS_SESSIONS: &str = "spacecast_ws_sessions";
    pub const WS_CLOSED: &str = "spacecast_ws_closed_total";
    pub const WS_FRAMES_IN: &str = "spacecast_ws_frames_received_total";
    pub const WS_REFUSED: &str = "spacecast_ws_refused_total";
    pub const SENDS_RATE_LIMITED: &str = "spacecast_sends_rate_limited_total";
    pub const RATE_LIMIT_USERS: &str = "spacecast_rate_limit_users";
    pub const BUILD_INFO: &str = "spacecast_build_info";
    pub const WRITES_RATE_LIMITED: &str = "spacecast_writes_rate_limited_total";
    pub const WRITE_RATE_LIMIT_USERS: &str = "spacecast_write_rate_limit_users";
    pub const REALTIME_OP_DURATION: &str = "spacecast_realtime_op_duration_seconds";
    pub const REALTIME_OP_ERRORS: &str = "spacecast_realtime_op_errors_total";
    pub const SPACE_MAILBOX_MAX: &str = "spacecast_space_mailbox_depth_max";
    pub const SPACE_MAILBOX_LIMIT: &str = "spacecast_space_mailbox_limit";
    pub const SUBSCRIBER_QUEUE_MAX: &str = "spacecast_subscriber_queue_depth_max";
    pub const SUBSCRIBER_QUEUE_LIMIT: &str = "spacecast_subscriber_queue_limit";
    pub const BUS_FORWARD_DURATION: &str = "spacecast_bus_forward_duration_seconds";
    pub const BUS_PUBLISH_DURATION: &str = "spacecast_bus_publish_duration_seconds";
    pub const LEASE_RENEWALS: &str = "spacecast_lease_renewals_total";
    pub const LEASE_ACQUISITIONS: &str = "spacecast_lease_acquisitions_total";
    pub const FAILOVER_DURATION: &str = "spacecast_space_failover_seconds";
}

/// The fixed label values, pre-created at startup so their series exist at 0 from the first
/// scrape (`rate()` and alerts then see the first increment).
pub mod labels {
    /// `protocol` of the realtime metrics.
    pub const PROTOCOLS: &[&str] = &["native", "socketio"];
    /// `op` of `spacecast_realtime_op_*`: the session commands (`Command::kind` in the api crate).
    pub const REALTIME_OPS: &[&str] = &["join", "leave", "send", "typing", "refresh"];
    /// `kind` of `spacecast_store_errors_total` (see `EngineError::store_error_kind`).
    pub const STORE_ERROR_KINDS: &[&str] = &[
        "timeout",
        "unavailable",
        "overloaded",
        "invalid",
        "fenced",
        "other",
    ];
    /// Store operations whose error series are pre-created (the write path); other operations'
    /// series appear with their first error.
    pub const STORE_WRITE_OPS: &[&str] = &["commit", "claim"];
    /// `outcome` of `spacecast_lease_renewals_total`.
    pub const LEASE_RENEWAL_OUTCOMES: &[&str] = &["renewed", "unconfirmed", "lost"];
    /// `outcome` of `spacecast_lease_acquisitions_total`.
    pub const LEASE_ACQUISITION_OUTCOMES: &[&str] = &["acquired", "held_elsewhere", "unavailable"];
}

/// The highest value seen since the previous scrape, exported as a gauge: a queue's depth
/// observed at every push, where the gauge of the current depth would miss short peaks between
/// scrapes. [`Metrics::render`] publishes the peak and starts a new period at 0, so each scrape
/// sees the peak of its own interval (with two scrapers, each sees the peak since the other's
/// last scrape). Lock-free.
pub struct HighWater {
    gauge: IntGauge,
    peak: std::sync::atomic::AtomicI64,
}

impl HighWater {
    fn new(gauge: IntGauge) -> Self {
        HighWater {
            gauge,
            peak: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// Records a depth.
    ///
    /// Costs a shared read unless it is a new peak: it runs on every delivery to every session.
    pub fn observe(&self, depth: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let d = i64::try_from(depth).unwrap_or(i64::MAX);
        if d > self.peak.load(Relaxed) {
            self.peak.fetch_max(d, Relaxed);
        }
    }

    /// Publishes the peak of the period that ends now and starts the next one.
    fn publish(&self) {
        let peak = self.peak.swap(0, std::sync::atomic::Ordering::Relaxed);
        self.gauge.set(peak);
    }
}

/// All metrics of one process. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

/// The metric handles; public so each part records its own without string lookups.
pub struct Inner {
    registry: Registry,
    /// Store failures (every call fails while a store is down) are logged at `warn`/`error` at
    /// most once a second through this; the rest go to `debug`. Each is counted regardless.
    pub store_failure_log: LogLimiter,
    /// Trace ids of sampled requests on the latency histograms (served in the OpenMetrics
    /// exposition only).
    exemplars: openmetrics::Exemplars,
    /// Requests by route template and status class.
    pub http_requests: IntCounterVec,
    /// Request latency by route template.
    pub http_duration: HistogramVec,
    /// Open HTTP connections (not yet upgraded to a WebSocket).
    pub http_connections: IntGauge,
    /// HTTP connections closed, by reason (`normal`, `upgraded`, `header_timeout`,
    /// `idle_timeout`, `shutdown`, `parse_error`, `io_error`).
    pub http_connections_closed: IntCounterVec,
    /// Connections refused at the HTTP cap, by action (`answered` with 503, or `dropped`).
    pub http_connections_refused: IntCounterVec,
    /// Failed accepts, by kind (`aborted` by the peer, or `resources`: out of descriptors/memory).
    pub http_accept_errors: IntCounterVec,
    /// The effective connection caps after fitting the descriptor limit, by kind (`http`,
    /// `realtime`).
    pub connection_limit: IntGaugeVec,
    /// Space actors alive on this node.
    pub space_actors: IntGauge,
    /// Commands admitted to space actors and not yet answered (all spaces).
    pub space_commands_inflight: IntGauge,
    /// Commands refused because a space's queue was full.
    pub space_admission_rejected: IntCounter,
    /// Space actors that failed and were rebuilt from the store.
    pub space_restarts: IntCounter,
    /// Idle space actors stopped.
    pub space_passivations: IntCounter,
    /// Commands sent to another node, the space's owner.
    pub commands_forwarded: IntCounter,
    /// Commands sent again because the space was changing owner (nothing had run).
    pub space_reroutes: IntCounter,
    /// Space ownership leases this node holds.
    pub leases_held: IntGauge,
    /// Leases this node lost (not renewed in time, or taken by another node).
    pub space_leases_lost: IntCounter,
    /// 1 while the cluster bus (NATS) is connected; always 1 on a single node.
    pub bus_connected: IntGauge,
    /// Commits waiting to be published on the bus.
    pub bus_publish_queue: IntGauge,
    /// Events received from other nodes.
    pub bus_events_received: IntCounter,
    /// Gaps in a space's events filled from the store before delivery.
    pub fanout_gap_repairs: IntCounter,
    /// Commands (sends, reactions, edits… each with its events) per group-commit batch.
    pub commit_batch_size: Histogram,
    /// Time from batch start to durable, per batch.
    pub commit_duration: Histogram,
    /// Commands sequenced by actors and waiting for their batch to be durable (all spaces).
    pub commit_queue: IntGauge,
    /// Events made durable, by kind.
    pub events_committed: IntCounterVec,
    /// Store call latency by operation.
    pub store_duration: HistogramVec,
    /// Store call failures by operation.
    pub store_errors: IntCounterVec,
    /// Write requests waiting for the embedded store's writer thread.
    pub store_write_queue: IntGauge,
    /// Space batches made durable by one fsync of the embedded store.
    pub store_fsync_batch: Histogram,
    /// 1 while the embedded store accepts writes, 0 after a failed commit until it is reopened.
    pub store_healthy: IntGauge,
    /// Times the embedded store was reopened after a failed commit.
    pub store_recoveries: IntCounter,
    /// Bytes held by all space actors' message caches (bounded by one node-wide budget).
    pub message_cache_bytes: IntGauge,
    /// Events published to the fan-out hub.
    pub fanout_events: IntCounter,
    /// Frames written to subscribers, by protocol.
    pub fanout_deliveries: IntCounterVec,
    /// Socket writes that carried events to a subscriber, by protocol: deliveries / writes is
    /// how many events one write carries (write coalescing).
    pub fanout_writes: IntCounterVec,
    /// Spaces with at least one local subscriber.
    pub fanout_topics: IntGauge,
    /// Events published on per-user channels (by this node), by type (`notification`, …).
    pub user_events_published: IntCounterVec,
    /// Per-user channel events written to a local session, by protocol.
    pub user_events_delivered: IntCounterVec,
    /// Local per-user channel subscriptions (one per realtime session).
    pub user_subscriptions: IntGauge,
    /// Users with at least one local per-user channel subscription (each is one bus
    /// subscription in a cluster).
    pub user_channels: IntGauge,
    /// Batches of committed events waiting for the search indexer (bounded; see
    /// `engine::search`).
    pub search_queue: IntGauge,
    /// Batches the search indexer's full queue dropped (their spaces are caught up from the
    /// store).
    pub search_batches_dropped: IntCounter,
    /// Index operations applied by the search indexer, by kind (`insert`, `upsert`, `remove`,
    /// `visibility`).
    pub search_ops: IntCounterVec,
    /// Time of one search index commit.
    pub search_commit_duration: Histogram,
    /// Search index commits that failed (their work is applied again by a walk of every space).
    pub search_commit_failures: IntCounter,
    /// Spaces found behind the index by the running catch-up or sweep and not caught up yet.
    pub search_catchup_behind: IntGauge,
    /// Spaces the catch-ups and sweeps compared with the index.
    pub search_catchup_scanned: IntCounter,
    /// 1 while a catch-up or sweep walks the spaces (search results may be partial), else 0.
    pub search_catchup_running: IntGauge,
    /// Search query latency, hydration from the store included, by scope (`space`, `all`).
    pub search_query_duration: HistogramVec,
    /// presence (issue 12): (space, session) presence entries held by this node.
    pub presence_entries: IntGauge,
    /// `presence` changes published to a space's local subscribers (one hub item each,
    /// whatever the number of subscribers).
    pub presence_events: IntCounter,
    /// `presence_count` frames published to a space's local subscribers (one hub item each).
    pub presence_counts: IntCounter,
    /// Presence snapshots, by `op`: `published` (this node's, cluster), `received` (another
    /// node's, complete), `expired` (another node's, not renewed in time).
    pub presence_snapshots: IntCounterVec,
    /// Other nodes' (user, node) presence entries dropped because that node's messages stopped
    /// (cluster).
    pub presence_entries_expired: IntCounter,
    /// Open realtime sessions by protocol.
    pub ws_sessions: IntGaugeVec,
    /// Realtime sessions closed, by protocol (`native`, `socketio`) and reason.
    pub ws_closed: IntCounterVec,
    /// Client frames received, by protocol and type (native: unknown types are counted as
    /// `invalid`; Socket.IO: events, with `relay_ignored` and `unknown` for those not acted on).
    pub ws_frames_in: IntCounterVec,
    /// Realtime connections refused before a session started, by protocol and reason
    /// (`overloaded`, `too_many_connections`, `shutting_down`; Socket.IO also `auth_failed`,
    /// `transport_unsupported`, `invalid_request`).
    pub ws_refused: IntCounterVec,
    /// Sends refused by the per-user rate limit (`--send-rate-limit`), by surface (`space7`,
    /// `v1`, `stream`).
    pub sends_rate_limited: IntCounterVec,
    /// Users the send rate limiter tracks (those who sent within about the last minute).
    pub rate_limit_users: IntGauge,
    /// Writes other than sends refused by the per-user write limit, by kind.
    pub writes_rate_limited: IntCounterVec,
    /// Users the write rate limiter tracks (those who wrote within about the last minute).
    pub write_rate_limit_users: IntGauge,
    /// Realtime command latency by protocol and op: `send` from the command's arrival to its
    /// ack or error (durable), the others until they are answered.
    pub realtime_op_duration: HistogramVec,
    /// Realtime commands answered with an error, by protocol, op and the error's stable code.
    pub realtime_op_errors: IntCounterVec,
    /// The deepest space mailbox (commands admitted to one space actor and not yet answered)
    /// since the previous scrape.
    pub space_mailbox_max: HighWater,
    /// The per-space mailbox limit (`max_inflight_per_space`), beyond which commands get 503.
    pub space_mailbox_limit: IntGauge,
    /// The deepest subscriber queue (hub items waiting for one realtime session) since the
    /// previous scrape, by protocol: see [`Inner::subscriber_queue_max`].
    subscriber_queue_max: Vec<(&'static str, HighWater)>,
    /// Each subscriber's queue length (`--subscriber-queue`); a session a whole queue behind is
    /// closed as a slow consumer.
    pub subscriber_queue_limit: IntGauge,
    /// Round trip of commands forwarded to a space's owner over NATS, until the answer came
    /// back (includes the owner running the command).
    pub bus_forward_duration: Histogram,
    /// Time from a commit being handed to the bus until it was published to NATS (queue wait
    /// included).
    pub bus_publish_duration: Histogram,
    /// Lease renewals, by outcome (`renewed`, `unconfirmed`: NATS did not answer, `lost`).
    pub lease_renewals: IntCounterVec,
    /// Attempts to take a space's lease, by outcome (`acquired`: the space's owner is now this
    /// node, `held_elsewhere`, `unavailable`).
    pub lease_acquisitions: IntCounterVec,
    /// Failover time: from this node finding a space's owner gone (a forwarded command found
    /// no owner) until this node held the space's lease.
    pub failover_duration: Histogram,
}

impl Inner {
    /// Creates the series of the fixed label sets (see [`labels`]) at 0.
    fn precreate(&self) {
        for p in labels::PROTOCOLS {
            self.ws_sessions.with_label_values(&[*p]);
            self.fanout_deliveries.with_label_values(&[*p]);
            self.fanout_writes.with_label_values(&[*p]);
            self.user_events_delivered.with_label_values(&[*p]);
            self.ws_closed.with_label_values(&[*p, "slow_consumer"]);
            for reason in ["overloaded", "too_many_connections", "shutting_down"] {
                self.ws_refused.with_label_values(&[*p, reason]);
            }
            for op in labels::REALTIME_OPS {
                self.realtime_op_duration.with_label_values(&[*p, *op]);
            }
        }
        for op in labels::STORE_WRITE_OPS {
            self.store_duration.with_label_values(&[*op]);
            for kind in labels::STORE_ERROR_KINDS {
                self.store_errors.with_label_values(&[*op, *kind]);
            }
        }
        for o in labels::LEASE_RENEWAL_OUTCOMES {
            self.lease_renewals.with_label_values(&[*o]);
        }
        for o in labels::LEASE_ACQUISITION_OUTCOMES {
            self.lease_acquisitions.with_label_values(&[*o]);
        }
        for a in ["answered", "dropped"] {
            self.http_connections_refused.with_label_values(&[a]);
        }
    }

    /// The subscriber queue high-water of `protocol` (one of [`labels::PROTOCOLS`]; any other
    /// value is counted as `native`).
    pub fn subscriber_queue_max(&self, protocol: &str) -> &HighWater {
        &self
            .subscriber_queue_max
            .iter()
            .find(|(p, _)| *p == protocol)
            .unwrap_or(&self.subscriber_queue_max[0])
            .1
    }
}

impl std::ops::Deref for Metrics {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Failover takes at least the lease TTL (1.5 s by default).
const FAILOVER_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0,
];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

impl Metrics {
    /// Builds and registers every metric in a fresh registry (plus process metrics on Linux).
    pub fn new() -> Self {
        let registry = Registry::new();
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m.expect("metric definition is valid");
                registry
                    .register(Box::new(m.clone()))
                    .expect("metric registered once");
                m
            }};
        }
        let h = |name: &str, help: &str, buckets: &[f64]| {
            HistogramOpts::new(name, help).buckets(buckets.to_vec())
        };
        let inner = Inner {
            http_requests: reg!(IntCounterVec::new(
                Opts::new(
                    names::HTTP_REQUESTS,
                    "HTTP requests by route and status class"
                ),
                &["route", "status"]
            )),
            http_duration: reg!(HistogramVec::new(
                h(
                    names::HTTP_DURATION,
                    "HTTP request latency by route",
                    LATENCY_BUCKETS
                ),
                &["route"]
            )),
            http_connections: reg!(IntGauge::new(
                names::HTTP_CONNECTIONS,
                "Open HTTP connections (not yet upgraded to a WebSocket)"
            )),
            http_connections_closed: reg!(IntCounterVec::new(
                Opts::new(
                    names::HTTP_CONNECTIONS_CLOSED,
                    "HTTP connections closed, by reason"
                ),
                &["reason"]
            )),
            http_connections_refused: reg!(IntCounterVec::new(
                Opts::new(
                    names::HTTP_CONNECTIONS_REFUSED,
                    "HTTP connections refused at the connection cap, by action"
                ),
                &["action"]
            )),
            http_accept_errors: reg!(IntCounterVec::new(
                Opts::new(names::HTTP_ACCEPT_ERRORS, "Failed accepts, by kind"),
                &["kind"]
            )),
            connection_limit: reg!(IntGaugeVec::new(
                Opts::new(
                    names::CONNECTION_LIMIT,
                    "Effective connection caps after fitting the descriptor limit"
                ),
                &["kind"]
            )),
            space_actors: reg!(IntGauge::new(
                names::SPACE_ACTORS,
                "Space actors alive on this node"
            )),
            space_commands_inflight: reg!(IntGauge::new(
                names::SPACE_COMMANDS_INFLIGHT,
                "Commands admitted to space actors and not yet answered"
            )),
            space_admission_rejected: reg!(IntCounter::new(
                names::SPACE_ADMISSION_REJECTED,
                "Commands refused with 503 overloaded because a space queue was full"
            )),
            space_restarts: reg!(IntCounter::new(
                names::SPACE_RESTARTS,
                "Space actors that failed and were rebuilt from the store"
            )),
            space_passivations: reg!(IntCounter::new(
                names::SPACE_PASSIVATIONS,
                "Idle space actors stopped"
            )),
            commands_forwarded: reg!(IntCounter::new(
                names::COMMANDS_FORWARDED,
                "Commands sent to the node that owns their space"
            )),
            space_reroutes: reg!(IntCounter::new(
                names::SPACE_REROUTES,
                "Commands sent again because their space was changing owner (nothing had run)"
            )),
            leases_held: reg!(IntGauge::new(
                names::LEASES_HELD,
                "Space ownership leases this node holds"
            )),
            space_leases_lost: reg!(IntCounter::new(
                names::LEASES_LOST,
                "Space leases this node lost (not renewed in time, or taken by another node)"
            )),
            bus_connected: reg!(IntGauge::new(
                names::BUS_CONNECTED,
                "1 while the cluster bus (NATS) is connected; 1 on a single node"
            )),
            bus_publish_queue: reg!(IntGauge::new(
                names::BUS_PUBLISH_QUEUE,
                "Commits waiting to be published on the cluster bus"
            )),
            bus_events_received: reg!(IntCounter::new(
                names::BUS_EVENTS_RECEIVED,
                "Events received from other nodes"
            )),
            fanout_gap_repairs: reg!(IntCounter::new(
                names::FANOUT_GAP_REPAIRS,
                "Gaps in a space's events filled from the store before delivery"
            )),
            commit_batch_size: reg!(Histogram::with_opts(h(
                names::COMMIT_BATCH_SIZE,
                "Commands per group-commit batch (each a send, reaction, edit… with its events)",
                BATCH_BUCKETS
            ))),
            commit_duration: reg!(Histogram::with_opts(h(
                names::COMMIT_DURATION,
                "Group-commit batch latency until durable",
                LATENCY_BUCKETS
            ))),
            commit_queue: reg!(IntGauge::new(
                names::COMMIT_QUEUE,
                "Sequenced commands waiting for their batch to be durable (all spaces)"
            )),
            events_committed: reg!(IntCounterVec::new(
                Opts::new(names::EVENTS_COMMITTED, "Events made durable, by kind"),
                &["kind"]
            )),
            store_duration: reg!(HistogramVec::new(
                h(
                    names::STORE_DURATION,
                    "Store call latency by operation",
                    LATENCY_BUCKETS
                ),
                &["op"]
            )),
            store_errors: reg!(IntCounterVec::new(
                Opts::new(
                    names::STORE_ERRORS,
                    "Store call failures by operation and kind (timeout, unavailable, overloaded, \
                     invalid, fenced, other)"
                ),
                &["op", "kind"]
            )),
            store_write_queue: reg!(IntGauge::new(
                names::STORE_WRITE_QUEUE,
                "Write requests waiting for the embedded store writer"
            )),
            store_fsync_batch: reg!(Histogram::with_opts(h(
                names::STORE_FSYNC_BATCH,
                "Space batches made durable by one fsync",
                BATCH_BUCKETS
            ))),
            store_healthy: reg!(IntGauge::new(
                names::STORE_HEALTHY,
                "1 while the embedded store accepts writes; 0 from a failed commit until it is reopened"
            )),
            store_recoveries: reg!(IntCounter::new(
                names::STORE_RECOVERIES,
                "Times the embedded store was reopened after a failed commit"
            )),
            message_cache_bytes: reg!(IntGauge::new(
                names::MESSAGE_CACHE_BYTES,
                "Bytes held by all space actors' message caches"
            )),
            fanout_events: reg!(IntCounter::new(
                names::FANOUT_EVENTS,
                "Events published to the fan-out hub"
            )),
            fanout_deliveries: reg!(IntCounterVec::new(
                Opts::new(
                    names::FANOUT_DELIVERIES,
                    "Frames written to subscribers, by protocol"
                ),
                &["protocol"]
            )),
            fanout_writes: reg!(IntCounterVec::new(
                Opts::new(
                    names::FANOUT_WRITES,
                    "Socket writes that carried events to subscribers, by protocol"
                ),
                &["protocol"]
            )),
            fanout_topics: reg!(IntGauge::new(
                names::FANOUT_TOPICS,
                "Spaces with at least one local subscriber"
            )),
            user_events_published: reg!(IntCounterVec::new(
                Opts::new(
                    names::USER_EVENTS_PUBLISHED,
                    "Events published on per-user channels by this node, by type"
                ),
                &["type"]
            )),
            user_events_delivered: reg!(IntCounterVec::new(
                Opts::new(
                    names::USER_EVENTS_DELIVERED,
                    "Per-user channel events written to local sessions, by protocol"
                ),
                &["protocol"]
            )),
            user_subscriptions: reg!(IntGauge::new(
                names::USER_SUBSCRIPTIONS,
                "Local per-user channel subscriptions (one per realtime session)"
            )),
            user_channels: reg!(IntGauge::new(
                names::USER_CHANNELS,
                "Users with at least one local per-user channel subscription"
            )),
            search_queue: reg!(IntGauge::new(
                names::SEARCH_QUEUE,
                "Batches of committed events waiting for the search indexer"
            )),
            search_batches_dropped: reg!(IntCounter::new(
                names::SEARCH_BATCHES_DROPPED,
                "Batches dropped by the search indexer's full queue (caught up from the store)"
            )),
            search_ops: reg!(IntCounterVec::new(
                Opts::new(
                    names::SEARCH_OPS,
                    "Search index operations applied, by kind"
                ),
                &["kind"]
            )),
            search_commit_duration: reg!(Histogram::with_opts(h(
                names::SEARCH_COMMIT_DURATION,
                "Search index commit latency",
                LATENCY_BUCKETS
            ))),
            search_commit_failures: reg!(IntCounter::new(
                names::SEARCH_COMMIT_FAILURES,
                "Search index commits that failed (what they held is applied again from the store)"
            )),
            search_catchup_behind: reg!(IntGauge::new(
                names::SEARCH_CATCHUP_SPACES,
                "Spaces found behind the search index and not caught up yet"
            )),
            search_catchup_scanned: reg!(IntCounter::new(
                names::SEARCH_CATCHUP_SCANNED,
                "Spaces compared with the search index by catch-ups and sweeps"
            )),
            search_catchup_running: reg!(IntGauge::new(
                names::SEARCH_CATCHUP_RUNNING,
                "1 while a search catch-up or sweep runs (results may be partial)"
            )),
            search_query_duration: reg!(HistogramVec::new(
                h(
                    names::SEARCH_QUERY_DURATION,
                    "Search query latency (hydration included), by scope",
                    LATENCY_BUCKETS
                ),
                &["scope"]
            )),
            presence_entries: reg!(IntGauge::new(
                names::PRESENCE_ENTRIES,
                "Presence entries (joined space, session) held by this node"
            )),
            presence_events: reg!(IntCounter::new(
                names::PRESENCE_EVENTS,
                "Presence changes published to local subscribers of a space"
            )),
            presence_counts: reg!(IntCounter::new(
                names::PRESENCE_COUNTS,
                "presence_count frames published to local subscribers of a space"
            )),
            presence_snapshots: reg!(IntCounterVec::new(
                Opts::new(
                    names::PRESENCE_SNAPSHOTS,
                    "Presence snapshots published or received by this node, or expired, by op"
                ),
                &["op"]
            )),
            presence_entries_expired: reg!(IntCounter::new(
                names::PRESENCE_ENTRIES_EXPIRED,
                "Other nodes' presence entries dropped because that node's messages stopped"
            )),
            ws_sessions: reg!(IntGaugeVec::new(
                Opts::new(names::WS_SESSIONS, "Open realtime sessions by protocol"),
                &["protocol"]
            )),
            ws_closed: reg!(IntCounterVec::new(
                Opts::new(
                    names::WS_CLOSED,
                    "Realtime sessions closed, by protocol and reason"
                ),
                &["protocol", "reason"]
            )),
            ws_frames_in: reg!(IntCounterVec::new(
                Opts::new(
                    names::WS_FRAMES_IN,
                    "Client frames (Socket.IO: events) received, by protocol and type"
                ),
                &["protocol", "type"]
            )),
            ws_refused: reg!(IntCounterVec::new(
                Opts::new(
                    names::WS_REFUSED,
                    "Realtime connections refused before a session started, by protocol and reason"
                ),
                &["protocol", "reason"]
            )),
            sends_rate_limited: reg!(IntCounterVec::new(
                Opts::new(
                    names::SENDS_RATE_LIMITED,
                    "Sends refused by the per-user rate limit, by surface"
                ),
                &["surface"]
            )),
            rate_limit_users: reg!(IntGauge::new(
                names::RATE_LIMIT_USERS,
                "Users the send rate limiter tracks (sent within about the last minute)"
            )),
            writes_rate_limited: reg!(IntCounterVec::new(
                Opts::new(
                    names::WRITES_RATE_LIMITED,
                    "Writes other than sends (reactions, edits, deletes, member and space \
                     changes) refused by the per-user write limit, by kind"
                ),
                &["kind"]
            )),
            write_rate_limit_users: reg!(IntGauge::new(
                names::WRITE_RATE_LIMIT_USERS,
                "Users the write rate limiter tracks (wrote within about the last minute)"
            )),
            realtime_op_duration: reg!(HistogramVec::new(
                h(
                    names::REALTIME_OP_DURATION,
                    "Realtime command latency by protocol and op (send: until its ack)",
                    LATENCY_BUCKETS
                ),
                &["protocol", "op"]
            )),
            realtime_op_errors: reg!(IntCounterVec::new(
                Opts::new(
                    names::REALTIME_OP_ERRORS,
                    "Realtime commands answered with an error, by protocol, op and code"
                ),
                &["protocol", "op", "code"]
            )),
            space_mailbox_max: HighWater::new(reg!(IntGauge::new(
                names::SPACE_MAILBOX_MAX,
                "The deepest space mailbox (commands admitted to one space and not yet \
                 answered) since the previous scrape"
            ))),
            space_mailbox_limit: reg!(IntGauge::new(
                names::SPACE_MAILBOX_LIMIT,
                "Commands one space admits at once; beyond it, 503 overloaded"
            )),
            subscriber_queue_max: {
                let v = reg!(IntGaugeVec::new(
                    Opts::new(
                        names::SUBSCRIBER_QUEUE_MAX,
                        "The deepest subscriber queue (events waiting for one realtime \
                         session) since the previous scrape, by protocol"
                    ),
                    &["protocol"]
                ));
                labels::PROTOCOLS
                    .iter()
                    .map(|p| (*p, HighWater::new(v.with_label_values(&[*p]))))
                    .collect()
            },
            subscriber_queue_limit: reg!(IntGauge::new(
                names::SUBSCRIBER_QUEUE_LIMIT,
                "Each subscriber's queue length; a session a whole queue behind is closed (4008)"
            )),
            bus_forward_duration: reg!(Histogram::with_opts(h(
                names::BUS_FORWARD_DURATION,
                "Round trip of commands forwarded to their space's owner over NATS",
                LATENCY_BUCKETS
            ))),
            bus_publish_duration: reg!(Histogram::with_opts(h(
                names::BUS_PUBLISH_DURATION,
                "Time from a commit handed to the bus until it was published to NATS",
                LATENCY_BUCKETS
            ))),
            lease_renewals: reg!(IntCounterVec::new(
                Opts::new(names::LEASE_RENEWALS, "Space lease renewals, by outcome"),
                &["outcome"]
            )),
            lease_acquisitions: reg!(IntCounterVec::new(
                Opts::new(
                    names::LEASE_ACQUISITIONS,
                    "Attempts to take a space's lease, by outcome (acquired: the space moved \
                     to this node)"
                ),
                &["outcome"]
            )),
            failover_duration: reg!(Histogram::with_opts(h(
                names::FAILOVER_DURATION,
                "Time from finding a space's owner gone until this node held its lease",
                FAILOVER_BUCKETS
            ))),
            registry,
            store_failure_log: LogLimiter::new(std::time::Duration::from_secs(1)),
            exemplars: openmetrics::Exemplars::default(),
        };
        inner.precreate();
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = inner.registry.register(Box::new(pc));
        }
        Metrics(Arc::new(inner))
    }

    /// Sets `spacecast_build_info{version, node_id} 1`: which build each node runs, and which
    /// `node_id` (as in logs, `hello` frames and `GET /v1/node`) each scraped instance is. Called
    /// once, when the node starts serving.
    pub fn set_build_info(&self, version: &str, node_id: &str) {
        let info = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                names::BUILD_INFO,
                "Always 1; labels: the server's version and this node's node_id",
            ),
            &["version", "node_id"],
        );
        if let Ok(info) = info {
            info.with_label_values(&[version, node_id]).set(1);
            // A second call (tests that reuse a registry) keeps the first: registering the same
            // name twice is refused.
            let _ = self.registry.register(Box::new(info));
        }
    }

    /// The Prometheus text exposition of every metric.
    /// Starts a new period for the high-water gauges ([`HighWater`]).
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        let encoder = TextEncoder::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = encoder.encode(&self.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// The OpenMetrics exposition of every metric, with exemplars on the latency histograms
    /// (see [`openmetrics`]); content type [`openmetrics::CONTENT_TYPE`]. Like [`Self::render`],
    /// starts a new period for the high-water gauges.
    pub fn render_openmetrics(&self) -> String {
        openmetrics::encode(&self.gather(), &self.exemplars)
    }

    fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.space_mailbox_max.publish();
        for (_, hw) in &self.subscriber_queue_max {
            hw.publish();
        }
        self.registry.gather()
    }

    /// Records a request's duration, already observed in `http_duration{route}`, as that bucket's
    /// exemplar, when the request's trace is sampled (`trace_id`: 32 hex digits).
    pub fn http_exemplar(&self, route: &str, seconds: f64, trace_id: String) {
        self.exemplars.record(
            names::HTTP_DURATION,
            &[route],
            LATENCY_BUCKETS,
            seconds,
            trace_id,
        );
    }

    /// Records a group commit's duration, already observed in `commit_duration`, as that
    /// bucket's exemplar, when the batch carries a sampled send (its commit span's trace).
    pub fn commit_exemplar(&self, seconds: f64, trace_id: String) {
        self.exemplars.record(
            names::COMMIT_DURATION,
            &[],
            LATENCY_BUCKETS,
            seconds,
            trace_id,
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

/// Installs the process-wide log subscriber writing to stderr. `RUST_LOG` overrides `default_filter`.
/// Called once, by the binary only.
/// Lets one log line through per period, so a failure that repeats on every call (a store that is
/// down, a flood of bad input, accept errors) costs one line per period, not one per event, and
/// that line says how many were held back. Lock-free.
pub struct LogLimiter {
    epoch: std::time::Instant,
    period_ms: u64,
    /// Milliseconds since `epoch` of the last line let through, plus one (0: none yet).
    last: std::sync::atomic::AtomicU64,
    /// Lines held back since the last one let through.
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogLimiter {
    pub fn new(period: std::time::Duration) -> Self {
        LogLimiter {
            epoch: std::time::Instant::now(),
            period_ms: period.as_millis() as u64,
            last: std::sync::atomic::AtomicU64::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one let through)` when this line may be logged at
    /// its full level; `None` when it should go to `debug`.
    pub fn allow(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Relaxed);
        if (last == 0 || now.saturating_sub(last) >= self.period_ms)
            && self
                .last
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Relaxed))
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            None
        }
    }
}

/// Installs the log subscriber alone (no trace export); see [`trace::init`] for the binary's.
pub fn init_tracing(default_filter: &str, format: LogFormat) {
    let _ = trace::init(default_filter, format, &trace::TraceExport::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_limiter_lets_one_line_through_per_period() {
        let l = LogLimiter::new(std::time::Duration::from_secs(3600));
        assert_eq!(l.allow(), Some(0), "the first line");
        assert!(
            l.allow().is_none() && l.allow().is_none(),
            "the rest of the period"
        );
        let every = LogLimiter::new(std::time::Duration::ZERO);
        assert_eq!(every.allow(), Some(0));
        assert_eq!(every.allow(), Some(0));
    }

    #[test]
    fn a_high_water_reports_the_peak_of_each_scrape_interval() {
        let m = Metrics::new();
        m.space_mailbox_max.observe(3);
        m.space_mailbox_max.observe(7);
        m.space_mailbox_max.observe(2);
        m.subscriber_queue_max("socketio").observe(5);
        let first = m.render();
        assert!(
            first.contains("spacecast_space_mailbox_depth_max 7\n"),
            "{first}"
        );
        assert!(first.contains("spacecast_subscriber_queue_depth_max{protocol=\"socketio\"} 5\n"));
        assert!(first.contains("spacecast_subscriber_queue_depth_max{protocol=\"native\"} 0\n"));
        // Nothing observed since: the next interval's peak is 0.
        let second = m.render();
        assert!(
            second.contains("spacecast_space_mailbox_depth_max 0\n"),
            "{second}"
        );
        assert!(second.contains("spacecast_subscriber_queue_depth_max{protocol=\"socketio\"} 0\n"));
    }

    #[test]
    fn fixed_label_sets_exist_at_zero_before_anything_happened() {
        let text = Metrics::new().render();
        for line in [
            "spacecast_ws_sessions{protocol=\"native\"} 0",
            "spacecast_ws_closed_total{protocol=\"socketio\",reason=\"slow_consumer\"} 0",
            "spacecast_store_errors_total{kind=\"timeout\",op=\"commit\"} 0",
            "spacecast_lease_renewals_total{outcome=\"lost\"} 0",
            "spacecast_lease_acquisitions_total{outcome=\"acquired\"} 0",
            "spacecast_realtime_op_duration_seconds_count{op=\"send\",protocol=\"native\"} 0",
            "spacecast_bus_forward_duration_seconds_count 0",
            "spacecast_space_failover_seconds_count 0",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} missing");
        }
    }

    #[test]
    fn every_named_metric_is_exported() {
        let m = Metrics::new();
        m.http_requests.with_label_values(&["x", "2xx"]).inc();
        m.http_duration.with_label_values(&["x"]).observe(0.1);
        m.events_committed
            .with_label_values(&["message_created"])
            .inc();
        m.store_duration.with_label_values(&["append"]).observe(0.1);
        m.store_errors
            .with_label_values(&["append", "timeout"])
            .inc();
        m.fanout_deliveries.with_label_values(&["native"]).inc();
        m.fanout_writes.with_label_values(&["native"]).inc();
        m.ws_sessions.with_label_values(&["native"]).inc();
        m.ws_closed.with_label_values(&["native", "normal"]).inc();
        m.ws_frames_in.with_label_values(&["native", "join"]).inc();
        m.ws_refused
            .with_label_values(&["socketio", "overloaded"])
            .inc();
        m.sends_rate_limited.with_label_values(&["v1"]).inc();
        m.http_connections_closed
            .with_label_values(&["normal"])
            .inc();
        m.http_connections_refused
            .with_label_values(&["answered"])
            .inc();
        m.http_accept_errors.with_label_values(&["aborted"]).inc();
        m.connection_limit.with_label_values(&["http"]).set(1);
        let text = m.render();
        for name in [
            names::HTTP_REQUESTS,
            names::HTTP_DURATION,
            names::HTTP_CONNECTIONS,
            names::HTTP_CONNECTIONS_CLOSED,
            names::HTTP_CONNECTIONS_REFUSED,
            names::HTTP_ACCEPT_ERRORS,
            names::CONNECTION_LIMIT,
            names::SPACE_ACTORS,
            names::SPACE_COMMANDS_INFLIGHT,
            names::SPACE_ADMISSION_REJECTED,
            names::SPACE_RESTARTS,
            names::SPACE_PASSIVATIONS,
            names::COMMIT_BATCH_SIZE,
            names::COMMIT_DURATION,
            names::COMMIT_QUEUE,
            names::EVENTS_COMMITTED,
            names::STORE_DURATION,
            names::STORE_ERRORS,
            names::STORE_WRITE_QUEUE,
            names::STORE_FSYNC_BATCH,
            names::STORE_HEALTHY,
            names::STORE_RECOVERIES,
            names::MESSAGE_CACHE_BYTES,
            names::FANOUT_EVENTS,
            names::FANOUT_DELIVERIES,
            names::FANOUT_TOPICS,
            names::WS_SESSIONS,
            names::WS_CLOSED,
            names::WS_FRAMES_IN,
            names::WS_REFUSED,
            names::SENDS_RATE_LIMITED,
            names::RATE_LIMIT_USERS,
            names::REALTIME_OP_DURATION,
            names::SPACE_MAILBOX_MAX,
            names::SPACE_MAILBOX_LIMIT,
            names::SUBSCRIBER_QUEUE_MAX,
            names::SUBSCRIBER_QUEUE_LIMIT,
            names::BUS_FORWARD_DURATION,
            names::BUS_PUBLISH_DURATION,
            names::LEASE_RENEWALS,
            names::LEASE_ACQUISITIONS,
            names::FAILOVER_DURATION,
        ] {
            assert!(text.contains(name), "{name} missing from /metrics output");
        }
    }
}
