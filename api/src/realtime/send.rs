//! `send`: post a message; answered by an ack (once durable) or an error, each carrying the
//! client's correlation value.
//!
//! Order: the session itself puts each send in the space actor's mailbox
//! (`SpaceHandle::submit_send`) before the adapter reads the next client frame, so the sends of
//! one connection to one space are sequenced in the order they were sent (CONTRACT §7). Only the
//! wait for the durable outcome runs in its own task, so sends stay pipelined and the session
//! keeps delivering events while a group commit is in flight; the answer comes back through the
//! session's [`Inbox`](super::session::Inbox). A session has at most `MAX_INFLIGHT_SENDS` sends
//! waiting; beyond that, `overloaded`. Over the user's send rate limit, `rate_limited` with
//! `retry_after` (seconds).

use spacecast_observability::trace;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::output::{CommandError, Correlation};
use super::session::{MAX_INFLIGHT_SENDS, SendOutcome, Session};
use crate::input::parse_space_id;
use crate::ratelimit::Surface;
use crate::routes::v1_messages::{Prepared, SendBody, SendDraft, prepare_send, validate_send};

impl Session {
    /// Submits a send (the fields of the REST send). A refusal comes back with the correlation,
    /// for the error output.
    pub(super) async fn send(
        &mut self,
        raw_id: &str,
        body: SendBody,
        correlation: Option<Correlation>,
        started: std::time::Instant,
    ) -> Result<(), (CommandError, Option<Correlation>)> {
        let space_id = match parse_space_id(raw_id) {
            Ok(id) => id,
            Err(e) => return Err((e.into(), correlation)),
        };
        if let Err(e) = self
            .app
            .send_limit
            .check(&self.user.profile.user_id, Surface::Stream)
        {
            return Err((e.into(), correlation));
        }
        let SendDraft { cmd, media_ids, .. } = match validate_send(
            &self.user.profile,
            body,
            None,
            self.app.config.max_content_chars,
        ) {
            Ok(d) => d,
            Err(e) => return Err((e.into(), correlation)),
        };
        let Ok(permit) = self.send_permits.clone().try_acquire_owned() else {
            return Err((
                CommandError::new("overloaded", "Too many sends awaiting acknowledgement"),
                correlation,
            ));
        };
        // Without uploads this awaits nothing; with them, the session binds them before it
        // reads the next frame, so its sends keep their order.
        let prepared = match prepare_send(&self.app, &self.user, space_id, cmd, media_ids).await {
            Ok(p) => p,
            Err(e) => return Err((e.into(), correlation)),
        };
        let results = self
            .inbox
            .results
            .get_or_insert_with(|| mpsc::channel(MAX_INFLIGHT_SENDS))
            .0
            .clone();
        let raw_space = raw_id.to_owned();
        let (cmd, attached) = match prepared {
            Prepared::Replay(original) => {
                tokio::spawn(async move {
                    let _ = results
                        .send(Box::new(SendOutcome {
                            correlation,
                            raw_space,
                            result: Ok(original),
                            started,
                        }))
                        .await;
                    drop(permit);
                });
                return Ok(());
            }
            Prepared::Send { cmd, attached } => (cmd, attached),
        };
        // A sampled send starts its trace here (the realtime protocols carry no `traceparent`);
        // the span lasts until the outcome is known.
        let span = if self
            .app
            .config
            .exported_trace_ratio
            .is_some_and(|ratio| trace::sample_request(None, ratio))
        {
            tracing::debug_span!("stream.send", space_id = %space_id)
        } else {
            tracing::Span::none()
        };
        // Delivered to the actor's mailbox here, in the session's own order; only the wait is
        // spawned.
        let submitted = self
            .app
            .engine
            .space(space_id)
            .submit_post(cmd)
            .instrument(span.clone())
            .await;
        let pending = match submitted {
            Ok(p) => p,
            Err(e) => {
                if let Some(a) = attached {
                    a.release_if_refused(&self.app, &e).await;
                }
                return Err((e.into(), correlation));
            }
        };
        let app = self.app.clone();
        tokio::spawn(
            async move {
                let result = match pending.wait().await {
                    Ok(sent) => Ok(sent.message),
                    Err(e) => {
                        if let Some(a) = attached {
                            a.release_if_refused(&app, &e).await;
                        }
                        Err(CommandError::from(e))
                    }
                };
                // The session may have ended meanwhile; the message is durable either way.
                let _ = results
                    .send(Box::new(SendOutcome {
                        correlation,
                        raw_space,
                        result,
                        started,
                    }))
                    .await;
                drop(permit);
            }
            .instrument(span),
        );
        Ok(())
    }
}
