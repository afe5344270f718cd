//! Media files: stored under `<data-dir>/media/`, one file per upload named by a random UUID
//! (unguessable, so a `media_url` works as a capability link the way CDN URLs do for the Space7
//! client, whose image views cannot send an `Authorization` header).
//!
//! Lifetime: a file belongs to exactly one message. Beside each file `<id>` is its record
//! `<id>.json`, `{space_id, message_id}`, naming the message the edge is about to send with it
//! (the edge picks the message id). The record is made durable before the file, the file before
//! the send, so an acknowledged message never points at a missing file, and every file written
//! since records exist can be traced to its message. The file goes when its message is deleted,
//! when its send is refused, and otherwise by the sweep ([`spawn_sweeper`]): at start and then
//! hourly, a file older than [`SWEEP_GRACE`] whose message does not exist is deleted, and so are
//! stray temporary files and records without a file. Files without a record (written before
//! records existed) are kept: nothing says whether a message uses them.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use spacecast_engine::model::{MediaType, MessageId, SpaceId};
use uuid::Uuid;

use crate::app::AppRef;
use crate::error::ApiError;

/// How old an unreferenced file must be before the sweep deletes it: far longer than the
/// engine's 30 s call timeout, so a send still in flight never loses its file.
pub const SWEEP_GRACE: Duration = Duration::from_secs(10 * 60);
/// Interval between sweeps after the one at start.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60 * 60);

/// Media on local disk.
pub struct MediaStore {
    dir: PathBuf,
}

/// The message a file belongs to, kept beside it as `<id>.json`.
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

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Files (with their records) whose message does not exist.
    pub orphans: usize,
    /// Temporary files and records without a file.
    pub strays: usize,
    /// Old files without a record, kept.
    pub unrecorded: usize,
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

/// The media id a `media_url` built by this server ends with (absolute or relative).
pub fn media_id_of_url(url: &str) -> Option<Uuid> {
    let (_, id) = url.rsplit_once("/api/media/")?;
    id.parse().ok()
}

fn data_name(id: Uuid) -> String {
    id.simple().to_string()
}

fn record_name(id: Uuid) -> String {
    format!("{}.json", id.simple())
}

