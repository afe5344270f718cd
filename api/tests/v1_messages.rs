//! Black-box tests of the native message surface (issue 10): `/v1/spaces/{id}/messages…`.

mod common;

use std::collections::HashSet;

use common::{Server, assert_json_error, token};
use serde_json::{Value, json};

/// Every page of `GET /v1/spaces/{space}/messages?{query}`, following `next_cursor`.
async fn all_pages(s: &Server, tok: &str, space: &str, query: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("/v1/spaces/{space}/messages?{query}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = s.get_json(tok, &url).await;
        pages.push(page["data"].as_array().expect("data").clone());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => {
                assert!(page["next_cursor"].is_null(), "{page}");
                return pages;
            }
        }
        assert!(pages.len() < 1000, "paging does not end");
    }
}

fn contents(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn cursor_pages_list_every_message_once_in_either_direction_with_filters() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("v1-ada"), token("v1-bob"));
    let space = s.create_space(&ada, "v1 pages").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.join(&bob, &space).await.status(), 200);
    let mut sent = Vec::new();
    for i in 0..7 {
        let who = if i % 3 == 0 { &bob } else { &ada };
        let (status, body) = s.send_text(who, &space, &format!("m{i}")).await;
        assert_eq!(status, 201, "{body}");
        sent.push(format!("m{i}"));
    }
    let backward = all_pages(&s, &ada, &space, "limit=3").await;
    assert_eq!(
        backward.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 1],
        "pages of 3, the last one short and final"
    );
    let mut newest_first = sent.clone();
    newest_first.reverse();
    assert_eq!(contents(&backward.concat()), newest_first);
    let forward = all_pages(&s, &ada, &space, "direction=forward&limit=2").await;
    assert_eq!(contents(&forward.concat()), sent, "forward: oldest first");
    // Each message once, with its seq and id, as the Space7 list shows it.
    let seqs: HashSet<u64> = forward
        .concat()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 7);
    // Filters.
    let bob_id = "v1-bob";
    let bobs = all_pages(&s, &ada, &space, &format!("sender_id={bob_id}&limit=100")).await;
    assert_eq!(contents(&bobs.concat()), vec!["m6", "m3", "m0"]);
    let none = all_pages(&s, &ada, &space, "has_attachment=true").await;
    assert_eq!(none.concat().len(), 0);
    let later = all_pages(&s, &ada, &space, "since=2999-01-01T00:00:00Z").await;
    assert_eq!(later.concat().len(), 0, "nothing from the future");
    let all = all_pages(&s, &ada, &space, "until=2999-01-01T00:00:00Z").await;
    assert_eq!(all.concat().len(), 7);
    // One message by id; another space's id is not found in this one.
    let first = &forward[0][0];
    let mid = first["message_id"].as_str().unwrap();
    let got = s
        .get_json(&bob, &format!("/v1/spaces/{space}/messages/{mid}"))
        .await;
    assert_eq!(&got, first);
    let other = s.create_space(&bob, "elsewhere").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in [
        format!("/v1/spaces/{other}/messages/{mid}"),
        format!("/v1/spaces/{space}/messages/not-an-id"),
    ] {
        let url = s.url(&path);
        let res = s.http.get(&url).bearer_auth(&ada).send().await.unwrap();
        assert_json_error(res, 404, "not_found").await;
    }
}

#[tokio::test]
async fn bad_page_requests_get_clear_errors() {
    let s = Server::start(&[]).await;
    let ada = token("v1-errors");
    let space = s.create_space(&ada, "errors").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let private = s
        .create_space_with(&ada, json!({"title": "hidden", "visibility": "private"}))
        .await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = format!("/v1/spaces/{space}/messages");
    for (query, status, code) in [
        ("limit=0", 400, "invalid_pagination"),
        ("limit=101", 400, "invalid_pagination"),
        ("direction=sideways", 400, "invalid_pagination"),
        ("cursor=not-a-cursor", 400, "invalid_cursor"),
        ("has_attachment=maybe", 400, "invalid_filter"),
        ("since=last-week", 400, "invalid_filter"),
    ] {
        let url = s.url(&format!("{base}?{query}"));
        let res = s.http.get(&url).bearer_auth(&ada).send().await.unwrap();
        assert_json_error(res, status, code).await;
    }
    // Unauthenticated: 401. A private space of others: 404, like an unknown one.
    let url = s.url(&base);
    let res = s.http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let url = s.url(&format!("/v1/spaces/{private}/messages"));
    let res = s
        .http
        .get(&url)
        .bearer_auth(token("v1-outsider"))
        .send()
        .await
        .unwrap();
    assert_json_error(res, 404, "not_found").await;
}

