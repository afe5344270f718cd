//! The read side: what a caller may see of a space, read from the store with the access rules
//! applied here, so no edge reads the store or copies the rules.
//!
//! Reads never go through a space actor: the store holds exactly what is durable, and every
//! acknowledged write is durable before it is acknowledged (see [`crate::store`]), so a read
//! sees every write acknowledged before it started. Because nothing here needs the owner actor,
//! any node can serve any read.
//!
//! # The rules
//! - **Visibility.** A public space is readable by every caller, member or not. A private space
//!   is readable only by its members; to anyone else every read answers `SpaceNotFound`, exactly
//!   as for an id that names no space, so reads are no oracle for which private spaces exist.
//! - **Posting** ([`SpaceReader::ensure_can_post`]) is the space actor's rule, checked ahead of
//!   time for callers that must refuse early (the edge, before it stores a media file); the
//!   actor still decides.
//! - The caller ("viewer") is named by user id; the id is the one the caller authenticated as.
//!
//! Each method reads the store afresh; two calls may observe different commits. Where one call
//! makes several reads (the rule's, then the data's), it says which it answers from.

use std::sync::Arc;

use crate::Engine;
use crate::error::{EngineError, Result};
use crate::event::SpaceEvent;
use crate::model::{
    Member, Message, MessageId, MessageVersion, POWER_MODERATOR, PostingPermission, Seq, SpaceId,
    SpaceView, Visibility,
};
use crate::stats::SpaceStats;
use crate::store::{MessageOrder, Store};

impl Engine {
    /// Read access to one space (which may not exist: reads then fail with `SpaceNotFound`).
    /// Does no I/O; cheap to clone.
    pub fn reader(&self, space_id: SpaceId) -> SpaceReader {
        SpaceReader {
            store: self.store.clone(),
            space_id,
        }
    }

    /// Every space `user_id` is a member of, private ones included, with that membership,
    /// newest space first. Membership is the rule: a user lists exactly the spaces they belong
    /// to, never one they merely can read.
    ///
    /// # Errors
    /// `StoreUnavailable`.
    pub async fn spaces_of(&self, user_id: &str) -> Result<Vec<(SpaceView, Member)>> {
        self.store.spaces_of_user(user_id).await
    }

    /// Whether the engine's dependencies answer (today: the store), for readiness checks.
    ///
    /// # Errors
    /// `StoreUnavailable` when the store is unreachable.
    pub async fn ping(&self) -> Result<()> {
        self.store.ping().await
    }

    /// A space's stats ([`crate::stats`]), for a viewer who may read the space: as durable (every
    /// command acknowledged before the call is in them, nothing in flight is), from one row read.
    /// A space whose stats were never computed (it existed before stats) first has its actor
    /// started, whose claim computes and commits them (the migration), then is read again.
    ///
    /// # Errors
    /// Those of [`SpaceReader::stats`]; the transient errors of [`crate::SpaceHandle::sync`] for a space
    /// being migrated; `Internal` if the stats are still missing after that.
    pub async fn space_stats(&self, space_id: SpaceId, viewer: &str) -> Result<SpaceStats> {
        let reader = self.reader(space_id);
        if let Some(stats) = reader.stats(viewer).await? {
            return Ok(stats);
        }
        self.space(space_id).sync().await?;
        reader.stats(viewer).await?.ok_or_else(|| {
            EngineError::Internal(format!("space {space_id} has no stats after its claim"))
        })
    }

    /// Whether a message exists (is durable and not deleted) in a space. Applies no access
    /// rule: it is for the node's own housekeeping (the media sweeper), never for answering a
    /// client.
    ///
    /// # Errors
    /// `StoreUnavailable`: the caller cannot tell, and must not act as if the message were gone.
    pub async fn message_exists(&self, space_id: SpaceId, message_id: MessageId) -> Result<bool> {
        Ok(self
            .store
            .get_message(space_id, message_id)
            .await?
            .is_some())
    }
}

/// Reads of one space on behalf of a viewer, each applying the rules in the module doc.
/// Obtained from [`Engine::reader`]; cheap to clone.
#[derive(Clone)]
pub struct SpaceReader {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) space_id: SpaceId,
}

/// A space with every member, as [`SpaceReader::view_with_members`] reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct SpaceMembers {
    pub view: SpaceView,
    /// The viewer's membership; `None` for a non-member of a public space.
    pub viewer: Option<Member>,
    /// Every member, in the store's order.
    pub members: Vec<Member>,
}

/// A page of messages, as [`SpaceReader::page_messages`] reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// Messages in the space (its `message_count`), read just before the page.
    pub total: u64,
}

impl SpaceReader {
    pub fn id(&self) -> SpaceId {
        self.space_id
    }

