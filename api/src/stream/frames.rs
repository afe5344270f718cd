//! The native stream's frames (CONTRACT.md §6): what clients send, and the server's own frames.
//! Event frames are not built here: each event is serialized once for all subscribers
//! (`Published::native_frame`).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use spacecast_engine::model::{Message, Seq};

/// Longest accepted `local_id`, in bytes of its JSON form.
const MAX_LOCAL_ID: usize = 256;

/// A frame from the client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Start receiving a space's events; with `since_seq`, first replay every event after it.
    Join {
        space_id: String,
        since_seq: Option<Seq>,
    },
    /// Stop receiving a space's events.
    Leave { space_id: String },
    /// Post a message (the REST send's JSON fields), answered by `ack` or `error` with `local_id`.
    Send {
        space_id: String,
        content: Option<String>,
        #[serde(default)]
        local_id: Option<serde_json::Value>,
    },
    /// Tell the space's other watchers this user is typing.
    Typing { space_id: String },
    /// Replace the session's token with a newer one of the same user, moving the session's end
    /// (the token's `exp`) later.
    Refresh { token: String },
}

/// Why a client frame was refused; sent back as an `error` frame, the session stays open.
#[derive(Debug)]
pub struct FrameError {
    pub code: &'static str,
    pub message: String,
}

impl FrameError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        FrameError {
            code,
            message: message.into(),
        }
    }
}

impl From<crate::error::ApiError> for FrameError {
    fn from(e: crate::error::ApiError) -> Self {
        FrameError {
            code: e.code,
            message: e.message,
        }
    }
}

impl From<spacecast_engine::EngineError> for FrameError {
    fn from(e: spacecast_engine::EngineError) -> Self {
        crate::error::ApiError::from(e).into()
    }
}

/// Parses a text frame. `local_id` (if any) is returned even when the rest is invalid, so the
/// error can be correlated.
pub fn parse(text: &str) -> Result<ClientFrame, (FrameError, Option<serde_json::Value>)> {
    match serde_json::from_str::<ClientFrame>(text) {
        Ok(ClientFrame::Send {
            local_id: Some(id), ..
        }) if id.to_string().len() > MAX_LOCAL_ID => Err((
            FrameError::new(
                "invalid_frame",
                format!("local_id longer than {MAX_LOCAL_ID} bytes"),
            ),
            None,
        )),
        Ok(f) => Ok(f),
        Err(e) => {
            let local_id = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("local_id").cloned())
                .filter(|id| id.to_string().len() <= MAX_LOCAL_ID);
            Err((
                FrameError::new("invalid_frame", format!("Invalid frame: {e}")),
                local_id,
            ))
        }
    }
}

fn to_bytes<T: Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// `{"type":"hello","session_id","node_id"}`
pub fn hello(session_id: &str, node_id: &str) -> Bytes {
    to_bytes(&serde_json::json!({"type": "hello", "session_id": session_id, "node_id": node_id}))
}

/// `{"type":"joined","space_id","head_seq"}`
pub fn joined(space_id: &str, head_seq: Seq) -> Bytes {
    to_bytes(&serde_json::json!({"type": "joined", "space_id": space_id, "head_seq": head_seq}))
}

/// `{"type":"left","space_id"}`
pub fn left(space_id: &str) -> Bytes {
    to_bytes(&serde_json::json!({"type": "left", "space_id": space_id}))
}

/// `{"type":"refreshed","exp"}`: the session now ends at `exp` (unix seconds).
pub fn refreshed(exp: u64) -> Bytes {
    to_bytes(&serde_json::json!({"type": "refreshed", "exp": exp}))
}

/// `{"type":"ack","local_id","message"}`
pub fn ack(local_id: &Option<serde_json::Value>, message: &Message) -> Bytes {
    #[derive(Serialize)]
    struct Ack<'a> {
        r#type: &'static str,
        local_id: &'a Option<serde_json::Value>,
        message: &'a Message,
    }
    to_bytes(&Ack {
        r#type: "ack",
        local_id,
        message,
    })
}

/// `{"type":"error","local_id"?,"space_id"?,"code","error"}`
pub fn error(
    local_id: Option<&serde_json::Value>,
    space_id: Option<&str>,
    e: &FrameError,
) -> Bytes {
    let mut v = serde_json::json!({"type": "error", "code": e.code, "error": e.message});
    if let Some(id) = local_id {
        v["local_id"] = id.clone();
    }
    if let Some(s) = space_id {
        v["space_id"] = serde_json::Value::String(s.to_owned());
    }
    to_bytes(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_and_bad_ones_keep_their_local_id() {
        assert!(matches!(
            parse(r#"{"type":"join","space_id":"s","since_seq":5}"#),
            Ok(ClientFrame::Join {
                since_seq: Some(5),
                ..
            })
        ));
        assert!(matches!(
            parse(r#"{"type":"leave","space_id":"s"}"#),
            Ok(ClientFrame::Leave { .. })
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
            Ok(ClientFrame::Refresh { token }) if token == "t"
        ));
        let long = "x".repeat(300);
        assert!(
            parse(&format!(
                r#"{{"type":"send","space_id":"s","content":"c","local_id":"{long}"}}"#
            ))
            .is_err()
        );
    }
}
