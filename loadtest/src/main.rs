//! `loadtest`: load generator to size a Spacecast deployment and to compare it with Centrifugo.
//!
//! It talks only to `--url` (plain http on a loopback address) and mints its own HS256 tokens
//! with `--jwt-secret` for synthetic users `lt-user-<n>`. `--url` may name several servers, the
//! nodes of one cluster ([`nodes`]): setup goes through the first, and `--send-url` /
//! `--subscribe-url` choose which nodes the senders and the subscribers use (round-robin;
//! default: every `--url`); `--nats-monitor` makes the reports name each space's owner node. Every scenario is bounded in size and
//! time and stops by itself, prints a human summary on stdout and, with `--json`, the report as
//! one JSON object on the last stdout line. At start it raises its soft `RLIMIT_NOFILE` to the
//! hard limit.
//!
//! Scenarios:
//!
//! * `sends`: creates `--spaces` spaces (every sending user joins every space), then
//!   `--concurrency` closed-loop workers send ~100-byte JSON messages round-robin over the spaces
//!   through one pooled HTTP client. After `--warmup` seconds, `--duration` seconds are measured:
//!   the request → 201 latency of each acknowledged send goes into an HDR histogram (µs).
//!   Reports acknowledged sends/s, ack latency percentiles, rejections (429/503, not errors and
//!   not in the histogram; the worker honours Retry-After up to 1 s) and errors. This is the
//!   server's capacity; the scenarios below measure latency at a fixed offered load.
//!
//! * `presence`: one space, `--subscribers` sessions and a changer alternating its presence
//!   status: frames and server CPU (`--server-pid`) per change, and over a quiet window the
//!   count broadcasts above `--presence-max-subscribers` (see `presence.rs`).
//!
//! * The load scenarios, one engine on the [`target::Target`] trait (`--target spacecast`, the
//!   default: REST sends + `/v1/stream`; `--target centrifugo`: HTTP API publishes with
//!   `--api-key` + the JSON client protocol, `--jwt-secret` being its token HMAC key):
//!   - `fanout`: `--spaces` S × `--subscribers` C connections (each its own user, subscriber k in
//!     space k mod S), then publishing at `--rate` R msg/s over all spaces (round-robin) for
//!     `--duration` s, then up to `--drain-timeout` s for outstanding deliveries.
//!   - `ingest`: publishing only, nobody subscribed: acknowledgement latency at rate R.
//!   - `mixed`: fan-out plus `--churn` connections per second opened, subscribed and closed.
//!   - `connect-storm`: C connections as fast as `--connect-concurrency` allows; connect
//!     latency, connects/s and failures by code.
//!   - `idle`: C subscribed connections held `--duration` s: the server's RSS per connection.
//!   - `soak`: a long fan-out (default 600 s) with the server's RSS sampled over time.
//!
//!   Publishing is open loop ([`schedule`]): message i is due at start + i/R whatever the
//!   server did with the previous ones, a late publisher sends every overdue message rather than
//!   skipping any, and every latency counts from the due time, which is also the timestamp in
//!   the content (`lt:<µs>` on `CLOCK_REALTIME`, shared by every loadtest process on the
//!   machine), so a stall cannot hide behind fewer samples (coordinated omission). Measured
//!   with HDR histograms: publish → delivery latency at every subscriber, publish → ack
//!   latency, connect latency, deliveries/s, errors by stable code (publish failures, close
//!   codes, malformed frames: a bad frame is counted, never a crash), sequence gaps and
//!   duplicates (Spacecast `seq`, Centrifugo channel `offset`). With `--server-pid`, the
//!   server's CPU seconds (µs per delivery) and RSS from `/proc`; always the load generator's own
//!   CPU, flagged `saturated` when a process used ≥ 90 % of a core. `--server-cpus` pins the
//!   server's threads and the loadtest to disjoint CPUs. `--source-addrs N` binds connections
//!   to 127.0.0.1..=127.0.0.N (more than one address's ports); `--processes N` spreads the
//!   subscribers over N child processes (each under its own descriptor limit) whose histograms
//!   the parent merges. A progress line (indicatif) goes to stderr when it is a terminal
//!   (`--quiet`: none); `--report-dir` writes `report.json` and `latency.svg` (p50/p90/p99/max
//!   of delivery latency per second).
//!
//! * `failover`: a cluster under a steady open-loop send load into `--spaces` spaces through
//!   every node; `--kills` times, the owner of one space (from NATS monitoring) is killed and
//!   restarted by a driver speaking a line protocol on stdin/stdout (`scripts/bench.sh
//!   failover`), and the time from each kill to the first acknowledged send started after it
//!   is reported (min / median / max), with how the sends in flight at the kill ended.
//!
//! * `sends --kind v1|v1-rich|react`: the same closed loop on the native surface: plain `/v1`
//!   sends, sends with every rich field (msgtype, body, metadata, mentions, local_id, an
//!   idempotency key), or reaction toggles (`PUT`/`DELETE …/reactions/👍` alternately, each
//!   worker as its own user, on one message per space). `--space-id` reuses spaces,
//!   `--max-sends` stops after that many acknowledgements (to fill a space).
//!
//! * `reads --path P…`: closed-loop `GET`s of fixed paths (cursor pages at any position, with
//!   filters, stats), each path's latency on its own.
//!
//! * `unread --spaces N`: `lt-user-0` joins N spaces of `lt-user-1` (one unread message in every
//!   other one), then the `reads` loop measures `GET /v1/me/unread` and `GET /v1/me/spaces`.
//!
//! * `search --messages N`: N messages over REST, each acknowledged probe timed until a search
//!   finds it (freshness at the ingest's rate), then the `reads` loop measures message search
//!   queries (selective and common words, one space and every readable space).
//!
//! * `compare FILE…`: reads report JSON lines and prints the side-by-side markdown table of
//!   `scripts/bench.sh compare` (per step: Spacecast, Centrifugo, ratio S / C).
//!
//! * `cql-raw`: no Spacecast server at all. Connects to a Cassandra / ScyllaDB cluster
//!   (`--nodes`), creates `--keyspace` and the four tables a message commit writes (DDL copied
//!   from the engine), then `--concurrency` closed-loop workers each repeat what
//!   `CqlStore::commit` writes for `--batch` new messages: events and messages rows (one
//!   unlogged batch per partition with `--mode batch`, one execute per row with `--mode
//!   concurrent`) and the message_by_id rows, concurrently, then the space's counters row.
//!   Reports commits/s, messages/s (commits × batch), commit latency percentiles and errors: the
//!   capacity the engine's sends/s on `--store cql` can be compared with.
//!
//! `--threads` limits the loadtest's own runtime, which matters when it shares the machine with
//! the server.

