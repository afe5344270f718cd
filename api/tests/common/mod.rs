//! Test harness: starts the real `spacecast` binary on port 0 with its own data dir, and gives
//! tests real HTTP and WebSocket clients. Every wait is a bounded poll, never a bare sleep.
//!
//! Beside it, included only by the tests that use them (`#[path = "common/cluster.rs"]`), so the
//! other test binaries do not compile them: `cluster.rs` (N nodes with fixed ports to kill,
//! freeze and restart, and the project's NATS) and `history.rs` (the history checker).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "test-secret-0123456789abcdef";

/// The last lines a node wrote to stderr.
type StderrTail = Arc<StdMutex<VecDeque<String>>>;

/// A running server process.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub addr: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub http: reqwest::Client,
}

/// A fresh HTTP client. The workspace's `reqwest` has rustls without a bundled crypto provider
/// (the binary's S3 client needs TLS), so the process installs `ring` first: every test builds
/// its clients here or through [`Server`].
pub fn http_client() -> reqwest::Client {
    spacecast_api::install_tls_provider();
    reqwest::Client::new()
}

/// The `node` the JS peers run with (`SPACECAST_TEST_NODE`, else `node` on the PATH), checked to
/// run; panics with the fix when it does not.
pub fn node() -> PathBuf {
    let node = std::env::var_os("SPACECAST_TEST_NODE")
        .map_or_else(|| PathBuf::from("node"), PathBuf::from);
    let works = std::process::Command::new(&node)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        works,
        "no working node ({}): install Node.js 20+ and set SPACECAST_TEST_NODE \
         (`eval \"$(scripts/js.sh env)\"`)",
        node.display()
    );
    node
}

/// The directory of the JS peers (`SPACECAST_TEST_JS_DIR`, else `api/tests/js`), checked to have
/// the npm `package` installed; panics with the fix when it does not.
pub fn js_dir(package: &str) -> PathBuf {
    let dir = std::env::var_os("SPACECAST_TEST_JS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js"),
        PathBuf::from,
    );
    assert!(
        dir.join("node_modules")
            .join(package)
            .join("package.json")
            .is_file(),
        "{package} is not installed in {}: run `scripts/js.sh install` \
         (and `eval \"$(scripts/js.sh env)\"`)",
        dir.display()
    );
    dir
}

/// Asserts an error answer as CONTRACT §3 fixes it: `status` (the body is shown when it differs),
/// a JSON content type, and `{"error": <non-empty text>, "code": code}`. Returns the headers (for
/// `Retry-After`, say) and the body.
pub async fn assert_json_error(
    res: reqwest::Response,
    status: u16,
    code: &str,
) -> (reqwest::header::HeaderMap, Value) {
    let url = res.url().clone();
    if res.status().as_u16() != status {
        let got = res.status();
        panic!(
            "{url}: expected {status} {code}, got {got}: {}",
            res.text().await.unwrap_or_default()
        );
    }
    let headers = res.headers().clone();
    let ct = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "{url}: error responses are JSON, got {ct:?}"
    );
    let body: Value = res.json().await.expect("a JSON error body");
    assert_eq!(body["code"], code, "{url}: body: {body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{url}: a human-readable error: {body}"
    );
    (headers, body)
}

/// Polls `f` until it returns `Some`, or panics after `deadline` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_spacecast")
}

/// The env var of `--send-rate-limit`. The suite's servers get `0` (unlimited): most tests send
/// far more than 60 messages a minute as one user. A test of the limit passes the flag, which
/// wins over the environment.
pub const SEND_RATE_LIMIT_ENV: &str = "SPACECAST_SEND_RATE_LIMIT";

/// The env var of `--write-rate-limit` (reactions, edits, member changes…): `0` for the suite's
/// servers too, for the same reason; a test of the limit passes the flag.
pub const WRITE_RATE_LIMIT_ENV: &str = "SPACECAST_WRITE_RATE_LIMIT";

/// The store the suite runs against: `SPACECAST_TEST_STORE=cql` runs every black-box test on the
/// CQL store (the README's test command runs the suite once per store).
pub fn cql_mode() -> bool {
    std::env::var("SPACECAST_TEST_STORE").is_ok_and(|s| s == "cql")
}

/// The CQL contact points of the test server (`SPACECAST_TEST_CQL_NODES`).
pub fn cql_nodes() -> String {
    std::env::var("SPACECAST_TEST_CQL_NODES").unwrap_or_else(|_| "127.0.0.1:9042".into())
}

