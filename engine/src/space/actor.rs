//! `SpaceActor`: the single owner of one space's order.
//!
//! It handles one command at a time: validates it against the members, message states and
//! recent idempotency keys it holds, assigns the next `seq` to every state change, applies the change to its in-memory state,
//! and hands the resulting writes to its [`writer`](super::writer). It never waits for the store
//! on the command path (except to read a message it does not have cached), so commands keep
//! arriving and batching while a commit is in flight.
//!
//! State lives in [`SpaceState`], built in `pre_start` from the store after taking the space's
//! local lease. The actor passivates itself when idle and fails (to be rebuilt from the store by
//! the directory) when its writer reports a failed commit.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use spacecast_observability::Metrics;
use spacecast_observability::trace::TraceParent;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::cache::{CacheBudget, Cached, MessageCache, ReactionCache};
use super::writer::{self, Reply, Sequenced, WriterCtx};
use super::{Appreciation, Command, Outcome, Reaction, Redacted, SendMessage, SpaceMsg};
use crate::EngineConfig;
use crate::bus::{CommandSink, Fanout, Lease, Serving};
use crate::directory::SupervisorMsg;
use crate::discovery::{ActivityCount, UserSpaceStats, hour_of};
use crate::error::{EngineError, Result};
use crate::event::{
    APPRECIATE, EventKind, MemberRemoved, MemberUpdated, MessageDeleted, ReactionChanged,
    SpaceEvent, SpaceUpdated,
};
use crate::model::{
    JsonObject, MAX_IDEMPOTENCY_KEY_BYTES, MAX_REACTION_KEY_BYTES, MAX_REACTION_KEYS,
    MAX_REASON_BYTES, MSGTYPE_TEXT, Member, Message, MessageId, MessageVersion, POWER_ADMIN,
    POWER_MEMBER, POWER_MODERATOR, PostingPermission, Seq, Space, SpaceCounters, SpaceId,
    Timestamp, UserRef, Visibility, new_id, valid_reaction_key, validate_rich_fields, word_count,
};
use crate::notifications::{self, Notification, NotificationKind};
use crate::stats::{ContributorStats, MessageMark, SpaceStats, contributor_after};
use crate::store::{
    Claimed, CommitBatch, Direction, HistoryWrite, KeyWrite, MessageWrite, ReactionWrite, Store,
};
use crate::unread::{LastMessage, ReadMarker, ReadState, ReadTarget, SpaceActivity};

/// The actor; stateless, as ractor wants. See the module doc.
pub(crate) struct SpaceActor;

/// What the directory passes to a new space actor.
pub(crate) struct SpaceArgs {
    pub space_id: SpaceId,
    pub store: Arc<dyn Store>,
    /// Where durable commits go: this node's subscribers and the other nodes.
    pub fanout: Fanout,
    /// This node's hold on the space (always valid on a single node).
    pub ownership: Arc<Lease>,
    /// Serves commands other nodes forward here, while this actor runs.
    pub sink: Arc<dyn CommandSink>,
    pub metrics: Metrics,
    pub config: Arc<EngineConfig>,
    /// The node-wide byte budget of message caches.
    pub cache_budget: CacheBudget,
    /// Held by the writer for its lifetime: at most one live writer per space on this node.
    pub lease: Arc<tokio::sync::Mutex<()>>,
    pub supervisor: ActorRef<SupervisorMsg>,
}

/// The actor's state.
pub(crate) struct SpaceState {
    space: Space,
    /// The fencing epoch of this incarnation, stamped on every batch.
    epoch: u64,
    counters: SpaceCounters,
    /// The space stats after every command sequenced so far (see [`crate::stats`]).
    stats: SpaceStats,
    /// Contributor numbers this incarnation read or changed, each as of the last command
    /// sequenced (so including changes not yet durable). Never evicted while the actor lives:
    /// bounded by the senders active since it started.
    contributors: HashMap<String, ContributorStats>,
    /// disc (issue 12): users' numbers in this space for their profile stats, each as of the
    /// last command sequenced; bounded like `contributors` (plus the senders whose messages
    /// were appreciated).
    user_numbers: HashMap<String, UserSpaceStats>,
    /// disc: this space's activity count (messages created + joins) in the UTC hour it holds,
    /// as of the last command sequenced (see [`crate::discovery`]).
    hourly: ActivityCount,
    /// disc: whether this incarnation already wrote the creator's "created" mark.
    creator_marked: bool,
    /// disc: whether the first stats commit must write the space's discovery entries again (its
    /// stats did not exist at the claim: maybe a space created before the indexes).
    index_pending: bool,
    members: HashMap<String, Member>,
    cache: MessageCache,
    /// Reactions the actor changed or read (see [`ReactionCache`]).
    reactions: ReactionCache,
    /// Idempotency keys of recent sends (the store has them all, see `send`).
    keys: RecentKeys,
    writer_tx: Option<mpsc::UnboundedSender<Sequenced>>,
    writer_task: Option<JoinHandle<()>>,
    idle_timer: Option<JoinHandle<()>>,
    /// Forwarded commands reach this actor while this is held.
    _serving: Serving,
    durable_seq: Arc<AtomicU64>,
    queued: Arc<AtomicUsize>,
    last_activity: Instant,
    passivating: bool,
    store: Arc<dyn Store>,
    metrics: Metrics,
    config: Arc<EngineConfig>,
    supervisor: ActorRef<SupervisorMsg>,
    /// Appreciation notifications this incarnation created (maybe not durable yet), so a quick
    /// toggle off and on does not create one twice before the first is in the store (see
    /// [`crate::notifications`]). Cleared past [`RECENT_NOTIFIED`]: the store has the rest.
    notified: std::collections::HashSet<uuid::Uuid>,
    // ---- unread (issue 12) ----
    /// The space's unread counters and last message, after every command sequenced so far.
    activity: SpaceActivity,
    /// Read markers this incarnation read or changed, each as of the last command sequenced.
    /// Never evicted while the actor lives: bounded by the members.
    markers: HashMap<String, ReadMarker>,
    /// `(seq, top-level count as of it)` of the messages this incarnation created, oldest
    /// first, at most [`SpaceState::created_cap`]: a mark below the last message is resolved
    /// here without I/O when it can be (see [`crate::unread`]).
    created: VecDeque<(Seq, u64)>,
}

/// Most ids [`SpaceState::notified`] holds.
const RECENT_NOTIFIED: usize = 4096;