mod api;
mod chart;
mod cql_raw;
mod failover;
mod load;
mod nodes;
mod presence;
mod procstat;
mod reads;
mod report;
mod schedule;
mod search;
mod sends;
mod stats;
mod target;
mod unread;

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::load::{Kind, LoadArgs};

#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    version,
    about = "Load generator for Spacecast (and Centrifugo, to compare)"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Acknowledged REST sends from concurrent closed-loop workers.
    Sends(sends::SendsArgs),
    /// S spaces × C subscribers, open-loop publishing at R msg/s: delivery latency at every
    /// subscriber.
    Fanout(LoadArgs),
    /// Open-loop publishing at R msg/s over S spaces, nobody subscribed: ack latency.
    Ingest(LoadArgs),
    /// Fan-out plus connection churn (`--churn` connects/s) during the run.
    Mixed(LoadArgs),
    /// Opens C connections as fast as allowed: connect latency, connects/s, failures.
    ConnectStorm(LoadArgs),
    /// Holds C subscribed connections for --duration s: the server's memory per connection.
    Idle(LoadArgs),
    /// A long fan-out (default 600 s) with the server's RSS over time.
    Soak(LoadArgs),
    /// Closed-loop GETs of fixed paths (cursor pages, filters, stats), each measured on its own.
    Reads(reads::ReadsArgs),
    /// A user in many spaces (default 1,000): `GET /v1/me/unread` and the inbox, measured.
    Unread(unread::UnreadArgs),
    /// Message search: ingest with freshness probes, then query latency over the index.
    Search(search::SearchArgs),
    /// One space with many subscribers: server CPU and frames per presence change, and the
    /// cost of the periodic count above the threshold.
    Presence(presence::PresenceArgs),
    /// Raw CQL writes shaped like the engine's group commits (no server).
    CqlRaw(cql_raw::CqlRawArgs),
    /// A cluster under steady sends; kills a space's owner node N times (through a driver on
    /// stdin/stdout) and measures each failover: kill → first acknowledged send after it.
    Failover(failover::FailoverArgs),
    /// Reads report JSON lines and prints the Spacecast / Centrifugo markdown table.
    Compare(CompareArgs),
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// Files of JSON lines (`--json` output); other lines are ignored.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

