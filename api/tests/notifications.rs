//! Black-box tests of notifications (issue 12): which actions notify whom, the Space7 REST
//! endpoints (`GET /api/notifications`, `PUT /api/notifications/{id}/read`,
//! `PUT /api/notifications/read-all`), and the live push on the user's channel to every native
//! and Socket.IO session of that user, and no other. Run on both stores
//! (`SPACECAST_TEST_STORE=cql` for the CQL one).

mod common;
#[path = "common/sio.rs"]
mod sio;

use std::time::Duration;

use common::{Server, assert_json_error, eventually, token};
use serde_json::{Value, json};
use sio::SioPeer;

async fn notifications(s: &Server, tok: &str, query: &str) -> Value {
    s.get_json(tok, &format!("/api/notifications?{query}"))
        .await
}

async fn mark(s: &Server, tok: &str, id: &str) -> reqwest::Response {
    s.http
        .put(s.url(&format!("/api/notifications/{id}/read")))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap()
}

/// `(type, reference_id, actor_id)` of each listed notification, newest first.
fn kinds(list: &Value) -> Vec<(String, String, String)> {
    list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["type"].as_str().unwrap().to_owned(),
                n["reference_id"].as_str().unwrap().to_owned(),
                n["actor_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn t(kind: &str, reference: &str, actor: &str) -> (String, String, String) {
    (kind.to_owned(), reference.to_owned(), actor.to_owned())
}

#[tokio::test]
async fn notifications_follow_the_rules_page_and_are_marked_read() {
    let s = Server::start(&[]).await;
    let (ada, bob, carol, dave) = (
        token("nt-ada"),
        token("nt-bob"),
        token("nt-carol"),
        token("nt-dave"),
    );
    let space = s.create_space(&ada, "Rust tips").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for t in [&bob, &carol] {
        assert_eq!(s.join(t, &space).await.status(), 200);
    }
    let (st, m1) = s.send_text(&ada, &space, "my tip").await;
    assert_eq!(st, 201, "{m1}");
    let m1 = m1["message_id"].as_str().unwrap().to_owned();

    // Appreciations: bob's (Space7 toggle), ada's own (none), bob off and on again (still one),
    // carol's through the `/v1` reaction key (another).
    assert_eq!(s.appreciate(&bob, &space, &m1).await.1["appreciated"], true);
    assert_eq!(s.appreciate(&ada, &space, &m1).await.1["appreciated"], true);
    assert_eq!(
        s.appreciate(&bob, &space, &m1).await.1["appreciated"],
        false
    );
    assert_eq!(s.appreciate(&bob, &space, &m1).await.1["appreciated"], true);
    let r = s
        .http
        .put(s.url(&format!(
            "/v1/spaces/{space}/messages/{m1}/reactions/appreciate"
        )))
        .bearer_auth(&carol)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Mentions: members only, never oneself (dave is not a member).
    let m2 = s
        .v1_send(
            &bob,
            &space,
            json!({"content": "hey", "mentions": ["nt-ada", "nt-carol", "nt-dave", "nt-bob"]}),
        )
        .await;
    let m2 = m2["message_id"].as_str().unwrap().to_owned();
    // Replies: carol in ada's thread (a reply); ada in her own (none); carol again, mentioning
    // ada (one notification: the mention).
    let m3 = s
        .v1_send(&carol, &space, json!({"content": "re", "parent_id": m1}))
        .await;
    let m3 = m3["message_id"].as_str().unwrap().to_owned();
    s.v1_send(&ada, &space, json!({"content": "me too", "parent_id": m1}))
        .await;
    let m5 = s
        .v1_send(
            &carol,
            &space,
            json!({"content": "re2", "parent_id": m1, "mentions": ["nt-ada"]}),
        )
        .await;
    let m5 = m5["message_id"].as_str().unwrap().to_owned();

    let list = notifications(&s, &ada, "page=1&limit=30").await;
    assert_eq!(
        kinds(&list),
        vec![
            t("mention", &m5, "nt-carol"),
            t("reply", &m3, "nt-carol"),
            t("mention", &m2, "nt-bob"),
            t("message_appreciated", &m1, "nt-carol"),
            t("message_appreciated", &m1, "nt-bob"),
        ],
        "{list}"
    );
    assert_eq!(
        (
            list["total"].clone(),
            list["unreadCount"].clone(),
            list["totalPages"].clone()
        ),
        (json!(5), json!(5), json!(1))
    );
    let first = &list["notifications"][0];
    assert_eq!(first["user_id"], "nt-ada");
    assert_eq!(first["is_read"], false);
    assert_eq!(first["space_id"], space.as_str());
    assert_eq!(first["actor"]["username"], "name-nt-carol");
    assert_eq!(first["message"], "name-nt-carol mentioned you in Rust tips");
    let num = first["id"].as_u64().expect("a numeric id");
    assert!(num > 0 && num < (1 << 53), "JS-safe: {num}");
    assert!(uuid::Uuid::parse_str(first["notification_id"].as_str().unwrap()).is_ok());
    let appreciated = &list["notifications"][4];
    assert_eq!(
        appreciated["message"],
        "name-nt-bob appreciated your message in Rust tips"
    );
    // The others: carol was mentioned once; bob, dave nothing.
    assert_eq!(
        kinds(&notifications(&s, &carol, "").await),
        vec![t("mention", &m2, "nt-bob")]
    );
    for who in [&bob, &dave] {
        let l = notifications(&s, who, "").await;
        assert_eq!(
            (l["total"].clone(), l["unreadCount"].clone()),
            (json!(0), json!(0))
        );
    }

    // Pages.
    let p = notifications(&s, &ada, "page=2&limit=2").await;
    assert_eq!(
        kinds(&p),
        vec![
            t("mention", &m2, "nt-bob"),
            t("message_appreciated", &m1, "nt-carol")
        ]
    );
    assert_eq!(
        (
            p["page"].clone(),
            p["totalPages"].clone(),
            p["total"].clone()
        ),
        (json!(2), json!(3), json!(5))
    );
    let past = notifications(&s, &ada, "page=9&limit=2").await;
    assert_eq!(past["notifications"], json!([]));
    for bad in ["page=0", "limit=0", "limit=101", "page=x"] {
        let r = s
            .http
            .get(s.url(&format!("/api/notifications?{bad}")))
            .bearer_auth(&ada)
            .send()
            .await
            .unwrap();
        assert_json_error(r, 400, "invalid_pagination").await;
    }
    let r = s
        .http
        .get(s.url("/api/notifications"))
        .send()
        .await
        .unwrap();
    assert_json_error(r, 401, "unauthenticated").await;

    // Read marks: by number, by UUID (idempotent); another user's id is not found.
    let uuid1 = list["notifications"][1]["notification_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = mark(&s, &ada, &num.to_string()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Marked as read"})
    );
    for _ in 0..2 {
        assert_eq!(mark(&s, &ada, &uuid1).await.status(), 200);
    }
    let (_, body) = assert_json_error(mark(&s, &bob, &uuid1).await, 404, "not_found").await;
    assert_eq!(body["error"], "Notification not found");
    assert_json_error(mark(&s, &bob, &num.to_string()).await, 404, "not_found").await;
    assert_json_error(mark(&s, &ada, "nope").await, 404, "not_found").await;
    let l = notifications(&s, &ada, "").await;
    assert_eq!(l["unreadCount"], 3);
    assert_eq!(l["notifications"][0]["is_read"], true);
    assert_eq!(l["notifications"][1]["is_read"], true);
    assert_eq!(l["notifications"][2]["is_read"], false);
    // Bob's marks changed nothing of carol's either.
    assert_eq!(notifications(&s, &carol, "").await["unreadCount"], 1);

    let r = s
        .http
        .put(s.url("/api/notifications/read-all"))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "All notifications marked as read"})
    );
    let l = notifications(&s, &ada, "").await;
    assert_eq!(
        (l["unreadCount"].clone(), l["total"].clone()),
        (json!(0), json!(5))
    );
    assert_eq!(notifications(&s, &carol, "").await["unreadCount"], 1);
    // Toggling bob's appreciation off and on again after all that still creates nothing, and
    // the one there stays read.
    s.appreciate(&bob, &space, &m1).await;
    assert_eq!(s.appreciate(&bob, &space, &m1).await.1["appreciated"], true);
    let l = notifications(&s, &ada, "").await;
    assert_eq!(
        (l["unreadCount"].clone(), l["total"].clone()),
        (json!(0), json!(5))
    );

    // A private space never reaches a non-member: mentioning dave there notifies nobody (and
    // ada's reply in her own thread nobody either).
    let private = s
        .create_space_with(
            &ada,
            json!({"title": "Secret", "description": "a private one", "visibility": "private"}),
        )
        .await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = s
        .v1_send(
            &ada,
            &private,
            json!({"content": "psst", "mentions": ["nt-dave"]}),
        )
        .await;
    assert_eq!(notifications(&s, &dave, "").await["total"], 0);
    assert_eq!(notifications(&s, &ada, "").await["total"], 5);
    let secret = secret["message_id"].as_str().unwrap();
    s.v1_send(
        &ada,
        &private,
        json!({"content": "re", "parent_id": secret}),
    )
    .await;
    assert_eq!(notifications(&s, &ada, "").await["total"], 5, "own thread");
}

