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
//!
//! **A cluster** (several `--url`s, the nodes of one cluster): the subscribers are split evenly
//! over the nodes. The first node's share is held by this process (with the changer); every
//! other node's by a helper process this one starts (`loadtest presence --hold`, the same
//! binary), because a process here holds at most 20,000 descriptors. The helpers report their
//! frame counts at every phase boundary (a line on their stdin, a line back), so the frames are
//! counted over every node; `--server-pid` takes every node's pid (in `--url` order) and the
//! report gives the CPU per node and in total.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::api::{Api, CommonArgs};
use crate::load::ChildProc;
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
    /// The servers' pids, for their CPU time (several, comma-separated: every node's, in
    /// `--url` order).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Helper mode (see the module doc): join `--space` with `--subscribers` sessions numbered
    /// from `--first-user`, print `joined <n>`, then print `<presence> <counts>` frames read for
    /// every line read on stdin; exit at its end.
    #[arg(long, hide = true, requires = "space")]
    pub hold: bool,
    /// The space a helper joins.
    #[arg(long, hide = true)]
    pub space: Option<String>,
    /// A helper's first subscriber (`lt-user-<n>`).
    #[arg(long, hide = true, default_value_t = 1)]
    pub first_user: u32,
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
    /// Nodes the sessions were spread over (one per `--url`).
    pub nodes: usize,
    pub changes: u32,
    /// `presence` frames read by all sessions during the changes phase.
    pub presence_frames: u64,
    pub frames_per_change: f64,
    pub changes_s: f64,
    /// Server CPU ms per change, the quiet rate subtracted (`None` without `--server-pid`);
    /// the sum over the nodes.
    pub cpu_ms_per_change: Option<f64>,
    /// The same per node (`--server-pid` order).
    pub cpu_ms_per_change_by_node: Vec<f64>,
    pub window_s: f64,
    /// Server CPU ms per second over the quiet window (the sum over the nodes).
    pub quiet_cpu_ms_per_s: Option<f64>,
    /// The same per node.
    pub quiet_cpu_ms_per_s_by_node: Vec<f64>,
    /// `presence_count` frames read by all sessions during the quiet window.
    pub count_frames: u64,
    /// Count broadcasts in the window (count frames / sessions).
    pub count_broadcasts: f64,
}

impl PresenceReport {
    pub fn print_human(&self) {
        println!(
            "== presence: {} sessions in one space, over {} node(s) ==",
            self.sessions, self.nodes
        );
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
        if self.nodes > 1 {
            println!(
                "per node: CPU ms per change {:.3?}, quiet CPU ms/s {:.3?}",
                self.cpu_ms_per_change_by_node, self.quiet_cpu_ms_per_s_by_node
            );
        }
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

/// Every pid's CPU time, seconds.
fn cpus(pids: &[u32]) -> Result<Vec<f64>> {
    pids.iter()
        .map(|&p| procstat::sample(Some(p)).map(|s| s.cpu_s))
        .collect::<std::io::Result<_>>()
        .context("reading the servers' CPU time")
}

/// How long a helper may take to join its share (tens of thousands of sessions).
const HELPER_JOIN_TIMEOUT: Duration = Duration::from_secs(900);
/// How long a helper may take to answer a mark.
const HELPER_MARK_TIMEOUT: Duration = Duration::from_secs(30);

/// A helper process holding one node's share of the sessions (see the module doc).
struct Helper(ChildProc);

impl Helper {
    fn start(args: &PresenceArgs, url: &str, space: &str, first_user: u32, n: u32) -> Result<Self> {
        let argv = [
            "presence".to_owned(),
            "--hold".to_owned(),
            "--url".to_owned(),
            url.to_owned(),
            "--space".to_owned(),
            space.to_owned(),
            "--first-user".to_owned(),
            first_user.to_string(),
            "--subscribers".to_owned(),
            n.to_string(),
            "--connect-concurrency".to_owned(),
            args.connect_concurrency.to_string(),
        ];
        ChildProc::spawn(argv, &args.common.jwt_secret, &[]).map(Helper)
    }

    /// Waits for its `joined` line.
    async fn joined(&mut self) -> Result<()> {
        let line = self.0.expect_line("joined", HELPER_JOIN_TIMEOUT).await?;
        if !line.starts_with("joined") {
            bail!("a helper answered {line:?}");
        }
        Ok(())
    }

    /// Its frame counters now: `(presence, presence_count)`.
    async fn mark(&mut self) -> Result<(u64, u64)> {
        self.0.send("mark").await?;
        let line = self.0.expect_line("counts", HELPER_MARK_TIMEOUT).await?;
        let mut it = line.split_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next()) {
            (Some(Ok(p)), Some(Ok(c))) => Ok((p, c)),
            _ => bail!("a helper answered {line:?}"),
        }
    }
}

/// Frames read so far over every node: `(presence, presence_count)`.
async fn totals(counters: &Counters, helpers: &mut [Helper]) -> Result<(u64, u64)> {
    let mut t = (
        counters.presence.load(Ordering::Relaxed),
        counters.counts.load(Ordering::Relaxed),
    );
    for h in helpers {
        let (p, c) = h.mark().await?;
        t = (t.0 + p, t.1 + c);
    }
    Ok(t)
}

/// Waits until the presence frames over every node have not grown for `quiet` (or reached
/// `target`); returns them.
async fn settle(
    counters: &Counters,
    helpers: &mut [Helper],
    target: Option<u64>,
    quiet: Duration,
) -> Result<u64> {
    let mut last = totals(counters, helpers).await?.0;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let v = totals(counters, helpers).await?.0;
        if target.is_some_and(|t| v >= t) {
            return Ok(v);
        }
        if v != last {
            last = v;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return Ok(v);
        }
    }
}

