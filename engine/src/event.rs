//! Space events: every state change of a space, numbered by the space's `seq`.
//!
//! An event is built by the space actor, made durable by the store, and only then published to
//! the fan-out hub as a [`Published`] value shared (`Arc`) by every subscriber. The engine knows
//! no wire format: each protocol adapter of the edge renders an event at most once, lazily, by the
//! first session of that protocol that needs it ([`Renderings`]); every other subscriber of that
//! protocol writes the same bytes.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use spacecast_observability::trace::TraceParent;

use crate::model::{Message, MessageId, PostingPermission, Seq, SpaceId, Timestamp};

/// The reaction key that Space7's "appreciate" toggles.
pub const APPRECIATE: &str = "appreciate";

/// What happened, with the data observers need.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum EventKind {
    /// A message was created; the data is the message as created.
    MessageCreated(Message),
    /// A message was edited; the data is the message after the edit (clients replace their copy
    /// by `message_id`).
    MessageEdited(Message),
    /// A message was redacted; the data is the message after the redaction (wiped).
    MessageRedacted(Message),
    /// A message was deleted (hard delete, as Space7 does).
    MessageDeleted(MessageDeleted),
    /// A user added or removed a reaction.
    ReactionChanged(ReactionChanged),
    /// A member's power level was set, or a user was added as a member with it.
    MemberUpdated(MemberUpdated),
    /// A member was removed (kicked) or left. In a private space the user loses read access
    /// with this event: sessions of that user subscribed to the space end their subscription.
    MemberRemoved(MemberRemoved),
    /// The space's settings changed.
    SpaceUpdated(SpaceUpdated),
}

impl EventKind {
    /// The `event` name on the wire and the metric label.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::MessageCreated(_) => "message_created",
            EventKind::MessageEdited(_) => "message_edited",
            EventKind::MessageRedacted(_) => "message_redacted",
            EventKind::MessageDeleted(_) => "message_deleted",
            EventKind::ReactionChanged(_) => "reaction_changed",
            EventKind::MemberUpdated(_) => "member_updated",
            EventKind::MemberRemoved(_) => "member_removed",
            EventKind::SpaceUpdated(_) => "space_updated",
        }
    }
}

/// Data of `message_deleted`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MessageDeleted {
    #[schema(value_type = String, format = Uuid)]
    pub message_id: MessageId,
    /// Who deleted it (the author or a moderator).
    pub deleted_by: String,
    /// The thread root it replied to, if it was a reply (whose `reply_count` went down by one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub parent_id: Option<MessageId>,
}

/// Data of `reaction_changed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReactionChanged {
    #[schema(value_type = String, format = Uuid)]
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

/// Data of `member_updated`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberUpdated {
    pub user_id: String,
    /// The member's power level after the change.
    pub power_level: i32,
    /// Who set it.
    pub by: String,
}

/// Data of `member_removed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberRemoved {
    pub user_id: String,
    /// Who removed them (`user_id` itself when they left).
    pub by: String,
    /// True when the member left, false when removed by another member.
    pub left: bool,
}

/// Data of `space_updated`: the space's settings after the change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SpaceUpdated {
    pub posting_permission: PostingPermission,
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

/// How many wire formats an event can be rendered in at once (one slot per protocol adapter).
pub const WIRE_SLOTS: usize = 2;

/// One protocol's rendering of hub values: the slot it is cached in and its type (for the native
/// stream, a text frame; for Socket.IO, an encoded packet). Defined by the protocol adapter, one
/// constant per protocol, each with its own slot `< WIRE_SLOTS`.
pub struct Wire<T> {
    slot: usize,
    _rendered: PhantomData<fn() -> T>,
}

impl<T> Wire<T> {
    pub const fn new(slot: usize) -> Self {
        Wire {
            slot,
            _rendered: PhantomData,
        }
    }
}

/// A value's renderings, one per protocol, each made once and shared by every subscriber of that
/// protocol.
#[derive(Default)]
pub struct Renderings {
    slots: [OnceLock<Box<dyn Any + Send + Sync>>; WIRE_SLOTS],
}

impl std::fmt::Debug for Renderings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cached = self.slots.iter().filter(|s| s.get().is_some()).count();
        f.debug_struct("Renderings")
            .field("cached", &cached)
            .finish()
    }
}

impl Renderings {
    /// The rendering for `wire`, made by `render` the first time and cloned (a reference count:
    /// renderings are shared buffers) afterwards.
    ///
    /// A wire with a slot out of range, or two wires of different types on one slot (a bug of the
    /// edge), still get a correct rendering, just not a cached one.
    pub fn get<T>(&self, wire: &Wire<T>, render: impl FnOnce() -> T) -> T
    where
        T: Any + Clone + Send + Sync,
    {
        let Some(slot) = self.slots.get(wire.slot) else {
            debug_assert!(false, "wire slot {} out of range", wire.slot);
            return render();
        };
        if let Some(cached) = slot.get() {
            if let Some(r) = cached.downcast_ref::<T>() {
                return r.clone();
            }
            debug_assert!(false, "wire slot {} used with two types", wire.slot);
            return render();
        }
        let r = render();
        // Two sessions rendering the same value at once both produce the same bytes; the first
        // one cached is kept.
        let _ = slot.set(Box::new(r.clone()));
        r
    }
}

