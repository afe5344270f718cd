//! The S3 backend: media in an S3-compatible bucket (AWS S3, SeaweedFS, Ceph RGW, R2, …), so
//! every node of a cluster serves every upload. Built on the `object_store` crate (Apache Arrow
//! project) with SigV4 signing on `ring` and rustls with the process's `ring` provider
//! ([`crate::install_tls_provider`]).
//!
//! Layout: media `<id>` is the object `<prefix>/media/<id>` (`--s3-prefix`, optional). Its owner
//! record is the object's user metadata (`x-amz-meta-space-id`, `x-amz-meta-message-id`), written
//! by the same single PUT as the bytes: S3 makes an object with its metadata visible atomically,
//! so a record can never be missing for a stored object, and no stray records or temporary
//! objects exist (PUT is all-or-nothing; multipart uploads are not used). A completed PUT is as
//! durable as the object store makes it (on AWS S3: stored redundantly before the 200).
//!
//! A `/v1` upload is two objects: its record `<prefix>/media/<id>.json` (JSON, PUT first) and its
//! bytes `<prefix>/media/<id>` (PUT second, after the record is stored). A crash between leaves a
//! record without bytes, which the sweep removes. The record is rewritten (an attach) with a
//! conditional PUT (`If-Match` the ETag read), retried on a precondition failure, so updates
//! from several nodes never overwrite each other unseen; the store must honour `If-Match` on
//! PUT (AWS S3, MinIO, R2 and SeaweedFS do).
//!
//! The sweep lists `<prefix>/media/` (the listing is held in memory: one entry per object),
//! reads the `/v1` record or else the metadata of objects older than the grace (one GET or HEAD
//! each) and deletes those whose message is gone or, for `/v1` uploads, that no message used
//! within the unattached grace. Age is the object's `Last-Modified`, set by
//! the object store's clock: the 10-minute grace dwarfs any sane clock skew between nodes and
//! store. Every node sweeps the bucket; a delete that races another node's is harmless (S3
//! deletes are idempotent). Objects under the prefix that are not named by a UUID, or that carry
//! no record, are left alone; so is a start-up probe (`probe-<uuid>`, see
//! [`S3MediaStore::connect`]) that a crash left behind.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt,
    PutMode, PutOptions, PutPayload, RetryConfig, UpdateVersion,
};
use uuid::Uuid;

use super::{
    MediaError, MediaOwner, MediaRecord, MediaStore, MessageExists, RecordChange, StoredMedia,
    SweepGrace, SweepReport, Verdict, data_name, served_content_type, verdict,
};

/// How often a conditional record update is retried after losing a race.
const UPDATE_ATTEMPTS: usize = 16;
use crate::config::S3Settings;

/// User metadata keys of the owner record (S3 lower-cases metadata names).
const META_SPACE_ID: &str = "space-id";
const META_MESSAGE_ID: &str = "message-id";

/// Media in an S3-compatible bucket.
pub struct S3MediaStore {
    store: AmazonS3,
    /// `<prefix>/media`: every media object is a direct child.
    dir: Path,
    bucket: String,
    endpoint: String,
}

impl std::fmt::Debug for S3MediaStore {
    // By hand: the client's own Debug would print its credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3MediaStore")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("dir", &self.dir.as_ref())
            .finish_non_exhaustive()
    }
}

