//! Storage: the [`Store`] trait every backend implements, and the batch it commits.
//!
//! - [`embedded`]: the default, an fjall database under the data dir (no external service).
//! - [`cql`]: ScyllaDB or Apache Cassandra through the `scylla` driver (`--store cql`).
//! - [`instrumented`]: a wrapper that times every call and counts failures, for any backend.
//!
//! One conformance suite (`testkit::store_conformance`, feature `testkit`) runs against each:
//! `tests/store_conformance.rs` (embedded) and `tests/cql_store.rs` (a real Cassandra).
//!
//! # Guarantees every backend gives
//! - **One writer per space, fenced.** [`Store::claim`] makes its caller the space's only writer:
//!   it raises the space's fencing epoch above every earlier claim, atomically and durably, and
//!   returns the new epoch with the durable state. A [`Store::commit`] whose
//!   [`CommitBatch::epoch`] is not the space's current epoch fails with
//!   [`EngineError::Fenced`](crate::EngineError::Fenced) and leaves no visible trace, now or
//!   later: a writer paused past a claim (SIGSTOP, a GC pause, a partition) with commits in
//!   flight cannot overwrite, duplicate or reorder anything a later claimer committed, even when
//!   its in-flight writes reach the database after the claimer's. Epoch 0 means "never claimed":
//!   a space that was never claimed accepts commits at epoch 0 (tests and tools that write a
//!   space directly), and none once it is claimed.
//! - [`Store::commit`] is atomic as observed and durable: when it returns `Ok`, every event,
//!   message write, member, edit-history write, idempotency key, counter, stats value and
//!   contributor row in the batch survives a crash of the process or machine,
//!   and every read sees all of it. When it returns an error, the caller must assume nothing or
//!   everything was written (a retried batch must be idempotent; it is, every key derives from
//!   the space id and the events' seqs), except:
//!   - `Fenced`: nothing was, or ever will be, visible;
//!   - `Unsettled`: the batch is durable and its events are in the log, but rows it changes may
//!     still show their old state; the caller acknowledges the batch and must `claim` the space
//!     again before its next commit (the claim finishes the update).
//! - No visible change is ever described by no event. Until a commit is durable, nothing of it is
//!   visible (a commit that fails before that point leaves exactly the state before it). Once it
//!   is durable its events and new messages are visible; its changes to rows that already existed
//!   (deletes, likes of older messages, index moves, members) may follow a moment later, and
//!   after a commit that failed half-way (`Unsettled`) they are complete at the latest when the
//!   next `claim` returns.
//! - Reads see only committed batches, and never anything of a fenced one.
//!
//! How each backend does it is in its module doc: the embedded store checks the epoch and writes
//! in one atomic batch under its single writer thread; the CQL store moves a head row with a
//! lightweight transaction and orders every other write by a timestamp derived from the commit.

pub mod cql;
pub mod embedded;
pub mod instrumented;

use async_trait::async_trait;

use crate::discovery::{ActivityCount, UserSpaceRow, UserSpaceStats};
use crate::error::Result;
use crate::event::SpaceEvent;
use crate::model::{
    Member, Message, MessageId, MessageVersion, Seq, Space, SpaceCounters, SpaceId, SpaceView,
    Timestamp,
};
use crate::notifications::Notification;
use crate::stats::{ContributorStats, SpaceStats};
use crate::unread::{Membership, ReadMarker, SpaceActivity};
use uuid::Uuid;

/// Orders of [`Store::page_messages`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageOrder {
    /// Newest first (by seq, which follows creation time).
    Recent,
    /// Most appreciated first; ties newest first.
    MostAppreciated,
}

/// Directions of a keyset read of messages ([`Store::scan_messages`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first (ascending seq).
    Forward,
    /// Newest first (descending seq).
    Backward,
}

/// A change to a message row, computed by the space actor.
// Built once per command and moved, never copied in bulk: boxing `Put` would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum MessageWrite {
    /// Insert or replace a message. `previous_appreciation` is `None` for a new message, else the
    /// appreciation count the store last saw for it (a delete coalesced with the put uses it).
    /// For an existing message, what differs from the stored row is told by the batch's events
    /// about it, and a backend may write only that: the content fields, `edited_at` and the
    /// redaction fields (`message_edited`, `message_redacted`), the reply count
    /// (`message_created` or `message_deleted` of a reply to it). Reactions, their counts,
    /// `likes` and the appreciation order are never written by a put: only by
    /// [`CommitBatch::reactions`].
    Put {
        message: Message,
        previous_appreciation: Option<u32>,
    },
    /// Remove a message and its index entries.
    Delete {
        message_id: MessageId,
        seq: Seq,
        appreciation_count: u32,
    },
}