impl MediaStore {
    /// Creates the media directory under `data_dir`.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join("media");
        std::fs::create_dir_all(&dir)?;
        Ok(MediaStore { dir })
    }

    /// Stores `bytes` (already checked with [`sniff_as`]) durably, with the record naming
    /// `owner`.
    ///
    /// # Errors
    /// 503 `store_unavailable` when the disk fails.
    pub async fn save(
        &self,
        bytes: bytes::Bytes,
        content_type: &'static str,
        owner: MediaOwner,
    ) -> Result<StoredMedia, ApiError> {
        let media_id = Uuid::new_v4();
        let dir = self.dir.clone();
        let record = serde_json::to_vec(&owner).map_err(|e| ApiError::internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            write_durably(&dir, &record_name(media_id), &record)?;
            write_durably(&dir, &data_name(media_id), &bytes)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| {
            tracing::error!(error = %e, "media write failed");
            ApiError::unavailable(
                "store_unavailable",
                "Media storage is temporarily unavailable",
            )
        })?;
        Ok(StoredMedia {
            media_id,
            content_type,
        })
    }

    /// Deletes a file and its record (either may already be gone). The file goes first: a
    /// record left behind by a crash is swept, a file without a record would be kept.
    ///
    /// # Errors
    /// The disk refused a removal.
    pub async fn delete(&self, media_id: Uuid) -> std::io::Result<()> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            remove_if_present(&dir.join(data_name(media_id)))?;
            remove_if_present(&dir.join(record_name(media_id)))
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Reads a stored file and its content type; `None` if there is no such media.
    pub async fn load(&self, media_id: Uuid) -> Option<(bytes::Bytes, &'static str)> {
        let bytes = tokio::fs::read(self.dir.join(data_name(media_id)))
            .await
            .ok()?;
        let ct = sniff(&bytes).unwrap_or("application/octet-stream");
        Some((bytes.into(), ct))
    }

    /// One sweep: deletes files older than `grace` whose message `exists` says is gone
    /// (`Some(false)`; `None`, e.g. the store is unreachable, keeps the file), temporary files
    /// older than `grace`, and records older than `grace` without a file.
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub async fn sweep<F, Fut>(&self, grace: Duration, exists: F) -> std::io::Result<SweepReport>
    where
        F: Fn(MediaOwner) -> Fut,
        Fut: Future<Output = Option<bool>>,
    {
        let dir = self.dir.clone();
        let listing = tokio::task::spawn_blocking(move || list(&dir, grace))
            .await
            .map_err(std::io::Error::other)??;
        let mut report = SweepReport::default();
        for path in listing.stale_temps {
            if remove_if_present(&path).is_ok() {
                report.strays += 1;
            }
        }
        for id in listing.old_files {
            let record = self.dir.join(record_name(id));
            let owner = match tokio::fs::read(&record).await {
                Ok(bytes) => serde_json::from_slice::<MediaOwner>(&bytes).ok(),
                Err(_) => None,
            };
            let Some(owner) = owner else {
                report.unrecorded += 1;
                continue;
            };
            if exists(owner).await == Some(false) && self.delete(id).await.is_ok() {
                report.orphans += 1;
            }
        }
        for id in listing.old_lone_records {
            // Re-check: the file may have appeared since the listing (it never does for an old
            // record, whose file is renamed into place right after it, but be exact).
            if !self.dir.join(data_name(id)).exists()
                && remove_if_present(&self.dir.join(record_name(id))).is_ok()
            {
                report.strays += 1;
            }
        }
        Ok(report)
    }
}

/// The sweep's view of the directory: only entries older than the grace period.
#[derive(Default)]
struct Listing {
    stale_temps: Vec<PathBuf>,
    old_files: Vec<Uuid>,
    old_lone_records: Vec<Uuid>,
}

fn list(dir: &Path, grace: Duration) -> std::io::Result<Listing> {
    let now = SystemTime::now();
    let old = |meta: &std::fs::Metadata| {
        meta.modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age >= grace)
    };
    let mut out = Listing::default();
    let mut files = std::collections::HashSet::new();
    let mut records = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        if name.starts_with('.') && name.ends_with(".tmp") {
            if old(&meta) {
                out.stale_temps.push(entry.path());
            }
        } else if let Some(stem) = name.strip_suffix(".json") {
            if let Ok(id) = stem.parse::<Uuid>()
                && old(&meta)
            {
                records.push(id);
            }
        } else if let Ok(id) = name.parse::<Uuid>() {
            files.insert(id);
            if old(&meta) {
                out.old_files.push(id);
            }
        }
    }
    out.old_lone_records = records
        .into_iter()
        .filter(|id| !files.contains(id))
        .collect();
    Ok(out)
}

/// Sweeps the media directory at start and every [`SWEEP_EVERY`] until shutdown, off the
/// request path. A file is an orphan when the engine says its message does not exist; a store
/// error keeps it for the next sweep.
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
            match app.media.sweep(SWEEP_GRACE, exists).await {
                Ok(r) if r.orphans + r.strays > 0 => tracing::info!(
                    orphans = r.orphans,
                    strays = r.strays,
                    unrecorded = r.unrecorded,
                    "media sweep removed unreferenced files"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "media sweep could not list the directory"),
            }
            tokio::select! {
                () = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    });
}

