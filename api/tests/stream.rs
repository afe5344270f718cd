//! Black-box tests of the native realtime stream `GET /v1/stream` (CONTRACT.md §6, §7) against
//! the real binary: hello, join/leave, events in seq order, `since_seq` resume, WS sends, typing,
//! malformed frames, authentication (4001) and slow consumers (4008).

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Server, Ws, eventually, token, token_with, try_send_text};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Creates a public space owned by `owner`; returns its id.
async fn new_space(s: &Server, owner: &str) -> String {
    let space = s.create_space(owner, "stream test space").await;
    space["space_id"].as_str().expect("space_id").to_owned()
}

/// Sends a message over REST, asserting 201; returns the message.
async fn send(s: &Server, tok: &str, space: &str, content: &str) -> Value {
    let (status, m) = s.send_text(tok, space, content).await;
    assert_eq!(status, 201, "send: {m}");
    m
}

fn id_of(v: &Value) -> String {
    v["message_id"].as_str().expect("message_id").to_owned()
}

/// Joins and asserts success; returns `head_seq`.
async fn join_ok(ws: &mut Ws, space: &str, since: Option<u64>) -> u64 {
    let j = ws.join(space, since).await;
    assert_eq!(j["type"], "joined", "join {space}: {j}");
    j["head_seq"].as_u64().expect("head_seq")
}

