//! Black-box tests of `GET /v1/users/{userId}/stats` (issue 12), on the suite's store
//! (`SPACECAST_TEST_STORE=cql` for Cassandra): the numbers follow sends, edits, deletes and
//! appreciations, and survive a restart.

mod common;

use common::{Server, assert_json_error, token};
use serde_json::{Value, json};

async fn stats(s: &Server, tok: &str, user: &str) -> Value {
    s.get_json(tok, &format!("/v1/users/{user}/stats")).await
}

fn want(created: u64, participated: u64, words: u64, appreciations: u64) -> Value {
    json!({"spaces_created": created, "spaces_participated": participated,
           "total_words_contributed": words, "total_appreciations_received": appreciations})
}

#[tokio::test]
async fn user_stats_follow_sends_edits_deletes_and_appreciations() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_on(dir.path(), &[]).await;
    let (ada, bob, cat) = (token("us-ada"), token("us-bob"), token("us-cat"));
    assert_eq!(
        stats(&s, &bob, "us-ada").await,
        want(0, 0, 0, 0),
        "unknown so far"
    );
    let open = s.create_space(&ada, "Open space").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let private = s
        .create_space_with(
            &ada,
            json!({"title": "Private space", "visibility": "private"}),
        )
        .await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        stats(&s, &bob, "us-ada").await,
        want(2, 0, 0, 0),
        "created, no messages"
    );
    for tok in [&bob, &cat] {
        assert_eq!(s.join(tok, &open).await.status(), 200);
    }
    let (st, first) = s.send_text(&ada, &open, "one two three").await;
    assert_eq!(st, 201);
    let first = first["message_id"].as_str().unwrap().to_owned();
    let (st, second) = s.send_text(&ada, &private, "four five").await;
    assert_eq!(st, 201);
    let second = second["message_id"].as_str().unwrap().to_owned();
    let (st, bobs) = s.send_text(&bob, &open, "hi there").await;
    assert_eq!(st, 201);
    let bobs = bobs["message_id"].as_str().unwrap().to_owned();
    // Appreciations by others, and one by ada of her own message (it counts too).
    assert_eq!(s.appreciate(&bob, &open, &first).await.0, 200);
    assert_eq!(s.appreciate(&cat, &open, &first).await.0, 200);
    assert_eq!(s.appreciate(&ada, &private, &second).await.0, 200);
    assert_eq!(s.appreciate(&ada, &open, &bobs).await.0, 200);
    assert_eq!(stats(&s, &cat, "us-ada").await, want(2, 2, 5, 3));
    assert_eq!(stats(&s, &ada, "us-bob").await, want(0, 1, 2, 1));
    assert_eq!(stats(&s, &ada, "us-cat").await, want(0, 0, 0, 0));

    // Un-appreciating takes one back; an edit changes the words.
    assert_eq!(s.appreciate(&cat, &open, &first).await.0, 200);
    let r = s
        .post_body(
            &ada,
            &format!("/v1/spaces/{open}/messages/{first}/edit"),
            "application/json",
            json!({"content": "one"}).to_string(),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(stats(&s, &bob, "us-ada").await, want(2, 2, 3, 2));

    // A delete takes the message's words and appreciations away; the space stays "created".
    assert_eq!(s.delete_message(&ada, &open, &first).await.0, 200);
    assert_eq!(stats(&s, &bob, "us-ada").await, want(2, 1, 2, 1));
    assert_eq!(s.delete_message(&ada, &private, &second).await.0, 200);
    assert_eq!(stats(&s, &bob, "us-ada").await, want(2, 0, 0, 0));

    // Durable: a restart reads the same, and the numbers go on from there.
    let before = stats(&s, &ada, "us-bob").await;
    assert!(s.terminate().await.success());
    let s = Server::start_on(dir.path(), &[]).await;
    assert_eq!(stats(&s, &ada, "us-bob").await, before, "after a restart");
    assert_eq!(s.appreciate(&cat, &open, &bobs).await.0, 200);
    assert_eq!(s.send_text(&bob, &open, "more words here").await.0, 201);
    assert_eq!(stats(&s, &ada, "us-bob").await, want(0, 1, 5, 2));
}

#[tokio::test]
async fn user_stats_need_a_token_and_a_valid_user_id() {
    let s = Server::start(&[]).await;
    let r = s
        .http
        .get(s.url("/v1/users/anyone/stats"))
        .send()
        .await
        .unwrap();
    assert_json_error(r, 401, "unauthenticated").await;
    let ada = token("uv-ada");
    let r = s
        .http
        .get(s.url("/v1/users/a%20b/stats"))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_json_error(r, 400, "invalid_user_id").await;
    // Percent-encoded ids are decoded: the stats of "é-user" (unknown: zeros).
    assert_eq!(stats(&s, &ada, "%C3%A9-user").await, want(0, 0, 0, 0));
}
