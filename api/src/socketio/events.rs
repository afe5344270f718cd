//! The Socket.IO wire format (reference/space7.md §4): client events parsed into session
//! [`Command`]s, and session [`Output`]s rendered as server events.
//!
//! Client events (a payload is the event's first argument; acknowledgement callbacks are not
//! answered):
//!
//! | event | payload | effect |
//! | --- | --- | --- |
//! | `join_space` | `"<space id>"` or `{"space_id", "since_seq"?}` | join; with `since_seq`, first every event after it |
//! | `leave_space` | `"<space id>"` or `{"space_id"}` | leave |
//! | `typing` | `"<space id>"` or `{"space_id"}` | tell the space's other watchers (extension) |
//! | `presence` | `"online"`, `"idle"`, `"busy"`, `"offline"` or `{"status"}` | choose the socket's presence status (extension) |
//! | `heartbeat` | none | nothing (extension; Engine.IO's ping/pong already keeps a socket's presence) |
//! | `send_message`, `message_appreciated` | anything | ignored: the app relays its own REST calls, and the server already fans out from the writes themselves (counted as `relay_ignored`) |
//! | any other | anything | ignored (counted as `unknown`) |
//!
//! Server events (JSON payloads):
//!
//! | event | payload |
//! | --- | --- |
//! | `receive_message` | `{"space_id", "message"}`, `message` exactly as the REST `/api/messages` endpoints render it (with its `seq`) |
//! | `message_appreciated` | `{"spaceId", "messageId", "appreciated", "userId", "appreciation_count", "seq"}` (`appreciated`: the appreciation was added) |
//! | `joined_space` | `{"space_id", "head_seq"}` after a join (extension) |
//! | `left_space` | `{"space_id"}` after a leave (extension) |
//! | `typing` | `{"space_id", "user_id", "username"}` (extension) |
//! | `presence` | `{"space_id", "user_id", "username", "status"}`: a user's status changed in a joined space (extension) |
//! | `presence_count` | `{"space_id", "online"}`: periodically, in a space above `--presence-max-subscribers` (extension) |
//! | `notification` | a `Notification` (as `GET /api/notifications` lists it): one of the socket user's, live (extension; every event of the user's channel is emitted under its `type`) |
//! | `spacecast_error` | `{"code", "error", "space_id"?, "retry_after"?}`: a command was refused (extension) |
//! | `spacecast_disconnect` | `{"code", "reason"}` just before the server disconnects the socket (extension; the native stream's close code and reason) |
//!
//! `receive_message` is `{space_id, message}`, not the flat superset `{...message, space_id,
//! message}` that would also suit clients written for another Space7 backend: the app reads
//! only `space_id` and `message`, and the superset would double the bytes of every delivery.
//! Only message creations and `appreciate` reactions have a Space7 event; deletes and other
//! reactions are not carried, and no event reaches the sockets of the user who caused it (the
//! app has already applied its own change and does not de-duplicate).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use spacecast_engine::event::{APPRECIATE, EventKind, SpaceEvent, Wire};
use spacecast_engine::hub::Typing;
use spacecast_engine::model::{Message, MessageId, Seq, SpaceId};

use crate::realtime::{Command, CommandError, Disconnect, Output};

/// The Socket.IO rendering of hub values: an event's name and payload, serialized once and
/// shared by every Socket.IO subscriber (`None`: the event has no Socket.IO form).
pub const SOCKETIO: Wire<Option<Rendered>> = Wire::new(1);

/// A server event ready for `emit`.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub event: &'static str,
    /// The payload's JSON, handed to socketioxide as is (`RawValue` serializes verbatim).
    pub data: Arc<RawValue>,
}

/// What a client event asks for.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// A command for the session.
    Command(Command),
    /// A known event with a payload it does not take.
    Invalid(CommandError),
    /// The app's relay of its own REST write: never acted on.
    Relay,
    /// An event this server has no use for.
    Unknown,
}

/// A space named by a client event: a bare id, as the app sends, or an object.
#[derive(Deserialize)]
#[serde(untagged)]
enum SpaceArg {
    Id(String),
    Object {
        space_id: String,
        #[serde(default)]
        since_seq: Option<Seq>,
    },
}

