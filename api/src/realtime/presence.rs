//! Presence of a session (see `spacecast_engine::presence` for the model): every client command
//! is a heartbeat and, unless it is `heartbeat` or `presence`, activity; `presence` sets the
//! client's choice. The session's status is recomputed after each of those and when its one timer
//! fires; a change is given to the node's presence for every space the session has joined.
//!
//! The timer is lazy: a frame only moves the instants (no timer reset per frame), and when the
//! timer fires at a deadline a frame has since pushed back, the session finds its status unchanged
//! and re-arms at the new deadline. A deadline can only come earlier through a presence choice or
//! a come-back from offline, which reset the timer.

use spacecast_engine::model::SpaceId;
use spacecast_engine::presence::Status;
use tokio::time::Instant;

use super::session::Session;

impl Session {
    /// A client frame arrived (`activity`: see the module doc).
    pub(super) fn presence_frame(&mut self, activity: bool) {
        let now = Instant::now();
        self.presence.frame(now, activity);
        self.presence_refresh(now);
    }

    /// The client chose `status`.
    pub(super) fn choose_presence(&mut self, status: Status) {
        let now = Instant::now();
        self.presence.choose(now, status);
        self.presence_refresh(now);
    }

    /// The presence timer fired.
    pub(super) fn presence_due(&mut self) {
        self.inbox.presence_timer = None;
        self.presence_refresh(Instant::now());
    }

    /// The session joined `space_id`: it is in the space's presence from now on.
    pub(super) fn presence_joined(&mut self, space_id: SpaceId) {
        let now = Instant::now();
        let status = self
            .presence
            .status(now, self.app.engine.presence().config());
        self.app.engine.presence().set(
            space_id,
            self.id,
            self.user.id(),
            &self.user.profile.username,
            status,
        );
        self.arm_presence(now);
    }

    /// Gives a changed status to every joined space, and keeps the timer at or before the next
    /// deadline.
    fn presence_refresh(&mut self, now: Instant) {
        let presence = self.app.engine.presence().clone();
        let status = self.presence.status(now, presence.config());
        if status != self.presence_shown {
            self.presence_shown = status;
            for space_id in self.inbox.subs.keys() {
                presence.set(
                    *space_id,
                    self.id,
                    self.user.id(),
                    &self.user.profile.username,
                    status,
                );
            }
        }
        self.arm_presence(now);
    }

    fn arm_presence(&mut self, now: Instant) {
        // A session in no space has no presence to keep: it is computed on its next join.
        if self.inbox.subs.is_empty() {
            self.inbox.presence_timer = None;
            return;
        }
        let next = self
            .presence
            .next_change(now, self.app.engine.presence().config());
        match (next, &mut self.inbox.presence_timer) {
            (None, t) => *t = None,
            (Some(at), Some(t)) => {
                if t.deadline() > at {
                    t.as_mut().reset(at);
                }
            }
            (Some(at), t @ None) => *t = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }
}
