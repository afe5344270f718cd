//! Losing access while subscribed: a member removed from a private space (kicked, or leaving)
//! stops receiving its events.
//!
//! Read access is checked when a session joins a space (see `join.rs`), and removal is the one
//! way to lose it (visibility never changes). A removal is a sequenced `member_removed` event,
//! published after it is durable to every node's hub (in a cluster, through the bus), so every
//! session subscribed to the space sees it in the space's order, wherever it is connected. A
//! session that sees one naming its own user asks the read rule again: if the space is no longer
//! readable (a private space), the subscription ends at that event, after delivering it, and the
//! client is told: native `{"type":"left","space_id","reason":"removed"}`, Socket.IO
//! `left_space {space_id, reason: "removed"}`. In a public space reading stays allowed and the
//! subscription goes on. If the rule cannot be read (the store is unavailable), the subscription
//! ends too, with an error for that space first: access is never kept on a guess.
//!
//! A removal committed between a join's access check and its hub subscription is not missed:
//! the join checks again once subscribed (see `Session::join`).

use spacecast_engine::EngineError;
use spacecast_engine::event::{EventKind, SpaceEvent};
use spacecast_engine::model::SpaceId;

use super::Disconnect;
use super::output::{CommandError, Outbox, Output};
use super::session::Session;

/// Whether `ev` removes `user_id` from its space.
pub(super) fn removes(ev: &SpaceEvent, user_id: &str) -> bool {
    matches!(&ev.kind, EventKind::MemberRemoved(r) if r.user_id == user_id)
}

impl Session {
    /// After an event that removed this session's user from `space_id`: ends the subscription
    /// unless the user may still read the space (see the module doc).
    ///
    /// # Errors
    /// The transport failed.
    pub(super) async fn recheck_access<O: Outbox>(
        &mut self,
        out: &mut O,
        space_id: SpaceId,
    ) -> Result<(), Disconnect> {
        match self.app.engine.reader(space_id).view(self.user.id()).await {
            Ok(_) => Ok(()),
            Err(EngineError::SpaceNotFound) => {
                self.unsubscribe(space_id);
                out.put(Output::Removed { space_id }).await
            }
            Err(e) => {
                self.unsubscribe(space_id);
                let error = CommandError::from(e);
                out.put(Output::Error {
                    correlation: None,
                    space_id: Some(&space_id.to_string()),
                    error: &error,
                })
                .await?;
                out.put(Output::Left { space_id }).await
            }
        }
    }
}
