//! Black-box tests of the Space7 REST surface (CONTRACT.md §2–§4) against the real binary.

mod common;

use common::{SECRET, Server, token, token_with};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

/// A valid 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52, 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89, 0, 0, 0, 0x0A, 0x49, 0x44, 0x41, 0x54,
    0x78, 0x9C, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0D, 0x0A, 0x2D, 0xB4, 0, 0, 0, 0, 0x49, 0x45, 0x4E,
    0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// Asserts an error response: status, JSON content type, `{error, code}`; returns the body.
async fn assert_error(r: reqwest::Response, status: u16, code: &str) -> Value {
    common::assert_json_error(r, status, code).await.1
}

#[tokio::test]
async fn health_metrics_and_openapi_need_no_token() {
    let s = Server::start(&[]).await;
    let r = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = s.http.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    let metrics = s.metrics_text().await;
    assert!(
        metrics.contains("spacecast_http_requests_total"),
        "metrics exported"
    );
    let r = s.http.get(s.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3."),
        "an OpenAPI 3 document"
    );
}

#[tokio::test]
async fn spaces_create_get_join_and_list_mine() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("ada"), token("bob"));
    let space = s.create_space(&ada, "  Rustaceans  ").await;
    let id = space["space_id"].as_str().unwrap().to_owned();
    assert_eq!(space["title"], "Rustaceans", "title trimmed");
    assert_eq!(space["creator"]["user_id"], "ada");
    assert_eq!(space["creator"]["username"], "name-ada");
    assert_eq!(
        space["creator"]["profile_picture"],
        "http://pics.example/ada.png"
    );
    assert_eq!(space["participant_count"], 1);
    assert_eq!(space["visibility"], "public");
    assert_eq!(
        space["tags"][0]["tag_name"], "test",
        "hashtags lowercased without #"
    );
    assert!(space["tags"][0]["tag_id"].is_u64(), "tag_id is a number");
    assert_eq!(space["power_level"], 100, "the creator is an admin");

    let mine: Value = s
        .http
        .get(s.url("/api/spaces/my"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine, json!([]), "bob belongs to nothing yet");

    let r = s.join(&bob, &id).await;
    assert_eq!(r.status(), 200);
    let joined: Value = r.json().await.unwrap();
    assert_eq!(
        joined,
        json!({"message": "Joined space", "space_id": id, "power_level": 0}),
        "the JoinResult of the document"
    );
    let again = s.join(&bob, &id).await;
    let body = assert_error(again, 409, "already_member").await;
    assert_eq!(
        body["error"], "Already a member",
        "the text the Space7 client matches"
    );
    let r = s.join(&ada, &id).await;
    assert_eq!(r.status(), 409, "the creator is already a member");

    let got = s.get_json(&bob, &format!("/api/spaces/{id}")).await;
    assert_eq!(got["participant_count"], 2);
    let members = got["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["user_id"], "ada");
    assert_eq!(members[0]["role"], "creator");
    assert_eq!(members[1]["role"], "member");
    assert_eq!(got["role"], "member");

    let second = s.create_space(&bob, "Gophers").await;
    let mine: Value = s
        .http
        .get(s.url("/api/spaces/my"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mine = mine.as_array().unwrap();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0]["space_id"], second["space_id"], "newest first");
    assert_eq!(mine[0]["role"], "creator");
    assert_eq!(mine[1]["space_id"], id.as_str());
    assert_eq!(mine[1]["role"], "member");
}

#[tokio::test]
async fn create_space_validates_its_input() {
    let s = Server::start(&[]).await;
    let t = token("ada");
    let post = |body: Value| {
        s.http
            .post(s.url("/api/spaces"))
            .bearer_auth(&t)
            .json(&body)
            .send()
    };
    assert_error(
        post(json!({"title": "ab"})).await.unwrap(),
        400,
        "invalid_title",
    )
    .await;
    assert_error(
        post(json!({"title": "   "})).await.unwrap(),
        400,
        "invalid_title",
    )
    .await;
    assert_error(
        post(json!({"title": "Fine", "visibility": "secret"}))
            .await
            .unwrap(),
        400,
        "invalid_visibility",
    )
    .await;
    let many: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
    assert_error(
        post(json!({"title": "Fine", "hashtags": many}))
            .await
            .unwrap(),
        400,
        "invalid_hashtags",
    )
    .await;
    assert_error(
        post(json!({"title": "Fine", "hashtags": ["has space"]}))
            .await
            .unwrap(),
        400,
        "invalid_hashtags",
    )
    .await;
    let r = s
        .http
        .post(s.url("/api/spaces"))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "invalid_json").await;
}

