//! Space statistics end to end (issue 10): `Engine` over the real embedded store, driven through
//! `SpaceHandle`s, the stats read through `Engine::space_stats` and compared with a from-scratch
//! computation over the messages the store lists.
//!
//! No test sleeps to synchronise; every await that could hang is bounded ([`within`]).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use spacecast_engine::Result;
use spacecast_engine::store::CommitBatch;
use spacecast_engine::testkit::hooked::{Hooked, StoreHooks};

use spacecast_engine::model::{
    MediaItem, Message, MessageId, PostingPermission, SpaceId, UserRef, Visibility, new_id,
};
use spacecast_engine::stats::{LEADERBOARD_CANDIDATES, SpaceStats, TOP_CONTRIBUTORS};
use spacecast_engine::store::embedded::EmbeddedStore;
use spacecast_engine::store::{Direction, Store};
use spacecast_engine::testkit::{SpaceModel, create};
use spacecast_engine::{Engine, EngineConfig, EngineError, NewSpace, SendMessage};
use spacecast_observability::Metrics;

/// The deadline of every wait; generous, as it only bounds a failing test.
const WAIT: Duration = Duration::from_secs(60);

/// Awaits `fut`, failing the test if it does not finish in time (instead of hanging).
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {WAIT:?}"),
    }
}

fn user(name: &str) -> UserRef {
    UserRef {
        user_id: format!("{name}-{}", new_id()),
        username: name.to_owned(),
        profile_picture: String::new(),
    }
}

fn text(sender: &UserRef, content: &str) -> SendMessage {
    SendMessage {
        sender: sender.clone(),
        content: Some(content.to_owned()),
        ..Default::default()
    }
}

fn open(path: &Path) -> Arc<dyn Store> {
    EmbeddedStore::open(path, Metrics::new()).expect("open store")
}

