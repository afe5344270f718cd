//! The per-user channel: events addressed to one user, delivered to every live realtime session
//! of that user, on any node.
//!
//! - [`UserEvent`]: what can be sent (one variant per event type). Its JSON form is the native
//!   stream frame, `{"type": <event type>, …data}`; Socket.IO emits `<event type>` with the data
//!   (see [`UserEvent::socketio_payload`]). Adding an event type is a variant here (with its
//!   `#[serde(rename)]` if the snake-case name is not the wire name) and its arm in
//!   [`UserEvent::name`]; every protocol then carries it.
//! - [`UserChannels`]: this node's subscriptions by user ([`crate::Engine::subscribe_user`] /
//!   [`crate::Engine::unsubscribe_user`], one per session) and publishing
//!   ([`crate::Engine::publish_to_user`]).
//!
//! # Guarantees
//! - **Only that user.** An item is delivered to the subscribers of the user it names, and a
//!   node that receives one from the bus checks the user id it carries against the channel's
//!   (bus subjects are derived from a hash of the user id, so they could collide; the check
//!   makes a collision harmless).
//! - **Every node with a session of the user**: in a cluster, a node subscribes to the user's
//!   bus subject while it has at least one local subscription of that user, and
//!   [`UserChannels::subscribe`] returns only once that bus subscription is registered.
//! - **Best effort**, like typing: not sequenced, not stored by the channel, lost while the bus
//!   is down or the user has no session. What must survive is stored by its feature
//!   (notifications are in the store before they are published).
//! - **Bounded.** Each subscriber's queue is a `broadcast` ring of `capacity` items; a
//!   subscriber that falls behind it sees `Lagged` and its session ends as a slow consumer
//!   (4008); publishing never waits for a subscriber. One item is one `Arc`, rendered at most
//!   once per protocol ([`Renderings`]) and shared by every session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use spacecast_observability::Metrics;
use tokio::sync::broadcast;

use crate::bus::{Bus, Serving};
use crate::error::Result;
use crate::event::Renderings;
use crate::model::{Seq, SpaceId};
use crate::notifications::Notification;

/// Each subscription's queue, in user events: a session this far behind its user's events is a
/// slow consumer (they are rare next to space events: notifications, read markers).
pub const USER_QUEUE: usize = 256;

/// An event for one user's sessions. Its JSON is the native frame: `{"type": …, …data}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UserEvent {
    /// A new notification (already durable): `{"type":"notification","notification":{…}}`.
    Notification { notification: Notification },
    /// The user's read marker in a space moved forward (`POST /v1/spaces/{id}/read`, through any
    /// node): `{"type":"read_marker","space_id","seq","unread"}`, to every session of the user,
    /// so their other devices clear the space's unread count (see [`crate::unread`]).
    ReadMarker {
        #[schema(value_type = String, format = Uuid)]
        space_id: SpaceId,
        /// The marker's seq now.
        #[schema(value_type = u64, minimum = 0)]
        seq: Seq,
        /// Top-level messages after it when it moved.
        #[schema(minimum = 0)]
        unread: u64,
    },
}

impl UserEvent {
    /// The event's `type`: the native frame's `type`, the Socket.IO event name and the metric
    /// label.
    pub fn name(&self) -> &'static str {
        match self {
            UserEvent::Notification { .. } => "notification",
            UserEvent::ReadMarker { .. } => "read_marker",
        }
    }

    /// The Socket.IO payload: the frame without its `type`; a frame whose only other field is
    /// named like the type (`{"type":"notification","notification":{…}}`) gives that field's
    /// value (`emit("notification", {…})`).
    pub fn socketio_payload(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let Some(obj) = v.as_object_mut() else {
            return v;
        };
        obj.remove("type");
        if obj.len() == 1
            && let Some(inner) = obj.remove(self.name())
        {
            return inner;
        }
        v
    }
}

/// A published user event, shared (`Arc`) by every local subscriber of the user.
#[derive(Debug)]
pub struct UserPublished {
    /// The user it is for.
    pub user_id: String,
    pub event: UserEvent,
    /// Its renderings, one per protocol, each made once.
    pub rendered: Renderings,
}

/// What a user subscription receives.
pub type UserItem = Arc<UserPublished>;