/// Parses the client event `event` with its first argument `data` (`None` without one).
pub fn parse(event: &str, data: Option<serde_json::Value>) -> Parsed {
    if event == "presence" {
        return match presence_arg(data) {
            Ok(status) => Parsed::Command(Command::Presence { status }),
            Err(e) => Parsed::Invalid(e),
        };
    }
    let space = move |what: &str| -> Result<(String, Option<Seq>), CommandError> {
        data.and_then(|d| serde_json::from_value::<SpaceArg>(d).ok())
            .map(|arg| match arg {
                SpaceArg::Id(id) => (id, None),
                SpaceArg::Object {
                    space_id,
                    since_seq,
                } => (space_id, since_seq),
            })
            .ok_or_else(|| {
                CommandError::new(
                    "invalid_event",
                    format!("{what} takes a space id, or an object with space_id"),
                )
            })
    };
    let command = match event {
        "join_space" => space("join_space").map(|(space_id, since_seq)| Command::Join {
            space_id,
            since_seq,
        }),
        "leave_space" => space("leave_space").map(|(space_id, _)| Command::Leave { space_id }),
        "typing" => space("typing").map(|(space_id, _)| Command::Typing { space_id }),
        "heartbeat" => Ok(Command::Heartbeat),
        "send_message" | "message_appreciated" => return Parsed::Relay,
        _ => return Parsed::Unknown,
    };
    match command {
        Ok(c) => Parsed::Command(c),
        Err(e) => Parsed::Invalid(e),
    }
}

/// The status of a `presence` event: `"busy"` or `{"status": "busy"}`.
fn presence_arg(
    data: Option<serde_json::Value>,
) -> Result<spacecast_engine::presence::Status, CommandError> {
    let s = match &data {
        Some(serde_json::Value::String(s)) => Some(s.as_str()),
        Some(v) => v.get("status").and_then(serde_json::Value::as_str),
        None => None,
    };
    s.and_then(spacecast_engine::presence::Status::parse)
        .ok_or_else(|| {
            CommandError::new(
                "invalid_event",
                "presence takes a status (online, idle, busy, offline), or an object with status",
            )
        })
}

/// Who caused `ev`, if it has a Socket.IO form at all: the sender of a message, the user who
/// toggled an appreciation. Their own sockets do not get it.
pub fn carried(ev: &SpaceEvent) -> Option<&str> {
    match &ev.kind {
        EventKind::MessageCreated(m) => Some(&m.sender_id),
        EventKind::ReactionChanged(r) if r.key == APPRECIATE => Some(&r.user_id),
        EventKind::ReactionChanged(_)
        | EventKind::MessageDeleted(_)
        | EventKind::MessageEdited(_)
        | EventKind::MessageRedacted(_)
        | EventKind::MemberUpdated(_)
        | EventKind::MemberRemoved(_)
        | EventKind::SpaceUpdated(_) => None,
    }
}

/// The server event for `out`, if it has one (the native stream's `hello`, acks and
/// `refreshed` have no Socket.IO form: Socket.IO has its own handshake, and no send or
/// refresh command here).
pub fn render(out: &Output<'_>) -> Option<Rendered> {
    match out {
        Output::Event(p) => p.rendered.get(&SOCKETIO, || event(&p.event)),
        Output::Typing(t) => t.rendered.get(&SOCKETIO, || Some(typing(t))),
        // `emit(<event type>, data)`, rendered once for every Socket.IO session of the user.
        Output::User(u) => u.rendered.get(&SOCKETIO, || {
            Some(rendered(u.event.name(), &u.event.socketio_payload()))
        }),
        // `emit("presence" | "presence_count", data)`, rendered once for every Socket.IO
        // subscriber of the space.
        Output::Presence(p) => p.rendered.get(&SOCKETIO, || {
            Some(rendered(p.frame.name(), &p.frame.socketio_payload()))
        }),
        Output::Joined { space_id, head_seq } => Some(rendered(
            "joined_space",
            &serde_json::json!({"space_id": space_id, "head_seq": head_seq}),
        )),
        Output::Left { space_id } => Some(rendered(
            "left_space",
            &serde_json::json!({"space_id": space_id}),
        )),
        Output::Removed { space_id } => Some(rendered(
            "left_space",
            &serde_json::json!({"space_id": space_id, "reason": "removed"}),
        )),
        Output::Error {
            space_id, error, ..
        } => {
            let mut v = serde_json::json!({"code": error.code, "error": error.message});
            if let Some(s) = space_id {
                v["space_id"] = serde_json::Value::String((*s).to_owned());
            }
            if let Some(secs) = error.retry_after_secs() {
                v["retry_after"] = secs.into();
            }
            Some(rendered("spacecast_error", &v))
        }
        Output::Hello { .. } | Output::Ack { .. } | Output::Refreshed { .. } => None,
    }
}

/// `spacecast_disconnect {code, reason}`: why the server is about to disconnect the socket.
pub fn disconnect(d: Disconnect) -> Rendered {
    rendered(
        "spacecast_disconnect",
        &serde_json::json!({"code": d.code, "reason": d.reason}),
    )
}

