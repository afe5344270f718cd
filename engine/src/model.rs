//! The domain model: spaces, members, messages, and the timestamps and ids they carry.
//!
//! Field names follow the Space7 wire contract (reference/space7.md §2) so the edge can serialize
//! these types directly; Spacecast's own extensions (`seq`, `power_level`, …) are extra fields,
//! which the Space7 client ignores.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::EngineError;

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

/// On the wire: RFC 3339 in UTC with milliseconds (`2025-11-22T01:57:38.123Z`).
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some(
                "RFC 3339 in UTC with milliseconds, e.g. `2025-11-22T01:57:38.123Z`.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

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

/// A user as their token describes them. Embedded in spaces (`creator`) and messages (`sender`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserRef {
    /// The token's `sub` (or `user_id`) claim.
    pub user_id: String,
    /// The token's `username` claim; the user id when it had none.
    pub username: String,
    /// URL, or `""` when the token had none.
    pub profile_picture: String,
}

/// Whether non-members can find, read and join a space: `public` spaces are readable by any
/// authenticated user; `private` ones only by their members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    Public,
    Private,
}

/// Who may post: `everyone` (every member) or `admins` (only members with power level ≥ 50).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PostingPermission {
    /// Every member.
    #[default]
    Everyone,
    /// Members with power level ≥ [`POWER_MODERATOR`].
    Admins,
}

/// A space's descriptive record: written at creation; its settings (today the posting
/// permission) change through the space actor, in a commit.
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

/// The kind of a message's Space7 media file (`media_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Like {
    /// The `seq` of the event that added this appreciation: a number unique within the space.
    #[schema(minimum = 1)]
    pub id: u64,
    /// Who appreciates the message.
    pub user_id: String,
}

/// A JSON object (a message's `body` and `metadata`).
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// The default `msgtype`.
pub const MSGTYPE_TEXT: &str = "text";

fn default_msgtype() -> String {
    MSGTYPE_TEXT.to_owned()
}

/// An animated image picked from a GIF provider: counts as content. The bounds stated are those
/// every send checks (the edge's, in characters; the engine's, in bytes, are wider).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Gif {
    /// An absolute `http(s)` URL of at most 512 characters (`invalid_gif`).
    #[schema(pattern = "^https?://", max_length = 512)]
    pub url: String,
    /// Pixels, at least 1 (`invalid_gif`).
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub width: u32,
    /// Pixels, at least 1 (`invalid_gif`).
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub height: u32,
    /// At most 128 characters (`invalid_gif`); absent when none was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 128)]
    pub title: Option<String>,
}

/// An uploaded file attached to a message (resolved by the edge from the upload's `media_id`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MediaItem {
    /// The upload's id (`GET /v1/media/{mediaId}` downloads it).
    #[schema(value_type = String, format = Uuid)]
    pub media_id: Uuid,
    /// The MIME type the bytes were checked to have (`image/png`, `video/mp4`, …).
    pub content_type: String,
    /// Bytes (an empty file is refused at upload).
    #[schema(minimum = 1)]
    pub size: u64,
    /// Hex SHA-256 of the bytes.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
    /// Images only: the id of the JPEG thumbnail (`GET /v1/media/{mediaId}/thumbnail`);
    /// `null` for other files.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Uuid, required = true)]
    pub thumbnail_id: Option<Uuid>,
}