/// A durable event as handed to subscribers, with its wire renderings cached.
#[derive(Debug)]
pub struct Published {
    pub event: SpaceEvent,
    pub rendered: Renderings,
    /// The exported span this event's delivery continues (the commit or bus span of the send
    /// that made it), when that trace is sampled; `None` with traces off.
    pub trace: Option<TraceParent>,
}

impl Published {
    pub fn new(event: SpaceEvent) -> Self {
        Published {
            event,
            rendered: Renderings::default(),
            trace: None,
        }
    }

    /// `events`, each with its entry of `traces` (sorted by seq; only sampled events have one).
    pub fn all(
        events: impl IntoIterator<Item = SpaceEvent>,
        traces: &[(Seq, TraceParent)],
    ) -> Arc<[Published]> {
        let mut traces = traces.iter().peekable();
        events
            .into_iter()
            .map(|event| {
                while traces.next_if(|(s, _)| *s < event.seq).is_some() {}
                let trace = traces.next_if(|(s, _)| *s == event.seq).map(|(_, t)| *t);
                Published {
                    event,
                    rendered: Renderings::default(),
                    trace,
                }
            })
            .collect()
    }
}

#[cfg(test)]
impl SpaceEvent {
    /// Some event of `space_id` at `seq` (a fresh message's deletion), for unit tests that need
    /// an event and not its content.
    pub(crate) fn any_at(space_id: SpaceId, seq: Seq) -> SpaceEvent {
        SpaceEvent {
            space_id,
            seq,
            at: Timestamp(0),
            kind: EventKind::MessageDeleted(MessageDeleted {
                message_id: crate::model::new_id(),
                deleted_by: "u".into(),
                parent_id: None,
            }),
        }
    }
}

/// The trace each sampled event of a commit continues, by seq (ascending); empty (no
/// allocation) when nothing in the commit is sampled.
pub type EventTraces = Vec<(Seq, TraceParent)>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::new_id;

    #[test]
    fn renderings_are_made_once_per_wire_and_shared() {
        const A: Wire<bytes::Bytes> = Wire::new(0);
        const B: Wire<String> = Wire::new(1);
        const OUT_OF_RANGE: Wire<String> = Wire::new(WIRE_SLOTS);
        let ev = SpaceEvent {
            space_id: new_id(),
            seq: 7,
            at: Timestamp(0),
            kind: EventKind::MessageDeleted(MessageDeleted {
                message_id: new_id(),
                deleted_by: "u1".into(),
                parent_id: None,
            }),
        };
        let p = Published::new(ev.clone());
        let mut renders = 0;
        let a1 = p.rendered.get(&A, || {
            renders += 1;
            bytes::Bytes::from_static(b"a")
        });
        let a2 = p.rendered.get(&A, || {
            renders += 1;
            bytes::Bytes::from_static(b"other")
        });
        assert_eq!(renders, 1, "rendered once");
        assert_eq!(a1.as_ptr(), a2.as_ptr(), "one shared buffer");
        assert_eq!(p.rendered.get(&B, || "b".to_owned()), "b");
        assert_eq!(p.rendered.get(&B, || "not again".to_owned()), "b");
        // The log encoding round-trips.
        let stored = serde_json::to_vec(&ev).unwrap();
        assert_eq!(serde_json::from_slice::<SpaceEvent>(&stored).unwrap(), ev);
        // Release builds still answer correctly for a slot that does not exist.
        if !cfg!(debug_assertions) {
            assert_eq!(p.rendered.get(&OUT_OF_RANGE, || "x".to_owned()), "x");
        }
    }

    #[test]
    fn published_events_take_their_trace_by_seq() {
        use spacecast_observability::trace::TraceParent;
        let space_id = new_id();
        let ev = |seq| SpaceEvent::any_at(space_id, seq);
        let t =
            TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        // Entries for seqs not delivered (1, 4) are skipped.
        let p = Published::all([ev(2), ev(3), ev(5)], &[(1, t), (3, t), (4, t), (5, t)]);
        let traced: Vec<(u64, bool)> = p.iter().map(|p| (p.event.seq, p.trace.is_some())).collect();
        assert_eq!(traced, vec![(2, false), (3, true), (5, true)]);
        assert!(
            Published::all([ev(1)], &[])
                .iter()
                .all(|p| p.trace.is_none())
        );
    }
}