/// `spacecast_error {code: "overloaded", …}`: a command dropped because the socket's command
/// queue was full.
pub fn overflow() -> Rendered {
    rendered(
        "spacecast_error",
        &serde_json::json!({
            "code": "overloaded",
            "error": "Too many events waiting to be handled; slow down",
        }),
    )
}

fn rendered<T: Serialize>(event: &'static str, payload: &T) -> Rendered {
    // Serializing plain data with string keys cannot fail.
    let raw = serde_json::value::to_raw_value(payload)
        .unwrap_or_else(|_| RawValue::from_string("null".to_owned()).expect("valid JSON"));
    Rendered {
        event,
        data: Arc::from(raw),
    }
}

/// The Space7 event of a durable event, if it has one.
fn event(ev: &SpaceEvent) -> Option<Rendered> {
    #[derive(Serialize)]
    struct ReceiveMessage<'a> {
        space_id: SpaceId,
        message: &'a Message,
    }
    #[derive(Serialize)]
    struct Appreciated<'a> {
        #[serde(rename = "spaceId")]
        space_id: SpaceId,
        #[serde(rename = "messageId")]
        message_id: MessageId,
        appreciated: bool,
        #[serde(rename = "userId")]
        user_id: &'a str,
        appreciation_count: u32,
        seq: Seq,
    }
    match &ev.kind {
        EventKind::MessageCreated(message) => Some(rendered(
            "receive_message",
            &ReceiveMessage {
                space_id: ev.space_id,
                message,
            },
        )),
        EventKind::ReactionChanged(r) if r.key == APPRECIATE => Some(rendered(
            "message_appreciated",
            &Appreciated {
                space_id: ev.space_id,
                message_id: r.message_id,
                appreciated: r.added,
                user_id: &r.user_id,
                appreciation_count: r.appreciation_count,
                seq: ev.seq,
            },
        )),
        EventKind::ReactionChanged(_)
        | EventKind::MessageDeleted(_)
        | EventKind::MessageEdited(_)
        | EventKind::MessageRedacted(_)
        | EventKind::MemberUpdated(_)
        | EventKind::MemberRemoved(_)
        | EventKind::SpaceUpdated(_) => None,
    }
}

