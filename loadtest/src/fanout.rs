//! Scenario `fanout`: one paced REST publisher, N WebSocket subscribers on
//! the same space; end-to-end delivery latency, ordering and completeness.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use futures::{SinkExt, StreamExt, TryStreamExt, stream};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::{
    net::TcpStream,
    sync::{Semaphore, mpsc, watch},
    task::{JoinError, JoinSet},
    time::{MissedTickBehavior, interval, sleep, sleep_until, timeout},
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async_with_config, tungstenite::Message,
};

use crate::{
    api::{Api, CommonArgs, SendOutcome},
    stats::{self, LatencySummary, SendStats, SeqTracker},
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Concurrent REST joins during setup.
const SETUP_CONCURRENCY: usize = 50;
/// Deadline for each handshake step (TCP+upgrade, `hello`, `joined`).
const HANDSHAKE_STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for our close frame at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most publisher requests in flight; a tick finding them all busy is skipped.
const MAX_PUBLISH_IN_FLIGHT: usize = 256;
/// How often the drain phase checks the subscribers' progress.
const DRAIN_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// WebSocket subscribers (each its own user) on the one space.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub subscribers: u32,
    /// Messages per second from the single publisher.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
    /// Publishing duration in seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub duration: u64,
    /// Subscribers connecting (handshake + join) at the same time.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connect_concurrency: u32,
    /// After publishing, wait up to this many seconds for outstanding deliveries.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub drain_timeout: u64,
    /// Do not `POST /api/spaces/{id}/join` for each subscriber before it
    /// subscribes (only the publisher joins).
    #[arg(long)]
    pub no_rest_join: bool,
}

#[derive(Debug, Serialize)]
pub struct FanoutReport {
    pub scenario: &'static str,
    pub subscribers: u32,
    pub rate: u32,
    pub duration_s: u64,
    pub content_bytes: u32,
    pub connect_s: f64,
    /// `rate × duration`.
    pub target_messages: u64,
    /// Send requests issued.
    pub sent: u64,
    /// Ticks dropped because `MAX_PUBLISH_IN_FLIGHT` requests were pending.
    pub skipped_ticks: u64,
    /// Sends acknowledged with 201.
    pub acked: u64,
    pub rejected: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    pub publish_latency_ms: LatencySummary,
    /// `acked × subscribers`.
    pub expected_deliveries: u64,
    pub deliveries: u64,
    pub delivery_ratio: f64,
    /// Deliveries over the time from the first send to the last delivery.
    pub deliveries_per_sec: f64,
    pub delivery_latency_ms: LatencySummary,
    /// Jumps by more than one in consecutive event seqs, over all subscribers.
    pub gaps: u64,
    pub missing_seqs: u64,
    /// Events whose seq did not exceed the previous one (duplicates, reordering).
    pub out_of_order: u64,
    /// Subscribers whose last seen seq is below the highest acknowledged seq.
    pub subscribers_behind: u64,
    /// Subscribers with fewer deliveries than acknowledged sends.
    pub subscribers_incomplete: u64,
    pub closed_by_server: u64,
    /// Close code → subscribers the server closed with it (4008 = too slow).
    pub close_codes: BTreeMap<String, u64>,
    /// Other disconnects before the end (EOF or error without close frame).
    pub disconnects: BTreeMap<String, u64>,
    /// Text frames that were not valid JSON of the expected shape.
    pub unparsed_frames: u64,
    /// `message_created` events without a loadtest timestamp, or for another space.
    pub foreign_events: u64,
    pub drain_s: f64,
}

