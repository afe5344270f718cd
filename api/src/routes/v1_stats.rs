//! Space statistics (CONTRACT §5): `GET /v1/spaces/{space_id}/stats`.
//!
//! The numbers are maintained by the space's actor and read from one stored row (see the engine's
//! `spacecast_engine::stats` for the definitions and what they cost); this route only checks the
//! caller and shapes the answer.

use serde::Serialize;
use spacecast_engine::model::Timestamp;
use spacecast_engine::stats::{ContributorStats, SpaceStats};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{authorization, respond, started, user, with_app};
use crate::app::AppRef;
use crate::error::{ApiError, json_response};
use crate::input::parse_space_id;
use crate::openapi::params::SpacePath;

/// The statistics operation in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(space_stats), modifiers(&Closed))]
pub struct Doc;

/// The statistics and their contributors have exactly the properties listed (utoipa has no
/// attribute for `additionalProperties: false` on a type that is only serialized).
struct Closed;

impl utoipa::Modify for Closed {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{AdditionalProperties, Schema};
        let Some(components) = doc.components.as_mut() else {
            return;
        };
        for name in ["SpaceStatsV1", "ContributorV1"] {
            if let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut(name) {
                o.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
        }
    }
}

crate::openapi::errors!(StatsErrors {
    401,
    404 "Unknown space, or a private space the caller is not a member of." [not_found],
    500,
} + [SPACE_BUSY]);

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
#[derive(Serialize, ToSchema)]
#[schema(as = SpaceStatsV1)]
struct StatsBody<'a> {
    /// Existing messages, redacted ones included.
    total_messages: u64,
    #[schema(schema_with = by_msgtype_schema)]
    by_msgtype: &'a BTreeMap<String, u64>,
    /// Existing messages with media (the `has_attachment` filter's rule); redacted ones have
    /// none.
    with_attachments: u64,
    /// Existing thread roots with at least one existing reply.
    threads: u64,
    /// Existing redacted messages.
    redacted: u64,
    /// Creation time of the oldest existing message (lowest seq); `null` without messages.
    #[schema(required = true)]
    first_message_at: Option<Timestamp>,
    /// Creation time of the newest existing message (highest seq); `null` without messages.
    #[schema(required = true)]
    last_message_at: Option<Timestamp>,
    /// Best first: by `word_count`, then `messages`, then `user_id`.
    #[schema(max_items = 10)]
    top_contributors: &'a [ContributorStats],
}

/// `by_msgtype`: msgtype → a count of at least 1.
fn by_msgtype_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    spacecast_engine::model::count_map_schema(
        "Existing messages per `msgtype` (only types with at least one).",
    )
    .property_names(Some(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(64))
            .pattern(Some(
                "^(text|code|media|system|[a-z0-9_-]+(\\.[a-z0-9_-]+)+)$",
            )),
    ))
    .build()
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

/// A space's message statistics
///
/// Maintained by the space's actor with every send, delete, edit and redaction, committed with
/// them, and read from one stored row (never a scan of history). Counts are of existing
/// messages (deleted ones leave every count). `threads`: thread roots with at least one reply. A
/// redacted message keeps its msgtype and still counts in `total_messages` and its sender's
/// `messages`, but its words and attachments no longer count. `first_message_at` /
/// `last_message_at`: creation times of the existing messages with the lowest / highest seq
/// (`null` without messages). `top_contributors`: the 10 senders with the most words in their
/// existing messages, ties by messages, then by user id. Readable by whoever may read the space
/// (anyone authenticated for a public one; members for a private one, which is a 404 to
/// others); every write acknowledged before the request is included.
#[utoipa::path(get, path = "/v1/spaces/{spaceId}/stats", operation_id = "spaceStatsV1",
    tag = "v1",
    params(SpacePath),
    responses(
        (status = 200, description = "The statistics.", body = StatsBody),
        StatsErrors,
    ))]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::v1_messages::assert_wire_matches_schema;

    #[test]
    fn the_stats_schema_states_what_the_handler_serializes() {
        let mut stats = SpaceStats::default();
        stats.leaderboard.push(ContributorStats {
            user_id: "ada".into(),
            messages: 1,
            word_count: 3,
        });
        let body = serde_json::to_value(StatsBody::of(&stats)).unwrap();
        assert_wire_matches_schema("SpaceStatsV1", &body);
        assert_wire_matches_schema("ContributorV1", &body["top_contributors"][0]);
    }
}
