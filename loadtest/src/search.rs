//! Scenario `search`: message search (issue 12) through the server: ingest, freshness under that
//! ingest, then query latency over the loaded index.
//!
//! Ingest (through the first `--url`): `lt-user-1` creates `--spaces` public spaces, which the
//! other `--senders` users (`lt-user-2…`) join, then they all send `--messages` messages
//! round-robin into them over REST,
//! `--setup-concurrency` in flight. Each message has 8–16 words drawn from 40 (`w00`…`w39`: one
//! word is in about a third of all messages), the word `rare` in one message of 10,000, and every
//! `--probe-every`th message a unique word `probe<k>`.
//!
//! Freshness: for each probe, the time from its ack until `GET /v1/search/messages?q=probe<k>`
//! finds it (polled every 20 ms by a task of its own, while the ingest goes on): how far the
//! index is behind the acknowledged sends at the ingest's rate. The last probe is sent last, so
//! its lag includes the backlog the ingest left.
//!
//! Queries: then the `reads` engine measures, as `lt-user-0` (every space is public, so all
//! are readable): a selective word and a common word, in one space and across every readable
//! space, and two common words across them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use futures::{StreamExt, TryStreamExt, stream};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::api::{Api, CommonArgs, SendOutcome};
use crate::reads::{self, ReadsArgs, ReadsReport};
use crate::stats::{self, LatencySummary};

#[derive(Debug, Clone, Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Messages sent before the queries.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub messages: u64,
    /// Spaces they are spread over.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub spaces: u32,
    /// Users sending them (`lt-user-1` and on).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub senders: u32,
    /// Every Nth message carries a unique word whose time to be found is measured.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub probe_every: u64,
    /// Sends in flight during the ingest.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_024))]
    pub setup_concurrency: u32,
    /// Concurrent query workers, each with one request in flight.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub concurrency: u32,
    /// Measured seconds of queries (after the warm-up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub duration: u64,
    /// Warm-up seconds of queries (run, not measured).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup: u64,
}

#[derive(Debug, Serialize)]
pub struct SearchReport {
    pub scenario: &'static str,
    pub messages: u64,
    pub spaces: u32,
    pub ingest_s: f64,
    pub ingest_per_sec: f64,
    /// Sends not acknowledged (429/503/errors: not retried, not counted in the rate), by kind.
    pub ingest_failed: BTreeMap<String, u64>,
    /// Time from a probe's ack until a search finds it.
    pub freshness_ms: LatencySummary,
    /// Probes never found within a minute of their ack.
    pub probes_lost: u64,
    pub queries: ReadsReport,
}

impl SearchReport {
    pub fn print_human(&self) {
        println!(
            "== search: {} messages in {} spaces ==",
            self.messages, self.spaces
        );
        println!(
            "ingest {:.1} s ({:.0} acked/s)  failed {}",
            self.ingest_s,
            self.ingest_per_sec,
            stats::format_counts(&self.ingest_failed)
        );
        println!(
            "searchable after the ack, ms {}  (never found: {})",
            self.freshness_ms.line(true),
            self.probes_lost
        );
        self.queries.print_human();
    }
}

/// Longest a probe is looked for after its ack.
const PROBE_DEADLINE: Duration = Duration::from_secs(60);
const PROBE_POLL: Duration = Duration::from_millis(20);

/// The words of message `i` (deterministic: the same run finds the same counts).
fn text_of(i: u64, probe: Option<u64>) -> String {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let n = 8 + next() % 9;
    let mut words: Vec<String> = (0..n).map(|_| format!("w{:02}", next() % 40)).collect();
    if i % 10_000 == 7 {
        words.push("rare".into());
    }
    if let Some(k) = probe {
        words.push(format!("probe{k}"));
    }
    words.join(" ")
}

