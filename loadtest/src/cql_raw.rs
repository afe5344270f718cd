//! Scenario `cql-raw`: the write throughput a Cassandra / ScyllaDB cluster gives a plain driver
//! loop doing what the engine's group commit does, so the engine's sends/s on `--store cql` can
//! be read as a fraction of the database's capacity.
//!
//! The keyspace and tables are the engine's own (`spacecast_engine::store::cql::migrate`), so the
//! loop always writes the real schema; the INSERTs mirror `Statements::prepare` and the commit
//! shape mirrors `CqlStore::commit` in `engine/src/store/cql/mod.rs`: keep them in step.
//!
//! Each closed-loop worker repeats one commit: pick a space (round-robin), take `--batch`
//! consecutive seqs from that space's counter, and write, for each of those B new messages, one
//! row in `events_by_space` (the event JSON, shaped like the engine's `message_created`) and one
//! in `messages_by_space` (the same columns the engine writes), plus one in `message_by_id`;
//! after all of those, one row in `space_counters_by_id`. That is `CqlStore::commit`'s two-phase
//! shape. With `--mode batch` (the engine's way) phase 1 sends one unlogged batch per
//! `(space, bucket)` partition of each table, a lone statement as a plain execute, and each
//! `message_by_id` row (its own partition) as its own execute, all concurrently; with
//! `--mode concurrent` every statement is its own execute, all concurrently.
//!
//! Prepared statements, `LOCAL_QUORUM`, idempotent, client-side monotonic timestamps and a 5 s
//! request timeout, as the engine's session. Unlike the engine (one space actor keeps at most one
//! commit in flight per space), several workers may commit to the same space at once, so
//! `head_seq` in `space_counters_by_id` is not monotonic here; the rows are never read. The
//! engine's own shape at S spaces and N senders is `--concurrency S --batch N/S` (at most);
//! the defaults (64 × 16) ask for more than that, to find the database's ceiling.
//!
//! With 100 B of content an event JSON is ≈ 590 B (the engine's `message_created` carries the
//! whole message: ids, sender, two RFC 3339 timestamps), so a 16-message events batch is
//! ≈ 9.5 KiB: above Cassandra's default `batch_size_warn_threshold` (5 KiB, a log line per
//! batch), far below the 50 KiB failure threshold. The engine's batches are the same size.