/// Local sessions of the user's channel on `s` (the gauge `spacecast_user_subscriptions`).
async fn user_subscriptions(s: &Server) -> u64 {
    s.metric("spacecast_user_subscriptions").await
}

#[tokio::test]
async fn a_new_notification_reaches_every_session_of_its_user_and_no_other() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("live-ada"), token("live-bob"));
    let space = s.create_space(&ada, "Live").await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.join(&bob, &space).await.status(), 200);
    let (_, m) = s.send_text(&ada, &space, "appreciate me").await;
    let mid = m["message_id"].as_str().unwrap().to_owned();

    // Ada: two native streams and the Space7 app; bob: a native stream in the same space. A
    // native session is subscribed once its `hello` arrived; the Socket.IO one is counted.
    let mut a1 = s.stream(&ada).await;
    let mut a2 = s.stream(&ada).await;
    let mut b = s.stream(&bob).await;
    b.join(&space, None).await;
    let mut app = SioPeer::space7(&s, Some(&ada), Some(&space)).await;
    app.connected().await;
    eventually(
        "4 user-channel subscriptions",
        Duration::from_secs(10),
        || async { (user_subscriptions(&s).await == 4).then_some(()) },
    )
    .await;

    assert_eq!(
        s.appreciate(&bob, &space, &mid).await.1["appreciated"],
        true
    );
    for ws in [&mut a1, &mut a2] {
        let f = ws.next_matching(|v| v["type"] == "notification").await;
        assert_eq!(f["notification"]["user_id"], "live-ada");
        assert_eq!(f["notification"]["type"], "message_appreciated");
        assert_eq!(f["notification"]["reference_id"], mid.as_str());
        assert_eq!(f["notification"]["is_read"], false);
    }
    let n = app.event("notification").await;
    assert_eq!(n["user_id"], "live-ada");
    assert_eq!(n["type"], "message_appreciated");
    assert_eq!(n["actor_id"], "live-bob");
    // What was pushed is what the list has.
    let listed = s.get_json(&ada, "/api/notifications").await;
    assert_eq!(
        listed["notifications"][0]["notification_id"],
        n["notification_id"]
    );
    assert_eq!(listed["notifications"][0]["id"], n["id"]);

    // Bob's session got none of ada's: the first notification it sees is its own (a user's
    // channel delivers in publish order on a node).
    s.v1_send(
        &ada,
        &space,
        json!({"content": "thanks", "mentions": ["live-bob"]}),
    )
    .await;
    let f = b.next_matching(|v| v["type"] == "notification").await;
    assert_eq!(f["notification"]["user_id"], "live-bob", "{f}");
    assert_eq!(f["notification"]["type"], "mention");

    // Sessions release their subscription when they end.
    drop((a1, a2, b));
    drop(app);
    eventually(
        "no user-channel subscription",
        Duration::from_secs(10),
        || async { (user_subscriptions(&s).await == 0).then_some(()) },
    )
    .await;
}
