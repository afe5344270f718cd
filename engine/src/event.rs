//! Space events: every state change of a space, numbered by the space's `seq`.
//!
//! An event is built by the space actor, made durable by the store, and only then published to
//! the fan-out hub as a [`Published`] value shared (`Arc`) by every subscriber. Each wire format
//! is serialized at most once per event, lazily, by the first session that needs it
//! ([`Published::native_frame`]); every other subscriber writes the same bytes.

use std::sync::OnceLock;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::model::{Message, MessageId, Seq, SpaceId, Timestamp};

/// The reaction key that Space7's "appreciate" toggles.
pub const APPRECIATE: &str = "appreciate";

/// What happened, with the data observers need.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum EventKind {
    /// A message was created; the data is the message as created.
    MessageCreated(Message),
    /// A message was deleted (hard delete, as Space7 does).
    MessageDeleted(MessageDeleted),
    /// A user added or removed a reaction.
    ReactionChanged(ReactionChanged),
}

impl EventKind {
    /// The `event` name on the wire and the metric label.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::MessageCreated(_) => "message_created",
            EventKind::MessageDeleted(_) => "message_deleted",
            EventKind::ReactionChanged(_) => "reaction_changed",
        }
    }
}

/// Data of `message_deleted`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageDeleted {
    pub message_id: MessageId,
    /// Who deleted it (the author or a moderator).
    pub deleted_by: String,
}

/// Data of `reaction_changed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReactionChanged {
    pub message_id: MessageId,
    pub key: String,
    pub user_id: String,
    /// True when the reaction was added, false when removed.
    pub added: bool,
    /// The key's count after the change.
    pub count: u32,
    /// The message's appreciation count after the change.
    pub appreciation_count: u32,
}

/// One entry of a space's event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpaceEvent {
    pub space_id: SpaceId,
    pub seq: Seq,
    pub at: Timestamp,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A durable event as handed to subscribers, with its wire encodings cached.
#[derive(Debug)]
pub struct Published {
    pub event: SpaceEvent,
    native: OnceLock<Bytes>,
}

impl Published {
    pub fn new(event: SpaceEvent) -> Self {
        Published {
            event,
            native: OnceLock::new(),
        }
    }

    /// The native stream frame (`{"type":"event","space_id",…,"seq","event","data"}`), serialized
    /// once and shared by every native subscriber.
    pub fn native_frame(&self) -> &Bytes {
        self.native.get_or_init(|| {
            #[derive(Serialize)]
            struct Frame<'a> {
                r#type: &'static str,
                space_id: SpaceId,
                seq: Seq,
                at: Timestamp,
                #[serde(flatten)]
                kind: &'a EventKind,
            }
            let frame = Frame {
                r#type: "event",
                space_id: self.event.space_id,
                seq: self.event.seq,
                at: self.event.at,
                kind: &self.event.kind,
            };
            // Serializing plain data with string keys cannot fail.
            Bytes::from(serde_json::to_vec(&frame).unwrap_or_default())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::new_id;

    #[test]
    fn native_frame_has_the_contract_fields_and_is_cached() {
        let ev = SpaceEvent {
            space_id: new_id(),
            seq: 7,
            at: Timestamp(0),
            kind: EventKind::MessageDeleted(MessageDeleted {
                message_id: new_id(),
                deleted_by: "u1".into(),
            }),
        };
        let p = Published::new(ev.clone());
        let v: serde_json::Value = serde_json::from_slice(p.native_frame()).unwrap();
        assert_eq!(v["type"], "event");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["event"], "message_deleted");
        assert_eq!(v["space_id"], ev.space_id.to_string());
        assert_eq!(v["data"]["deleted_by"], "u1");
        // The same allocation is handed out again.
        assert_eq!(p.native_frame().as_ptr(), p.native_frame().as_ptr());
        // The log encoding round-trips.
        let stored = serde_json::to_vec(&ev).unwrap();
        assert_eq!(serde_json::from_slice::<SpaceEvent>(&stored).unwrap(), ev);
    }
}
