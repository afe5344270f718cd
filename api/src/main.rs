//! `spacecast`: see `spacecast --help`, and the crate docs of `spacecast_api`.

use std::process::ExitCode;

use clap::Parser;
use spacecast_api::cli::{self, Cli, Command};
use spacecast_api::config::{Config, ConfigArgs};
use spacecast_observability::trace::{self, TraceExport, Tracing};
use spacecast_observability::{LogFormat, Metrics};

fn main() -> ExitCode {
    // One TLS crypto provider for the whole process (ring), before any client connects.
    spacecast_api::install_tls_provider();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token(args)) => match cli::token(args, cli.serve, cli.config.as_deref()) {
            Ok(t) => {
                println!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("spacecast token: {e:#}");
                ExitCode::from(2)
            }
        },
        Some(Command::Openapi) => {
            use std::io::Write;
            let json = spacecast_api::openapi::document_json();
            match std::io::stdout().lock().write_all(&json) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("spacecast openapi: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Migrate(args)) => migrate(args, cli.config.as_deref()),
        Some(Command::Serve(args)) => serve(args, cli.config.as_deref()),
        None => serve(cli.serve, cli.config.as_deref()),
    }
}

/// What `serve` and `migrate` share: the resolved configuration (exit 2 when invalid), the
/// runtime, and logging with the trace exporter (built inside the runtime: the gRPC client
/// lives on it).
fn prepare(
    command: &str,
    args: ConfigArgs,
    file: Option<&std::path::Path>,
) -> Result<(Config, tokio::runtime::Runtime, Tracing), ExitCode> {
    let config = cli::resolve(args, file).map_err(|e| {
        eprintln!("{command}: {e}");
        ExitCode::from(2)
    })?;
    let format = if config.json_logs {
        LogFormat::Json
    } else {
        LogFormat::Text
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("{command}: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })?;
    let export = TraceExport {
        endpoint: config.otlp_endpoint.clone(),
        protocol: config.otlp_protocol,
        sample_ratio: config.trace_sample_ratio,
        node_id: config.node_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let tracing = {
        let _rt = runtime.enter();
        trace::init("info,warp=warn", format, &export)
    }
    .map_err(|e| {
        eprintln!("{command}: {e}");
        ExitCode::from(2)
    })?;
    let mut config = config;
    config.exported_trace_ratio = tracing.sample_ratio();
    if let Some(ratio) = config.exported_trace_ratio {
        tracing::info!(endpoint = ?export.endpoint, ratio, "exporting traces over OTLP");
    }
    raise_descriptor_limit();
    Ok((config, runtime, tracing))
}

/// How long the exporter may take to send the last spans at exit.
const TRACE_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Raises the soft `RLIMIT_NOFILE` to the hard limit: every connection holds a descriptor, and the
/// usual soft default (1024) would cap the server far below its configured limits. The server
/// then fits its connection caps to the result (`listener::fit_descriptors`).
fn raise_descriptor_limit() {
    match (
        rlimit::getrlimit(rlimit::Resource::NOFILE),
        rlimit::increase_nofile_limit(u64::MAX),
    ) {
        (Ok((before, hard)), Ok(now)) => {
            tracing::info!(before, now, hard, "descriptor limit (RLIMIT_NOFILE)");
        }
        (_, Err(e)) | (Err(e), _) => {
            tracing::warn!(error = %e, "cannot raise the descriptor limit (RLIMIT_NOFILE)");
        }
    }
}

fn migrate(args: ConfigArgs, file: Option<&std::path::Path>) -> ExitCode {
    let (config, runtime, tracing) = match prepare("spacecast migrate", args, file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let keyspace = config.cql_keyspace.clone();
    let r = runtime.block_on(spacecast_api::server::migrate(config));
    tracing.shutdown(TRACE_FLUSH_TIMEOUT);
    match r {
        Ok(version) => {
            println!("spacecast migrate: keyspace {keyspace} is at schema version {version}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("spacecast migrate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ConfigArgs, file: Option<&std::path::Path>) -> ExitCode {
    let (config, runtime, tracing) = match prepare("spacecast", args, file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let r = runtime.block_on(spacecast_api::server::serve(config, Metrics::new()));
    // After the drain: the spans of the last requests and commits are exported too.
    tracing.shutdown(TRACE_FLUSH_TIMEOUT);
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("spacecast failed: {e:#}");
            eprintln!("spacecast: {e:#}");
            ExitCode::FAILURE
        }
    }
}
