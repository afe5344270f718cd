//! The edge's one error type and its rendering: the only place where engine and auth errors
//! become HTTP statuses. Every error body is `{"error": "<human text>", "code": "<stable_code>"}`;
//! transient ones carry `Retry-After`.

use std::time::Duration;

use serde::Serialize;
use spacecast_engine::EngineError;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use crate::auth::AuthError;

/// A client-visible failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(Duration::from_secs(1)),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// Renders the JSON body and headers.
    pub fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            code: &'a str,
        }
        let mut res = json_response(
            self.status,
            &Body {
                error: &self.message,
                code: self.code,
            },
        );
        if let Some(after) = self.retry_after {
            let secs = retry_after_secs(after);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert("retry-after", v);
            }
        }
        res
    }
}

/// A wait as `Retry-After` says it: whole seconds, rounded up (a client that waits that long is
/// not refused again for the same reason), at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::SpaceNotFound
            | EngineError::MessageNotFound
            | EngineError::MemberNotFound => StatusCode::NOT_FOUND,
            EngineError::NotAMember | EngineError::Forbidden(_) => StatusCode::FORBIDDEN,
            EngineError::AlreadyMember | EngineError::Conflict(..) => StatusCode::CONFLICT,
            EngineError::Invalid("payload_too_large", _) => StatusCode::PAYLOAD_TOO_LARGE,
            EngineError::Invalid(..) => StatusCode::BAD_REQUEST,
            EngineError::Overloaded { .. }
            | EngineError::StoreUnavailable(_)
            | EngineError::Unsettled(_)
            | EngineError::SpaceUnavailable
            | EngineError::BusUnavailable(_)
            | EngineError::Fenced
            | EngineError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            // Debug only: a client can provoke these (503 overloaded) at will, and the causes are
            // logged where they happen (the store's failures, rate-limited) and counted by the
            // request metrics.
            tracing::debug!(code = e.code(), error = %e, "request failed");
        }
        // Internal details stay in the log.
        let message = match &e {
            EngineError::StoreUnavailable(_) | EngineError::Unsettled(_) => {
                "Storage is temporarily unavailable; retry shortly".to_owned()
            }
            EngineError::Internal(_) => "Internal error".to_owned(),
            other => other.to_string(),
        };
        ApiError {
            status,
            code: e.code(),
            message,
            retry_after: e.retry_after(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let code = match e {
            AuthError::Missing => "unauthenticated",
            AuthError::Invalid => "invalid_token",
            AuthError::InvalidClaims { .. } => "invalid_claims",
        };
        ApiError::new(StatusCode::UNAUTHORIZED, code, e.to_string())
    }
}

/// A JSON response with `status`.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = Response::new(bytes.into());
    *res.status_mut() = status;
    res.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    res
}

/// Every stable error code the API can return, for the OpenAPI document and its test.
pub const CODES: &[&str] = &[
    "unauthenticated",
    "invalid_token",
    "invalid_claims",
    "invalid_json",
    "invalid_request",
    "uri_too_long",
    "headers_too_large",
    "empty_message",
    "content_too_long",
    "invalid_content",
    "invalid_media_type",
    "media_type_mismatch",
    "empty_media",
    "invalid_image",
    "expected_one_file",
    "too_many_media",
    "invalid_media",
    "invalid_sort",
    "invalid_pagination",
    "invalid_cursor",
    "invalid_filter",
    "invalid_parent",
    "invalid_quote",
    "invalid_as_user",
    "invalid_msgtype",
    "invalid_mentions",
    "invalid_gif",
    "invalid_reason",
    "invalid_idempotency_key",
    "edit_window_closed",
    "message_redacted",
    "idempotency_key_reused",
    "invalid_reaction_key",
    "too_many_reactions",
    "invalid_title",
    "invalid_description",
    "invalid_hashtags",
    "invalid_visibility",
    "invalid_invite",
    "invalid_power_level",
    "invalid_posting_permission",
    "invalid_read_marker",
    "member_not_found",
    "invalid_user_id",
    "last_admin",
    "not_a_member",
    "already_member",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "unsupported_media_type",
    "payload_too_large",
    "overloaded",
    "store_unavailable",
    "unavailable",
    "shutting_down",
    "bus_unavailable",
    "internal",
    "too_many_connections",
    "transport_unsupported",
    "unsupported_protocol",
    "invalid_username",
    "rate_limited",
    "invalid_query",
    // search (issue 12)
    "search_disabled",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_the_contract_statuses() {
        let cases = [
            (EngineError::SpaceNotFound, 404, "not_found"),
            (EngineError::NotAMember, 403, "not_a_member"),
            (EngineError::AlreadyMember, 409, "already_member"),
            (EngineError::Forbidden("x"), 403, "forbidden"),
            (
                EngineError::Overloaded {
                    retry_after: Duration::from_secs(2),
                },
                503,
                "overloaded",
            ),
            (
                EngineError::StoreUnavailable("disk".into()),
                503,
                "store_unavailable",
            ),
            (
                EngineError::BusUnavailable("nats down".into()),
                503,
                "bus_unavailable",
            ),
            // A stale owner's commit: retryable, like a restarting space.
            (EngineError::Fenced, 503, "unavailable"),
            (
                EngineError::Unsettled("phase 3".into()),
                503,
                "store_unavailable",
            ),
        ];
        for (e, status, code) in cases {
            let a = ApiError::from(e);
            assert_eq!(a.status.as_u16(), status);
            assert_eq!(a.code, code);
            assert!(CODES.contains(&a.code));
            if status == 503 {
                let res = a.into_response();
                assert!(res.headers().contains_key("retry-after"));
            }
        }
        let a = ApiError::from(EngineError::AlreadyMember);
        assert_eq!(a.message, "Already a member");
        let a = ApiError::from(EngineError::Fenced);
        assert_eq!(a.message, "This space moved to another node; retry");
        // Invalid carries a code and a human text; the body shows each in its place.
        let a = ApiError::from(EngineError::Invalid(
            "invalid_invite",
            "A valid invite code is required".into(),
        ));
        assert_eq!((a.status.as_u16(), a.code), (400, "invalid_invite"));
        assert_eq!(a.message, "A valid invite code is required");
        // A conflict with the target's state is a 409 with its own code; a body over its limit,
        // found by the engine's shared check, is a 413.
        let a = ApiError::from(EngineError::Conflict(
            "edit_window_closed",
            "The edit window has closed".into(),
        ));
        assert_eq!((a.status.as_u16(), a.code), (409, "edit_window_closed"));
        assert_eq!(a.message, "The edit window has closed");
        let a = ApiError::from(EngineError::Invalid("payload_too_large", "body".into()));
        assert_eq!((a.status.as_u16(), a.code), (413, "payload_too_large"));
    }
}
