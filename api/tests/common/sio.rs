//! Socket.IO peers for the tests: the real `socket.io-client` v4 in a Node process
//! (`api/tests/js/sio_peer.mjs`, used exactly as the Space7 app uses it), and a raw Engine.IO
//! client in Rust for what socket.io-client cannot do (stop reading).
//!
//! Node comes from `SPACECAST_TEST_NODE` (else `node` on the PATH) and the packages from
//! `SPACECAST_TEST_JS_DIR` (else `api/tests/js`), both set by `eval "$(scripts/js.sh env)"`
//! after `scripts/js.sh install`. A missing one fails the test, naming the fix: never a skip.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::{Server, js_dir, node};

/// How long a peer is given for anything the test waits on.
pub const WAIT: Duration = Duration::from_secs(15);

/// One `sio_peer.mjs` process: every line it printed, and its stdin for commands.
pub struct SioPeer {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<Value>,
    /// Every line read so far, in order.
    pub seen: Vec<Value>,
    /// How many of `seen` the `next_*` calls have looked at.
    cursor: usize,
}

impl SioPeer {
    /// A socket.io-client of `server` as the Space7 app: websocket transport, `auth.token` =
    /// `token` (none when `None`), `join_space` emitted right after `connect()`.
    pub async fn space7(server: &Server, token: Option<&str>, join: Option<&str>) -> SioPeer {
        let mut config = json!({"url": server.base});
        if let Some(t) = token {
            config["token"] = json!(t);
        }
        if let Some(j) = join {
            config["join"] = json!(j);
        }
        SioPeer::start(config).await
    }

    /// A peer with the given config (see `sio_peer.mjs`).
    pub async fn start(config: Value) -> SioPeer {
        let dir = js_dir("socket.io-client");
        let mut child = Command::new(node())
            .arg(dir.join("sio_peer.mjs"))
            .arg(config.to_string())
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node sio_peer.mjs");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("sio_peer printed a non-JSON line ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let mut peer = SioPeer {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            cursor: 0,
        };
        peer.next("the peer started", |v| v["kind"] == "ready")
            .await;
        // What came before `ready` (the first emits) is the test's to look at.
        peer.cursor = 0;
        peer
    }

    /// The next line (after those already looked at) satisfying `pred`; panics after [`WAIT`]
    /// naming `what`, with everything the peer printed.
    pub async fn next(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + WAIT;
        loop {
            while self.cursor < self.seen.len() {
                let v = &self.seen[self.cursor];
                self.cursor += 1;
                if pred(v) {
                    return v.clone();
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(v)) => self.seen.push(v),
                Ok(None) => panic!(
                    "the peer exited while waiting for: {what}; it printed:\n{}",
                    self.dump()
                ),
                Err(_) => panic!(
                    "timed out waiting for: {what}; the peer printed:\n{}",
                    self.dump()
                ),
            }
        }
    }

    /// The next server event named `event` (its payload).
    pub async fn event(&mut self, event: &str) -> Value {
        let v = self
            .next(&format!("event {event}"), |v| {
                v["kind"] == "event" && v["event"] == event
            })
            .await;
        v["data"].clone()
    }

    /// Waits for the `connect`.
    pub async fn connected(&mut self) {
        self.next("connect", |v| v["kind"] == "connect").await;
    }

    /// The next `connect_error`'s message (panics on a `connect` instead).
    pub async fn connect_error(&mut self) -> String {
        let v = self
            .next("connect or connect_error", |v| {
                v["kind"] == "connect_error" || v["kind"] == "connect"
            })
            .await;
        assert_eq!(v["kind"], "connect_error", "expected a refusal: {v}");
        v["message"].as_str().expect("message").to_owned()
    }

    /// Waits for `joined_space` of `space`; returns its `head_seq`.
    pub async fn joined(&mut self, space: &str) -> u64 {
        let v = self
            .next(&format!("joined_space {space}"), |v| {
                v["kind"] == "event"
                    && v["event"] == "joined_space"
                    && v["data"]["space_id"] == space
            })
            .await;
        v["data"]["head_seq"].as_u64().expect("head_seq")
    }

    /// Waits for the `receive_message` whose message has `content`; returns the payload.
    pub async fn received(&mut self, content: &str) -> Value {
        let v = self
            .next(&format!("receive_message {content:?}"), |v| {
                v["kind"] == "event"
                    && v["event"] == "receive_message"
                    && v["data"]["message"]["content"] == content
            })
            .await;
        v["data"].clone()
    }

