//! Presence (issue 12): `GET /v1/spaces/{space_id}/presence?cursor=&limit=` → who is watching a
//! space and how available they are (see `spacecast_engine::presence` for the model). Read access
//! is `GET …/messages`'s: a public space is listed to every caller, a private one only to its
//! members (404 to anyone else, as for an unknown space).
//!
//! Presence is of subscribers (sessions that joined the space), not of every member: it costs
//! O(watchers), so a 100,000-member space watched by 50 sessions costs 50 entries. In a cluster
//! the page covers every node's sessions (see `spacecast_engine::presence`, "Cluster").

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use spacecast_engine::presence::PresenceEntry;
use utoipa::{IntoParams, ToSchema};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{authorization, query_map, respond, started, user, with_app};
use crate::app::AppRef;
use crate::error::{ApiError, json_response};
use crate::input::parse_space_id;
use crate::openapi::params::SpacePath;

/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size.
pub const MAX_LIMIT: usize = 200;

/// The presence operation in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(space_presence),
    components(schemas(spacecast_engine::presence::PresenceFrame))
)]
pub struct Doc;

crate::openapi::errors!(PresenceErrors {
    400 "Invalid query parameter." [invalid_pagination, invalid_cursor],
    401,
    404 "Unknown space, or a private space the caller is not a member of." [not_found],
    500,
    503 [store_unavailable, bus_unavailable],
});

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    warp::path!("v1" / "spaces" / String / "presence")
        .and(warp::get())
        .and(with_app(app))
        .and(started())
        .and(authorization())
        .and(query_map())
        .then(|space: String, app: AppRef, t, auth, q| {
            respond(
                app.clone(),
                "GET /v1/spaces/:space/presence",
                t,
                space_presence(app, auth, space, q),
            )
        })
        .boxed()
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct PresenceQuery {
    /// `next_cursor` of the previous page (opaque).
    #[param(pattern = "^P(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$")]
    cursor: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 200, default = 100)]
    limit: Option<u32>,
}

/// A page of a space's presence.
#[derive(Serialize, ToSchema)]
#[schema(as = PresencePage)]
struct Page {
    /// Users not offline, ordered by `user_id`; at most `limit`.
    #[schema(max_items = 200)]
    data: Vec<PresenceEntry>,
    /// Users not offline in the space (all pages).
    #[schema(minimum = 0)]
    online: u64,
    /// Continues after this page; `null`: nothing more now.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

fn encode_cursor(user_id: &str) -> String {
    format!("P{}", URL_SAFE_NO_PAD.encode(user_id.as_bytes()))
}

/// A cursor is `P` + the base64url (unpadded) of the last listed user id. Any well-formed one is
/// a valid position ("after this string", bytes that are not UTF-8 read lossily), so a cursor the
/// server did not make still pages consistently; only a malformed one is refused.
fn decode_cursor(c: &str) -> Result<String, ApiError> {
    use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    c.strip_prefix('P')
        .and_then(|b| LENIENT.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .ok_or_else(|| ApiError::bad_request("invalid_cursor", "Invalid cursor"))
}

fn parse_query(q: &HashMap<String, String>) -> Result<(Option<String>, usize), ApiError> {
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_pagination",
                    format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                ));
            }
        },
    };
    let after = q.get("cursor").map(|c| decode_cursor(c)).transpose()?;
    Ok((after, limit))
}

/// Who is in a space
///
/// The users watching the space (with a realtime session that joined it) who are not offline,
/// ordered by `user_id`, with their status over their sessions: `online` if any session is,
/// else `busy`, else `idle`. `online` counts them all. Keyset pages by `user_id` (`next_cursor`):
/// a user present throughout appears exactly once. Presence is of subscribers, not members
/// (O(watchers)); a session silent for `--presence-timeout` (60 s) is offline, one without
/// activity for `--presence-idle-after` (5 min) idle. In a cluster every node answers the same: a
/// node with subscribers of the space from its merged view of every node's sessions, another one
/// from the snapshots the nodes following the space send within 250 ms (503 `bus_unavailable` if
/// it cannot ask them). 404 for an unknown space and a private one the caller is not a member of.
#[utoipa::path(get, path = "/v1/spaces/{spaceId}/presence", operation_id = "spacePresenceV1",
    tag = "v1",
    params(SpacePath, PresenceQuery),
    responses(
        (status = 200, description = "One page.", body = Page),
        PresenceErrors,
    ))]
async fn space_presence(
    app: AppRef,
    auth: Option<String>,
    space: String,
    q: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let space_id = parse_space_id(&space)?;
    let (after, limit) = parse_query(&q)?;
    // The read rule of `GET …/messages`.
    app.engine.reader(space_id).view(user.id()).await?;
    let page = app
        .engine
        .presence()
        .page(space_id, after.as_deref(), limit)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &Page {
            data: page.data,
            online: page.online,
            next_cursor: page.next.as_deref().map(encode_cursor),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let c = encode_cursor("user.42/ü");
        assert_eq!(decode_cursor(&c).unwrap(), "user.42/ü");
        assert_eq!(decode_cursor("P").unwrap(), "");
        assert!(
            decode_cursor("P01").is_ok(),
            "any well-formed cursor is a position"
        );
        for bad in ["", "Xabc", "P!!", "P0"] {
            assert_eq!(
                decode_cursor(bad).unwrap_err().code,
                "invalid_cursor",
                "{bad}"
            );
        }
        let q: HashMap<String, String> = [("limit".to_owned(), "201".to_owned())].into();
        assert_eq!(parse_query(&q).unwrap_err().code, "invalid_pagination");
    }
}