/// One user's local subscriptions.
struct Channel {
    tx: broadcast::Sender<UserItem>,
    /// Local subscriptions (sessions) of the user.
    count: usize,
    /// The bus subscription, made once by the first subscriber; dropped with the last.
    receiving: Arc<tokio::sync::OnceCell<Serving>>,
}

/// This node's per-user channels (see the module doc). Cheap to clone.
#[derive(Clone)]
pub struct UserChannels {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    bus: Arc<dyn Bus>,
    capacity: usize,
    metrics: Metrics,
}

impl UserChannels {
    /// `capacity` is each subscriber's queue length in events.
    pub fn new(bus: Arc<dyn Bus>, capacity: usize, metrics: Metrics) -> Self {
        UserChannels {
            channels: Arc::default(),
            bus,
            capacity: capacity.max(1),
            metrics,
        }
    }

    /// Starts receiving `user_id`'s events (from this node and, in a cluster, from every other
    /// node). Once this returns, every event published to the user afterwards reaches the
    /// receiver. Pair with [`UserChannels::release`] once the receiver is dropped.
    ///
    /// # Errors
    /// `BusUnavailable` (the subscription is not counted then).
    pub async fn subscribe(&self, user_id: &str) -> Result<broadcast::Receiver<UserItem>> {
        let (rx, receiving) = {
            let mut ch = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            let c = ch.entry(user_id.to_owned()).or_insert_with(|| Channel {
                tx: broadcast::channel(self.capacity).0,
                count: 0,
                receiving: Arc::default(),
            });
            c.count += 1;
            let out = (c.tx.subscribe(), c.receiving.clone());
            self.gauges(&ch);
            out
        };
        let made = receiving
            .get_or_try_init(|| self.bus.watch_user(user_id, self.clone()))
            .await;
        if let Err(e) = made {
            drop(rx);
            self.release(user_id);
            return Err(e);
        }
        Ok(rx)
    }

    /// One local subscription of `user_id` ended (its receiver dropped); the last one stops
    /// receiving the user's events from the bus.
    pub fn release(&self, user_id: &str) {
        let mut ch = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = ch.get_mut(user_id) {
            c.count = c.count.saturating_sub(1);
            if c.count == 0 {
                ch.remove(user_id);
            }
        }
        self.gauges(&ch);
    }

    /// Publishes `event` to every session of `user_id`: this node's at once, the other nodes'
    /// through the bus. Never waits.
    pub fn publish(&self, user_id: &str, event: UserEvent) {
        self.metrics
            .user_events_published
            .with_label_values(&[event.name()])
            .inc();
        self.bus.publish_user(user_id, &event);
        self.deliver(user_id, event);
    }

    /// An event another node published to `user_id`: to this node's sessions of that user.
    pub fn received(&self, user_id: &str, event: UserEvent) {
        self.deliver(user_id, event);
    }

    fn deliver(&self, user_id: &str, event: UserEvent) {
        let ch = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = ch.get(user_id) {
            let item = Arc::new(UserPublished {
                user_id: user_id.to_owned(),
                event,
                rendered: Renderings::default(),
            });
            // Err only means no receiver is left.
            let _ = c.tx.send(item);
        }
    }

