//! The send side of `/v1` media: [`attach_for_send`] names the message in the records of the
//! uploads a send uses (durably, before the send), [`detach`] releases them when that send was
//! refused, and [`delete_media`] removes a redacted message's files.
//!
//! The lifetime this gives, with the sweep ([`super::spawn_sweeper`]): an upload no send
//! attached is deleted once older than [`super::UNATTACHED_GRACE`] (24 h); an attached one is
//! deleted when, [`super::SWEEP_GRACE`] after it was attached, its message does not exist (the
//! send failed or the message was deleted); a thumbnail goes with its upload.

use std::collections::HashSet;

use spacecast_engine::model::{MessageId, SpaceId};
use uuid::Uuid;

use super::record::{Attachment, MediaRecord, now_ms};
use super::{MediaError, MediaOwner, MediaStore};
use crate::error::ApiError;

/// The most media one message may carry.
pub const MAX_MEDIA_PER_MESSAGE: usize = 10;

/// A stored `/v1` upload, as `POST /v1/media` returns it and a message's `media` lists it (the
/// engine's `MediaItem` has the same fields).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    /// Random (unguessable) id.
    pub media_id: Uuid,
    #[schema(schema_with = accepted_content_type)]
    pub content_type: String,
    /// Bytes; at most `--max-media-bytes` (default 10 MiB).
    #[schema(minimum = 1)]
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes; the download's strong ETag.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
    /// Images only: the media id of a JPEG thumbnail within 320×320 (aspect kept); `null`
    /// otherwise.
    #[schema(required = true)]
    pub thumbnail_id: Option<Uuid>,
}

/// `content_type`: one of [`super::kinds::ACCEPTED`].
fn accepted_content_type() -> utoipa::openapi::schema::Object {
    crate::openapi::rules::string(
        "The canonical type the bytes are (detected from their signature, checked against the \
         declared type).",
    )
    .enum_values(Some(super::kinds::ACCEPTED.iter().copied()))
    .build()
}

impl From<&MediaRecord> for Uploaded {
    fn from(r: &MediaRecord) -> Self {
        Uploaded {
            media_id: r.media_id,
            content_type: r.content_type.clone(),
            size: r.size,
            sha256: r.sha256.clone(),
            thumbnail_id: r.thumbnail_id,
        }
    }
}

fn invalid_media() -> ApiError {
    ApiError::bad_request(
        "invalid_media",
        "A media id is unknown, not yours, or already used by another message",
    )
}

/// Whether `user_id` may attach `r` to `owner`: their own upload (not a thumbnail), not
/// attached to any other message (attached to this one already is fine: a retried send).
fn usable(r: &MediaRecord, user_id: &str, owner: MediaOwner) -> bool {
    r.uploader == user_id
        && r.thumbnail_of.is_none()
        && r.attached.is_none_or(|a| a.owner() == owner)
}

