//! Presence (issue 12): who is watching a space, and how available they are.
//!
//! # The model
//! - **A session's status** ([`SessionPresence`]): `online` when it connects; the client may choose
//!   `online`, `idle`, `busy` or `offline` ("appear offline"). Two clocks move it on their own:
//!   - **offline after [`PresenceConfig::timeout`]** (default 60 s: two missed 30 s heartbeats, as
//!     ScaiWave) without any client frame. Every frame is a heartbeat; `{"type":"heartbeat"}`
//!     exists for clients with nothing to say. The session stays connected, and its next frame
//!     brings it back. (Socket.IO sessions never time out here: Engine.IO's own ping/pong is
//!     their heartbeat, and a socket whose pongs stop is closed by the transport, which removes
//!     its presence at once.)
//!   - **idle after [`PresenceConfig::idle_after`]** (default 5 min) without activity: a frame
//!     other than a heartbeat or a presence choice. The next activity makes it online again,
//!     unless the client chose `busy` or `offline` (a chosen `idle` ends with the next activity,
//!     as the automatic one does).
//!
//!   The status is a pure function of the choice and the two instants ([`SessionPresence::status`]),
//!   so a frame costs two stores and no timer; the session's one timer wakes at
//!   [`SessionPresence::next_change`] and re-arms if frames moved it.
//! - **A user's status in a space** ([`aggregate`]) is taken over that user's sessions *subscribed
//!   to the space*: `online` if any is online, else `busy`, else `idle`; offline sessions do not
//!   count, and a user with none left is `offline` (and not listed).
//! - **Presence is of subscribers, not members**, as in Centrifugo: only sessions that joined the
//!   space are in it. Its cost is O(watchers), not O(members): a 100,000-member space with 50
//!   sessions watching holds 50 entries and sends events to 50 sessions.
//!
//! # Events and counts
//! While a space has at most [`PresenceConfig::max_subscribers`] subscribers, every change of a
//! user's status in it is one [`HubItem::Presence`] item (`{"type":"presence","space_id","user_id",
//! "username","status"}`), published once and shared (one `Arc`, rendered once per protocol) by
//! every local subscriber. Above it, changes publish nothing; instead every
//! [`PresenceConfig::count_interval`] the space gets one `{"type":"presence_count","space_id",
//! "online"}` item. So in a large space a status change costs O(1) and nothing per subscriber, and
//! the count costs one shared frame per subscriber per interval.
//!
//! # Guarantees
//! - Only sessions that joined a space (so passed its read rule) are ever in its presence; a
//!   session's entries go with its subscriptions (leave, removal, close), at once.
//! - A change event is published only when the user's aggregated status (over every node's
//!   sessions, as this node knows them) really changed.
//! - In a cluster, another node's entries never outlive its last message by more than
//!   [`PresenceConfig::expire_after`] + [`EXPIRY_CHECK`], and an older message of a node never
//!   overrides a newer one (see "Cluster").
//! - Best effort, like typing: not stored, not sequenced; a lagging subscriber is a slow consumer
//!   by the hub's rule.
//!
//! # Cluster
//! Each node is the authority for its own sessions; the nodes following a space (those with local
//! subscribers of it, [`Presence::watch`]) merge what the others say into their view, serve
//! `GET …/presence` from it and emit `presence` / `presence_count` to their local sessions from it.
//! - **Changes**: when a user's status over this node's sessions changes, the node publishes a
//!   `delta` ([`PresenceWire`]) on `spacecast.pr.<space>`.
//! - **Snapshots**: every [`PresenceConfig::snapshot_interval`] (15 s) a node publishes, for every
//!   space it follows, the full list of its users not offline there and its local subscriber
//!   count (in parts of [`SNAPSHOT_PART`] users); a snapshot replaces what that node said before
//!   (users it does not list are gone from it), so a lost delta is repaired within 15 s.
//! - **Order**: a node's messages carry an increasing `seq` (per process `instance`); an older
//!   message never overrides a newer one, whichever subject it came by, and a new `instance`
//!   (the node restarted) voids the old one's entries.
//! - **Expiry**: another node's entries expire [`PresenceConfig::expire_after`] (45 s, three
//!   snapshots) after its last message, checked every [`EXPIRY_CHECK`] (1 s): **a node that dies
//!   (or loses the bus) has its users offline on the other nodes within 46 s**.
//! - **A user's status in a space** is the best over every node's sessions (online > busy >
//!   idle), each node's part being its own aggregate.
//! - **Threshold**: the space's subscribers over the cluster are estimated as this node's plus the
//!   count each other node last reported (in every delta and snapshot); above
//!   `--presence-max-subscribers` every node sends counts instead of events. A change then costs
//!   one bus message, and nothing per subscriber.
//! - **A node asked about a space it does not follow** (`GET …/presence` with no local
//!   subscriber) publishes a request on `spacecast.prq.<space>`; every node following the space
//!   answers with its snapshot, and the page is built from the answers that arrive within
//!   [`GATHER_WINDOW`] (250 ms): each user's best status over the nodes. A node that follows the
//!   space always answers from its merged view (no request). A node that starts following a space
//!   gathers the same way, in the background, for its first view (until then, and if an answer is
//!   lost, the next snapshots fill it in within 15 s).
//! - On the single-node [`crate::bus::LocalBus`] nothing is published and the view is local.
//!
//! Best effort, like the rest of presence: while the bus is down a node neither hears nor tells;
//! when it is back, the next snapshots (15 s) repair both sides.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use spacecast_observability::Metrics;
use tokio::time::Instant;

use crate::bus::{Bus, Serving};
use crate::error::Result;
use crate::event::Renderings;
use crate::hub::{Hub, HubItem};
use crate::model::SpaceId;

/// A status, of a session or of a user in a space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Online,
    Idle,
    Busy,
    Offline,
}

impl Status {
    /// How much a session with this status counts for its user: online > busy > idle > offline.
    pub fn rank(self) -> u8 {
        match self {
            Status::Online => 3,
            Status::Busy => 2,
            Status::Idle => 1,
            Status::Offline => 0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Idle => "idle",
            Status::Busy => "busy",
            Status::Offline => "offline",
        }
    }

    /// Parses a wire status (`online`, `idle`, `busy`, `offline`).
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "online" => Status::Online,
            "idle" => Status::Idle,
            "busy" => Status::Busy,
            "offline" => Status::Offline,
            _ => return None,
        })
    }
}

/// The presence settings (the edge's `--presence-*` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresenceConfig {
    /// A session with no client frame for this long is offline (`--presence-timeout`, 60 s).
    pub timeout: Duration,
    /// A session with no activity for this long is idle (`--presence-idle-after`, 5 min).
    pub idle_after: Duration,
    /// Above this many subscribers, a space gets counts instead of per-user events
    /// (`--presence-max-subscribers`, 1,000).
    pub max_subscribers: usize,
    /// How often a space above the threshold gets its count (`--presence-count-interval`, 10 s).
    pub count_interval: Duration,
    /// Cluster: how often a node publishes the full snapshot of its presence in each space it
    /// follows (15 s).
    pub snapshot_interval: Duration,
    /// Cluster: another node's entries expire this long after its last message (45 s, three
    /// snapshots): a dead node's users are offline on the others within this bound (plus
    /// [`EXPIRY_CHECK`]).
    pub expire_after: Duration,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            timeout: Duration::from_secs(60),
            idle_after: Duration::from_secs(5 * 60),
            max_subscribers: 1_000,
            count_interval: Duration::from_secs(10),
            snapshot_interval: Duration::from_secs(15),
            expire_after: Duration::from_secs(45),
        }
    }
}

