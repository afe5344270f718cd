//! Scenario `sends`: closed-loop acknowledged sends over a few spaces.
//!
//! Against a cluster: spaces are created and joined through the first `--url` (so, on a cold
//! cluster, that node takes their leases and owns them), and worker `w` sends through
//! `--send-url` number `w mod n`. With `--nats-monitor` the report names each space's owner at
//! the start and at the end of the measured window, so "senders on the owner" and "senders on
//! another node" are checked facts, not assumptions.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::Args;
use futures::{StreamExt, TryStreamExt, stream};
use reqwest::Url;
use serde::Serialize;
use tokio::time::sleep_until;

use crate::{
    api::{Api, CommonArgs, SendOutcome},
    nodes::{self, Nodes},
    stats::{self, LatencySummary, SendStats},
};

/// Concurrent REST requests during setup (space creation and joins).
const SETUP_CONCURRENCY: usize = 32;
/// Upper bound on the pause after a 429/503 (Retry-After is honoured up to this).
const MAX_REJECT_BACKOFF: Duration = Duration::from_secs(1);
/// Pause after a 429/503 without a usable Retry-After.
const DEFAULT_REJECT_BACKOFF: Duration = Duration::from_millis(50);
/// Pause after a failed request, so a dead server does not turn into a spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Args)]
pub struct SendsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Number of spaces to create and send into (round-robin).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub spaces: u32,
    /// Concurrent workers, each with at most one request in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Measured duration in seconds (after the warm-up).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub duration: u64,
    /// Warm-up seconds: sends run but are not measured.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup: u64,
    /// Distinct sending users (worker w sends as user w mod USERS); every
    /// user joins every space. Default: min(concurrency, 64).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub users: Option<u32>,
    /// What each request is: a Space7 send, a native `/v1` send (plain, or with every rich
    /// field: msgtype, body, metadata, mentions, local_id, idempotency key), or a reaction
    /// toggle (`PUT` then `DELETE`, by each worker's user, on one message per space: with
    /// `--spaces 1`, one hot message).
    #[arg(long, value_enum, default_value_t = SendKind::Space7)]
    pub kind: SendKind,
    /// Send into these existing spaces instead of creating `--spaces` new ones (repeated or
    /// comma-separated); the users still join them.
    #[arg(long = "space-id", value_delimiter = ',')]
    pub space_ids: Vec<String>,
    /// Stop once this many requests were acknowledged in all (e.g. to fill a space with a
    /// known number of messages); `--duration` still bounds the run.
    #[arg(long)]
    pub max_sends: Option<u64>,
}

/// The request a `sends` worker repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SendKind {
    /// `POST /api/messages/{id}` `{content}`.
    Space7,
    /// `POST /v1/spaces/{id}/messages` `{content}`.
    V1,
    /// `POST /v1/spaces/{id}/messages` with every rich field and an idempotency key.
    V1Rich,
    /// `PUT` / `DELETE /v1/spaces/{id}/messages/{mid}/reactions/👍`, alternately.
    React,
}

/// The reaction key the `react` kind toggles.
const REACTION_KEY: &str = "👍";

#[derive(Debug, Serialize)]
pub struct SendsReport {
    pub scenario: &'static str,
    pub kind: SendKind,
    /// The spaces sent into.
    pub space_ids: Vec<String>,
    pub spaces: u32,
    pub concurrency: u32,
    pub users: u32,
    pub content_bytes: u32,
    /// The servers the workers sent to (worker w → `send_urls[w mod n]`).
    pub send_urls: Vec<String>,
    /// Where spaces were created and joined.
    pub setup_url: String,
    /// Space id → owner node id (`null`: none) at the start and at the end of the measured
    /// window (`--nats-monitor`; empty without it).
    pub owners_start: BTreeMap<String, Option<String>>,
    pub owners_end: BTreeMap<String, Option<String>>,
    pub warmup_s: u64,
    pub duration_s: u64,
    /// From the end of the warm-up to the completion of the last measured request.
    pub elapsed_s: f64,
    pub acked: u64,
    pub acked_per_sec: f64,
    pub ack_latency_ms: LatencySummary,
    pub rejected: u64,
    pub rejected_429: u64,
    pub rejected_503: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// Acknowledged during the warm-up (not in the numbers above).
    pub warmup_acked: u64,
}

impl SendsReport {
    pub fn print_human(&self) {
        println!(
            "== sends ({:?}): {} spaces, {} workers, {} users, {} B content, {} s measured after {} s warm-up ==",
            self.kind,
            self.spaces,
            self.concurrency,
            self.users,
            self.content_bytes,
            self.duration_s,
            self.warmup_s
        );
        println!(
            "acknowledged   {} ({:.1}/s over {:.2} s)",
            self.acked, self.acked_per_sec, self.elapsed_s
        );
        println!("ack latency ms {}", self.ack_latency_ms.line(true));
        println!(
            "rejected       {} (429: {}, 503: {})",
            self.rejected, self.rejected_429, self.rejected_503
        );
        println!(
            "errors         {} ({})",
            self.errors,
            stats::format_counts(&self.error_kinds)
        );
        if self.send_urls.len() > 1 || self.send_urls.first() != Some(&self.setup_url) {
            println!(
                "servers        setup through {}, sends through {}",
                self.setup_url,
                self.send_urls.join(", ")
            );
        }
        if !self.owners_end.is_empty() {
            println!(
                "owners         at start: {}; at end: {}",
                owner_list(&self.owners_start),
                owner_list(&self.owners_end)
            );
        }
    }
}

