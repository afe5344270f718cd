//! Black-box test of the loadtest against a real three-node Spacecast cluster (issue 8): three
//! `spacecast serve --store cql --nats-url … --node-id …` processes on one fresh keyspace of the
//! project's Cassandra (`scripts/cassandra.sh up`) and the project's NATS (`scripts/nats.sh up`,
//! or `SPACECAST_TEST_NATS_URL`; monitoring on `SPACECAST_NATS_MONITOR_PORT`, default 18222).
//! Both are started if needed (idempotent); if either cannot start, the test fails.
//!
//! It checks the multi-server plumbing — setup through the first `--url`, sends through
//! `--send-url`, subscribers spread by `--subscribe-url`, owners read from NATS, server CPU
//! summed over several pids — and the `failover` scenario's driver protocol, with this test as
//! the driver (it kills and restarts the nodes the loadtest names). Counts and facts only: no
//! timing thresholds.

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use common::{eventually, loadtest_bin, spacecast_bin, u};
use serde_json::Value;

mod common;

const SECRET: &str = "loadtest-cluster-secret-0123456789";

fn script(name: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name);
    let out = Command::new("bash")
        .arg(&path)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
    assert!(out.status.success(), "scripts/{name} {args:?} failed");
    String::from_utf8(out.stdout).expect("utf-8")
}

fn nats_url() -> String {
    if let Ok(url) = std::env::var("SPACECAST_TEST_NATS_URL")
        && !url.is_empty()
    {
        return url;
    }
    script("nats.sh", &["up"]);
    script("nats.sh", &["url"]).trim().to_owned()
}

fn nats_monitor() -> String {
    let port = std::env::var("SPACECAST_NATS_MONITOR_PORT").unwrap_or_else(|_| "18222".into());
    format!("http://127.0.0.1:{port}")
}

fn cql_nodes() -> String {
    let port = std::env::var("SPACECAST_CASSANDRA_PORT").unwrap_or_else(|_| "9042".into());
    format!("127.0.0.1:{port}")
}

