//! The native stream's delivery path (issue 7) against the real binary: events coalesced into
//! fewer socket writes (and held by `--ws-write-delay`) still arrive complete, gapless and in
//! order at every subscriber, on the realtime runtime and on the request runtime
//! (`--realtime-threads 0`); the upgrade below warp refuses what is not a WebSocket handshake
//! with JSON errors.

mod common;

use std::time::Duration;

use common::{Server, Ws, token, try_send_text};
use futures::StreamExt;
use serde_json::Value;

/// Creates a public space owned by `owner`; returns its id.
async fn new_space(s: &Server, owner: &str) -> String {
    let space = s.create_space(owner, "delivery test space").await;
    space["space_id"].as_str().expect("space_id").to_owned()
}

/// The value of a metric line `name{labels} value` in `text` (0 when absent).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `n` sends over REST, `concurrency` at a time; asserts every one is acknowledged.
async fn burst(s: &Server, tok: &str, space: &str, n: u64, concurrency: usize) {
    let results: Vec<(u16, Value)> = futures::stream::iter(1..=n)
        .map(|i| {
            let (http, base) = (&s.http, &s.base);
            async move {
                try_send_text(http, base, tok, space, &format!("burst {i}"))
                    .await
                    .expect("send")
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    assert!(
        results.iter().all(|(st, _)| *st == 201),
        "every send acknowledged: {:?}",
        results.iter().find(|(st, _)| *st != 201)
    );
}

/// Reads `ws` until the event with seq `n` of `space`; returns the seqs of every event of that
/// space, in arrival order.
async fn seqs_until(ws: &mut Ws, space: &str, n: u64) -> Vec<u64> {
    ws.frames_until_event(space, n)
        .await
        .iter()
        .filter(|v| v["type"] == "event" && v["space_id"] == space)
        .map(|v| v["seq"].as_u64().expect("seq"))
        .collect()
}

async fn coalesced_delivery_is_complete_and_ordered(extra: &[&str]) {
    const N: u64 = 300;
    const WATCHERS: usize = 3;
    let s = Server::start(extra).await;
    let owner = token("owner");
    let space = new_space(&s, &owner).await;
    let mut watchers = Vec::new();
    for i in 0..WATCHERS {
        let mut ws = s.stream(&token(&format!("w{i}"))).await;
        let j = ws.join(&space, None).await;
        assert_eq!(j["type"], "joined", "{j}");
        watchers.push(ws);
    }
    // Pipelined sends make multi-event commits, so several events wait for each wake-up.
    burst(&s, &owner, &space, N, 32).await;
    for ws in &mut watchers {
        let seqs = seqs_until(ws, &space, N).await;
        assert_eq!(
            seqs,
            (1..=N).collect::<Vec<_>>(),
            "every event once, in order"
        );
    }
    let text = s.metrics_text().await;
    let deliveries = metric(
        &text,
        "spacecast_fanout_deliveries_total{protocol=\"native\"}",
    );
    let writes = metric(&text, "spacecast_fanout_writes_total{protocol=\"native\"}");
    assert_eq!(deliveries, (N as f64) * WATCHERS as f64, "{text}");
    assert!(writes >= 1.0, "writes are counted");
    assert!(
        writes < deliveries,
        "several events share a socket write ({writes} writes for {deliveries} deliveries)"
    );
}

#[tokio::test]
async fn coalesced_events_arrive_complete_and_in_order() {
    coalesced_delivery_is_complete_and_ordered(&[]).await;
}

#[tokio::test]
async fn a_write_delay_on_the_request_runtime_still_delivers_everything_in_order() {
    coalesced_delivery_is_complete_and_ordered(&[
        "--ws-write-delay",
        "20ms",
        "--realtime-threads",
        "0",
    ])
    .await;
}

#[tokio::test]
async fn the_stream_refuses_what_is_not_a_websocket_handshake_with_json_errors() {
    let s = Server::start(&[]).await;
    let url = s.url("/v1/stream");
    let tok = token("u1");

    let r = s.http.get(&url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "invalid_request", "{body}");

    let r = s
        .http
        .get(&url)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no Sec-WebSocket-Version");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("sec-websocket-version")),
        "{body}"
    );

    let r = s.http.post(&url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "method_not_allowed", "{body}");

    // A real handshake still works, with the token in the query (percent-encoded or not).
    let mut ws = s.ws_connect(None, Some(&tok), None).await;
    let hello = tokio::time::timeout(Duration::from_secs(10), ws.next_json())
        .await
        .expect("hello in time")
        .expect("hello");
    assert_eq!(hello["type"], "hello", "{hello}");
}

/// Reads one unmasked server frame's payload from `r` (text or close; small frames only).
async fn read_frame(r: &mut (impl tokio::io::AsyncRead + Unpin)) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 2];
    r.read_exact(&mut head).await.expect("frame head");
    let len = match head[1] & 0x7f {
        126 => usize::from(r.read_u16().await.expect("length")),
        127 => usize::try_from(r.read_u64().await.expect("length")).expect("length fits"),
        n => usize::from(n),
    };
    let mut payload = vec![0; len];
    r.read_exact(&mut payload).await.expect("payload");
    (head[0] & 0x0f, payload)
}

