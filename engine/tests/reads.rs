//! The read side's access rules (`engine/src/reads.rs`), over the real embedded store: who sees
//! which space, which messages and which events, and what a failed store read answers.
//!
//! Writes go through `SpaceHandle`s, which return once durable, so every read after them sees
//! them: no test waits. Every test body is bounded ([`bounded`]) so a hang fails instead.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spacecast_engine::event::{EventKind, SpaceEvent};
use spacecast_engine::listing::SCAN_BUDGET;
use spacecast_engine::model::{
    Message, MessageId, POWER_ADMIN, POWER_MEMBER, PostingPermission, Seq, SpaceId, Timestamp,
    UserRef, Visibility, new_id,
};
use spacecast_engine::store::Direction;
use spacecast_engine::store::embedded::EmbeddedStore;
use spacecast_engine::testkit::hooked::{Hooked, StoreHooks};
use spacecast_engine::{
    Engine, EngineConfig, EngineError, MessageFilter, MessageOrder, MessageQuery, NewSpace, Result,
    SendMessage, SpaceReader,
};
use spacecast_observability::Metrics;

/// The deadline of every test; generous, as it only bounds a failing one.
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// A store whose reads can be made to fail, one operation at a time
// ---------------------------------------------------------------------------------------------

/// The embedded store; every operation named in `failing` fails with `StoreUnavailable`.
type FlakyStore = Hooked<Flaky>;

struct Flaky {
    failing: Mutex<HashSet<&'static str>>,
}

impl StoreHooks for Flaky {
    fn before(&self, op: &'static str) -> Result<()> {
        if self.failing.lock().unwrap().contains(op) {
            return Err(EngineError::StoreUnavailable(format!(
                "injected {op} failure"
            )));
        }
        Ok(())
    }
}

