//! Media: Space7 downloads (`/api/media/{id}`: no `Authorization`, the random id in
//! `media_url` is the capability; see `crate::media`) and the native `/v1/media` uploads and
//! downloads (Bearer auth).

use std::time::Instant;

use bytes::{Buf, Bytes};
use futures::{Stream, TryStreamExt};
use sha2::{Digest, Sha256};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use super::{authorization, body_within, read_body, respond, started, user, with_app};
use crate::app::AppRef;
use crate::error::{ApiError, json_response};
use crate::media::record::now_ms;
use crate::media::{self, MediaRecord, Uploaded, kinds};

/// The media operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(get_media_doc, upload_doc, download_doc, download_thumbnail_doc))]
pub struct Doc;

/// A file's bytes in the document: `{type: string, format: binary}`.
struct FileBytes;

impl utoipa::PartialSchema for FileBytes {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for FileBytes {}

// Documentation only: `read_multipart` reads the body.
/// A `multipart/form-data` upload: exactly one part, named `file`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct UploadForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// The conditional request header of downloads.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct Conditional {
    /// ETags the client holds; a match (weak comparison, or `*`) gets 304 without the bytes.
    #[param(rename = "If-None-Match", required = false)]
    if_none_match: String,
}

crate::openapi::errors!(GetMediaErrors {
    404 "No such media." [not_found],
    503 "The media store failed or could not be reached." [store_unavailable],
});

/// Download a message's media file
///
/// No authentication: the unguessable id in a message's `media_url` is the capability. The
/// Content-Type is the one the file's bytes identify. A file lives as long as its message:
/// deleting the message deletes it, and files whose send failed are swept. Any node sharing the
/// media store (`--media-store s3`) serves any upload; `/v1` uploads are served here too, by the
/// same capability rule (a PDF or text file as an `attachment`).
#[utoipa::path(get, path = "/api/media/{mediaId}", operation_id = "getMedia", tag = "media",
    security(()),
    params(("mediaId" = String, Path, description = "The id from `media_url` (a UUID, written \
        without hyphens in `media_url`; the hyphenated form is accepted too).")),
    responses(
        (status = 200, description = "The file's bytes.",
            headers(
                ("Cache-Control" = String, description = "`public, max-age=3600`: the bytes never \
                    change, but the file is deleted with its message, so caches keep it at most an \
                    hour after that."),
                ("X-Content-Type-Options" = String, description = "`nosniff`."),
                ("Content-Disposition" = String, description = "`attachment` for anything but \
                    image, video and audio (only `/v1` uploads can be); absent otherwise."),
            ),
            content(
                (inline(FileBytes) = "image/*"),
                (inline(FileBytes) = "video/*"),
                (inline(FileBytes) = "audio/*"),
                (inline(FileBytes) = "application/pdf"),
                (inline(FileBytes) = "text/plain"),
                (inline(FileBytes) = "application/octet-stream"),
            )),
        GetMediaErrors,
    ))]
#[allow(dead_code)] // The document's entry; `get_media` serves it.
fn get_media_doc() {}

crate::openapi::errors!(UploadErrors {
    400 "Refused upload." [expected_one_file, empty_media, media_type_mismatch, invalid_image,
        invalid_request],
    401,
    413 "The file is larger than `--max-media-bytes` (refused while it streams in; nothing is \
        stored)." [payload_too_large],
    415 "The bytes are not an accepted type." [unsupported_media_type],
    500,
    503 "The thumbnail pool is full (`overloaded`), or the media store failed."
        [overloaded, store_unavailable],
});

