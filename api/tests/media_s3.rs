//! The S3 media store against a real S3-compatible server: SeaweedFS, which
//! `scripts/seaweedfs.sh up` installs and starts (`scripts/test.sh` does it and exports
//! `SPACECAST_TEST_S3_*`). With no server these tests fail, naming the fix; none is skipped.
//!
//! Each test keeps to its own key prefix in the shared test bucket, so they run in parallel.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{PNG, S3Env, Server, s3_env, send_png, token};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ClientOptions, ObjectStore, ObjectStoreExt, PutOptions, PutPayload,
};
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use spacecast_api::config::{S3Settings, Secret};
use spacecast_api::install_tls_provider;
use spacecast_api::media::{
    MediaError, MediaOwner, MediaStore, S3MediaStore, SweepGrace, SweepReport,
};
use uuid::Uuid;

/// A fresh key prefix for one test.
fn prefix(test: &str) -> String {
    format!("tests/{test}-{}", Uuid::new_v4().simple())
}

fn settings(env: &S3Env, prefix: &str) -> S3Settings {
    S3Settings {
        bucket: env.bucket.clone(),
        endpoint: env.endpoint.clone(),
        region: env.region.clone(),
        access_key_id: env.access_key_id.clone(),
        secret_access_key: Secret::from(env.secret_access_key.clone()),
        prefix: Some(prefix.to_owned()),
    }
}

/// The S3 media store of `prefix` in the test bucket, checked like a node's start does.
async fn connect(env: &S3Env, prefix: &str) -> S3MediaStore {
    S3MediaStore::connect(&settings(env, prefix))
        .await
        .unwrap_or_else(|e| {
            panic!("the test bucket is not usable (is `scripts/seaweedfs.sh up` running?): {e}")
        })
}

/// A plain `object_store` client on the test bucket, to look behind the media store's back.
fn raw(env: &S3Env) -> AmazonS3 {
    install_tls_provider();
    AmazonS3Builder::new()
        .with_bucket_name(&env.bucket)
        .with_endpoint(&env.endpoint)
        .with_region(&env.region)
        .with_access_key_id(&env.access_key_id)
        .with_secret_access_key(&env.secret_access_key)
        .with_client_options(ClientOptions::new().with_allow_http(true))
        .build()
        .expect("raw S3 client")
}

fn media_key(prefix: &str, id: Uuid) -> Path {
    Path::from(format!("{prefix}/media/{}", id.simple()))
}