/// A client that sends its first frame in the same write as the upgrade request, before the
/// 101: hyper has read those bytes already, and the session must still get them.
#[tokio::test]
async fn a_frame_sent_before_the_101_is_not_lost() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start(&[]).await;
    let mut tcp = tokio::net::TcpStream::connect(&s.addr)
        .await
        .expect("connect");
    let payload = br#"{"type":"leave","space_id":"not-a-uuid"}"#;
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | u8::try_from(payload.len()).unwrap()];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let mut bytes = format!(
        "GET /v1/stream HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {}\r\n\r\n",
        s.addr,
        token("early")
    )
    .into_bytes();
    bytes.extend_from_slice(&frame);
    tcp.write_all(&bytes).await.expect("write");

    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.expect("101 head"));
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "RFC 6455's sample accept key: {head}"
    );
    let (op, hello) = read_frame(&mut tcp).await;
    let hello: Value = serde_json::from_slice(&hello).expect("hello json");
    assert_eq!((op, hello["type"].as_str()), (1, Some("hello")));
    // The early frame was read: its (refused) leave is answered.
    let (op, answer) = read_frame(&mut tcp).await;
    let answer: Value = serde_json::from_slice(&answer).expect("answer json");
    assert_eq!(op, 1);
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["space_id"], "not-a-uuid", "{answer}");
}

/// The threads of a process named `name` (`/proc/<pid>/task/*/comm`), with their nice values
/// (field 19 of `/proc/<pid>/task/<tid>/stat`).
fn thread_nice(pid: u32, name: &str) -> Vec<i64> {
    let mut nice = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc task dir") {
        let dir = task.expect("task entry").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // After the parenthesised command name: state is field 3, nice field 19.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        if let Some(n) = rest.split_whitespace().nth(16).and_then(|v| v.parse().ok()) {
            nice.push(n);
        }
    }
    nice
}

/// Sessions run on their own runtime (`--realtime-threads`), a little below request threads in
/// priority, so fan-out cannot queue in front of requests; with 0 there is no such runtime.
#[tokio::test]
async fn realtime_sessions_run_on_their_own_lower_priority_threads() {
    let s = Server::start(&["--realtime-threads", "2"]).await;
    let pid = s.child.id().expect("server pid");
    let nice = thread_nice(pid, "spacecast-rt");
    assert_eq!(nice, vec![5, 5], "two realtime threads at nice 5");
    let main_nice = thread_nice(pid, "spacecast");
    assert!(main_nice.iter().all(|n| *n == 0), "{main_nice:?}");
    // And they serve sessions.
    let mut ws = s.stream(&token("rt")).await;
    let space = new_space(&s, &token("rt")).await;
    let j = ws.join(&space, None).await;
    assert_eq!(j["type"], "joined", "{j}");

    let s = Server::start(&["--realtime-threads", "0"]).await;
    let pid = s.child.id().expect("server pid");
    assert!(thread_nice(pid, "spacecast-rt").is_empty());
}
