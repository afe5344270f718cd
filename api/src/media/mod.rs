//! Media files: the [`MediaStore`] trait and its two backends, chosen once from config by
//! [`open`]:
//! - [`local`]: a directory under the data dir (single node, the default);
//! - [`s3`]: an S3-compatible bucket that every node of a cluster reads and writes.
//!
//! Each upload is named by a random UUID (unguessable, so a `media_url` works as a capability link
//! the way CDN URLs do for the Space7 client, whose image views cannot send an `Authorization`
//! header).
//!
//! Lifetime, on both backends: a file belongs to exactly one message. Its owner record,
//! `{space_id, message_id}`, names the message the edge is about to send with it (the edge picks
//! the message id). The record is durable no later than the file, and the file before the send,
//! so an acknowledged message never points at a missing file, and every file can be traced to its
//! message. The file goes when its message is deleted, when its send is refused, and otherwise by
//! the sweep ([`spawn_sweeper`]): at start and then hourly, a file older than [`SWEEP_GRACE`]
//! whose message does not exist is deleted. Files without a record (written before records
//! existed, or put there by someone else) are kept: nothing says whether a message uses them.
//! Where each backend keeps the record is said in its module.
//!
//! `/v1` uploads (`POST /v1/media`, [`kinds`] for the accepted types, [`thumbnail`] for images)
//! are stored before any message uses them, with a richer record ([`MediaRecord`]: uploader,
//! type, size, sha256, thumbnail, and the message once attached). A send attaches them
//! ([`attach::attach_for_send`]: the record names the message durably before the send, as
//! above); an upload that no send attached is swept once older than [`UNATTACHED_GRACE`]; an
//! attached one as above, its grace counted from when it was attached.

pub mod attach;
pub mod kinds;
pub mod local;
pub mod record;
pub mod s3;
pub mod thumbnail;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use spacecast_engine::model::{MediaType, MessageId, SpaceId};
use uuid::Uuid;

use crate::app::AppRef;
use crate::config::{Config, MediaStoreKind, StoreKind};
use crate::error::ApiError;

pub use attach::{MAX_MEDIA_PER_MESSAGE, Uploaded, attach_for_send, delete_media, detach};
pub use local::LocalMediaStore;
pub use record::{Attachment, MediaRecord};
pub use s3::S3MediaStore;

/// How old an unreferenced file must be before the sweep deletes it: far longer than the
/// engine's 30 s call timeout, so a send still in flight never loses its file.
pub const SWEEP_GRACE: Duration = Duration::from_secs(10 * 60);
/// How old a `/v1` upload that no message uses must be before the sweep deletes it: a client
/// has a day between uploading and sending.
pub const UNATTACHED_GRACE: Duration = Duration::from_secs(24 * 60 * 60);
/// Interval between sweeps after the one at start.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60 * 60);
/// At most one media failure line per interval at `error`; the rest go to `debug`, counted.
pub const FAILURE_LOG_EVERY: Duration = Duration::from_secs(5);