/// The keyspace of a data dir: stable, so a restart on the same dir finds the same data.
pub fn keyspace_of(data_dir: &Path) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data_dir.to_string_lossy().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("bb_{h:016x}")
}

/// Store flags for a server on `data_dir`: in CQL mode, the CQL flags (see [`cql_args`]); a test
/// that names `--store` itself keeps its own choice.
async fn store_args(data_dir: &Path, extra: &[&str]) -> Vec<String> {
    if !cql_mode() || extra.contains(&"--store") {
        return Vec::new();
    }
    cql_args(data_dir).await
}

/// `--store cql` flags with the data dir's own keyspace, migrated first (idempotent).
pub async fn cql_args(data_dir: &Path) -> Vec<String> {
    let args = vec![
        "--store".to_owned(),
        "cql".to_owned(),
        "--cql-nodes".to_owned(),
        cql_nodes(),
        "--cql-keyspace".to_owned(),
        keyspace_of(data_dir),
    ];
    let out = Command::new(bin())
        .arg("migrate")
        .args(&args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run spacecast migrate");
    assert!(
        out.status.success(),
        "spacecast migrate failed (is Cassandra up? scripts/cassandra.sh up): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    args
}

/// Drops a test's CQL keyspace (`IF EXISTS`), waiting until Cassandra has done it. The suite
/// makes a keyspace per test, and Cassandra keeps every table's metadata and memtables in its
/// heap: a run that kept them all (about 120 keyspaces of 12 tables) ran it out of memory.
/// A failure is reported, not fatal: the keyspace is then only left behind.
pub fn drop_keyspace(keyspace: &str) {
    let ks = keyspace.to_owned();
    let dropped = std::thread::spawn(move || -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let session = scylla::client::session_builder::SessionBuilder::new()
                .known_nodes(cql_nodes().split(",").map(str::trim))
                .build()
                .await
                .map_err(|e| e.to_string())?;
            session
                .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    })
    .join();
    match dropped {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("could not drop the test keyspace {keyspace}: {e}"),
        Err(_) => eprintln!("could not drop the test keyspace {keyspace}: the dropper panicked"),
    }
}

impl Drop for Server {
    /// A server that owns its data dir ([`Server::start`]) is the only user of that dir's CQL
    /// keyspace: it is stopped, and the keyspace dropped with it. (A dir the test holds may be
    /// served again after a restart, so its keyspace stays until the test ends.)
    fn drop(&mut self) {
        if self._tmp.is_none() || !cql_mode() {
            return;
        }
        let _ = self.child.start_kill();
        drop_keyspace(&keyspace_of(&self.data_dir));
    }
}

/// Runs `scripts/cassandra.sh ARG` (the project's own Cassandra), asserting it succeeds.
pub async fn cassandra(arg: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/cassandra.sh");
    let status = Command::new("bash")
        .arg(script)
        .arg(arg)
        .status()
        .await
        .expect("run scripts/cassandra.sh");
    assert!(status.success(), "scripts/cassandra.sh {arg} failed");
}

impl Server {
    /// Starts a server on a fresh data dir.
    pub async fn start(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Server::start_on(&dir, extra).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on `data_dir` (kept by the caller, e.g. for restarts).
    pub async fn start_on(data_dir: &Path, extra: &[&str]) -> Server {
        Server::launch(data_dir, extra, Some(SECRET)).await
    }

    /// Starts a server on the CQL store, whatever store the suite runs on.
    pub async fn start_cql(data_dir: &Path, extra: &[&str]) -> Server {
        let mut args = cql_args(data_dir).await;
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::launch(data_dir, &args, Some(SECRET)).await
    }

    /// Starts a server on `data_dir` without `SPACECAST_JWT_SECRET` in its environment: it then
    /// uses the secret kept in the data dir, unless `extra` passes `--jwt-secret`.
    pub async fn start_on_without_secret(data_dir: &Path, extra: &[&str]) -> Server {
        Server::launch(data_dir, extra, None).await
    }

    async fn launch(data_dir: &Path, extra: &[&str], secret: Option<&str>) -> Server {
        let store_args = store_args(data_dir, extra).await;
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(&store_args)
            .args(extra)
            .env_remove("SPACECAST_JWT_SECRET")
            .env(SEND_RATE_LIMIT_ENV, "0")
            .env(WRITE_RATE_LIMIT_ENV, "0")
            .env("RUST_LOG", "warn,spacecast_api=info");
        if let Some(secret) = secret {
            cmd.env("SPACECAST_JWT_SECRET", secret);
        }
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let child = cmd.spawn().expect("spawn spacecast");
        Server::started(child, data_dir, None).await
    }

    /// Starts `spacecast serve --listen LISTEN --data-dir DIR ARGS…` with nothing else: no store
    /// flags of the suite's mode, no secret from the environment (pass `--jwt-secret` in `args`),
    /// no send or write rate limit (see [`SEND_RATE_LIMIT_ENV`]).
    /// Its stderr lines are copied to the test's stderr prefixed with `[name]`, and the last
    /// ones are kept: a node that exits before listening fails the test with its own words.
    pub async fn launch_node(data_dir: &Path, listen: &str, args: &[String], name: &str) -> Server {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env_remove("SPACECAST_JWT_SECRET")
            .env_remove("SPACECAST_NATS_URL")
            .env_remove("SPACECAST_NODE_ID")
            .env(SEND_RATE_LIMIT_ENV, "0")
            .env(WRITE_RATE_LIMIT_ENV, "0")
            .env("RUST_LOG", "warn,spacecast_api=info,spacecast_engine=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn spacecast");
        let stderr = child.stderr.take().expect("stderr");
        let tail = Arc::new(StdMutex::new(VecDeque::new()));
        let (keep, prefix) = (tail.clone(), name.to_owned());
        let copier = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{prefix}] {line}");
                let mut keep = keep.lock().unwrap();
                if keep.len() == 40 {
                    keep.pop_front();
                }
                keep.push_back(line);
            }
        });
        Server::started(child, data_dir, Some((name, tail, copier))).await
    }

    /// Waits for the address line and for `/readyz`. With a kept stderr tail, a process that
    /// exits first fails with that tail.
    async fn started(
        mut child: Child,
        data_dir: &Path,
        stderr: Option<(&str, StderrTail, tokio::task::JoinHandle<()>)>,
    ) -> Server {
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("server printed its address within 30 s")
            .expect("read stdout");
        let Some(line) = line else {
            let status = child.wait().await.expect("wait");
            match stderr {
                Some((name, tail, copier)) => {
                    // The copier ends at the pipe's end of file; bounded anyway.
                    let _ = tokio::time::timeout(Duration::from_secs(5), copier).await;
                    let tail: Vec<String> = tail.lock().unwrap().iter().cloned().collect();
                    panic!(
                        "node {name} exited before listening ({status}); its last log lines:\n{}",
                        tail.join("\n")
                    );
                }
                None => panic!("server exited before listening ({status})"),
            }
        };
        let url = line
            .strip_prefix("spacecast listening on ")
            .expect("address line")
            .trim()
            .to_owned();
        let addr = url.trim_start_matches("http://").to_owned();
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let http = http_client();
        let s = Server {
            child,
            base: url,
            addr,
            data_dir: data_dir.to_path_buf(),
            _tmp: None,
            http,
        };
        let readyz = format!("{}/readyz", s.base);
        let client = s.http.clone();
        eventually("server ready", Duration::from_secs(30), || {
            let client = client.clone();
            let readyz = readyz.clone();
            async move {
                client
                    .get(&readyz)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
                    .map(|_| ())
            }
        })
        .await;
        s
    }

    /// The process id (`None` once it was waited for).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends `kill -SIG` (e.g. `STOP`, `CONT`) to the process; panics if that fails.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running") as i32;
        assert!(unsafe_free_kill(pid, sig), "kill -{sig} {pid}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Kills the process with SIGKILL and waits for it.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("kill -9");
        let _ = self.child.wait().await;
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running") as i32;
        let rc = unsafe_free_kill(pid, "TERM");
        assert!(rc, "kill -TERM");
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("server exited within 60 s of SIGTERM")
            .expect("wait")
    }

    /// A WebSocket to `/v1/stream` authenticated by header; returns after the `hello` frame.
    pub async fn stream(&self, token: &str) -> Ws {
        self.stream_hello(token).await.0
    }

    /// Like [`Server::stream`], also returning the `hello` frame.
    pub async fn stream_hello(&self, token: &str) -> (Ws, Value) {
        let mut ws = self.ws_connect(Some(token), None, None).await;
        let hello = ws.next_json().await.expect("hello");
        assert_eq!(hello["type"], "hello", "first frame is hello: {hello}");
        (ws, hello)
    }

    /// Opens a WebSocket to `/v1/stream` and returns right after the upgrade, before reading
    /// anything. `header_token` goes in `Authorization: Bearer`, `query_token` in `?token=`;
    /// `recv_buffer` sets the client socket's receive buffer (bytes), e.g. to make a client that
    /// stops reading fill up quickly.
    pub async fn ws_connect(
        &self,
        header_token: Option<&str>,
        query_token: Option<&str>,
        recv_buffer: Option<u32>,
    ) -> Ws {
        let mut url = format!("ws://{}/v1/stream", self.addr);
        if let Some(t) = query_token {
            url.push_str(&format!("?token={t}"));
        }
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
                .expect("request");
        if let Some(t) = header_token {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Ws {
            inner: self.ws_upgrade(req, recv_buffer).await,
        }
    }

    /// Connects to this server and performs the WebSocket upgrade `req` describes (any path);
    /// `recv_buffer` sets the client socket's receive buffer (bytes), so a test can make a client
    /// that holds little. Panics unless the server answers 101 within 10 s.
    pub async fn ws_upgrade(
        &self,
        req: tokio_tungstenite::tungstenite::handshake::client::Request,
        recv_buffer: Option<u32>,
    ) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        let addr: std::net::SocketAddr = self.addr.parse().expect("socket address");
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .expect("socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let tcp = tokio::time::timeout(Duration::from_secs(10), socket.connect(addr))
            .await
            .expect("tcp connect within 10 s")
            .expect("tcp connect");
        let (ws, resp) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp)),
        )
        .await
        .expect("ws upgrade within 10 s")
        .expect("ws upgrade");
        assert_eq!(resp.status().as_u16(), 101, "the upgrade succeeds");
        ws
    }
}