use std::{
    collections::BTreeMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use futures::future;
use hdrhistogram::Histogram;
use scylla::{
    client::{
        execution_profile::ExecutionProfile, session::Session, session_builder::SessionBuilder,
    },
    errors::{ExecutionError, RequestAttemptError},
    policies::timestamp_generator::MonotonicTimestampGenerator,
    serialize::row::SerializeRow,
    statement::{
        Consistency,
        batch::{Batch, BatchType},
        prepared::PreparedStatement,
    },
    value::CqlTimestamp,
};
use serde::Serialize;
use spacecast_engine::store::cql::schema::{BUCKET_SEQS, bucket, valid_keyspace};
use tokio::time::sleep_until;
use uuid::Uuid;

use crate::stats::{self, LatencySummary};

/// Per-request timeout (engine: `CqlConfig::default().request_timeout`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed commit, so a dead cluster does not turn into a spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// `member_count` written to the counters row (the sends scenario's 64 users).
const MEMBER_COUNT: i64 = 64;

/// How phase 1 of a commit is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One unlogged batch per partition (what `CqlStore::commit` does).
    Batch,
    /// Every statement as its own concurrent execute.
    Concurrent,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Batch => "batch",
            Mode::Concurrent => "concurrent",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct CqlRawArgs {
    /// CQL contact points, comma-separated host:port.
    #[arg(long, default_value = "127.0.0.1:9042")]
    pub nodes: String,
    /// Keyspace to write into; created (SimpleStrategy, RF 1) with its tables if missing.
    #[arg(long, default_value = "bench_raw")]
    pub keyspace: String,
    /// Spaces to write into (round-robin); fresh random space ids each run.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub spaces: u32,
    /// Concurrent workers, each with at most one commit in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Messages per commit.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub batch: u32,
    /// How phase 1 (events, messages, message_by_id) is sent.
    #[arg(long, value_enum, default_value_t = Mode::Batch)]
    pub mode: Mode,
    /// Measured duration in seconds (after the warm-up).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub duration: u64,
    /// Warm-up seconds: commits run but are not measured.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup: u64,
    /// Size in bytes of each message's content (the event JSON embeds it too).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(16..=65_536))]
    pub content_bytes: u32,
    /// Also print the results as one JSON object line.
    #[arg(long)]
    pub json: bool,
    /// Tokio worker threads for the loadtest itself (default: one per CPU).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct CqlRawReport {
    pub scenario: &'static str,
    pub mode: &'static str,
    pub nodes: String,
    pub keyspace: String,
    pub spaces: u32,
    pub concurrency: u32,
    /// Messages per commit.
    pub batch: u32,
    pub content_bytes: u32,
    /// Size of one event JSON text (the first seq's; later seqs add a few digits).
    pub event_bytes: usize,
    /// Rows written per commit: 3 per message + the counters row.
    pub rows_per_commit: u32,
    /// Requests per commit when no commit straddles a bucket (batch mode: 1 or 2 per table
    /// partition, 1 per message_by_id row, 1 for the counters).
    pub requests_per_commit: u32,
    pub warmup_s: u64,
    pub duration_s: u64,
    /// From the end of the warm-up to the completion of the last measured commit.
    pub elapsed_s: f64,
    pub commits: u64,
    pub commits_per_sec: f64,
    /// `commits × batch`.
    pub messages: u64,
    pub messages_per_sec: f64,
    pub commit_latency_ms: LatencySummary,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// Commits completed during the warm-up (not in the numbers above).
    pub warmup_commits: u64,
}

impl CqlRawReport {
    pub fn print_human(&self) {
        println!(
            "== cql-raw ({} mode): {} spaces, {} workers, {} messages/commit, {} B content, {} B events, {} s measured after {} s warm-up, keyspace {} on {} ==",
            self.mode,
            self.spaces,
            self.concurrency,
            self.batch,
            self.content_bytes,
            self.event_bytes,
            self.duration_s,
            self.warmup_s,
            self.keyspace,
            self.nodes
        );
        println!(
            "commits        {} ({:.1}/s over {:.2} s; {} rows, {} requests each)",
            self.commits,
            self.commits_per_sec,
            self.elapsed_s,
            self.rows_per_commit,
            self.requests_per_commit
        );
        println!(
            "messages       {} ({:.1}/s)",
            self.messages, self.messages_per_sec
        );
        println!("commit lat ms  {}", self.commit_latency_ms.line(true));
        println!(
            "errors         {} ({})",
            self.errors,
            stats::format_counts(&self.error_kinds)
        );
    }
}

/// Prepared statements, as the engine's `Statements::prepare` writes them.
struct Statements {
    insert_event: PreparedStatement,
    upsert_message: PreparedStatement,
    insert_message_by_id: PreparedStatement,
    upsert_counters: PreparedStatement,
}

struct Plan {
    session: Session,
    st: Statements,
    mode: Mode,
    batch: u64,
    content_bytes: usize,
    spaces: Vec<Uuid>,
    /// Last seq handed out per space.
    next_seq: Vec<AtomicU64>,
    measure_start: Instant,
    end: Instant,
}

struct WorkerResult {
    latency: Histogram<u64>,
    commits: u64,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    warmup_commits: u64,
    last_measured_completion: Option<Instant>,
}

pub async fn run(args: CqlRawArgs) -> Result<CqlRawReport> {
    if !valid_keyspace(&args.keyspace) {
        bail!(
            "--keyspace {:?}: use lowercase letters, digits and _ (at most 48), starting with a letter",
            args.keyspace
        );
    }
    let nodes: Vec<String> = args
        .nodes
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if nodes.is_empty() {
        bail!("--nodes: give at least one host:port");
    }

    eprintln!("loadtest: connecting to {}", nodes.join(","));
    let session = connect(&nodes).await?;
    eprintln!("loadtest: creating keyspace {} and tables", args.keyspace);
    create_schema(&nodes, &args.keyspace).await?;
    let st = prepare(&session, &args.keyspace).await?;

    let concurrency = args.concurrency as usize;
    let warmup = Duration::from_secs(args.warmup);
    let duration = Duration::from_secs(args.duration);
    let spaces: Vec<Uuid> = (0..args.spaces).map(|_| Uuid::new_v4()).collect();
    let event_bytes = event_json(
        spaces[0],
        1,
        Uuid::new_v4(),
        &sender(0),
        &stats::make_content(stats::now_micros(), args.content_bytes as usize),
        &rfc3339_millis(unix_millis()),
    )
    .len();
    let start = Instant::now();
    let plan = Arc::new(Plan {
        session,
        st,
        mode: args.mode,
        batch: u64::from(args.batch),
        content_bytes: args.content_bytes as usize,
        next_seq: spaces.iter().map(|_| AtomicU64::new(0)).collect(),
        spaces,
        measure_start: start + warmup,
        end: start + warmup + duration,
    });
    eprintln!(
        "loadtest: {concurrency} workers committing {} messages each ({} mode) for {} s (+{} s warm-up)",
        args.batch,
        args.mode.name(),
        args.duration,
        args.warmup
    );
    let workers: Vec<_> = (0..concurrency)
        .map(|w| tokio::spawn(worker(w, Arc::clone(&plan))))
        .collect();

    let mut latency = stats::new_histogram::<u64>();
    let (mut commits, mut errors, mut warmup_commits) = (0, 0, 0);
    let mut error_kinds = BTreeMap::new();
    let mut last_completion = None;
    for handle in workers {
        let r = handle.await.context("cql-raw worker panicked")?;
        // Both histograms auto-resize, so adding cannot fail.
        let _ = latency.add(&r.latency);
        commits += r.commits;
        errors += r.errors;
        warmup_commits += r.warmup_commits;
        for (kind, n) in r.error_kinds {
            *error_kinds.entry(kind).or_default() += n;
        }
        last_completion = last_completion.max(r.last_measured_completion);
    }
    let elapsed = last_completion
        .map(|t| t.saturating_duration_since(plan.measure_start))
        .unwrap_or(duration);
    let messages = commits * u64::from(args.batch);

    Ok(CqlRawReport {
        scenario: "cql-raw",
        mode: args.mode.name(),
        nodes: nodes.join(","),
        keyspace: args.keyspace,
        spaces: args.spaces,
        concurrency: args.concurrency,
        batch: args.batch,
        content_bytes: args.content_bytes,
        event_bytes,
        rows_per_commit: 3 * args.batch + 1,
        requests_per_commit: requests_per_commit(args.mode, args.batch),
        warmup_s: args.warmup,
        duration_s: args.duration,
        elapsed_s: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        commits,
        commits_per_sec: stats::per_second(commits, elapsed),
        messages,
        messages_per_sec: stats::per_second(messages, elapsed),
        commit_latency_ms: LatencySummary::from_micros(&latency),
        errors,
        error_kinds,
        warmup_commits,
    })
}

async fn connect(nodes: &[String]) -> Result<Session> {
    let profile = ExecutionProfile::builder()
        .consistency(Consistency::LocalQuorum)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .build();
    SessionBuilder::new()
        .known_nodes(nodes)
        .connection_timeout(CONNECT_TIMEOUT)
        .default_execution_profile_handle(profile.into_handle())
        .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
        .build()
        .await
        .with_context(|| format!("connecting to CQL nodes {nodes:?}"))
}

/// The engine's schema in `keyspace` (SimpleStrategy, RF 1), created by the engine's migrate.
async fn create_schema(nodes: &[String], keyspace: &str) -> Result<()> {
    let cfg = spacecast_engine::store::cql::CqlConfig {
        nodes: nodes.to_vec(),
        keyspace: keyspace.to_owned(),
        ..Default::default()
    };
    spacecast_engine::store::cql::migrate(&cfg)
        .await
        .with_context(|| format!("creating the schema in keyspace {keyspace}"))?;
    Ok(())
}

async fn prepare(session: &Session, ks: &str) -> Result<Statements> {
    let p = |cql: String| async move {
        let mut st = session
            .prepare(cql.as_str())
            .await
            .with_context(|| format!("preparing {cql}"))?;
        st.set_is_idempotent(true);
        Ok::<_, anyhow::Error>(st)
    };
    Ok(Statements {
        insert_event: p(format!("INSERT INTO {ks}.events_by_space (space_id, bucket, seq, event) VALUES (?, ?, ?, ?)")).await?,
        upsert_message: p(format!("INSERT INTO {ks}.messages_by_space (space_id, bucket, seq, message_id, sender_id, sender_username, sender_picture, content, media_url, media_type, word_count, appreciation_count, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")).await?,
        insert_message_by_id: p(format!("INSERT INTO {ks}.message_by_id (message_id, space_id, seq) VALUES (?, ?, ?)")).await?,
        upsert_counters: p(format!("INSERT INTO {ks}.space_counters_by_id (space_id, head_seq, message_count, member_count) VALUES (?, ?, ?, ?)")).await?,
    })
}

/// Requests one commit of `batch` messages sends when its seqs share one bucket.
fn requests_per_commit(mode: Mode, batch: u32) -> u32 {
    match mode {
        // events + messages (one batch each, or one execute each when batch = 1),
        // one execute per message_by_id row, the counters.
        Mode::Batch => 2 + batch + 1,
        Mode::Concurrent => 3 * batch + 1,
    }
}

/// The seqs `first..first + n` split into runs of one bucket each.
fn bucket_runs(first: u64, n: u64) -> Vec<std::ops::Range<u64>> {
    let end = first + n;
    let mut runs = Vec::new();
    let mut start = first;
    while start < end {
        let stop = ((start / BUCKET_SEQS + 1) * BUCKET_SEQS).min(end);
        runs.push(start..stop);
        start = stop;
    }
    runs
}

/// The sending user of worker `w` (as the sends scenario's `lt-user-<n>`, 64 users).
fn sender(w: usize) -> String {
    format!("lt-user-{}", w % MEMBER_COUNT as usize)
}

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the engine's `Timestamp::to_rfc3339` format.
fn rfc3339_millis(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let ms = millis.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

#[derive(Serialize)]
struct UserJson<'a> {
    user_id: &'a str,
    username: &'a str,
    profile_picture: &'a str,
}

#[derive(Serialize)]
struct MessageJson<'a> {
    message_id: Uuid,
    space_id: Uuid,
    seq: u64,
    sender_id: &'a str,
    content: &'a str,
    media_url: Option<&'a str>,
    media_type: Option<&'a str>,
    word_count: u32,
    sender: UserJson<'a>,
    likes: [u8; 0],
    appreciation_count: u32,
    created_at: &'a str,
}