/// A message: the Space7 shape plus `seq` and the native (CONTRACT §5) fields.
///
/// Every field added after Space7's has a serde default, so every record already stored (the
/// embedded store's JSON values, both stores' event logs) still decodes; `actor_id` defaults to
/// `sender_id` and `reaction_counts` to `{"appreciate": appreciation_count}` when those are absent.
///
/// In the OpenAPI document this is the one `Message` schema of both surfaces: every field is on
/// the wire but `likes` (Space7 reads) and `user_reactions` (native reads), which are optional.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(remote = "Self")]
#[schema(
    description = "A message, as both surfaces show it: the Space7 shape plus `seq` and the native \
        fields. Every property is always present except `likes` (Space7 reads: `GET \
        /api/messages/{spaceId}`) and `user_reactions` (native reads and write answers \
        under `/v1`). A native write answer (send, edit, redact) also \
        echoes the client's `local_id` when the send carried one."
)]
pub struct Message {
    /// UUIDv7.
    #[schema(value_type = String, format = Uuid)]
    pub message_id: MessageId,
    #[schema(value_type = String, format = Uuid)]
    pub space_id: SpaceId,
    /// The `seq` of the event that created it; also its position in recency order.
    #[schema(value_type = u64, minimum = 1)]
    pub seq: Seq,
    pub sender_id: String,
    /// Who sent it: `sender_id`, or the admin who sent it on the sender's behalf.
    #[serde(default)]
    #[schema(required = true)]
    pub actor_id: String,
    /// `text`, `code`, `media`, `system`, or a namespaced lowercase name (`x.poll`).
    #[serde(default = "default_msgtype")]
    #[schema(
        required = true,
        max_length = 64,
        pattern = "^(text|code|media|system|[a-z0-9_-]+(\\.[a-z0-9_-]+)+)$"
    )]
    pub msgtype: String,
    /// Trimmed text; `null` for a message without text (media only, a body, a GIF, or
    /// redacted), as the Space7 backend sends.
    #[schema(required = true)]
    pub content: Option<String>,
    /// A free-form JSON object (at most 64 KB serialized), or `null`.
    #[serde(default)]
    #[schema(value_type = Option<Object>, required = true)]
    pub body: Option<JsonObject>,
    /// Space7's attached file, or `null`: absolute (`<public_url>/api/media/<mediaId>`) when the
    /// server has `--public-url`, else relative (`/api/media/<mediaId>`). Never built from
    /// request headers. The Space7 app's image view needs an absolute URL, so set
    /// `--public-url` for it. Native attachments are in `media`.
    #[schema(required = true, format = "uri-reference")]
    pub media_url: Option<String>,
    /// The kind of `media_url`'s file, or `null` without one.
    #[schema(required = true)]
    pub media_type: Option<MediaType>,
    /// Whitespace-separated words of `content`; 0 without content.
    #[schema(minimum = 0)]
    pub word_count: u32,
    pub sender: UserRef,
    /// The thread root this message replies to (threads are one level deep), or `null`.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Uuid, required = true)]
    pub parent_id: Option<MessageId>,
    /// The message this one quotes, or `null`.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Uuid, required = true)]
    pub quoted_message_id: Option<MessageId>,
    /// User ids mentioned (at most 50).
    #[serde(default)]
    #[schema(required = true, max_items = 50)]
    pub mentions: Vec<String>,
    /// A JSON object (at most 10 KB serialized), or `null`.
    #[serde(default)]
    #[schema(value_type = Option<Object>, required = true)]
    pub metadata: Option<JsonObject>,
    /// An animated image, or `null`.
    #[serde(default)]
    #[schema(required = true)]
    pub gif: Option<Gif>,
    /// The native attachments (uploads of `POST /v1/media`), at most 10.
    #[serde(default)]
    #[schema(required = true, max_items = 10)]
    pub media: Vec<MediaItem>,
    /// Space7 reads only (`GET /api/messages/{spaceId}`): the appreciations, oldest
    /// first, as many as `appreciation_count`. Absent on the native surface, which has
    /// `reaction_counts` and `user_reactions` instead, and in write answers and events.
    // A read projection of the `appreciate` reactions: filled by store reads (`Some`), absent
    // (`None`, not serialized) in what the space actor produces (events, write answers): the
    // actor never holds a message's reactions, so a reaction costs O(1) however many the
    // message has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<Like>)]
    pub likes: Option<Vec<Like>>,
    /// `reaction_counts["appreciate"]` (0 when absent).
    #[schema(minimum = 0)]
    pub appreciation_count: u32,
    /// Reaction key → count (keys with a count of 0 are absent).
    #[serde(default)]
    #[schema(schema_with = reaction_counts_schema, required = true)]
    pub reaction_counts: BTreeMap<String, u32>,
    /// Native reads and write answers only (under `/v1`): the reaction keys the caller reacted
    /// with. Absent on the Space7 surface. Filled per viewer, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<String>)]
    pub user_reactions: Option<Vec<String>>,
    /// Replies in this message's thread (existing ones).
    #[serde(default)]
    #[schema(required = true, minimum = 0)]
    pub reply_count: u32,
    /// When it was last edited, or `null`.
    #[serde(default)]
    #[schema(required = true)]
    pub edited_at: Option<Timestamp>,
    /// Wiped by a redaction: content, body, media, metadata, gif and mentions are gone; id, seq,
    /// sender, times, thread links and reactions stay.
    #[serde(default)]
    #[schema(required = true)]
    pub redacted: bool,
    /// Who redacted it (a user id), or `null`.
    #[serde(default)]
    #[schema(required = true)]
    pub redacted_by: Option<String>,
    /// The redaction's reason, or `null`.
    #[serde(default)]
    #[schema(required = true)]
    pub redacted_reason: Option<String>,
    pub created_at: Timestamp,
}

