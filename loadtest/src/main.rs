//! `loadtest`: load generator for a running Spacecast server.
//!
//! It talks only to `--url` (plain http on a loopback address) and mints its
//! own HS256 tokens with `--jwt-secret` for synthetic users `lt-user-<n>`.
//! Every scenario is bounded in size and time and stops by itself. Each
//! prints a human-readable summary and, with `--json`, one JSON object line.
//!
//! Scenarios:
//!
//! * `sends`: creates `--spaces` spaces (every sending user joins every
//!   space), then `--concurrency` closed-loop workers send ~100-byte JSON
//!   messages round-robin over the spaces through one pooled HTTP client.
//!   After `--warmup` seconds, `--duration` seconds are measured: the
//!   request → 201 latency of each acknowledged send goes into an HDR
//!   histogram (µs). Reports acknowledged sends/s, p50/p90/p99/p99.9/max ack
//!   latency, rejections (429/503, not errors and not in the histogram; the
//!   worker honours Retry-After up to 1 s) and errors.
//!
//! * `fanout`: creates one space, joins the `--subscribers` users to it over
//!   REST (`--no-rest-join` skips that), opens one WebSocket per subscriber
//!   (`--connect-concurrency` handshakes at a time), waits until all have `joined`, then one publisher sends `--rate`
//!   messages per second via REST for `--duration` seconds. Each content
//!   embeds the send time (`lt:<µs on a process-wide monotonic clock>`);
//!   subscribers record receive − send into their own histogram (merged at
//!   the end) and check that event `seq`s grow by exactly one. After
//!   publishing it waits up to `--drain-timeout` seconds for every
//!   subscriber to receive every acknowledged message. Reports sent/acked
//!   messages, expected and actual deliveries, deliveries/s, delivery
//!   latency percentiles, seq gaps, and subscribers closed by the server
//!   with their close codes (4008 = too slow).
//!
//! * `cql-raw`: no Spacecast server at all. Connects to a Cassandra / ScyllaDB
//!   cluster (`--nodes`), creates `--keyspace` and the four tables a message
//!   commit writes (DDL copied from the engine), then `--concurrency`
//!   closed-loop workers each repeat what `CqlStore::commit` writes for
//!   `--batch` new messages: events and messages rows (one unlogged batch per
//!   partition with `--mode batch`, one execute per row with `--mode
//!   concurrent`) and the message_by_id rows, concurrently, then the space's
//!   counters row. Reports commits/s, messages/s (commits × batch), commit
//!   latency percentiles and errors: the capacity the engine's sends/s on
//!   `--store cql` can be compared with.
//!
//! `--threads` limits the loadtest's own runtime, which matters when it
//! shares the machine with the server.

mod api;
mod cql_raw;
mod fanout;
mod sends;
mod stats;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about = "Load generator for Spacecast")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Acknowledged REST sends from concurrent closed-loop workers.
    Sends(sends::SendsArgs),
    /// One paced publisher, many WebSocket subscribers on one space.
    Fanout(fanout::FanoutArgs),
    /// Raw CQL writes shaped like the engine's group commits (no server).
    CqlRaw(cql_raw::CqlRawArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.scenario {
        Scenario::Sends(args) => args.common.threads,
        Scenario::Fanout(args) => args.common.threads,
        Scenario::CqlRaw(args) => args.threads,
    };
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
    match cli.scenario {
        Scenario::Sends(args) => {
            let json = args.common.json;
            let report = sends::run(args).await?;
            report.print_human();
            print_json(json, &report)
        }
        Scenario::Fanout(args) => {
            let json = args.common.json;
            let report = fanout::run(args).await?;
            report.print_human();
            print_json(json, &report)
        }
        Scenario::CqlRaw(args) => {
            let json = args.json;
            let report = cql_raw::run(args).await?;
            report.print_human();
            print_json(json, &report)
        }
    }
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
    fn parses_scenarios_with_defaults() {
        let cli = Cli::try_parse_from(["loadtest", "sends", "--jwt-secret", "s"]).unwrap();
        let Scenario::Sends(args) = cli.scenario else {
            panic!("expected sends")
        };
        assert_eq!((args.spaces, args.concurrency, args.duration), (8, 64, 20));
        assert_eq!(args.common.url, "http://127.0.0.1:8080");

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
        assert_eq!((args.subscribers, args.rate, args.duration), (10, 5, 20));
        assert!(args.common.json);

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
    fn rejects_out_of_range_values() {
        assert!(
            Cli::try_parse_from(["loadtest", "sends", "--jwt-secret", "s", "--spaces", "0"])
                .is_err()
        );
        assert!(
            Cli::try_parse_from(["loadtest", "fanout", "--jwt-secret", "s", "--rate", "0"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["loadtest", "cql-raw", "--batch", "0"]).is_err());
        assert!(Cli::try_parse_from(["loadtest", "cql-raw", "--mode", "logged"]).is_err());
    }
}
