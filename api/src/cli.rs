//! The command line: `spacecast [serve]`, `spacecast token`, `spacecast migrate`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::auth;
use crate::config::{ConfigArgs, ConfigError};

#[derive(Parser, Debug)]
#[command(
    name = "spacecast",
    version,
    about = "Spacecast: a realtime messaging engine"
)]
pub struct Cli {
    /// Optional TOML file with any option below (keys like `data_dir`).
    #[arg(long, global = true, env = "SPACECAST_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ConfigArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default).
    Serve(ConfigArgs),
    /// Print a development token that a server with the same data dir (or secret) accepts.
    Token(TokenArgs),
    /// Apply the CQL schema (for `--store cql`).
    Migrate(ConfigArgs),
}

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    #[arg(long)]
    pub user_id: String,
    #[arg(long)]
    pub username: String,
    #[arg(long)]
    pub picture: Option<String>,
    /// Lifetime, e.g. `24h`, `30m`, `7d`.
    #[arg(long, default_value = "24h")]
    pub ttl: String,
    #[arg(long, env = "SPACECAST_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, env = "SPACECAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
}

/// Resolves the options of `serve`/`migrate`: flags and env vars, then the config file.
///
/// # Errors
/// An unreadable config file or an invalid option.
pub fn resolve(
    args: ConfigArgs,
    file: Option<&std::path::Path>,
) -> Result<crate::config::Config, ConfigError> {
    let args = match file {
        Some(f) => args.merge_file(f)?,
        None => args,
    };
    args.validate()
}

/// Runs `spacecast token`: prints the token on stdout.
///
/// # Errors
/// A bad TTL or an unreadable data dir.
pub fn token(args: TokenArgs) -> anyhow::Result<String> {
    let ttl: Duration = humantime::parse_duration(&args.ttl)
        .map_err(|e| anyhow::anyhow!("--ttl {:?}: {e}", args.ttl))?;
    let data_dir = args.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
    let secret = auth::load_or_create_secret(args.jwt_secret.as_deref(), &data_dir)?;
    auth::mint(
        &secret,
        &args.user_id,
        &args.username,
        args.picture.as_deref(),
        ttl,
    )
}