/// Opens the store again once the previous engine's last handles are gone.
async fn reopen(path: &Path) -> Arc<dyn Store> {
    within("reopen", async {
        loop {
            match EmbeddedStore::open(path, Metrics::new()) {
                Ok(s) => break s as Arc<dyn Store>,
                Err(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await
}

async fn start(store: Arc<dyn Store>) -> Engine {
    Engine::start(EngineConfig::default(), store, Metrics::new())
        .await
        .expect("engine starts")
}

async fn new_space(engine: &Engine, creator: &UserRef, visibility: Visibility) -> SpaceId {
    engine
        .create_space(
            NewSpace {
                title: "Stats".into(),
                description: String::new(),
                visibility,
                tags: vec![],
                posting_permission: PostingPermission::Everyone,
            },
            creator.clone(),
        )
        .await
        .expect("create space")
        .space
        .space_id
}

/// Every existing message, oldest first, as the store lists them.
async fn listed(store: &dyn Store, id: SpaceId) -> Vec<Message> {
    let head = store
        .get_space(id)
        .await
        .unwrap()
        .unwrap()
        .counters
        .head_seq;
    store
        .scan_messages(id, 0, head + 1, Direction::Forward, usize::MAX)
        .await
        .unwrap()
}

/// The stats read through the engine equal the from-scratch stats of the listed messages: every
/// number, and the top contributors (the stored leaderboard beyond them may hold fewer
/// candidates than a fresh computation).
async fn assert_stats(engine: &Engine, store: &dyn Store, id: SpaceId, viewer: &str, when: &str) {
    let got = within("stats", engine.space_stats(id, viewer))
        .await
        .expect("stats");
    let messages = listed(store, id).await;
    let (want, _) = SpaceStats::compute(&messages);
    let numbers = |s: &SpaceStats| {
        (
            s.total_messages,
            s.by_msgtype.clone(),
            s.with_attachments,
            s.threads,
            s.redacted,
            s.first_message,
            s.last_message,
        )
    };
    assert_eq!(numbers(&got), numbers(&want), "{when}: the counts");
    assert_eq!(
        got.top_contributors(),
        want.top_contributors(),
        "{when}: top contributors"
    );
    assert!(got.leaderboard.len() <= LEADERBOARD_CANDIDATES);
}

/// A small deterministic generator (xorshift64), so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn words(rng: &mut Rng) -> String {
    let n = rng.below(9);
    if n == 0 {
        // No words, but content.
        return "   ".into();
    }
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn attachment() -> MediaItem {
    MediaItem {
        media_id: new_id(),
        content_type: "image/png".into(),
        size: 10,
        sha256: "00".repeat(32),
        thumbnail_id: None,
    }
}

/// One random command against the space: a send (text, code or a custom type, sometimes with
/// media, sometimes a reply), an edit, a redaction or a delete of an existing message.
async fn random_command(
    engine: &Engine,
    id: SpaceId,
    users: &[UserRef],
    existing: &[Message],
    rng: &mut Rng,
) {
    let space = engine.space(id);
    let pick = rng.below(100);
    let target = (!existing.is_empty()).then(|| existing[rng.below(existing.len())].clone());
    let by = |m: &Message| {
        users
            .iter()
            .find(|u| u.user_id == m.sender_id)
            .cloned()
            .expect("a known sender")
    };
    let r: Result<(), EngineError> = match (pick, target) {
        (0..=54, _) | (_, None) => {
            let sender = users[rng.below(users.len())].clone();
            let mut cmd = text(&sender, &words(rng));
            cmd.msgtype = Some(["text", "code", "x.poll"][rng.below(3)].to_owned());
            if rng.below(5) == 0 {
                cmd.media = vec![attachment()];
            }
            if rng.below(3) == 0 {
                let roots: Vec<&Message> =
                    existing.iter().filter(|m| m.parent_id.is_none()).collect();
                if !roots.is_empty() {
                    cmd.parent_id = Some(roots[rng.below(roots.len())].message_id);
                }
            }
            space.send(cmd).await.map(|_| ())
        }
        (55..=69, Some(m)) => space
            .edit(m.message_id, by(&m), Some(words(rng)), None)
            .await
            .map(|_| ()),
        (70..=79, Some(m)) => space.redact(m.message_id, by(&m), None).await.map(|_| ()),
        (_, Some(m)) => space.delete(m.message_id, by(&m)).await,
    };
    match r {
        // Commands of one round run concurrently: a target may be gone or redacted by then.
        Ok(()) | Err(EngineError::MessageNotFound) | Err(EngineError::Invalid(..)) => {}
        Err(EngineError::Conflict("message_redacted", _)) => {}
        Err(e) => panic!("command failed: {e:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Deletes of the first or last message while other changes are still in flight
// ---------------------------------------------------------------------------------------------

/// The embedded store, whose commits wait at a gate while `held` (so the space's writer holds
/// every later batch: sequenced, not durable).
type HeldStore = Hooked<Held>;

struct Held {
    held: AtomicBool,
    gate: tokio::sync::Semaphore,
    /// Commits waiting at the gate.
    waiting: AtomicUsize,
}

impl Held {
    fn hold(&self) {
        while let Ok(p) = self.gate.try_acquire() {
            p.forget();
        }
        self.held.store(true, Ordering::SeqCst);
    }

    fn release(&self) {
        self.held.store(false, Ordering::SeqCst);
        self.gate.add_permits(1_000);
    }
}

#[async_trait]
impl StoreHooks for Held {
    async fn commit(&self, inner: &dyn Store, batch: &CommitBatch) -> Result<()> {
        if self.held.load(Ordering::SeqCst) {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let permit = self.gate.acquire().await.expect("the gate stays open");
            permit.forget();
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        inner.commit(batch).await
    }
}

/// Polls `f` until it holds (a deadline, never a sleep as synchronisation).
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::task::yield_now().await;
    }
}

/// Deletes the first and the last message while deletes of their neighbours and a new message are
/// sequenced but not yet durable: the next first/last skips what is deleted in flight and finds
/// what is created in flight (from the actor's cache, which the store cannot know yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_and_last_skip_changes_still_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let held: Arc<HeldStore> = Arc::new(Hooked::new(
        open(&dir.path().join("store")),
        Held {
            held: AtomicBool::new(false),
            gate: tokio::sync::Semaphore::new(0),
            waiting: AtomicUsize::new(0),
        },
    ));
    let store: Arc<dyn Store> = held.clone();
    let metrics = Metrics::new();
    let engine = Engine::start(EngineConfig::default(), store.clone(), metrics.clone())
        .await
        .unwrap();
    let ada = user("ada");
    let id = new_space(&engine, &ada, Visibility::Public).await;
    let mut m = Vec::new();
    for i in 0..6 {
        let sent = within("send", engine.space(id).send(text(&ada, &format!("m{i}"))))
            .await
            .unwrap();
        m.push(sent);
    }
    // In order: the delete of m1 blocks in the store, the others queue behind it.
    held.hold();
    let mut tasks = Vec::new();
    until("the writer is idle", || metrics.commit_queue.get() == 0).await;
    let queued = 0;
    for (n, i) in [1, 2, 4, 0, 5].into_iter().enumerate() {
        let space = engine.space(id);
        let (mid, by) = (m[i].message_id, ada.clone());
        tasks.push(tokio::spawn(async move { space.delete(mid, by).await }));
        until("the delete is sequenced", || {
            metrics.commit_queue.get() == queued + n as i64 + 1
        })
        .await;
        if n == 0 {
            until("the first commit waits", || {
                held.waiting.load(Ordering::SeqCst) == 1
            })
            .await;
        }
    }
    held.release();
    for t in tasks {
        within("a delete", t).await.unwrap().unwrap();
    }
    let stats = engine.space_stats(id, &ada.user_id).await.unwrap();
    let mark = |i: usize| Some((m[i].seq, m[i].created_at));
    let marks = |s: &SpaceStats| {
        (
            s.first_message.map(|x| (x.seq, x.at)),
            s.last_message.map(|x| (x.seq, x.at)),
        )
    };
    assert_eq!(marks(&stats), (mark(3), mark(3)), "only m3 is left");
    assert_stats(&engine, &*store, id, &ada.user_id, "after the deletes").await;

    // Now a send in flight: deleting the only durable message leaves the new one first.
    held.hold();
    let space = engine.space(id);
    until("the writer is idle", || metrics.commit_queue.get() == 0).await;
    let queued = 0;
    let send = tokio::spawn({
        let (space, ada) = (space.clone(), ada.clone());
        async move { space.send(text(&ada, "late")).await }
    });
    until("the send is sequenced", || {
        metrics.commit_queue.get() == queued + 1
    })
    .await;
    until("its commit waits", || {
        held.waiting.load(Ordering::SeqCst) == 1
    })
    .await;
    let delete = tokio::spawn({
        let (space, ada, mid) = (space.clone(), ada.clone(), m[3].message_id);
        async move { space.delete(mid, ada).await }
    });
    until("the delete is sequenced", || {
        metrics.commit_queue.get() == queued + 2
    })
    .await;
    held.release();
    let late = within("send", send).await.unwrap().unwrap();
    within("delete", delete).await.unwrap().unwrap();
    let stats = engine.space_stats(id, &ada.user_id).await.unwrap();
    let late_mark = Some((late.seq, late.created_at));
    assert_eq!(marks(&stats), (late_mark, late_mark));
    assert_stats(
        &engine,
        &*store,
        id,
        &ada.user_id,
        "after the send in flight",
    )
    .await;
}

/// Rounds of concurrent random commands (so deletes of the first or last message meet deletes
/// still in flight); after each round, and after a restart, the stats equal the from-scratch
/// computation. More than [`LEADERBOARD_CANDIDATES`] senders, so the leaderboard is partial.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stats_equal_a_computation_from_scratch_through_a_random_mix_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = open(&path);
    let engine = start(store.clone()).await;
    let users: Vec<UserRef> = (0..40).map(|i| user(&format!("u{i}"))).collect();
    let id = new_space(&engine, &users[0], Visibility::Public).await;
    for u in &users[1..] {
        within("join", engine.space(id).join(u.clone(), None))
            .await
            .unwrap();
    }
    let viewer = users[0].user_id.clone();
    assert_stats(&engine, &*store, id, &viewer, "empty").await;
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    rounds(&engine, &*store, id, &users, 60, &mut rng).await;
    let before = within("stats", engine.space_stats(id, &viewer))
        .await
        .unwrap();
    assert!(
        before.total_messages > 50,
        "the mix kept messages: {}",
        before.total_messages
    );
    assert!(before.threads > 0 && before.redacted > 0 && before.with_attachments > 0);
    within("shutdown", engine.shutdown(Duration::from_secs(10))).await;
    drop(engine);
    drop(store);

    let store = reopen(&path).await;
    let engine = start(store.clone()).await;
    let after = within("stats", engine.space_stats(id, &viewer))
        .await
        .unwrap();
    assert_eq!(after, before, "a restart keeps the stats");
    assert_stats(&engine, &*store, id, &viewer, "after the restart").await;
    rounds(&engine, &*store, id, &users, 20, &mut rng).await;
}

/// `n` rounds of six concurrent random commands, the stats checked after each.
async fn rounds(
    engine: &Engine,
    store: &dyn Store,
    id: SpaceId,
    users: &[UserRef],
    n: usize,
    rng: &mut Rng,
) {
    for round in 0..n {
        let existing = listed(store, id).await;
        let mut seeds: Vec<Rng> = (0..6)
            .map(|_| Rng(rng.below(usize::MAX) as u64 | 1))
            .collect();
        let cmds = seeds
            .iter_mut()
            .map(|r| random_command(engine, id, users, &existing, r));
        within("a round", futures::future::join_all(cmds)).await;
        assert_stats(
            engine,
            store,
            id,
            &users[0].user_id,
            &format!("round {round}"),
        )
        .await;
    }
}

/// Deleting the top contributors' messages until someone who was outside the stored leaderboard
/// must enter the top 10: the leaderboard is rebuilt from the contributor rows, and stays exact
/// at every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_contributor_outside_the_leaderboard_enters_the_top_when_the_top_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store"));
    let engine = start(store.clone()).await;
    let n = LEADERBOARD_CANDIDATES + 8;
    let users: Vec<UserRef> = (0..n).map(|i| user(&format!("u{i:02}"))).collect();
    let id = new_space(&engine, &users[0], Visibility::Public).await;
    let mut sent: Vec<(usize, MessageId)> = Vec::new();
    for (i, u) in users.iter().enumerate() {
        if i > 0 {
            within("join", engine.space(id).join(u.clone(), None))
                .await
                .unwrap();
        }
        // User i has i + 1 words, in two messages.
        for part in [i / 2 + 1, i - i / 2] {
            let content = vec!["w"; part].join(" ");
            let m = within("send", engine.space(id).send(text(u, &content)))
                .await
                .unwrap();
            sent.push((i, m.message_id));
        }
    }
    let viewer = users[0].user_id.clone();
    let stats = engine.space_stats(id, &viewer).await.unwrap();
    assert_eq!(stats.leaderboard.len(), LEADERBOARD_CANDIDATES);
    assert!(
        !stats.leaderboard_complete,
        "some contributors are outside it"
    );
    let outside = &users[n - LEADERBOARD_CANDIDATES - 1].user_id;
    assert!(stats.leaderboard.iter().all(|c| &c.user_id != outside));
    assert_stats(&engine, &*store, id, &viewer, "all sent").await;

    // The best go first, every message of theirs.
    for top in (TOP_CONTRIBUTORS..n).rev() {
        for (_, mid) in sent.iter().filter(|(i, _)| *i == top) {
            within("delete", engine.space(id).delete(*mid, users[top].clone()))
                .await
                .unwrap();
        }
        assert_stats(&engine, &*store, id, &viewer, &format!("without u{top}")).await;
    }
    let stats = engine.space_stats(id, &viewer).await.unwrap();
    let top: Vec<&str> = stats
        .top_contributors()
        .iter()
        .map(|c| c.user_id.as_str())
        .collect();
    let want: Vec<&str> = (0..TOP_CONTRIBUTORS)
        .rev()
        .map(|i| users[i].user_id.as_str())
        .collect();
    assert_eq!(
        top, want,
        "the ones that were outside the leaderboard lead now"
    );
    assert!(top.contains(&outside.as_str()));
}

/// A space written before stats existed gets them when read: the engine starts its actor, whose
/// claim computes them from the messages and commits them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_space_written_without_stats_gets_them_on_first_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store"));
    let alice = user("alice");
    let bob = user("bob");
    let (space, creator) = create(&*store, &alice).await;
    let id = space.space_id;
    let mut model = SpaceModel::new(&space, &creator, 0);
    model.with_stats = false;
    model.seed(&*store, &alice, &bob).await;
    assert_eq!(store.space_stats(id).await.unwrap(), None);

    let engine = start(store.clone()).await;
    let got = within("stats", engine.space_stats(id, &alice.user_id))
        .await
        .unwrap();
    model.with_stats = true;
    let (want, _) = model.expected_stats();
    assert_eq!(got, want);
    assert_eq!(store.space_stats(id).await.unwrap(), Some(want), "stored");
    // And kept up from there.
    within("send", engine.space(id).send(text(&alice, "two more")))
        .await
        .unwrap();
    assert_stats(&engine, &*store, id, &alice.user_id, "after a send").await;
}

/// Whoever may read the space may read its stats: anyone for a public space, members only for a
/// private one (to others it does not exist).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stats_follow_the_read_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store"));
    let engine = start(store.clone()).await;
    let (alice, stranger) = (user("alice"), user("stranger"));
    let public = new_space(&engine, &alice, Visibility::Public).await;
    let private = new_space(&engine, &alice, Visibility::Private).await;
    for id in [public, private] {
        within("send", engine.space(id).send(text(&alice, "hello there")))
            .await
            .unwrap();
    }
    let s = engine.space_stats(public, &stranger.user_id).await.unwrap();
    assert_eq!(s.total_messages, 1);
    assert_eq!(s.top_contributors()[0].word_count, 2);
    assert_eq!(
        engine
            .space_stats(private, &stranger.user_id)
            .await
            .map_err(|e| e.code()),
        Err("not_found")
    );
    assert_eq!(
        engine
            .space_stats(private, &alice.user_id)
            .await
            .unwrap()
            .total_messages,
        1
    );
    assert_eq!(
        engine
            .space_stats(new_id(), &alice.user_id)
            .await
            .map_err(|e| e.code()),
        Err("not_found")
    );
}