// ---- Writes: rich sends, threads, on-behalf, idempotency, edits, redactions ----

/// `POST /v1/spaces/{space}/messages` with `body`; returns the status and body.
async fn send_v1(s: &Server, tok: &str, space: &str, body: Value) -> (u16, Value) {
    send_v1_with(s, tok, space, body, None).await
}

async fn send_v1_with(
    s: &Server,
    tok: &str,
    space: &str,
    body: Value,
    idempotency_key: Option<&str>,
) -> (u16, Value) {
    let mut req = s
        .http
        .post(s.url(&format!("/v1/spaces/{space}/messages")))
        .bearer_auth(tok)
        .json(&body);
    if let Some(k) = idempotency_key {
        req = req.header("idempotency-key", k);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn post(s: &Server, tok: &str, path: &str, body: Value) -> (u16, Value) {
    let res = s
        .http
        .post(s.url(path))
        .bearer_auth(tok)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A space of `owner` (power 100) that `members` joined.
async fn space_with(s: &Server, owner: &str, members: &[&str]) -> String {
    let space = s.create_space(owner, "v1 writes").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for m in members {
        assert_eq!(s.join(m, &space).await.status(), 200);
    }
    space
}

/// Uploads the 1×1 PNG with `POST /v1/media`; returns its media id.
async fn upload_png(s: &Server, tok: &str) -> String {
    let res = s
        .http
        .post(s.url("/v1/media"))
        .bearer_auth(tok)
        .header("content-type", "image/png")
        .body(common::PNG.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    v["media_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_rich_send_stores_every_field_and_its_rules_are_enforced() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("w-ada"), token("w-bob"));
    let space = space_with(&s, &ada, &[&bob]).await;
    let (st, m) = send_v1(
        &s,
        &bob,
        &space,
        json!({
            "content": "  a poll  ", "msgtype": "x.poll", "body": {"options": ["a", "b"]},
            "mentions": ["w-ada"], "metadata": {"client": "test"}, "local_id": {"n": 1},
            "gif": {"url": "https://example.org/g.gif", "width": 10, "height": 20},
        }),
    )
    .await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(m["content"], "a poll", "trimmed");
    assert_eq!(m["msgtype"], "x.poll");
    assert_eq!(m["body"]["options"][1], "b");
    assert_eq!(m["mentions"], json!(["w-ada"]));
    assert_eq!(m["metadata"]["client"], "test");
    assert_eq!(m["gif"]["height"], 20);
    assert_eq!(m["local_id"], json!({"n": 1}), "echoed");
    assert_eq!(m["actor_id"], "w-bob", "actor is the sender");
    let mid = m["message_id"].as_str().unwrap().to_owned();
    let stored = s
        .get_json(&ada, &format!("/v1/spaces/{space}/messages/{mid}"))
        .await;
    assert!(stored.get("local_id").is_none(), "local_id is not stored");
    assert_eq!(stored["body"], m["body"]);
    // Sizes: body over 64 KB and metadata over 10 KB are 413; a body alone is a message.
    let big = "x".repeat(64 * 1024);
    let (st, e) = send_v1(&s, &bob, &space, json!({"body": {"b": big}})).await;
    assert_eq!((st, e["code"].as_str()), (413, Some("payload_too_large")));
    let (st, e) = send_v1(
        &s,
        &bob,
        &space,
        json!({"content": "x", "metadata": {"m": "y".repeat(10 * 1024)}}),
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (413, Some("payload_too_large")));
    let (st, _) = send_v1(&s, &bob, &space, json!({"body": {"k": 1}})).await;
    assert_eq!(st, 201, "body counts as content");
    for (body, code) in [
        (json!({}), "empty_message"),
        (json!({"content": "   "}), "empty_message"),
        (
            json!({"content": "x", "msgtype": "Poll!"}),
            "invalid_msgtype",
        ),
        (
            json!({"content": "x", "mentions": [""]}),
            "invalid_mentions",
        ),
        (
            json!({"content": "x", "gif": {"url": "ftp://x", "width": 1, "height": 1}}),
            "invalid_gif",
        ),
        (
            json!({"content": "x", "parent_id": "nope"}),
            "invalid_parent",
        ),
        (
            json!({"content": "x", "parent_id": uuid_v7()}),
            "invalid_parent",
        ),
        (
            json!({"content": "x", "quoted_message_id": uuid_v7()}),
            "invalid_quote",
        ),
        (
            json!({"media_ids": (0..11).map(|_| uuid_v7()).collect::<Vec<_>>()}),
            "too_many_media",
        ),
        (json!({"media_ids": ["not-an-id"]}), "invalid_media"),
        (
            json!({"content": "x", "idempotency_key": ""}),
            "invalid_idempotency_key",
        ),
    ] {
        let (st, e) = send_v1(&s, &bob, &space, body.clone()).await;
        assert_eq!((st, e["code"].as_str()), (400, Some(code)), "{body}: {e}");
    }
    // Not a member: 403; nothing above created anything.
    let (st, e) = send_v1(&s, &token("w-stranger"), &space, json!({"content": "hi"})).await;
    assert_eq!((st, e["code"].as_str()), (403, Some("not_a_member")));
    let all = all_pages(&s, &ada, &space, "limit=100").await.concat();
    assert_eq!(all.len(), 2, "the poll and the body-only message");
}

fn uuid_v7() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[tokio::test]
async fn replies_form_one_level_threads_and_quotes_name_messages_of_the_space() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("t-ada"), token("t-bob"));
    let space = space_with(&s, &ada, &[&bob]).await;
    let (_, root) = send_v1(&s, &ada, &space, json!({"content": "root"})).await;
    let root_id = root["message_id"].as_str().unwrap().to_owned();
    let (_, noise) = send_v1(&s, &bob, &space, json!({"content": "noise"})).await;
    let mut replies = Vec::new();
    for i in 0..3 {
        let (st, r) = send_v1(
            &s,
            if i == 1 { &ada } else { &bob },
            &space,
            json!({"content": format!("reply {i}"), "parent_id": root_id, "quoted_message_id": noise["message_id"]}),
        )
        .await;
        assert_eq!(st, 201, "{r}");
        assert_eq!(r["parent_id"], root["message_id"]);
        replies.push(r);
    }
    // A reply to a reply is refused: threads are one level deep.
    let (st, e) = send_v1(
        &s,
        &bob,
        &space,
        json!({"content": "deeper", "parent_id": replies[0]["message_id"]}),
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (400, Some("invalid_parent")));
    // Another space's message is neither a parent nor a quote here.
    let other = space_with(&s, &ada, &[]).await;
    let (st, e) = send_v1(
        &s,
        &ada,
        &other,
        json!({"content": "x", "parent_id": root_id}),
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (400, Some("invalid_parent")));
    let got = s
        .get_json(&bob, &format!("/v1/spaces/{space}/messages/{root_id}"))
        .await;
    assert_eq!(got["reply_count"], 3);
    let thread = s
        .get_json(
            &bob,
            &format!("/v1/spaces/{space}/messages/{root_id}/thread"),
        )
        .await;
    assert!(thread["next_cursor"].is_null(), "{thread}");
    assert_eq!(
        contents(thread["data"].as_array().unwrap()),
        vec!["reply 0", "reply 1", "reply 2"],
        "oldest first"
    );
    let filtered = all_pages(
        &s,
        &ada,
        &space,
        &format!("parent_id={root_id}&direction=forward"),
    )
    .await
    .concat();
    assert_eq!(contents(&filtered), vec!["reply 0", "reply 1", "reply 2"]);
    // A deleted reply leaves the thread and the count.
    let rid = replies[1]["message_id"].as_str().unwrap();
    let (st, _) = s.delete_message(&ada, &space, rid).await;
    assert_eq!(st, 200);
    let got = s
        .get_json(&bob, &format!("/v1/spaces/{space}/messages/{root_id}"))
        .await;
    assert_eq!(got["reply_count"], 2);
}

#[tokio::test]
async fn sending_on_behalf_needs_power_100_and_names_both_users() {
    let s = Server::start(&[]).await;
    let (ada, bot, bob) = (token("b-ada"), token("b-bot"), token("b-bob"));
    let space = space_with(&s, &ada, &[&bot, &bob]).await;
    let (st, e) = send_v1(
        &s,
        &bot,
        &space,
        json!({"content": "x", "as_user_id": "b-bob"}),
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (403, Some("forbidden")), "{e}");
    let (st, m) = send_v1(
        &s,
        &ada,
        &space,
        json!({"content": "for bob", "as_user_id": "b-bob"}),
    )
    .await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(
        (m["sender_id"].as_str(), m["actor_id"].as_str()),
        (Some("b-bob"), Some("b-ada"))
    );
    assert_eq!(m["sender"]["user_id"], "b-bob");
    let (st, e) = send_v1(
        &s,
        &ada,
        &space,
        json!({"content": "x", "as_user_id": "b-nobody"}),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (400, Some("invalid_as_user")),
        "{e}"
    );
}

#[tokio::test]
async fn an_idempotency_key_returns_the_original_message_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_on(dir.path(), &[]).await;
    let (ada, bob) = (token("i-ada"), token("i-bob"));
    let space = space_with(&s, &ada, &[&bob]).await;
    let (st, first) = send_v1_with(&s, &ada, &space, json!({"content": "once"}), Some("k-1")).await;
    assert_eq!(st, 201);
    // The key decides, whatever the second body says; body and header keys are one key.
    let (st, again) = send_v1(
        &s,
        &ada,
        &space,
        json!({"content": "twice?", "idempotency_key": "k-1", "local_id": 7}),
    )
    .await;
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["message_id"], first["message_id"]);
    assert_eq!(again["content"], "once");
    assert_eq!(again["local_id"], 7, "this request's local_id");
    // Another sender's key of the same name is another key.
    let (st, _) = send_v1_with(&s, &bob, &space, json!({"content": "bob's"}), Some("k-1")).await;
    assert_eq!(st, 201);
    let (st, e) = send_v1_with(
        &s,
        &ada,
        &space,
        json!({"content": "x", "idempotency_key": "k-2"}),
        Some("k-3"),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (400, Some("invalid_idempotency_key"))
    );
    // With uploads: the replay does not touch them (they belong to the original).
    let media = upload_png(&s, &ada).await;
    let body = json!({"media_ids": [media], "idempotency_key": "k-media"});
    let (st, with_media) = send_v1(&s, &ada, &space, body.clone()).await;
    assert_eq!(st, 201, "{with_media}");
    assert_eq!(
        with_media["media"][0]["media_id"].as_str(),
        Some(media.as_str())
    );
    let (st, replay) = send_v1(&s, &ada, &space, body.clone()).await;
    assert_eq!(
        (st, &replay["message_id"]),
        (200, &with_media["message_id"])
    );
    // After a restart the keys are still held.
    assert!(s.terminate().await.success());
    let s = Server::start_on(dir.path(), &[]).await;
    let (st, after) = send_v1(
        &s,
        &ada,
        &space,
        json!({"content": "third?", "idempotency_key": "k-1"}),
    )
    .await;
    assert_eq!((st, &after["message_id"]), (200, &first["message_id"]));
    let (st, _) = send_v1(&s, &ada, &space, body).await;
    assert_eq!(st, 200);
    let all = all_pages(&s, &ada, &space, "limit=100").await.concat();
    assert_eq!(all.len(), 3, "once, bob's, and the one with media");
}

#[tokio::test]
async fn uploads_attach_to_one_message_of_their_uploader_and_redaction_deletes_them() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("u-ada"), token("u-bob"));
    let space = space_with(&s, &ada, &[&bob]).await;
    let mine = upload_png(&s, &ada).await;
    let bobs = upload_png(&s, &bob).await;
    let (st, e) = send_v1(&s, &ada, &space, json!({"media_ids": [bobs]})).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (400, Some("invalid_media")),
        "another's upload"
    );
    let (st, m) = send_v1(
        &s,
        &ada,
        &space,
        json!({"content": "pic", "media_ids": [mine]}),
    )
    .await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(m["media"][0]["content_type"], "image/png");
    assert!(m["media"][0]["thumbnail_id"].is_string());
    let (st, e) = send_v1(&s, &ada, &space, json!({"media_ids": [mine]})).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (400, Some("invalid_media")),
        "already used"
    );
    let found = all_pages(&s, &bob, &space, "has_attachment=true")
        .await
        .concat();
    assert_eq!(found.len(), 1);
    // A refused send gives the upload back: bob's upload is still his to use.
    let (st, _) = send_v1(&s, &bob, &space, json!({"media_ids": [bobs]})).await;
    assert_eq!(st, 201);
    // Bob (power 0) cannot redact Ada's message; Ada can, and the file goes with it.
    let mid = m["message_id"].as_str().unwrap();
    let redact = format!("/v1/spaces/{space}/messages/{mid}/redact");
    let (st, e) = post(&s, &bob, &redact, json!({})).await;
    assert_eq!((st, e["code"].as_str()), (403, Some("forbidden")));
    let (st, r) = post(&s, &ada, &redact, json!({"reason": "oops"})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["redacted"], true);
    assert_eq!(r["media"], json!([]));
    let url = s.url(&format!("/v1/media/{mine}"));
    let res = s.http.get(&url).bearer_auth(&ada).send().await.unwrap();
    assert_json_error(res, 404, "not_found").await;
}

