//! The group-commit writer of one space.
//!
//! The actor sequences commands and hands each one's [`CommitBatch`] here through an unbounded
//! channel (bounded in practice by admission control: at most `max_inflight` commands per space).
//! The writer takes everything waiting, merges it into one batch, commits it with one store call,
//! and only then answers the callers and publishes the events to the hub, in seq order. While a
//! commit is in flight, new commands accumulate and form the next batch: the batch size adapts to
//! load with no timer.
//!
//! If a commit fails, the actor's in-memory state is ahead of the store. The writer answers that
//! batch's callers with the error, answers every later command with an error too (their seqs
//! follow the lost ones), and tells the actor, which fails and is rebuilt from the store. A commit
//! the store reports `Unsettled` is durable: the writer acknowledges and publishes it, then fails
//! the same way, so the rebuilt actor's `claim` finishes it. A `Fenced` commit means another
//! writer claimed the space: its callers and every later command hear `Fenced`.
//!
//! A command that changed nothing still goes through here, with an empty batch: it is answered
//! once every command sequenced before it is durable (so nobody is shown a state that could still
//! be lost), without a store call of its own.
//!
//! The writer holds the space's local lease until it exits, so a replacement actor cannot load
//! the space before everything this writer accepted is settled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use ractor::{ActorRef, RpcReplyPort};
use spacecast_observability::Metrics;
use tokio::sync::{OwnedMutexGuard, mpsc};
use tracing::Instrument;

use super::{Outcome, SpaceMsg};
use spacecast_observability::trace::TraceParent;

use crate::bus::{Fanout, Lease};
use crate::error::{EngineError, Result};
use crate::event::EventTraces;
use crate::model::SpaceId;
use crate::store::{CommitBatch, Store};
use crate::users::UserEvent;

/// Who waits for a sequenced command, and what they get once it is durable.
pub(crate) struct Reply {
    pub port: RpcReplyPort<Result<Outcome>>,
    pub outcome: Outcome,
}

impl Reply {
    fn ok(self) {
        // A caller that gave up (timeout, disconnect) dropped its port; nothing to do.
        let _ = self.port.send(Ok(self.outcome));
    }

    pub(crate) fn fail(self, e: &EngineError) {
        let _ = self.port.send(Err(e.clone()));
    }
}

/// One sequenced command: its writes, its waiting caller, and its span (`space.command`,
/// ended when the command is answered; disabled with traces off).
pub(crate) struct Sequenced {
    pub batch: CommitBatch,
    pub reply: Reply,
    pub span: tracing::Span,
}

/// What the writer needs; built by the actor in `pre_start`.
pub(crate) struct WriterCtx {
    pub space_id: SpaceId,
    pub store: Arc<dyn Store>,
    pub fanout: Fanout,
    /// This node's hold on the space: checked before every commit, given up when the writer
    /// ends.
    pub ownership: Arc<Lease>,
    pub metrics: Metrics,
    pub actor: ActorRef<SpaceMsg>,
    /// The last seq known durable; the actor reads it to know what it may evict from its cache.
    pub durable_seq: Arc<AtomicU64>,
    /// Commands handed to the writer and not yet answered; the actor passivates only at zero.
    pub queued: Arc<AtomicUsize>,
    pub max_batch: usize,
    pub lease: OwnedMutexGuard<()>,
}

/// Runs until the actor drops its sender and everything queued is settled.
pub(crate) async fn run(ctx: WriterCtx, mut rx: mpsc::UnboundedReceiver<Sequenced>) {
    let mut poisoned: Option<EngineError> = None;
    let mut items: Vec<Sequenced> = Vec::with_capacity(64);
    while let Some(first) = rx.recv().await {
        items.push(first);
        while items.len() < ctx.max_batch {
            match rx.try_recv() {
                Ok(item) => items.push(item),
                Err(_) => break,
            }
        }
        let n = items.len();
        if let Some(e) = &poisoned {
            for it in items.drain(..) {
                it.reply.fail(e);
            }
        } else if items.iter().all(|it| it.batch.is_empty()) {
            // Commands that changed nothing (a replayed send, a repeated redaction): everything
            // sequenced before them is durable now, which is all they waited for.
            for it in items.drain(..) {
                it.reply.ok();
            }
        } else {
            let mut replies = Vec::with_capacity(n);
            let mut batch = CommitBatch {
                space_id: ctx.space_id,
                ..Default::default()
            };
            let traced = Traced::of(ctx.space_id, &items);
            for it in items.drain(..) {
                batch.absorb(it.batch);
                replies.push((it.reply, it.span));
            }
            if let Err(e) = commit(&ctx, batch, replies, traced).await {
                // The actor may already be gone (shutdown); then there is nothing to rebuild.
                let _ = ctx
                    .actor
                    .send_message(SpaceMsg::WriterFailed(e.to_string()));
                poisoned = Some(e);
            }
        }
        ctx.queued.fetch_sub(n, Ordering::AcqRel);
        ctx.metrics.commit_queue.sub(n as i64);
    }
    drop(ctx.lease);
    // Everything accepted is settled: another node may take the space now.
    ctx.fanout.bus().release(ctx.ownership).await;
}

