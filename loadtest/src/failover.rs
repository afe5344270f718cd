//! Scenario `failover`: how long a space is unavailable after its owner node dies.
//!
//! Against a Spacecast cluster (`--url` every node, `--nats-monitor` the NATS monitoring port),
//! it creates `--spaces` spaces through the first node (which thereby owns them) and keeps a
//! steady REST send load on every space through every `--send-url` node: `--rate` sends per
//! second per (space, node), each started on the clock whether or not the previous one answered
//! (at most [`MAX_IN_FLIGHT`] per pair), so a stalled request never hides the next one. Then,
//! `--kills` times: after `--settle` seconds of steady load it asks NATS which node owns the next
//! space (round-robin over the spaces), has the driver kill that node with SIGKILL, measures the
//! **failover time** — from the kill to the first acknowledgement (201) of a send to that space
//! *started after* the kill — and has the driver restart the node before the next round.
//!
//! The process management is the driver's (`scripts/bench.sh failover`, or a test), over a
//! line protocol: the loadtest prints `KILL <node-id> <space-id>` on stdout, the driver sends
//! SIGKILL to that node and answers `KILLED <µs>` on stdin, the `CLOCK_REALTIME` microseconds it
//! read just before sending the signal; later the loadtest prints `RESTART <node-id>` and the
//! driver answers `RESTARTED` once the node is ready again. Every other stdout line is the
//! human report (and, with `--json`, the JSON report last).
//!
//! With `--nats-url`, each kill's failover is split in two: the wait for the dead owner's lease
//! to expire (its last write to the KV bucket, read from JetStream right after the kill, plus
//! the bucket's TTL) and the takeover after that (another node creates the key, claims the space
//! in the store, loads it and commits the send).
//!
//! A send that started before the kill and ends after it cannot count (its commit may predate
//! the kill); such sends are reported per outcome (`in_flight_at_kill`). Every acknowledged
//! seq is checked to be unique per space: two acknowledgements with the same seq would mean two
//! owners committed at once.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;
use futures::{StreamExt, TryStreamExt, stream};
use reqwest::Url;
use serde::Serialize;
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines, Stdin},
    sync::{Semaphore, watch},
    task::JoinSet,
    time::{MissedTickBehavior, sleep},
};

use crate::{
    api::{Api, CommonArgs, SendOutcome},
    nodes::{self, Nodes},
    sends::origin,
    stats,
};

/// Most sends in flight per (space, node) sender; beyond it a tick is skipped (and counted).
pub const MAX_IN_FLIGHT: usize = 512;
/// Deadline of one send: past the server's own 30 s call timeout, so a send forwarded to an
/// owner that died is ended by the server, not by the loadtest.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);
/// How long to wait for NATS to show an owner of the space to kill (or the new one).
const OWNER_TIMEOUT: Duration = Duration::from_secs(15);
/// Poll interval of the owner lookup and of the failover watch.
const OWNER_POLL: Duration = Duration::from_millis(100);
const WATCH_POLL: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Args)]
pub struct FailoverArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Spaces under load; the kills take their owners round-robin.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub spaces: u32,
    /// Sends per second per space per send node (open loop).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate: u32,
    /// Owner kills (each followed by a restart of the killed node).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub kills: u32,
    /// Seconds of steady load before each kill (and before the first).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub settle: u64,
    /// Give up on one failover after this many seconds (the kill is then reported as failed).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub failover_timeout: u64,
    /// NATS client URL (e.g. nats://127.0.0.1:14222): split each failover into the wait for the
    /// lease to expire and the takeover after it (read from the lease bucket).
    #[arg(long)]
    pub nats_url: Option<String>,
    /// How long the driver may take to answer `KILLED` or `RESTARTED`, seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub driver_timeout: u64,
}

/// One finished send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub space: usize,
    /// Start and end, µs on `CLOCK_REALTIME` (the driver's kill time is on the same clock).
    pub start: u64,
    pub end: u64,
    /// `Ok(seq)` when acknowledged, else the outcome's code.
    pub outcome: Result<u64, String>,
}

/// The failover time of `space` after a kill at `kill` (µs): from the kill to the earliest
/// acknowledgement of a send to `space` that started at or after the kill.
pub fn failover_micros(log: &[Completion], space: usize, kill: u64) -> Option<u64> {
    log.iter()
        .filter(|c| c.space == space && c.start >= kill && c.outcome.is_ok())
        .map(|c| c.end.saturating_sub(kill))
        .min()
}

