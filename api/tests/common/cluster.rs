//! A cluster of real `spacecast serve` processes for the fault tests: N nodes on one store, each
//! on its own fixed loopback port and data dir, that a test can kill with SIGKILL, freeze with
//! SIGSTOP / SIGCONT, and restart on the same port and data dir; and the project's NATS
//! (`scripts/nats.sh`), which a test can restart under load.
//!
//! Cluster mode (`Cluster::start(ClusterOpts::cluster(3))`): every node gets `--store cql` with
//! ONE shared keyspace, `--nats-url` (the server `scripts/nats.sh up` runs, or
//! `SPACECAST_TEST_NATS_URL`), `--node-id n{i}` and the same `--jwt-secret`. It first checks that
//! the binary has the cluster flags ([`require_cluster_mode`]) and fails with a clear message if
//! not: the cluster tests never skip.
//!
//! Single-node mode (`ClusterOpts::single()`): one node, no NATS flags, on the suite's store
//! (`SPACECAST_TEST_STORE`), so the same history checker runs today against one node on both
//! stores.
//!
//! Included with `#[path = "common/cluster.rs"] mod cluster;` by the tests that use it (beside
//! `mod common;`), so other test binaries do not compile it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::process::Command;

use crate::common::{SECRET, Server, bin, cql_args, cql_mode};

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterOpts {
    /// How many nodes.
    pub nodes: usize,
    /// Cluster flags (`--nats-url`, `--node-id`) and the CQL store for every node.
    pub nats: bool,
    /// More flags for every node.
    pub extra: Vec<String>,
}

impl ClusterOpts {
    /// `n` nodes over NATS sharing one CQL keyspace.
    pub fn cluster(n: usize) -> Self {
        ClusterOpts {
            nodes: n,
            nats: true,
            extra: Vec::new(),
        }
    }

    /// One node without NATS, on the suite's store.
    pub fn single() -> Self {
        ClusterOpts {
            nodes: 1,
            nats: false,
            extra: Vec::new(),
        }
    }
}

/// One node: its fixed address and data dir survive restarts.
pub struct Node {
    /// `n0`, `n1`, … (also its `--node-id` in cluster mode).
    pub id: String,
    /// `127.0.0.1:PORT`, the same for every start.
    pub listen: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub data_dir: PathBuf,
    /// The running process (`None` after a kill, until a restart).
    pub server: Option<Server>,
    /// True between `pause` and `resume`.
    pub paused: bool,
}

/// N running nodes (see the module doc).
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// Flags every node gets after `--listen` / `--data-dir` (store, NATS, secret, extra).
    args: Vec<String>,
    nats: bool,
    /// `nats://…` in cluster mode.
    pub nats_url: Option<String>,
    /// The shared CQL keyspace (cluster mode, or single-node mode on the CQL store).
    pub keyspace: Option<String>,
    _root: tempfile::TempDir,
}

impl Cluster {
    /// Starts every node (one after the other, each ready before the next starts).
    pub async fn start(opts: ClusterOpts) -> Cluster {
        assert!(opts.nodes >= 1, "a cluster has at least one node");
        let root = tempfile::tempdir().expect("tempdir");
        let mut args = Vec::new();
        let mut nats_url = None;
        let mut keyspace = None;
        if opts.nats {
            require_cluster_mode();
            let url = nats_url_for_tests().await;
            // One keyspace for all: the one of the cluster's root dir (migrated here).
            let store = cql_args(root.path()).await;
            keyspace = Some(store.last().expect("keyspace").clone());
            args.extend(store);
            args.extend(["--nats-url".to_owned(), url.clone()]);
            nats_url = Some(url);
        } else {
            assert_eq!(opts.nodes, 1, "without NATS there is one node");
            if cql_mode() {
                let store = cql_args(root.path()).await;
                keyspace = Some(store.last().expect("keyspace").clone());
                args.extend(store);
            }
        }
        args.extend(["--jwt-secret".to_owned(), SECRET.to_owned()]);
        // Senders here send far more than a person would; a per-user rate limit (when the build
        // has one) must not refuse them.
        if serve_help().contains("--send-rate-limit") {
            args.extend(["--send-rate-limit".to_owned(), "0".to_owned()]);
        }
        args.extend(opts.extra.iter().cloned());

        let mut cluster = Cluster {
            nodes: Vec::new(),
            args,
            nats: opts.nats,
            nats_url,
            keyspace,
            _root: root,
        };
        for i in 0..opts.nodes {
            let port = free_port();
            let data_dir = cluster._root.path().join(format!("n{i}"));
            std::fs::create_dir_all(&data_dir).expect("node data dir");
            cluster.nodes.push(Node {
                id: format!("n{i}"),
                listen: format!("127.0.0.1:{port}"),
                base: format!("http://127.0.0.1:{port}"),
                data_dir,
                server: None,
                paused: false,
            });
            cluster.launch(i).await;
        }
        cluster
    }

