//! Discovery and user stats on a three-node cluster (issue 12): three nodes over NATS sharing one
//! CQL keyspace (`common/cluster.rs`). Each node owns some of the spaces (a space's actor starts
//! on the node its first command reaches); activity in all of them shows in trending read from
//! any node, and every node answers every discovery list and a user's stats exactly as the
//! others do. Run by scripts/test.sh's cluster step (`test = false` in api/Cargo.toml).

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use serde_json::{Value, json};

use cluster::{Cluster, ClusterOpts};
use common::token;

const NODES: usize = 3;

async fn get(c: &Cluster, i: usize, tok: Option<&str>, path: &str) -> Value {
    let s = c.server(i);
    let mut r = s.http.get(s.url(path));
    if let Some(t) = tok {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 200, "node {i}: GET {path}");
    r.json().await.unwrap()
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|s| s["space_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_user_stats_agree_on_every_node() {
    let c = Cluster::start(ClusterOpts::cluster(NODES)).await;
    let (ada, bob) = (token("cd-ada"), token("cd-bob"));
    // Space i is created through node i and first written through node i, so its actor runs
    // there: each node owns one; space i gets 2 * (i + 1) messages, sent through every node.
    let mut spaces = Vec::new();
    let mut firsts = Vec::new();
    for i in 0..NODES {
        let v = c
            .server(i)
            .create_space_with(
                &ada,
                json!({"title": format!("Cluster topic {i}"), "description": "shared words",
                       "hashtags": ["cluster"]}),
            )
            .await;
        let id = v["space_id"].as_str().unwrap().to_owned();
        let (st, m) = c.server(i).send_text(&ada, &id, "first words here").await;
        assert_eq!(st, 201);
        firsts.push(m["message_id"].as_str().unwrap().to_owned());
        spaces.push(id);
    }
    for (i, space) in spaces.iter().enumerate() {
        // Bob joins through another node (a join counts as activity, alike in each space).
        assert_eq!(
            c.server((i + 1) % NODES).join(&bob, space).await.status(),
            200
        );
        for k in 1..2 * (i + 1) {
            let (st, m) = c
                .server(k % NODES)
                .send_text(&bob, space, "two words")
                .await;
            assert_eq!(st, 201, "{m}");
        }
    }
    let owners: Vec<i64> =
        futures::future::join_all((0..NODES).map(|i| get(&c, i, Some(&ada), "/v1/node")))
            .await
            .iter()
            .map(|n| n["active_spaces"].as_i64().unwrap_or(0))
            .collect();
    assert!(
        owners.iter().filter(|n| **n > 0).count() >= 2,
        "the spaces are owned by different nodes: {owners:?}"
    );
    // A private space's activity is never listed anywhere.
    let hidden = c
        .server(1)
        .create_space_with(
            &ada,
            json!({"title": "Cluster hidden", "visibility": "private"}),
        )
        .await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..10 {
        assert_eq!(c.server(2).send_text(&ada, &hidden, "secret").await.0, 201);
    }

    let mut want: Vec<String> = spaces.clone();
    want.reverse(); // most activity first
    for i in 0..NODES {
        let trending = get(&c, i, None, "/api/spaces/trending?limit=10").await;
        assert_eq!(ids(&trending), want, "trending on node {i}");
        let again = get(&c, (i + 1) % NODES, None, "/api/spaces/trending?limit=10").await;
        assert_eq!(
            again,
            trending,
            "nodes {i} and {} answer alike",
            (i + 1) % NODES
        );
        let tag = get(&c, i, None, "/api/spaces/tag/cluster").await;
        assert_eq!(ids(&tag), want.clone(), "newest first on node {i}");
        let found = get(&c, i, None, "/api/spaces/search?q=cluster%20top").await;
        assert_eq!(ids(&found), want.clone(), "search on node {i}");
        let rec = get(&c, i, Some(&token("cd-cat")), "/api/spaces/recommended").await;
        assert_eq!(ids(&rec), want.clone(), "recommended on node {i}");
        assert!(!ids(&trending).contains(&hidden));
    }

    // Stats through any node: ada 4 spaces created, 4 with messages (3 words each + the
    // secrets' 1 each); bob 2 words per message in 3 spaces.
    let bob_messages: u64 = (0..NODES as u64).map(|i| 2 * (i + 1) - 1).sum();
    for i in 0..NODES {
        assert_eq!(
            get(&c, i, Some(&bob), "/v1/users/cd-ada/stats").await,
            json!({"spaces_created": 4, "spaces_participated": 4,
                   "total_words_contributed": 3 * 3 + 10, "total_appreciations_received": 0}),
            "ada's stats on node {i}"
        );
        assert_eq!(
            get(&c, i, Some(&ada), "/v1/users/cd-bob/stats").await,
            json!({"spaces_created": 0, "spaces_participated": 3,
                   "total_words_contributed": 2 * bob_messages,
                   "total_appreciations_received": 0}),
            "bob's stats on node {i}"
        );
    }
    // An appreciation through a non-owner (node 1; node 0 owns space 0) counts at once, read
    // through the third node and the owner alike.
    assert_eq!(
        c.server(1).appreciate(&bob, &spaces[0], &firsts[0]).await.0,
        200
    );
    let through_other = get(&c, 2, Some(&bob), "/v1/users/cd-ada/stats").await;
    assert_eq!(through_other["total_appreciations_received"], 1);
    assert_eq!(
        get(&c, 0, Some(&bob), "/v1/users/cd-ada/stats").await,
        through_other
    );
}