    /// The space and the viewer's membership (`None` for a non-member of a public space).
    ///
    /// # Errors
    /// `SpaceNotFound` for an unknown space, and for a private space the viewer is not a member
    /// of (the same answer); `StoreUnavailable`.
    pub async fn view(&self, viewer: &str) -> Result<(SpaceView, Option<Member>)> {
        let Some(view) = self.store.get_space(self.space_id).await? else {
            return Err(EngineError::SpaceNotFound);
        };
        let member = self.store.get_member(self.space_id, viewer).await?;
        check_readable(&view, member.as_ref())?;
        Ok((view, member))
    }

    /// The space with all its members, for a viewer who may read it. The space and the member
    /// list come from one snapshot read after the rule's check; the viewer's membership comes
    /// from the check.
    ///
    /// # Errors
    /// Those of [`SpaceReader::view`].
    pub async fn view_with_members(&self, viewer: &str) -> Result<SpaceMembers> {
        let (_, me) = self.view(viewer).await?;
        let Some(snapshot) = self.store.load_space(self.space_id).await? else {
            return Err(EngineError::SpaceNotFound);
        };
        Ok(SpaceMembers {
            view: snapshot.view,
            viewer: me,
            members: snapshot.members,
        })
    }

    /// Members ordered by user id (byte order), those after `after` (from the first when
    /// `None`), at most `limit`: a keyset page ([`crate::store::Store::scan_members`]), so every
    /// member present throughout a walk of the pages is listed exactly once.
    ///
    /// # Errors
    /// Those of [`SpaceReader::view`].
    pub async fn members_page(
        &self,
        viewer: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Member>> {
        self.view(viewer).await?;
        self.store.scan_members(self.space_id, after, limit).await
    }

    /// One member of the space.
    ///
    /// # Errors
    /// Those of [`SpaceReader::view`]; then `MemberNotFound`.
    pub async fn member(&self, viewer: &str, user_id: &str) -> Result<Member> {
        self.view(viewer).await?;
        self.store
            .get_member(self.space_id, user_id)
            .await?
            .ok_or(EngineError::MemberNotFound)
    }

    /// Existing messages in `order`, skipping `offset`, at most `limit`, with the space's
    /// message count as `total`.
    ///
    /// # Errors
    /// Those of [`SpaceReader::view`].
    pub async fn page_messages(
        &self,
        viewer: &str,
        order: MessageOrder,
        offset: usize,
        limit: usize,
    ) -> Result<MessagePage> {
        let (view, _) = self.view(viewer).await?;
        let messages = self
            .store
            .page_messages(self.space_id, order, offset, limit)
            .await?;
        Ok(MessagePage {
            messages,
            total: view.counters.message_count,
        })
    }

    /// One existing message of this space.
    ///
    /// # Errors
    /// Those of [`SpaceReader::view`] first (so a private space's message ids are no oracle
    /// either); then `MessageNotFound` for an id that names no existing message of this space
    /// (unknown, deleted, or another space's).
    pub async fn message(&self, viewer: &str, message_id: MessageId) -> Result<Message> {
        self.view(viewer).await?;
        self.store
            .get_message(self.space_id, message_id)
            .await?
            .ok_or(EngineError::MessageNotFound)
    }

    /// Makes messages read for `viewer` native (CONTRACT §5): `user_reactions` says which of each
    /// message's `reaction_counts` keys the viewer reacted with (one store call for the page,
    /// bounded per message with reactions: see `Store::user_reactions`), and Space7's `likes`
    /// list, which grows with the
    /// message's appreciations, is left out (`reaction_counts` has its count).
    ///
    /// # Errors
    /// `StoreUnavailable`.
    pub async fn with_viewer_reactions(
        &self,
        viewer: &str,
        messages: &mut [Message],
    ) -> Result<()> {
        let items: Vec<(MessageId, Vec<String>)> = messages
            .iter()
            .filter(|m| !m.reaction_counts.is_empty())
            .map(|m| (m.message_id, m.reaction_counts.keys().cloned().collect()))
            .collect();
        let mut mine = if items.is_empty() {
            Vec::new()
        } else {
            self.store
                .user_reactions(self.space_id, viewer, items)
                .await?
        }
        .into_iter();
        for m in messages.iter_mut() {
            m.likes = None;
            m.user_reactions = Some(if m.reaction_counts.is_empty() {
                Vec::new()
            } else {
                mine.next().unwrap_or_default()
            });
        }
        Ok(())
    }

    /// The earlier versions of an existing message of this space, newest first (empty when it
    /// was never edited or was redacted).
    ///
    /// # Errors
    /// Those of [`SpaceReader::message`].
    pub async fn message_history(
        &self,
        viewer: &str,
        message_id: MessageId,
    ) -> Result<Vec<MessageVersion>> {
        self.message(viewer, message_id).await?;
        self.store.message_history(self.space_id, message_id).await
    }

    /// The message an earlier send of `sender_id` with idempotency `key` created, if that key
    /// is still held (see [`crate::EngineConfig::idempotency_ttl`]) and the message exists. For
    /// an edge that must know before it does work a replay would not (attaching uploads); the
    /// space actor still decides a send's fate.
    ///
    /// # Errors
    /// `StoreUnavailable`.
    pub async fn replayed_send(&self, sender_id: &str, key: &str) -> Result<Option<Message>> {
        let Some(id) = self
            .store
            .idempotent_send(self.space_id, sender_id, key)
            .await?
        else {
            return Ok(None);
        };
        self.store.get_message(self.space_id, id).await
    }

    /// The space's stats as durable, for a viewer who may read it; `None` for a space with
    /// messages whose stats were never computed (see [`Engine::space_stats`], which handles it).
    ///
    /// # Errors
    /// Those of [`SpaceReader::view`].
    pub async fn stats(&self, viewer: &str) -> Result<Option<SpaceStats>> {
        let (view, _) = self.view(viewer).await?;
        match self.store.space_stats(self.space_id).await? {
            Some(stats) => Ok(Some(stats)),
            // No messages when the view was read, and no stats committed since: empty.
            None if view.counters.message_count == 0 => Ok(Some(SpaceStats::default())),
            None => Ok(None),
        }
    }

    /// Whether the viewer may post now, by the space actor's rule: a member, and in an
    /// admins-only space one with power ≥ [`POWER_MODERATOR`]. A pre-check, for a caller that
    /// must refuse before doing work (the edge, before it stores a media file); the actor
    /// applies the rule again when the message is sent, and its answer is the one that counts.
    ///
    /// # Errors
    /// Those of [`SpaceReader::view`]; `NotAMember`; `Forbidden` in an admins-only space.
    pub async fn ensure_can_post(&self, viewer: &str) -> Result<()> {
        let (view, me) = self.view(viewer).await?;
        check_can_post(&view, me.as_ref())
    }

    /// The space's event log, for a viewer who may read it: the rule is applied once, here, and
    /// the returned [`EventLog`] reads without checking again. Visibility is fixed when a space
    /// is created, so the one way to lose read access is removal from a private space, which is
    /// a sequenced `member_removed` event in this very log: a holder that follows the log (a
    /// realtime session) sees it in order, and must ask again ([`SpaceReader::view`]) when it
    /// names its viewer. Every other read here checks afresh on each call.
    ///
    /// # Errors
    /// Those of [`SpaceReader::view`].
    pub async fn event_log(&self, viewer: &str) -> Result<EventLog> {
        self.view(viewer).await?;
        Ok(EventLog {
            store: self.store.clone(),
            space_id: self.space_id,
        })
    }
}

/// The durable event log of one space, for a viewer already allowed to read it (see
/// [`SpaceReader::event_log`]). Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    store: Arc<dyn Store>,
    space_id: SpaceId,
}

