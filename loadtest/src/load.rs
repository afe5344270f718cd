//! The load scenarios on the [`Target`] trait: `fanout`, `ingest`, `mixed`, `connect-storm`,
//! `idle` and `soak` are one engine with different shapes (spaces × subscribers, an open-loop
//! publishing rate, connection churn, how long to hold).
//!
//! A run: create the spaces (and memberships), connect every subscriber (`--connect-concurrency`
//! at a time, each from one of `--source-addrs` loopback addresses, over `--processes`
//! processes), then publish on the clock ([`crate::schedule`]) for `--duration` seconds (or just
//! hold the connections when nothing is published), drain, and report. Latencies count from
//! each message's due time, which is also the timestamp in its content (`lt:<µs>`, on the
//! shared wall clock so several processes agree).
//!
//! With `--processes N` the parent prepares the spaces and publishes; N children
//! (`--shard i/N`, the same binary) each connect every N-th subscriber and speak a line protocol
//! on stdin/stdout: child `READY` → parent `GO <t0 µs>` → parent `END <acked per space>` → child
//! prints its raw [`Measurements`] as one JSON line and exits; the parent merges them.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Stdio,
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, ChildStdout, Command},
    sync::{Semaphore, mpsc, watch},
    task::JoinSet,
    time::sleep,
};

use crate::{
    api::{Api, CommonArgs},
    chart,
    nodes::Nodes,
    procstat::{self, ProcSample},
    report::{self, Measurements, Report, RunInfo, ServerSamples},
    schedule::{Pacer, Schedule, Step, latency_from_due},
    stats::{self, SeqTracker},
    target::{
        self, Incoming, PublishOutcome, Subscription, Target, centrifugo::Centrifugo,
        socketio::SocketIo, spacecast::Spacecast,
    },
};

/// Most publish requests in flight; beyond it the publisher waits (and its lateness shows in
/// the latencies, which count from the due time).
const MAX_PUBLISH_IN_FLIGHT: usize = 512;
/// How often the drain phase and the progress line look at the counters.
const POLL: Duration = Duration::from_millis(50);
/// Shards of the shared recorder (subscriber `i` records into shard `i % RECORDER_SHARDS`).
const RECORDER_SHARDS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    /// Spacecast: REST sends, `/v1/stream` subscribers.
    Spacecast,
    /// Spacecast: REST sends, Socket.IO subscribers (`/socket.io/`, as the Space7 app).
    Socketio,
    /// Centrifugo v6: HTTP API publishes, JSON client protocol subscribers.
    Centrifugo,
}

impl TargetKind {
    fn name(self) -> &'static str {
        match self {
            TargetKind::Spacecast => "spacecast",
            TargetKind::Socketio => "socketio",
            TargetKind::Centrifugo => "centrifugo",
        }
    }
}

/// The scenario shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fanout,
    Ingest,
    Mixed,
    ConnectStorm,
    Idle,
    Soak,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Fanout => "fanout",
            Kind::Ingest => "ingest",
            Kind::Mixed => "mixed",
            Kind::ConnectStorm => "connect-storm",
            Kind::Idle => "idle",
            Kind::Soak => "soak",
        }
    }

    /// Default (spaces, subscribers per space, rate, duration s, connect concurrency).
    fn defaults(self) -> (u32, u32, u32, u64, u32) {
        match self {
            Kind::Fanout => (1, 1_000, 100, 20, 50),
            Kind::Ingest => (8, 0, 1_000, 20, 50),
            Kind::Mixed => (4, 250, 200, 20, 50),
            Kind::ConnectStorm => (1, 5_000, 0, 0, 200),
            Kind::Idle => (1, 10_000, 0, 10, 200),
            Kind::Soak => (4, 250, 100, 600, 50),
        }
    }

    fn publishes(self) -> bool {
        !matches!(self, Kind::ConnectStorm | Kind::Idle)
    }
}

