//! The domain model: spaces, members, messages, and the timestamps and ids they carry.
//!
//! Field names follow the Space7 wire contract (reference/space7.md §2) so the edge can serialize
//! these types directly; Spacecast's own extensions (`seq`, `power_level`, …) are extra fields,
//! which the Space7 client ignores.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A space's id. UUIDv7, so ids sort by creation time.
pub type SpaceId = Uuid;
/// A message's id. UUIDv7.
pub type MessageId = Uuid;
/// A position in a space's event log: gapless and strictly increasing from 1.
pub type Seq = u64;

/// Power level of an ordinary member.
pub const POWER_MEMBER: i32 = 0;
/// Power level from which a member moderates (deletes others' messages; posts in `admins` spaces).
pub const POWER_MODERATOR: i32 = 50;
/// Power level of an admin; the creator of a space gets it.
pub const POWER_ADMIN: i32 = 100;

/// Milliseconds since the Unix epoch; serialized as ISO-8601 / RFC 3339 in UTC (`…T…Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let now = time::OffsetDateTime::now_utc();
        Timestamp((now.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    /// RFC 3339 with millisecond precision, e.g. `2026-11-22T02:04:18.123Z`.
    pub fn to_rfc3339(self) -> String {
        let dt = time::OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        dt.format(&fmt).unwrap_or_default()
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let dt = time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
            .map_err(serde::de::Error::custom)?;
        Ok(Timestamp((dt.unix_timestamp_nanos() / 1_000_000) as i64))
    }
}

/// Who a user is, as the token says. Embedded in spaces (`creator`) and messages (`sender`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    pub user_id: String,
    pub username: String,
    pub profile_picture: String,
}

/// Whether non-members can find, read and join a space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    Public,
    Private,
}

/// Who may post.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PostingPermission {
    /// Every member.
    #[default]
    Everyone,
    /// Members with power level ≥ [`POWER_MODERATOR`].
    Admins,
}

/// A space's descriptive record: written once at creation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Space {
    pub space_id: SpaceId,
    pub title: String,
    pub description: String,
    pub visibility: Visibility,
    pub creator: UserRef,
    /// Normalised hashtags: lowercase, without a leading `#`.
    pub tags: Vec<String>,
    pub posting_permission: PostingPermission,
    pub created_at: Timestamp,
}

/// The counters a space's actor owns, stored with every batch it writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceCounters {
    /// The last sequenced event; 0 for an empty space.
    pub head_seq: Seq,
    /// Messages that exist (created and not deleted).
    pub message_count: u64,
    /// Members of the space.
    pub member_count: u64,
}

/// A member of a space.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub user: UserRef,
    pub power_level: i32,
    pub joined_at: Timestamp,
}

/// A space as read back: its record plus its counters.
#[derive(Clone, Debug, PartialEq)]
pub struct SpaceView {
    pub space: Space,
    pub counters: SpaceCounters,
}

/// Media attached to a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    Image,
    Video,
    Audio,
}

impl MediaType {
    /// Parses the Space7 `media_type` field (`image` | `video` | `audio`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "image" => Some(MediaType::Image),
            "video" => Some(MediaType::Video),
            "audio" => Some(MediaType::Audio),
            _ => None,
        }
    }

    /// The MIME top-level type this media type must have (`image/…`, `video/…`, `audio/…`).
    pub fn mime_top_level(self) -> &'static str {
        match self {
            MediaType::Image => "image",
            MediaType::Video => "video",
            MediaType::Audio => "audio",
        }
    }
}

/// One appreciation ("like") of a message. `id` is the seq of the event that added it, so it is a
/// number unique within the space, as the Space7 client expects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Like {
    pub id: u64,
    pub user_id: String,
}

/// A message, in the Space7 shape plus `seq`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub message_id: MessageId,
    pub space_id: SpaceId,
    /// The seq of the event that created it; also its position in recency order.
    pub seq: Seq,
    pub sender_id: String,
    /// `null` for a media-only message, as the Space7 backend sends.
    pub content: Option<String>,
    pub media_url: Option<String>,
    pub media_type: Option<MediaType>,
    pub word_count: u32,
    pub sender: UserRef,
    pub likes: Vec<Like>,
    pub appreciation_count: u32,
    pub created_at: Timestamp,
}

impl Message {
    /// Whether `user_id` currently appreciates this message.
    pub fn liked_by(&self, user_id: &str) -> bool {
        self.likes.iter().any(|l| l.user_id == user_id)
    }
}

/// Words in `text` as Space7 counts them: `text.trim().split(/\s+/).filter(Boolean).length`.
pub fn word_count(text: &str) -> u32 {
    text.split_whitespace().count() as u32
}

/// A new, time-ordered id.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_as_rfc3339_millis() {
        let t = Timestamp(1_763_776_658_123);
        let s = serde_json::to_string(&t).unwrap();
        assert_eq!(s, "\"2025-11-22T01:57:38.123Z\"");
        let back: Timestamp = serde_json::from_str(&s).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn word_count_matches_space7() {
        assert_eq!(word_count(""), 0);
        assert_eq!(word_count("   "), 0);
        assert_eq!(word_count(" hello \n  world\t! "), 3);
    }

    #[test]
    fn media_type_parses_only_the_three_kinds() {
        assert_eq!(MediaType::parse("image"), Some(MediaType::Image));
        assert_eq!(MediaType::parse("audio"), Some(MediaType::Audio));
        assert_eq!(MediaType::parse("gif"), None);
        assert_eq!(MediaType::parse(""), None);
    }
}
