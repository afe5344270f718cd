//! Black-box tests of members and roles on `/v1` (issue 10): the power rule, member pages, kicks,
//! leaving, the last admin, the posting permission on every send surface, and a removal ending
//! a private space's realtime subscriptions (native stream and Socket.IO).

mod common;
#[path = "common/sio.rs"]
mod sio;

use std::collections::HashSet;

use common::{Server, assert_json_error, token};
use serde_json::{Value, json};
use sio::SioPeer;

async fn space_of(s: &Server, owner: &str, visibility: &str) -> String {
    s.create_space_with(
        owner,
        json!({"title": "members", "description": "roles", "visibility": visibility}),
    )
    .await["space_id"]
        .as_str()
        .expect("space_id")
        .to_owned()
}

/// `PUT …/members/{uid}` `{power_level}` by `tok`: status and body.
async fn put_power(s: &Server, tok: &str, space: &str, uid: &str, level: Value) -> (u16, Value) {
    let r = s
        .http
        .put(s.url(&format!("/v1/spaces/{space}/members/{uid}")))
        .bearer_auth(tok)
        .json(&json!({ "power_level": level }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `DELETE …/members/{uid}` by `tok`: status and body (`null` for 204).
async fn delete_member(s: &Server, tok: &str, space: &str, uid: &str) -> (u16, Value) {
    let r = s
        .http
        .delete(s.url(&format!("/v1/spaces/{space}/members/{uid}")))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn patch_posting(s: &Server, tok: &str, space: &str, p: &str) -> (u16, Value) {
    let r = s
        .http
        .patch(s.url(&format!("/v1/spaces/{space}")))
        .bearer_auth(tok)
        .json(&json!({ "posting_permission": p }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get_status(s: &Server, tok: &str, path: &str) -> (u16, Value) {
    let r = s
        .http
        .get(s.url(path))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Every member, following `next_cursor` with pages of `limit`.
async fn all_members(s: &Server, tok: &str, space: &str, limit: usize) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("/v1/spaces/{space}/members?limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = s.get_json(tok, &url).await;
        pages.push(page["data"].as_array().expect("data").clone());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return pages,
        }
        assert!(pages.len() < 100, "paging does not end");
    }
}

fn ids(members: &[Value]) -> Vec<String> {
    members
        .iter()
        .map(|m| m["user_id"].as_str().expect("user_id").to_owned())
        .collect()
}

/// Who may set what: a level above both the current and the new one; levels are 0, 50, 100.
#[tokio::test]
async fn power_levels_follow_the_rule() {
    let s = Server::start(&[]).await;
    let (ada, bob, cy) = (token("pw-ada"), token("pw-bob"), token("pw-cy"));
    let space = space_of(&s, &ada, "public").await;
    let (st, m) = put_power(&s, &ada, &space, "pw-bob", json!(50)).await;
    assert_eq!(st, 200, "admin makes a non-member a moderator: {m}");
    assert_eq!(m["power_level"], 50);
    assert_eq!(m["username"], "pw-bob", "added by id: the id is the name");
    for key in ["user_id", "profile_picture", "joined_at"] {
        assert!(m.get(key).is_some(), "{key} in {m}");
    }
    let (st, _) = put_power(&s, &ada, &space, "pw-cy", json!(0)).await;
    assert_eq!(st, 200, "admin adds a member");
    // Their first send stores the profile their token gives.
    assert_eq!(s.send_text(&cy, &space, "hi").await.0, 201);
    let m = s
        .get_json(&ada, &format!("/v1/spaces/{space}/members/pw-cy"))
        .await;
    assert_eq!(
        (&m["username"], &m["profile_picture"]),
        (
            &json!("name-pw-cy"),
            &json!("http://pics.example/pw-cy.png")
        ),
        "{m}"
    );
    // (caller, target, level, status, code)
    let table: &[(&str, &str, i64, u16, &str)] = &[
        (&ada, "pw-dan", 100, 403, "forbidden"), // nobody grants their own level
        (&ada, "pw-ada", 50, 403, "forbidden"),  // nor changes their own
        (&bob, "pw-bob", 0, 403, "forbidden"),   // a moderator neither
        (&bob, "pw-cy", 50, 403, "forbidden"),   // a moderator grants 0 only
        (&bob, "pw-ada", 0, 403, "forbidden"),   // nobody changes an admin
        (&cy, "pw-bob", 0, 403, "forbidden"),    // a member changes nobody
        (&cy, "pw-eve", 0, 403, "forbidden"),    // nor adds anyone
        (&ada, "pw-cy", 7, 400, "invalid_power_level"),
        (&ada, "pw-cy", -50, 400, "invalid_power_level"),
    ];
    for (caller, target, level, status, code) in table {
        let (st, body) = put_power(&s, caller, &space, target, json!(level)).await;
        assert_eq!(
            (st, body["code"].as_str().unwrap_or_default()),
            (*status, *code),
            "{target} to {level}: {body}"
        );
    }
    let (st, body) = put_power(&s, &ada, &space, "pw-cy", json!("50")).await;
    assert_eq!((st, &body["code"]), (400, &json!("invalid_power_level")));
    // Allowed: a moderator adds a member at 0; the admin moves a moderator down and back up.
    assert_eq!(put_power(&s, &bob, &space, "pw-eve", json!(0)).await.0, 200);
    assert_eq!(put_power(&s, &ada, &space, "pw-bob", json!(0)).await.0, 200);
    let (st, m) = put_power(&s, &ada, &space, "pw-bob", json!(50)).await;
    assert_eq!((st, &m["power_level"]), (200, &json!(50)));
    // A caller who is not a member: 403 in a public space, 404 in a private one.
    let out = token("pw-out");
    let (st, body) = put_power(&s, &out, &space, "pw-cy", json!(0)).await;
    assert_eq!((st, &body["code"]), (403, &json!("not_a_member")));
    let private = space_of(&s, &ada, "private").await;
    let (st, body) = put_power(&s, &out, &private, "pw-out", json!(0)).await;
    assert_eq!((st, &body["code"]), (404, &json!("not_found")));
    // The levels read back.
    let levels: Vec<(String, i64)> = all_members(&s, &ada, &space, 100)
        .await
        .concat()
        .iter()
        .map(|m| {
            (
                m["user_id"].as_str().unwrap().to_owned(),
                m["power_level"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        levels,
        vec![
            ("pw-ada".to_owned(), 100),
            ("pw-bob".to_owned(), 50),
            ("pw-cy".to_owned(), 0),
            ("pw-eve".to_owned(), 0)
        ]
    );
}

/// Member pages list every member exactly once, by user id; bad pages get clear errors.
#[tokio::test]
async fn member_pages_list_everyone_once() {
    let s = Server::start(&[]).await;
    let ada = token("pg-ada");
    let space = space_of(&s, &ada, "private").await;
    let mut expected = vec!["pg-ada".to_owned()];
    for i in 0..8 {
        let uid = format!("pg-u{i}");
        assert_eq!(put_power(&s, &ada, &space, &uid, json!(0)).await.0, 200);
        expected.push(uid);
    }
    expected.sort();
    for limit in [1, 3, 9, 100] {
        let pages = all_members(&s, &ada, &space, limit).await;
        assert!(pages.iter().all(|p| p.len() <= limit));
        let all = ids(&pages.concat());
        assert_eq!(all, expected, "limit {limit}: everyone once, by user id");
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), all.len());
    }
    let first = s
        .get_json(&ada, &format!("/v1/spaces/{space}/members"))
        .await;
    assert_eq!(
        first["data"].as_array().unwrap().len(),
        9,
        "default limit 50"
    );
    assert!(first["next_cursor"].is_null());
    let one = s
        .get_json(
            &token("pg-u3"),
            &format!("/v1/spaces/{space}/members/pg-u3"),
        )
        .await;
    assert_eq!(one["user_id"], "pg-u3");
    for (query, code) in [
        ("limit=0", "invalid_pagination"),
        ("limit=101", "invalid_pagination"),
        ("cursor=nope", "invalid_cursor"),
    ] {
        let res = s
            .http
            .get(s.url(&format!("/v1/spaces/{space}/members?{query}")))
            .bearer_auth(&ada)
            .send()
            .await
            .unwrap();
        assert_json_error(res, 400, code).await;
    }
    let (st, body) = get_status(&s, &ada, &format!("/v1/spaces/{space}/members/nobody")).await;
    assert_eq!((st, &body["code"]), (404, &json!("member_not_found")));
    // A private space's members are its members' business.
    let (st, body) = get_status(&s, &token("pg-out"), &format!("/v1/spaces/{space}/members")).await;
    assert_eq!((st, &body["code"]), (404, &json!("not_found")));
}

/// Kicks need power ≥ 50 above the member's; leaving is free except for the last admin; the
/// member count follows.
#[tokio::test]
async fn kicks_leaving_and_the_last_admin() {
    let s = Server::start(&[]).await;
    let (ada, bob, cy, dan) = (
        token("k-ada"),
        token("k-bob"),
        token("k-cy"),
        token("k-dan"),
    );
    let space = space_of(&s, &ada, "public").await;
    for (uid, level) in [("k-bob", 50), ("k-cy", 0), ("k-dan", 0)] {
        assert_eq!(put_power(&s, &ada, &space, uid, json!(level)).await.0, 200);
    }
    let count = |v: &Value| v["participant_count"].as_u64().unwrap();
    assert_eq!(
        count(&s.get_json(&ada, &format!("/api/spaces/{space}")).await),
        4
    );
    let (st, b) = delete_member(&s, &cy, &space, "k-dan").await;
    assert_eq!(
        (st, &b["code"]),
        (403, &json!("forbidden")),
        "a member kicks nobody"
    );
    let (st, b) = delete_member(&s, &bob, &space, "k-ada").await;
    assert_eq!(
        (st, &b["code"]),
        (403, &json!("forbidden")),
        "nor a moderator an admin"
    );
    let (st, b) = delete_member(&s, &ada, &space, "k-nobody").await;
    assert_eq!((st, &b["code"]), (404, &json!("member_not_found")));
    let (st, b) = delete_member(&s, &ada, &space, "k-ada").await;
    assert_eq!((st, &b["code"]), (409, &json!("last_admin")), "{b}");
    assert_eq!(
        delete_member(&s, &bob, &space, "k-dan").await.0,
        204,
        "kick"
    );
    assert_eq!(delete_member(&s, &cy, &space, "k-cy").await.0, 204, "leave");
    let (st, b) = delete_member(&s, &cy, &space, "k-cy").await;
    assert_eq!(
        (st, &b["code"]),
        (404, &json!("member_not_found")),
        "left already"
    );
    assert_eq!(
        delete_member(&s, &bob, &space, "k-bob").await.0,
        204,
        "leave"
    );
    assert_eq!(
        count(&s.get_json(&ada, &format!("/api/spaces/{space}")).await),
        1
    );
    assert_eq!(
        ids(&all_members(&s, &ada, &space, 10).await.concat()),
        vec!["k-ada"]
    );
    // The removed can join a public space again; the last member may leave.
    assert_eq!(s.join(&dan, &space).await.status(), 200);
    assert_eq!(delete_member(&s, &dan, &space, "k-dan").await.0, 204);
    assert_eq!(
        delete_member(&s, &ada, &space, "k-ada").await.0,
        204,
        "alone: may leave"
    );
    // The removals are sequenced events, in the space's log.
    let mut ws = s.stream(&ada).await;
    let joined = ws.join(&space, Some(0)).await;
    assert_eq!(joined["type"], "joined", "a public space: {joined}");
    let head = joined["head_seq"].as_u64().unwrap();
    let frames = ws.frames_until_event(&space, head).await;
    let kinds: Vec<&str> = frames
        .iter()
        .filter(|f| f["type"] == "event")
        .map(|f| f["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "member_updated",
            "member_updated",
            "member_updated",
            "member_removed",
            "member_removed",
            "member_removed",
            "member_removed",
            "member_removed"
        ]
    );
    let kick = frames
        .iter()
        .find(|f| f["event"] == "member_removed")
        .unwrap();
    assert_eq!(
        kick["data"],
        json!({"user_id": "k-dan", "by": "k-bob", "left": false})
    );
}

/// With `admins`, a member below 50 gets 403 on every send surface; a moderator posts.
#[tokio::test]
async fn admins_only_posting_is_refused_on_every_surface() {
    let s = Server::start(&[]).await;
    let (ada, bob, cy) = (token("pp-ada"), token("pp-bob"), token("pp-cy"));
    let space = space_of(&s, &ada, "public").await;
    assert_eq!(
        put_power(&s, &ada, &space, "pp-bob", json!(50)).await.0,
        200
    );
    assert_eq!(s.join(&cy, &space).await.status(), 200);
    let (st, b) = patch_posting(&s, &bob, &space, "admins").await;
    assert_eq!(
        (st, &b["code"]),
        (403, &json!("forbidden")),
        "a moderator may not"
    );
    let (st, b) = patch_posting(&s, &ada, &space, "nobody").await;
    assert_eq!(
        (st, &b["code"]),
        (400, &json!("invalid_posting_permission"))
    );
    let (st, b) = patch_posting(&s, &ada, &space, "admins").await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["posting_permission"], "admins");
    assert_eq!(b["space_id"], space.as_str());
    let got = s.get_json(&cy, &format!("/api/spaces/{space}")).await;
    assert_eq!(got["posting_permission"], "admins", "durable");
    // Space7 REST.
    let (st, b) = s.send_text(&cy, &space, "no").await;
    assert_eq!((st, &b["code"]), (403, &json!("forbidden")), "{b}");
    // /v1 REST.
    let r = s
        .http
        .post(s.url(&format!("/v1/spaces/{space}/messages")))
        .bearer_auth(&cy)
        .json(&json!({"content": "no"}))
        .send()
        .await
        .unwrap();
    assert_json_error(r, 403, "forbidden").await;
    // The native stream.
    let mut ws = s.stream(&cy).await;
    assert_eq!(ws.join(&space, None).await["type"], "joined");
    ws.send_json(json!({"type": "send", "space_id": space, "content": "no", "local_id": 1}))
        .await;
    let e = ws
        .next_matching(|v| v["type"] == "error" || v["type"] == "ack")
        .await;
    assert_eq!(
        (&e["type"], &e["code"]),
        (&json!("error"), &json!("forbidden")),
        "{e}"
    );
    // A moderator still posts; and back to everyone.
    assert_eq!(s.send_text(&bob, &space, "mod").await.0, 201);
    assert_eq!(patch_posting(&s, &ada, &space, "everyone").await.0, 200);
    assert_eq!(s.send_text(&cy, &space, "yes").await.0, 201);
    let ev = ws.next_matching(|v| v["event"] == "space_updated").await;
    assert_eq!(ev["data"], json!({"posting_permission": "everyone"}));
}

/// A member kicked from a private space loses it: REST reads 404, the native stream gets the
/// removal then `left` with reason `removed`, Socket.IO gets `left_space` with the reason, and
/// joining again is refused. In a public space a removed member keeps reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_from_a_private_space_ends_every_subscription() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("pk-ada"), token("pk-bob"));
    let space = space_of(&s, &ada, "private").await;
    assert_eq!(put_power(&s, &ada, &space, "pk-bob", json!(0)).await.0, 200);
    assert_eq!(s.send_text(&bob, &space, "hello").await.0, 201);
    let mut ws = s.stream(&bob).await;
    assert_eq!(ws.join(&space, None).await["type"], "joined");
    let mut sio = SioPeer::space7(&s, Some(&bob), Some(&space)).await;
    sio.connected().await;
    sio.joined(&space).await;

    assert_eq!(delete_member(&s, &ada, &space, "pk-bob").await.0, 204);
    let ev = ws.next_matching(|v| v["type"] == "event").await;
    assert_eq!(
        ev["event"], "member_removed",
        "the removal is delivered: {ev}"
    );
    let left = ws.next_json().await.expect("open");
    assert_eq!(
        left,
        json!({"type": "left", "space_id": space, "reason": "removed"})
    );
    let l = sio
        .next("left_space removed", |v| v["event"] == "left_space")
        .await;
    assert_eq!(l["data"], json!({"space_id": space, "reason": "removed"}));
    // Nothing more of the space reaches either.
    assert_eq!(s.send_text(&ada, &space, "secret").await.0, 201);
    let again = ws.join(&space, None).await;
    assert_eq!(
        (&again["type"], &again["code"]),
        (&json!("error"), &json!("not_found"))
    );
    for path in [
        format!("/v1/spaces/{space}/messages"),
        format!("/api/messages/{space}"),
        format!("/v1/spaces/{space}/members"),
        format!("/api/spaces/{space}"),
    ] {
        let (st, _) = get_status(&s, &bob, &path).await;
        assert_eq!(st, 404, "{path}");
    }
    assert!(
        sio.payloads("receive_message")
            .iter()
            .all(|p| p["message"]["content"] != "secret"),
        "{:?}",
        sio.payloads("receive_message")
    );
    sio.exit().await;

    // Public: a removed member keeps reading, and stays subscribed.
    let open = space_of(&s, &ada, "public").await;
    assert_eq!(s.join(&bob, &open).await.status(), 200);
    assert_eq!(ws.join(&open, None).await["type"], "joined");
    assert_eq!(delete_member(&s, &ada, &open, "pk-bob").await.0, 204);
    let ev = ws.next_matching(|v| v["space_id"] == open.as_str()).await;
    assert_eq!(ev["event"], "member_removed");
    let (st, _) = s.send_text(&ada, &open, "still public").await;
    assert_eq!(st, 201);
    let m = ws.next_matching(|v| v["space_id"] == open.as_str()).await;
    assert_eq!(m["event"], "message_created", "still subscribed: {m}");
}

/// Membership changes and the posting permission are durable when answered: after a kill -9 and
/// a restart on the same store, the levels, the removals (also from the user's space list), the
/// member count and the setting are as acknowledged, and the space goes on from there.
#[tokio::test]
async fn member_changes_survive_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (ada, bob, cy) = (token("d-ada"), token("d-bob"), token("d-cy"));
    let mut s = Server::start_on(dir.path(), &[]).await;
    let space = space_of(&s, &ada, "private").await;
    assert_eq!(put_power(&s, &ada, &space, "d-bob", json!(50)).await.0, 200);
    assert_eq!(put_power(&s, &ada, &space, "d-cy", json!(0)).await.0, 200);
    assert_eq!(s.send_text(&cy, &space, "before").await.0, 201);
    assert_eq!(delete_member(&s, &bob, &space, "d-cy").await.0, 204);
    assert_eq!(patch_posting(&s, &ada, &space, "admins").await.0, 200);
    s.kill9().await;

    let s = Server::start_on(dir.path(), &[]).await;
    let members = all_members(&s, &ada, &space, 10).await.concat();
    let levels: Vec<(&str, i64)> = members
        .iter()
        .map(|m| {
            (
                m["user_id"].as_str().unwrap(),
                m["power_level"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(levels, vec![("d-ada", 100), ("d-bob", 50)]);
    let got = s.get_json(&ada, &format!("/api/spaces/{space}")).await;
    assert_eq!(got["posting_permission"], "admins");
    assert_eq!(got["participant_count"], 2);
    let (st, _) = get_status(&s, &cy, &format!("/v1/spaces/{space}/messages")).await;
    assert_eq!(st, 404, "removed: the private space is gone for them");
    let mine = s.get_json(&cy, "/api/spaces/my").await;
    assert_eq!(mine, json!([]), "not in their space list");
    // The space's actor resumes from what is durable: the rules still hold, seqs go on.
    let (st, b) = s.send_text(&bob, &space, "after").await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(
        b["seq"], 6,
        "1 send + 2 member_updated + 1 member_removed + 1 space_updated before"
    );
    let r = s
        .http
        .post(s.url(&format!("/v1/spaces/{space}/messages")))
        .bearer_auth(&cy)
        .json(&json!({"content": "no"}))
        .send()
        .await
        .unwrap();
    assert_json_error(r, 404, "not_found").await;
}

/// A replay that passes the user's own earlier removal asks the read rule again: a user removed
/// and added back since replays the whole log, removal included, and stays subscribed.
#[tokio::test]
async fn a_replay_past_an_old_removal_of_a_member_again_goes_on() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("rp-ada"), token("rp-bob"));
    let space = space_of(&s, &ada, "private").await;
    assert_eq!(put_power(&s, &ada, &space, "rp-bob", json!(0)).await.0, 200);
    assert_eq!(delete_member(&s, &ada, &space, "rp-bob").await.0, 204);
    assert_eq!(put_power(&s, &ada, &space, "rp-bob", json!(0)).await.0, 200);
    assert_eq!(s.send_text(&bob, &space, "back").await.0, 201);
    let mut ws = s.stream(&bob).await;
    let joined = ws.join(&space, Some(0)).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let frames = ws.frames_until_event(&space, 4).await;
    let kinds: Vec<&str> = frames
        .iter()
        .map(|f| f["event"].as_str().unwrap_or(f["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            "member_updated",
            "member_removed",
            "member_updated",
            "message_created"
        ]
    );
    // Still subscribed: a new message arrives live.
    assert_eq!(s.send_text(&ada, &space, "live").await.0, 201);
    let m = ws
        .next_matching(|v| v["type"] == "event" || v["type"] == "left")
        .await;
    assert_eq!(
        (&m["event"], &m["seq"]),
        (&json!("message_created"), &json!(5)),
        "{m}"
    );
}
