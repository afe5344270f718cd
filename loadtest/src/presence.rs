//! Scenario `presence`: what a presence change costs in a space with many subscribers (issue 12),
//! and what the periodic count costs above `--presence-max-subscribers`.
//!
//! Setup (through the first `--url`): `lt-user-0` creates a public space; `--subscribers`
//! WebSocket sessions (`lt-user-1` …, each its own user) and the changer `lt-user-0` join it on
//! `/v1/stream`; every session counts the `presence` and `presence_count` frames it reads. Then:
//! 1. **settle**: until no presence frame arrived for 1 s (the joins' own events);
//! 2. **quiet window** (`--window` s): nothing is sent; the server's CPU time over it (with
//!    `--server-pid`) is its idle cost, plus the count broadcasts when the space is above the
//!    threshold (their frames are counted);
//! 3. **changes**: the changer alternates `busy` / `online`, `--changes` times, one every
//!    `--pace-ms`; then until every expected frame arrived (below the threshold: one per session
//!    per change) or 2 s without one. CPU per change = (CPU over the phase − the quiet window's
//!    rate × its length) / changes.
//!
//! Run the whole thing within the server's `--presence-timeout` (60 s by default) of the
//! connections: the sessions send nothing after their join, so they would go offline after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use crate::api::{Api, CommonArgs};
use crate::procstat;

#[derive(Debug, Clone, Args)]
pub struct PresenceArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Subscribers of the space besides the changer, each its own user.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub subscribers: u32,
    /// Presence changes the changer makes (alternately busy and online).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub changes: u32,
    /// Milliseconds between two changes.
    #[arg(long, default_value_t = 20)]
    pub pace_ms: u64,
    /// Seconds of the quiet window (idle cost, and the counts above the threshold).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub window: u64,
    /// The server's pid, for its CPU time.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// WebSocket handshakes in flight during setup.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_024))]
    pub connect_concurrency: u32,
}

#[derive(Default)]
struct Counters {
    presence: AtomicU64,
    counts: AtomicU64,
}

#[derive(Debug, Serialize)]
pub struct PresenceReport {
    pub scenario: &'static str,
    /// Sessions in the space (subscribers + the changer).
    pub sessions: u64,
    pub changes: u32,
    /// `presence` frames read by all sessions during the changes phase.
    pub presence_frames: u64,
    pub frames_per_change: f64,
    pub changes_s: f64,
    /// Server CPU ms per change, the quiet rate subtracted (`None` without `--server-pid`).
    pub cpu_ms_per_change: Option<f64>,
    pub window_s: f64,
    /// Server CPU ms per second over the quiet window.
    pub quiet_cpu_ms_per_s: Option<f64>,
    /// `presence_count` frames read by all sessions during the quiet window.
    pub count_frames: u64,
    /// Count broadcasts in the window (count frames / sessions).
    pub count_broadcasts: f64,
}

impl PresenceReport {
    pub fn print_human(&self) {
        println!("== presence: {} sessions in one space ==", self.sessions);
        let ms = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.3}"));
        println!(
            "changes: {} in {:.2} s, {} presence frames ({:.1} per change), server CPU {} ms per change",
            self.changes,
            self.changes_s,
            self.presence_frames,
            self.frames_per_change,
            ms(self.cpu_ms_per_change)
        );
        println!(
            "quiet window: {:.1} s, server CPU {} ms/s, {} presence_count frames ({:.1} broadcasts)",
            self.window_s,
            ms(self.quiet_cpu_ms_per_s),
            self.count_frames,
            self.count_broadcasts
        );
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects `user`'s session and joins `space`; returns once `joined` arrived.
async fn join(api: &Api, user: usize, space: &str) -> Result<Ws> {
    let url = api.stream_url(&api.token(user)?);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .with_context(|| format!("connecting lt-user-{user}"))?;
    ws.send(Message::text(
        serde_json::json!({"type": "join", "space_id": space}).to_string(),
    ))
    .await?;
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let msg = tokio::time::timeout_at(until.into(), ws.next())
            .await
            .context("joined within 30 s")?;
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str())?;
                match v["type"].as_str() {
                    Some("joined") => return Ok(ws),
                    Some("error") => bail!("join refused: {v}"),
                    _ => {}
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("closed before joined"),
        }
    }
}

