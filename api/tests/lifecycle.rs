//! Black-box tests of the process lifecycle (CONTRACT.md §1, §2, §7) against the real binary:
//! graceful SIGTERM with sends in flight, `spacecast token`, configuration errors, and the
//! embedded store's exclusive lock.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{SECRET, Server, bin, eventually, token, try_send_text};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::process::Command;

/// Runs the binary to completion (at most 30 s) with a clean spacecast environment.
async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    try_run(args, env)
        .await
        .unwrap_or_else(|| panic!("spacecast {args:?} did not exit within 30 s"))
}

/// Like [`run`]; `None` if the process was still running after 30 s (it is then killed).
async fn try_run(args: &[&str], env: &[(&str, &str)]) -> Option<Output> {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("SPACECAST_JWT_SECRET")
        .env_remove("SPACECAST_DATA_DIR")
        .env_remove("SPACECAST_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn spacecast");
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .ok()
        .map(|r| r.expect("wait"))
}

/// `spacecast token …`: the printed token.
async fn mint(args: &[&str]) -> String {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    let out = run(&all, &[]).await;
    assert!(
        out.status.success(),
        "spacecast token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert_eq!(t.split('.').count(), 3, "a JWT on stdout: {t:?}");
    t
}

/// `GET /api/spaces/my` status with `tok`.
async fn my_spaces_status(s: &Server, tok: &str) -> u16 {
    s.http
        .get(s.url("/api/spaces/my"))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn sigterm_drains_in_flight_sends_closes_sessions_with_1001_and_loses_nothing() {
    const SENDS: u64 = 400;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start_on(dir.path(), &["--shutdown-timeout", "5s"]).await;
    let t1 = token("u1");
    let space = s.create_space(&t1, "shutdown test").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // An open session, read concurrently until the server closes it.
    let mut ws = s.stream(&t1).await;
    ws.send_json(json!({"type": "join", "space_id": space}))
        .await;
    let joined = ws.next_json().await.expect("joined");
    assert_eq!(joined["type"], "joined", "{joined}");
    let reader = tokio::spawn(async move { ws.drain_until_close().await });

    // Many concurrent sends; SIGTERM arrives while they are in flight.
    let acked = Arc::new(AtomicU64::new(0));
    let sender = {
        let (http, base, tok, space, acked) = (
            s.http.clone(),
            s.base.clone(),
            t1.clone(),
            space.clone(),
            acked.clone(),
        );
        tokio::spawn(async move {
            futures::stream::iter(0..SENDS)
                .map(|i| {
                    let (http, base, tok, space, acked) = (&http, &base, &tok, &space, &acked);
                    async move {
                        let r = try_send_text(http, base, tok, space, &format!("inflight {i}"))
                            .await
                            .ok();
                        if r.as_ref().is_some_and(|(st, _)| *st == 201) {
                            acked.fetch_add(1, Ordering::AcqRel);
                        }
                        r
                    }
                })
                .buffer_unordered(32)
                .collect::<Vec<Option<(u16, Value)>>>()
                .await
        })
    };
    eventually("some sends acknowledged", Duration::from_secs(60), || {
        let n = acked.load(Ordering::Acquire);
        async move { (n >= 20).then_some(()) }
    })
    .await;
    let status = s.terminate().await;
    assert_eq!(status.code(), Some(0), "graceful exit status: {status:?}");

    let (frames, code) = reader.await.expect("reader");
    assert_eq!(code, Some(1001), "sessions are closed with going away");
    let seen: Vec<u64> = frames
        .iter()
        .filter(|f| f["type"] == "event")
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seen,
        (1..=seen.len() as u64).collect::<Vec<_>>(),
        "the session got a gapless prefix"
    );

    let outcomes = sender.await.expect("sender");
    let mut acked_ids = Vec::new();
    for (status, body) in outcomes.into_iter().flatten() {
        match status {
            201 => acked_ids.push(body["message_id"].as_str().unwrap().to_owned()),
            503 => {} // refused clearly while stopping
            other => panic!("unexpected status {other} during shutdown: {body}"),
        }
    }
    assert!(acked_ids.len() >= 20);
    drop(s);

    // Restart on the same data dir: every acknowledged send is there exactly once.
    let s = Server::start_on(dir.path(), &[]).await;
    let listed = s.list_all(&t1, &space).await;
    let mut count: HashMap<String, usize> = HashMap::new();
    for m in &listed {
        *count
            .entry(m["message_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for id in &acked_ids {
        assert_eq!(
            count.get(id),
            Some(&1),
            "acknowledged message {id} listed exactly once"
        );
    }
    let view = s.get_json(&t1, &format!("/api/spaces/{space}")).await;
    let head = view["head_seq"].as_u64().expect("head_seq");
    let mut seqs: Vec<u64> = listed.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=head).collect::<Vec<_>>(),
        "seqs 1..=head, no gap"
    );
    assert!(head >= acked_ids.len() as u64);
    assert!(
        seen.len() as u64 <= head,
        "no observer saw an event that history does not have"
    );

    // The event log survived too: a full replay is gapless.
    let mut ws = s.stream(&t1).await;
    ws.send_json(json!({"type": "join", "space_id": space, "since_seq": 0}))
        .await;
    let joined = ws.next_json().await.expect("joined");
    assert_eq!(joined["head_seq"], head);
    let frames = ws.frames_until_event(&space, head).await;
    let replayed: Vec<u64> = frames
        .iter()
        .filter(|f| f["type"] == "event")
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(replayed, (1..=head).collect::<Vec<_>>());
}

#[tokio::test]
async fn minted_tokens_are_accepted_by_a_server_with_the_same_data_dir_or_secret() {
    // Data-dir secret: `token` first (fresh machine), then a server with no configured secret.
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_str().unwrap();
    let minted = mint(&[
        "--user-id",
        "tok-user",
        "--username",
        "Tokie",
        "--data-dir",
        data_dir,
    ])
    .await;
    let s = Server::start_on_without_secret(dir.path(), &[]).await;
    assert_eq!(my_spaces_status(&s, &minted).await, 200);
    let space = s.create_space(&minted, "minted space").await;
    assert_eq!(space["creator_id"], "tok-user");
    assert_eq!(space["creator"]["username"], "Tokie");
    // The server really uses the data dir's secret, not the test one.
    assert_eq!(my_spaces_status(&s, &token("u1")).await, 401);
    // And the stream accepts the minted token too.
    let (_ws, hello) = s.stream_hello(&minted).await;
    assert_eq!(hello["type"], "hello");

    // Explicit secret: a token minted with `--jwt-secret X` works with a server given X.
    let shared = "lifecycle-shared-secret-0123456789";
    let dir2 = tempfile::tempdir().expect("tempdir");
    let with_secret = mint(&[
        "--user-id",
        "sec-user",
        "--username",
        "Secretive",
        "--jwt-secret",
        shared,
        "--data-dir",
        dir2.path().to_str().unwrap(),
    ])
    .await;
    let s2 = Server::start_on_without_secret(dir2.path(), &["--jwt-secret", shared]).await;
    assert_eq!(my_spaces_status(&s2, &with_secret).await, 200);
    assert_eq!(
        my_spaces_status(&s2, &minted).await,
        401,
        "another data dir's token is refused"
    );
    assert_eq!(
        my_spaces_status(&s, &with_secret).await,
        401,
        "a token for another secret is refused"
    );
}

/// Asserts a failed start: exit status 2 and a message naming the option.
fn assert_config_error(what: &str, out: &Output, names: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{what}: exit status; stderr: {stderr}"
    );
    assert!(
        !stdout.contains("listening"),
        "{what}: must not start: {stdout}"
    );
    assert!(
        names.iter().any(|n| stderr.contains(n)),
        "{what}: the message names the option ({names:?}): {stderr}"
    );
}

