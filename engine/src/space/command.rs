//! Space commands as values: what a caller asks a space to do, and what it answers.
//!
//! Every command and every outcome is plain, serializable data, so the same command runs against
//! the local space actor or travels to the space's owner node over the bus (see [`crate::bus`]),
//! and callers do not change. Errors travel as [`WireError`], which keeps the stable code and
//! the retry hint of the [`EngineError`] it came from.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Appreciation, Reaction, Redacted, SendMessage, Sent};
use crate::error::{EngineError, Result};
use crate::model::{JsonObject, Member, Message, MessageId, PostingPermission, Space, UserRef};

/// A state-changing request to one space. The space id travels beside it.
// One per request, moved (never copied in bulk) through a mailbox: boxing the send would only
// add an allocation to the hottest command.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Post a message; answered with [`Outcome::Message`].
    Send(SendMessage),
    /// Delete a message (its author, or power ≥ 50); answered with [`Outcome::Done`].
    Delete { message_id: MessageId, by: UserRef },
    /// Edit a message's text and/or body (its sender, or who sent it on their behalf; within
    /// the edit window); answered with [`Outcome::Message`], the message after the edit.
    Edit {
        message_id: MessageId,
        by: UserRef,
        #[serde(default)]
        content: Option<String>,
        #[serde(default)]
        body: Option<JsonObject>,
    },
    /// Redact a message (its sender, or power ≥ 50); answered with [`Outcome::Redacted`].
    Redact {
        message_id: MessageId,
        by: UserRef,
        #[serde(default)]
        reason: Option<String>,
    },
    /// Toggle `by`'s appreciation; answered with [`Outcome::Appreciation`].
    ToggleAppreciation { message_id: MessageId, by: UserRef },
    /// Add (`set: true`) or remove (`set: false`) `by`'s reaction `key`; idempotent (nothing
    /// changes when it already is so); answered with [`Outcome::Reaction`].
    React {
        message_id: MessageId,
        key: String,
        by: UserRef,
        set: bool,
    },
    /// Join as an ordinary member; answered with [`Outcome::Member`].
    Join {
        user: UserRef,
        invite_code: Option<String>,
    },
    /// Set a member's power level, adding the user as a member when they are not one;
    /// answered with [`Outcome::Member`]. See [`super::SpaceHandle::set_power`] for the rule.
    SetPower {
        user_id: String,
        power_level: i32,
        by: UserRef,
    },
    /// Remove a member (`by` another member: a kick) or leave (`by` the member itself);
    /// answered with [`Outcome::Done`]. See [`super::SpaceHandle::remove_member`].
    RemoveMember { user_id: String, by: UserRef },
    /// Set who may post (power 100); answered with [`Outcome::Space`], the space after it.
    SetPostingPermission {
        permission: PostingPermission,
        by: UserRef,
    },
    /// Changes nothing: starts the space's actor if it is not running (its claim completes the
    /// space's stored state, e.g. the stats migration of [`crate::stats`]) and is answered with
    /// [`Outcome::Done`] once everything sequenced before it is durable.
    Sync,
    /// Move `user_id`'s read marker forward to `target` (a member only); answered with
    /// [`Outcome::ReadState`]. No event, no seq: the marker rides the group commit. See
    /// [`super::SpaceHandle::mark_read`].
    MarkRead {
        user_id: String,
        target: crate::unread::ReadTarget,
    },
}

impl Command {
    /// The command's name, for metrics and traces.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Send(_) => "send",
            Command::Delete { .. } => "delete",
            Command::Edit { .. } => "edit",
            Command::Redact { .. } => "redact",
            Command::ToggleAppreciation { .. } => "toggle_appreciation",
            Command::React { .. } => "react",
            Command::Join { .. } => "join",
            Command::SetPower { .. } => "set_power",
            Command::RemoveMember { .. } => "remove_member",
            Command::SetPostingPermission { .. } => "set_posting_permission",
            Command::Sync => "sync",
            Command::MarkRead { .. } => "mark_read",
        }
    }
}

/// What a successful command answers.
// One per request, moved once to its caller; most outcomes are messages anyway.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Outcome {
    Message(Message),
    Done,
    Appreciation(Appreciation),
    Member(Member),
    Redacted(Redacted),
    Reaction(Reaction),
    /// A send whose idempotency key named an earlier send: that message (as it is now);
    /// nothing was created.
    Replayed(Message),
    /// The space's record after a settings change.
    Space(Space),
    /// The caller's read marker after a mark, and their unread count then.
    ReadState(crate::unread::ReadState),
}

