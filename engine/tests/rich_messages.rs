//! The native message model end to end (issue 10): `Engine` over the real embedded store, driven
//! through `SpaceHandle`s: threads and quotes, sends on behalf, reply counts.
//!
//! No test sleeps to synchronise; every await that could hang is bounded ([`within`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use spacecast_engine::event::EventKind;
use spacecast_engine::model::{
    Gif, MediaItem, Message, MessageId, PostingPermission, SpaceId, UserRef, Visibility, new_id,
};
use spacecast_engine::store::Store;
use spacecast_engine::store::embedded::EmbeddedStore;
use spacecast_engine::{Engine, EngineConfig, EngineError, NewSpace, Result, SendMessage};
use spacecast_observability::Metrics;

/// The deadline of every wait; generous, as it only bounds a failing test.
const WAIT: Duration = Duration::from_secs(30);

struct Harness {
    engine: Engine,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn start(config: EngineConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        EmbeddedStore::open(&dir.path().join("store"), Metrics::new()).expect("open store");
    let engine = Engine::start(config, store.clone(), Metrics::new())
        .await
        .expect("engine starts");
    Harness {
        engine,
        store,
        _dir: dir,
    }
}

impl Harness {
    /// A public space owned by `creator` (power 100), joined by `members`.
    async fn space_with(&self, creator: &UserRef, members: &[&UserRef]) -> SpaceId {
        let view = self
            .engine
            .create_space(
                NewSpace {
                    title: "Rich messages".into(),
                    description: String::new(),
                    visibility: Visibility::Public,
                    tags: vec![],
                    posting_permission: PostingPermission::Everyone,
                },
                creator.clone(),
            )
            .await
            .expect("create space");
        let id = view.space.space_id;
        for m in members {
            within("join", self.engine.space(id).join((*m).clone(), None))
                .await
                .expect("join");
        }
        id
    }

    async fn send(&self, id: SpaceId, cmd: SendMessage) -> Result<Message> {
        within("send", self.engine.space(id).send(cmd)).await
    }

    /// The message as stored, without Space7's `likes` (a read projection the actor's answers
    /// leave out), so it compares with what the actor answered.
    async fn stored(&self, id: SpaceId, m: MessageId) -> Option<Message> {
        let mut m = self.store.get_message(id, m).await.unwrap()?;
        m.likes = None;
        Some(m)
    }
}

/// A message without Space7's `likes`: a projection reads fill and the actor's answers carry
/// only for a new message.
fn bare(m: &Message) -> Message {
    Message {
        likes: None,
        ..m.clone()
    }
}

fn user(name: &str) -> UserRef {
    UserRef {
        user_id: format!("{name}-{}", new_id()),
        username: name.to_owned(),
        profile_picture: format!("https://example.test/{name}.png"),
    }
}

fn text(sender: &UserRef, content: &str) -> SendMessage {
    SendMessage {
        sender: sender.clone(),
        content: Some(content.to_owned()),
        ..Default::default()
    }
}

fn reply(sender: &UserRef, content: &str, parent: MessageId) -> SendMessage {
    SendMessage {
        parent_id: Some(parent),
        ..text(sender, content)
    }
}

fn code(r: &Result<Message>) -> Option<&'static str> {
    r.as_ref().err().map(EngineError::code)
}

