//! Black-box tests of the `loadtest` binary: a short run of every scenario against the real
//! `spacecast` binary (and one against a real Centrifugo v6.9.1 installed by
//! `scripts/centrifugo.sh install`), asserting that each completes with sane counts. No timing
//! thresholds: only counts, completeness and the report's shape.
//!
//! The `spacecast` binary belongs to another package, so Cargo gives this test no
//! `CARGO_BIN_EXE_spacecast`: it is `SPACECAST_BIN` if set, else `spacecast` beside the
//! `loadtest` binary in the same target dir (`cargo test --workspace` builds both; alone, run
//! `cargo build -p spacecast-api` first). A missing server binary or Centrifugo fails the test.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use common::{eventually, loadtest_bin, spacecast_bin, u};
use serde_json::Value;

mod common;

const SECRET: &str = "loadtest-harness-secret-0123456789";
const API_KEY: &str = "loadtest-harness-api-key";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// A child process killed (and reaped) when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// Starts `spacecast serve` on port 0 with a fresh data dir; returns it and its URL.
fn start_spacecast(dir: &Path) -> (Proc, String) {
    let mut child = Command::new(spacecast_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("SPACECAST_JWT_SECRET", SECRET)
        // A load test measures the engine: its few publishers send far more than the default
        // 60 messages a minute.
        .env("SPACECAST_SEND_RATE_LIMIT", "0")
        .env("SPACECAST_WRITE_RATE_LIMIT", "0")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn spacecast");
    let stdout = child.stdout.take().expect("stdout");
    let proc = Proc(child);
    let (tx, rx) = mpsc::channel();
    // Reads the address line, then keeps draining so the server never blocks on a full pipe.
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("spacecast printed its address within 60 s");
    let url = line
        .strip_prefix("spacecast listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .trim()
        .to_owned();
    wait_http_ok(&format!("{url}/readyz"));
    (proc, url)
}

/// Waits until `GET url` answers 200 (curl-free: a raw HTTP/1.0 request).
fn wait_http_ok(url: &str) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    eventually(
        &format!("{url} answers 200"),
        Duration::from_secs(60),
        || {
            let mut s = std::net::TcpStream::connect(host).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            buf.starts_with("HTTP/1.1 200")
                .then_some(())
                .or_else(|| buf.starts_with("HTTP/1.0 200").then_some(()))
        },
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind port 0")
        .local_addr()
        .expect("local addr")
        .port()
}

fn script(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/centrifugo.sh"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/centrifugo.sh");
    assert!(
        out.status.success(),
        "scripts/centrifugo.sh {args:?} failed (Centrifugo must be installable: go and the Go module proxy)"
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Installs (once, cached) and starts Centrifugo with the bench config; returns it and its URL.
fn start_centrifugo(dir: &Path) -> (Proc, String) {
    script(&["install"]);
    let bin = script(&["bin"]).trim().to_owned();
    let port = free_port();
    let dir_s = dir.to_str().expect("utf-8 temp dir");
    script(&["config", dir_s, &port.to_string(), SECRET, API_KEY]);
    let child = Command::new(&bin)
        .arg("--config")
        .arg(dir.join("config.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn centrifugo");
    let url = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{url}/health"));
    (Proc(child), url)
}

/// Runs `loadtest ARGS --json --quiet` to completion and returns its report (last stdout line).
fn loadtest(args: &[&str]) -> Value {
    loadtest_with(args, &["--json", "--quiet"])
}

/// Runs `loadtest ARGS FLAGS` to completion and returns its report (last stdout line).
fn loadtest_with(args: &[&str], flags: &[&str]) -> Value {
    let out = Command::new(loadtest_bin())
        .args(args)
        .args(flags)
        .env("SPACECAST_JWT_SECRET", SECRET)
        .env("CENTRIFUGO_API_KEY", API_KEY)
        .stderr(Stdio::inherit())
        .output()
        .expect("run loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "loadtest {args:?} failed:\n{stdout}");
    let last = stdout.lines().last().expect("some output");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

/// The invariants of any run where publishing and subscribing went right.
fn assert_complete_fanout(r: &Value, subscribers: u64) {
    assert_eq!(u(r, "connected"), subscribers, "{r}");
    assert_eq!(u(r, "connect_failed"), 0, "{r}");
    assert!(u(r, "scheduled") > 0, "{r}");
    assert_eq!(
        u(r, "acked"),
        u(r, "scheduled"),
        "every send acknowledged: {r}"
    );
    assert!(u(r, "expected_deliveries") > 0, "{r}");
    assert_eq!(u(r, "deliveries"), u(r, "expected_deliveries"), "{r}");
    assert_eq!(u(r, "lost"), 0, "{r}");
    assert_eq!(
        (
            u(r, "gaps"),
            u(r, "duplicates"),
            u(r, "subscribers_incomplete")
        ),
        (0, 0, 0),
        "{r}"
    );
    assert_eq!(r["errors"], serde_json::json!({}), "{r}");
    assert_eq!(
        r["delivery_latency_ms"]["count"].as_u64(),
        Some(u(r, "deliveries"))
    );
    assert_eq!(r["publish_ack_ms"]["count"].as_u64(), Some(u(r, "acked")));
    assert!(
        !r["timeline"].as_array().expect("timeline").is_empty(),
        "{r}"
    );
}

fn assert_server_measured(r: &Value, pid: u32) {
    let s = &r["server"];
    assert_eq!(s["pid"].as_u64(), Some(u64::from(pid)), "{r}");
    assert!(s["rss_mib"].as_f64().is_some_and(|m| m > 0.0), "{r}");
    assert!(s["cpu_s"].as_f64().is_some_and(|c| c >= 0.0), "{r}");
    assert!(r["loadgen"]["cpu_s"].as_f64().is_some(), "{r}");
}

#[test]
fn fanout_against_spacecast() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, url) = start_spacecast(tmp.path());
    let reports = tmp.path().join("reports");
    let pid = server.pid().to_string();
    let r = loadtest(&[
        "fanout",
        "--url",
        &url,
        "--spaces",
        "2",
        "--subscribers",
        "10",
        "--rate",
        "20",
        "--duration",
        "2",
        "--server-pid",
        &pid,
        "--label",
        "tiny",
        "--report-dir",
        reports.to_str().unwrap(),
    ]);
    assert_eq!(
        (r["scenario"].as_str(), r["target"].as_str()),
        (Some("fanout"), Some("spacecast"))
    );
    assert_eq!(r["label"], "tiny");
    assert_complete_fanout(&r, 20);
    assert_eq!(u(&r, "scheduled"), 40);
    // Each of the 40 messages reaches the 10 subscribers of its space.
    assert_eq!(u(&r, "expected_deliveries"), 400);
    assert_server_measured(&r, server.pid());
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(saved, r);
    let svg = std::fs::read_to_string(reports.join("latency.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("p99"));
}

/// The same fan-out with Socket.IO subscribers (`/socket.io/`): every delivery counted, with
/// its `seq` checked for gaps and duplicates, as over the native stream.
#[test]
fn fanout_against_spacecast_socketio() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, url) = start_spacecast(tmp.path());
    let pid = server.pid().to_string();
    let r = loadtest(&[
        "fanout",
        "--target",
        "socketio",
        "--url",
        &url,
        "--spaces",
        "2",
        "--subscribers",
        "10",
        "--rate",
        "20",
        "--duration",
        "2",
        "--processes",
        "2",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(
        (r["scenario"].as_str(), r["target"].as_str()),
        (Some("fanout"), Some("socketio"))
    );
    assert_complete_fanout(&r, 20);
    assert_eq!(u(&r, "expected_deliveries"), 400);
    assert_server_measured(&r, server.pid());
}

#[test]
fn fanout_over_processes_and_source_addresses() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, url) = start_spacecast(tmp.path());
    let pid = server.pid().to_string();
    let r = loadtest(&[
        "fanout",
        "--url",
        &url,
        "--subscribers",
        "12",
        "--rate",
        "10",
        "--duration",
        "2",
        "--processes",
        "2",
        "--source-addrs",
        "3",
        "--server-pid",
        &pid,
    ]);
    assert_complete_fanout(&r, 12);
    assert_eq!(u(&r, "expected_deliveries"), 20 * 12);
    // The parent and its two children.
    assert_eq!(r["loadgen"]["processes"], 3);
    assert_eq!(r["source_addrs"], 3);
}

#[test]
fn ingest_against_spacecast() {
    let tmp = tempfile::tempdir().unwrap();
    let (_server, url) = start_spacecast(tmp.path());
    let r = loadtest(&[
        "ingest",
        "--url",
        &url,
        "--spaces",
        "2",
        "--rate",
        "50",
        "--duration",
        "2",
    ]);
    assert_eq!(r["scenario"], "ingest");
    assert_eq!(u(&r, "subscribers"), 0);
    assert_eq!(u(&r, "scheduled"), 100);
    assert_eq!(u(&r, "acked"), 100);
    assert_eq!(r["publish_ack_ms"]["count"], 100);
    assert_eq!((u(&r, "rejected"), u(&r, "publish_errors")), (0, 0));
    assert_eq!(u(&r, "deliveries"), 0);
    assert_eq!(r["errors"], serde_json::json!({}));
}

#[test]
fn mixed_against_spacecast() {
    let tmp = tempfile::tempdir().unwrap();
    let (_server, url) = start_spacecast(tmp.path());
    let r = loadtest(&[
        "mixed",
        "--url",
        &url,
        "--spaces",
        "2",
        "--subscribers",
        "5",
        "--rate",
        "20",
        "--duration",
        "2",
        "--churn",
        "5",
    ]);
    assert_eq!(r["scenario"], "mixed");
    assert_complete_fanout(&r, 10);
    // The churned connections' handshakes are in the connect histogram too.
    assert!(
        r["connect_latency_ms"]["count"].as_u64().unwrap() > 10,
        "{r}"
    );
}

#[test]
fn connect_storm_against_spacecast() {
    let tmp = tempfile::tempdir().unwrap();
    let (_server, url) = start_spacecast(tmp.path());
    let r = loadtest(&[
        "connect-storm",
        "--url",
        &url,
        "--subscribers",
        "60",
        "--connect-concurrency",
        "30",
        "--source-addrs",
        "4",
    ]);
    assert_eq!(r["scenario"], "connect-storm");
    assert_eq!(
        (u(&r, "connected"), u(&r, "connect_failed")),
        (60, 0),
        "{r}"
    );
    assert_eq!(r["connect_latency_ms"]["count"], 60);
    assert_eq!(u(&r, "scheduled"), 0);
    assert!(r["connects_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(r["errors"], serde_json::json!({}));
}

#[test]
fn idle_against_spacecast() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, url) = start_spacecast(tmp.path());
    let pid = server.pid().to_string();
    let r = loadtest(&[
        "idle",
        "--url",
        &url,
        "--subscribers",
        "40",
        "--duration",
        "1",
        "--processes",
        "2",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(r["scenario"], "idle");
    assert_eq!(
        (u(&r, "connected"), u(&r, "connect_failed")),
        (40, 0),
        "{r}"
    );
    assert_eq!(u(&r, "subscribers_dropped"), 0);
    assert_server_measured(&r, server.pid());
    assert!(r["server"]["rss_connected_mib"].as_f64().unwrap() > 0.0);
    assert!(r["server"]["rss_per_connection_kib"].as_f64().is_some());
}

#[test]
fn soak_against_spacecast() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, url) = start_spacecast(tmp.path());
    let pid = server.pid().to_string();
    let r = loadtest(&[
        "soak",
        "--url",
        &url,
        "--spaces",
        "1",
        "--subscribers",
        "5",
        "--rate",
        "10",
        "--duration",
        "3",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(r["scenario"], "soak");
    assert_complete_fanout(&r, 5);
    // The server's RSS sampled once per timeline bucket (1 s) while publishing.
    let rss = r["server"]["rss_timeline_mib"].as_array().unwrap();
    assert!(!rss.is_empty(), "{r}");
    assert!(rss.iter().all(|m| m.as_f64().unwrap() > 0.0));
}

#[test]
fn fanout_against_centrifugo() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, url) = start_centrifugo(tmp.path());
    let pid = server.pid().to_string();
    let r = loadtest(&[
        "fanout",
        "--target",
        "centrifugo",
        "--url",
        &url,
        "--spaces",
        "2",
        "--subscribers",
        "10",
        "--rate",
        "20",
        "--duration",
        "2",
        "--source-addrs",
        "2",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(r["target"], "centrifugo");
    assert_complete_fanout(&r, 20);
    assert_eq!(u(&r, "expected_deliveries"), 400);
    assert_server_measured(&r, server.pid());
}

/// The native kinds of `sends` (plain, rich, reaction toggles) and `reads` over what they wrote:
/// every request acknowledged or answered 200, none failed, and the counts add up.
#[test]
fn native_sends_reactions_and_reads_against_spacecast() {
    let tmp = tempfile::tempdir().unwrap();
    let (_server, url) = start_spacecast(tmp.path());
    let sends = |kind: &str, extra: &[&str]| {
        let mut args = vec![
            "sends",
            "--url",
            &url,
            "--kind",
            kind,
            "--concurrency",
            "4",
            "--duration",
            "2",
        ];
        args.extend_from_slice(extra);
        // `sends` and `reads` draw no progress line: no `--quiet`.
        let r = loadtest_with(&args, &["--json"]);
        assert_eq!(r["kind"], kind, "{r}");
        assert!(u(&r, "acked") > 0, "{r}");
        assert_eq!((u(&r, "errors"), u(&r, "rejected")), (0, 0), "{r}");
        r
    };
    // Filling a space: stops at the bound.
    let plain = sends("v1", &["--spaces", "1", "--max-sends", "40"]);
    assert!(u(&plain, "acked") <= 40 + 4, "{plain}");
    let space = plain["space_ids"][0].as_str().unwrap().to_owned();
    let rich = sends("v1-rich", &["--space-id", &space]);
    assert_eq!(rich["space_ids"][0], space.as_str());
    let react = sends("react", &["--spaces", "1"]);
    assert_eq!(react["spaces"], 1);
    let path = format!("/v1/spaces/{space}/messages?limit=10");
    let filtered = format!("/v1/spaces/{space}/messages?sender_id=nobody");
    let r = loadtest_with(
        &[
            "reads",
            "--url",
            &url,
            "--path",
            &path,
            "--path",
            &filtered,
            "--duration",
            "1",
            "--warmup",
            "0",
        ],
        &["--json"],
    );
    let paths = r["paths"].as_array().expect("paths");
    assert_eq!(paths.len(), 2, "{r}");
    for p in paths {
        assert!(u(p, "ok") > 0, "{r}");
        assert_eq!(p["errors"], serde_json::json!({}), "{r}");
        assert_eq!(p["latency_ms"]["count"].as_u64(), Some(u(p, "ok")));
    }
}
