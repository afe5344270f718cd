//! Black-box tests of Socket.IO at `/socket.io/` (CONTRACT.md §4, reference/space7.md §4)
//! against the real binary, with the real `socket.io-client` v4 used exactly as the Space7 app
//! uses it (`tests/js/sio_peer.mjs`) and a raw Engine.IO client in Rust where a client must
//! misbehave. REST drives the writes; the peers' printed events are the observations.
//!
//! "Nothing else arrived" is asserted after a marker: events of a space reach a socket in seq
//! order, so once a socket has the marker (a later write), everything written before it that
//! was going to reach it has.

mod common;
#[path = "common/sio.rs"]
mod sio;

use std::collections::HashMap;
use std::time::Duration;

use common::{Server, eventually, token, token_with};
use serde_json::{Value, json};
use sio::{RawSio, SioPeer, event_of};

/// Creates a public space owned by `owner`, which `members` join (to send); returns its id.
async fn new_space(s: &Server, owner: &str, members: &[&str]) -> String {
    let space = s.create_space(owner, "socket.io space").await;
    let space = space["space_id"].as_str().expect("space_id").to_owned();
    for m in members {
        assert_eq!(s.join(m, &space).await.status(), 200, "join");
    }
    space
}

/// Sends `content` over REST, asserting 201; returns the message as REST rendered it.
async fn send(s: &Server, tok: &str, space: &str, content: &str) -> Value {
    let (status, m) = s.send_text(tok, space, content).await;
    assert_eq!(status, 201, "send: {m}");
    m
}

fn id_of(v: &Value) -> &str {
    v["message_id"].as_str().expect("message_id")
}

/// The value of the first `/metrics` line starting with `prefix` (0 when absent).
async fn metric(s: &Server, prefix: &str) -> u64 {
    s.metrics_text()
        .await
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// A Space7-style peer of user `user` that joined `space` (it emitted `join_space` right after
/// `connect()`, and the server confirmed).
async fn joined_peer(s: &Server, user: &str, space: &str) -> SioPeer {
    let mut p = SioPeer::space7(s, Some(&token(user)), Some(space)).await;
    p.connected().await;
    p.joined(space).await;
    p
}

/// 1. REST sends and appreciations (on and off) by one user reach the other user's socket
///    exactly once, in the contract's shapes, and never the acting user's own sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reach_the_other_user_exactly_once_and_never_the_actor() {
    let s = Server::start(&[]).await;
    let (ada, bob, cy) = (token("ada"), token("bob"), token("cy"));
    let space = new_space(&s, &ada, &[&cy]).await;
    let mut a = joined_peer(&s, "ada", &space).await;
    let mut b = joined_peer(&s, "bob", &space).await;

    let sent: Vec<Value> = [
        send(&s, &ada, &space, "first").await,
        send(&s, &ada, &space, "second").await,
        send(&s, &ada, &space, "third").await,
    ]
    .into();
    for m in &sent {
        let got = b.received(m["content"].as_str().unwrap()).await;
        // `{space_id, message}`, the message exactly as the REST send answered it.
        assert_eq!(got, json!({"space_id": space, "message": m}));
    }

    // Bob toggles his appreciation of the first message on, then off.
    let first = id_of(&sent[0]).to_owned();
    let (status, on) = s.appreciate(&bob, &space, &first).await;
    assert_eq!((status, on["appreciated"].as_bool()), (200, Some(true)));
    let got = a.event("message_appreciated").await;
    let seq_on = got["seq"].as_u64().expect("seq");
    assert_eq!(
        got,
        json!({"spaceId": space, "messageId": first, "appreciated": true, "userId": "bob",
               "appreciation_count": 1, "seq": seq_on})
    );
    let (status, off) = s.appreciate(&bob, &space, &first).await;
    assert_eq!((status, off["appreciated"].as_bool()), (200, Some(false)));
    let got = a.event("message_appreciated").await;
    assert_eq!(
        got,
        json!({"spaceId": space, "messageId": first, "appreciated": false, "userId": "bob",
               "appreciation_count": 0, "seq": seq_on + 1})
    );
    // Ada appreciates her own second message: Bob hears of it, Ada's socket does not.
    let second = id_of(&sent[1]).to_owned();
    assert_eq!(s.appreciate(&ada, &space, &second).await.0, 200);
    let got = b.event("message_appreciated").await;
    assert_eq!(
        (&got["messageId"], &got["userId"], &got["appreciated"]),
        (&json!(second), &json!("ada"), &json!(true))
    );

    // A third user's message, after everything above, reaches both.
    let marker = send(&s, &cy, &space, "marker").await;
    a.received("marker").await;
    b.received("marker").await;

    // Ada: the marker and Bob's two toggles, nothing of her own doing.
    let a_messages = a.payloads("receive_message");
    assert_eq!(
        a_messages.len(),
        1,
        "Ada's socket got her own messages: {a_messages:?}"
    );
    assert_eq!(a_messages[0]["message"], marker);
    let a_likes = a.payloads("message_appreciated");
    assert_eq!(a_likes.len(), 2, "{a_likes:?}");
    assert!(a_likes.iter().all(|l| l["userId"] == "bob"));
    // Bob: each of the four messages once, in order, and only Ada's appreciation.
    let b_ids: Vec<String> = b
        .payloads("receive_message")
        .iter()
        .map(|p| id_of(&p["message"]).to_owned())
        .collect();
    let want: Vec<String> = sent
        .iter()
        .chain([&marker])
        .map(|m| id_of(m).to_owned())
        .collect();
    assert_eq!(b_ids, want, "every message once, in order");
    let b_likes = b.payloads("message_appreciated");
    assert_eq!(
        b_likes.len(),
        1,
        "Bob's socket got his own toggles: {b_likes:?}"
    );
    // Ordinary sockets were never told of errors.
    assert!(a.payloads("spacecast_error").is_empty() && b.payloads("spacecast_error").is_empty());
}

