//! Black-box tests of the realtime stream's limits (issue 6): token expiry and `refresh`, the
//! per-user and node-wide connection caps, the joined-space cap, bounded replay memory, the pong
//! deadline and oversized client frames.

mod common;

use std::time::{Duration, Instant};

use common::{Server, Ws, eventually, token, token_with, try_send_text};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Creates a public space owned by `owner`; returns its id.
async fn new_space(s: &Server, owner: &str) -> String {
    let space = s.create_space(owner, "limits test space").await;
    space["space_id"].as_str().expect("space_id").to_owned()
}

/// Reads until the server closes; returns the close code and reason (`None` without a close
/// frame). Panics after `within`.
async fn close_of(ws: &mut Ws, within: Duration) -> Option<(u16, String)> {
    let until = Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.inner.next())
            .await
            .expect("the server closed the connection in time");
        match msg {
            Some(Ok(WsMessage::Close(frame))) => {
                return frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
            }
            Some(Ok(_)) => continue,
            None | Some(Err(_)) => return None,
        }
    }
}

/// The unix time now, in seconds.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A token's `exp` claim (the payload is read without verifying it).
fn exp_of(tok: &str) -> u64 {
    let payload = tok.split('.').nth(1).expect("JWT payload");
    let claims: Value = serde_json::from_slice(&base64_free_decode(payload)).expect("claims JSON");
    claims["exp"].as_u64().expect("exp")
}

/// Decodes unpadded base64url (enough for a JWT payload in a test).
fn base64_free_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url"),
        }
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        acc = (acc << 6) | val(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// The value of a counter line of `/metrics` (0 when absent).
async fn metric(s: &Server, line_prefix: &str) -> u64 {
    let text = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

// ---- 1. A session does not outlive its token ----

#[tokio::test]
async fn a_session_is_closed_4001_token_expired_at_exp() {
    let s = Server::start(&[]).await;
    let owner = token("owner");
    let space = new_space(&s, &owner).await;
    let short = token_with(common::SECRET, "u1", 3);
    let started = Instant::now();
    let mut ws = s.stream(&short).await;
    // The session works until then.
    assert_eq!(ws.join(&space, None).await["type"], "joined");
    let close = close_of(&mut ws, Duration::from_secs(20)).await;
    assert_eq!(
        close,
        Some((4001, "token_expired".to_owned())),
        "closed at exp with 4001 token_expired"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not closed long before exp ({:?})",
        started.elapsed()
    );
    assert!(
        metric(
            &s,
            "spacecast_ws_closed_total{protocol=\"native\",reason=\"token_expired\"}"
        )
        .await
            >= 1,
        "the close is counted"
    );
}

#[tokio::test]
async fn a_refreshed_session_stays_open_past_the_first_exp_and_still_gets_events() {
    let s = Server::start(&[]).await;
    let owner = token("owner");
    let space = new_space(&s, &owner).await;
    let first_exp = unix_now() + 3;
    let mut ws = s.stream(&token_with(common::SECRET, "u1", 3)).await;
    assert_eq!(ws.join(&space, None).await["type"], "joined");

    let fresh = token_with(common::SECRET, "u1", 3600);
    ws.send_json(json!({"type": "refresh", "token": fresh}))
        .await;
    let answer = ws
        .next_matching(|v| v["type"] == "refreshed" || v["type"] == "error")
        .await;
    assert_eq!(answer["type"], "refreshed", "{answer}");
    assert_eq!(answer["exp"].as_u64(), Some(exp_of(&fresh)), "{answer}");

    // The scenario: stay connected past the first token's exp (plus a margin).
    while unix_now() <= first_exp + 2 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, m) = s.send_text(&owner, &space, "after the first exp").await;
    assert_eq!(status, 201, "{m}");
    let ev = ws
        .next_matching(|v| v["type"] == "event" || v["type"] == "error")
        .await;
    assert_eq!(ev["type"], "event", "still open and receiving: {ev}");
    assert_eq!(ev["data"]["content"], "after the first exp");
}

#[tokio::test]
async fn a_refresh_with_another_users_or_a_bad_token_is_refused_and_the_old_exp_holds() {
    let s = Server::start(&[]).await;
    let mut ws = s.stream(&token_with(common::SECRET, "u1", 4)).await;

    ws.send_json(json!({"type": "refresh", "token": token("u2")}))
        .await;
    let e = ws.next_json().await.expect("answer");
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["code"], "refresh_refused", "{e}");

    let forged = token_with("some-other-secret-0123456789", "u1", 3600);
    ws.send_json(json!({"type": "refresh", "token": forged}))
        .await;
    let e = ws.next_json().await.expect("answer");
    assert_eq!(
        (&e["type"], &e["code"]),
        (&json!("error"), &json!("invalid_token")),
        "{e}"
    );

    // Not later than the current exp: nothing to gain, refused too.
    ws.send_json(json!({"type": "refresh", "token": token_with(common::SECRET, "u1", 2)}))
        .await;
    let e = ws.next_json().await.expect("answer");
    assert_eq!(e["code"], "refresh_refused", "{e}");

    let close = close_of(&mut ws, Duration::from_secs(20)).await;
    assert_eq!(close, Some((4001, "token_expired".to_owned())));
}

