//! The record of a `/v1` upload ([`MediaRecord`]): who uploaded it, what it is, its thumbnail,
//! and the message it is attached to once a send uses it. Kept beside the bytes by every
//! backend (`<id>.json`), written before them, durable before the upload's 201, and rewritten
//! only by [`MediaStore::update_record`](super::MediaStore::update_record), which each backend
//! makes atomic (see its module).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use spacecast_engine::model::{MessageId, SpaceId};
use uuid::Uuid;

use super::MediaOwner;

/// One stored `/v1` upload (or the thumbnail of one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRecord {
    pub media_id: Uuid,
    /// The user id of the uploader: only they may attach it to a message.
    pub uploader: String,
    /// The canonical content type (see [`super::kinds`]), served as the `Content-Type`.
    pub content_type: String,
    /// Size of the bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes (the strong ETag).
    pub sha256: String,
    /// The thumbnail's own media id (images only).
    #[serde(default)]
    pub thumbnail_id: Option<Uuid>,
    /// For a thumbnail: the upload it was made from. A thumbnail is never attached itself; it
    /// lives and goes with that upload.
    #[serde(default)]
    pub thumbnail_of: Option<Uuid>,
    /// When the upload was stored, in milliseconds since the Unix epoch (this node's clock).
    pub created_at_ms: u64,
    /// The message it belongs to, once a send named it (before that send, durably).
    #[serde(default)]
    pub attached: Option<Attachment>,
}

/// The message an upload is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub space_id: SpaceId,
    pub message_id: MessageId,
    /// When the record was updated to name the message (ms since the epoch): the sweep gives
    /// the send its grace from here, not from the upload.
    pub attached_at_ms: u64,
}

impl Attachment {
    pub fn owner(&self) -> MediaOwner {
        MediaOwner {
            space_id: self.space_id,
            message_id: self.message_id,
        }
    }
}

impl MediaRecord {
    /// How long ago `at_ms` was; zero for a time in the future (clock skew).
    pub fn age(at_ms: u64) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(at_ms))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a record file holds: a `/v1` record, or the owner record of a Space7 upload (written
/// before `/v1` existed, and still by the Space7 send path).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum AnyRecord {
    Upload(Box<MediaRecord>),
    Owner(MediaOwner),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_record_kinds_are_read_back() {
        let owner = MediaOwner {
            space_id: Uuid::now_v7(),
            message_id: Uuid::now_v7(),
        };
        let json = serde_json::to_vec(&owner).unwrap();
        assert!(matches!(
            serde_json::from_slice::<AnyRecord>(&json).unwrap(),
            AnyRecord::Owner(o) if o == owner
        ));
        let r = MediaRecord {
            media_id: Uuid::new_v4(),
            uploader: "ada".into(),
            content_type: "image/png".into(),
            size: 3,
            sha256: "ab".into(),
            thumbnail_id: None,
            thumbnail_of: None,
            created_at_ms: now_ms(),
            attached: Some(Attachment {
                space_id: owner.space_id,
                message_id: owner.message_id,
                attached_at_ms: 1,
            }),
        };
        let json = serde_json::to_vec(&r).unwrap();
        assert!(matches!(
            serde_json::from_slice::<AnyRecord>(&json).unwrap(),
            AnyRecord::Upload(u) if *u == r
        ));
        assert_eq!(MediaRecord::age(u64::MAX), Duration::ZERO);
    }
}