impl FanoutReport {
    pub fn print_human(&self) {
        println!(
            "== fanout: {} subscribers, {} msg/s for {} s, {} B content ==",
            self.subscribers, self.rate, self.duration_s, self.content_bytes
        );
        println!(
            "subscribed     {} in {:.2} s",
            self.subscribers, self.connect_s
        );
        println!(
            "sent           {} acknowledged of {} sent (target {}, skipped ticks {})",
            self.acked, self.sent, self.target_messages, self.skipped_ticks
        );
        println!(
            "rejected       {}   errors {} ({})",
            self.rejected,
            self.errors,
            stats::format_counts(&self.error_kinds)
        );
        println!("publish ack ms {}", self.publish_latency_ms.line(true));
        println!(
            "deliveries     {} of {} expected ({:.2}%), {:.1}/s",
            self.deliveries,
            self.expected_deliveries,
            self.delivery_ratio * 100.0,
            self.deliveries_per_sec
        );
        println!("delivery ms    {}", self.delivery_latency_ms.line(true));
        println!(
            "ordering       gaps {} (missing seqs {}), out of order {}, behind head {}, incomplete {}",
            self.gaps,
            self.missing_seqs,
            self.out_of_order,
            self.subscribers_behind,
            self.subscribers_incomplete
        );
        println!(
            "closed         by server {} ({}), other disconnects ({})",
            self.closed_by_server,
            stats::format_counts(&self.close_codes),
            stats::format_counts(&self.disconnects)
        );
        if self.unparsed_frames > 0 || self.foreign_events > 0 {
            println!(
                "unexpected     unparsed frames {}, foreign events {}",
                self.unparsed_frames, self.foreign_events
            );
        }
        println!("drain          {:.2} s", self.drain_s);
    }
}

/// The fields of a server frame the loadtest looks at; others are ignored.
#[derive(Deserialize)]
struct ServerFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    space_id: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default, borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    data: Option<EventData<'a>>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct EventData<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

/// What one subscriber saw; pure, so it can be unit-tested on raw frames.
struct SubscriberState {
    space_id: Arc<str>,
    /// Delivery latency in microseconds.
    latency: Histogram<u32>,
    seq: SeqTracker,
    delivered: u64,
    last_delivery_micros: u64,
    unparsed: u64,
    foreign: u64,
}

impl SubscriberState {
    fn new(space_id: Arc<str>) -> Self {
        Self {
            space_id,
            latency: stats::new_histogram(),
            seq: SeqTracker::default(),
            delivered: 0,
            last_delivery_micros: 0,
            unparsed: 0,
            foreign: 0,
        }
    }

    /// Handles one text frame received at `received_micros`; returns whether
    /// it was a delivery of a loadtest message.
    fn on_text(&mut self, text: &str, received_micros: u64) -> bool {
        let Ok(frame) = serde_json::from_str::<ServerFrame>(text) else {
            self.unparsed += 1;
            return false;
        };
        if frame.kind != "event" {
            return false;
        }
        if frame.space_id.as_deref() != Some(&*self.space_id) {
            self.foreign += 1;
            return false;
        }
        if let Some(seq) = frame.seq {
            self.seq.observe(seq);
        }
        if frame.event.as_deref() != Some("message_created") {
            return false;
        }
        let sent = frame
            .data
            .and_then(|d| d.content)
            .and_then(|c| stats::parse_sent_micros(&c));
        let Some(sent) = sent else {
            self.foreign += 1;
            return false;
        };
        stats::record_micros(&mut self.latency, received_micros.saturating_sub(sent));
        self.delivered += 1;
        self.last_delivery_micros = self.last_delivery_micros.max(received_micros);
        true
    }
}

/// Progress visible to the drain loop while the subscriber runs.
#[derive(Default)]
struct Progress {
    delivered: AtomicU64,
    finished: AtomicBool,
}

struct SubscriberResult {
    state: SubscriberState,
    /// Close code if the server closed the connection with a close frame.
    server_close: Option<String>,
    /// Other ways the connection ended early.
    disconnect: Option<String>,
}