/// A free loopback port below the ephemeral range (32768+), so a killed node's port cannot be
/// taken as the source port of some client connection before the node restarts on it.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919) % 12_000;
    for _ in 0..12_000 {
        let port = 20_000 + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free loopback port in 20000..32000");
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

/// `GET url` answers 200 (a raw HTTP/1.0 request, no client library).
fn http_ok(url: &str) -> bool {
    use std::io::Read;
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
}

/// One node: fixed id, address and data dir; the process may be killed and started again.
struct Node {
    id: String,
    listen: String,
    url: String,
    dir: PathBuf,
    child: Option<Child>,
}

/// Three nodes on one keyspace; every process is killed when the test ends, however it ends.
struct Cluster {
    nodes: Vec<Node>,
    nats: String,
    args: Vec<String>,
    keyspace: String,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        script("cassandra.sh", &["up"]);
        let nats = nats_url();
        let tmp = tempfile::tempdir().expect("tempdir");
        let tag = format!("{}_{}", std::process::id(), micros_now() % 1_000_000_000);
        let keyspace = format!("lt_cluster_{tag}");
        let args: Vec<String> = [
            "--store",
            "cql",
            "--cql-nodes",
            &cql_nodes(),
            "--cql-keyspace",
            &keyspace,
        ]
        .map(str::to_owned)
        .to_vec();
        let out = Command::new(spacecast_bin())
            .arg("migrate")
            .args(&args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run spacecast migrate");
        assert!(
            out.status.success(),
            "spacecast migrate failed (is Cassandra up? scripts/cassandra.sh up): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut all = args;
        all.extend(["--nats-url".to_owned(), nats.clone()]);
        let mut cluster = Cluster {
            nodes: Vec::new(),
            nats,
            args: all,
            keyspace,
            _tmp: tmp,
        };
        for i in 0..n {
            let port = free_port();
            let dir = cluster._tmp.path().join(format!("n{i}"));
            std::fs::create_dir_all(&dir).expect("node dir");
            cluster.nodes.push(Node {
                // Unique on a NATS other test runs may share.
                id: format!("lt{tag}n{i}"),
                listen: format!("127.0.0.1:{port}"),
                url: format!("http://127.0.0.1:{port}"),
                dir,
                child: None,
            });
            cluster.launch(i);
        }
        cluster
    }

    fn launch(&mut self, i: usize) {
        let node = &self.nodes[i];
        let child = Command::new(spacecast_bin())
            .args(["serve", "--listen", &node.listen, "--data-dir"])
            .arg(&node.dir)
            .args(&self.args)
            .args(["--node-id", &node.id])
            .env("SPACECAST_JWT_SECRET", SECRET)
            // A load test measures the engine, not the per-user send limit.
            .env("SPACECAST_SEND_RATE_LIMIT", "0")
            .env("SPACECAST_WRITE_RATE_LIMIT", "0")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn spacecast");
        let url = format!("{}/readyz", node.url);
        self.nodes[i].child = Some(child);
        eventually(
            &format!("{url} answers 200"),
            Duration::from_secs(60),
            || http_ok(&url).then_some(()),
        );
    }

    fn index_of(&self, id: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or_else(|| panic!("the loadtest named an unknown node {id:?}"))
    }

    /// SIGKILL (std's `kill`) and reap.
    fn kill9(&mut self, i: usize) {
        let mut child = self.nodes[i].child.take().expect("node is running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    fn pids(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.child.as_ref().expect("running").id().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.url.clone())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Best effort: the keyspace name is unique, so a leftover harms no other run.
        let _ = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cassandra.sh"))
            .args([
                "cql",
                "--quiet",
                "--timeout",
                "120",
                "-e",
                &format!("DROP KEYSPACE IF EXISTS {}", self.keyspace),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `loadtest ARGS --json --quiet` to completion and returns its report (last stdout line).
fn loadtest(args: &[&str]) -> Value {
    let out = Command::new(loadtest_bin())
        .args(args)
        .arg("--json")
        .env("SPACECAST_JWT_SECRET", SECRET)
        .stderr(Stdio::inherit())
        .output()
        .expect("run loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "loadtest {args:?} failed:\n{stdout}");
    let last = stdout.lines().last().expect("some output");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

/// Every space of `owners` (space → node id) is owned by `node`.
fn all_owned_by(owners: &Value, node: &str, spaces: usize) {
    let map = owners.as_object().expect("owners is an object");
    assert_eq!(map.len(), spaces, "{owners}");
    assert!(
        map.values().all(|o| o == node),
        "{owners} (expected {node})"
    );
}

#[test]
fn scenarios_against_a_three_node_cluster() {
    let mut cluster = Cluster::start(3);
    let monitor = nats_monitor();
    let urls = cluster.urls();
    let (n0, n1) = (cluster.nodes[0].id.clone(), cluster.nodes[1].url.clone());

    // Sends through node 1 into spaces node 0 created and joined (so owns): forwarded sends.
    let r = loadtest(&[
        "sends",
        "--url",
        &urls,
        "--send-url",
        &n1,
        "--nats-monitor",
        &monitor,
        "--spaces",
        "2",
        "--concurrency",
        "4",
        "--duration",
        "2",
        "--warmup",
        "1",
    ]);
    assert!(u(&r, "acked") > 0, "{r}");
    assert_eq!((u(&r, "errors"), u(&r, "rejected")), (0, 0), "{r}");
    assert_eq!(r["setup_url"], cluster.nodes[0].url, "{r}");
    assert_eq!(r["send_urls"], serde_json::json!([n1]), "{r}");
    all_owned_by(&r["owners_start"], &n0, 2);
    all_owned_by(&r["owners_end"], &n0, 2);

    // Fan-out: publishing through the owner, 9 subscribers spread over the three nodes (so six
    // of them get their events over NATS), every node's CPU summed.
    let pids = cluster.pids();
    let r = loadtest(&[
        "fanout",
        "--url",
        &urls,
        "--send-url",
        &cluster.nodes[0].url,
        "--nats-monitor",
        &monitor,
        "--subscribers",
        "9",
        "--rate",
        "10",
        "--duration",
        "2",
        "--server-pid",
        &pids,
        "--quiet",
    ]);
    assert_eq!(u(&r, "connected"), 9, "{r}");
    assert!(u(&r, "acked") > 0, "{r}");
    assert_eq!(u(&r, "acked"), u(&r, "scheduled"), "{r}");
    assert_eq!(u(&r, "deliveries"), u(&r, "expected_deliveries"), "{r}");
    assert_eq!((u(&r, "gaps"), u(&r, "duplicates")), (0, 0), "{r}");
    assert_eq!(r["errors"], serde_json::json!({}), "{r}");
    assert_eq!(r["subscribe_urls"].as_array().map(Vec::len), Some(3), "{r}");
    assert_eq!(r["server"]["pids"].as_array().map(Vec::len), Some(3), "{r}");
    all_owned_by(&r["owners_end"], &n0, 1);

    // Failover, with this test as the driver: two kills of a space's owner, each restarted.
    let mut child = Command::new(loadtest_bin())
        .args([
            "failover",
            "--url",
            &urls,
            "--nats-monitor",
            &monitor,
            "--spaces",
            "2",
            "--rate",
            "10",
            "--kills",
            "2",
            "--settle",
            "1",
            "--nats-url",
            &cluster.nats.clone(),
            "--json",
        ])
        .env("SPACECAST_JWT_SECRET", SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn loadtest failover");
    let mut to_loadtest = child.stdin.take().expect("stdin");
    let from_loadtest = BufReader::new(child.stdout.take().expect("stdout"));
    let mut killed = Vec::new();
    let mut last = String::new();
    for line in from_loadtest.lines() {
        let line = line.expect("read loadtest output");
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["KILL", node, _space] => {
                let i = cluster.index_of(node);
                let at = micros_now();
                cluster.kill9(i);
                writeln!(to_loadtest, "KILLED {at}").expect("answer KILLED");
                killed.push((*node).to_owned());
            }
            ["RESTART", node] => {
                let i = cluster.index_of(node);
                assert_eq!(killed.last().map(String::as_str), Some(*node));
                cluster.launch(i);
                writeln!(to_loadtest, "RESTARTED").expect("answer RESTARTED");
            }
            _ => last = line,
        }
    }
    let status = child.wait().expect("wait loadtest");
    assert!(
        status.success(),
        "loadtest failover failed; last line: {last}"
    );
    let r: Value = serde_json::from_str(&last).unwrap_or_else(|e| panic!("{e}: {last}"));
    let kills = r["kills"].as_array().expect("kills");
    assert_eq!(kills.len(), 2, "{r}");
    for (k, node) in kills.iter().zip(&killed) {
        assert_eq!(&k["killed"], node, "{r}");
        assert!(
            k["failover_ms"].as_f64().is_some(),
            "each space came back: {r}"
        );
        assert!(k["new_owner"].is_string(), "{r}");
        assert_ne!(k["new_owner"], k["killed"], "{r}");
        // The dead owner's last lease write was read from the bucket (--nats-url).
        assert!(k["lease_expired_after_kill_ms"].as_f64().is_some(), "{r}");
        assert!(k["takeover_after_expiry_ms"].as_f64().is_some(), "{r}");
    }
    assert_eq!(u(&r, "failed_kills"), 0, "{r}");
    assert_eq!(r["failover"]["count"], 2, "{r}");
    assert_eq!(u(&r, "duplicate_acked_seqs"), 0, "{r}");
    assert!(u(&r, "acked") > 0, "{r}");
}
