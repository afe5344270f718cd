//! The engine's one error type. Conversion to HTTP statuses and close codes happens only at the edge.

use std::time::Duration;

/// Why an engine call failed. Each variant maps to one stable client-visible code
/// ([`EngineError::code`]).
#[derive(Clone, Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Space not found")]
    SpaceNotFound,
    #[error("Message not found")]
    MessageNotFound,
    /// The user named is not a member of the space (a member read, change or removal).
    #[error("Member not found")]
    MemberNotFound,
    #[error("You must be a member to send messages")]
    NotAMember,
    #[error("Already a member")]
    AlreadyMember,
    #[error("{0}")]
    Forbidden(&'static str),
    /// A request the engine refuses: a stable code and a human explanation.
    #[error("{1}")]
    Invalid(&'static str, String),
    /// A request that conflicts with the target's current state (an edit after the edit window,
    /// of a redacted message, a reused idempotency key): a stable code and a human explanation.
    /// The edge answers 409.
    #[error("{1}")]
    Conflict(&'static str, String),
    /// The space's queue is full; retry after the given delay.
    #[error("Too many pending commands for this space; retry shortly")]
    Overloaded { retry_after: Duration },
    /// The store refused or failed a call; nothing was acknowledged.
    #[error("Storage is unavailable: {0}")]
    StoreUnavailable(String),
    /// The space actor stopped while the command was in flight (it is rebuilt from the store on
    /// the next command). The command's outcome is unknown only if it was being written.
    #[error("The space is restarting; retry shortly")]
    SpaceUnavailable,
    /// The cluster bus (NATS) is unreachable, or this node's hold on the space is in doubt:
    /// nothing was done; retry shortly (any node).
    #[error("The cluster bus is unavailable; retry shortly")]
    BusUnavailable(String),
    /// The store refused a commit because its fencing epoch is not the space's current one:
    /// another writer has claimed the space since (`Store::claim`). Nothing of the commit is
    /// visible. The caller is no longer the space's writer and must stop writing it.
    #[error("This space moved to another node; retry")]
    Fenced,
    /// The commit is durable (its events are in the log and will be acknowledged), but some of the
    /// rows it changes were not updated yet. The writer must acknowledge it and then have the space
    /// reloaded: `Store::claim` finishes the update. Never a client-visible outcome of a send.
    #[error("Storage is unavailable: {0}")]
    Unsettled(String),
    /// The node is shutting down.
    #[error("Server is shutting down")]
    ShuttingDown,
    #[error("Internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// The stable, snake_case code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::SpaceNotFound | EngineError::MessageNotFound => "not_found",
            EngineError::MemberNotFound => "member_not_found",
            EngineError::NotAMember => "not_a_member",
            EngineError::AlreadyMember => "already_member",
            EngineError::Forbidden(_) => "forbidden",
            EngineError::Invalid(code, _) | EngineError::Conflict(code, _) => code,
            EngineError::Overloaded { .. } => "overloaded",
            EngineError::StoreUnavailable(_) => "store_unavailable",
            EngineError::SpaceUnavailable | EngineError::Fenced => "unavailable",
            EngineError::Unsettled(_) => "store_unavailable",
            EngineError::ShuttingDown => "shutting_down",
            EngineError::BusUnavailable(_) => "bus_unavailable",
            EngineError::Internal(_) => "internal",
        }
    }

    /// The `kind` label of `spacecast_store_errors_total`: one of a small fixed set
    /// (`spacecast_observability::labels::STORE_ERROR_KINDS`), whatever the backend's message.
    /// - `timeout`: the store did not answer in time (a client or server timeout);
    /// - `overloaded`: the store refused for load (Cassandra `Overloaded`, a rate limit), or a
    ///   queue in front of it was full;
    /// - `unavailable`: the store could not be reached or could not write (no connection,
    ///   not enough replicas, a full disk, a stopped writer);
    /// - `fenced`: a commit refused because another node claimed the space (an owner change);
    /// - `invalid`: the store refused the request itself (a bad query, a conflict);
    /// - `other`: anything else (a corrupt row, an internal error).
    pub fn store_error_kind(&self) -> &'static str {
        fn classify(text: &str) -> &'static str {
            let t = text.to_ascii_lowercase();
            if t.contains("timeout") || t.contains("timed out") || t.contains("in time") {
                "timeout"
            } else if t.contains("overloaded") || t.contains("rate limit") {
                "overloaded"
            } else if t.contains("syntax error") || t.contains("invalid") {
                "invalid"
            } else {
                "unavailable"
            }
        }
        match self {
            EngineError::StoreUnavailable(text) | EngineError::Unsettled(text) => classify(text),
            EngineError::BusUnavailable(_)
            | EngineError::SpaceUnavailable
            | EngineError::ShuttingDown => "unavailable",
            EngineError::Overloaded { .. } => "overloaded",
            EngineError::Fenced => "fenced",
            EngineError::Invalid(..)
            | EngineError::Conflict(..)
            | EngineError::SpaceNotFound
            | EngineError::MessageNotFound
            | EngineError::MemberNotFound
            | EngineError::NotAMember
            | EngineError::AlreadyMember
            | EngineError::Forbidden(_) => "invalid",
            EngineError::Internal(_) => "other",
        }
    }

    /// How long a client should wait before retrying, for transient failures.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            EngineError::Overloaded { retry_after } => Some(*retry_after),
            EngineError::StoreUnavailable(_)
            | EngineError::Unsettled(_)
            | EngineError::SpaceUnavailable
            | EngineError::BusUnavailable(_)
            | EngineError::Fenced
            | EngineError::ShuttingDown => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

/// Engine results.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_error_kinds_come_from_a_small_fixed_set() {
        let cases = [
            (
                EngineError::StoreUnavailable(
                    "Request execution exceeded a client timeout of 5000ms".into(),
                ),
                "timeout",
            ),
            (
                EngineError::StoreUnavailable(
                    "Database returned an error: Not enough nodes responded to the write request in time to satisfy required consistency".into(),
                ),
                "timeout",
            ),
            (
                EngineError::StoreUnavailable(
                    "The request cannot be processed because the coordinator node is overloaded"
                        .into(),
                ),
                "overloaded",
            ),
            (
                EngineError::StoreUnavailable("No connections in the pool: broken".into()),
                "unavailable",
            ),
            (
                EngineError::Unsettled("No space left on device".into()),
                "unavailable",
            ),
            (
                EngineError::StoreUnavailable("The submitted query has a syntax error".into()),
                "invalid",
            ),
            (EngineError::Fenced, "fenced"),
            (EngineError::Internal("corrupt row".into()), "other"),
            (
                EngineError::Overloaded {
                    retry_after: Duration::from_secs(1),
                },
                "overloaded",
            ),
            (EngineError::Invalid("bad", "bad".into()), "invalid"),
        ];
        for (e, kind) in cases {
            assert_eq!(e.store_error_kind(), kind, "{e:?}");
            assert!(
                spacecast_observability::labels::STORE_ERROR_KINDS.contains(&kind),
                "{kind} is a pre-created label value"
            );
        }
    }
}