impl EventLog {
    pub fn space_id(&self) -> SpaceId {
        self.space_id
    }

    /// The seq of the last durable event (0 for an empty space): read afresh, so a caller that
    /// subscribed to the hub before this read misses nothing between the two.
    ///
    /// # Errors
    /// `StoreUnavailable`.
    pub async fn head_seq(&self) -> Result<Seq> {
        Ok(self
            .store
            .get_space(self.space_id)
            .await?
            .map_or(0, |v| v.counters.head_seq))
    }

    /// Durable events with `seq > after`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// `StoreUnavailable`.
    pub async fn events_after(&self, after: Seq, limit: usize) -> Result<Vec<SpaceEvent>> {
        self.store.read_events(self.space_id, after, limit).await
    }
}

/// The visibility rule: a private space exists only for its members.
fn check_readable(view: &SpaceView, member: Option<&Member>) -> Result<()> {
    if view.space.visibility == Visibility::Private && member.is_none() {
        return Err(EngineError::SpaceNotFound);
    }
    Ok(())
}

/// The posting rule of the space actor (`space/actor.rs`, `send`), for a viewer who may read
/// the space. The texts are the actor's; `tests/reads.rs` checks that both answer alike.
fn check_can_post(view: &SpaceView, member: Option<&Member>) -> Result<()> {
    let Some(me) = member else {
        return Err(EngineError::NotAMember);
    };
    if view.space.posting_permission == PostingPermission::Admins
        && me.power_level < POWER_MODERATOR
    {
        return Err(EngineError::Forbidden(
            "Only admins and moderators may post in this space",
        ));
    }
    Ok(())
}