/// The commit span of one batch and the trace each sampled event's delivery continues.
///
/// The commit span is a child of the first sampled command of the batch (so a sampled send's
/// trace holds its commit, store call and publish); a batch with no sampled command has no
/// commit span (nor store or publish span). It links
/// (`follows_from`, an OTel link) every other sampled command it carries: together, parent and
/// links name every sampled send of the batch. (The parent is not linked again: Jaeger merges a
/// link to the parent into the parent reference and loses the parent/child edge.) An event's
/// delivery continues the commit span when the event is in the commit's trace, else its own
/// command's span.
struct Traced {
    span: tracing::Span,
    /// Only sampled events; empty (no allocation) otherwise.
    events: EventTraces,
}

impl Traced {
    fn of(space_id: SpaceId, items: &[Sequenced]) -> Traced {
        let mut sampled: Vec<(usize, TraceParent)> = Vec::new();
        for (i, it) in items.iter().enumerate() {
            if let Some(t) = TraceParent::of(&it.span) {
                sampled.push((i, t));
            }
        }
        let Some((first, _)) = sampled.first() else {
            // Nothing sampled: no span (see `spacecast_observability::trace::ROOT_SPANS`).
            return Traced {
                span: tracing::Span::none(),
                events: EventTraces::new(),
            };
        };
        let commands = items.len();
        let events: usize = items.iter().map(|it| it.batch.events.len()).sum();
        let span = tracing::debug_span!(
            parent: &items[*first].span,
            "space.commit",
            space_id = %space_id,
            // Signed: the OTel layer exports unsigned fields as strings.
            batch.size = commands as i64,
            batch.events = events as i64,
        );
        for (i, _) in &sampled[1..] {
            span.follows_from(&items[*i].span);
        }
        let commit = TraceParent::of(&span);
        let mut traces = EventTraces::with_capacity(sampled.len());
        for (i, own) in sampled {
            let t = match commit {
                Some(c) if c.same_trace(&own) => c,
                _ => own,
            };
            traces.extend(items[i].batch.events.iter().map(|e| (e.seq, t)));
        }
        Traced {
            span,
            events: traces,
        }
    }
}