/// `--shard i/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (i, n) = s.split_once('/').ok_or("expected i/N")?;
        let index: u32 = i.parse().map_err(|_| "bad shard index")?;
        let count: u32 = n.parse().map_err(|_| "bad shard count")?;
        if count == 0 || index >= count {
            return Err("need 0 ≤ i < N".into());
        }
        Ok(Shard { index, count })
    }
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// System under test.
    #[arg(long, value_enum, default_value_t = TargetKind::Spacecast)]
    pub target: TargetKind,
    /// Centrifugo's HTTP API key (`http_api.key`); --jwt-secret is its HMAC token secret.
    #[arg(
        long,
        env = "CENTRIFUGO_API_KEY",
        hide_env_values = true,
        default_value = ""
    )]
    pub api_key: String,
    /// Spaces (channels). Default: fanout 1, ingest 8, mixed 4, connect-storm 1, idle 1, soak 4.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub spaces: Option<u32>,
    /// Subscribers per space, each its own user and connection. Default: fanout 1,000, ingest 0,
    /// mixed 250, connect-storm 5,000, idle 10,000, soak 250.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub subscribers: Option<u32>,
    /// Messages per second over all spaces (round-robin), scheduled by the clock. Default:
    /// fanout 100, ingest 1,000, mixed 200, soak 100; connect-storm and idle publish nothing.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: Option<u32>,
    /// Seconds of publishing (idle: of holding the connections). Default: 20; soak 600,
    /// idle 10, connect-storm 0.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub duration: Option<u64>,
    /// Subscribers connecting (handshake + subscribe) at the same time, per process.
    /// Default: 50; connect-storm and idle 200.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connect_concurrency: Option<u32>,
    /// After publishing, wait up to this many seconds for outstanding deliveries.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub drain_timeout: u64,
    /// Spacecast: do not `POST /api/spaces/{id}/join` each subscriber before it subscribes.
    #[arg(long)]
    pub no_rest_join: bool,
    /// mixed: connections opened, subscribed and closed per second during the run (churn).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub churn: u32,
    /// Loopback source addresses 127.0.0.1..=127.0.0.N the connections are spread over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=254))]
    pub source_addrs: u32,
    /// Load generator processes holding the subscribers (re-executes this binary).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub processes: u32,
    /// Internal: this process is child i of N (`--processes`).
    #[arg(long, hide = true)]
    pub shard: Option<Shard>,
    /// Internal: the spaces the parent created (comma-separated).
    #[arg(long, hide = true, value_delimiter = ',')]
    pub space_ids: Vec<String>,
    /// The servers subscribers connect to, spread round-robin (each space's subscribers over
    /// all of them; repeated or comma-separated). Default: every `--url`.
    #[arg(long = "subscribe-url", value_name = "URL", value_delimiter = ',')]
    pub subscribe_urls: Vec<String>,
    /// PID of the server: its CPU seconds and RSS (from /proc) over the measured window. Several
    /// (repeated or comma-separated; the nodes of a cluster): their sums.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Pin the server's threads (needs --server-pid) to these CPUs (e.g. `0`, `0-1`) and the
    /// load generator to the others.
    #[arg(long)]
    pub server_cpus: Option<String>,
    /// No progress line and no progress messages on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Write report.json and latency.svg (delivery latency percentiles over time) here.
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// A label carried into the report (e.g. the compare step).
    #[arg(long, default_value = "")]
    pub label: String,
}

/// The arguments with the scenario's defaults filled in.
#[derive(Debug, Clone)]
struct Plan {
    spaces: u32,
    per_space: u32,
    rate: u32,
    duration: Duration,
    connect_concurrency: u32,
}

impl Plan {
    fn new(kind: Kind, args: &LoadArgs) -> Self {
        let (spaces, per_space, rate, duration, cc) = kind.defaults();
        Plan {
            spaces: args.spaces.unwrap_or(spaces),
            per_space: args.subscribers.unwrap_or(per_space),
            rate: if kind.publishes() {
                args.rate.unwrap_or(rate)
            } else {
                0
            },
            duration: Duration::from_secs(args.duration.unwrap_or(duration)),
            connect_concurrency: args.connect_concurrency.unwrap_or(cc),
        }
    }

    fn total_subscribers(&self) -> u64 {
        u64::from(self.spaces) * u64::from(self.per_space)
    }
}

/// A progress message on stderr, above the progress line (which may be hidden).
fn say(bar: &ProgressBar, quiet: bool, msg: impl AsRef<str>) {
    if !quiet {
        bar.suspend(|| eprintln!("loadtest: {}", msg.as_ref()));
    }
}

fn nodes_of(args: &LoadArgs) -> Result<Nodes> {
    Nodes::parse(
        &args.common.urls,
        &args.common.send_urls,
        &args.subscribe_urls,
    )
}

fn build_target(args: &LoadArgs, run_for: Duration) -> Result<Arc<dyn Target>> {
    let nodes = nodes_of(args)?;
    let api = Api::new(&args.common, MAX_PUBLISH_IN_FLIGHT, run_for)?;
    Ok(match args.target {
        TargetKind::Spacecast => Arc::new(Spacecast::new(api, &nodes)?),
        TargetKind::Socketio => Arc::new(SocketIo::new(api, &nodes)?),
        TargetKind::Centrifugo => {
            if nodes.several() {
                bail!(
                    "--target centrifugo takes one server: one --url, no other --send-url or --subscribe-url"
                );
            }
            Arc::new(Centrifugo::new(api, &nodes.setup, &args.api_key)?)
        }
    })
}

/// The summed `/proc` sample of `pids` (`None` if there are none or one cannot be read).
fn sample_servers(pids: &[u32]) -> Option<ProcSample> {
    if pids.is_empty() {
        return None;
    }
    let mut total = ProcSample::default();
    for &pid in pids {
        let s = procstat::sample(Some(pid)).ok()?;
        total.cpu_s += s.cpu_s;
        total.rss_kib += s.rss_kib;
        total.hwm_kib += s.hwm_kib;
    }
    Some(total)
}

