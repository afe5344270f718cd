//! What a session says to its client, independent of the wire: [`Output`] values handed to the
//! protocol adapter's [`Outbox`], which renders and writes them.

use std::future::Future;

use spacecast_engine::event::Published;
use spacecast_engine::hub::Typing;
use spacecast_engine::model::{Message, Seq, SpaceId};
use spacecast_engine::presence::PresenceItem;
use spacecast_engine::users::UserPublished;

use super::Disconnect;

/// Why a client command was refused; the session stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// A stable code (the REST error codes, plus the stream's own).
    pub code: &'static str,
    pub message: String,
    /// When retrying makes sense, after how long (`rate_limited`, `overloaded`, …): the
    /// `Retry-After` of the same refusal on REST.
    pub retry_after: Option<std::time::Duration>,
}

impl CommandError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        CommandError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// `retry_after` in whole seconds, rounded up and at least 1, as `Retry-After` is.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(crate::error::retry_after_secs)
    }
}

impl From<crate::error::ApiError> for CommandError {
    fn from(e: crate::error::ApiError) -> Self {
        CommandError {
            code: e.code,
            message: e.message,
            retry_after: e.retry_after,
        }
    }
}

impl From<spacecast_engine::EngineError> for CommandError {
    fn from(e: spacecast_engine::EngineError) -> Self {
        crate::error::ApiError::from(e).into()
    }
}

/// A client's correlation value for a command (the native stream's `local_id`, a Socket.IO ack
/// id): echoed with the command's answer, never interpreted.
pub type Correlation = serde_json::Value;

/// One thing to tell the client.
#[derive(Debug)]
pub enum Output<'a> {
    /// The session started.
    Hello {
        session_id: &'a str,
        node_id: &'a str,
    },
    /// A join succeeded; events after `head_seq` follow (after the replay, if one was asked).
    Joined {
        space_id: SpaceId,
        head_seq: Seq,
    },
    Left {
        space_id: SpaceId,
    },
    /// The subscription to a space ended because the user was removed from it and may no
    /// longer read it (a private space); see `membership.rs`.
    Removed {
        space_id: SpaceId,
    },
    /// One durable event of a joined space, in seq order, never twice.
    Event(&'a Published),
    /// Another user of a joined space is typing.
    Typing(&'a Typing),
    /// An event of the session's user's channel (a notification, …): best effort, not
    /// sequenced.
    User(&'a UserPublished),
    /// A presence change or count of a joined space (see `spacecast_engine::presence`).
    Presence(&'a PresenceItem),
    /// A send is durable.
    Ack {
        correlation: Option<&'a Correlation>,
        message: &'a Message,
    },
    /// A command was refused. `space_id` is the space the command named, as the client wrote it.
    Error {
        correlation: Option<&'a Correlation>,
        space_id: Option<&'a str>,
        error: &'a CommandError,
    },
    /// The session now ends at `exp` (unix seconds).
    Refreshed {
        exp: u64,
    },
}

/// A protocol adapter's write side for one connection.
///
/// `put` renders and queues; it may wait while the transport's buffer is full (backpressure), and
/// fails with the [`Disconnect`] that ends the session (a dead socket, a client that accepts
/// nothing for the stall limit). `flush` writes what is queued: the session core calls it once
/// after a batch of outputs, so a wake-up that finds many events ready costs one socket write.
pub trait Outbox: Send {
    fn put(&mut self, out: Output<'_>) -> impl Future<Output = Result<(), Disconnect>> + Send;
    fn flush(&mut self) -> impl Future<Output = Result<(), Disconnect>> + Send;

    /// Whether this protocol tells its client about `event` at all (by default, every event).
    /// An event not carried still counts as given to the client (the session's order and resume
    /// bookkeeping moves past it); it is only not written. Socket.IO carries only the events the
    /// Space7 app has a name for, and never to the user who caused them.
    fn carries(&self, _event: &Published) -> bool {
        true
    }
}