impl S3MediaStore {
    /// A client for `settings`, without contacting the store. Requests time out after 30 s
    /// (connect: 5 s) and are retried at most twice within 10 s, so a send waiting on a broken
    /// store gets its 503 quickly.
    ///
    /// # Errors
    /// The settings do not make a valid client (e.g. a malformed endpoint or prefix).
    pub fn new(settings: &S3Settings) -> Result<Self, MediaError> {
        // Normally done by `main`; here too for tests and embedders (idempotent).
        crate::install_tls_provider();
        let endpoint = settings.endpoint.trim_end_matches('/').to_owned();
        let client = ClientOptions::new()
            .with_allow_http(endpoint.starts_with("http://"))
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(30));
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
        };
        let store = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_endpoint(&endpoint)
            .with_region(&settings.region)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(settings.secret_access_key.expose())
            // Path-style requests (`<endpoint>/<bucket>/<key>`): every S3-compatible store
            // serves them, and they need no wildcard DNS.
            .with_virtual_hosted_style_request(false)
            .with_client_options(client)
            .with_retry(retry)
            .build()
            .map_err(|e| MediaError::Unavailable(format!("invalid S3 settings: {e}")))?;
        let mut parts: Vec<String> = settings
            .prefix
            .as_deref()
            .unwrap_or("")
            .split('/')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        parts.push("media".to_owned());
        let dir = Path::from_iter(parts);
        Ok(S3MediaStore {
            store,
            dir,
            bucket: settings.bucket.clone(),
            endpoint,
        })
    }

    /// [`S3MediaStore::new`], then checks that the bucket exists and that the credentials may
    /// list, write, read and delete in it (a probe object written and removed), so a
    /// misconfiguration stops the node at start with an error naming what to fix.
    ///
    /// # Errors
    /// [`MediaError::NoBucket`], [`MediaError::Denied`] or [`MediaError::Unavailable`], each
    /// with a message naming the endpoint, the bucket and the options to check.
    pub async fn connect(settings: &S3Settings) -> Result<Self, MediaError> {
        let s = Self::new(settings)?;
        // The write first: its errors say best what is wrong (a PUT answers 404 only for a
        // missing bucket, 403 for bad credentials).
        let probe = s
            .dir
            .clone()
            .join(format!("probe-{}", Uuid::new_v4().simple()));
        s.store
            .put(&probe, PutPayload::from_static(b"spacecast start-up probe"))
            .await
            .map_err(|e| s.explain("write", e))?;
        let listed = s.store.list(Some(&s.dir)).next().await;
        let deleted = s.store.delete(&probe).await;
        if let Some(Err(e)) = listed {
            return Err(s.explain("list", e));
        }
        deleted.map_err(|e| s.explain("delete", e))?;
        Ok(s)
    }

    fn key(&self, media_id: Uuid) -> Path {
        self.dir.clone().join(data_name(media_id))
    }

    fn record_key(&self, media_id: Uuid) -> Path {
        self.dir
            .clone()
            .join(format!("{}.json", data_name(media_id)))
    }

    /// The media id of a listed object: a direct child of `dir` named by a UUID.
    fn id_of(&self, location: &Path) -> Option<Uuid> {
        let rest = location.as_ref().strip_prefix(self.dir.as_ref())?;
        rest.strip_prefix('/')?.parse().ok()
    }

    /// The media id of a listed `/v1` record: a direct child of `dir` named `<uuid>.json`.
    fn record_id_of(&self, location: &Path) -> Option<Uuid> {
        let rest = location.as_ref().strip_prefix(self.dir.as_ref())?;
        rest.strip_prefix('/')?.strip_suffix(".json")?.parse().ok()
    }

    /// The `/v1` record of `media_id` and the version it was read at.
    async fn versioned_record(
        &self,
        media_id: Uuid,
    ) -> Result<Option<(MediaRecord, UpdateVersion)>, MediaError> {
        let result = match self.store.get(&self.record_key(media_id)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.explain("read", e)),
        };
        let version = UpdateVersion {
            e_tag: result.meta.e_tag.clone(),
            version: result.meta.version.clone(),
        };
        let bytes = match result.bytes().await {
            Ok(b) => b,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.explain("read", e)),
        };
        // An unreadable record is no record: the upload is then neither served nor attached.
        Ok(serde_json::from_slice(&bytes).ok().map(|r| (r, version)))
    }

    async fn put_record(
        &self,
        record: &MediaRecord,
        mode: PutMode,
    ) -> Result<(), object_store::Error> {
        let json = serde_json::to_vec(record).map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        })?;
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, "application/json".into());
        let opts = PutOptions {
            mode,
            attributes,
            ..PutOptions::default()
        };
        self.store
            .put_opts(
                &self.record_key(record.media_id),
                PutPayload::from(json),
                opts,
            )
            .await
            .map(|_| ())
    }

    /// An `object_store` error as a [`MediaError`] whose text says what to check.
    fn explain(&self, action: &str, e: object_store::Error) -> MediaError {
        let (bucket, endpoint) = (&self.bucket, &self.endpoint);
        match http_status(&e) {
            Some(401 | 403) => MediaError::Denied(format!(
                "S3 at {endpoint} refused to {action} in bucket {bucket:?}: check \
                 s3_access_key_id / s3_secret_access_key and the key's permissions \
                 (list, read, write, delete) ({e})"
            )),
            // A listing or a PUT answers 404 only when the bucket itself is missing.
            Some(404) if matches!(action, "list" | "write") => MediaError::NoBucket(format!(
                "S3 at {endpoint} has no bucket {bucket:?}: create it, or check s3_bucket \
                 and s3_endpoint ({e})"
            )),
            _ => MediaError::Unavailable(format!(
                "S3 at {endpoint} (bucket {bucket:?}) failed to {action}: {e}"
            )),
        }
    }
}