impl Flaky {
    fn fail(&self, ops: &[&'static str]) {
        self.failing.lock().unwrap().extend(ops);
    }

    fn heal(&self) {
        self.failing.lock().unwrap().clear();
    }
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

struct Harness {
    engine: Engine,
    store: Arc<FlakyStore>,
    _dir: tempfile::TempDir,
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let embedded = EmbeddedStore::open(&dir.path().join("store"), metrics.clone()).expect("store");
    let store = Arc::new(Hooked::new(
        embedded,
        Flaky {
            failing: Mutex::default(),
        },
    ));
    let engine = Engine::start(EngineConfig::default(), store.clone(), metrics)
        .await
        .expect("engine starts");
    Harness {
        engine,
        store,
        _dir: dir,
    }
}

impl Harness {
    async fn create(
        &self,
        creator: &UserRef,
        visibility: Visibility,
        posting_permission: PostingPermission,
    ) -> SpaceId {
        let new = NewSpace {
            title: "Reads".into(),
            description: "access rules".into(),
            visibility,
            tags: vec![],
            posting_permission,
        };
        let view = self.engine.create_space(new, creator.clone()).await;
        view.expect("create space").space.space_id
    }

    async fn send(&self, space: SpaceId, sender: &UserRef, text: &str) -> Message {
        self.engine
            .space(space)
            .send(SendMessage {
                message_id: None,
                sender: sender.clone(),
                content: Some(text.to_owned()),
                media_url: None,
                media_type: None,
                ..Default::default()
            })
            .await
            .expect("send")
    }
}

/// Runs a test body, failing it if it does not finish within [`WAIT`] instead of hanging.
async fn bounded(body: impl Future<Output = ()>) {
    tokio::time::timeout(WAIT, body)
        .await
        .expect("the test finished in time");
}

fn user(name: &str) -> UserRef {
    UserRef {
        user_id: format!("{name}-{}", new_id()),
        username: name.to_owned(),
        profile_picture: String::new(),
    }
}

/// An error as a client sees it: its stable code and its text.
fn seen<T: std::fmt::Debug>(r: Result<T>) -> (&'static str, String) {
    let e = r.expect_err("the read is refused");
    (e.code(), e.to_string())
}

/// What every read of `reader` answers `viewer`, method by method, as client-visible errors
/// (`None` where the read succeeds).
async fn answers(reader: &SpaceReader, viewer: &str) -> Vec<Option<(&'static str, String)>> {
    fn err<T>(r: Result<T>) -> Option<(&'static str, String)> {
        r.err().map(|e| (e.code(), e.to_string()))
    }
    vec![
        err(reader.view(viewer).await),
        err(reader.view_with_members(viewer).await),
        err(reader
            .page_messages(viewer, MessageOrder::Recent, 0, 10)
            .await),
        err(reader.event_log(viewer).await),
        err(reader.ensure_can_post(viewer).await),
    ]
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_space_is_readable_by_anyone_with_their_membership() {
    bounded(async {
        let h = start().await;
        let (alice, bob, stranger) = (user("alice"), user("bob"), user("stranger"));
        let id = h
            .create(&alice, Visibility::Public, PostingPermission::Everyone)
            .await;
        h.engine.space(id).join(bob.clone(), None).await.unwrap();
        let m = h.send(id, &bob, "hello").await;
        let reader = h.engine.reader(id);
        assert_eq!(reader.id(), id);

        let (view, me) = reader.view(&alice.user_id).await.unwrap();
        assert_eq!(view.space.space_id, id);
        assert_eq!(me.map(|m| m.power_level), Some(POWER_ADMIN));
        let (_, me) = reader.view(&bob.user_id).await.unwrap();
        assert_eq!(me.map(|m| m.power_level), Some(POWER_MEMBER));
        let (view, me) = reader.view(&stranger.user_id).await.unwrap();
        assert_eq!(me, None, "a reader need not be a member of a public space");
        assert_eq!(view.counters.message_count, 1);

        // Everything a member reads, a stranger reads too.
        let all = reader.view_with_members(&stranger.user_id).await.unwrap();
        assert_eq!(all.viewer, None);
        let mut ids: Vec<&str> = all.members.iter().map(|m| m.user.user_id.as_str()).collect();
        ids.sort_unstable();
        let mut want = vec![alice.user_id.as_str(), bob.user_id.as_str()];
        want.sort_unstable();
        assert_eq!(ids, want);
        assert_eq!(all.view.counters.member_count, 2);
        let as_bob = reader.view_with_members(&bob.user_id).await.unwrap();
        assert_eq!(as_bob.viewer.map(|m| m.user), Some(bob.clone()));

        let page = reader
            .page_messages(&stranger.user_id, MessageOrder::Recent, 0, 10)
            .await
            .unwrap();
        assert_eq!((page.total, page.messages.clone()), (1, vec![m.clone()]));
        assert_eq!(
            reader.message(&stranger.user_id, m.message_id).await.unwrap(),
            m
        );
        let log = reader.event_log(&stranger.user_id).await.unwrap();
        assert_eq!(log.space_id(), id);
        let events = log.events_after(0, 100).await.unwrap();
        assert!(
            matches!(&events[..], [e] if matches!(&e.kind, EventKind::MessageCreated(c) if *c == m)),
            "{events:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_space_is_invisible_to_non_members_exactly_like_an_unknown_one() {
    bounded(async {
        let h = start().await;
        let (alice, stranger) = (user("alice"), user("stranger"));
        let id = h
            .create(&alice, Visibility::Private, PostingPermission::Everyone)
            .await;
        let m = h.send(id, &alice, "secret").await;
        let private = h.engine.reader(id);
        let unknown = h.engine.reader(new_id());

        // The member reads everything.
        assert_eq!(answers(&private, &alice.user_id).await, vec![None; 5]);
        assert_eq!(
            private.message(&alice.user_id, m.message_id).await.unwrap(),
            m
        );
        let (_, me) = private.view(&alice.user_id).await.unwrap();
        assert_eq!(me.map(|m| m.power_level), Some(POWER_ADMIN));

        // A non-member gets, from every read, what an unknown id gives anyone.
        let not_found = Some(("not_found", "Space not found".to_owned()));
        assert_eq!(
            answers(&private, &stranger.user_id).await,
            vec![not_found.clone(); 5]
        );
        assert_eq!(answers(&unknown, &alice.user_id).await, vec![not_found; 5]);
        // Even for a message id that exists there: message ids are no oracle either.
        assert_eq!(
            seen(private.message(&stranger.user_id, m.message_id).await),
            seen(unknown.message(&alice.user_id, m.message_id).await),
        );
        assert!(matches!(
            private.message(&stranger.user_id, m.message_id).await,
            Err(EngineError::SpaceNotFound)
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_found_only_in_its_own_space_and_only_while_it_exists() {
    bounded(async {
        let h = start().await;
        let alice = user("alice");
        let a = h
            .create(&alice, Visibility::Public, PostingPermission::Everyone)
            .await;
        let b = h
            .create(&alice, Visibility::Public, PostingPermission::Everyone)
            .await;
        let m = h.send(a, &alice, "in a").await;
        let viewer = alice.user_id.as_str();

        assert_eq!(
            h.engine
                .reader(a)
                .message(viewer, m.message_id)
                .await
                .unwrap(),
            m
        );
        assert!(h.engine.message_exists(a, m.message_id).await.unwrap());
        for (space, id) in [(b, m.message_id), (a, new_id())] {
            assert!(matches!(
                h.engine.reader(space).message(viewer, id).await,
                Err(EngineError::MessageNotFound)
            ));
            assert!(!h.engine.message_exists(space, id).await.unwrap());
        }

        h.engine
            .space(a)
            .delete(m.message_id, alice.clone())
            .await
            .unwrap();
        assert!(matches!(
            h.engine.reader(a).message(viewer, m.message_id).await,
            Err(EngineError::MessageNotFound)
        ));
        assert!(!h.engine.message_exists(a, m.message_id).await.unwrap());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_posting_precheck_answers_as_the_space_actor_does() {
    bounded(async {
        let h = start().await;
        let (alice, bob, stranger) = (user("alice"), user("bob"), user("stranger"));
        let open = h
            .create(&alice, Visibility::Public, PostingPermission::Everyone)
            .await;
        let admins_only = h
            .create(&alice, Visibility::Public, PostingPermission::Admins)
            .await;
        let private = h
            .create(&alice, Visibility::Private, PostingPermission::Everyone)
            .await;
        for space in [open, admins_only] {
            h.engine.space(space).join(bob.clone(), None).await.unwrap();
        }
        let cases = [
            (open, &alice, None),
            (open, &bob, None),
            (open, &stranger, Some("not_a_member")),
            (admins_only, &alice, None),
            (admins_only, &bob, Some("forbidden")),
            (admins_only, &stranger, Some("not_a_member")),
            (private, &alice, None),
            (private, &stranger, Some("not_found")),
            (new_id(), &alice, Some("not_found")),
        ];
        for (space, who, want) in cases {
            let pre = h.engine.reader(space).ensure_can_post(&who.user_id).await;
            let pre = pre.err().map(|e| (e.code(), e.to_string()));
            assert_eq!(
                pre.as_ref().map(|e| e.0),
                want,
                "{} in {space}",
                who.username
            );
            // The actor, asked for real, answers the same: code and text.
            let sent = h
                .engine
                .space(space)
                .send(SendMessage {
                    message_id: None,
                    sender: who.clone(),
                    content: Some("x".into()),
                    media_url: None,
                    media_type: None,
                    ..Default::default()
                })
                .await;
            let sent = sent.err().map(|e| (e.code(), e.to_string()));
            assert_eq!(pre, sent, "{} in {space}", who.username);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_the_event_log_read_what_is_durable_in_order() {
    bounded(async {
        let h = start().await;
        let alice = user("alice");
        let id = h
            .create(&alice, Visibility::Public, PostingPermission::Everyone)
            .await;
        let reader = h.engine.reader(id);
        let log = reader.event_log(&alice.user_id).await.unwrap();
        assert_eq!(log.head_seq().await.unwrap(), 0, "an empty space");
        assert!(log.events_after(0, 10).await.unwrap().is_empty());

        let mut sent = Vec::new();
        for i in 0..5 {
            sent.push(h.send(id, &alice, &format!("m{i}")).await);
        }
        // The log obtained before the sends reads them: access, once had, stays.
        assert_eq!(log.head_seq().await.unwrap(), 5);
        let seqs = |evs: Vec<SpaceEvent>| evs.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(log.events_after(0, 3).await.unwrap()), vec![1, 2, 3]);
        assert_eq!(seqs(log.events_after(3, 10).await.unwrap()), vec![4, 5]);
        assert!(log.events_after(5, 10).await.unwrap().is_empty());

        // Newest first, paged by offset; the total is the space's count, whatever the page.
        let ids = |ms: &[Message]| ms.iter().map(|m| m.message_id).collect::<Vec<_>>();
        let p = reader
            .page_messages(&alice.user_id, MessageOrder::Recent, 1, 2)
            .await
            .unwrap();
        assert_eq!(p.total, 5);
        assert_eq!(
            ids(&p.messages),
            vec![sent[3].message_id, sent[2].message_id]
        );
        let p = reader
            .page_messages(&alice.user_id, MessageOrder::Recent, 4, 10)
            .await
            .unwrap();
        assert_eq!(ids(&p.messages), vec![sent[0].message_id]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_lists_exactly_the_spaces_they_belong_to() {
    bounded(async {
        let h = start().await;
        let (alice, bob) = (user("alice"), user("bob"));
        let private = h
            .create(&alice, Visibility::Private, PostingPermission::Everyone)
            .await;
        let bobs = h
            .create(&bob, Visibility::Public, PostingPermission::Everyone)
            .await;
        let joined = h
            .create(&bob, Visibility::Public, PostingPermission::Everyone)
            .await;
        h.engine
            .space(joined)
            .join(alice.clone(), None)
            .await
            .unwrap();

        let mine = h.engine.spaces_of(&alice.user_id).await.unwrap();
        let listed: Vec<(SpaceId, i32)> = mine
            .iter()
            .map(|(v, m)| (v.space.space_id, m.power_level))
            .collect();
        // Newest first; her private space is listed, bob's public one she never joined is not.
        assert_eq!(listed, vec![(joined, POWER_MEMBER), (private, POWER_ADMIN)]);
        assert!(!listed.iter().any(|(s, _)| *s == bobs));
        assert!(
            h.engine
                .spaces_of(&user("nobody").user_id)
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_read_is_unavailable_never_not_found_nor_access() {
    bounded(async {
        let h = start().await;
        let (alice, stranger) = (user("alice"), user("stranger"));
        let private = h
            .create(&alice, Visibility::Private, PostingPermission::Everyone)
            .await;
        let public = h
            .create(&alice, Visibility::Public, PostingPermission::Everyone)
            .await;
        let m = h.send(public, &alice, "kept").await;
        assert!(h.engine.ping().await.is_ok());

        // An unreadable membership neither hides the space nor lets a stranger in.
        h.store.fail(&["get_member"]);
        for (space, who) in [(private, &stranger), (private, &alice), (public, &stranger)] {
            let (code, _) = seen(h.engine.reader(space).view(&who.user_id).await);
            assert_eq!(code, "store_unavailable", "{} in {space}", who.username);
        }
        h.store.heal();

        // Each read's own failure surfaces as such, after the rule passed.
        let reader = h.engine.reader(public);
        let viewer = alice.user_id.as_str();
        h.store.fail(&["get_space"]);
        assert!(matches!(
            reader.view(viewer).await,
            Err(EngineError::StoreUnavailable(_))
        ));
        h.store.heal();
        let log = reader.event_log(viewer).await.unwrap();
        h.store.fail(&["page_messages"]);
        let page = reader
            .page_messages(viewer, MessageOrder::Recent, 0, 1)
            .await;
        assert_eq!(seen(page).0, "store_unavailable");
        h.store.heal();
        h.store.fail(&["get_message"]);
        assert_eq!(
            seen(reader.message(viewer, m.message_id).await).0,
            "store_unavailable"
        );
        // The sweeper must not take "could not tell" for "gone".
        assert_eq!(
            seen(h.engine.message_exists(public, m.message_id).await).0,
            "store_unavailable"
        );
        h.store.heal();
        h.store.fail(&["load_space"]);
        assert_eq!(
            seen(reader.view_with_members(viewer).await).0,
            "store_unavailable"
        );
        h.store.heal();
        h.store.fail(&["read_events", "get_space"]);
        assert_eq!(seen(log.events_after(0, 10).await).0, "store_unavailable");
        assert_eq!(seen(log.head_seq().await).0, "store_unavailable");
        h.store.heal();
        h.store.fail(&["spaces_of_user", "ping"]);
        assert_eq!(
            seen(h.engine.spaces_of(viewer).await).0,
            "store_unavailable"
        );
        assert_eq!(seen(h.engine.ping().await).0, "store_unavailable");
        h.store.heal();

        // Healed, every read answers again.
        assert!(h.engine.ping().await.is_ok());
        assert_eq!(reader.message(viewer, m.message_id).await.unwrap(), m);
        assert_eq!(log.head_seq().await.unwrap(), 1);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Cursor pages (`SpaceReader::list_messages`)
// ---------------------------------------------------------------------------------------------

fn query(direction: Direction, from: Option<Seq>, limit: usize) -> MessageQuery {
    MessageQuery {
        direction,
        from,
        limit,
        filter: MessageFilter::default(),
    }
}

/// Every page of `q` from its start, following `next` until it is `None`.
async fn all_pages(reader: &SpaceReader, viewer: &str, mut q: MessageQuery) -> Vec<Vec<Message>> {
    let mut pages = Vec::new();
    loop {
        let page = reader.list_messages(viewer, &q).await.expect("a page");
        pages.push(page.messages);
        match page.next {
            Some(next) => q.from = Some(next),
            None => return pages,
        }
        assert!(pages.len() < 10_000, "paging does not end");
    }
}

fn ids(messages: &[Message]) -> Vec<MessageId> {
    messages.iter().map(|m| m.message_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_pages_give_every_message_exactly_once_while_new_ones_arrive() {
    bounded(async {
        let h = start().await;
        let ada = user("ada");
        let space = h
            .create(&ada, Visibility::Public, PostingPermission::Everyone)
            .await;
        let mut sent = Vec::new();
        for i in 0..10 {
            sent.push(h.send(space, &ada, &format!("m{i}")).await);
        }
        let reader = h.engine.reader(space);
        // Backward (newest first) in pages of 3, with a message arriving between pages.
        let mut q = query(Direction::Backward, None, 3);
        let mut seen = Vec::new();
        let mut late = Vec::new();
        loop {
            let page = reader.list_messages(&ada.user_id, &q).await.unwrap();
            assert!(page.messages.len() <= 3);
            seen.extend(page.messages);
            late.push(h.send(space, &ada, "arrived while paging").await);
            let Some(next) = page.next else { break };
            q.from = Some(next);
        }
        let mut newest_first = sent.clone();
        newest_first.reverse();
        assert_eq!(ids(&seen), ids(&newest_first), "each once, newest first");
        // Forward from the start: everything, the late ones included, oldest first.
        let forward: Vec<Message> =
            all_pages(&reader, "anyone", query(Direction::Forward, None, 4))
                .await
                .concat();
        let mut everything = sent.clone();
        everything.extend(late);
        assert_eq!(ids(&forward), ids(&everything), "forward: oldest first");
        // A page of a non-member of a public space reads too; limits are clamped to 1..=100.
        let one = reader
            .list_messages("anyone", &query(Direction::Backward, None, 0))
            .await
            .unwrap();
        assert_eq!(one.messages.len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_keep_only_matching_messages_and_a_sparse_filter_stays_within_the_scan_budget() {
    bounded(async {
        let h = start().await;
        let (ada, bob) = (user("ada"), user("bob"));
        let space = h
            .create(&ada, Visibility::Public, PostingPermission::Everyone)
            .await;
        h.engine
            .space(space)
            .join(bob.clone(), None)
            .await
            .expect("bob joins");
        // Bob's only message is the oldest; then more than one scan budget of Ada's, one of
        // them with media.
        let bobs = h.send(space, &bob, "the needle").await;
        let with_media = h
            .engine
            .space(space)
            .send(SendMessage {
                message_id: None,
                sender: ada.clone(),
                content: None,
                media_url: Some("/api/media/x".into()),
                media_type: Some(spacecast_engine::model::MediaType::Image),
                ..Default::default()
            })
            .await
            .unwrap();
        let total = SCAN_BUDGET + 100;
        for i in 0..total {
            h.send(space, &ada, &format!("hay {i}")).await;
        }
        let reader = h.engine.reader(space);
        let mut q = query(Direction::Backward, None, 50);
        q.filter.sender_id = Some(bob.user_id.clone());
        let pages = all_pages(&reader, &ada.user_id, q).await;
        assert_eq!(pages.len(), 2, "the budget ends the first page early");
        assert!(pages[0].is_empty(), "no match within the first budget");
        assert_eq!(ids(&pages[1]), vec![bobs.message_id]);
        let mut q = query(Direction::Forward, None, 50);
        q.filter.has_attachment = Some(true);
        let found: Vec<Message> = all_pages(&reader, &ada.user_id, q).await.concat();
        assert_eq!(ids(&found), vec![with_media.message_id]);
        let mut q = query(Direction::Forward, None, 2);
        q.filter.has_attachment = Some(false);
        let page = reader.list_messages(&ada.user_id, &q).await.unwrap();
        assert_eq!(ids(&page.messages)[0], bobs.message_id);
        assert!(page.messages.iter().all(|m| m.media_url.is_none()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_bounds_start_and_end_the_scan_in_both_directions() {
    bounded(async {
        let h = start().await;
        let ada = user("ada");
        let space = h
            .create(&ada, Visibility::Public, PostingPermission::Everyone)
            .await;
        let mut sent: Vec<Message> = Vec::new();
        for i in 0..40 {
            if i == 10 || i == 30 {
                // A later millisecond from here on (polls the clock; `bounded` is the deadline).
                while Timestamp::now() <= sent[i - 1].created_at {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            sent.push(h.send(space, &ada, &format!("m{i}")).await);
        }
        let reader = h.engine.reader(space);
        // Bounds on distinct times: the first message of a later millisecond than its
        // predecessor, and the last of an earlier millisecond than its successor.
        let from = (10..40)
            .find(|&i| sent[i].created_at > sent[i - 1].created_at)
            .expect("the clock moved");
        let to = (from..39)
            .rev()
            .find(|&i| sent[i].created_at < sent[i + 1].created_at)
            .unwrap_or(39);
        let expect = &sent[from..=to];
        for direction in [Direction::Forward, Direction::Backward] {
            let mut q = query(direction, None, 7);
            q.filter.since = Some(sent[from].created_at);
            q.filter.until = Some(sent[to].created_at);
            let mut got: Vec<Message> = all_pages(&reader, &ada.user_id, q).await.concat();
            if direction == Direction::Backward {
                got.reverse();
            }
            assert_eq!(ids(&got), ids(expect), "{direction:?}");
        }
    })
    .await;
}
