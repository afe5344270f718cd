//! Message search on three `spacecast serve` nodes over NATS, sharing one CQL keyspace
//! (issue 12): every node keeps a full index of its own, fed by its own commits and by the other
//! nodes' commits on the bus, so messages sent through any node into spaces owned by any node
//! are found through every node, and a non-owner answers exactly as the owner does.
//!
//! Real processes against the project's real services (Cassandra, NATS: see
//! `api/tests/cluster.rs`); `test = false`, run by name in the cluster step of scripts/test.sh.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::collections::HashSet;
use std::time::Duration;

use cluster::{Cluster, ClusterOpts};
use common::{Server, eventually, token};
use serde_json::{Value, json};

async fn send(s: &Server, tok: &str, space: &str, text: &str) -> String {
    let m = s.v1_send(tok, space, json!({"content": text})).await;
    m["message_id"].as_str().unwrap().to_owned()
}

async fn found(s: &Server, tok: &str, path: &str) -> (u16, HashSet<String>) {
    let res = s
        .http
        .get(s.url(path))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    let ids = body["data"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|h| h["message"]["message_id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (status, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_through_any_node_are_found_through_every_node() {
    let c = Cluster::start(ClusterOpts::cluster(3)).await;
    let nodes = [c.server(0), c.server(1), c.server(2)];
    let (ada, bob) = (token("cs-ada"), token("cs-bob"));
    // One space created and first written through each node (which so owns it), and one
    // private space.
    let mut spaces = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let v = n.create_space(&ada, &format!("search {i}")).await;
        let space = v["space_id"].as_str().unwrap().to_owned();
        send(n, &ada, &space, &format!("owner warmup {i}")).await;
        spaces.push(space);
    }
    let private = nodes[0]
        .create_space_with(
            &ada,
            json!({"title": "private", "description": "d", "visibility": "private"}),
        )
        .await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Each space written through the two nodes that do not own it.
    let mut want = HashSet::new();
    for (i, space) in spaces.iter().enumerate() {
        for (j, n) in nodes.iter().enumerate() {
            if i != j {
                want.insert(send(n, &ada, space, &format!("galaxy s{i} via n{j}")).await);
            }
        }
    }
    let secret = send(nodes[1], &ada, &private, "galaxy hidden").await;

    let mut with_private = want.clone();
    with_private.insert(secret.clone());
    for n in nodes {
        eventually(
            &format!("every galaxy through {}", n.url("")),
            Duration::from_secs(30),
            || async {
                let (st, got) = found(n, &ada, "/v1/search/messages?q=galaxy&limit=50").await;
                assert_eq!(st, 200);
                (got == with_private).then_some(())
            },
        )
        .await;
    }
    // Every node answers the same: per space, and for a non-member (no private message).
    for n in nodes {
        for (i, space) in spaces.iter().enumerate() {
            let (st, got) = found(
                n,
                &bob,
                &format!("/v1/spaces/{space}/messages/search?q=galaxy+s{i}"),
            )
            .await;
            assert_eq!(st, 200);
            assert_eq!(got.len(), 2, "space {i} through {}", n.url(""));
        }
        let (st, got) = found(n, &bob, "/v1/search/messages?q=galaxy&limit=50").await;
        assert_eq!((st, &got), (200, &want), "bob through {}", n.url(""));
        let (st, _) = found(
            n,
            &bob,
            &format!("/v1/spaces/{private}/messages/search?q=galaxy"),
        )
        .await;
        assert_eq!(st, 404);
    }
}
