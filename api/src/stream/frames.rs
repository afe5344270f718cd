//! The native stream's wire format (CONTRACT.md §6): client frames parsed into session
//! [`Command`]s, and session [`Output`]s rendered as JSON text frames.
//!
//! Events and typing signals are rendered once for every native subscriber ([`NATIVE`]): the
//! first session that writes one serializes it, the others write the same bytes.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use spacecast_engine::event::{EventKind, SpaceEvent, Wire};
use spacecast_engine::hub::Typing;
use spacecast_engine::model::{Message, Seq, SpaceId, Timestamp};
use utoipa::ToSchema;

use crate::realtime::{Command, CommandError, Correlation, Output};
use crate::routes::v1_messages::SendBody;

/// The native rendering of hub values: a text frame's payload, shared by every subscriber.
pub const NATIVE: Wire<Bytes> = Wire::new(0);

/// Longest accepted `local_id`, in bytes of its JSON form.
const MAX_LOCAL_ID: usize = 256;

/// Any frame a client may send on `/v1/stream`; its `type` names it. At most 64 KiB.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Subscribe to a space: answered by `joined`, then (with `since_seq`) every durable event
    /// after it, replayed from the store, then live events, with no gap and no duplicate.
    Join {
        space_id: String,
        /// Replay every durable event after this `seq` before live ones.
        #[schema(value_type = Option<u64>)]
        since_seq: Option<Seq>,
    },
    /// Unsubscribe: answered by `left`.
    Leave { space_id: String },
    /// Post a message, with the fields of `POST /v1/spaces/{spaceId}/messages`: answered by
    /// `ack` once durable, or `error`, both carrying `local_id`.
    Send {
        space_id: String,
        /// Any JSON value of at most 256 bytes (serialized), echoed in `ack` / `error`; not
        /// stored.
        #[serde(default)]
        #[schema(value_type = Option<Value>)]
        local_id: Option<serde_json::Value>,
        #[serde(flatten)]
        body: Box<SendBody>,
    },
    /// Tell the other sessions watching a joined space that this user is typing (relayed on
    /// this node, never stored; at most one relay per second per session and space).
    Typing { space_id: String },
    /// Extend the session with a newer token of the same user: answered by `refreshed`.
    Refresh {
        /// A newer JWT of the same user; the session then ends at its `exp`.
        token: String,
    },
    /// Choose this session's presence status (`offline`: appear offline). Answered by nothing;
    /// the spaces the session joined get the user's `presence` change, if it changed.
    Presence {
        status: spacecast_engine::presence::Status,
    },
    /// Nothing to say: keeps the session's presence from going offline (every frame does; see
    /// `--presence-timeout`). Answered by nothing.
    Heartbeat,
}

/// Parses a text frame. `local_id` (if any) is returned even when the rest is invalid, so the
/// error can be correlated.
pub fn parse(text: &str) -> Result<Command, (CommandError, Option<Correlation>)> {
    match serde_json::from_str::<ClientFrame>(text) {
        Ok(ClientFrame::Send {
            local_id: Some(id), ..
        }) if id.to_string().len() > MAX_LOCAL_ID => Err((
            CommandError::new(
                "invalid_frame",
                format!("local_id longer than {MAX_LOCAL_ID} bytes"),
            ),
            None,
        )),
        Ok(f) => Ok(match f {
            ClientFrame::Join {
                space_id,
                since_seq,
            } => Command::Join {
                space_id,
                since_seq,
            },
            ClientFrame::Leave { space_id } => Command::Leave { space_id },
            ClientFrame::Send {
                space_id,
                local_id,
                body,
            } => Command::Send {
                space_id,
                body,
                correlation: local_id,
            },
            ClientFrame::Typing { space_id } => Command::Typing { space_id },
            ClientFrame::Refresh { token } => Command::Refresh { token },
            ClientFrame::Presence { status } => Command::Presence { status },
            ClientFrame::Heartbeat => Command::Heartbeat,
        }),
        Err(e) => {
            let local_id = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("local_id").cloned())
                .filter(|id| id.to_string().len() <= MAX_LOCAL_ID);
            Err((
                CommandError::new("invalid_frame", format!("Invalid frame: {e}")),
                local_id,
            ))
        }
    }
}