/// Reads a session's frames until it closes, counting presence frames.
async fn read_all(mut ws: futures::stream::SplitStream<Ws>, counters: Arc<Counters>) {
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg {
            // The frame's type is its first field.
            let t = t.as_str();
            if t.starts_with(r#"{"type":"presence_count""#) {
                counters.counts.fetch_add(1, Ordering::Relaxed);
            } else if t.starts_with(r#"{"type":"presence""#) {
                counters.presence.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn cpu(pid: Option<u32>) -> Result<Option<f64>> {
    pid.map(|p| procstat::sample(Some(p)).map(|s| s.cpu_s))
        .transpose()
        .context("reading the server's CPU time")
}

/// Waits until `value()` has not grown for `quiet` (or reached `target`).
async fn settle(value: impl Fn() -> u64, target: Option<u64>, quiet: Duration) {
    let mut last = value();
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let v = value();
        if target.is_some_and(|t| v >= t) {
            return;
        }
        if v != last {
            last = v;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
    }
}

pub async fn run(args: PresenceArgs) -> Result<PresenceReport> {
    let api = Api::new(&args.common, 16, Duration::from_secs(3600))?;
    let owner = api.token(0)?;
    let space = api.create_space(&owner).await?;
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let sessions: Vec<Ws> = futures::stream::iter(1..=args.subscribers as usize)
        .map(|u| {
            let (api, space) = (&api, &space);
            async move { join(api, u, space).await }
        })
        .buffer_unordered(args.connect_concurrency as usize)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let mut writers = Vec::with_capacity(sessions.len());
    for ws in sessions {
        let (w, r) = ws.split();
        writers.push(w);
        tokio::spawn(read_all(r, counters.clone()));
    }
    let (mut changer, r) = join(&api, 0, &space).await?.split();
    tokio::spawn(read_all(r, counters.clone()));
    let sessions = u64::from(args.subscribers) + 1;
    eprintln!(
        "presence: {sessions} sessions joined in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    settle(
        || counters.presence.load(Ordering::Relaxed),
        None,
        Duration::from_secs(1),
    )
    .await;

    // Quiet window.
    let (c0, t0) = (cpu(args.server_pid)?, Instant::now());
    let counts0 = counters.counts.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.window)).await;
    let (c1, window_s) = (cpu(args.server_pid)?, t0.elapsed().as_secs_f64());
    let count_frames = counters.counts.load(Ordering::Relaxed) - counts0;
    let quiet_rate = c0.zip(c1).map(|(a, b)| (b - a) / window_s);

    // Changes.
    let p0 = counters.presence.load(Ordering::Relaxed);
    let (c2, t2) = (cpu(args.server_pid)?, Instant::now());
    for i in 0..args.changes {
        let status = if i % 2 == 0 { "busy" } else { "online" };
        changer
            .send(Message::text(
                serde_json::json!({"type": "presence", "status": status}).to_string(),
            ))
            .await?;
        tokio::time::sleep(Duration::from_millis(args.pace_ms)).await;
    }
    settle(
        || counters.presence.load(Ordering::Relaxed) - p0,
        Some(u64::from(args.changes) * sessions),
        Duration::from_secs(2),
    )
    .await;
    let (c3, changes_s) = (cpu(args.server_pid)?, t2.elapsed().as_secs_f64());
    let presence_frames = counters.presence.load(Ordering::Relaxed) - p0;
    let cpu_ms_per_change = c2
        .zip(c3)
        .zip(quiet_rate)
        .map(|((a, b), q)| ((b - a) - q * changes_s) * 1000.0 / f64::from(args.changes));
    drop(writers);
    Ok(PresenceReport {
        scenario: "presence",
        sessions,
        changes: args.changes,
        presence_frames,
        frames_per_change: presence_frames as f64 / f64::from(args.changes),
        changes_s,
        cpu_ms_per_change,
        window_s,
        quiet_cpu_ms_per_s: quiet_rate.map(|r| r * 1000.0),
        count_frames,
        count_broadcasts: count_frames as f64 / sessions as f64,
    })
}