impl Actor for SpaceActor {
    type Msg = SpaceMsg;
    type State = SpaceState;
    type Arguments = SpaceArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SpaceMsg>,
        args: SpaceArgs,
    ) -> Result<SpaceState, ActorProcessingErr> {
        // Wait until a previous incarnation's writer has settled everything it accepted.
        let lease = args.lease.lock_owned().await;
        // Claiming fences every earlier writer of the space (here or on another node) and
        // finishes what a half-applied commit of theirs left undone.
        let Claimed { snapshot, epoch } = args
            .store
            .claim(args.space_id)
            .await?
            .ok_or(EngineError::SpaceNotFound)?;
        let (stats, contributors, index_pending) = crate::stats::load_or_compute_for(
            args.store.as_ref(),
            args.space_id,
            epoch,
            snapshot.view.counters,
            Some(&snapshot.view.space),
        )
        .await?;
        // Only this (fenced) writer counts this space's activity: resume this hour's count.
        let hour = hour_of(Timestamp::now());
        let hourly = ActivityCount {
            hour,
            count: args.store.space_hour_activity(args.space_id, hour).await?,
        };
        let durable_seq = Arc::new(AtomicU64::new(snapshot.view.counters.head_seq));
        let queued = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let serving = args
            .fanout
            .bus()
            .serve(args.space_id, args.sink.clone())
            .await?;
        let ctx = WriterCtx {
            space_id: args.space_id,
            store: args.store.clone(),
            fanout: args.fanout.clone(),
            ownership: args.ownership.clone(),
            metrics: args.metrics.clone(),
            actor: myself.clone(),
            durable_seq: durable_seq.clone(),
            queued: queued.clone(),
            max_batch: args.config.max_batch,
            lease,
        };
        let writer_task = tokio::spawn(writer::run(ctx, rx));
        let idle_timer =
            myself.send_interval(args.config.idle_check_interval(), || SpaceMsg::IdleCheck);
        let head_seq = snapshot.view.counters.head_seq;
        let stored_activity = args.store.space_activity(args.space_id).await?;
        let migrate_activity = stored_activity.is_none() && head_seq > 0;
        let activity = stored_activity.unwrap_or(SpaceActivity {
            // A space written before read markers: counting starts here (see `crate::unread`).
            since: head_seq,
            last_created: head_seq,
            ..Default::default()
        });
        args.metrics.space_actors.inc();
        tracing::debug!(space_id = %args.space_id, head_seq, "space actor started");
        let mut state = SpaceState {
            space: snapshot.view.space,
            epoch,
            counters: snapshot.view.counters,
            stats,
            contributors,
            user_numbers: HashMap::new(),
            hourly,
            creator_marked: false,
            index_pending,
            members: snapshot
                .members
                .into_iter()
                .map(|m| (m.user.user_id.clone(), m))
                .collect(),
            cache: MessageCache::new(args.config.message_cache, args.cache_budget),
            reactions: ReactionCache::default(),
            keys: RecentKeys::new(Timestamp::now(), args.config.idempotency_ttl),
            writer_tx: Some(tx),
            writer_task: Some(writer_task),
            idle_timer: Some(idle_timer),
            _serving: serving,
            durable_seq,
            queued,
            last_activity: Instant::now(),
            passivating: false,
            store: args.store,
            metrics: args.metrics,
            config: args.config,
            supervisor: args.supervisor,
            notified: std::collections::HashSet::new(),
            activity,
            markers: HashMap::new(),
            created: VecDeque::new(),
        };
        if migrate_activity {
            state.activity.last_message = state.last_top_level_before(head_seq + 1).await?;
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SpaceMsg>,
        state: &mut SpaceState,
    ) -> Result<(), ActorProcessingErr> {
        state.shutdown_writer().await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SpaceMsg>,
        msg: SpaceMsg,
        state: &mut SpaceState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SpaceMsg::Command(cmd, reply, caller) => {
                state.touch();
                // The command's span, child of the caller's, for a sampled trace only; it ends
                // when the writer answered the command (it travels with it), so it covers
                // validation and the commit wait.
                let span = if TraceParent::of(&caller).is_some() {
                    tracing::debug_span!(
                        parent: &caller,
                        "space.command",
                        space_id = %state.space.space_id,
                        op = cmd.name(),
                        seq = tracing::field::Empty,
                    )
                } else {
                    tracing::Span::none()
                };
                drop(caller);
                let r = Self::apply(state, cmd).instrument(span.clone()).await;
                state.dispatch(r, reply, span);
            }
            SpaceMsg::IdleCheck => {
                // A quiet space still gives back its share of the cache budget.
                state.evict_durable();
                let idle = state.last_activity.elapsed() >= state.config.idle_timeout
                    && state.queued.load(Ordering::Acquire) == 0;
                if idle && !state.passivating {
                    state.passivating = true;
                    let _ = state.supervisor.send_message(SupervisorMsg::Passivate(
                        state.space.space_id,
                        myself.get_id(),
                    ));
                }
            }
            SpaceMsg::WriterFailed(reason) => {
                // Our in-memory state is ahead of the store: fail, so the directory rebuilds the
                // space from what is durable. The writer answers everything still queued.
                return Err(EngineError::StoreUnavailable(reason).into());
            }
        }
        Ok(())
    }
}

impl SpaceActor {
    /// Validates and sequences one command: its writes and its outcome.
    async fn apply(state: &mut SpaceState, cmd: Command) -> Result<(CommitBatch, Outcome)> {
        match cmd {
            Command::Send(cmd) => state.send(cmd).await,
            Command::Delete { message_id, by } => state
                .delete(message_id, &by)
                .await
                .map(|b| (b, Outcome::Done)),
            Command::Edit {
                message_id,
                by,
                content,
                body,
            } => state
                .edit(message_id, &by, content, body)
                .await
                .map(|(b, m)| (b, Outcome::Message(m))),
            Command::Redact {
                message_id,
                by,
                reason,
            } => state.redact(message_id, &by, reason).await,
            Command::ToggleAppreciation { message_id, by } => state
                .react(message_id, APPRECIATE, &by, None)
                .await
                .map(|(b, r)| {
                    let appreciation = Appreciation {
                        appreciated: r.reacted,
                        appreciation_count: r.reaction_counts.get(APPRECIATE).copied().unwrap_or(0),
                    };
                    (b, Outcome::Appreciation(appreciation))
                }),
            Command::React {
                message_id,
                key,
                by,
                set,
            } => state
                .react(message_id, &key, &by, Some(set))
                .await
                .map(|(b, r)| (b, Outcome::Reaction(r))),
            Command::Join { user, invite_code } => state
                .join(user, invite_code)
                .map(|(b, m)| (b, Outcome::Member(m))),
            Command::SetPower {
                user_id,
                power_level,
                by,
            } => state
                .set_power(user_id, power_level, &by)
                .map(|(b, m)| (b, Outcome::Member(m))),
            Command::RemoveMember { user_id, by } => state
                .remove_member(&user_id, &by)
                .map(|b| (b, Outcome::Done)),
            Command::SetPostingPermission { permission, by } => state
                .set_posting_permission(permission, &by)
                .map(|(b, sp)| (b, Outcome::Space(sp))),
            // Nothing to write: answered once what came before is durable.
            Command::Sync => Ok((state.batch(), Outcome::Done)),
            Command::MarkRead { user_id, target } => state
                .mark_read(&user_id, target)
                .await
                .map(|(b, r)| (b, Outcome::ReadState(r))),
        }
    }
}

impl SpaceState {
    fn touch(&mut self) {
        self.last_activity = Instant::now();
        self.passivating = false;
    }

    /// Sends a validated command's batch to the writer, or answers the caller with its error.
    fn dispatch(
        &mut self,
        result: Result<(CommitBatch, Outcome)>,
        port: RpcReplyPort<Result<Outcome>>,
        span: tracing::Span,
    ) {
        match result {
            Err(e) => {
                let _ = port.send(Err(e));
            }
            Ok((batch, outcome)) => {
                if let Some(last) = batch.events.last() {
                    // Signed: the OTel layer exports unsigned fields as strings.
                    span.record("seq", last.seq as i64);
                }
                let item = Sequenced {
                    batch,
                    reply: Reply { port, outcome },
                    span,
                };
                self.queued.fetch_add(1, Ordering::AcqRel);
                self.metrics.commit_queue.inc();
                let refused = match &self.writer_tx {
                    Some(tx) => tx.send(item).err().map(|e| e.0),
                    None => Some(item),
                };
                if let Some(item) = refused {
                    self.queued.fetch_sub(1, Ordering::AcqRel);
                    self.metrics.commit_queue.dec();
                    item.reply_unavailable();
                }
                self.evict_durable();
            }
        }
    }

    fn next_seq(&mut self) -> Seq {
        self.counters.head_seq += 1;
        self.counters.head_seq
    }

    fn event(&self, seq: Seq, kind: EventKind) -> SpaceEvent {
        SpaceEvent {
            space_id: self.space.space_id,
            seq,
            at: Timestamp::now(),
            kind,
        }
    }

    fn batch(&self) -> CommitBatch {
        CommitBatch {
            space_id: self.space.space_id,
            epoch: self.epoch,
            counters: self.counters,
            ..Default::default()
        }
    }

    /// The power level of a member. A non-member gets `NotAMember`, or `SpaceNotFound` for a
    /// private space, which stays invisible to non-members.
    fn member_power(&self, user_id: &str) -> Result<i32> {
        match self.power_of(user_id) {
            Some(p) => Ok(p),
            None if self.space.visibility == Visibility::Private => Err(EngineError::SpaceNotFound),
            None => Err(EngineError::NotAMember),
        }
    }

    fn power_of(&self, user_id: &str) -> Option<i32> {
        self.members.get(user_id).map(|m| m.power_level)
    }