/// The event frames of `space` among `frames`.
fn events_of(frames: &[Value], space: &str) -> Vec<Value> {
    frames
        .iter()
        .filter(|v| v["type"] == "event" && v["space_id"] == space)
        .cloned()
        .collect()
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

/// Sends a WS `send` and returns the answer carrying `local_id` (`ack` or `error`).
async fn ws_send(ws: &mut Ws, space: &str, content: Value, local_id: Value) -> Value {
    let mut frame = json!({"type": "send", "space_id": space, "local_id": local_id});
    if !content.is_null() {
        frame["content"] = content;
    }
    ws.send_json(frame).await;
    let lid = local_id.clone();
    ws.next_matching(move |v| (v["type"] == "ack" || v["type"] == "error") && v["local_id"] == lid)
        .await
}

#[tokio::test]
async fn hello_names_the_session_and_the_node() {
    let s = Server::start(&["--node-id", "stream-node-7"]).await;
    let (_a, hello_a) = s.stream_hello(&token("u1")).await;
    let (_b, hello_b) = s.stream_hello(&token("u1")).await;
    for h in [&hello_a, &hello_b] {
        assert_eq!(h["type"], "hello");
        assert_eq!(h["node_id"], "stream-node-7", "{h}");
        assert!(
            h["session_id"].as_str().is_some_and(|id| !id.is_empty()),
            "session_id is a non-empty string: {h}"
        );
    }
    assert_ne!(
        hello_a["session_id"], hello_b["session_id"],
        "each connection is its own session"
    );
}

#[tokio::test]
async fn join_reports_head_seq_and_rest_changes_arrive_as_ordered_events() {
    let s = Server::start(&[]).await;
    let (t1, t2, t3) = (token("u1"), token("u2"), token("u3"));
    let space = new_space(&s, &t1).await;
    assert!(s.join(&t2, &space).await.status().is_success());

    // A fresh space has no state change yet.
    let mut early = s.stream(&t3).await;
    assert_eq!(join_ok(&mut early, &space, None).await, 0);

    // Five prior state changes: three sends, an appreciation, a delete.
    let m1 = send(&s, &t1, &space, "first").await;
    let _m2 = send(&s, &t1, &space, "second").await;
    let m3 = send(&s, &t1, &space, "third").await;
    assert_eq!(s.appreciate(&t2, &space, &id_of(&m1)).await.0, 200);
    assert_eq!(s.delete_message(&t1, &space, &id_of(&m3)).await.0, 200);

    // u3 is not a member: it may still watch a public space.
    let mut ws = s.stream(&t3).await;
    let joined = ws.join(&space, None).await;
    assert_eq!(joined["type"], "joined");
    assert_eq!(joined["space_id"], space.as_str());
    assert_eq!(joined["head_seq"], 5, "head_seq counts the prior changes");

    // Live changes.
    let m4 = send(&s, &t1, &space, "fourth message here").await;
    let m5 = send(&s, &t2, &space, "fifth").await;
    assert_eq!(m4["seq"], 6);
    let (st, body) = s.appreciate(&t2, &space, &id_of(&m4)).await;
    assert_eq!((st, &body["appreciated"]), (200, &json!(true)));
    let (st, body) = s.appreciate(&t2, &space, &id_of(&m4)).await;
    assert_eq!((st, &body["appreciated"]), (200, &json!(false)));
    assert_eq!(s.delete_message(&t2, &space, &id_of(&m5)).await.0, 200);

    let evs = events_of(&ws.frames_until_event(&space, 10).await, &space);
    assert_eq!(seqs(&evs), (6..=10).collect::<Vec<_>>(), "{evs:#?}");
    let names: Vec<&str> = evs.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_created",
            "message_created",
            "reaction_changed",
            "reaction_changed",
            "message_deleted"
        ]
    );
    let created = &evs[0]["data"];
    assert_eq!(created["message_id"], m4["message_id"]);
    assert_eq!(created["content"], "fourth message here");
    assert_eq!(created["sender_id"], "u1");
    assert_eq!(created["seq"], 6);
    assert_eq!(created["word_count"], 3);
    assert_eq!(evs[1]["data"]["message_id"], m5["message_id"]);
    assert_eq!(evs[1]["data"]["sender_id"], "u2");
    let added = &evs[2]["data"];
    assert_eq!(added["message_id"], m4["message_id"]);
    assert_eq!(added["user_id"], "u2");
    assert_eq!(added["added"], true);
    assert_eq!(added["appreciation_count"], 1);
    let removed = &evs[3]["data"];
    assert_eq!(removed["message_id"], m4["message_id"]);
    assert_eq!(removed["added"], false);
    assert_eq!(removed["appreciation_count"], 0);
    let deleted = &evs[4]["data"];
    assert_eq!(deleted["message_id"], m5["message_id"]);
    assert_eq!(deleted["deleted_by"], "u2");

    // The session that joined before anything happened saw all ten, in order.
    let all = events_of(&early.frames_until_event(&space, 10).await, &space);
    assert_eq!(seqs(&all), (1..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn join_refuses_unknown_and_invisible_spaces() {
    let s = Server::start(&[]).await;
    let (t1, t3) = (token("u1"), token("u3"));
    let public = new_space(&s, &t1).await;
    let private = s
        .create_space_with(
            &t1,
            json!({"title": "secret club", "description": "", "visibility": "private"}),
        )
        .await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut outsider = s.stream(&t3).await;
    let unknown = uuid_like();
    for space in [unknown.as_str(), "not-a-space-id", private.as_str()] {
        let e = outsider.join(space, None).await;
        assert_eq!(e["type"], "error", "join {space}: {e}");
        assert_eq!(e["code"], "not_found", "join {space}: {e}");
    }
    // The same session can still watch a public space, and the member sees the private one.
    assert_eq!(join_ok(&mut outsider, &public, None).await, 0);
    let mut owner = s.stream(&t1).await;
    assert_eq!(join_ok(&mut owner, &private, None).await, 0);
}

/// A well-formed space id no space has.
fn uuid_like() -> String {
    "0190f0a0-0000-7000-8000-000000000001".to_owned()
}

#[tokio::test]
async fn since_seq_replays_what_was_missed_then_continues_live() {
    let s = Server::start(&[]).await;
    let t1 = token("u1");
    let space = new_space(&s, &t1).await;

    // A client sees 1..3 live, then goes away.
    let mut first = s.stream(&t1).await;
    join_ok(&mut first, &space, None).await;
    let mut sent = vec![Value::Null]; // index = message number
    for i in 1..=3 {
        sent.push(send(&s, &t1, &space, &format!("msg {i}")).await);
    }
    let seen = events_of(&first.frames_until_event(&space, 3).await, &space);
    assert_eq!(seqs(&seen), vec![1, 2, 3]);
    first.inner.close(None).await.expect("close");

    // While it is away: four sends and an appreciation (seqs 4..=8).
    for i in 4..=7 {
        sent.push(send(&s, &t1, &space, &format!("msg {i}")).await);
    }
    assert_eq!(s.appreciate(&t1, &space, &id_of(&sent[5])).await.0, 200);

    // It comes back with since_seq = 3: replay 4..=8, then live 9 and 10.
    let mut back = s.stream(&t1).await;
    assert_eq!(join_ok(&mut back, &space, Some(3)).await, 8);
    let mut frames = back.frames_until_event(&space, 8).await;
    for i in 9..=10 {
        sent.push(send(&s, &t1, &space, &format!("msg {i}")).await);
    }
    frames.extend(back.frames_until_event(&space, 10).await);
    let evs = events_of(&frames, &space);
    assert_eq!(
        seqs(&evs),
        (4..=10).collect::<Vec<_>>(),
        "exactly the missed events, then live ones, no gap, no duplicate"
    );
    for e in &evs {
        if e["seq"] == 8 {
            assert_eq!(e["event"], "reaction_changed");
            assert_eq!(e["data"]["message_id"], sent[5]["message_id"]);
        } else {
            let m = sent
                .iter()
                .find(|m| m["seq"] == e["seq"])
                .expect("a sent message has this seq");
            assert_eq!(e["event"], "message_created", "{e}");
            assert_eq!(e["data"]["message_id"], m["message_id"]);
            assert_eq!(e["data"]["content"], m["content"]);
        }
    }

    // since_seq = 0 replays everything; since_seq = head replays nothing.
    let mut full = s.stream(&t1).await;
    assert_eq!(join_ok(&mut full, &space, Some(0)).await, 10);
    let evs = events_of(&full.frames_until_event(&space, 10).await, &space);
    assert_eq!(seqs(&evs), (1..=10).collect::<Vec<_>>());
    let mut at_head = s.stream(&t1).await;
    assert_eq!(join_ok(&mut at_head, &space, Some(10)).await, 10);
    send(&s, &t1, &space, "msg 11").await;
    let evs = events_of(&at_head.frames_until_event(&space, 11).await, &space);
    assert_eq!(seqs(&evs), vec![11], "nothing before the live event");
}

#[tokio::test]
async fn resume_racing_with_concurrent_sends_has_no_gap_and_no_duplicate() {
    const BEFORE: u64 = 10;
    const DURING: u64 = 300;
    const TOTAL: u64 = BEFORE + DURING;
    let s = Server::start(&[]).await;
    let t1 = token("u1");
    let space = new_space(&s, &t1).await;
    for i in 0..BEFORE {
        send(&s, &t1, &space, &format!("before {i}")).await;
    }

    // Sends keep flowing (8 at a time) while readers join.
    let acked = Arc::new(AtomicU64::new(BEFORE));
    let sender = {
        let (http, base, tok, space, acked) = (
            s.http.clone(),
            s.base.clone(),
            t1.clone(),
            space.clone(),
            acked.clone(),
        );
        tokio::spawn(async move {
            futures::stream::iter(0..DURING)
                .map(|i| {
                    let (http, base, tok, space, acked) = (&http, &base, &tok, &space, &acked);
                    async move {
                        let (status, m) =
                            try_send_text(http, base, tok, space, &format!("during {i}"))
                                .await
                                .expect("send");
                        assert_eq!(status, 201, "{m}");
                        acked.fetch_add(1, Ordering::AcqRel);
                        m["seq"].as_u64().expect("seq")
                    }
                })
                .buffer_unordered(8)
                .collect::<Vec<u64>>()
                .await
        })
    };

    // Readers join at different points of the stream of sends, with different since_seq.
    let mut readers = Vec::new();
    for i in 0..4u64 {
        let threshold = BEFORE + i * 50;
        let now = eventually("sends acknowledged", Duration::from_secs(60), || {
            let n = acked.load(Ordering::Acquire);
            async move { (n >= threshold).then_some(n) }
        })
        .await;
        let since = match i {
            0 => Some(0),
            1 => Some(now / 2),
            2 => Some(now), // exactly what is acknowledged at this instant
            _ => None,
        };
        let mut ws = s.stream(&t1).await;
        let space = space.clone();
        readers.push(tokio::spawn(async move {
            let head = join_ok(&mut ws, &space, since).await;
            let evs = events_of(&ws.frames_until_event(&space, TOTAL).await, &space);
            (since, head, seqs(&evs))
        }));
    }

    let mut acked_seqs = sender.await.expect("sender");
    acked_seqs.sort_unstable();
    assert_eq!(
        acked_seqs,
        (BEFORE + 1..=TOTAL).collect::<Vec<_>>(),
        "every send acknowledged with its own seq"
    );
    for r in readers {
        let (since, head, got) = r.await.expect("reader");
        let first = since.unwrap_or(head) + 1;
        assert!(
            since.is_none_or(|k| k <= head),
            "since {since:?} ≤ head {head}"
        );
        assert_eq!(
            got,
            (first..=TOTAL).collect::<Vec<_>>(),
            "reader with since_seq {since:?} (head {head}) sees every seq once, in order"
        );
    }
}

#[tokio::test]
async fn ws_send_is_acked_with_its_local_id_and_fanned_out() {
    let s = Server::start(&[]).await;
    let (t1, t2) = (token("u1"), token("u2"));
    let space = new_space(&s, &t1).await;
    assert!(s.join(&t2, &space).await.status().is_success());

    let mut sender = s.stream(&t1).await; // sending does not require joining
    let mut watcher = s.stream(&t2).await;
    join_ok(&mut watcher, &space, None).await;

    let a = ws_send(
        &mut sender,
        &space,
        json!("  hello over ws  "),
        json!("l-1"),
    )
    .await;
    assert_eq!(a["type"], "ack", "{a}");
    assert_eq!(a["local_id"], "l-1");
    let m1 = &a["message"];
    assert_eq!(m1["content"], "hello over ws", "content is trimmed");
    assert_eq!(m1["sender_id"], "u1");
    assert_eq!(m1["space_id"], space.as_str());
    assert_eq!(m1["seq"], 1);
    assert_eq!(m1["sender"]["username"], "name-u1");

    let b = ws_send(&mut sender, &space, json!("numbered"), json!(42)).await;
    assert_eq!(b["type"], "ack", "{b}");
    assert_eq!(
        b["local_id"], 42,
        "a numeric local_id is echoed as a number"
    );
    assert_eq!(b["message"]["seq"], 2);

    let evs = events_of(&watcher.frames_until_event(&space, 2).await, &space);
    assert_eq!(seqs(&evs), vec![1, 2]);
    assert_eq!(evs[0]["event"], "message_created");
    assert_eq!(evs[0]["data"]["message_id"], m1["message_id"]);
    assert_eq!(evs[1]["data"]["message_id"], b["message"]["message_id"]);

    // Acknowledged means stored.
    let listed = s.list_all(&t2, &space).await;
    let ids: HashSet<String> = listed.iter().map(id_of).collect();
    assert!(ids.contains(&id_of(m1)) && ids.contains(&id_of(&b["message"])));
}

/// CONTRACT §7: the sends of one connection to one space are sequenced in the order they were
/// sent, even pipelined. 60 sends go out back to back before any ack is read, first on a cold
/// space (its actor is spawned by the first of them), then twice on the warm one; their seqs must
/// follow their `local_id`s exactly. Each send used to run in its own task, and the tasks raced to
/// the space's mailbox (3–9 inversions per 60 in the release build).
#[tokio::test]
async fn pipelined_ws_sends_are_sequenced_in_the_order_sent() {
    let s = Server::start(&[]).await;
    let t1 = token("u1");
    let mut ws = s.stream(&t1).await;
    let space = new_space(&s, &t1).await;
    const N: u64 = 60;
    for round in 0..3u64 {
        for i in 0..N {
            ws.send_json(json!({"type": "send", "space_id": space, "content": format!("m{i}"), "local_id": i}))
                .await;
        }
        let mut seq_of = vec![0u64; N as usize];
        for _ in 0..N {
            let a = ws
                .next_matching(|v| v["type"] == "ack" || v["type"] == "error")
                .await;
            assert_eq!(a["type"], "ack", "round {round}: {a}");
            let i = a["local_id"].as_u64().expect("local_id") as usize;
            assert_eq!(a["message"]["content"], format!("m{i}"));
            seq_of[i] = a["message"]["seq"].as_u64().expect("seq");
        }
        let expected: Vec<u64> = (round * N + 1..=round * N + N).collect();
        assert_eq!(
            seq_of, expected,
            "round {round}: seqs by local_id must follow the order sent"
        );
    }
}

#[tokio::test]
async fn ws_send_errors_carry_the_local_id_and_store_nothing() {
    let s = Server::start(&["--max-content-chars", "20"]).await;
    let (t1, t3) = (token("u1"), token("u3"));
    let public = new_space(&s, &t1).await;
    let private = s
        .create_space_with(
            &t1,
            json!({"title": "secret club", "description": "", "visibility": "private"}),
        )
        .await["space_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut member = s.stream(&t1).await;
    let cases = [
        (public.as_str(), json!(""), "e1", "empty_message"),
        (public.as_str(), json!("  \n\t "), "e2", "empty_message"),
        (public.as_str(), Value::Null, "e3", "empty_message"),
        (
            public.as_str(),
            json!("x".repeat(21)),
            "e4",
            "content_too_long",
        ),
        (&uuid_like(), json!("hi"), "e5", "not_found"),
        ("not-a-space-id", json!("hi"), "e6", "not_found"),
    ];
    for (space, content, lid, code) in cases {
        let e = ws_send(&mut member, space, content, json!(lid)).await;
        assert_eq!(e["type"], "error", "{lid}: {e}");
        assert_eq!(e["code"], code, "{lid}: {e}");
        assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    }

    let mut outsider = s.stream(&t3).await;
    let e = ws_send(&mut outsider, &public, json!("let me in"), json!("e7")).await;
    assert_eq!(
        (&e["type"], &e["code"]),
        (&json!("error"), &json!("not_a_member")),
        "{e}"
    );
    // A private space is invisible to non-members, as over REST (404 there).
    let (status, _) = s.send_text(&t3, &private, "let me in").await;
    assert_eq!(status, 404, "REST hides the private space");
    let e = ws_send(&mut outsider, &private, json!("let me in"), json!("e8")).await;
    assert_eq!(
        (&e["type"], &e["code"]),
        (&json!("error"), &json!("not_found")),
        "{e}"
    );

    // Nothing was stored, and the sessions still work.
    assert_eq!(s.list(&t1, &public, "").await["total"], 0);
    assert_eq!(s.list(&t1, &private, "").await["total"], 0);
    let ok = ws_send(&mut member, &public, json!("now fine"), json!("e9")).await;
    assert_eq!(ok["type"], "ack", "{ok}");
    assert_eq!(ok["message"]["seq"], 1, "the refused sends used no seq");
}

#[tokio::test]
async fn malformed_frames_get_invalid_frame_and_the_session_survives() {
    let s = Server::start(&[]).await;
    let t1 = token("u1");
    let space = new_space(&s, &t1).await;
    let mut ws = s.stream(&t1).await;

    let bad: Vec<WsMessage> = vec![
        WsMessage::text("not json"),
        WsMessage::text("[1, 2, 3]"),
        WsMessage::text("{}"),
        WsMessage::text(r#"{"type":"dance","space_id":"x"}"#),
        WsMessage::text(r#"{"type":"join"}"#),
        WsMessage::text(format!(
            r#"{{"type":"join","space_id":"{space}","since_seq":"abc"}}"#
        )),
        WsMessage::text(r#"{"space_id":"x"}"#),
        WsMessage::binary(vec![0u8, 1, 2, 3]),
    ];
    for msg in bad {
        let shown = format!("{msg:?}");
        ws.send_raw(msg).await;
        let e = ws.next_json().await.expect("the session stays open");
        assert_eq!(e["type"], "error", "{shown}: {e}");
        assert_eq!(e["code"], "invalid_frame", "{shown}: {e}");
    }
    // A send missing its space keeps the local_id for correlation.
    ws.send_raw(WsMessage::text(
        r#"{"type":"send","content":"hi","local_id":"m1"}"#,
    ))
    .await;
    let e = ws.next_json().await.expect("open");
    assert_eq!(
        (&e["code"], &e["local_id"]),
        (&json!("invalid_frame"), &json!("m1"))
    );

    // Still fully usable. (The session's own event may come before or after its ack.)
    assert_eq!(join_ok(&mut ws, &space, None).await, 0);
    ws.send_json(
        json!({"type": "send", "space_id": space, "content": "still here", "local_id": "after"}),
    )
    .await;
    let mut frames: Vec<Value> = Vec::new();
    let has_ack = |frames: &[Value]| frames.iter().any(|f| f["type"] == "ack");
    while !has_ack(&frames) || events_of(&frames, &space).is_empty() {
        frames.push(ws.next_json().await.expect("open"));
    }
    let ack = frames.iter().find(|f| f["type"] == "ack").unwrap();
    assert_eq!(ack["local_id"], "after");
    assert_eq!(seqs(&events_of(&frames, &space)), vec![1]);
    assert_eq!(
        events_of(&frames, &space)[0]["data"]["message_id"],
        ack["message"]["message_id"]
    );
}

#[tokio::test]
async fn authentication_failures_close_with_4001_and_query_tokens_work() {
    let s = Server::start(&[]).await;
    let t1 = token("u1");
    let space = new_space(&s, &t1).await;

    let forged = token_with("some-other-secret-0123456789", "u1", 3600);
    let expired = token_with(common::SECRET, "u1", -3600);
    let cases: [(&str, Option<&str>, Option<&str>); 5] = [
        ("no token", None, None),
        ("forged header token", Some(&forged), None),
        ("expired header token", Some(&expired), None),
        ("garbage header token", Some("abc.def.ghi"), None),
        ("forged query token", None, Some(&forged)),
    ];
    for (what, header, query) in cases {
        let mut ws = s.ws_connect(header, query, None).await;
        let (frames, code) = ws.drain_until_close().await;
        assert_eq!(code, Some(4001), "{what}: close code");
        assert!(
            frames.is_empty(),
            "{what}: no frame before the close: {frames:?}"
        );
    }

    // `?token=` authenticates like the header.
    let mut ws = s.ws_connect(None, Some(&t1), None).await;
    let hello = ws.next_json().await.expect("hello");
    assert_eq!(hello["type"], "hello");
    assert_eq!(join_ok(&mut ws, &space, None).await, 0);
    let ack = ws_send(&mut ws, &space, json!("via query token"), json!(1)).await;
    assert_eq!(ack["message"]["sender_id"], "u1", "{ack}");
}

#[tokio::test]
async fn typing_is_relayed_to_other_sessions_but_not_echoed() {
    let s = Server::start(&[]).await;
    let (t1, t2) = (token("u1"), token("u2"));
    let space = new_space(&s, &t1).await;

    let mut typer = s.stream(&t1).await;
    // Typing requires having joined.
    typer
        .send_json(json!({"type": "typing", "space_id": space}))
        .await;
    let e = typer.next_matching(|v| v["type"] == "error").await;
    assert_eq!(e["code"], "not_joined", "{e}");

    let mut other_user = s.stream(&t2).await;
    let mut same_user = s.stream(&t1).await;
    for ws in [&mut typer, &mut other_user, &mut same_user] {
        join_ok(ws, &space, None).await;
    }
    typer
        .send_json(json!({"type": "typing", "space_id": space}))
        .await;
    for ws in [&mut other_user, &mut same_user] {
        let t = ws.next_json().await.expect("open");
        assert_eq!(t["type"], "typing", "{t}");
        assert_eq!(t["space_id"], space.as_str());
        assert_eq!(t["user_id"], "u1");
        assert_eq!(t["username"], "name-u1");
    }

    // The typing signal went through the space's channel before this event: had it been
    // echoed, the sender would read it before the event.
    send(&s, &t1, &space, "after typing").await;
    let frames = typer.frames_until_event(&space, 1).await;
    assert!(
        frames.iter().all(|f| f["type"] != "typing"),
        "typing is not echoed to its sender: {frames:?}"
    );
    // Not stored, not sequenced: the message got seq 1.
    assert_eq!(events_of(&frames, &space)[0]["seq"], 1);
}

#[tokio::test]
async fn leave_stops_the_space_events() {
    let s = Server::start(&[]).await;
    let (t1, t2, t3) = (token("u1"), token("u2"), token("u3"));
    let a = new_space(&s, &t1).await;
    let b = new_space(&s, &t1).await;

    let mut leaver = s.stream(&t2).await;
    join_ok(&mut leaver, &a, None).await;
    join_ok(&mut leaver, &b, None).await;
    let mut observer = s.stream(&t3).await;
    join_ok(&mut observer, &a, None).await;

    leaver
        .send_json(json!({"type": "leave", "space_id": a}))
        .await;
    let left = leaver.next_json().await.expect("open");
    assert_eq!(left["type"], "left", "{left}");
    assert_eq!(left["space_id"], a.as_str());

    for i in 1..=3 {
        send(&s, &t1, &a, &format!("in a {i}")).await;
    }
    // Once the observer has them, they have been published to every subscriber of `a`.
    let seen = events_of(&observer.frames_until_event(&a, 3).await, &a);
    assert_eq!(seqs(&seen), vec![1, 2, 3]);

    // Markers: typing in `a` is refused (not joined any more), then an event of `b` arrives.
    leaver
        .send_json(json!({"type": "typing", "space_id": a}))
        .await;
    let mut frames = Vec::new();
    loop {
        let f = leaver.next_json().await.expect("open");
        let done = f["type"] == "error";
        frames.push(f);
        if done {
            break;
        }
    }
    assert_eq!(frames.last().unwrap()["code"], "not_joined");
    send(&s, &t1, &b, "in b").await;
    frames.extend(leaver.frames_until_event(&b, 1).await);
    assert!(
        events_of(&frames, &a).is_empty(),
        "no event of the left space: {frames:?}"
    );

    // Joining again resumes delivery.
    assert_eq!(join_ok(&mut leaver, &a, None).await, 3);
    send(&s, &t1, &a, "in a 4").await;
    let evs = events_of(&leaver.frames_until_event(&a, 4).await, &a);
    assert_eq!(seqs(&evs), vec![4]);
}

/// The subscriber queue of the slow-consumer test, in group commits (one hub item each). A
/// client that keeps reading drains it continuously and never lags; one that stops reading lags
/// once its socket is full and this many more commits are queued (or, if commits come slowly,
/// when its socket has taken nothing for the server's write-stall limit).
const SLOW_TEST_QUEUE: &str = "64";
const SEND_CONCURRENCY: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_with_4008_and_resumes_without_gap() {
    const N: u64 = 2000;
    let s = Server::start(&["--subscriber-queue", SLOW_TEST_QUEUE]).await;
    let t1 = token("u1");
    let space = new_space(&s, &t1).await;

    // A small receive buffer so the server's writes block soon after the client stops reading.
    let mut slow = s.ws_connect(Some(&t1), None, Some(4096)).await;
    assert_eq!(slow.next_json().await.expect("hello")["type"], "hello");
    assert_eq!(join_ok(&mut slow, &space, None).await, 0);
    // A client that keeps reading meanwhile: it must not be closed.
    let mut fast = s.stream(&token("u2")).await;
    assert_eq!(join_ok(&mut fast, &space, None).await, 0);
    let fast_reader = {
        let space = space.clone();
        tokio::spawn(async move {
            seqs(&events_of(
                &fast.frames_until_event(&space, N).await,
                &space,
            ))
        })
    };

    // ~8 MB of events while the slow one does not read.
    let sends = {
        let (http, base, tok, space) = (s.http.clone(), s.base.clone(), t1.clone(), space.clone());
        tokio::spawn(async move {
            let filler = "x".repeat(4000);
            futures::stream::iter(1..=N)
                .map(|i| {
                    let (http, base, tok, space, filler) = (&http, &base, &tok, &space, &filler);
                    async move {
                        try_send_text(http, base, tok, space, &format!("{i} {filler}"))
                            .await
                            .expect("send")
                    }
                })
                .buffer_unordered(SEND_CONCURRENCY)
                .collect::<Vec<(u16, Value)>>()
                .await
        })
    };
    // The server gives up on the slow client (its queue overflowed, or its socket took nothing
    // for a while, depending on how fast the store commits); then the client starts reading.
    let metrics = s.url("/metrics");
    eventually(
        "the server closes the slow consumer",
        Duration::from_secs(90),
        || {
            let (http, metrics) = (s.http.clone(), metrics.clone());
            async move {
                let text = http.get(&metrics).send().await.ok()?.text().await.ok()?;
                text.lines()
                    .any(|l| {
                        l.starts_with("spacecast_ws_closed_total{protocol=\"native\",reason=\"slow_consumer\"}")
                            && !l.ends_with(" 0")
                    })
                    .then_some(())
            }
        },
    )
    .await;

    // Now read: what was queued, then the 4008 close.
    let (frames, code) = slow.drain_until_close().await;
    let results = sends.await.expect("sends");
    assert!(
        results.iter().all(|(st, _)| *st == 201),
        "every send acknowledged"
    );
    assert_eq!(
        fast_reader.await.expect("fast reader"),
        (1..=N).collect::<Vec<_>>(),
        "the reading client got every event"
    );
    assert_eq!(code, Some(4008), "slow consumer close code");
    let got = seqs(&events_of(&frames, &space));
    let k = got.last().copied().unwrap_or(0);
    assert_eq!(
        got,
        (1..=k).collect::<Vec<_>>(),
        "what it did get has no gap"
    );
    assert!(k < N, "it fell behind before the end ({k})");

    // A fresh connection resumes where it stopped, and continues live.
    let mut again = s.stream(&t1).await;
    assert_eq!(join_ok(&mut again, &space, Some(k)).await, N);
    let mut frames = again.frames_until_event(&space, N).await;
    send(&s, &t1, &space, "live after resume").await;
    frames.extend(again.frames_until_event(&space, N + 1).await);
    let evs = events_of(&frames, &space);
    assert_eq!(seqs(&evs), (k + 1..=N + 1).collect::<Vec<_>>());
    let by_seq: std::collections::HashMap<u64, &Value> = results
        .iter()
        .map(|(_, m)| (m["seq"].as_u64().expect("seq"), &m["message_id"]))
        .collect();
    for e in evs.iter().filter(|e| e["seq"].as_u64() <= Some(N)) {
        assert_eq!(e["event"], "message_created");
        assert_eq!(
            &e["data"]["message_id"],
            by_seq[&e["seq"].as_u64().unwrap()],
            "replayed events carry their messages"
        );
    }
}