/// Any frame the server sends on `/v1/stream` (CONTRACT.md §6); its `type` names it.
#[derive(Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// First server frame of every stream session.
    Hello {
        /// `<node_id>-<number>`, unique per session.
        session_id: &'a str,
        node_id: &'a str,
    },
    /// Answer to `join`. Sent before any replayed events.
    Joined {
        #[schema(value_type = String, format = Uuid)]
        space_id: SpaceId,
        /// The space's last durable `seq` when the join happened.
        #[schema(value_type = u64)]
        head_seq: Seq,
    },
    /// Answer to `leave`; with `reason` `removed`, the subscription ended because the user was
    /// removed from the private space and may no longer read it.
    Left {
        #[schema(value_type = String, format = Uuid)]
        space_id: SpaceId,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(inline)]
        reason: Option<LeftReason>,
    },
    /// One durable state change of a joined space, in `seq` order, never twice.
    Event(EventFrame<'a>),
    /// A `send` was made durable.
    Ack {
        /// The send's `local_id` (any JSON value), or `null` when it had none.
        #[schema(value_type = Value)]
        local_id: Option<&'a Correlation>,
        #[schema(value_type = Message)]
        message: &'a Message,
    },
    /// A refused client frame. The session stays open.
    Error {
        /// A code of the `Error` schema.
        code: &'a str,
        error: &'a str,
        /// The refused frame's `local_id`, when it had one that could be read.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Value>)]
        local_id: Option<&'a Correlation>,
        /// The refused command's `space_id` as sent, when there was one.
        #[serde(skip_serializing_if = "Option::is_none")]
        space_id: Option<&'a str>,
        /// Seconds to wait before retrying, when that makes sense (`rate_limited`, `overloaded`).
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    /// A user is typing in a joined space (never sent back to the session that typed).
    Typing {
        #[schema(value_type = String, format = Uuid)]
        space_id: SpaceId,
        user_id: &'a str,
        username: &'a str,
    },
    /// Answer to `refresh`: the session now ends at `exp` (seconds since the Unix epoch).
    Refreshed { exp: u64 },
}

/// Why a subscription ended without a `leave`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeftReason {
    Removed,
}

/// `{"type":"event","space_id","seq","at","event","data"}`: `event` names the change, `data` is
/// its payload (a `Message` for the message events).
#[derive(Serialize, ToSchema)]
pub struct EventFrame<'a> {
    #[schema(value_type = String, format = Uuid)]
    space_id: SpaceId,
    #[schema(value_type = u64, minimum = 1)]
    seq: Seq,
    at: Timestamp,
    #[serde(flatten)]
    #[schema(value_type = EventKind)]
    kind: &'a EventKind,
}

/// The text frame for `out`.
pub fn render(out: &Output<'_>) -> Bytes {
    let frame = match out {
        Output::Event(p) => return p.rendered.get(&NATIVE, || event(&p.event)),
        Output::Typing(t) => return t.rendered.get(&NATIVE, || typing(t)),
        // `{"type": <event type>, …data}`, rendered once for every native session of the user.
        Output::User(u) => return u.rendered.get(&NATIVE, || json(&u.event)),
        // `{"type":"presence"|"presence_count", …}`, rendered once for every native subscriber.
        Output::Presence(p) => return p.rendered.get(&NATIVE, || json(&p.frame)),
        Output::Hello {
            session_id,
            node_id,
        } => ServerFrame::Hello {
            session_id,
            node_id,
        },
        Output::Joined { space_id, head_seq } => ServerFrame::Joined {
            space_id: *space_id,
            head_seq: *head_seq,
        },
        Output::Left { space_id } => ServerFrame::Left {
            space_id: *space_id,
            reason: None,
        },
        Output::Removed { space_id } => ServerFrame::Left {
            space_id: *space_id,
            reason: Some(LeftReason::Removed),
        },
        Output::Refreshed { exp } => ServerFrame::Refreshed { exp: *exp },
        Output::Ack {
            correlation,
            message,
        } => ServerFrame::Ack {
            local_id: *correlation,
            message,
        },
        Output::Error {
            correlation,
            space_id,
            error,
        } => ServerFrame::Error {
            code: error.code,
            error: &error.message,
            local_id: *correlation,
            space_id: *space_id,
            retry_after: error.retry_after_secs(),
        },
    };
    json(&frame)
}

