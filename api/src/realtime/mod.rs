//! Realtime sessions, independent of their protocol.
//!
//! - [`session`]: the session core: subscriptions, ordering and resume, send pipelining, typing,
//!   token refresh, and the slow-consumer rule; it knows no socket and no wire format;
//! - [`output`]: what a session says ([`Output`]) and the adapter's write side ([`Outbox`]);
//! - [`disconnect`]: why a session ends, with stable close codes ([`Disconnect`]);
//! - `join`, `send`, `typing`, `refresh`, `presence`: one file per command.
//!
//! Protocol adapters (the native `/v1/stream` in [`crate::stream`], Socket.IO in
//! [`crate::socketio`]) parse their frames into [`Command`]s, render [`Output`]s, and own their
//! connection's loop and timers. Each event is rendered once per protocol and the bytes are
//! shared by every subscriber of that protocol (`spacecast_engine::event::Renderings`).

pub mod disconnect;
mod join;
mod membership;
pub mod output;
mod presence;
mod refresh;
mod send;
pub mod session;
mod typing;

pub use disconnect::Disconnect;
pub use output::{CommandError, Correlation, Outbox, Output};
pub use session::{Session, Wake};
use spacecast_engine::model::Seq;

/// A client's request, parsed by its protocol adapter.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start receiving a space's events; with `since_seq`, first every event after it.
    Join {
        space_id: String,
        since_seq: Option<Seq>,
    },
    /// Stop receiving a space's events.
    Leave { space_id: String },
    /// Post a message (the fields of the REST send); answered by an ack (once durable) or an
    /// error, with `correlation`.
    Send {
        space_id: String,
        body: Box<crate::routes::v1_messages::SendBody>,
        correlation: Option<Correlation>,
    },
    /// Tell the space's other watchers this user is typing.
    Typing { space_id: String },
    /// Replace the session's token with a newer one of the same user.
    Refresh { token: String },
    /// The client chose its presence status (see `spacecast_engine::presence`).
    Presence {
        status: spacecast_engine::presence::Status,
    },
    /// Nothing to say: keeps the session's presence from timing out. Answered by nothing.
    Heartbeat,
}

impl Command {
    /// The `kind` label of `spacecast_ws_frames_received_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Join { .. } => "join",
            Command::Leave { .. } => "leave",
            Command::Send { .. } => "send",
            Command::Typing { .. } => "typing",
            Command::Refresh { .. } => "refresh",
            Command::Presence { .. } => "presence",
            Command::Heartbeat => "heartbeat",
        }
    }

    /// Whether the command is activity for presence (anything but a heartbeat or a presence
    /// choice).
    pub fn is_activity(&self) -> bool {
        !matches!(self, Command::Presence { .. } | Command::Heartbeat)
    }
}