/// `kill -SIG pid` through the `kill` command (no unsafe libc call needed).
fn unsafe_free_kill(pid: i32, sig: &str) -> bool {
    std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A test WebSocket client.
pub struct Ws {
    pub inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    pub async fn send_json(&mut self, v: Value) {
        self.inner
            .send(WsMessage::text(v.to_string()))
            .await
            .expect("ws send");
    }

    /// The next text frame as JSON, skipping pings and presence frames (`presence`,
    /// `presence_count`: ephemeral signals that interleave with everything, as pings do; the
    /// presence tests read them with [`Ws::next_json_all`]); `None` if closed. Panics after 10 s
    /// without a frame.
    pub async fn next_json(&mut self) -> Option<Value> {
        loop {
            let v = self.next_json_all().await?;
            if v["type"] != "presence" && v["type"] != "presence_count" {
                return Some(v);
            }
        }
    }

    /// The next text frame as JSON, skipping pings only; `None` if closed. Panics after 10 s.
    pub async fn next_json_all(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.inner.next())
                .await
                .expect("a frame within 10 s");
            match msg {
                None | Some(Err(_)) => return None,
                Some(Ok(WsMessage::Text(t))) => {
                    return Some(serde_json::from_str(t.as_str()).expect("JSON text frame"));
                }
                Some(Ok(WsMessage::Close(_))) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads frames until one satisfies `pred`; panics after 10 s without one.
    pub async fn next_matching(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.next_json().await.expect("stream open");
            if pred(&v) {
                return v;
            }
        }
    }

    /// [`Ws::next_matching`] over every frame, presence frames included.
    pub async fn next_matching_all(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.next_json_all().await.expect("stream open");
            if pred(&v) {
                return v;
            }
        }
    }

    /// Sends a raw WebSocket message (e.g. a binary frame or non-JSON text).
    pub async fn send_raw(&mut self, msg: WsMessage) {
        self.inner.send(msg).await.expect("ws send");
    }

    /// Reads every text frame (as JSON) until the server closes; returns them with the close
    /// code (`None` if the connection ended without a close frame). Panics after 60 s.
    pub async fn drain_until_close(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut frames = Vec::new();
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.inner.next())
                .await
                .expect("the server closed the connection within 60 s");
            match msg {
                Some(Ok(WsMessage::Text(t))) => {
                    frames.push(serde_json::from_str(t.as_str()).expect("JSON text frame"));
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    return (frames, frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return (frames, None),
            }
        }
    }

    /// Reads frames until the event `seq` of `space_id` (or a later one) arrives; returns every
    /// frame read, that event included. Panics after 10 s without a frame.
    pub async fn frames_until_event(&mut self, space_id: &str, seq: u64) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let v = self.next_json().await.expect("stream open");
            let done = v["type"] == "event"
                && v["space_id"] == space_id
                && v["seq"].as_u64().is_some_and(|s| s >= seq);
            frames.push(v);
            if done {
                return frames;
            }
        }
    }

    /// Sends `join` (with `since_seq` when given) and returns the answer for that space (`joined`
    /// or `error`).
    pub async fn join(&mut self, space: &str, since: Option<u64>) -> Value {
        let mut frame = serde_json::json!({"type": "join", "space_id": space});
        if let Some(since) = since {
            frame["since_seq"] = serde_json::json!(since);
        }
        self.send_json(frame).await;
        self.next_matching(|v| {
            (v["type"] == "joined" || v["type"] == "error") && v["space_id"] == space
        })
        .await
    }

    /// Reads until the server closes; returns the close code.
    pub async fn close_code(&mut self) -> Option<u16> {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            match tokio::time::timeout(Duration::from_secs(30), self.inner.next()).await {
                Ok(Some(Ok(WsMessage::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            }
        }
        None
    }
}

/// An HS256 token for `user_id` signed with the test secret.
pub fn token(user_id: &str) -> String {
    token_with(SECRET, user_id, 3600)
}

pub fn token_with(secret: &str, user_id: &str, ttl_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({
        "sub": user_id,
        "username": format!("name-{user_id}"),
        "picture": format!("http://pics.example/{user_id}.png"),
        "exp": now + ttl_secs,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// Helpers for the Space7 REST surface.
impl Server {
    pub async fn create_space(&self, token: &str, title: &str) -> Value {
        let r = self
            .http
            .post(self.url("/api/spaces"))
            .bearer_auth(token)
            .json(&serde_json::json!({"title": title, "description": "a test space", "hashtags": ["#Test"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "create space");
        r.json().await.unwrap()
    }

    /// Creates a space from a full JSON body (e.g. with `"visibility": "private"`).
    pub async fn create_space_with(&self, token: &str, body: Value) -> Value {
        let r = self
            .http
            .post(self.url("/api/spaces"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "create space");
        r.json().await.unwrap()
    }

    /// `POST /api/messages/{space}/{message}/appreciate`; returns the status and body.
    pub async fn appreciate(&self, token: &str, space_id: &str, message_id: &str) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(&format!("/api/messages/{space_id}/{message_id}/appreciate")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `DELETE /api/messages/{space}/{message}`; returns the status and body.
    pub async fn delete_message(
        &self,
        token: &str,
        space_id: &str,
        message_id: &str,
    ) -> (u16, Value) {
        let r = self
            .http
            .delete(self.url(&format!("/api/messages/{space_id}/{message_id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Every message of a space, through all pages of `GET /api/messages/{space}` (recent
    /// first).
    pub async fn list_all(&self, token: &str, space_id: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut page = 1;
        loop {
            let body = self
                .list(token, space_id, &format!("page={page}&limit=100"))
                .await;
            let msgs = body["messages"].as_array().expect("messages").clone();
            let done = msgs.len() < 100;
            all.extend(msgs);
            if done {
                return all;
            }
            page += 1;
        }
    }

    /// The `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        let r = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET /metrics");
        r.text().await.unwrap()
    }

    /// The value of the unlabelled metric `name` in `/metrics` (0 when it is absent).
    pub async fn metric(&self, name: &str) -> u64 {
        let prefix = format!("{name} ");
        self.metrics_text()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// `GET path` with a token; the JSON body of a 200 response.
    pub async fn get_json(&self, token: &str, path: &str) -> Value {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// `POST path` with a token, a content type and a raw body.
    pub async fn post_body(
        &self,
        token: &str,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn join(&self, token: &str, space_id: &str) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/api/spaces/{space_id}/join")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Sends `{content}` as JSON; returns the status and body.
    pub async fn send_text(&self, token: &str, space_id: &str, content: &str) -> (u16, Value) {
        try_send_text(&self.http, &self.base, token, space_id, content)
            .await
            .expect("send")
    }

    /// `POST /v1/spaces/{space}/messages` with `body`; asserts 201 and returns the message.
    pub async fn v1_send(&self, token: &str, space_id: &str, body: Value) -> Value {
        let r = self
            .http
            .post(self.url(&format!("/v1/spaces/{space_id}/messages")))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "send {body} through {}", self.base);
        r.json().await.unwrap()
    }

    pub async fn list(&self, token: &str, space_id: &str, query: &str) -> Value {
        let r = self
            .http
            .get(self.url(&format!("/api/messages/{space_id}?{query}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "list messages");
        r.json().await.unwrap()
    }
}

/// `POST /api/messages/{space}` `{content}` without a `Server` borrow (for spawned tasks); an
/// `Err` is a transport failure (e.g. the server is gone).
pub async fn try_send_text(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    space_id: &str,
    content: &str,
) -> Result<(u16, Value), reqwest::Error> {
    let r = http
        .post(format!("{base}/api/messages/{space_id}"))
        .bearer_auth(token)
        .json(&serde_json::json!({"content": content}))
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// The test S3 server (SeaweedFS, started by `scripts/seaweedfs.sh up`): endpoint, bucket and
/// credentials.
#[derive(Clone, Debug)]
pub struct S3Env {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The test S3 server's settings: from the `SPACECAST_TEST_S3_*` env vars (`scripts/test.sh`
/// exports them), else from `scripts/seaweedfs.sh env`. Panics, naming the fix, when neither
/// gives them: an S3 test never skips.
pub fn s3_env() -> S3Env {
    let from_env = |k: &str| std::env::var(format!("SPACECAST_TEST_S3_{k}")).ok();
    let mut vars: std::collections::HashMap<String, String> = [
        "ENDPOINT",
        "REGION",
        "BUCKET",
        "ACCESS_KEY_ID",
        "SECRET_ACCESS_KEY",
    ]
    .iter()
    .filter_map(|k| from_env(k).map(|v| ((*k).to_owned(), v)))
    .collect();
    if vars.len() < 5 {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/seaweedfs.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg("env")
            .output()
            .expect("run scripts/seaweedfs.sh env");
        assert!(
            out.status.success(),
            "no S3 test server: run `scripts/seaweedfs.sh up` (or export SPACECAST_TEST_S3_*): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((k, v)) = line
                .strip_prefix("export SPACECAST_TEST_S3_")
                .and_then(|kv| kv.split_once('='))
            {
                vars.entry(k.to_owned()).or_insert_with(|| v.to_owned());
            }
        }
    }
    let get = |k: &str| {
        vars.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("SPACECAST_TEST_S3_{k} is not set"))
    };
    S3Env {
        endpoint: get("ENDPOINT"),
        region: get("REGION"),
        bucket: get("BUCKET"),
        access_key_id: get("ACCESS_KEY_ID"),
        secret_access_key: get("SECRET_ACCESS_KEY"),
    }
}

impl S3Env {
    /// `serve` flags that keep media in this bucket under `prefix`.
    pub fn serve_args(&self, prefix: &str) -> Vec<String> {
        [
            ("--media-store", "s3"),
            ("--s3-bucket", &self.bucket),
            ("--s3-endpoint", &self.endpoint),
            ("--s3-region", &self.region),
            ("--s3-access-key-id", &self.access_key_id),
            ("--s3-secret-access-key", &self.secret_access_key),
            ("--s3-prefix", prefix),
        ]
        .iter()
        .flat_map(|(k, v)| [(*k).to_owned(), (*v).to_owned()])
        .collect()
    }
}

/// A 1×1 PNG.
pub const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52, 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89, 0, 0, 0, 0x0A, 0x49, 0x44, 0x41, 0x54,
    0x78, 0x9C, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0D, 0x0A, 0x2D, 0xB4, 0, 0, 0, 0, 0x49, 0x45, 0x4E,
    0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// `POST /api/messages/{space}` multipart with the PNG.
pub async fn send_png(s: &Server, token: &str, space: &str) -> Value {
    let form = reqwest::multipart::Form::new()
        .text("content", "a picture")
        .part(
            "media",
            reqwest::multipart::Part::bytes(PNG.to_vec())
                .file_name("p.png")
                .mime_str("image/png")
                .unwrap(),
        )
        .text("media_type", "image");
    let r = s
        .http
        .post(s.url(&format!("/api/messages/{space}")))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "send with media");
    r.json().await.unwrap()
}