/// Upload a file for a later message
///
/// The body is `multipart/form-data` with exactly one part named `file` (its Content-Type is the
/// declared type), or the raw bytes with the declared type as the request's Content-Type. The
/// type is detected from the bytes; accepted: images png, jpeg, gif, webp; video mp4, webm,
/// quicktime; audio mpeg, ogg, wav, flac, aac, mp4; `application/pdf`; `text/plain` for valid
/// UTF-8 in which nothing else is detected. Declared types are compared without parameters and
/// case, with aliases (`image/jpg` is `image/jpeg`, `audio/mp3` is `audio/mpeg`, …); no declared
/// type or `application/octet-stream` means: use the detected one. Images get a JPEG thumbnail
/// within 320×320, made off the request runtime with bounded decoding (at most 16384 px a side
/// and 128 MiB of pixels). An upload no message uses within 24 h is deleted; a send attaches it
/// (`media_ids`).
#[utoipa::path(post, path = "/v1/media", operation_id = "uploadMedia", tag = "media",
    request_body(content(
        (inline(UploadForm) = "multipart/form-data"),
        (inline(FileBytes) = "application/octet-stream"),
        (inline(FileBytes) = "*/*"),
    )),
    responses(
        (status = 201, description = "Stored (bytes, record and thumbnail durable).",
            body = Uploaded,
            links(
                ("DownloadMedia" = (operation_id = "downloadMedia",
                    description = "Download the upload.",
                    parameters(("mediaId" = "$response.body#/media_id")))),
                ("DownloadThumbnail" = (operation_id = "downloadThumbnail",
                    description = "The upload's thumbnail (404 unless an image).",
                    parameters(("mediaId" = "$response.body#/media_id")))),
            )),
        UploadErrors,
    ))]
#[allow(dead_code)] // The document's entry; `upload` serves it.
fn upload_doc() {}

crate::openapi::errors!(DownloadErrors {
    401,
    404 "No such upload (or one of the Space7 send path, served at `/api/media/{mediaId}`), or \
        no thumbnail." [not_found],
    500,
    503 "The media store failed or could not be reached." [store_unavailable],
});

/// Download an upload
///
/// The bytes of an upload. Any authenticated user who has the id may read it (ids are random
/// UUIDs). No range requests: the whole file is sent.
#[utoipa::path(get, path = "/v1/media/{mediaId}", operation_id = "downloadMedia", tag = "media",
    params(
        ("mediaId" = String, Path, description = "A media id from `POST /v1/media` (hyphenated or not)."),
        Conditional,
    ),
    responses(
        (status = 200, description = "The bytes.",
            headers(
                ("Content-Type" = String, description = "The stored type (`text/plain; charset=utf-8` for text)."),
                ("Content-Disposition" = String, description = "`inline` for image, video and \
                    audio; `attachment; filename=\"<id>.<ext>\"` for anything else."),
                ("Content-Length" = u64, description = "The size."),
                ("ETag" = String, description = "Strong: the quoted sha256. A matching \
                    `If-None-Match` gets 304."),
                ("Cache-Control" = String, description = "`private, max-age=3600, immutable`: the \
                    bytes of an id never change, but a redaction deletes them."),
                ("X-Content-Type-Options" = String, description = "`nosniff`."),
            ),
            content((inline(FileBytes) = "*/*"))),
        (status = 304, description = "`If-None-Match` matched the ETag (no body, no \
            Content-Length).",
            headers(
                ("Content-Type" = String, description = "The stored type (`text/plain; charset=utf-8` for text)."),
                ("Content-Disposition" = String, description = "`inline` for image, video and \
                    audio; `attachment; filename=\"<id>.<ext>\"` for anything else."),
                ("ETag" = String, description = "Strong: the quoted sha256. A matching \
                    `If-None-Match` gets 304."),
                ("Cache-Control" = String, description = "`private, max-age=3600, immutable`: the \
                    bytes of an id never change, but a redaction deletes them."),
                ("X-Content-Type-Options" = String, description = "`nosniff`."),
            )),
        DownloadErrors,
    ))]
#[allow(dead_code)] // The document's entry; `download` serves it.
fn download_doc() {}

