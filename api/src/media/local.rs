//! The local backend: media under `<data-dir>/media/`, one file per upload named by its id
//! (`<id>`), and beside it its owner record `<id>.json`. Only the node that wrote a file can
//! serve it: for several nodes, use [`super::s3`].
//!
//! Each file and record is written through a temporary file (write, fsync, rename, fsync the
//! directory), the record first: a crash leaves at most a stray temporary file or a record
//! without a file, which the sweep removes once older than its grace. A `/v1` record is
//! rewritten the same way (the rename makes it atomic for readers), under one mutex per store,
//! which makes [`MediaStore::update_record`] atomic: this backend serves one node.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use uuid::Uuid;

use super::record::AnyRecord;
use super::{
    MediaError, MediaOwner, MediaRecord, MediaStore, MessageExists, RecordChange, StoredMedia,
    SweepGrace, SweepReport, Verdict, data_name, served_content_type, verdict,
};

/// Media on local disk.
#[derive(Debug)]
pub struct LocalMediaStore {
    dir: PathBuf,
    /// Serialises `/v1` record updates.
    records: tokio::sync::Mutex<()>,
}

fn record_name(id: Uuid) -> String {
    format!("{}.json", id.simple())
}

fn io_failed(what: &str, e: &std::io::Error) -> MediaError {
    MediaError::Unavailable(format!("media {what} failed: {e}"))
}

impl LocalMediaStore {
    /// Creates the media directory under `data_dir`.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join("media");
        std::fs::create_dir_all(&dir)?;
        Ok(LocalMediaStore {
            dir,
            records: tokio::sync::Mutex::new(()),
        })
    }

    /// The record file of `id`, parsed; `None` when absent or unreadable.
    async fn any_record(&self, id: Uuid) -> Result<Option<AnyRecord>, MediaError> {
        match tokio::fs::read(self.dir.join(record_name(id))).await {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_failed("record read", &e)),
        }
    }

    async fn write_record(&self, record: &MediaRecord) -> Result<(), MediaError> {
        let json = serde_json::to_vec(record)
            .map_err(|e| MediaError::Unavailable(format!("media record: {e}")))?;
        let dir = self.dir.clone();
        let name = record_name(record.media_id);
        tokio::task::spawn_blocking(move || write_durably(&dir, &name, &json))
            .await
            .map_err(|e| MediaError::Unavailable(format!("media write task: {e}")))?
            .map_err(|e| io_failed("record write", &e))
    }
}

#[async_trait]
impl MediaStore for LocalMediaStore {
    fn describe(&self) -> String {
        format!("local directory {}", self.dir.display())
    }

    /// Writes the record `<id>.json`, then the file `<id>`, each durably.
    async fn save(
        &self,
        bytes: Bytes,
        content_type: &'static str,
        owner: MediaOwner,
    ) -> Result<StoredMedia, MediaError> {
        let media_id = Uuid::new_v4();
        let dir = self.dir.clone();
        let record = serde_json::to_vec(&owner)
            .map_err(|e| MediaError::Unavailable(format!("media record: {e}")))?;
        tokio::task::spawn_blocking(move || {
            write_durably(&dir, &record_name(media_id), &record)?;
            write_durably(&dir, &data_name(media_id), &bytes)
        })
        .await
        .map_err(|e| MediaError::Unavailable(format!("media write task: {e}")))?
        .map_err(|e| io_failed("write", &e))?;
        Ok(StoredMedia {
            media_id,
            content_type,
        })
    }

    /// Writes the record `<id>.json`, then the file `<id>`, each durably.
    async fn put_upload(&self, record: &MediaRecord, bytes: Bytes) -> Result<(), MediaError> {
        let dir = self.dir.clone();
        let id = record.media_id;
        let json = serde_json::to_vec(record)
            .map_err(|e| MediaError::Unavailable(format!("media record: {e}")))?;
        tokio::task::spawn_blocking(move || {
            write_durably(&dir, &record_name(id), &json)?;
            write_durably(&dir, &data_name(id), &bytes)
        })
        .await
        .map_err(|e| MediaError::Unavailable(format!("media write task: {e}")))?
        .map_err(|e| io_failed("write", &e))
    }

