//! Notifications: what a user is told about other people's actions on their messages.
//!
//! # Which, and when
//! Created by the space actor, in the commit of the event that causes them (so an acknowledged
//! send's or appreciation's notifications are durable with it, and a command that failed
//! notifies nobody):
//! - [`NotificationKind::MessageAppreciated`]: someone appreciated your message (Space7's
//!   appreciate toggle, or the `/v1` reaction key `appreciate`); never for your own. At most one
//!   per (message, appreciating user): its id is deterministic, and the actor creates it only if
//!   the recipient does not have it yet, so toggling off and on again notifies once.
//!   Un-appreciating does **not** remove it: a notification records that something happened.
//! - [`NotificationKind::Mention`]: a new message's `mentions` name you.
//! - [`NotificationKind::Reply`]: someone else replied in a thread whose root you wrote.
//!
//! A new message notifies each recipient at most once: a mentioned thread author gets the
//! `mention`, not also the `reply`. Only current members of the space are notified (in every
//! space, so a private space's activity never reaches a non-member), never the actor themself.
//! The text (`message`) names the actor and the space, never the message content;
//! `reference_id` is the message's id.
//!
//! # Ids
//! `notification_id` is a UUIDv5 of the cause (`appreciate:<message>:<appreciating user>`, or
//! `message:<message>:<recipient>`), so a retried commit or a claim that re-applies it writes
//! the same row. `id`, the number the Space7 app reads first, is the top 53 bits of that UUID
//! (a JavaScript-safe integer, never 0): deterministic too. Two notifications of one user share
//! an `id` with probability about n²/2⁵⁴ (≈ 2·10⁻¹² for the 200 kept); a lookup by `id` then
//! resolves to the newest.
//!
//! # Storage bound
//! Each user keeps their newest [`NOTIFICATIONS_KEPT`] (200) notifications; older ones are
//! trimmed when a newer one is written and when the list is read, and a list never shows more
//! than that, so `total` and `unreadCount` are computed from at most that many rows.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{MessageId, SpaceId, Timestamp, UserRef};

/// How many notifications each user keeps (the newest; see the module doc).
pub const NOTIFICATIONS_KEPT: usize = 200;

/// The namespace of notification UUIDs (v5).
const NAMESPACE: Uuid = Uuid::from_u128(0x6e6f_7469_6673_7061_6365_6361_7374_0001);

/// What a notification is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// Someone appreciated your message.
    MessageAppreciated,
    /// A new message mentions you.
    Mention,
    /// Someone replied in a thread you started.
    Reply,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::MessageAppreciated => "message_appreciated",
            NotificationKind::Mention => "mention",
            NotificationKind::Reply => "reply",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "message_appreciated" => Some(NotificationKind::MessageAppreciated),
            "mention" => Some(NotificationKind::Mention),
            "reply" => Some(NotificationKind::Reply),
            _ => None,
        }
    }
}

/// One notification, as stored and as the API renders it (Space7's `Notification`, plus
/// `space_id`, `actor_id` and `actor`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notification {
    /// A JavaScript-safe integer derived from `notification_id`, unique per user in practice
    /// (see the module doc); Space7 clients read it first.
    #[schema(minimum = 1, maximum = 9007199254740991_i64)]
    pub id: u64,
    #[schema(value_type = String, format = Uuid)]
    pub notification_id: Uuid,
    /// The recipient.
    pub user_id: String,
    #[serde(rename = "type")]
    pub kind: NotificationKind,
    /// Short human text, without message content (e.g. "alice appreciated your message in Rust
    /// tips").
    pub message: String,
    /// The id of the message it is about.
    pub reference_id: String,
    pub is_read: bool,
    pub created_at: Timestamp,
    #[schema(value_type = String, format = Uuid)]
    pub space_id: SpaceId,
    /// Who caused it.
    pub actor_id: String,
    pub actor: UserRef,
}

/// The JavaScript-safe number of a notification UUID: its top 53 bits, never 0.
pub fn numeric_id(notification_id: Uuid) -> u64 {
    let n = (notification_id.as_u128() >> 75) as u64;
    n.max(1)
}

/// The notification id of `appreciator`'s appreciation of `message_id`.
pub fn appreciation_id(message_id: MessageId, appreciator: &str) -> Uuid {
    Uuid::new_v5(
        &NAMESPACE,
        format!("appreciate:{message_id}:{appreciator}").as_bytes(),
    )
}

/// The notification id of a new message `message_id` for `recipient` (mention or reply).
pub fn message_id_for(message_id: MessageId, recipient: &str) -> Uuid {
    Uuid::new_v5(
        &NAMESPACE,
        format!("message:{message_id}:{recipient}").as_bytes(),
    )
}

impl Notification {
    /// A new, unread notification for `recipient` about `message_id`, caused by `actor` in the
    /// space titled `space_title`, at `at` (the space actor's clock).
    // Each argument is one field of the cause, all named at the three call sites; a parameter
    // struct would only repeat the names.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        notification_id: Uuid,
        kind: NotificationKind,
        recipient: &str,
        actor: &UserRef,
        space_id: SpaceId,
        space_title: &str,
        message_id: MessageId,
        at: Timestamp,
    ) -> Self {
        let who = &actor.username;
        let message = match kind {
            NotificationKind::MessageAppreciated => {
                format!("{who} appreciated your message in {space_title}")
            }
            NotificationKind::Mention => format!("{who} mentioned you in {space_title}"),
            NotificationKind::Reply => format!("{who} replied to your message in {space_title}"),
        };
        Notification {
            id: numeric_id(notification_id),
            notification_id,
            user_id: recipient.to_owned(),
            kind,
            message,
            reference_id: message_id.to_string(),
            is_read: false,
            created_at: at,
            space_id,
            actor_id: actor.user_id.clone(),
            actor: actor.clone(),
        }
    }

    /// Orders a user's notifications newest first (ties by id, so the order is total).
    pub fn newest_first(list: &mut [Notification]) {
        list.sort_by(|a, b| {
            b.created_at
                .0
                .cmp(&a.created_at.0)
                .then(b.notification_id.cmp(&a.notification_id))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::new_id;

    #[test]
    fn ids_are_deterministic_js_safe_and_distinct_per_cause() {
        let m = new_id();
        let a = appreciation_id(m, "bob");
        assert_eq!(a, appreciation_id(m, "bob"), "a retry writes the same row");
        assert_ne!(a, appreciation_id(m, "carol"));
        assert_ne!(a, message_id_for(m, "bob"));
        assert_eq!(message_id_for(m, "bob"), message_id_for(m, "bob"));
        for u in [a, Uuid::nil(), Uuid::max()] {
            let n = numeric_id(u);
            assert!((1..=(1u64 << 53) - 1).contains(&n), "{n} is not JS-safe");
        }
    }

    #[test]
    fn the_text_names_the_actor_and_the_space_but_not_the_message() {
        let alice = UserRef {
            user_id: "a".into(),
            username: "alice".into(),
            profile_picture: String::new(),
        };
        let m = new_id();
        let n = Notification::new(
            appreciation_id(m, "a"),
            NotificationKind::MessageAppreciated,
            "b",
            &alice,
            new_id(),
            "Rust tips",
            m,
            Timestamp(5),
        );
        assert_eq!(n.message, "alice appreciated your message in Rust tips");
        assert_eq!(n.reference_id, m.to_string());
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["type"], "message_appreciated");
        assert_eq!(v["is_read"], false);
        assert_eq!(serde_json::from_value::<Notification>(v).unwrap(), n);
    }
}