enum Split {
    Load(Kind, LoadArgs),
    Other(Scenario),
}

impl Scenario {
    /// The load scenarios (one engine, several shapes); any other is handed back.
    fn into_load(self) -> Split {
        match self {
            Scenario::Fanout(a) => Split::Load(Kind::Fanout, a),
            Scenario::Ingest(a) => Split::Load(Kind::Ingest, a),
            Scenario::Mixed(a) => Split::Load(Kind::Mixed, a),
            Scenario::ConnectStorm(a) => Split::Load(Kind::ConnectStorm, a),
            Scenario::Idle(a) => Split::Load(Kind::Idle, a),
            Scenario::Soak(a) => Split::Load(Kind::Soak, a),
            other => Split::Other(other),
        }
    }

    fn threads(&self) -> Option<u32> {
        match self {
            Scenario::Sends(a) => a.common.threads,
            Scenario::Reads(a) => a.common.threads,
            Scenario::Unread(a) => a.common.threads,
            Scenario::Search(a) => a.common.threads,
            Scenario::Presence(a) => a.common.threads,
            Scenario::CqlRaw(a) => a.threads,
            Scenario::Failover(a) => a.common.threads,
            Scenario::Compare(_) => Some(1),
            Scenario::Fanout(a)
            | Scenario::Ingest(a)
            | Scenario::Mixed(a)
            | Scenario::ConnectStorm(a)
            | Scenario::Idle(a)
            | Scenario::Soak(a) => a.common.threads,
        }
    }
}