pub async fn run(args: FanoutArgs) -> Result<FanoutReport> {
    let n = args.subscribers as usize;
    let duration = Duration::from_secs(args.duration);
    let api = Api::new(
        &args.common,
        SETUP_CONCURRENCY.max(MAX_PUBLISH_IN_FLIGHT),
        duration + Duration::from_secs(args.drain_timeout),
    )?;

    // User 0 publishes, users 1..=n subscribe.
    let publisher_token = api.token(0)?;
    let space_id = api
        .create_space(&publisher_token)
        .await
        .context("creating the space")?;
    api.join_space(&publisher_token, &space_id)
        .await
        .context("publisher joining the space")?;
    let tokens: Vec<String> = (1..=n).map(|u| api.token(u)).collect::<Result<_>>()?;
    if !args.no_rest_join {
        eprintln!("loadtest: joining {n} subscriber users to space {space_id}");
        stream::iter(&tokens)
            .map(|token| api.join_space(token, &space_id))
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .context("joining subscribers to the space")?;
    }

    eprintln!(
        "loadtest: opening {n} subscribers, {} at a time",
        args.connect_concurrency
    );
    let connect_start = Instant::now();
    let space_id: Arc<str> = space_id.into();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency as usize));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut progress = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for (idx, token) in tokens.into_iter().enumerate() {
        let p = Arc::new(Progress::default());
        progress.push(Arc::clone(&p));
        handles.push(tokio::spawn(subscriber(
            api.stream_url(&token),
            Arc::clone(&space_id),
            Arc::clone(&gate),
            ready_tx.clone(),
            shutdown_rx.clone(),
            p,
            idx,
        )));
    }
    drop(ready_tx);
    let mut ready = 0;
    while ready < n {
        // Every subscriber reports exactly once, within 3 handshake steps.
        match ready_rx.recv().await {
            Some(Ok(())) => ready += 1,
            Some(Err(err)) => {
                handles.iter().for_each(|h| h.abort());
                return Err(err.context(format!("only {ready}/{n} subscribers joined")));
            }
            None => bail!("subscriber tasks exited before joining"),
        }
    }
    let connect_s = connect_start.elapsed().as_secs_f64();
    eprintln!(
        "loadtest: {n} subscribers joined in {connect_s:.2} s; publishing {} msg/s for {} s",
        args.rate, args.duration
    );

    let publish_start = stats::now_micros();
    let publish = publish(
        &api,
        Arc::new(publisher_token),
        Arc::new(api.messages_url(&space_id)),
        args.rate,
        duration,
        args.common.content_bytes as usize,
    )
    .await;

    let drain_start = Instant::now();
    let drain_deadline = drain_start + Duration::from_secs(args.drain_timeout);
    loop {
        let caught_up = progress.iter().all(|p| {
            p.finished.load(Ordering::Relaxed)
                || p.delivered.load(Ordering::Relaxed) >= publish.stats.acked
        });
        if caught_up || Instant::now() >= drain_deadline {
            break;
        }
        sleep(DRAIN_POLL).await;
    }
    let drain_s = drain_start.elapsed().as_secs_f64();
    let _ = shutdown_tx.send(true);

    let mut latency = stats::new_histogram::<u64>();
    let mut seq = SeqTracker::default();
    let mut report_close = BTreeMap::<String, u64>::new();
    let mut disconnects = BTreeMap::<String, u64>::new();
    let (mut deliveries, mut last_delivery, mut unparsed, mut foreign) = (0, 0, 0, 0);
    let (mut behind, mut incomplete) = (0, 0);
    for handle in handles {
        let result = handle.await.context("subscriber task panicked")?;
        let state = &result.state;
        stats::merge_into(&mut latency, &state.latency);
        seq.merge(&state.seq);
        deliveries += state.delivered;
        last_delivery = last_delivery.max(state.last_delivery_micros);
        unparsed += state.unparsed;
        foreign += state.foreign;
        if state.delivered < publish.stats.acked {
            incomplete += 1;
        }
        if let Some(head) = publish.max_acked_seq
            && state.seq.last.is_none_or(|last| last < head)
        {
            behind += 1;
        }
        if let Some(code) = result.server_close {
            *report_close.entry(code).or_default() += 1;
        }
        if let Some(reason) = result.disconnect {
            *disconnects.entry(reason).or_default() += 1;
        }
    }

    let expected = publish.stats.acked * n as u64;
    let delivery_window = Duration::from_micros(last_delivery.saturating_sub(publish_start));
    Ok(FanoutReport {
        scenario: "fanout",
        subscribers: args.subscribers,
        rate: args.rate,
        duration_s: args.duration,
        content_bytes: args.common.content_bytes,
        connect_s: round3(connect_s),
        target_messages: u64::from(args.rate) * args.duration,
        sent: publish.sent,
        skipped_ticks: publish.skipped_ticks,
        acked: publish.stats.acked,
        rejected: publish.stats.rejected(),
        errors: publish.stats.errors,
        publish_latency_ms: LatencySummary::from_micros(&publish.stats.ack_latency),
        error_kinds: publish.stats.error_kinds,
        expected_deliveries: expected,
        deliveries,
        delivery_ratio: stats::ratio(deliveries, expected),
        deliveries_per_sec: stats::per_second(deliveries, delivery_window),
        delivery_latency_ms: LatencySummary::from_micros(&latency),
        gaps: seq.gaps,
        missing_seqs: seq.missing,
        out_of_order: seq.out_of_order,
        subscribers_behind: behind,
        subscribers_incomplete: incomplete,
        closed_by_server: report_close.values().sum(),
        close_codes: report_close,
        disconnects,
        unparsed_frames: unparsed,
        foreign_events: foreign,
        drain_s: round3(drain_s),
    })
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