#[tokio::test]
async fn edits_keep_history_redactions_wipe_and_the_stream_replays_both_as_live() {
    let s = Server::start(&[]).await;
    let (ada, bob, mod_) = (token("e-ada"), token("e-bob"), token("e-mod"));
    let space = space_with(&s, &ada, &[&bob, &mod_]).await;
    let (mut ws, _) = s.stream_hello(&ada).await;
    assert_eq!(ws.join(&space, None).await["type"], "joined");
    let (_, m) = send_v1(
        &s,
        &bob,
        &space,
        json!({"content": "first", "metadata": {"a": 1}}),
    )
    .await;
    let mid = m["message_id"].as_str().unwrap().to_owned();
    let edit = format!("/v1/spaces/{space}/messages/{mid}/edit");
    let (st, e) = post(&s, &ada, &edit, json!({"content": "not mine"})).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (403, Some("forbidden")),
        "author only"
    );
    let (st, e) = post(&s, &bob, &edit, json!({})).await;
    assert_eq!((st, e["code"].as_str()), (400, Some("empty_message")));
    let (st, edited) = post(&s, &bob, &edit, json!({"content": " second "})).await;
    assert_eq!(st, 200, "{edited}");
    assert_eq!(edited["content"], "second");
    assert!(edited["edited_at"].is_string());
    assert_eq!(edited["seq"], m["seq"], "an edit keeps its position");
    let history = s
        .get_json(&ada, &format!("/v1/spaces/{space}/messages/{mid}/history"))
        .await;
    let versions = history["data"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{history}");
    assert_eq!(versions[0]["content"], "first");
    let (st, red) = post(
        &s,
        &ada,
        &format!("/v1/spaces/{space}/messages/{mid}/redact"),
        json!({"reason": "spam"}),
    )
    .await;
    assert_eq!(st, 200, "{red}");
    assert_eq!(
        (red["redacted_by"].as_str(), red["redacted_reason"].as_str()),
        (Some("e-ada"), Some("spam"))
    );
    assert!(
        red["content"].is_null() && red["metadata"].is_null(),
        "{red}"
    );
    assert_eq!(red["seq"], m["seq"]);
    let (st, e) = post(&s, &bob, &edit, json!({"content": "third"})).await;
    assert_eq!((st, e["code"].as_str()), (409, Some("message_redacted")));
    let history = s
        .get_json(&ada, &format!("/v1/spaces/{space}/messages/{mid}/history"))
        .await;
    assert_eq!(history["data"], json!([]), "the wiped content is not kept");
    // Live: created, edited, redacted; then a resume from 0 replays the same frames.
    let mut live = Vec::new();
    for name in ["message_created", "message_edited", "message_redacted"] {
        let f = ws.next_matching(|v| v["type"] == "event").await;
        assert_eq!(f["event"], name, "{f}");
        live.push(f);
    }
    assert_eq!(live[1]["data"]["content"], "second");
    assert_eq!(live[2]["data"]["redacted"], true);
    let (mut again, _) = s.stream_hello(&ada).await;
    again.join(&space, Some(0)).await;
    for want in &live {
        let f = again.next_matching(|v| v["type"] == "event").await;
        assert_eq!(&f, want, "resume gives the state live gave");
    }
}

