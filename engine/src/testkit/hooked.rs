//! [`Hooked`]: a test double that forwards every [`Store`] call to a real store, with hooks where
//! a test injects faults or holds calls (one forwarding impl, so a new `Store` method is added
//! here once, not in every test's wrapper).

use std::ops::Deref;
use std::sync::Arc;

use async_trait::async_trait;

use crate::discovery::{UserSpaceRow, UserSpaceStats};
use crate::error::Result;
use crate::event::SpaceEvent;
use crate::model::{Member, Message, MessageId, MessageVersion, Seq, Space, SpaceId, SpaceView};
use crate::stats::{ContributorStats, SpaceStats};
use crate::store::{Claimed, CommitBatch, Direction, MessageOrder, SpaceSnapshot, Store};
use crate::unread::{Membership, ReadMarker, SpaceActivity};

/// What a test changes about a store's calls. Every method has a default that forwards.
#[async_trait]
pub trait StoreHooks: Send + Sync + 'static {
    /// Called first by every call, with the `Store` method's name; an error fails the call
    /// without reaching the store.
    fn before(&self, _op: &'static str) -> Result<()> {
        Ok(())
    }

    /// [`Store::claim`], given the real store.
    async fn claim(&self, inner: &dyn Store, space_id: SpaceId) -> Result<Option<Claimed>> {
        inner.claim(space_id).await
    }

    /// [`Store::commit`], given the real store.
    async fn commit(&self, inner: &dyn Store, batch: &CommitBatch) -> Result<()> {
        inner.commit(batch).await
    }
}

/// A real store behind [`StoreHooks`]. Derefs to the hooks, so a test calls its own controls
/// (`store.fail(…)`, `store.open_gate()`) on it directly.
pub struct Hooked<H> {
    pub inner: Arc<dyn Store>,
    pub hooks: H,
}

impl<H> Hooked<H> {
    pub fn new(inner: Arc<dyn Store>, hooks: H) -> Self {
        Hooked { inner, hooks }
    }
}

impl<H> Deref for Hooked<H> {
    type Target = H;
    fn deref(&self) -> &H {
        &self.hooks
    }
}