#[tokio::test]
async fn invalid_configuration_exits_with_status_2_naming_the_option() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().unwrap();
    let base = ["serve", "--listen", "127.0.0.1:0", "--data-dir", d];
    let flag_cases: [(&[&str], &[&str]); 6] = [
        (&["--store", "postgres"], &["store"]),
        (
            &["--shutdown-timeout", "soon"],
            &["shutdown_timeout", "--shutdown-timeout"],
        ),
        (
            &["--subscriber-queue", "0"],
            &["subscriber_queue", "--subscriber-queue"],
        ),
        (&["--log-format", "xml"], &["log_format", "--log-format"]),
        (
            &["--max-content-chars", "many"],
            &["max_content_chars", "--max-content-chars"],
        ),
        (&["--jwt-secret", "short"], &["jwt_secret", "--jwt-secret"]),
    ];
    for (extra, names) in flag_cases {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let out = run(&args, &[("SPACECAST_JWT_SECRET", SECRET)]).await;
        assert_config_error(&format!("{extra:?}"), &out, names);
    }

    // The same options through env vars and the config file.
    let out = run(
        &base,
        &[
            ("SPACECAST_JWT_SECRET", SECRET),
            ("SPACECAST_STORE", "postgres"),
        ],
    )
    .await;
    assert_config_error("SPACECAST_STORE=postgres", &out, &["store"]);
    let out = run(
        &["serve", "--data-dir", d, "--listen", "not-an-address"],
        &[],
    )
    .await;
    assert_config_error("--listen not-an-address", &out, &["listen"]);
    let file = dir.path().join("spacecast.toml");
    std::fs::write(&file, "shutdown_timeout = \"whenever\"\n").unwrap();
    let mut args = base.to_vec();
    args.extend_from_slice(&["--config", file.to_str().unwrap()]);
    let out = run(&args, &[("SPACECAST_JWT_SECRET", SECRET)]).await;
    assert_config_error("config file shutdown_timeout", &out, &["shutdown_timeout"]);
    std::fs::write(&file, "no_such_option = 1\n").unwrap();
    let out = run(&args, &[("SPACECAST_JWT_SECRET", SECRET)]).await;
    assert_config_error("config file unknown key", &out, &["no_such_option"]);

    // `token` too.
    let out = run(
        &[
            "token",
            "--user-id",
            "u",
            "--username",
            "n",
            "--data-dir",
            d,
            "--ttl",
            "soon",
        ],
        &[],
    )
    .await;
    assert_config_error("token --ttl soon", &out, &["--ttl", "ttl"]);
}

