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
