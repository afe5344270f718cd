//! Black-box tests of the HTTP edge's limits (issue 6: items 1 and 2, and the HTTP parts of 9):
//! header and idle timeouts (slowloris), the HTTP connection cap, a descriptor limit far below
//! the connection attempts, hyper's own 400/414/431 answers as JSON, and 413 before
//! `100 Continue`.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{SECRET, Server, bin, eventually, token, try_send_text};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

/// A raw TCP connection to the server.
async fn connect(addr: &str) -> TcpStream {
    tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .expect("connect within 10 s")
        .expect("connect")
}

/// Reads until the server closes the connection (EOF or reset); returns what was read, or `None`
/// if it is still open after `deadline`.
async fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let until = Instant::now() + deadline;
    let mut buf = [0u8; 8192];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// One HTTP/1.1 response read from a kept-alive connection: status, lower-cased head, body.
async fn read_response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .expect("read");
        assert!(n > 0, "connection closed before a full response head");
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    let status = head[9..12].parse().expect("status code");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("content-length"));
    while data.len() < head_end + length {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the body within 10 s")
            .expect("read");
        assert!(n > 0, "connection closed before the full body");
        data.extend_from_slice(&buf[..n]);
    }
    (status, head, data[head_end..head_end + length].to_vec())
}

/// Parses a whole response (read until close): status, lower-cased head, JSON body.
fn parse_closed_response(bytes: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("a full response: {text:?}"));
    let status = head[9..12].parse().expect("status code");
    let body: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("a JSON body ({e}): {text:?}"));
    (status, head.to_ascii_lowercase(), body)
}

fn healthz_request() -> &'static [u8] {
    b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
}

#[tokio::test]
async fn a_slowloris_head_and_a_silent_connection_are_closed_by_the_header_timeout() {
    let s = Server::start(&["--http-header-timeout", "1s"]).await;
    // A request head trickling in at one byte per 0.5 s never completes: 60 bytes would take 30 s.
    let mut slow = connect(&s.addr).await;
    let (mut rd, mut wr) = slow.split();
    let start = Instant::now();
    let trickle = async {
        for b in
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
    };
    tokio::select! {
        r = closed => assert!(r.is_ok(), "the slow head is closed within 10 s of a 1 s header timeout"),
        () = trickle => panic!("the server let a slow head trickle for 30 s"),
    }
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "not before the timeout"
    );
    drop(slow);

    // A connection that sends nothing at all.
    let mut silent = connect(&s.addr).await;
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(10))
            .await
            .is_some(),
        "a silent connection is closed within 10 s of a 1 s header timeout"
    );
    let metrics = s.metrics_text().await;
    assert!(
        metrics.contains("spacecast_http_connections_closed_total{reason=\"header_timeout\"}"),
        "header timeouts are counted"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_and_busy_ones_are_not() {
    // The idle timeout is longer than the header timeout: a connection between requests is
    // governed by the idle timeout only.
    let s = Server::start(&["--http-header-timeout", "1s", "--http-idle-timeout", "3s"]).await;
    let mut idle = connect(&s.addr).await;
    idle.write_all(healthz_request()).await.unwrap();
    let (status, _, _) = read_response(&mut idle).await;
    assert_eq!(status, 200);

    // A connection making a request every 2 s (longer than the header timeout, shorter than the
    // idle timeout) keeps being served on the same connection.
    let mut busy = connect(&s.addr).await;
    for i in 0..4 {
        if i > 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        busy.write_all(healthz_request()).await.unwrap();
        let (status, _, _) = read_response(&mut busy).await;
        assert_eq!(status, 200, "request {i} on the busy connection");
    }
    // Meanwhile (6 s), the idle connection was closed.
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(10))
            .await
            .is_some(),
        "an idle keep-alive connection is closed within 10 s of a 3 s idle timeout"
    );
}

