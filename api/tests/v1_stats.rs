//! Black-box tests of `GET /v1/spaces/{id}/stats` (issue 10), on the suite's store
//! (`SPACECAST_TEST_STORE=cql` for Cassandra).

mod common;

use common::{Server, assert_json_error, send_png, token};
use serde_json::{Value, json};

async fn post(s: &Server, tok: &str, path: &str, body: Value) -> (u16, Value) {
    let r = s
        .http
        .post(s.url(path))
        .bearer_auth(tok)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn send(s: &Server, tok: &str, space: &str, body: Value) -> Value {
    let (status, m) = post(s, tok, &format!("/v1/spaces/{space}/messages"), body).await;
    assert_eq!(status, 201, "{m}");
    m
}

async fn stats(s: &Server, tok: &str, space: &str) -> Value {
    s.get_json(tok, &format!("/v1/spaces/{space}/stats")).await
}

fn contributor(user: &str, messages: u64, words: u64) -> Value {
    json!({"user_id": user, "messages": messages, "word_count": words})
}

#[tokio::test]
async fn stats_follow_every_change_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_on(dir.path(), &[]).await;
    let (ada, bob) = (token("st-ada"), token("st-bob"));
    let space = s.create_space(&ada, "stats").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.join(&bob, &space).await.status(), 200);
    assert_eq!(
        stats(&s, &ada, &space).await,
        json!({"total_messages": 0, "by_msgtype": {}, "with_attachments": 0, "threads": 0,
               "redacted": 0, "first_message_at": null, "last_message_at": null,
               "top_contributors": []}),
        "an empty space"
    );

    let first = send(&s, &ada, &space, json!({"content": "one two three"})).await;
    let code = send(
        &s,
        &bob,
        &space,
        json!({"content": "fn main", "msgtype": "code"}),
    )
    .await;
    // A Space7 upload: an attachment, two words.
    let picture = send_png(&s, &ada, &space).await;
    let reply = send(
        &s,
        &bob,
        &space,
        json!({"content": "yes", "parent_id": first["message_id"]}),
    )
    .await;
    let got = stats(&s, &bob, &space).await;
    assert_eq!(
        got,
        json!({"total_messages": 4, "by_msgtype": {"text": 3, "code": 1}, "with_attachments": 1,
               "threads": 1, "redacted": 0,
               "first_message_at": first["created_at"], "last_message_at": reply["created_at"],
               "top_contributors": [contributor("st-ada", 2, 5), contributor("st-bob", 2, 3)]}),
    );

    // An edit changes the words; a redaction counts, keeps the msgtype, drops the words.
    let mid = first["message_id"].as_str().unwrap();
    let (st, _) = post(
        &s,
        &ada,
        &format!("/v1/spaces/{space}/messages/{mid}/edit"),
        json!({"content": "one"}),
    )
    .await;
    assert_eq!(st, 200);
    let cid = code["message_id"].as_str().unwrap();
    let (st, _) = post(
        &s,
        &bob,
        &format!("/v1/spaces/{space}/messages/{cid}/redact"),
        json!({}),
    )
    .await;
    assert_eq!(st, 200);
    // Deleting the only reply ends the thread; deleting the last message moves `last`.
    let rid = reply["message_id"].as_str().unwrap();
    let (st, _) = s.delete_message(&bob, &space, rid).await;
    assert_eq!(st, 200);
    let want = json!({"total_messages": 3, "by_msgtype": {"text": 2, "code": 1},
        "with_attachments": 1, "threads": 0, "redacted": 1,
        "first_message_at": first["created_at"], "last_message_at": picture["created_at"],
        "top_contributors": [contributor("st-ada", 2, 3), contributor("st-bob", 1, 0)]});
    assert_eq!(stats(&s, &ada, &space).await, want);

    // The stats are durable: a restart reads the same.
    assert!(s.terminate().await.success());
    let s = Server::start_on(dir.path(), &[]).await;
    assert_eq!(stats(&s, &ada, &space).await, want, "after a restart");
    // And they go on from there (the first message leaves: `first` moves).
    let (st, _) = s.delete_message(&ada, &space, mid).await;
    assert_eq!(st, 200);
    let got = stats(&s, &ada, &space).await;
    assert_eq!(got["total_messages"], 2);
    assert_eq!(got["first_message_at"], code["created_at"]);
    assert_eq!(
        got["top_contributors"],
        json!([contributor("st-ada", 1, 2), contributor("st-bob", 1, 0)])
    );
}

#[tokio::test]
async fn stats_are_read_by_whoever_may_read_the_space() {
    let s = Server::start(&[]).await;
    let ada = token("sr-ada");
    let outsider = token("sr-outsider");
    let public = s.create_space(&ada, "open").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let private = s
        .create_space_with(&ada, json!({"title": "hidden", "visibility": "private"}))
        .await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    send(&s, &ada, &public, json!({"content": "hello"})).await;
    assert_eq!(stats(&s, &outsider, &public).await["total_messages"], 1);
    assert_eq!(stats(&s, &ada, &private).await["total_messages"], 0);
    for (tok, path) in [
        (&outsider, format!("/v1/spaces/{private}/stats")),
        (&ada, "/v1/spaces/not-a-uuid/stats".to_owned()),
        (
            &ada,
            "/v1/spaces/019aeb3c-0000-7000-8000-000000000001/stats".to_owned(),
        ),
    ] {
        let res = s
            .http
            .get(s.url(&path))
            .bearer_auth(tok)
            .send()
            .await
            .unwrap();
        assert_json_error(res, 404, "not_found").await;
    }
    let res = s
        .http
        .get(s.url(&format!("/v1/spaces/{public}/stats")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}
