//! Black-box tests of message search (issue 12): `GET /v1/spaces/{id}/messages/search` and
//! `GET /v1/search/messages`. Run on both stores (`SPACECAST_TEST_STORE=cql` for the CQL one).
//! Indexing is asynchronous (about 0.5 s): every wait for it is a bounded poll.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Server, assert_json_error, eventually, token};
use serde_json::{Value, json};

/// How long a message may take to become searchable in these tests (the target is 2 s; the
/// margin is for a loaded CI machine).
const INDEXED: Duration = Duration::from_secs(30);

fn id(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_owned()
}

fn enc(q: &str) -> String {
    percent_encoding::utf8_percent_encode(q, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn send(s: &Server, tok: &str, space: &str, text: &str) -> String {
    id(
        &s.v1_send(tok, space, json!({"content": text})).await,
        "message_id",
    )
}

async fn get(s: &Server, tok: &str, path: &str) -> reqwest::Response {
    s.http
        .get(s.url(path))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap()
}

/// One page of a search: `space` `None` searches every readable space.
async fn search(s: &Server, tok: &str, space: Option<&str>, q: &str, extra: &str) -> Value {
    let path = match space {
        Some(sp) => format!("/v1/spaces/{sp}/messages/search?q={}{extra}", enc(q)),
        None => format!("/v1/search/messages?q={}{extra}", enc(q)),
    };
    let res = get(s, tok, &path).await;
    assert_eq!(res.status(), 200, "GET {path}");
    res.json().await.unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|h| id(&h["message"], "message_id"))
        .collect()
}

/// Polls until the search answers exactly `want` (as a set).
async fn until_found(s: &Server, tok: &str, space: Option<&str>, q: &str, want: &[&str]) -> Value {
    let want: HashSet<String> = want.iter().map(|w| w.to_string()).collect();
    eventually(&format!("search {q:?} finds {want:?}"), INDEXED, || async {
        let page = search(s, tok, space, q, "&limit=50").await;
        let got: HashSet<String> = ids(&page).into_iter().collect();
        (got == want).then_some(page)
    })
    .await
}

#[tokio::test]
async fn sends_edits_redactions_and_deletions_are_searchable_as_they_are_now() {
    let s = Server::start(&[]).await;
    let ada = token("sx-ada");
    let space = id(&s.create_space(&ada, "search").await, "space_id");
    let fox = send(&s, &ada, &space, "The quick brown fox jumps").await;
    let other = send(&s, &ada, &space, "nothing to see").await;
    let page = until_found(&s, &ada, Some(&space), "QUICK fox", &[&fox]).await;
    let hit = &page["data"][0];
    assert_eq!(hit["message"]["content"], "The quick brown fox jumps");
    assert_eq!(hit["message"]["space_id"], space.as_str());
    assert!(hit["score"].as_f64().unwrap() > 0.0, "{hit}");
    assert_eq!(hit["highlights"][0]["field"], "content");
    let fragment: Vec<char> = hit["highlights"][0]["fragment"]
        .as_str()
        .unwrap()
        .chars()
        .collect();
    let marked: Vec<String> = hit["highlights"][0]["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let (a, b) = (
                r[0].as_u64().unwrap() as usize,
                r[1].as_u64().unwrap() as usize,
            );
            fragment[a..b].iter().collect()
        })
        .collect();
    assert_eq!(marked, ["quick", "fox"]);
    assert_eq!(page["next_cursor"], Value::Null);

    // Multi-byte text and body strings are searchable too.
    let cafe = send(&s, &ada, &space, "Déjà vu au café ☕").await;
    let page = until_found(&s, &ada, Some(&space), "CAFÉ", &[&cafe]).await;
    let h = &page["data"][0]["highlights"][0];
    let chars: Vec<char> = h["fragment"].as_str().unwrap().chars().collect();
    let (a, b) = (
        h["ranges"][0][0].as_u64().unwrap() as usize,
        h["ranges"][0][1].as_u64().unwrap() as usize,
    );
    assert_eq!(chars[a..b].iter().collect::<String>(), "café");
    let poll = id(
        &s.v1_send(
            &ada,
            &space,
            json!({"body": {"question": "Which planet?", "options": ["Jupiter", "Saturn"]}}),
        )
        .await,
        "message_id",
    );
    let page = until_found(&s, &ada, Some(&space), "saturn", &[&poll]).await;
    assert_eq!(page["data"][0]["highlights"][0]["field"], "body");

    // An edit: found by its new words, no longer by its old ones.
    let res = s
        .http
        .post(s.url(&format!("/v1/spaces/{space}/messages/{fox}/edit")))
        .bearer_auth(&ada)
        .json(&json!({"content": "A slow turtle"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let page = until_found(&s, &ada, Some(&space), "turtle", &[&fox]).await;
    assert_eq!(page["data"][0]["message"]["content"], "A slow turtle");
    until_found(&s, &ada, Some(&space), "quick", &[]).await;

    // A redaction and a deletion remove.
    let res = s
        .http
        .post(s.url(&format!("/v1/spaces/{space}/messages/{fox}/redact")))
        .bearer_auth(&ada)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    until_found(&s, &ada, Some(&space), "turtle", &[]).await;
    until_found(&s, &ada, Some(&space), "nothing", &[&other]).await;
    let (st, _) = s.delete_message(&ada, &space, &other).await;
    assert_eq!(st, 200);
    until_found(&s, &ada, Some(&space), "nothing", &[]).await;
    let metrics = s.metrics_text().await;
    assert!(
        metrics.contains("spacecast_search_ops_applied_total{kind=\"remove\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn private_spaces_never_reach_other_users_and_space_search_needs_read_access() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("sx-p-ada"), token("sx-p-bob"));
    let private = id(
        &s.create_space_with(
            &ada,
            json!({"title": "secret", "description": "d", "visibility": "private"}),
        )
        .await,
        "space_id",
    );
    let public = id(&s.create_space(&ada, "open").await, "space_id");
    let hidden = send(&s, &ada, &private, "banana secret plans").await;
    let open = send(&s, &ada, &public, "banana bread recipe").await;
    // The member finds both, in one space or across her spaces.
    until_found(&s, &ada, None, "banana", &[&hidden, &open]).await;
    until_found(&s, &ada, Some(&private), "banana", &[&hidden]).await;
    // Anyone else: only the public one, and the private space does not exist for them.
    let page = search(&s, &bob, None, "banana", "").await;
    assert_eq!(ids(&page), std::slice::from_ref(&open));
    assert!(
        search(&s, &bob, None, "secret plans", "").await["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let res = get(
        &s,
        &bob,
        &format!("/v1/spaces/{private}/messages/search?q=banana"),
    )
    .await;
    assert_json_error(res, 404, "not_found").await;
    // Once bob joins... he cannot (private); a public space needs no membership.
    until_found(&s, &bob, Some(&public), "bread", &[&open]).await;
}

#[tokio::test]
async fn results_page_by_cursor_and_bad_queries_get_stable_codes() {
    let s = Server::start(&[]).await;
    let ada = token("sx-pg-ada");
    let space = id(&s.create_space(&ada, "pages").await, "space_id");
    let mut sent = Vec::new();
    for i in 0..25 {
        sent.push(send(&s, &ada, &space, &format!("paging word number {i}")).await);
    }
    let want: Vec<&str> = sent.iter().map(String::as_str).collect();
    until_found(&s, &ada, Some(&space), "paging", &want).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let extra = match &cursor {
            Some(c) => format!("&limit=10&cursor={c}"),
            None => "&limit=10".to_owned(),
        };
        let page = search(&s, &ada, Some(&space), "paging", &extra).await;
        pages += 1;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    // Equal relevance: newest first.
    let mut newest_first = sent.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    // The default page size is 20.
    assert_eq!(
        ids(&search(&s, &ada, Some(&space), "paging", "").await).len(),
        20
    );

    let bad = |path: String| {
        let s = &s;
        let ada = ada.clone();
        async move { get(s, &ada, &path).await }
    };
    let base = format!("/v1/spaces/{space}/messages/search");
    for (path, code) in [
        (base.clone(), "invalid_query"),
        (format!("{base}?q="), "invalid_query"),
        (format!("{base}?q=%20%20"), "invalid_query"),
        (format!("{base}?q={}", "a".repeat(257)), "invalid_query"),
        (format!("{base}?q=a&limit=0"), "invalid_pagination"),
        (format!("{base}?q=a&limit=51"), "invalid_pagination"),
        (format!("{base}?q=a&cursor=abc"), "invalid_cursor"),
        (format!("{base}?q=a&cursor=1000"), "invalid_cursor"),
        ("/v1/search/messages?q=".to_owned(), "invalid_query"),
        (
            "/v1/search/messages?q=a&limit=x".to_owned(),
            "invalid_pagination",
        ),
    ] {
        assert_json_error(bad(path).await, 400, code).await;
    }
    // Query syntax is just text: no error from quotes, colons or operators.
    for q in ["\"paging", "paging:number", "(paging", "+paging -word"] {
        let page = search(&s, &ada, Some(&space), q, "&limit=1").await;
        assert_eq!(ids(&page).len(), 1, "{q}");
    }
    let unknown = uuid::Uuid::now_v7();
    assert_json_error(
        bad(format!("/v1/spaces/{unknown}/messages/search?q=a")).await,
        404,
        "not_found",
    )
    .await;
    assert_json_error(
        bad("/v1/spaces/not-a-uuid/messages/search?q=a".into()).await,
        404,
        "not_found",
    )
    .await;
    let res = s
        .http
        .get(s.url("/v1/search/messages?q=a"))
        .send()
        .await
        .unwrap();
    assert_json_error(res, 401, "unauthenticated").await;
}

#[tokio::test]
async fn the_index_is_rebuilt_from_the_store_and_a_kill_9_loses_no_acked_message() {
    let dir = tempfile::tempdir().unwrap();
    let ada = token("sx-r-ada");
    let mut s = Server::start_on(dir.path(), &[]).await;
    let space = id(&s.create_space(&ada, "restarts").await, "space_id");
    let first = send(&s, &ada, &space, "rebuilt zebra").await;
    until_found(&s, &ada, Some(&space), "zebra", &[&first]).await;
    s.terminate().await;

    // The index directory deleted: rebuilt from the store at start.
    std::fs::remove_dir_all(dir.path().join("search")).unwrap();
    let mut s = Server::start_on(dir.path(), &[]).await;
    until_found(&s, &ada, Some(&space), "zebra", &[&first]).await;

    // Killed right after the acks: every acked message is searchable after the restart.
    let mut acked = vec![first.clone()];
    for i in 0..20 {
        acked.push(send(&s, &ada, &space, &format!("zebra crossing {i}")).await);
    }
    s.kill9().await;
    let s = Server::start_on(dir.path(), &[]).await;
    let want: Vec<&str> = acked.iter().map(String::as_str).collect();
    until_found(&s, &ada, Some(&space), "zebra", &want).await;
}

#[tokio::test]
async fn search_off_answers_search_disabled() {
    let s = Server::start(&["--search", "off"]).await;
    let ada = token("sx-off");
    let space = id(&s.create_space(&ada, "off").await, "space_id");
    let res = get(&s, &ada, &format!("/v1/spaces/{space}/messages/search?q=a")).await;
    assert_json_error(res, 400, "search_disabled").await;
    assert!(!s.data_dir.join("search").exists(), "no index is kept");
}