/// 2. The app's own relays (`send_message`, `message_appreciated` after its REST calls) are
///    ignored: nobody receives anything from them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_relays_are_never_rebroadcast() {
    let s = Server::start(&[]).await;
    let (ada, cy) = (token("ada"), token("cy"));
    let space = new_space(&s, &ada, &[&cy]).await;
    let mut a = joined_peer(&s, "ada", &space).await;
    let mut b = joined_peer(&s, "bob", &space).await;
    let before = metric(
        &s,
        "spacecast_ws_frames_received_total{protocol=\"socketio\",type=\"relay_ignored\"}",
    )
    .await;
    // What the app emits after its REST send and appreciate.
    let fake =
        json!({"message_id": "m", "space_id": space, "content": "relayed", "sender_id": "bob"});
    b.emit("send_message", json!({"spaceId": space, "message": fake}))
        .await;
    b.emit(
        "message_appreciated",
        json!({"spaceId": space, "messageId": "m", "appreciated": true, "userId": "bob"}),
    )
    .await;
    eventually("both relays counted", Duration::from_secs(10), || async {
        (metric(
            &s,
            "spacecast_ws_frames_received_total{protocol=\"socketio\",type=\"relay_ignored\"}",
        )
        .await
            >= before + 2)
            .then_some(())
    })
    .await;
    let marker = send(&s, &cy, &space, "marker").await;
    for p in [&mut a, &mut b] {
        p.received("marker").await;
        // Presence events (the sockets' own users coming online) are not the point here.
        let events: Vec<String> = p
            .events()
            .into_iter()
            .map(|(e, _)| e)
            .filter(|e| !e.starts_with("presence"))
            .collect();
        assert_eq!(
            events,
            ["joined_space", "receive_message"],
            "only the marker"
        );
        assert_eq!(p.payloads("receive_message")[0]["message"], marker);
    }
}