/// One session's presence (see the module doc): the client's choice and the instants of its last
/// frame and last activity.
#[derive(Clone, Debug)]
pub struct SessionPresence {
    chosen: Status,
    last_frame: Instant,
    last_activity: Instant,
    /// Whether a silent session goes offline (false when the transport has its own heartbeat).
    times_out: bool,
}

impl SessionPresence {
    /// A session that just connected: online.
    pub fn new(now: Instant, times_out: bool) -> Self {
        SessionPresence {
            chosen: Status::Online,
            last_frame: now,
            last_activity: now,
            times_out,
        }
    }

    /// A client frame arrived; `activity` unless it was a heartbeat or a presence choice.
    pub fn frame(&mut self, now: Instant, activity: bool) {
        self.last_frame = now;
        if activity {
            self.last_activity = now;
            if self.chosen == Status::Idle {
                self.chosen = Status::Online;
            }
        }
    }

    /// The client chose `status` (the frame itself is a heartbeat; choosing `online` also counts
    /// as activity: the user says they are here).
    pub fn choose(&mut self, now: Instant, status: Status) {
        self.frame(now, false);
        self.chosen = status;
        if status == Status::Online {
            self.last_activity = now;
        }
    }

    /// The status at `now`.
    pub fn status(&self, now: Instant, cfg: &PresenceConfig) -> Status {
        if self.chosen == Status::Offline
            || (self.times_out && now.duration_since(self.last_frame) >= cfg.timeout)
        {
            return Status::Offline;
        }
        match self.chosen {
            Status::Online if now.duration_since(self.last_activity) >= cfg.idle_after => {
                Status::Idle
            }
            s => s,
        }
    }

    /// When [`SessionPresence::status`] may next change by itself (no frame before): the
    /// earlier of the timeout and the idle deadline still ahead; `None` if neither is.
    pub fn next_change(&self, now: Instant, cfg: &PresenceConfig) -> Option<Instant> {
        if self.status(now, cfg) == Status::Offline {
            return None;
        }
        let timeout = self
            .times_out
            .then(|| self.last_frame + cfg.timeout)
            .filter(|t| *t > now);
        let idle = (self.chosen == Status::Online)
            .then(|| self.last_activity + cfg.idle_after)
            .filter(|t| *t > now);
        match (timeout, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A user's status over their sessions' statuses: online if any is online, else busy, else idle;
/// offline sessions do not count; offline if none is left.
pub fn aggregate(sessions: impl IntoIterator<Item = Status>) -> Status {
    sessions
        .into_iter()
        .max_by_key(|s| s.rank())
        .unwrap_or(Status::Offline)
}

/// A presence frame for a space's subscribers, shared by all of them.
#[derive(Debug)]
pub struct PresenceItem {
    pub frame: PresenceFrame,
    /// Its renderings, one per protocol, each made once.
    pub rendered: Renderings,
}

/// What a [`PresenceItem`] says. Its JSON is the native frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PresenceFrame {
    /// A user's status in the space changed: `{"type":"presence","space_id","user_id","username",
    /// "status"}` (`offline` when their last session left or timed out).
    Presence {
        #[schema(value_type = String, format = Uuid)]
        space_id: SpaceId,
        user_id: String,
        username: String,
        status: Status,
    },
    /// Users not offline in a space above `--presence-max-subscribers`, sent every
    /// `--presence-count-interval` instead of per-user events.
    PresenceCount {
        #[schema(value_type = String, format = Uuid)]
        space_id: SpaceId,
        online: u64,
    },
}

impl PresenceFrame {
    /// The frame's `type`, also the Socket.IO event name.
    pub fn name(&self) -> &'static str {
        match self {
            PresenceFrame::Presence { .. } => "presence",
            PresenceFrame::PresenceCount { .. } => "presence_count",
        }
    }

    /// The Socket.IO payload: the frame without its `type`.
    pub fn socketio_payload(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(obj) = v.as_object_mut() {
            obj.remove("type");
        }
        v
    }
}

/// A user listed in a space's presence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PresenceEntry {
    pub user_id: String,
    pub username: String,
    /// Never `offline`: offline users are not listed.
    pub status: Status,
}

/// One page of a space's presence ([`Presence::list`]).
#[derive(Clone, Debug, PartialEq)]
pub struct PresencePage {
    /// Ordered by `user_id`.
    pub data: Vec<PresenceEntry>,
    /// Users not offline in the space (all pages).
    pub online: u64,
    /// The last `user_id` of this page when more may follow.
    pub next: Option<String>,
}

/// What one node tells the others about its presence in a space: on `spacecast.pr.<space>` (its
/// changes and its periodic snapshots) and as the answers to `spacecast.prq.<space>` (see the
/// module doc, "Cluster"). Version-tolerant: unknown fields are ignored, missing optional fields
/// take their defaults, and a message of an unknown `kind` is skipped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PresenceWire {
    /// Format version (1 today).
    #[serde(default)]
    pub v: u32,
    /// The sending node.
    pub node: String,
    /// The sending node's process (random at its start): a restarted node's old entries go.
    #[serde(default)]
    pub instance: u64,
    /// Increasing per node instance: an older message never overrides a newer one.
    pub seq: u64,
    pub kind: WireKind,
    /// The node's local subscribers of the space (for the cluster-wide threshold estimate).
    #[serde(default)]
    pub subscribers: u64,
    /// `delta`: the users whose status on that node changed (`offline`: gone from it);
    /// `snapshot`: one part of the node's users that are not offline there.
    #[serde(default)]
    pub users: Vec<WireUser>,
    /// `snapshot`: the last part (the node's users in no part of it are gone).
    #[serde(default)]
    pub last: bool,
}

/// The kind of a [`PresenceWire`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireKind {
    Delta,
    Snapshot,
    /// A kind from a newer version: skipped.
    #[serde(other)]
    Unknown,
}

/// One user in a [`PresenceWire`]: their status over the sending node's sessions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireUser {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub status: Status,
}

/// The current version of [`PresenceWire`].
pub const WIRE_VERSION: u32 = 1;
/// Users per snapshot message: a node's snapshot of more goes in several parts, so a message stays
/// far below NATS's default 1 MB payload limit (a user is about 100-200 bytes).
pub const SNAPSHOT_PART: usize = 1_000;
/// How long a node that does not watch a space gathers the other nodes' snapshots to answer
/// `GET …/presence` (and how long a node that starts watching a space gathers its first view).
pub const GATHER_WINDOW: Duration = Duration::from_millis(250);

/// One user in one space: this node's subscribed sessions' statuses, and the other nodes'.
#[derive(Debug)]
struct UserPresence {
    username: String,
    sessions: HashMap<u64, Status>,
    /// By node: the user's status over that node's sessions, and the `seq` of the message that
    /// said so.
    remote: HashMap<String, (Status, u64)>,
}

impl UserPresence {
    fn new(username: &str) -> Self {
        UserPresence {
            username: username.to_owned(),
            sessions: HashMap::new(),
            remote: HashMap::new(),
        }
    }

    /// Over this node's sessions.
    fn local(&self) -> Status {
        aggregate(self.sessions.values().copied())
    }

    /// Over every node's sessions.
    fn status(&self) -> Status {
        aggregate(
            self.sessions
                .values()
                .copied()
                .chain(self.remote.values().map(|(s, _)| *s)),
        )
    }

    fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.remote.is_empty()
    }
}

/// What this node knows of another node in one space.
#[derive(Debug)]
struct RemoteNode {
    instance: u64,
    /// The newest message's seq.
    seq: u64,
    /// The newest complete snapshot's seq.
    snapshot_seq: u64,
    /// Its local subscribers of the space, as last reported.
    subscribers: u64,
    /// When its last message arrived: its entries expire [`PresenceConfig::expire_after`] later.
    last_seen: Instant,
}

#[derive(Default)]
struct SpacePresence {
    users: BTreeMap<String, UserPresence>,
    /// Users whose status over every node is not offline.
    online: u64,
    /// This node's session entries in the space.
    sessions: usize,
    /// This node's subscriptions following the space ([`Presence::watch`]).
    watchers: usize,
    /// The other nodes that told us about the space.
    nodes: HashMap<String, RemoteNode>,
    /// The bus subscription (cluster), made by the first watcher; dropped with the space.
    receiving: Arc<tokio::sync::OnceCell<Serving>>,
}

impl SpacePresence {
    fn unused(&self) -> bool {
        self.sessions == 0 && self.watchers == 0
    }
}

/// A user's status in a space changed: (user id, username, status).
type Change = (String, String, Status);

struct Inner {
    spaces: Mutex<HashMap<SpaceId, SpacePresence>>,
    hub: Hub,
    config: PresenceConfig,
    metrics: Metrics,
    bus: Arc<dyn Bus>,
    /// This process's instance ([`PresenceWire::instance`]).
    instance: u64,
    /// The next [`PresenceWire::seq`].
    seq: AtomicU64,
}

/// This node's presence by space, merged with the other nodes' (cluster), and the publishing of
/// changes and counts (see the module doc). Cheap to clone.
#[derive(Clone)]
pub struct Presence(Arc<Inner>);

impl Presence {
    pub fn new(hub: Hub, config: PresenceConfig, metrics: Metrics, bus: Arc<dyn Bus>) -> Self {
        let instance = crate::model::new_id().as_u64_pair().1;
        Presence(Arc::new(Inner {
            spaces: Mutex::default(),
            hub,
            config,
            metrics,
            bus,
            instance,
            seq: AtomicU64::new(1),
        }))
    }

    pub fn config(&self) -> &PresenceConfig {
        &self.0.config
    }

    /// Starts following `space_id` for one local subscription (pair with
    /// [`Presence::unwatch`]). In a cluster, the first one subscribes to the other nodes'
    /// presence in the space, and returns once that subscription is registered (a change
    /// published after this returns is received); it also gathers their current snapshots in
    /// the background (for [`GATHER_WINDOW`]).
    ///
    /// # Errors
    /// `BusUnavailable` (the watch is not counted then).
    pub async fn watch(&self, space_id: SpaceId) -> Result<()> {
        let receiving = {
            let mut spaces = self.lock();
            let space = spaces.entry(space_id).or_default();
            space.watchers += 1;
            space.receiving.clone()
        };
        if !self.0.bus.clustered() {
            return Ok(());
        }
        let made = receiving
            .get_or_try_init(|| async {
                let serving = self.0.bus.watch_presence(space_id, self.clone()).await?;
                let this = self.clone();
                tokio::spawn(async move {
                    if let Ok(answers) = this.0.bus.gather_presence(space_id, GATHER_WINDOW).await {
                        for w in answers {
                            this.received(space_id, w);
                        }
                    }
                });
                Ok::<_, crate::error::EngineError>(serving)
            })
            .await;
        if let Err(e) = made {
            self.unwatch(space_id);
            return Err(e);
        }
        Ok(())
    }

    /// One local subscription of the space ended.
    pub fn unwatch(&self, space_id: SpaceId) {
        let mut spaces = self.lock();
        if let Some(space) = spaces.get_mut(&space_id) {
            space.watchers = space.watchers.saturating_sub(1);
            if space.unused() {
                // Drops the bus subscription (once no watcher still awaits it) and the other
                // nodes' entries, which would go stale.
                spaces.remove(&space_id);
            }
        }
    }

    /// Session `session` of `user_id` (subscribed to `space_id`) now has `status`; publishes the
    /// user's change in the space, if their aggregated status changed.
    pub fn set(
        &self,
        space_id: SpaceId,
        session: u64,
        user_id: &str,
        username: &str,
        status: Status,
    ) {
        // Events are published under the lock, so two changes of one user never cross on the hub.
        let mut spaces = self.lock();
        {
            let space = spaces.entry(space_id).or_default();
            let mut added = false;
            let mut local = None;
            let change = Self::update(space, user_id, Some(username), |u| {
                let before = u.local();
                added = u.sessions.insert(session, status).is_none();
                let after = u.local();
                if before != after {
                    local = Some(after);
                }
            });
            if added {
                space.sessions += 1;
                self.0.metrics.presence_entries.inc();
            }
            if let Some(status) = local {
                self.delta(space_id, user_id, username, status);
            }
            let total = self.subscribers(space_id, space);
            self.emit(space_id, total, Vec::from_iter(change));
        }
    }

    /// Session `session` of `user_id` left `space_id` (leave, removal, close): its entry goes at
    /// once, with the user's change if it was their last session that counted.
    pub fn remove(&self, space_id: SpaceId, session: u64, user_id: &str) {
        let mut spaces = self.lock();
        {
            let Some(space) = spaces.get_mut(&space_id) else {
                return;
            };
            let mut removed = false;
            let mut local = None;
            let change = Self::update(space, user_id, None, |u| {
                let before = u.local();
                removed = u.sessions.remove(&session).is_some();
                let after = u.local();
                if before != after {
                    local = Some((after, u.username.clone()));
                }
            });
            if removed {
                space.sessions -= 1;
                self.0.metrics.presence_entries.dec();
            }
            if let Some((status, username)) = local {
                self.delta(space_id, user_id, &username, status);
            }
            let total = self.subscribers(space_id, space);
            if space.unused() {
                spaces.remove(&space_id);
            }
            self.emit(space_id, total, Vec::from_iter(change));
        }
    }

    /// Applies `f` to `user_id`'s entry (made first if `name` is given), keeps the space's count,
    /// drops an entry left empty; the user's change, if their status over every node changed.
    fn update(
        space: &mut SpacePresence,
        user_id: &str,
        name: Option<&str>,
        f: impl FnOnce(&mut UserPresence),
    ) -> Option<Change> {
        let user = match name {
            Some(name) => {
                let u = space
                    .users
                    .entry(user_id.to_owned())
                    .or_insert_with(|| UserPresence::new(name));
                if !name.is_empty() && u.username != name {
                    name.clone_into(&mut u.username);
                }
                u
            }
            None => space.users.get_mut(user_id)?,
        };
        let before = user.status();
        f(user);
        let after = user.status();
        let change = (before != after).then(|| (user_id.to_owned(), user.username.clone(), after));
        if user.is_empty() {
            space.users.remove(user_id);
        }
        match (before == Status::Offline, after == Status::Offline) {
            (true, false) => space.online += 1,
            (false, true) => space.online = space.online.saturating_sub(1),
            _ => {}
        }
        change
    }

    /// The space's subscribers over the cluster: this node's, plus what the other nodes last
    /// reported.
    fn subscribers(&self, space_id: SpaceId, space: &SpacePresence) -> usize {
        self.0.hub.subscriber_count(space_id)
            + space
                .nodes
                .values()
                .map(|n| n.subscribers as usize)
                .sum::<usize>()
    }

