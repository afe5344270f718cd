//! A [`Store`] wrapper that gives every backend the same metrics and spans: call latency by
//! operation (`spacecast_store_op_duration_seconds{op}`), failures
//! (`spacecast_store_errors_total{op, kind}`, the kind from [`crate::error::EngineError::store_error_kind`]), and a `store.<op>` tracing span.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use spacecast_observability::Metrics;
use tracing::Instrument;

use super::{Claimed, CommitBatch, Direction, MessageOrder, SpaceSnapshot, Store};
use crate::discovery::{UserSpaceRow, UserSpaceStats};
use crate::error::Result;
use crate::event::SpaceEvent;
use crate::model::{Member, Message, MessageId, MessageVersion, Seq, Space, SpaceId, SpaceView};
use crate::notifications::Notification;
use crate::stats::{ContributorStats, SpaceStats};
use crate::unread::{Membership, ReadMarker, SpaceActivity};
use uuid::Uuid;

/// Wraps a backend; see the module doc.
pub struct Instrumented {
    inner: Arc<dyn Store>,
    metrics: Metrics,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn Store>, metrics: Metrics) -> Arc<Self> {
        Arc::new(Instrumented { inner, metrics })
    }

    async fn timed<T>(&self, op: &'static str, fut: impl Future<Output = Result<T>>) -> Result<T> {
        self.run(op, tracing::debug_span!("store", op), fut).await
    }

    /// [`Instrumented::timed`] for a call on one space: its span names the space.
    async fn timed_in<T>(
        &self,
        op: &'static str,
        space_id: SpaceId,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let span = tracing::debug_span!("store", op, space_id = %space_id);
        self.run(op, span, fut).await
    }

    async fn run<T>(
        &self,
        op: &'static str,
        span: tracing::Span,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let start = Instant::now();
        let out = fut.instrument(span).await;
        self.metrics
            .store_duration
            .with_label_values(&[op])
            .observe(start.elapsed().as_secs_f64());
        if let Err(e) = &out {
            self.metrics
                .store_errors
                .with_label_values(&[op, e.store_error_kind()])
                .inc();
            // A failing store fails every call: one `warn` line per second, the rest at debug
            // (every failure is counted above).
            if self.metrics.store_failure_log.allow().is_some() {
                tracing::warn!(op, error = %e, "store call failed");
            } else {
                tracing::debug!(op, error = %e, "store call failed");
            }
        }
        out
    }
}