/// Shared by the subscriber tasks of one process.
struct Shared {
    recorder: Vec<Mutex<Measurements>>,
    /// Publishing start on the shared clock (0 until `GO`).
    t0: AtomicU64,
    delivered: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    fn new(bucket_micros: u64) -> Self {
        Self {
            recorder: (0..RECORDER_SHARDS)
                .map(|_| Mutex::new(Measurements::new(bucket_micros)))
                .collect(),
            t0: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    fn with<R>(&self, idx: usize, f: impl FnOnce(&mut Measurements) -> R) -> R {
        // A poisoned shard only means another task panicked mid-record; its data is still usable.
        let mut m = self.recorder[idx % RECORDER_SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        f(&mut m)
    }

    fn error(&self, idx: usize, code: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.with(idx, |m| m.error(code));
    }

    fn merged(&self, bucket_micros: u64) -> Measurements {
        let mut total = Measurements::new(bucket_micros);
        for shard in &self.recorder {
            total.merge(&shard.lock().unwrap_or_else(|e| e.into_inner()));
        }
        total
    }
}

/// Visible to the drain loop while a subscriber runs.
struct SubProgress {
    space: usize,
    delivered: AtomicU64,
    finished: AtomicBool,
}

/// Subscribers of this process: global indexes `k` with `k % count == index`.
struct SubscriberSet {
    progress: Vec<Arc<SubProgress>>,
    tasks: JoinSet<()>,
    shutdown: watch::Sender<bool>,
    connected: u64,
    failed: u64,
    connect_s: f64,
}

/// Everything a subscriber task needs.
struct SubCtx {
    target: Arc<dyn Target>,
    shared: Arc<Shared>,
    spaces: Arc<Vec<String>>,
    source_addrs: u32,
}

/// Connects this process's share of the subscribers; returns once each connected or failed.
async fn connect_subscribers(
    ctx: &Arc<SubCtx>,
    plan: &Plan,
    shard: Shard,
    bar: &ProgressBar,
) -> SubscriberSet {
    let total = plan.total_subscribers();
    let mine: Vec<u64> = (0..total)
        .filter(|k| k % u64::from(shard.count) == u64::from(shard.index))
        .collect();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(plan.connect_concurrency as usize));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<bool>();
    let mut set = SubscriberSet {
        progress: Vec::with_capacity(mine.len()),
        tasks: JoinSet::new(),
        shutdown,
        connected: 0,
        failed: 0,
        connect_s: 0.0,
    };
    let start = Instant::now();
    for &k in &mine {
        let k = k as usize;
        let space = k % ctx.spaces.len();
        let progress = Arc::new(SubProgress {
            space,
            delivered: AtomicU64::new(0),
            finished: AtomicBool::new(false),
        });
        set.progress.push(Arc::clone(&progress));
        set.tasks.spawn(subscriber(
            Arc::clone(ctx),
            k,
            Arc::clone(&gate),
            ready_tx.clone(),
            shutdown_rx.clone(),
            progress,
        ));
    }
    drop(ready_tx);
    // Every task reports exactly once (each handshake step is bounded).
    while let Some(ok) = ready_rx.recv().await {
        if ok {
            set.connected += 1;
        } else {
            set.failed += 1;
        }
        bar.set_message(format!(
            "connecting {}/{} ({} failed)",
            set.connected,
            mine.len(),
            set.failed
        ));
    }
    set.connect_s = start.elapsed().as_secs_f64();
    set
}

async fn subscriber(
    ctx: Arc<SubCtx>,
    k: usize,
    gate: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<bool>,
    mut shutdown: watch::Receiver<bool>,
    progress: Arc<SubProgress>,
) {
    let space = &ctx.spaces[progress.space];
    // Connect latency is the handshake's own time, from when this subscriber's turn came (time
    // spent queueing behind --connect-concurrency shows in connects/s instead).
    let mut started = Instant::now();
    let opened = match gate.acquire().await {
        Ok(_permit) => {
            started = Instant::now();
            ctx.target
                .subscribe(
                    k + 1,
                    space,
                    target::source_addr(k, ctx.source_addrs),
                    k / ctx.spaces.len(),
                )
                .await
        }
        Err(_) => Err(target::ConnectError::new("gate_closed", "")),
    };
    let mut sub: Box<dyn Subscription> = match opened {
        Ok(sub) => {
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            ctx.shared.with(k, |m| {
                stats::record_micros(&mut m.connect, micros);
                m.connected += 1;
            });
            let _ = ready.send(true);
            sub
        }
        Err(err) => {
            ctx.shared.error(k, &format!("connect_{}", err.code));
            ctx.shared.with(k, |m| m.connect_failed += 1);
            progress.finished.store(true, Ordering::Relaxed);
            let _ = ready.send(false);
            return;
        }
    };
    drop(ready);

    let mut seq = SeqTracker::default();
    let mut dropped = false;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                sub.close().await;
                break;
            }
            incoming = sub.next() => match incoming {
                Incoming::Delivery { seq: s, sent_micros } => {
                    if let Some(s) = s {
                        seq.observe(s);
                    }
                    let Some(sent) = sent_micros else {
                        ctx.shared.with(k, |m| m.foreign += 1);
                        continue;
                    };
                    let now = stats::now_micros();
                    let t0 = ctx.shared.t0.load(Ordering::Relaxed);
                    ctx.shared.with(k, |m| {
                        m.record_delivery(sent.saturating_sub(t0), latency_from_due(sent, now));
                        m.last_delivery_micros = m.last_delivery_micros.max(now);
                    });
                    progress.delivered.fetch_add(1, Ordering::Relaxed);
                    ctx.shared.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Incoming::Sequenced { seq: s } => seq.observe(s),
                Incoming::Foreign => ctx.shared.with(k, |m| m.foreign += 1),
                Incoming::Other => {}
                Incoming::Malformed(code) => ctx.shared.error(k, code),
                Incoming::Ended(code) => {
                    ctx.shared.error(k, &code);
                    dropped = true;
                    break;
                }
            },
        }
    }
    ctx.shared.with(k, |m| {
        m.seq.merge(&seq);
        if dropped {
            m.subscribers_dropped += 1;
        }
    });
    progress.finished.store(true, Ordering::Relaxed);
}

