//! One space = one actor. This module is its public face: the commands ([`Command`], plain values
//! that run on the local actor or travel to the space's owner node), their outcomes, and the typed
//! [`SpaceHandle`] callers use without building commands themselves.
//!
//! - `actor`: `SpaceActor` validates commands, assigns the gapless `seq`, and owns members,
//!   appreciation counts and likes.
//! - `writer`: the actor's group-commit task: batches what the actor sequenced, makes it
//!   durable, then answers callers and publishes to the hub, in seq order.

pub(crate) mod actor;
pub(crate) mod cache;
pub mod command;
pub(crate) mod writer;

use ractor::RpcReplyPort;
use serde::{Deserialize, Serialize};

pub use self::command::{Command, Outcome};
use crate::directory::{Directory, Pending};
use crate::error::Result;
use crate::model::{
    Gif, JsonObject, MediaItem, MediaType, Member, Message, MessageId, SpaceId, UserRef,
};

/// A request to post a message. Content is already trimmed and validated by the edge (which
/// also calls [`crate::model::validate_rich_fields`]; the actor checks again).
///
/// Every field after `media_type` has a serde default, so a command from a node of an older
/// version still decodes. `SendMessage { sender, content, ..Default::default() }` is a plain text
/// message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SendMessage {
    /// The id to give the message; `None` lets the actor pick one. The edge picks it when it
    /// must name the message before it exists (media files record the message that owns them,
    /// so orphans can be found after a crash). Always a fresh UUIDv7, never a client's value.
    pub message_id: Option<MessageId>,
    /// Who the message is from. When sent on behalf (`actor` set), the user named here must be a
    /// member; the actor uses the member's stored profile.
    pub sender: UserRef,
    pub content: Option<String>,
    pub media_url: Option<String>,
    pub media_type: Option<MediaType>,
    /// The caller, when it sends on `sender`'s behalf (needs power ≥ 100).
    #[serde(default)]
    pub actor: Option<UserRef>,
    /// `None` means `text`.
    #[serde(default)]
    pub msgtype: Option<String>,
    #[serde(default)]
    pub body: Option<JsonObject>,
    /// A message of this space that is not itself a reply.
    #[serde(default)]
    pub parent_id: Option<MessageId>,
    /// A message of this space.
    #[serde(default)]
    pub quoted_message_id: Option<MessageId>,
    #[serde(default)]
    pub mentions: Vec<String>,
    #[serde(default)]
    pub metadata: Option<JsonObject>,
    #[serde(default)]
    pub gif: Option<Gif>,
    /// Uploaded files, resolved by the edge from their `media_id`s.
    #[serde(default)]
    pub media: Vec<MediaItem>,
    /// The same key from the same sender within [`crate::EngineConfig::idempotency_ttl`] returns
    /// the original message and creates nothing (≤ 128 bytes; checked by the edge).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// The result of an appreciation toggle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appreciation {
    /// The caller's state after the toggle.
    pub appreciated: bool,
    pub appreciation_count: u32,
}

/// The result of a reaction set or removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    /// Whether the caller has the reaction now.
    pub reacted: bool,
    /// Whether this call changed it (false: it already was so; no event, no seq).
    pub changed: bool,
    /// The message's counts after the call.
    pub reaction_counts: std::collections::BTreeMap<String, u32>,
}

/// The result of a send: the message, and whether it is an earlier send's, answered again for a
/// repeated idempotency key (nothing was created; the edge answers 200 instead of 201).
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    pub message: Message,
    pub replayed: bool,
}

/// The result of a redaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Redacted {
    /// The message after the redaction (as it was, when it was redacted already).
    pub message: Message,
    /// The attachments the redaction removed from the message, whose files the edge deletes
    /// (empty when it was redacted already).
    #[serde(default)]
    pub wiped_media: Vec<MediaItem>,
    /// The Space7 attachment the redaction removed, if any (its file too is the edge's to delete).
    #[serde(default)]
    pub wiped_media_url: Option<String>,
}

