//! Black-box tests of reactions on the native surface (issue 10):
//! `PUT` / `DELETE /v1/spaces/{id}/messages/{mid}/reactions/{key}`, their `reaction_changed`
//! events, `reaction_counts` and `user_reactions` on reads, and Space7's appreciation as the key
//! `appreciate`. Run on both stores (`SPACECAST_TEST_STORE=cql` for the CQL one).

mod common;

use common::{Server, assert_json_error, token};
use serde_json::{Value, json};

async fn react(
    s: &Server,
    tok: &str,
    space: &str,
    mid: &str,
    key: &str,
    set: bool,
) -> (u16, Value) {
    let url = s.url(&format!(
        "/v1/spaces/{space}/messages/{mid}/reactions/{key}"
    ));
    let req = if set {
        s.http.put(&url)
    } else {
        s.http.delete(&url)
    };
    let res = req.bearer_auth(tok).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// `%F0%9F%91%8D` is 👍.
const THUMBS: &str = "%F0%9F%91%8D";

#[tokio::test]
async fn reactions_are_idempotent_per_user_counted_per_key_and_streamed_in_order() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("rx-ada"), token("rx-bob"));
    let space = s.create_space(&ada, "reactions").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.join(&bob, &space).await.status(), 200);
    let (st, m) = s.send_text(&ada, &space, "react to me").await;
    assert_eq!(st, 201, "{m}");
    let mid = m["message_id"].as_str().unwrap().to_owned();
    let seq0 = m["seq"].as_u64().unwrap();
    let mut ws = s.stream(&bob).await;
    ws.join(&space, Some(seq0)).await;

    // Set: counts per key; again: nothing changes, no event.
    let (st, r) = react(&s, &ada, &space, &mid, THUMBS, true).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["key"], "👍");
    assert_eq!(
        (r["reacted"].clone(), r["changed"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(r["reaction_counts"], json!({"👍": 1}));
    let (_, r) = react(&s, &ada, &space, &mid, THUMBS, true).await;
    assert_eq!(
        (r["reacted"].clone(), r["changed"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(
        r["reaction_counts"],
        json!({"👍": 1}),
        "idempotent per user"
    );
    let (_, r) = react(&s, &bob, &space, &mid, THUMBS, true).await;
    assert_eq!(r["reaction_counts"], json!({"👍": 2}));
    let (_, r) = react(&s, &bob, &space, &mid, "x.party", true).await;
    assert_eq!(r["reaction_counts"], json!({"👍": 2, "x.party": 1}));
    // Space7's appreciate is the key `appreciate`, both ways.
    let (st, a) = s.appreciate(&ada, &space, &mid).await;
    assert_eq!((st, a["appreciated"].clone()), (200, json!(true)), "{a}");
    let (_, r) = react(&s, &bob, &space, &mid, "appreciate", true).await;
    assert_eq!(r["reaction_counts"]["appreciate"], 2);
    // Remove: once changes, twice does not.
    let (_, r) = react(&s, &ada, &space, &mid, THUMBS, false).await;
    assert_eq!(
        (r["reacted"].clone(), r["changed"].clone()),
        (json!(false), json!(true))
    );
    let (_, r) = react(&s, &ada, &space, &mid, THUMBS, false).await;
    assert_eq!(r["changed"], json!(false));
    assert_eq!(
        r["reaction_counts"],
        json!({"👍": 1, "x.party": 1, "appreciate": 2})
    );

    // Reads: counts, the caller's own keys, no Space7 likes list; Space7 sees the likes.
    let got = s
        .get_json(&bob, &format!("/v1/spaces/{space}/messages/{mid}"))
        .await;
    assert_eq!(
        got["reaction_counts"],
        json!({"👍": 1, "x.party": 1, "appreciate": 2})
    );
    assert_eq!(got["appreciation_count"], 2);
    let mut mine: Vec<String> = serde_json::from_value(got["user_reactions"].clone()).unwrap();
    mine.sort();
    assert_eq!(mine, vec!["appreciate", "x.party", "👍"]);
    assert!(got.get("likes").is_none(), "{got}");
    let page = s
        .get_json(&ada, &format!("/v1/spaces/{space}/messages"))
        .await;
    assert_eq!(page["data"][0]["user_reactions"], json!(["appreciate"]));
    let space7 = s.list_all(&ada, &space).await;
    let likes: Vec<&str> = space7[0]["likes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        likes,
        vec!["rx-ada", "rx-bob"],
        "Space7 likes, oldest first"
    );
    assert_eq!(space7[0]["appreciation_count"], 2);

    // The stream saw exactly the six changes, in order, with their counts.
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let f = ws.next_matching(|f| f["event"] == "reaction_changed").await;
        seen.push((
            f["data"]["key"].as_str().unwrap().to_owned(),
            f["data"]["user_id"].as_str().unwrap().to_owned(),
            f["data"]["added"].as_bool().unwrap(),
            f["data"]["count"].as_u64().unwrap(),
            f["seq"].as_u64().unwrap(),
        ));
    }
    let keys: Vec<(&str, &str, bool, u64)> = seen
        .iter()
        .map(|(k, u, a, c, _)| (k.as_str(), u.as_str(), *a, *c))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("👍", "rx-ada", true, 1),
            ("👍", "rx-bob", true, 2),
            ("x.party", "rx-bob", true, 1),
            ("appreciate", "rx-ada", true, 1),
            ("appreciate", "rx-bob", true, 2),
            ("👍", "rx-ada", false, 1),
        ]
    );
    let seqs: Vec<u64> = seen.iter().map(|e| e.4).collect();
    assert_eq!(
        seqs,
        (seq0 + 1..=seq0 + 6).collect::<Vec<_>>(),
        "each change the next seq; the no-op calls took none"
    );

    // Deleting the message takes its reactions.
    assert_eq!(s.delete_message(&ada, &space, &mid).await.0, 200);
    let (st, r) = react(&s, &bob, &space, &mid, THUMBS, true).await;
    assert_eq!(st, 404, "{r}");
}

#[tokio::test]
async fn bad_reactions_get_clear_errors_and_change_nothing() {
    let s = Server::start(&[]).await;
    let (ada, eve) = (token("rx-bad-ada"), token("rx-bad-eve"));
    let space = s.create_space(&ada, "bad reactions").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let private = s
        .create_space_with(&ada, json!({"title": "hidden", "visibility": "private"}))
        .await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, m) = s.send_text(&ada, &space, "target").await;
    let mid = m["message_id"].as_str().unwrap().to_owned();
    let (_, pm) = s.send_text(&ada, &private, "secret").await;
    let pmid = pm["message_id"].as_str().unwrap().to_owned();
    let long = "k".repeat(65);
    for key in ["a%20b", "%FF", long.as_str(), "a%2Fb", "%0A"] {
        let url = s.url(&format!(
            "/v1/spaces/{space}/messages/{mid}/reactions/{key}"
        ));
        let res = s.http.put(&url).bearer_auth(&ada).send().await.unwrap();
        assert_json_error(res, 400, "invalid_reaction_key").await;
    }
    let url = s.url(&format!("/v1/spaces/{space}/messages/{mid}/reactions/ok"));
    assert_json_error(
        s.http.put(&url).send().await.unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    // A non-member of a private space sees nothing there.
    let url = s.url(&format!(
        "/v1/spaces/{private}/messages/{pmid}/reactions/ok"
    ));
    let res = s.http.put(&url).bearer_auth(&eve).send().await.unwrap();
    assert_json_error(res, 404, "not_found").await;
    // At most 50 keys per message; removing one makes room.
    for i in 0..50 {
        let (st, r) = react(&s, &ada, &space, &mid, &format!("k{i}"), true).await;
        assert_eq!(st, 200, "{r}");
    }
    let url = s.url(&format!("/v1/spaces/{space}/messages/{mid}/reactions/k50"));
    let res = s.http.put(&url).bearer_auth(&eve).send().await.unwrap();
    assert_json_error(res, 409, "too_many_reactions").await;
    let (st, r) = react(&s, &eve, &space, &mid, "k7", true).await;
    assert_eq!(
        (st, r["reaction_counts"]["k7"].clone()),
        (200, json!(2)),
        "an existing key is fine"
    );
    react(&s, &ada, &space, &mid, "k0", false).await;
    let (st, r) = react(&s, &eve, &space, &mid, "k50", true).await;
    assert_eq!(st, 200, "{r}");
    let got = s
        .get_json(&ada, &format!("/v1/spaces/{space}/messages/{mid}"))
        .await;
    assert_eq!(got["reaction_counts"].as_object().unwrap().len(), 50);
}

#[tokio::test]
async fn reactions_survive_a_restart_and_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_on(dir.path(), &[]).await;
    let ada = token("rx-restart");
    let space = s.create_space(&ada, "restart").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, m) = s.send_text(&ada, &space, "kept").await;
    let mid = m["message_id"].as_str().unwrap().to_owned();
    react(&s, &ada, &space, &mid, THUMBS, true).await;
    react(&s, &ada, &space, &mid, "appreciate", true).await;
    s.terminate().await;
    let s = Server::start_on(dir.path(), &[]).await;
    // The new incarnation knows ada's reactions (no double count), from the store.
    let (_, r) = react(&s, &ada, &space, &mid, THUMBS, true).await;
    assert_eq!(r["changed"], json!(false));
    assert_eq!(r["reaction_counts"], json!({"👍": 1, "appreciate": 1}));
    let (st, a) = s.appreciate(&ada, &space, &mid).await;
    assert_eq!(
        (st, a["appreciated"].clone()),
        (200, json!(false)),
        "toggled off: {a}"
    );
    let got = s
        .get_json(&ada, &format!("/v1/spaces/{space}/messages/{mid}"))
        .await;
    assert_eq!(got["reaction_counts"], json!({"👍": 1}));
    assert_eq!(got["user_reactions"], json!(["👍"]));
}