struct PublishResult {
    sent: u64,
    skipped_ticks: u64,
    stats: SendStats,
    max_acked_seq: Option<u64>,
}

impl PublishResult {
    fn absorb(&mut self, done: Result<(SendOutcome, Duration), JoinError>) {
        // A panicked send task would be a bug; it simply is not counted.
        if let Ok((outcome, latency)) = done {
            self.stats.record(&outcome, latency);
            if let SendOutcome::Acked { seq } = outcome {
                self.max_acked_seq = self.max_acked_seq.max(Some(seq));
            }
        }
    }
}

/// Sends `rate` messages per second for `duration`, each from its own task so
/// a slow response does not hold back the next tick.
async fn publish(
    api: &Api,
    token: Arc<String>,
    url: Arc<reqwest::Url>,
    rate: u32,
    duration: Duration,
    content_bytes: usize,
) -> PublishResult {
    let mut result = PublishResult {
        sent: 0,
        skipped_ticks: 0,
        stats: SendStats::default(),
        max_acked_seq: None,
    };
    let in_flight = Arc::new(Semaphore::new(MAX_PUBLISH_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let mut ticker = interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let end = Instant::now() + duration;
    loop {
        tokio::select! {
            _ = sleep_until(end.into()) => break,
            _ = ticker.tick() => {}
        }
        if Instant::now() >= end {
            break;
        }
        while let Some(done) = tasks.try_join_next() {
            result.absorb(done);
        }
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            result.skipped_ticks += 1;
            continue;
        };
        result.sent += 1;
        let (api, token, url) = (api.clone(), Arc::clone(&token), Arc::clone(&url));
        tasks.spawn(async move {
            let content = stats::make_content(stats::now_micros(), content_bytes);
            let started = Instant::now();
            let outcome = api.send_message(&token, &url, &content).await;
            let latency = started.elapsed();
            drop(permit);
            (outcome, latency)
        });
    }
    // Bounded by the request timeout.
    while let Some(done) = tasks.join_next().await {
        result.absorb(done);
    }
    result
}

/// Connects, waits for `hello`, joins the space and waits for `joined`.
async fn open(url: &str, space_id: &str) -> Result<Ws> {
    let (mut ws, _) = timeout(
        HANDSHAKE_STEP_TIMEOUT,
        connect_async_with_config(url, None, true),
    )
    .await
    .map_err(|_| anyhow!("WebSocket connect timed out"))?
    .context("WebSocket connect")?;
    await_frame(&mut ws, "hello", None).await?;
    let join = serde_json::json!({ "type": "join", "space_id": space_id }).to_string();
    ws.send(Message::text(join)).await.context("sending join")?;
    await_frame(&mut ws, "joined", Some(space_id)).await?;
    Ok(ws)
}

/// Reads frames until one of type `kind` (for `space_id`, if given) arrives.
async fn await_frame(ws: &mut Ws, kind: &str, space_id: Option<&str>) -> Result<()> {
    let deadline = tokio::time::Instant::now() + HANDSHAKE_STEP_TIMEOUT;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("no {kind:?} frame within {HANDSHAKE_STEP_TIMEOUT:?}"))?;
        match next {
            Some(Ok(Message::Text(text))) => {
                let frame: ServerFrame = serde_json::from_str(&text).with_context(|| {
                    format!("unexpected frame while waiting for {kind:?}: {text}")
                })?;
                if frame.kind == "error" {
                    bail!(
                        "server error while waiting for {kind:?}: {}",
                        frame.message.as_deref().unwrap_or(&text)
                    );
                }
                if frame.kind == kind
                    && space_id.is_none_or(|id| frame.space_id.as_deref() == Some(id))
                {
                    return Ok(());
                }
            }
            Some(Ok(Message::Close(frame))) => {
                bail!("closed by server while waiting for {kind:?}: {frame:?}")
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err).context(format!("waiting for {kind:?}")),
            None => bail!("connection ended while waiting for {kind:?}"),
        }
    }
}