/// `reaction_counts` in the OpenAPI document: key → a count of at least 1.
fn reaction_counts_schema() -> utoipa::openapi::schema::Object {
    count_map_schema(
        "Reaction key → count (keys without a reaction are absent); `appreciate` is Space7's \
         appreciation.",
    )
    .build()
}

/// The schema of a map from a name to a count of at least 1 (reaction counts, counts per
/// msgtype), for the OpenAPI document.
pub fn count_map_schema(description: &str) -> utoipa::openapi::schema::ObjectBuilder {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1)),
        ))
        .description(Some(description))
}

/// An empty `text` message (nil ids, seq 0): a base for struct literals.
impl Default for Message {
    fn default() -> Self {
        Message {
            message_id: Uuid::nil(),
            space_id: Uuid::nil(),
            seq: 0,
            sender_id: String::new(),
            actor_id: String::new(),
            msgtype: default_msgtype(),
            content: None,
            body: None,
            media_url: None,
            media_type: None,
            word_count: 0,
            sender: UserRef::default(),
            parent_id: None,
            quoted_message_id: None,
            mentions: Vec::new(),
            metadata: None,
            gif: None,
            media: Vec::new(),
            likes: None,
            appreciation_count: 0,
            reaction_counts: BTreeMap::new(),
            user_reactions: None,
            reply_count: 0,
            edited_at: None,
            redacted: false,
            redacted_by: None,
            redacted_reason: None,
            created_at: Timestamp(0),
        }
    }
}

impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Message::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut m = Message::deserialize(d)?;
        if m.actor_id.is_empty() {
            m.actor_id = m.sender_id.clone();
        }
        if m.reaction_counts.is_empty() {
            m.sync_reaction_counts();
        }
        Ok(m)
    }
}

impl Message {
    /// Sets `reaction_counts["appreciate"]` from `appreciation_count` (absent at 0).
    pub fn sync_reaction_counts(&mut self) {
        if self.appreciation_count > 0 {
            self.reaction_counts
                .insert(crate::event::APPRECIATE.to_owned(), self.appreciation_count);
        } else {
            self.reaction_counts.remove(crate::event::APPRECIATE);
        }
    }

    /// Whether `user_id` appreciates this message, by its `likes` (filled on a store read; a
    /// message without them answers false).
    pub fn liked_by(&self, user_id: &str) -> bool {
        self.likes.iter().flatten().any(|l| l.user_id == user_id)
    }

