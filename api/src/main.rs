//! `spacecast`: see `spacecast --help`, and the crate docs of `spacecast_api`.

use std::process::ExitCode;

use clap::Parser;
use spacecast_api::cli::{self, Cli, Command};
use spacecast_observability::{LogFormat, Metrics, init_tracing};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token(args)) => match cli::token(args) {
            Ok(t) => {
                println!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("spacecast token: {e:#}");
                ExitCode::from(2)
            }
        },
        Some(Command::Migrate(args)) => migrate(args, cli.config.as_deref()),
        Some(Command::Serve(args)) => serve(args, cli.config.as_deref()),
        None => serve(cli.serve, cli.config.as_deref()),
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("spacecast: cannot start the runtime: {e}");
            None
        }
    }
}

fn migrate(args: spacecast_api::config::ConfigArgs, file: Option<&std::path::Path>) -> ExitCode {
    let config = match cli::resolve(args, file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("spacecast migrate: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(
        "info,warp=warn",
        if config.json_logs {
            LogFormat::Json
        } else {
            LogFormat::Text
        },
    );
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let keyspace = config.cql_keyspace.clone();
    match runtime.block_on(spacecast_api::server::migrate(config)) {
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

fn serve(args: spacecast_api::config::ConfigArgs, file: Option<&std::path::Path>) -> ExitCode {
    let config = match cli::resolve(args, file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("spacecast: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(
        "info,warp=warn",
        if config.json_logs {
            LogFormat::Json
        } else {
            LogFormat::Text
        },
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("spacecast: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(spacecast_api::server::serve(config, Metrics::new())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("spacecast failed: {e:#}");
            eprintln!("spacecast: {e:#}");
            ExitCode::FAILURE
        }
    }
}