/// A change to a message's edit history ([`Store::message_history`]), computed by the space actor.
#[derive(Clone, Debug, PartialEq)]
pub enum HistoryWrite {
    /// An edit replaced `version` (keyed by the edit's seq, `version.seq`).
    Add {
        message_id: MessageId,
        version: MessageVersion,
    },
    /// Every earlier version of the message is gone (a redaction wiped them, or a delete).
    Clear { message_id: MessageId },
}

impl HistoryWrite {
    fn message_id(&self) -> MessageId {
        match self {
            HistoryWrite::Add { message_id, .. } | HistoryWrite::Clear { message_id } => {
                *message_id
            }
        }
    }
}

/// One user's reaction to a message set or removed, computed by the space actor: O(1) to write,
/// whatever the message's other reactions (a backend writes the reaction's own row and the key's
/// count, never the message or its other reactions).
#[derive(Clone, Debug, PartialEq)]
pub struct ReactionWrite {
    pub message_id: MessageId,
    /// The message's seq (where its row is).
    pub message_seq: Seq,
    pub key: String,
    pub user_id: String,
    /// `Some(seq of the event that added it)` when set, `None` when removed.
    pub added: Option<Seq>,
    /// The key's count on the message after this write.
    pub count: u32,
}

impl ReactionWrite {
    /// The key's count before this write.
    pub fn count_before(&self) -> u32 {
        if self.added.is_some() {
            self.count.saturating_sub(1)
        } else {
            self.count + 1
        }
    }

    /// Whether this is an appreciation (which also moves the message in the
    /// most-appreciated order, and is Space7's `likes`).
    pub fn is_appreciation(&self) -> bool {
        self.key == crate::event::APPRECIATE
    }
}

/// An idempotency key of a send, written in the same commit as the message it names.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyWrite {
    pub sender_id: String,
    pub key: String,
    pub message_id: MessageId,
    /// After this the key is absent ([`Store::idempotent_send`] answers `None`).
    pub expires_at: Timestamp,
}

/// Everything one group commit of one space writes, atomically.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommitBatch {
    pub space_id: SpaceId,
    /// The fencing epoch of the writer, as returned by its [`Store::claim`] (0: never claimed).
    /// A batch whose epoch is not the space's current one is refused with `Fenced`.
    pub epoch: u64,
    /// Events with consecutive seqs, continuing the space's log.
    pub events: Vec<SpaceEvent>,
    pub messages: Vec<MessageWrite>,
    /// Members added or changed.
    pub members: Vec<Member>,
    /// Users no longer members (removed or left): their member row and their entry in the
    /// user's space index are deleted. Never also in `members` (see
    /// [`CommitBatch::push_member_removal`]).
    pub removed_members: Vec<String>,
    /// The space's record after a settings change, if the batch changes it: its title,
    /// description, visibility and posting permission replace the stored ones (its id, creator,
    /// tags and creation time never change, and a backend may leave them as stored).
    pub space: Option<Space>,
    /// Edit history added or cleared, in order (see [`CommitBatch::push_history`]).
    pub history: Vec<HistoryWrite>,
    /// Idempotency keys of the sends in the batch.
    pub keys: Vec<KeyWrite>,
    /// Reactions set or removed, in order (see [`CommitBatch::push_reaction`]). A backend applies
    /// the final state of each (message, key, user) and of each (message, key)'s count.
    pub reactions: Vec<ReactionWrite>,
    /// The space's counters after the batch.
    pub counters: SpaceCounters,
    /// The space's stats after the batch; `None`: unchanged by it (see [`crate::stats`]).
    pub stats: Option<SpaceStats>,
    /// Contributor numbers the batch changed, each user's final value (see
    /// [`CommitBatch::push_contributor`]).
    pub contributors: Vec<ContributorStats>,
    // ---- disc: discovery and user stats (issue 12) ----
    /// The space's activity count of each UTC hour the batch counted in, final values (see
    /// [`crate::discovery`]; [`CommitBatch::push_hourly_activity`]).
    pub hourly_activity: Vec<ActivityCount>,
    /// Users' numbers in this space for their profile stats, each user's final value
    /// ([`CommitBatch::push_user_stats`]).
    pub user_stats: Vec<UserSpaceStats>,
    /// The creator's "created this space" row of the user index, written again by the first
    /// stats commit of a space whose index was not built yet (spaces created before it existed;
    /// [`Store::create_space`] writes it for new ones). Idempotent.
    pub creator_mark: Option<String>,
    /// A public space's discovery entries (newest-public list, tags, search words) written
    /// again: by the first stats commit of a space whose stats did not exist or predate the
    /// user index, so spaces created before the indexes enter them. Idempotent.
    pub index_space: Option<Space>,
    /// Notifications the batch's events cause (see [`crate::notifications`]), one per
    /// `notification_id` (see [`CommitBatch::push_notification`]); written atomically with the
    /// batch, and published to their users' channels once it is durable.
    pub notifications: Vec<Notification>,
    // ---- unread: read markers, unread counts, the inbox (issue 12) ----
    /// Read markers set, each user's last (see [`CommitBatch::push_marker`]). A removal of the
    /// user later in the batch drops theirs (the removal deletes the marker).
    pub markers: Vec<(String, ReadMarker)>,
    /// The space's [`SpaceActivity`] after the batch; `None`: unchanged by it.
    pub activity: Option<SpaceActivity>,
    /// For each message the batch creates: its seq and the space's top-level count as of it
    /// (what [`Store::top_level_at`] answers).
    pub top_level_at: Vec<(Seq, u64)>,
}

