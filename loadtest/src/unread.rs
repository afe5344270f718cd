//! Scenario `unread`: the unread counts and the inbox (issue 12) of a user in many spaces.
//!
//! Setup (through the first `--url`): `lt-user-1` creates `--spaces` spaces, `lt-user-0` joins
//! each, then `lt-user-1` sends one message in every other space (so half the spaces have one
//! unread message and the inbox has both groups), `--setup-concurrency` requests at a time. Then
//! the `reads` engine measures `GET /v1/me/unread` and `GET /v1/me/spaces?limit=50` as
//! `lt-user-0`, each on its own (`--concurrency` workers, `--duration` s after `--warmup` s).

use anyhow::{Context, Result};
use clap::Args;
use futures::{StreamExt, TryStreamExt, stream};

use crate::api::{Api, CommonArgs, SendOutcome};
use crate::reads::{self, ReadsArgs, ReadsReport};

#[derive(Debug, Clone, Args)]
pub struct UnreadArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Spaces `lt-user-0` is a member of.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub spaces: u32,
    /// Setup requests in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub setup_concurrency: u32,
    /// Concurrent measuring workers, each with one request in flight.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub concurrency: u32,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub duration: u64,
    /// Warm-up seconds (requests run, not measured).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup: u64,
}

pub async fn run(args: UnreadArgs) -> Result<ReadsReport> {
    let setup = std::time::Duration::from_secs(3600);
    let api = Api::new(&args.common, args.setup_concurrency as usize, setup)?;
    let (reader, owner) = (api.token(0)?, api.token(1)?);
    let started = std::time::Instant::now();
    let content = "x".repeat(args.common.content_bytes as usize);
    stream::iter(0..args.spaces)
        .map(|i| {
            let (api, reader, owner, content) = (&api, &reader, &owner, &content);
            async move {
                let space = api.create_space(owner).await?;
                api.join_space(reader, &space).await?;
                if i % 2 == 0 {
                    let url = api.messages_url(&space);
                    match api.send_message(owner, &url, content).await {
                        SendOutcome::Acked { .. } => {}
                        other => anyhow::bail!("setup send into {space}: {other:?}"),
                    }
                }
                Ok(())
            }
        })
        .buffer_unordered(args.setup_concurrency as usize)
        .try_collect::<Vec<()>>()
        .await
        .context("setting up the spaces")?;
    eprintln!(
        "unread: lt-user-0 is in {} spaces ({} with one unread message), set up in {:.1} s",
        args.spaces,
        args.spaces.div_ceil(2),
        started.elapsed().as_secs_f64()
    );
    let mut report = reads::run(ReadsArgs {
        common: args.common,
        paths: vec!["/v1/me/unread".into(), "/v1/me/spaces?limit=50".into()],
        concurrency: args.concurrency,
        duration: args.duration,
        warmup: args.warmup,
    })
    .await?;
    report.scenario = "unread";
    Ok(report)
}
