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
    /// Print the OpenAPI document the server serves at `/openapi.json`.
    Openapi,
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
/// `data_dir` and `jwt_secret` resolve exactly as `serve` resolves them (flag, env var, the
/// `--config` file, default; `env` holds the other options' env vars, e.g.
/// `SPACECAST_JWT_PUBLIC_KEY`), so the token is signed with the secret the server verifies with.
/// The claims must pass the server's own bounds, so a token it would refuse is never minted.
///
/// # Errors
/// A bad TTL, an invalid config file or claim, a server that accepts only public-key tokens,
/// or an unreadable data dir.
pub fn token(
    args: TokenArgs,
    env: ConfigArgs,
    file: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    let ttl: Duration = humantime::parse_duration(&args.ttl)
        .map_err(|e| anyhow::anyhow!("--ttl {:?}: {e}", args.ttl))?;
    auth::check_user_id(&args.user_id).map_err(|e| anyhow::anyhow!("--user-id: {e}"))?;
    let username = auth::normalize_username(Some(&args.username))
        .map_err(|e| anyhow::anyhow!("--username: {e}"))?
        .unwrap_or_else(|| args.user_id.clone());
    let picture = match args.picture.as_deref() {
        Some(p) => Some(auth::normalize_picture(p).map_err(|e| anyhow::anyhow!("--picture: {e}"))?),
        None => None,
    }
    .filter(|p| !p.is_empty());
    let opts = ConfigArgs {
        data_dir: args.data_dir.or(env.data_dir),
        jwt_secret: args.jwt_secret.or(env.jwt_secret),
        ..env
    };
    let opts = match file {
        Some(f) => opts.merge_file(f)?,
        None => opts,
    };
    // Media options do not concern tokens: a shell with only some of the server's media env
    // vars (say, the S3 credentials without SPACECAST_MEDIA_STORE) must still mint one. Nor
    // does the console's dev login (a shell may export it beside a secret for another server).
    let config = ConfigArgs {
        console_dev_login: None,
        media_store: None,
        s3_bucket: None,
        s3_endpoint: None,
        s3_region: None,
        s3_access_key_id: None,
        s3_secret_access_key: None,
        s3_prefix: None,
        ..opts
    }
    .validate()?;
    if config.jwt_secret.is_none() && config.jwt_public_key.is_some() {
        anyhow::bail!(
            "the configuration sets jwt_public_key and no jwt_secret: that server accepts only \
             tokens signed by the key's owner, so a development token would be refused"
        );
    }
    let secret = auth::load_or_create_secret(config.jwt_secret.as_deref(), &config.data_dir)?;
    auth::mint(&secret, &args.user_id, &username, picture.as_deref(), ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ignores_the_media_options() {
        let dir = tempfile::tempdir().unwrap();
        let args = TokenArgs {
            user_id: "u1".into(),
            username: "ada".into(),
            picture: None,
            ttl: "1h".into(),
            data_dir: Some(dir.path().to_path_buf()),
            jwt_secret: Some("a-secret-of-enough-bytes".into()),
        };
        // The S3 credentials without the rest, as a shell sharing part of the server's env.
        let env = ConfigArgs {
            s3_access_key_id: Some("AKID".into()),
            ..Default::default()
        };
        assert!(env.clone().validate().is_err(), "serve refuses this");
        let t = token(args, env, None).unwrap();
        assert_eq!(t.split('.').count(), 3, "a JWT");
    }
}
