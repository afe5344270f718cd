//! Black-box tests of issue 6's input and auth hardening: bounded identity claims, `nbf`/`iat`,
//! odd ids and control characters, the private-space existence oracle, `token --config`,
//! `media_url` without the Host header, and the media lifetime (delete, refused sends, sweep).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{SECRET, Server, eventually, token};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio::process::Command;

/// A valid 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52, 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89, 0, 0, 0, 0x0A, 0x49, 0x44, 0x41, 0x54,
    0x78, 0x9C, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0D, 0x0A, 0x2D, 0xB4, 0, 0, 0, 0, 0x49, 0x45, 0x4E,
    0x44, 0xAE, 0x42, 0x60, 0x82,
];

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An HS256 token with exactly `claims` (signed with the test secret).
fn signed(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

/// Asserts an error response: status, JSON content type, `{error, code}`; returns the body.
async fn assert_error(r: reqwest::Response, status: u16, code: &str) -> Value {
    common::assert_json_error(r, status, code).await.1
}

/// `GET /api/spaces/my` with `tok`.
async fn my_spaces(s: &Server, tok: &str) -> reqwest::Response {
    s.http
        .get(s.url("/api/spaces/my"))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap()
}

fn png_form(content: Option<&str>) -> Form {
    let part = Part::bytes(PNG.to_vec())
        .file_name("upload")
        .mime_str("image/png")
        .unwrap();
    let form = Form::new().part("media", part).text("media_type", "image");
    match content {
        Some(c) => form.text("content", c.to_owned()),
        None => form,
    }
}

/// `POST /api/messages/{space}` multipart with a PNG; returns the response.
async fn send_png(s: &Server, tok: &str, space: &str, content: Option<&str>) -> reqwest::Response {
    s.http
        .post(s.url(&format!("/api/messages/{space}")))
        .bearer_auth(tok)
        .multipart(png_form(content))
        .send()
        .await
        .unwrap()
}

/// The names in `<data_dir>/media` (empty if the directory does not exist).
fn media_files(data_dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(data_dir.join("media")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The media id (32 hex digits) at the end of a `media_url`.
fn media_id_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

#[tokio::test]
async fn claims_over_their_bounds_or_with_odd_characters_are_invalid_claims_naming_the_claim() {
    let s = Server::start(&[]).await;
    let exp = now() + 3600;
    let huge = "x".repeat(250_000);
    let long_url = format!("https://pics.example/{}", "a".repeat(2100));
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"sub": "u1", "username": huge, "exp": exp}),
            "username",
        ),
        (
            json!({"sub": "u1", "username": "a".repeat(65), "exp": exp}),
            "username",
        ),
        (
            json!({"sub": "u1", "picture": "javascript:alert(1)", "exp": exp}),
            "picture",
        ),
        (
            json!({"sub": "u1", "picture": "data:image/png;base64,AAAA", "exp": exp}),
            "picture",
        ),
        (
            json!({"sub": "u1", "profile_picture": long_url, "exp": exp}),
            "profile_picture",
        ),
        (
            json!({"sub": "u1", "profile_picture": "not a url", "exp": exp}),
            "profile_picture",
        ),
        (json!({"sub": " ", "exp": exp}), "sub"),
        (json!({"sub": "ada ", "exp": exp}), "sub"),
        (json!({"sub": "ad\u{202E}a", "exp": exp}), "sub"),
        (json!({"sub": "a\u{0}b", "exp": exp}), "sub"),
        (
            json!({"user_id": "\u{2066}eve\u{2069}", "exp": exp}),
            "user_id",
        ),
        (json!({"sub": "z\u{200B}", "exp": exp}), "sub"),
        (
            json!({"sub": "u1", "username": "Ada\u{202E}nimda", "exp": exp}),
            "username",
        ),
        (
            json!({"sub": "u1", "username": "A\u{0}da", "exp": exp}),
            "username",
        ),
    ];
    for (claims, claim) in cases {
        let tok = signed(claims.clone());
        let body = assert_error(my_spaces(&s, &tok).await, 401, "invalid_claims").await;
        let msg = body["error"].as_str().unwrap();
        assert!(
            msg.contains(&format!("`{claim}`")),
            "the message names `{claim}`: {msg}"
        );
        assert!(msg.len() < 200, "the message does not echo the claim");
        // The stream uses the same verification: close 4001.
        let mut ws = s.ws_connect(Some(&tok), None, None).await;
        assert_eq!(ws.close_code().await, Some(4001), "stream with {claim}");
    }
    // Bounds that hold: a trimmed 64-character name, an https picture, ZWJ in an emoji name.
    let name = format!("  {}  ", "é".repeat(64));
    let tok = signed(
        json!({"sub": "u1", "username": name, "picture": "https://p.example/a b.png", "exp": exp}),
    );
    let space = s.create_space(&tok, "bounded").await;
    assert_eq!(space["creator"]["username"], "é".repeat(64));
    assert_eq!(
        space["creator"]["profile_picture"], "https://p.example/a%20b.png",
        "stored normalised"
    );
    let tok = signed(json!({"sub": "u2", "username": "👩\u{200D}💻 Dev", "exp": exp}));
    assert_eq!(my_spaces(&s, &tok).await.status(), 200);
}

