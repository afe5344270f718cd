//! `/v1/media` black-box, on the real binary, on both message stores (`SPACECAST_TEST_STORE`) and
//! both media stores: every test runs once with the local media directory and once with the S3
//! store on SeaweedFS (`scripts/seaweedfs.sh up`; without it the S3 half fails naming the fix).
//!
//! The send-side API (`attach_for_send`, `delete_media`) and the sweep are tested on the media
//! stores directly (a temp dir, and a fresh prefix of the S3 test bucket), as the send route
//! will call them.

mod common;

use std::io::Cursor;
use std::time::Duration;

use bytes::Bytes;
use common::{Server, assert_json_error, s3_env, token};
use futures::StreamExt;
use image::ImageFormat;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use sha2::{Digest, Sha256};
use spacecast_api::config::{S3Settings, Secret};
use spacecast_api::media::record::now_ms;
use spacecast_api::media::{
    Attachment, LocalMediaStore, MediaOwner, MediaRecord, MediaStore, S3MediaStore, SweepGrace,
    attach_for_send, delete_media, detach,
};
use uuid::Uuid;

/// Where a test server keeps its media.
#[derive(Clone, Copy, Debug)]
enum Media {
    Local,
    S3,
}

const BOTH: [Media; 2] = [Media::Local, Media::S3];

/// A server on a fresh data dir with its media in `media` (a fresh S3 prefix), and a way to
/// list what it stored.
struct Node {
    s: Server,
    media: Media,
    prefix: String,
}