    /// Sets the count of reaction `key` (absent at 0), and `appreciation_count` with it for
    /// `appreciate`.
    pub fn set_reaction_count(&mut self, key: &str, count: u32) {
        if key == crate::event::APPRECIATE {
            self.appreciation_count = count;
        }
        if count > 0 {
            self.reaction_counts.insert(key.to_owned(), count);
        } else {
            self.reaction_counts.remove(key);
        }
    }

    /// Whether it has any content: text, a body, a GIF, an attachment (Space7's or native).
    pub fn has_content(&self) -> bool {
        self.content.is_some()
            || self.body.is_some()
            || self.gif.is_some()
            || !self.media.is_empty()
            || self.media_url.is_some()
    }
}

/// One earlier version of an edited message ([`crate::store::Store::message_history`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(
    description = "A previous version of a message: its content and body, and when it was current."
)]
pub struct MessageVersion {
    /// The seq of the edit that replaced this version (versions sort by it).
    #[schema(value_type = u64, minimum = 1)]
    pub seq: Seq,
    /// The text of this version, or `null`.
    #[schema(required = true)]
    pub content: Option<String>,
    /// The body of this version, or `null`.
    #[serde(default)]
    #[schema(value_type = Option<Object>, required = true)]
    pub body: Option<JsonObject>,
    /// When this version became current: the message's `created_at`, or the previous edit's.
    pub valid_from: Timestamp,
    /// When the edit replaced it.
    pub replaced_at: Timestamp,
}

/// Largest `body` (serialized JSON), in bytes: above it, 413 `payload_too_large`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest `metadata` (serialized JSON), in bytes: above it, 413 `payload_too_large`.
pub const MAX_METADATA_BYTES: usize = 10 * 1024;
/// Most attachments per message.
pub const MAX_MEDIA: usize = 10;
/// Most mentions per message.
pub const MAX_MENTIONS: usize = 50;
/// Longest user id in `mentions`, in bytes.
pub const MAX_MENTION_BYTES: usize = 128;
/// Longest `msgtype`, in bytes.
pub const MAX_MSGTYPE_BYTES: usize = 64;
/// Longest GIF URL, in bytes.
pub const MAX_GIF_URL_BYTES: usize = 2048;
/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;
/// Longest reaction key, in bytes.
pub const MAX_REACTION_KEY_BYTES: usize = 64;
/// Most distinct reaction keys on one message.
pub const MAX_REACTION_KEYS: usize = 50;
/// Longest redaction reason, in bytes.
pub const MAX_REASON_BYTES: usize = 512;
/// The `msgtype`s with a meaning of their own; any other must be namespaced (`x.poll`, `com.acme.card`).
pub const BUILTIN_MSGTYPES: [&str; 4] = ["text", "code", "media", "system"];

/// Whether `t` is a valid `msgtype`: a built-in one, or a namespaced custom one: dot-separated,
/// non-empty segments of lowercase ASCII letters, digits, `_` and `-`, at most
/// [`MAX_MSGTYPE_BYTES`].
pub fn valid_msgtype(t: &str) -> bool {
    if BUILTIN_MSGTYPES.contains(&t) {
        return true;
    }
    t.len() <= MAX_MSGTYPE_BYTES
        && t.contains('.')
        && t.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
        })
}