/// How the sends to `spaces` that were in flight at `kill` ended, by outcome (`acked` or the
/// error code). Only sends that had ended by the time of the call are counted.
pub fn in_flight_at(log: &[Completion], spaces: &[usize], kill: u64) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for c in log
        .iter()
        .filter(|c| spaces.contains(&c.space) && c.start < kill && c.end >= kill)
    {
        let code = match &c.outcome {
            Ok(_) => "acked".to_owned(),
            Err(code) => code.clone(),
        };
        *out.entry(code).or_default() += 1;
    }
    out
}

/// The longest of the sends to `spaces` in flight at `kill`, µs from its start to its end.
pub fn longest_in_flight(log: &[Completion], spaces: &[usize], kill: u64) -> Option<u64> {
    log.iter()
        .filter(|c| spaces.contains(&c.space) && c.start < kill && c.end >= kill)
        .map(|c| c.end - c.start)
        .max()
}

/// Errors of sends (any space) that ended in `[from, to)`, by code.
pub fn errors_between(log: &[Completion], from: u64, to: u64) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for c in log.iter().filter(|c| c.end >= from && c.end < to) {
        if let Err(code) = &c.outcome {
            *out.entry(code.clone()).or_default() += 1;
        }
    }
    out
}

/// Acknowledged seqs that were acknowledged more than once in their space (each would be two
/// commits at one position: two owners at once).
pub fn duplicate_seqs(log: &[Completion]) -> u64 {
    let mut seen: HashMap<(usize, u64), u32> = HashMap::new();
    for c in log {
        if let Ok(seq) = c.outcome {
            *seen.entry((c.space, seq)).or_default() += 1;
        }
    }
    seen.values().map(|&n| u64::from(n.saturating_sub(1))).sum()
}

/// `KILLED <µs>` → the kill time.
pub fn parse_killed(line: &str) -> Result<u64> {
    line.trim()
        .strip_prefix("KILLED ")
        .and_then(|t| t.trim().parse().ok())
        .with_context(|| format!("expected `KILLED <µs>` from the driver, got {line:?}"))
}