#[tokio::test]
async fn edits_after_the_edit_window_are_refused() {
    let s = Server::start(&["--edit-window", "0s"]).await;
    let ada = token("ew-ada");
    let space = space_with(&s, &ada, &[]).await;
    let (_, m) = send_v1(&s, &ada, &space, json!({"content": "fixed"})).await;
    let mid = m["message_id"].as_str().unwrap();
    let (st, e) = post(
        &s,
        &ada,
        &format!("/v1/spaces/{space}/messages/{mid}/edit"),
        json!({"content": "late"}),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (409, Some("edit_window_closed")),
        "{e}"
    );
}

#[tokio::test]
async fn the_stream_send_takes_the_rest_fields_and_acks_with_local_id() {
    let s = Server::start(&[]).await;
    let ada = token("ws-ada");
    let space = space_with(&s, &ada, &[]).await;
    let (_, root) = send_v1(&s, &ada, &space, json!({"content": "root"})).await;
    let media = upload_png(&s, &ada).await;
    let (mut ws, _) = s.stream_hello(&ada).await;
    ws.send_json(json!({
        "type": "send", "space_id": space, "local_id": "a-1", "msgtype": "x.card",
        "body": {"k": "v"}, "parent_id": root["message_id"], "media_ids": [media],
        "idempotency_key": "ws-k",
    }))
    .await;
    let ack = ws.next_matching(|v| v["type"] == "ack").await;
    assert_eq!(ack["local_id"], "a-1", "{ack}");
    let m = &ack["message"];
    assert_eq!(
        (m["msgtype"].as_str(), m["body"]["k"].as_str()),
        (Some("x.card"), Some("v"))
    );
    assert_eq!(m["parent_id"], root["message_id"]);
    assert_eq!(m["media"][0]["media_id"].as_str(), Some(media.as_str()));
    // The same key again: the original, not a second message.
    ws.send_json(json!({"type": "send", "space_id": space, "local_id": "a-2", "content": "other", "idempotency_key": "ws-k", "media_ids": [media]}))
        .await;
    let again = ws.next_matching(|v| v["type"] == "ack").await;
    assert_eq!(
        (&again["local_id"], &again["message"]["message_id"]),
        (&json!("a-2"), &m["message_id"])
    );
    // Refusals carry the local_id and the REST code.
    ws.send_json(json!({"type": "send", "space_id": space, "local_id": "a-3", "content": "x", "parent_id": m["message_id"]}))
        .await;
    let err = ws.next_matching(|v| v["type"] == "error").await;
    assert_eq!(
        (err["code"].as_str(), &err["local_id"]),
        (Some("invalid_parent"), &json!("a-3")),
        "{err}"
    );
    let all = all_pages(&s, &ada, &space, "limit=100").await.concat();
    assert_eq!(all.len(), 2);
}