/// `typing {space_id, user_id, username}`
fn typing(t: &Typing) -> Rendered {
    rendered(
        "typing",
        &serde_json::json!({
            "space_id": t.space_id,
            "user_id": t.user_id,
            "username": t.username,
        }),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use spacecast_engine::event::{MessageDeleted, Published, ReactionChanged};
    use spacecast_engine::model::{Timestamp, UserRef, new_id};

    use super::*;

    fn published(kind: EventKind) -> Published {
        Published::new(SpaceEvent {
            space_id: new_id(),
            seq: 9,
            at: Timestamp(0),
            kind,
        })
    }

    fn message(space_id: SpaceId) -> Message {
        Message {
            message_id: new_id(),
            space_id,
            seq: 9,
            sender_id: "ada".into(),
            content: Some("hello".into()),
            media_url: None,
            media_type: None,
            word_count: 1,
            sender: UserRef {
                user_id: "ada".into(),
                username: "Ada".into(),
                profile_picture: String::new(),
            },
            likes: Some(vec![]),
            appreciation_count: 0,
            created_at: Timestamp(0),
            ..Default::default()
        }
    }

    fn payload(r: &Rendered) -> Value {
        serde_json::from_str(r.data.get()).unwrap()
    }

    #[test]
    fn client_events_parse_as_the_app_sends_them() {
        assert_eq!(
            parse("join_space", Some(json!("s1"))),
            Parsed::Command(Command::Join {
                space_id: "s1".into(),
                since_seq: None
            })
        );
        assert_eq!(
            parse(
                "join_space",
                Some(json!({"space_id": "s1", "since_seq": 4}))
            ),
            Parsed::Command(Command::Join {
                space_id: "s1".into(),
                since_seq: Some(4)
            })
        );
        assert_eq!(
            parse("leave_space", Some(json!({"space_id": "s1"}))),
            Parsed::Command(Command::Leave {
                space_id: "s1".into()
            })
        );
        assert_eq!(
            parse("typing", Some(json!("s1"))),
            Parsed::Command(Command::Typing {
                space_id: "s1".into()
            })
        );
        assert_eq!(
            parse("send_message", Some(json!({"spaceId": "s1"}))),
            Parsed::Relay
        );
        assert_eq!(parse("message_appreciated", None), Parsed::Relay);
        assert_eq!(parse("dance", Some(json!(1))), Parsed::Unknown);
        for bad in [
            None,
            Some(json!(7)),
            Some(json!({"id": "s1"})),
            Some(json!(null)),
        ] {
            let Parsed::Invalid(e) = parse("join_space", bad.clone()) else {
                panic!("{bad:?} is not a join")
            };
            assert_eq!(e.code, "invalid_event");
        }
        let Parsed::Invalid(_) = parse(
            "join_space",
            Some(json!({"space_id": "s", "since_seq": -1})),
        ) else {
            panic!("a negative since_seq is refused")
        };
    }

    #[test]
    fn space7_events_have_the_contract_shapes_and_are_rendered_once() {
        let space = new_id();
        let m = message(space);
        let created = Published::new(SpaceEvent {
            space_id: space,
            seq: 9,
            at: Timestamp(0),
            kind: EventKind::MessageCreated(m.clone()),
        });
        let a = render(&Output::Event(&created)).unwrap();
        assert_eq!(a.event, "receive_message");
        let v = payload(&a);
        assert_eq!(v["space_id"], space.to_string());
        // Exactly the REST rendering of the message.
        assert_eq!(v["message"], serde_json::to_value(&m).unwrap());
        assert_eq!(v.as_object().unwrap().len(), 2);
        let b = render(&Output::Event(&created)).unwrap();
        assert!(
            Arc::ptr_eq(&a.data, &b.data),
            "one rendering for every socket"
        );
        assert_eq!(carried(&created.event), Some("ada"));

        let mid = new_id();
        let liked = published(EventKind::ReactionChanged(ReactionChanged {
            message_id: mid,
            key: APPRECIATE.into(),
            user_id: "bob".into(),
            added: false,
            count: 2,
            appreciation_count: 2,
        }));
        let r = render(&Output::Event(&liked)).unwrap();
        assert_eq!(r.event, "message_appreciated");
        assert_eq!(
            payload(&r),
            json!({
                "spaceId": liked.event.space_id,
                "messageId": mid,
                "appreciated": false,
                "userId": "bob",
                "appreciation_count": 2,
                "seq": 9,
            })
        );
        assert_eq!(carried(&liked.event), Some("bob"));

        let other = published(EventKind::ReactionChanged(ReactionChanged {
            message_id: mid,
            key: "🎉".into(),
            user_id: "bob".into(),
            added: true,
            count: 1,
            appreciation_count: 0,
        }));
        let deleted = published(EventKind::MessageDeleted(MessageDeleted {
            message_id: mid,
            deleted_by: "ada".into(),
            parent_id: None,
        }));
        // The native surface's edits and redactions have no Socket.IO form (Space7 has none).
        let edited = published(EventKind::MessageEdited(message(liked.event.space_id)));
        let redacted = published(EventKind::MessageRedacted(message(liked.event.space_id)));
        for p in [&other, &deleted, &edited, &redacted] {
            assert_eq!(carried(&p.event), None);
            assert!(render(&Output::Event(p)).is_none());
        }
    }

    #[test]
    fn extensions_render_and_native_only_outputs_do_not() {
        let space = new_id();
        let j = render(&Output::Joined {
            space_id: space,
            head_seq: 3,
        })
        .unwrap();
        assert_eq!(
            (j.event, payload(&j)),
            ("joined_space", json!({"space_id": space, "head_seq": 3}))
        );
        let e = CommandError::new("not_found", "Space not found");
        let r = render(&Output::Error {
            correlation: None,
            space_id: Some("nope"),
            error: &e,
        })
        .unwrap();
        assert_eq!(
            (r.event, payload(&r)),
            (
                "spacecast_error",
                json!({"code": "not_found", "error": "Space not found", "space_id": "nope"})
            )
        );
        let t = Typing::new(space, "u2".into(), "Bob".into(), 1);
        let r = render(&Output::Typing(&t)).unwrap();
        assert_eq!(
            (r.event, payload(&r)),
            (
                "typing",
                json!({"space_id": space, "user_id": "u2", "username": "Bob"})
            )
        );
        assert!(
            render(&Output::Hello {
                session_id: "s",
                node_id: "n"
            })
            .is_none()
        );
        assert!(render(&Output::Refreshed { exp: 1 }).is_none());
        let d = disconnect(Disconnect::TOKEN_EXPIRED);
        assert_eq!(
            (d.event, payload(&d)),
            (
                "spacecast_disconnect",
                json!({"code": 4001, "reason": "token_expired"})
            )
        );
        assert_eq!(payload(&overflow())["code"], "overloaded");
    }
}
