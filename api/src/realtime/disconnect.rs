//! Why a realtime session ended, as data: a stable close code, a reason the client reads, and the
//! label of `spacecast_ws_closed_total`. Every protocol adapter closes with these (centrifuge's
//! `Disconnect` is the model): the native stream as a WebSocket close frame, Socket.IO as a
//! disconnect with the same reason.

use std::time::Duration;

/// Longest the close of a session may take before the socket is dropped.
pub const CLOSE_WITHIN: Duration = Duration::from_secs(15);
/// Longest the close to a peer that stopped answering pings may take.
const UNRESPONSIVE_CLOSE: Duration = Duration::from_secs(1);

/// One way a session ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// The WebSocket close code; `None` when no close frame is sent (the client closed first, or
    /// the socket failed).
    pub code: Option<u16>,
    /// The close reason sent to the client (stable: clients match on it).
    pub reason: &'static str,
    /// The `reason` label of `spacecast_ws_closed_total`.
    pub label: &'static str,
}

impl Disconnect {
    /// The client closed (or its socket ended cleanly).
    pub const CLIENT_CLOSED: Self = Self::quiet("client");
    /// A socket read or write failed.
    pub const TRANSPORT_ERROR: Self = Self::quiet("error");
    /// The server is shutting down; reconnect to another node.
    pub const SHUTDOWN: Self = Self::close(1001, "server shutting down", "shutdown");
    /// A client frame exceeded the stream's size limit.
    pub const MESSAGE_TOO_BIG: Self = Self::close(1009, "message too big", "message_too_big");
    /// No token was presented.
    pub const AUTH_MISSING: Self = Self::close(4001, "authentication required", "auth_failed");
    /// The token did not verify.
    pub const AUTH_INVALID: Self = Self::close(4001, "invalid or expired token", "auth_failed");
    /// The token's `exp` passed without a refresh.
    pub const TOKEN_EXPIRED: Self = Self::close(4001, "token_expired", "token_expired");
    /// A ping went unanswered for a whole interval.
    pub const PONG_TIMEOUT: Self = Self::close(4002, "pong timeout", "pong_timeout");
    /// The client fell a whole queue behind, or accepted no bytes for the stall limit; it may
    /// reconnect and resume with `since_seq`.
    pub const SLOW_CONSUMER: Self = Self::close(4008, "slow consumer", "slow_consumer");
    /// Events the client is owed could not be read from the store to fill a gap: rather than
    /// deliver past the gap, close; the client reconnects and resumes with `since_seq`.
    pub const RESYNC: Self = Self::close(1013, "try again: resume with since_seq", "resync");
    /// The session could not subscribe to its user's channel (cluster mode, NATS unreachable):
    /// reconnect later (to this or another node).
    pub const BUS_UNAVAILABLE: Self =
        Self::close(1013, "try again: bus unavailable", "bus_unavailable");

    const fn close(code: u16, reason: &'static str, label: &'static str) -> Self {
        Disconnect {
            code: Some(code),
            reason,
            label,
        }
    }

    const fn quiet(label: &'static str) -> Self {
        Disconnect {
            code: None,
            reason: "",
            label,
        }
    }

    /// How long the close may take: a peer that stopped answering is given little time.
    pub fn close_within(self) -> Duration {
        if self == Self::PONG_TIMEOUT {
            UNRESPONSIVE_CLOSE
        } else {
            CLOSE_WITHIN
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_labels_are_stable() {
        let all = [
            (Disconnect::SHUTDOWN, Some(1001), "shutdown"),
            (Disconnect::MESSAGE_TOO_BIG, Some(1009), "message_too_big"),
            (Disconnect::AUTH_MISSING, Some(4001), "auth_failed"),
            (Disconnect::AUTH_INVALID, Some(4001), "auth_failed"),
            (Disconnect::TOKEN_EXPIRED, Some(4001), "token_expired"),
            (Disconnect::PONG_TIMEOUT, Some(4002), "pong_timeout"),
            (Disconnect::SLOW_CONSUMER, Some(4008), "slow_consumer"),
            (Disconnect::RESYNC, Some(1013), "resync"),
            (Disconnect::BUS_UNAVAILABLE, Some(1013), "bus_unavailable"),
            (Disconnect::CLIENT_CLOSED, None, "client"),
            (Disconnect::TRANSPORT_ERROR, None, "error"),
        ];
        for (d, code, label) in all {
            assert_eq!((d.code, d.label), (code, label));
        }
        assert_eq!(Disconnect::TOKEN_EXPIRED.reason, "token_expired");
        assert!(Disconnect::PONG_TIMEOUT.close_within() < Disconnect::SHUTDOWN.close_within());
    }
}