#[tokio::test]
async fn beyond_max_http_connections_a_new_connection_gets_503_json_then_service_resumes() {
    let s = Server::start(&[
        "--max-http-connections",
        "20",
        "--http-header-timeout",
        "60s",
    ])
    .await;
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut c = connect(&s.addr).await;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
            .await
            .unwrap();
        held.push(c);
    }
    let fresh = common::http_client();
    let r = eventually(
        "a 503 at the connection cap",
        Duration::from_secs(10),
        || {
            let fresh = fresh.clone();
            let url = s.url("/healthz");
            async move {
                let r = fresh.get(url).send().await.ok()?;
                (r.status() == 503).then_some(r)
            }
        },
    )
    .await;
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(
        r.headers().get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );
    let body: Value = r.json().await.expect("JSON body");
    assert_eq!(body["code"], "overloaded", "{body}");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));

    drop(held);
    eventually(
        "/healthz answers 200 again",
        Duration::from_secs(10),
        || {
            let url = s.url("/healthz");
            async move {
                let r = common::http_client().get(url).send().await.ok()?;
                (r.status() == 200).then_some(())
            }
        },
    )
    .await;
    let metrics = common::http_client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("spacecast_http_connections_refused_total{action=\"answered\"}"),
        "refusals are counted"
    );
    assert!(metrics.contains("spacecast_connection_limit{kind=\"http\"} 20"));
}

/// A server started under `prlimit --nofile=LIMIT:LIMIT`, with default connection caps.
struct Limited {
    child: tokio::process::Child,
    base: String,
    addr: String,
    _dir: tempfile::TempDir,
}

