//! Black-box tests of Space7 discovery (issue 12): `GET /api/spaces/trending`, `/recommended`,
//! `/search`, `/tag/{tag}`, on the suite's store (`SPACECAST_TEST_STORE=cql` for Cassandra).
//! Every server here is fresh, so its lists hold only the spaces the test creates. The trending
//! ranking is cached per node for 5 seconds (documented, not timed here): each test reads
//! trending only after all the activity it ranks.

mod common;

use common::{Server, assert_json_error, token};
use serde_json::{Value, json};

async fn create(
    s: &Server,
    tok: &str,
    title: &str,
    desc: &str,
    tags: &[&str],
    private: bool,
) -> String {
    let v = s
        .create_space_with(
            tok,
            json!({"title": title, "description": desc, "hashtags": tags,
                   "visibility": if private { "private" } else { "public" }}),
        )
        .await;
    v["space_id"].as_str().unwrap().to_owned()
}

/// `GET path` without a token: status and body.
async fn get(s: &Server, path: &str) -> (u16, Value) {
    let r = s.http.get(s.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn list(s: &Server, path: &str) -> Vec<Value> {
    let (status, body) = get(s, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body.as_array().expect("a JSON array").clone()
}

fn ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|v| v["space_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The Space7 `Space` shape (reference/space7.md §2): exact field types, a public space.
fn assert_space_shape(v: &Value) {
    assert!(v["space_id"].is_string(), "{v}");
    assert!(v["title"].is_string(), "{v}");
    assert!(v["description"].is_string(), "{v}");
    assert_eq!(v["visibility"], "public", "{v}");
    let c = &v["creator"];
    for k in ["user_id", "username", "profile_picture"] {
        assert!(c[k].is_string(), "creator.{k}: {v}");
    }
    assert!(v["participant_count"].is_u64(), "{v}");
    for t in v["tags"].as_array().expect("tags") {
        assert!(t["tag_id"].is_u64(), "{v}");
        assert!(t["tag_name"].is_string(), "{v}");
    }
    assert_eq!(v["is_archived"], false);
    assert_eq!(v["is_locked"], false);
}

#[tokio::test]
async fn trending_ranks_public_spaces_by_activity_then_newest() {
    let s = Server::start(&[]).await;
    let (ada, bob, cat) = (token("tr-ada"), token("tr-bob"), token("tr-cat"));
    let quiet = create(&s, &ada, "Quiet place", "nobody talks here", &["x"], false).await;
    let busy = create(&s, &ada, "Busy place", "lots of talking here", &[], false).await;
    let some = create(&s, &ada, "Some place", "a little talking here", &[], false).await;
    let hidden = create(&s, &ada, "Hidden place", "the busiest of all", &[], true).await;
    let newest = create(&s, &bob, "Newest place", "just created here", &[], false).await;
    // busy: 3 messages + 2 joins; some: 2 messages; the private one: more than all.
    for tok in [&bob, &cat] {
        assert_eq!(s.join(tok, &busy).await.status(), 200);
    }
    for i in 0..3 {
        assert_eq!(s.send_text(&ada, &busy, &format!("busy {i}")).await.0, 201);
    }
    for i in 0..2 {
        assert_eq!(s.send_text(&ada, &some, &format!("some {i}")).await.0, 201);
    }
    for i in 0..8 {
        assert_eq!(s.send_text(&ada, &hidden, &format!("hid {i}")).await.0, 201);
    }

    let got = list(&s, "/api/spaces/trending?limit=10&visibility=public").await;
    // Active spaces by score, then the newest public spaces fill the list.
    assert_eq!(
        ids(&got),
        [busy.clone(), some.clone(), newest.clone(), quiet.clone()]
    );
    for v in &got {
        assert_space_shape(v);
    }
    assert_eq!(got[0]["participant_count"], 3);
    assert_eq!(got[0]["creator"]["user_id"], "tr-ada");
    assert_eq!(
        got[3]["tags"],
        json!([{"tag_id": got[3]["tags"][0]["tag_id"], "tag_name": "x"}])
    );
    assert!(
        !ids(&got).contains(&hidden),
        "a private space is never listed"
    );

    // The same ranking with any `visibility` (only public spaces exist for discovery), with a
    // token (ignored, even a bad one), and cut by `limit`.
    assert_eq!(
        ids(&list(&s, "/api/spaces/trending?visibility=private").await),
        ids(&got)
    );
    let r = s
        .http
        .get(s.url("/api/spaces/trending?limit=2"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let two: Vec<Value> = r.json().await.unwrap();
    assert_eq!(ids(&two), [busy, some]);
    for bad in ["0", "51", "ten", "-1", "", "%2010"] {
        let r = s
            .http
            .get(s.url(&format!("/api/spaces/trending?limit={bad}")))
            .send()
            .await
            .unwrap();
        assert_json_error(r, 400, "invalid_pagination").await;
    }
}

#[tokio::test]
async fn recommended_lists_public_spaces_the_caller_has_not_joined() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("rc-ada"), token("rc-bob"));
    let joined = create(&s, &ada, "Joined one", "bob is in it", &[], false).await;
    let active = create(&s, &ada, "Active one", "people talk", &[], false).await;
    let private = create(&s, &ada, "Private one", "invisible", &[], true).await;
    let own = create(&s, &bob, "Bob's own", "bob created it", &[], false).await;
    let fresh = create(&s, &ada, "Fresh one", "the newest", &[], false).await;
    assert_eq!(s.join(&bob, &joined).await.status(), 200);
    assert_eq!(s.send_text(&ada, &active, "hello").await.0, 201);
    assert_eq!(s.send_text(&ada, &private, "secret").await.0, 201);

    let got = s.get_json(&bob, "/api/spaces/recommended?limit=10").await;
    let got = got.as_array().unwrap().clone();
    for v in &got {
        assert_space_shape(v);
        assert!(v.get("role").is_none(), "the caller is no member: {v}");
    }
    // Trending first (joined is active too: bob's join), then newest; never a space bob is in.
    assert_eq!(ids(&got), [active.clone(), fresh.clone()]);
    assert!(!ids(&got).contains(&own) && !ids(&got).contains(&private));
    let one = s.get_json(&bob, "/api/spaces/recommended?limit=1").await;
    assert_eq!(ids(one.as_array().unwrap()), [active]);
    // Ada is in every space but bob's.
    let for_ada = s.get_json(&ada, "/api/spaces/recommended").await;
    assert_eq!(ids(for_ada.as_array().unwrap()), [own]);

    let r = s
        .http
        .get(s.url("/api/spaces/recommended"))
        .send()
        .await
        .unwrap();
    assert_json_error(r, 401, "unauthenticated").await;
    let r = s
        .http
        .get(s.url("/api/spaces/recommended"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_json_error(r, 401, "invalid_token").await;
    let r = s
        .http
        .get(s.url("/api/spaces/recommended?limit=0"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_json_error(r, 400, "invalid_pagination").await;
}

#[tokio::test]
async fn search_matches_word_prefixes_title_first_and_never_private_spaces() {
    let s = Server::start(&[]).await;
    let ada = token("se-ada");
    let rust = create(
        &s,
        &ada,
        "Rustacean meetup",
        "monthly talks about systems",
        &[],
        false,
    )
    .await;
    let garden = create(
        &s,
        &ada,
        "Gardening club",
        "we talk rust-removal on tools",
        &[],
        false,
    )
    .await;
    let secret = create(&s, &ada, "Rust secrets", "private talks", &[], true).await;
    let ete = create(&s, &ada, "Été à Paris", "des promenades", &[], false).await;

    let q = |s: &'static str| format!("/api/spaces/search?q={s}");
    // A title match first, then description matches.
    let got = list(&s, &q("rust")).await;
    assert_eq!(ids(&got), [rust.clone(), garden.clone()]);
    for v in &got {
        assert_space_shape(v);
    }
    assert!(!ids(&got).contains(&secret));
    // Case-insensitive; every word must prefix-match; both here only in descriptions → newest.
    assert_eq!(
        ids(&list(&s, &q("RUST%20Talk")).await),
        [garden.clone(), rust.clone()]
    );
    assert_eq!(ids(&list(&s, &q("rustacean%20meet")).await), [rust]);
    assert!(
        list(&s, &q("rust%20nowhere")).await.is_empty(),
        "every word must match"
    );
    assert!(
        list(&s, &q("ust")).await.is_empty(),
        "prefixes, not substrings"
    );
    // Unicode lowercase, words split on non-alphanumerics.
    assert_eq!(ids(&list(&s, &q("%C3%89T")).await), [ete]);
    assert_eq!(ids(&list(&s, &q("removal")).await), [garden]);
    // Nothing usable: [].
    for empty in ["", "%20%20", "r", "-", "a%20b"] {
        assert!(list(&s, &q(empty)).await.is_empty(), "q={empty}");
    }
    assert!(list(&s, "/api/spaces/search").await.is_empty(), "no q");
    // Too long, too many words: 400 with a stable code.
    let long = "a".repeat(201);
    let r = s
        .http
        .get(s.url(&format!("/api/spaces/search?q={long}")))
        .send()
        .await
        .unwrap();
    assert_json_error(r, 400, "invalid_query").await;
    let r = s
        .http
        .get(s.url("/api/spaces/search?q=aa%20bb%20cc%20dd%20ee%20ff%20gg%20hh%20ii"))
        .send()
        .await
        .unwrap();
    assert_json_error(r, 400, "invalid_query").await;
}

#[tokio::test]
async fn tags_list_public_spaces_newest_first_at_most_fifty() {
    let s = Server::start(&[]).await;
    let ada = token("tg-ada");
    let first = create(&s, &ada, "First tagged", "one", &["#Rust", "Web"], false).await;
    let hidden = create(&s, &ada, "Hidden tagged", "two", &["rust"], true).await;
    let second = create(&s, &ada, "Second tagged", "three", &["RUST"], false).await;
    let want = [second.clone(), first.clone()];
    for path in ["rust", "RUST", "%23Rust", "%23rust"] {
        let got = list(&s, &format!("/api/spaces/tag/{path}")).await;
        assert_eq!(ids(&got), want, "tag {path}");
        for v in &got {
            assert_space_shape(v);
        }
        assert!(!ids(&got).contains(&hidden));
    }
    assert_eq!(ids(&list(&s, "/api/spaces/tag/web").await), [first]);
    assert!(list(&s, "/api/spaces/tag/unknown").await.is_empty());
    assert!(
        list(&s, "/api/spaces/tag/%FF").await.is_empty(),
        "not UTF-8"
    );
    // Route order: these paths are not read as space ids.
    assert!(list(&s, "/api/spaces/search?q=zz").await.is_empty());

    // At most 50, the newest.
    let mut many = Vec::new();
    for i in 0..51 {
        many.push(create(&s, &ada, &format!("Bulk {i}"), "bulk", &["bulk"], false).await);
    }
    let got = ids(&list(&s, "/api/spaces/tag/bulk").await);
    many.reverse();
    assert_eq!(got, many[..50]);
}