async fn subscriber(
    url: String,
    space_id: Arc<str>,
    gate: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<()>>,
    mut shutdown: watch::Receiver<bool>,
    progress: Arc<Progress>,
    idx: usize,
) -> SubscriberResult {
    let mut result = SubscriberResult {
        state: SubscriberState::new(Arc::clone(&space_id)),
        server_close: None,
        disconnect: None,
    };
    let opened = match gate.acquire().await {
        Ok(_permit) => open(&url, &space_id).await,
        Err(_) => Err(anyhow!("connect gate closed")),
    };
    let mut ws = match opened {
        Ok(ws) => {
            let _ = ready.send(Ok(()));
            ws
        }
        Err(err) => {
            let _ = ready.send(Err(err.context(format!("subscriber {idx}"))));
            progress.finished.store(true, Ordering::Relaxed);
            return result;
        }
    };
    drop(ready);

    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                let _ = timeout(CLOSE_TIMEOUT, ws.close(None)).await;
                break;
            }
            next = ws.next() => match next {
                Some(Ok(Message::Text(text))) => {
                    if result.state.on_text(&text, stats::now_micros()) {
                        progress.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    result.server_close = Some(match frame {
                        Some(frame) => u16::from(frame.code).to_string(),
                        None => "none".to_owned(),
                    });
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    result.disconnect = Some(format!("error: {err}"));
                    break;
                }
                None => {
                    result.disconnect = Some("eof".to_owned());
                    break;
                }
            },
        }
    }
    progress.finished.store(true, Ordering::Relaxed);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(space: &str, seq: u64, event: &str, content: &str) -> String {
        serde_json::json!({
            "type": "event",
            "space_id": space,
            "seq": seq,
            "event": event,
            "data": {
                "message_id": "m-1",
                "space_id": space,
                "seq": seq,
                "author": {"user_id": "lt-user-0"},
                "content": content,
            },
        })
        .to_string()
    }

    #[test]
    fn records_latency_and_order_of_deliveries() {
        let mut s = SubscriberState::new("sp".into());
        assert!(s.on_text(&event("sp", 5, "message_created", "lt:1000 xx"), 3_000));
        assert!(s.on_text(&event("sp", 6, "message_created", "lt:2000 xx"), 2_500));
        // Another kind of event still advances the seq.
        assert!(!s.on_text(&event("sp", 7, "message_deleted", "lt:2100"), 3_000));
        assert!(s.on_text(&event("sp", 9, "message_created", "lt:3000"), 7_000));
        assert_eq!(s.delivered, 3);
        assert_eq!(s.last_delivery_micros, 7_000);
        assert_eq!((s.seq.gaps, s.seq.missing, s.seq.out_of_order), (1, 1, 0));
        let summary = LatencySummary::from_micros(&s.latency);
        assert_eq!(summary.count, 3);
        assert_eq!(summary.p50_ms, 2.0);
        // HDR reports the highest value equivalent at 3 significant figures.
        assert!(
            (4.0..=4.004).contains(&summary.max_ms),
            "{}",
            summary.max_ms
        );
    }

    #[test]
    fn ignores_control_frames_and_counts_strangers() {
        let mut s = SubscriberState::new("sp".into());
        let hello = r#"{"type":"hello","session_id":"s","node_id":"n"}"#;
        let joined = r#"{"type":"joined","space_id":"sp","head_seq":4}"#;
        assert!(!s.on_text(hello, 1));
        assert!(!s.on_text(joined, 1));
        assert!(!s.on_text("not json", 1));
        assert!(!s.on_text(&event("other", 1, "message_created", "lt:1"), 1));
        assert!(!s.on_text(&event("sp", 5, "message_created", "hi there"), 1));
        assert_eq!(s.delivered, 0);
        assert_eq!(s.unparsed, 1);
        assert_eq!(s.foreign, 2);
        assert_eq!(s.seq.last, Some(5));
    }

    #[test]
    fn escaped_content_is_still_parsed() {
        let mut s = SubscriberState::new("sp".into());
        let text = r#"{"type":"event","space_id":"sp","seq":1,"event":"message_created","data":{"content":"lt:10 \"quoted\" \u00e9"}}"#;
        assert!(s.on_text(text, 15));
        assert_eq!(s.latency.max(), 5);
    }
}
