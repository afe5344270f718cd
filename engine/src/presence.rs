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
//! - A change event is published only when the user's aggregated status really changed, in the
//!   order the changes happened on this node.
//! - Best effort, like typing: not stored, not sequenced; a lagging subscriber is a slow consumer
//!   by the hub's rule.
//!
//! # Cluster (not built yet)
//! Today a node knows only its own sessions. The decided design: each node is the authority for
//! its sessions; per space, a node with local subscribers publishes its changes on
//! `spacecast.pr.<space>` and a full snapshot every 15 s; other nodes' entries expire 45 s after
//! their last snapshot; watching nodes merge, and a node asked about a space it does not watch asks
//! the others (`spacecast.prq.<space>`) for a bounded window. The table above is keyed so a
//! node's entries can be added beside the local ones.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use spacecast_observability::Metrics;
use tokio::time::Instant;

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
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            timeout: Duration::from_secs(60),
            idle_after: Duration::from_secs(5 * 60),
            max_subscribers: 1_000,
            count_interval: Duration::from_secs(10),
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

/// One user in one space: their subscribed sessions' statuses.
#[derive(Debug)]
struct UserPresence {
    username: String,
    sessions: HashMap<u64, Status>,
}

impl UserPresence {
    fn status(&self) -> Status {
        aggregate(self.sessions.values().copied())
    }
}

#[derive(Debug, Default)]
struct SpacePresence {
    users: BTreeMap<String, UserPresence>,
    /// Users whose aggregated status is not offline.
    online: u64,
}

/// This node's presence by space, and the publishing of its changes and counts (see the module
/// doc). Cheap to clone.
#[derive(Clone)]
pub struct Presence {
    spaces: Arc<Mutex<HashMap<SpaceId, SpacePresence>>>,
    hub: Hub,
    config: PresenceConfig,
    metrics: Metrics,
}

impl Presence {
    pub fn new(hub: Hub, config: PresenceConfig, metrics: Metrics) -> Self {
        Presence {
            spaces: Arc::default(),
            hub,
            config,
            metrics,
        }
    }

    pub fn config(&self) -> &PresenceConfig {
        &self.config
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
        let change = {
            let mut spaces = self.lock();
            let space = spaces.entry(space_id).or_default();
            let user = space
                .users
                .entry(user_id.to_owned())
                .or_insert_with(|| UserPresence {
                    username: username.to_owned(),
                    sessions: HashMap::new(),
                });
            let before = user.status();
            if user.sessions.insert(session, status).is_none() {
                self.metrics.presence_entries.inc();
            }
            user.username = username.to_owned();
            let after = user.status();
            let username = user.username.clone();
            Self::count(space, before, after);
            (before != after).then_some((username, after))
        };
        if let Some((username, status)) = change {
            self.changed(space_id, user_id, username, status);
        }
    }

    /// Session `session` of `user_id` left `space_id` (leave, removal, close): its entry goes at
    /// once, with the user's change if it was their last session that counted.
    pub fn remove(&self, space_id: SpaceId, session: u64, user_id: &str) {
        let change = {
            let mut spaces = self.lock();
            let Some(space) = spaces.get_mut(&space_id) else {
                return;
            };
            let Some(user) = space.users.get_mut(user_id) else {
                return;
            };
            let before = user.status();
            if user.sessions.remove(&session).is_some() {
                self.metrics.presence_entries.dec();
            }
            let after = user.status();
            let username = user.username.clone();
            if user.sessions.is_empty() {
                space.users.remove(user_id);
            }
            Self::count(space, before, after);
            if space.users.is_empty() {
                spaces.remove(&space_id);
            }
            (before != after).then_some((username, after))
        };
        if let Some((username, status)) = change {
            self.changed(space_id, user_id, username, status);
        }
    }

    fn count(space: &mut SpacePresence, before: Status, after: Status) {
        match (before == Status::Offline, after == Status::Offline) {
            (true, false) => space.online += 1,
            (false, true) => space.online = space.online.saturating_sub(1),
            _ => {}
        }
    }

    /// Publishes a user's change to the space's local subscribers, if the space is small enough.
    fn changed(&self, space_id: SpaceId, user_id: &str, username: String, status: Status) {
        if self.hub.subscriber_count(space_id) > self.config.max_subscribers {
            return;
        }
        self.metrics.presence_events.inc();
        self.publish(PresenceFrame::Presence {
            space_id,
            user_id: user_id.to_owned(),
            username,
            status,
        });
    }

    fn publish(&self, frame: PresenceFrame) {
        let space_id = match &frame {
            PresenceFrame::Presence { space_id, .. }
            | PresenceFrame::PresenceCount { space_id, .. } => *space_id,
        };
        self.hub.publish(
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
        let counts: Vec<(SpaceId, u64)> =
            self.lock().iter().map(|(id, s)| (*id, s.online)).collect();
        let mut n = 0;
        for (space_id, online) in counts {
            if self.hub.subscriber_count(space_id) > self.config.max_subscribers {
                self.metrics.presence_counts.inc();
                self.publish(PresenceFrame::PresenceCount { space_id, online });
                n += 1;
            }
        }
        n
    }

    /// Publishes counts every interval, until every clone of this `Presence` is dropped (or the
    /// returned task is aborted).
    pub fn run_counts(&self) -> tokio::task::JoinHandle<()> {
        let spaces = Arc::downgrade(&self.spaces);
        let (hub, config, metrics) = (self.hub.clone(), self.config, self.metrics.clone());
        tokio::spawn(async move {
            let every = config.count_interval.max(Duration::from_millis(10));
            let mut tick = tokio::time::interval_at(Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(spaces) = spaces.upgrade() else {
                    return;
                };
                Presence {
                    spaces,
                    hub: hub.clone(),
                    config,
                    metrics: metrics.clone(),
                }
                .publish_counts();
            }
        })
    }

    /// Users not offline in `space_id`, ordered by user id, after `after`, at most `limit`.
    pub fn list(&self, space_id: SpaceId, after: Option<&str>, limit: usize) -> PresencePage {
        use std::ops::Bound;
        let spaces = self.lock();
        let Some(space) = spaces.get(&space_id) else {
            return PresencePage {
                data: Vec::new(),
                online: 0,
                next: None,
            };
        };
        let from = match after {
            Some(a) => Bound::Excluded(a.to_owned()),
            None => Bound::Unbounded,
        };
        let limit = limit.max(1);
        let mut data = Vec::with_capacity(limit.min(space.users.len()));
        let mut more = false;
        for (user_id, u) in space.users.range((from, Bound::Unbounded)) {
            let status = u.status();
            if status == Status::Offline {
                continue;
            }
            if data.len() == limit {
                more = true;
                break;
            }
            data.push(PresenceEntry {
                user_id: user_id.clone(),
                username: u.username.clone(),
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
            online: space.online,
            next,
        }
    }

    /// Users not offline in `space_id`.
    pub fn online(&self, space_id: SpaceId) -> u64 {
        self.lock().get(&space_id).map_or(0, |s| s.online)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SpaceId, SpacePresence>> {
        self.spaces.lock().unwrap_or_else(|p| p.into_inner())
    }
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
        let p = Presence::new(hub.clone(), cfg(), metrics.clone());
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
        let p = Presence::new(hub.clone(), cfg(), metrics.clone());
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
        let p = Presence::new(hub.clone(), cfg(), metrics.clone());
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
