//! The CQL store through a database outage (issue: stop and restart Cassandra under load): while
//! the database is down, sends fail fast and cleanly (503 with a stable code and `Retry-After`)
//! and `/readyz` reports it; when it returns, service resumes by itself; nothing acknowledged is
//! lost and no seq is duplicated.
//!
//! Runs on the CQL store in every mode of the suite, against the project's own Cassandra, which
//! it stops and starts with `scripts/cassandra.sh`. It is the only test in this binary, so no
//! other test runs while the database is down.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Server, cassandra, eventually, token};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Statuses a send may get while the database is down or coming back.
const TRANSIENT: &[&str] = &["store_unavailable", "unavailable", "overloaded"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_refuses_sends_cleanly_and_service_resumes_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_cql(dir.path(), &[]).await;
    let ada = token("ada");
    let space = s.create_space(&ada, "Outage").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let writers: Vec<String> = (0..4).map(|i| format!("w{i}")).collect();
    for w in &writers {
        assert_eq!(s.join(&token(w), &space).await.status(), 200);
    }

    // Writers send continuously through the outage, recording every answer.
    let acked = Arc::new(Mutex::new(Vec::<Value>::new()));
    let refused = Arc::new(Mutex::new(Vec::<(u16, String, bool)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in &writers {
        let (base, t, space) = (s.base.clone(), token(w), space.clone());
        let (acked, refused, stop) = (acked.clone(), refused.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let http = common::http_client();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let r = http
                    .post(format!("{base}/api/messages/{space}"))
                    .bearer_auth(&t)
                    .json(&json!({"content": format!("{t:.8}-{i}")}))
                    .send()
                    .await
                    .expect("the server itself stays up");
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                let body: Value = r.json().await.expect("JSON body");
                if status == 201 {
                    acked.lock().await.push(body);
                } else {
                    let code = body["code"].as_str().unwrap_or_default().to_owned();
                    refused.lock().await.push((status, code, retry_after));
                    // Back off as Retry-After asks (bounded: this is a test).
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
    }
    let before = acked.lock().await.len();
    eventually(
        "sends acknowledged before the outage",
        Duration::from_secs(60),
        || {
            let acked = acked.clone();
            async move { (acked.lock().await.len() >= before + 50).then_some(()) }
        },
    )
    .await;

    cassandra("down").await;
    let readyz = s.url("/readyz");
    eventually(
        "/readyz reports the outage",
        Duration::from_secs(30),
        || {
            let (http, readyz) = (s.http.clone(), readyz.clone());
            async move { (http.get(&readyz).send().await.ok()?.status() == 503).then_some(()) }
        },
    )
    .await;
    eventually(
        "sends are refused while the database is down",
        Duration::from_secs(30),
        || {
            let refused = refused.clone();
            async move { (refused.lock().await.len() >= 8).then_some(()) }
        },
    )
    .await;
    let during_outage = acked.lock().await.len();

    cassandra("up").await;
    eventually(
        "service resumes by itself",
        Duration::from_secs(120),
        || {
            let acked = acked.clone();
            async move { (acked.lock().await.len() >= during_outage + 50).then_some(()) }
        },
    )
    .await;
    assert_eq!(
        s.http.get(&readyz).send().await.unwrap().status(),
        200,
        "ready again"
    );
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    // Every refusal was a clean, retryable 503.
    for (status, code, retry_after) in refused.lock().await.iter() {
        assert_eq!(*status, 503, "refused with 503, got {status} {code}");
        assert!(
            TRANSIENT.contains(&code.as_str()),
            "a transient code, got {code}"
        );
        assert!(retry_after, "with Retry-After ({code})");
    }
    // Nothing acknowledged is lost; no seq is used twice.
    let acked = acked.lock().await.clone();
    let listed = s.list_all(&ada, &space).await;
    let by_id: HashMap<&str, &Value> = listed
        .iter()
        .map(|m| (m["message_id"].as_str().unwrap(), m))
        .collect();
    assert_eq!(by_id.len(), listed.len(), "no message listed twice");
    for m in &acked {
        let got = by_id
            .get(m["message_id"].as_str().unwrap())
            .expect("an acknowledged message survived");
        assert_eq!(got["seq"], m["seq"]);
        assert_eq!(got["content"], m["content"]);
    }
    let mut seqs: Vec<u64> = acked.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), acked.len(), "no seq acknowledged twice");
    // The log is gapless up to the head, and the next send continues it.
    let head = s.get_json(&ada, &format!("/api/spaces/{space}")).await["head_seq"]
        .as_u64()
        .unwrap();
    let mut ws = s.stream(&ada).await;
    ws.send_json(json!({"type": "join", "space_id": space, "since_seq": 0}))
        .await;
    ws.next_matching(|v| v["type"] == "joined").await;
    let mut log = Vec::new();
    while log.len() < head as usize {
        log.push(
            ws.next_matching(|v| v["type"] == "event").await["seq"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(log, (1..=head).collect::<Vec<_>>(), "the log has no gap");
    let (status, next) = s.send_text(&ada, &space, "after the outage").await;
    assert_eq!(status, 201);
    assert_eq!(next["seq"].as_u64().unwrap(), head + 1);
}