    /// Users with at least one local subscription.
    pub fn users(&self) -> usize {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    fn gauges(&self, ch: &HashMap<String, Channel>) {
        self.metrics.user_channels.set(ch.len() as i64);
        self.metrics
            .user_subscriptions
            .set(ch.values().map(|c| c.count as i64).sum());
    }
}

/// The bus subject token of a user: hex of the first 16 bytes of the SHA-256 of the id (user ids
/// are arbitrary strings; a subject token is not). Collisions are harmless (see the module doc).
pub fn subject_token(user_id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(user_id.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::LocalBus;
    use crate::model::{Timestamp, UserRef, new_id};
    use crate::notifications::{Notification, NotificationKind, appreciation_id};

    fn note(user: &str) -> UserEvent {
        let m = new_id();
        let actor = UserRef {
            user_id: "a".into(),
            username: "alice".into(),
            profile_picture: String::new(),
        };
        UserEvent::Notification {
            notification: Notification::new(
                appreciation_id(m, "a"),
                NotificationKind::MessageAppreciated,
                user,
                &actor,
                new_id(),
                "S",
                m,
                Timestamp(1),
            ),
        }
    }

    #[tokio::test]
    async fn events_reach_every_subscription_of_their_user_and_no_other() {
        let metrics = Metrics::new();
        let ch = UserChannels::new(Arc::new(LocalBus::new("n")), 4, metrics.clone());
        let mut b1 = ch.subscribe("bob").await.unwrap();
        let mut b2 = ch.subscribe("bob").await.unwrap();
        let mut c = ch.subscribe("carol").await.unwrap();
        assert_eq!(metrics.user_subscriptions.get(), 3);
        assert_eq!(metrics.user_channels.get(), 2);
        ch.publish("bob", note("bob"));
        let (x, y) = (b1.recv().await.unwrap(), b2.recv().await.unwrap());
        assert!(Arc::ptr_eq(&x, &y), "one shared item");
        assert_eq!(x.user_id, "bob");
        assert!(c.try_recv().is_err(), "carol got bob's event");
        // A user with no session: nothing kept.
        ch.publish("dave", note("dave"));
        // A slow subscriber lags, it never blocks the others.
        for _ in 0..6 {
            ch.publish("bob", note("bob"));
        }
        assert!(matches!(
            b2.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
        drop((b1, b2, c));
        for u in ["bob", "bob", "carol"] {
            ch.release(u);
        }
        assert_eq!(ch.users(), 0);
        assert_eq!(metrics.user_subscriptions.get(), 0);
        assert_eq!(
            metrics
                .user_events_published
                .with_label_values(&["notification"])
                .get(),
            8
        );
    }

    /// A bus that is down: every subscription fails.
    struct DownBus;

    #[async_trait::async_trait]
    impl Bus for DownBus {
        fn node_id(&self) -> &str {
            "down"
        }
        fn clustered(&self) -> bool {
            true
        }
        fn healthy(&self) -> bool {
            false
        }
        async fn acquire(
            &self,
            _: crate::model::SpaceId,
        ) -> Result<Option<Arc<crate::bus::Lease>>> {
            Err(crate::bus::unavailable("down"))
        }
        async fn release(&self, _: Arc<crate::bus::Lease>) {}
        async fn serve(
            &self,
            _: crate::model::SpaceId,
            _: Arc<dyn crate::bus::CommandSink>,
        ) -> Result<Serving> {
            Err(crate::bus::unavailable("down"))
        }
        async fn forward(
            &self,
            _: crate::model::SpaceId,
            _: &crate::space::command::Command,
        ) -> Result<crate::bus::Answer> {
            Err(crate::bus::unavailable("down"))
        }
        fn publish(&self, _: crate::model::SpaceId, _: &[crate::event::Published]) {}
        fn publish_typing(&self, _: &crate::hub::Typing) {}
        async fn watch(&self, _: crate::model::SpaceId, _: crate::bus::Fanout) -> Result<Serving> {
            Err(crate::bus::unavailable("down"))
        }
        async fn watch_user(&self, _: &str, _: UserChannels) -> Result<Serving> {
            Err(crate::bus::unavailable("down"))
        }
    }

    #[tokio::test]
    async fn a_subscription_the_bus_refuses_is_an_error_and_is_not_counted() {
        let metrics = Metrics::new();
        let ch = UserChannels::new(Arc::new(DownBus), 4, metrics.clone());
        let e = ch.subscribe("bob").await.expect_err("the bus is down");
        assert_eq!(e.code(), "bus_unavailable");
        assert_eq!(ch.users(), 0);
        assert_eq!(metrics.user_subscriptions.get(), 0);
    }

    #[test]
    fn the_native_frame_and_the_socketio_payload_of_a_notification() {
        let ev = note("bob");
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["type"], "notification");
        assert_eq!(v["notification"]["user_id"], "bob");
        let p = ev.socketio_payload();
        assert_eq!(p["user_id"], "bob");
        assert_eq!(p["type"], "message_appreciated");
        assert_eq!(serde_json::from_value::<UserEvent>(v).unwrap(), ev);
    }

    #[test]
    fn subject_tokens_are_hex_and_differ_per_user() {
        let a = subject_token("alice");
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, subject_token("alice"));
        assert_ne!(a, subject_token("alice.*"));
    }
}
