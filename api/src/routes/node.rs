//! `GET /v1/node`: what one node is doing, for the console's operator tab and for people. Any
//! valid token may read it (it names no user and no space).
//!
//! Gauges are read when asked; rates (sends and deliveries per second) come from a sliding
//! window over samples of the existing counters, which a background task takes once a second
//! ([`NodeStats::record`]). The window keeps at most [`MAX_SAMPLES`] samples, so memory is
//! fixed, and a request costs a few atomic reads, however often it comes. Nothing here scrapes
//! `/metrics`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};
use serde::Serialize;
use spacecast_engine::model::Timestamp;
use spacecast_observability::Metrics;
use utoipa::ToSchema;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{authorization, respond, started, user, with_app};
use crate::app::AppRef;
use crate::config::StoreKind;
use crate::error::json_response;

crate::openapi::errors!(NodeErrors { 401 });

/// How often the counters are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// The longest span rates are averaged over.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Samples kept: one window's worth, plus its start.
pub const MAX_SAMPLES: usize = 11;
/// The realtime protocols whose sessions and deliveries are counted (the `protocol` label of
/// `spacecast_ws_sessions` and `spacecast_fanout_deliveries_total`).
pub const PROTOCOLS: [&str; 2] = ["native", "socketio"];

/// The counters rates are computed from, at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    at: Instant,
    /// Messages this node's spaces made durable (`message_created` events committed).
    sends: u64,
    /// Frames written to this node's subscribers, every protocol.
    deliveries: u64,
}

/// The node's start time and its recent samples. One per server.
pub struct NodeStats {
    started: Instant,
    started_at: Timestamp,
    sends: IntCounter,
    deliveries: [IntCounter; 2],
    sessions: [IntGauge; 2],
    http_connections: IntGauge,
    space_actors: IntGauge,
    watched_spaces: IntGauge,
    samples: Mutex<VecDeque<Sample>>,
}

impl NodeStats {
    /// Resolves the counters once and takes the first sample.
    pub fn new(metrics: &Metrics) -> Self {
        let stats = NodeStats {
            started: Instant::now(),
            started_at: Timestamp::now(),
            sends: metrics
                .events_committed
                .with_label_values(&["message_created"]),
            deliveries: PROTOCOLS.map(|p| metrics.fanout_deliveries.with_label_values(&[p])),
            sessions: PROTOCOLS.map(|p| metrics.ws_sessions.with_label_values(&[p])),
            http_connections: metrics.http_connections.clone(),
            space_actors: metrics.space_actors.clone(),
            watched_spaces: metrics.fanout_topics.clone(),
            samples: Mutex::new(VecDeque::with_capacity(MAX_SAMPLES + 1)),
        };
        stats.record_at(stats.started);
        stats
    }

    fn sample_at(&self, at: Instant) -> Sample {
        Sample {
            at,
            sends: self.sends.get(),
            deliveries: self.deliveries.iter().map(IntCounter::get).sum(),
        }
    }

    /// Takes a sample now (the sampler's tick).
    pub fn record(&self) {
        self.record_at(Instant::now());
    }

    fn record_at(&self, at: Instant) {
        let sample = self.sample_at(at);
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.push_back(sample);
        while samples.len() > MAX_SAMPLES {
            samples.pop_front();
        }
    }

    /// Sends and deliveries per second from the oldest kept sample to now, and the span they
    /// cover in seconds (at most about [`WINDOW`]; shorter just after start).
    fn rates_at(&self, now: Instant) -> (f64, f64, f64) {
        let current = self.sample_at(now);
        let oldest = self
            .samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|s| now.saturating_duration_since(s.at) <= WINDOW + SAMPLE_EVERY)
            .copied();
        match oldest {
            Some(oldest) => rates(&oldest, &current),
            None => (0.0, 0.0, 0.0),
        }
    }

    /// Spawns the sampler: one sample per [`SAMPLE_EVERY`] until `stop` is cancelled.
    pub fn spawn_sampler(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let stats = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => match stats.upgrade() {
                        Some(s) => s.record(),
                        None => return,
                    },
                }
            }
        });
    }
}

/// Per-second rates between two samples, and the seconds between them (zero rates for a span
/// too short to measure, or counters that went backwards).
fn rates(from: &Sample, to: &Sample) -> (f64, f64, f64) {
    let secs = to.at.saturating_duration_since(from.at).as_secs_f64();
    if secs < 0.001 {
        return (0.0, 0.0, secs);
    }
    let per_sec = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
    (
        per_sec(from.sends, to.sends),
        per_sec(from.deliveries, to.deliveries),
        secs,
    )
}

/// The node in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(node_status))]
pub struct Doc;

/// Open connections by protocol: realtime sessions (`spacecast_ws_sessions{protocol}`) and HTTP
/// connections not upgraded (`spacecast_http_connections`).
#[derive(Serialize, ToSchema)]
struct Connections {
    /// `/v1/stream` sessions.
    native: i64,
    /// Socket.IO sessions.
    socketio: i64,
    /// HTTP connections (this request's included).
    http: i64,
}