/// Where media bytes live. Every method is safe to call from several nodes at once on the same
/// storage (deletes are idempotent; ids are random).
///
/// Guarantees of every implementation:
/// - [`save`](MediaStore::save) returns only once the bytes and their owner record are durable
///   (as durable as the backend makes a completed write), the record no later than the bytes;
/// - [`load`](MediaStore::load) after a successful `save` returns the same bytes, from any node
///   sharing the storage, until `delete`;
/// - [`delete`](MediaStore::delete) of absent media succeeds;
/// - [`sweep`](MediaStore::sweep) deletes only files older than its grace whose record names a
///   message that `exists` says is gone (`Some(false)`); an unknown answer keeps the file;
///   `/v1` uploads that no message uses once older than the unattached grace; thumbnails with
///   their upload;
/// - [`update_record`](MediaStore::update_record) is atomic per record, also between nodes
///   sharing the storage: of two racing updates of one record, neither overwrites the other
///   unseen.
#[async_trait]
pub trait MediaStore: Send + Sync + 'static {
    /// What and where, for logs (never credentials).
    fn describe(&self) -> String;

    /// Stores `bytes` (already checked with [`sniff_as`]) durably, with the record naming
    /// `owner`, under a new random id.
    ///
    /// # Errors
    /// The backend failed or refused the write.
    async fn save(
        &self,
        bytes: Bytes,
        content_type: &'static str,
        owner: MediaOwner,
    ) -> Result<StoredMedia, MediaError>;

    /// Stores a `/v1` upload under `record.media_id`: the record, then the bytes, each durable
    /// before this returns (a crash in between leaves a record without bytes, which the sweep
    /// removes).
    ///
    /// # Errors
    /// The backend failed or refused the write.
    async fn put_upload(&self, record: &MediaRecord, bytes: Bytes) -> Result<(), MediaError>;

    /// The `/v1` record of `media_id`; `Ok(None)` if there is none (no such media, or media
    /// of the Space7 send path).
    ///
    /// # Errors
    /// The backend failed (not for absent media).
    async fn record(&self, media_id: Uuid) -> Result<Option<MediaRecord>, MediaError>;

    /// Replaces the `/v1` record of `media_id` with `change(current)`, atomically: if another
    /// update lands in between, `change` is applied again to the newer record. Returns the
    /// record written, or `Ok(None)` when there is no record or `change` declined (`None`).
    ///
    /// # Errors
    /// The backend failed; the record is unchanged or fully changed.
    async fn update_record(
        &self,
        media_id: Uuid,
        change: &RecordChange<'_>,
    ) -> Result<Option<MediaRecord>, MediaError>;

    /// Reads stored media and the content type its bytes identify; `Ok(None)` if there is no
    /// such media.
    ///
    /// # Errors
    /// The backend failed (not for absent media).
    async fn load(&self, media_id: Uuid) -> Result<Option<(Bytes, &'static str)>, MediaError>;

    /// Deletes media and its record; absent media is not an error.
    ///
    /// # Errors
    /// The backend refused or failed the removal.
    async fn delete(&self, media_id: Uuid) -> Result<(), MediaError>;

    /// One sweep: deletes files whose message `exists` says is gone once `grace.sent` has
    /// passed (since the upload for Space7 media, since the attach for `/v1` uploads), `/v1`
    /// uploads no message uses once older than `grace.unattached` (with their thumbnails),
    /// thumbnails whose upload is gone, and leftovers of interrupted writes older than
    /// `grace.sent`.
    ///
    /// # Errors
    /// The storage cannot be listed.
    async fn sweep(
        &self,
        grace: SweepGrace,
        exists: &dyn MessageExists,
    ) -> Result<SweepReport, MediaError>;

    /// A cheap reachability check (for `/readyz`).
    ///
    /// # Errors
    /// The storage does not answer, or refuses the credentials.
    async fn check(&self) -> Result<(), MediaError>;
}

/// The sweep's question: does the message a file belongs to still exist? `None` when it cannot
/// be known now (the message store is unreachable): the file is kept.
#[async_trait]
pub trait MessageExists: Send + Sync {
    async fn exists(&self, owner: MediaOwner) -> Option<bool>;
}

#[async_trait]
impl<F, Fut> MessageExists for F
where
    F: Fn(MediaOwner) -> Fut + Send + Sync,
    Fut: Future<Output = Option<bool>> + Send,
{
    async fn exists(&self, owner: MediaOwner) -> Option<bool> {
        self(owner).await
    }
}

/// The message a file belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaOwner {
    pub space_id: SpaceId,
    pub message_id: MessageId,
}

/// A stored upload.
#[derive(Clone, Debug)]
pub struct StoredMedia {
    pub media_id: Uuid,
    pub content_type: &'static str,
}