/// Attaches the uploads `media_ids` of `user_id` to the message `message_id` of `space_id`,
/// which the caller is about to send (the caller picks the message id). Call it before the
/// send; on success each record names the message durably, so if the send then fails the
/// sweep deletes the files ([`super::SWEEP_GRACE`] after this call), and the message lists
/// what this returns, in the order given.
///
/// Every id must exist, be an upload of `user_id` (not a thumbnail), and be attached to no
/// other message; ids may not repeat. Attaching again to the same message succeeds (a retried
/// send). Every id is checked before any record is changed, and the changes are atomic per
/// record (two sends racing for one upload: one wins, the other gets `invalid_media`); if one
/// attach fails midway, those this call made are undone (best effort: an undo that fails
/// leaves an upload attached to a message that will not exist, which the sweep deletes).
///
/// # Errors
/// 400 `too_many_media` above [`MAX_MEDIA_PER_MESSAGE`] ids; 400 `invalid_media` for any id
/// that breaks a rule above (which rule is not said, so ids of others cannot be probed); 503
/// `store_unavailable` when the media store fails.
pub async fn attach_for_send(
    store: &dyn MediaStore,
    user_id: &str,
    media_ids: &[Uuid],
    space_id: SpaceId,
    message_id: MessageId,
) -> Result<Vec<Uploaded>, ApiError> {
    if media_ids.len() > MAX_MEDIA_PER_MESSAGE {
        return Err(ApiError::bad_request(
            "too_many_media",
            format!("A message carries at most {MAX_MEDIA_PER_MESSAGE} media"),
        ));
    }
    let distinct: HashSet<&Uuid> = media_ids.iter().collect();
    if distinct.len() != media_ids.len() {
        return Err(invalid_media());
    }
    let owner = MediaOwner {
        space_id,
        message_id,
    };
    let mut already = HashSet::new();
    for id in media_ids {
        match store.record(*id).await? {
            Some(r) if usable(&r, user_id, owner) => {
                if r.attached.is_some() {
                    already.insert(*id);
                }
            }
            _ => return Err(invalid_media()),
        }
    }
    let attached_at_ms = now_ms();
    let attach = |r: &MediaRecord| {
        usable(r, user_id, owner).then(|| MediaRecord {
            attached: Some(r.attached.unwrap_or(Attachment {
                space_id,
                message_id,
                attached_at_ms,
            })),
            ..r.clone()
        })
    };
    let mut out = Vec::with_capacity(media_ids.len());
    let mut newly = Vec::new();
    for id in media_ids {
        match store.update_record(*id, &attach).await {
            Ok(Some(r)) => {
                if !already.contains(id) {
                    newly.push(*id);
                }
                out.push(Uploaded::from(&r));
            }
            other => {
                undo(store, &newly, owner).await;
                return Err(match other {
                    Err(e) => {
                        tracing::warn!(error = %e, "media store failed while attaching media");
                        e.into()
                    }
                    _ => invalid_media(),
                });
            }
        }
    }
    Ok(out)
}

/// Releases uploads that [`attach_for_send`] attached to `message_id` of `space_id` when the
/// send was then refused for sure (the message will never exist: not a member, forbidden,
/// invalid), so the sender can use them in another message; uploads attached to another
/// message, or to none, are left as they are. Best effort: a failure is logged, and the sweep
/// deletes an upload left attached to a message that does not exist, [`super::SWEEP_GRACE`]
/// after the attach. Do not call it when the outcome of the send is unknown (a timeout, a store
/// error): the message may still land, and its media must stay attached.
pub async fn detach(
    store: &dyn MediaStore,
    media_ids: &[Uuid],
    space_id: SpaceId,
    message_id: MessageId,
) {
    let owner = MediaOwner {
        space_id,
        message_id,
    };
    undo(store, media_ids, owner).await;
}

/// Detaches `ids` from `owner` again (the undo of a partly failed attach).
async fn undo(store: &dyn MediaStore, ids: &[Uuid], owner: MediaOwner) {
    let detach = |r: &MediaRecord| {
        (r.attached.map(|a| a.owner()) == Some(owner)).then(|| MediaRecord {
            attached: None,
            ..r.clone()
        })
    };
    for id in ids {
        if let Err(e) = store.update_record(*id, &detach).await {
            tracing::warn!(error = %e, media_id = %id, "could not detach media after a failed attach");
        }
    }
}

/// Deletes uploads and their thumbnails (a redaction's media). Absent ids are fine. Every id
/// is tried even after a failure.
///
/// # Errors
/// The last failure of the media store; the files it concerns are still there (a redacted
/// message still exists, so the sweep keeps them: the caller should retry or log them).
pub async fn delete_media(store: &dyn MediaStore, media_ids: &[Uuid]) -> Result<(), MediaError> {
    let mut failed = None;
    for id in media_ids {
        let thumbnail = match store.record(*id).await {
            Ok(r) => r.and_then(|r| r.thumbnail_id),
            Err(e) => {
                failed = Some(e);
                continue;
            }
        };
        // The thumbnail first: an upload whose thumbnail is gone still serves (404 for the
        // thumbnail), while a thumbnail whose upload is gone is left for the sweep.
        for target in thumbnail.into_iter().chain([*id]) {
            if let Err(e) = store.delete(target).await {
                failed = Some(e);
            }
        }
    }
    failed.map_or(Ok(()), Err)
}