/// Waits until every subscriber has `acked[space]` deliveries (or ended), or the deadline.
async fn drain(progress: &[Arc<SubProgress>], acked: &[u64], timeout: Duration) -> f64 {
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        let done = progress.iter().all(|p| {
            p.finished.load(Ordering::Relaxed)
                || p.delivered.load(Ordering::Relaxed) >= acked.get(p.space).copied().unwrap_or(0)
        });
        if done || Instant::now() >= deadline {
            return start.elapsed().as_secs_f64();
        }
        sleep(POLL).await;
    }
}

/// Stops the subscribers and counts the incomplete ones.
async fn finish_subscribers(mut set: SubscriberSet, acked: &[u64], shared: &Shared) {
    let incomplete = set
        .progress
        .iter()
        .filter(|p| p.delivered.load(Ordering::Relaxed) < acked.get(p.space).copied().unwrap_or(0))
        .count() as u64;
    shared.with(0, |m| m.subscribers_incomplete += incomplete);
    let _ = set.shutdown.send(true);
    while set.tasks.join_next().await.is_some() {}
}

/// Publishing state shared by the publisher's tasks.
struct PublishState {
    acked: Vec<AtomicU64>,
    published: AtomicU64,
    max_lag_micros: AtomicU64,
}

/// Publishes on the clock: message `i` goes to space `i % spaces`, due at `start + i / rate`.
async fn publish(
    target: Arc<dyn Target>,
    spaces: Arc<Vec<String>>,
    schedule: Schedule,
    content_bytes: usize,
    shared: Arc<Shared>,
    state: Arc<PublishState>,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_PUBLISH_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let mut pacer = Pacer::new(schedule);
    loop {
        while tasks.try_join_next().is_some() {}
        match pacer.step(stats::now_micros()) {
            Step::Done => break,
            Step::Wait { until_micros } => {
                // Measured on the schedule's own clock each time: no drift, and the due time
                // may be in the future when publishing starts.
                let wait = until_micros.saturating_sub(stats::now_micros());
                sleep(Duration::from_micros(wait)).await;
            }
            Step::Send { index, due_micros } => {
                // Wait for a slot rather than skip: the wait shows in the latency.
                let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                    break;
                };
                let lag = stats::now_micros().saturating_sub(due_micros);
                state.max_lag_micros.fetch_max(lag, Ordering::Relaxed);
                state.published.fetch_add(1, Ordering::Relaxed);
                let space_idx = (index % spaces.len() as u64) as usize;
                let (target, spaces, shared, state) = (
                    Arc::clone(&target),
                    Arc::clone(&spaces),
                    Arc::clone(&shared),
                    Arc::clone(&state),
                );
                tasks.spawn(async move {
                    let content = stats::make_content(due_micros, content_bytes);
                    // Message i: space i mod S, send node (i / S) mod n.
                    let via = (index / spaces.len() as u64) as usize;
                    let outcome = target.publish(&spaces[space_idx], &content, via).await;
                    let done = stats::now_micros();
                    drop(permit);
                    let idx = index as usize;
                    match outcome {
                        PublishOutcome::Acked { .. } => {
                            state.acked[space_idx].fetch_add(1, Ordering::Relaxed);
                            shared.with(idx, |m| {
                                m.acked += 1;
                                stats::record_micros(
                                    &mut m.publish_ack,
                                    latency_from_due(due_micros, done),
                                );
                            });
                        }
                        PublishOutcome::Rejected { code } => {
                            shared.with(idx, |m| m.rejected += 1);
                            shared.error(idx, &code);
                        }
                        PublishOutcome::Failed { code } => {
                            shared.with(idx, |m| m.publish_errors += 1);
                            shared.error(idx, &code);
                        }
                    }
                });
            }
        }
    }
    // Bounded by the request timeout.
    while tasks.join_next().await.is_some() {}
}