/// Checks the size and shape limits of a message's native fields. Pure: the edge calls it on
/// every send before it reaches a space, and the space actor calls it again on every command
/// (one forwarded from another node included).
///
/// # Errors
/// `Invalid` with code `payload_too_large` (the edge answers 413) for a body or metadata over its
/// limit; `invalid_msgtype`, `too_many_media`, `invalid_mentions`, `invalid_gif` (400) otherwise.
pub fn validate_rich_fields(
    msgtype: &str,
    body: Option<&JsonObject>,
    metadata: Option<&JsonObject>,
    mentions: &[String],
    media: &[MediaItem],
    gif: Option<&Gif>,
) -> Result<(), EngineError> {
    let invalid = |code: &'static str, text: String| Err(EngineError::Invalid(code, text));
    if !valid_msgtype(msgtype) {
        return invalid(
            "invalid_msgtype",
            format!(
                "msgtype must be one of {BUILTIN_MSGTYPES:?} or a namespaced name such as x.poll (lowercase, at most {MAX_MSGTYPE_BYTES} bytes)"
            ),
        );
    }
    let json_len = |o: &JsonObject| serde_json::to_vec(o).map_or(usize::MAX, |v| v.len());
    if let Some(b) = body
        && json_len(b) > MAX_BODY_BYTES
    {
        return invalid(
            "payload_too_large",
            format!("body is larger than {MAX_BODY_BYTES} bytes"),
        );
    }
    if let Some(m) = metadata
        && json_len(m) > MAX_METADATA_BYTES
    {
        return invalid(
            "payload_too_large",
            format!("metadata is larger than {MAX_METADATA_BYTES} bytes"),
        );
    }
    if media.len() > MAX_MEDIA {
        return invalid(
            "too_many_media",
            format!("at most {MAX_MEDIA} attachments per message"),
        );
    }
    if mentions.len() > MAX_MENTIONS
        || mentions
            .iter()
            .any(|u| u.is_empty() || u.len() > MAX_MENTION_BYTES)
    {
        return invalid(
            "invalid_mentions",
            format!(
                "at most {MAX_MENTIONS} mentions, each a user id of 1 to {MAX_MENTION_BYTES} bytes"
            ),
        );
    }
    if let Some(g) = gif {
        let url_ok = (g.url.starts_with("https://") || g.url.starts_with("http://"))
            && g.url.len() <= MAX_GIF_URL_BYTES;
        let title_ok = g.title.as_ref().is_none_or(|t| t.len() <= 512);
        if !url_ok || !title_ok || g.width == 0 || g.height == 0 {
            return invalid(
                "invalid_gif",
                "gif needs an http(s) url, a width and a height".into(),
            );
        }
    }
    Ok(())
}

/// Whether `key` is a valid reaction key: an emoji or a short name, 1 to
/// [`MAX_REACTION_KEY_BYTES`] bytes, without whitespace, control characters or `/`.
pub fn valid_reaction_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_REACTION_KEY_BYTES
        && !key
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
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
pub(crate) mod tests {
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
    /// A message JSON exactly as the code before the native fields wrote it (embedded store
    /// values and both stores' event logs hold such records).
    pub(crate) const OLD_MESSAGE_JSON: &str = r#"{"message_id":"019aeb3c-1c2a-7b4e-9d1f-0a1b2c3d4e5f","space_id":"019aeb3c-0000-7000-8000-000000000001","seq":7,"sender_id":"u1","content":"hello old world","media_url":null,"media_type":null,"word_count":3,"sender":{"user_id":"u1","username":"Ada","profile_picture":""},"likes":[{"id":9,"user_id":"u2"}],"appreciation_count":1,"created_at":"2026-11-22T02:04:18.123Z"}"#;