#[async_trait]
impl MediaStore for S3MediaStore {
    fn describe(&self) -> String {
        format!(
            "S3 bucket {:?} at {} under {}/",
            self.bucket,
            self.endpoint,
            self.dir.as_ref()
        )
    }

    /// One PUT of the bytes with the owner record as metadata: the record and the bytes become
    /// visible together.
    async fn save(
        &self,
        bytes: Bytes,
        content_type: &'static str,
        owner: MediaOwner,
    ) -> Result<StoredMedia, MediaError> {
        let media_id = Uuid::new_v4();
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, content_type.into());
        attributes.insert(
            Attribute::Metadata(META_SPACE_ID.into()),
            owner.space_id.to_string().into(),
        );
        attributes.insert(
            Attribute::Metadata(META_MESSAGE_ID.into()),
            owner.message_id.to_string().into(),
        );
        let opts = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        self.store
            .put_opts(&self.key(media_id), PutPayload::from_bytes(bytes), opts)
            .await
            .map_err(|e| self.explain("write", e))?;
        Ok(StoredMedia {
            media_id,
            content_type,
        })
    }

    /// Two PUTs: the record, then the bytes (with their content type).
    async fn put_upload(&self, record: &MediaRecord, bytes: Bytes) -> Result<(), MediaError> {
        self.put_record(record, PutMode::Overwrite)
            .await
            .map_err(|e| self.explain("write", e))?;
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, record.content_type.clone().into());
        let opts = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        self.store
            .put_opts(
                &self.key(record.media_id),
                PutPayload::from_bytes(bytes),
                opts,
            )
            .await
            .map_err(|e| self.explain("write", e))?;
        Ok(())
    }

    async fn record(&self, media_id: Uuid) -> Result<Option<MediaRecord>, MediaError> {
        Ok(self.versioned_record(media_id).await?.map(|(r, _)| r))
    }

    /// Read, change, conditional PUT (`If-Match` the ETag read); on a precondition failure
    /// (another node updated it meanwhile) read and change again, up to [`UPDATE_ATTEMPTS`]
    /// times.
    async fn update_record(
        &self,
        media_id: Uuid,
        change: &RecordChange<'_>,
    ) -> Result<Option<MediaRecord>, MediaError> {
        for _ in 0..UPDATE_ATTEMPTS {
            let Some((current, version)) = self.versioned_record(media_id).await? else {
                return Ok(None);
            };
            let Some(new) = change(&current) else {
                return Ok(None);
            };
            match self.put_record(&new, PutMode::Update(version)).await {
                Ok(()) => return Ok(Some(new)),
                Err(object_store::Error::Precondition { .. }) => {}
                // The record was deleted meanwhile.
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(self.explain("write", e)),
            }
        }
        Err(MediaError::Unavailable(format!(
            "media record {media_id}: {UPDATE_ATTEMPTS} conflicting updates in a row"
        )))
    }

    async fn load(&self, media_id: Uuid) -> Result<Option<(Bytes, &'static str)>, MediaError> {
        let result = match self
            .store
            .get_opts(&self.key(media_id), GetOptions::default())
            .await
        {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.explain("read", e)),
        };
        let bytes = result.bytes().await.map_err(|e| self.explain("read", e))?;
        let ct = served_content_type(&bytes);
        Ok(Some((bytes, ct)))
    }

    /// Deletes the bytes, then the `/v1` record if any (a record left by a failure in between
    /// is swept as a record without bytes).
    async fn delete(&self, media_id: Uuid) -> Result<(), MediaError> {
        for key in [self.key(media_id), self.record_key(media_id)] {
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.explain("delete", e)),
            }
        }
        Ok(())
    }

    /// Lists `<prefix>/media/`; for each media object older than `grace.min()`, reads its `/v1`
    /// record (GET) and applies [`verdict`], or else its Space7 record (HEAD) and deletes it,
    /// once older than `grace.sent`, if `exists` says its message is gone. Objects without a
    /// record are counted as `unrecorded` and kept; `/v1` records without bytes older than
    /// `grace.sent` are removed. A failed read or delete keeps the object for the next sweep.
    async fn sweep(
        &self,
        grace: SweepGrace,
        exists: &dyn MessageExists,
    ) -> Result<SweepReport, MediaError> {
        let now = SystemTime::now();
        let age = |modified: SystemTime| now.duration_since(modified).unwrap_or_default();
        let mut data = Vec::new();
        let mut data_ids = std::collections::HashSet::new();
        let mut records = Vec::new();
        let mut listing = self.store.list(Some(&self.dir));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.explain("list", e))?;
            let modified: SystemTime = meta.last_modified.into();
            if let Some(id) = self.id_of(&meta.location) {
                data_ids.insert(id);
                data.push((id, age(modified)));
            } else if let Some(id) = self.record_id_of(&meta.location) {
                records.push((id, age(modified)));
            }
        }
        let record_ids: std::collections::HashSet<Uuid> =
            records.iter().map(|(id, _)| *id).collect();
        let mut report = SweepReport::default();
        for (id, age) in data {
            if age < grace.min() {
                continue;
            }
            if record_ids.contains(&id) {
                let r = match self.record(id).await {
                    Ok(Some(r)) => r,
                    Ok(None) => continue, // deleted meanwhile (e.g. with its upload)
                    Err(e) => {
                        tracing::debug!(error = %e, "media sweep: record read failed");
                        continue;
                    }
                };
                let upload_exists = r.thumbnail_of.is_some_and(|u| data_ids.contains(&u));
                let gone = match verdict(&r, grace, upload_exists) {
                    Verdict::Keep => continue,
                    Verdict::Delete => true,
                    Verdict::AskOwner(owner) => exists.exists(owner).await == Some(false),
                };
                // Re-read just before deleting: an upload attached since it was read stays.
                // (S3 has no conditional delete: an attach landing between this read and the
                // delete, at the very end of the 24 h grace, is the remaining window.)
                let unchanged = gone && matches!(self.record(id).await, Ok(Some(now)) if now == r);
                if unchanged && self.delete(id).await.is_ok() {
                    if let Some(t) = r.thumbnail_id {
                        let _ = self.delete(t).await;
                    }
                    match (r.attached, r.thumbnail_of) {
                        (None, None) => report.unattached += 1,
                        (_, Some(_)) => report.strays += 1,
                        _ => report.orphans += 1,
                    }
                }
                continue;
            }
            if age < grace.sent {
                continue;
            }
            let head = GetOptions {
                head: true,
                ..GetOptions::default()
            };
            let attributes = match self.store.get_opts(&self.key(id), head).await {
                Ok(r) => r.attributes,
                Err(object_store::Error::NotFound { .. }) => continue, // deleted meanwhile
                Err(e) => {
                    tracing::debug!(error = %self.explain("read", e), "media sweep: HEAD failed");
                    continue;
                }
            };
            let Some(owner) = owner_of(&attributes) else {
                report.unrecorded += 1;
                continue;
            };
            if exists.exists(owner).await == Some(false) && self.delete(id).await.is_ok() {
                report.orphans += 1;
            }
        }
        for (id, age) in records {
            if age >= grace.sent && !data_ids.contains(&id) {
                // Re-check: the bytes follow their record within one PUT's time.
                let bytes_there = self.store.head(&self.key(id)).await.is_ok();
                if !bytes_there
                    && matches!(
                        self.store.delete(&self.record_key(id)).await,
                        Ok(()) | Err(object_store::Error::NotFound { .. })
                    )
                {
                    report.strays += 1;
                }
            }
        }
        Ok(report)
    }

    /// A HEAD of a key this store never writes (the nil id): 404 means the store answers and
    /// accepts the credentials.
    async fn check(&self) -> Result<(), MediaError> {
        match self.store.head(&self.key(Uuid::nil())).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.explain("read", e)),
        }
    }
}

