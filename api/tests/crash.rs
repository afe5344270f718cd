//! Crash safety (CONTRACT.md §7): kill -9 the server while concurrent sends are in flight,
//! restart it on the same data dir, and check that every acknowledged message is there exactly
//! once, in order, and that `seq` continues without a gap.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Server, eventually, token};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Every event seq of a space, replayed from the store over the stream.
async fn event_seqs(s: &Server, t: &str, space: &str, head: u64) -> Vec<u64> {
    let mut ws = s.stream(t).await;
    ws.send_json(json!({"type": "join", "space_id": space, "since_seq": 0}))
        .await;
    let joined = ws.next_matching(|v| v["type"] == "joined").await;
    assert_eq!(joined["head_seq"], head);
    let mut seqs = Vec::new();
    while seqs.len() < head as usize {
        let ev = ws.next_matching(|v| v["type"] == "event").await;
        seqs.push(ev["seq"].as_u64().unwrap());
    }
    seqs
}

#[tokio::test]
async fn kill_9_under_concurrent_sends_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let ada = token("ada");
    let mut server = Server::start_on(dir.path(), &[]).await;
    let space = server.create_space(&ada, "Crash test").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let writers: Vec<String> = (0..8).map(|i| format!("w{i}")).collect();
    for w in &writers {
        assert_eq!(server.join(&token(w), &space).await.status(), 200);
    }

    // Acknowledged messages: message_id → (seq, content).
    let mut acked: HashMap<String, (u64, String)> = HashMap::new();
    for round in 0..2 {
        let got = Arc::new(Mutex::new(Vec::<Value>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in &writers {
            let (base, t, space, got, stop) = (
                server.base.clone(),
                token(w),
                space.clone(),
                got.clone(),
                stop.clone(),
            );
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                let http = common::http_client();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = http
                        .post(format!("{base}/api/messages/{space}"))
                        .bearer_auth(&t)
                        .json(&json!({"content": format!("r{round}-{w}-{i}")}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 201 => match r.json::<Value>().await {
                            Ok(m) => got.lock().await.push(m),
                            Err(_) => break, // body cut by the kill: not acknowledged
                        },
                        Ok(r) => assert!(
                            r.status().is_server_error(),
                            "unexpected status {}",
                            r.status()
                        ),
                        Err(_) => break, // server gone
                    }
                }
            }));
        }
        // Let a good number of sends be acknowledged, then kill the server mid-flight.
        let target = 150 * (round + 1);
        eventually(
            "sends acknowledged before the kill",
            Duration::from_secs(60),
            || {
                let got = got.clone();
                async move { (got.lock().await.len() >= target).then_some(()) }
            },
        )
        .await;
        server.kill9().await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        for m in got.lock().await.iter() {
            let id = m["message_id"].as_str().unwrap().to_owned();
            let prev = acked.insert(
                id,
                (
                    m["seq"].as_u64().unwrap(),
                    m["content"].as_str().unwrap().to_owned(),
                ),
            );
            assert!(prev.is_none(), "one acknowledgement per message");
        }

        server = Server::start_on(dir.path(), &[]).await;
        let listed = server.list_all(&ada, &space).await;
        let mut seen: HashMap<String, (u64, String)> = HashMap::new();
        for m in &listed {
            let id = m["message_id"].as_str().unwrap().to_owned();
            let dup = seen.insert(
                id,
                (
                    m["seq"].as_u64().unwrap(),
                    m["content"].as_str().unwrap().to_owned(),
                ),
            );
            assert!(dup.is_none(), "no message is listed twice");
        }
        for (id, v) in &acked {
            assert_eq!(
                seen.get(id),
                Some(v),
                "acknowledged message {id} survived with its seq and content"
            );
        }
        // Newest first, strictly: seqs are unique and ordered.
        let seqs: Vec<u64> = listed.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] > w[1]),
            "listed in strict seq order"
        );
        // The event log is gapless 1..=head, and head covers every listed message.
        let info = server.get_json(&ada, &format!("/api/spaces/{space}")).await;
        let head = info["head_seq"].as_u64().unwrap();
        assert_eq!(info["message_count"].as_u64().unwrap(), listed.len() as u64);
        assert_eq!(
            head,
            listed.len() as u64,
            "only creations so far: one event per message"
        );
        let events = event_seqs(&server, &ada, &space, head).await;
        assert_eq!(events, (1..=head).collect::<Vec<_>>(), "the log has no gap");
        // And the next send continues the sequence.
        let (status, next) = server.send_text(&ada, &space, "after restart").await;
        assert_eq!(status, 201);
        assert_eq!(next["seq"].as_u64().unwrap(), head + 1);
        acked.insert(
            next["message_id"].as_str().unwrap().to_owned(),
            (head + 1, "after restart".into()),
        );
    }
}
