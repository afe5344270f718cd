//! Black-box tests of presence (issue 12): `presence` events to a space's subscribers, explicit
//! statuses, idle and offline by timeout, `GET /v1/spaces/{id}/presence`, counts above
//! `--presence-max-subscribers`, access, and Socket.IO. Run on both stores
//! (`SPACECAST_TEST_STORE=cql` for the CQL one).

mod common;
#[path = "common/sio.rs"]
mod sio;

use std::time::Duration;

use common::{Server, Ws, assert_json_error, eventually, token};
use serde_json::{Value, json};
use sio::SioPeer;

fn id(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_owned()
}

/// The next `presence` frame about `user` in `space`.
async fn presence_of(ws: &mut Ws, space: &str, user: &str) -> Value {
    ws.next_matching_all(|v| {
        v["type"] == "presence" && v["space_id"] == space && v["user_id"] == user
    })
    .await
}

async fn list(s: &Server, tok: &str, space: &str, query: &str) -> Value {
    s.get_json(tok, &format!("/v1/spaces/{space}/presence{query}"))
        .await
}

/// `user`'s status in `GET …/presence` (all pages), `None` when not listed.
async fn listed_status(s: &Server, tok: &str, space: &str, user: &str) -> Option<String> {
    let body = list(s, tok, space, "?limit=200").await;
    body["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|e| e["user_id"] == user)
        .map(|e| e["status"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn joins_statuses_and_leaves_reach_other_subscribers_and_the_list() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("pr-ada"), token("pr-bob"));
    let space = id(&s.create_space(&ada, "presence").await, "space_id");

    let mut a = s.stream(&ada).await;
    a.join(&space, None).await;
    // Ada sees herself come online (every subscriber gets the change, hers included).
    let f = presence_of(&mut a, &space, "pr-ada").await;
    assert_eq!(f["status"], "online");
    assert_eq!(f["username"], "name-pr-ada");

    let mut b = s.stream(&bob).await;
    b.join(&space, None).await;
    let f = presence_of(&mut a, &space, "pr-bob").await;
    assert_eq!(f["status"], "online", "{f}");
    let body = list(&s, &ada, &space, "").await;
    assert_eq!(body["online"], 2, "{body}");
    assert_eq!(
        body["data"],
        json!([
            {"user_id": "pr-ada", "username": "name-pr-ada", "status": "online"},
            {"user_id": "pr-bob", "username": "name-pr-bob", "status": "online"},
        ])
    );
    assert_eq!(body["next_cursor"], Value::Null);

    // Explicit statuses, each one change.
    for status in ["busy", "idle", "online", "offline"] {
        b.send_json(json!({"type": "presence", "status": status}))
            .await;
        let f = presence_of(&mut a, &space, "pr-bob").await;
        assert_eq!(f["status"], status);
    }
    // Appearing offline: not listed.
    assert_eq!(listed_status(&s, &ada, &space, "pr-bob").await, None);
    b.send_json(json!({"type": "presence", "status": "busy"}))
        .await;
    assert_eq!(
        presence_of(&mut a, &space, "pr-bob").await["status"],
        "busy"
    );
    // A second session of bob, online: bob is online (online beats busy).
    let mut b2 = s.stream(&bob).await;
    b2.join(&space, None).await;
    assert_eq!(
        presence_of(&mut a, &space, "pr-bob").await["status"],
        "online"
    );
    // It leaves: busy again; the first closes: offline, at once.
    b2.send_json(json!({"type": "leave", "space_id": space}))
        .await;
    assert_eq!(
        presence_of(&mut a, &space, "pr-bob").await["status"],
        "busy"
    );
    drop(b);
    assert_eq!(
        presence_of(&mut a, &space, "pr-bob").await["status"],
        "offline"
    );
    let body = list(&s, &ada, &space, "").await;
    assert_eq!(body["online"], 1, "{body}");

    // A bad status is refused, the session stays.
    a.send_json(json!({"type": "presence", "status": "away"}))
        .await;
    let e = a.next_matching(|v| v["type"] == "error").await;
    assert_eq!(e["code"], "invalid_frame");
    a.send_json(json!({"type": "heartbeat"})).await;
    a.send_json(json!({"type": "presence", "status": "busy"}))
        .await;
    assert_eq!(
        presence_of(&mut a, &space, "pr-ada").await["status"],
        "busy"
    );
}

#[tokio::test]
async fn silent_sessions_go_idle_then_offline_and_come_back_with_a_frame() {
    let s = Server::start(&["--presence-idle-after", "1s", "--presence-timeout", "3s"]).await;
    let (ada, bob) = (token("pt-ada"), token("pt-bob"));
    let space = id(&s.create_space(&ada, "timeouts").await, "space_id");
    let mut a = s.stream(&ada).await;
    a.join(&space, None).await;
    let mut b = s.stream(&bob).await;
    b.join(&space, None).await;
    assert_eq!(
        presence_of(&mut a, &space, "pt-bob").await["status"],
        "online"
    );
    // Bob says nothing: idle, then offline (while connected).
    assert_eq!(
        presence_of(&mut a, &space, "pt-bob").await["status"],
        "idle"
    );
    assert_eq!(
        presence_of(&mut a, &space, "pt-bob").await["status"],
        "offline"
    );
    assert_eq!(listed_status(&s, &ada, &space, "pt-bob").await, None);
    // A heartbeat brings him back, idle (no activity); typing is activity: online.
    b.send_json(json!({"type": "heartbeat"})).await;
    assert_eq!(
        presence_of(&mut a, &space, "pt-bob").await["status"],
        "idle"
    );
    b.send_json(json!({"type": "typing", "space_id": space}))
        .await;
    assert_eq!(
        presence_of(&mut a, &space, "pt-bob").await["status"],
        "online"
    );
    assert_eq!(
        listed_status(&s, &ada, &space, "pt-bob").await.as_deref(),
        Some("online")
    );
    // Without activity he goes idle again.
    assert_eq!(
        presence_of(&mut a, &space, "pt-bob").await["status"],
        "idle"
    );
}

#[tokio::test]
async fn the_list_paginates_by_user_id_and_validates_its_query() {
    let s = Server::start(&[]).await;
    let ada = token("pp-ada");
    let space = id(&s.create_space(&ada, "pages").await, "space_id");
    let mut streams = Vec::new();
    for i in 0..5 {
        let t = token(&format!("pp-u{i}"));
        if i > 0 {
            assert_eq!(s.join(&t, &space).await.status(), 200);
        }
        let mut ws = s.stream(&t).await;
        ws.join(&space, None).await;
        streams.push(ws);
    }
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let body = list(&s, &ada, &space, &query).await;
        assert_eq!(body["online"], 5);
        let data = body["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|e| id(e, "user_id")));
        match body["next_cursor"].as_str() {
            Some(c) => query = format!("?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["pp-u0", "pp-u1", "pp-u2", "pp-u3", "pp-u4"]);
    for (q, code) in [
        ("?limit=0", "invalid_pagination"),
        ("?limit=201", "invalid_pagination"),
        ("?cursor=nope", "invalid_cursor"),
    ] {
        let res = s
            .http
            .get(s.url(&format!("/v1/spaces/{space}/presence{q}")))
            .bearer_auth(&ada)
            .send()
            .await
            .unwrap();
        assert_json_error(res, 400, code).await;
    }
    let res = s
        .http
        .get(s.url(&format!("/v1/spaces/{space}/presence")))
        .send()
        .await
        .unwrap();
    assert_json_error(res, 401, "unauthenticated").await;
    drop(streams);
}

#[tokio::test]
async fn a_private_space_is_listed_only_to_its_members() {
    let s = Server::start(&[]).await;
    let (ada, eve) = (token("pv-ada"), token("pv-eve"));
    let space = id(
        &s.create_space_with(&ada, json!({"title": "secret", "visibility": "private"}))
            .await,
        "space_id",
    );
    let mut a = s.stream(&ada).await;
    a.join(&space, None).await;
    presence_of(&mut a, &space, "pv-ada").await;
    assert_eq!(list(&s, &ada, &space, "").await["online"], 1);
    for path in [
        format!("/v1/spaces/{space}/presence"),
        format!("/v1/spaces/{}/presence", uuid::Uuid::now_v7()),
    ] {
        let res = s
            .http
            .get(s.url(&path))
            .bearer_auth(&eve)
            .send()
            .await
            .unwrap();
        assert_json_error(res, 404, "not_found").await;
    }
    // Nor can a non-member put herself in it: the join is refused.
    let mut e = s.stream(&eve).await;
    assert_eq!(e.join(&space, None).await["type"], "error");
    assert_eq!(list(&s, &ada, &space, "").await["online"], 1);
}

#[tokio::test]
async fn above_the_threshold_subscribers_get_counts_and_no_presence_events() {
    let s = Server::start(&[
        "--presence-max-subscribers",
        "2",
        "--presence-count-interval",
        "300ms",
    ])
    .await;
    let (ada, bob, cat) = (token("pc-ada"), token("pc-bob"), token("pc-cat"));
    let space = id(&s.create_space(&ada, "big").await, "space_id");
    let mut a = s.stream(&ada).await;
    a.join(&space, None).await;
    let mut b = s.stream(&bob).await;
    b.join(&space, None).await;
    assert_eq!(
        presence_of(&mut a, &space, "pc-bob").await["status"],
        "online"
    );
    // A third subscriber: above 2, counts only.
    let mut c = s.stream(&cat).await;
    c.join(&space, None).await;
    for ws in [&mut a, &mut b, &mut c] {
        let f = ws
            .next_matching_all(|v| v["type"] == "presence_count" && v["online"] == 3)
            .await;
        assert_eq!(f["space_id"], space.as_str());
    }
    // Bob goes busy, then leaves: no presence event, the count follows.
    b.send_json(json!({"type": "presence", "status": "busy"}))
        .await;
    b.send_json(json!({"type": "presence", "status": "offline"}))
        .await;
    let frames = {
        let mut frames = Vec::new();
        loop {
            let v = c.next_json_all().await.expect("open");
            let done = v["type"] == "presence_count" && v["online"] == 2;
            frames.push(v);
            if done {
                break frames;
            }
        }
    };
    assert!(
        frames.iter().all(|v| v["type"] != "presence"),
        "no presence events above the threshold: {frames:?}"
    );
    assert_eq!(list(&s, &ada, &space, "").await["online"], 2);
}

#[tokio::test]
async fn socketio_clients_get_presence_events_and_choose_their_status() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("ps-ada"), token("ps-bob"));
    let space = id(&s.create_space(&ada, "sio").await, "space_id");
    assert_eq!(s.join(&bob, &space).await.status(), 200);
    let mut app = SioPeer::space7(&s, Some(&ada), Some(&space)).await;
    app.connected().await;
    app.joined(&space).await;
    let mut b = s.stream(&bob).await;
    b.join(&space, None).await;
    let e = app
        .next("presence of bob", |v| {
            v["kind"] == "event" && v["event"] == "presence" && v["data"]["user_id"] == "ps-bob"
        })
        .await;
    assert_eq!(e["data"]["status"], "online");
    assert_eq!(e["data"]["space_id"], space.as_str());
    // Ada (Socket.IO) chooses busy: the native subscriber sees it.
    app.emit("presence", json!("busy")).await;
    assert_eq!(
        presence_of(&mut b, &space, "ps-ada").await["status"],
        "busy"
    );
    // A status the server does not know is refused; the socket stays.
    app.emit("presence", json!("away")).await;
    assert_eq!(app.event("spacecast_error").await["code"], "invalid_event");
    app.emit("presence", json!({"status": "online"})).await;
    assert_eq!(
        presence_of(&mut b, &space, "ps-ada").await["status"],
        "online"
    );
    app.exit().await;
    assert_eq!(
        presence_of(&mut b, &space, "ps-ada").await["status"],
        "offline"
    );
    eventually(
        "ada gone from the list",
        Duration::from_secs(10),
        || async {
            listed_status(&s, &bob, &space, "ps-ada")
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
}