/// A change of a record for [`MediaStore::update_record`]: the new record, or `None` to leave
/// it as it is. (An alias, so that `async_trait` leaves its lifetimes alone.)
pub type RecordChange<'a> = dyn Fn(&MediaRecord) -> Option<MediaRecord> + Send + Sync + 'a;

/// How long the sweep leaves files alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepGrace {
    /// For a file attached to a message (from the upload or the attach): long enough for a
    /// send in flight to land. [`SWEEP_GRACE`] in production.
    pub sent: Duration,
    /// For a `/v1` upload no message uses. [`UNATTACHED_GRACE`] in production.
    pub unattached: Duration,
}

impl SweepGrace {
    /// The production graces.
    pub const PRODUCTION: SweepGrace = SweepGrace {
        sent: SWEEP_GRACE,
        unattached: UNATTACHED_GRACE,
    };

    /// The same grace for both (tests).
    pub fn all(d: Duration) -> Self {
        SweepGrace {
            sent: d,
            unattached: d,
        }
    }

    /// The shortest of the two: files younger than this are not even looked at.
    pub fn min(&self) -> Duration {
        self.sent.min(self.unattached)
    }
}

/// What the sweep decides for a `/v1` upload, from its record alone: `Delete`, `Keep`, or
/// `AskOwner` (delete if its message is gone). `upload_exists` says whether the upload of a
/// thumbnail is still there.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Keep,
    Delete,
    AskOwner(MediaOwner),
}

pub(crate) fn verdict(r: &MediaRecord, grace: SweepGrace, upload_exists: bool) -> Verdict {
    if r.thumbnail_of.is_some() {
        return if !upload_exists && MediaRecord::age(r.created_at_ms) >= grace.sent {
            Verdict::Delete
        } else {
            Verdict::Keep
        };
    }
    match r.attached {
        None if MediaRecord::age(r.created_at_ms) >= grace.unattached => Verdict::Delete,
        Some(a) if MediaRecord::age(a.attached_at_ms) >= grace.sent => Verdict::AskOwner(a.owner()),
        _ => Verdict::Keep,
    }
}

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Files (with their records) whose message does not exist.
    pub orphans: usize,
    /// Leftovers of interrupted writes: temporary files and records without a file.
    pub strays: usize,
    /// Old files without a record, kept.
    pub unrecorded: usize,
    /// `/v1` uploads no message used within the unattached grace.
    pub unattached: usize,
}

/// A media storage failure. Rendered to clients as 503 `store_unavailable` (details stay in the
/// log); at start, its text says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The storage failed or could not be reached (disk error, network, 5xx).
    #[error("{0}")]
    Unavailable(String),
    /// The object store refused the credentials or the operation (401/403).
    #[error("{0}")]
    Denied(String),
    /// The configured bucket does not exist.
    #[error("{0}")]
    NoBucket(String),
}

/// A failed media operation of a request, as its client error (503 `store_unavailable`); the
/// cause is logged, at most once per [`FAILURE_LOG_EVERY`] at `error`.
pub fn failed(app: &crate::app::App, action: &'static str, e: MediaError) -> ApiError {
    if let Some(held_back) = app.media_log.allow() {
        tracing::error!(error = %e, action, held_back, "media store failed");
    } else {
        tracing::debug!(error = %e, action, "media store failed");
    }
    ApiError::from(e)
}

impl From<MediaError> for ApiError {
    fn from(_: MediaError) -> Self {
        ApiError::unavailable(
            "store_unavailable",
            "Media storage is temporarily unavailable",
        )
    }
}