/// Everything a space actor handles.
#[allow(clippy::large_enum_variant)] // as `Command`: one per request, moved once
pub(crate) enum SpaceMsg {
    /// A command from a caller on this node or forwarded from another one, with the caller's
    /// span (the request's, or the bus's for a forwarded command): the actor's span for the
    /// command is its child, so one trace crosses the mailbox. Disabled with traces off.
    Command(Command, RpcReplyPort<Result<Outcome>>, tracing::Span),
    /// Periodic: passivate when idle.
    IdleCheck,
    /// The writer could not make a batch durable; the actor's in-memory state is ahead of the
    /// store, so the actor fails and is rebuilt from the store.
    WriterFailed(String),
}

/// Typed access to one space, wherever its actor lives. Obtained from
/// [`crate::Engine::space`]; cheap to clone.
#[derive(Clone)]
pub struct SpaceHandle {
    pub(crate) directory: Directory,
    pub(crate) space_id: SpaceId,
}

impl SpaceHandle {
    pub fn id(&self) -> SpaceId {
        self.space_id
    }

    /// Runs any command against the space (on this node or its owner's) and waits for its
    /// outcome. A command that did not run because the space was changing owner is sent again
    /// to the new owner, within the call timeout.
    ///
    /// # Errors
    /// Those of the command, and the transient errors of [`SpaceHandle::send`].
    pub async fn execute(&self, cmd: Command) -> Result<Outcome> {
        self.directory.execute(self.space_id, cmd).await
    }

    /// Posts a message; returns it once durable.
    ///
    /// # Errors
    /// `SpaceNotFound`, `NotAMember`, `Forbidden` (admins-only space), `Overloaded`,
    /// `StoreUnavailable`, `SpaceUnavailable`, `BusUnavailable`.
    pub async fn send(&self, cmd: SendMessage) -> Result<Message> {
        self.execute(Command::Send(cmd)).await?.into_message()
    }

    /// Posts a message like [`SpaceHandle::send`], and says whether its idempotency key named an
    /// earlier send (`replayed`: that message, as it is now, and nothing created). The same key
    /// from the same sender within [`crate::EngineConfig::idempotency_ttl`] answers so whatever
    /// the rest of the command says, on any node and after restarts; a duplicate that arrives
    /// before the original is durable is answered once it is.
    ///
    /// # Errors
    /// Those of [`SpaceHandle::send`]; `Conflict("idempotency_key_reused")` when the key's
    /// message was deleted since (nothing is created); `Invalid("invalid_idempotency_key")` for
    /// an empty key or one over [`crate::model::MAX_IDEMPOTENCY_KEY_BYTES`].
    pub async fn post(&self, cmd: SendMessage) -> Result<Sent> {
        self.execute(Command::Send(cmd)).await?.into_sent()
    }

    /// [`SpaceHandle::submit_send`], answering like [`SpaceHandle::post`].
    ///
    /// # Errors
    /// Those of [`SpaceHandle::submit_send`].
    pub async fn submit_post(&self, cmd: SendMessage) -> Result<Pending<Sent>> {
        Ok(self
            .directory
            .submit(self.space_id, Command::Send(cmd))
            .await?
            .map(Outcome::into_sent))
    }

    /// Puts a send in the space actor's mailbox (or on its way to the owner node) and returns at
    /// once with its pending outcome. Sends submitted one after another by one task are
    /// sequenced in that order, even when the caller awaits their outcomes concurrently: the
    /// way one connection pipelines its sends and still gets them in the order it sent them
    /// (CONTRACT §7).
    ///
    /// # Errors
    /// The admission errors of [`SpaceHandle::send`] (`SpaceNotFound`, `Overloaded`,
    /// `SpaceUnavailable`, …); the rest come from [`Pending::wait`].
    pub async fn submit_send(&self, cmd: SendMessage) -> Result<Pending<Message>> {
        Ok(self
            .directory
            .submit(self.space_id, Command::Send(cmd))
            .await?
            .map(Outcome::into_message))
    }

    /// Deletes a message: its author, or a member with power ≥ 50.
    ///
    /// # Errors
    /// `MessageNotFound`, `Forbidden`, and the transient errors of [`SpaceHandle::send`].
    pub async fn delete(&self, message_id: MessageId, by: UserRef) -> Result<()> {
        self.execute(Command::Delete { message_id, by })
            .await?
            .into_done()
    }

