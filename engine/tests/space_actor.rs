//! The engine end to end: `Engine` over the real embedded store, driven through `SpaceHandle`s,
//! with a store wrapper that counts commits and can hold or fail them on command.
//!
//! No test sleeps to synchronise: waits for asynchronous effects poll a condition with a deadline
//! ([`eventually`]), and every await that could hang is bounded ([`within`]).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use spacecast_engine::event::{EventKind, SpaceEvent};
use spacecast_engine::hub::HubItem;
use spacecast_engine::model::{
    Message, MessageId, POWER_ADMIN, POWER_MEMBER, PostingPermission, Seq, SpaceCounters, SpaceId,
    UserRef, Visibility, new_id,
};
use spacecast_engine::store::embedded::EmbeddedStore;
use spacecast_engine::store::{Claimed, CommitBatch, MessageOrder, Store};
use spacecast_engine::testkit::hooked::{Hooked, StoreHooks};
use spacecast_engine::{
    Appreciation, Engine, EngineConfig, EngineError, NewSpace, Result, SendMessage,
};
use spacecast_observability::Metrics;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// The deadline of every wait; generous, as it only bounds a failing test.
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// A fault-injecting wrapper around the real store
// ---------------------------------------------------------------------------------------------

/// The embedded store, plus: commits and claims counted per space, a gate that holds commits
/// while closed, and switches that fail the next commit, either before it reaches the store
/// (nothing written) or after (everything written, but the caller is told it failed: the
/// ambiguous outcome the `Store` contract allows, or `Unsettled`: durable, not fully applied).
type FaultyStore = Hooked<Faulty>;

struct Faulty {
    commits: Mutex<HashMap<SpaceId, usize>>,
    claims: Mutex<HashMap<SpaceId, usize>>,
    gate: watch::Sender<bool>,
    fail_next: AtomicBool,
    fail_next_after_write: AtomicBool,
    unsettle_next: AtomicBool,
}

#[async_trait]
impl StoreHooks for Faulty {
    async fn claim(&self, inner: &dyn Store, space_id: SpaceId) -> Result<Option<Claimed>> {
        *self.claims.lock().unwrap().entry(space_id).or_default() += 1;
        inner.claim(space_id).await
    }
    async fn commit(&self, inner: &dyn Store, batch: &CommitBatch) -> Result<()> {
        *self
            .commits
            .lock()
            .unwrap()
            .entry(batch.space_id)
            .or_default() += 1;
        let mut open = self.gate.subscribe();
        open.wait_for(|open| *open)
            .await
            .map_err(|_| EngineError::StoreUnavailable("test gate dropped".into()))?;
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(EngineError::StoreUnavailable(
                "injected commit failure".into(),
            ));
        }
        inner.commit(batch).await?;
        if self.fail_next_after_write.swap(false, Ordering::SeqCst) {
            return Err(EngineError::StoreUnavailable(
                "injected failure after the write".into(),
            ));
        }
        if self.unsettle_next.swap(false, Ordering::SeqCst) {
            return Err(EngineError::Unsettled("injected: not fully applied".into()));
        }
        Ok(())
    }
}

impl Faulty {
    fn store(inner: Arc<dyn Store>) -> Arc<FaultyStore> {
        Arc::new(Hooked::new(
            inner,
            Faulty {
                commits: Mutex::default(),
                claims: Mutex::default(),
                gate: watch::Sender::new(true),
                fail_next: AtomicBool::new(false),
                fail_next_after_write: AtomicBool::new(false),
                unsettle_next: AtomicBool::new(false),
            },
        ))
    }

    /// Claims of `space_id` (one per actor start).
    fn claims_of(&self, space_id: SpaceId) -> usize {
        self.claims
            .lock()
            .unwrap()
            .get(&space_id)
            .copied()
            .unwrap_or(0)
    }

    /// The next commit is written, then reported `Unsettled`.
    fn unsettle_next_commit(&self) {
        self.unsettle_next.store(true, Ordering::SeqCst);
    }

    /// Commits of `space_id` that reached this store (including held and failed ones).
    fn commits_of(&self, space_id: SpaceId) -> usize {
        self.commits
            .lock()
            .unwrap()
            .get(&space_id)
            .copied()
            .unwrap_or(0)
    }

    /// Holds every commit until [`Faulty::open_gate`].
    fn close_gate(&self) {
        self.gate.send_replace(false);
    }

    fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    fn fail_next_commit(&self) {
        self.fail_next.store(true, Ordering::SeqCst);
    }