async fn start_limited(limit: u32, extra: &[&str]) -> Limited {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={limit}:{limit}"))
        .arg("--")
        .arg(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(extra)
        .env("SPACECAST_JWT_SECRET", SECRET)
        .env(common::SEND_RATE_LIMIT_ENV, "0")
        .env("RUST_LOG", "warn,spacecast_api=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn prlimit spacecast");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("listening within 30 s")
        .unwrap()
        .expect("the server exited before listening");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let base = line
        .strip_prefix("spacecast listening on ")
        .expect("address line")
        .trim()
        .to_owned();
    let addr = base.trim_start_matches("http://").to_owned();
    Limited {
        child,
        base,
        addr,
        _dir: dir,
    }
}

#[tokio::test]
async fn under_a_low_descriptor_limit_a_connection_flood_does_not_stop_the_server() {
    const LIMIT: u32 = 300;
    const ATTEMPTS: usize = 1_000;
    // Default caps (10,000 HTTP + 100,000 realtime) do not fit 300 descriptors: they are lowered.
    let mut s = start_limited(LIMIT, &["--http-header-timeout", "60s"]).await;
    let client = common::http_client();
    let tok = token("fd-user");
    // An established client: its kept-alive connection stays usable through the flood.
    let r = client
        .post(format!("{}/api/spaces", s.base))
        .bearer_auth(&tok)
        .json(&serde_json::json!({"title": "descriptors", "description": "d", "hashtags": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let space: Value = r.json().await.unwrap();
    let space_id = space["space_id"].as_str().expect("space_id").to_owned();

    // Far more idle connections than the process has descriptors.
    let mut flood = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    for _ in 0..ATTEMPTS {
        if Instant::now() > until {
            break;
        }
        if let Ok(Ok(c)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&s.addr)).await
        {
            flood.push(c);
        }
    }
    assert!(
        flood.len() > LIMIT as usize,
        "the flood connected: {}",
        flood.len()
    );

    // While they are held: a send is durable (the store still has descriptors) and a new
    // client gets an answer (200, or the cap's 503 JSON), never silence.
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(10),
        try_send_text(&client, &s.base, &tok, &space_id, "during the flood"),
    )
    .await
    .expect("the send during the flood is answered within 10 s")
    .expect("send during the flood");
    assert_eq!(status, 201, "send during the flood: {body}");
    // A new client may be reset while the flood is still being refused (the refusal answers in
    // progress are bounded, beyond them a connection is closed at once), then gets an answer.
    eventually(
        "a new client gets an answer during the flood",
        Duration::from_secs(15),
        || {
            let url = format!("{}/healthz", s.base);
            async move {
                let r = tokio::time::timeout(
                    Duration::from_secs(3),
                    common::http_client().get(url).send(),
                )
                .await
                .ok()?
                .ok()?;
                match r.status().as_u16() {
                    200 => Some(()),
                    503 => {
                        let body: Value = r.json().await.expect("JSON");
                        assert_eq!(body["code"], "overloaded", "{body}");
                        Some(())
                    }
                    other => panic!("unexpected status {other}"),
                }
            }
        },
    )
    .await;

    drop(flood);
    eventually(
        "/healthz 200 after the flood",
        Duration::from_secs(20),
        || {
            let url = format!("{}/healthz", s.base);
            async move {
                let r = common::http_client().get(url).send().await.ok()?;
                (r.status() == 200).then_some(())
            }
        },
    )
    .await;
    let (status, body) = try_send_text(
        &common::http_client(),
        &s.base,
        &tok,
        &space_id,
        "after the flood",
    )
    .await
    .expect("send after the flood");
    assert_eq!(status, 201, "send after the flood: {body}");
    let _ = s.child.start_kill();
}

#[tokio::test]
async fn hypers_own_400_414_431_answers_are_json_with_a_code() {
    let s = Server::start(&[]).await;
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(70_000));
    let mut many_headers = String::from("GET /healthz HTTP/1.1\r\nHost: t\r\n");
    for i in 0..200 {
        many_headers.push_str(&format!("X-H{i}: v\r\n"));
    }
    many_headers.push_str("\r\n");
    let cases: [(&[u8], u16, &str); 3] = [
        (
            b"\x01\x02 / HTTP/1.1\r\nHost: t\r\n\r\n",
            400,
            "invalid_request",
        ),
        (long_uri.as_bytes(), 414, "uri_too_long"),
        (many_headers.as_bytes(), 431, "headers_too_large"),
    ];
    for (request, want_status, want_code) in cases {
        let mut c = connect(&s.addr).await;
        c.write_all(request).await.unwrap();
        let bytes = read_until_closed(&mut c, Duration::from_secs(10))
            .await
            .expect("the connection is closed after the error");
        let (status, head, body) = parse_closed_response(&bytes);
        assert_eq!(status, want_status, "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert_eq!(body["code"], want_code, "{body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // The server still serves normally afterwards, JSON bodies included.
    let r = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Sends a head with `Expect: 100-continue` and an oversized `Content-Length`, and no body;
/// returns the first response read.
async fn expect_continue(s: &Server, path: &str, content_type: &str, length: u64) -> String {
    let mut c = connect(&s.addr).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n",
        token("big-sender")
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let (status, head, body) = read_response(&mut c).await;
    assert_ne!(
        status, 100,
        "no 100 Continue for an oversized body on {path}"
    );
    assert_eq!(status, 413, "{path}: {head}");
    let body: Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(body["code"], "payload_too_large", "{path}: {body}");
    head
}

#[tokio::test]
async fn an_oversized_content_length_with_expect_continue_gets_413_before_any_100_continue() {
    let s = Server::start(&["--max-body-bytes", "1000", "--max-media-bytes", "100000"]).await;
    let owner = token("owner");
    let space = s.create_space(&owner, "expect").await;
    let id = space["space_id"].as_str().unwrap();
    expect_continue(&s, "/api/spaces", "application/json", 1_001).await;
    expect_continue(
        &s,
        &format!("/api/spaces/{id}/join"),
        "application/json",
        1_001,
    )
    .await;
    expect_continue(
        &s,
        &format!("/api/messages/{id}"),
        "application/json",
        1_001,
    )
    .await;
    // Multipart may carry media: its limit is max_media_bytes + 64 KiB.
    expect_continue(
        &s,
        &format!("/api/messages/{id}"),
        "multipart/form-data; boundary=x",
        100_000 + 64 * 1024 + 1,
    )
    .await;
    // Within the limits, the same request is invited to send its body.
    let mut c = connect(&s.addr).await;
    let head = format!(
        "POST /api/messages/{id} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {owner}\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
        .await
        .expect("an interim answer within 10 s")
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[tokio::test]
async fn a_slow_upload_and_a_websocket_outlive_the_header_and_idle_timeouts() {
    let s = Server::start(&["--http-header-timeout", "1s", "--http-idle-timeout", "1s"]).await;
    let tok = token("slow-uploader");
    // A body sent over ~3 s, in pieces: the request is in flight, so neither timeout applies.
    let body =
        serde_json::json!({"title": "slow upload", "description": "x".repeat(200), "hashtags": []})
            .to_string();
    let mut c = connect(&s.addr).await;
    let head = format!(
        "POST /api/spaces HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {tok}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.as_bytes().chunks(body.len() / 6 + 1) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.write_all(chunk).await.expect("the upload is not cut");
    }
    let (status, _, resp) = read_response(&mut c).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&resp));
    let space: Value = serde_json::from_slice(&resp).unwrap();
    let space_id = space["space_id"].as_str().unwrap();

    // An upgraded connection is a realtime session: silent for 3 s, it still works.
    let mut ws = s.stream(&tok).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ws.send_json(serde_json::json!({"type": "join", "space_id": space_id}))
        .await;
    let joined = ws.next_matching(|v| v["type"] == "joined").await;
    assert_eq!(joined["space_id"], space_id);
    let metrics = s.metrics_text().await;
    assert!(
        metrics.contains("spacecast_http_connections_closed_total{reason=\"upgraded\"} 1"),
        "the upgraded connection left the HTTP count"
    );
}

// ---- The per-user send rate limit (issue 10: `--send-rate-limit`) ----

/// The `Retry-After` of a 429 `rate_limited`, checked to be whole seconds within `1..=max`.
fn retry_after(headers: &reqwest::header::HeaderMap, max: u64) -> u64 {
    let secs: u64 = headers
        .get("retry-after")
        .expect("a 429 carries Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds");
    assert!(
        (1..=max).contains(&secs),
        "Retry-After {secs} not in 1..={max}"
    );
    secs
}

#[tokio::test]
async fn a_user_over_the_send_rate_limit_gets_429_with_retry_after_on_every_surface() {
    // 3 a minute: a burst of 3, then one every 20 s.
    let s = Server::start(&["--send-rate-limit", "3"]).await;
    let (ada, bob) = (token("rl-ada"), token("rl-bob"));
    let space = s.create_space(&ada, "limited").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.join(&bob, &space).await.status(), 200);
    for i in 0..3 {
        let (status, body) = s.send_text(&ada, &space, &format!("m{i}")).await;
        assert_eq!(status, 201, "send {i} of the burst: {body}");
    }
    // REST (Space7): refused before the body is read, as JSON with Retry-After.
    let url = s.url(&format!("/api/messages/{space}"));
    let res = s
        .http
        .post(&url)
        .bearer_auth(&ada)
        .json(&serde_json::json!({"content": "one too many"}))
        .send()
        .await
        .unwrap();
    let (headers, _) = common::assert_json_error(res, 429, "rate_limited").await;
    retry_after(&headers, 20);
    // The native stream shares the user's allowance: an error frame with retry_after and the
    // client's local_id, and the session stays open.
    let (mut ws, _) = s.stream_hello(&ada).await;
    ws.send_json(serde_json::json!({
        "type": "send", "space_id": space, "content": "via the stream", "local_id": "l-1"
    }))
    .await;
    let err = ws.next_matching(|v| v["type"] == "error").await;
    assert_eq!(err["code"], "rate_limited", "{err}");
    assert_eq!(err["local_id"], "l-1", "{err}");
    let secs = err["retry_after"].as_u64().expect("retry_after in seconds");
    assert!((1..=20).contains(&secs), "{err}");
    ws.send_json(serde_json::json!({"type": "join", "space_id": space}))
        .await;
    assert_eq!(
        ws.next_matching(|v| v["type"] != "error").await["type"],
        "joined"
    );
    // Another user is not held back.
    let (status, body) = s.send_text(&bob, &space, "bob's turn").await;
    assert_eq!(status, 201, "{body}");
    // Nothing refused was stored: ada's 3 and bob's 1.
    let all = s.list_all(&ada, &space).await;
    assert_eq!(all.len(), 4, "{all:?}");
    let metrics = s.metrics_text().await;
    for surface in ["space7", "stream"] {
        let line = format!("spacecast_sends_rate_limited_total{{surface=\"{surface}\"}} 1");
        assert!(metrics.contains(&line), "{line} missing");
    }
}

#[tokio::test]
async fn a_client_that_waits_retry_after_is_admitted_again() {
    // 60 a minute: a burst of 60, then one a second.
    let s = Server::start(&["--send-rate-limit", "60"]).await;
    let ada = token("rl-wait");
    let space = s.create_space(&ada, "wait").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = s.url(&format!("/api/messages/{space}"));
    let send = || {
        s.http
            .post(&url)
            .bearer_auth(&ada)
            .json(&serde_json::json!({"content": "hi"}))
            .send()
    };
    let (mut admitted, started) = (0u64, Instant::now());
    let wait = loop {
        let res = send().await.unwrap();
        if res.status() == 429 {
            break retry_after(res.headers(), 1);
        }
        assert_eq!(res.status(), 201);
        admitted += 1;
        // The burst, plus the one a second that came back while it was sent.
        let refilled = started.elapsed().as_secs() + 1;
        assert!(
            admitted <= 60 + refilled,
            "{admitted} admitted: more than the limit"
        );
    };
    assert!(admitted >= 60, "the whole burst is admitted: {admitted}");
    // Retry-After is the promise under test: waiting exactly that long must be enough.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(
        send().await.unwrap().status(),
        201,
        "admitted after Retry-After"
    );
}

#[tokio::test]
async fn zero_means_no_send_rate_limit() {
    let s = Server::start(&["--send-rate-limit", "0"]).await;
    let ada = token("rl-none");
    let space = s.create_space(&ada, "free").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..150 {
        let (status, body) = s.send_text(&ada, &space, &format!("m{i}")).await;
        assert_eq!(status, 201, "send {i}: {body}");
    }
}

// ---- The per-user write limit (`--write-rate-limit`): reactions, edits, deletes, members… ----

#[tokio::test]
async fn writes_other_than_sends_have_their_own_per_user_limit() {
    // 4 a minute: a burst of 4, then one every 15 s. Sends are unlimited here.
    let s = Server::start(&["--write-rate-limit", "4"]).await;
    let (ada, bob) = (token("wl-ada"), token("wl-bob"));
    // Creating the space is ada's first write.
    let space = s.create_space(&ada, "writes").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, sent) = s.send_text(&ada, &space, "react to me").await;
    assert_eq!(status, 201, "{sent}");
    let message = sent["message_id"].as_str().unwrap().to_owned();
    let reaction = |key: &str, method: reqwest::Method, who: &str| {
        s.http
            .request(
                method,
                s.url(&format!(
                    "/v1/spaces/{space}/messages/{message}/reactions/{key}"
                )),
            )
            .bearer_auth(who)
            .send()
    };
    // Writes 2–4: two reactions and Space7's appreciation toggle.
    for key in ["fire", "eyes"] {
        let res = reaction(key, reqwest::Method::PUT, &ada).await.unwrap();
        assert_eq!(res.status(), 200, "{key}");
    }
    let appreciate = s
        .http
        .post(s.url(&format!("/api/messages/{space}/{message}/appreciate")))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(appreciate.status(), 200);
    // The fifth is refused before anything is written, with Retry-After.
    let res = reaction("fire", reqwest::Method::DELETE, &ada)
        .await
        .unwrap();
    let (headers, _) = common::assert_json_error(res, 429, "rate_limited").await;
    retry_after(&headers, 15);
    let edit = s
        .http
        .post(s.url(&format!("/v1/spaces/{space}/messages/{message}/edit")))
        .bearer_auth(&ada)
        .json(&serde_json::json!({"content": "edited"}))
        .send()
        .await
        .unwrap();
    common::assert_json_error(edit, 429, "rate_limited").await;
    // Sending is a budget of its own, reading is not limited, and another user is not held back.
    let (status, body) = s.send_text(&ada, &space, "still posting").await;
    assert_eq!(status, 201, "{body}");
    let got = s
        .http
        .get(s.url(&format!("/v1/spaces/{space}/messages/{message}")))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let got: serde_json::Value = got.json().await.unwrap();
    assert_eq!(
        got["reaction_counts"],
        serde_json::json!({"appreciate": 1, "eyes": 1, "fire": 1}),
        "the refused removal changed nothing: {got}"
    );
    assert_eq!(s.join(&bob, &space).await.status(), 200);
    let res = reaction("fire", reqwest::Method::PUT, &bob).await.unwrap();
    assert_eq!(res.status(), 200, "bob has his own allowance");
    let metrics = s.metrics_text().await;
    for kind in ["reaction", "edit"] {
        let line = format!("spacecast_writes_rate_limited_total{{kind=\"{kind}\"}} 1");
        assert!(metrics.contains(&line), "{line} missing");
    }
}