/// The MIME type the bytes' signature identifies.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    infer::get(bytes).map(|t| t.mime_type())
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes `name` through a temporary file: write, fsync, rename, fsync the directory.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const PNG_1X1: &[u8] = &[
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52, 0,
        0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89, 0, 0, 0, 0x0A, 0x49, 0x44,
        0x41, 0x54, 0x78, 0x9C, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0D, 0x0A, 0x2D, 0xB4, 0, 0, 0, 0,
        0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ];

    fn owner() -> MediaOwner {
        MediaOwner {
            space_id: Uuid::now_v7(),
            message_id: Uuid::now_v7(),
        }
    }

    #[tokio::test]
    async fn stores_images_and_refuses_mislabelled_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::open(dir.path()).unwrap();
        let ct = sniff_as(MediaType::Image, PNG_1X1).unwrap();
        assert_eq!(ct, "image/png");
        let saved = store
            .save(bytes::Bytes::from_static(PNG_1X1), ct, owner())
            .await
            .unwrap();
        let (bytes, ct) = store.load(saved.media_id).await.unwrap();
        assert_eq!(&bytes[..], PNG_1X1);
        assert_eq!(ct, "image/png");
        let err = sniff_as(MediaType::Audio, PNG_1X1).unwrap_err();
        assert_eq!(err.code, "invalid_media_type");
        let err = sniff_as(MediaType::Image, b"plain text").unwrap_err();
        assert_eq!(err.code, "invalid_media_type");
        assert!(store.load(Uuid::new_v4()).await.is_none());
    }

    #[tokio::test]
    async fn a_file_has_a_record_and_delete_removes_both() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::open(dir.path()).unwrap();
        let o = owner();
        let saved = store
            .save(bytes::Bytes::from_static(PNG_1X1), "image/png", o)
            .await
            .unwrap();
        let record =
            std::fs::read(dir.path().join("media").join(record_name(saved.media_id))).unwrap();
        assert_eq!(serde_json::from_slice::<MediaOwner>(&record).unwrap(), o);
        store.delete(saved.media_id).await.unwrap();
        store.delete(saved.media_id).await.unwrap();
        assert!(store.load(saved.media_id).await.is_none());
        assert_eq!(
            std::fs::read_dir(dir.path().join("media")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn the_sweep_removes_only_old_unreferenced_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::open(dir.path()).unwrap();
        let media = dir.path().join("media");
        let (live, dead) = (owner(), owner());
        let png = || bytes::Bytes::from_static(PNG_1X1);
        let kept = store.save(png(), "image/png", live).await.unwrap().media_id;
        let orphan = store.save(png(), "image/png", dead).await.unwrap().media_id;
        let legacy = Uuid::new_v4();
        std::fs::write(media.join(data_name(legacy)), PNG_1X1).unwrap();
        let lone = Uuid::new_v4();
        std::fs::write(media.join(record_name(lone)), b"{}").unwrap();
        std::fs::write(media.join(".x.tmp"), b"partial").unwrap();
        let exists = |o: MediaOwner| async move { Some(o == live) };
        // Nothing is old enough yet.
        let r = store.sweep(Duration::from_secs(600), exists).await.unwrap();
        assert_eq!(r, SweepReport::default());
        assert_eq!(std::fs::read_dir(&media).unwrap().count(), 7);
        // With no grace, everything unreferenced goes; the legacy file stays.
        let r = store.sweep(Duration::ZERO, exists).await.unwrap();
        assert_eq!(
            r,
            SweepReport {
                orphans: 1,
                strays: 2,
                unrecorded: 1
            }
        );
        assert!(store.load(kept).await.is_some());
        assert!(store.load(legacy).await.is_some());
        assert!(store.load(orphan).await.is_none());
        assert!(!media.join(record_name(orphan)).exists());
        // An unknown answer (store unreachable) keeps the file.
        let again = store.save(png(), "image/png", dead).await.unwrap().media_id;
        let r = store
            .sweep(Duration::ZERO, |_| async { None })
            .await
            .unwrap();
        assert_eq!(r.orphans, 0);
        assert!(store.load(again).await.is_some());
    }

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
}