#[tokio::test]
async fn a_second_server_on_the_same_embedded_store_refuses_to_start() {
    // A property of the embedded store (its directory lock), whatever store the suite runs on.
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Server::start_on(dir.path(), &["--store", "embedded"]).await;
    let t1 = token("u1");
    let space = first.create_space(&t1, "locked store").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let out = second_server(dir.path()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains("listening"),
        "BUG: a second server started on a data dir in use: {stdout}"
    );
    assert!(
        !out.status.success(),
        "the second server fails: {:?}",
        out.status
    );
    assert!(
        stderr.contains("embedded store") && stderr.contains(dir.path().to_str().unwrap()),
        "a clear error naming the store and the directory: {stderr}"
    );

    // The first server is unaffected.
    let (status, m) = first.send_text(&t1, &space, "still serving").await;
    assert_eq!(status, 201, "{m}");
    let r = first.http.get(first.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Starts `spacecast serve` on `data_dir` and waits (at most 30 s) for it to exit.
async fn second_server(data_dir: &Path) -> Output {
    try_run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        &[("SPACECAST_JWT_SECRET", SECRET), ("RUST_LOG", "warn")],
    )
    .await
    .expect("BUG: a second server is still running after 30 s on a data dir in use")
}

#[tokio::test]
async fn the_shutdown_timeout_only_bounds_a_shutdown() {
    // Regression: the drain timeout once bounded the whole run, stopping idle servers after
    // twice the shutdown timeout.
    let s = Server::start(&["--shutdown-timeout", "1s"]).await;
    let until = std::time::Instant::now() + Duration::from_secs(4);
    let mut polls = 0;
    while std::time::Instant::now() < until {
        let r = s.http.get(s.url("/healthz")).send().await;
        assert!(
            r.is_ok_and(|r| r.status() == 200),
            "the server kept serving past its shutdown timeout (poll {polls})"
        );
        polls += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(polls > 10);
}

#[tokio::test]
async fn serve_on_cql_refuses_a_keyspace_without_the_schema_and_migrate_fixes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keyspace = format!(
        "unmigrated_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let nodes = common::cql_nodes();
    let store = [
        "--store",
        "cql",
        "--cql-nodes",
        nodes.as_str(),
        "--cql-keyspace",
        keyspace.as_str(),
    ];
    let mut serve = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ];
    serve.extend_from_slice(&store);
    let out = try_run(
        &serve,
        &[("SPACECAST_JWT_SECRET", SECRET), ("RUST_LOG", "warn")],
    )
    .await
    .expect("serve exits on an unmigrated keyspace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve must refuse: {stderr}");
    assert!(
        stderr.contains("spacecast migrate") && stderr.contains(&keyspace),
        "the error names the keyspace and the fix: {stderr}"
    );
    let mut migrate = vec!["migrate"];
    migrate.extend_from_slice(&store);
    for _ in 0..2 {
        let out = run(&migrate, &[]).await;
        assert!(
            out.status.success(),
            "migrate (idempotent): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let version = spacecast_engine::store::cql::schema::CURRENT_VERSION;
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("schema version {version}"))
        );
    }
    let s = Server::start_on(dir.path(), &store).await;
    let space = s.create_space(&token("u1"), "migrated").await;
    assert!(space["space_id"].is_string());
}
