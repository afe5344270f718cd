//! `typing`: relayed to the space's other watchers on this node, never stored or sequenced.
//! Throttled to one relay per second per session and space.

use std::time::{Duration, Instant};

use spacecast_engine::hub::Typing;

use super::output::CommandError;
use super::session::Session;
use crate::input::parse_space_id;

const MIN_INTERVAL: Duration = Duration::from_secs(1);

impl Session {
    /// Typing: only for a space this session has joined.
    pub(super) fn typing(&mut self, raw_id: &str) -> Result<(), CommandError> {
        let space_id = parse_space_id(raw_id).map_err(CommandError::from)?;
        if !self.inbox.subs.contains_key(&space_id) {
            return Err(CommandError::new(
                "not_joined",
                "Join the space before sending typing",
            ));
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
            self.user.profile.username.clone(),
            self.id,
        );
        self.app.engine.fanout().typing(t);
        Ok(())
    }
}
