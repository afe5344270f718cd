//! The web console and its endpoints, black-box, on the real binary:
//!
//! - `/console…`: the embedded files with their content types, `ETag`s (304 on a match), the
//!   strict `Content-Security-Policy`, and the JSON 404 for anything else;
//! - `/console/dev-login`: absent (404) unless `--console-dev-login`; then bounded input (400
//!   `invalid_username`, 413) and a mint budget (429 `rate_limited` + `Retry-After`); the server
//!   refuses to start when dev login is combined with a configured secret, a public key or a
//!   cluster;
//! - `/v1/node`: 401 without a valid token; the node id, connections by protocol and rates;
//! - the console itself in headless Chromium (`api/tests/js/console.mjs`, driven by
//!   playwright-core): two users, live messages, an image, appreciation, delete, typing, a 4008
//!   close resumed with `since_seq`, a reload, the operator tab, and screenshots at a laptop and
//!   a phone size, kept in `<target>/test-artifacts/console/<store>/`.
//!
//! Node, playwright-core and Chromium come from `scripts/js.sh install`; a missing one fails the
//! test with that instruction, it never skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{SECRET, Server, cql_mode, eventually, token, token_with};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// `GET path` without a token: status, headers and body.
async fn get(s: &Server, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = s.http.get(s.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// Asserts a JSON error with `status` and `code`; returns the headers.
async fn assert_error(
    res: reqwest::Response,
    status: u16,
    code: &str,
) -> reqwest::header::HeaderMap {
    common::assert_json_error(res, status, code).await.0
}

#[tokio::test]
async fn console_files_have_types_etags_a_strict_policy_and_a_json_404() {
    let s = Server::start(&[]).await;
    let page = get(&s, "/console", &[]).await;
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap().to_owned();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe") && !csp.contains('*'), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-cache");
    let etag = h["etag"].to_str().unwrap().to_owned();
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/console/app.js"></script>"#));
    // `/console/` is the same page (relative links would differ; the page uses absolute ones).
    let slash = get(&s, "/console/", &[]).await;
    assert_eq!(slash.status(), 200);
    assert_eq!(slash.text().await.unwrap(), html);
    // Revalidation: the same ETag gives 304 with no body; another gives the page.
    let again = get(&s, "/console", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());
    let stale = get(&s, "/console", &[("if-none-match", "\"0123456789abcdef\"")]).await;
    assert_eq!(stale.status(), 200);
    for (path, ty) in [
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/chat.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
        ("/console/icon.svg", "image/svg+xml"),
    ] {
        let r = get(&s, path, &[]).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], ty, "{path}");
        assert!(r.headers().contains_key("content-security-policy"));
        assert_ne!(
            r.headers()["etag"],
            etag.as_str(),
            "each file has its own ETag"
        );
        assert!(!r.bytes().await.unwrap().is_empty());
    }
    for path in [
        "/console/nope.js",
        "/console/app.js/x",
        "/console/%2e%2e/Cargo.toml",
        "/consolex",
    ] {
        assert_error(get(&s, path, &[]).await, 404, "not_found").await;
    }
    // Dev login is off by default: its endpoint does not exist.
    assert_error(get(&s, "/console/dev-login", &[]).await, 404, "not_found").await;
    let r = s
        .http
        .post(s.url("/console/dev-login"))
        .json(&json!({"username": "ada"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "not_found").await;
}

/// `POST /console/dev-login` with a JSON body.
async fn dev_login(s: &Server, body: &str) -> reqwest::Response {
    s.http
        .post(s.url("/console/dev-login"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn dev_login_mints_bounded_tokens_within_a_budget() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_on_without_secret(dir.path(), &["--console-dev-login"]).await;
    let status: Value = get(&s, "/console/dev-login", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["dev_login"], true, "{status}");

    let r = dev_login(&s, r#"{"username": "ada"}"#).await;
    assert_eq!(r.status(), 200);
    let minted: Value = r.json().await.unwrap();
    assert_eq!(
        (minted["user_id"].as_str(), minted["username"].as_str()),
        (Some("dev-ada"), Some("ada"))
    );
    let t = minted["token"].as_str().unwrap();
    // The server accepts it, as the derived user.
    let space = s.create_space(t, "Dev space").await;
    assert_eq!(space["creator_id"], "dev-ada");
    // It is signed with the generated secret kept in the data dir.
    let secret = std::fs::read_to_string(dir.path().join("jwt-secret")).unwrap();
    let key = jsonwebtoken::DecodingKey::from_secret(secret.trim().as_bytes());
    let claims = jsonwebtoken::decode::<Value>(
        t,
        &key,
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
    )
    .expect("verifies with the data dir's secret")
    .claims;
    assert_eq!(claims["sub"], "dev-ada");

    for body in [
        "{}",
        r#"{"username": ""}"#,
        r#"{"username": "   "}"#,
        r#"{"username": "a b"}"#,
        r#"{"username": "<script>"}"#,
        &format!(r#"{{"username": "{}"}}"#, "a".repeat(33)),
        r#"{"username": 5}"#,
    ] {
        assert_error(dev_login(&s, body).await, 400, "invalid_username").await;
    }
    for body in ["not json", r#"["ada"]"#, r#""ada""#] {
        assert_error(dev_login(&s, body).await, 400, "invalid_json").await;
    }
    // Only `username`: the document says `additionalProperties: false`.
    for body in [
        r#"{"username": "ada", "admin": true}"#,
        r#"{"user": "ada"}"#,
    ] {
        assert_error(dev_login(&s, body).await, 400, "invalid_request").await;
    }
    let big = format!(r#"{{"username": "{}"}}"#, "a".repeat(2000));
    assert_error(dev_login(&s, &big).await, 413, "payload_too_large").await;

    // The node's budget: a burst, then 429 with Retry-After (bad input above cost nothing).
    let mut minted = 1;
    let refused = loop {
        let r = dev_login(&s, r#"{"username": "loop"}"#).await;
        if r.status() == 429 {
            break r;
        }
        assert_eq!(r.status(), 200);
        minted += 1;
        assert!(minted <= 30, "no rate limit after {minted} mints");
    };
    assert!(minted >= 10, "the burst allows 10 mints, got {minted}");
    let h = assert_error(refused, 429, "rate_limited").await;
    let after: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=6).contains(&after), "Retry-After {after}");
}

/// Runs `spacecast serve` with `args` (and `envs`) and returns its exit code and stderr; fails
/// if it is still running after 30 s (it started when it should have refused).
async fn refused_start(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(common::bin())
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir.path())
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("SPACECAST_JWT_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    let mut pipe = child.stderr.take().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        pipe.read_to_string(&mut stderr).await.unwrap();
        child.wait().await.unwrap()
    })
    .await
    .expect("the server refused to start (it exited) within 30 s");
    (status.code(), stderr)
}

#[tokio::test]
async fn dev_login_with_a_configured_key_or_a_cluster_refuses_to_start() {
    let secret = "a-configured-secret-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("spacecast.toml");
    std::fs::write(
        &toml,
        format!("console_dev_login = true\njwt_secret = \"{secret}\"\n"),
    )
    .unwrap();
    let toml = toml.to_string_lossy().into_owned();
    // (flags, env vars, the option the refusal must name)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--console-dev-login", "--jwt-secret", secret],
            vec![],
            "jwt_secret",
        ),
        (
            vec!["--jwt-public-key", "/nonexistent/issuer.pem"],
            vec![("SPACECAST_CONSOLE_DEV_LOGIN", "true")],
            "jwt_public_key",
        ),
        (vec!["--config", &toml], vec![], "jwt_secret"),
        (
            vec![
                "--console-dev-login",
                "--store",
                "cql",
                "--nats-url",
                "nats://127.0.0.1:1",
            ],
            vec![],
            "nats_url",
        ),
    ];
    for (args, envs, name) in cases {
        let (code, stderr) = refused_start(&args, &envs).await;
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("console_dev_login") && stderr.contains(name),
            "{args:?}: {stderr}"
        );
    }
    // Turned off explicitly, a configured secret is fine: the server starts.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_on(dir.path(), &["--console-dev-login=false"]).await;
    assert_error(get(&s, "/console/dev-login", &[]).await, 404, "not_found").await;
}