impl Outcome {
    /// The outcome a command of this kind must have; anything else is a bug (or a node of an
    /// incompatible version) and becomes `Internal`.
    fn mismatch(self, want: &str) -> EngineError {
        EngineError::Internal(format!("expected a {want} outcome, got {self:?}"))
    }

    pub(crate) fn into_message(self) -> Result<Message> {
        match self {
            Outcome::Message(m) | Outcome::Replayed(m) => Ok(m),
            other => Err(other.mismatch("message")),
        }
    }

    pub(crate) fn into_sent(self) -> Result<Sent> {
        match self {
            Outcome::Message(message) => Ok(Sent {
                message,
                replayed: false,
            }),
            Outcome::Replayed(message) => Ok(Sent {
                message,
                replayed: true,
            }),
            other => Err(other.mismatch("message")),
        }
    }

    pub(crate) fn into_done(self) -> Result<()> {
        match self {
            Outcome::Done => Ok(()),
            other => Err(other.mismatch("done")),
        }
    }

    pub(crate) fn into_redacted(self) -> Result<Redacted> {
        match self {
            Outcome::Redacted(r) => Ok(r),
            other => Err(other.mismatch("redacted")),
        }
    }

    pub(crate) fn into_appreciation(self) -> Result<Appreciation> {
        match self {
            Outcome::Appreciation(a) => Ok(a),
            other => Err(other.mismatch("appreciation")),
        }
    }

    pub(crate) fn into_space(self) -> Result<Space> {
        match self {
            Outcome::Space(s) => Ok(s),
            other => Err(other.mismatch("space")),
        }
    }

    pub(crate) fn into_reaction(self) -> Result<Reaction> {
        match self {
            Outcome::Reaction(r) => Ok(r),
            other => Err(other.mismatch("reaction")),
        }
    }

    pub(crate) fn into_read_state(self) -> Result<crate::unread::ReadState> {
        match self {
            Outcome::ReadState(r) => Ok(r),
            other => Err(other.mismatch("read state")),
        }
    }

    pub(crate) fn into_member(self) -> Result<Member> {
        match self {
            Outcome::Member(m) => Ok(m),
            other => Err(other.mismatch("member")),
        }
    }
}

/// An [`EngineError`] as it crosses the bus: its variant, its texts and its retry hint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default)]
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl From<&EngineError> for WireError {
    fn from(e: &EngineError) -> Self {
        let (kind, code, text): (&str, Option<&str>, String) = match e {
            EngineError::SpaceNotFound => ("space_not_found", None, String::new()),
            EngineError::MessageNotFound => ("message_not_found", None, String::new()),
            EngineError::MemberNotFound => ("member_not_found", None, String::new()),
            EngineError::NotAMember => ("not_a_member", None, String::new()),
            EngineError::AlreadyMember => ("already_member", None, String::new()),
            EngineError::Forbidden(t) => ("forbidden", None, (*t).to_owned()),
            EngineError::Invalid(c, t) => ("invalid", Some(c), t.clone()),
            EngineError::Conflict(c, t) => ("conflict", Some(c), t.clone()),
            EngineError::Overloaded { .. } => ("overloaded", None, String::new()),
            EngineError::StoreUnavailable(t) => ("store_unavailable", None, t.clone()),
            EngineError::SpaceUnavailable => ("space_unavailable", None, String::new()),
            EngineError::Fenced => ("fenced", None, String::new()),
            EngineError::Unsettled(t) => ("unsettled", None, t.clone()),
            EngineError::ShuttingDown => ("shutting_down", None, String::new()),
            EngineError::BusUnavailable(t) => ("bus_unavailable", None, t.clone()),
            EngineError::Internal(t) => ("internal", None, t.clone()),
        };
        WireError {
            kind: kind.to_owned(),
            code: code.map(str::to_owned),
            text,
            retry_after_ms: e.retry_after().map(|d| d.as_millis() as u64),
        }
    }
}

impl From<WireError> for EngineError {
    fn from(w: WireError) -> Self {
        let retry_after = Duration::from_millis(w.retry_after_ms.unwrap_or(1000));
        match w.kind.as_str() {
            "space_not_found" => EngineError::SpaceNotFound,
            "message_not_found" => EngineError::MessageNotFound,
            "member_not_found" => EngineError::MemberNotFound,
            "not_a_member" => EngineError::NotAMember,
            "already_member" => EngineError::AlreadyMember,
            "forbidden" => EngineError::Forbidden(intern(&w.text, "Forbidden")),
            "invalid" => EngineError::Invalid(
                intern(w.code.as_deref().unwrap_or_default(), "invalid_request"),
                w.text,
            ),
            "conflict" => EngineError::Conflict(
                intern(w.code.as_deref().unwrap_or_default(), "conflict"),
                w.text,
            ),
            "overloaded" => EngineError::Overloaded { retry_after },
            "store_unavailable" => EngineError::StoreUnavailable(w.text),
            "space_unavailable" => EngineError::SpaceUnavailable,
            "fenced" => EngineError::Fenced,
            "unsettled" => EngineError::Unsettled(w.text),
            "shutting_down" => EngineError::ShuttingDown,
            "bus_unavailable" => EngineError::BusUnavailable(w.text),
            _ => EngineError::Internal(w.text),
        }
    }
}