#[derive(Serialize)]
struct EventJson<'a> {
    space_id: Uuid,
    seq: u64,
    at: &'a str,
    event: &'static str,
    data: MessageJson<'a>,
}

/// A `message_created` event with the engine's field names and order (`SpaceEvent` with the
/// flattened `EventKind`, `Message`, RFC 3339 timestamps).
fn event_json(
    space_id: Uuid,
    seq: u64,
    message_id: Uuid,
    sender: &str,
    content: &str,
    at: &str,
) -> String {
    let event = EventJson {
        space_id,
        seq,
        at,
        event: "message_created",
        data: MessageJson {
            message_id,
            space_id,
            seq,
            sender_id: sender,
            content,
            media_url: None,
            media_type: None,
            word_count: content.split_whitespace().count() as u32,
            sender: UserJson {
                user_id: sender,
                username: sender,
                profile_picture: "",
            },
            likes: [],
            appreciation_count: 0,
            created_at: at,
        },
    };
    serde_json::to_string(&event).expect("an event of strings and numbers serializes")
}

/// One new message of a commit, with everything its three rows need.
struct NewMessage {
    seq: u64,
    message_id: Uuid,
    content: String,
    event: String,
    word_count: i32,
}

type Pending<'a> = Pin<Box<dyn Future<Output = Result<(), ExecutionError>> + Send + 'a>>;

