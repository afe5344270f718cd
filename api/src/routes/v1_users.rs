//! A user's profile stats (issue 12): `GET /v1/users/{userId}/stats`, for any valid token.
//! Definitions and costs: [`spacecast_engine::discovery::UserStats`].

use spacecast_engine::discovery::UserStats;
use utoipa::IntoParams;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::v1_members::path_user_id;
use super::{authorization, respond, started, user, with_app};
use crate::app::AppRef;
use crate::error::{ApiError, json_response};

/// The user operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(user_stats), components(schemas(UserStats)))]
pub struct Doc;

/// `{userId}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
#[allow(dead_code)]
struct UserPath {
    /// The user id (percent-encoded in the path): 1 to 128 bytes, no whitespace, control,
    /// format or separator characters (else 400 `invalid_user_id`).
    #[param(min_length = 1)]
    user_id: String,
}

crate::openapi::errors!(UserStatsErrors {
    400 "Invalid user id." [invalid_user_id],
    401,
    500,
    503 [store_unavailable],
});

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    warp::path!("v1" / "users" / String / "stats")
        .and(warp::get())
        .and(with_app(app))
        .and(started())
        .and(authorization())
        .then(|id: String, app: AppRef, t, auth| {
            respond(
                app.clone(),
                "GET /v1/users/:user/stats",
                t,
                user_stats(app, auth, id),
            )
        })
        .boxed()
}

/// A user's profile stats
///
/// - `spaces_created`: spaces the user created (public and private);
/// - `spaces_participated`: distinct spaces where the user has at least one existing message;
/// - `total_words_contributed`: the sum of `word_count` over the user's existing messages (as
///   `sender_id`: a message sent on the user's behalf counts for them);
/// - `total_appreciations_received`: the sum of `appreciation_count` over those messages.
///
/// A deleted message leaves every number. An unknown user has all zeros. Any valid token may
/// read any user's stats. Kept by the spaces' writers in the commit of each change, so a read
/// after an acknowledged write sees it; a space created before this version joins its users'
/// numbers when it is next loaded.
#[utoipa::path(get, path = "/v1/users/{userId}/stats", operation_id = "userStatsV1",
    tag = "v1",
    params(UserPath),
    responses(
        (status = 200, description = "The user's stats.", body = UserStats),
        UserStatsErrors,
    ))]
async fn user_stats(app: AppRef, auth: Option<String>, id: String) -> Result<Response, ApiError> {
    user(&app, auth)?;
    let id = path_user_id(&id)?;
    Ok(json_response(
        StatusCode::OK,
        &app.engine.user_stats(&id).await?,
    ))
}