/// The error texts and codes of [`EngineError`] are `&'static str`: the engine's own literals.
/// A remote node's are the same finite set, so each distinct one is leaked once and reused; past
/// a small bound (a node of another version, or a bug) the fallback is used instead, so a peer
/// can never grow this node's memory.
fn intern(s: &str, fallback: &'static str) -> &'static str {
    static SEEN: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    intern_in(SEEN.get_or_init(Mutex::default), s, fallback)
}

const MAX_INTERNED: usize = 512;
const MAX_INTERNED_LEN: usize = 256;

fn intern_in(seen: &Mutex<HashSet<&'static str>>, s: &str, fallback: &'static str) -> &'static str {
    if s.is_empty() || s.len() > MAX_INTERNED_LEN {
        return fallback;
    }
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = seen.get(s) {
        return known;
    }
    if seen.len() >= MAX_INTERNED {
        return fallback;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    seen.insert(leaked);
    leaked
}

/// A command's result as it crosses the bus.
#[allow(clippy::large_enum_variant)] // as `Outcome`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireResult {
    Ok(Outcome),
    Err(WireError),
    /// The node that received a forwarded command does not own the space: nothing ran.
    NotOwner,
}

impl From<Result<Outcome>> for WireResult {
    fn from(r: Result<Outcome>) -> Self {
        match r {
            Ok(o) => WireResult::Ok(o),
            Err(e) => WireResult::Err(WireError::from(&e)),
        }
    }
}

