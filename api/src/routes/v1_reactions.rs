//! Reactions on the native surface (CONTRACT §5):
//! `PUT` / `DELETE /v1/spaces/{space_id}/messages/{message_id}/reactions/{key}`.
//!
//! A reaction is one user's key (an emoji or a short name, at most 64 bytes) on one message.
//! Setting or removing one is idempotent per user and costs O(1) whatever the message holds: the
//! space actor writes that reaction's row and its key's count, never the message (see
//! `SpaceHandle::react`). Space7's appreciation is the key `appreciate`.

use percent_encoding::percent_decode_str;
use serde::Serialize;
use spacecast_engine::model::{MAX_REACTION_KEY_BYTES, MessageId, valid_reaction_key};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::messages::message_target;
use super::{authorization, respond, started, with_app};
use crate::app::AppRef;
use crate::error::{ApiError, json_response};
use crate::ratelimit::Write;

/// The reaction operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(set_reaction, remove_reaction))]
pub struct Doc;

/// `{spaceId}`, `{messageId}` and `{key}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
#[allow(dead_code)]
struct ReactionPath {
    /// The space's id (a UUID). A value that is not a UUID gives 404 `not_found`.
    #[param(value_type = String, format = Uuid)]
    space_id: String,
    /// The message's id (a UUID). A value that is not a UUID gives 404 `not_found`.
    #[param(value_type = String, format = Uuid)]
    message_id: String,
    /// An emoji or a short name, percent-encoded: 1 to 64 bytes of UTF-8 once decoded, without
    /// whitespace, control characters or `/`.
    #[param(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\s/\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    key: String,
}

crate::openapi::errors!(ReactionErrors {
    400 "Invalid key." [invalid_reaction_key],
    401,
    404 "Unknown space or message, or a private space the caller is not a member of."
        [not_found],
    409 "A new key on a message with 50 keys already." [too_many_reactions],
    500,
} + [WRITE_LIMITED, SPACE_BUSY]);

crate::openapi::errors!(RemoveReactionErrors {
    400 "Invalid key." [invalid_reaction_key],
    401,
    404 "Unknown space or message, or a private space the caller is not a member of."
        [not_found],
    500,
} + [WRITE_LIMITED, SPACE_BUSY]);

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    let route = |method: warp::filters::BoxedFilter<()>, set: bool, name: &'static str| {
        warp::path!("v1" / "spaces" / String / "messages" / String / "reactions" / String)
            .and(method)
            .and(with_app(app.clone()))
            .and(started())
            .and(authorization())
            .then(
                move |space: String, msg: String, key: String, app: AppRef, t, auth| {
                    respond(app.clone(), name, t, react(app, auth, space, msg, key, set))
                },
            )
    };
    route(
        warp::put().boxed(),
        true,
        "PUT /v1/spaces/:space/messages/:message/reactions/:key",
    )
    .or(route(
        warp::delete().boxed(),
        false,
        "DELETE /v1/spaces/:space/messages/:message/reactions/:key",
    ))
    .unify()
    .boxed()
}

/// What a reaction call answers.
#[derive(Serialize, ToSchema)]
#[schema(as = ReactionResult)]
struct Reacted {
    #[schema(value_type = String, format = Uuid)]
    message_id: MessageId,
    /// The key, decoded.
    key: String,
    /// Whether the caller has the reaction now.
    reacted: bool,
    /// Whether this call changed it (false: it already was so, and no event was sent).
    changed: bool,
    /// The message's reaction key → count after the call (keys without a reaction are absent).
    #[schema(schema_with = reaction_counts_schema)]
    reaction_counts: BTreeMap<String, u32>,
}

/// `reaction_counts`: key → a count of at least 1.
fn reaction_counts_schema() -> utoipa::openapi::schema::Object {
    spacecast_engine::model::count_map_schema(
        "The message's reaction key → count after the call (keys without a reaction are \
         absent).",
    )
    .build()
}