impl Node {
    async fn start(media: Media, extra: &[&str]) -> Node {
        let prefix = format!("tests/v1-{}", Uuid::new_v4().simple());
        let mut args: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        if let Media::S3 = media {
            args.extend(s3_env().serve_args(&prefix));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Node {
            s: Server::start(&args).await,
            media,
            prefix,
        }
    }

    /// The names of everything stored (files and records).
    async fn stored(&self) -> Vec<String> {
        match self.media {
            Media::Local => match std::fs::read_dir(self.s.data_dir.join("media")) {
                Ok(dir) => dir
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect(),
                Err(_) => Vec::new(),
            },
            Media::S3 => {
                let raw = raw_s3();
                let mut listing = raw.list(Some(&Path::from(self.prefix.as_str())));
                let mut out = Vec::new();
                while let Some(meta) = listing.next().await {
                    out.push(meta.unwrap().location.to_string());
                }
                out
            }
        }
    }

    /// The record stored beside upload `id`, read behind the server's back.
    async fn record(&self, id: &str) -> Value {
        let simple = Uuid::parse_str(id).unwrap().simple().to_string();
        let bytes = match self.media {
            Media::Local => {
                std::fs::read(self.s.data_dir.join("media").join(format!("{simple}.json")))
                    .expect("the record file")
            }
            Media::S3 => raw_s3()
                .get(&Path::from(format!("{}/media/{simple}.json", self.prefix)))
                .await
                .expect("the record object")
                .bytes()
                .await
                .unwrap()
                .to_vec(),
        };
        serde_json::from_slice(&bytes).unwrap()
    }

    async fn upload_multipart(&self, token: &str, bytes: &[u8], ct: &str) -> reqwest::Response {
        let form = Form::new().part(
            "file",
            Part::bytes(bytes.to_vec())
                .file_name("upload")
                .mime_str(ct)
                .unwrap(),
        );
        self.s
            .http
            .post(self.s.url("/v1/media"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    async fn upload_raw(&self, token: &str, bytes: &[u8], ct: &str) -> reqwest::Response {
        self.s
            .http
            .post(self.s.url("/v1/media"))
            .bearer_auth(token)
            .header("content-type", ct)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.s
            .http
            .get(self.s.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

fn raw_s3() -> AmazonS3 {
    spacecast_api::install_tls_provider();
    let env = s3_env();
    AmazonS3Builder::new()
        .with_bucket_name(&env.bucket)
        .with_endpoint(&env.endpoint)
        .with_region(&env.region)
        .with_access_key_id(&env.access_key_id)
        .with_secret_access_key(&env.secret_access_key)
        .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
        .build()
        .expect("raw S3 client")
}

/// An image of `w`×`h` encoded as `format`.
fn picture(w: u32, h: u32, format: ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

/// A PNG whose header declares `w`×`h` (a decompression bomb's header) and no pixel data.
fn bomb_png(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut crc = 0xFFFF_FFFFu32;
    for b in &ihdr {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&(!crc).to_be_bytes());
    out
}

const PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
/// The start of a 64-bit ELF executable header.
fn elf() -> Vec<u8> {
    let mut b = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0\x01\0\0\0".to_vec();
    b.resize(128, 0);
    b
}
const ZIP: &[u8] = b"PK\x03\x04\x14\0\0\0\x08\0\0\0!\0\0\0\0\0\0\0\0\0\0\0\0\0\x05\0\0\0a.txt";

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("header {name} missing"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn images_upload_by_multipart_and_raw_get_thumbnails_and_download_intact() {
    for media in BOTH {
        let n = Node::start(media, &[]).await;
        let ada = token("ada");
        let grace = token("grace");
        let cases = [
            (
                picture(1000, 600, ImageFormat::Png),
                "image/png",
                ImageFormat::Png,
            ),
            (
                picture(400, 900, ImageFormat::Jpeg),
                "image/jpeg",
                ImageFormat::Jpeg,
            ),
            (
                picture(50, 30, ImageFormat::Gif),
                "image/gif",
                ImageFormat::Gif,
            ),
            (
                picture(640, 640, ImageFormat::WebP),
                "image/webp",
                ImageFormat::WebP,
            ),
        ];
        for (bytes, ct, format) in &cases {
            for raw in [false, true] {
                let r = if raw {
                    n.upload_raw(&ada, bytes, ct).await
                } else {
                    n.upload_multipart(&ada, bytes, ct).await
                };
                assert_eq!(r.status(), 201, "{media:?} {ct} raw={raw}");
                let up: Value = r.json().await.unwrap();
                assert_eq!(up["content_type"], *ct, "{up}");
                assert_eq!(up["size"], bytes.len() as u64);
                assert_eq!(up["sha256"], sha256_hex(bytes));
                let id = up["media_id"].as_str().unwrap().to_owned();
                let thumb = up["thumbnail_id"].as_str().expect("images get a thumbnail");
                assert_ne!(thumb, id);
                // The record beside the bytes, durable before the 201.
                let rec = n.record(&id).await;
                assert_eq!(rec["uploader"], "ada");
                assert_eq!(rec["content_type"], *ct);
                assert_eq!(rec["size"], bytes.len() as u64);
                assert_eq!(rec["sha256"], sha256_hex(bytes));
                assert_eq!(rec["thumbnail_id"], thumb);
                assert_eq!(rec["attached"], Value::Null);
                assert!(rec["created_at_ms"].as_u64().unwrap() > 1_700_000_000_000);

                // Any authenticated user with the id reads the identical bytes.
                let got = n.get(&grace, &format!("/v1/media/{id}")).await;
                assert_eq!(got.status(), 200);
                assert_eq!(header(&got, "content-type"), *ct);
                assert_eq!(header(&got, "x-content-type-options"), "nosniff");
                assert_eq!(header(&got, "content-disposition"), "inline");
                assert_eq!(header(&got, "content-length"), bytes.len().to_string());
                let etag = format!("\"{}\"", sha256_hex(bytes));
                assert_eq!(header(&got, "etag"), etag);
                let cc = header(&got, "cache-control");
                assert!(
                    cc.contains("private") && cc.contains("immutable") && cc.contains("max-age="),
                    "{cc}"
                );
                assert_eq!(&got.bytes().await.unwrap()[..], &bytes[..]);
                assert_eq!(image::guess_format(bytes).unwrap(), *format);

                // A matching If-None-Match is a 304 without the body.
                let again =
                    n.s.http
                        .get(n.s.url(&format!("/v1/media/{id}")))
                        .bearer_auth(&grace)
                        .header("if-none-match", &etag)
                        .send()
                        .await
                        .unwrap();
                assert_eq!(again.status(), 304);
                assert_eq!(header(&again, "etag"), etag);
                assert!(again.bytes().await.unwrap().is_empty());

                // The thumbnail: a JPEG within 320×320 with the aspect ratio kept.
                for path in [
                    format!("/v1/media/{id}/thumbnail"),
                    format!("/v1/media/{thumb}"),
                ] {
                    let t = n.get(&ada, &path).await;
                    assert_eq!(t.status(), 200, "{path}");
                    assert_eq!(header(&t, "content-type"), "image/jpeg");
                    assert_eq!(header(&t, "content-disposition"), "inline");
                    let tb = t.bytes().await.unwrap();
                    let img = image::load_from_memory(&tb).expect("the thumbnail decodes");
                    assert_eq!(image::guess_format(&tb).unwrap(), ImageFormat::Jpeg);
                    let src = image::load_from_memory(bytes).unwrap();
                    assert!(img.width() <= 320 && img.height() <= 320);
                    let expect = if src.width() > 320 || src.height() > 320 {
                        let scale = f64::from(320) / f64::from(src.width().max(src.height()));
                        (
                            (f64::from(src.width()) * scale).round() as u32,
                            (f64::from(src.height()) * scale).round() as u32,
                        )
                    } else {
                        (src.width(), src.height())
                    };
                    let close = |a: u32, b: u32| a.abs_diff(b) <= 1;
                    assert!(
                        close(img.width(), expect.0) && close(img.height(), expect.1),
                        "{path}: {}x{} for {}x{}",
                        img.width(),
                        img.height(),
                        src.width(),
                        src.height()
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn other_types_download_as_attachments_and_aliases_are_accepted() {
    for media in BOTH {
        let n = Node::start(media, &[]).await;
        let ada = token("ada");
        let r = n.upload_multipart(&ada, PDF, "application/pdf").await;
        assert_eq!(r.status(), 201, "{media:?}");
        let up: Value = r.json().await.unwrap();
        assert_eq!(up["content_type"], "application/pdf");
        assert_eq!(up["thumbnail_id"], Value::Null);
        let id = up["media_id"].as_str().unwrap();
        let got = n.get(&ada, &format!("/v1/media/{id}")).await;
        assert_eq!(got.status(), 200);
        assert_eq!(header(&got, "content-type"), "application/pdf");
        let simple = Uuid::parse_str(id).unwrap().simple().to_string();
        assert_eq!(
            header(&got, "content-disposition"),
            format!("attachment; filename=\"{simple}.pdf\"")
        );
        assert_eq!(header(&got, "x-content-type-options"), "nosniff");
        assert_eq!(&got.bytes().await.unwrap()[..], PDF);
        // The capability route (no token) serves it too, also as a download.
        let cap =
            n.s.http
                .get(n.s.url(&format!("/api/media/{id}")))
                .send()
                .await
                .unwrap();
        assert_eq!(cap.status(), 200);
        assert_eq!(header(&cap, "content-disposition"), "attachment");
        assert_eq!(header(&cap, "x-content-type-options"), "nosniff");
        // No thumbnail for a PDF.
        let t = n.get(&ada, &format!("/v1/media/{id}/thumbnail")).await;
        assert_json_error(t, 404, "not_found").await;

        // UTF-8 text is text/plain (parameters ignored), served as an attachment with a charset.
        let r = n
            .upload_raw(
                &ada,
                "héllo, wörld\n".as_bytes(),
                "text/plain; charset=utf-8",
            )
            .await;
        assert_eq!(r.status(), 201);
        let up: Value = r.json().await.unwrap();
        assert_eq!(up["content_type"], "text/plain");
        let got = n
            .get(
                &ada,
                &format!("/v1/media/{}", up["media_id"].as_str().unwrap()),
            )
            .await;
        assert_eq!(header(&got, "content-type"), "text/plain; charset=utf-8");
        assert!(header(&got, "content-disposition").starts_with("attachment; filename="));

        // Aliases and "detect it" declarations.
        let jpeg = picture(8, 8, ImageFormat::Jpeg);
        for declared in ["image/jpg", "IMAGE/JPEG; q=0.9", "application/octet-stream"] {
            let r = n.upload_raw(&ada, &jpeg, declared).await;
            assert_eq!(r.status(), 201, "{declared}");
            let up: Value = r.json().await.unwrap();
            assert_eq!(up["content_type"], "image/jpeg", "{declared}");
        }
    }
}

#[tokio::test]
async fn refused_uploads_store_nothing() {
    for media in BOTH {
        let n = Node::start(media, &["--max-media-bytes", "4096"]).await;
        let ada = token("ada");
        let png = picture(4, 4, ImageFormat::Png);

        // Declared ≠ detected.
        let r = n.upload_multipart(&ada, &png, "image/jpeg").await;
        assert_json_error(r, 400, "media_type_mismatch").await;
        let r = n.upload_raw(&ada, &png, "application/pdf").await;
        assert_json_error(r, 400, "media_type_mismatch").await;
        // Not an accepted type, whatever was declared.
        for bytes in [elf(), ZIP.to_vec()] {
            let r = n.upload_raw(&ada, &bytes, "application/octet-stream").await;
            assert_json_error(r, 415, "unsupported_media_type").await;
            let r = n.upload_multipart(&ada, &bytes, "image/png").await;
            assert_json_error(r, 415, "unsupported_media_type").await;
        }
        // Over --max-media-bytes, raw (refused by its length) and multipart (by the part).
        let big = vec![b'a'; 4097];
        let r = n.upload_raw(&ada, &big, "text/plain").await;
        assert_json_error(r, 413, "payload_too_large").await;
        let r = n.upload_multipart(&ada, &big, "text/plain").await;
        assert_json_error(r, 413, "payload_too_large").await;
        // A chunked raw body without a length is refused while it streams.
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            (0..8).map(|_| Ok(vec![b'b'; 1024])).collect();
        // (Its own client: the server closes that connection, which must not be pooled.)
        let r = common::http_client()
            .post(n.s.url("/v1/media"))
            .bearer_auth(&ada)
            .header("content-type", "text/plain")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await;
        if let Ok(r) = r {
            // (The server may also close the connection mid-body once it has answered.)
            assert_json_error(r, 413, "payload_too_large").await;
        }
        // Exactly one part named `file`.
        let two = Form::new()
            .part(
                "file",
                Part::bytes(png.clone()).mime_str("image/png").unwrap(),
            )
            .part(
                "file",
                Part::bytes(png.clone()).mime_str("image/png").unwrap(),
            );
        let r =
            n.s.http
                .post(n.s.url("/v1/media"))
                .bearer_auth(&ada)
                .multipart(two)
                .send()
                .await
                .unwrap();
        assert_json_error(r, 400, "expected_one_file").await;
        for form in [Form::new(), Form::new().text("media", "x")] {
            let r =
                n.s.http
                    .post(n.s.url("/v1/media"))
                    .bearer_auth(&ada)
                    .multipart(form)
                    .send()
                    .await
                    .unwrap();
            assert_json_error(r, 400, "expected_one_file").await;
        }
        // An empty file.
        let r = n.upload_raw(&ada, b"", "text/plain").await;
        assert_json_error(r, 400, "empty_media").await;
        // No token: 401 whatever the body.
        let r =
            n.s.http
                .post(n.s.url("/v1/media"))
                .header("content-type", "image/png")
                .body(png.clone())
                .send()
                .await
                .unwrap();
        assert_json_error(r, 401, "unauthenticated").await;

        assert_eq!(
            n.stored().await,
            Vec::<String>::new(),
            "{media:?}: nothing stored"
        );

        // Downloads: 401 without a token, 404 for unknown or malformed ids.
        let r =
            n.s.http
                .get(n.s.url(&format!("/v1/media/{}", Uuid::new_v4())))
                .send()
                .await
                .unwrap();
        assert_json_error(r, 401, "unauthenticated").await;
        // Media of the Space7 send path has no `/v1` record: not served here.
        let space = n.s.create_space(&ada, "Pictures").await["space_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let m = common::send_png(&n.s, &ada, &space).await;
        let space7_id =
            spacecast_api::media::media_id_of_url(m["media_url"].as_str().unwrap()).unwrap();
        for path in [
            format!("/v1/media/{space7_id}"),
            format!("/v1/media/{}", Uuid::new_v4()),
            format!("/v1/media/{}/thumbnail", Uuid::new_v4()),
            "/v1/media/not-a-uuid".to_owned(),
        ] {
            let r = n.get(&ada, &path).await;
            assert_json_error(r, 404, "not_found").await;
        }
    }
}

#[tokio::test]
async fn a_decompression_bomb_is_refused_cleanly_and_the_server_keeps_serving() {
    for media in BOTH {
        let n = Node::start(media, &[]).await;
        let ada = token("ada");
        for (w, h) in [(100_000, 100_000), (16_000, 16_000)] {
            let r = n.upload_raw(&ada, &bomb_png(w, h), "image/png").await;
            assert_json_error(r, 400, "invalid_image").await;
        }
        // Garbage after a valid signature is refused the same way.
        let r = n
            .upload_raw(&ada, b"\x89PNG\r\n\x1a\ngarbage", "image/png")
            .await;
        assert_json_error(r, 400, "invalid_image").await;
        assert_eq!(
            n.stored().await,
            Vec::<String>::new(),
            "{media:?}: nothing stored"
        );
        let health = n.s.http.get(n.s.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let r = n
            .upload_raw(&ada, &picture(2, 2, ImageFormat::Png), "image/png")
            .await;
        assert_eq!(r.status(), 201, "uploads still work");
    }
}

// ---- The send side and the sweep, on the media stores directly ----

/// A local store in a temp dir, and an S3 store on a fresh prefix of the test bucket.
async fn stores() -> Vec<(Box<dyn MediaStore>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalMediaStore::open(dir.path()).unwrap();
    let env = s3_env();
    let settings = S3Settings {
        bucket: env.bucket.clone(),
        endpoint: env.endpoint.clone(),
        region: env.region.clone(),
        access_key_id: env.access_key_id.clone(),
        secret_access_key: Secret::from(env.secret_access_key.clone()),
        prefix: Some(format!("tests/attach-{}", Uuid::new_v4().simple())),
    };
    let s3 = S3MediaStore::connect(&settings).await.unwrap_or_else(|e| {
        panic!("the test bucket is not usable (is `scripts/seaweedfs.sh up` running?): {e}")
    });
    vec![(Box::new(local), Some(dir)), (Box::new(s3), None)]
}

/// Stores an upload of `user` (as `POST /v1/media` does), with a thumbnail when `thumbnail`.
async fn put(store: &dyn MediaStore, user: &str, thumbnail: bool) -> MediaRecord {
    let media_id = Uuid::new_v4();
    let bytes = Bytes::from(picture(2, 2, ImageFormat::Png));
    let mut thumbnail_id = None;
    if thumbnail {
        let t = MediaRecord {
            media_id: Uuid::new_v4(),
            uploader: user.to_owned(),
            content_type: "image/jpeg".into(),
            size: 3,
            sha256: sha256_hex(b"jpg"),
            thumbnail_id: None,
            thumbnail_of: Some(media_id),
            created_at_ms: now_ms(),
            attached: None,
        };
        store
            .put_upload(&t, Bytes::from_static(b"jpg"))
            .await
            .unwrap();
        thumbnail_id = Some(t.media_id);
    }
    let r = MediaRecord {
        media_id,
        uploader: user.to_owned(),
        content_type: "image/png".into(),
        size: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
        thumbnail_id,
        thumbnail_of: None,
        created_at_ms: now_ms(),
        attached: None,
    };
    store.put_upload(&r, bytes).await.unwrap();
    r
}

fn code(e: spacecast_api::error::ApiError) -> (u16, &'static str) {
    (e.status.as_u16(), e.code)
}

#[tokio::test]
async fn attach_for_send_takes_only_the_senders_unused_uploads() {
    for (store, _dir) in stores().await {
        let store = &*store;
        let what = store.describe();
        let (space, m1, m2) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let a = put(store, "ada", true).await;
        let b = put(store, "ada", false).await;
        let theirs = put(store, "grace", false).await;

        // Another user's upload, an unknown id, a thumbnail, a repeated id: 400 invalid_media,
        // and nothing is attached (the valid id in the same call stays free).
        for ids in [
            vec![a.media_id, theirs.media_id],
            vec![a.media_id, Uuid::new_v4()],
            vec![a.media_id, a.thumbnail_id.unwrap()],
            vec![a.media_id, a.media_id],
        ] {
            let e = attach_for_send(store, "ada", &ids, space, m1)
                .await
                .unwrap_err();
            assert_eq!(code(e), (400, "invalid_media"), "{what}: {ids:?}");
            assert_eq!(
                store.record(a.media_id).await.unwrap().unwrap().attached,
                None
            );
        }
        // More than ten ids.
        let many: Vec<Uuid> = (0..11).map(|_| Uuid::new_v4()).collect();
        let e = attach_for_send(store, "ada", &many, space, m1)
            .await
            .unwrap_err();
        assert_eq!(code(e), (400, "too_many_media"));

        // The sender's own uploads: attached in order, the records name the message.
        let got = attach_for_send(store, "ada", &[b.media_id, a.media_id], space, m1)
            .await
            .unwrap();
        let ids: Vec<Uuid> = got.iter().map(|u| u.media_id).collect();
        assert_eq!(ids, vec![b.media_id, a.media_id], "{what}");
        assert_eq!(got[1].thumbnail_id, a.thumbnail_id);
        assert_eq!(got[1].sha256, a.sha256);
        assert_eq!(got[1].size, a.size);
        assert_eq!(got[1].content_type, "image/png");
        for id in [a.media_id, b.media_id] {
            let att = store.record(id).await.unwrap().unwrap().attached.unwrap();
            assert_eq!((att.space_id, att.message_id), (space, m1), "{what}");
        }
        // The same message again (a retried send) is fine; another message is refused.
        attach_for_send(store, "ada", &[a.media_id], space, m1)
            .await
            .expect("idempotent for the same message");
        let e = attach_for_send(store, "ada", &[a.media_id], space, m2)
            .await
            .unwrap_err();
        assert_eq!(code(e), (400, "invalid_media"), "{what}: already attached");
        // The owner cannot take it either by naming it beside a free one; the free one stays free.
        let c = put(store, "ada", false).await;
        let e = attach_for_send(store, "ada", &[c.media_id, a.media_id], space, m2)
            .await
            .unwrap_err();
        assert_eq!(code(e), (400, "invalid_media"));
        assert_eq!(
            store.record(c.media_id).await.unwrap().unwrap().attached,
            None
        );

        // A refused send releases its uploads for another message; detaching from a message
        // an upload is not attached to changes nothing.
        detach(store, &[b.media_id, c.media_id], space, m2).await;
        assert!(
            store
                .record(b.media_id)
                .await
                .unwrap()
                .unwrap()
                .attached
                .is_some()
        );
        let m3 = Uuid::now_v7();
        attach_for_send(store, "ada", &[c.media_id], space, m3)
            .await
            .unwrap();
        detach(store, &[c.media_id], space, m3).await;
        assert_eq!(
            store.record(c.media_id).await.unwrap().unwrap().attached,
            None
        );
        attach_for_send(store, "ada", &[c.media_id], space, m2)
            .await
            .expect("free again after the detach");

        // Two sends racing for one upload: exactly one wins.
        let d = put(store, "ada", false).await;
        let (x, y) = (Uuid::now_v7(), Uuid::now_v7());
        let ids = [d.media_id];
        let (rx, ry) = tokio::join!(
            attach_for_send(store, "ada", &ids, space, x),
            attach_for_send(store, "ada", &ids, space, y),
        );
        assert!(
            rx.is_ok() != ry.is_ok(),
            "{what}: one winner: {rx:?} {ry:?}"
        );
        let winner = if rx.is_ok() { x } else { y };
        let att = store
            .record(d.media_id)
            .await
            .unwrap()
            .unwrap()
            .attached
            .unwrap();
        assert_eq!(att.message_id, winner, "{what}");

        // delete_media (a redaction) removes the files and the thumbnail.
        delete_media(store, &[a.media_id, b.media_id, Uuid::new_v4()])
            .await
            .unwrap();
        for id in [a.media_id, b.media_id, a.thumbnail_id.unwrap()] {
            assert!(
                store.load(id).await.unwrap().is_none(),
                "{what}: {id} deleted"
            );
            assert!(
                store.record(id).await.unwrap().is_none(),
                "{what}: record of {id} deleted"
            );
        }
    }
}

#[tokio::test]
async fn the_sweep_deletes_old_unattached_uploads_and_those_of_missing_messages() {
    for (store, _dir) in stores().await {
        let store = &*store;
        let what = store.describe();
        let space = Uuid::now_v7();
        let (live, dead) = (Uuid::now_v7(), Uuid::now_v7());
        let unattached = put(store, "ada", true).await;
        let kept = put(store, "ada", true).await;
        attach_for_send(store, "ada", &[kept.media_id], space, live)
            .await
            .unwrap();
        let orphan = put(store, "ada", true).await;
        attach_for_send(store, "ada", &[orphan.media_id], space, dead)
            .await
            .unwrap();
        // A thumbnail whose upload never got stored (a crash between the two writes).
        let lone_thumb = MediaRecord {
            media_id: Uuid::new_v4(),
            uploader: "ada".into(),
            content_type: "image/jpeg".into(),
            size: 3,
            sha256: sha256_hex(b"jpg"),
            thumbnail_id: None,
            thumbnail_of: Some(Uuid::new_v4()),
            created_at_ms: now_ms(),
            attached: None,
        };
        store
            .put_upload(&lone_thumb, Bytes::from_static(b"jpg"))
            .await
            .unwrap();
        let exists = |o: MediaOwner| async move { Some(o.message_id == live) };

        // Within the graces, nothing goes.
        let r = store
            .sweep(SweepGrace::all(Duration::from_secs(3600)), &exists)
            .await
            .unwrap();
        assert_eq!((r.orphans, r.strays, r.unattached), (0, 0, 0), "{what}");
        // The production unattached grace keeps a fresh unattached upload, even with no
        // grace for sends.
        let r = store
            .sweep(
                SweepGrace {
                    sent: Duration::ZERO,
                    unattached: Duration::from_secs(24 * 3600),
                },
                &exists,
            )
            .await
            .unwrap();
        assert_eq!((r.orphans, r.unattached), (1, 0), "{what}: {r:?}");
        assert!(store.record(unattached.media_id).await.unwrap().is_some());
        assert!(
            store.load(orphan.media_id).await.unwrap().is_none(),
            "{what}"
        );
        assert!(
            store
                .load(orphan.thumbnail_id.unwrap())
                .await
                .unwrap()
                .is_none(),
            "{what}"
        );
        assert!(
            store.load(lone_thumb.media_id).await.unwrap().is_none(),
            "{what}"
        );

        // With no grace, the unattached upload and its thumbnail go; the attached one whose
        // message exists stays, with its thumbnail.
        let r = store
            .sweep(SweepGrace::all(Duration::ZERO), &exists)
            .await
            .unwrap();
        assert_eq!(r.unattached, 1, "{what}: {r:?}");
        for id in [unattached.media_id, unattached.thumbnail_id.unwrap()] {
            assert!(store.load(id).await.unwrap().is_none(), "{what}");
            assert!(store.record(id).await.unwrap().is_none(), "{what}");
        }
        for id in [kept.media_id, kept.thumbnail_id.unwrap()] {
            assert!(store.load(id).await.unwrap().is_some(), "{what}");
        }
        // An unknown answer about the message keeps an attached upload.
        let r = store
            .sweep(SweepGrace::all(Duration::ZERO), &|_| async { None })
            .await
            .unwrap();
        assert_eq!(r.orphans, 0);
        assert!(store.load(kept.media_id).await.unwrap().is_some());
        let rec = store.record(kept.media_id).await.unwrap().unwrap();
        assert!(matches!(rec.attached, Some(Attachment { message_id, .. }) if message_id == live));
    }
}

/// The S3 backend's record updates rely on the object store refusing a PUT whose `If-Match`
/// names an old ETag: checked here on the test store (SeaweedFS), behind the media store's back.
#[tokio::test]
async fn the_s3_store_refuses_a_record_update_from_a_stale_read() {
    use object_store::{PutMode, PutOptions, PutPayload, UpdateVersion};
    let raw = raw_s3();
    let key = Path::from(format!(
        "tests/if-match-{}/media/x.json",
        Uuid::new_v4().simple()
    ));
    let first = raw.put(&key, PutPayload::from_static(b"{}")).await.unwrap();
    let stale = UpdateVersion {
        e_tag: first.e_tag.clone(),
        version: first.version.clone(),
    };
    raw.put(&key, PutPayload::from_static(b"{\"a\":1}"))
        .await
        .unwrap();
    let opts = PutOptions {
        mode: PutMode::Update(stale),
        ..PutOptions::default()
    };
    let lost = raw
        .put_opts(&key, PutPayload::from_static(b"{\"b\":2}"), opts)
        .await;
    assert!(
        matches!(lost, Err(object_store::Error::Precondition { .. })),
        "a stale If-Match must be refused: {lost:?}"
    );
    let now = raw.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(&now[..], b"{\"a\":1}");
    raw.delete(&key).await.unwrap();
}
