//! `join` / `leave`: subscribing to a space's events, with `since_seq` resume.
//!
//! Resume has no gap and no duplicate because of the order of steps: subscribe to the hub first,
//! then read the durable head and replay from the store. Every event is durable before it is
//! published, so an event published before the subscription is in the store, and one published
//! after it reaches the subscription; the per-space `delivered` seq drops the overlap.
//!
//! Access: the join asks the engine for the space's [`EventLog`], which applies the space's read
//! rule (a private space is unknown to non-members); the head and the replay are read through it.
//!
//! Replay memory: the store reads events by count, so pages are sized from the bytes of the
//! previous page to hold about `REPLAY_PAGE_BYTES` each; every event goes through the same
//! transport backpressure as live events (the adapter's `Outbox`). A session replaying a long space to a client that
//! does not read holds one page and the socket's buffer, never the space, and is closed as slow
//! after the stall limit.

use spacecast_engine::EventLog;
use spacecast_engine::event::Published;
use spacecast_engine::model::{Seq, SpaceId};

use super::Disconnect;
use super::output::{CommandError, Outbox, Output};
use super::session::{Refused, Session};
use crate::input::parse_space_id;

/// The bytes of events one replay page aims at (per session).
const REPLAY_PAGE_BYTES: usize = 512 * 1024;
/// Events in the first replay page, before the space's event size is known.
const REPLAY_FIRST_PAGE: usize = 16;
/// Most events in one replay page (small events).
const REPLAY_MAX_PAGE: usize = 500;

/// The next page's event count, from the largest frame of the last page: about
/// [`REPLAY_PAGE_BYTES`] if the next events are like those, never fewer than one.
fn next_page_len(largest_frame: usize) -> usize {
    (REPLAY_PAGE_BYTES / largest_frame.max(1)).clamp(1, REPLAY_MAX_PAGE)
}

impl Session {
    /// Join → `Joined {space_id, head_seq}`, then the replay of every event after `since_seq`
    /// (if given), then live events.
    pub(super) async fn join<O: Outbox>(
        &mut self,
        out: &mut O,
        raw_id: &str,
        since_seq: Option<Seq>,
    ) -> Result<(), Refused> {
        let space_id = parse_space_id(raw_id).map_err(CommandError::from)?;
        let max = self.app.config.max_spaces_per_session;
        if !self.inbox.subs.contains_key(&space_id) && self.inbox.subs.len() >= max {
            return Err(CommandError::new(
                "too_many_spaces",
                format!("At most {max} spaces may be joined at once; leave one first"),
            )
            .into());
        }
        let log = self
            .app
            .engine
            .reader(space_id)
            .event_log(self.user.id())
            .await
            .map_err(CommandError::from)?;
        if !self.inbox.subs.contains_key(&space_id) {
            // On every node of a cluster: once subscribed, nothing committed later is missed.
            let rx = self
                .app
                .engine
                .subscribe(space_id)
                .await
                .map_err(CommandError::from)?;
            let sub = super::session::subscription(rx, self.app.metrics.clone(), self.protocol);
            self.inbox.subs.insert(space_id, sub);
            // Access may have been lost (a removal) between the check above and the
            // subscription: a removal committed after this second check reaches the
            // subscription (see `membership.rs`).
            if let Err(e) = self
                .app
                .engine
                .reader(space_id)
                .event_log(self.user.id())
                .await
            {
                self.unsubscribe(space_id);
                return Err(CommandError::from(e).into());
            }
            self.presence_joined(space_id);
        }
        let head = match log.head_seq().await {
            Ok(head) => head,
            Err(e) => {
                self.unsubscribe(space_id);
                return Err(CommandError::from(e).into());
            }
        };
        out.put(Output::Joined {
            space_id,
            head_seq: head,
        })
        .await?;
        match since_seq {
            Some(since) => {
                self.delivered.insert(space_id, since.min(head));
                self.replay(out, &log, since.min(head)).await?;
            }
            None => {
                self.delivered.insert(space_id, head);
            }
        }
        Ok(())
    }

    /// Leave → `Left {space_id}`.
    pub(super) async fn leave<O: Outbox>(
        &mut self,
        out: &mut O,
        raw_id: &str,
    ) -> Result<(), Refused> {
        let space_id = parse_space_id(raw_id).map_err(CommandError::from)?;
        self.unsubscribe(space_id);
        out.put(Output::Left { space_id }).await?;
        Ok(())
    }