/// Joins `n` sessions (users `first` …) to `space`, each read by a task counting its frames.
async fn join_all(
    api: &Api,
    space: &str,
    first: u32,
    n: u32,
    concurrency: u32,
    counters: &Arc<Counters>,
) -> Result<Vec<futures::stream::SplitSink<Ws, Message>>> {
    let sessions: Vec<Ws> = futures::stream::iter(first as usize..(first + n) as usize)
        .map(|u| async move { join(api, u, space).await })
        .buffer_unordered(concurrency as usize)
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
    Ok(writers)
}

/// Helper mode (`--hold`, see the module doc).
pub async fn hold(args: PresenceArgs) -> Result<()> {
    let api = Api::new(&args.common, 16, Duration::from_secs(3600))?;
    let space = args.space.as_deref().context("--hold needs --space")?;
    let counters = Arc::new(Counters::default());
    let _writers = join_all(
        &api,
        space,
        args.first_user,
        args.subscribers,
        args.connect_concurrency,
        &counters,
    )
    .await?;
    let mut out = tokio::io::stdout();
    out.write_all(format!("joined {}\n", args.subscribers).as_bytes())
        .await?;
    out.flush().await?;
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while stdin.next_line().await?.is_some() {
        let line = format!(
            "{} {}\n",
            counters.presence.load(Ordering::Relaxed),
            counters.counts.load(Ordering::Relaxed)
        );
        out.write_all(line.as_bytes()).await?;
        out.flush().await?;
    }
    Ok(())
}

/// `subscribers` split over `nodes`: equal shares, the first node's taking the remainder.
fn shares(subscribers: u32, nodes: usize) -> Vec<u32> {
    let nodes = u32::try_from(nodes.max(1)).unwrap_or(u32::MAX);
    let each = subscribers / nodes;
    let mut v = vec![each; nodes as usize];
    v[0] += subscribers - each * nodes;
    v
}

pub async fn run(args: PresenceArgs) -> Result<PresenceReport> {
    let api = Api::new(&args.common, 16, Duration::from_secs(3600))?;
    let owner = api.token(0)?;
    let space = api.create_space(&owner).await?;
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let nodes = args.common.urls.len();
    let shares = shares(args.subscribers, nodes);
    let mut helpers = Vec::with_capacity(nodes - 1);
    let mut first = 1 + shares[0];
    for (url, &n) in args.common.urls.iter().zip(&shares).skip(1) {
        helpers.push(Helper::start(&args, url, &space, first, n)?);
        first += n;
    }
    let writers = join_all(
        &api,
        &space,
        1,
        shares[0],
        args.connect_concurrency,
        &counters,
    )
    .await?;
    for h in &mut helpers {
        h.joined().await?;
    }
    let (mut changer, r) = join(&api, 0, &space).await?.split();
    tokio::spawn(read_all(r, counters.clone()));
    let sessions = u64::from(args.subscribers) + 1;
    eprintln!(
        "presence: {sessions} sessions joined over {nodes} node(s) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    settle(&counters, &mut helpers, None, Duration::from_secs(1)).await?;

    // Quiet window.
    let (c0, t0) = (cpus(&args.server_pid)?, Instant::now());
    let counts0 = totals(&counters, &mut helpers).await?.1;
    tokio::time::sleep(Duration::from_secs(args.window)).await;
    let (c1, window_s) = (cpus(&args.server_pid)?, t0.elapsed().as_secs_f64());
    let (p0, counts1) = totals(&counters, &mut helpers).await?;
    let count_frames = counts1 - counts0;
    let quiet: Vec<f64> = c0
        .iter()
        .zip(&c1)
        .map(|(a, b)| (b - a) / window_s)
        .collect();

    // Changes.
    let (c2, t2) = (cpus(&args.server_pid)?, Instant::now());
    for i in 0..args.changes {
        let status = if i % 2 == 0 { "busy" } else { "online" };
        changer
            .send(Message::text(
                serde_json::json!({"type": "presence", "status": status}).to_string(),
            ))
            .await?;
        tokio::time::sleep(Duration::from_millis(args.pace_ms)).await;
    }
    let p1 = settle(
        &counters,
        &mut helpers,
        Some(p0 + u64::from(args.changes) * sessions),
        Duration::from_secs(2),
    )
    .await?;
    let (c3, changes_s) = (cpus(&args.server_pid)?, t2.elapsed().as_secs_f64());
    let presence_frames = p1 - p0;
    let per_change: Vec<f64> = c2
        .iter()
        .zip(&c3)
        .zip(&quiet)
        .map(|((a, b), q)| ((b - a) - q * changes_s) * 1000.0 / f64::from(args.changes))
        .collect();
    drop(writers);
    for h in helpers {
        h.0.finish().await;
    }
    let sum = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>());
    Ok(PresenceReport {
        scenario: "presence",
        sessions,
        nodes,
        changes: args.changes,
        presence_frames,
        frames_per_change: presence_frames as f64 / f64::from(args.changes),
        changes_s,
        cpu_ms_per_change: sum(&per_change),
        cpu_ms_per_change_by_node: per_change,
        window_s,
        quiet_cpu_ms_per_s: sum(&quiet).map(|r| r * 1000.0),
        quiet_cpu_ms_per_s_by_node: quiet.iter().map(|r| r * 1000.0).collect(),
        count_frames,
        count_broadcasts: count_frames as f64 / sessions as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::shares;

    #[test]
    fn subscribers_are_split_evenly_over_the_nodes() {
        assert_eq!(shares(10, 1), vec![10]);
        assert_eq!(shares(10, 3), vec![4, 3, 3]);
        assert_eq!(shares(50_000, 3), vec![16_668, 16_666, 16_666]);
    }
}