#[tokio::test]
async fn private_spaces_are_invisible_to_non_members() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("ada"), token("bob"));
    let r = s
        .http
        .post(s.url("/api/spaces"))
        .bearer_auth(&ada)
        .json(&json!({"title": "Secret club", "description": "shh", "visibility": "private"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let space: Value = r.json().await.unwrap();
    let id = space["space_id"].as_str().unwrap();
    assert_eq!(space["visibility"], "private");
    let r = s
        .http
        .get(s.url(&format!("/api/spaces/{id}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "not_found").await;
    let r = s
        .http
        .get(s.url(&format!("/api/messages/{id}?sort=recent&page=1&limit=50")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "not_found").await;
    assert_error(s.join(&bob, id).await, 404, "not_found").await;
    let (status, _) = s.send_text(&ada, id, "members only").await;
    assert_eq!(status, 201, "the creator posts");
    let (status, body) = s.send_text(&bob, id, "let me in").await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn send_as_multipart_and_json_then_list_with_sort_and_pages() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("ada"), token("bob"));
    let id = s.create_space(&ada, "Chat").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.join(&bob, &id).await.status(), 200);

    // Multipart, as the Space7 client sends: content trimmed before and after.
    let form = Form::new().text("content", "  hello   brave \n new world  ");
    let r = s
        .http
        .post(s.url(&format!("/api/messages/{id}")))
        .bearer_auth(&ada)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let m1: Value = r.json().await.unwrap();
    assert_eq!(m1["content"], "hello   brave \n new world");
    assert_eq!(m1["word_count"], 4);
    assert_eq!(m1["sender_id"], "ada");
    assert_eq!(m1["sender"]["username"], "name-ada");
    assert_eq!(m1["space_id"], id.as_str());
    assert_eq!(m1["likes"], json!([]));
    assert_eq!(m1["appreciation_count"], 0);
    assert_eq!(m1["media_url"], Value::Null);
    assert_eq!(m1["media_type"], Value::Null);
    assert_eq!(m1["seq"], 1);
    assert!(
        m1["created_at"].as_str().unwrap().ends_with('Z'),
        "ISO-8601 UTC"
    );

    let mut ids = vec![m1["message_id"].as_str().unwrap().to_owned()];
    for (i, who) in [&bob, &ada, &bob, &ada].iter().enumerate() {
        let (status, m) = s.send_text(who, &id, &format!("message {i}")).await;
        assert_eq!(status, 201, "{m}");
        assert_eq!(m["seq"], i as u64 + 2, "seq continues without gaps");
        ids.push(m["message_id"].as_str().unwrap().to_owned());
    }

    let page = s.list(&ada, &id, "sort=recent&page=1&limit=2").await;
    assert_eq!(page["total"], 5);
    assert_eq!(page["totalPages"], 3);
    assert_eq!(page["page"], 1);
    let got: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[4].as_str(), ids[3].as_str()], "newest first");
    let page3 = s.list(&ada, &id, "sort=recent&page=3&limit=2").await;
    let got: Vec<&str> = page3["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[0].as_str()]);
    let beyond = s.list(&ada, &id, "page=9&limit=2").await;
    assert_eq!(beyond["messages"], json!([]));

    // Appreciate message 2 twice (two users) and message 4 once: most_appreciated orders by count.
    for (who, m) in [(&ada, &ids[1]), (&bob, &ids[1]), (&ada, &ids[3])] {
        let r = s
            .http
            .post(s.url(&format!("/api/messages/{id}/{m}/appreciate")))
            .bearer_auth(who)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let top = s
        .list(&bob, &id, "sort=most_appreciated&page=1&limit=50")
        .await;
    let order: Vec<&str> = top["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        vec![
            ids[1].as_str(),
            ids[3].as_str(),
            ids[4].as_str(),
            ids[2].as_str(),
            ids[0].as_str()
        ]
    );
    assert_eq!(top["messages"][0]["appreciation_count"], 2);
    let likes = top["messages"][0]["likes"].as_array().unwrap();
    assert_eq!(likes.len(), 2);
    assert!(
        likes
            .iter()
            .all(|l| l["id"].is_u64() && l["user_id"].is_string()),
        "likes are {{id: number, user_id}}"
    );

    // Query validation.
    for (q, code) in [
        ("sort=oldest", "invalid_sort"),
        ("limit=0", "invalid_pagination"),
        ("limit=101", "invalid_pagination"),
        ("page=0", "invalid_pagination"),
        ("page=x", "invalid_pagination"),
    ] {
        let r = s
            .http
            .get(s.url(&format!("/api/messages/{id}?{q}")))
            .bearer_auth(&ada)
            .send()
            .await
            .unwrap();
        assert_error(r, 400, code).await;
    }
}

#[tokio::test]
async fn appreciation_toggles_and_counts() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("ada"), token("bob"));
    let id = s.create_space(&ada, "Likes").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, m) = s.send_text(&ada, &id, "like me").await;
    let mid = m["message_id"].as_str().unwrap();
    let url = s.url(&format!("/api/messages/{id}/{mid}/appreciate"));
    // Bob has not joined: reading (and appreciating) a public space needs no membership.
    let r: Value = s
        .http
        .post(&url)
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["appreciated"], true);
    assert_eq!(r["appreciation_count"], 1);
    assert_eq!(
        (r["message_id"].as_str(), r["space_id"].as_str()),
        (Some(mid), Some(id.as_str())),
        "the Appreciation of the document"
    );
    let listed = s.list(&ada, &id, "").await;
    assert_eq!(listed["messages"][0]["likes"][0]["user_id"], "bob");
    let r: Value = s
        .http
        .post(&url)
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["appreciated"], false);
    assert_eq!(r["appreciation_count"], 0);
    assert_eq!(
        s.list(&ada, &id, "").await["messages"][0]["appreciation_count"],
        0
    );
    let unknown = uuid::Uuid::now_v7();
    let r = s
        .http
        .post(s.url(&format!("/api/messages/{id}/{unknown}/appreciate")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "not_found").await;
    let r = s
        .http
        .post(s.url(&format!("/api/messages/{id}/not-a-uuid/appreciate")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "not_found").await;
}

#[tokio::test]
async fn delete_is_for_the_author_or_a_moderator() {
    let s = Server::start(&[]).await;
    let (ada, bob, eve) = (token("ada"), token("bob"), token("eve"));
    let id = s.create_space(&ada, "Deletes").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for t in [&bob, &eve] {
        assert_eq!(s.join(t, &id).await.status(), 200);
    }
    let (_, by_bob) = s.send_text(&bob, &id, "bob's").await;
    let (_, by_eve) = s.send_text(&eve, &id, "eve's").await;
    let del = |t: &str, m: &Value| {
        s.http
            .delete(s.url(&format!(
                "/api/messages/{id}/{}",
                m["message_id"].as_str().unwrap()
            )))
            .bearer_auth(t.to_owned())
            .send()
    };
    assert_error(del(&eve, &by_bob).await.unwrap(), 403, "forbidden").await;
    let r = del(&bob, &by_bob).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "Message deleted");
    assert_eq!(body["message_id"], by_bob["message_id"]);
    assert_error(del(&bob, &by_bob).await.unwrap(), 404, "not_found").await;
    // The creator (power 100) moderates.
    assert_eq!(del(&ada, &by_eve).await.unwrap().status(), 200);
    let listed = s.list(&ada, &id, "").await;
    assert_eq!(listed["total"], 0);
    assert_eq!(listed["messages"], json!([]));
    // Deletes are state changes with their own seq.
    let (_, next) = s.send_text(&ada, &id, "after").await;
    assert_eq!(next["seq"], 5);
}

