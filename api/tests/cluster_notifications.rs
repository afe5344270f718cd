//! Notifications across a three-node cluster (issue 12): an appreciation made through node A of a
//! message in a space owned by node B reaches the author's live sessions on B and on C (the
//! per-user channel over NATS), and no other user's; every node then lists the same
//! notifications and applies a read mark made through any of them.
//!
//! Real processes against the project's real services, like api/tests/cluster.rs: Cassandra
//! (`scripts/cassandra.sh up`) and NATS with JetStream (`scripts/nats.sh up`;
//! `SPACECAST_TEST_NATS_URL` overrides the URL); `test = false`, run by name in the cluster step
//! of scripts/test.sh.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/sio.rs"]
mod sio;

use std::time::Duration;

use cluster::{Cluster, ClusterOpts, require_cluster_mode};
use common::{eventually, token};
use serde_json::{Value, json};

/// Local sessions subscribed to a user's channel on a node (`spacecast_user_subscriptions`).
async fn user_subscriptions(s: &common::Server) -> u64 {
    s.metric("spacecast_user_subscriptions").await
}

/// Spaces whose lease a node holds (`spacecast_leases_held`).
async fn leases_held(s: &common::Server) -> u64 {
    s.metric("spacecast_leases_held").await
}

#[tokio::test]
async fn an_appreciation_through_one_node_reaches_the_authors_sessions_on_the_others() {
    require_cluster_mode();
    let c = Cluster::start(ClusterOpts::cluster(3)).await;
    let (a, b, n3) = (c.server(0), c.server(1), c.server(2));
    let (ada, bob) = (token("cn-ada"), token("cn-bob"));
    // The space is created and first written through B, which takes its lease: B owns it.
    let space = b.create_space(&ada, "Across nodes").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(b.join(&bob, &space).await.status(), 200);
    let (st, m) = b.send_text(&ada, &space, "appreciate me").await;
    assert_eq!(st, 201, "{m}");
    let mid = m["message_id"].as_str().unwrap().to_owned();
    assert_eq!(leases_held(b).await, 1, "B owns the space");
    assert_eq!(leases_held(a).await, 0, "A does not");

    // Ada's sessions on B (native) and C (native and the Space7 app); bob's on C.
    let mut on_b = b.stream(&ada).await;
    let mut on_c = n3.stream(&ada).await;
    let mut bob_on_c = n3.stream(&bob).await;
    let mut app_on_c = sio::SioPeer::space7(n3, Some(&ada), Some(&space)).await;
    app_on_c.connected().await;
    eventually(
        "ada's and bob's sessions on C subscribed",
        Duration::from_secs(10),
        || async { (user_subscriptions(n3).await == 3).then_some(()) },
    )
    .await;

    // Through A, which forwards to the owner B.
    let (st, r) = a.appreciate(&bob, &space, &mid).await;
    assert_eq!((st, r["appreciated"].clone()), (200, json!(true)), "{r}");
    let mut pushed = Vec::new();
    for ws in [&mut on_b, &mut on_c] {
        let f = ws.next_matching(|v| v["type"] == "notification").await;
        assert_eq!(f["notification"]["user_id"], "cn-ada", "{f}");
        assert_eq!(f["notification"]["type"], "message_appreciated");
        assert_eq!(f["notification"]["reference_id"], mid.as_str());
        pushed.push(f["notification"].clone());
    }
    assert_eq!(
        pushed[0], pushed[1],
        "one notification, the same on every node"
    );
    let n = app_on_c.event("notification").await;
    assert_eq!(n, pushed[0]);

    // Every node lists the same notifications; read through C.
    let mut listed: Vec<Value> = Vec::new();
    for s in [a, b, n3] {
        listed.push(s.get_json(&ada, "/api/notifications").await);
    }
    for l in &listed {
        assert_eq!(l["notifications"], json!([pushed[0].clone()]), "{l}");
        assert_eq!(
            (l["total"].clone(), l["unreadCount"].clone()),
            (json!(1), json!(1))
        );
    }
    let r = n3
        .http
        .put(n3.url(&format!(
            "/api/notifications/{}/read",
            pushed[0]["id"].as_u64().unwrap()
        )))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for s in [a, b, n3] {
        assert_eq!(
            s.get_json(&ada, "/api/notifications").await["unreadCount"],
            0
        );
    }

    // Bob's session on C got none of ada's: its first notification is its own.
    let (st, _) = a.send_text(&ada, &space, "thanks").await;
    assert_eq!(st, 201);
    let r = a
        .http
        .post(a.url(&format!("/v1/spaces/{space}/messages")))
        .bearer_auth(&ada)
        .json(&json!({"content": "@bob", "mentions": ["cn-bob"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let f = bob_on_c
        .next_matching(|v| v["type"] == "notification")
        .await;
    assert_eq!(f["notification"]["user_id"], "cn-bob", "{f}");
    assert_eq!(f["notification"]["type"], "mention");
}
