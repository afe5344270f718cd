//! `join` / `leave`: subscribing to a space's events, with `since_seq` resume.
//!
//! Resume has no gap and no duplicate because of the order of steps: subscribe to the hub first,
//! then read the durable head and replay from the store. Every event is durable before it is
//! published, so an event published before the subscription is in the store, and one published
//! after it reaches the subscription; the per-space `delivered` seq drops the overlap.

use spacecast_engine::model::{Seq, SpaceId};
use tokio_stream::wrappers::BroadcastStream;

use super::frames::{self, FrameError};
use super::session::{End, Out, Reply, Session};
use crate::routes::spaces::{parse_space_id, readable_space};

/// Events read from the store per replay batch.
const REPLAY_BATCH: usize = 500;

impl Session {
    /// `{"type":"join","space_id","since_seq"?}` → `joined {space_id, head_seq}`, then the replay
    /// of every event after `since_seq` (if given), then live events.
    pub(super) async fn join(
        &mut self,
        out: &mut Out,
        raw_id: &str,
        since_seq: Option<Seq>,
    ) -> Result<(), Reply> {
        let space_id = parse_space_id(raw_id).map_err(FrameError::from)?;
        readable_space(&self.app, &self.user, space_id)
            .await
            .map_err(FrameError::from)?;
        let hub = self.app.engine.hub();
        if !self.subs.contains_key(&space_id) {
            self.subs
                .insert(space_id, BroadcastStream::new(hub.subscribe(space_id)));
        }
        let head = match self.app.engine.store().get_space(space_id).await {
            Ok(Some(view)) => view.counters.head_seq,
            Ok(None) => 0,
            Err(e) => {
                self.unsubscribe(space_id);
                return Err(FrameError::from(e).into());
            }
        };
        out.text(&frames::joined(&space_id.to_string(), head))
            .await?;
        match since_seq {
            Some(since) => {
                self.delivered.insert(space_id, since.min(head));
                self.replay(out, space_id, since.min(head)).await?;
            }
            None => {
                self.delivered.insert(space_id, head);
            }
        }
        Ok(())
    }

    /// `{"type":"leave","space_id"}` → `left {space_id}`.
    pub(super) async fn leave(&mut self, out: &mut Out, raw_id: &str) -> Result<(), Reply> {
        let space_id = parse_space_id(raw_id).map_err(FrameError::from)?;
        self.unsubscribe(space_id);
        out.text(&frames::left(&space_id.to_string())).await?;
        Ok(())
    }

    fn unsubscribe(&mut self, space_id: SpaceId) {
        if self.subs.remove(&space_id).is_some() {
            self.app.engine.hub().release(space_id);
        }
        self.delivered.remove(&space_id);
    }

    /// Writes every durable event after `after` from the store, in order, and records them as
    /// delivered.
    ///
    /// # Errors
    /// The socket failed. A store failure ends the replay with an `error` frame; live delivery
    /// will retry the repair on the next event.
    pub(super) async fn replay(
        &mut self,
        out: &mut Out,
        space_id: SpaceId,
        after: Seq,
    ) -> Result<(), End> {
        let mut last = after;
        loop {
            let events = match self
                .app
                .engine
                .store()
                .read_events(space_id, last, REPLAY_BATCH)
                .await
            {
                Ok(evs) => evs,
                Err(e) => {
                    let e = FrameError::from(e);
                    return out
                        .text(&frames::error(None, Some(&space_id.to_string()), &e))
                        .await;
                }
            };
            let n = events.len();
            for ev in events {
                let seq = ev.seq;
                let published = spacecast_engine::event::Published::new(ev);
                out.feed(published.native_frame()).await?;
                last = seq;
            }
            out.flush().await?;
            self.delivered.insert(space_id, last);
            if n < REPLAY_BATCH {
                return Ok(());
            }
        }
    }
}