/// Download an upload's thumbnail
///
/// The JPEG thumbnail of an image upload (404 for other uploads). Any authenticated user who has
/// the id may read it (ids are random UUIDs). No range requests: the whole file is sent.
#[utoipa::path(get, path = "/v1/media/{mediaId}/thumbnail", operation_id = "downloadThumbnail",
    tag = "media",
    params(
        ("mediaId" = String, Path, description = "A media id from `POST /v1/media` (hyphenated or not)."),
        Conditional,
    ),
    responses(
        (status = 200, description = "The JPEG bytes.",
            headers(
                ("Content-Type" = String, description = "`image/jpeg`."),
                ("Content-Disposition" = String, description = "`inline`."),
                ("Content-Length" = u64, description = "The size."),
                ("ETag" = String, description = "Strong: the quoted sha256. A matching \
                    `If-None-Match` gets 304."),
                ("Cache-Control" = String, description = "`private, max-age=3600, immutable`: the \
                    bytes of an id never change, but a redaction deletes them."),
                ("X-Content-Type-Options" = String, description = "`nosniff`."),
            ),
            content((inline(FileBytes) = "image/jpeg"))),
        (status = 304, description = "`If-None-Match` matched the ETag.",
            headers(
                ("Content-Type" = String, description = "`image/jpeg`."),
                ("Content-Disposition" = String, description = "`inline`."),
                ("ETag" = String, description = "Strong: the quoted sha256."),
                ("Cache-Control" = String, description = "`private, max-age=3600, immutable`."),
                ("X-Content-Type-Options" = String, description = "`nosniff`."),
            )),
        DownloadErrors,
    ))]
#[allow(dead_code)] // The document's entry; `download` serves it.
fn download_thumbnail_doc() {}

/// How long a client may keep a `/v1` download without revalidating: the bytes of an id never
/// change, but a redaction deletes them, so a private cache keeps them at most this long after.
const V1_CACHE_CONTROL: &str = "private, max-age=3600, immutable";
/// Room for the multipart framing around the file part of an upload.
pub(super) const MULTIPART_OVERHEAD: usize = 64 * 1024;

/// The media routes. Building them also starts the media sweeper
/// ([`crate::media::spawn_sweeper`]): the media routes own the files' lifetime, and the server
/// builds its routes exactly once, inside its runtime.
pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    crate::media::spawn_sweeper(app.clone());
    let space7 = warp::path!("api" / "media" / String)
        .and(warp::get())
        .and(with_app(app.clone()))
        .and(started())
        .then(|id: String, app: AppRef, t: Instant| {
            respond(app.clone(), "GET /api/media/:id", t, get_media(app, id))
        });
    let upload = warp::path!("v1" / "media")
        .and(warp::post())
        .and(body_within(app.clone(), upload_body_limit))
        .and(with_app(app.clone()))
        .and(started())
        .and(authorization())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::body::stream())
        .then(
            |app: AppRef, t, auth, ct: Option<String>, body| async move {
                let body = bytes_stream(body);
                respond(
                    app.clone(),
                    "POST /v1/media",
                    t,
                    upload(app, auth, ct, body),
                )
                .await
            },
        );
    let get_v1 = warp::path!("v1" / "media" / String)
        .and(warp::get())
        .and(with_app(app.clone()))
        .and(started())
        .and(authorization())
        .and(warp::header::optional::<String>("if-none-match"))
        .then(|id: String, app: AppRef, t, auth, inm: Option<String>| {
            respond(
                app.clone(),
                "GET /v1/media/:id",
                t,
                download(app, auth, id, false, inm),
            )
        });
    let get_thumbnail = warp::path!("v1" / "media" / String / "thumbnail")
        .and(warp::get())
        .and(with_app(app))
        .and(started())
        .and(authorization())
        .and(warp::header::optional::<String>("if-none-match"))
        .then(|id: String, app: AppRef, t, auth, inm: Option<String>| {
            respond(
                app.clone(),
                "GET /v1/media/:id/thumbnail",
                t,
                download(app, auth, id, true, inm),
            )
        });
    space7
        .or(upload)
        .unify()
        .or(get_v1)
        .unify()
        .or(get_thumbnail)
        .unify()
        .boxed()
}

/// The body limit of an upload: `max_media_bytes`, plus the framing for multipart.
fn upload_body_limit(app: &AppRef, content_type: Option<&str>) -> usize {
    if content_type.is_some_and(is_multipart) {
        app.config
            .max_media_bytes
            .saturating_add(MULTIPART_OVERHEAD)
    } else {
        app.config.max_media_bytes
    }
}

