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

use crate::realtime::{Command, CommandError, Correlation, Output};
use crate::routes::v1_messages::SendBody;

/// The native rendering of hub values: a text frame's payload, shared by every subscriber.
pub const NATIVE: Wire<Bytes> = Wire::new(0);

/// Longest accepted `local_id`, in bytes of its JSON form.
const MAX_LOCAL_ID: usize = 256;

/// A frame from the client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Join {
        space_id: String,
        since_seq: Option<Seq>,
    },
    Leave {
        space_id: String,
    },
    /// The fields of the REST send (`POST /v1/spaces/{id}/messages`), and `local_id`.
    Send {
        space_id: String,
        #[serde(default)]
        local_id: Option<serde_json::Value>,
        #[serde(flatten)]
        body: Box<SendBody>,
    },
    Typing {
        space_id: String,
    },
    Refresh {
        token: String,
    },
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

/// The text frame for `out`.
pub fn render(out: &Output<'_>) -> Bytes {
    match out {
        Output::Event(p) => p.rendered.get(&NATIVE, || event(&p.event)),
        Output::Typing(t) => t.rendered.get(&NATIVE, || typing(t)),
        Output::Hello {
            session_id,
            node_id,
        } => json(
            &serde_json::json!({"type": "hello", "session_id": session_id, "node_id": node_id}),
        ),
        Output::Joined { space_id, head_seq } => {
            json(&serde_json::json!({"type": "joined", "space_id": space_id, "head_seq": head_seq}))
        }
        Output::Left { space_id } => {
            json(&serde_json::json!({"type": "left", "space_id": space_id}))
        }
        Output::Removed { space_id } => {
            json(&serde_json::json!({"type": "left", "space_id": space_id, "reason": "removed"}))
        }
        Output::Refreshed { exp } => json(&serde_json::json!({"type": "refreshed", "exp": exp})),
        Output::Ack {
            correlation,
            message,
        } => ack(*correlation, message),
        Output::Error {
            correlation,
            space_id,
            error,
        } => {
            let mut v =
                serde_json::json!({"type": "error", "code": error.code, "error": error.message});
            if let Some(id) = correlation {
                v["local_id"] = (*id).clone();
            }
            if let Some(s) = space_id {
                v["space_id"] = serde_json::Value::String((*s).to_owned());
            }
            if let Some(secs) = error.retry_after_secs() {
                v["retry_after"] = secs.into();
            }
            json(&v)
        }
    }
}

fn json<T: Serialize>(v: &T) -> Bytes {
    // Serializing plain data with string keys cannot fail; serde_json writes UTF-8, so the
    // bytes are a valid text frame.
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// `{"type":"event","space_id",…,"seq","at","event","data"}`
fn event(ev: &SpaceEvent) -> Bytes {
    #[derive(Serialize)]
    struct Frame<'a> {
        r#type: &'static str,
        space_id: SpaceId,
        seq: Seq,
        at: Timestamp,
        #[serde(flatten)]
        kind: &'a EventKind,
    }
    json(&Frame {
        r#type: "event",
        space_id: ev.space_id,
        seq: ev.seq,
        at: ev.at,
        kind: &ev.kind,
    })
}

/// `{"type":"typing","space_id","user_id","username"}`
fn typing(t: &Typing) -> Bytes {
    json(&serde_json::json!({
        "type": "typing",
        "space_id": t.space_id,
        "user_id": t.user_id,
        "username": t.username,
    }))
}

/// `{"type":"ack","local_id","message"}`
fn ack(local_id: Option<&Correlation>, message: &Message) -> Bytes {
    #[derive(Serialize)]
    struct Ack<'a> {
        r#type: &'static str,
        local_id: Option<&'a Correlation>,
        message: &'a Message,
    }
    json(&Ack {
        r#type: "ack",
        local_id,
        message,
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