/// Commits one merged batch, then answers and publishes. Returns what later commands must hear
/// when the space must be rebuilt.
async fn commit(
    ctx: &WriterCtx,
    batch: CommitBatch,
    replies: Vec<(Reply, tracing::Span)>,
    traced: Traced,
) -> Result<()> {
    let start = Instant::now();
    let span = traced.span;
    // A node that may have lost the space (its lease ran out unrenewed) writes nothing; the
    // store's fencing epoch covers a pause between this check and the write.
    let result = if ctx.ownership.is_valid() {
        ctx.store.commit(&batch).instrument(span.clone()).await
    } else {
        Err(EngineError::BusUnavailable(
            "this node's lease on the space ran out".into(),
        ))
    };
    let seconds = start.elapsed().as_secs_f64();
    ctx.metrics.commit_duration.observe(seconds);
    if let Some(t) = TraceParent::of(&span) {
        ctx.metrics.commit_exemplar(seconds, t.trace_id_hex());
    }
    ctx.metrics.commit_batch_size.observe(replies.len() as f64);
    match result {
        Ok(()) | Err(EngineError::Unsettled(_)) => {
            ctx.durable_seq
                .store(batch.counters.head_seq, Ordering::Release);
            for (r, _span) in replies {
                r.ok();
            }
            for ev in &batch.events {
                ctx.metrics
                    .events_committed
                    .with_label_values(&[ev.kind.name()])
                    .inc();
            }
            // In the commit's span: the bus's publish span is its child.
            span.in_scope(|| {
                ctx.fanout
                    .committed(ctx.space_id, batch.events, &traced.events)
            });
            // Durable: each notification to its user's sessions, on every node.
            for notification in batch.notifications {
                let user = notification.user_id.clone();
                ctx.fanout
                    .users()
                    .publish(&user, UserEvent::Notification { notification });
            }
            match result {
                // Durable, but some rows it changes are not updated yet: rebuild (claim) first.
                Err(EngineError::Unsettled(reason)) => {
                    tracing::warn!(space_id = %ctx.space_id, error = %reason, "commit durable but not fully applied; reloading the space to finish it");
                    Err(EngineError::StoreUnavailable(reason))
                }
                _ => Ok(()),
            }
        }
        Err(e) => {
            if ctx.metrics.store_failure_log.allow().is_some() {
                tracing::error!(space_id = %ctx.space_id, error = %e, "group commit failed; failing the space actor so it reloads from the store");
            } else {
                tracing::debug!(space_id = %ctx.space_id, error = %e, "group commit failed");
            }
            for (r, _span) in replies {
                r.fail(&e);
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use spacecast_observability::trace::testing;

    use super::*;
    use crate::event::SpaceEvent;
    use crate::model::new_id;

    fn item(space_id: SpaceId, seqs: &[u64], span: tracing::Span) -> Sequenced {
        let (tx, _rx) = tokio::sync::oneshot::channel();
        let events = seqs
            .iter()
            .map(|&seq| SpaceEvent::any_at(space_id, seq))
            .collect();
        Sequenced {
            batch: CommitBatch {
                space_id,
                events,
                ..Default::default()
            },
            reply: Reply {
                port: tx.into(),
                outcome: Outcome::Done,
            },
            span,
        }
    }

    /// A batch of three commands, the first and the last sampled (each its own trace), the middle
    /// one not: the commit span is the first one's child, links the last one, and each sampled
    /// event's delivery continues the commit (same trace) or its own command (the other trace).
    #[test]
    fn a_commit_span_is_the_child_of_its_first_sampled_send_and_links_the_others() {
        let space_id = new_id();
        let mut seen = None;
        let spans = testing::capture(testing::always(), || {
            let a = tracing::debug_span!(parent: None, "space.command", n = 1);
            let c = tracing::debug_span!(parent: None, "space.command", n = 3);
            let (ta, tc) = (TraceParent::of(&a).unwrap(), TraceParent::of(&c).unwrap());
            let items = [
                item(space_id, &[1], a),
                item(space_id, &[2, 3], tracing::Span::none()),
                item(space_id, &[4], c),
            ];
            let traced = Traced::of(space_id, &items);
            let commit = TraceParent::of(&traced.span).expect("a sampled batch has a commit span");
            seen = Some((ta, tc, commit, traced.events.clone()));
            drop(traced);
            drop(items);
        });
        let (ta, tc, commit, events) = seen.unwrap();
        assert!(commit.same_trace(&ta) && !commit.same_trace(&tc));
        assert_eq!(
            events,
            vec![(1, commit), (4, tc)],
            "unsampled events carry nothing"
        );
        let commit_span = spans
            .iter()
            .find(|s| s.name == "space.commit")
            .expect("exported");
        let id = |t: &TraceParent| t.header()[36..52].to_owned();
        assert_eq!(commit_span.parent_span_id.to_string(), id(&ta));
        let links: Vec<String> = commit_span
            .links
            .iter()
            .map(|l| l.span_context.span_id().to_string())
            .collect();
        assert_eq!(links, vec![id(&tc)], "the other sampled send, and only it");
        let size = commit_span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "batch.size")
            .map(|kv| kv.value.to_string());
        assert_eq!(size.as_deref(), Some("3"));
    }

    #[test]
    fn a_batch_with_nothing_sampled_has_no_spans() {
        let space_id = new_id();
        let spans = testing::capture(testing::always(), || {
            let items = [item(space_id, &[1], tracing::Span::none())];
            let traced = Traced::of(space_id, &items);
            assert!(traced.span.is_none() && traced.events.is_empty());
        });
        assert!(spans.is_empty(), "{spans:?}");
    }
}