    fn fail_next_commit_after_writing_it(&self) {
        self.fail_next_after_write.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

struct Harness {
    engine: Engine,
    store: Arc<FaultyStore>,
    metrics: Metrics,
    dir: tempfile::TempDir,
}

async fn start(config: EngineConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let embedded =
        EmbeddedStore::open(&store_path(dir.path()), metrics.clone()).expect("open store");
    let store = Faulty::store(embedded);
    let engine = Engine::start(config, store.clone(), metrics.clone())
        .await
        .expect("engine starts");
    Harness {
        engine,
        store,
        metrics,
        dir,
    }
}

fn store_path(dir: &Path) -> std::path::PathBuf {
    dir.join("store")
}

impl Harness {
    /// Creates a public space owned by `creator`, and has `members` join it.
    async fn space_with(&self, creator: &UserRef, members: &[&UserRef]) -> SpaceId {
        let view = self
            .engine
            .create_space(new_space(), creator.clone())
            .await
            .expect("create space");
        let id = view.space.space_id;
        for m in members {
            self.engine
                .space(id)
                .join((*m).clone(), None)
                .await
                .expect("join");
        }
        id
    }

    async fn counters(&self, id: SpaceId) -> SpaceCounters {
        self.store
            .get_space(id)
            .await
            .unwrap()
            .expect("space exists")
            .counters
    }

    async fn events(&self, id: SpaceId) -> Vec<SpaceEvent> {
        self.store.read_events(id, 0, 10_000).await.unwrap()
    }

    async fn page(&self, id: SpaceId, order: MessageOrder) -> Vec<MessageId> {
        let page = self.store.page_messages(id, order, 0, 1000).await.unwrap();
        page.iter().map(|m| m.message_id).collect()
    }
}

fn user(name: &str) -> UserRef {
    UserRef {
        user_id: format!("{name}-{}", new_id()),
        username: name.to_owned(),
        profile_picture: format!("https://example.test/{name}.png"),
    }
}

fn new_space() -> NewSpace {
    NewSpace {
        title: "Engine tests".into(),
        description: "end to end".into(),
        visibility: Visibility::Public,
        tags: vec!["test".into()],
        posting_permission: PostingPermission::Everyone,
    }
}

fn text(sender: &UserRef, content: &str) -> SendMessage {
    SendMessage {
        message_id: None,
        sender: sender.clone(),
        content: Some(content.to_owned()),
        media_url: None,
        media_type: None,
        ..Default::default()
    }
}

fn seqs(events: &[SpaceEvent]) -> Vec<Seq> {
    events.iter().map(|e| e.seq).collect()
}

/// Polls `cond` until it holds; fails the test at the deadline.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Awaits `fut`, failing the test if it does not finish in time (instead of hanging).
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {WAIT:?}"),
    }
}

/// Awaits every task, in order.
async fn join_all<T>(what: &str, tasks: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(within(what, t).await.expect("task panicked"));
    }
    out
}