/// The request body as a stream of `Bytes` (zero-copy for hyper's chunks).
pub(super) fn bytes_stream<S, B>(
    body: S,
) -> impl Stream<Item = Result<Bytes, warp::Error>> + Send + 'static
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    body.map_ok(|mut b| b.copy_to_bytes(b.remaining()))
}

pub(super) fn is_multipart(content_type: &str) -> bool {
    content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
}

fn expected_one_file(why: &str) -> ApiError {
    ApiError::bad_request(
        "expected_one_file",
        format!("Send exactly one multipart part named \"file\": {why}"),
    )
}

/// The file of a multipart upload: exactly one part, named `file`, of at most `limit` bytes
/// (never more is held: the part is refused as soon as it grows past the limit), and the
/// Content-Type of that part.
///
/// # Errors
/// 413 `payload_too_large` over the limit; 400 `expected_one_file` for no part, several parts,
/// or a part with another name; 400 `invalid_request` for a malformed body.
async fn read_multipart<S>(
    ct: &str,
    body: S,
    limit: usize,
) -> Result<(Bytes, Option<String>), ApiError>
where
    S: Stream<Item = Result<Bytes, warp::Error>> + Send + 'static,
{
    let boundary = multer::parse_boundary(ct).map_err(|_| {
        ApiError::bad_request(
            "invalid_request",
            "multipart/form-data without a valid boundary",
        )
    })?;
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["file"])
        .size_limit(
            multer::SizeLimit::new()
                .whole_stream((limit + MULTIPART_OVERHEAD) as u64)
                .for_field("file", limit as u64),
        );
    let mut mp = multer::Multipart::with_constraints(body, boundary, constraints);
    let map_err = |e: multer::Error| match e {
        multer::Error::FieldSizeExceeded { .. } => {
            ApiError::too_large(format!("The file exceeds {limit} bytes"))
        }
        multer::Error::StreamSizeExceeded { .. } => {
            ApiError::too_large("The request body is too large")
        }
        multer::Error::UnknownField { field_name } => expected_one_file(&format!(
            "unexpected part {:?}",
            field_name.unwrap_or_default()
        )),
        other => ApiError::bad_request(
            "invalid_request",
            format!("Malformed multipart body: {other}"),
        ),
    };
    let mut file = None;
    loop {
        let next = match mp.next_field().await {
            // A body that ends before any part (RFC 2046 wants at least one).
            Err(multer::Error::IncompleteStream) if file.is_none() => {
                return Err(expected_one_file("no part"));
            }
            other => other.map_err(map_err)?,
        };
        let Some(mut field) = next else { break };
        if file.is_some() {
            // Read the rest (within the stream limit, holding one chunk at a time), so the
            // client, still sending, gets the answer rather than a reset connection.
            while let Ok(Some(_)) = field.chunk().await {}
            while let Ok(Some(mut more)) = mp.next_field().await {
                while let Ok(Some(_)) = more.chunk().await {}
            }
            return Err(expected_one_file("several parts"));
        }
        let declared = field.content_type().map(ToString::to_string);
        let bytes = field.bytes().await.map_err(map_err)?;
        file = Some((bytes, declared));
    }
    file.ok_or_else(|| expected_one_file("no part"))
}