    /// Edits a message: replaces its text (`content`, already trimmed by the edge) and/or its
    /// `body`; what is not given is kept. The previous version is kept in the message's history
    /// (`SpaceReader::message_history`). Returns the message after the edit, once durable.
    ///
    /// # Errors
    /// `MessageNotFound`; `Forbidden` unless `by` sent it (or sent it on the sender's behalf);
    /// `Conflict("edit_window_closed")` after [`crate::EngineConfig::edit_window`];
    /// `Conflict("message_redacted")`; `Invalid("empty_message")` when neither is given,
    /// `Invalid("payload_too_large")` for a body over its limit; and the transient errors.
    pub async fn edit(
        &self,
        message_id: MessageId,
        by: UserRef,
        content: Option<String>,
        body: Option<JsonObject>,
    ) -> Result<Message> {
        self.execute(Command::Edit {
            message_id,
            by,
            content,
            body,
        })
        .await?
        .into_message()
    }

    /// Redacts a message: wipes its content, body, media, metadata, GIF and mentions, keeps its
    /// id, seq, sender, times, thread links and reactions, and removes its edit history. Only
    /// its sender or a member with power ≥ 50. Redacting a redacted message changes nothing and
    /// answers it as it is (no event). Returns once durable.
    ///
    /// # Errors
    /// `MessageNotFound`, `Forbidden`, `Invalid("invalid_reason")` (a reason over
    /// [`crate::model::MAX_REASON_BYTES`]), and the transient errors.
    pub async fn redact(
        &self,
        message_id: MessageId,
        by: UserRef,
        reason: Option<String>,
    ) -> Result<Redacted> {
        self.execute(Command::Redact {
            message_id,
            by,
            reason,
        })
        .await?
        .into_redacted()
    }

    /// Toggles `by`'s appreciation of a message.
    ///
    /// # Errors
    /// `MessageNotFound`, `NotAMember` (private space), and the transient errors.
    pub async fn toggle_appreciation(
        &self,
        message_id: MessageId,
        by: UserRef,
    ) -> Result<Appreciation> {
        self.execute(Command::ToggleAppreciation { message_id, by })
            .await?
            .into_appreciation()
    }

    /// Adds (`set`) or removes `by`'s reaction `key` to a message; idempotent per user: a call
    /// that changes nothing answers the current counts, with no event. A change is the event
    /// `reaction_changed` (the next seq). O(1) whatever the message's other reactions: one
    /// reaction row and one count are written, the message row is not rewritten. Returns once
    /// durable.
    ///
    /// # Errors
    /// `MessageNotFound`, `NotAMember` (private space), `Invalid("invalid_reaction_key")` (see
    /// [`crate::model::valid_reaction_key`]), `Conflict("too_many_reactions")` (a new key past
    /// [`crate::model::MAX_REACTION_KEYS`]), and the transient errors.
    pub async fn react(
        &self,
        message_id: MessageId,
        key: String,
        by: UserRef,
        set: bool,
    ) -> Result<Reaction> {
        self.execute(Command::React {
            message_id,
            key,
            by,
            set,
        })
        .await?
        .into_reaction()
    }

    /// Waits until everything sequenced in the space so far is durable, starting its actor if
    /// needed (see [`Command::Sync`]).
    ///
    /// # Errors
    /// `SpaceNotFound`, and the transient errors of [`SpaceHandle::send`].
    pub async fn sync(&self) -> Result<()> {
        self.execute(Command::Sync).await?.into_done()
    }

    /// Moves `user_id`'s read marker forward to `target`: a seq (one above the head counts as
    /// the head) or a message of the space (its creation seq). Only forward: a target at or
    /// below the current marker changes nothing and answers the current one (`changed: false`).
    /// Marks of one user from several sessions are serialised by the space's actor, so the
    /// marker never moves back. No event and no seq; durable when it returns (it rides the
    /// group commit). See [`crate::unread`] for the count.
    ///
    /// # Errors
    /// `NotAMember` (public space), `SpaceNotFound` (unknown, or private and not a member),
    /// `MessageNotFound` (a message target that is not in the space), and the transient errors
    /// of [`SpaceHandle::send`].
    pub async fn mark_read(
        &self,
        user_id: String,
        target: crate::unread::ReadTarget,
    ) -> Result<crate::unread::ReadState> {
        self.execute(Command::MarkRead { user_id, target })
            .await?
            .into_read_state()
    }