/// Fires one send per task, all at once.
fn fire_sends(
    h: &Harness,
    id: SpaceId,
    sender: &UserRef,
    n: usize,
) -> Vec<JoinHandle<Result<Message>>> {
    (0..n)
        .map(|i| {
            let space = h.engine.space(id);
            let cmd = text(sender, &format!("burst {i}"));
            tokio::spawn(async move { space.send(cmd).await })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creator_is_admin_members_join_once_and_only_members_send() {
    let h = start(EngineConfig::default()).await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let view = h
        .engine
        .create_space(new_space(), alice.clone())
        .await
        .unwrap();
    let id = view.space.space_id;
    assert_eq!(view.space.creator, alice);
    assert_eq!(
        view.counters,
        SpaceCounters {
            head_seq: 0,
            message_count: 0,
            member_count: 1
        }
    );
    let creator = h
        .store
        .get_member(id, &alice.user_id)
        .await
        .unwrap()
        .expect("creator is a member");
    assert_eq!(creator.power_level, 100);
    assert_eq!(POWER_ADMIN, 100);

    let space = h.engine.space(id);
    let bob_m = space.join(bob.clone(), None).await.expect("bob joins");
    assert_eq!(
        (bob_m.user.clone(), bob_m.power_level),
        (bob.clone(), POWER_MEMBER)
    );
    assert!(
        matches!(
            space.join(bob.clone(), None).await,
            Err(EngineError::AlreadyMember)
        ),
        "second join"
    );
    assert!(
        matches!(
            space.join(alice.clone(), None).await,
            Err(EngineError::AlreadyMember)
        ),
        "creator joins"
    );
    let err = space
        .send(text(&carol, "let me in"))
        .await
        .expect_err("a non-member cannot send");
    assert!(matches!(err, EngineError::NotAMember), "{err:?}");
    assert_eq!(err.code(), "not_a_member");

    // The join is durable.
    assert_eq!(
        h.store.get_member(id, &bob.user_id).await.unwrap(),
        Some(bob_m.clone())
    );
    assert_eq!(h.counters(id).await.member_count, 2);
    let bobs = h.store.spaces_of_user(&bob.user_id).await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!((bobs[0].0.space.space_id, &bobs[0].1), (id, &bob_m));

    // Members send; rejected commands took no seq.
    let m1 = space
        .send(text(&bob, "hello  world"))
        .await
        .expect("bob sends");
    assert_eq!(
        (m1.seq, m1.sender_id.as_str(), m1.word_count),
        (1, bob.user_id.as_str(), 2)
    );
    let empty = SendMessage {
        message_id: None,
        sender: bob.clone(),
        content: None,
        media_url: None,
        media_type: None,
        ..Default::default()
    };
    assert!(matches!(
        space.send(empty).await,
        Err(EngineError::Invalid("empty_message", _))
    ));
    let m2 = space
        .send(text(&alice, "welcome"))
        .await
        .expect("alice sends");
    assert_eq!(m2.seq, 2);
    assert_eq!(seqs(&h.events(id).await), vec![1, 2]);
    assert_eq!(
        h.counters(id).await,
        SpaceCounters {
            head_seq: 2,
            message_count: 2,
            member_count: 2
        }
    );
    assert_eq!(
        h.store.get_message(id, m1.message_id).await.unwrap(),
        Some(m1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admins_only_and_private_spaces_enforce_their_rules() {
    let h = start(EngineConfig::default()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let admins_only = NewSpace {
        posting_permission: PostingPermission::Admins,
        ..new_space()
    };
    let id = h
        .engine
        .create_space(admins_only, alice.clone())
        .await
        .unwrap()
        .space
        .space_id;
    let space = h.engine.space(id);
    space.join(bob.clone(), None).await.expect("bob joins");
    assert!(matches!(
        space.send(text(&bob, "hi")).await,
        Err(EngineError::Forbidden(_))
    ));
    assert_eq!(
        space
            .send(text(&alice, "announcement"))
            .await
            .expect("admin posts")
            .seq,
        1
    );

    let private = NewSpace {
        visibility: Visibility::Private,
        ..new_space()
    };
    let id = h
        .engine
        .create_space(private, alice.clone())
        .await
        .unwrap()
        .space
        .space_id;
    let err = h
        .engine
        .space(id)
        .join(bob.clone(), Some("guess".into()))
        .await
        .expect_err("no invites yet");
    // The same answer as an unknown space: join is no existence oracle for private spaces.
    assert!(matches!(err, EngineError::SpaceNotFound), "{err:?}");
    assert_eq!(h.store.get_member(id, &bob.user_id).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_get_gapless_seqs_and_subscribers_see_each_durable_event_once_in_order() {
    const TASKS: usize = 8;
    const PER_TASK: usize = 25;
    const TOTAL: u64 = (TASKS * PER_TASK) as u64;
    let h = start(EngineConfig::default()).await;
    let users = [user("alice"), user("bob"), user("carol"), user("dave")];
    let id = h
        .space_with(&users[0], &[&users[1], &users[2], &users[3]])
        .await;

    // Subscribed before the sends; on every event it checks the store already holds it.
    let mut sub = h.engine.hub().subscribe(id);
    let store = h.store.clone();
    let subscriber = tokio::spawn(async move {
        let mut received = Vec::new();
        while received.len() < TOTAL as usize {
            match sub.recv().await.expect("no lag, no close") {
                HubItem::Events(batch) => {
                    for p in batch.iter() {
                        let seq = p.event.seq;
                        let stored = store.read_events(id, seq - 1, 1).await.unwrap();
                        assert_eq!(
                            seqs(&stored),
                            vec![seq],
                            "seq {seq} was published before it was durable"
                        );
                        received.push(p.event.clone());
                    }
                }
                HubItem::Typing(_) | HubItem::Presence(_) => {
                    panic!("no typing or presence was sent")
                }
            }
        }
        (received, sub)
    });

    let batches_before = h.metrics.commit_batch_size.get_sample_count();
    let commands_before = h.metrics.commit_batch_size.get_sample_sum();
    let commits_before = h.store.commits_of(id);
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let space = h.engine.space(id);
            let sender = users[t % users.len()].clone();
            tokio::spawn(async move {
                let mut sent = Vec::with_capacity(PER_TASK);
                for i in 0..PER_TASK {
                    sent.push(
                        space
                            .send(text(&sender, &format!("task {t} message {i}")))
                            .await,
                    );
                }
                sent
            })
        })
        .collect();
    let mut by_seq: HashMap<Seq, Message> = HashMap::new();
    for sent in join_all("the senders", tasks).await {
        let mut last = 0;
        for r in sent {
            let m = r.expect("every send succeeds");
            assert!(
                m.seq > last,
                "one task's sends are sequenced in the order it made them"
            );
            last = m.seq;
            assert!(by_seq.insert(m.seq, m).is_none(), "duplicate seq {last}");
        }
    }
    let mut assigned: Vec<Seq> = by_seq.keys().copied().collect();
    assigned.sort_unstable();
    assert_eq!(
        assigned,
        (1..=TOTAL).collect::<Vec<_>>(),
        "seqs are exactly 1..=200"
    );

    assert_eq!(
        h.counters(id).await,
        SpaceCounters {
            head_seq: TOTAL,
            message_count: TOTAL,
            member_count: 4
        }
    );
    let events = h.events(id).await;
    assert_eq!(
        seqs(&events),
        (1..=TOTAL).collect::<Vec<_>>(),
        "the log is 1..=200 in order"
    );
    for ev in &events {
        let EventKind::MessageCreated(m) = &ev.kind else {
            panic!("unexpected event {ev:?}")
        };
        assert_eq!(
            Some(m),
            by_seq.get(&ev.seq),
            "the logged message is the one returned to its sender"
        );
    }

    // Every command was committed exactly once, in as many commits as the store saw.
    let commits = h.store.commits_of(id) - commits_before;
    assert_eq!(
        h.metrics.commit_batch_size.get_sample_count() - batches_before,
        commits as u64
    );
    assert_eq!(
        h.metrics.commit_batch_size.get_sample_sum() - commands_before,
        TOTAL as f64
    );
    assert!(commits <= TOTAL as usize);

    let (received, mut sub) = within("the subscriber", subscriber)
        .await
        .expect("subscriber checks hold");
    assert_eq!(received, events, "every event exactly once, in seq order");
    assert!(
        matches!(sub.try_recv(), Err(broadcast::error::TryRecvError::Empty)),
        "nothing more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_waiting_for_a_commit_are_merged_into_the_next_one() {
    const N: usize = 200;
    let h = start(EngineConfig::default()).await;
    let alice = user("alice");
    let id = h.space_with(&alice, &[]).await;
    h.store.close_gate();
    let sends = fire_sends(&h, id, &alice, N);
    // All of them sequenced and handed to the writer, whose first commit (holding one or more of
    // them) is held at the gate; the writer cannot start another meanwhile.
    eventually(
        "every send to reach the writer, and its first commit the store",
        || h.metrics.commit_queue.get() == N as i64 && h.store.commits_of(id) == 1,
    )
    .await;
    h.store.open_gate();

    let mut assigned: Vec<Seq> = join_all("the sends", sends)
        .await
        .into_iter()
        .map(|r| r.expect("send succeeds").seq)
        .collect();
    assigned.sort_unstable();
    assert_eq!(assigned, (1..=N as Seq).collect::<Vec<_>>());
    let commits = h.store.commits_of(id);
    assert!(
        commits <= 2,
        "{N} concurrent sends took {commits} commits: the held one, then one for the rest"
    );
    assert_eq!(
        h.metrics.commit_batch_size.get_sample_count(),
        commits as u64
    );
    assert_eq!(h.metrics.commit_batch_size.get_sample_sum(), N as f64);
    assert_eq!(
        seqs(&h.events(id).await),
        (1..=N as Seq).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appreciation_toggles_and_reorders_the_most_appreciated_page() {
    let h = start(EngineConfig::default()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let id = h.space_with(&alice, &[&bob]).await;
    let space = h.engine.space(id);
    let m1 = space.send(text(&bob, "first")).await.unwrap();
    let m2 = space.send(text(&bob, "second")).await.unwrap();
    assert_eq!(
        h.page(id, MessageOrder::MostAppreciated).await,
        vec![m2.message_id, m1.message_id]
    );

    let on = space
        .toggle_appreciation(m1.message_id, alice.clone())
        .await
        .unwrap();
    assert_eq!(
        on,
        Appreciation {
            appreciated: true,
            appreciation_count: 1
        }
    );
    let stored = h
        .store
        .get_message(id, m1.message_id)
        .await
        .unwrap()
        .expect("m1");
    assert_eq!(stored.appreciation_count, 1);
    assert!(stored.liked_by(&alice.user_id));
    // The like's id is a number: the seq of the event that added it.
    let json = serde_json::to_value(&stored).unwrap();
    assert_eq!(json["likes"][0]["id"].as_u64(), Some(3), "{json}");
    assert_eq!(json["likes"][0]["user_id"], alice.user_id.as_str());
    assert_eq!(
        h.page(id, MessageOrder::MostAppreciated).await,
        vec![m1.message_id, m2.message_id]
    );
    let events = h.events(id).await;
    let EventKind::ReactionChanged(r) = &events[2].kind else {
        panic!("{:?}", events[2])
    };
    assert_eq!(
        (events[2].seq, r.message_id, r.added, r.appreciation_count),
        (3, m1.message_id, true, 1)
    );

    let off = space
        .toggle_appreciation(m1.message_id, alice.clone())
        .await
        .unwrap();
    assert_eq!(
        off,
        Appreciation {
            appreciated: false,
            appreciation_count: 0
        }
    );
    let stored = h
        .store
        .get_message(id, m1.message_id)
        .await
        .unwrap()
        .expect("m1");
    assert_eq!(
        (
            stored.appreciation_count,
            stored.likes.as_ref().map_or(0, Vec::len)
        ),
        (0, 0)
    );
    assert_eq!(
        h.page(id, MessageOrder::MostAppreciated).await,
        vec![m2.message_id, m1.message_id],
        "back to a tie: newest first"
    );

    // Two users: counts add up, like ids differ.
    space
        .toggle_appreciation(m2.message_id, alice.clone())
        .await
        .unwrap();
    let both = space
        .toggle_appreciation(m2.message_id, bob.clone())
        .await
        .unwrap();
    assert_eq!(
        both,
        Appreciation {
            appreciated: true,
            appreciation_count: 2
        }
    );
    let stored = h
        .store
        .get_message(id, m2.message_id)
        .await
        .unwrap()
        .expect("m2");
    let ids: Vec<u64> = stored.likes.iter().flatten().map(|l| l.id).collect();
    assert_eq!(ids, vec![5, 6]);
    assert_eq!(
        h.page(id, MessageOrder::MostAppreciated).await,
        vec![m2.message_id, m1.message_id]
    );
    assert_eq!(
        h.counters(id).await,
        SpaceCounters {
            head_seq: 6,
            message_count: 2,
            member_count: 2
        }
    );

    let err = space
        .toggle_appreciation(new_id(), alice.clone())
        .await
        .expect_err("unknown message");
    assert!(matches!(err, EngineError::MessageNotFound), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_are_allowed_to_the_author_and_moderators_only() {
    let h = start(EngineConfig::default()).await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let id = h.space_with(&alice, &[&bob, &carol]).await;
    let space = h.engine.space(id);
    let mb = space.send(text(&bob, "bob's")).await.unwrap();
    let mc = space.send(text(&carol, "carol's")).await.unwrap();

    let err = space
        .delete(mb.message_id, carol.clone())
        .await
        .expect_err("carol may not delete bob's");
    assert!(matches!(err, EngineError::Forbidden(_)), "{err:?}");
    assert!(matches!(
        space.delete(mc.message_id, bob.clone()).await,
        Err(EngineError::Forbidden(_))
    ));
    assert_eq!(
        h.page(id, MessageOrder::Recent).await,
        vec![mc.message_id, mb.message_id],
        "nothing deleted"
    );

    space
        .delete(mb.message_id, bob.clone())
        .await
        .expect("the author deletes");
    assert_eq!(h.store.get_message(id, mb.message_id).await.unwrap(), None);
    assert_eq!(h.page(id, MessageOrder::Recent).await, vec![mc.message_id]);
    assert_eq!(
        h.page(id, MessageOrder::MostAppreciated).await,
        vec![mc.message_id]
    );
    assert!(matches!(
        space.delete(mb.message_id, bob.clone()).await,
        Err(EngineError::MessageNotFound)
    ));
    assert!(matches!(
        space.toggle_appreciation(mb.message_id, bob.clone()).await,
        Err(EngineError::MessageNotFound)
    ));

    space
        .delete(mc.message_id, alice.clone())
        .await
        .expect("the creator (power 100) deletes anyone's");
    assert_eq!(h.store.get_message(id, mc.message_id).await.unwrap(), None);
    assert!(h.page(id, MessageOrder::Recent).await.is_empty());

    let events = h.events(id).await;
    let deletions: Vec<(MessageId, String)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::MessageDeleted(d) => Some((d.message_id, d.deleted_by.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        deletions,
        vec![
            (mb.message_id, bob.user_id.clone()),
            (mc.message_id, alice.user_id.clone())
        ]
    );
    assert_eq!(
        h.counters(id).await,
        SpaceCounters {
            head_seq: 4,
            message_count: 0,
            member_count: 3
        }
    );

    let err = space
        .delete(new_id(), alice.clone())
        .await
        .expect_err("unknown message");
    assert!(matches!(err, EngineError::MessageNotFound), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_space_is_not_found() {
    let h = start(EngineConfig::default()).await;
    let alice = user("alice");
    let nowhere = h.engine.space(new_id());
    assert!(matches!(
        nowhere.send(text(&alice, "hello?")).await,
        Err(EngineError::SpaceNotFound)
    ));
    assert!(matches!(
        nowhere.join(alice.clone(), None).await,
        Err(EngineError::SpaceNotFound)
    ));
    assert!(matches!(
        nowhere.delete(new_id(), alice.clone()).await,
        Err(EngineError::SpaceNotFound)
    ));
    assert!(matches!(
        nowhere.toggle_appreciation(new_id(), alice.clone()).await,
        Err(EngineError::SpaceNotFound)
    ));
    assert_eq!(
        h.engine.live_spaces(),
        0,
        "no actor is started for a space that does not exist"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_evicted_from_the_actor_cache_are_read_back_from_the_store() {
    let config = EngineConfig {
        message_cache: 2,
        ..EngineConfig::default()
    };
    let h = start(config).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let id = h.space_with(&alice, &[&bob]).await;
    let space = h.engine.space(id);
    let mut sent = Vec::new();
    for i in 0..10 {
        sent.push(
            space
                .send(text(&bob, &format!("message {i}")))
                .await
                .unwrap(),
        );
    }
    let oldest = &sent[0];
    let a = space
        .toggle_appreciation(oldest.message_id, alice.clone())
        .await
        .unwrap();
    assert_eq!(
        a,
        Appreciation {
            appreciated: true,
            appreciation_count: 1
        }
    );
    // Push it out of the cache again, then toggle from the store's copy.
    for i in 10..15 {
        space
            .send(text(&bob, &format!("message {i}")))
            .await
            .unwrap();
    }
    let b = space
        .toggle_appreciation(oldest.message_id, bob.clone())
        .await
        .unwrap();
    assert_eq!(
        b,
        Appreciation {
            appreciated: true,
            appreciation_count: 2
        }
    );
    let stored = h
        .store
        .get_message(id, oldest.message_id)
        .await
        .unwrap()
        .expect("oldest");
    assert!(stored.liked_by(&alice.user_id) && stored.liked_by(&bob.user_id));
    assert_eq!(
        h.page(id, MessageOrder::MostAppreciated).await[0],
        oldest.message_id
    );
    space
        .delete(sent[1].message_id, bob.clone())
        .await
        .expect("delete an evicted message");
    assert_eq!(
        h.store.get_message(id, sent[1].message_id).await.unwrap(),
        None
    );
    assert_eq!(
        h.counters(id).await,
        SpaceCounters {
            head_seq: 18,
            message_count: 14,
            member_count: 2
        }
    );
}

/// One byte budget bounds every space's message cache together: a per-space bound alone
/// multiplies with the number of busy spaces. 20 spaces × 100 messages of 4 KB (≈ 8 MB) against a
/// 256 KiB budget: the caches stay near the budget while sending (each actor drops its durable
/// entries on its next command once the node is over), and the quiet spaces give theirs back at
/// their idle check. Entries not yet durable are never dropped, so every space still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_space_caches_share_one_byte_budget() {
    const BUDGET: usize = 256 * 1024;
    const SPACES: usize = 20;
    let config = EngineConfig {
        message_cache_bytes: BUDGET,
        idle_timeout: Duration::from_secs(2),
        ..EngineConfig::default()
    };
    let h = start(config).await;
    let alice = user("alice");
    let big = "x".repeat(4000);
    let mut spaces = Vec::new();
    let mut peak = 0;
    for _ in 0..SPACES {
        let id = h.space_with(&alice, &[]).await;
        for _ in 0..100 {
            h.engine.space(id).send(text(&alice, &big)).await.unwrap();
            peak = peak.max(h.metrics.message_cache_bytes.get() as usize);
        }
        spaces.push(id);
    }
    // One space alone may fill the budget (its own entries are evicted on its next command once
    // over), plus one pending message per space.
    assert!(
        peak <= BUDGET + 2 * 4500 * SPACES,
        "caches held {peak} bytes against a budget of {BUDGET}"
    );
    eventually("idle spaces give back their cache", || {
        (h.metrics.message_cache_bytes.get() as usize) <= BUDGET
    })
    .await;
    // Evicted messages are read back from the store when needed.
    let first = h.page(spaces[0], MessageOrder::Recent).await;
    h.engine
        .space(spaces[0])
        .toggle_appreciation(first[first.len() - 1], alice.clone())
        .await
        .expect("appreciate an evicted message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admission_control_rejects_commands_beyond_the_inflight_limit() {
    const LIMIT: usize = 4;
    const N: usize = 20;
    let config = EngineConfig {
        max_inflight_per_space: LIMIT,
        ..EngineConfig::default()
    };
    let h = start(config).await;
    let alice = user("alice");
    let id = h.space_with(&alice, &[]).await;
    h.store.close_gate();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..N {
        let space = h.engine.space(id);
        let cmd = text(&alice, &format!("burst {i}"));
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(space.send(cmd).await);
        });
    }
    // The admitted ones wait on the held commit; everything beyond the limit is refused at once.
    for _ in 0..N - LIMIT {
        let r = within("a refusal", rx.recv()).await.expect("a result");
        let err = r.expect_err("only refusals can arrive while the commit is held");
        assert!(matches!(err, EngineError::Overloaded { .. }), "{err:?}");
        assert_eq!(err.code(), "overloaded");
        assert!(err.retry_after().is_some());
    }
    assert_eq!(h.metrics.space_admission_rejected.get(), (N - LIMIT) as u64);

    h.store.open_gate();
    let mut admitted = Vec::new();
    for _ in 0..LIMIT {
        let r = within("an admitted send", rx.recv())
            .await
            .expect("a result");
        admitted.push(
            r.expect("admitted sends succeed once the store answers")
                .seq,
        );
    }
    admitted.sort_unstable();
    assert_eq!(admitted, vec![1, 2, 3, 4], "refused commands took no seq");
    // Admission slots were given back.
    assert_eq!(
        h.engine
            .space(id)
            .send(text(&alice, "after"))
            .await
            .unwrap()
            .seq,
        5
    );
    assert_eq!(h.metrics.space_commands_inflight.get(), 0);
}

/// A send repeating an idempotency key while the original is still being written is not
/// answered before the original is durable, and then with the original (CONTRACT §7: no
/// acknowledgement of what could still be lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_duplicate_key_pipelined_before_the_original_is_durable_waits_for_it() {
    let h = start(EngineConfig::default()).await;
    let alice = user("alice");
    let id = h.space_with(&alice, &[]).await;
    let space = h.engine.space(id);
    let keyed = |content: &str| SendMessage {
        idempotency_key: Some("key-1".into()),
        ..text(&alice, content)
    };
    h.store.close_gate();
    let commits = h.store.commits_of(id);
    let original = space.submit_post(keyed("original")).await.unwrap();
    let duplicate = space.submit_post(keyed("another body")).await.unwrap();
    // Answered by the actor at once, after it handled the duplicate (one mailbox, in order).
    let refused = within(
        "a refused send",
        space.send(SendMessage {
            sender: alice.clone(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(refused.err().map(|e| e.code()), Some("empty_message"));
    eventually("the original's commit to reach the store", || {
        h.store.commits_of(id) == commits + 1
    })
    .await;
    let mut duplicate = Box::pin(duplicate.wait());
    assert!(
        futures::poll!(&mut duplicate).is_pending(),
        "the duplicate is not answered while the original is not durable"
    );
    h.store.open_gate();
    let original = within("the original", original.wait()).await.unwrap();
    let duplicate = within("the duplicate", duplicate).await.unwrap();
    assert!(!original.replayed && duplicate.replayed);
    // The message as it is now: the actor's answers carry Space7's `likes` only for a new one.
    assert_eq!(
        duplicate.message,
        Message {
            likes: None,
            ..original.message.clone()
        }
    );
    assert_eq!(original.message.content.as_deref(), Some("original"));
    assert_eq!(
        h.store.commits_of(id),
        commits + 1,
        "the duplicate wrote nothing"
    );
    let created = h
        .events(id)
        .await
        .iter()
        .filter(|e| matches!(e.kind, EventKind::MessageCreated(_)))
        .count();
    assert_eq!(created, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_commit_fails_its_commands_and_the_space_resumes_from_the_store() {
    const IN_FLIGHT: usize = 10;
    let h = start(EngineConfig::default()).await;
    let alice = user("alice");
    let id = h.space_with(&alice, &[]).await;
    let mut sub = h.engine.hub().subscribe(id);
    let space = h.engine.space(id);
    for i in 0..3 {
        space
            .send(text(&alice, &format!("durable {i}")))
            .await
            .unwrap();
    }

    // One send's commit is held at the gate; the others queue behind it (sequenced after it).
    // Then that commit fails.
    h.store.close_gate();
    let commits = h.store.commits_of(id);
    let mut sends = fire_sends(&h, id, &alice, 1);
    eventually("the first commit to reach the store", || {
        h.store.commits_of(id) == commits + 1
    })
    .await;
    sends.extend(fire_sends(&h, id, &alice, IN_FLIGHT - 1));
    eventually("every send to reach the writer", || {
        h.metrics.commit_queue.get() == IN_FLIGHT as i64
    })
    .await;
    h.store.fail_next_commit();
    h.store.open_gate();
    for r in join_all("the failing sends", sends).await {
        let err = r.expect_err("no send of the failed commit (or queued behind it) succeeds");
        assert!(matches!(err, EngineError::StoreUnavailable(_)), "{err:?}");
    }
    eventually("the space actor to be rebuilt", || {
        h.metrics.space_restarts.get() == 1
    })
    .await;

    let next = within(
        "a send after the failure",
        space.send(text(&alice, "after")),
    )
    .await
    .expect("send works");
    assert_eq!(
        next.seq, 4,
        "continues from the last durable seq: the failed seqs were never durable"
    );
    let events = h.events(id).await;
    assert_eq!(
        seqs(&events),
        vec![1, 2, 3, 4],
        "no trace of the failed batch"
    );
    assert!(matches!(&events[3].kind, EventKind::MessageCreated(m) if *m == next));
    assert_eq!(
        h.counters(id).await,
        SpaceCounters {
            head_seq: 4,
            message_count: 4,
            member_count: 1
        }
    );
    assert_eq!(h.page(id, MessageOrder::Recent).await.len(), 4);

    // Subscribers saw only durable events.
    let mut published = Vec::new();
    while published.len() < 4 {
        match within("an event", sub.recv()).await.expect("subscribed") {
            HubItem::Events(batch) => published.extend(batch.iter().map(|p| p.event.clone())),
            HubItem::Typing(_) | HubItem::Presence(_) => panic!("no typing or presence was sent"),
        }
    }
    assert_eq!(published, events);
    assert!(matches!(
        sub.try_recv(),
        Err(broadcast::error::TryRecvError::Empty)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_space_claimed_elsewhere_refuses_its_old_writers_commits_and_reloads() {
    // Another node claims the space under the running actor: the actor's next commit is fenced
    // (its callers hear `Fenced`, nothing of it is written), and the rebuilt actor claims the
    // space back and continues from the durable head.
    let h = start(EngineConfig::default()).await;
    let alice = user("alice");
    let id = h.space_with(&alice, &[]).await;
    let space = h.engine.space(id);
    space.send(text(&alice, "one")).await.unwrap();
    let claims = h.store.claims_of(id);
    assert!(claims >= 1, "the actor claimed the space when it started");
    let other = h.store.inner.claim(id).await.unwrap().expect("claimed");
    let err = within("the fenced send", space.send(text(&alice, "two")))
        .await
        .expect_err("fenced");
    assert!(matches!(err, EngineError::Fenced), "{err:?}");
    assert_eq!(err.code(), "unavailable");
    eventually("the space actor to be rebuilt", || {
        h.metrics.space_restarts.get() == 1
    })
    .await;
    assert_eq!(
        seqs(&h.events(id).await),
        vec![1],
        "nothing of the fenced commit"
    );
    let three = within("a send after the reload", space.send(text(&alice, "three")))
        .await
        .expect("the rebuilt actor writes");
    assert_eq!(three.seq, 2, "continues from the durable head");
    assert_eq!(
        h.store.claims_of(id),
        claims + 1,
        "the rebuilt actor claimed again"
    );
    // The other claimer is fenced in turn.
    let stale = CommitBatch {
        space_id: id,
        epoch: other.epoch,
        counters: other.snapshot.view.counters,
        ..Default::default()
    };
    assert!(matches!(
        h.store.inner.commit(&stale).await,
        Err(EngineError::Fenced)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unsettled_commit_is_acknowledged_and_the_space_reloads_to_finish_it() {
    // The store made the batch durable but did not finish it (`Unsettled`): its callers get their
    // acknowledgement and subscribers its events, then the actor is rebuilt, and the rebuild's
    // claim finishes the commit before any further one.
    let h = start(EngineConfig::default()).await;
    let alice = user("alice");
    let id = h.space_with(&alice, &[]).await;
    let mut sub = h.engine.hub().subscribe(id);
    let space = h.engine.space(id);
    space.send(text(&alice, "one")).await.unwrap();
    let claims = h.store.claims_of(id);
    h.store.unsettle_next_commit();
    let two = within("the unsettled send", space.send(text(&alice, "two")))
        .await
        .expect("a durable commit is acknowledged");
    assert_eq!(two.seq, 2);
    eventually("the space actor to be rebuilt", || {
        h.metrics.space_restarts.get() == 1
    })
    .await;
    let three = within("a send after the reload", space.send(text(&alice, "three")))
        .await
        .unwrap();
    assert_eq!(three.seq, 3);
    assert_eq!(
        h.store.claims_of(id),
        claims + 1,
        "the rebuild claimed the space"
    );
    let events = h.events(id).await;
    assert_eq!(seqs(&events), vec![1, 2, 3]);
    let mut published = Vec::new();
    while published.len() < 3 {
        match within("an event", sub.recv()).await.expect("subscribed") {
            HubItem::Events(batch) => published.extend(batch.iter().map(|p| p.event.clone())),
            HubItem::Typing(_) | HubItem::Presence(_) => panic!("no typing or presence was sent"),
        }
    }
    assert_eq!(
        published, events,
        "subscribers saw the unsettled commit, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_that_failed_after_writing_is_never_overwritten() {
    // The store wrote the batch but reported a failure: the callers hear StoreUnavailable, and the
    // rebuilt actor continues after what is durable, so it never reuses (overwrites) those seqs.
    let h = start(EngineConfig::default()).await;
    let alice = user("alice");
    let id = h.space_with(&alice, &[]).await;
    let space = h.engine.space(id);
    space.send(text(&alice, "one")).await.unwrap();
    h.store.fail_next_commit_after_writing_it();
    let err = within("the ambiguous send", space.send(text(&alice, "two")))
        .await
        .expect_err("reported failed");
    assert!(matches!(err, EngineError::StoreUnavailable(_)), "{err:?}");
    eventually("the space actor to be rebuilt", || {
        h.metrics.space_restarts.get() == 1
    })
    .await;
    let before = h.events(id).await;
    assert_eq!(seqs(&before), vec![1, 2], "the batch was written");

    let three = within(
        "a send after the failure",
        space.send(text(&alice, "three")),
    )
    .await
    .unwrap();
    assert_eq!(
        three.seq, 3,
        "continues after the durable head, not after the last acknowledged seq"
    );
    let after = h.events(id).await;
    assert_eq!(after[..2], before[..], "the written events are untouched");
    assert_eq!(seqs(&after), vec![1, 2, 3]);
    assert_eq!(
        h.counters(id).await,
        SpaceCounters {
            head_seq: 3,
            message_count: 3,
            member_count: 1
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_space_passivates_and_resumes_its_sequence() {
    let config = EngineConfig {
        idle_timeout: Duration::from_millis(200),
        ..EngineConfig::default()
    };
    let h = start(config).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let id = h.space_with(&alice, &[&bob]).await;
    let space = h.engine.space(id);
    let m1 = space.send(text(&bob, "before")).await.unwrap();
    assert_eq!(h.engine.live_spaces(), 1);

    eventually("the space to passivate", || h.engine.live_spaces() == 0).await;
    eventually("its actor to stop", || h.metrics.space_actors.get() == 0).await;
    assert_eq!(h.metrics.space_passivations.get(), 1);

    let m2 = space
        .send(text(&bob, "after"))
        .await
        .expect("a passivated space takes commands");
    assert_eq!(m2.seq, m1.seq + 1);
    assert_eq!(h.engine.live_spaces(), 1);
    // The rebuilt actor knows the members and reads older messages from the store.
    assert!(matches!(
        space.join(bob.clone(), None).await,
        Err(EngineError::AlreadyMember)
    ));
    let a = space
        .toggle_appreciation(m1.message_id, alice.clone())
        .await
        .unwrap();
    assert_eq!(
        a,
        Appreciation {
            appreciated: true,
            appreciation_count: 1
        }
    );

    eventually("the space to passivate again", || {
        h.engine.live_spaces() == 0
    })
    .await;
    space
        .delete(m1.message_id, alice.clone())
        .await
        .expect("the creator deletes after a reload");
    assert_eq!(seqs(&h.events(id).await), vec![1, 2, 3, 4]);
    assert_eq!(
        h.counters(id).await,
        SpaceCounters {
            head_seq: 4,
            message_count: 1,
            member_count: 2
        }
    );
    assert!(h.metrics.space_passivations.get() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_keeps_every_acknowledged_send() {
    const TASKS: usize = 10;
    const PER_TASK: usize = 50;
    let h = start(EngineConfig::default()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let id = h.space_with(&alice, &[&bob]).await;
    let acked = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let space = h.engine.space(id);
            let sender = if t % 2 == 0 {
                alice.clone()
            } else {
                bob.clone()
            };
            let acked = acked.clone();
            tokio::spawn(async move {
                let mut results = Vec::new();
                for i in 0..PER_TASK {
                    let r = space
                        .send(text(&sender, &format!("task {t} message {i}")))
                        .await;
                    let failed = r.is_err();
                    if !failed {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    results.push(r);
                    if failed {
                        break;
                    }
                }
                results
            })
        })
        .collect();
    eventually("some sends to be acknowledged", || {
        acked.load(Ordering::SeqCst) >= 20
    })
    .await;
    within("shutdown", h.engine.shutdown(Duration::from_secs(10))).await;

    let mut ok = Vec::new();
    for results in join_all("the senders", tasks).await {
        for r in results {
            match r {
                Ok(m) => ok.push(m),
                Err(e) => assert!(
                    matches!(e, EngineError::ShuttingDown | EngineError::SpaceUnavailable),
                    "unexpected error during shutdown: {e:?}"
                ),
            }
        }
    }
    assert!(ok.len() >= 20);
    let err = h
        .engine
        .space(id)
        .send(text(&alice, "too late"))
        .await
        .expect_err("the engine is shut down");
    assert!(matches!(err, EngineError::ShuttingDown), "{err:?}");

    // Everything acknowledged is durable: reopen the directory and find it there.
    let Harness {
        engine, store, dir, ..
    } = h;
    drop(engine);
    drop(store);
    let reopened = EmbeddedStore::open(&store_path(dir.path()), Metrics::new())
        .expect("reopen after shutdown");
    let events = reopened.read_events(id, 0, 10_000).await.unwrap();
    let head = reopened
        .get_space(id)
        .await
        .unwrap()
        .expect("space")
        .counters
        .head_seq;
    assert_eq!(
        seqs(&events),
        (1..=head).collect::<Vec<_>>(),
        "a gapless log"
    );
    let logged: HashSet<MessageId> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::MessageCreated(m) => Some(m.message_id),
            _ => None,
        })
        .collect();
    for m in &ok {
        assert!(
            logged.contains(&m.message_id),
            "acknowledged seq {} is not in the log",
            m.seq
        );
        assert_eq!(
            reopened
                .get_message(id, m.message_id)
                .await
                .unwrap()
                .as_ref(),
            Some(m)
        );
    }
}