/// One statement as a plain execute.
fn execute<'a>(
    session: &'a Session,
    st: &'a PreparedStatement,
    values: impl SerializeRow + Send + 'a,
) -> Pending<'a> {
    Box::pin(async move { session.execute_unpaged(st, values).await.map(drop) })
}

/// One partition's rows: a plain execute if there is one, else one unlogged batch.
fn write_partition<'a, T>(
    session: &'a Session,
    st: &'a PreparedStatement,
    mut rows: Vec<T>,
) -> Pending<'a>
where
    T: SerializeRow + Send + Sync + 'a,
{
    if rows.len() == 1 {
        let row = rows.pop().expect("one row");
        return execute(session, st, row);
    }
    let mut batch = Batch::new(BatchType::Unlogged);
    batch.set_is_idempotent(true);
    for _ in 0..rows.len() {
        batch.append_statement(st.clone());
    }
    Box::pin(async move { session.batch(&batch, rows).await.map(drop) })
}

/// One commit of `plan.batch` messages, seqs `first..`, in `space`: phase 1 then the counters.
async fn commit(plan: &Plan, space: Uuid, first: u64, sender: &str) -> Result<(), ExecutionError> {
    let s = &plan.st;
    let session = &plan.session;
    let at_millis = unix_millis();
    let at = rfc3339_millis(at_millis);
    let created_at = CqlTimestamp(at_millis);
    let msgs: Vec<NewMessage> = (first..first + plan.batch)
        .map(|seq| {
            let message_id = Uuid::new_v4();
            let content = stats::make_content(stats::now_micros(), plan.content_bytes);
            let event = event_json(space, seq, message_id, sender, &content, &at);
            NewMessage {
                seq,
                message_id,
                word_count: content.split_whitespace().count() as i32,
                content,
                event,
            }
        })
        .collect();
    let event_row = |m: &NewMessage| (space, bucket(m.seq), m.seq as i64, m.event.clone());
    let message_row = |m: &NewMessage| {
        (
            space,
            bucket(m.seq),
            m.seq as i64,
            m.message_id,
            sender.to_owned(),
            sender.to_owned(),
            String::new(),
            m.content.clone(),
            None::<String>,
            None::<&'static str>,
            m.word_count,
            0_i32,
            created_at,
        )
    };

    let mut phase1: Vec<Pending<'_>> = Vec::with_capacity(3 * msgs.len());
    match plan.mode {
        Mode::Batch => {
            for run in bucket_runs(first, plan.batch) {
                let part = &msgs[(run.start - first) as usize..(run.end - first) as usize];
                phase1.push(write_partition(
                    session,
                    &s.insert_event,
                    part.iter().map(event_row).collect(),
                ));
                phase1.push(write_partition(
                    session,
                    &s.upsert_message,
                    part.iter().map(message_row).collect(),
                ));
            }
        }
        Mode::Concurrent => {
            for m in &msgs {
                phase1.push(execute(session, &s.insert_event, event_row(m)));
                phase1.push(execute(session, &s.upsert_message, message_row(m)));
            }
        }
    }
    for m in &msgs {
        phase1.push(execute(
            session,
            &s.insert_message_by_id,
            (m.message_id, space, m.seq as i64),
        ));
    }
    future::try_join_all(phase1).await?;

    let head = (first + plan.batch - 1) as i64;
    session
        .execute_unpaged(&s.upsert_counters, (space, head, head, MEMBER_COUNT))
        .await?;
    Ok(())
}