#[async_trait]
impl<H: StoreHooks> Store for Hooked<H> {
    async fn create_space(&self, space: &Space, creator: &Member) -> Result<()> {
        self.hooks.before("create_space")?;
        self.inner.create_space(space, creator).await
    }
    async fn claim(&self, space_id: SpaceId) -> Result<Option<Claimed>> {
        self.hooks.before("claim")?;
        self.hooks.claim(&*self.inner, space_id).await
    }
    async fn load_space(&self, space_id: SpaceId) -> Result<Option<SpaceSnapshot>> {
        self.hooks.before("load_space")?;
        self.inner.load_space(space_id).await
    }
    async fn get_space(&self, space_id: SpaceId) -> Result<Option<SpaceView>> {
        self.hooks.before("get_space")?;
        self.inner.get_space(space_id).await
    }
    async fn get_member(&self, space_id: SpaceId, user_id: &str) -> Result<Option<Member>> {
        self.hooks.before("get_member")?;
        self.inner.get_member(space_id, user_id).await
    }
    async fn spaces_of_user(&self, user_id: &str) -> Result<Vec<(SpaceView, Member)>> {
        self.hooks.before("spaces_of_user")?;
        self.inner.spaces_of_user(user_id).await
    }
    async fn commit(&self, batch: &CommitBatch) -> Result<()> {
        self.hooks.before("commit")?;
        self.hooks.commit(&*self.inner, batch).await
    }
    async fn read_events(
        &self,
        space_id: SpaceId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<SpaceEvent>> {
        self.hooks.before("read_events")?;
        self.inner.read_events(space_id, after, limit).await
    }
    async fn page_messages(
        &self,
        space_id: SpaceId,
        order: MessageOrder,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.hooks.before("page_messages")?;
        self.inner
            .page_messages(space_id, order, offset, limit)
            .await
    }
    async fn scan_members(
        &self,
        space_id: SpaceId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Member>> {
        self.hooks.before("scan_members")?;
        self.inner.scan_members(space_id, after, limit).await
    }
    async fn scan_messages(
        &self,
        space_id: SpaceId,
        after: Seq,
        before: Seq,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.hooks.before("scan_messages")?;
        self.inner
            .scan_messages(space_id, after, before, direction, limit)
            .await
    }
    async fn get_message(
        &self,
        space_id: SpaceId,
        message_id: MessageId,
    ) -> Result<Option<Message>> {
        self.hooks.before("get_message")?;
        self.inner.get_message(space_id, message_id).await
    }
    async fn message_history(
        &self,
        space_id: SpaceId,
        message_id: MessageId,
    ) -> Result<Vec<MessageVersion>> {
        self.hooks.before("message_history")?;
        self.inner.message_history(space_id, message_id).await
    }
    async fn get_reaction(
        &self,
        space_id: SpaceId,
        message_id: MessageId,
        key: &str,
        user_id: &str,
    ) -> Result<Option<Seq>> {
        self.hooks.before("get_reaction")?;
        self.inner
            .get_reaction(space_id, message_id, key, user_id)
            .await
    }
    async fn user_reactions(
        &self,
        space_id: SpaceId,
        user_id: &str,
        items: Vec<(MessageId, Vec<String>)>,
    ) -> Result<Vec<Vec<String>>> {
        self.hooks.before("user_reactions")?;
        self.inner.user_reactions(space_id, user_id, items).await
    }
    async fn idempotent_send(
        &self,
        space_id: SpaceId,
        sender_id: &str,
        key: &str,
    ) -> Result<Option<MessageId>> {
        self.hooks.before("idempotent_send")?;
        self.inner.idempotent_send(space_id, sender_id, key).await
    }
    async fn space_stats(&self, space_id: SpaceId) -> Result<Option<SpaceStats>> {
        self.hooks.before("space_stats")?;
        self.inner.space_stats(space_id).await
    }
    async fn get_contributor(
        &self,
        space_id: SpaceId,
        user_id: &str,
    ) -> Result<Option<ContributorStats>> {
        self.hooks.before("get_contributor")?;
        self.inner.get_contributor(space_id, user_id).await
    }
    async fn contributors(&self, space_id: SpaceId) -> Result<Vec<ContributorStats>> {
        self.hooks.before("contributors")?;
        self.inner.contributors(space_id).await
    }
    async fn ping(&self) -> Result<()> {
        self.hooks.before("ping")?;
        self.inner.ping().await
    }
    async fn close(&self) -> Result<()> {
        self.hooks.before("close")?;
        self.inner.close().await
    }

    // ---- disc: discovery and user stats (issue 12) ----
    async fn newest_public_spaces(&self, limit: usize) -> Result<Vec<SpaceId>> {
        self.hooks.before("newest_public_spaces")?;
        self.inner.newest_public_spaces(limit).await
    }
    async fn spaces_with_tag(&self, tag: &str, limit: usize) -> Result<Vec<SpaceId>> {
        self.hooks.before("spaces_with_tag")?;
        self.inner.spaces_with_tag(tag, limit).await
    }
    async fn search_words(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, SpaceId, bool)>> {
        self.hooks.before("search_words")?;
        self.inner.search_words(prefix, limit).await
    }
    async fn activity_in_hour(&self, hour: i64) -> Result<Vec<(SpaceId, u64)>> {
        self.hooks.before("activity_in_hour")?;
        self.inner.activity_in_hour(hour).await
    }
    async fn space_hour_activity(&self, space_id: SpaceId, hour: i64) -> Result<u64> {
        self.hooks.before("space_hour_activity")?;
        self.inner.space_hour_activity(space_id, hour).await
    }
    async fn get_user_space_stats(
        &self,
        user_id: &str,
        space_id: SpaceId,
    ) -> Result<Option<UserSpaceStats>> {
        self.hooks.before("get_user_space_stats")?;
        self.inner.get_user_space_stats(user_id, space_id).await
    }
    async fn user_space_rows(&self, user_id: &str) -> Result<Vec<UserSpaceRow>> {
        self.hooks.before("user_space_rows")?;
        self.inner.user_space_rows(user_id).await
    }

    // ---- notif: notifications (issue 12) ----
    async fn notifications(
        &self,
        user_id: &str,
    ) -> Result<Vec<crate::notifications::Notification>> {
        self.hooks.before("notifications")?;
        self.inner.notifications(user_id).await
    }
    async fn has_notification(&self, user_id: &str, notification_id: uuid::Uuid) -> Result<bool> {
        self.hooks.before("has_notification")?;
        self.inner.has_notification(user_id, notification_id).await
    }
    async fn mark_notifications_read(&self, user_id: &str, ids: &[uuid::Uuid]) -> Result<()> {
        self.hooks.before("mark_notifications_read")?;
        self.inner.mark_notifications_read(user_id, ids).await
    }

    // ---- unread: read markers, unread counts, the inbox (issue 12) ----
    async fn read_marker(&self, space_id: SpaceId, user_id: &str) -> Result<Option<ReadMarker>> {
        self.hooks.before("read_marker")?;
        self.inner.read_marker(space_id, user_id).await
    }
    async fn top_level_at(&self, space_id: SpaceId, seq: Seq) -> Result<Option<u64>> {
        self.hooks.before("top_level_at")?;
        self.inner.top_level_at(space_id, seq).await
    }
    async fn space_activity(&self, space_id: SpaceId) -> Result<Option<SpaceActivity>> {
        self.hooks.before("space_activity")?;
        self.inner.space_activity(space_id).await
    }
    async fn memberships_of_user(&self, user_id: &str) -> Result<Vec<Membership>> {
        self.hooks.before("memberships_of_user")?;
        self.inner.memberships_of_user(user_id).await
    }

    // ---- search: message search (issue 12) ----
    async fn scan_spaces(&self, after: Option<SpaceId>, limit: usize) -> Result<Vec<SpaceView>> {
        self.hooks.before("scan_spaces")?;
        self.inner.scan_spaces(after, limit).await
    }
}