    async fn launch(&mut self, i: usize) {
        let node = &self.nodes[i];
        let mut args = self.args.clone();
        if self.nats {
            args.extend(["--node-id".to_owned(), node.id.clone()]);
        }
        let server = Server::launch_node(&node.data_dir, &node.listen, &args, &node.id).await;
        assert_eq!(
            server.base, node.base,
            "node {} listens where it was told",
            node.id
        );
        let node = &mut self.nodes[i];
        node.server = Some(server);
        node.paused = false;
    }

    /// The base URLs (`http://127.0.0.1:PORT`) of every node, running or not, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.base.clone()).collect()
    }

    /// Node `i`'s running server.
    pub fn server(&self, i: usize) -> &Server {
        self.nodes[i]
            .server
            .as_ref()
            .unwrap_or_else(|| panic!("node n{i} is not running"))
    }

    /// SIGKILL node `i` and wait for it to be gone (its port and data dir are kept).
    pub async fn kill9(&mut self, i: usize) {
        let mut server = self.nodes[i]
            .server
            .take()
            .unwrap_or_else(|| panic!("node n{i} is not running"));
        server.kill9().await;
        self.nodes[i].paused = false;
    }

    /// Starts node `i` again on its port and data dir, and waits until it is ready.
    pub async fn restart(&mut self, i: usize) {
        assert!(
            self.nodes[i].server.is_none(),
            "node n{i} is still running; kill it first"
        );
        self.launch(i).await;
    }

    /// Freezes node `i` with SIGSTOP: its sockets stay open, nothing answers.
    pub fn pause(&mut self, i: usize) {
        self.server(i).signal("STOP");
        self.nodes[i].paused = true;
    }

    /// Thaws node `i` with SIGCONT.
    pub fn resume(&mut self, i: usize) {
        self.server(i).signal("CONT");
        self.nodes[i].paused = false;
    }
}

/// A loopback port nothing listens on, below the ephemeral range (32768+), so the port of a
/// killed node cannot be taken as the source port of some client connection before it restarts.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Each test binary starts at its own place (by pid), so two running at once rarely collide;
    // a bind checks that the port is free.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919) % 12_000;
    for _ in 0..12_000 {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (start + k) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free loopback port in 20000..32000");
}

/// `spacecast serve --help`, read once.
fn serve_help() -> &'static str {
    static HELP: OnceLock<String> = OnceLock::new();
    HELP.get_or_init(|| {
        let out = std::process::Command::new(bin())
            .args(["serve", "--help"])
            .stdin(Stdio::null())
            .output()
            .expect("run spacecast serve --help");
        assert!(out.status.success(), "spacecast serve --help failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
}

/// Fails the calling test, with the reason, when this build of `spacecast` has no cluster mode:
/// `serve --help` must list `--nats-url` and `--node-id`. (A build that lists them but refuses
/// cluster mode at start fails in [`Cluster::start`] with the node's own error line.)
pub fn require_cluster_mode() {
    let help = serve_help();
    let missing: Vec<&str> = ["--nats-url", "--node-id"]
        .into_iter()
        .filter(|f| !help.contains(f))
        .collect();
    assert!(
        missing.is_empty(),
        "this spacecast build has no cluster mode: `spacecast serve --help` lacks {missing:?}. \
         The cluster tests (api/tests/cluster.rs) need the cluster over NATS of issue 8."
    );
}

/// The NATS the cluster tests use: `SPACECAST_TEST_NATS_URL` when set (scripts/test.sh sets it),
/// else the project's own server, started if needed (`scripts/nats.sh up` is idempotent).
pub async fn nats_url_for_tests() -> String {
    if let Ok(url) = std::env::var("SPACECAST_TEST_NATS_URL")
        && !url.is_empty()
    {
        return url;
    }
    nats("up").await;
    nats_script_url().await
}

/// The URL of the server `scripts/nats.sh` runs (`scripts/nats.sh url`).
pub async fn nats_script_url() -> String {
    let out = Command::new("bash")
        .arg(nats_script())
        .arg("url")
        .output()
        .await
        .expect("run scripts/nats.sh url");
    assert!(out.status.success(), "scripts/nats.sh url failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn nats_script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/nats.sh")
}

/// Runs `scripts/nats.sh ARG` (`up`, `down`, `restart`, …), asserting it succeeds.
pub async fn nats(arg: &str) {
    let status = Command::new("bash")
        .arg(nats_script())
        .arg(arg)
        .status()
        .await
        .expect("run scripts/nats.sh");
    assert!(status.success(), "scripts/nats.sh {arg} failed");
}

/// Restarts the project's NATS (down, then up with its data kept): the NATS-outage fault.
pub async fn restart_nats() {
    nats("restart").await;
}

/// Polls `GET {base}/readyz` until it answers `status` (e.g. 503 while NATS is down).
pub async fn wait_readyz(http: &reqwest::Client, base: &str, status: u16, deadline: Duration) {
    let url = format!("{base}/readyz");
    crate::common::eventually(&format!("{url} answers {status}"), deadline, || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()?;
            (r.status().as_u16() == status).then_some(())
        }
    })
    .await;
}
