//! Schemathesis against the real binary: the served OpenAPI document (`GET /openapi.json`) is the
//! specification, every check is on (schemathesis 4's default, all of them: no 5xx, statuses, content types, headers,
//! response schemas, schema-valid requests accepted and schema-invalid ones refused, 405 with
//! `Allow`, auth really required…), with the stateful phase following the document's links
//! (create space → get/join/send/list; send → appreciate/delete/list; upload → download). The
//! few per-operation exceptions are in api/tests/schemathesis.toml, each with its reason.
//!
//! Schemathesis comes from PyPI at a pinned version: `scripts/schemathesis.sh install`, then
//! `eval "$(scripts/schemathesis.sh env)"` (sets `SPACECAST_TEST_SCHEMATHESIS`). The run is
//! reproducible (fixed seed) and bounded (examples per operation), and fails on any failure,
//! printing schemathesis's report.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::Server;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use tokio::process::Command;

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52, 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89, 0, 0, 0, 0x0A, 0x49, 0x44, 0x41, 0x54,
    0x78, 0x9C, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0D, 0x0A, 0x2D, 0xB4, 0, 0, 0, 0, 0x49, 0x45, 0x4E,
    0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// The seed and the examples per operation: reproducible, and bounded so the run stays well
/// under two minutes.
const SEED: &str = "20261206";
const MAX_EXAMPLES: &str = "25";

/// The `schemathesis` executable (`SPACECAST_TEST_SCHEMATHESIS`), checked to run; panics with the
/// fix when it does not.
fn schemathesis() -> PathBuf {
    let exe = std::env::var_os("SPACECAST_TEST_SCHEMATHESIS").map(PathBuf::from);
    let works = exe.as_ref().is_some_and(|exe| {
        std::process::Command::new(exe)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(
        works,
        "no working schemathesis ({exe:?}): run `scripts/schemathesis.sh install` and \
         `eval \"$(scripts/schemathesis.sh env)\"`"
    );
    exe.expect("checked above")
}

/// The fixtures the document cannot create by itself: a Space7 message with media (for
/// `/api/media/{mediaId}`) and a `/v1` upload (the stateful phase makes its own spaces and
/// messages through the document's links).
struct Fixtures {
    space7_media_id: String,
    media_id: String,
}

async fn fixtures(s: &Server, tok: &str) -> Fixtures {
    let space = s.create_space(tok, "Schemathesis space").await;
    let space_id = space["space_id"].as_str().expect("space_id").to_owned();

    let part = Part::bytes(PNG.to_vec())
        .file_name("dot.png")
        .mime_str("image/png")
        .unwrap();
    let form = Form::new().part("media", part).text("media_type", "image");
    let r = s
        .http
        .post(s.url(&format!("/api/messages/{space_id}")))
        .bearer_auth(tok)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "send with media");
    let with_media: Value = r.json().await.unwrap();
    let url = with_media["media_url"].as_str().expect("media_url");
    let space7_media_id = url.rsplit('/').next().expect("an id").to_owned();

    let r = s
        .http
        .post(s.url("/v1/media"))
        .bearer_auth(tok)
        .header("content-type", "image/png")
        .body(PNG.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "upload");
    let uploaded: Value = r.json().await.unwrap();
    let media_id = uploaded["media_id"].as_str().expect("media_id").to_owned();
    Fixtures {
        space7_media_id,
        media_id,
    }
}

#[tokio::test]
async fn schemathesis_finds_no_failure() {
    let exe = schemathesis();
    // Dev login on, so `POST /console/dev-login` is tested beyond its 404. It needs the data
    // dir's generated secret (no shared secret), so the test's token comes from dev login too.
    let data = tempfile::tempdir().expect("tempdir");
    let s = Server::start_on_without_secret(data.path(), &["--console-dev-login"]).await;
    let r = s
        .http
        .post(s.url("/console/dev-login"))
        .json(&serde_json::json!({"username": "schemathesis"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "dev login");
    let login: Value = r.json().await.unwrap();
    let tok = login["token"].as_str().expect("a token").to_owned();
    let f = fixtures(&s, &tok).await;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workdir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(&exe)
        .arg("--no-color")
        .arg("--config-file")
        .arg(manifest.join("tests/schemathesis.toml"))
        .arg("run")
        .arg(s.url("/openapi.json"))
        .args(["--seed", SEED])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--workers", "1"])
        .args(["--header", &format!("Authorization: Bearer {tok}")])
        .env("SPACECAST_ST_SPACE7_MEDIA_ID", &f.space7_media_id)
        .env("SPACECAST_ST_MEDIA_ID", &f.media_id)
        // A fresh working directory: schemathesis and Hypothesis keep caches (examples, operations
        // skipped before) in it, which would make the run depend on earlier ones.
        .current_dir(workdir.path())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found failures (exit {:?}):\n{stdout}\n{stderr}",
        out.status.code()
    );
    // A run that tested nothing also exits 0: check that it did test the operations.
    assert!(
        stdout.contains("Tested:") && !stdout.contains("Tested: 0"),
        "schemathesis tested no operation:\n{stdout}"
    );
    println!("{stdout}");
}