fn owner() -> MediaOwner {
    MediaOwner {
        space_id: Uuid::now_v7(),
        message_id: Uuid::now_v7(),
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn saved_media_is_read_by_another_client_and_deleted_with_its_record() {
    let env = s3_env();
    let prefix = prefix("roundtrip");
    let node_a = connect(&env, &prefix).await;
    let node_b = connect(&env, &prefix).await;
    node_a.check().await.expect("check answers");

    let o = owner();
    let saved = node_a
        .save(Bytes::from_static(PNG), "image/png", o)
        .await
        .unwrap();
    assert_eq!(saved.content_type, "image/png");
    // Another node (client) reads the same bytes.
    let (bytes, ct) = node_b.load(saved.media_id).await.unwrap().expect("stored");
    assert_eq!((&bytes[..], ct), (PNG, "image/png"));
    // The owner record travels with the object, written by the same PUT.
    let raw = raw(&env);
    let key = media_key(&prefix, saved.media_id);
    let head = raw
        .get_opts(
            &key,
            object_store::GetOptions {
                head: true,
                ..Default::default()
            },
        )
        .await
        .expect("the object is where the layout says");
    let meta = |k: &'static str| {
        head.attributes
            .get(&Attribute::Metadata(k.into()))
            .map(|v| v.as_ref().to_owned())
    };
    assert_eq!(meta("space-id"), Some(o.space_id.to_string()));
    assert_eq!(meta("message-id"), Some(o.message_id.to_string()));
    assert_eq!(
        head.attributes
            .get(&Attribute::ContentType)
            .map(|v| v.as_ref().to_owned()),
        Some("image/png".to_owned())
    );

    assert!(node_a.load(Uuid::new_v4()).await.unwrap().is_none());
    node_b.delete(saved.media_id).await.unwrap();
    node_b
        .delete(saved.media_id)
        .await
        .expect("deleting twice is fine");
    assert!(node_a.load(saved.media_id).await.unwrap().is_none());
    assert!(matches!(
        raw.head(&key).await,
        Err(object_store::Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn the_sweep_deletes_only_old_objects_whose_message_is_gone() {
    let env = s3_env();
    let prefix = prefix("sweep");
    let store = connect(&env, &prefix).await;
    let raw = raw(&env);
    let png = || Bytes::from_static(PNG);
    let (live, dead) = (owner(), owner());
    let kept = store.save(png(), "image/png", live).await.unwrap().media_id;
    let orphan = store.save(png(), "image/png", dead).await.unwrap().media_id;
    // An object without a record (not written by this store): kept, counted.
    let unrecorded = Uuid::new_v4();
    raw.put(
        &media_key(&prefix, unrecorded),
        PutPayload::from_static(PNG),
    )
    .await
    .unwrap();
    // Objects that are not media (not named by an id, or deeper): never touched.
    let notes = Path::from(format!("{prefix}/media/notes.txt"));
    let nested = Path::from(format!("{prefix}/media/x/{}", Uuid::new_v4().simple()));
    let mut attributes = Attributes::new();
    attributes.insert(
        Attribute::Metadata("space-id".into()),
        dead.space_id.to_string().into(),
    );
    attributes.insert(
        Attribute::Metadata("message-id".into()),
        dead.message_id.to_string().into(),
    );
    for p in [&notes, &nested] {
        raw.put_opts(
            p,
            PutPayload::from_static(b"x"),
            PutOptions {
                attributes: attributes.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let exists = |o: MediaOwner| async move { Some(o == live) };

    // Nothing is old enough yet.
    let r = store
        .sweep(SweepGrace::all(Duration::from_secs(600)), &exists)
        .await
        .unwrap();
    assert_eq!(r, SweepReport::default());
    assert!(store.load(orphan).await.unwrap().is_some());

    // With no grace, the orphan goes; the live, unrecorded and foreign objects stay.
    let r = store
        .sweep(SweepGrace::all(Duration::ZERO), &exists)
        .await
        .unwrap();
    assert_eq!(
        r,
        SweepReport {
            orphans: 1,
            strays: 0,
            unrecorded: 1,
            unattached: 0,
        }
    );
    assert!(store.load(orphan).await.unwrap().is_none());
    assert!(store.load(kept).await.unwrap().is_some());
    assert!(store.load(unrecorded).await.unwrap().is_some());
    for p in [&notes, &nested] {
        raw.head(p).await.expect("foreign objects are kept");
    }

    // An unknown answer (message store unreachable) keeps the file.
    let again = store.save(png(), "image/png", dead).await.unwrap().media_id;
    let unknown = |_: MediaOwner| async { None };
    let r = store
        .sweep(SweepGrace::all(Duration::ZERO), &unknown)
        .await
        .unwrap();
    assert_eq!(r.orphans, 0);
    assert!(store.load(again).await.unwrap().is_some());
}

#[tokio::test]
async fn wrong_credentials_are_refused_with_an_error_naming_the_options() {
    let env = s3_env();
    let prefix = prefix("creds");
    let wrong_secret = S3Settings {
        secret_access_key: Secret::from("not-the-secret".to_owned()),
        ..settings(&env, &prefix)
    };
    let wrong_key = S3Settings {
        access_key_id: "SPACECASTNOSUCHKEY".into(),
        ..settings(&env, &prefix)
    };
    for s in [&wrong_secret, &wrong_key] {
        let e = S3MediaStore::connect(s).await.unwrap_err();
        assert!(matches!(e, MediaError::Denied(_)), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("s3_access_key_id") && text.contains("s3_secret_access_key"),
            "{text}"
        );
        assert!(
            !text.contains(&env.secret_access_key),
            "no secret in errors"
        );
        // A client that skipped the start-up check fails each operation the same way.
        let store = S3MediaStore::new(s).unwrap();
        let e = store
            .save(Bytes::from_static(PNG), "image/png", owner())
            .await
            .unwrap_err();
        assert!(matches!(e, MediaError::Denied(_)), "{e:?}");
        assert!(matches!(store.check().await, Err(MediaError::Denied(_))));
        assert!(store.load(Uuid::new_v4()).await.is_err());
    }
}

#[tokio::test]
async fn a_missing_bucket_is_named_at_start() {
    let env = s3_env();
    let bucket = format!(
        "spacecast-missing-{}",
        &Uuid::new_v4().simple().to_string()[..12]
    );
    let s = S3Settings {
        bucket: bucket.clone(),
        ..settings(&env, "tests/missing")
    };
    let e = S3MediaStore::connect(&s).await.unwrap_err();
    assert!(matches!(e, MediaError::NoBucket(_)), "{e:?}");
    assert!(e.to_string().contains(&bucket), "{e}");
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_start_and_every_operation() {
    let env = s3_env();
    let s = S3Settings {
        endpoint: format!("http://127.0.0.1:{}", closed_port()),
        ..settings(&env, "tests/unreachable")
    };
    let e = S3MediaStore::connect(&s).await.unwrap_err();
    assert!(matches!(e, MediaError::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains("127.0.0.1"), "{e}");
    let store = S3MediaStore::new(&s).unwrap();
    assert!(matches!(
        store
            .save(Bytes::from_static(PNG), "image/png", owner())
            .await,
        Err(MediaError::Unavailable(_))
    ));
    assert!(matches!(
        store.load(Uuid::new_v4()).await,
        Err(MediaError::Unavailable(_))
    ));
    assert!(store.check().await.is_err());
    let exists = |_: MediaOwner| async { Some(false) };
    assert!(
        store
            .sweep(SweepGrace::all(Duration::ZERO), &exists)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn media_uploaded_on_one_node_is_served_by_another_and_goes_with_its_message() {
    let env = s3_env();
    let prefix = prefix("two-nodes");
    let args = env.serve_args(&prefix);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Two processes, each with its own data dir and message store, sharing the bucket.
    let a = Server::start(&args).await;
    let b = Server::start(&args).await;
    let ready: Value = b
        .http
        .get(b.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["media"], "ok", "{ready}");

    let ada = token("ada");
    let space = a.create_space(&ada, "Pictures").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = send_png(&a, &ada, &space).await;
    let media_url = m["media_url"].as_str().unwrap().to_owned();
    let media_id = spacecast_api::media::media_id_of_url(&media_url).expect("a media URL");

    // Node B has never seen the space or the message: the media URL alone is enough.
    let got = b.http.get(b.url(&media_url)).send().await.unwrap();
    assert_eq!(got.status(), 200, "node B serves node A's upload");
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(&got.bytes().await.unwrap()[..], PNG);
    let key = media_key(&prefix, media_id);
    raw(&env)
        .head(&key)
        .await
        .expect("the object is in the bucket");
    // Nothing under node A's data dir: media lives in the bucket only.
    assert!(
        !a.data_dir.join("media").exists()
            || std::fs::read_dir(a.data_dir.join("media")).unwrap().count() == 0,
        "no local media file"
    );

    // Deleting the message on A removes the object, for every node.
    let (status, _) = a
        .delete_message(&ada, &space, m["message_id"].as_str().unwrap())
        .await;
    assert_eq!(status, 200);
    assert!(matches!(
        raw(&env).head(&key).await,
        Err(object_store::Error::NotFound { .. })
    ));
    let gone = b.http.get(b.url(&media_url)).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    let body: Value = gone.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
}

/// Runs `spacecast serve` with `args` on a fresh data dir; returns its exit code and stderr once
/// it exits (it must, within 60 s).
async fn serve_exit(args: &[String]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let child = tokio::process::Command::new(common::bin())
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir.path())
        .args(args)
        .env_remove("SPACECAST_MEDIA_STORE")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn spacecast");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("spacecast exits at start")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn serve_refuses_an_incomplete_or_unusable_s3_configuration() {
    let env = s3_env();
    let full = env.serve_args("tests/refused");
    let without = |flag: &str| -> Vec<String> {
        let i = full.iter().position(|a| a == flag).unwrap();
        let mut v = full.clone();
        v.drain(i..i + 2);
        v
    };
    for (args, needle) in [
        (without("--s3-bucket"), "s3_bucket"),
        (without("--s3-endpoint"), "s3_endpoint"),
    ] {
        let (code, stderr) = serve_exit(&args).await;
        assert_eq!(code, Some(2), "a configuration error: {stderr}");
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    let mut missing = full.clone();
    let i = missing.iter().position(|a| a == "--s3-bucket").unwrap();
    missing[i + 1] = "spacecast-no-such-bucket".into();
    let (code, stderr) = serve_exit(&missing).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("no bucket \"spacecast-no-such-bucket\""),
        "{stderr}"
    );
    let mut denied = full.clone();
    let i = denied
        .iter()
        .position(|a| a == "--s3-secret-access-key")
        .unwrap();
    denied[i + 1] = "wrong-secret".into();
    let (code, stderr) = serve_exit(&denied).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("s3_secret_access_key"), "{stderr}");
    assert!(!stderr.contains(&env.secret_access_key), "{stderr}");
}

/// A TCP relay to the S3 server that the test can cut: while down, it closes every open relayed
/// connection and every new one at once, as an unreachable object store would.
struct Relay {
    endpoint: String,
    up: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    async fn start(upstream: &str) -> Relay {
        let target = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (up, watch) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut watch = watch.clone();
                if !*watch.borrow() {
                    continue; // dropped: closed at once
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Relay { endpoint, up }
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

#[tokio::test]
async fn while_the_object_store_is_unreachable_media_sends_fail_cleanly_and_nothing_is_acknowledged()
 {
    let env = s3_env();
    let relay = Relay::start(&env.endpoint).await;
    let prefix = prefix("outage");
    let mut args = S3Env {
        endpoint: relay.endpoint.clone(),
        ..env.clone()
    }
    .serve_args(&prefix);
    args.extend(["--public-url".to_owned(), "http://media.test".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Server::start(&args).await;
    let ada = token("ada");
    let space = s.create_space(&ada, "Outage").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = send_png(&s, &ada, &space).await;
    let kept = spacecast_api::media::media_id_of_url(before["media_url"].as_str().unwrap())
        .expect("a media URL");

    relay.set_up(false);
    // The upload cannot be made durable: the send is refused, and no message refers to a
    // missing file.
    let form = Form::new()
        .text("content", "lost picture")
        .part("media", Part::bytes(PNG.to_vec()).file_name("p.png"))
        .text("media_type", "image");
    let r = s
        .http
        .post(s.url(&format!("/api/messages/{space}")))
        .bearer_auth(&ada)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "store_unavailable", "{body}");
    let listed = s.list_all(&ada, &space).await;
    assert_eq!(listed.len(), 1, "only the message sent before the outage");
    // Reading media fails as unavailable, not as "no such media".
    let r = s
        .http
        .get(s.url(&format!("/api/media/{}", kept.simple())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    // Text still flows, and the node stays ready (the media store is reported).
    let (status, _) = s.send_text(&ada, &space, "text still works").await;
    assert_eq!(status, 201);
    let ready = s.http.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["media"], "unavailable", "{ready}");

    relay.set_up(true);
    let after = send_png(&s, &ada, &space).await;
    let url = after["media_url"].as_str().unwrap();
    assert!(url.starts_with("http://media.test/api/media/"), "{url}");
    let id = spacecast_api::media::media_id_of_url(url).unwrap();
    let got = s
        .http
        .get(s.url(&format!("/api/media/{}", id.simple())))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(&got.bytes().await.unwrap()[..], PNG);
}

#[tokio::test]
async fn while_the_object_store_is_unreachable_v1_uploads_and_downloads_are_503() {
    let env = s3_env();
    let relay = Relay::start(&env.endpoint).await;
    let args = S3Env {
        endpoint: relay.endpoint.clone(),
        ..env.clone()
    }
    .serve_args(&prefix("v1-outage"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Server::start(&args).await;
    let ada = token("ada");
    let upload = || {
        s.http
            .post(s.url("/v1/media"))
            .bearer_auth(&ada)
            .header("content-type", "image/png")
            .body(PNG.to_vec())
            .send()
    };
    let r = upload().await.unwrap();
    assert_eq!(r.status(), 201);
    let before: Value = r.json().await.unwrap();
    let id = before["media_id"].as_str().unwrap().to_owned();

    relay.set_up(false);
    // Nothing can be made durable: no 201, no media id handed out.
    let r = upload().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "store_unavailable", "{body}");
    // A download fails as unavailable, not as "no such media".
    let r = s
        .http
        .get(s.url(&format!("/v1/media/{id}")))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "store_unavailable", "{body}");

    relay.set_up(true);
    let r = upload().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = s
        .http
        .get(s.url(&format!("/v1/media/{id}")))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..], PNG);
}