/// Opens the configured media store: the local directory, or the S3 bucket after checking that
/// it is reachable with the configured credentials (so a misconfigured node fails at start, not
/// at its first upload).
///
/// # Errors
/// The media directory cannot be created; the bucket is missing, unreachable, or refuses the
/// credentials (the message says which option to check).
pub async fn open(config: &Config) -> anyhow::Result<Arc<dyn MediaStore>> {
    match config.media_store {
        MediaStoreKind::Local => Ok(Arc::new(
            LocalMediaStore::open(&config.data_dir).context("cannot create the media directory")?,
        )),
        MediaStoreKind::S3 => {
            let settings = config
                .s3
                .as_ref()
                .context("media_store = s3 without s3 settings")?;
            if config.store == StoreKind::Embedded {
                tracing::warn!(
                    "media_store = s3 with the embedded store: the media sweep deletes objects \
                     whose message is not in this node's store, so nodes that share this bucket \
                     and prefix must share the message store (--store cql); give each \
                     embedded-store node its own --s3-prefix"
                );
            }
            let store = S3MediaStore::connect(settings)
                .await
                .context("media_store = s3: the bucket is not usable")?;
            Ok(Arc::new(store))
        }
    }
}

/// Checks that `bytes` really are `media_type` (by their magic numbers, not the client's claim);
/// returns the content type they identify. Pure: callers check before writing anything.
///
/// # Errors
/// 400 `invalid_media_type` when the bytes are not a recognised format of that kind.
pub fn sniff_as(media_type: MediaType, bytes: &[u8]) -> Result<&'static str, ApiError> {
    sniff(bytes)
        .filter(|mime| mime.split('/').next() == Some(media_type.mime_top_level()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_media_type",
                format!(
                    "The file is not a recognised {} format",
                    media_type.mime_top_level()
                ),
            )
        })
}

/// The content type served for stored bytes: the one their signature identifies.
fn served_content_type(bytes: &[u8]) -> &'static str {
    sniff(bytes).unwrap_or("application/octet-stream")
}

/// The MIME type the bytes' signature identifies.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    infer::get(bytes).map(|t| t.mime_type())
}

/// The media id a `media_url` built by this server ends with (absolute or relative).
pub fn media_id_of_url(url: &str) -> Option<Uuid> {
    let (_, id) = url.rsplit_once("/api/media/")?;
    id.parse().ok()
}

/// The name of media `id` in storage (a file name, an object key's last segment).
fn data_name(id: Uuid) -> String {
    id.simple().to_string()
}

/// Sweeps the media store at start and every [`SWEEP_EVERY`] until shutdown, off the request
/// path. A file is an orphan when the engine says its message does not exist; a store error
/// keeps it for the next sweep. With a shared bucket every node sweeps it; their deletes are
/// idempotent.
pub fn spawn_sweeper(app: AppRef) {
    let mut shutdown = app.shutdown.clone();
    tokio::spawn(async move {
        loop {
            let engine = app.engine.clone();
            let exists = |owner: MediaOwner| {
                let engine = engine.clone();
                async move {
                    engine
                        .message_exists(owner.space_id, owner.message_id)
                        .await
                        .ok()
                }
            };
            match app.media.sweep(SweepGrace::PRODUCTION, &exists).await {
                Ok(r) if r.orphans + r.strays + r.unattached > 0 => tracing::info!(
                    orphans = r.orphans,
                    unattached = r.unattached,
                    strays = r.strays,
                    unrecorded = r.unrecorded,
                    "media sweep removed unreferenced files"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "media sweep could not list the media store"),
            }
            tokio::select! {
                () = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ids_are_read_back_from_urls() {
        let id = Uuid::new_v4();
        let simple = id.simple();
        assert_eq!(media_id_of_url(&format!("/api/media/{simple}")), Some(id));
        assert_eq!(
            media_id_of_url(&format!("https://x.example/base/api/media/{simple}")),
            Some(id)
        );
        assert_eq!(media_id_of_url("https://x.example/other.png"), None);
    }

    #[test]
    fn media_errors_are_503_store_unavailable_without_details() {
        let e = ApiError::from(MediaError::Denied("secret detail".into()));
        assert_eq!((e.status.as_u16(), e.code), (503, "store_unavailable"));
        assert!(!e.message.contains("secret detail"));
        assert!(e.retry_after.is_some());
    }
}