/// `POST /v1/spaces/{id}/messages` as multipart/form-data: a `payload` part (the JSON send),
/// then files, which become the message's media as uploads would; refusals store nothing.
#[tokio::test]
async fn a_multipart_send_carries_its_files_and_refusals_keep_none() {
    use reqwest::multipart::{Form, Part};
    let s = Server::start(&["--max-media-bytes", "4096"]).await;
    let (ada, eve) = (token("mp-ada"), token("mp-eve"));
    let space = s.create_space(&ada, "multipart").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = s.url(&format!("/v1/spaces/{space}/messages"));
    let png = || {
        Part::bytes(common::PNG.to_vec())
            .file_name("dot.png")
            .mime_str("image/png")
            .unwrap()
    };
    let text = || {
        Part::bytes(b"plain notes".to_vec())
            .file_name("notes.txt")
            .mime_str("text/plain")
            .unwrap()
    };
    let payload = |v: Value| {
        Part::text(v.to_string())
            .mime_str("application/json")
            .unwrap()
    };
    let send = |tok: &str, form: Form| {
        let req = s.http.post(&url).bearer_auth(tok).multipart(form);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // Two files and a key; files alone are content.
    let form = Form::new()
        .part(
            "payload",
            payload(json!({"msgtype": "media", "idempotency_key": "mp-1", "local_id": 7})),
        )
        .part("file", png())
        .part("file", text());
    let (st, m) = send(&ada, form).await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(m["local_id"], 7);
    let media = m["media"].as_array().expect("media").clone();
    assert_eq!(media.len(), 2, "{m}");
    assert_eq!(media[0]["content_type"], "image/png");
    assert!(
        media[0]["thumbnail_id"].is_string(),
        "an image gets a thumbnail: {m}"
    );
    assert_eq!(media[1]["content_type"], "text/plain");
    for item in &media {
        let id = item["media_id"].as_str().unwrap();
        let res = s
            .http
            .get(s.url(&format!("/v1/media/{id}")))
            .bearer_auth(&eve)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.bytes().await.unwrap().len() as u64,
            item["size"].as_u64().unwrap()
        );
    }
    // The same key again: the original, nothing new stored or sent.
    let form = Form::new()
        .part(
            "payload",
            payload(json!({"content": "other", "idempotency_key": "mp-1"})),
        )
        .part("file", png());
    let (st, again) = send(&ada, form).await;
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["message_id"], m["message_id"]);
    assert_eq!(again["media"], m["media"]);

    // The files of the local media store (the default: under the data dir).
    let media_dir = s.data_dir.join("media");
    let files_now = || {
        std::fs::read_dir(&media_dir)
            .expect("the media dir")
            .count()
    };
    let stored_before = files_now();
    assert!(stored_before >= 3, "the first send's files and thumbnail");

    // Refusals, each with its code.
    let cases: Vec<(Form, &str, u16, &str)> = vec![
        (
            Form::new().part("file", png()),
            "mp-ada",
            400,
            "invalid_request",
        ),
        (
            Form::new().part("payload", payload(json!({}))),
            "mp-ada",
            400,
            "empty_message",
        ),
        (
            Form::new()
                .part("payload", payload(json!({"content": "x"})))
                .part("other", text()),
            "mp-ada",
            400,
            "invalid_request",
        ),
        (
            (0..11).fold(
                Form::new().part("payload", payload(json!({"content": "many"}))),
                |f, _| f.part("file", text()),
            ),
            "mp-ada",
            400,
            "too_many_media",
        ),
        (
            Form::new()
                .part("payload", payload(json!({"content": "big"})))
                .part(
                    "file",
                    Part::bytes(vec![b'a'; 5000])
                        .mime_str("text/plain")
                        .unwrap(),
                ),
            "mp-ada",
            413,
            "payload_too_large",
        ),
        (
            Form::new()
                .part("payload", payload(json!({"content": "spoofed"})))
                .part(
                    "file",
                    Part::bytes(common::PNG.to_vec())
                        .mime_str("image/jpeg")
                        .unwrap(),
                ),
            "mp-ada",
            400,
            "media_type_mismatch",
        ),
        // Not a member: refused before any file is stored.
        (
            Form::new()
                .part("payload", payload(json!({"content": "intruder"})))
                .part("file", png()),
            "mp-eve",
            403,
            "not_a_member",
        ),
    ];
    for (form, who, status, code) in cases {
        let (st, body) = send(&token(who), form).await;
        assert_eq!((st, body["code"].as_str()), (status, Some(code)), "{body}");
    }
    assert_eq!(
        files_now(),
        stored_before,
        "a refused send keeps none of its files (stored ones are deleted at once)"
    );
    // Only the first send landed.
    let page = s
        .get_json(&ada, &format!("/v1/spaces/{space}/messages"))
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
}
