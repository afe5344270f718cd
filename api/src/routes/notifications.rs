//! Space7 notifications (reference/space7.md §3 "Notifications"):
//! `GET /api/notifications`, `PUT /api/notifications/{id}/read`, `PUT /api/notifications/read-all`.
//!
//! Notifications are created by the engine in the commit of the event that causes them, and each
//! user keeps the newest 200 (see `spacecast_engine::notifications`). Every call here reads at
//! most that bounded list: `total` and `unreadCount` are counted over it, and a read mark finds
//! its notification in it. New notifications are also pushed live to every realtime session of
//! their user (`notification` frame / Socket.IO event).

use std::collections::HashMap;

use serde::Serialize;
use spacecast_engine::notifications::Notification;
use utoipa::{IntoParams, ToSchema};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{authorization, query_map, respond, started, user, with_app};
use crate::app::AppRef;
use crate::error::{ApiError, json_response};
use crate::ratelimit::Write;

/// The notification operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_notifications, mark_read, mark_all_read),
    components(schemas(Notification))
)]
pub struct Doc;

/// Most notifications per page.
pub const MAX_LIMIT: u64 = 100;
/// Notifications per page when `limit` is absent (the Space7 app asks for 30).
pub const DEFAULT_LIMIT: u64 = 30;

crate::openapi::errors!(ListErrors {
    400 "Invalid `page` or `limit`." [invalid_pagination],
    401,
    500,
    503 [store_unavailable],
});

crate::openapi::errors!(MarkErrors {
    401,
    404 "No notification of the caller has this id." [not_found],
    500,
    503 [store_unavailable],
} + [WRITE_LIMITED]);

crate::openapi::errors!(MarkAllErrors {
    401,
    500,
    503 [store_unavailable],
} + [WRITE_LIMITED]);

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    let list = warp::path!("api" / "notifications")
        .and(warp::get())
        .and(with_app(app.clone()))
        .and(started())
        .and(authorization())
        .and(query_map())
        .then(|app: AppRef, t, auth, q| {
            respond(app.clone(), "GET /api/notifications", t, list(app, auth, q))
        });
    let read_all = warp::path!("api" / "notifications" / "read-all")
        .and(warp::put())
        .and(with_app(app.clone()))
        .and(started())
        .and(authorization())
        .then(|app: AppRef, t, auth| {
            respond(
                app.clone(),
                "PUT /api/notifications/read-all",
                t,
                read_all(app, auth),
            )
        });
    let read_one = warp::path!("api" / "notifications" / String / "read")
        .and(warp::put())
        .and(with_app(app))
        .and(started())
        .and(authorization())
        .then(|id: String, app: AppRef, t, auth| {
            respond(
                app.clone(),
                "PUT /api/notifications/:id/read",
                t,
                read_one(app, auth, id),
            )
        });
    list.or(read_all).unify().or(read_one).unify().boxed()
}

/// One page of the caller's notifications.
#[derive(Serialize, ToSchema)]
#[schema(as = NotificationsPage)]
struct Page<'a> {
    /// Newest first.
    #[schema(value_type = Vec<Notification>)]
    notifications: &'a [Notification],
    /// The caller's notifications (at most 200: older ones are trimmed).
    total: u64,
    page: u64,
    limit: u64,
    #[serde(rename = "totalPages")]
    total_pages: u64,
    /// Unread notifications among `total`.
    #[serde(rename = "unreadCount")]
    unread_count: u64,
}

/// `page` and `limit` (documentation only: the handler reads the query map).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct PageQuery {
    /// 1-based page number, at most 1000000 (else `invalid_pagination`); past the last page the
    /// list is empty.
    #[param(required = false, minimum = 1, maximum = 1000000, default = 1)]
    page: Option<u64>,
    /// Notifications per page, 1–100 (else `invalid_pagination`).
    #[param(required = false, minimum = 1, maximum = 100, default = 30)]
    limit: Option<u64>,
}

/// The confirmation of a read mark.
#[derive(Serialize, ToSchema)]
#[schema(as = NotificationsMarked)]
struct Marked {
    /// "Marked as read" or "All notifications marked as read".
    message: &'static str,
}

/// List the caller's notifications
///
/// Newest first; each user keeps their newest 200 (older ones are trimmed), so `total` is at most
/// 200 and `unreadCount` counts the unread among them. Types: `message_appreciated` (someone
/// appreciated your message), `mention` (a new message mentions you), `reply` (someone replied in
/// your thread); `reference_id` is the message's id. New ones are also pushed live to the user's
/// realtime sessions (`notification`).
#[utoipa::path(get, path = "/api/notifications", operation_id = "listNotifications",
    tag = "space7",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of notifications.", body = Page),
        ListErrors,
    ))]
#[allow(dead_code)] // The document's entry; `list` serves it.
fn list_notifications() {}