    /// Joins the space as an ordinary member.
    ///
    /// # Errors
    /// `AlreadyMember`; `SpaceNotFound` for a private space the user is not in (the same answer
    /// as for an unknown space, so join is no existence oracle); and the transient errors.
    pub async fn join(&self, user: UserRef, invite_code: Option<String>) -> Result<Member> {
        self.execute(Command::Join { user, invite_code })
            .await?
            .into_member()
    }

    /// Sets `user_id`'s power level to `power_level` (0 member, 50 moderator, 100 admin), as a
    /// sequenced `member_updated` event. Returns the member once durable.
    ///
    /// The rule: `by` must be a member whose level is higher than both the target's current
    /// level and the new one (`may_set_power`). Nobody changes their own level or that of an
    /// equal or higher member, and nobody raises anyone to their own level: an admin may make
    /// members and moderators (0, 50) but never another admin, and no one changes an admin's
    /// level, the creator's included. The last admin cannot step down either; leaving is the
    /// only way out (see [`SpaceHandle::remove_member`]). So a space has admins only by creation.
    ///
    /// A user who is not a member is added with that level (their current level counts as 0):
    /// this is how a private space gets members, since joining refuses private spaces. The new
    /// member's profile is the user id as username and no picture, as the engine knows nothing
    /// else of them, until the user's own token is seen: their first send stores its profile.
    /// Setting the level a member already has changes nothing (no event).
    ///
    /// # Errors
    /// `Invalid("invalid_power_level")` for a level other than 0, 50, 100; `SpaceNotFound`
    /// (private space, `by` not a member), `NotAMember` (public space), `Forbidden` (the rule);
    /// and the transient errors of [`SpaceHandle::send`].
    pub async fn set_power(
        &self,
        user_id: String,
        power_level: i32,
        by: UserRef,
    ) -> Result<Member> {
        self.execute(Command::SetPower {
            user_id,
            power_level,
            by,
        })
        .await?
        .into_member()
    }

    /// Removes `user_id` from the space: a kick when `by` is another member, leaving when `by`
    /// is `user_id`. A sequenced `member_removed` event; the member row and the user's space
    /// index entry are deleted in the same commit, and `member_count` follows. Returns once
    /// durable.
    ///
    /// A kick needs `by` at power ≥ 50 and higher than the member's level. Leaving is always
    /// allowed, except for the last admin (power 100) while other members remain
    /// (`Conflict("last_admin")`): a space with members is never left without an admin. The last
    /// member may leave; the space then has no members (a private one is readable by no one).
    ///
    /// In a private space the removed user loses read access at once: reads check membership
    /// afresh, and realtime sessions end their subscription when they see the event.
    ///
    /// # Errors
    /// `MemberNotFound` (not a member), `SpaceNotFound` (private space, caller not a member),
    /// `NotAMember`, `Forbidden`, `Conflict("last_admin")`, and the transient errors.
    pub async fn remove_member(&self, user_id: String, by: UserRef) -> Result<()> {
        self.execute(Command::RemoveMember { user_id, by })
            .await?
            .into_done()
    }

    /// Sets who may post (`everyone`, or `admins`: power ≥ 50), as a sequenced `space_updated`
    /// event; only an admin (power 100). The space record is rewritten durably in the commit.
    /// Returns the space after it; setting the current value changes nothing (no event).
    ///
    /// # Errors
    /// `SpaceNotFound`, `NotAMember`, `Forbidden`, and the transient errors.
    pub async fn set_posting_permission(
        &self,
        permission: crate::model::PostingPermission,
        by: UserRef,
    ) -> Result<crate::model::Space> {
        self.execute(Command::SetPostingPermission { permission, by })
            .await?
            .into_space()
    }
}
