//! Scenario `reads`: closed-loop `GET`s of a few fixed paths (cursor pages, filters, stats),
//! each path's latency measured on its own.
//!
//! `--path` names each request (path and query, e.g. `/v1/spaces/<id>/messages?limit=50`);
//! `--concurrency` workers each cycle through every path, one request in flight, for
//! `--duration` s after `--warmup` s, as user `lt-user-0` (who must be able to read them).
//! Only 200 answers are measured; anything else counts as an error by status.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use reqwest::Url;
use serde::Serialize;

use crate::{
    api::{Api, CommonArgs},
    stats::{self, LatencySummary},
};

#[derive(Debug, Clone, Args)]
pub struct ReadsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// A path and query to `GET` (repeated): each is measured on its own.
    #[arg(long = "path", required = true)]
    pub paths: Vec<String>,
    /// Concurrent workers, each with one request in flight.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub concurrency: u32,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub duration: u64,
    /// Warm-up seconds (requests run, not measured).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup: u64,
}

#[derive(Debug, Serialize)]
pub struct PathReport {
    pub path: String,
    pub ok: u64,
    pub ok_per_sec: f64,
    pub latency_ms: LatencySummary,
    pub errors: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct ReadsReport {
    pub scenario: &'static str,
    pub concurrency: u32,
    pub duration_s: u64,
    pub paths: Vec<PathReport>,
}

impl ReadsReport {
    pub fn print_human(&self) {
        println!(
            "== reads: {} workers, {} s measured ==",
            self.concurrency, self.duration_s
        );
        for p in &self.paths {
            println!("{}", p.path);
            println!(
                "  ok {} ({:.1}/s)  latency ms {}  errors {}",
                p.ok,
                p.ok_per_sec,
                p.latency_ms.line(true),
                stats::format_counts(&p.errors)
            );
        }
    }
}

struct PathStats {
    latency: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl PathStats {
    fn new() -> Self {
        PathStats {
            latency: stats::new_histogram(),
            ok: 0,
            errors: BTreeMap::new(),
        }
    }
}

pub async fn run(args: ReadsArgs) -> Result<ReadsReport> {
    let warmup = Duration::from_secs(args.warmup);
    let duration = Duration::from_secs(args.duration);
    let api = Api::new(&args.common, args.concurrency as usize, warmup + duration)?;
    let token = api.token(0)?;
    let urls: Vec<Url> = args
        .paths
        .iter()
        .map(|p| api.url(p))
        .collect::<Result<_>>()?;
    let start = Instant::now();
    let (measure, end) = (start + warmup, start + warmup + duration);
    let api = Arc::new(api);
    let urls = Arc::new(urls);
    let workers: Vec<_> = (0..args.concurrency as usize)
        .map(|w| {
            let (api, urls, token) = (api.clone(), urls.clone(), token.clone());
            tokio::spawn(async move {
                let mut per: Vec<PathStats> = urls.iter().map(|_| PathStats::new()).collect();
                let mut k = w;
                loop {
                    let started = Instant::now();
                    if started >= end {
                        break;
                    }
                    let i = k % urls.len();
                    k += 1;
                    let outcome = api.get(&token, &urls[i]).await;
                    if started < measure {
                        continue;
                    }
                    let p = &mut per[i];
                    match outcome {
                        Ok(200) => {
                            p.ok += 1;
                            let micros =
                                u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                            stats::record_micros(&mut p.latency, micros);
                        }
                        Ok(status) => *p.errors.entry(format!("HTTP {status}")).or_default() += 1,
                        Err(kind) => *p.errors.entry(kind).or_default() += 1,
                    }
                }
                per
            })
        })
        .collect();
    let mut total: Vec<PathStats> = urls.iter().map(|_| PathStats::new()).collect();
    for w in workers {
        for (t, p) in total
            .iter_mut()
            .zip(w.await.context("read worker panicked")?)
        {
            t.latency.add(&p.latency).context("merging histograms")?;
            t.ok += p.ok;
            for (k, v) in p.errors {
                *t.errors.entry(k).or_default() += v;
            }
        }
    }
    Ok(ReadsReport {
        scenario: "reads",
        concurrency: args.concurrency,
        duration_s: args.duration,
        paths: args
            .paths
            .iter()
            .zip(total)
            .map(|(path, t)| PathReport {
                path: path.clone(),
                ok: t.ok,
                ok_per_sec: stats::per_second(t.ok, duration),
                latency_ms: LatencySummary::from_micros(&t.latency),
                errors: t.errors,
            })
            .collect(),
    })
}