    #[test]
    fn an_old_message_record_decodes_with_defaults() {
        let m: Message = serde_json::from_str(OLD_MESSAGE_JSON).unwrap();
        assert_eq!(m.seq, 7);
        assert_eq!(m.content.as_deref(), Some("hello old world"));
        assert_eq!(m.actor_id, "u1", "actor defaults to the sender");
        assert_eq!(m.msgtype, "text");
        assert_eq!(m.body, None);
        assert_eq!(m.parent_id, None);
        assert!(m.mentions.is_empty() && m.media.is_empty());
        assert_eq!(m.reaction_counts.get("appreciate"), Some(&1));
        assert_eq!((m.reply_count, m.redacted, m.edited_at), (0, false, None));
        // And it round-trips in the new shape.
        let again: Message = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn the_wire_always_carries_actor_id_and_the_native_fields() {
        let m: Message = serde_json::from_str(OLD_MESSAGE_JSON).unwrap();
        let v = serde_json::to_value(&m).unwrap();
        for field in [
            "actor_id",
            "msgtype",
            "body",
            "parent_id",
            "quoted_message_id",
            "mentions",
            "metadata",
            "gif",
            "media",
            "reaction_counts",
            "reply_count",
            "edited_at",
            "redacted",
            "redacted_by",
            "redacted_reason",
        ] {
            assert!(v.get(field).is_some(), "{field} is on the wire");
        }
    }

    #[test]
    fn msgtypes_are_builtin_or_namespaced() {
        for ok in [
            "text",
            "code",
            "media",
            "system",
            "x.poll",
            "com.acme.card-v2",
        ] {
            assert!(valid_msgtype(ok), "{ok}");
        }
        for bad in [
            "",
            "poll",
            "Text",
            "x.",
            ".x",
            "x..y",
            "x.po ll",
            &"x.".repeat(40),
        ] {
            assert!(!valid_msgtype(bad), "{bad}");
        }
    }

    #[test]
    fn rich_fields_are_checked_against_their_limits() {
        let code = |r: Result<(), EngineError>| r.err().map(|e| e.code());
        let obj = |bytes: usize| {
            let mut o = JsonObject::new();
            o.insert("k".into(), serde_json::Value::String("x".repeat(bytes)));
            o
        };
        assert_eq!(
            code(validate_rich_fields("text", None, None, &[], &[], None)),
            None
        );
        let ok_body = obj(MAX_BODY_BYTES - 100);
        assert_eq!(
            code(validate_rich_fields(
                "text",
                Some(&ok_body),
                None,
                &[],
                &[],
                None
            )),
            None
        );
        let big = obj(MAX_BODY_BYTES);
        assert_eq!(
            code(validate_rich_fields(
                "text",
                Some(&big),
                None,
                &[],
                &[],
                None
            )),
            Some("payload_too_large")
        );
        let meta = obj(MAX_METADATA_BYTES);
        assert_eq!(
            code(validate_rich_fields(
                "text",
                None,
                Some(&meta),
                &[],
                &[],
                None
            )),
            Some("payload_too_large")
        );
        assert_eq!(
            code(validate_rich_fields("poll", None, None, &[], &[], None)),
            Some("invalid_msgtype")
        );
        let media = vec![MediaItem::default(); MAX_MEDIA + 1];
        assert_eq!(
            code(validate_rich_fields("media", None, None, &[], &media, None)),
            Some("too_many_media")
        );
        assert_eq!(
            code(validate_rich_fields(
                "text",
                None,
                None,
                &[],
                &media[..MAX_MEDIA],
                None
            )),
            None
        );
        let mentions = vec!["u".to_owned(); MAX_MENTIONS + 1];
        assert_eq!(
            code(validate_rich_fields(
                "text",
                None,
                None,
                &mentions,
                &[],
                None
            )),
            Some("invalid_mentions")
        );
        assert_eq!(
            code(validate_rich_fields(
                "text",
                None,
                None,
                &[String::new()],
                &[],
                None
            )),
            Some("invalid_mentions")
        );
        let gif = Gif {
            url: "https://media.example/cat.gif".into(),
            width: 200,
            height: 100,
            title: None,
        };
        assert_eq!(
            code(validate_rich_fields(
                "text",
                None,
                None,
                &[],
                &[],
                Some(&gif)
            )),
            None
        );
        let bad_gif = Gif {
            url: "javascript:alert(1)".into(),
            ..gif
        };
        assert_eq!(
            code(validate_rich_fields(
                "text",
                None,
                None,
                &[],
                &[],
                Some(&bad_gif)
            )),
            Some("invalid_gif")
        );
    }
}