#[tokio::test]
async fn future_nbf_and_iat_are_refused_beyond_the_leeway() {
    let s = Server::start(&[]).await;
    let t = now();
    for claims in [
        json!({"sub": "u1", "nbf": t + 3600, "exp": t + 7200}),
        json!({"sub": "u1", "iat": t + 3600, "exp": t + 7200}),
    ] {
        let tok = signed(claims);
        assert_error(my_spaces(&s, &tok).await, 401, "invalid_token").await;
        let mut ws = s.ws_connect(Some(&tok), None, None).await;
        assert_eq!(ws.close_code().await, Some(4001));
    }
    // Within the 30 s leeway, and in the past: accepted.
    for claims in [
        json!({"sub": "u1", "nbf": t + 5, "iat": t + 5, "exp": t + 7200}),
        json!({"sub": "u1", "nbf": t - 60, "iat": t - 60, "exp": t + 7200}),
    ] {
        assert_eq!(my_spaces(&s, &signed(claims)).await.status(), 200);
    }
}

#[tokio::test]
async fn control_characters_in_content_titles_and_descriptions_are_refused() {
    let s = Server::start(&[]).await;
    let ada = token("ada");
    let id = s.create_space(&ada, "Text rules").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for bad in ["a\u{0}b", "\u{1b}[31mred", "bell\u{7}", "del\u{7f}"] {
        let (status, body) = s.send_text(&ada, &id, bad).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_content")),
            "{bad:?}: {body}"
        );
    }
    let (status, body) = s.send_text(&ada, &id, "line one\nline\ttwo\r\n").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["content"], "line one\nline\ttwo");
    // Bidi characters are ordinary text in content (right-to-left languages need them).
    let (status, _) = s.send_text(&ada, &id, "\u{202B}שלום\u{202C}").await;
    assert_eq!(status, 201);
    // The stream shares the rule.
    let mut ws = s.stream(&ada).await;
    ws.send_json(json!({"type": "send", "space_id": id, "content": "nul\u{0}", "local_id": 7}))
        .await;
    let err = ws.next_matching(|v| v["type"] == "error").await;
    assert_eq!(err["code"], "invalid_content", "{err}");
    assert_eq!(err["local_id"], 7);
    // Titles and descriptions.
    let create = |body: Value| {
        s.http
            .post(s.url("/api/spaces"))
            .bearer_auth(&ada)
            .json(&body)
            .send()
    };
    assert_error(
        create(json!({"title": "ti\u{0}tle"})).await.unwrap(),
        400,
        "invalid_title",
    )
    .await;
    assert_error(
        create(json!({"title": "two\nlines"})).await.unwrap(),
        400,
        "invalid_title",
    )
    .await;
    assert_error(
        create(json!({"title": "fine title", "description": "beep\u{7}"}))
            .await
            .unwrap(),
        400,
        "invalid_description",
    )
    .await;
    let r = create(json!({"title": "fine title", "description": "para one\n\npara two"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn joining_a_private_space_answers_exactly_like_an_unknown_space() {
    let s = Server::start(&[]).await;
    let ada = token("ada");
    let bob = token("bob");
    let private = s
        .create_space_with(&ada, json!({"title": "Secret", "visibility": "private"}))
        .await;
    let id = private["space_id"].as_str().unwrap();
    let hidden = assert_error(s.join(&bob, id).await, 404, "not_found").await;
    let unknown_id = uuid::Uuid::now_v7().to_string();
    let unknown = assert_error(s.join(&bob, &unknown_id).await, 404, "not_found").await;
    assert_eq!(hidden, unknown, "same body for both");
}

/// Runs `spacecast ARGS` in `cwd` with no spacecast env vars; returns the output.
async fn run_in(cwd: &Path, args: &[&str]) -> std::process::Output {
    let child = Command::new(common::bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("SPACECAST_JWT_SECRET")
        .env_remove("SPACECAST_DATA_DIR")
        .env_remove("SPACECAST_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn spacecast");
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("spacecast exits within 30 s")
        .expect("wait")
}

async fn mint_in(cwd: &Path, args: &[&str]) -> String {
    let out = run_in(cwd, args).await;
    assert!(
        out.status.success(),
        "spacecast {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn token_reads_data_dir_and_secret_from_the_config_file() {
    let cwd = tempfile::tempdir().unwrap();
    let server_dir = tempfile::tempdir().unwrap();
    // A config with the server's secret: the minted token is accepted.
    let with_secret = cwd.path().join("secret.toml");
    std::fs::write(&with_secret, format!("jwt_secret = \"{SECRET}\"\n")).unwrap();
    let conf = with_secret.to_str().unwrap();
    let minted = mint_in(
        cwd.path(),
        &[
            "--config",
            conf,
            "token",
            "--user-id",
            "cfg",
            "--username",
            "Cfg",
        ],
    )
    .await;
    let s = Server::start_on(server_dir.path(), &[]).await;
    assert_eq!(my_spaces(&s, &minted).await.status(), 200);
    // The flag still wins over the file.
    let flagged = mint_in(
        cwd.path(),
        &[
            "--config",
            conf,
            "token",
            "--user-id",
            "cfg",
            "--username",
            "Cfg",
            "--jwt-secret",
            "another-secret-0123456789",
        ],
    )
    .await;
    assert_eq!(my_spaces(&s, &flagged).await.status(), 401);
    assert!(
        !cwd.path().join("data").exists(),
        "no secret was generated in ./data"
    );
    // A config with only a data dir: the secret is the one kept there.
    let data_dir = cwd.path().join("elsewhere");
    let with_dir = cwd.path().join("dir.toml");
    std::fs::write(
        &with_dir,
        format!("data_dir = {:?}\n", data_dir.to_str().unwrap()),
    )
    .unwrap();
    mint_in(
        cwd.path(),
        &[
            "--config",
            with_dir.to_str().unwrap(),
            "token",
            "--user-id",
            "d",
            "--username",
            "D",
        ],
    )
    .await;
    assert!(
        data_dir.join("jwt-secret").exists(),
        "secret kept in the configured data dir"
    );
    assert!(!cwd.path().join("data").exists(), "and not in ./data");
    // Claims the server would refuse are refused at minting.
    let out = run_in(
        cwd.path(),
        &[
            "--config",
            conf,
            "token",
            "--user-id",
            "bad id",
            "--username",
            "x",
        ],
    )
    .await;
    assert!(!out.status.success(), "a user id with a space is refused");
}

#[tokio::test]
async fn media_url_never_comes_from_the_host_header() {
    /// Sends a picture with a forged `Host` header; returns the stored `media_url`.
    async fn send_with_host(s: &Server, tok: &str, host: &str) -> String {
        let id = s.create_space(tok, "Hosts").await["space_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = s
            .http
            .post(s.url(&format!("/api/messages/{id}")))
            .bearer_auth(tok)
            .header("host", host)
            .multipart(png_form(None))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let m: Value = r.json().await.unwrap();
        m["media_url"].as_str().unwrap().to_owned()
    }
    let s = Server::start(&[]).await;
    let ada = token("ada");
    let url = send_with_host(&s, &ada, "evil.example.com:443@x").await;
    let url = url.as_str();
    assert!(!url.contains("evil"), "{url}");
    assert_eq!(
        url,
        format!("/api/media/{}", media_id_of(url)),
        "relative without --public-url"
    );
    assert_eq!(s.http.get(s.url(url)).send().await.unwrap().status(), 200);

    let s = Server::start(&["--public-url", "https://chat.example.org/"]).await;
    let url = send_with_host(&s, &ada, "evil.example.com").await;
    assert!(
        url.starts_with("https://chat.example.org/api/media/"),
        "absolute under --public-url: {url}"
    );
}

#[tokio::test]
async fn deleting_a_message_deletes_its_media() {
    let s = Server::start(&[]).await;
    let ada = token("ada");
    let id = s.create_space(&ada, "Ephemeral").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = send_png(&s, &ada, &id, Some("look")).await;
    assert_eq!(r.status(), 201);
    let m: Value = r.json().await.unwrap();
    let url = s.url(m["media_url"].as_str().unwrap());
    assert_eq!(s.http.get(&url).send().await.unwrap().status(), 200);
    let (status, _) = s
        .delete_message(&ada, &id, m["message_id"].as_str().unwrap())
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.http.get(&url).send().await.unwrap().status(), 404);
    assert_eq!(
        media_files(&s.data_dir),
        Vec::<String>::new(),
        "file and record gone"
    );
}

#[tokio::test]
async fn refused_sends_leave_no_file_behind() {
    let s = Server::start(&["--max-content-chars", "10"]).await;
    let ada = token("ada");
    let bob = token("bob");
    let admins_only = s
        .create_space_with(
            &ada,
            json!({"title": "Announcements", "posting_permission": "admins"}),
        )
        .await;
    let id = admins_only["space_id"].as_str().unwrap().to_owned();
    assert_eq!(s.join(&bob, &id).await.status(), 200);
    assert_error(send_png(&s, &bob, &id, None).await, 403, "forbidden").await;
    assert_error(
        send_png(&s, &ada, &id, Some("far too long for ten")).await,
        400,
        "content_too_long",
    )
    .await;
    assert_error(
        send_png(&s, &ada, &id, Some("nul\u{0}")).await,
        400,
        "invalid_content",
    )
    .await;
    let open = s.create_space(&ada, "Open").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Not a member of the open space.
    assert_error(send_png(&s, &bob, &open, None).await, 403, "not_a_member").await;
    assert_eq!(media_files(&s.data_dir), Vec::<String>::new());
}

/// Sets a file's modification time `age` into the past.
fn age(path: &Path, age: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[tokio::test]
async fn orphaned_media_is_swept_at_start_and_referenced_media_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_on(dir.path(), &[]).await;
    let ada = token("ada");
    let id = s.create_space(&ada, "Kept").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = send_png(&s, &ada, &id, None).await;
    assert_eq!(r.status(), 201);
    let m: Value = r.json().await.unwrap();
    let kept = media_id_of(m["media_url"].as_str().unwrap());
    assert!(s.terminate().await.success());

    let media = dir.path().join("media");
    let hour = Duration::from_secs(3600);
    // The live message's file and record, aged: kept because the message exists.
    age(&media.join(&kept), hour);
    age(&media.join(format!("{kept}.json")), hour);
    // An orphan: file + record naming a message that does not exist, aged.
    let orphan = uuid::Uuid::new_v4().simple().to_string();
    std::fs::write(media.join(&orphan), PNG).unwrap();
    std::fs::write(
        media.join(format!("{orphan}.json")),
        json!({"space_id": id, "message_id": uuid::Uuid::now_v7()}).to_string(),
    )
    .unwrap();
    age(&media.join(&orphan), hour);
    age(&media.join(format!("{orphan}.json")), hour);
    // A stray temporary file from a crashed upload, aged.
    let tmp = format!(".{}.tmp", uuid::Uuid::new_v4().simple());
    std::fs::write(media.join(&tmp), b"partial").unwrap();
    age(&media.join(&tmp), hour);
    // A fresh orphan (its send may still be in flight): kept until the grace period passes.
    let fresh = uuid::Uuid::new_v4().simple().to_string();
    std::fs::write(media.join(&fresh), PNG).unwrap();
    std::fs::write(
        media.join(format!("{fresh}.json")),
        json!({"space_id": id, "message_id": uuid::Uuid::now_v7()}).to_string(),
    )
    .unwrap();

    let s = Server::start_on(dir.path(), &[]).await;
    eventually(
        "the sweep removes the orphan",
        Duration::from_secs(20),
        || {
            let files = media_files(dir.path());
            let gone = !files.contains(&orphan)
                && !files.contains(&format!("{orphan}.json"))
                && !files.contains(&tmp);
            async move { gone.then_some(()) }
        },
    )
    .await;
    let files = media_files(dir.path());
    for name in [
        kept.clone(),
        format!("{kept}.json"),
        fresh.clone(),
        format!("{fresh}.json"),
    ] {
        assert!(files.contains(&name), "{name} kept: {files:?}");
    }
    let url = s.url(&format!("/api/media/{kept}"));
    assert_eq!(s.http.get(&url).send().await.unwrap().status(), 200);
}
