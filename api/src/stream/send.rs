//! `send`: post a message over the stream; answered by `ack` (once durable) or `error`, each
//! carrying the client's `local_id`.
//!
//! Order: the session task itself puts each send in the space actor's mailbox
//! (`SpaceHandle::submit_send`) before it reads the next client frame, so the sends of one
//! connection to one space are sequenced in the order they were sent (CONTRACT §7). Only the wait
//! for the durable outcome runs in its own task, so sends stay pipelined and the session keeps
//! delivering events while a group commit is in flight; the answer comes back through the
//! session's result queue. A session has at most `MAX_INFLIGHT_SENDS` sends waiting; beyond that,
//! `overloaded`.

use spacecast_engine::SendMessage;

use super::frames::{self, FrameError};
use super::session::{Out, Reply, Session};
use crate::routes::messages::normalize_content;
use crate::routes::spaces::parse_space_id;

impl Session {
    /// `{"type":"send","space_id","content","local_id"}`.
    pub(super) async fn send(
        &mut self,
        _out: &mut Out,
        raw_id: &str,
        content: Option<String>,
        local_id: Option<serde_json::Value>,
    ) -> Result<(), Reply> {
        let refuse = |e: FrameError, id: &Option<serde_json::Value>| Reply::Refused(e, id.clone());
        let space_id = parse_space_id(raw_id).map_err(|e| refuse(e.into(), &local_id))?;
        let content = normalize_content(content, self.app.config.max_content_chars)
            .map_err(|e| refuse(e.into(), &local_id))?;
        let Some(content) = content else {
            return Err(refuse(
                FrameError::new("empty_message", "Message must have text"),
                &local_id,
            ));
        };
        let Ok(permit) = self.send_permits.clone().try_acquire_owned() else {
            return Err(refuse(
                FrameError::new("overloaded", "Too many sends awaiting acknowledgement"),
                &local_id,
            ));
        };
        let space = self.app.engine.space(space_id);
        let results = self.results_tx.clone();
        let cmd = SendMessage {
            message_id: None,
            sender: self.user.profile.clone(),
            content: Some(content),
            media_url: None,
            media_type: None,
        };
        // Delivered to the actor's mailbox here, in the session's own order; only the wait is
        // spawned.
        let pending = space
            .submit_send(cmd)
            .await
            .map_err(|e| refuse(e.into(), &local_id))?;
        let raw_id = raw_id.to_owned();
        tokio::spawn(async move {
            let frame = match pending.wait().await {
                Ok(message) => frames::ack(&local_id, &message),
                Err(e) => frames::error(local_id.as_ref(), Some(&raw_id), &FrameError::from(e)),
            };
            // The session may have ended meanwhile; the message is durable either way.
            let _ = results.send(frame).await;
            drop(permit);
        });
        Ok(())
    }
}