#[tokio::test]
async fn node_status_needs_a_token_and_reports_connections_and_rates() {
    let s = Server::start(&["--node-id", "status-node-1"]).await;
    assert_error(get(&s, "/v1/node", &[]).await, 401, "unauthenticated").await;
    assert_error(
        get(&s, "/v1/node", &[("authorization", "Bearer nope")]).await,
        401,
        "invalid_token",
    )
    .await;
    let forged = token_with("another-secret-0123456789", "u1", 3600);
    assert_error(
        get(
            &s,
            "/v1/node",
            &[("authorization", &format!("Bearer {forged}"))],
        )
        .await,
        401,
        "invalid_token",
    )
    .await;

    let t = token("node-reader");
    let node = s.get_json(&t, "/v1/node").await;
    assert_eq!(node["node_id"], "status-node-1");
    assert_eq!(node["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        (node["clustered"].as_bool(), node["bus_connected"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(node["accepting"], true);
    assert_eq!(node["store"], if cql_mode() { "cql" } else { "embedded" });
    assert!(node["connections"]["http"].as_i64().unwrap() >= 1, "{node}");
    assert_eq!(node["connections"]["native"], 0, "{node}");
    assert_eq!(node["connections"]["socketio"], 0, "{node}");
    assert!(node["uptime_seconds"].as_u64().is_some());
    assert!(node["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(node["realtime_connection_limit"].as_u64().unwrap() > 0);
    // The same node and version in /metrics, so a scraped instance names its node.
    let info = format!(
        "spacecast_build_info{{node_id=\"status-node-1\",version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let metrics = s.metrics_text().await;
    assert!(metrics.contains(&info), "{info} missing from /metrics");

    // A subscriber on the stream and messages into its space: the gauges and rates follow.
    let space = s.create_space(&t, "Status").await;
    let space_id = space["space_id"].as_str().unwrap().to_owned();
    let mut ws = s.stream(&t).await;
    assert_eq!(ws.join(&space_id, None).await["type"], "joined");
    let node = eventually("one native connection", Duration::from_secs(10), || async {
        let n = s.get_json(&t, "/v1/node").await;
        (n["connections"]["native"] == 1).then_some(n)
    })
    .await;
    assert_eq!(node["watched_spaces"], 1, "{node}");
    let mut sent = 0u64;
    let node = eventually(
        "nonzero send and delivery rates",
        Duration::from_secs(30),
        || {
            let (s, t, space_id) = (&s, &t, &space_id);
            sent += 1;
            let content = format!("m{sent}");
            async move {
                let (status, _) = s.send_text(t, space_id, &content).await;
                assert_eq!(status, 201);
                let n = s.get_json(t, "/v1/node").await;
                (n["sends_per_second"].as_f64()? > 0.0
                    && n["deliveries_per_second"].as_f64()? > 0.0)
                    .then_some(n)
            }
        },
    )
    .await;
    assert!(
        node["rate_window_seconds"].as_f64().unwrap() > 0.0,
        "{node}"
    );
    assert!(
        node["active_spaces"].as_i64().unwrap() >= 1,
        "a space actor runs: {node}"
    );
    // The subscriber received what the rates counted.
    let frames = ws.frames_until_event(&space_id, 1).await;
    assert!(frames.iter().any(|f| f["event"] == "message_created"));
    drop(ws);
    eventually(
        "the connection is gone",
        Duration::from_secs(10),
        || async { (s.get_json(&t, "/v1/node").await["connections"]["native"] == 0).then_some(()) },
    )
    .await;
    // The operator endpoint is in the OpenAPI document.
    let doc: Value = s
        .http
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/node"]["get"].is_object());
    assert!(doc["paths"]["/console/dev-login"]["post"].is_object());
}

/// Where the browser test keeps its screenshots: `SPACECAST_TEST_ARTIFACTS`, else
/// `<target>/test-artifacts/console/<store>`.
fn artifacts_dir() -> PathBuf {
    let store = if cql_mode() { "cql" } else { "embedded" };
    match std::env::var_os("SPACECAST_TEST_ARTIFACTS") {
        Some(d) => PathBuf::from(d).join("console").join(store),
        None => Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("the target dir")
            .join("test-artifacts")
            .join("console")
            .join(store),
    }
}

/// Node, the JS packages' directory and Chromium, as `scripts/js.sh env` exports them (with the
/// same defaults); panics with the fix when one is missing.
fn js_tools() -> (PathBuf, PathBuf, PathBuf) {
    let node = common::node();
    let js_dir = common::js_dir("playwright-core");
    let chromium = std::env::var_os("SPACECAST_TEST_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        chromium.is_file(),
        "no Chromium at {}: run scripts/js.sh install (Debian's chromium)",
        chromium.display()
    );
    (node, js_dir, chromium)
}

/// Width and height of a PNG, from its IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "a PNG"
    );
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[tokio::test]
async fn the_console_works_in_chromium_for_two_users() {
    let (node, js_dir, chromium) = js_tools();
    let artifacts = artifacts_dir();
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();

    // A fresh data dir and no configured secret: the server generates its dev secret.
    let dir = tempfile::tempdir().unwrap();
    let node_id = "console-node-1";
    let s =
        Server::start_on_without_secret(dir.path(), &["--console-dev-login", "--node-id", node_id])
            .await;
    let secret = std::fs::read_to_string(dir.path().join("jwt-secret")).unwrap();
    assert_ne!(secret.trim(), SECRET);
    let token_b = spacecast_api::auth::mint(
        secret.trim().as_bytes(),
        "bob",
        "Bob",
        None,
        Duration::from_secs(3600),
    )
    .unwrap();

    let mut child = Command::new(&node)
        .arg(js_dir.join("console.mjs"))
        .current_dir(&js_dir)
        .env("SPACECAST_CONSOLE_URL", &s.base)
        .env("SPACECAST_CONSOLE_TOKEN_B", &token_b)
        .env("SPACECAST_CONSOLE_NODE_ID", node_id)
        .env("SPACECAST_CONSOLE_ARTIFACTS", &artifacts)
        .env("SPACECAST_TEST_CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(300), async {
        stdout.read_to_string(&mut out).await.unwrap();
        child.wait().await.unwrap()
    })
    .await
    .expect("the browser test finished within 300 s");
    let lines: Vec<Value> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| json!({"raw": l})))
        .collect();
    for l in &lines {
        eprintln!("console.mjs: {l}");
    }
    let last = lines.last().cloned().unwrap_or(Value::Null);
    assert!(
        status.success() && last["result"] == "pass",
        "the browser test failed ({status}): {last}"
    );
    for step in [
        "A signs in with the dev-login button",
        "B signs in with a pasted token",
        "B's stream is closed with 4008 and resumes with since_seq",
        "B reloads and the list resumes, with no duplicates",
        "the operator tab shows the node and its connections",
    ] {
        assert!(
            lines.iter().any(|l| l["step"] == step && l["ok"] == true),
            "step {step:?} not reported"
        );
    }

    // What the browsers did is what the server holds, in the same order.
    let space_id = last["space_id"].as_str().unwrap();
    let stored = s.list_all(&token_b, space_id).await;
    let contents: Vec<&str> = stored
        .iter()
        .rev()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(
        contents,
        [
            "sent while B loads",
            "a picture",
            "Nice picture, Ada!",
            "while bob was away",
            "after the reload",
            "sentinel"
        ],
        "the deleted message is gone, the rest kept"
    );
    let stored_ids: Vec<&str> = stored
        .iter()
        .rev()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    let shown: Vec<&str> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        shown, stored_ids,
        "both pages show the stored messages in order"
    );
    let picture = stored.iter().find(|m| m["content"] == "a picture").unwrap();
    assert_eq!(picture["media_type"], "image");
    assert_eq!(
        picture["appreciation_count"], 1,
        "Bob appreciated the picture"
    );

    // The screenshots: real PNGs of the viewport sizes, with content in them.
    let mut sizes = Vec::new();
    for (name, w, h) in [
        ("chat-1280x800.png", 1280, 800),
        ("operator-1280x800.png", 1280, 800),
        ("chat-390x844.png", 390, 844),
        ("operator-390x844.png", 390, 844),
    ] {
        let path = artifacts.join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(png_size(&bytes), (w, h), "{name}");
        assert!(
            bytes.len() > 8 * 1024,
            "{name} is {} bytes: a blank page?",
            bytes.len()
        );
        sizes.push((name, bytes));
    }
    assert_ne!(sizes[0].1, sizes[1].1, "the chat and operator views differ");
    assert_ne!(sizes[2].1, sizes[3].1, "the chat and operator views differ");
    eprintln!("console screenshots in {}", artifacts.display());
}