    /// Forgets everything the session keeps for `space_id`, so per-space state never outlives
    /// the subscription.
    pub(super) fn unsubscribe(&mut self, space_id: SpaceId) {
        if self.inbox.subs.remove(&space_id).is_some() {
            self.app.engine.unsubscribe(space_id);
            self.app
                .engine
                .presence()
                .remove(space_id, self.id, self.user.id());
        }
        self.delivered.remove(&space_id);
        self.last_typing.remove(&space_id);
    }

    /// Repairs a gap in live delivery: replays every durable event after `after`. The space's
    /// read rule is asked again for its log (gaps are rare, so the two reads it costs are too).
    ///
    /// # Errors
    /// The transport failed. A failed read ends the repair with an error output, as in
    /// [`Session::replay`].
    pub(super) async fn repair<O: Outbox>(
        &mut self,
        out: &mut O,
        space_id: SpaceId,
        after: Seq,
    ) -> Result<(), Disconnect> {
        match self
            .app
            .engine
            .reader(space_id)
            .event_log(self.user.id())
            .await
        {
            Ok(log) => self.replay(out, &log, after).await,
            Err(e) => replay_failed(out, space_id, e).await,
        }
    }

    /// Writes every durable event after `after` from the space's log, in order, and records
    /// them as delivered.
    ///
    /// # Errors
    /// The transport failed. A store failure ends the replay with an error output; live delivery
    /// will retry the repair on the next event.
    pub(super) async fn replay<O: Outbox>(
        &mut self,
        out: &mut O,
        log: &EventLog,
        after: Seq,
    ) -> Result<(), Disconnect> {
        let space_id = log.space_id();
        let mut last = after;
        let mut page = REPLAY_FIRST_PAGE;
        loop {
            let events = match log.events_after(last, page).await {
                Ok(evs) => evs,
                Err(e) => return replay_failed(out, space_id, e).await,
            };
            let n = events.len();
            let mut largest = 0;
            let mut removed = false;
            for ev in events {
                let seq = ev.seq;
                // The stored form's size stands for the rendered one (within a few bytes).
                largest = largest.max(ev_size(&ev));
                removed = super::membership::removes(&ev, self.user.id());
                let p = Published::new(ev);
                if out.carries(&p) {
                    out.put(Output::Event(&p)).await?;
                }
                last = seq;
                if removed {
                    break;
                }
            }
            out.flush().await?;
            self.delivered.insert(space_id, last);
            if removed {
                // Nothing after a removal of this user until access is decided.
                Box::pin(self.recheck_access(out, space_id)).await?;
                if !self.inbox.subs.contains_key(&space_id) {
                    return Ok(());
                }
                continue;
            }
            if n < page {
                return Ok(());
            }
            page = next_page_len(largest);
        }
    }
}

/// Tells the client a replay of `space_id` could not be read.
async fn replay_failed<O: Outbox>(
    out: &mut O,
    space_id: SpaceId,
    e: spacecast_engine::EngineError,
) -> Result<(), Disconnect> {
    let error = CommandError::from(e);
    out.put(Output::Error {
        correlation: None,
        space_id: Some(&space_id.to_string()),
        error: &error,
    })
    .await
}

/// About the bytes one event takes on the wire (its content and ids; exactness is not needed to
/// size a page).
fn ev_size(ev: &spacecast_engine::event::SpaceEvent) -> usize {
    use spacecast_engine::event::EventKind;
    let body = match &ev.kind {
        EventKind::MessageCreated(m)
        | EventKind::MessageEdited(m)
        | EventKind::MessageRedacted(m) => {
            m.content.as_ref().map_or(0, String::len)
                + m.media_url.as_ref().map_or(0, String::len)
                + [&m.body, &m.metadata]
                    .into_iter()
                    .flatten()
                    .map(|o| serde_json::to_vec(o).map_or(0, |v| v.len()))
                    .sum::<usize>()
        }
        EventKind::MessageDeleted(_)
        | EventKind::ReactionChanged(_)
        | EventKind::MemberUpdated(_)
        | EventKind::MemberRemoved(_)
        | EventKind::SpaceUpdated(_) => 0,
    };
    body + 256
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_pages_hold_about_the_byte_budget() {
        assert_eq!(
            next_page_len(100),
            REPLAY_MAX_PAGE,
            "small events: a full page"
        );
        assert_eq!(next_page_len(4096), REPLAY_PAGE_BYTES / 4096);
        assert_eq!(next_page_len(100 * 1024), 5);
        assert_eq!(next_page_len(10 << 20), 1, "huge events: one at a time");
        assert_eq!(next_page_len(0), REPLAY_MAX_PAGE);
    }
}