/// React to a message
///
/// Idempotent per user: reacting again changes nothing. A change is the event
/// `reaction_changed` (the next seq). O(1) whatever the message holds. `appreciate` is Space7's
/// appreciation. Whoever may read the space may react (members only in a private one: 404
/// otherwise, as for any read).
#[utoipa::path(put, path = "/v1/spaces/{spaceId}/messages/{messageId}/reactions/{key}",
    operation_id = "setReactionV1", tag = "v1",
    params(ReactionPath),
    responses(
        (status = 200, description = "The message's reaction counts after the call, once durable.",
            body = Reacted),
        ReactionErrors,
    ))]
#[allow(dead_code)] // The document's entry; `react` serves it.
fn set_reaction() {}

/// Remove a reaction
///
/// Idempotent per user. A change is the event `reaction_changed` with `added: false`.
#[utoipa::path(delete, path = "/v1/spaces/{spaceId}/messages/{messageId}/reactions/{key}",
    operation_id = "removeReactionV1", tag = "v1",
    params(ReactionPath),
    responses(
        (status = 200, description = "The message's reaction counts after the call, once durable.",
            body = Reacted),
        RemoveReactionErrors,
    ))]
#[allow(dead_code)] // The document's entry; `react` serves it.
fn remove_reaction() {}

/// The reaction key of a path segment: percent-decoded UTF-8 (an emoji arrives encoded).
///
/// # Errors
/// 400 `invalid_reaction_key` for a key that is not valid UTF-8 once decoded, or not a valid key.
fn reaction_key(segment: &str) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_reaction_key",
            format!(
                "A reaction key is an emoji or a short name: 1 to {MAX_REACTION_KEY_BYTES} bytes of UTF-8, without spaces, control characters or /"
            ),
        )
    };
    let key = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| invalid())?;
    if !valid_reaction_key(&key) {
        return Err(invalid());
    }
    Ok(key.into_owned())
}

/// `PUT …/reactions/{key}` (set) and `DELETE …/reactions/{key}` (remove) → 200 `{message_id,
/// key, reacted, changed, reaction_counts}`, once durable; a change is the event
/// `reaction_changed`. Whoever may read the space may react (members only in a private one: 404
/// otherwise, as for any read). 404 `message_not_found`; 400 `invalid_reaction_key`; 409
/// `too_many_reactions` for a new key on a message that has 50 already.
async fn react(
    app: AppRef,
    auth: Option<String>,
    space: String,
    message: String,
    key: String,
    set: bool,
) -> Result<Response, ApiError> {
    let (user, space_id, message_id) = message_target(&app, auth, &space, &message)?;
    app.write_limit.check(user.id(), Write::Reaction)?;
    let key = reaction_key(&key)?;
    let r = app
        .engine
        .space(space_id)
        .react(message_id, key.clone(), user.profile, set)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &Reacted {
            message_id,
            key,
            reacted: r.reacted,
            changed: r.changed,
            reaction_counts: r.reaction_counts,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_percent_decoded_and_checked() {
        assert_eq!(reaction_key("%F0%9F%91%8D").unwrap(), "👍");
        assert_eq!(reaction_key("appreciate").unwrap(), "appreciate");
        assert_eq!(reaction_key("x.party_parrot").unwrap(), "x.party_parrot");
        for bad in ["", "%20", "a%2Fb", "%FF", "%00", &"k".repeat(65)] {
            let e = reaction_key(bad).expect_err(bad);
            assert_eq!(e.code, "invalid_reaction_key", "{bad}");
        }
        assert!(reaction_key(&"k".repeat(64)).is_ok());
    }

    #[test]
    fn the_reaction_schema_states_what_the_handler_serializes() {
        let body = Reacted {
            message_id: uuid::Uuid::nil(),
            key: "appreciate".into(),
            reacted: true,
            changed: true,
            reaction_counts: [("appreciate".to_owned(), 1)].into(),
        };
        let body = serde_json::to_value(&body).unwrap();
        crate::routes::v1_messages::assert_wire_matches_schema("ReactionResult", &body);
    }
}