    /// Every server event (name, payload) seen so far, in order.
    pub fn events(&self) -> Vec<(String, Value)> {
        self.seen
            .iter()
            .filter(|v| v["kind"] == "event")
            .map(|v| {
                (
                    v["event"].as_str().unwrap_or("").to_owned(),
                    v["data"].clone(),
                )
            })
            .collect()
    }

    /// Every payload of server event `event` seen so far.
    pub fn payloads(&self, event: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|(e, _)| e == event)
            .map(|(_, d)| d)
            .collect()
    }

    pub async fn command(&mut self, cmd: Value) {
        let mut line = cmd.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to sio_peer");
        self.stdin.flush().await.expect("flush sio_peer stdin");
    }

    /// Emits `event` with `data` from the peer's socket(s).
    pub async fn emit(&mut self, event: &str, data: Value) {
        self.command(json!({"cmd": "emit", "event": event, "data": data}))
            .await;
    }

    fn dump(&self) -> String {
        self.seen
            .iter()
            .map(|v| {
                let s = v.to_string();
                if s.len() > 400 {
                    format!("{}…", &s[..s.floor_char_boundary(400)])
                } else {
                    s
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Ends the process.
    pub async fn exit(mut self) {
        let _ = self.command(json!({"cmd": "exit"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// A raw Engine.IO v4 / Socket.IO v5 client over tokio-tungstenite: the handshake by hand, then
/// whatever the test wants (including never reading again).
pub struct RawSio {
    pub ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

impl RawSio {
    /// Opens `/socket.io/?EIO=4&transport=websocket`, reads the Engine.IO open packet, sends the
    /// Socket.IO CONNECT with `{"token"}` and waits for its answer (which it returns: `40{…}`
    /// or `44{…}`). `recv_buffer` sets the client socket's receive buffer (bytes).
    pub async fn connect(
        server: &Server,
        token: &str,
        recv_buffer: Option<u32>,
    ) -> (RawSio, String) {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
        let req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
                .expect("request");
        let ws = server.ws_upgrade(req, recv_buffer).await;
        let mut raw = RawSio { ws };
        let open = raw.next_text().await.expect("the Engine.IO open packet");
        assert!(open.starts_with("0{"), "Engine.IO open packet: {open}");
        raw.send(&format!("40{}", json!({"token": token}))).await;
        let answer = raw
            .next_matching(|t| t.starts_with("40") || t.starts_with("44"))
            .await;
        (raw, answer)
    }

    pub async fn send(&mut self, text: &str) {
        self.ws
            .send(WsMessage::text(text.to_owned()))
            .await
            .expect("raw send");
    }

    /// The next text frame (answering Engine.IO pings); `None` once the connection ended.
    pub async fn next_text(&mut self) -> Option<String> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time");
            match msg {
                Some(Ok(WsMessage::Text(t))) if t.as_str() == "2" => self.send("3").await,
                Some(Ok(WsMessage::Text(t))) => return Some(t.as_str().to_owned()),
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next text frame satisfying `pred`.
    pub async fn next_matching(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let t = self.next_text().await.expect("connection open");
            if pred(&t) {
                return t;
            }
        }
    }

    /// Emits a Socket.IO event (`42[event, data]`).
    pub async fn emit(&mut self, event: &str, data: Value) {
        self.send(&format!("42{}", json!([event, data]))).await;
    }

    /// Reads everything left until the connection ends; returns how many text frames came.
    /// Panics if it is still open after `within`.
    pub async fn drain_until_closed(&mut self, within: Duration) -> usize {
        let until = Instant::now() + within;
        let mut frames = 0;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.ws.next())
                .await
                .expect("the server ended the connection in time");
            match msg {
                Some(Ok(WsMessage::Text(_))) => frames += 1,
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return frames,
                Some(Ok(_)) => {}
            }
        }
    }
}

/// The `42[event, data]` Socket.IO event in an Engine.IO text frame, if it is one.
pub fn event_of(text: &str) -> Option<(String, Value)> {
    let v: Value = serde_json::from_str(text.strip_prefix("42")?).ok()?;
    let name = v.get(0)?.as_str()?.to_owned();
    Some((name, v.get(1).cloned().unwrap_or(Value::Null)))
}