/// 3. `join_space` emitted before the handshake completes (the app's flow) joins: many
///    connections at once, each confirmed, and the next REST send reaches every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_emitted_before_the_handshake_completes_still_joins() {
    const N: u64 = 20;
    let s = Server::start(&[]).await;
    let ada = token("ada");
    let space = new_space(&s, &ada, &[]).await;
    let mut peers = SioPeer::start(json!({
        "url": s.base, "token": token("bob"), "join": space, "count": N,
    }))
    .await;
    // Every join was emitted while the socket was not connected yet.
    for i in 0..N {
        let e = peers
            .next(&format!("socket {i}'s join emitted"), |v| {
                v["kind"] == "emitted" && v["i"] == i
            })
            .await;
        assert_eq!(e["connected"], false, "{e}");
    }
    let mut joined = HashMap::new();
    while joined.len() < N as usize {
        let v = peers
            .next("every socket joined", |v| {
                v["event"] == "joined_space" && v["data"]["space_id"] == space
            })
            .await;
        assert!(
            joined.insert(v["i"].as_u64().unwrap(), ()).is_none(),
            "twice: {v}"
        );
    }
    let m = send(&s, &ada, &space, "to everyone").await;
    let mut got = HashMap::new();
    while got.len() < N as usize {
        let v = peers
            .next("every socket's receive_message", |v| {
                v["event"] == "receive_message"
            })
            .await;
        assert_eq!(v["data"]["message"], m);
        assert!(
            got.insert(v["i"].as_u64().unwrap(), ()).is_none(),
            "twice: {v}"
        );
    }
}

/// 4. A bad token is refused with `Invalid token`, a missing one with `Authentication
///    required`: the connect error's message, as the Space7 backend words it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_missing_tokens_are_refused_with_the_space7_words() {
    let s = Server::start(&[]).await;
    let refused_before = metric(
        &s,
        "spacecast_ws_refused_total{protocol=\"socketio\",reason=\"auth_failed\"}",
    )
    .await;
    for (what, tok) in [
        ("garbage", "not-a-jwt".to_owned()),
        ("expired", token_with(common::SECRET, "ada", -3600)),
        (
            "wrong key",
            token_with("another-secret-0123456789", "ada", 3600),
        ),
    ] {
        let mut p = SioPeer::space7(&s, Some(&tok), Some("x")).await;
        assert_eq!(p.connect_error().await, "Invalid token", "{what}");
        p.exit().await;
    }
    let mut p = SioPeer::space7(&s, None, Some("x")).await;
    assert_eq!(p.connect_error().await, "Authentication required");
    p.exit().await;
    let mut p = SioPeer::space7(&s, Some(""), None).await;
    assert_eq!(
        p.connect_error().await,
        "Authentication required",
        "an empty token"
    );
    p.exit().await;
    assert_eq!(
        metric(
            &s,
            "spacecast_ws_refused_total{protocol=\"socketio\",reason=\"auth_failed\"}"
        )
        .await,
        refused_before + 5
    );
    // The `token` query parameter is accepted too.
    let mut p = SioPeer::start(json!({"url": s.base, "query": {"token": token("ada")}})).await;
    p.connected().await;
}

/// A user at `--max-connections-per-user` (native and Socket.IO connections together) is
/// refused with `Too many connections`; a closed connection gives its place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_cap_holds_across_protocols() {
    let s = Server::start(&["--max-connections-per-user", "2"]).await;
    let ada = token("ada");
    let _native = s.stream(&ada).await;
    let mut sio = SioPeer::space7(&s, Some(&ada), None).await;
    sio.connected().await;
    let mut third = SioPeer::space7(&s, Some(&ada), None).await;
    assert_eq!(third.connect_error().await, "Too many connections");
    third.exit().await;
    assert!(
        metric(
            &s,
            "spacecast_ws_refused_total{protocol=\"socketio\",reason=\"too_many_connections\"}"
        )
        .await
            >= 1
    );
    sio.command(json!({"cmd": "disconnect"})).await;
    sio.next("disconnected", |v| v["kind"] == "disconnect")
        .await;
    eventually(
        "the place is given back",
        Duration::from_secs(10),
        || async {
            let mut p = SioPeer::space7(&s, Some(&ada), None).await;
            let first = p
                .next("connect or connect_error", |v| {
                    v["kind"] == "connect" || v["kind"] == "connect_error"
                })
                .await;
            p.exit().await;
            (first["kind"] == "connect").then_some(())
        },
    )
    .await;
}