/// A short, stable label for an error (no counts or ids that would split the tally).
fn error_kind(err: &ExecutionError) -> String {
    match err {
        ExecutionError::RequestTimeout(_) => "client timeout".to_owned(),
        ExecutionError::ConnectionPoolError(_) => "no connection".to_owned(),
        ExecutionError::LastAttemptError(RequestAttemptError::BrokenConnectionError(_)) => {
            "broken connection".to_owned()
        }
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => {
            format!("db: {}", short_label(db))
        }
        other => short_label(other),
    }
}

/// The text before the first `(` or `:`, at most 60 characters.
fn short_label(err: &impl fmt::Display) -> String {
    let text = err.to_string();
    let head = text.split(['(', ':']).next().unwrap_or_default().trim();
    head.chars().take(60).collect()
}

/// One closed loop: commit, wait for it, repeat until the end. Commits started during the
/// warm-up are not measured.
async fn worker(id: usize, plan: Arc<Plan>) -> WorkerResult {
    let sender = sender(id);
    let mut r = WorkerResult {
        latency: stats::new_histogram(),
        commits: 0,
        errors: 0,
        error_kinds: BTreeMap::new(),
        warmup_commits: 0,
        last_measured_completion: None,
    };
    for k in 0.. {
        let started = Instant::now();
        if started >= plan.end {
            break;
        }
        let idx = (id + k) % plan.spaces.len();
        let first = plan.next_seq[idx].fetch_add(plan.batch, Ordering::Relaxed) + 1;
        let outcome = commit(&plan, plan.spaces[idx], first, &sender).await;
        let done = Instant::now();
        let measured = started >= plan.measure_start;
        match outcome {
            Ok(()) if measured => {
                r.commits += 1;
                let micros = u64::try_from((done - started).as_micros()).unwrap_or(u64::MAX);
                stats::record_micros(&mut r.latency, micros);
                r.last_measured_completion = Some(done);
            }
            Ok(()) => r.warmup_commits += 1,
            Err(err) => {
                if measured {
                    r.errors += 1;
                    *r.error_kinds.entry(error_kind(&err)).or_default() += 1;
                    r.last_measured_completion = Some(done);
                }
                sleep_until((done + ERROR_BACKOFF).min(plan.end).into()).await;
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_runs_split_at_bucket_boundaries() {
        assert_eq!(bucket_runs(1, 16), vec![1..17]);
        assert_eq!(
            bucket_runs(BUCKET_SEQS - 3, 16),
            vec![BUCKET_SEQS - 3..BUCKET_SEQS, BUCKET_SEQS..BUCKET_SEQS + 13]
        );
        assert_eq!(
            bucket_runs(BUCKET_SEQS, 1),
            vec![BUCKET_SEQS..BUCKET_SEQS + 1]
        );
        let runs = bucket_runs(5, 3 * BUCKET_SEQS);
        assert_eq!(runs.len(), 4);
        assert_eq!(
            runs.iter().map(|r| r.end - r.start).sum::<u64>(),
            3 * BUCKET_SEQS
        );
        assert!(runs.iter().all(|r| bucket(r.start) == bucket(r.end - 1)));
    }

    #[test]
    fn timestamps_match_the_engine_format() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            rfc3339_millis(1_700_000_000_000),
            "2023-11-14T22:13:20.000Z"
        );
        assert_eq!(
            rfc3339_millis(4_102_444_799_999),
            "2099-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn events_have_the_engine_shape() {
        let space = Uuid::nil();
        let content = stats::make_content(42, 100);
        let json = event_json(
            space,
            7,
            Uuid::nil(),
            "lt-user-3",
            &content,
            "2023-11-14T22:13:20.000Z",
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["event"], "message_created");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["data"]["content"], content.as_str());
        assert_eq!(v["data"]["word_count"], 2);
        assert_eq!(v["data"]["sender"]["username"], "lt-user-3");
        assert_eq!(v["data"]["likes"], serde_json::json!([]));
        assert!(v["data"]["media_url"].is_null());
        // 100 B of content makes an event of about half a kilobyte.
        assert!((450..700).contains(&json.len()), "{} bytes", json.len());
    }

    #[test]
    fn request_counts() {
        assert_eq!(requests_per_commit(Mode::Batch, 16), 19);
        assert_eq!(requests_per_commit(Mode::Concurrent, 16), 49);
    }

    #[test]
    fn error_labels_are_short_and_stable() {
        let e = ExecutionError::RequestTimeout(Duration::from_secs(5));
        assert_eq!(error_kind(&e), "client timeout");
        assert_eq!(
            short_label(&"Write timeout (received: 0, required: 1)"),
            "Write timeout"
        );
        assert_eq!(short_label(&"x".repeat(100)).len(), 60);
    }
}
