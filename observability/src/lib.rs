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
    pub const WS_SESSIONS: &str = "spacecast_ws_sessions";
    pub const WS_CLOSED: &str = "spacecast_ws_closed_total";
    pub const WS_FRAMES_IN: &str = "spacecast_ws_frames_received_total";
    pub const WS_REFUSED: &str = "spacecast_ws_refused_total";
    pub const SENDS_RATE_LIMITED: &str = "spacecast_sends_rate_limited_total";
    pub const RATE_LIMIT_USERS: &str = "spacecast_rate_limit_users";
    pub const BUILD_INFO: &str = "spacecast_build_info";
    pub const WRITES_RATE_LIMITED: &str = "spacecast_writes_rate_limited_total";
    pub const WRITE_RATE_LIMIT_USERS: &str = "spacecast_write_rate_limit_users";
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
                Opts::new(names::STORE_ERRORS, "Store call failures by operation"),
                &["op"]
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
            registry,
            store_failure_log: LogLimiter::new(std::time::Duration::from_secs(1)),
        };
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
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        let encoder = TextEncoder::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = encoder.encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
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
    fn every_named_metric_is_exported() {
        let m = Metrics::new();
        m.http_requests.with_label_values(&["x", "2xx"]).inc();
        m.http_duration.with_label_values(&["x"]).observe(0.1);
        m.events_committed
            .with_label_values(&["message_created"])
            .inc();
        m.store_duration.with_label_values(&["append"]).observe(0.1);
        m.store_errors.with_label_values(&["append"]).inc();
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
        ] {
            assert!(text.contains(name), "{name} missing from /metrics output");
        }
    }
}