/// Min, median, mean and max of some milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub count: usize,
    pub min_ms: f64,
    pub median_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            count: n,
            min_ms: round3(v[0]),
            median_ms: round3(median),
            mean_ms: round3(v.iter().sum::<f64>() / n as f64),
            max_ms: round3(v[n - 1]),
        })
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// One kill.
#[derive(Debug, Clone, Serialize)]
pub struct KillRecord {
    pub round: u32,
    pub space: String,
    pub killed: String,
    /// Who owned the space once it answered again.
    pub new_owner: Option<String>,
    /// Kill → first acknowledgement of a send started after it (`None`: none within
    /// `--failover-timeout`).
    pub failover_ms: Option<f64>,
    /// The other spaces the killed node owned, and the slowest of their failovers.
    pub other_spaces: usize,
    pub other_spaces_max_ms: Option<f64>,
    /// `--nats-url`: the dead owner's last lease write before the kill, when its lease expired
    /// after the kill (that write + the bucket's TTL), and the rest of the failover after that.
    pub lease_written_before_kill_ms: Option<f64>,
    pub lease_expired_after_kill_ms: Option<f64>,
    pub takeover_after_expiry_ms: Option<f64>,
    /// Sends to the killed node's spaces in flight at the kill, by how they ended, and the
    /// longest of them (start to end).
    pub in_flight_at_kill: BTreeMap<String, u64>,
    pub in_flight_longest_ms: Option<f64>,
    /// Errors of sends that ended between the kill and the failover (any space, through any
    /// node, including the dead one's refused connections).
    pub errors_during: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct FailoverReport {
    pub scenario: &'static str,
    pub urls: Vec<String>,
    pub send_urls: Vec<String>,
    pub spaces: u32,
    pub rate_per_space_per_node: u32,
    pub settle_s: u64,
    pub kills: Vec<KillRecord>,
    /// Over the kills that failed over (of the killed space).
    pub failover: Option<Spread>,
    /// `--nats-url`: the two parts of the failover (see [`KillRecord`]).
    pub lease_expired_after_kill: Option<Spread>,
    pub takeover_after_expiry: Option<Spread>,
    pub failed_kills: usize,
    pub sends: u64,
    pub acked: u64,
    pub skipped_ticks: u64,
    pub errors: BTreeMap<String, u64>,
    pub duplicate_acked_seqs: u64,
}

impl FailoverReport {
    pub fn print_human(&self) {
        println!(
            "== failover: {} kills, {} spaces, {} sends/s per space per node through {} ==",
            self.kills.len(),
            self.spaces,
            self.rate_per_space_per_node,
            self.send_urls.join(", ")
        );
        for k in &self.kills {
            println!(
                "kill {:>2}: {} (owner of {}{}) → {} after {}; in flight at the kill: {} (longest {}); errors meanwhile: {}",
                k.round,
                k.killed,
                k.space,
                if k.other_spaces > 0 {
                    format!(
                        " and {} other spaces, slowest {}",
                        k.other_spaces,
                        ms(k.other_spaces_max_ms)
                    )
                } else {
                    String::new()
                },
                k.new_owner.as_deref().unwrap_or("?"),
                ms(k.failover_ms),
                stats::format_counts(&k.in_flight_at_kill),
                ms(k.in_flight_longest_ms),
                stats::format_counts(&k.errors_during),
            );
        }
        if let (Some(e), Some(t)) = (&self.lease_expired_after_kill, &self.takeover_after_expiry) {
            println!(
                "lease expiry   min {:.1}  median {:.1}  max {:.1} ms after the kill; takeover after it: min {:.1}  median {:.1}  max {:.1} ms",
                e.min_ms, e.median_ms, e.max_ms, t.min_ms, t.median_ms, t.max_ms
            );
        }
        match &self.failover {
            Some(s) => println!(
                "failover ms    min {:.1}  median {:.1}  mean {:.1}  max {:.1}  (n={}, {} failed)",
                s.min_ms, s.median_ms, s.mean_ms, s.max_ms, s.count, self.failed_kills
            ),
            None => println!(
                "failover ms    none measured ({} failed)",
                self.failed_kills
            ),
        }
        println!(
            "sends          {} sent, {} acknowledged, {} ticks skipped; duplicate acknowledged seqs {}",
            self.sends, self.acked, self.skipped_ticks, self.duplicate_acked_seqs
        );
        println!("errors         {}", stats::format_counts(&self.errors));
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("—".to_owned(), |v| format!("{v:.1} ms"))
}

/// State shared by the senders.
struct Shared {
    log: Mutex<Vec<Completion>>,
    sent: std::sync::atomic::AtomicU64,
    skipped: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn snapshot(&self) -> Vec<Completion> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn outcome_code(outcome: &SendOutcome) -> Result<u64, String> {
    match outcome {
        SendOutcome::Acked { seq } => Ok(*seq),
        SendOutcome::Rejected { status, .. } => Err(format!("http_{status}")),
        SendOutcome::Failed(kind) => Err(kind.replace(' ', "_").to_lowercase()),
    }
}

/// One (space, node) sender.
struct Sender {
    api: Api,
    token: Arc<String>,
    url: Url,
    space: usize,
    rate: u32,
    content_bytes: usize,
    shared: Arc<Shared>,
}

/// Sends to one space through one node at `rate`/s until `stop`.
async fn sender(plan: Sender, mut stop: watch::Receiver<bool>) {
    let Sender {
        api,
        token,
        url,
        space,
        rate,
        content_bytes,
        shared,
    } = plan;
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = ticker.tick() => {}
        }
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            shared
                .skipped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        };
        shared
            .sent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (api, token, url, shared) = (
            api.clone(),
            Arc::clone(&token),
            url.clone(),
            Arc::clone(&shared),
        );
        tasks.spawn(async move {
            let start = stats::now_micros();
            let content = stats::make_content(start, content_bytes);
            let outcome = api.send_message(&token, &url, &content).await;
            let end = stats::now_micros();
            drop(permit);
            shared
                .log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Completion {
                    space,
                    start,
                    end,
                    outcome: outcome_code(&outcome),
                });
        });
    }
    // Bounded by the request timeout.
    while tasks.join_next().await.is_some() {}
}

/// The driver's side of the protocol: our commands out (stdout), its answers in (stdin).
struct Driver {
    lines: Lines<BufReader<Stdin>>,
    timeout: Duration,
}

impl Driver {
    async fn ask(&mut self, command: &str) -> Result<String> {
        println!("{command}");
        let line = tokio::time::timeout(self.timeout, self.lines.next_line())
            .await
            .with_context(|| {
                format!(
                    "the driver did not answer `{command}` within {:?}",
                    self.timeout
                )
            })?
            .context("reading the driver's answer")?
            .with_context(|| format!("the driver closed stdin instead of answering `{command}`"))?;
        Ok(line)
    }
}