// ---- 2. Per-user connection cap ----

/// Tries a stream upgrade; `Ok` after `hello`, or the refusal's status and `Retry-After`.
async fn try_stream(s: &Server, tok: &str) -> Result<Ws, (u16, Option<String>)> {
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/v1/stream", s.addr),
    )
    .expect("request");
    req.headers_mut()
        .insert("authorization", format!("Bearer {tok}").parse().unwrap());
    let res = tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("upgrade answered within 20 s");
    match res {
        Ok((inner, _)) => {
            let mut ws = Ws { inner };
            let hello = ws.next_json().await.expect("hello");
            assert_eq!(hello["type"], "hello", "{hello}");
            Ok(ws)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err((
            resp.status().as_u16(),
            resp.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        )),
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

/// An upgrade request made with plain HTTP, to read a refusal's JSON body whole.
async fn refused_upgrade(s: &Server, tok: &str) -> (u16, Option<String>, Value) {
    let r = s
        .http
        .get(s.url("/v1/stream"))
        .bearer_auth(tok)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_user_beyond_the_per_user_cap_gets_429_until_one_closes() {
    let s = Server::start(&["--max-connections-per-user", "3"]).await;
    let t1 = token("u1");
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(try_stream(&s, &t1).await.expect("within the cap"));
    }
    let (status, retry) = try_stream(&s, &t1).await.err().expect("4th refused");
    assert_eq!(status, 429);
    assert!(retry.is_some(), "Retry-After on the 429");
    let (status, retry, body) = refused_upgrade(&s, &t1).await;
    assert_eq!(status, 429, "{body}");
    assert!(retry.is_some());
    assert_eq!(body["code"], "too_many_connections", "{body}");
    assert!(body["error"].is_string(), "{body}");
    // Other users are not affected.
    let _other = try_stream(&s, &token("u2")).await.expect("another user");
    assert!(
        metric(
            &s,
            "spacecast_ws_refused_total{protocol=\"native\",reason=\"too_many_connections\"}"
        )
        .await
            >= 2
    );

    // One closes; then a new one is accepted.
    let mut first = open.remove(0);
    first.inner.close(None).await.expect("close");
    drop(first);
    let again = eventually(
        "a connection after one closed",
        Duration::from_secs(10),
        || {
            let (s, t1) = (&s, &t1);
            async move { try_stream(s, t1).await.ok() }
        },
    )
    .await;
    drop(again);
    drop(open);
}

// ---- 3. `--max-connections` holds under a burst ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_upgrades_never_exceeds_max_connections() {
    let s = Server::start(&["--max-connections", "5"]).await;
    let attempts = (0..30).map(|i| {
        let s = &s;
        async move { try_stream(s, &token(&format!("burst-{i}"))).await }
    });
    let results = futures::future::join_all(attempts).await;
    let mut held = Vec::new();
    for r in results {
        match r {
            Ok(ws) => held.push(ws),
            Err((status, retry)) => {
                assert_eq!(status, 503, "refused with 503");
                assert!(retry.is_some(), "Retry-After on the 503");
            }
        }
    }
    assert_eq!(held.len(), 5, "exactly the cap is open at once");
    let (status, _, body) = refused_upgrade(&s, &token("late")).await;
    assert_eq!(
        (status, &body["code"]),
        (503, &json!("overloaded")),
        "{body}"
    );
    // Closing frees a permit for a new one.
    let mut one = held.pop().expect("one held");
    one.inner.close(None).await.expect("close");
    drop(one);
    let late = eventually(
        "a connection after one closed",
        Duration::from_secs(10),
        || {
            let s = &s;
            async move { try_stream(s, &token("late")).await.ok() }
        },
    )
    .await;
    drop(late);
    drop(held);
}

// ---- 4. Joined spaces per session ----

#[tokio::test]
async fn joins_beyond_the_per_session_space_cap_are_refused() {
    let s = Server::start(&["--max-spaces-per-session", "3"]).await;
    let t1 = token("u1");
    let mut spaces = Vec::new();
    for _ in 0..4 {
        spaces.push(new_space(&s, &t1).await);
    }
    let mut ws = s.stream(&t1).await;
    for space in &spaces[..3] {
        assert_eq!(ws.join(space, None).await["type"], "joined");
    }
    // Joining one already joined again does not count twice.
    assert_eq!(ws.join(&spaces[0], None).await["type"], "joined");
    let e = ws.join(&spaces[3], None).await;
    assert_eq!(
        (&e["type"], &e["code"]),
        (&json!("error"), &json!("too_many_spaces")),
        "{e}"
    );
    // Typing in the refused space is refused as not joined.
    ws.send_json(json!({"type": "typing", "space_id": spaces[3]}))
        .await;
    let e = ws.next_json().await.expect("answer");
    assert_eq!(e["code"], "not_joined", "{e}");
    // A leave makes room.
    ws.send_json(json!({"type": "leave", "space_id": spaces[1]}))
        .await;
    assert_eq!(ws.next_json().await.expect("left")["type"], "left");
    assert_eq!(ws.join(&spaces[3], None).await["type"], "joined");
}

// ---- 5. Replay memory is bounded per session ----

/// VmRSS of a process, in bytes.
fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_to_clients_that_never_read_keeps_server_memory_bounded() {
    // What is held per session scales with the size of the events of one replay page: 100 KB
    // events (an operator-raised content limit, or the oversized identity claims found with
    // them) make a count-based page of 500 events weigh ~50 MB per session, ~150 MB with its
    // frames, while 4 KB events would hide the problem (2 MB per page).
    const N: usize = 300;
    const CLIENTS: usize = 4;
    // The space holds ~30 MB of events; 4 stalled readers together must stay under this.
    const BOUND: u64 = 64 << 20;
    let s = Server::start(&["--max-content-chars", "200000"]).await;
    let pid = s.child.id().expect("server pid");
    let owner = token("owner");
    let space = new_space(&s, &owner).await;
    let filler = "x".repeat(100_000);
    let statuses: Vec<u16> = futures::stream::iter(1..=N)
        .map(|i| {
            let (http, base, tok, space, filler) = (&s.http, &s.base, &owner, &space, &filler);
            async move {
                try_send_text(http, base, tok, space, &format!("{i} {filler}"))
                    .await
                    .expect("send")
                    .0
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(statuses.iter().all(|st| *st == 201), "every send stored");

    let before = rss_of(pid);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut ws = s
            .ws_connect(Some(&token(&format!("reader-{i}"))), None, Some(4096))
            .await;
        assert_eq!(ws.next_json().await.expect("hello")["type"], "hello");
        // Ask for everything, then never read.
        ws.send_json(json!({"type": "join", "space_id": space, "since_seq": 0}))
            .await;
        clients.push(ws);
    }
    let mut peak = before;
    let closed = "spacecast_ws_closed_total{protocol=\"native\",reason=\"slow_consumer\"}";
    eventually(
        "every stalled reader is closed as slow",
        Duration::from_secs(90),
        || {
            peak = peak.max(rss_of(pid));
            let s = &s;
            async move { (metric(s, closed).await >= CLIENTS as u64).then_some(()) }
        },
    )
    .await;
    let growth = peak.saturating_sub(before);
    eprintln!("RSS before {} MiB, peak {} MiB", before >> 20, peak >> 20);
    assert!(
        growth < BOUND,
        "server RSS grew by {} MiB while {CLIENTS} readers stalled (bound {} MiB)",
        growth >> 20,
        BOUND >> 20
    );
    // They read now: a gapless prefix of the replay, then 4008.
    let drains = clients.iter_mut().map(|ws| ws.drain_until_close());
    for (frames, code) in futures::future::join_all(drains).await {
        assert_eq!(code, Some(4008), "slow consumer close code");
        let seqs: Vec<u64> = frames
            .iter()
            .filter(|v| v["type"] == "event")
            .map(|v| v["seq"].as_u64().expect("seq"))
            .collect();
        let k = seqs.len() as u64;
        assert_eq!(seqs, (1..=k).collect::<Vec<_>>(), "a gapless prefix");
        assert!(k < N as u64, "the stall happened before the end ({k})");
    }
}

// ---- 6. Pong deadline ----

/// A raw WebSocket handshake on a plain TCP stream that then never answers anything.
async fn silent_client(s: &Server, tok: &str) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(&s.addr).await.expect("tcp");
    let req = format!(
        "GET /v1/stream HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {tok}\r\n\r\n",
        s.addr
    );
    tcp.write_all(req.as_bytes()).await.expect("write upgrade");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut b))
            .await
            .expect("response within 10 s")
            .expect("read");
        assert!(n == 1, "connection ended during the handshake");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

/// The server's close code among raw (unmasked) frames; `None` if there is no close frame.
fn close_code_in(mut bytes: &[u8]) -> Option<u16> {
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let (len, header) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => return None,
            n => (usize::from(n), 2),
        };
        if bytes.len() < header + len {
            return None;
        }
        let payload = &bytes[header..header + len];
        if opcode == 0x8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
        bytes = &bytes[header + len..];
    }
    None
}