    fn next_seq(&self) -> u64 {
        self.0.seq.fetch_add(1, Ordering::Relaxed)
    }

    fn wire(&self, space_id: SpaceId, kind: WireKind, users: Vec<WireUser>) -> PresenceWire {
        PresenceWire {
            v: WIRE_VERSION,
            node: self.0.bus.node_id().to_owned(),
            instance: self.0.instance,
            seq: self.next_seq(),
            kind,
            subscribers: self.0.hub.subscriber_count(space_id) as u64,
            users,
            last: false,
        }
    }

    /// Tells the other nodes that `user_id`'s status over this node's sessions is now `status`
    /// (called under the lock, so the bus gets this node's messages in `seq` order).
    fn delta(&self, space_id: SpaceId, user_id: &str, username: &str, status: Status) {
        if !self.0.bus.clustered() {
            return;
        }
        let w = self.wire(
            space_id,
            WireKind::Delta,
            vec![WireUser {
                id: user_id.to_owned(),
                name: username.to_owned(),
                status,
            }],
        );
        self.0.bus.publish_presence(space_id, &w);
    }

    /// This node's full presence in `space_id` (its users not offline here, and its subscriber
    /// count), in parts of at most [`SNAPSHOT_PART`] users; the last part says so. Empty if the
    /// space is not followed here.
    pub fn snapshot(&self, space_id: SpaceId) -> Vec<PresenceWire> {
        let spaces = self.lock();
        match spaces.get(&space_id) {
            Some(space) => self.snapshot_of(space_id, space),
            None => Vec::new(),
        }
    }

    fn snapshot_of(&self, space_id: SpaceId, space: &SpacePresence) -> Vec<PresenceWire> {
        let users: Vec<WireUser> = space
            .users
            .iter()
            .filter_map(|(id, u)| {
                let status = u.local();
                (status != Status::Offline).then(|| WireUser {
                    id: id.clone(),
                    name: u.username.clone(),
                    status,
                })
            })
            .collect();
        let template = self.wire(space_id, WireKind::Snapshot, Vec::new());
        let mut parts: Vec<PresenceWire> = users
            .chunks(SNAPSHOT_PART)
            .map(|c| PresenceWire {
                users: c.to_vec(),
                ..template.clone()
            })
            .collect();
        if parts.is_empty() {
            parts.push(template);
        }
        if let Some(p) = parts.last_mut() {
            p.last = true;
        }
        parts
    }

    /// Publishes the snapshot of every space followed here (cluster); returns how many.
    pub fn publish_snapshots(&self) -> usize {
        if !self.0.bus.clustered() {
            return 0;
        }
        let spaces = self.lock();
        for (space_id, space) in spaces.iter() {
            for part in self.snapshot_of(*space_id, space) {
                self.0.bus.publish_presence(*space_id, &part);
            }
        }
        self.0
            .metrics
            .presence_snapshots
            .with_label_values(&["published"])
            .inc_by(spaces.len() as u64);
        spaces.len()
    }

    /// A message from another node about `space_id` (ignored unless the space is followed here):
    /// merged by `seq`, and the changes it makes to users' statuses go to local subscribers.
    pub fn received(&self, space_id: SpaceId, w: PresenceWire) {
        if w.node == self.0.bus.node_id() || w.kind == WireKind::Unknown {
            return;
        }
        let mut spaces = self.lock();
        {
            let Some(space) = spaces.get_mut(&space_id) else {
                return;
            };
            let mut changes = Vec::new();
            if space
                .nodes
                .get(&w.node)
                .is_some_and(|n| n.instance != w.instance)
            {
                // The node restarted: what its previous process said is void.
                space.nodes.remove(&w.node);
                changes.extend(Self::drop_node(space, &w.node));
            }
            let now = Instant::now();
            let node = space
                .nodes
                .entry(w.node.clone())
                .or_insert_with(|| RemoteNode {
                    instance: w.instance,
                    seq: 0,
                    snapshot_seq: 0,
                    subscribers: 0,
                    last_seen: now,
                });
            node.last_seen = now;
            if w.seq > node.seq {
                node.seq = w.seq;
                node.subscribers = w.subscribers;
            }
            let snapshot_seq = node.snapshot_seq;
            for u in &w.users {
                changes.extend(Self::update(space, &u.id, Some(&u.name), |p| {
                    match p.remote.get(&w.node) {
                        Some((_, seq)) if *seq >= w.seq => return,
                        // Removed by a newer snapshot.
                        None if w.seq < snapshot_seq => return,
                        _ => {}
                    }
                    if u.status == Status::Offline {
                        p.remote.remove(&w.node);
                    } else {
                        p.remote.insert(w.node.clone(), (u.status, w.seq));
                    }
                }));
            }
            if w.kind == WireKind::Snapshot && w.last {
                self.0
                    .metrics
                    .presence_snapshots
                    .with_label_values(&["received"])
                    .inc();
                if let Some(n) = space.nodes.get_mut(&w.node) {
                    n.snapshot_seq = n.snapshot_seq.max(w.seq);
                }
                // Users the snapshot does not list (older entries) are gone from that node.
                let gone: Vec<String> = space
                    .users
                    .iter()
                    .filter(|(_, u)| u.remote.get(&w.node).is_some_and(|(_, s)| *s < w.seq))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in gone {
                    changes.extend(Self::update(space, &id, None, |p| {
                        p.remote.remove(&w.node);
                    }));
                }
            }
            let total = self.subscribers(space_id, space);
            self.emit(space_id, total, changes);
        }
    }

    /// Removes a node's entries from a space; the changes.
    fn drop_node(space: &mut SpacePresence, node: &str) -> Vec<Change> {
        let ids: Vec<String> = space
            .users
            .iter()
            .filter(|(_, u)| u.remote.contains_key(node))
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter()
            .filter_map(|id| {
                Self::update(space, id, None, |p| {
                    p.remote.remove(node);
                })
            })
            .collect()
    }

    /// Drops the entries of every node whose last message is [`PresenceConfig::expire_after`]
    /// old or older (it died, or lost the bus); returns how many nodes' entries expired.
    pub fn expire(&self) -> usize {
        let now = Instant::now();
        let mut expired = 0;
        {
            let mut spaces = self.lock();
            for (space_id, space) in spaces.iter_mut() {
                let dead: Vec<String> = space
                    .nodes
                    .iter()
                    .filter(|(_, n)| now.duration_since(n.last_seen) >= self.0.config.expire_after)
                    .map(|(id, _)| id.clone())
                    .collect();
                if dead.is_empty() {
                    continue;
                }
                let mut changes = Vec::new();
                for node in dead {
                    space.nodes.remove(&node);
                    let entries = space
                        .users
                        .values()
                        .filter(|u| u.remote.contains_key(&node))
                        .count();
                    self.0
                        .metrics
                        .presence_entries_expired
                        .inc_by(entries as u64);
                    changes.extend(Self::drop_node(space, &node));
                    expired += 1;
                }
                let total = self.subscribers(*space_id, space);
                self.emit(*space_id, total, changes);
            }
        }
        self.0
            .metrics
            .presence_snapshots
            .with_label_values(&["expired"])
            .inc_by(expired as u64);
        expired
    }

    /// Publishes users' changes to the space's local subscribers, if the space is small enough
    /// (`total`: its subscribers over the cluster). Called under the lock (the hub never calls
    /// back into presence).
    fn emit(&self, space_id: SpaceId, total: usize, changes: Vec<Change>) {
        if changes.is_empty() || total > self.0.config.max_subscribers {
            return;
        }
        for (user_id, username, status) in changes {
            self.0.metrics.presence_events.inc();
            self.publish(PresenceFrame::Presence {
                space_id,
                user_id,
                username,
                status,
            });
        }
    }