#[tokio::test]
async fn media_is_validated_stored_and_served() {
    let s = Server::start(&["--max-media-bytes", "4096"]).await;
    let ada = token("ada");
    let id = s.create_space(&ada, "Pictures").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = s.url(&format!("/api/messages/{id}"));
    let media = || {
        Part::bytes(PNG.to_vec())
            .file_name("upload")
            .mime_str("application/octet-stream")
            .unwrap()
    };

    let form = Form::new()
        .part("media", media())
        .text("media_type", "image");
    let r = s
        .http
        .post(&url)
        .bearer_auth(&ada)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["media_type"], "image");
    assert_eq!(m["content"], Value::Null, "media-only message");
    assert_eq!(m["word_count"], 0);
    let media_url = m["media_url"].as_str().unwrap();
    assert!(
        media_url.starts_with("/api/media/"),
        "relative URL without --public-url: {media_url}"
    );
    let got = s.http.get(s.url(media_url)).send().await.unwrap();
    assert_eq!(got.status(), 200, "media is served without a token");
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(&got.bytes().await.unwrap()[..], PNG);

    let form = Form::new()
        .text("content", "caption")
        .part("media", media());
    assert_error(
        s.http
            .post(&url)
            .bearer_auth(&ada)
            .multipart(form)
            .send()
            .await
            .unwrap(),
        400,
        "invalid_media_type",
    )
    .await;
    let form = Form::new().part("media", media()).text("media_type", "gif");
    assert_error(
        s.http
            .post(&url)
            .bearer_auth(&ada)
            .multipart(form)
            .send()
            .await
            .unwrap(),
        400,
        "invalid_media_type",
    )
    .await;
    let form = Form::new()
        .part("media", media())
        .text("media_type", "audio");
    assert_error(
        s.http
            .post(&url)
            .bearer_auth(&ada)
            .multipart(form)
            .send()
            .await
            .unwrap(),
        400,
        "invalid_media_type",
    )
    .await;
    let form = Form::new()
        .part(
            "media",
            Part::bytes(b"just text".to_vec()).file_name("a.png"),
        )
        .text("media_type", "image");
    assert_error(
        s.http
            .post(&url)
            .bearer_auth(&ada)
            .multipart(form)
            .send()
            .await
            .unwrap(),
        400,
        "invalid_media_type",
    )
    .await;
    let big = Form::new()
        .part("media", Part::bytes(vec![0u8; 8192]).file_name("big"))
        .text("media_type", "image");
    assert_error(
        s.http
            .post(&url)
            .bearer_auth(&ada)
            .multipart(big)
            .send()
            .await
            .unwrap(),
        413,
        "payload_too_large",
    )
    .await;
    let r = s
        .http
        .get(s.url(&format!("/api/media/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "not_found").await;
    // Nothing bad was stored.
    assert_eq!(s.list(&ada, &id, "").await["total"], 1);
}

#[tokio::test]
async fn bad_sends_get_clear_errors_and_store_nothing() {
    let s = Server::start(&["--max-content-chars", "20", "--max-body-bytes", "1024"]).await;
    let (ada, bob) = (token("ada"), token("bob"));
    let id = s.create_space(&ada, "Strict").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/messages/{id}");
    let url = s.url(&path);
    for body in [
        json!({"content": ""}),
        json!({"content": "   \n\t "}),
        json!({}),
    ] {
        let r = s
            .http
            .post(&url)
            .bearer_auth(&ada)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_error(r, 400, "empty_message").await;
    }
    let form = Form::new().text("content", "    ");
    assert_error(
        s.http
            .post(&url)
            .bearer_auth(&ada)
            .multipart(form)
            .send()
            .await
            .unwrap(),
        400,
        "empty_message",
    )
    .await;
    let r = s
        .http
        .post(&url)
        .bearer_auth(&ada)
        .json(&json!({"content": "x".repeat(21)}))
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "content_too_long").await;
    let r = s
        .post_body(&ada, &path, "application/json", "{\"content\":")
        .await;
    assert_error(r, 400, "invalid_json").await;
    let r = s
        .post_body(&ada, &path, "application/json", vec![b' '; 4096])
        .await;
    assert_error(r, 413, "payload_too_large").await;
    let r = s.post_body(&ada, &path, "text/plain", "hi").await;
    assert_error(r, 415, "unsupported_media_type").await;
    let r = s
        .http
        .post(&url)
        .bearer_auth(&bob)
        .json(&json!({"content": "not a member"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "not_a_member").await;
    let unknown = uuid::Uuid::now_v7();
    let r = s
        .http
        .post(s.url(&format!("/api/messages/{unknown}")))
        .bearer_auth(&ada)
        .json(&json!({"content": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "not_found").await;
    let r = s
        .http
        .post(s.url("/api/messages/not-a-space"))
        .bearer_auth(&ada)
        .json(&json!({"content": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "not_found").await;
    let r = s
        .http
        .get(s.url(&format!("/api/spaces/{unknown}")))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "not_found").await;
    let r = s
        .http
        .delete(s.url(&format!("/api/messages/{id}/{unknown}")))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "not_found").await;
    let r = s.http.get(s.url("/api/nothing/here")).send().await.unwrap();
    assert_error(r, 404, "not_found").await;
    let r = s
        .http
        .put(s.url("/api/spaces"))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_error(r, 405, "method_not_allowed").await;
    let listed = s.list(&ada, &id, "").await;
    assert_eq!(listed["total"], 0, "no bad input was stored");
    let (status, m) = s.send_text(&ada, &id, "finally ok").await;
    assert_eq!(status, 201);
    assert_eq!(m["seq"], 1, "refused sends consumed no seq");
}

#[tokio::test]
async fn tokens_are_checked_and_only_token_problems_are_401() {
    let s = Server::start(&[]).await;
    let url = s.url("/api/spaces/my");
    assert_error(
        s.http.get(&url).send().await.unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    assert_error(
        s.http
            .get(&url)
            .header("authorization", "Basic YWRhOnB3")
            .send()
            .await
            .unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    let forged = token_with("some-other-secret-0123456789", "ada", 3600);
    assert_error(
        s.http.get(&url).bearer_auth(forged).send().await.unwrap(),
        401,
        "invalid_token",
    )
    .await;
    let expired = token_with(SECRET, "ada", -3600);
    assert_error(
        s.http.get(&url).bearer_auth(expired).send().await.unwrap(),
        401,
        "invalid_token",
    )
    .await;
    // alg "none": {"alg":"none","typ":"JWT"} . {"sub":"ada","exp":9999999999} . (no signature)
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZGEiLCJleHAiOjk5OTk5OTk5OTl9.";
    assert_error(
        s.http.get(&url).bearer_auth(none).send().await.unwrap(),
        401,
        "invalid_token",
    )
    .await;
    // RS256 header on an HMAC signature: no public key is configured, so it must not verify.
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384);
    let claims = json!({"sub": "ada", "exp": 9_999_999_999u64});
    let hs384 = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_error(
        s.http.get(&url).bearer_auth(hs384).send().await.unwrap(),
        401,
        "invalid_token",
    )
    .await;
    assert_error(
        s.http
            .get(&url)
            .bearer_auth("not.a.jwt")
            .send()
            .await
            .unwrap(),
        401,
        "invalid_token",
    )
    .await;
    // `user_id` is accepted in place of `sub`.
    let alt = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"user_id": "carol", "username": "Carol", "exp": 9_999_999_999u64}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let space = s.create_space(&alt, "Carol's").await;
    assert_eq!(space["creator"]["user_id"], "carol");
    assert_eq!(space["creator"]["username"], "Carol");
}