pub async fn run(args: SearchArgs) -> Result<SearchReport> {
    let setup = Duration::from_secs(3600);
    let api = Arc::new(Api::new(
        &args.common,
        args.setup_concurrency as usize + 16,
        setup,
    )?);
    let owner = api.token(1)?;
    let reader = api.token(0)?;
    let senders: Vec<String> = (1..=args.senders as usize)
        .map(|n| api.token(n))
        .collect::<Result<_>>()?;
    let spaces: Vec<String> = stream::iter(0..args.spaces)
        .map(|_| api.create_space(&owner))
        .buffered(16)
        .try_collect()
        .await
        .context("creating the spaces")?;
    stream::iter(
        spaces
            .iter()
            .flat_map(|s| senders[1..].iter().map(move |t| (s, t))),
    )
    .map(|(space, token)| api.join_space(token, space))
    .buffer_unordered(16)
    .try_collect::<Vec<()>>()
    .await
    .context("joining the senders to the spaces")?;
    let urls: Vec<_> = spaces.iter().map(|s| api.messages_url(s)).collect();

    let lags = Arc::new(Mutex::new(stats::new_histogram::<u64>()));
    let lost = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut probes = Vec::new();
    let failed: Mutex<BTreeMap<String, u64>> = Mutex::default();
    let started = Instant::now();
    let mut sends = stream::iter(0..args.messages)
        .map(|i| {
            let (api, urls, senders, failed) = (&api, &urls, &senders, &failed);
            let probe = (i % args.probe_every == args.probe_every - 1 || i + 1 == args.messages)
                .then_some(i);
            async move {
                let text = text_of(i, probe);
                let token = &senders[(i % senders.len() as u64) as usize];
                let url = &urls[(i % urls.len() as u64) as usize];
                let kind = match api.send_message(token, url, &text).await {
                    SendOutcome::Acked { .. } => return probe.map(|k| (k, Instant::now())),
                    SendOutcome::Rejected { status, .. } => format!("HTTP {status}"),
                    SendOutcome::Failed(kind) => kind,
                };
                *failed.lock().expect("failed").entry(kind).or_default() += 1;
                None
            }
        })
        .buffer_unordered(args.setup_concurrency as usize);
    while let Some(acked) = sends.next().await {
        let Some((k, at)) = acked else { continue };
        let (api, reader, lags, lost) = (api.clone(), reader.clone(), lags.clone(), lost.clone());
        probes.push(tokio::spawn(async move {
            let url = api.url(&format!("/v1/search/messages?q=probe{k}"))?;
            loop {
                if found(&api, &reader, &url).await {
                    let micros = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
                    stats::record_micros(&mut lags.lock().expect("lags"), micros);
                    return Ok::<(), anyhow::Error>(());
                }
                if at.elapsed() > PROBE_DEADLINE {
                    lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(());
                }
                tokio::time::sleep(PROBE_POLL).await;
            }
        }));
    }
    drop(sends);
    let ingest = started.elapsed();
    let failed = failed.into_inner().expect("failed");
    for p in probes {
        p.await.context("probe task panicked")??;
    }
    let acked = args.messages - failed.values().sum::<u64>();
    eprintln!(
        "search: {acked} messages acknowledged in {:.1} s; probes done",
        ingest.as_secs_f64()
    );
    let one = &spaces[0];
    let mut queries = reads::run(ReadsArgs {
        common: args.common,
        paths: vec![
            format!("/v1/spaces/{one}/messages/search?q=rare"),
            "/v1/search/messages?q=rare".into(),
            format!("/v1/spaces/{one}/messages/search?q=w07"),
            "/v1/search/messages?q=w07".into(),
            "/v1/search/messages?q=w07%20w13".into(),
        ],
        concurrency: args.concurrency,
        duration: args.duration,
        warmup: args.warmup,
    })
    .await?;
    queries.scenario = "search";
    let lags: Histogram<u64> = lags.lock().expect("lags").clone();
    Ok(SearchReport {
        scenario: "search",
        messages: args.messages,
        spaces: args.spaces,
        ingest_s: ingest.as_secs_f64(),
        ingest_per_sec: stats::per_second(acked, ingest),
        ingest_failed: failed,
        freshness_ms: LatencySummary::from_micros(&lags),
        probes_lost: lost.load(std::sync::atomic::Ordering::Relaxed),
        queries,
    })
}

/// Whether a search answered 200 with at least one result.
async fn found(api: &Api, token: &str, url: &reqwest::Url) -> bool {
    let Ok(r) = api.http().get(url.clone()).bearer_auth(token).send().await else {
        return false;
    };
    if !r.status().is_success() {
        return false;
    }
    r.json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v["data"].as_array().map(|a| !a.is_empty()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_deterministic_and_carry_their_probe() {
        assert_eq!(text_of(42, None), text_of(42, None));
        assert_ne!(text_of(42, None), text_of(43, None));
        let t = text_of(5, Some(5));
        assert!(t.ends_with(" probe5"), "{t}");
        let words = text_of(9, None).split(' ').count();
        assert!((8..=16).contains(&words), "{words}");
        assert!(text_of(7, None).contains("rare"));
        assert!(!text_of(8, None).contains("rare"));
    }
}
