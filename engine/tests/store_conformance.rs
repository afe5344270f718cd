//! The storage conformance suite (`spacecast_engine::testkit`) on the embedded (fjall) store, plus
//! what only a local store can show: reopening the directory sees everything committed.

use std::path::Path;
use std::sync::Arc;

use spacecast_engine::event::EventKind;
use spacecast_engine::event::SpaceEvent;
use spacecast_engine::model::{
    Member, Message, POWER_ADMIN, POWER_MEMBER, PostingPermission, Space, SpaceCounters, SpaceId,
    Timestamp, UserRef, Visibility, new_id,
};
use spacecast_engine::store::embedded::EmbeddedStore;
use spacecast_engine::store::{CommitBatch, MessageOrder, MessageWrite, Store};
use spacecast_engine::testkit::store_conformance;
use spacecast_observability::Metrics;

fn open(path: &Path) -> Arc<EmbeddedStore> {
    EmbeddedStore::open(path, Metrics::new()).expect("open the embedded store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    store_conformance(open(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_twice_on_one_store() {
    // Cases must not assume an empty store.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store_conformance(store.clone()).await;
    store_conformance(store).await;
}

fn user(name: &str) -> UserRef {
    UserRef {
        user_id: format!("{name}-{}", new_id()),
        username: name.into(),
        profile_picture: String::new(),
    }
}

/// What was committed before the reopen, to compare with what is read after it.
struct Written {
    space: Space,
    creator: Member,
    joiner: Member,
    messages: Vec<Message>,
    events: Vec<SpaceEvent>,
    counters: SpaceCounters,
}

async fn write_some(store: &dyn Store) -> Written {
    let alice = user("alice");
    let bob = user("bob");
    let space = Space {
        space_id: new_id(),
        title: "Durable".into(),
        description: String::new(),
        visibility: Visibility::Public,
        creator: alice.clone(),
        tags: vec![],
        posting_permission: PostingPermission::Everyone,
        created_at: Timestamp::now(),
    };
    let creator = Member {
        user: alice.clone(),
        power_level: POWER_ADMIN,
        joined_at: Timestamp::now(),
    };
    store.create_space(&space, &creator).await.unwrap();
    let joiner = Member {
        user: bob.clone(),
        power_level: POWER_MEMBER,
        joined_at: Timestamp::now(),
    };
    let messages: Vec<Message> = (1..=3)
        .map(|seq| Message {
            message_id: new_id(),
            space_id: space.space_id,
            seq,
            sender_id: bob.user_id.clone(),
            content: Some(format!("message {seq}")),
            media_url: None,
            media_type: None,
            word_count: 2,
            sender: bob.clone(),
            likes: Some(vec![]),
            appreciation_count: 0,
            created_at: Timestamp::now(),
            actor_id: bob.user_id.clone(),
            ..Default::default()
        })
        .collect();
    let events: Vec<SpaceEvent> = messages
        .iter()
        .map(|m| SpaceEvent {
            space_id: space.space_id,
            seq: m.seq,
            at: m.created_at,
            kind: EventKind::MessageCreated(m.clone()),
        })
        .collect();
    let counters = SpaceCounters {
        head_seq: 3,
        message_count: 3,
        member_count: 2,
    };
    store
        .commit(&CommitBatch {
            space_id: space.space_id,
            events: events.clone(),
            messages: messages
                .iter()
                .map(|m| MessageWrite::Put {
                    message: m.clone(),
                    previous_appreciation: None,
                })
                .collect(),
            members: vec![joiner.clone()],
            counters,
            ..Default::default()
        })
        .await
        .unwrap();
    Written {
        space,
        creator,
        joiner,
        messages,
        events,
        counters,
    }
}

async fn assert_reads_back(store: &dyn Store, w: &Written) {
    let id: SpaceId = w.space.space_id;
    let view = store
        .get_space(id)
        .await
        .unwrap()
        .expect("space survives the reopen");
    assert_eq!(view.space, w.space);
    assert_eq!(view.counters, w.counters);
    let mut members = store
        .load_space(id)
        .await
        .unwrap()
        .expect("space loads")
        .members;
    members.sort_by(|a, b| a.user.user_id.cmp(&b.user.user_id));
    assert_eq!(members, vec![w.creator.clone(), w.joiner.clone()]);
    assert_eq!(store.read_events(id, 0, 100).await.unwrap(), w.events);
    let newest_first: Vec<Message> = w.messages.iter().rev().cloned().collect();
    assert_eq!(
        store
            .page_messages(id, MessageOrder::Recent, 0, 10)
            .await
            .unwrap(),
        newest_first
    );
    assert_eq!(
        store
            .page_messages(id, MessageOrder::MostAppreciated, 0, 10)
            .await
            .unwrap(),
        newest_first
    );
    for m in &w.messages {
        assert_eq!(
            store.get_message(id, m.message_id).await.unwrap().as_ref(),
            Some(m)
        );
    }
    let bobs = store.spaces_of_user(&w.joiner.user.user_id).await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].1, w.joiner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_the_directory_sees_everything_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let written = write_some(&*store).await;
    assert_reads_back(&*store, &written).await;
    // Dropping the last handle closes the writer thread's channel; the thread then persists and
    // releases the database (and its lock file).
    drop(store);

    let store = open(dir.path());
    assert_reads_back(&*store, &written).await;
    // The reopened store keeps working, and passes the suite with old data in it.
    let more = write_some(&*store).await;
    store_conformance(store.clone()).await;
    drop(store);

    let store = open(dir.path());
    assert_reads_back(&*store, &written).await;
    assert_reads_back(&*store, &more).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_after_close_sees_everything_committed() {
    // The engine's shutdown path: close() then drop.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let written = write_some(&*store).await;
    store.close().await.unwrap();
    drop(store);
    let store = open(dir.path());
    assert_reads_back(&*store, &written).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_store_releases_the_database_lock() {
    // When the last handle is dropped, the database (and fjall's lock file) must be released
    // before `drop` returns, so the directory can be reopened at once: fjall's own open retries a
    // held lock only for about 200 ms before failing with `Locked`.
    let dir = tempfile::tempdir().unwrap();
    for round in 0..5 {
        let store = open(dir.path());
        let written = write_some(&*store).await;
        assert_reads_back(&*store, &written).await;
        let lock = std::fs::File::open(dir.path().join("lock")).expect("fjall's lock file");
        assert!(
            lock.try_lock().is_err(),
            "round {round}: an open store holds the lock"
        );
        drop(store);
        lock.try_lock()
            .unwrap_or_else(|e| panic!("round {round}: lock still held after drop: {e}"));
        lock.unlock().unwrap();
    }
}

/// Edits, their history and a redaction's wipe are durable: a reopened store reads them exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_their_history_survive_a_reopen() {
    use spacecast_engine::testkit::{SpaceModel, create, user};
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (alice, bob) = (user("alice"), user("bob"));
    let (space, creator) = create(&*store, &alice).await;
    let mut model = SpaceModel::new(&space, &creator, 0);
    model.seed(&*store, &alice, &bob).await;
    let mut b = model.batch();
    model.edit(&mut b, 1, "first edit");
    model.edit(&mut b, 2, "another");
    let b = model.finish(b);
    store.commit(&b).await.unwrap();
    let mut b = model.batch();
    model.edit(&mut b, 1, "second edit");
    let b = model.finish(b);
    store.commit(&b).await.unwrap();
    model.assert_reads(&*store, "before the reopen").await;
    drop(store);
    let store = open(dir.path());
    model.assert_reads(&*store, "after the reopen").await;
    assert_eq!(
        store
            .message_history(space.space_id, model.messages[&1].message_id)
            .await
            .unwrap()
            .len(),
        2
    );
}
