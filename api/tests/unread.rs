//! Black-box tests of read markers, unread counts and the inbox (issue 12):
//! `POST /v1/spaces/{id}/read`, `GET /v1/me/unread`, `GET /v1/me/spaces`. Run on both stores
//! (`SPACECAST_TEST_STORE=cql` for the CQL one).

mod common;
#[path = "common/sio.rs"]
mod sio;

use std::collections::HashSet;
use std::time::Duration;

use common::{Server, assert_json_error, eventually, token};
use serde_json::{Value, json};
use sio::SioPeer;

async fn mark(s: &Server, tok: &str, space: &str, body: Value) -> reqwest::Response {
    s.http
        .post(s.url(&format!("/v1/spaces/{space}/read")))
        .bearer_auth(tok)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn mark_ok(s: &Server, tok: &str, space: &str, body: Value) -> Value {
    let res = mark(s, tok, space, body.clone()).await;
    assert_eq!(res.status(), 200, "mark {body}");
    res.json().await.unwrap()
}

/// A reply through `/v1` (201).
async fn reply(s: &Server, tok: &str, space: &str, parent: &str, text: &str) -> Value {
    let res = s
        .http
        .post(s.url(&format!("/v1/spaces/{space}/messages")))
        .bearer_auth(tok)
        .json(&json!({"content": text, "parent_id": parent}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "reply");
    res.json().await.unwrap()
}

async fn send(s: &Server, tok: &str, space: &str, text: &str) -> Value {
    let (st, m) = s.send_text(tok, space, text).await;
    assert_eq!(st, 201, "{m}");
    m
}

fn id(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_owned()
}

/// The caller's entry for `space` in `GET /v1/me/unread`, and the total.
async fn unread_of(s: &Server, tok: &str, space: &str) -> (u64, Value) {
    let body = s.get_json(tok, "/v1/me/unread").await;
    let spaces = body["spaces"].as_array().expect("spaces");
    let sum: u64 = spaces.iter().map(|x| x["unread"].as_u64().unwrap()).sum();
    assert_eq!(
        body["total_unread"].as_u64(),
        Some(sum),
        "total is the sum: {body}"
    );
    let entry = spaces
        .iter()
        .find(|x| x["space_id"] == space)
        .unwrap_or_else(|| panic!("{space} in {body}"))
        .clone();
    (sum, entry)
}

#[tokio::test]
async fn marks_move_forward_count_top_level_messages_and_validate_their_input() {
    let s = Server::start(&[]).await;
    let (ada, bob, carol) = (token("ur-ada"), token("ur-bob"), token("ur-carol"));
    let space = id(&s.create_space(&ada, "unread").await, "space_id");
    let first = send(&s, &ada, &space, "before bob").await;
    assert_eq!(s.join(&bob, &space).await.status(), 200);
    let (_, e) = unread_of(&s, &bob, &space).await;
    assert_eq!(e["unread"], 0, "nothing is unread on join: {e}");
    assert_eq!(e["last_read_seq"], first["seq"]);

    let t1 = send(&s, &ada, &space, "one").await;
    let r1 = reply(&s, &ada, &space, &id(&t1, "message_id"), "a reply").await;
    let t2 = send(&s, &ada, &space, "two").await;
    let _r2 = reply(&s, &ada, &space, &id(&t1, "message_id"), "another").await;
    let t3 = send(&s, &ada, &space, "three").await;
    let (total, e) = unread_of(&s, &bob, &space).await;
    assert_eq!(e["unread"], 3, "replies are not counted: {e}");
    assert_eq!(total, 3);
    let (_, e) = unread_of(&s, &ada, &space).await;
    assert_eq!(e["unread"], 0, "her own sends mark the space read");
    assert_eq!(e["last_read_seq"], t3["seq"]);

    // By seq (a reply's: two top-level messages up to it), by message, never back.
    let m = mark_ok(&s, &bob, &space, json!({"seq": r1["seq"]})).await;
    assert_eq!(
        m,
        json!({"space_id": space, "last_read_seq": r1["seq"], "unread": 2})
    );
    let m = mark_ok(&s, &bob, &space, json!({"message_id": t2["message_id"]})).await;
    assert_eq!(
        (m["last_read_seq"].clone(), m["unread"].clone()),
        (t2["seq"].clone(), json!(1))
    );
    let m = mark_ok(&s, &bob, &space, json!({"seq": 1})).await;
    assert_eq!(m["last_read_seq"], t2["seq"], "a mark never moves back");
    let (_, e) = unread_of(&s, &bob, &space).await;
    assert_eq!(
        (e["unread"].clone(), e["last_read_seq"].clone()),
        (json!(1), t2["seq"].clone())
    );
    // Above the head: the head.
    let m = mark_ok(&s, &bob, &space, json!({"seq": 1_000_000_000u64})).await;
    assert_eq!(
        (m["last_read_seq"].clone(), m["unread"].clone()),
        (t3["seq"].clone(), json!(0))
    );
    // Bob's own send moves his marker to it.
    let t4 = send(&s, &ada, &space, "four").await;
    assert_eq!(unread_of(&s, &bob, &space).await.1["unread"], 1);
    let mine = send(&s, &bob, &space, "bob's").await;
    let (_, e) = unread_of(&s, &bob, &space).await;
    assert_eq!(
        (e["unread"].clone(), e["last_read_seq"].clone()),
        (json!(0), mine["seq"].clone())
    );
    assert!(mine["seq"].as_u64() > t4["seq"].as_u64());

    // Input: exactly one of seq / message_id.
    for bad in [
        json!({}),
        json!({"seq": -1}),
        json!({"seq": 1.5}),
        json!({"seq": "3"}),
        json!({"message_id": "not-a-uuid"}),
        json!({"seq": 1, "message_id": t1["message_id"]}),
        json!([1]),
    ] {
        assert_json_error(
            mark(&s, &bob, &space, bad).await,
            400,
            "invalid_read_marker",
        )
        .await;
    }
    let res = s
        .post_body(
            &bob,
            &format!("/v1/spaces/{space}/read"),
            "application/json",
            "{",
        )
        .await;
    assert_json_error(res, 400, "invalid_json").await;
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_json_error(
        mark(&s, &bob, &space, json!({"message_id": unknown})).await,
        404,
        "not_found",
    )
    .await;
    assert_json_error(
        mark(&s, &bob, &unknown, json!({"seq": 1})).await,
        404,
        "not_found",
    )
    .await;
    assert_json_error(
        mark(&s, &bob, "nope", json!({"seq": 1})).await,
        404,
        "not_found",
    )
    .await;
    let res = s
        .http
        .post(s.url(&format!("/v1/spaces/{space}/read")))
        .json(&json!({"seq": 1}))
        .send()
        .await
        .unwrap();
    assert_json_error(res, 401, "unauthenticated").await;
    for path in ["/v1/me/unread", "/v1/me/spaces"] {
        let res = s.http.get(s.url(path)).send().await.unwrap();
        assert_json_error(res, 401, "unauthenticated").await;
    }

    // Members only: 403 in a public space, 404 (as if unknown) in a private one.
    assert_json_error(
        mark(&s, &carol, &space, json!({"seq": 1})).await,
        403,
        "not_a_member",
    )
    .await;
    let private = id(
        &s.create_space_with(&ada, json!({"title": "secret", "visibility": "private"}))
            .await,
        "space_id",
    );
    send(&s, &ada, &private, "hush").await;
    assert_json_error(
        mark(&s, &carol, &private, json!({"seq": 1})).await,
        404,
        "not_found",
    )
    .await;
    let carols = s.get_json(&carol, "/v1/me/unread").await;
    assert_eq!(
        carols,
        json!({"total_unread": 0, "spaces": []}),
        "a non-member sees nothing"
    );
    let inbox = s.get_json(&carol, "/v1/me/spaces").await;
    assert_eq!(inbox, json!({"data": [], "next_cursor": null}));
}

#[tokio::test]
async fn the_inbox_lists_unread_first_then_recent_and_pages_without_duplicates_or_gaps() {
    let s = Server::start(&[]).await;
    let (me, other) = (token("ib-me"), token("ib-other"));
    // Seven spaces: the other user creates them, I join; messages in some after I joined.
    let mut spaces = Vec::new();
    for i in 0..7 {
        let sp = id(
            &s.create_space(&other, &format!("inbox {i}")).await,
            "space_id",
        );
        assert_eq!(s.join(&me, &sp).await.status(), 200);
        spaces.push(sp);
    }
    // Unread in 1, 3, 5 (5 most recently); I post in 2 (read, recent); 0, 4, 6 quiet.
    send(&s, &other, &spaces[1], "b").await;
    send(&s, &other, &spaces[3], "d").await;
    send(&s, &me, &spaces[2], "mine").await;
    let long: String = "é".repeat(99) + "😀" + "tail beyond the preview";
    let last = send(&s, &other, &spaces[5], &long).await;

    // Bad pages.
    for q in ["limit=0", "limit=101", "limit=x"] {
        let res = s
            .http
            .get(s.url(&format!("/v1/me/spaces?{q}")))
            .bearer_auth(&me)
            .send()
            .await
            .unwrap();
        assert_json_error(res, 400, "invalid_pagination").await;
    }
    let res = s
        .http
        .get(s.url("/v1/me/spaces?cursor=Sgarbage"))
        .bearer_auth(&me)
        .send()
        .await
        .unwrap();
    assert_json_error(res, 400, "invalid_cursor").await;

    let mut seen = Vec::new();
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/v1/me/spaces?limit=2&cursor={c}"),
            None => "/v1/me/spaces?limit=2".to_owned(),
        };
        let page = s.get_json(&me, &path).await;
        let data = page["data"].as_array().expect("data");
        assert!(data.len() <= 2, "{page}");
        for item in data {
            seen.push(id(&item["space"], "space_id"));
            items.push(item.clone());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates: {seen:?}");
    assert_eq!(unique, spaces.iter().collect::<HashSet<_>>(), "no gaps");
    // Unread first (5, newest activity, then 3, then 1), then the rest by activity: 2 (my post),
    // then the quiet ones newest space first (creation time).
    let expected: Vec<&String> = [5, 3, 1, 2, 6, 4, 0].iter().map(|&i| &spaces[i]).collect();
    assert_eq!(seen.iter().collect::<Vec<_>>(), expected);
    let top = &items[0];
    assert_eq!(top["unread"], 1);
    assert_eq!(top["head_seq"], last["seq"]);
    assert_eq!(
        top["space"]["role"], "member",
        "the /v1 space shape, with my role: {top}"
    );
    let lm = &top["last_message"];
    assert_eq!(lm["message_id"], last["message_id"]);
    assert_eq!(lm["seq"], last["seq"]);
    assert_eq!(lm["sender_id"], "ib-other");
    assert_eq!(lm["sender"]["user_id"], "ib-other");
    let preview = lm["preview"].as_str().unwrap();
    assert_eq!(preview.chars().count(), 100, "cut by chars, not bytes");
    assert!(
        preview.ends_with('😀'),
        "never inside a character: {preview}"
    );
    let quiet = items
        .iter()
        .find(|i| i["space"]["space_id"] == spaces[0])
        .unwrap();
    assert_eq!(quiet["last_message"], Value::Null);
    assert_eq!(
        (quiet["unread"].clone(), quiet["head_seq"].clone()),
        (json!(0), json!(0))
    );

    // Reading a space moves it out of the unread group.
    mark_ok(&s, &me, &spaces[5], json!({"seq": last["seq"]})).await;
    let page = s.get_json(&me, "/v1/me/spaces?limit=100").await;
    let order: Vec<String> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| id(&i["space"], "space_id"))
        .collect();
    assert_eq!(order[..2], [spaces[3].clone(), spaces[1].clone()]);
    assert_eq!(
        order[2], spaces[5],
        "then by activity: 5 has the newest message"
    );
    assert_eq!(page["next_cursor"], Value::Null);
    let body = s.get_json(&me, "/v1/me/unread").await;
    assert_eq!(body["total_unread"], 2);
    assert_eq!(
        body["spaces"].as_array().unwrap().len(),
        7,
        "spaces at 0 are listed too"
    );
}

/// Local sessions of the user's channel on `s` (the gauge `spacecast_user_subscriptions`).
async fn user_subscriptions(s: &Server) -> u64 {
    s.metric("spacecast_user_subscriptions").await
}

#[tokio::test]
async fn a_mark_reaches_every_session_of_its_user_live_and_no_other() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("rm-live-ada"), token("rm-live-bob"));
    let space = s.create_space(&ada, "Live marks").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.join(&bob, &space).await.status(), 200);
    let m1 = send(&s, &bob, &space, "one").await;
    send(&s, &bob, &space, "two").await;

    // Ada: two native streams (one joined to the space, one not) and the Space7 app; bob: a
    // native stream joined to the space.
    let mut a1 = s.stream(&ada).await;
    a1.join(&space, None).await;
    let mut a2 = s.stream(&ada).await;
    let mut app = SioPeer::space7(&s, Some(&ada), None).await;
    app.connected().await;
    let mut b = s.stream(&bob).await;
    b.join(&space, None).await;
    eventually(
        "4 user-channel subscriptions",
        Duration::from_secs(10),
        || async { (user_subscriptions(&s).await == 4).then_some(()) },
    )
    .await;

    let seq1 = m1["seq"].as_u64().unwrap();
    let marked = mark_ok(
        &s,
        &ada,
        &space,
        json!({"message_id": id(&m1, "message_id")}),
    )
    .await;
    assert_eq!(marked["last_read_seq"], seq1);
    for ws in [&mut a1, &mut a2] {
        let f = ws.next_matching(|v| v["type"] == "read_marker").await;
        assert_eq!(f["space_id"], space.as_str());
        assert_eq!(f["seq"], seq1);
        assert_eq!(f["unread"], 1, "{f}");
    }
    let e = app.event("read_marker").await;
    assert_eq!(
        (e["space_id"].clone(), e["seq"].clone()),
        (json!(space), json!(seq1))
    );

    // A mark that moves nothing sends nothing: the next frame ada's sessions get is the next move.
    mark_ok(&s, &ada, &space, json!({"seq": 1})).await;
    let head = mark_ok(&s, &ada, &space, json!({"seq": 1_000_000})).await["last_read_seq"].clone();
    let f = a2.next_matching(|v| v["type"] == "read_marker").await;
    assert_eq!((f["seq"].clone(), f["unread"].clone()), (head, json!(0)));

    // Bob's session got none of ada's: the first read_marker it sees is its own. (Bob's sends
    // moved his marker to them; ada's send gives him something to read.)
    send(&s, &ada, &space, "three").await;
    let bobs = mark_ok(&s, &bob, &space, json!({"seq": 1_000_000})).await;
    let f = b.next_matching(|v| v["type"] == "read_marker").await;
    assert_eq!(f["seq"], bobs["last_read_seq"], "{f}");
    assert_ne!(f["seq"], json!(seq1), "not ada's mark: {f}");
}