fn json<T: Serialize>(v: &T) -> Bytes {
    // Serializing plain data with string keys cannot fail; serde_json writes UTF-8, so the
    // bytes are a valid text frame.
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// `{"type":"event","space_id",…,"seq","at","event","data"}`
fn event(ev: &SpaceEvent) -> Bytes {
    json(&ServerFrame::Event(EventFrame {
        space_id: ev.space_id,
        seq: ev.seq,
        at: ev.at,
        kind: &ev.kind,
    }))
}

/// `{"type":"typing","space_id","user_id","username"}`
fn typing(t: &Typing) -> Bytes {
    json(&ServerFrame::Typing {
        space_id: t.space_id,
        user_id: &t.user_id,
        username: &t.username,
    })
}

#[cfg(test)]
mod tests {
    use spacecast_engine::event::{MessageDeleted, Published};
    use spacecast_engine::model::new_id;

    use super::*;

    #[test]
    fn client_frames_parse_and_bad_ones_keep_their_local_id() {
        assert!(matches!(
            parse(r#"{"type":"join","space_id":"s","since_seq":5}"#),
            Ok(Command::Join {
                since_seq: Some(5),
                ..
            })
        ));
        assert!(matches!(
            parse(r#"{"type":"leave","space_id":"s"}"#),
            Ok(Command::Leave { .. })
        ));
        let (e, id) = parse(r#"{"type":"send","local_id":"l1"}"#).unwrap_err();
        assert_eq!(e.code, "invalid_frame");
        assert_eq!(id, Some(serde_json::json!("l1")));
        let (e, id) = parse("not json").unwrap_err();
        assert_eq!(e.code, "invalid_frame");
        assert_eq!(id, None);
        assert!(parse(r#"{"type":"dance"}"#).is_err());
        assert!(matches!(
            parse(r#"{"type":"refresh","token":"t"}"#),
            Ok(Command::Refresh { token }) if token == "t"
        ));
        let long = "x".repeat(300);
        assert!(
            parse(&format!(
                r#"{{"type":"send","space_id":"s","content":"c","local_id":"{long}"}}"#
            ))
            .is_err()
        );
    }

    #[test]
    fn events_render_once_with_the_contract_fields() {
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
        let a = render(&Output::Event(&p));
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["type"], "event");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["event"], "message_deleted");
        assert_eq!(v["space_id"], ev.space_id.to_string());
        assert_eq!(v["data"]["deleted_by"], "u1");
        // Every subscriber gets the same buffer.
        let b = render(&Output::Event(&p));
        assert_eq!(a.as_ptr(), b.as_ptr());

        let t = Typing::new(ev.space_id, "u2".into(), "bob".into(), 1);
        let v: serde_json::Value = serde_json::from_slice(&render(&Output::Typing(&t))).unwrap();
        assert_eq!(
            (
                v["type"].as_str(),
                v["user_id"].as_str(),
                v["username"].as_str()
            ),
            (Some("typing"), Some("u2"), Some("bob"))
        );
        let err = CommandError::new("not_joined", "Join first");
        let id = serde_json::json!(3);
        let v: serde_json::Value = serde_json::from_slice(&render(&Output::Error {
            correlation: Some(&id),
            space_id: Some("s1"),
            error: &err,
        }))
        .unwrap();
        assert_eq!(v["code"], "not_joined");
        assert_eq!(v["local_id"], 3);
        assert_eq!(v["space_id"], "s1");
    }
}