/// `POST /v1/media` → 201 `{media_id, sha256, size, content_type, thumbnail_id}`, once the
/// upload (and its thumbnail) and their records are durable.
///
/// The body is `multipart/form-data` with one part `file` (its Content-Type is the declared
/// type) or the raw bytes (the request's Content-Type is the declared type). The type is
/// checked against the bytes ([`kinds::check`]); images get a JPEG thumbnail within 320×320
/// ([`media::thumbnail`]), stored as media of its own (`thumbnail_id`).
///
/// 401 without a valid token (before the body is read); 413 `payload_too_large` over
/// `--max-media-bytes` (refused while reading: never more is held); 400 `expected_one_file`,
/// `empty_media`, `media_type_mismatch`, `invalid_image`; 415 `unsupported_media_type`; 503
/// `overloaded` when the thumbnail pool is full, `store_unavailable` when the store fails.
async fn upload<S>(
    app: AppRef,
    auth: Option<String>,
    ct: Option<String>,
    body: S,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<Bytes, warp::Error>> + Send + 'static,
{
    let user = user(&app, auth)?;
    let limit = app.config.max_media_bytes;
    let (bytes, declared) = match ct.as_deref() {
        Some(ct) if is_multipart(ct) => read_multipart(ct, body, limit).await?,
        _ => (read_body(body, limit).await?, ct),
    };
    let record = store_upload(&app, user.id(), bytes, declared).await?;
    Ok(json_response(StatusCode::CREATED, &Uploaded::from(&record)))
}

/// Stores one upload of `uploader` (not attached to anything yet), once its type is checked
/// against its bytes, with its thumbnail for an image; returns its record once durable. Shared by
/// `POST /v1/media` and the multipart send.
///
/// # Errors
/// 400 `empty_media`, `media_type_mismatch`, `invalid_image`; 415 `unsupported_media_type`; 503
/// `overloaded` (thumbnail pool full) or `store_unavailable`.
pub(super) async fn store_upload(
    app: &AppRef,
    uploader: &str,
    bytes: Bytes,
    declared: Option<String>,
) -> Result<MediaRecord, ApiError> {
    let (content_type, sha256) = {
        let bytes = bytes.clone();
        tokio::task::spawn_blocking(move || {
            let ct = kinds::check(declared.as_deref(), &bytes)?;
            Ok::<_, ApiError>((ct, hex_sha256(&bytes)))
        })
        .await
        .map_err(|e| ApiError::internal(format!("upload check failed: {e}")))??
    };
    let media_id = Uuid::new_v4();
    let created_at_ms = now_ms();
    let mut thumbnail_id = None;
    if kinds::is_image(&content_type) {
        let thumb = app.thumbnails.make(bytes.clone(), &content_type).await?;
        let record = MediaRecord {
            media_id: Uuid::new_v4(),
            uploader: uploader.to_owned(),
            content_type: "image/jpeg".to_owned(),
            size: thumb.bytes.len() as u64,
            sha256: hex_sha256(&thumb.bytes),
            thumbnail_id: None,
            thumbnail_of: Some(media_id),
            created_at_ms,
            attached: None,
        };
        // The thumbnail first: a crash before the upload leaves a thumbnail of nothing,
        // which the sweep removes.
        app.media
            .put_upload(&record, thumb.bytes)
            .await
            .map_err(|e| media::failed(app, "write", e))?;
        thumbnail_id = Some(record.media_id);
    }
    let record = MediaRecord {
        media_id,
        uploader: uploader.to_owned(),
        content_type,
        size: bytes.len() as u64,
        sha256,
        thumbnail_id,
        thumbnail_of: None,
        created_at_ms,
        attached: None,
    };
    app.media
        .put_upload(&record, bytes)
        .await
        .map_err(|e| media::failed(app, "write", e))?;
    Ok(record)
}

/// Lower-case hex SHA-256.
fn hex_sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, as RFC 9110 §13.1.2 asks).
fn none_match(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// `GET /v1/media/{media_id}` and `GET /v1/media/{media_id}/thumbnail` → the bytes of a `/v1`
/// upload (or of its thumbnail), to any authenticated user who has the id (ids are random
/// UUIDs). Headers: the stored `Content-Type`, `X-Content-Type-Options: nosniff`,
/// `Content-Disposition: inline` for image/video/audio and `attachment; filename="<id>.<ext>"`
/// otherwise, `Content-Length`, a strong `ETag` (the sha256; `If-None-Match` → 304) and
/// `Cache-Control: private, max-age=3600, immutable`. No range requests (the whole file is
/// sent). 404 `not_found` for an unknown id, media of the Space7 send path, or an upload
/// without a thumbnail.
async fn download(
    app: AppRef,
    auth: Option<String>,
    id: String,
    thumbnail: bool,
    if_none_match: Option<String>,
) -> Result<Response, ApiError> {
    user(&app, auth)?;
    let not_found = || ApiError::not_found("Media not found");
    let media_id: Uuid = id.parse().map_err(|_| not_found())?;
    let record = |id| {
        let app = app.clone();
        async move {
            app.media
                .record(id)
                .await
                .map_err(|e| media::failed(&app, "read", e))
        }
    };
    let mut rec = record(media_id).await?.ok_or_else(not_found)?;
    if thumbnail {
        let id = rec
            .thumbnail_id
            .ok_or_else(|| ApiError::not_found("This media has no thumbnail"))?;
        rec = record(id).await?.ok_or_else(not_found)?;
    }
    let etag = format!("\"{}\"", rec.sha256);
    let mut res = if if_none_match.is_some_and(|v| none_match(&v, &etag)) {
        let mut res = Response::new(Bytes::new().into());
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        res
    } else {
        let (bytes, _) = app
            .media
            .load(rec.media_id)
            .await
            .map_err(|e| media::failed(&app, "read", e))?
            .ok_or_else(not_found)?;
        let len = bytes.len();
        let mut res = Response::new(bytes.into());
        res.headers_mut()
            .insert("content-length", HeaderValue::from(len));
        res
    };
    let h = res.headers_mut();
    let content_type = if rec.content_type == "text/plain" {
        "text/plain; charset=utf-8".to_owned()
    } else {
        rec.content_type.clone()
    };
    let disposition = if kinds::is_inline(&rec.content_type) {
        "inline".to_owned()
    } else {
        format!(
            "attachment; filename=\"{}.{}\"",
            rec.media_id.simple(),
            kinds::extension(&rec.content_type)
        )
    };
    for (name, value) in [
        ("content-type", content_type),
        ("content-disposition", disposition),
        ("etag", etag),
    ] {
        let value = HeaderValue::from_str(&value)
            .map_err(|_| ApiError::internal("stored media metadata is not a header value"))?;
        h.insert(name, value);
    }
    h.insert("cache-control", HeaderValue::from_static(V1_CACHE_CONTROL));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(res)
}

/// `GET /api/media/{media_id}` → the file, with the content type its bytes identify and a
/// long-lived cache header (media never changes); `Content-Disposition: attachment` unless it
/// is an image, video or audio (only `/v1` uploads can be anything else). Serves `/v1` uploads
/// too, by the same capability rule: a media URL given to the Space7 app works without a token. Needs no space lookup, so any node sharing the
/// media store serves any upload; 503 `store_unavailable` when the store fails.
async fn get_media(app: AppRef, id: String) -> Result<Response, ApiError> {
    let media_id: uuid::Uuid = id
        .parse()
        .map_err(|_| ApiError::not_found("Media not found"))?;
    let (bytes, content_type) = app
        .media
        .load(media_id)
        .await
        .map_err(|e| crate::media::failed(&app, "read", e))?
        .ok_or_else(|| ApiError::not_found("Media not found"))?;
    let mut res = Response::new(bytes.into());
    let h = res.headers_mut();
    h.insert("content-type", HeaderValue::from_static(content_type));
    h.insert(
        "cache-control",
        // The bytes never change, but the file is deleted with its message: caches may keep it
        // at most an hour after that, not a year.
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    // The Space7 path stores only images, video and audio, but `/v1` uploads (a PDF, text) are
    // served here too by their id: anything else is a download, never rendered by our origin.
    if !kinds::is_inline(content_type) {
        h.insert(
            "content-disposition",
            HeaderValue::from_static("attachment"),
        );
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_uses_weak_comparison_and_lists() {
        let etag = "\"abc\"";
        assert!(none_match("\"abc\"", etag));
        assert!(none_match("W/\"abc\"", etag));
        assert!(none_match("\"x\", \"abc\"", etag));
        assert!(none_match("*", etag));
        assert!(!none_match("\"abcd\"", etag));
        assert!(!none_match("abc", etag));
    }
}