/// `node (n spaces), …` from space → owner.
fn owner_list(owners: &BTreeMap<String, Option<String>>) -> String {
    let mut count = BTreeMap::<&str, usize>::new();
    for owner in owners.values() {
        *count.entry(owner.as_deref().unwrap_or("none")).or_default() += 1;
    }
    count
        .iter()
        .map(|(node, n)| format!("{node} ({n} spaces)"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Plan {
    api: Api,
    tokens: Vec<String>,
    /// Request URL of each space (its messages, or its reaction target), by send node:
    /// `urls[node][space]`.
    urls: Vec<Vec<Url>>,
    content_bytes: usize,
    kind: SendKind,
    measure_start: Instant,
    end: Instant,
    /// Acknowledged so far, and the bound (`--max-sends`).
    acked: std::sync::atomic::AtomicU64,
    max_sends: u64,
}

#[derive(Default)]
struct WorkerResult {
    stats: SendStats,
    warmup_acked: u64,
    last_measured_completion: Option<Instant>,
}

pub async fn run(args: SendsArgs) -> Result<SendsReport> {
    let concurrency = args.concurrency as usize;
    let users = args.users.unwrap_or(args.concurrency.min(64));
    let warmup = Duration::from_secs(args.warmup);
    let duration = Duration::from_secs(args.duration);
    let nodes = Nodes::parse(&args.common.urls, &args.common.send_urls, &[])?;
    let monitor = args
        .common
        .nats_monitor
        .as_deref()
        .map(nodes::parse_monitor)
        .transpose()?;
    let api = Api::new(
        &args.common,
        concurrency.max(SETUP_CONCURRENCY),
        warmup + duration,
    )?;

    let tokens: Vec<String> = (0..users as usize)
        .map(|n| api.token(n))
        .collect::<Result<_>>()?;

    let space_ids: Vec<String> = if args.space_ids.is_empty() {
        eprintln!("loadtest: creating {} spaces", args.spaces);
        stream::iter(0..args.spaces as usize)
            .map(|s| {
                let api = &api;
                let token = &tokens[s % tokens.len()];
                async move { api.create_space(token).await }
            })
            .buffered(SETUP_CONCURRENCY)
            .try_collect()
            .await
            .context("creating spaces")?
    } else {
        args.space_ids.clone()
    };

    eprintln!(
        "loadtest: joining {users} users to {} spaces",
        space_ids.len()
    );
    let joins = tokens
        .iter()
        .flat_map(|token| space_ids.iter().map(move |space| (token, space)));
    stream::iter(joins)
        .map(|(token, space)| api.join_space(token, space))
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .context("joining spaces")?;

    // The react kind needs one message per space to react to.
    let mut targets = Vec::new();
    if args.kind == SendKind::React {
        for id in &space_ids {
            let url = api.messages_url(id);
            match api.send_message(&tokens[0], &url, "react to me").await {
                SendOutcome::Acked { .. } => {}
                other => anyhow::bail!("sending the message to react to: {other:?}"),
            }
            let page: serde_json::Value = api
                .http()
                .get(api.v1_messages_url(id))
                .bearer_auth(&tokens[0])
                .send()
                .await?
                .json()
                .await?;
            let mid = page["data"][0]["message_id"]
                .as_str()
                .context("the message to react to")?
                .to_owned();
            targets.push(mid);
        }
    }
    let urls = nodes
        .send
        .iter()
        .map(|base| {
            let node = api.at(base);
            space_ids
                .iter()
                .enumerate()
                .map(|(i, id)| match args.kind {
                    SendKind::Space7 => node.messages_url(id),
                    SendKind::V1 | SendKind::V1Rich => node.v1_messages_url(id),
                    SendKind::React => node.reaction_url(id, &targets[i], REACTION_KEY),
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    let plan = Arc::new(Plan {
        api,
        tokens,
        urls,
        content_bytes: args.common.content_bytes as usize,
        kind: args.kind,
        measure_start: start + warmup,
        end: start + warmup + duration,
        acked: std::sync::atomic::AtomicU64::new(0),
        max_sends: args.max_sends.unwrap_or(u64::MAX),
    });
    eprintln!(
        "loadtest: {concurrency} workers sending for {} s (+{} s warm-up)",
        args.duration, args.warmup
    );
    let workers: Vec<_> = (0..concurrency)
        .map(|w| tokio::spawn(worker(w, Arc::clone(&plan))))
        .collect();
    // Owners once the warm-up sends have settled who serves each space, and at the end.
    let owners_at = |at: Instant| {
        let (monitor, http, spaces) = (monitor.clone(), plan.api.http().clone(), space_ids.clone());
        async move {
            let Some(monitor) = monitor else {
                return Ok(BTreeMap::new());
            };
            sleep_until(at.into()).await;
            nodes::owners(&http, &monitor, &spaces).await
        }
    };
    let owners_start = tokio::spawn(owners_at(plan.measure_start));
    let owners_end = tokio::spawn(owners_at(plan.end));

    let mut total = SendStats::default();
    let mut warmup_acked = 0;
    let mut last_completion = None;
    for handle in workers {
        let result = handle.await.context("send worker panicked")?;
        total.merge(&result.stats);
        warmup_acked += result.warmup_acked;
        last_completion = last_completion.max(result.last_measured_completion);
    }
    let elapsed = last_completion
        .map(|t| t.saturating_duration_since(plan.measure_start))
        .unwrap_or(duration);
    let owners_start = owners_start
        .await
        .context("owner lookup panicked")?
        .context("asking NATS who owns the spaces (start)")?;
    let owners_end = owners_end
        .await
        .context("owner lookup panicked")?
        .context("asking NATS who owns the spaces (end)")?;

    Ok(SendsReport {
        scenario: "sends",
        kind: args.kind,
        space_ids: space_ids.clone(),
        spaces: space_ids.len() as u32,
        concurrency: args.concurrency,
        users,
        content_bytes: args.common.content_bytes,
        send_urls: nodes.send.iter().map(origin).collect(),
        setup_url: origin(&nodes.setup),
        owners_start,
        owners_end,
        warmup_s: args.warmup,
        duration_s: args.duration,
        elapsed_s: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        acked: total.acked,
        acked_per_sec: stats::per_second(total.acked, elapsed),
        ack_latency_ms: LatencySummary::from_micros(&total.ack_latency),
        rejected: total.rejected(),
        rejected_429: total.rejected_429,
        rejected_503: total.rejected_503,
        errors: total.errors,
        error_kinds: total.error_kinds,
        warmup_acked,
    })
}

/// `http://host:port` of a base URL (without the trailing slash `Url` adds).
pub fn origin(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// One closed loop: send, wait for the response, repeat until the end.
/// Requests started during the warm-up are not counted. Worker `id` sends through send node
/// `id mod nodes`.
async fn worker(id: usize, plan: Arc<Plan>) -> WorkerResult {
    let token = &plan.tokens[id % plan.tokens.len()];
    let urls = &plan.urls[nodes::spread(id, 1, plan.urls.len())];
    let mut result = WorkerResult::default();
    // The react kind alternates set and remove, so every request changes something.
    let mut set = true;
    for k in 0.. {
        let started = Instant::now();
        if started >= plan.end
            || plan.acked.load(std::sync::atomic::Ordering::Relaxed) >= plan.max_sends
        {
            break;
        }
        let url = &urls[(id + k) % urls.len()];
        let content = stats::make_content(stats::now_micros(), plan.content_bytes);
        let outcome = match plan.kind {
            SendKind::Space7 => plan.api.send_message(token, url, &content).await,
            SendKind::V1 => {
                let body = serde_json::json!({ "content": content });
                plan.api.send_v1(token, url, &body).await
            }
            SendKind::V1Rich => {
                let body = serde_json::json!({
                    "content": content,
                    "msgtype": "text",
                    "mentions": ["lt-user-0"],
                    "metadata": {"client": "loadtest", "k": k},
                    "body": {"kind": "bench", "worker": id, "k": k},
                    "local_id": k,
                    "idempotency_key": format!("w{id}-{k}-{}", stats::now_micros()),
                });
                plan.api.send_v1(token, url, &body).await
            }
            SendKind::React => {
                let o = plan.api.react(token, url, set).await;
                if matches!(o, SendOutcome::Acked { .. }) {
                    set = !set;
                }
                o
            }
        };
        if matches!(outcome, SendOutcome::Acked { .. }) {
            plan.acked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let done = Instant::now();
        let measured = started >= plan.measure_start;
        if measured {
            result.stats.record(&outcome, done - started);
            result.last_measured_completion = Some(done);
        } else if matches!(outcome, SendOutcome::Acked { .. }) {
            result.warmup_acked += 1;
        }
        let pause = match outcome {
            SendOutcome::Acked { .. } => None,
            SendOutcome::Rejected { retry_after, .. } => Some(
                retry_after
                    .unwrap_or(DEFAULT_REJECT_BACKOFF)
                    .min(MAX_REJECT_BACKOFF),
            ),
            SendOutcome::Failed(_) => Some(ERROR_BACKOFF),
        };
        if let Some(pause) = pause {
            sleep_until((done + pause).min(plan.end).into()).await;
        }
    }
    result
}