    fn publish(&self, frame: PresenceFrame) {
        let space_id = match &frame {
            PresenceFrame::Presence { space_id, .. }
            | PresenceFrame::PresenceCount { space_id, .. } => *space_id,
        };
        self.0.hub.publish(
            space_id,
            HubItem::Presence(Arc::new(PresenceItem {
                frame,
                rendered: Renderings::default(),
            })),
        );
    }

    /// Publishes the count of every space above the threshold (one hub item each); returns how
    /// many. Called every [`PresenceConfig::count_interval`] by [`Presence::run_counts`].
    pub fn publish_counts(&self) -> usize {
        let counts: Vec<(SpaceId, u64)> = self
            .lock()
            .iter()
            .filter(|(id, s)| self.subscribers(**id, s) > self.0.config.max_subscribers)
            .map(|(id, s)| (*id, s.online))
            .collect();
        for (space_id, online) in &counts {
            self.0.metrics.presence_counts.inc();
            self.publish(PresenceFrame::PresenceCount {
                space_id: *space_id,
                online: *online,
            });
        }
        counts.len()
    }

    /// Runs `f` every `every` (first after one period), until every clone of this `Presence`
    /// is dropped (or the returned task is aborted).
    fn every(&self, every: Duration, f: fn(&Presence)) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            let every = every.max(Duration::from_millis(10));
            let mut tick = tokio::time::interval_at(Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                f(&Presence(inner));
            }
        })
    }

    /// Publishes counts every interval.
    pub fn run_counts(&self) -> tokio::task::JoinHandle<()> {
        self.every(self.0.config.count_interval, |p| {
            p.publish_counts();
        })
    }

    /// In a cluster: publishes this node's snapshots every [`PresenceConfig::snapshot_interval`],
    /// and expires other nodes' entries (checked every [`EXPIRY_CHECK`]).
    pub fn run_cluster(&self) -> [tokio::task::JoinHandle<()>; 2] {
        [
            self.every(self.0.config.snapshot_interval, |p| {
                p.publish_snapshots();
            }),
            self.every(EXPIRY_CHECK, |p| {
                p.expire();
            }),
        ]
    }

    /// Whether `space_id` is followed here (its presence is then the merged view).
    pub fn follows(&self, space_id: SpaceId) -> bool {
        self.lock().contains_key(&space_id)
    }

    /// A page of `space_id`'s presence: from the merged view if the space is followed here;
    /// else, in a cluster, from the snapshots the other nodes answer within [`GATHER_WINDOW`]
    /// (a node that does not answer in time is missing from the page).
    ///
    /// # Errors
    /// `BusUnavailable` (cluster, a space not followed here, NATS unreachable).
    pub async fn page(
        &self,
        space_id: SpaceId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<PresencePage> {
        if self.follows(space_id) || !self.0.bus.clustered() {
            return Ok(self.list(space_id, after, limit));
        }
        let answers = self.0.bus.gather_presence(space_id, GATHER_WINDOW).await?;
        Ok(gathered_page(answers, after, limit))
    }

    /// Users not offline in `space_id` (over every node, as this node knows them), ordered by
    /// user id, after `after`, at most `limit`.
    pub fn list(&self, space_id: SpaceId, after: Option<&str>, limit: usize) -> PresencePage {
        let spaces = self.lock();
        let Some(space) = spaces.get(&space_id) else {
            return PresencePage {
                data: Vec::new(),
                online: 0,
                next: None,
            };
        };
        let mut page = page_of(
            range_after(&space.users, after).map(|(id, u)| (id, &u.username, u.status())),
            limit,
        );
        page.online = space.online;
        page
    }

    /// Users not offline in `space_id`.
    pub fn online(&self, space_id: SpaceId) -> u64 {
        self.lock().get(&space_id).map_or(0, |s| s.online)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SpaceId, SpacePresence>> {
        self.0.spaces.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How often other nodes' entries are checked for expiry: a dead node's users are offline at most
/// [`PresenceConfig::expire_after`] + this after its last message.
pub const EXPIRY_CHECK: Duration = Duration::from_secs(1);

fn range_after<'a, V>(
    map: &'a BTreeMap<String, V>,
    after: Option<&str>,
) -> std::collections::btree_map::Range<'a, String, V> {
    use std::ops::Bound;
    let from = match after {
        Some(a) => Bound::Excluded(a.to_owned()),
        None => Bound::Unbounded,
    };
    map.range((from, Bound::Unbounded))
}

/// The first `limit` users not offline (`online` left 0 for the caller).
fn page_of<'a>(
    users: impl Iterator<Item = (&'a String, &'a String, Status)>,
    limit: usize,
) -> PresencePage {
    let limit = limit.max(1);
    let mut data = Vec::new();
    let mut more = false;
    for (user_id, username, status) in users {
        if status == Status::Offline {
            continue;
        }
        if data.len() == limit {
            more = true;
            break;
        }
        data.push(PresenceEntry {
            user_id: user_id.clone(),
            username: username.clone(),
            status,
        });
    }
    let next = if more {
        data.last().map(|e| e.user_id.clone())
    } else {
        None
    };
    PresencePage {
        data,
        online: 0,
        next,
    }
}