/// Awaits `fut`, failing the test if it does not finish in time (instead of hanging).
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {WAIT:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Step 1: the model, threads, quotes, on behalf
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rich_send_keeps_every_field_and_the_event_carries_it() {
    let h = start(EngineConfig::default()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let id = h.space_with(&alice, &[&bob]).await;
    let mut body = serde_json::Map::new();
    body.insert("lang".into(), "rust".into());
    let cmd = SendMessage {
        sender: bob.clone(),
        msgtype: Some("code".into()),
        body: Some(body.clone()),
        mentions: vec![alice.user_id.clone()],
        gif: Some(Gif {
            url: "https://media.example/x.gif".into(),
            width: 10,
            height: 20,
            title: None,
        }),
        media: vec![MediaItem {
            media_id: new_id(),
            content_type: "image/png".into(),
            size: 3,
            sha256: "00".repeat(32),
            thumbnail_id: None,
        }],
        ..Default::default()
    };
    let m = h
        .send(id, cmd.clone())
        .await
        .expect("a body alone is content");
    assert_eq!(
        (
            m.msgtype.as_str(),
            m.actor_id.as_str(),
            m.content.as_deref()
        ),
        ("code", bob.user_id.as_str(), None)
    );
    assert_eq!(m.body, Some(body));
    assert_eq!(m.mentions, vec![alice.user_id.clone()]);
    assert_eq!((m.media.len(), m.gif.is_some()), (1, true));
    assert_eq!(h.stored(id, m.message_id).await, Some(bare(&m)));
    let events = h.store.read_events(id, 0, 100).await.unwrap();
    assert_eq!(
        events.last().map(|e| &e.kind),
        Some(&EventKind::MessageCreated(m.clone())),
        "message_created carries the full message"
    );

    // Nothing at all is refused; so is a field over its limit, and an invalid msgtype.
    let empty = h.send(
        id,
        SendMessage {
            sender: bob.clone(),
            ..Default::default()
        },
    );
    assert_eq!(code(&empty.await), Some("empty_message"));
    let poll = h.send(
        id,
        SendMessage {
            msgtype: Some("poll".into()),
            ..text(&bob, "x")
        },
    );
    assert_eq!(code(&poll.await), Some("invalid_msgtype"));
    let mut huge = serde_json::Map::new();
    huge.insert("k".into(), "x".repeat(70 * 1024).into());
    let big = h.send(
        id,
        SendMessage {
            body: Some(huge),
            ..text(&bob, "x")
        },
    );
    assert_eq!(code(&big.await), Some("payload_too_large"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replies_need_a_root_of_this_space_and_count_in_it() {
    let h = start(EngineConfig::default()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let id = h.space_with(&alice, &[&bob]).await;
    let other = h.space_with(&alice, &[]).await;
    let root = h.send(id, text(&alice, "root")).await.unwrap();
    let elsewhere = h.send(other, text(&alice, "elsewhere")).await.unwrap();

    let r1 = h
        .send(id, reply(&bob, "one", root.message_id))
        .await
        .unwrap();
    let r2 = h
        .send(id, reply(&alice, "two", root.message_id))
        .await
        .unwrap();
    assert_eq!(r1.parent_id, Some(root.message_id));
    assert_eq!(h.stored(id, root.message_id).await.unwrap().reply_count, 2);

    // One level deep: a reply to a reply is refused, and so is a root of another space or none.
    for parent in [r1.message_id, elsewhere.message_id, new_id()] {
        let r = h.send(id, reply(&bob, "nested", parent)).await;
        assert_eq!(code(&r), Some("invalid_parent"), "parent {parent}");
    }
    // Refusals leave no trace: no seq is used.
    let next = h.send(id, text(&bob, "after")).await.unwrap();
    assert_eq!(next.seq, r2.seq + 1, "refused sends take no seq");

    // Deleting a reply counts it down, also once the root left the actor's cache (a restart).
    within(
        "delete",
        h.engine.space(id).delete(r1.message_id, bob.clone()),
    )
    .await
    .unwrap();
    assert_eq!(h.stored(id, root.message_id).await.unwrap().reply_count, 1);
    let events = h.store.read_events(id, 0, 100).await.unwrap();
    let deleted = events.iter().find_map(|e| match &e.kind {
        EventKind::MessageDeleted(d) => Some(d.clone()),
        _ => None,
    });
    assert_eq!(deleted.and_then(|d| d.parent_id), Some(root.message_id));
    // Deleting the root leaves its replies; deleting them afterwards still works.
    within(
        "delete root",
        h.engine.space(id).delete(root.message_id, alice.clone()),
    )
    .await
    .unwrap();
    within(
        "delete orphan",
        h.engine.space(id).delete(r2.message_id, alice.clone()),
    )
    .await
    .unwrap();
    assert_eq!(h.stored(id, r2.message_id).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotes_must_name_a_message_of_this_space() {
    let h = start(EngineConfig::default()).await;
    let alice = user("alice");
    let id = h.space_with(&alice, &[]).await;
    let other = h.space_with(&alice, &[]).await;
    let quoted = h.send(id, text(&alice, "quoted")).await.unwrap();
    let elsewhere = h.send(other, text(&alice, "elsewhere")).await.unwrap();
    let ok = h
        .send(
            id,
            SendMessage {
                quoted_message_id: Some(quoted.message_id),
                ..text(&alice, "quoting")
            },
        )
        .await
        .unwrap();
    assert_eq!(ok.quoted_message_id, Some(quoted.message_id));
    for q in [elsewhere.message_id, new_id()] {
        let r = h
            .send(
                id,
                SendMessage {
                    quoted_message_id: Some(q),
                    ..text(&alice, "bad quote")
                },
            )
            .await;
        assert_eq!(code(&r), Some("invalid_quote"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_admins_send_on_behalf_and_only_of_members() {
    let h = start(EngineConfig::default()).await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let id = h.space_with(&alice, &[&bob]).await;
    // Alice (the creator, power 100) sends as Bob: Bob is the sender, as stored; Alice the actor.
    let as_bob = SendMessage {
        actor: Some(alice.clone()),
        sender: UserRef {
            user_id: bob.user_id.clone(),
            username: "whatever the caller says".into(),
            profile_picture: String::new(),
        },
        ..text(&bob, "on behalf")
    };
    let m = h.send(id, as_bob).await.expect("an admin sends on behalf");
    assert_eq!(
        (m.sender_id.as_str(), m.actor_id.as_str()),
        (bob.user_id.as_str(), alice.user_id.as_str())
    );
    assert_eq!(m.sender, bob, "the member's stored profile");
    // Bob (power 0) may not send as Alice.
    let r = h
        .send(
            id,
            SendMessage {
                actor: Some(bob.clone()),
                ..text(&alice, "impostor")
            },
        )
        .await;
    assert!(matches!(r, Err(EngineError::Forbidden(_))), "{r:?}");
    // Nobody sends as a non-member.
    let r = h
        .send(
            id,
            SendMessage {
                actor: Some(alice.clone()),
                ..text(&carol, "ghost")
            },
        )
        .await;
    assert_eq!(code(&r), Some("invalid_as_user"));
    // An ordinary send has the sender as actor.
    let own = h.send(id, text(&bob, "mine")).await.unwrap();
    assert_eq!(own.actor_id, bob.user_id);
}

// ---------------------------------------------------------------------------------------------
// Step 2: edits
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_author_edits_within_the_window_and_history_keeps_each_version() {
    let h = start(EngineConfig::default()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let id = h.space_with(&alice, &[&bob]).await;
    let m = h.send(id, text(&bob, "first draft")).await.unwrap();
    let space = h.engine.space(id);
    let e1 = within(
        "edit",
        space.edit(
            m.message_id,
            bob.clone(),
            Some("second draft here".into()),
            None,
        ),
    )
    .await
    .unwrap();
    assert_eq!(e1.content.as_deref(), Some("second draft here"));
    assert_eq!(e1.word_count, 3, "word count recomputed");
    assert!(e1.edited_at.is_some());
    assert_eq!(
        (e1.seq, e1.created_at),
        (m.seq, m.created_at),
        "id and position kept"
    );
    let mut body = serde_json::Map::new();
    body.insert("v".into(), 3.into());
    let e2 = within(
        "edit body",
        space.edit(m.message_id, bob.clone(), None, Some(body.clone())),
    )
    .await
    .unwrap();
    assert_eq!(
        (e2.content.as_deref(), e2.body.as_ref()),
        (Some("second draft here"), Some(&body))
    );
    assert_eq!(h.stored(id, m.message_id).await, Some(bare(&e2)));

    let history = h
        .engine
        .reader(id)
        .message_history(&alice.user_id, m.message_id)
        .await
        .unwrap();
    assert_eq!(
        history
            .iter()
            .map(|v| v.content.as_deref())
            .collect::<Vec<_>>(),
        vec![Some("second draft here"), Some("first draft")],
        "newest first"
    );
    assert_eq!(history[1].valid_from, m.created_at);
    assert_eq!(Some(history[0].valid_from), e1.edited_at);
    // The log says it as the live state: message_edited carries the message after each edit.
    let edited: Vec<Message> = h
        .store
        .read_events(id, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::MessageEdited(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(edited, vec![e1, e2]);

    // Someone else may not edit it, not even an admin; an empty edit is refused.
    let r = within(
        "edit by admin",
        space.edit(m.message_id, alice.clone(), Some("x".into()), None),
    )
    .await;
    assert!(matches!(r, Err(EngineError::Forbidden(_))), "{r:?}");
    let r = within(
        "empty edit",
        space.edit(m.message_id, bob.clone(), None, None),
    )
    .await;
    assert_eq!(code(&r), Some("empty_message"));
    let r = within(
        "edit unknown",
        space.edit(new_id(), bob.clone(), Some("x".into()), None),
    )
    .await;
    assert!(matches!(r, Err(EngineError::MessageNotFound)), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edit_after_the_window_is_a_conflict() {
    let h = start(EngineConfig {
        edit_window: Duration::ZERO,
        ..EngineConfig::default()
    })
    .await;
    let bob = user("bob");
    let id = h.space_with(&bob, &[]).await;
    let m = h.send(id, text(&bob, "carved in stone")).await.unwrap();
    // Measured in milliseconds: wait (polling, with a deadline) until the clock has moved on.
    within("the clock to move", async {
        while spacecast_engine::model::Timestamp::now().0 <= m.created_at.0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let r = within(
        "late edit",
        h.engine
            .space(id)
            .edit(m.message_id, bob.clone(), Some("no".into()), None),
    )
    .await;
    assert_eq!(code(&r), Some("edit_window_closed"));
    assert!(matches!(r, Err(EngineError::Conflict(..))));
    assert_eq!(h.stored(id, m.message_id).await, Some(bare(&m)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_who_sent_on_behalf_may_edit_it() {
    let h = start(EngineConfig::default()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let id = h.space_with(&alice, &[&bob]).await;
    let m = h
        .send(
            id,
            SendMessage {
                actor: Some(alice.clone()),
                ..text(&bob, "by alice for bob")
            },
        )
        .await
        .unwrap();
    let space = h.engine.space(id);
    within(
        "actor edits",
        space.edit(m.message_id, alice.clone(), Some("fixed".into()), None),
    )
    .await
    .expect("the actor may edit");
    within(
        "sender edits",
        space.edit(m.message_id, bob.clone(), Some("mine".into()), None),
    )
    .await
    .expect("the sender may edit");
}

// ---------------------------------------------------------------------------------------------
// Step 3: redactions
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redactions_wipe_content_keep_the_place_and_are_idempotent() {
    let h = start(EngineConfig::default()).await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let id = h.space_with(&alice, &[&bob, &carol]).await;
    let root = h.send(id, text(&alice, "root")).await.unwrap();
    let file = MediaItem {
        media_id: new_id(),
        content_type: "image/png".into(),
        size: 9,
        sha256: "11".repeat(32),
        thumbnail_id: Some(new_id()),
    };
    let m = h
        .send(
            id,
            SendMessage {
                media: vec![file.clone()],
                mentions: vec![alice.user_id.clone()],
                ..reply(&bob, "a reply with a file", root.message_id)
            },
        )
        .await
        .unwrap();
    let space = h.engine.space(id);
    within(
        "edit",
        space.edit(m.message_id, bob.clone(), Some("edited".into()), None),
    )
    .await
    .unwrap();
    within(
        "like",
        space.toggle_appreciation(m.message_id, carol.clone()),
    )
    .await
    .unwrap();

    // Carol (power 0) may not redact Bob's message.
    let r = within(
        "carol redacts",
        space.redact(m.message_id, carol.clone(), None),
    )
    .await;
    assert!(matches!(r, Err(EngineError::Forbidden(_))), "{r:?}");
    let too_long = Some("x".repeat(spacecast_engine::model::MAX_REASON_BYTES + 1));
    let r = within(
        "long reason",
        space.redact(m.message_id, bob.clone(), too_long),
    )
    .await;
    assert_eq!(r.err().map(|e| e.code()), Some("invalid_reason"));

    // Alice (power 100) may.
    let red = within(
        "alice redacts",
        space.redact(m.message_id, alice.clone(), Some("spoiler".into())),
    )
    .await
    .unwrap();
    assert_eq!(red.wiped_media, vec![file]);
    let w = &red.message;
    assert_eq!(
        (
            w.content.clone(),
            w.body.clone(),
            w.media.len(),
            w.mentions.len(),
            w.word_count
        ),
        (None, None, 0, 0, 0)
    );
    assert!(w.redacted);
    assert_eq!(w.redacted_by.as_deref(), Some(alice.user_id.as_str()));
    assert_eq!(w.redacted_reason.as_deref(), Some("spoiler"));
    assert_eq!(
        (
            w.message_id,
            w.seq,
            w.parent_id,
            w.appreciation_count,
            w.created_at
        ),
        (m.message_id, m.seq, Some(root.message_id), 1, m.created_at),
        "id, position, thread link and reactions stay"
    );
    assert_eq!(h.stored(id, m.message_id).await, Some(bare(w)));
    let history = h
        .engine
        .reader(id)
        .message_history(&bob.user_id, m.message_id)
        .await
        .unwrap();
    assert!(history.is_empty(), "the history held the wiped content");
    assert_eq!(
        h.stored(id, root.message_id).await.unwrap().reply_count,
        1,
        "a redacted reply still counts"
    );

    // Again: nothing changes, no event; the message as it is.
    let head = h.store.read_events(id, 0, 1000).await.unwrap().len();
    let again = within(
        "redact again",
        space.redact(m.message_id, bob.clone(), Some("other".into())),
    )
    .await
    .unwrap();
    assert_eq!(again.message, red.message);
    assert!(again.wiped_media.is_empty());
    assert_eq!(h.store.read_events(id, 0, 1000).await.unwrap().len(), head);
    let redacted_events = h
        .store
        .read_events(id, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(&e.kind, EventKind::MessageRedacted(x) if *x == red.message))
        .count();
    assert_eq!(
        redacted_events, 1,
        "message_redacted carries the message after it"
    );

    // A redacted message cannot be edited.
    let r = within(
        "edit redacted",
        space.edit(m.message_id, bob.clone(), Some("back".into()), None),
    )
    .await;
    assert_eq!(code(&r), Some("message_redacted"));
    // The author may redact their own.
    let own = h.send(id, text(&carol, "oops")).await.unwrap();
    within("own", space.redact(own.message_id, carol.clone(), None))
        .await
        .expect("the author may redact");
}

// ---------------------------------------------------------------------------------------------
// Step 4: idempotency keys
// ---------------------------------------------------------------------------------------------

fn keyed(sender: &UserRef, content: &str, key: &str) -> SendMessage {
    SendMessage {
        idempotency_key: Some(key.to_owned()),
        ..text(sender, content)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeated_key_answers_with_the_original_and_creates_nothing() {
    let h = start(EngineConfig::default()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let id = h.space_with(&alice, &[&bob]).await;
    let space = h.engine.space(id);
    let first = within("first", space.post(keyed(&bob, "hello", "k")))
        .await
        .unwrap();
    assert!(!first.replayed);
    // The key decides: another body, even an invalid one, gets the original.
    let again = within(
        "again",
        space.post(SendMessage {
            msgtype: Some("not valid".into()),
            ..keyed(&bob, "something else", "k")
        }),
    )
    .await
    .unwrap();
    assert!(again.replayed);
    // As it is now (the actor's answers leave out Space7's `likes`, but for a new message).
    assert_eq!(again.message, bare(&first.message));
    // `send` answers the message either way (Space7 paths do not care).
    let plain = within("send", space.send(keyed(&bob, "x", "k")))
        .await
        .unwrap();
    assert_eq!(plain.message_id, first.message.message_id);
    // Scoped by sender: Alice's "k" is hers.
    let alices = within("alice", space.post(keyed(&alice, "mine", "k")))
        .await
        .unwrap();
    assert!(!alices.replayed);
    assert_ne!(alices.message.message_id, first.message.message_id);
    let created = h
        .store
        .read_events(id, 0, 100)
        .await
        .unwrap()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::MessageCreated(_)))
        .count();
    assert_eq!(created, 2);

    // Once the original is deleted, the key answers 409 and creates nothing.
    within(
        "delete",
        space.delete(first.message.message_id, bob.clone()),
    )
    .await
    .unwrap();
    let r = within("reuse", space.post(keyed(&bob, "hello", "k"))).await;
    assert_eq!(r.err().map(|e| e.code()), Some("idempotency_key_reused"));
    // Bad keys are refused.
    for bad in [String::new(), "x".repeat(129)] {
        let r = within("bad key", space.post(keyed(&bob, "x", &bad))).await;
        assert_eq!(r.err().map(|e| e.code()), Some("invalid_idempotency_key"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_is_forgotten_after_its_ttl() {
    let h = start(EngineConfig {
        idempotency_ttl: Duration::from_millis(20),
        ..EngineConfig::default()
    })
    .await;
    let bob = user("bob");
    let id = h.space_with(&bob, &[]).await;
    let space = h.engine.space(id);
    let first = within("first", space.post(keyed(&bob, "one", "k")))
        .await
        .unwrap();
    let expiry = first.message.created_at.0 + 20;
    within("the key to expire", async {
        while spacecast_engine::model::Timestamp::now().0 <= expiry {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let second = within("second", space.post(keyed(&bob, "two", "k")))
        .await
        .unwrap();
    assert!(!second.replayed, "an expired key creates a new message");
    assert_ne!(second.message.message_id, first.message.message_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_survives_a_restart_of_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let bob = user("bob");
    let (id, first) = {
        let store = EmbeddedStore::open(&path, Metrics::new()).expect("open store");
        let engine = Engine::start(EngineConfig::default(), store, Metrics::new())
            .await
            .unwrap();
        let id = engine
            .create_space(
                NewSpace {
                    title: "restart".into(),
                    description: String::new(),
                    visibility: Visibility::Public,
                    tags: vec![],
                    posting_permission: PostingPermission::Everyone,
                },
                bob.clone(),
            )
            .await
            .unwrap()
            .space
            .space_id;
        let first = within("first", engine.space(id).post(keyed(&bob, "once", "k")))
            .await
            .unwrap();
        within("shutdown", engine.shutdown(Duration::from_secs(10))).await;
        (id, first)
    };
    let store = within("reopen", async {
        loop {
            // The old engine's last handles go as its tasks finish: retry until the lock is free.
            match EmbeddedStore::open(&path, Metrics::new()) {
                Ok(s) => break s,
                Err(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await;
    let engine = Engine::start(EngineConfig::default(), store, Metrics::new())
        .await
        .unwrap();
    let again = within("again", engine.space(id).post(keyed(&bob, "twice", "k")))
        .await
        .unwrap();
    assert!(again.replayed, "the store remembers the key");
    assert_eq!(again.message, bare(&first.message));
}