/// `mixed`: opens, subscribes and closes `rate` connections per second until `stop`.
async fn churn(ctx: Arc<SubCtx>, first_user: usize, rate: u32, mut stop: watch::Receiver<bool>) {
    if rate == 0 {
        return;
    }
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    let mut tasks = JoinSet::new();
    let mut n = 0usize;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = ticker.tick() => {}
        }
        while tasks.try_join_next().is_some() {}
        let ctx = Arc::clone(&ctx);
        let k = first_user + n;
        n += 1;
        tasks.spawn(async move {
            let space = &ctx.spaces[k % ctx.spaces.len()];
            let started = Instant::now();
            match ctx
                .target
                .subscribe(
                    k + 1,
                    space,
                    target::source_addr(k, ctx.source_addrs),
                    k / ctx.spaces.len(),
                )
                .await
            {
                Ok(mut sub) => {
                    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    ctx.shared
                        .with(k, |m| stats::record_micros(&mut m.connect, micros));
                    sub.close().await;
                }
                Err(err) => ctx.shared.error(k, &format!("churn_{}", err.code)),
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

fn progress_bar(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    // Draws only when stderr is a terminal.
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Own CPU over a window, and the cores this process may use.
fn own_cpu(start: &ProcSample, start_at: Instant, m: &mut Measurements) {
    let end = procstat::sample(None).unwrap_or_default();
    let wall = start_at.elapsed().as_secs_f64();
    let cpu = (end.cpu_s - start.cpu_s).max(0.0);
    m.loadgen_cpu_s = cpu;
    m.loadgen_wall_s = wall;
    m.loadgen_processes = 1;
    m.loadgen_max_process_cpu_pct = if wall > 0.0 { cpu / wall * 100.0 } else { 0.0 };
    m.loadgen_cores = procstat::own_cpus().len().max(1) as u32;
}

/// A child loadtest process (`--processes`, `presence` over a cluster), from the parent's side:
/// lines to its stdin, lines from its stdout.
pub(crate) struct ChildProc {
    pub(crate) child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl ChildProc {
    /// Starts this binary with `args`; the JWT secret goes through the environment, never the
    /// command line, beside `env`.
    pub(crate) fn spawn(
        args: impl IntoIterator<Item = String>,
        jwt_secret: &str,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let exe = std::env::current_exe().context("locating the loadtest binary")?;
        let mut child = Command::new(&exe)
            .args(args)
            .env("SPACECAST_JWT_SECRET", jwt_secret)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a loadtest child")?;
        let stdin = child.stdin.take().context("child stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("child stdout")?).lines();
        Ok(ChildProc {
            child,
            stdin,
            stdout,
        })
    }

    /// Ends its stdin (its signal to finish) and waits for it to exit.
    pub(crate) async fn finish(self) {
        let ChildProc {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        let _ = child.wait().await;
    }

    pub(crate) async fn expect_line(&mut self, what: &str, timeout: Duration) -> Result<String> {
        tokio::time::timeout(timeout, self.stdout.next_line())
            .await
            .map_err(|_| anyhow!("a loadtest child sent no {what} within {timeout:?}"))?
            .context("reading a loadtest child")?
            .ok_or_else(|| anyhow!("a loadtest child exited before {what}"))
    }

    pub(crate) async fn send(&mut self, line: &str) -> Result<()> {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .context("writing to a loadtest child")?;
        self.stdin
            .flush()
            .await
            .context("writing to a loadtest child")
    }
}

fn child_args(
    kind: Kind,
    args: &LoadArgs,
    plan: &Plan,
    shard: Shard,
    spaces: &[String],
) -> Vec<String> {
    let mut v: Vec<String> = vec![
        kind.name().into(),
        "--url".into(),
        args.common.urls.join(","),
        "--content-bytes".into(),
        args.common.content_bytes.to_string(),
        "--target".into(),
        args.target.name().into(),
        "--spaces".into(),
        plan.spaces.to_string(),
        "--subscribers".into(),
        plan.per_space.to_string(),
        "--duration".into(),
        plan.duration.as_secs().to_string(),
        "--connect-concurrency".into(),
        plan.connect_concurrency.to_string(),
        "--drain-timeout".into(),
        args.drain_timeout.to_string(),
        "--source-addrs".into(),
        args.source_addrs.to_string(),
        "--shard".into(),
        format!("{}/{}", shard.index, shard.count),
        "--space-ids".into(),
        spaces.join(","),
        "--quiet".into(),
    ];
    if !args.common.send_urls.is_empty() {
        v.push("--send-url".into());
        v.push(args.common.send_urls.join(","));
    }
    if !args.subscribe_urls.is_empty() {
        v.push("--subscribe-url".into());
        v.push(args.subscribe_urls.join(","));
    }
    if plan.rate > 0 {
        v.push("--rate".into());
        v.push(plan.rate.to_string());
    }
    if let Some(threads) = args.common.threads {
        v.push("--threads".into());
        v.push(threads.to_string());
    }
    v
}

async fn spawn_children(
    kind: Kind,
    args: &LoadArgs,
    plan: &Plan,
    spaces: &[String],
) -> Result<Vec<ChildProc>> {
    let mut children = Vec::new();
    for index in 0..args.processes {
        let shard = Shard {
            index,
            count: args.processes,
        };
        children.push(ChildProc::spawn(
            child_args(kind, args, plan, shard, spaces),
            &args.common.jwt_secret,
            &[("CENTRIFUGO_API_KEY", &args.api_key)],
        )?);
    }
    Ok(children)
}

/// The child side of `--processes`: connect, `READY`, wait for `GO`, hold, wait for `END`, drain,
/// print the measurements.
async fn run_shard(kind: Kind, args: LoadArgs, shard: Shard) -> Result<()> {
    let plan = Plan::new(kind, &args);
    if args.space_ids.len() != plan.spaces as usize {
        bail!("--shard needs --space-ids with {} ids", plan.spaces);
    }
    let target = build_target(&args, plan.duration + Duration::from_secs(3600))?;
    let bucket =
        report::bucket_micros_for(u64::try_from(plan.duration.as_micros()).unwrap_or(u64::MAX));
    let shared = Arc::new(Shared::new(bucket));
    let ctx = Arc::new(SubCtx {
        target,
        shared: Arc::clone(&shared),
        spaces: Arc::new(args.space_ids.clone()),
        source_addrs: args.source_addrs,
    });
    let bar = ProgressBar::hidden();
    let set = connect_subscribers(&ctx, &plan, shard, &bar).await;
    println!("READY {} {}", set.connected, set.failed);

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let go = lines
        .next_line()
        .await?
        .context("parent closed stdin before GO")?;
    let t0: u64 = go
        .strip_prefix("GO ")
        .and_then(|t| t.trim().parse().ok())
        .with_context(|| format!("expected GO <t0>, got {go:?}"))?;
    shared.t0.store(t0, Ordering::Relaxed);
    let cpu_start = procstat::sample(None).unwrap_or_default();
    let cpu_start_at = Instant::now();

    let end = lines
        .next_line()
        .await?
        .context("parent closed stdin before END")?;
    let acked: Vec<u64> = end
        .strip_prefix("END")
        .map(str::trim)
        .with_context(|| format!("expected END <acked,…>, got {end:?}"))?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().context("bad acked count"))
        .collect::<Result<_>>()?;
    drain(
        &set.progress,
        &acked,
        Duration::from_secs(args.drain_timeout),
    )
    .await;
    finish_subscribers(set, &acked, &shared).await;
    let mut m = shared.merged(bucket);
    own_cpu(&cpu_start, cpu_start_at, &mut m);
    println!("{}", serde_json::to_string(&m)?);
    Ok(())
}

/// Descriptors kept beside the connections (HTTP pool, stdio, children's pipes).
const FD_RESERVE: u64 = 600;

/// Refuses a run whose connections cannot fit in one process's descriptor limit (main raised
/// the soft limit to the hard one) instead of failing half-way with EMFILE.
fn check_descriptors(plan: &Plan, args: &LoadArgs) -> Result<()> {
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return Ok(());
    };
    let per_process = plan.total_subscribers().div_ceil(u64::from(args.processes));
    if per_process + FD_RESERVE > soft {
        let needed = (plan.total_subscribers()).div_ceil(soft.saturating_sub(FD_RESERVE).max(1));
        bail!(
            "{per_process} connections per process do not fit in RLIMIT_NOFILE {soft} (with a \
             reserve of {FD_RESERVE}): use --processes {needed} or more"
        );
    }
    Ok(())
}

/// Runs scenario `kind`; returns the report (already printed unless `--json` is handled by
/// the caller).
pub async fn run(kind: Kind, args: LoadArgs) -> Result<Option<Report>> {
    if let Some(shard) = args.shard {
        run_shard(kind, args, shard).await?;
        return Ok(None);
    }
    let plan = Plan::new(kind, &args);
    if kind == Kind::Ingest && plan.rate == 0 {
        bail!("ingest needs --rate");
    }
    if kind.publishes() && plan.duration.is_zero() {
        bail!("{} needs --duration ≥ 1", kind.name());
    }
    check_descriptors(&plan, &args)?;
    let quiet = args.quiet;
    let bar = progress_bar(quiet);

    if let Some(cpus) = &args.server_cpus {
        if args.server_pid.is_empty() {
            bail!("--server-cpus needs --server-pid");
        }
        let cpus = procstat::parse_cpu_list(cpus)?;
        for &pid in &args.server_pid {
            let mine = procstat::pin(pid, &cpus)?;
            say(
                &bar,
                quiet,
                format!("server pid {pid} pinned to CPUs {cpus:?}, loadtest to {mine:?}"),
            );
        }
    }
    let nodes = nodes_of(&args)?;
    let monitor = args
        .common
        .nats_monitor
        .as_deref()
        .map(crate::nodes::parse_monitor)
        .transpose()?;
    let sample_server = |pids: &[u32]| sample_servers(pids);

    let run_for = plan.duration + Duration::from_secs(args.drain_timeout + 3600);
    let target = build_target(&args, run_for)?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("building the HTTP client")?;
    let spaces = if args.space_ids.is_empty() {
        target.create_spaces(plan.spaces as usize).await?
    } else {
        args.space_ids.clone()
    };
    let total = plan.total_subscribers();
    if !args.no_rest_join && total > 0 {
        say(
            &bar,
            quiet,
            format!("making {total} users members of {} spaces", spaces.len()),
        );
        for (s, space) in spaces.iter().enumerate() {
            let users: Vec<usize> = (0..total as usize)
                .filter(|k| k % spaces.len() == s)
                .map(|k| k + 1)
                .collect();
            target.add_members(space, &users).await?;
        }
    }
    let before_connect = sample_server(&args.server_pid);

    let bucket =
        report::bucket_micros_for(u64::try_from(plan.duration.as_micros()).unwrap_or(u64::MAX));
    let shared = Arc::new(Shared::new(bucket));
    let spaces = Arc::new(spaces);
    let ctx = Arc::new(SubCtx {
        target: Arc::clone(&target),
        shared: Arc::clone(&shared),
        spaces: Arc::clone(&spaces),
        source_addrs: args.source_addrs,
    });

    // Connect: here, or in the children.
    say(
        &bar,
        quiet,
        format!(
            "connecting {total} subscribers to {} ({} at a time per process, {} process(es), {} source address(es))",
            target.name(),
            plan.connect_concurrency,
            args.processes,
            args.source_addrs
        ),
    );
    let connect_start = Instant::now();
    let mut children = Vec::new();
    let local = if args.processes > 1 && total > 0 {
        children = spawn_children(kind, &args, &plan, &spaces).await?;
        let mut connected = 0u64;
        for child in &mut children {
            let line = child
                .expect_line("READY", Duration::from_secs(3600))
                .await?;
            let ready: Vec<u64> = line
                .strip_prefix("READY ")
                .map(|r| r.split(' ').filter_map(|n| n.parse().ok()).collect())
                .unwrap_or_default();
            connected += ready.first().copied().unwrap_or(0);
            bar.set_message(format!("children ready, {connected} connected"));
        }
        None
    } else {
        Some(connect_subscribers(&ctx, &plan, Shard { index: 0, count: 1 }, &bar).await)
    };
    let connect_s = connect_start.elapsed().as_secs_f64();
    let connected_sample = sample_server(&args.server_pid);
    say(
        &bar,
        quiet,
        format!("subscribers connected in {connect_s:.2} s"),
    );

    let owners_of = |spaces: Arc<Vec<String>>| {
        let (monitor, http) = (monitor.clone(), http.clone());
        async move {
            match monitor {
                Some(m) => crate::nodes::owners(&http, &m, &spaces)
                    .await
                    .context("asking NATS who owns the spaces"),
                None => Ok(BTreeMap::new()),
            }
        }
    };
    let owners_start = owners_of(Arc::clone(&spaces)).await?;

    // The measured window.
    let t0 = stats::now_micros() + 20_000;
    shared.t0.store(t0, Ordering::Relaxed);
    for child in &mut children {
        child.send(&format!("GO {t0}")).await?;
    }
    let window_start = Instant::now();
    let server_start = sample_server(&args.server_pid);
    let cpu_start = procstat::sample(None).unwrap_or_default();

    let state = Arc::new(PublishState {
        acked: (0..spaces.len()).map(|_| AtomicU64::new(0)).collect(),
        published: AtomicU64::new(0),
        max_lag_micros: AtomicU64::new(0),
    });
    let schedule = Schedule::new(
        t0,
        plan.rate,
        u64::try_from(plan.duration.as_micros()).unwrap_or(u64::MAX),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let churn_task = (kind == Kind::Mixed).then(|| {
        tokio::spawn(churn(
            Arc::clone(&ctx),
            total as usize + 1_000_000,
            args.churn,
            stop_rx.clone(),
        ))
    });
    // RSS of the server at the end of each bucket (growth over a soak).
    let rss_pids = args.server_pid.clone();
    let rss_task = (!rss_pids.is_empty()).then(|| {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut ticker = tokio::time::interval(Duration::from_micros(bucket));
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = ticker.tick() => {
                        if let Some(s) = sample_servers(&rss_pids) {
                            samples.push(s.rss_kib);
                        }
                    }
                }
            }
            samples
        })
    });
    let progress_task = {
        let (bar, shared, state, mut stop) = (
            bar.clone(),
            Arc::clone(&shared),
            Arc::clone(&state),
            stop_rx.clone(),
        );
        let scheduled = schedule.len();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = sleep(Duration::from_millis(200)) => {}
                }
                let acked: u64 = state.acked.iter().map(|a| a.load(Ordering::Relaxed)).sum();
                bar.set_message(format!(
                    "published {}/{scheduled}, acked {acked}, delivered {}, errors {}",
                    state.published.load(Ordering::Relaxed),
                    shared.delivered.load(Ordering::Relaxed),
                    shared.errors.load(Ordering::Relaxed),
                ));
            }
        })
    };

    if plan.rate > 0 {
        say(
            &bar,
            quiet,
            format!(
                "publishing {} msg/s over {} spaces for {} s",
                plan.rate,
                spaces.len(),
                plan.duration.as_secs()
            ),
        );
        publish(
            Arc::clone(&target),
            Arc::clone(&spaces),
            schedule,
            args.common.content_bytes as usize,
            Arc::clone(&shared),
            Arc::clone(&state),
        )
        .await;
    } else {
        say(
            &bar,
            quiet,
            format!("holding the connections for {} s", plan.duration.as_secs()),
        );
        sleep(plan.duration).await;
    }
    let publish_end = stats::now_micros();
    let owners_end = owners_of(Arc::clone(&spaces)).await?;
    let _ = stop_tx.send(true);
    if let Some(task) = churn_task {
        let _ = task.await;
    }
    let acked: Vec<u64> = state
        .acked
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();

    // Drain.
    for child in &mut children {
        let list: Vec<String> = acked.iter().map(u64::to_string).collect();
        child.send(&format!("END {}", list.join(","))).await?;
    }
    let drain_s = match &local {
        Some(set) => {
            drain(
                &set.progress,
                &acked,
                Duration::from_secs(args.drain_timeout),
            )
            .await
        }
        None => 0.0,
    };
    let server_end = sample_server(&args.server_pid);
    let rss_timeline = match rss_task {
        Some(task) => task.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let _ = progress_task.await;
    if let Some(set) = local {
        finish_subscribers(set, &acked, &shared).await;
    }
    let mut m = shared.merged(bucket);
    m.published = state.published.load(Ordering::Relaxed);
    own_cpu(&cpu_start, window_start, &mut m);
    let mut drain_s = drain_s;
    let drain_start = Instant::now();
    for mut child in children {
        let line = child
            .expect_line(
                "measurements",
                Duration::from_secs(args.drain_timeout + 120),
            )
            .await?;
        let theirs: Measurements =
            serde_json::from_str(&line).context("a loadtest child's measurements")?;
        m.merge(&theirs);
        let _ = child.child.wait().await;
    }
    drain_s = drain_s.max(drain_start.elapsed().as_secs_f64());
    bar.finish_and_clear();

    let expected: u64 = acked
        .iter()
        .enumerate()
        .map(|(s, a)| {
            let subs = (0..total)
                .filter(|k| *k as usize % spaces.len() == s)
                .count() as u64;
            a * subs
        })
        .sum();
    let server = match (before_connect, connected_sample, server_start, server_end) {
        (Some(b), Some(c), Some(s), Some(e)) => Some(ServerSamples {
            pids: args.server_pid.clone(),
            before_connect: b,
            connected: c,
            window_start: s,
            window_end: e,
            window_s: window_start.elapsed().as_secs_f64(),
            rss_timeline_kib: rss_timeline,
        }),
        _ => None,
    };
    let info = RunInfo {
        scenario: kind.name().into(),
        target: target.name().into(),
        label: args.label.clone(),
        spaces: plan.spaces,
        subscribers: total,
        rate: plan.rate,
        duration_s: plan.duration.as_secs_f64(),
        content_bytes: args.common.content_bytes,
        source_addrs: args.source_addrs,
        connect_s,
        scheduled: schedule.len(),
        publisher_max_lag_ms: state.max_lag_micros.load(Ordering::Relaxed) as f64 / 1000.0,
        expected_deliveries: expected,
        publish_start_micros: t0,
        publish_end_micros: publish_end,
        drain_s,
        send_urls: nodes.send.iter().map(crate::sends::origin).collect(),
        subscribe_urls: nodes.subscribe.iter().map(crate::sends::origin).collect(),
        owners_start,
        owners_end,
    };
    let report = Report::build(info, &m, server);
    if let Some(dir) = &args.report_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(&report)?,
        )
        .context("writing report.json")?;
        let title = format!(
            "{} on {}: delivery latency (ms) by second",
            report.scenario, report.target
        );
        std::fs::write(
            dir.join("latency.svg"),
            chart::latency_svg(&report.timeline, &title)?,
        )
        .context("writing latency.svg")?;
    }
    Ok(Some(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_defaults_and_overrides() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: LoadArgs,
        }
        let args = |extra: &[&str]| {
            let mut v = vec!["t", "--jwt-secret", "s"];
            v.extend_from_slice(extra);
            T::try_parse_from(v).unwrap().a
        };
        let p = Plan::new(Kind::Fanout, &args(&[]));
        assert_eq!((p.spaces, p.per_space, p.rate), (1, 1_000, 100));
        assert_eq!(p.duration, Duration::from_secs(20));
        let p = Plan::new(Kind::Idle, &args(&["--rate", "50"]));
        assert_eq!((p.per_space, p.rate), (10_000, 0), "idle never publishes");
        let p = Plan::new(Kind::Soak, &args(&["--spaces", "2", "--subscribers", "3"]));
        assert_eq!((p.spaces, p.per_space, p.total_subscribers()), (2, 3, 6));
        assert_eq!(p.duration, Duration::from_secs(600));
        let p = Plan::new(Kind::ConnectStorm, &args(&[]));
        assert_eq!((p.connect_concurrency, p.duration), (200, Duration::ZERO));
    }

    #[test]
    fn shards_parse() {
        assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
        assert!("4/4".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }

    #[test]
    fn every_subscriber_belongs_to_exactly_one_shard() {
        let total = 10u64;
        let mut seen = vec![0; total as usize];
        for index in 0..3 {
            for k in (0..total).filter(|k| k % 3 == index) {
                seen[k as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
    }
}
