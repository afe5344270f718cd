//! The fan-out hub: a node's local subscribers of each space.
//!
//! One `tokio::sync::broadcast` channel per watched space. Publishing is O(1) whatever the number
//! of subscribers: the item is an `Arc`, so every subscriber shares one copy of the events and of
//! their serialized frames. One item carries one group commit's events (in seq order), so a
//! burst of a thousand sends merged into one commit is one slot, not a thousand. Each
//! subscriber's queue is the channel's ring buffer: a subscriber that falls more than `capacity`
//! commits behind sees `Lagged` and is disconnected as a slow consumer (close 4008); it never
//! blocks the publisher or the other subscribers.
//!
//! # Guarantee
//! Delivery is at-most-once and in publish order per space. Space actors publish only events that
//! are already durable, in seq order, so a subscriber that detects a gap (or lag) can always
//! repair it from the store (`since_seq` resume).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use spacecast_observability::Metrics;
use spacecast_observability::trace;
use tokio::sync::broadcast;

use crate::event::{Published, Renderings};
use crate::model::SpaceId;

/// An ephemeral "user is typing" signal; not stored, not sequenced.
#[derive(Debug)]
pub struct Typing {
    pub space_id: SpaceId,
    pub user_id: String,
    pub username: String,
    /// The session that sent it, so it is not echoed back.
    pub origin_session: u64,
    /// Its renderings, one per protocol, shared by every subscriber of that protocol.
    pub rendered: Renderings,
}

impl Typing {
    /// The `origin_session` of a signal from another node: no local session has it.
    pub const REMOTE: u64 = u64::MAX;

    pub fn new(space_id: SpaceId, user_id: String, username: String, origin_session: u64) -> Self {
        Typing {
            space_id,
            user_id,
            username,
            origin_session,
            rendered: Renderings::default(),
        }
    }
}

/// What flows through the hub.
#[derive(Clone, Debug)]
pub enum HubItem {
    /// The events of one durable commit, consecutive seqs in order.
    Events(Arc<[Published]>),
    Typing(Arc<Typing>),
    /// A presence change or count (see [`crate::presence`]): ephemeral, like typing.
    Presence(Arc<crate::presence::PresenceItem>),
}

/// Local subscribers by space. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    topics: Arc<RwLock<HashMap<SpaceId, broadcast::Sender<HubItem>>>>,
    capacity: usize,
    metrics: Metrics,
}

impl Hub {
    /// `capacity` is each subscriber's queue length in items.
    pub fn new(capacity: usize, metrics: Metrics) -> Self {
        metrics
            .subscriber_queue_limit
            .set(i64::try_from(capacity.max(1)).unwrap_or(i64::MAX));
        Hub {
            topics: Arc::default(),
            capacity: capacity.max(1),
            metrics,
        }
    }

    /// Starts receiving every item published to `space_id` from now on.
    pub fn subscribe(&self, space_id: SpaceId) -> broadcast::Receiver<HubItem> {
        if let Some(tx) = self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&space_id)
        {
            return tx.subscribe();
        }
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        let tx = topics
            .entry(space_id)
            .or_insert_with(|| broadcast::channel(self.capacity).0);
        let rx = tx.subscribe();
        self.metrics.fanout_topics.set(topics.len() as i64);
        rx
    }

    /// Forgets `space_id`'s channel once its last subscriber has gone. Call after dropping a
    /// receiver; cheap when others remain.
    pub fn release(&self, space_id: SpaceId) {
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        if topics
            .get(&space_id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            topics.remove(&space_id);
            self.metrics.fanout_topics.set(topics.len() as i64);
        }
    }

    /// Hands `item` to every current subscriber of `space_id`; a no-op when there are none.
    pub fn publish(&self, space_id: SpaceId, item: HubItem) {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        let tx = topics.get(&space_id);
        // One span per sampled event on this node, never per subscriber: the hand-over to every
        // local subscriber is the one send below. Nothing is allocated when no event is sampled.
        let _spans: Vec<tracing::Span> = match &item {
            HubItem::Events(events) => {
                self.metrics.fanout_events.inc_by(events.len() as u64);
                // Signed, as every number of a span: the OTel layer exports unsigned ones as
                // strings.
                let subscribers = tx.map_or(0, broadcast::Sender::receiver_count) as i64;
                events
                    .iter()
                    .filter_map(|p| {
                        let parent = p.trace?;
                        let span = tracing::debug_span!(
                            "fanout",
                            space_id = %space_id,
                            seq = p.event.seq as i64,
                            subscribers,
                        );
                        trace::set_parent(&span, parent);
                        Some(span)
                    })
                    .collect()
            }
            HubItem::Typing(_) | HubItem::Presence(_) => Vec::new(),
        };
        if let Some(tx) = tx {
            // Err only means no receiver is left; nothing to deliver.
            let _ = tx.send(item);
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Subscribers of `space_id` on this node.
    pub fn subscriber_count(&self, space_id: SpaceId) -> usize {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&space_id)
            .map_or(0, |tx| tx.receiver_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SpaceEvent;
    use crate::model::new_id;

    fn ev(space_id: SpaceId, seq: u64) -> HubItem {
        let event = Published::new(SpaceEvent::any_at(space_id, seq));
        HubItem::Events(Arc::from(vec![event]))
    }

    #[tokio::test]
    async fn subscribers_share_one_event_and_slow_ones_lag() {
        let hub = Hub::new(2, Metrics::new());
        let s = new_id();
        let mut a = hub.subscribe(s);
        let mut b = hub.subscribe(s);
        hub.publish(s, ev(s, 1));
        let (HubItem::Events(x), HubItem::Events(y)) =
            (a.recv().await.unwrap(), b.recv().await.unwrap())
        else {
            panic!("expected events")
        };
        assert!(Arc::ptr_eq(&x, &y), "subscribers must share one allocation");
        for seq in 2..=5 {
            hub.publish(s, ev(s, seq));
        }
        // b never read: it has fallen behind a 2-item queue.
        assert!(matches!(
            b.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
        drop((a, b));
        hub.release(s);
        assert_eq!(hub.subscriber_count(s), 0);
        assert!(hub.topics.read().unwrap().is_empty());
    }
}