/// What [`CommitBatch::reaction_outcome`] computes.
#[derive(Debug, Default)]
pub struct ReactionOutcome<'a> {
    /// The last write of each (message, key, user): its row is set (`added`) or removed.
    pub rows: Vec<&'a ReactionWrite>,
    /// The last write of each (message, key): its `count` is the key's count.
    pub counts: Vec<&'a ReactionWrite>,
    /// Each appreciated or unappreciated message: (id, seq, count before the batch, count after).
    pub appreciation: Vec<(MessageId, Seq, u32, u32)>,
}

/// What a space actor loads to resume a space.
#[derive(Clone, Debug, PartialEq)]
pub struct SpaceSnapshot {
    pub view: SpaceView,
    pub members: Vec<Member>,
}

/// What `claim` returns: the space as durable, and the caller's fencing epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct Claimed {
    pub snapshot: SpaceSnapshot,
    pub epoch: u64,
}

/// A durable home for spaces, members, messages and event logs. See the module doc for the
/// guarantees.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a space whose first member (power 100) is its creator. Atomic and durable.
    ///
    /// # Errors
    /// `StoreUnavailable` when the backend fails.
    async fn create_space(&self, space: &Space, creator: &Member) -> Result<()>;

    /// Makes the caller the space's only writer: atomically raises the space's fencing epoch
    /// above every earlier claim (so any later commit carrying an older epoch is refused),
    /// finishes whatever a half-applied earlier commit left undone, and returns the durable state
    /// with the new epoch. `None` if the space does not exist.
    ///
    /// The snapshot is final for the new epoch: no commit of an earlier epoch can change it any
    /// more. Claiming again (a restart of the space on this or another node) fences this claim.
    ///
    /// # Errors
    /// `StoreUnavailable` when the backend fails (the epoch may or may not have been raised; a
    /// raised epoch that nobody uses only fences its predecessors, so the caller claims again).
    async fn claim(&self, space_id: SpaceId) -> Result<Option<Claimed>>;

    /// The space, its counters and all its members; `None` if it does not exist. A read: it
    /// neither fences nor repairs (see [`Store::claim`]).
    async fn load_space(&self, space_id: SpaceId) -> Result<Option<SpaceSnapshot>>;

    /// The space and its counters; `None` if it does not exist.
    async fn get_space(&self, space_id: SpaceId) -> Result<Option<SpaceView>>;

    /// One member of a space.
    async fn get_member(&self, space_id: SpaceId, user_id: &str) -> Result<Option<Member>>;

    /// Every space `user_id` is a member of, with that membership, newest space first.
    async fn spaces_of_user(&self, user_id: &str) -> Result<Vec<(SpaceView, Member)>>;

    /// Commits one batch: atomic and durable when it returns `Ok`.
    ///
    /// # Errors
    /// `Fenced` when `batch.epoch` is not the space's current epoch (nothing of the batch is
    /// visible, ever); `Unsettled` when the batch is durable but not fully applied (acknowledge
    /// it, then claim the space again); `StoreUnavailable` when the outcome is unknown.
    async fn commit(&self, batch: &CommitBatch) -> Result<()>;

    /// Events with `seq > after`, oldest first, at most `limit`.
    async fn read_events(
        &self,
        space_id: SpaceId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<SpaceEvent>>;

    /// A page of existing messages in `order`, skipping `offset`.
    async fn page_messages(
        &self,
        space_id: SpaceId,
        order: MessageOrder,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Message>>;

    /// Members of a space ordered by user id (byte order), those with a user id greater than
    /// `after` (all from the start when `None`), at most `limit`. A keyset read: it costs the
    /// rows it returns, whatever `after` is.
    async fn scan_members(
        &self,
        space_id: SpaceId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Member>>;

    /// Existing messages with `after < seq < before`, oldest first ([`Direction::Forward`],
    /// from `after`) or newest first ([`Direction::Backward`], from `before`), at most `limit`.
    /// A keyset read: it costs the rows it returns plus the deleted rows and empty partitions it
    /// passes, never an offset's worth of skipped rows.
    async fn scan_messages(
        &self,
        space_id: SpaceId,
        after: Seq,
        before: Seq,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Message>>;

    /// One message by id, if it exists in that space.
    async fn get_message(
        &self,
        space_id: SpaceId,
        message_id: MessageId,
    ) -> Result<Option<Message>>;

    /// The earlier versions of an edited message, newest first (empty for a message never
    /// edited, a redacted one, or an unknown one). Only what committed batches wrote.
    async fn message_history(
        &self,
        space_id: SpaceId,
        message_id: MessageId,
    ) -> Result<Vec<MessageVersion>>;

    /// Whether `user_id` has reacted to the message with `key`: the seq of the event that added
    /// it. A point read (the space actor's check before it sequences a reaction).
    async fn get_reaction(
        &self,
        space_id: SpaceId,
        message_id: MessageId,
        key: &str,
        user_id: &str,
    ) -> Result<Option<Seq>>;

    /// For each `(message, keys)`, which of `keys` `user_id` has reacted with, in `keys`' order
    /// (a viewer's `user_reactions`; the keys are those of the message's `reaction_counts`, at
    /// most [`crate::model::MAX_REACTION_KEYS`]). Bounded per message: a point read per key
    /// (embedded) or one clustering-prefix read (CQL).
    async fn user_reactions(
        &self,
        space_id: SpaceId,
        user_id: &str,
        items: Vec<(MessageId, Vec<String>)>,
    ) -> Result<Vec<Vec<String>>>;

    /// The message a send of `sender_id` with idempotency `key` created in this space, if that
    /// key was committed and has not expired ([`KeyWrite::expires_at`]; a backend whose expiry
    /// has whole-second precision, such as CQL's TTL, may answer with it for up to a second
    /// more). Only what committed batches wrote.
    async fn idempotent_send(
        &self,
        space_id: SpaceId,
        sender_id: &str,
        key: &str,
    ) -> Result<Option<MessageId>>;

    /// The space's stats as last committed; `None` for a space whose stats were never committed
    /// (a space without messages yet, one written before stats existed, or an unknown one).
    async fn space_stats(&self, space_id: SpaceId) -> Result<Option<SpaceStats>>;

    /// One contributor's numbers as last committed (`None`: never written).
    async fn get_contributor(
        &self,
        space_id: SpaceId,
        user_id: &str,
    ) -> Result<Option<ContributorStats>>;

    /// Every contributor row of the space, in no particular order (rows with no messages left
    /// may be included). A scan: O(senders); the stats use it only in their documented worst
    /// case.
    async fn contributors(&self, space_id: SpaceId) -> Result<Vec<ContributorStats>>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<()>;

    /// Makes everything durable and releases the backend. Called once at shutdown.
    async fn close(&self) -> Result<()>;

    // ---- disc: discovery and user stats (issue 12) ----

    /// Public spaces, newest first, at most `limit` (the index [`Store::create_space`] writes
    /// for a public space). Entries only: the caller reads each space and checks it is public.
    async fn newest_public_spaces(&self, limit: usize) -> Result<Vec<SpaceId>>;

    /// Public spaces created with tag `tag` (normalised), newest first, at most `limit`.
    async fn spaces_with_tag(&self, tag: &str, limit: usize) -> Result<Vec<SpaceId>>;

    /// Entries of the word index whose word starts with `prefix` (at least
    /// [`crate::discovery::MIN_QUERY_WORD_CHARS`] characters), in word order, at most `limit`:
    /// `(word, space, in_title)`. A read of one index partition (the prefix's first two
    /// characters), from the prefix on.
    async fn search_words(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, SpaceId, bool)>>;

    /// The hourly activity counts of every space active in UTC hour `hour` (one bucket).
    async fn activity_in_hour(&self, hour: i64) -> Result<Vec<(SpaceId, u64)>>;

    /// One space's activity count in `hour` (0 when none was committed).
    async fn space_hour_activity(&self, space_id: SpaceId, hour: i64) -> Result<u64>;

    /// One user's numbers in one space as last committed (`None`: never written).
    async fn get_user_space_stats(
        &self,
        user_id: &str,
        space_id: SpaceId,
    ) -> Result<Option<UserSpaceStats>>;

    /// Every row of a user's index (spaces created, numbers per space), in no particular
    /// order: one partition read, O(spaces the user created or contributed to).
    async fn user_space_rows(&self, user_id: &str) -> Result<Vec<UserSpaceRow>>;

    // ---- notif: notifications (issue 12) ----

    /// `user_id`'s notifications, newest first ([`Notification::newest_first`]): at most
    /// [`crate::notifications::NOTIFICATIONS_KEPT`], the newest. Reads at most that many rows plus those not trimmed
    /// yet, and trims the older ones (see [`crate::notifications`]). Only what committed
    /// batches wrote ([`CommitBatch::notifications`]), with the read marks of
    /// [`Store::mark_notifications_read`].
    async fn notifications(&self, user_id: &str) -> Result<Vec<Notification>>;

    /// Whether `user_id` has the notification `notification_id` (a point read: the space
    /// actor's check before it creates an appreciation's notification).
    async fn has_notification(&self, user_id: &str, notification_id: Uuid) -> Result<bool>;

    /// Marks notifications of `user_id` read. Written directly, not through a space actor;
    /// idempotent; an id the user does not have is ignored, and a notification written again by
    /// a retried commit or a claim stays read.
    async fn mark_notifications_read(&self, user_id: &str, ids: &[Uuid]) -> Result<()>;

    // ---- unread: read markers, unread counts, the inbox (issue 12) ----
    /// A member's read marker in a space, as last committed (`None`: never set, or not a
    /// member). A point read.
    async fn read_marker(&self, space_id: SpaceId, user_id: &str) -> Result<Option<ReadMarker>>;

    /// The space's top-level message count as of `seq` (see [`crate::unread`]): what the commit
    /// that created the newest message at or before `seq` recorded; `None` when there is no such
    /// record. Never above the exact count. A keyset read backwards: it costs one row plus the
    /// deleted rows and empty partitions it passes (CQL), bounded: past
    /// [`crate::unread::MAX_LOOKBACK_PARTITIONS`] empty partitions it answers `None`.
    async fn top_level_at(&self, space_id: SpaceId, seq: Seq) -> Result<Option<u64>>;

    /// The space's [`SpaceActivity`] as last committed (`None`: never written). A point read.
    async fn space_activity(&self, space_id: SpaceId) -> Result<Option<SpaceActivity>>;

    /// Every space `user_id` is a member of, with the membership, the member's marker and the
    /// space's activity, newest space first: one read of the user's membership index, then
    /// point reads per space. O(spaces of the user); never reads a message.
    async fn memberships_of_user(&self, user_id: &str) -> Result<Vec<Membership>>;
}

/// Where a test makes the next commit fail ([`FaultInjection`], feature `testkit`; used by the
/// conformance suite).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailPoint {
    /// Before the commit is durable: whatever it wrote must stay invisible.
    BeforeHead,
    /// After the commit is durable, before every row it changes is updated (where a backend has
    /// such a moment; otherwise: after the whole commit, reporting a failure).
    AfterHead,
}

/// Test-only fault injection a backend offers to the conformance suite (feature `testkit`).
#[cfg(feature = "testkit")]
pub trait FaultInjection {
    /// Makes the next `commit` fail at `at`, with an error.
    fn fail_next_commit(&self, at: FailPoint);
}

impl CommitBatch {
    /// Adds a message write, coalescing it with an earlier write of the same message in this
    /// batch so each key is written once: the batch carries only the final state, and the
    /// `previous_appreciation` the store last saw. A message created and deleted within one batch
    /// leaves no row at all (its events stay in the log).
    pub fn push_message_write(&mut self, w: MessageWrite) {
        let id = match &w {
            MessageWrite::Put { message, .. } => message.message_id,
            MessageWrite::Delete { message_id, .. } => *message_id,
        };
        // A message deleted in this batch takes its reactions of this batch with it (the delete
        // removes every reaction row the store has); the store's index entry is still at the count
        // before them.
        let mut store_seen = None;
        if matches!(w, MessageWrite::Delete { .. }) {
            self.reactions.retain(|r| {
                if r.message_id != id {
                    return true;
                }
                if r.is_appreciation() && store_seen.is_none() {
                    store_seen = Some(r.count_before());
                }
                false
            });
        }
        self.push_message_write_inner(id, w);
        if let Some(c) = store_seen {
            for e in &mut self.messages {
                if let MessageWrite::Delete {
                    message_id,
                    appreciation_count,
                    ..
                } = e
                    && *message_id == id
                {
                    *appreciation_count = c;
                }
            }
        }
    }

    fn push_message_write_inner(&mut self, id: MessageId, w: MessageWrite) {
        let existing = self.messages.iter().position(|e| match e {
            MessageWrite::Put { message, .. } => message.message_id == id,
            MessageWrite::Delete { message_id, .. } => *message_id == id,
        });
        let Some(i) = existing else {
            self.messages.push(w);
            return;
        };
        let stored_prev = match &self.messages[i] {
            MessageWrite::Put {
                previous_appreciation,
                ..
            } => *previous_appreciation,
            // Nothing may follow a delete; keep the delete.
            MessageWrite::Delete { .. } => return,
        };
        match (w, stored_prev) {
            (MessageWrite::Put { message, .. }, prev) => {
                self.messages[i] = MessageWrite::Put {
                    message,
                    previous_appreciation: prev,
                };
            }
            (MessageWrite::Delete { .. }, None) => {
                self.messages.remove(i);
            }
            (
                MessageWrite::Delete {
                    message_id, seq, ..
                },
                Some(prev),
            ) => {
                self.messages[i] = MessageWrite::Delete {
                    message_id,
                    seq,
                    appreciation_count: prev,
                };
            }
        }
    }

    /// Adds a member write, replacing an earlier write of the same user in this batch.
    pub fn push_member(&mut self, m: Member) {
        self.removed_members.retain(|u| *u != m.user.user_id);
        if let Some(e) = self
            .members
            .iter_mut()
            .find(|e| e.user.user_id == m.user.user_id)
        {
            *e = m;
        } else {
            self.members.push(m);
        }
    }

    /// Adds a member removal, replacing an earlier write of the same user in this batch.
    pub fn push_member_removal(&mut self, user_id: String) {
        self.members.retain(|m| m.user.user_id != user_id);
        self.markers.retain(|(u, _)| *u != user_id);
        if !self.removed_members.contains(&user_id) {
            self.removed_members.push(user_id);
        }
    }

    /// Adds a contributor write, replacing an earlier write of the same user in this batch.
    pub fn push_contributor(&mut self, c: ContributorStats) {
        if let Some(e) = self
            .contributors
            .iter_mut()
            .find(|e| e.user_id == c.user_id)
        {
            *e = c;
        } else {
            self.contributors.push(c);
        }
    }

    /// Whether the batch writes nothing (its counters aside: they only change with writes).
    /// The writer answers a batch of only such items without calling the store: they are
    /// commands that changed nothing and wait only for the commits before them.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.messages.is_empty()
            && self.members.is_empty()
            && self.removed_members.is_empty()
            && self.space.is_none()
            && self.history.is_empty()
            && self.keys.is_empty()
            && self.reactions.is_empty()
            && self.stats.is_none()
            && self.contributors.is_empty()
            && self.hourly_activity.is_empty()
            && self.user_stats.is_empty()
            && self.creator_mark.is_none()
            && self.notifications.is_empty()
            && self.markers.is_empty()
            && self.activity.is_none()
            && self.top_level_at.is_empty()
            && self.index_space.is_none()
    }

    /// Adds an hour's activity count, replacing an earlier count of the same hour in this batch.
    pub fn push_hourly_activity(&mut self, a: ActivityCount) {
        match self.hourly_activity.iter_mut().find(|e| e.hour == a.hour) {
            Some(e) => *e = a,
            None => self.hourly_activity.push(a),
        }
    }

    /// Adds a user's numbers, replacing an earlier write of the same user in this batch.
    pub fn push_user_stats(&mut self, u: UserSpaceStats) {
        match self.user_stats.iter_mut().find(|e| e.user_id == u.user_id) {
            Some(e) => *e = u,
            None => self.user_stats.push(u),
        }
    }

    /// Adds a notification, replacing an earlier one of the same id in this batch.
    pub fn push_notification(&mut self, n: Notification) {
        if let Some(e) = self
            .notifications
            .iter_mut()
            .find(|e| e.notification_id == n.notification_id)
        {
            *e = n;
        } else {
            self.notifications.push(n);
        }
    }

    /// Adds a read marker write, replacing an earlier one of the same user in this batch.
    pub fn push_marker(&mut self, user_id: &str, marker: ReadMarker) {
        match self.markers.iter_mut().find(|(u, _)| u == user_id) {
            Some(e) => e.1 = marker,
            None => self.markers.push((user_id.to_owned(), marker)),
        }
    }

    /// Adds a reaction write. Writes of the same (message, key, user) stay in order; a backend
    /// applies the last.
    pub fn push_reaction(&mut self, r: ReactionWrite) {
        self.reactions.push(r);
    }

    /// The final state of each (message, key, user) and each (message, key)'s final count, in
    /// first-touched order, with each message's appreciation count before the batch (for the
    /// most-appreciated index): what a backend writes for [`CommitBatch::reactions`].
    pub fn reaction_outcome(&self) -> ReactionOutcome<'_> {
        let mut out = ReactionOutcome::default();
        for r in &self.reactions {
            match out
                .rows
                .iter_mut()
                .find(|x| x.message_id == r.message_id && x.key == r.key && x.user_id == r.user_id)
            {
                Some(x) => *x = r,
                None => out.rows.push(r),
            }
            match out
                .counts
                .iter_mut()
                .find(|x| x.message_id == r.message_id && x.key == r.key)
            {
                Some(x) => *x = r,
                None => out.counts.push(r),
            }
            if r.is_appreciation() {
                match out
                    .appreciation
                    .iter_mut()
                    .find(|(id, ..)| *id == r.message_id)
                {
                    Some(x) => x.3 = r.count,
                    None => out.appreciation.push((
                        r.message_id,
                        r.message_seq,
                        r.count_before(),
                        r.count,
                    )),
                }
            }
        }
        out
    }

    /// Adds a history write. A `Clear` drops the adds of the same message earlier in this batch
    /// (and is kept, for what earlier batches wrote), so the batch's writes never depend on
    /// their order within it.
    pub fn push_history(&mut self, h: HistoryWrite) {
        if let HistoryWrite::Clear { message_id } = &h {
            let id = *message_id;
            self.history.retain(|e| e.message_id() != id);
        }
        self.history.push(h);
    }

    /// Appends everything of `other` (a later batch of the same space, from the same writer) to
    /// this one; the result carries `other`'s counters and epoch, and its stats if it has any.
    pub fn absorb(&mut self, other: CommitBatch) {
        self.epoch = other.epoch;
        self.events.extend(other.events);
        // Removals first: a batch never has both for one user, so `other`'s own order does not
        // matter, and either replaces what `self` had for that user.
        for u in other.removed_members {
            self.push_member_removal(u);
        }
        for m in other.members {
            self.push_member(m);
        }
        if other.space.is_some() {
            self.space = other.space;
        }
        for h in other.history {
            self.push_history(h);
        }
        self.keys.extend(other.keys);
        // Before the messages: a delete among them drops the reactions of its message.
        self.reactions.extend(other.reactions);
        for w in other.messages {
            self.push_message_write(w);
        }
        self.counters = other.counters;
        if other.stats.is_some() {
            self.stats = other.stats;
        }
        for c in other.contributors {
            self.push_contributor(c);
        }
        for a in other.hourly_activity {
            self.push_hourly_activity(a);
        }
        for u in other.user_stats {
            self.push_user_stats(u);
        }
        if other.creator_mark.is_some() {
            self.creator_mark = other.creator_mark;
        }
        for n in other.notifications {
            self.push_notification(n);
        }
        for (u, m) in other.markers {
            self.push_marker(&u, m);
        }
        if other.activity.is_some() {
            self.activity = other.activity;
        }
        self.top_level_at.extend(other.top_level_at);
        if other.index_space.is_some() {
            self.index_space = other.index_space;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserRef;

    fn msg(count: u32) -> Message {
        Message {
            message_id: uuid::Uuid::nil(),
            // Fixed, so two calls build equal messages.
            space_id: uuid::Uuid::nil(),
            seq: 3,
            sender_id: "u".into(),
            content: Some("hi".into()),
            media_url: None,
            media_type: None,
            word_count: 1,
            sender: UserRef {
                user_id: "u".into(),
                username: "u".into(),
                profile_picture: String::new(),
            },
            likes: None,
            appreciation_count: count,
            created_at: Timestamp(0),
            ..Default::default()
        }
    }

    #[test]
    fn writes_of_one_message_coalesce_to_its_final_state() {
        let mut b = CommitBatch::default();
        b.push_message_write(MessageWrite::Put {
            message: msg(2),
            previous_appreciation: Some(2),
        });
        b.push_message_write(MessageWrite::Put {
            message: msg(3),
            previous_appreciation: Some(2),
        });
        b.push_message_write(MessageWrite::Put {
            message: msg(4),
            previous_appreciation: Some(3),
        });
        assert_eq!(
            b.messages,
            vec![MessageWrite::Put {
                message: msg(4),
                previous_appreciation: Some(2)
            }]
        );
        b.push_message_write(MessageWrite::Delete {
            message_id: uuid::Uuid::nil(),
            seq: 3,
            appreciation_count: 4,
        });
        assert_eq!(
            b.messages,
            vec![MessageWrite::Delete {
                message_id: uuid::Uuid::nil(),
                seq: 3,
                appreciation_count: 2
            }]
        );
    }

    #[test]
    fn a_merged_batch_carries_its_writers_epoch_and_last_counters() {
        let mut merged = CommitBatch::default();
        let counters = SpaceCounters {
            head_seq: 7,
            message_count: 3,
            member_count: 2,
        };
        merged.absorb(CommitBatch {
            epoch: 4,
            counters,
            ..Default::default()
        });
        assert_eq!((merged.epoch, merged.counters), (4, counters));
    }

    #[test]
    fn a_member_write_and_a_removal_of_one_user_coalesce_to_the_last() {
        let m = |u: &str, p: i32| Member {
            user: UserRef {
                user_id: u.into(),
                username: u.into(),
                profile_picture: String::new(),
            },
            power_level: p,
            joined_at: Timestamp(0),
        };
        let mut b = CommitBatch::default();
        b.push_member(m("a", 0));
        b.push_member_removal("a".into());
        assert!(b.members.is_empty());
        assert_eq!(b.removed_members, vec!["a".to_owned()]);
        b.push_member(m("a", 50));
        assert!(b.removed_members.is_empty());
        let mut later = CommitBatch::default();
        later.push_member_removal("a".into());
        later.push_member(m("b", 0));
        b.absorb(later);
        assert_eq!(b.members, vec![m("b", 0)]);
        assert_eq!(b.removed_members, vec!["a".to_owned()]);
        assert!(!b.is_empty());
    }

    #[test]
    fn a_merged_batch_carries_the_last_stats_and_each_contributors_last_value() {
        let stats = |n: u64| crate::stats::SpaceStats {
            total_messages: n,
            ..Default::default()
        };
        let c = |user: &str, n: u64| ContributorStats {
            user_id: user.into(),
            messages: n,
            word_count: n,
        };
        let mut merged = CommitBatch::default();
        merged.absorb(CommitBatch {
            stats: Some(stats(1)),
            contributors: vec![c("a", 1)],
            ..Default::default()
        });
        merged.absorb(CommitBatch {
            stats: Some(stats(2)),
            contributors: vec![c("b", 1), c("a", 2)],
            ..Default::default()
        });
        // A later batch without stats (a join) keeps the last ones.
        merged.absorb(CommitBatch::default());
        assert_eq!(merged.stats, Some(stats(2)));
        assert_eq!(merged.contributors, vec![c("a", 2), c("b", 1)]);
        assert!(!merged.is_empty(), "stats and contributors are writes");
    }

    #[test]
    fn a_merged_batch_carries_each_hours_last_activity_and_each_users_last_numbers() {
        use crate::discovery::{ActivityCount, UserSpaceStats};
        let a = |hour, count| ActivityCount { hour, count };
        let u = |user: &str, n: u64| UserSpaceStats {
            user_id: user.into(),
            messages: n,
            word_count: n,
            appreciations: n,
        };
        let mut merged = CommitBatch::default();
        merged.absorb(CommitBatch {
            hourly_activity: vec![a(7, 1)],
            user_stats: vec![u("a", 1)],
            ..Default::default()
        });
        assert!(!merged.is_empty(), "activity and user numbers are writes");
        merged.absorb(CommitBatch {
            hourly_activity: vec![a(7, 2), a(8, 1)],
            user_stats: vec![u("b", 1), u("a", 2)],
            creator_mark: Some("c".into()),
            ..Default::default()
        });
        merged.absorb(CommitBatch::default());
        assert_eq!(
            merged.hourly_activity,
            vec![a(7, 2), a(8, 1)],
            "one count per hour"
        );
        assert_eq!(merged.user_stats, vec![u("a", 2), u("b", 1)]);
        assert_eq!(merged.creator_mark.as_deref(), Some("c"));
    }

    #[test]
    fn a_delete_takes_the_batchs_reactions_of_its_message_and_the_index_count_the_store_has() {
        let react = |key: &str, added: Option<Seq>, count| ReactionWrite {
            message_id: uuid::Uuid::nil(),
            message_seq: 3,
            key: key.into(),
            user_id: "u".into(),
            added,
            count,
        };
        let mut b = CommitBatch::default();
        let other = ReactionWrite {
            message_id: crate::model::new_id(),
            ..react("👍", Some(5), 1)
        };
        b.push_reaction(other.clone());
        // The store has the message at appreciation count 2; this batch raises it to 4.
        b.push_reaction(react(crate::event::APPRECIATE, Some(6), 3));
        b.push_reaction(react("👍", Some(7), 1));
        b.push_reaction(react(crate::event::APPRECIATE, Some(8), 4));
        b.push_message_write(MessageWrite::Delete {
            message_id: uuid::Uuid::nil(),
            seq: 3,
            appreciation_count: 4,
        });
        assert_eq!(
            b.reactions,
            vec![other],
            "only the other message's reaction stays"
        );
        assert_eq!(
            b.messages,
            vec![MessageWrite::Delete {
                message_id: uuid::Uuid::nil(),
                seq: 3,
                appreciation_count: 2
            }]
        );
    }

    #[test]
    fn reaction_outcomes_are_the_last_state_of_each_row_and_count() {
        let w = |user: &str, added: Option<Seq>, count| ReactionWrite {
            message_id: uuid::Uuid::nil(),
            message_seq: 3,
            key: crate::event::APPRECIATE.into(),
            user_id: user.into(),
            added,
            count,
        };
        let mut b = CommitBatch::default();
        b.push_reaction(w("a", Some(4), 1));
        b.push_reaction(w("b", Some(5), 2));
        b.push_reaction(w("a", None, 1));
        let out = b.reaction_outcome();
        let rows: Vec<(&str, Option<Seq>)> = out
            .rows
            .iter()
            .map(|r| (r.user_id.as_str(), r.added))
            .collect();
        assert_eq!(rows, vec![("a", None), ("b", Some(5))]);
        assert_eq!(out.counts.len(), 1);
        assert_eq!(out.counts[0].count, 1);
        assert_eq!(out.appreciation, vec![(uuid::Uuid::nil(), 3, 0, 1)]);
    }

    #[test]
    fn a_message_created_and_deleted_in_one_batch_leaves_no_row() {
        let mut b = CommitBatch::default();
        b.push_message_write(MessageWrite::Put {
            message: msg(0),
            previous_appreciation: None,
        });
        b.push_message_write(MessageWrite::Put {
            message: msg(1),
            previous_appreciation: Some(0),
        });
        b.push_message_write(MessageWrite::Delete {
            message_id: uuid::Uuid::nil(),
            seq: 3,
            appreciation_count: 1,
        });
        assert!(b.messages.is_empty());
    }
}