#[tokio::test]
async fn a_peer_that_never_answers_pings_is_closed() {
    let s = Server::start(&["--ws-ping-interval", "1s"]).await;
    let mut tcp = silent_client(&s, &token("u1")).await;
    let started = Instant::now();
    let mut got = Vec::new();
    loop {
        let mut buf = [0u8; 4096];
        let left = Duration::from_secs(15).saturating_sub(started.elapsed());
        let n = tokio::time::timeout(left, tcp.read(&mut buf))
            .await
            .expect("the server closed the silent peer within 15 s")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(close_code_in(&got), Some(4002), "closed with 4002");
    assert!(
        metric(
            &s,
            "spacecast_ws_closed_total{protocol=\"native\",reason=\"pong_timeout\"}"
        )
        .await
            >= 1
    );
}

#[tokio::test]
async fn a_peer_that_answers_pings_stays_open() {
    let s = Server::start(&["--ws-ping-interval", "1s"]).await;
    let t1 = token("u1");
    let space = new_space(&s, &t1).await;
    let mut ws = s.stream(&t1).await;
    // The scenario: several ping intervals, reading (tungstenite answers each ping).
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_secs(4) {
        match tokio::time::timeout(Duration::from_millis(500), ws.inner.next()).await {
            Err(_) => {}
            Ok(Some(Ok(WsMessage::Ping(_)))) => pings += 1,
            Ok(other) => panic!("unexpected while idle: {other:?}"),
        }
    }
    assert!(pings >= 2, "pings arrive every second ({pings})");
    assert_eq!(ws.join(&space, None).await["type"], "joined");
}

// ---- 7. Oversized client frames ----

#[tokio::test]
async fn a_frame_over_64_kib_is_closed_with_1009() {
    let s = Server::start(&[]).await;
    let mut ws = s.stream(&token("u1")).await;
    let big = format!(
        r#"{{"type":"send","space_id":"x","content":"{}"}}"#,
        "y".repeat(70 * 1024)
    );
    ws.send_raw(WsMessage::text(big)).await;
    let close = close_of(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(close.map(|(code, _)| code), Some(1009), "message too big");
}