/// Mark one notification read
///
/// `{id}` is either the notification's `id` (a number) or its `notification_id` (a UUID).
/// Idempotent.
#[utoipa::path(put, path = "/api/notifications/{id}/read", operation_id = "markNotificationRead",
    tag = "space7",
    params(("id" = String, Path, description = "The notification's `id` (a number) or `notification_id` (a UUID).")),
    responses(
        (status = 200, description = "`{\"message\": \"Marked as read\"}`.", body = Marked),
        MarkErrors,
    ))]
#[allow(dead_code)] // The document's entry; `read_one` serves it.
fn mark_read() {}

/// Mark every notification read
///
/// Idempotent.
#[utoipa::path(put, path = "/api/notifications/read-all", operation_id = "markAllNotificationsRead",
    tag = "space7",
    responses(
        (status = 200, description = "`{\"message\": \"All notifications marked as read\"}`.",
            body = Marked),
        MarkAllErrors,
    ))]
#[allow(dead_code)] // The document's entry; `read_all` serves it.
fn mark_all_read() {}

/// `page` and `limit` from the query (defaults 1 and 30).
///
/// # Errors
/// 400 `invalid_pagination`.
fn pagination(query: &HashMap<String, String>) -> Result<(u64, u64), ApiError> {
    let mut page = 1;
    let mut limit = DEFAULT_LIMIT;
    if let Some(v) = query.get("page") {
        page = v
            .trim()
            .parse()
            .ok()
            .filter(|p| (1..=1_000_000).contains(p))
            .ok_or_else(|| {
                ApiError::bad_request("invalid_pagination", "page must be a positive integer")
            })?;
    }
    if let Some(v) = query.get("limit") {
        limit = v
            .trim()
            .parse()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_pagination",
                    format!("limit must be between 1 and {MAX_LIMIT}"),
                )
            })?;
    }
    Ok((page, limit))
}

/// `GET /api/notifications?page=1&limit=30` → `{notifications, total, page, limit, totalPages,
/// unreadCount}`.
async fn list(
    app: AppRef,
    auth: Option<String>,
    query: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    let (page, limit) = pagination(&query)?;
    let all = app.engine.notifications(user.id()).await?;
    let total = all.len() as u64;
    let unread = all.iter().filter(|n| !n.is_read).count() as u64;
    let start = ((page - 1).saturating_mul(limit)).min(total) as usize;
    let end = (start as u64 + limit).min(total) as usize;
    Ok(json_response(
        StatusCode::OK,
        &Page {
            notifications: &all[start..end],
            total,
            page,
            limit,
            total_pages: total.div_ceil(limit),
            unread_count: unread,
        },
    ))
}

/// Whether `n` is the notification `id` names (its number or its UUID).
fn named(n: &Notification, id: &str) -> bool {
    match uuid::Uuid::parse_str(id) {
        Ok(u) => n.notification_id == u,
        Err(_) => id.parse::<u64>().is_ok_and(|num| num == n.id),
    }
}

/// `PUT /api/notifications/{id}/read` → `{"message": "Marked as read"}`; 404 `not_found` for an
/// id none of the caller's notifications has.
async fn read_one(app: AppRef, auth: Option<String>, id: String) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    app.write_limit.check(user.id(), Write::Notification)?;
    let all = app.engine.notifications(user.id()).await?;
    // Newest first: a number two notifications share (see the engine's doc) names the newest.
    let Some(n) = all.iter().find(|n| named(n, &id)) else {
        return Err(ApiError::not_found("Notification not found"));
    };
    if !n.is_read {
        app.engine
            .mark_notifications_read(user.id(), &[n.notification_id])
            .await?;
    }
    Ok(json_response(
        StatusCode::OK,
        &Marked {
            message: "Marked as read",
        },
    ))
}

/// `PUT /api/notifications/read-all` → `{"message": "All notifications marked as read"}`.
async fn read_all(app: AppRef, auth: Option<String>) -> Result<Response, ApiError> {
    let user = user(&app, auth)?;
    app.write_limit.check(user.id(), Write::Notification)?;
    let all = app.engine.notifications(user.id()).await?;
    let unread: Vec<uuid::Uuid> = all
        .iter()
        .filter(|n| !n.is_read)
        .map(|n| n.notification_id)
        .collect();
    if !unread.is_empty() {
        app.engine
            .mark_notifications_read(user.id(), &unread)
            .await?;
    }
    Ok(json_response(
        StatusCode::OK,
        &Marked {
            message: "All notifications marked as read",
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_defaults_and_refuses_out_of_range() {
        let q = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>()
        };
        assert_eq!(pagination(&q(&[])).unwrap(), (1, 30));
        assert_eq!(
            pagination(&q(&[("page", "2"), ("limit", "5")])).unwrap(),
            (2, 5)
        );
        for bad in [
            ("page", "0"),
            ("page", "x"),
            ("limit", "0"),
            ("limit", "101"),
        ] {
            let e = pagination(&q(&[bad])).unwrap_err();
            assert_eq!(e.code, "invalid_pagination", "{bad:?}");
        }
    }
}
