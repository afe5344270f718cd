//! Space statistics (CONTRACT §5): `GET /v1/spaces/{space_id}/stats`.
//!
//! The numbers are maintained by the space's actor and read from one stored row (see the engine's
//! `spacecast_engine::stats` for the definitions and what they cost); this route only checks the
//! caller and shapes the answer.

use serde::Serialize;
use spacecast_engine::model::Timestamp;
use spacecast_engine::stats::{ContributorStats, SpaceStats};
use std::collections::BTreeMap;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{authorization, respond, started, user, with_app};
use crate::app::AppRef;
use crate::error::{ApiError, json_response};
use crate::input::parse_space_id;

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    warp::path!("v1" / "spaces" / String / "stats")
        .and(warp::get())
        .and(with_app(app))
        .and(started())
        .and(authorization())
        .then(|space: String, app: AppRef, t, auth| {
            respond(
                app.clone(),
                "GET /v1/spaces/:space/stats",
                t,
                space_stats(app, auth, space),
            )
        })
        .boxed()
}

/// The body of `GET /v1/spaces/{space_id}/stats`.
#[derive(Serialize)]
struct StatsBody<'a> {
    total_messages: u64,
    by_msgtype: &'a BTreeMap<String, u64>,
    with_attachments: u64,
    threads: u64,
    redacted: u64,
    first_message_at: Option<Timestamp>,
    last_message_at: Option<Timestamp>,
    top_contributors: &'a [ContributorStats],
}

impl<'a> StatsBody<'a> {
    fn of(s: &'a SpaceStats) -> Self {
        StatsBody {
            total_messages: s.total_messages,
            by_msgtype: &s.by_msgtype,
            with_attachments: s.with_attachments,
            threads: s.threads,
            redacted: s.redacted,
            first_message_at: s.first_message.map(|m| m.at),
            last_message_at: s.last_message.map(|m| m.at),
            top_contributors: s.top_contributors(),
        }
    }
}

/// `GET /v1/spaces/{space_id}/stats` → `{total_messages, by_msgtype, with_attachments, threads,
/// redacted, first_message_at, last_message_at, top_contributors: [{user_id, messages,
/// word_count}]}` (the top 10 by word count, ties by messages, then user id), as durable: every
/// write acknowledged before the request is in it. Readable by whoever may read the space (anyone
/// authenticated for a public one; members for a private one, which is a 404 to others).
async fn space_stats(
    app: AppRef,
    auth: Option<String>,
    space: String,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let space_id = parse_space_id(&space)?;
    let stats = app.engine.space_stats(space_id, user.id()).await?;
    Ok(json_response(StatusCode::OK, &StatsBody::of(&stats)))
}