/// 5. A client that stops reading is disconnected as a slow consumer, and a fast client of the
///    same space keeps receiving everything, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_without_slowing_the_others() {
    let s = Server::start(&[]).await;
    let ada = token("ada");
    let space = new_space(&s, &ada, &[]).await;
    let closed = "spacecast_ws_closed_total{protocol=\"socketio\",reason=\"slow_consumer\"}";
    assert_eq!(metric(&s, closed).await, 0);

    // The slow one: a raw Engine.IO client with a small receive buffer that joins, then never
    // reads again.
    let (mut slow, answer) = RawSio::connect(&s, &token("slow"), Some(4096)).await;
    assert!(answer.starts_with("40{\"sid\""), "connected: {answer}");
    slow.emit("join_space", json!(space)).await;
    let joined = slow
        .next_matching(|t| event_of(t).is_some_and(|(e, _)| e == "joined_space"))
        .await;
    assert_eq!(event_of(&joined).unwrap().1["space_id"], space);
    let mut fast = joined_peer(&s, "fast", &space).await;

    // 400 big messages (≈ 5,000 four-byte characters each, 8 MB in all) are more than the
    // slow client's socket buffers (4 MB at most here), tungstenite's write buffer and the
    // socket's packet queue hold together: its session finds the queue full and, after the
    // stall limit (15 s), ends as a slow consumer.
    let big: String = "😀".repeat(4_990);
    let mut sent = Vec::new();
    for i in 0..400 {
        let m = send(&s, &ada, &space, &format!("{i} {big}")).await;
        sent.push(id_of(&m).to_owned());
    }
    eventually(
        "the slow client's session ends",
        Duration::from_secs(60),
        || async { (metric(&s, closed).await >= 1).then_some(()) },
    )
    .await;
    let last = send(&s, &ada, &space, "last").await;
    sent.push(id_of(&last).to_owned());

    // The fast client got every message, in order, once.
    fast.received("last").await;
    let got: Vec<String> = fast
        .payloads("receive_message")
        .iter()
        .map(|p| p["message"]["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, sent);
    // The slow one's connection was ended by the server: reading it now finds its end.
    let frames = slow.drain_until_closed(Duration::from_secs(30)).await;
    assert!(
        frames < sent.len(),
        "the slow client was cut before everything ({frames} frames)"
    );
    assert_eq!(metric(&s, closed).await, 1);
}

/// 6. HTTP long-polling is refused with a clear error; deletes send nothing on Socket.IO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_is_refused_and_deletes_send_nothing() {
    let s = Server::start(&[]).await;
    let r = s
        .http
        .get(s.url("/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "transport_unsupported", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("websocket"),
        "{body}"
    );
    let mut polling = SioPeer::start(json!({
        "url": s.base, "token": token("ada"), "transports": ["polling"], "reconnection": false,
    }))
    .await;
    polling.connect_error().await;
    polling.exit().await;

    let (ada, cy) = (token("ada"), token("cy"));
    let space = new_space(&s, &ada, &[&cy]).await;
    let mut b = joined_peer(&s, "bob", &space).await;
    let m = send(&s, &ada, &space, "soon gone").await;
    b.received("soon gone").await;
    let (status, _) = s.delete_message(&ada, &space, id_of(&m)).await;
    assert_eq!(status, 200);
    send(&s, &cy, &space, "marker").await;
    b.received("marker").await;
    let events: Vec<String> = b
        .events()
        .into_iter()
        .map(|(e, _)| e)
        .filter(|e| !e.starts_with("presence"))
        .collect();
    assert_eq!(
        events,
        ["joined_space", "receive_message", "receive_message"]
    );
}

/// Extensions: `join_space {space_id, since_seq}` replays what the socket missed (without the
/// user's own writes) before live events; `leave_space` stops them; `typing` reaches the other
/// sockets of the space; a refused command is answered with `spacecast_error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_leave_typing_and_errors() {
    let s = Server::start(&[]).await;
    let (ada, bob) = (token("ada"), token("bob"));
    let space = new_space(&s, &ada, &[&bob]).await;
    let other = new_space(&s, &ada, &[]).await;
    let m1 = send(&s, &ada, &space, "one").await;
    send(&s, &bob, &space, "bob's own").await;
    let m3 = send(&s, &ada, &space, "three").await;

    let mut b = SioPeer::space7(&s, Some(&bob), None).await;
    b.connected().await;
    b.emit("join_space", json!({"space_id": space, "since_seq": 0}))
        .await;
    assert_eq!(b.joined(&space).await, 3);
    assert_eq!(b.received("one").await["message"], m1);
    assert_eq!(b.received("three").await["message"], m3);
    let live = send(&s, &ada, &space, "live").await;
    assert_eq!(b.received("live").await["message"], live);
    assert_eq!(b.payloads("receive_message").len(), 3, "not bob's own");

    // Typing from Ada's socket reaches Bob's.
    let mut a = joined_peer(&s, "ada", &space).await;
    a.emit("typing", json!(space)).await;
    let t = b.event("typing").await;
    assert_eq!(
        t,
        json!({"space_id": space, "user_id": "ada", "username": "name-ada"})
    );

    // A join of an unknown space is refused.
    b.emit("join_space", json!("not-a-space")).await;
    let e = b.event("spacecast_error").await;
    assert_eq!(
        (&e["code"], &e["space_id"]),
        (&json!("not_found"), &json!("not-a-space"))
    );
    b.emit("join_space", json!(42)).await;
    assert_eq!(b.event("spacecast_error").await["code"], "invalid_event");

    // After leaving, nothing more from that space (a message in another joined space is the
    // marker).
    b.emit("join_space", json!(other)).await;
    b.joined(&other).await;
    b.emit("leave_space", json!(space)).await;
    assert_eq!(b.event("left_space").await["space_id"], space);
    send(&s, &ada, &space, "after leaving").await;
    send(&s, &ada, &other, "marker").await;
    b.received("marker").await;
    assert!(
        b.payloads("receive_message")
            .iter()
            .all(|p| p["message"]["content"] != "after leaving")
    );
}