/// A page from the snapshots other nodes answered (see [`Presence::page`]): each user's best
/// status over the nodes.
pub fn gathered_page(
    answers: Vec<PresenceWire>,
    after: Option<&str>,
    limit: usize,
) -> PresencePage {
    let mut users: BTreeMap<String, (String, Status)> = BTreeMap::new();
    for w in answers {
        if w.kind != WireKind::Snapshot {
            continue;
        }
        for u in w.users {
            let e = users
                .entry(u.id)
                .or_insert_with(|| (u.name.clone(), Status::Offline));
            if u.status.rank() > e.1.rank() {
                *e = (u.name, u.status);
            }
        }
    }
    let online = users
        .values()
        .filter(|(_, s)| *s != Status::Offline)
        .count() as u64;
    let mut page = page_of(
        range_after(&users, after).map(|(id, (name, s))| (id, name, *s)),
        limit,
    );
    page.online = online;
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::new_id;

    fn cfg() -> PresenceConfig {
        PresenceConfig {
            timeout: Duration::from_secs(60),
            idle_after: Duration::from_secs(300),
            max_subscribers: 2,
            count_interval: Duration::from_secs(10),
            ..PresenceConfig::default()
        }
    }

    #[test]
    fn a_user_is_online_if_any_session_is_then_busy_then_idle() {
        use Status::*;
        assert_eq!(aggregate([]), Offline);
        assert_eq!(aggregate([Offline, Offline]), Offline);
        assert_eq!(aggregate([Idle, Offline]), Idle);
        assert_eq!(aggregate([Idle, Busy]), Busy);
        assert_eq!(aggregate([Busy, Online, Idle]), Online);
        assert_eq!(aggregate([Offline, Online]), Online);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_session_goes_idle_then_offline_and_a_frame_brings_it_back() {
        let c = PresenceConfig {
            timeout: Duration::from_secs(600),
            ..cfg()
        };
        let mut p = SessionPresence::new(Instant::now(), true);
        assert_eq!(p.status(Instant::now(), &c), Status::Online);
        assert_eq!(
            p.next_change(Instant::now(), &c),
            Some(Instant::now() + c.idle_after)
        );
        // Heartbeats keep it connected but are not activity.
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(30)).await;
            p.frame(Instant::now(), false);
        }
        assert_eq!(p.status(Instant::now(), &c), Status::Idle);
        // Activity: online again.
        p.frame(Instant::now(), true);
        assert_eq!(p.status(Instant::now(), &c), Status::Online);
        // Silence: idle at 5 min, offline at 10.
        let t0 = Instant::now();
        assert_eq!(p.next_change(t0, &c), Some(t0 + c.idle_after));
        tokio::time::advance(c.idle_after).await;
        assert_eq!(p.status(Instant::now(), &c), Status::Idle);
        assert_eq!(p.next_change(Instant::now(), &c), Some(t0 + c.timeout));
        tokio::time::advance(c.timeout - c.idle_after).await;
        assert_eq!(p.status(Instant::now(), &c), Status::Offline);
        assert_eq!(p.next_change(Instant::now(), &c), None);
        // Any frame brings it back (a heartbeat: still no activity, so idle).
        p.frame(Instant::now(), false);
        assert_eq!(p.status(Instant::now(), &c), Status::Idle);
        p.frame(Instant::now(), true);
        assert_eq!(p.status(Instant::now(), &c), Status::Online);
    }

    #[tokio::test(start_paused = true)]
    async fn two_missed_heartbeats_are_offline_by_default() {
        let c = PresenceConfig::default();
        let mut p = SessionPresence::new(Instant::now(), true);
        tokio::time::advance(Duration::from_secs(30)).await;
        p.frame(Instant::now(), false);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(p.status(Instant::now(), &c), Status::Online);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(p.status(Instant::now(), &c), Status::Offline);
    }

    #[tokio::test(start_paused = true)]
    async fn chosen_statuses_hold_until_the_client_or_the_timeout_changes_them() {
        let c = cfg();
        let mut p = SessionPresence::new(Instant::now(), true);
        p.choose(Instant::now(), Status::Busy);
        p.frame(Instant::now(), true);
        assert_eq!(
            p.status(Instant::now(), &c),
            Status::Busy,
            "activity keeps busy"
        );
        // Busy never idles; only the timeout applies.
        assert_eq!(
            p.next_change(Instant::now(), &c),
            Some(Instant::now() + c.timeout)
        );
        p.choose(Instant::now(), Status::Offline);
        p.frame(Instant::now(), true);
        assert_eq!(
            p.status(Instant::now(), &c),
            Status::Offline,
            "appear offline"
        );
        assert_eq!(p.next_change(Instant::now(), &c), None);
        p.choose(Instant::now(), Status::Idle);
        assert_eq!(p.status(Instant::now(), &c), Status::Idle);
        p.frame(Instant::now(), false);
        assert_eq!(
            p.status(Instant::now(), &c),
            Status::Idle,
            "a heartbeat is no activity"
        );
        p.frame(Instant::now(), true);
        assert_eq!(
            p.status(Instant::now(), &c),
            Status::Online,
            "activity ends a chosen idle"
        );
        // A transport with its own heartbeat: never offline by silence.
        let q = SessionPresence::new(Instant::now(), false);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(q.status(Instant::now(), &c), Status::Idle);
        assert_eq!(q.next_change(Instant::now(), &c), None);
    }

    fn local_bus() -> Arc<dyn Bus> {
        Arc::new(crate::bus::LocalBus::new("n1"))
    }

    fn drain(rx: &mut tokio::sync::broadcast::Receiver<HubItem>) -> Vec<PresenceFrame> {
        let mut out = Vec::new();
        while let Ok(item) = rx.try_recv() {
            if let HubItem::Presence(p) = item {
                out.push(p.frame.clone());
            }
        }
        out
    }

    fn change(space_id: SpaceId, user: &str, status: Status) -> PresenceFrame {
        PresenceFrame::Presence {
            space_id,
            user_id: user.into(),
            username: user.to_uppercase(),
            status,
        }
    }

    #[tokio::test]
    async fn changes_of_a_users_aggregate_are_published_once_and_listed_in_order() {
        let metrics = Metrics::new();
        let hub = Hub::new(64, metrics.clone());
        let p = Presence::new(hub.clone(), cfg(), metrics.clone(), local_bus());
        let s = new_id();
        let mut rx = hub.subscribe(s);
        p.set(s, 1, "bob", "BOB", Status::Online);
        p.set(s, 2, "bob", "BOB", Status::Idle);
        p.set(s, 3, "amy", "AMY", Status::Busy);
        assert_eq!(
            drain(&mut rx),
            vec![
                change(s, "bob", Status::Online),
                change(s, "amy", Status::Busy)
            ],
            "bob's second session changed nothing"
        );
        assert_eq!(metrics.presence_entries.get(), 3);
        p.set(s, 1, "bob", "BOB", Status::Offline);
        p.remove(s, 3, "amy");
        assert_eq!(
            drain(&mut rx),
            vec![
                change(s, "bob", Status::Idle),
                change(s, "amy", Status::Offline)
            ]
        );
        p.set(s, 4, "cat", "CAT", Status::Online);
        p.set(s, 5, "dan", "DAN", Status::Offline);
        let page = p.list(s, None, 1);
        assert_eq!(page.online, 2);
        assert_eq!(page.data[0].user_id, "bob");
        assert_eq!(page.data[0].status, Status::Idle);
        let page2 = p.list(s, page.next.as_deref(), 1);
        assert_eq!(page2.data[0].user_id, "cat");
        // dan is offline: not listed, so no further page.
        assert_eq!(page2.next, None);
        assert!(
            p.list(s, page2.data.last().map(|e| e.user_id.as_str()), 1)
                .data
                .is_empty()
        );
        // Closing every session empties the space.
        for (sess, u) in [(1, "bob"), (2, "bob"), (4, "cat"), (5, "dan")] {
            p.remove(s, sess, u);
        }
        assert_eq!(p.online(s), 0);
        assert_eq!(metrics.presence_entries.get(), 0);
        assert!(p.lock().is_empty());
    }

    #[tokio::test]
    async fn above_the_threshold_changes_are_silent_and_counts_are_published() {
        let metrics = Metrics::new();
        let hub = Hub::new(64, metrics.clone());
        let p = Presence::new(hub.clone(), cfg(), metrics.clone(), local_bus());
        let s = new_id();
        let mut subs: Vec<_> = (0..3).map(|_| hub.subscribe(s)).collect();
        p.set(s, 1, "bob", "BOB", Status::Online);
        p.set(s, 2, "amy", "AMY", Status::Online);
        assert!(
            drain(&mut subs[0]).is_empty(),
            "3 subscribers > 2: no events"
        );
        assert_eq!(p.publish_counts(), 1);
        for rx in &mut subs {
            assert_eq!(
                drain(rx),
                vec![PresenceFrame::PresenceCount {
                    space_id: s,
                    online: 2
                }]
            );
        }
        // Back under the threshold: events again, no counts.
        drop(subs.pop());
        p.remove(s, 2, "amy");
        assert_eq!(drain(&mut subs[1]), vec![change(s, "amy", Status::Offline)]);
        assert_eq!(p.publish_counts(), 0);
        assert_eq!(metrics.presence_counts.get(), 1);
        assert_eq!(metrics.presence_events.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn counts_are_published_every_interval() {
        let metrics = Metrics::new();
        let hub = Hub::new(64, metrics.clone());
        let p = Presence::new(hub.clone(), cfg(), metrics.clone(), local_bus());
        let s = new_id();
        let mut subs: Vec<_> = (0..3).map(|_| hub.subscribe(s)).collect();
        p.set(s, 1, "bob", "BOB", Status::Online);
        let task = p.run_counts();
        let mut seen = 0;
        while seen < 3 {
            match subs[0].recv().await.unwrap() {
                HubItem::Presence(item) => {
                    assert!(matches!(
                        item.frame,
                        PresenceFrame::PresenceCount { online: 1, .. }
                    ));
                    seen += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        task.abort();
        assert!(metrics.presence_counts.get() >= 3);
        drop(subs);
    }

    /// A clustered bus that records what this node publishes (other nodes' messages are handed
    /// to [`Presence::received`] by the test).
    struct RecordingBus {
        node: &'static str,
        sent: Mutex<Vec<(SpaceId, PresenceWire)>>,
    }

    impl RecordingBus {
        fn new(node: &'static str) -> Arc<Self> {
            Arc::new(RecordingBus {
                node,
                sent: Mutex::default(),
            })
        }

        fn take(&self) -> Vec<(SpaceId, PresenceWire)> {
            std::mem::take(&mut *self.sent.lock().unwrap())
        }
    }

    #[async_trait::async_trait]
    impl Bus for RecordingBus {
        fn node_id(&self) -> &str {
            self.node
        }
        fn clustered(&self) -> bool {
            true
        }
        fn healthy(&self) -> bool {
            true
        }
        async fn acquire(&self, _: SpaceId) -> Result<Option<Arc<crate::bus::Lease>>> {
            Ok(None)
        }
        async fn release(&self, _: Arc<crate::bus::Lease>) {}
        async fn serve(&self, _: SpaceId, _: Arc<dyn crate::bus::CommandSink>) -> Result<Serving> {
            Ok(Serving::none())
        }
        async fn forward(
            &self,
            _: SpaceId,
            _: &crate::space::command::Command,
        ) -> Result<crate::bus::Answer> {
            Err(crate::bus::unavailable("test"))
        }
        fn publish(&self, _: SpaceId, _: &[crate::event::Published]) {}
        fn publish_typing(&self, _: &crate::hub::Typing) {}
        async fn watch(&self, _: SpaceId, _: crate::bus::Fanout) -> Result<Serving> {
            Ok(Serving::none())
        }
        fn publish_presence(&self, space_id: SpaceId, msg: &PresenceWire) {
            self.sent.lock().unwrap().push((space_id, msg.clone()));
        }
    }

    fn from(
        node: &str,
        instance: u64,
        seq: u64,
        kind: WireKind,
        users: &[(&str, Status)],
    ) -> PresenceWire {
        PresenceWire {
            v: WIRE_VERSION,
            node: node.into(),
            instance,
            seq,
            kind,
            subscribers: 1,
            users: users
                .iter()
                .map(|(u, s)| WireUser {
                    id: (*u).into(),
                    name: u.to_uppercase(),
                    status: *s,
                })
                .collect(),
            last: kind == WireKind::Snapshot,
        }
    }

    #[tokio::test]
    async fn other_nodes_messages_merge_by_best_status_and_seq() {
        use Status::*;
        let metrics = Metrics::new();
        let hub = Hub::new(256, metrics.clone());
        let bus = RecordingBus::new("n1");
        let p = Presence::new(
            hub.clone(),
            PresenceConfig {
                max_subscribers: 100,
                ..cfg()
            },
            metrics.clone(),
            bus.clone(),
        );
        let s = new_id();
        p.watch(s).await.unwrap();
        let mut rx = hub.subscribe(s);
        p.set(s, 1, "bob", "BOB", Online);
        assert_eq!(drain(&mut rx), vec![change(s, "bob", Online)]);
        // Our own change went to the other nodes, as a delta with our local status.
        let sent = bus.take();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1.kind, WireKind::Delta);
        assert_eq!(sent[0].1.users[0].status, Online);
        assert_eq!(sent[0].1.node, "n1");

        p.received(s, from("n2", 7, 5, WireKind::Delta, &[("amy", Busy)]));
        assert_eq!(drain(&mut rx), vec![change(s, "amy", Busy)]);
        // Bob is online here: busy elsewhere changes nothing.
        p.received(s, from("n2", 7, 6, WireKind::Delta, &[("bob", Busy)]));
        assert!(drain(&mut rx).is_empty());
        // An older message never overrides a newer one.
        p.received(s, from("n2", 7, 4, WireKind::Delta, &[("amy", Offline)]));
        assert!(drain(&mut rx).is_empty());
        assert_eq!(p.list(s, None, 10).data.len(), 2);
        // Amy also online on n3: online is best.
        p.received(s, from("n3", 9, 1, WireKind::Delta, &[("amy", Online)]));
        assert_eq!(drain(&mut rx), vec![change(s, "amy", Online)]);
        // n2's snapshot lists nobody: its amy and bob entries go; amy stays online by n3.
        p.received(s, from("n2", 7, 10, WireKind::Snapshot, &[]));
        assert!(drain(&mut rx).is_empty());
        // A delta older than that snapshot does not bring n2's amy back.
        p.received(s, from("n2", 7, 8, WireKind::Delta, &[("amy", Busy)]));
        // Bob leaves here; nobody else has him.
        p.remove(s, 1, "bob");
        assert_eq!(drain(&mut rx), vec![change(s, "bob", Offline)]);
        assert_eq!(bus.take()[0].1.users[0].status, Offline);
        // n3 restarted (new instance): what its old process said is void.
        p.received(s, from("n3", 10, 1, WireKind::Delta, &[("cat", Idle)]));
        assert_eq!(
            drain(&mut rx),
            vec![change(s, "amy", Offline), change(s, "cat", Idle)]
        );
        let page = p.list(s, None, 10);
        assert_eq!(page.online, 1);
        assert_eq!(page.data[0].user_id, "cat");
        // Our own messages (a loop through the bus) and unknown kinds are ignored.
        p.received(s, from("n1", 1, 99, WireKind::Delta, &[("eve", Online)]));
        p.received(s, from("n2", 7, 99, WireKind::Unknown, &[("eve", Online)]));
        assert!(drain(&mut rx).is_empty());
        assert_eq!(
            metrics
                .presence_snapshots
                .with_label_values(&["received"])
                .get(),
            1
        );
        // No longer followed: the space and the other nodes' entries go.
        p.unwatch(s);
        assert!(!p.follows(s));
    }

    #[tokio::test]
    async fn the_threshold_counts_every_nodes_subscribers() {
        let metrics = Metrics::new();
        let hub = Hub::new(64, metrics.clone());
        let p = Presence::new(hub.clone(), cfg(), metrics.clone(), RecordingBus::new("n1"));
        let s = new_id();
        p.watch(s).await.unwrap();
        let mut rx = hub.subscribe(s);
        p.received(
            s,
            from("n2", 1, 1, WireKind::Delta, &[("amy", Status::Online)]),
        );
        assert_eq!(
            drain(&mut rx),
            vec![change(s, "amy", Status::Online)],
            "2 subscribers"
        );
        assert_eq!(p.publish_counts(), 0);
        // n2 reports 2 subscribers: 3 in all > 2.
        let mut w = from(
            "n2",
            1,
            2,
            WireKind::Snapshot,
            &[("amy", Status::Online), ("bob", Status::Busy)],
        );
        w.subscribers = 2;
        p.received(s, w);
        assert!(drain(&mut rx).is_empty(), "above the threshold: no events");
        assert_eq!(p.publish_counts(), 1);
        assert_eq!(
            drain(&mut rx),
            vec![PresenceFrame::PresenceCount {
                space_id: s,
                online: 2
            }]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_nodes_entries_expire_after_the_bound() {
        let metrics = Metrics::new();
        let hub = Hub::new(64, metrics.clone());
        let c = cfg();
        let p = Presence::new(hub.clone(), c, metrics.clone(), RecordingBus::new("n1"));
        let s = new_id();
        p.watch(s).await.unwrap();
        let mut rx = hub.subscribe(s);
        p.received(
            s,
            from("n2", 1, 1, WireKind::Delta, &[("amy", Status::Online)]),
        );
        drain(&mut rx);
        // Its snapshot 30 s later keeps it alive for another 45 s.
        tokio::time::advance(Duration::from_secs(30)).await;
        p.received(
            s,
            from("n2", 1, 2, WireKind::Snapshot, &[("amy", Status::Online)]),
        );
        tokio::time::advance(c.expire_after - Duration::from_millis(1)).await;
        assert_eq!(p.expire(), 0);
        assert_eq!(p.online(s), 1);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(p.expire(), 1);
        assert_eq!(drain(&mut rx), vec![change(s, "amy", Status::Offline)]);
        assert_eq!(p.online(s), 0);
        assert_eq!(
            metrics
                .presence_snapshots
                .with_label_values(&["expired"])
                .get(),
            1
        );
        assert_eq!(metrics.presence_entries_expired.get(), 1);
        // The loop does it by itself: a node that goes silent is offline within the bound.
        let _tasks = p.run_cluster();
        let t0 = Instant::now();
        p.received(
            s,
            from("n2", 1, 3, WireKind::Delta, &[("amy", Status::Online)]),
        );
        assert_eq!(drain(&mut rx), vec![change(s, "amy", Status::Online)]);
        match rx.recv().await.unwrap() {
            HubItem::Presence(item) => {
                assert_eq!(item.frame, change(s, "amy", Status::Offline))
            }
            other => panic!("unexpected {other:?}"),
        }
        let took = Instant::now() - t0;
        assert!(
            took >= c.expire_after && took <= c.expire_after + EXPIRY_CHECK,
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn snapshots_go_every_interval_in_parts_and_replace_what_a_node_said() {
        use Status::*;
        let metrics = Metrics::new();
        let hub = Hub::new(64, metrics.clone());
        let bus1 = RecordingBus::new("n1");
        let n1 = Presence::new(hub.clone(), cfg(), metrics.clone(), bus1.clone());
        let hub2 = Hub::new(64, Metrics::new());
        let n2 = Presence::new(hub2.clone(), cfg(), Metrics::new(), RecordingBus::new("n2"));
        let s = new_id();
        n2.watch(s).await.unwrap();
        let users = SNAPSHOT_PART * 2 + 500;
        for i in 0..users {
            n1.set(
                s,
                i as u64,
                &format!("u{i:05}"),
                "U",
                if i % 2 == 0 { Online } else { Busy },
            );
        }
        n1.set(s, 1_000_000, "zed", "ZED", Offline);
        bus1.take();
        let _tasks = n1.run_cluster();
        tokio::time::sleep(cfg().snapshot_interval).await;
        tokio::task::yield_now().await;
        let parts = bus1.take();
        assert_eq!(parts.len(), 3, "2,500 users: three parts");
        assert!(
            parts
                .iter()
                .all(|(sp, w)| *sp == s && w.kind == WireKind::Snapshot && w.seq == parts[0].1.seq)
        );
        assert_eq!(
            parts.iter().map(|(_, w)| w.last).collect::<Vec<_>>(),
            vec![false, false, true]
        );
        assert_eq!(
            parts.iter().map(|(_, w)| w.users.len()).sum::<usize>(),
            users,
            "zed is offline: not in it"
        );
        for (_, w) in parts {
            n2.received(s, w);
        }
        let page = n2.list(s, None, 200);
        assert_eq!(page.online, users as u64);
        assert_eq!(page.data[1].status, Busy);
        // Half of them leave n1 (their deltas lost); the next snapshot says who is left.
        for i in (0..users).filter(|i| i % 2 == 1) {
            n1.remove(s, i as u64, &format!("u{i:05}"));
        }
        bus1.take();
        tokio::time::sleep(cfg().snapshot_interval).await;
        tokio::task::yield_now().await;
        for (_, w) in bus1.take() {
            n2.received(s, w);
        }
        assert_eq!(n2.online(s), users.div_ceil(2) as u64);
        assert!(
            metrics
                .presence_snapshots
                .with_label_values(&["published"])
                .get()
                >= 2
        );
    }

    #[test]
    fn the_wire_format_tolerates_other_versions() {
        // Unknown fields ignored, optional ones defaulted.
        let w: PresenceWire = serde_json::from_str(
            r#"{"v":2,"node":"n2","seq":3,"kind":"delta","users":[{"id":"a","status":"busy","x":1}],"future":true}"#,
        )
        .unwrap();
        assert_eq!(w.users[0].status, Status::Busy);
        assert_eq!((w.instance, w.subscribers, w.last), (0, 0, false));
        let u: PresenceWire =
            serde_json::from_str(r#"{"node":"n2","seq":3,"kind":"something_new"}"#).unwrap();
        assert_eq!(u.kind, WireKind::Unknown);
        let round = from("n1", 5, 6, WireKind::Snapshot, &[("bob", Status::Idle)]);
        let back: PresenceWire =
            serde_json::from_slice(&serde_json::to_vec(&round).unwrap()).unwrap();
        assert_eq!(back, round);
    }

    #[test]
    fn a_gathered_page_takes_each_users_best_status_over_the_nodes() {
        use Status::*;
        let answers = vec![
            from(
                "n2",
                1,
                1,
                WireKind::Snapshot,
                &[("amy", Idle), ("bob", Busy)],
            ),
            from(
                "n3",
                1,
                1,
                WireKind::Snapshot,
                &[("amy", Online), ("cat", Busy)],
            ),
            from("n3", 1, 2, WireKind::Delta, &[("dan", Online)]),
        ];
        let page = gathered_page(answers.clone(), None, 2);
        assert_eq!(page.online, 3);
        assert_eq!(
            page.data
                .iter()
                .map(|e| (e.user_id.as_str(), e.status))
                .collect::<Vec<_>>(),
            vec![("amy", Online), ("bob", Busy)]
        );
        assert_eq!(page.next.as_deref(), Some("bob"));
        let rest = gathered_page(answers, page.next.as_deref(), 2);
        assert_eq!(rest.data.len(), 1);
        assert_eq!(rest.data[0].user_id, "cat");
        assert_eq!(rest.next, None);
    }

    #[test]
    fn frames_and_their_socketio_payloads() {
        let s = new_id();
        let f = change(s, "bob", Status::Busy);
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["type"], "presence");
        assert_eq!(v["status"], "busy");
        assert_eq!(v["space_id"], s.to_string());
        let p = f.socketio_payload();
        assert!(p.get("type").is_none());
        assert_eq!(p["user_id"], "bob");
        let c = PresenceFrame::PresenceCount {
            space_id: s,
            online: 7,
        };
        assert_eq!(serde_json::to_value(&c).unwrap()["type"], "presence_count");
        assert_eq!(c.name(), "presence_count");
        assert_eq!(Status::parse("busy"), Some(Status::Busy));
        assert_eq!(Status::parse("away"), None);
    }
}