impl From<WireResult> for Result<Outcome> {
    fn from(w: WireResult) -> Self {
        match w {
            WireResult::Ok(o) => Ok(o),
            WireResult::Err(e) => Err(e.into()),
            // Callers check for it first; if it gets here, nothing ran and a retry is safe.
            WireResult::NotOwner => Err(EngineError::SpaceUnavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::new_id;

    fn user() -> UserRef {
        UserRef {
            user_id: "u1".into(),
            username: "Ada".into(),
            profile_picture: String::new(),
        }
    }

    fn object() -> crate::model::JsonObject {
        let mut o = crate::model::JsonObject::new();
        o.insert("k".into(), serde_json::json!([1, "two", {"three": null}]));
        o
    }

    /// A send with every native field set.
    fn rich_send() -> SendMessage {
        SendMessage {
            message_id: Some(new_id()),
            sender: user(),
            content: Some("hi".into()),
            actor: Some(UserRef {
                user_id: "admin".into(),
                ..user()
            }),
            msgtype: Some("x.card".into()),
            body: Some(object()),
            parent_id: Some(new_id()),
            quoted_message_id: Some(new_id()),
            mentions: vec!["u2".into()],
            metadata: Some(object()),
            gif: Some(crate::model::Gif {
                url: "https://g.example/a.gif".into(),
                width: 1,
                height: 2,
                title: Some("t".into()),
            }),
            media: vec![crate::model::MediaItem::default()],
            idempotency_key: Some("key-1".into()),
            ..Default::default()
        }
    }

    /// A send command as a node of the version before the native fields encodes it still
    /// decodes, with the defaults.
    #[test]
    fn an_old_nodes_send_decodes() {
        let old = r#"{"op":"send","message_id":null,"sender":{"user_id":"u1","username":"Ada","profile_picture":""},"content":"hi","media_url":null,"media_type":null}"#;
        let Command::Send(s) = serde_json::from_str::<Command>(old).unwrap() else {
            panic!("a send");
        };
        assert_eq!(
            s,
            SendMessage {
                sender: user(),
                content: Some("hi".into()),
                ..Default::default()
            }
        );
    }

    #[test]
    fn commands_and_outcomes_round_trip_as_json() {
        let cmds = [
            Command::Send(SendMessage {
                message_id: Some(new_id()),
                sender: user(),
                content: Some("hi".into()),
                media_url: None,
                media_type: None,
                ..Default::default()
            }),
            Command::Delete {
                message_id: new_id(),
                by: user(),
            },
            Command::ToggleAppreciation {
                message_id: new_id(),
                by: user(),
            },
            Command::Join {
                user: user(),
                invite_code: Some("x".into()),
            },
            Command::Send(rich_send()),
            Command::Edit {
                message_id: new_id(),
                by: user(),
                content: Some("edited".into()),
                body: Some(object()),
            },
            Command::Redact {
                message_id: new_id(),
                by: user(),
                reason: Some("spam".into()),
            },
            Command::SetPower {
                user_id: "u2".into(),
                power_level: 50,
                by: user(),
            },
            Command::RemoveMember {
                user_id: "u2".into(),
                by: user(),
            },
            Command::SetPostingPermission {
                permission: PostingPermission::Admins,
                by: user(),
            },
            Command::React {
                message_id: new_id(),
                key: "👍".into(),
                by: user(),
                set: true,
            },
            Command::Sync,
            Command::MarkRead {
                user_id: "u1".into(),
                target: crate::unread::ReadTarget::Seq(7),
            },
            Command::MarkRead {
                user_id: "u1".into(),
                target: crate::unread::ReadTarget::Message(new_id()),
            },
        ];
        for c in cmds {
            let json = serde_json::to_vec(&c).unwrap();
            assert_eq!(serde_json::from_slice::<Command>(&json).unwrap(), c);
        }
        let rich = Message {
            message_id: new_id(),
            body: Some(object()),
            redacted: true,
            redacted_by: Some("u1".into()),
            ..Default::default()
        };
        let outcomes = [
            Outcome::ReadState(crate::unread::ReadState {
                last_read_seq: 9,
                unread: 2,
                changed: true,
            }),
            Outcome::Reaction(Reaction {
                reacted: true,
                changed: false,
                reaction_counts: [("👍".to_owned(), 2)].into_iter().collect(),
            }),
            Outcome::Appreciation(Appreciation {
                appreciated: true,
                appreciation_count: 3,
            }),
            Outcome::Message(rich.clone()),
            Outcome::Replayed(rich.clone()),
            Outcome::Redacted(Redacted {
                message: rich,
                wiped_media: vec![crate::model::MediaItem {
                    media_id: new_id(),
                    content_type: "image/png".into(),
                    size: 1,
                    sha256: "ab".into(),
                    thumbnail_id: None,
                }],
                wiped_media_url: Some("/api/media/x".into()),
            }),
        ];
        for o in outcomes {
            let r: WireResult = Ok(o).into();
            let json = serde_json::to_vec(&r).unwrap();
            assert_eq!(serde_json::from_slice::<WireResult>(&json).unwrap(), r);
        }
    }

    #[test]
    fn errors_keep_their_code_text_and_retry_hint_across_the_wire() {
        let cases = [
            EngineError::SpaceNotFound,
            EngineError::MessageNotFound,
            EngineError::MemberNotFound,
            EngineError::NotAMember,
            EngineError::AlreadyMember,
            EngineError::Forbidden("Only admins and moderators may post in this space"),
            EngineError::Invalid("empty_message", "Message must have text or media".into()),
            EngineError::Conflict("edit_window_closed", "The edit window has closed".into()),
            EngineError::Overloaded {
                retry_after: Duration::from_secs(2),
            },
            EngineError::StoreUnavailable("disk full".into()),
            EngineError::SpaceUnavailable,
            EngineError::Fenced,
            EngineError::Unsettled("phase 3".into()),
            EngineError::ShuttingDown,
            EngineError::BusUnavailable("no NATS".into()),
            EngineError::Internal("boom".into()),
        ];
        for e in cases {
            let wire = serde_json::to_vec(&WireError::from(&e)).unwrap();
            let back: EngineError = serde_json::from_slice::<WireError>(&wire).unwrap().into();
            assert_eq!(back.code(), e.code(), "{e:?}");
            assert_eq!(back.to_string(), e.to_string(), "{e:?}");
            assert_eq!(back.retry_after(), e.retry_after(), "{e:?}");
        }
    }

    #[test]
    fn a_peer_cannot_grow_the_interned_strings_without_bound() {
        let seen = Mutex::default();
        assert_eq!(
            intern_in(&seen, "forbidden_text", "fallback"),
            "forbidden_text"
        );
        for i in 0..2000 {
            let _ = intern_in(&seen, &format!("code_{i}"), "fallback");
        }
        assert_eq!(seen.lock().unwrap().len(), MAX_INTERNED);
        assert_eq!(intern_in(&seen, "code_1999", "fallback"), "fallback");
        assert_eq!(
            intern_in(&seen, "forbidden_text", "fallback"),
            "forbidden_text"
        );
        assert_eq!(intern_in(&seen, &"x".repeat(1000), "fallback"), "fallback");
    }
}