/// The HTTP status behind an `object_store` error. Object requests report it in the error's
/// variant; listings only in the text of their source (`object_store` keeps its request error
/// type private), so that is read as a fallback.
fn http_status(e: &object_store::Error) -> Option<u16> {
    match e {
        object_store::Error::NotFound { .. } => Some(404),
        object_store::Error::PermissionDenied { .. } => Some(403),
        object_store::Error::Unauthenticated { .. } => Some(401),
        object_store::Error::Generic { .. } => {
            let text = e.to_string();
            let (_, rest) = text.split_once("status code: ")?;
            rest.get(..3)?.parse().ok()
        }
        _ => None,
    }
}

/// The owner record kept in an object's metadata, if it has a complete one.
fn owner_of(attributes: &Attributes) -> Option<MediaOwner> {
    let get = |key: &'static str| {
        attributes
            .get(&Attribute::Metadata(key.into()))
            .and_then(|v| v.as_ref().parse::<Uuid>().ok())
    };
    Some(MediaOwner {
        space_id: get(META_SPACE_ID)?,
        message_id: get(META_MESSAGE_ID)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn settings(prefix: Option<&str>) -> S3Settings {
        S3Settings {
            bucket: "media".into(),
            endpoint: "http://127.0.0.1:9/".into(),
            region: "us-east-1".into(),
            access_key_id: "AKID".into(),
            secret_access_key: Secret::from("very-secret-value".to_owned()),
            prefix: prefix.map(str::to_owned),
        }
    }

    #[test]
    fn keys_live_under_the_prefix_and_only_direct_uuid_children_are_media() {
        let s = S3MediaStore::new(&settings(Some("/prod/eu/"))).unwrap();
        let id = Uuid::new_v4();
        assert_eq!(s.key(id).as_ref(), format!("prod/eu/media/{}", id.simple()));
        assert_eq!(s.id_of(&s.key(id)), Some(id));
        assert_eq!(s.id_of(&Path::from("prod/eu/media/probe-x")), None);
        assert_eq!(
            s.id_of(&Path::from(format!("prod/eu/media/x/{}", id.simple()))),
            None
        );
        assert_eq!(
            s.id_of(&Path::from(format!("prod/eu/mediax/{}", id.simple()))),
            None
        );
        let bare = S3MediaStore::new(&settings(None)).unwrap();
        assert_eq!(bare.key(id).as_ref(), format!("media/{}", id.simple()));
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let s = S3MediaStore::new(&settings(None)).unwrap();
        let shown = format!("{s:?} {:?} {}", settings(None), s.describe());
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(shown.contains("127.0.0.1:9"), "{shown}");
    }

    #[test]
    fn statuses_are_read_from_variants_and_from_listing_errors() {
        let generic = |text: &str| object_store::Error::Generic {
            store: "S3",
            source: text.to_owned().into(),
        };
        let cases = [
            (
                generic(
                    "Error performing GET http://h/b in 2ms - Server returned non-2xx status code: 403 Forbidden: <Error/>",
                ),
                Some(403),
            ),
            (
                generic("Server returned non-2xx status code: 404 Not Found: NoSuchBucket"),
                Some(404),
            ),
            (generic("error sending request: connection refused"), None),
            (
                object_store::Error::NotFound {
                    path: "p".into(),
                    source: "x".into(),
                },
                Some(404),
            ),
        ];
        for (e, status) in cases {
            assert_eq!(http_status(&e), status, "{e}");
        }
        let s = S3MediaStore::new(&settings(None)).unwrap();
        let e = s.explain("list", generic("status code: 404 Not Found"));
        assert!(matches!(e, MediaError::NoBucket(_)), "{e:?}");
        let e = s.explain("read", generic("status code: 404 Not Found"));
        assert!(matches!(e, MediaError::Unavailable(_)), "{e:?}");
        let e = s.explain("list", generic("status code: 403 Forbidden"));
        assert!(matches!(e, MediaError::Denied(_)), "{e:?}");
    }

    #[test]
    fn the_owner_record_needs_both_ids() {
        let (space, message) = (Uuid::now_v7(), Uuid::now_v7());
        let mut a = Attributes::new();
        a.insert(
            Attribute::Metadata(META_SPACE_ID.into()),
            space.to_string().into(),
        );
        assert_eq!(owner_of(&a), None);
        a.insert(
            Attribute::Metadata(META_MESSAGE_ID.into()),
            message.to_string().into(),
        );
        assert_eq!(
            owner_of(&a),
            Some(MediaOwner {
                space_id: space,
                message_id: message
            })
        );
    }
}