/// The JetStream stream behind the lease bucket (`spacecast_leases`).
const LEASE_STREAM: &str = "KV_spacecast_leases";

/// The last write of `space`'s lease key (µs on `CLOCK_REALTIME` of the NATS server, the same
/// machine here) and the bucket's TTL; `None` if the key is gone.
async fn last_lease_write(
    js: &async_nats::jetstream::Context,
    space: &str,
) -> Result<Option<(u64, Duration)>> {
    let stream = js
        .get_stream(LEASE_STREAM)
        .await
        .context("reading the lease bucket's stream")?;
    let ttl = stream.cached_info().config.max_age;
    match stream
        .get_last_raw_message_by_subject(&format!("$KV.spacecast_leases.space.{space}"))
        .await
    {
        Ok(msg) => {
            let micros = u64::try_from(msg.time.unix_timestamp_nanos() / 1_000).unwrap_or(0);
            Ok(Some((micros, ttl)))
        }
        Err(_) => Ok(None),
    }
}

/// Polls NATS until `space` has an owner (other than `not`); `None` after [`OWNER_TIMEOUT`].
async fn wait_owner(
    http: &reqwest::Client,
    monitor: &Url,
    space: &str,
    not: Option<&str>,
) -> Result<Option<String>> {
    let deadline = Instant::now() + OWNER_TIMEOUT;
    let spaces = [space.to_owned()];
    loop {
        let owners = nodes::owners(http, monitor, &spaces).await?;
        if let Some(Some(owner)) = owners.get(space)
            && Some(owner.as_str()) != not
        {
            return Ok(Some(owner.clone()));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        sleep(OWNER_POLL).await;
    }
}

pub async fn run(args: FailoverArgs) -> Result<FailoverReport> {
    let nodes = Nodes::parse(&args.common.urls, &args.common.send_urls, &[])?;
    let monitor = nodes::parse_monitor(
        args.common
            .nats_monitor
            .as_deref()
            .context("failover needs --nats-monitor (the owner of a space is read from NATS)")?,
    )?;
    if nodes.send.len() < 2 {
        bail!("failover needs at least two send nodes (--url / --send-url): one dies each round");
    }
    let api = Api::with_timeout(
        &args.common,
        MAX_IN_FLIGHT,
        Duration::from_secs(3600 * 24),
        REQUEST_TIMEOUT,
    )?;
    let http = api.http().clone();
    let token = Arc::new(api.token(0)?);
    eprintln!(
        "loadtest: creating {} spaces through {}",
        args.spaces, nodes.setup
    );
    let spaces: Vec<String> = stream::iter(0..args.spaces)
        .map(|_| {
            let (api, token) = (&api, &token);
            async move {
                let id = api.create_space(token).await?;
                api.join_space(token, &id).await?;
                // A first send through the setup node: it takes the space's lease.
                match api
                    .send_message(token, &api.messages_url(&id), "failover warm-up")
                    .await
                {
                    SendOutcome::Acked { .. } => Ok(id),
                    other => bail!("warm-up send to {id}: {other:?}"),
                }
            }
        })
        .buffered(8)
        .try_collect()
        .await
        .context("creating the spaces")?;

    let shared = Arc::new(Shared {
        log: Mutex::new(Vec::new()),
        sent: 0.into(),
        skipped: 0.into(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut senders = JoinSet::new();
    for base in &nodes.send {
        let node = api.at(base);
        for (s, id) in spaces.iter().enumerate() {
            let plan = Sender {
                api: node.clone(),
                token: Arc::clone(&token),
                url: node.messages_url(id),
                space: s,
                rate: args.rate,
                content_bytes: args.common.content_bytes as usize,
                shared: Arc::clone(&shared),
            };
            senders.spawn(sender(plan, stop_rx.clone()));
        }
    }

    let js = match &args.nats_url {
        Some(url) => Some(async_nats::jetstream::new(
            async_nats::connect(url)
                .await
                .with_context(|| format!("connecting to NATS at {url}"))?,
        )),
        None => None,
    };
    let mut driver = Driver {
        lines: BufReader::new(tokio::io::stdin()).lines(),
        timeout: Duration::from_secs(args.driver_timeout),
    };
    let mut kills = Vec::new();
    for round in 1..=args.kills {
        sleep(Duration::from_secs(args.settle)).await;
        let space_idx = (round as usize - 1) % spaces.len();
        let space = &spaces[space_idx];
        let Some(owner) = wait_owner(&http, &monitor, space, None).await? else {
            bail!("round {round}: NATS shows no owner of space {space}");
        };
        let owned_before = nodes::owners(&http, &monitor, &spaces).await?;
        let others: Vec<usize> = spaces
            .iter()
            .enumerate()
            .filter(|(i, id)| {
                *i != space_idx && owned_before.get(*id).and_then(|o| o.as_deref()) == Some(&owner)
            })
            .map(|(i, _)| i)
            .collect();
        eprintln!("loadtest: round {round}: killing {owner}, the owner of {space}");
        let kill = parse_killed(&driver.ask(&format!("KILL {owner} {space}")).await?)?;
        // Read at once: the key is gone once it expires.
        let lease = match &js {
            Some(js) => last_lease_write(js, space).await?,
            None => None,
        };

        // Wait for the killed space (and the dead node's other spaces) to answer again.
        let deadline = kill + args.failover_timeout * 1_000_000;
        let mut affected = vec![space_idx];
        affected.extend(&others);
        loop {
            let log = shared.snapshot();
            let done = affected
                .iter()
                .all(|&s| failover_micros(&log, s, kill).is_some());
            if done || stats::now_micros() >= deadline {
                break;
            }
            sleep(WATCH_POLL).await;
        }
        let log = shared.snapshot();
        let failover = failover_micros(&log, space_idx, kill);
        let others_max = others
            .iter()
            .map(|&s| failover_micros(&log, s, kill))
            .collect::<Option<Vec<u64>>>()
            .and_then(|v| v.into_iter().max());
        let until = failover.map_or(deadline, |f| kill + f);
        let new_owner = wait_owner(&http, &monitor, space, Some(&owner)).await?;
        let record = KillRecord {
            round,
            space: space.clone(),
            killed: owner.clone(),
            new_owner,
            failover_ms: failover.map(|f| f as f64 / 1000.0),
            lease_written_before_kill_ms: lease
                .map(|(written, _)| (kill as f64 - written as f64) / 1000.0),
            lease_expired_after_kill_ms: lease.map(|(written, ttl)| {
                (written as f64 + ttl.as_micros() as f64 - kill as f64) / 1000.0
            }),
            takeover_after_expiry_ms: lease.zip(failover).map(|((written, ttl), f)| {
                (kill as f64 + f as f64 - written as f64 - ttl.as_micros() as f64) / 1000.0
            }),
            other_spaces: others.len(),
            other_spaces_max_ms: if others.is_empty() {
                None
            } else {
                others_max.map(|f| f as f64 / 1000.0)
            },
            in_flight_at_kill: BTreeMap::new(),
            in_flight_longest_ms: None,
            errors_during: errors_between(&log, kill, until),
        };
        eprintln!(
            "loadtest: round {round}: {space} answered again after {} (new owner {}; lease expired {} after the kill)",
            ms(record.failover_ms),
            record.new_owner.as_deref().unwrap_or("?"),
            ms(record.lease_expired_after_kill_ms)
        );
        kills.push((record, affected, kill));
        let answer = driver.ask(&format!("RESTART {owner}")).await?;
        if answer.trim() != "RESTARTED" {
            bail!("expected `RESTARTED` from the driver, got {answer:?}");
        }
    }
    let _ = stop_tx.send(true);
    while senders.join_next().await.is_some() {}

    // Sends in flight at each kill have all ended now (the senders were awaited).
    let log = shared.snapshot();
    let kills: Vec<KillRecord> = kills
        .into_iter()
        .map(|(mut record, affected, kill)| {
            record.in_flight_at_kill = in_flight_at(&log, &affected, kill);
            record.in_flight_longest_ms =
                longest_in_flight(&log, &affected, kill).map(|l| l as f64 / 1000.0);
            record
        })
        .collect();
    let measured: Vec<f64> = kills.iter().filter_map(|k| k.failover_ms).collect();
    let expiry: Vec<f64> = kills
        .iter()
        .filter_map(|k| k.lease_expired_after_kill_ms)
        .collect();
    let takeover: Vec<f64> = kills
        .iter()
        .filter_map(|k| k.takeover_after_expiry_ms)
        .collect();
    let mut errors = BTreeMap::new();
    for c in &log {
        if let Err(code) = &c.outcome {
            *errors.entry(code.clone()).or_default() += 1;
        }
    }
    Ok(FailoverReport {
        scenario: "failover",
        urls: args.common.urls.clone(),
        send_urls: nodes.send.iter().map(origin).collect(),
        spaces: args.spaces,
        rate_per_space_per_node: args.rate,
        settle_s: args.settle,
        failed_kills: kills.len() - measured.len(),
        failover: Spread::of(&measured),
        lease_expired_after_kill: Spread::of(&expiry),
        takeover_after_expiry: Spread::of(&takeover),
        kills,
        sends: shared.sent.load(std::sync::atomic::Ordering::Relaxed),
        acked: log.iter().filter(|c| c.outcome.is_ok()).count() as u64,
        skipped_ticks: shared.skipped.load(std::sync::atomic::Ordering::Relaxed),
        errors,
        duplicate_acked_seqs: duplicate_seqs(&log),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(space: usize, start: u64, end: u64, outcome: Result<u64, &str>) -> Completion {
        Completion {
            space,
            start,
            end,
            outcome: outcome.map_err(str::to_owned),
        }
    }

    #[test]
    fn failover_counts_only_sends_started_after_the_kill() {
        let log = vec![
            // Started before the kill, acknowledged after it: its commit may predate the kill.
            c(0, 990, 1_010, Ok(7)),
            // After the kill but another space.
            c(1, 1_001, 1_050, Ok(3)),
            // After the kill, refused, then two acknowledgements: the earliest end counts.
            c(0, 1_002, 1_003, Err("connect")),
            c(0, 1_100, 2_600, Ok(8)),
            c(0, 1_200, 2_500, Ok(9)),
        ];
        assert_eq!(failover_micros(&log, 0, 1_000), Some(1_500));
        assert_eq!(failover_micros(&log, 1, 1_000), Some(50));
        assert_eq!(failover_micros(&log, 2, 1_000), None);
        assert_eq!(failover_micros(&log, 0, 3_000), None);
    }

    #[test]
    fn in_flight_and_errors_around_a_kill() {
        let log = vec![
            c(0, 900, 1_500, Ok(1)),
            c(0, 950, 31_000, Err("http_503")),
            c(1, 960, 1_200, Err("transport")),
            c(2, 970, 1_100, Err("transport")),
            c(0, 800, 990, Ok(2)),
            c(0, 1_100, 1_300, Err("connect")),
        ];
        let inflight = in_flight_at(&log, &[0, 1], 1_000);
        assert_eq!(
            inflight.into_iter().collect::<Vec<_>>(),
            [
                ("acked".to_owned(), 1),
                ("http_503".to_owned(), 1),
                ("transport".to_owned(), 1)
            ]
        );
        assert_eq!(longest_in_flight(&log, &[0, 1], 1_000), Some(30_050));
        assert_eq!(longest_in_flight(&log, &[3], 1_000), None);
        let errors = errors_between(&log, 1_000, 1_250);
        assert_eq!(errors.get("transport"), Some(&2));
        assert_eq!(errors.get("connect"), None, "ended after the window");
    }

    #[test]
    fn duplicate_seqs_are_per_space() {
        let log = vec![
            c(0, 1, 2, Ok(1)),
            c(1, 1, 2, Ok(1)),
            c(0, 3, 4, Ok(2)),
            c(0, 5, 6, Err("timeout")),
        ];
        assert_eq!(duplicate_seqs(&log), 0);
        let mut twice = log.clone();
        twice.push(c(0, 7, 8, Ok(2)));
        twice.push(c(0, 9, 10, Ok(2)));
        assert_eq!(duplicate_seqs(&twice), 2);
    }

    #[test]
    fn driver_answers_are_checked() {
        assert_eq!(
            parse_killed("KILLED 1700000000123456\n").unwrap(),
            1_700_000_000_123_456
        );
        assert!(parse_killed("KILLED").is_err());
        assert!(parse_killed("KILLED soon").is_err());
        assert!(parse_killed("RESTARTED").is_err());
    }

    #[test]
    fn spread_of_failover_times() {
        assert_eq!(Spread::of(&[]), None);
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            (s.min_ms, s.median_ms, s.max_ms, s.mean_ms),
            (1.0, 2.0, 3.0, 2.0)
        );
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.count, s.median_ms), (4, 2.5));
    }
}