#[async_trait]
impl Store for Instrumented {
    async fn create_space(&self, space: &Space, creator: &Member) -> Result<()> {
        self.timed("create_space", self.inner.create_space(space, creator))
            .await
    }
    async fn claim(&self, space_id: SpaceId) -> Result<Option<Claimed>> {
        self.timed_in("claim", space_id, self.inner.claim(space_id))
            .await
    }
    async fn load_space(&self, space_id: SpaceId) -> Result<Option<SpaceSnapshot>> {
        self.timed_in("load_space", space_id, self.inner.load_space(space_id))
            .await
    }
    async fn get_space(&self, space_id: SpaceId) -> Result<Option<SpaceView>> {
        self.timed("get_space", self.inner.get_space(space_id))
            .await
    }
    async fn get_member(&self, space_id: SpaceId, user_id: &str) -> Result<Option<Member>> {
        self.timed("get_member", self.inner.get_member(space_id, user_id))
            .await
    }
    async fn spaces_of_user(&self, user_id: &str) -> Result<Vec<(SpaceView, Member)>> {
        self.timed("spaces_of_user", self.inner.spaces_of_user(user_id))
            .await
    }
    async fn commit(&self, batch: &CommitBatch) -> Result<()> {
        self.timed_in("commit", batch.space_id, self.inner.commit(batch))
            .await
    }
    async fn read_events(
        &self,
        space_id: SpaceId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<SpaceEvent>> {
        self.timed(
            "read_events",
            self.inner.read_events(space_id, after, limit),
        )
        .await
    }
    async fn page_messages(
        &self,
        space_id: SpaceId,
        order: MessageOrder,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.timed(
            "page_messages",
            self.inner.page_messages(space_id, order, offset, limit),
        )
        .await
    }
    async fn scan_messages(
        &self,
        space_id: SpaceId,
        after: Seq,
        before: Seq,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.timed(
            "scan_messages",
            self.inner
                .scan_messages(space_id, after, before, direction, limit),
        )
        .await
    }
    async fn scan_members(
        &self,
        space_id: SpaceId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Member>> {
        self.timed(
            "scan_members",
            self.inner.scan_members(space_id, after, limit),
        )
        .await
    }
    async fn get_message(
        &self,
        space_id: SpaceId,
        message_id: MessageId,
    ) -> Result<Option<Message>> {
        self.timed("get_message", self.inner.get_message(space_id, message_id))
            .await
    }
    async fn message_history(
        &self,
        space_id: SpaceId,
        message_id: MessageId,
    ) -> Result<Vec<MessageVersion>> {
        self.timed(
            "message_history",
            self.inner.message_history(space_id, message_id),
        )
        .await
    }
    async fn get_reaction(
        &self,
        space_id: SpaceId,
        message_id: MessageId,
        key: &str,
        user_id: &str,
    ) -> Result<Option<Seq>> {
        self.timed(
            "get_reaction",
            self.inner.get_reaction(space_id, message_id, key, user_id),
        )
        .await
    }
    async fn user_reactions(
        &self,
        space_id: SpaceId,
        user_id: &str,
        items: Vec<(MessageId, Vec<String>)>,
    ) -> Result<Vec<Vec<String>>> {
        self.timed(
            "user_reactions",
            self.inner.user_reactions(space_id, user_id, items),
        )
        .await
    }
    async fn idempotent_send(
        &self,
        space_id: SpaceId,
        sender_id: &str,
        key: &str,
    ) -> Result<Option<MessageId>> {
        self.timed(
            "idempotent_send",
            self.inner.idempotent_send(space_id, sender_id, key),
        )
        .await
    }
    async fn space_stats(&self, space_id: SpaceId) -> Result<Option<SpaceStats>> {
        self.timed("space_stats", self.inner.space_stats(space_id))
            .await
    }
    async fn get_contributor(
        &self,
        space_id: SpaceId,
        user_id: &str,
    ) -> Result<Option<ContributorStats>> {
        self.timed(
            "get_contributor",
            self.inner.get_contributor(space_id, user_id),
        )
        .await
    }
    async fn contributors(&self, space_id: SpaceId) -> Result<Vec<ContributorStats>> {
        self.timed("contributors", self.inner.contributors(space_id))
            .await
    }
    async fn ping(&self) -> Result<()> {
        self.timed("ping", self.inner.ping()).await
    }
    async fn close(&self) -> Result<()> {
        self.timed("close", self.inner.close()).await
    }

    // ---- disc: discovery and user stats (issue 12) ----
    async fn newest_public_spaces(&self, limit: usize) -> Result<Vec<SpaceId>> {
        self.timed(
            "newest_public_spaces",
            self.inner.newest_public_spaces(limit),
        )
        .await
    }
    async fn spaces_with_tag(&self, tag: &str, limit: usize) -> Result<Vec<SpaceId>> {
        self.timed("spaces_with_tag", self.inner.spaces_with_tag(tag, limit))
            .await
    }
    async fn search_words(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, SpaceId, bool)>> {
        self.timed("search_words", self.inner.search_words(prefix, limit))
            .await
    }
    async fn activity_in_hour(&self, hour: i64) -> Result<Vec<(SpaceId, u64)>> {
        self.timed("activity_in_hour", self.inner.activity_in_hour(hour))
            .await
    }
    async fn space_hour_activity(&self, space_id: SpaceId, hour: i64) -> Result<u64> {
        self.timed(
            "space_hour_activity",
            self.inner.space_hour_activity(space_id, hour),
        )
        .await
    }
    async fn get_user_space_stats(
        &self,
        user_id: &str,
        space_id: SpaceId,
    ) -> Result<Option<UserSpaceStats>> {
        self.timed(
            "get_user_space_stats",
            self.inner.get_user_space_stats(user_id, space_id),
        )
        .await
    }
    async fn user_space_rows(&self, user_id: &str) -> Result<Vec<UserSpaceRow>> {
        self.timed("user_space_rows", self.inner.user_space_rows(user_id))
            .await
    }

    // ---- notif: notifications (issue 12) ----
    async fn notifications(&self, user_id: &str) -> Result<Vec<Notification>> {
        self.timed("notifications", self.inner.notifications(user_id))
            .await
    }
    async fn has_notification(&self, user_id: &str, notification_id: Uuid) -> Result<bool> {
        self.timed(
            "has_notification",
            self.inner.has_notification(user_id, notification_id),
        )
        .await
    }
    async fn mark_notifications_read(&self, user_id: &str, ids: &[Uuid]) -> Result<()> {
        self.timed(
            "mark_notifications_read",
            self.inner.mark_notifications_read(user_id, ids),
        )
        .await
    }

    // ---- unread: read markers, unread counts, the inbox (issue 12) ----
    async fn read_marker(&self, space_id: SpaceId, user_id: &str) -> Result<Option<ReadMarker>> {
        self.timed_in(
            "read_marker",
            space_id,
            self.inner.read_marker(space_id, user_id),
        )
        .await
    }
    async fn top_level_at(&self, space_id: SpaceId, seq: Seq) -> Result<Option<u64>> {
        self.timed_in(
            "top_level_at",
            space_id,
            self.inner.top_level_at(space_id, seq),
        )
        .await
    }
    async fn space_activity(&self, space_id: SpaceId) -> Result<Option<SpaceActivity>> {
        self.timed_in(
            "space_activity",
            space_id,
            self.inner.space_activity(space_id),
        )
        .await
    }
    async fn memberships_of_user(&self, user_id: &str) -> Result<Vec<Membership>> {
        self.timed(
            "memberships_of_user",
            self.inner.memberships_of_user(user_id),
        )
        .await
    }

    // ---- search: message search (issue 12) ----
    async fn scan_spaces(&self, after: Option<SpaceId>, limit: usize) -> Result<Vec<SpaceView>> {
        self.timed("scan_spaces", self.inner.scan_spaces(after, limit))
            .await
    }
}