fn main() -> ExitCode {
    install_tls_provider();
    let cli = Cli::parse();
    // Thousands of sockets: the soft descriptor limit goes up to the hard one.
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("loadtest: warning: could not raise RLIMIT_NOFILE: {err}");
    }
    let threads = cli.scenario.threads();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = threads {
        builder.worker_threads(threads as usize);
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("loadtest: error: starting the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("loadtest: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let scenario = match cli.scenario.into_load() {
        Split::Load(kind, args) => {
            let json = args.common.json;
            // A --processes child prints its measurements itself.
            if let Some(report) = load::run(kind, args).await? {
                print!("{}", report.summary());
                print_json(json, &report)?;
            }
            return Ok(());
        }
        Split::Other(other) => other,
    };
    match scenario {
        Scenario::Sends(args) => {
            let json = args.common.json;
            let report = sends::run(args).await?;
            report.print_human();
            print_json(json, &report)
        }
        Scenario::Reads(args) => {
            let json = args.common.json;
            let report = reads::run(args).await?;
            report.print_human();
            print_json(json, &report)
        }
        Scenario::Unread(args) => {
            let json = args.common.json;
            let report = unread::run(args).await?;
            report.print_human();
            print_json(json, &report)
        }
        Scenario::Search(args) => {
            let json = args.common.json;
            let report = search::run(args).await?;
            report.print_human();
            print_json(json, &report)
        }
        Scenario::Presence(args) if args.hold => presence::hold(args).await,
        Scenario::Presence(args) => {
            let json = args.common.json;
            let report = presence::run(args).await?;
            report.print_human();
            print_json(json, &report)
        }
        Scenario::CqlRaw(args) => {
            let json = args.json;
            let report = cql_raw::run(args).await?;
            report.print_human();
            print_json(json, &report)
        }
        Scenario::Failover(args) => {
            let json = args.common.json;
            let report = failover::run(args).await?;
            report.print_human();
            print_json(json, &report)
        }
        Scenario::Compare(args) => {
            let mut text = String::new();
            for file in &args.files {
                text.push_str(
                    &std::fs::read_to_string(file)
                        .with_context(|| format!("reading {}", file.display()))?,
                );
                text.push('\n');
            }
            let reports = report::parse_reports(&text)?;
            print!("{}", report::compare_table(&reports));
            Ok(())
        }
        Scenario::Fanout(_)
        | Scenario::Ingest(_)
        | Scenario::Mixed(_)
        | Scenario::ConnectStorm(_)
        | Scenario::Idle(_)
        | Scenario::Soak(_) => Ok(()),
    }
}

/// Installs `ring` as rustls' crypto provider (idempotent). In a workspace build `reqwest` has
/// rustls without a bundled provider (for the server's S3 client), and building a client without
/// one panics; loadtest itself speaks only plain HTTP.
#[allow(deprecated)] // rustls 0.23.48: ring has no post-quantum key exchange; it is the project's one provider
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn print_json(enabled: bool, report: &impl Serialize) -> Result<()> {
    if enabled {
        println!("{}", serde_json::to_string(report)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_presence_scenario() {
        let cli = Cli::try_parse_from(["loadtest", "presence", "--jwt-secret", "s"]).unwrap();
        let Scenario::Presence(args) = cli.scenario else {
            panic!("expected presence")
        };
        assert_eq!(
            (args.subscribers, args.changes, args.pace_ms, args.window),
            (500, 200, 20, 10)
        );
        assert!(args.server_pid.is_empty() && !args.hold);
        let cli = Cli::try_parse_from([
            "loadtest",
            "presence",
            "--jwt-secret",
            "s",
            "--server-pid",
            "1,2,3",
        ])
        .unwrap();
        let Scenario::Presence(args) = cli.scenario else {
            panic!("expected presence")
        };
        assert_eq!(args.server_pid, [1, 2, 3]);
        // A helper needs its space.
        assert!(
            Cli::try_parse_from(["loadtest", "presence", "--jwt-secret", "s", "--hold"]).is_err()
        );
        assert!(
            Cli::try_parse_from([
                "loadtest",
                "presence",
                "--jwt-secret",
                "s",
                "--subscribers",
                "0"
            ])
            .is_err()
        );
    }

    #[test]
    fn parses_scenarios_with_defaults() {
        let cli = Cli::try_parse_from(["loadtest", "sends", "--jwt-secret", "s"]).unwrap();
        let Scenario::Sends(args) = cli.scenario else {
            panic!("expected sends")
        };
        assert_eq!((args.spaces, args.concurrency, args.duration), (8, 64, 20));
        assert_eq!(args.common.urls, ["http://127.0.0.1:8080"]);
        assert!(args.common.send_urls.is_empty());

        let cli = Cli::try_parse_from([
            "loadtest",
            "fanout",
            "--jwt-secret",
            "s",
            "--subscribers",
            "10",
            "--rate",
            "5",
            "--json",
        ])
        .unwrap();
        let Scenario::Fanout(args) = cli.scenario else {
            panic!("expected fanout")
        };
        assert_eq!(
            (args.subscribers, args.rate, args.duration),
            (Some(10), Some(5), None)
        );
        assert!(args.common.json);
        assert_eq!(args.target, load::TargetKind::Spacecast);

        let cli = Cli::try_parse_from([
            "loadtest",
            "idle",
            "--target",
            "centrifugo",
            "--api-key",
            "k",
            "--jwt-secret",
            "s",
            "--processes",
            "2",
            "--source-addrs",
            "8",
            "--server-pid",
            "1",
        ])
        .unwrap();
        let Split::Load(load::Kind::Idle, args) = cli.scenario.into_load() else {
            panic!("expected idle")
        };
        assert_eq!(args.target, load::TargetKind::Centrifugo);
        assert_eq!((args.processes, args.source_addrs), (2, 8));
        assert_eq!((args.server_pid, args.api_key.as_str()), (vec![1], "k"));

        let cli = Cli::try_parse_from(["loadtest", "compare", "a.jsonl", "b.jsonl"]).unwrap();
        assert!(matches!(cli.scenario, Scenario::Compare(ref c) if c.files.len() == 2));

        // No server, so no --jwt-secret.
        let cli = Cli::try_parse_from(["loadtest", "cql-raw"]).unwrap();
        let Scenario::CqlRaw(args) = cli.scenario else {
            panic!("expected cql-raw")
        };
        assert_eq!(
            (args.spaces, args.concurrency, args.batch, args.duration),
            (8, 64, 16, 20)
        );
        assert_eq!(
            (args.nodes.as_str(), args.keyspace.as_str()),
            ("127.0.0.1:9042", "bench_raw")
        );
        assert_eq!(args.mode, cql_raw::Mode::Batch);

        let cli = Cli::try_parse_from([
            "loadtest",
            "cql-raw",
            "--mode",
            "concurrent",
            "--batch",
            "1",
        ])
        .unwrap();
        let Scenario::CqlRaw(args) = cli.scenario else {
            panic!("expected cql-raw")
        };
        assert_eq!((args.mode, args.batch), (cql_raw::Mode::Concurrent, 1));
    }

    #[test]
    fn parses_several_servers() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "sends",
            "--jwt-secret",
            "s",
            "--url",
            "http://127.0.0.1:1,http://127.0.0.1:2",
            "--url",
            "http://127.0.0.1:3",
            "--send-url",
            "http://127.0.0.1:2",
            "--nats-monitor",
            "http://127.0.0.1:18222",
        ])
        .unwrap();
        let Scenario::Sends(args) = cli.scenario else {
            panic!("expected sends")
        };
        assert_eq!(
            args.common.urls,
            [
                "http://127.0.0.1:1",
                "http://127.0.0.1:2",
                "http://127.0.0.1:3"
            ]
        );
        assert_eq!(args.common.send_urls, ["http://127.0.0.1:2"]);
        assert_eq!(
            args.common.nats_monitor.as_deref(),
            Some("http://127.0.0.1:18222")
        );

        let cli = Cli::try_parse_from([
            "loadtest",
            "fanout",
            "--jwt-secret",
            "s",
            "--url",
            "http://127.0.0.1:1",
            "--subscribe-url",
            "http://127.0.0.1:1,http://127.0.0.1:2,http://127.0.0.1:3",
            "--server-pid",
            "10,11",
            "--server-pid",
            "12",
        ])
        .unwrap();
        let Scenario::Fanout(args) = cli.scenario else {
            panic!("expected fanout")
        };
        assert_eq!(args.subscribe_urls.len(), 3);
        assert_eq!(args.server_pid, [10, 11, 12]);

        let cli = Cli::try_parse_from([
            "loadtest",
            "failover",
            "--jwt-secret",
            "s",
            "--url",
            "http://127.0.0.1:1,http://127.0.0.1:2",
            "--nats-monitor",
            "http://127.0.0.1:18222",
        ])
        .unwrap();
        let Scenario::Failover(args) = cli.scenario else {
            panic!("expected failover")
        };
        assert_eq!((args.spaces, args.rate, args.kills), (4, 20, 10));
        assert_eq!(args.common.urls.len(), 2);
    }

    #[test]
    fn rejects_out_of_range_values() {
        assert!(
            Cli::try_parse_from(["loadtest", "sends", "--jwt-secret", "s", "--spaces", "0"])
                .is_err()
        );
        assert!(
            Cli::try_parse_from(["loadtest", "fanout", "--jwt-secret", "s", "--rate", "0"])
                .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "loadtest",
                "idle",
                "--jwt-secret",
                "s",
                "--source-addrs",
                "255"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["loadtest", "compare"]).is_err());
        assert!(Cli::try_parse_from(["loadtest", "cql-raw", "--batch", "0"]).is_err());
        assert!(Cli::try_parse_from(["loadtest", "cql-raw", "--mode", "logged"]).is_err());
        assert!(
            Cli::try_parse_from(["loadtest", "failover", "--jwt-secret", "s", "--kills", "0"])
                .is_err()
        );
    }
}