    async fn record(&self, media_id: Uuid) -> Result<Option<MediaRecord>, MediaError> {
        Ok(match self.any_record(media_id).await? {
            Some(AnyRecord::Upload(r)) => Some(*r),
            _ => None,
        })
    }

    async fn update_record(
        &self,
        media_id: Uuid,
        change: &RecordChange<'_>,
    ) -> Result<Option<MediaRecord>, MediaError> {
        let _one_at_a_time = self.records.lock().await;
        let Some(current) = self.record(media_id).await? else {
            return Ok(None);
        };
        let Some(new) = change(&current) else {
            return Ok(None);
        };
        self.write_record(&new).await?;
        Ok(Some(new))
    }

    async fn load(&self, media_id: Uuid) -> Result<Option<(Bytes, &'static str)>, MediaError> {
        match tokio::fs::read(self.dir.join(data_name(media_id))).await {
            Ok(bytes) => {
                let ct = served_content_type(&bytes);
                Ok(Some((bytes.into(), ct)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_failed("read", &e)),
        }
    }

    /// Deletes a file and its record (either may already be gone). The file goes first: a
    /// record left behind by a crash is swept, a file without a record would be kept.
    async fn delete(&self, media_id: Uuid) -> Result<(), MediaError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            remove_if_present(&dir.join(data_name(media_id)))?;
            remove_if_present(&dir.join(record_name(media_id)))
        })
        .await
        .map_err(|e| MediaError::Unavailable(format!("media delete task: {e}")))?
        .map_err(|e| io_failed("delete", &e))
    }

    /// Deletes, among the files older than `grace.min()`: Space7 files older than `grace.sent`
    /// whose message `exists` says is gone (`Some(false)`; `None`, e.g. the store is
    /// unreachable, keeps the file); `/v1` uploads as [`verdict`] says; temporary files and
    /// records without a file older than `grace.sent`.
    async fn sweep(
        &self,
        grace: SweepGrace,
        exists: &dyn MessageExists,
    ) -> Result<SweepReport, MediaError> {
        let dir = self.dir.clone();
        let listing = tokio::task::spawn_blocking(move || list(&dir, grace))
            .await
            .map_err(|e| MediaError::Unavailable(format!("media listing task: {e}")))?
            .map_err(|e| io_failed("listing", &e))?;
        let mut report = SweepReport::default();
        for path in listing.stale_temps {
            if remove_if_present(&path).is_ok() {
                report.strays += 1;
            }
        }
        for (id, age) in listing.old_files {
            match self.any_record(id).await {
                Ok(Some(AnyRecord::Owner(owner))) => {
                    if age >= grace.sent
                        && exists.exists(owner).await == Some(false)
                        && self.delete(id).await.is_ok()
                    {
                        report.orphans += 1;
                    }
                }
                Ok(Some(AnyRecord::Upload(r))) => {
                    let upload_exists = r
                        .thumbnail_of
                        .is_some_and(|u| self.dir.join(data_name(u)).exists());
                    let gone = match verdict(&r, grace, upload_exists) {
                        Verdict::Keep => continue,
                        Verdict::Delete => true,
                        Verdict::AskOwner(owner) => exists.exists(owner).await == Some(false),
                    };
                    // Under the record lock, and only if no attach changed the record since it
                    // was read: an upload attached meanwhile is never deleted.
                    let _one_at_a_time = self.records.lock().await;
                    let unchanged = matches!(
                        self.any_record(id).await,
                        Ok(Some(AnyRecord::Upload(now))) if *now == *r
                    );
                    if gone && unchanged && self.delete(id).await.is_ok() {
                        if let Some(t) = r.thumbnail_id {
                            let _ = self.delete(t).await;
                        }
                        match (r.attached, r.thumbnail_of) {
                            (None, None) => report.unattached += 1,
                            (_, Some(_)) => report.strays += 1,
                            _ => report.orphans += 1,
                        }
                    }
                }
                // Deleted meanwhile (a thumbnail with its upload), or a file without a record.
                Ok(None) => {
                    if self.dir.join(data_name(id)).exists() {
                        report.unrecorded += 1;
                    }
                }
                Err(_) => {}
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

    async fn check(&self) -> Result<(), MediaError> {
        match tokio::fs::metadata(&self.dir).await {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(MediaError::Unavailable(format!(
                "{} is not a directory",
                self.dir.display()
            ))),
            Err(e) => Err(io_failed("directory check", &e)),
        }
    }
}

/// The sweep's view of the directory: files older than `grace.min()` (with their age),
/// temporary files and lone records older than `grace.sent`.
#[derive(Default)]
struct Listing {
    stale_temps: Vec<PathBuf>,
    old_files: Vec<(Uuid, Duration)>,
    old_lone_records: Vec<Uuid>,
}

fn list(dir: &Path, grace: SweepGrace) -> std::io::Result<Listing> {
    let now = SystemTime::now();
    let age = |meta: &std::fs::Metadata| {
        meta.modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
    };
    let old = |meta: &std::fs::Metadata| age(meta).is_some_and(|a| a >= grace.sent);
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
            if let Some(a) = age(&meta).filter(|a| *a >= grace.min()) {
                out.old_files.push((id, a));
            }
        }
    }
    out.old_lone_records = records
        .into_iter()
        .filter(|id| !files.contains(id))
        .collect();
    Ok(out)
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
    use crate::media::sniff_as;
    use spacecast_engine::model::MediaType;

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
        let store = LocalMediaStore::open(dir.path()).unwrap();
        let ct = sniff_as(MediaType::Image, PNG_1X1).unwrap();
        assert_eq!(ct, "image/png");
        let saved = store
            .save(bytes::Bytes::from_static(PNG_1X1), ct, owner())
            .await
            .unwrap();
        let (bytes, ct) = store.load(saved.media_id).await.unwrap().unwrap();
        assert_eq!(&bytes[..], PNG_1X1);
        assert_eq!(ct, "image/png");
        let err = sniff_as(MediaType::Audio, PNG_1X1).unwrap_err();
        assert_eq!(err.code, "invalid_media_type");
        let err = sniff_as(MediaType::Image, b"plain text").unwrap_err();
        assert_eq!(err.code, "invalid_media_type");
        assert!(store.load(Uuid::new_v4()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_file_has_a_record_and_delete_removes_both() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalMediaStore::open(dir.path()).unwrap();
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
        assert!(store.load(saved.media_id).await.unwrap().is_none());
        assert_eq!(
            std::fs::read_dir(dir.path().join("media")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn the_sweep_removes_only_old_unreferenced_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalMediaStore::open(dir.path()).unwrap();
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
        let r = store
            .sweep(SweepGrace::all(Duration::from_secs(600)), &exists)
            .await
            .unwrap();
        assert_eq!(r, SweepReport::default());
        assert_eq!(std::fs::read_dir(&media).unwrap().count(), 7);
        // With no grace, everything unreferenced goes; the legacy file stays.
        let r = store
            .sweep(SweepGrace::all(Duration::ZERO), &exists)
            .await
            .unwrap();
        assert_eq!(
            r,
            SweepReport {
                orphans: 1,
                strays: 2,
                unrecorded: 1,
                unattached: 0,
            }
        );
        assert!(store.load(kept).await.unwrap().is_some());
        assert!(store.load(legacy).await.unwrap().is_some());
        assert!(store.load(orphan).await.unwrap().is_none());
        assert!(!media.join(record_name(orphan)).exists());
        // An unknown answer (store unreachable) keeps the file.
        let again = store.save(png(), "image/png", dead).await.unwrap().media_id;
        let r = store
            .sweep(SweepGrace::all(Duration::ZERO), &|_| async { None })
            .await
            .unwrap();
        assert_eq!(r.orphans, 0);
        assert!(store.load(again).await.unwrap().is_some());
    }
}
