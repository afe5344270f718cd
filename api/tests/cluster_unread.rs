//! Read markers, unread counts and the inbox on three `spacecast serve` nodes over NATS, sharing
//! one CQL keyspace (issue 12): marks sent through the two nodes that do not own a space are
//! forwarded to its owner's actor and serialised there (the marker never moves back), and the
//! unread counts and the inbox read through any node answer exactly as the owner's does.
//!
//! Real processes against the project's real services (Cassandra, NATS: see
//! `api/tests/cluster.rs`); `test = false`, run by name in the cluster step of scripts/test.sh.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use cluster::{Cluster, ClusterOpts};
use common::{Server, token};
use serde_json::{Value, json};

async fn mark(s: &Server, tok: &str, space: &str, body: Value) -> Value {
    let res = s
        .http
        .post(s.url(&format!("/v1/spaces/{space}/read")))
        .bearer_auth(tok)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "mark {body} through {}", s.url(""));
    res.json().await.unwrap()
}

async fn send(s: &Server, tok: &str, space: &str, text: &str, parent: Option<&str>) -> Value {
    let mut body = json!({"content": text});
    if let Some(p) = parent {
        body["parent_id"] = json!(p);
    }
    s.v1_send(tok, space, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_through_any_node_serialise_at_the_owner_and_every_node_reads_the_same() {
    let c = Cluster::start(ClusterOpts::cluster(3)).await;
    let (n0, n1, n2) = (c.server(0), c.server(1), c.server(2));
    let (ada, bob) = (token("cu-ada"), token("cu-bob"));
    // Created and written through n0, which so takes the space's lease.
    let space = n0.create_space(&ada, "cluster unread").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let quiet = n0.create_space(&ada, "quiet").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(n0.join(&bob, &space).await.status(), 200);
    assert_eq!(n0.join(&bob, &quiet).await.status(), 200);
    let mut top = Vec::new();
    for i in 0..8 {
        let m = send(n0, &ada, &space, &format!("t{i}"), None).await;
        let root = m["message_id"].as_str().unwrap().to_owned();
        send(n0, &ada, &space, &format!("r{i}"), Some(&root)).await;
        top.push(m);
    }

    // Concurrent marks through the two non-owners, in opposite orders.
    let seqs: Vec<u64> = top.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    let forward = async {
        for &s in &seqs {
            let r = mark(n1, &bob, &space, json!({"seq": s})).await;
            assert!(r["last_read_seq"].as_u64().unwrap() >= s, "{r}");
        }
    };
    let backward = async {
        for &s in seqs.iter().rev() {
            let r = mark(n2, &bob, &space, json!({"seq": s})).await;
            assert!(r["last_read_seq"].as_u64().unwrap() >= s, "{r}");
        }
    };
    futures::join!(forward, backward);
    let last = *seqs.last().unwrap();
    // A lower mark through the third node changes nothing.
    let r = mark(
        n0,
        &bob,
        &space,
        json!({"message_id": top[2]["message_id"]}),
    )
    .await;
    assert_eq!(
        r,
        json!({"space_id": space, "last_read_seq": last, "unread": 0})
    );

    // Two more top-level messages (and a reply) through n1: two unread for bob.
    let t8 = send(n1, &ada, &space, "t8", None).await;
    send(n1, &ada, &space, "r8", t8["message_id"].as_str()).await;
    let t9 = send(n2, &ada, &space, "t9", None).await;

    // Every node answers the same, the non-owners exactly as the owner.
    let unread: Vec<Value> =
        futures::future::join_all([n0, n1, n2].map(|n| n.get_json(&bob, "/v1/me/unread"))).await;
    let entry = unread[0]["spaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["space_id"] == space)
        .cloned()
        .expect("the space");
    assert_eq!(
        entry,
        json!({"space_id": space, "unread": 2, "last_read_seq": last})
    );
    assert_eq!(unread[0]["total_unread"], 2);
    assert_eq!(unread[1], unread[0], "n1 answers as n0");
    assert_eq!(unread[2], unread[0], "n2 answers as n0");

    let inbox: Vec<Value> =
        futures::future::join_all([n0, n1, n2].map(|n| n.get_json(&bob, "/v1/me/spaces?limit=1")))
            .await;
    let first = &inbox[0]["data"][0];
    assert_eq!(first["space"]["space_id"], space, "unread first: {first}");
    assert_eq!(first["unread"], 2);
    assert_eq!(first["last_message"]["message_id"], t9["message_id"]);
    assert_eq!(first["head_seq"], t9["seq"]);
    assert_eq!(inbox[1], inbox[0], "n1 answers as n0");
    assert_eq!(inbox[2], inbox[0], "n2 answers as n0");
    let cursor = inbox[0]["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let second = n2
        .get_json(&bob, &format!("/v1/me/spaces?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(second["data"][0]["space"]["space_id"], quiet);
    assert_eq!(second["next_cursor"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mark_through_one_node_reaches_the_users_session_on_another() {
    let c = Cluster::start(ClusterOpts::cluster(3)).await;
    let (n0, n1, n2) = (c.server(0), c.server(1), c.server(2));
    let (ada, bob) = (token("cu-live-ada"), token("cu-live-bob"));
    let space = n0.create_space(&ada, "live marks").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(n0.join(&bob, &space).await.status(), 200);
    let m = send(n0, &bob, &space, "read me", None).await;
    // Ada watches from n2 (not joined to the space: the marker is hers, not the space's); bob
    // watches from n2 too. The mark goes through n1, the space is owned by n0.
    let mut a = n2.stream(&ada).await;
    let mut b = n2.stream(&bob).await;
    b.join(&space, None).await;
    let seq = m["seq"].as_u64().unwrap();
    // A session is subscribed to its user's channel once its hello arrived (`stream` waits for
    // it), on every node: the mark is published after it is durable.
    let marked = mark(n1, &ada, &space, json!({"seq": seq})).await;
    assert_eq!(marked["last_read_seq"], seq);
    let f = a.next_matching(|v| v["type"] == "read_marker").await;
    assert_eq!(
        (f["space_id"].clone(), f["seq"].clone(), f["unread"].clone()),
        (json!(space), json!(seq), json!(0))
    );
    // Bob's session on the same node got none of it: its first read_marker is its own.
    send(n0, &ada, &space, "your turn", None).await;
    let bobs = mark(n1, &bob, &space, json!({"seq": 1_000_000})).await;
    let f = b.next_matching(|v| v["type"] == "read_marker").await;
    assert_eq!(f["seq"], bobs["last_read_seq"], "{f}");
    assert_ne!(f["seq"], json!(seq), "not ada's mark: {f}");
}