/// A session ends at its token's `exp`: `spacecast_disconnect {4001, token_expired}`, then a
/// Socket.IO disconnect from the server (socket.io-client does not reconnect after one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_at_its_tokens_expiry() {
    let s = Server::start(&[]).await;
    let ada = token("ada");
    let space = new_space(&s, &ada, &[]).await;
    let short = token_with(common::SECRET, "bob", 3);
    let mut p = SioPeer::space7(&s, Some(&short), Some(&space)).await;
    p.connected().await;
    p.joined(&space).await;
    let d = p.event("spacecast_disconnect").await;
    assert_eq!(d, json!({"code": 4001, "reason": "token_expired"}));
    let d = p.next("disconnect", |v| v["kind"] == "disconnect").await;
    assert_eq!(d["reason"], "io server disconnect", "{d}");
    assert_eq!(
        metric(
            &s,
            "spacecast_ws_closed_total{protocol=\"socketio\",reason=\"token_expired\"}"
        )
        .await,
        1
    );
}

/// Shutdown closes every Socket.IO connection at the transport, so clients reconnect (to
/// another node); the session ends as `shutdown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_transport_so_clients_reconnect() {
    let mut s = Server::start(&[]).await;
    let ada = token("ada");
    let space = new_space(&s, &ada, &[]).await;
    let mut p = joined_peer(&s, "bob", &space).await;
    let status = s.terminate().await;
    assert!(status.success(), "exit 0: {status}");
    let d = p.next("disconnect", |v| v["kind"] == "disconnect").await;
    assert_eq!(d["reason"], "transport close", "{d}");
    p.next("a reconnection attempt", |v| {
        v["kind"] == "reconnect_attempt"
    })
    .await;
}

/// A client message over 64 KiB (the native stream's frame limit) closes the connection; the
/// server goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_client_message_closes_the_connection() {
    let s = Server::start(&[]).await;
    let ada = token("ada");
    let space = new_space(&s, &ada, &[]).await;
    let (mut raw, answer) = RawSio::connect(&s, &token("bob"), None).await;
    assert!(answer.starts_with("40{"), "{answer}");
    raw.emit("typing", json!("x".repeat(100 * 1024))).await;
    raw.drain_until_closed(Duration::from_secs(10)).await;
    // Just under the limit is fine.
    let (mut raw, _) = RawSio::connect(&s, &token("bob"), None).await;
    raw.emit(
        "join_space",
        json!({"space_id": space, "pad": "x".repeat(60 * 1024)}),
    )
    .await;
    let joined = raw
        .next_matching(|t| event_of(t).is_some_and(|(e, _)| e == "joined_space"))
        .await;
    assert_eq!(event_of(&joined).unwrap().1["space_id"], space);
}
