//! The native message surface (CONTRACT §5): `/v1/spaces/{space_id}/messages…`.
//!
//! Pages are keyset pages with an opaque cursor (see [`Cursor`] and the engine's
//! `spacecast_engine::listing` for what a filter costs).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use spacecast_engine::model::{Message, Seq, Timestamp};
use spacecast_engine::{Direction, MessageFilter, MessageQuery};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{authorization, respond, started, user, with_app};
use crate::app::AppRef;
use crate::error::{ApiError, json_response};
use crate::input::{parse_message_id, parse_space_id};

/// Default page size.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest page size (`limit` above it is refused).
pub const MAX_LIMIT: usize = spacecast_engine::listing::MAX_PAGE;
/// Longest `sender_id` filter, in bytes (user ids are at most this long).
const MAX_FILTER_ID: usize = 256;

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    let base = || with_app(app.clone()).and(started()).and(authorization());
    let list = warp::path!("v1" / "spaces" / String / "messages")
        .and(warp::get())
        .and(base())
        .and(
            warp::query::<HashMap<String, String>>()
                .or(warp::any().map(HashMap::new))
                .unify(),
        )
        .then(
            |space: String, app: AppRef, t, auth, q: HashMap<String, String>| {
                respond(
                    app.clone(),
                    "GET /v1/spaces/:space/messages",
                    t,
                    list_messages(app, auth, space, q),
                )
            },
        );
    let get = warp::path!("v1" / "spaces" / String / "messages" / String)
        .and(warp::get())
        .and(base())
        .then(|space: String, msg: String, app: AppRef, t, auth| {
            respond(
                app.clone(),
                "GET /v1/spaces/:space/messages/:message",
                t,
                get_message(app, auth, space, msg),
            )
        });
    list.or(get).unify().boxed()
}

/// A page position: where the next page of one direction starts. Opaque to clients: the
/// base64url (no padding) of a version-and-direction byte and the big-endian seq, so it is
/// short, URL-safe, and refused when altered into something else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub direction: Direction,
    /// The last position read; the next page starts after it.
    pub seq: Seq,
}

const CURSOR_BACKWARD_V1: u8 = 0xb1;
const CURSOR_FORWARD_V1: u8 = 0xf1;

impl Cursor {
    pub fn encode(self) -> String {
        let mut bytes = [0u8; 9];
        bytes[0] = match self.direction {
            Direction::Backward => CURSOR_BACKWARD_V1,
            Direction::Forward => CURSOR_FORWARD_V1,
        };
        bytes[1..].copy_from_slice(&self.seq.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// # Errors
    /// 400 `invalid_cursor` for anything [`Cursor::encode`] did not make.
    pub fn decode(s: &str) -> Result<Cursor, ApiError> {
        let bad = || ApiError::bad_request("invalid_cursor", "cursor is not one this server made");
        let bytes = URL_SAFE_NO_PAD.decode(s.trim()).map_err(|_| bad())?;
        let [tag, rest @ ..] = bytes.as_slice() else {
            return Err(bad());
        };
        let seq = Seq::from_be_bytes(rest.try_into().map_err(|_| bad())?);
        let direction = match *tag {
            CURSOR_BACKWARD_V1 => Direction::Backward,
            CURSOR_FORWARD_V1 => Direction::Forward,
            _ => return Err(bad()),
        };
        Ok(Cursor { direction, seq })
    }
}

/// The query of `GET /v1/spaces/{id}/messages`, validated.
///
/// # Errors
/// 400 `invalid_pagination` (`limit`, `direction`), `invalid_cursor`, `invalid_filter`.
pub fn parse_list_query(q: &HashMap<String, String>) -> Result<MessageQuery, ApiError> {
    let pagination = |m: &str| ApiError::bad_request("invalid_pagination", m.to_owned());
    let filter_err = |m: String| ApiError::bad_request("invalid_filter", m);
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(pagination("limit must be an integer from 1 to 100")),
        },
    };
    let direction = match q.get("direction").map(|d| d.trim()) {
        None => None,
        Some("backward") => Some(Direction::Backward),
        Some("forward") => Some(Direction::Forward),
        Some(_) => return Err(pagination("direction must be \"backward\" or \"forward\"")),
    };
    let cursor = q.get("cursor").map(|c| Cursor::decode(c)).transpose()?;
    let direction = match (cursor, direction) {
        (Some(c), Some(d)) if c.direction != d => {
            return Err(ApiError::bad_request(
                "invalid_cursor",
                "the cursor continues the other direction",
            ));
        }
        (Some(c), _) => c.direction,
        (None, d) => d.unwrap_or(Direction::Backward),
    };
    let mut filter = MessageFilter::default();
    if let Some(s) = q.get("sender_id") {
        if s.is_empty() || s.len() > MAX_FILTER_ID {
            return Err(filter_err(format!(
                "sender_id must be 1 to {MAX_FILTER_ID} bytes"
            )));
        }
        filter.sender_id = Some(s.clone());
    }
    if let Some(h) = q.get("has_attachment") {
        filter.has_attachment = Some(match h.trim() {
            "true" => true,
            "false" => false,
            _ => return Err(filter_err("has_attachment must be true or false".into())),
        });
    }
    let time = |name: &str| -> Result<Option<Timestamp>, ApiError> {
        q.get(name)
            .map(|t| {
                serde_json::from_value::<Timestamp>(serde_json::Value::String(t.trim().into()))
                    .map_err(|_| {
                        filter_err(format!(
                            "{name} must be an RFC 3339 time, e.g. 2026-12-06T10:00:00Z"
                        ))
                    })
            })
            .transpose()
    };
    filter.since = time("since")?;
    filter.until = time("until")?;
    Ok(MessageQuery {
        direction,
        from: cursor.map(|c| c.seq),
        limit,
        filter,
    })
}