/// What this node is doing. Gauges are read at request time; rates are averaged over a sliding
/// window of samples of the node's counters, taken once a second (at most 11 kept).
#[derive(Serialize, ToSchema)]
struct NodeStatus<'a> {
    /// `--node-id` (or the generated one); the same as in `hello` frames.
    node_id: &'a str,
    /// The server's version.
    version: &'static str,
    started_at: Timestamp,
    uptime_seconds: u64,
    /// True in cluster mode (`--nats-url`).
    clustered: bool,
    /// The cluster bus (NATS) is connected; always true on a single node.
    bus_connected: bool,
    /// False once shutdown started.
    accepting: bool,
    #[schema(inline)]
    store: StoreKind,
    connections: Connections,
    /// The effective `--max-connections` (after fitting the descriptor limit).
    realtime_connection_limit: usize,
    /// Space actors running on this node (spaces it owns with recent activity).
    active_spaces: i64,
    /// Spaces with at least one realtime subscriber on this node.
    watched_spaces: i64,
    /// Messages made durable per second by the spaces this node owns (`message_created` events
    /// committed; in a cluster, counted on the owner).
    sends_per_second: f64,
    /// Event frames written per second to this node's subscribers, every protocol.
    deliveries_per_second: f64,
    /// The span the rates are averaged over: about 10 s, less just after start.
    rate_window_seconds: f64,
}

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    let stats = Arc::new(NodeStats::new(&app.metrics));
    stats.spawn_sampler(app.stop.clone());
    warp::path!("v1" / "node")
        .and(warp::get())
        .and(with_app(app))
        .and(started())
        .and(authorization())
        .then(move |app: AppRef, t, auth| {
            let stats = stats.clone();
            async move {
                respond(app.clone(), "GET /v1/node", t, async move {
                    user(&app, auth)?;
                    Ok(node_status(&app, &stats))
                })
                .await
            }
        })
        .boxed()
}

/// Rounds a rate for display (two decimals).
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// This node's status, connections and rates (the console's operator tab)
///
/// Any valid token may read it (it names no user and no space). Cheap: a few atomic reads and a
/// short window of kept samples; it does not scrape `/metrics`. The console polls it every 2 s
/// while its operator tab is open.
#[utoipa::path(get, path = "/v1/node", operation_id = "nodeStatus", tag = "operations",
    responses(
        (status = 200, description = "The node's status.", body = NodeStatus),
        NodeErrors,
    ))]
fn node_status(app: &AppRef, stats: &NodeStats) -> Response {
    let now = Instant::now();
    let (sends, deliveries, window) = stats.rates_at(now);
    let bus = app.engine.bus();
    let [native, socketio] = &stats.sessions;
    let body = NodeStatus {
        node_id: &app.config.node_id,
        version: env!("CARGO_PKG_VERSION"),
        started_at: stats.started_at,
        uptime_seconds: now.saturating_duration_since(stats.started).as_secs(),
        clustered: bus.clustered(),
        bus_connected: bus.healthy(),
        accepting: app.accepting.load(Ordering::Acquire),
        store: app.config.store,
        connections: Connections {
            native: native.get(),
            socketio: socketio.get(),
            http: stats.http_connections.get(),
        },
        realtime_connection_limit: app.config.max_connections,
        active_spaces: stats.space_actors.get(),
        watched_spaces: stats.watched_spaces.get(),
        sends_per_second: round2(sends),
        deliveries_per_second: round2(deliveries),
        rate_window_seconds: round2(window),
    };
    json_response(StatusCode::OK, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_deltas_over_the_window() {
        let t0 = Instant::now();
        let a = Sample {
            at: t0,
            sends: 10,
            deliveries: 100,
        };
        let b = Sample {
            at: t0 + Duration::from_secs(4),
            sends: 30,
            deliveries: 500,
        };
        assert_eq!(rates(&a, &b), (5.0, 100.0, 4.0));
        // Too short to measure, or counters reset: zero, never negative or infinite.
        assert_eq!(rates(&a, &a).0, 0.0);
        assert_eq!(
            rates(
                &b,
                &Sample {
                    at: t0 + Duration::from_secs(5),
                    ..a
                }
            )
            .0,
            0.0
        );
    }

    #[test]
    fn the_window_keeps_a_bounded_number_of_samples_and_follows_the_counters() {
        let metrics = Metrics::new();
        let stats = NodeStats::new(&metrics);
        let t0 = stats.started;
        for i in 1..=100u64 {
            metrics
                .events_committed
                .with_label_values(&["message_created"])
                .inc_by(2);
            metrics
                .fanout_deliveries
                .with_label_values(&["socketio"])
                .inc_by(20);
            stats.record_at(t0 + Duration::from_secs(i));
        }
        assert_eq!(stats.samples.lock().unwrap().len(), MAX_SAMPLES);
        // 100 s in, the oldest kept sample is 10 s old: 2 sends and 20 deliveries a second.
        let (sends, deliveries, window) = stats.rates_at(t0 + Duration::from_secs(100));
        assert_eq!((sends, deliveries, window), (2.0, 20.0, 10.0));
        // Samples older than the window are not used: after a long pause, no stale average.
        let (sends, _, _) = stats.rates_at(t0 + Duration::from_secs(1000));
        assert_eq!(sends, 0.0);
    }
}
