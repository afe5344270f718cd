//! Media files: stored under `<data-dir>/media/`, one file per upload named by a random UUID
//! (unguessable, so a `media_url` works as a capability link the way CDN URLs do for the Space7
//! client, whose image views cannot send an `Authorization` header).
//!
//! A file is written to a temporary name, fsynced, and renamed, and the directory is fsynced,
//! before the message that references it is sent: an acknowledged message never points at a
//! missing file.

use std::path::{Path, PathBuf};

use spacecast_engine::model::MediaType;
use uuid::Uuid;

use crate::error::ApiError;

/// Media on local disk.
pub struct MediaStore {
    dir: PathBuf,
}

/// A stored upload.
#[derive(Clone, Debug)]
pub struct StoredMedia {
    pub media_id: Uuid,
    pub content_type: &'static str,
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

    /// Checks `bytes` really are `media_type` (by their magic numbers, not the client's claim) and
    /// stores them durably.
    ///
    /// # Errors
    /// 400 `invalid_media_type` when the bytes are not a recognised format of that kind; 503 when
    /// the disk fails.
    pub async fn save(
        &self,
        media_type: MediaType,
        bytes: bytes::Bytes,
    ) -> Result<StoredMedia, ApiError> {
        let content_type = sniff(&bytes)
            .filter(|mime| mime.split('/').next() == Some(media_type.mime_top_level()))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_media_type",
                    format!(
                        "The file is not a recognised {} format",
                        media_type.mime_top_level()
                    ),
                )
            })?;
        let media_id = Uuid::new_v4();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            write_durably(&dir, &media_id.simple().to_string(), &bytes)
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

    /// Reads a stored file and its content type; `None` if there is no such media.
    pub async fn load(&self, media_id: Uuid) -> Option<(bytes::Bytes, &'static str)> {
        let bytes = tokio::fs::read(self.dir.join(media_id.simple().to_string()))
            .await
            .ok()?;
        let ct = sniff(&bytes).unwrap_or("application/octet-stream");
        Some((bytes.into(), ct))
    }
}

/// The MIME type the bytes' signature identifies.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    infer::get(bytes).map(|t| t.mime_type())
}

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

    #[tokio::test]
    async fn stores_images_and_refuses_mislabelled_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::open(dir.path()).unwrap();
        let saved = store
            .save(MediaType::Image, bytes::Bytes::from_static(PNG_1X1))
            .await
            .unwrap();
        assert_eq!(saved.content_type, "image/png");
        let (bytes, ct) = store.load(saved.media_id).await.unwrap();
        assert_eq!(&bytes[..], PNG_1X1);
        assert_eq!(ct, "image/png");
        let err = store
            .save(MediaType::Audio, bytes::Bytes::from_static(PNG_1X1))
            .await
            .unwrap_err();
        assert_eq!(err.code, "invalid_media_type");
        let err = store
            .save(MediaType::Image, bytes::Bytes::from_static(b"plain text"))
            .await
            .unwrap_err();
        assert_eq!(err.code, "invalid_media_type");
        assert!(store.load(Uuid::new_v4()).await.is_none());
    }
}