#[derive(Serialize)]
struct Page<'a> {
    data: &'a [Message],
    next_cursor: Option<String>,
}

/// `GET /v1/spaces/{space_id}/messages` → `{data, next_cursor}`: a page of messages, newest first
/// (`direction=backward`, the default) or oldest first (`forward`), `limit` 1–100 (default 50),
/// filters `sender_id`, `has_attachment`, `since`, `until`; `next_cursor` continues it (`null`:
/// nothing more now). 404 for an unknown space and a private one the caller is not a member of.
async fn list_messages(
    app: AppRef,
    auth: Option<String>,
    space: String,
    q: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let space_id = parse_space_id(&space)?;
    let query = parse_list_query(&q)?;
    let page = app
        .engine
        .reader(space_id)
        .list_messages(user.id(), &query)
        .await?;
    let next_cursor = page.next.map(|seq| {
        Cursor {
            direction: query.direction,
            seq,
        }
        .encode()
    });
    Ok(json_response(
        StatusCode::OK,
        &Page {
            data: &page.messages,
            next_cursor,
        },
    ))
}

/// `GET /v1/spaces/{space_id}/messages/{message_id}` → the message; 404 when it does not exist
/// in that space (or the space is not readable by the caller).
async fn get_message(
    app: AppRef,
    auth: Option<String>,
    space: String,
    message: String,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let space_id = parse_space_id(&space)?;
    let message_id = parse_message_id(&message)?;
    let m = app
        .engine
        .reader(space_id)
        .message(user.id(), message_id)
        .await?;
    Ok(json_response(StatusCode::OK, &m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn cursors_round_trip_and_anything_else_is_refused() {
        for direction in [Direction::Backward, Direction::Forward] {
            for seq in [0, 1, 49, 10_000, u64::MAX] {
                let c = Cursor { direction, seq };
                let s = c.encode();
                assert!(s.len() <= 12, "{s}");
                assert!(
                    s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                );
                assert_eq!(Cursor::decode(&s).unwrap(), c);
            }
        }
        let good = Cursor {
            direction: Direction::Forward,
            seq: 7,
        }
        .encode();
        for bad in [
            "",
            "!",
            "AAAA",
            &good[..good.len() - 1],
            &format!("{good}AA"),
            "AAAAAAAAAAAH",
        ] {
            let e = Cursor::decode(bad).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.code),
                (400, "invalid_cursor"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn list_queries_have_defaults_and_refuse_what_is_out_of_bounds() {
        let d = parse_list_query(&q(&[])).unwrap();
        assert_eq!(
            (d.direction, d.from, d.limit),
            (Direction::Backward, None, 50)
        );
        assert_eq!(d.filter, MessageFilter::default());
        let c = Cursor {
            direction: Direction::Forward,
            seq: 9,
        }
        .encode();
        let f = parse_list_query(&q(&[
            ("cursor", &c),
            ("limit", "100"),
            ("sender_id", "u1"),
            ("has_attachment", "false"),
            ("since", "2026-12-06T10:00:00Z"),
        ]))
        .unwrap();
        assert_eq!(
            (f.direction, f.from, f.limit),
            (Direction::Forward, Some(9), 100)
        );
        assert_eq!(f.filter.sender_id.as_deref(), Some("u1"));
        assert_eq!(f.filter.has_attachment, Some(false));
        assert!(f.filter.since.is_some() && f.filter.until.is_none());
        for (pairs, code) in [
            (vec![("limit", "0")], "invalid_pagination"),
            (vec![("limit", "101")], "invalid_pagination"),
            (vec![("limit", "ten")], "invalid_pagination"),
            (vec![("direction", "up")], "invalid_pagination"),
            (
                vec![("cursor", c.as_str()), ("direction", "backward")],
                "invalid_cursor",
            ),
            (vec![("cursor", "zzz")], "invalid_cursor"),
            (vec![("has_attachment", "yes")], "invalid_filter"),
            (vec![("since", "yesterday")], "invalid_filter"),
            (vec![("sender_id", "")], "invalid_filter"),
        ] {
            let e = parse_list_query(&q(&pairs)).unwrap_err();
            assert_eq!(e.code, code, "{pairs:?}");
        }
    }
}
