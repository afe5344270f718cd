//! `typing`: relayed to the space's other watchers on this node, never stored or sequenced.
//! Throttled to one relay per second per session and space.

use std::sync::Arc;
use std::time::{Duration, Instant};

use spacecast_engine::hub::{HubItem, Typing};

use super::frames::FrameError;
use super::session::{Reply, Session};
use crate::routes::spaces::parse_space_id;

const MIN_INTERVAL: Duration = Duration::from_secs(1);

impl Session {
    /// `{"type":"typing","space_id"}`: only for a space this session has joined.
    pub(super) fn typing(&mut self, raw_id: &str) -> Result<(), Reply> {
        let space_id = parse_space_id(raw_id).map_err(FrameError::from)?;
        if !self.subs.contains_key(&space_id) {
            return Err(
                FrameError::new("not_joined", "Join the space before sending typing").into(),
            );
        }
        let now = Instant::now();
        if self
            .last_typing
            .get(&space_id)
            .is_some_and(|t| now.duration_since(*t) < MIN_INTERVAL)
        {
            return Ok(());
        }
        self.last_typing.insert(space_id, now);
        let t = Typing::new(
            space_id,
            self.user.id().to_owned(),
            &self.user.profile.username,
            self.id,
        );
        self.app
            .engine
            .hub()
            .publish(space_id, HubItem::Typing(Arc::new(t)));
        Ok(())
    }
}