    /// Checks a send against what only the space knows (membership, power, its idempotency key,
    /// the thread and quote targets), sequences it, and counts it in its thread root's
    /// `reply_count`. A key already used by the sender answers with its message instead.
    async fn send(&mut self, cmd: SendMessage) -> Result<(CommitBatch, Outcome)> {
        // On behalf: the caller must be an admin, and the sender a member (as stored).
        let (actor_id, sender) = match &cmd.actor {
            Some(actor) => {
                if self.member_power(&actor.user_id)? < POWER_ADMIN {
                    return Err(EngineError::Forbidden(
                        "Only admins may send on behalf of another member",
                    ));
                }
                let Some(m) = self.members.get(&cmd.sender.user_id) else {
                    return Err(EngineError::Invalid(
                        "invalid_as_user",
                        "The user to send as is not a member of this space".into(),
                    ));
                };
                (actor.user_id.clone(), m.user.clone())
            }
            None => (cmd.sender.user_id.clone(), cmd.sender.clone()),
        };
        let power = self.member_power(&sender.user_id)?;
        if self.space.posting_permission == PostingPermission::Admins && power < POWER_MODERATOR {
            return Err(EngineError::Forbidden(
                "Only admins and moderators may post in this space",
            ));
        }
        // The key decides, whatever the rest of the command says.
        if let Some(key) = &cmd.idempotency_key {
            if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
                return Err(EngineError::Invalid(
                    "invalid_idempotency_key",
                    format!("an idempotency key has 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes"),
                ));
            }
            let now = Timestamp::now();
            let known = match self.keys.get(&sender.user_id, key, now) {
                Some(id) => Some(id),
                // Every key that can still be valid is in memory: no store read.
                None if self.keys.complete(now) => None,
                None => {
                    self.store
                        .idempotent_send(self.space.space_id, &sender.user_id, key)
                        .await?
                }
            };
            if let Some(original) = known {
                return match self.message(original).await {
                    // Through the writer with nothing to write: answered once the original
                    // (maybe still in flight) is durable.
                    Ok(m) => Ok((self.batch(), Outcome::Replayed(m))),
                    Err(EngineError::MessageNotFound) => Err(EngineError::Conflict(
                        "idempotency_key_reused",
                        "This idempotency key was used for a message that has been deleted".into(),
                    )),
                    Err(e) => Err(e),
                };
            }
        }
        let msgtype = cmd
            .msgtype
            .clone()
            .unwrap_or_else(|| MSGTYPE_TEXT.to_owned());
        validate_rich_fields(
            &msgtype,
            cmd.body.as_ref(),
            cmd.metadata.as_ref(),
            &cmd.mentions,
            &cmd.media,
            cmd.gif.as_ref(),
        )?;
        let has_content = cmd.content.is_some()
            || cmd.media_url.is_some()
            || cmd.body.is_some()
            || cmd.gif.is_some()
            || !cmd.media.is_empty();
        if !has_content {
            return Err(EngineError::Invalid(
                "empty_message",
                "Message must have text, a body, a GIF or media".into(),
            ));
        }
        let parent = match cmd.parent_id {
            None => None,
            Some(id) => match self.message(id).await {
                Ok(p) if p.parent_id.is_none() => Some(p),
                Ok(_) => {
                    return Err(EngineError::Invalid(
                        "invalid_parent",
                        "parent_id is a reply: threads are one level deep".into(),
                    ));
                }
                Err(EngineError::MessageNotFound) => {
                    return Err(EngineError::Invalid(
                        "invalid_parent",
                        "parent_id is not a message of this space".into(),
                    ));
                }
                Err(e) => return Err(e),
            },
        };
        if let Some(id) = cmd.quoted_message_id {
            match self.message(id).await {
                Ok(_) => {}
                Err(EngineError::MessageNotFound) => {
                    return Err(EngineError::Invalid(
                        "invalid_quote",
                        "quoted_message_id is not a message of this space".into(),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        let sender_stats = self.contributor(&sender.user_id).await?;
        self.user_numbers(&sender.user_id).await?;
        let thread_author = parent.as_ref().map(|p| p.sender_id.clone());
        let seq = self.next_seq();
        self.counters.message_count += 1;
        let message = Message {
            message_id: cmd.message_id.unwrap_or_else(new_id),
            space_id: self.space.space_id,
            seq,
            sender_id: sender.user_id.clone(),
            actor_id,
            msgtype,
            word_count: cmd.content.as_deref().map_or(0, word_count),
            content: cmd.content,
            body: cmd.body,
            media_url: cmd.media_url,
            media_type: cmd.media_type,
            sender,
            parent_id: cmd.parent_id,
            quoted_message_id: cmd.quoted_message_id,
            mentions: cmd.mentions,
            metadata: cmd.metadata,
            gif: cmd.gif,
            media: cmd.media,
            created_at: Timestamp::now(),
            // New: nobody appreciates it yet (Space7 shows `likes: []` on a new message).
            likes: Some(Vec::new()),
            ..Default::default()
        };
        let mut batch = self.batch();
        if let Some(m) = self.refresh_profile(&message.sender) {
            batch.push_member(m);
        }
        batch
            .events
            .push(self.event(seq, EventKind::MessageCreated(message.clone())));
        batch.push_message_write(MessageWrite::Put {
            message: message.clone(),
            previous_appreciation: None,
        });
        self.cache.insert(
            message.message_id,
            Cached {
                // The actor never holds likes (see `message`): only the new message says [].
                message: Some(Message {
                    likes: None,
                    ..message.clone()
                }),
                last_write: seq,
            },
        );
        let mut stats = self.stats.clone();
        stats.count(&message, true);
        let mark = MessageMark::of(&message);
        stats.first_message.get_or_insert(mark);
        stats.last_message = Some(mark);
        let sender_stats = contributor_after(&sender_stats, None, Some(&message));
        // A contributor who gains never shrinks the leaderboard, so it is never rebuilt here.
        let rebuild = stats.place(&sender_stats);
        debug_assert!(!rebuild, "a gain never asks for a rebuild");
        if let Some(mut p) = parent {
            let before = p.clone();
            p.reply_count += 1;
            stats.recount(&before, &p);
            self.put_existing(&mut batch, p, seq);
        }
        self.install_stats(&mut batch, stats, sender_stats, 0);
        self.count_activity(&mut batch, message.created_at);
        self.notify_new_message(&mut batch, &message, thread_author.as_deref());
        self.count_created(&mut batch, &message);
        if let Some(key) = cmd.idempotency_key {
            let ttl = i64::try_from(self.config.idempotency_ttl.as_millis()).unwrap_or(i64::MAX);
            let expires_at = Timestamp(message.created_at.0.saturating_add(ttl));
            batch.keys.push(KeyWrite {
                sender_id: message.sender_id.clone(),
                key: key.clone(),
                message_id: message.message_id,
                expires_at,
            });
            let durable = self.durable_seq.load(Ordering::Acquire);
            self.keys.insert(
                message.sender_id.clone(),
                key,
                KeyEntry {
                    message_id: message.message_id,
                    seq,
                    expires_at,
                },
                durable,
            );
        }
        Ok((batch, Outcome::Message(message)))
    }

    /// Writes an existing message's new state (not its content's creation) in `batch`, as changed
    /// by the event `seq`, and caches it.
    fn put_existing(&mut self, batch: &mut CommitBatch, m: Message, seq: Seq) {
        batch.push_message_write(MessageWrite::Put {
            previous_appreciation: Some(m.appreciation_count),
            message: m.clone(),
        });
        self.cache.insert(
            m.message_id,
            Cached {
                message: Some(m),
                last_write: seq,
            },
        );
    }

    /// The current state of a message: from the cache (which holds every change not yet
    /// durable), else from the store (which then holds its latest state).
    async fn message(&mut self, message_id: MessageId) -> Result<Message> {
        if let Some(c) = self.cache.get(&message_id) {
            return c.message.clone().ok_or(EngineError::MessageNotFound);
        }
        let mut m = self
            .store
            .get_message(self.space.space_id, message_id)
            .await?
            .ok_or(EngineError::MessageNotFound)?;
        // The actor never holds a message's reactions (O(1) per reaction, whatever their number).
        m.likes = None;
        let last_write = self.durable_seq.load(Ordering::Acquire);
        self.cache.insert(
            message_id,
            Cached {
                message: Some(m.clone()),
                last_write,
            },
        );
        Ok(m)
    }

    async fn delete(&mut self, message_id: MessageId, by: &UserRef) -> Result<CommitBatch> {
        let m = self.message(message_id).await?;
        let is_moderator = self
            .power_of(&by.user_id)
            .is_some_and(|p| p >= POWER_MODERATOR);
        if m.sender_id != by.user_id && !is_moderator {
            return Err(EngineError::Forbidden(
                "Not authorised to delete this message",
            ));
        }
        // Read before sequencing: a failed read must not leave a gap in the seqs.
        let parent = match m.parent_id {
            // The thread root may be gone already; then there is nothing to count down.
            Some(parent_id) => match self.message(parent_id).await {
                Ok(p) => Some(p),
                Err(EngineError::MessageNotFound) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let (mut stats, sender_stats) = self.stats_after(Some(&m), None).await?;
        if stats.total_messages == 0 {
            stats.first_message = None;
            stats.last_message = None;
        } else {
            if stats.first_message.is_some_and(|f| f.seq == m.seq) {
                stats.first_message = self.neighbour(m.seq, Direction::Forward).await?;
            }
            if stats.last_message.is_some_and(|l| l.seq == m.seq) {
                stats.last_message = self.neighbour(m.seq, Direction::Backward).await?;
            }
        }
        if let Some(p) = &parent {
            let mut after = p.clone();
            after.reply_count = after.reply_count.saturating_sub(1);
            stats.recount(p, &after);
        }
        let seq = self.next_seq();
        self.counters.message_count = self.counters.message_count.saturating_sub(1);
        let mut batch = self.batch();
        batch.events.push(self.event(
            seq,
            EventKind::MessageDeleted(MessageDeleted {
                message_id,
                deleted_by: by.user_id.clone(),
                parent_id: m.parent_id,
            }),
        ));
        batch.push_message_write(MessageWrite::Delete {
            message_id,
            seq: m.seq,
            appreciation_count: m.appreciation_count,
        });
        self.cache.insert(
            message_id,
            Cached {
                message: None,
                last_write: seq,
            },
        );
        self.reactions.forget_message(message_id);
        if m.edited_at.is_some() {
            batch.push_history(HistoryWrite::Clear { message_id });
        }
        if let Some(mut p) = parent {
            p.reply_count = p.reply_count.saturating_sub(1);
            self.put_existing(&mut batch, p, seq);
        }
        // A deleted message's appreciations no longer count for its sender.
        self.install_stats(
            &mut batch,
            stats,
            sender_stats,
            u64::from(m.appreciation_count),
        );
        self.count_gone(&mut batch, &m, true).await?;
        Ok(batch)
    }

    /// Replaces a message's text and/or body, keeping the previous version in its history.
    async fn edit(
        &mut self,
        message_id: MessageId,
        by: &UserRef,
        content: Option<String>,
        body: Option<JsonObject>,
    ) -> Result<(CommitBatch, Message)> {
        if content.is_none() && body.is_none() {
            return Err(EngineError::Invalid(
                "empty_message",
                "An edit needs content or a body".into(),
            ));
        }
        let mut m = self.message(message_id).await?;
        if by.user_id != m.sender_id && by.user_id != m.actor_id {
            return Err(EngineError::Forbidden("Only the author may edit a message"));
        }
        if m.redacted {
            return Err(EngineError::Conflict(
                "message_redacted",
                "A redacted message cannot be edited".into(),
            ));
        }
        let now = Timestamp::now();
        let window = i64::try_from(self.config.edit_window.as_millis()).unwrap_or(i64::MAX);
        if now.0.saturating_sub(m.created_at.0) > window {
            return Err(EngineError::Conflict(
                "edit_window_closed",
                "The edit window of this message has closed".into(),
            ));
        }
        validate_rich_fields(&m.msgtype, body.as_ref(), None, &[], &[], None)?;
        let before = m.clone();
        if let Some(c) = content {
            m.word_count = word_count(&c);
            m.content = Some(c);
        }
        if let Some(b) = body {
            m.body = Some(b);
        }
        m.edited_at = Some(now);
        let (stats, sender_stats) = self.stats_after(Some(&before), Some(&m)).await?;
        let seq = self.next_seq();
        let previous = MessageVersion {
            seq,
            content: before.content,
            body: before.body,
            valid_from: before.edited_at.unwrap_or(before.created_at),
            replaced_at: now,
        };
        let mut batch = self.batch();
        self.install_stats(&mut batch, stats, sender_stats, 0);
        batch
            .events
            .push(self.event(seq, EventKind::MessageEdited(m.clone())));
        batch.push_history(HistoryWrite::Add {
            message_id,
            version: previous,
        });
        self.put_existing(&mut batch, m.clone(), seq);
        if self
            .activity
            .last_message
            .as_ref()
            .is_some_and(|l| l.message_id == message_id)
        {
            self.activity.last_message = Some(LastMessage::of(&m));
            batch.activity = Some(self.activity.clone());
        }
        Ok((batch, m))
    }

    /// Wipes a message's content, keeping its place; see [`super::SpaceHandle::redact`].
    async fn redact(
        &mut self,
        message_id: MessageId,
        by: &UserRef,
        reason: Option<String>,
    ) -> Result<(CommitBatch, Outcome)> {
        if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON_BYTES) {
            return Err(EngineError::Invalid(
                "invalid_reason",
                format!("a redaction reason has at most {MAX_REASON_BYTES} bytes"),
            ));
        }
        let mut m = self.message(message_id).await?;
        let is_moderator = self
            .power_of(&by.user_id)
            .is_some_and(|p| p >= POWER_MODERATOR);
        if m.sender_id != by.user_id && !is_moderator {
            return Err(EngineError::Forbidden(
                "Not authorised to redact this message",
            ));
        }
        if m.redacted {
            // Nothing changes; answered once what the caller sees is durable.
            return Ok((
                self.batch(),
                Outcome::Redacted(Redacted {
                    message: m,
                    wiped_media: Vec::new(),
                    wiped_media_url: None,
                }),
            ));
        }
        let before = m.clone();
        let wiped_media = std::mem::take(&mut m.media);
        let wiped_media_url = m.media_url.take();
        m.media_type = None;
        m.content = None;
        m.body = None;
        m.metadata = None;
        m.gif = None;
        m.mentions.clear();
        m.word_count = 0;
        m.redacted = true;
        m.redacted_by = Some(by.user_id.clone());
        m.redacted_reason = reason;
        let (stats, sender_stats) = self.stats_after(Some(&before), Some(&m)).await?;
        let seq = self.next_seq();
        let mut batch = self.batch();
        self.install_stats(&mut batch, stats, sender_stats, 0);
        batch
            .events
            .push(self.event(seq, EventKind::MessageRedacted(m.clone())));
        if m.edited_at.is_some() {
            batch.push_history(HistoryWrite::Clear { message_id });
        }
        self.put_existing(&mut batch, m.clone(), seq);
        self.count_gone(&mut batch, &m, false).await?;
        Ok((
            batch,
            Outcome::Redacted(Redacted {
                message: m,
                wiped_media,
                wiped_media_url,
            }),
        ))
    }

    /// Sets, removes (`set`) or toggles (`None`, Space7's appreciate) `by`'s reaction `key`.
    /// O(1): the message's counts change in the cache in place, the reaction's state comes from
    /// the reaction cache or one point read, and the batch carries one [`ReactionWrite`].
    async fn react(
        &mut self,
        message_id: MessageId,
        key: &str,
        by: &UserRef,
        set: Option<bool>,
    ) -> Result<(CommitBatch, Reaction)> {
        if !valid_reaction_key(key) {
            return Err(EngineError::Invalid(
                "invalid_reaction_key",
                format!(
                    "a reaction key is an emoji or a short name: 1 to {MAX_REACTION_KEY_BYTES} bytes, no spaces, control characters or /"
                ),
            ));
        }
        if self.space.visibility == Visibility::Private {
            self.member_power(&by.user_id)?;
        }
        // Cached from here on (a read on a miss), so the in-place update below finds it; no copy
        // of the message is made.
        if self.cache.get(&message_id).is_none() {
            self.message(message_id).await?;
        }
        let (message_seq, count, keys, author) =
            match self.cache.get(&message_id).and_then(|c| c.message.as_ref()) {
                Some(m) => (
                    m.seq,
                    m.reaction_counts.get(key).copied().unwrap_or(0),
                    m.reaction_counts.clone(),
                    m.sender_id.clone(),
                ),
                None => return Err(EngineError::MessageNotFound),
            };
        let state = match self.reactions.get(message_id, key, &by.user_id) {
            Some(state) => state,
            None => {
                let state = self
                    .store
                    .get_reaction(self.space.space_id, message_id, key, &by.user_id)
                    .await?;
                let durable = self.durable_seq.load(Ordering::Acquire);
                self.reactions
                    .insert(message_id, key, &by.user_id, state, durable);
                state
            }
        };
        let want = set.unwrap_or(state.is_none());
        if want == state.is_some() {
            // Already so: nothing to write; answered once what the caller saw is durable.
            return Ok((
                self.batch(),
                Reaction {
                    reacted: want,
                    changed: false,
                    reaction_counts: keys,
                },
            ));
        }
        if want && count == 0 && keys.len() >= MAX_REACTION_KEYS {
            return Err(EngineError::Conflict(
                "too_many_reactions",
                format!("a message has at most {MAX_REACTION_KEYS} different reactions"),
            ));
        }
        // disc: an appreciation changes its sender's appreciations received (read before
        // sequencing: a failed read must not leave a gap in the seqs).
        let mut sender_numbers = if key == APPRECIATE {
            Some(self.user_numbers(&author).await?)
        } else {
            None
        };
        // notif: decided (and read, if need be) before anything changes: a failed read fails the
        // command with nothing sequenced.
        let notify = if want && key == APPRECIATE {
            self.appreciation_notification(message_id, &author, by)
                .await?
        } else {
            None
        };
        let seq = self.next_seq();
        let count = if want {
            count + 1
        } else {
            count.saturating_sub(1)
        };
        let mut counts = keys;
        let mut appreciation_count = 0;
        self.cache.update(&message_id, seq, |m| {
            m.set_reaction_count(key, count);
            appreciation_count = m.appreciation_count;
        });
        if count > 0 {
            counts.insert(key.to_owned(), count);
        } else {
            counts.remove(key);
        }
        let added = want.then_some(seq);
        self.reactions
            .insert(message_id, key, &by.user_id, added, seq);
        let mut batch = self.batch();
        if let Some(u) = &mut sender_numbers {
            u.appreciations = if want {
                u.appreciations + 1
            } else {
                u.appreciations.saturating_sub(1)
            };
            self.user_numbers.insert(u.user_id.clone(), u.clone());
            batch.push_user_stats(u.clone());
        }
        batch.events.push(self.event(
            seq,
            EventKind::ReactionChanged(ReactionChanged {
                message_id,
                key: key.to_owned(),
                user_id: by.user_id.clone(),
                added: want,
                count,
                appreciation_count,
            }),
        ));
        batch.push_reaction(ReactionWrite {
            message_id,
            message_seq,
            key: key.to_owned(),
            user_id: by.user_id.clone(),
            added,
            count,
        });
        if let Some(n) = notify {
            if self.notified.len() >= RECENT_NOTIFIED {
                self.notified.clear();
            }
            self.notified.insert(n.notification_id);
            batch.push_notification(n);
        }
        Ok((
            batch,
            Reaction {
                reacted: want,
                changed: true,
                reaction_counts: counts,
            },
        ))
    }

    /// The notification `by`'s appreciation of `author`'s message creates, if any: never for
    /// one's own message, only for a current member, and only once per (message, appreciating
    /// user) — a point read of the store unless this incarnation created it (see
    /// [`crate::notifications`]).
    async fn appreciation_notification(
        &mut self,
        message_id: MessageId,
        author: &str,
        by: &UserRef,
    ) -> Result<Option<Notification>> {
        if author == by.user_id || !self.members.contains_key(author) {
            return Ok(None);
        }
        let id = notifications::appreciation_id(message_id, &by.user_id);
        if self.notified.contains(&id) || self.store.has_notification(author, id).await? {
            return Ok(None);
        }
        Ok(Some(Notification::new(
            id,
            NotificationKind::MessageAppreciated,
            author,
            by,
            self.space.space_id,
            &self.space.title,
            message_id,
            Timestamp::now(),
        )))
    }

    /// The notifications a new message causes: a `mention` for each member it mentions, a
    /// `reply` for the author of the thread it replies in (once per recipient: a mentioned
    /// thread author gets the mention), never for its sender or the user who sent it on their
    /// behalf.
    fn notify_new_message(
        &self,
        batch: &mut CommitBatch,
        message: &Message,
        thread_author: Option<&str>,
    ) {
        let mut notified: Vec<&str> = Vec::new();
        let mentions = message
            .mentions
            .iter()
            .map(|u| (u.as_str(), NotificationKind::Mention));
        let reply = thread_author.map(|u| (u, NotificationKind::Reply));
        for (user, kind) in mentions.chain(reply) {
            if user == message.sender_id
                || user == message.actor_id
                || notified.contains(&user)
                || !self.members.contains_key(user)
            {
                continue;
            }
            notified.push(user);
            batch.push_notification(Notification::new(
                notifications::message_id_for(message.message_id, user),
                kind,
                user,
                &message.sender,
                self.space.space_id,
                &self.space.title,
                message.message_id,
                message.created_at,
            ));
        }
    }

    fn join(
        &mut self,
        user: UserRef,
        invite_code: Option<String>,
    ) -> Result<(CommitBatch, Member)> {
        if self.members.contains_key(&user.user_id) {
            return Err(EngineError::AlreadyMember);
        }
        if self.space.visibility == Visibility::Private {
            // Invites arrive with their own issue; until then a private space is joined only by
            // being added, so any code is invalid. A non-member gets exactly what an unknown
            // space gives (404), so join cannot be used to learn which private spaces exist.
            let _ = invite_code;
            return Err(EngineError::SpaceNotFound);
        }
        let member = Member {
            user,
            power_level: POWER_MEMBER,
            joined_at: Timestamp::now(),
        };
        self.members
            .insert(member.user.user_id.clone(), member.clone());
        self.counters.member_count = self.members.len() as u64;
        let mut batch = self.batch();
        batch.push_member(member.clone());
        self.count_activity(&mut batch, member.joined_at);
        self.mark_at_head(&mut batch, &member.user.user_id);
        Ok((batch, member))
    }

    /// Sets a member's power level (adding the user when not a member); see
    /// [`super::SpaceHandle::set_power`] for the rule. Setting the level a member already has
    /// changes nothing (no event) and answers the member.
    fn set_power(
        &mut self,
        user_id: String,
        power_level: i32,
        by: &UserRef,
    ) -> Result<(CommitBatch, Member)> {
        if ![POWER_MEMBER, POWER_MODERATOR, POWER_ADMIN].contains(&power_level) {
            return Err(EngineError::Invalid(
                "invalid_power_level",
                format!(
                    "power_level is {POWER_MEMBER}, {POWER_MODERATOR} or {POWER_ADMIN}, not {power_level}"
                ),
            ));
        }
        let mine = self.member_power(&by.user_id)?;
        let current = self.members.get(&user_id).cloned();
        let theirs = current.as_ref().map_or(POWER_MEMBER, |m| m.power_level);
        if !may_set_power(mine, theirs, power_level) {
            return Err(EngineError::Forbidden(
                "Only a member with a higher power level than both the member's current and new level may change it",
            ));
        }
        let added = current.is_none();
        let member = match current {
            Some(m) if m.power_level == power_level => return Ok((self.batch(), m)),
            Some(m) => Member { power_level, ..m },
            // Added by another member: the profile is the user id until the user's own token
            // names them (see `SpaceHandle::set_power`).
            None => Member {
                user: UserRef {
                    user_id: user_id.clone(),
                    username: user_id.clone(),
                    profile_picture: String::new(),
                },
                power_level,
                joined_at: Timestamp::now(),
            },
        };
        let seq = self.next_seq();
        self.members.insert(user_id.clone(), member.clone());
        self.counters.member_count = self.members.len() as u64;
        let mut batch = self.batch();
        batch.events.push(self.event(
            seq,
            EventKind::MemberUpdated(MemberUpdated {
                user_id,
                power_level,
                by: by.user_id.clone(),
            }),
        ));
        batch.push_member(member.clone());
        if added {
            self.mark_at_head(&mut batch, &member.user.user_id);
        }
        Ok((batch, member))
    }

    /// A member added by `set_power` has their user id as username and no picture until the
    /// user's own token is seen: their first send stores the token's profile (a member write in
    /// the send's commit, not an event, as a join is not). Returns the member to write, if it
    /// changed. A send on behalf carries the stored profile, so it never changes it.
    fn refresh_profile(&mut self, seen: &UserRef) -> Option<Member> {
        let m = self.members.get_mut(&seen.user_id)?;
        let placeholder = m.user.username == m.user.user_id && m.user.profile_picture.is_empty();
        if !placeholder || m.user == *seen {
            return None;
        }
        m.user = seen.clone();
        Some(m.clone())
    }

    /// Removes a member or lets one leave; see [`super::SpaceHandle::remove_member`].
    fn remove_member(&mut self, user_id: &str, by: &UserRef) -> Result<CommitBatch> {
        let left = by.user_id == user_id;
        let target = if left {
            match self.power_of(user_id) {
                Some(p) => p,
                // Not a member: as for any non-member, a private space does not exist.
                None if self.space.visibility == Visibility::Private => {
                    return Err(EngineError::SpaceNotFound);
                }
                None => return Err(EngineError::MemberNotFound),
            }
        } else {
            let mine = self.member_power(&by.user_id)?;
            let Some(theirs) = self.power_of(user_id) else {
                return Err(EngineError::MemberNotFound);
            };
            if mine < POWER_MODERATOR || mine <= theirs {
                return Err(EngineError::Forbidden(
                    "Only a moderator or admin with a higher power level than the member may remove them",
                ));
            }
            theirs
        };
        if left && target >= POWER_ADMIN && self.members.len() > 1 {
            let admins = self
                .members
                .values()
                .filter(|m| m.power_level >= POWER_ADMIN)
                .count();
            if admins == 1 {
                return Err(EngineError::Conflict(
                    "last_admin",
                    "The last admin cannot leave while other members remain".into(),
                ));
            }
        }
        let seq = self.next_seq();
        self.members.remove(user_id);
        self.markers.remove(user_id);
        self.counters.member_count = self.members.len() as u64;
        let mut batch = self.batch();
        batch.events.push(self.event(
            seq,
            EventKind::MemberRemoved(MemberRemoved {
                user_id: user_id.to_owned(),
                by: by.user_id.clone(),
                left,
            }),
        ));
        batch.push_member_removal(user_id.to_owned());
        Ok(batch)
    }

    /// Sets who may post (power 100). Setting the current value changes nothing (no event).
    fn set_posting_permission(
        &mut self,
        permission: PostingPermission,
        by: &UserRef,
    ) -> Result<(CommitBatch, Space)> {
        if self.member_power(&by.user_id)? < POWER_ADMIN {
            return Err(EngineError::Forbidden(
                "Only admins may change the space's settings",
            ));
        }
        if self.space.posting_permission == permission {
            return Ok((self.batch(), self.space.clone()));
        }
        let seq = self.next_seq();
        self.space.posting_permission = permission;
        let mut batch = self.batch();
        batch.events.push(self.event(
            seq,
            EventKind::SpaceUpdated(SpaceUpdated {
                posting_permission: permission,
            }),
        ));
        batch.space = Some(self.space.clone());
        Ok((batch, self.space.clone()))
    }

    /// A contributor's numbers as of the last command sequenced: known to this incarnation, or
    /// read from the store (which then holds them, as nothing changed them since the claim).
    async fn contributor(&mut self, user_id: &str) -> Result<ContributorStats> {
        if let Some(c) = self.contributors.get(user_id) {
            return Ok(c.clone());
        }
        let c = self
            .store
            .get_contributor(self.space.space_id, user_id)
            .await?
            .unwrap_or_else(|| ContributorStats {
                user_id: user_id.to_owned(),
                ..Default::default()
            });
        self.contributors.insert(user_id.to_owned(), c.clone());
        Ok(c)
    }

    /// The stats after one message's state changes from `old` to `new` (the same sender's;
    /// `None`: created or deleted), but for the first/last marks, and the sender's new numbers.
    /// Reads what it needs, so it runs before the command is sequenced; a leaderboard that must
    /// be rebuilt (see [`crate::stats`]) costs a scan of the contributor rows here.
    async fn stats_after(
        &mut self,
        old: Option<&Message>,
        new: Option<&Message>,
    ) -> Result<(SpaceStats, ContributorStats)> {
        let sender = old.or(new).map_or("", |m| m.sender_id.as_str());
        let c = self.contributor(sender).await?;
        self.user_numbers(sender).await?;
        let c = contributor_after(&c, old, new);
        let mut stats = self.stats.clone();
        if let Some(o) = old {
            stats.count(o, false);
        }
        if let Some(n) = new {
            stats.count(n, true);
        }
        if stats.place(&c) {
            let mut all: HashMap<String, ContributorStats> = self
                .store
                .contributors(self.space.space_id)
                .await?
                .into_iter()
                .map(|c| (c.user_id.clone(), c))
                .collect();
            // What this incarnation changed may not be durable yet.
            for (u, known) in &self.contributors {
                all.insert(u.clone(), known.clone());
            }
            all.insert(c.user_id.clone(), c.clone());
            stats.rebuild_leaderboard(all.into_values());
        }
        Ok((stats, c))
    }

    /// Makes `stats` the space's (a sequenced command changed them) and writes them, with the
    /// contributor's new numbers, into the command's batch.
    /// disc: so do the contributor's numbers in the user index (their appreciations less
    /// `appreciations_lost`, those of a deleted message), and the first such batch of this
    /// incarnation carries the creator's "created" mark again (idempotent; it covers spaces
    /// created before the index).
    fn install_stats(
        &mut self,
        batch: &mut CommitBatch,
        stats: SpaceStats,
        c: ContributorStats,
        appreciations_lost: u64,
    ) {
        let mut u = self
            .user_numbers
            .get(&c.user_id)
            .cloned()
            .unwrap_or_default();
        u.user_id = c.user_id.clone();
        u.messages = c.messages;
        u.word_count = c.word_count;
        u.appreciations = u.appreciations.saturating_sub(appreciations_lost);
        self.user_numbers.insert(u.user_id.clone(), u.clone());
        batch.push_user_stats(u);
        if !self.creator_marked {
            self.creator_marked = true;
            batch.creator_mark = Some(self.space.creator.user_id.clone());
        }
        if self.index_pending {
            self.index_pending = false;
            batch.index_space = Some(self.space.clone());
        }
        self.contributors.insert(c.user_id.clone(), c.clone());
        self.stats = stats;
        batch.stats = Some(self.stats.clone());
        batch.push_contributor(c);
    }

    /// disc: a user's numbers in this space as of the last command sequenced: known to this
    /// incarnation, or read from the store (its user index; a sender missing there, whose
    /// space's index was built before their first message, starts from their contributor row
    /// with no appreciations).
    async fn user_numbers(&mut self, user_id: &str) -> Result<UserSpaceStats> {
        if let Some(u) = self.user_numbers.get(user_id) {
            return Ok(u.clone());
        }
        let u = match self
            .store
            .get_user_space_stats(user_id, self.space.space_id)
            .await?
        {
            Some(u) => u,
            None => {
                let c = self.contributor(user_id).await?;
                UserSpaceStats {
                    user_id: user_id.to_owned(),
                    messages: c.messages,
                    word_count: c.word_count,
                    appreciations: 0,
                }
            }
        };
        self.user_numbers.insert(user_id.to_owned(), u.clone());
        Ok(u)
    }

    /// disc: counts one unit of activity (a message created, a join) at `at` (this actor's
    /// clock) for a public space, and writes the hour's new count into the batch.
    fn count_activity(&mut self, batch: &mut CommitBatch, at: Timestamp) {
        if self.space.visibility != Visibility::Public {
            return;
        }
        let hour = hour_of(at);
        if hour != self.hourly.hour {
            // A new hour: nobody else writes this space's counts, so it starts at 0.
            self.hourly = ActivityCount { hour, count: 0 };
        }
        self.hourly.count += 1;
        batch.push_hourly_activity(self.hourly);
    }

    /// The existing message nearest to `seq` in `direction` (excluding it), as of the last
    /// command sequenced: the store's, skipping those deleted since, or one not yet durable (in
    /// the cache, which holds every change not yet durable). A keyset read: it costs the rows it
    /// passes, i.e. one plus the deletes still in flight.
    async fn neighbour(&self, seq: Seq, direction: Direction) -> Result<Option<MessageMark>> {
        let ahead = |a: Seq, b: Seq| match direction {
            Direction::Forward => a < b,
            Direction::Backward => a > b,
        };
        let mut best: Option<MessageMark> = None;
        let mut consider = |m: &Message| {
            if ahead(seq, m.seq) && best.is_none_or(|b| ahead(m.seq, b.seq)) {
                best = Some(MessageMark::of(m));
            }
        };
        for c in self.cache.entries() {
            if let Some(m) = &c.message {
                consider(m);
            }
        }
        const CHUNK: usize = 16;
        let (mut after, mut before) = match direction {
            Direction::Forward => (seq, self.counters.head_seq.saturating_add(1)),
            Direction::Backward => (0, seq),
        };
        'scan: loop {
            let page = self
                .store
                .scan_messages(self.space.space_id, after, before, direction, CHUNK)
                .await?;
            let n = page.len();
            for m in page {
                let deleted = self
                    .cache
                    .get(&m.message_id)
                    .is_some_and(|c| c.message.is_none());
                if !deleted {
                    consider(&m);
                    break 'scan;
                }
                match direction {
                    Direction::Forward => after = m.seq,
                    Direction::Backward => before = m.seq,
                }
            }
            if n < CHUNK {
                break;
            }
        }
        Ok(best)
    }

    // ---- unread (issue 12; see `crate::unread`) ----

    /// Most messages this incarnation remembers the top-level count of: at least the space's
    /// in-flight limit, so every message not yet durable is among them.
    fn created_cap(&self) -> usize {
        self.config.max_inflight_per_space.max(1024)
    }

    /// Counts a message just created (in `batch`): the space's top-level count and last
    /// message, the count as of its seq (for later marks), and its sender's marker, moved to it
    /// (posting marks the space read; a send on behalf moves the caller's, `actor_id`).
    fn count_created(&mut self, batch: &mut CommitBatch, m: &Message) {
        let top = m.parent_id.is_none();
        self.activity.created(m.seq, top);
        if top {
            self.activity.last_message = Some(LastMessage::of(m));
        }
        let count = self.activity.top_level;
        self.created.push_back((m.seq, count));
        while self.created.len() > self.created_cap() {
            self.created.pop_front();
        }
        batch.top_level_at.push((m.seq, count));
        let marker = ReadMarker { seq: m.seq, count };
        self.markers.insert(m.actor_id.clone(), marker);
        batch.push_marker(&m.actor_id, marker);
        batch.activity = Some(self.activity.clone());
    }

    /// A message deleted (`deleted`) or redacted (`m` as it is now): a deleted top-level message
    /// stops counting as unread, and the space's last message moves back when it was this one
    /// (a bounded keyset read backwards, see [`SpaceState::last_top_level_before`]).
    async fn count_gone(
        &mut self,
        batch: &mut CommitBatch,
        m: &Message,
        deleted: bool,
    ) -> Result<()> {
        if m.parent_id.is_some() {
            return Ok(());
        }
        if deleted {
            self.activity.deleted(m.seq);
        }
        if self
            .activity
            .last_message
            .as_ref()
            .is_some_and(|l| l.message_id == m.message_id)
        {
            self.activity.last_message = self.last_top_level_before(m.seq).await?;
        }
        batch.activity = Some(self.activity.clone());
        Ok(())
    }

    /// A new member's marker: at the head (nothing is unread on join).
    fn mark_at_head(&mut self, batch: &mut CommitBatch, user_id: &str) {
        let marker = ReadMarker {
            seq: self.counters.head_seq,
            count: self.activity.top_level,
        };
        self.markers.insert(user_id.to_owned(), marker);
        batch.push_marker(user_id, marker);
    }

    /// A member's marker as of the last command sequenced (never set: at 0).
    async fn marker(&mut self, user_id: &str) -> Result<ReadMarker> {
        if let Some(m) = self.markers.get(user_id) {
            return Ok(*m);
        }
        let m = self
            .store
            .read_marker(self.space.space_id, user_id)
            .await?
            .unwrap_or_default();
        self.markers.insert(user_id.to_owned(), m);
        Ok(m)
    }

    /// The top-level count as of `seq` (at most the head): in memory at or past the last
    /// message created or within the messages this incarnation created, else from the store
    /// (durable there: older than every message in flight).
    async fn top_level_at(&self, seq: Seq) -> Result<u64> {
        if seq >= self.activity.last_created {
            return Ok(self.activity.top_level);
        }
        if self.created.front().is_some_and(|&(first, _)| first <= seq) {
            let i = self.created.partition_point(|&(s, _)| s <= seq);
            return Ok(self.created[i - 1].1);
        }
        Ok(self
            .store
            .top_level_at(self.space.space_id, seq)
            .await?
            .unwrap_or(0))
    }

    /// Moves `user_id`'s marker forward to `target`; see [`super::SpaceHandle::mark_read`].
    async fn mark_read(
        &mut self,
        user_id: &str,
        target: ReadTarget,
    ) -> Result<(CommitBatch, ReadState)> {
        self.member_power(user_id)?;
        let seq = match target {
            ReadTarget::Seq(s) => s.min(self.counters.head_seq),
            ReadTarget::Message(id) => self.message(id).await?.seq,
        };
        let current = self.marker(user_id).await?;
        if seq <= current.seq {
            let state = ReadState {
                last_read_seq: current.seq,
                unread: self.activity.unread(Some(current)),
                changed: false,
            };
            // Nothing to write: answered once what came before is durable.
            return Ok((self.batch(), state));
        }
        // Never below the current count: a store's answer may err low (see `crate::unread`).
        let count = self.top_level_at(seq).await?.max(current.count);
        let marker = ReadMarker { seq, count };
        self.markers.insert(user_id.to_owned(), marker);
        let mut batch = self.batch();
        batch.push_marker(user_id, marker);
        Ok((
            batch,
            ReadState {
                last_read_seq: seq,
                unread: self.activity.unread(Some(marker)),
                changed: true,
            },
        ))
    }

    /// The newest top-level message before `seq` that exists and is not redacted, as of the
    /// last command sequenced: from the cache (every change not yet durable) and a keyset read
    /// of the store backwards, skipping replies, redacted and deleted messages. Bounded: after
    /// [`LAST_MESSAGE_LOOKBACK`] rows without one it answers `None` (the inbox then orders the
    /// space by its creation time), so a space whose recent history is all thread replies costs
    /// a bounded read, never a scan.
    async fn last_top_level_before(&self, seq: Seq) -> Result<Option<LastMessage>> {
        let eligible = |m: &Message| m.parent_id.is_none() && !m.redacted && m.seq < seq;
        let mut best: Option<&Message> = None;
        for c in self.cache.entries() {
            if let Some(m) = &c.message
                && eligible(m)
                && best.is_none_or(|b| m.seq > b.seq)
            {
                best = Some(m);
            }
        }
        let mut found = best.map(LastMessage::of);
        const CHUNK: usize = 32;
        let mut before = seq;
        let mut read = 0;
        'scan: while read < LAST_MESSAGE_LOOKBACK {
            let page = self
                .store
                .scan_messages(self.space.space_id, 0, before, Direction::Backward, CHUNK)
                .await?;
            let n = page.len();
            for stored in page {
                read += 1;
                before = stored.seq;
                if found.as_ref().is_some_and(|f| f.seq >= stored.seq) {
                    break 'scan;
                }
                // The cache has its latest state, if it changed since (or it is gone).
                let current = match self.cache.get(&stored.message_id) {
                    Some(c) => c.message.clone(),
                    None => Some(stored),
                };
                if let Some(m) = current
                    && eligible(&m)
                {
                    found = Some(LastMessage::of(&m));
                    break 'scan;
                }
            }
            if n < CHUNK {
                break;
            }
        }
        Ok(found)
    }

    /// Drops cached messages whose latest change is durable, once this cache or the node's
    /// caches as a whole are over their bounds (see `space/cache.rs`).
    fn evict_durable(&mut self) {
        let durable = self.durable_seq.load(Ordering::Acquire);
        self.cache.evict_durable(durable);
        self.reactions.evict_durable(durable);
    }

    /// Closes the writer's queue and waits until it has settled everything it accepted.
    async fn shutdown_writer(&mut self) {
        if let Some(t) = self.idle_timer.take() {
            t.abort();
        }
        self.writer_tx.take();
        if let Some(task) = self.writer_task.take() {
            let _ = task.await;
        }
        self.metrics.space_actors.dec();
    }
}

/// Store rows [`SpaceState::last_top_level_before`] reads at most.
const LAST_MESSAGE_LOOKBACK: usize = 256;

/// The power rule: a member at `mine` may move a member from `theirs` to `new` only when `mine`
/// is higher than both. So nobody changes their own level or an equal's, and nobody grants a
/// level as high as their own: an admin (100) may set 0 or 50, never 100, and an admin's level
/// is never changed (the creator stays 100); a moderator (50) may only set 0 for a member at 0.
pub(crate) fn may_set_power(mine: i32, theirs: i32, new: i32) -> bool {
    mine > theirs && mine > new
}

/// What the actor remembers of a recent send's idempotency key.
#[derive(Clone, Copy)]
struct KeyEntry {
    message_id: MessageId,
    /// The seq of the send.
    seq: Seq,
    expires_at: Timestamp,
}

/// Recent sends' idempotency keys, so a repeated key is answered without a store read. Bounded:
/// past [`RecentKeys::CAP`] entries the oldest are dropped once their send is durable (the store
/// then answers for them); entries not yet durable are bounded by the space's in-flight limit.
///
/// Only the space's actor writes its keys, so this holds every key written since the actor
/// started, except those it dropped. A miss is therefore final, with no store read, once every
/// key written before the start and every dropped one has expired ([`RecentKeys::complete`]);
/// before that the store is asked. Keys written by another node carry that node's clock, so the
/// start's horizon has a margin for clock skew ([`RecentKeys::SKEW_MARGIN`]).
struct RecentKeys {
    map: HashMap<(String, String), KeyEntry>,
    /// Insertion order, with each insertion's seq (an entry replaced since leaves a stale one).
    order: std::collections::VecDeque<(Seq, (String, String))>,
    /// Until when a key not in `map` may still be valid in the store.
    store_horizon: Timestamp,
}

impl RecentKeys {
    const CAP: usize = 4096;
    /// The clock skew between nodes this tolerates, in milliseconds.
    const SKEW_MARGIN: i64 = 60_000;

    /// Keys of an actor started at `start` with keys living `ttl`.
    fn new(start: Timestamp, ttl: std::time::Duration) -> Self {
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        RecentKeys {
            map: HashMap::new(),
            order: std::collections::VecDeque::new(),
            store_horizon: Timestamp(
                start
                    .0
                    .saturating_add(ttl)
                    .saturating_add(Self::SKEW_MARGIN),
            ),
        }
    }

    /// Whether every key that can still be valid at `now` is in memory.
    fn complete(&self, now: Timestamp) -> bool {
        now > self.store_horizon
    }

    /// The message of a key that has not expired at `now`.
    fn get(&self, sender: &str, key: &str, now: Timestamp) -> Option<MessageId> {
        self.map
            .get(&(sender.to_owned(), key.to_owned()))
            .filter(|e| e.expires_at > now)
            .map(|e| e.message_id)
    }

    fn insert(&mut self, sender: String, key: String, e: KeyEntry, durable: Seq) {
        let k = (sender, key);
        self.order.push_back((e.seq, k.clone()));
        self.map.insert(k, e);
        while self.map.len() > Self::CAP {
            let Some((seq, k)) = self.order.pop_front() else {
                break;
            };
            match self.map.get(&k) {
                Some(cur) if cur.seq == seq => {
                    if seq > durable {
                        // Not durable yet: the store could not answer for it. Keep it.
                        self.order.push_front((seq, k));
                        break;
                    }
                    if let Some(e) = self.map.remove(&k) {
                        // The store answers for it from now on, until it expires.
                        self.store_horizon = self.store_horizon.max(e.expires_at);
                    }
                }
                // Replaced by a later insertion: a stale position.
                _ => {}
            }
        }
        // Stale positions never outnumber live ones by much.
        if self.order.len() > 2 * Self::CAP.max(self.map.len()) {
            let map = &self.map;
            self.order
                .retain(|(seq, k)| map.get(k).is_some_and(|e| e.seq == *seq));
        }
    }
}

impl Sequenced {
    fn reply_unavailable(self) {
        self.reply.fail(&EngineError::SpaceUnavailable);
    }
}

impl Drop for SpaceState {
    fn drop(&mut self) {
        // Failed actors skip post_stop; stop the timer and account for the actor here too.
        if let Some(t) = self.idle_timer.take() {
            t.abort();
            self.metrics.space_actors.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: Seq, expires_at: i64) -> KeyEntry {
        KeyEntry {
            message_id: new_id(),
            seq,
            expires_at: Timestamp(expires_at),
        }
    }

    #[test]
    fn the_power_rule_needs_a_level_above_both_the_current_and_the_new_one() {
        let levels = [POWER_MEMBER, POWER_MODERATOR, POWER_ADMIN];
        let mut allowed = Vec::new();
        for mine in levels {
            for theirs in levels {
                for new in levels {
                    if may_set_power(mine, theirs, new) {
                        allowed.push((mine, theirs, new));
                    }
                }
            }
        }
        assert_eq!(
            allowed,
            vec![
                (50, 0, 0),
                (100, 0, 0),
                (100, 0, 50),
                (100, 50, 0),
                (100, 50, 50),
            ],
            "no grant of one's own level, no change of an equal's or a higher level"
        );
    }

    #[test]
    fn recent_keys_are_final_only_once_older_keys_cannot_be_valid() {
        let ttl = std::time::Duration::from_millis(1_000);
        let mut keys = RecentKeys::new(Timestamp(10_000), ttl);
        let horizon = 10_000 + 1_000 + RecentKeys::SKEW_MARGIN;
        assert!(
            !keys.complete(Timestamp(horizon)),
            "keys from before the start may be valid"
        );
        assert!(keys.complete(Timestamp(horizon + 1)));

        let e = entry(1, horizon + 500);
        keys.insert("u".into(), "k".into(), e, 0);
        assert_eq!(
            keys.get("u", "k", Timestamp(horizon + 1)),
            Some(e.message_id)
        );
        assert_eq!(
            keys.get("u", "k", Timestamp(horizon + 500)),
            None,
            "expired"
        );
        assert_eq!(
            keys.get("v", "k", Timestamp(horizon + 1)),
            None,
            "per sender"
        );

        // Past the bound, durable entries are dropped, and the store is asked again until they
        // expire; entries not yet durable stay.
        for i in 0..RecentKeys::CAP as u64 {
            keys.insert(
                "u".into(),
                format!("k{i}"),
                entry(2 + i, horizon + 10_000),
                1,
            );
        }
        assert_eq!(
            keys.map.len(),
            RecentKeys::CAP,
            "only the durable first entry dropped"
        );
        assert_eq!(keys.get("u", "k", Timestamp(horizon + 1)), None);
        assert!(
            !keys.complete(Timestamp(horizon + 1)),
            "the dropped key may be in the store"
        );
        assert!(keys.complete(Timestamp(horizon + 501)));
        keys.insert("u".into(), "last".into(), entry(9_999, horizon + 10_000), 1);
        assert_eq!(
            keys.map.len(),
            RecentKeys::CAP + 1,
            "entries not yet durable are never dropped"
        );
    }
}
