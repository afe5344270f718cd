//! The storage conformance suite on the CQL store, against the real Apache Cassandra 5 that
//! `scripts/cassandra.sh up` starts (the README's test command runs it first). A missing server
//! fails these tests; it never skips them.
//!
//! Beside the suite, what only a last-write-wins store must prove about fencing: late writes of a
//! fenced or paused writer (held back by the store's `testkit` hooks and released after the new
//! owner's commits) change nothing, and a keyspace written by schema v1 keeps working.
//!
//! `SPACECAST_TEST_CQL_NODES` (default `127.0.0.1:9042`) names the server. Each test works in a
//! keyspace of its own and drops it at the end.

use std::collections::HashMap;
use std::sync::Arc;

use scylla::value::CqlTimestamp;
use spacecast_engine::EngineError;
use spacecast_engine::event::EventKind;
use spacecast_engine::model::{
    POWER_ADMIN, PostingPermission, Seq, Space, Timestamp, UserRef, Visibility, new_id,
};
use spacecast_engine::store::cql::{CqlConfig, CqlStore, Phase, migrate, schema};
use spacecast_engine::store::{CommitBatch, Store};
use spacecast_engine::testkit::{SpaceModel, create, member, store_conformance, user};

fn config(keyspace: &str) -> CqlConfig {
    let nodes =
        std::env::var("SPACECAST_TEST_CQL_NODES").unwrap_or_else(|_| "127.0.0.1:9042".into());
    CqlConfig {
        nodes: nodes.split(',').map(str::to_owned).collect(),
        keyspace: keyspace.into(),
        ..CqlConfig::default()
    }
}

fn fresh_keyspace(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Drops the test keyspace (best effort: a failure to clean up does not fail the test).
async fn drop_keyspace(cfg: &CqlConfig) {
    if let Ok(session) = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&cfg.nodes)
        .build()
        .await
    {
        let _ = session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", cfg.keyspace), ())
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cql_store_passes_the_conformance_suite() {
    let cfg = config(&fresh_keyspace("conformance"));
    let version = migrate(&cfg)
        .await
        .expect("Cassandra must be up: run scripts/cassandra.sh up");
    assert_eq!(version, schema::CURRENT_VERSION);
    let store = CqlStore::connect(&cfg).await.expect("connect");
    store_conformance(store.clone()).await;
    // Cases must not assume an empty store: a second run on the same keyspace passes too.
    store_conformance(store).await;
    drop_keyspace(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent_and_an_unmigrated_keyspace_is_refused() {
    let cfg = config(&fresh_keyspace("migrations"));
    match CqlStore::connect(&cfg).await {
        Err(EngineError::Invalid("schema_outdated", msg)) => {
            assert!(
                msg.contains("spacecast migrate"),
                "the error says what to do: {msg}"
            )
        }
        Err(other) => panic!("expected schema_outdated, got {other}"),
        Ok(_) => panic!("a keyspace without the schema must be refused"),
    }
    assert_eq!(
        migrate(&cfg).await.expect("first migrate"),
        schema::CURRENT_VERSION
    );
    assert_eq!(
        migrate(&cfg).await.expect("second migrate"),
        schema::CURRENT_VERSION
    );
    // A run that added v3's columns but died before recording it: the next run adds them again
    // (the server says they exist) and completes.
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&cfg.nodes)
        .build()
        .await
        .expect("connect");
    session
        .query_unpaged(
            format!(
                "DELETE FROM {}.schema_migrations WHERE version = 3",
                cfg.keyspace
            ),
            (),
        )
        .await
        .expect("forget v3");
    assert_eq!(
        migrate(&cfg)
            .await
            .expect("migrate over columns that exist"),
        schema::CURRENT_VERSION
    );
    let store = CqlStore::connect(&cfg)
        .await
        .expect("a migrated keyspace is accepted");
    store.ping().await.expect("ping");
    drop_keyspace(&cfg).await;
}

// ---------------------------------------------------------------------------------------------
// Fencing on CQL: what only a last-write-wins store has to prove
// ---------------------------------------------------------------------------------------------

/// Two stores on one keyspace: two nodes of a cluster, each with its own memory of heads.
async fn two_nodes(prefix: &str) -> (CqlConfig, Arc<CqlStore>, Arc<CqlStore>) {
    let cfg = config(&fresh_keyspace(prefix));
    migrate(&cfg)
        .await
        .expect("Cassandra must be up: run scripts/cassandra.sh up");
    let a = CqlStore::connect(&cfg).await.expect("connect node a");
    let b = CqlStore::connect(&cfg).await.expect("connect node b");
    (cfg, a, b)
}

/// Node a owns a seeded space; node b claims it while a's next commit has its new rows in
/// flight (held back). a's commit is refused at its head update. Returns the space as both
/// nodes last agreed on it, a's refused model, and b's epoch.
async fn stale_commit_in_flight(
    a: &CqlStore,
    b: &CqlStore,
    alice: &UserRef,
    bob: &UserRef,
) -> (SpaceModel, SpaceModel, u64) {
    let (space, creator) = create(a, alice).await;
    let epoch_a = a
        .claim(space.space_id)
        .await
        .unwrap()
        .expect("a claims")
        .epoch;
    let mut model = SpaceModel::new(&space, &creator, epoch_a);
    model.seed(a, alice, bob).await;
    let epoch_b = b
        .claim(space.space_id)
        .await
        .unwrap()
        .expect("b claims")
        .epoch;
    assert!(epoch_b > epoch_a);
    // a does not know: its commit goes ahead with the head it remembers.
    let mut stale = model.clone();
    let batch = stale.mixed_batch(alice, bob, "stale");
    a.park_next_commit(Phase::NewRows);
    match a.commit(&batch).await {
        Err(EngineError::Fenced) => {}
        other => panic!("a's commit after b's claim: {other:?}"),
    }
    model.assert_reads(b, "after the fenced commit").await;
    model.epoch = epoch_b;
    (model, stale, epoch_b)
}

/// Messages of `stale` that `current` does not have must not be found by id.
async fn assert_absent(s: &dyn Store, stale: &SpaceModel, current: &SpaceModel, when: &str) {
    for m in &stale.ever {
        if !current.ever.iter().any(|c| c.message_id == m.message_id) {
            assert_eq!(
                s.get_message(current.space.space_id, m.message_id)
                    .await
                    .unwrap(),
                None,
                "{when}: the fenced commit's message #{} is not found",
                m.seq
            );
        }
    }
}

/// (a) The new rows of a fenced commit reach the database late, after the new owner committed
/// the same seqs: whatever they are, the new owner's rows win and nothing of the fenced commit
/// shows. Three shapes: the new owner writes the same kinds of rows at those seqs; it writes
/// only likes there (so no row of its own overwrites the fenced commit's messages: the claim's
/// tombstone must); the late rows land before the new owner's first commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_new_rows_of_a_fenced_commit_lose_to_the_new_owners() {
    let (cfg, a, b) = two_nodes("late_rows").await;
    let (alice, bob) = (user("alice"), user("bob"));

    // Same shapes at the same seqs.
    let (mut model, stale, _) = stale_commit_in_flight(&a, &b, &alice, &bob).await;
    let batch = model.mixed_batch(&bob, &alice, "current");
    b.commit(&batch).await.expect("b commits");
    assert!(a.release_parked().await.expect("late writes") > 0);
    model
        .assert_reads(&*b, "same shapes, late rows landed")
        .await;
    model.assert_reads(&*a, "same shapes, read through a").await;
    assert_absent(&*b, &stale, &model, "same shapes").await;

    // Only likes at the fenced commit's seqs, then more messages.
    let (mut model, stale, _) = stale_commit_in_flight(&a, &b, &alice, &bob).await;
    let mut batch = model.batch();
    let seqs: Vec<Seq> = model.messages.keys().copied().collect();
    for i in 0..stale.seq() - model.seq() {
        let who = if i % 2 == 0 { &alice } else { &bob };
        model.toggle(&mut batch, seqs[i as usize % seqs.len()], who);
    }
    let batch = model.finish(batch);
    b.commit(&batch).await.expect("b commits likes");
    assert!(a.release_parked().await.expect("late writes") > 0);
    model
        .assert_reads(&*b, "likes only, late rows landed")
        .await;
    assert_absent(&*b, &stale, &model, "likes only").await;
    let mut batch = model.batch();
    model.send(&mut batch, &bob, "after the late rows");
    model.send(&mut batch, &alice, "and another");
    let batch = model.finish(batch);
    b.commit(&batch).await.expect("b sends");
    model.assert_reads(&*b, "likes only, then sends").await;
    assert_absent(&*b, &stale, &model, "likes only, then sends").await;

    // The late rows land between b's claim and b's first commit.
    let (mut model, stale, _) = stale_commit_in_flight(&a, &b, &alice, &bob).await;
    assert!(a.release_parked().await.expect("late writes") > 0);
    model.assert_reads(&*b, "late rows before b's commit").await;
    let mut batch = model.batch();
    model.toggle(&mut batch, 1, &alice);
    model.send(&mut batch, &bob, "short");
    let batch = model.finish(batch);
    b.commit(&batch).await.expect("b commits");
    model.assert_reads(&*b, "after b's commit").await;
    assert_absent(&*b, &stale, &model, "late rows before b's commit").await;

    // The fenced node stays fenced; claiming again makes it the owner.
    let stale_batch = model.clone().mixed_batch(&alice, &bob, "again");
    let batch = CommitBatch {
        epoch: model.epoch - 1,
        ..stale_batch
    };
    assert!(matches!(a.commit(&batch).await, Err(EngineError::Fenced)));
    let claimed = a
        .claim(model.space.space_id)
        .await
        .unwrap()
        .expect("a claims");
    model.epoch = claimed.epoch;
    let batch = model.mixed_batch(&alice, &bob, "a again");
    a.commit(&batch).await.expect("a commits as the owner");
    model.assert_reads(&*b, "a owns the space again").await;
    drop_keyspace(&cfg).await;
}

/// (b) A node paused after its commit became durable, before it changed the existing rows. The
/// new owner's claim finishes that commit, and the new owner then changes the same rows again
/// (likes undone, a message deleted). When the paused node's writes finally land, with its older
/// commit's timestamp, they change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_phase_three_never_undoes_a_newer_change() {
    let (cfg, a, b) = two_nodes("late_settle").await;
    let (alice, bob) = (user("alice"), user("bob"));
    let (space, creator) = create(&*a, &alice).await;
    let id = space.space_id;
    let epoch_a = a.claim(id).await.unwrap().expect("a claims").epoch;
    let mut model = SpaceModel::new(&space, &creator, epoch_a);
    model.seed(&*a, &alice, &bob).await;

    let batch = model.mixed_batch(&alice, &bob, "durable");
    a.park_next_commit(Phase::ExistingRows);
    match a.commit(&batch).await {
        Err(EngineError::Unsettled(_)) => {}
        other => panic!("a commit whose existing-row writes are held back: {other:?}"),
    }
    let claimed = b.claim(id).await.unwrap().expect("b claims");
    model
        .assert_reads(&*b, "b's claim finished a's commit")
        .await;

    // b undoes every like a's commit changed, and deletes a message a's commit liked.
    model.epoch = claimed.epoch;
    let mut undo = model.batch();
    for ev in &batch.events {
        let EventKind::ReactionChanged(r) = &ev.kind else {
            continue;
        };
        let Some(seq) = model
            .messages
            .values()
            .find(|m| m.message_id == r.message_id)
            .map(|m| m.seq)
        else {
            continue;
        };
        let who = if r.user_id == alice.user_id {
            &alice
        } else {
            &bob
        };
        model.toggle(&mut undo, seq, who);
    }
    let liked = batch
        .events
        .iter()
        .find_map(|ev| match &ev.kind {
            EventKind::ReactionChanged(r) if r.added => model
                .messages
                .values()
                .find(|m| m.message_id == r.message_id)
                .map(|m| m.seq),
            _ => None,
        })
        .expect("a's commit added a like");
    model.delete(&mut undo, liked, &alice);
    let undo = model.finish(undo);
    b.commit(&undo).await.expect("b commits");
    model.assert_reads(&*b, "after b's newer changes").await;

    assert!(a.release_parked().await.expect("late writes") > 0);
    model
        .assert_reads(&*b, "after a's old existing-row writes landed")
        .await;
    drop_keyspace(&cfg).await;
}

/// A keyspace written by schema v1 (no head row, wall-clock write timestamps) keeps working
/// after `migrate`: reads go by its v1 counters until the space is claimed; the claim gives it a
/// head row; commits then change its v1 rows (their timestamps win over the v1 ones). Its message
/// rows have none of schema v3's columns: they read with the defaults (`actor_id` = the sender,
/// `msgtype` `text`, no body, …), which the model's messages have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_space_written_by_schema_v1_is_read_claimed_and_written() {
    let cfg = config(&fresh_keyspace("v1_space"));
    migrate(&cfg)
        .await
        .expect("Cassandra must be up: run scripts/cassandra.sh up");
    let store = CqlStore::connect(&cfg).await.expect("connect");
    let (alice, bob) = (user("alice"), user("bob"));
    let space = Space {
        space_id: new_id(),
        title: "Written by v1".into(),
        description: String::new(),
        visibility: Visibility::Public,
        creator: alice.clone(),
        tags: vec![],
        posting_permission: PostingPermission::Everyone,
        created_at: Timestamp::now(),
    };
    let creator = member(&alice, POWER_ADMIN);
    // The history v1 wrote: four messages, three likes, bob joined.
    let mut model = SpaceModel::new(&space, &creator, 0);
    // Written before stats existed.
    model.with_stats = false;
    let mut batch = model.batch();
    for (i, text) in ["one", "two", "three", "four"].iter().enumerate() {
        model.send(&mut batch, if i % 2 == 0 { &alice } else { &bob }, text);
    }
    model.toggle(&mut batch, 1, &bob);
    model.toggle(&mut batch, 3, &alice);
    model.toggle(&mut batch, 3, &bob);
    model.join(&mut batch, &bob);
    write_like_schema_v1(&cfg, &model).await;
    // Before schema v4's data step the likes are only in the messages' `likes` maps: the
    // reaction rows the space actor reads are missing. Running it (as `migrate` does once for v4)
    // copies them.
    let (liked, liker) = (model.messages[&3].message_id, &alice.user_id);
    assert_eq!(
        store
            .get_reaction(space.space_id, liked, "appreciate", liker)
            .await
            .unwrap(),
        None
    );
    // `migrate` applies what is above the highest recorded version: forget v4 and every later one.
    for version in 4..=spacecast_engine::store::cql::schema::CURRENT_VERSION {
        forget_migration(&cfg, version).await;
    }
    migrate(&cfg).await.expect("migrate again");
    let like_seq = model.messages[&3]
        .likes
        .iter()
        .flatten()
        .find(|l| &l.user_id == liker)
        .map(|l| l.id);
    assert!(like_seq.is_some());
    assert_eq!(
        store
            .get_reaction(space.space_id, liked, "appreciate", liker)
            .await
            .unwrap(),
        like_seq,
        "v4's data step copied the like to its reaction row"
    );

    model
        .assert_reads(&*store, "a v1 space, never claimed")
        .await;
    let claimed = store.claim(space.space_id).await.unwrap().expect("claimed");
    assert_eq!(claimed.epoch, 1, "the first claim of a v1 space");
    assert_eq!(claimed.snapshot.view.counters, model.counters);
    model.assert_reads(&*store, "claimed").await;
    // Its stats, computed once as its actor would when it claims it.
    spacecast_engine::stats::load_or_compute(
        &*store,
        space.space_id,
        claimed.epoch,
        claimed.snapshot.view.counters,
    )
    .await
    .expect("the stats migration of a v1 space");
    model.with_stats = true;
    model.assert_reads(&*store, "claimed, with stats").await;
    model.epoch = claimed.epoch;
    let batch = model.mixed_batch(&alice, &bob, "v2");
    store.commit(&batch).await.expect("a commit over v1 rows");
    model.assert_reads(&*store, "after a v2 commit").await;
    // Another node, which remembers nothing, reads the same and is fenced at the old epoch.
    let other = CqlStore::connect(&cfg).await.expect("connect");
    model.assert_reads(&*other, "through another node").await;
    let stale = CommitBatch {
        epoch: 0,
        ..model.clone().mixed_batch(&alice, &bob, "stale")
    };
    assert!(matches!(
        other.commit(&stale).await,
        Err(EngineError::Fenced)
    ));
    model.assert_reads(&*store, "after a fenced commit").await;
    drop_keyspace(&cfg).await;
}

/// Makes `migrate` apply schema `version` again (as on a keyspace it never reached).
async fn forget_migration(cfg: &CqlConfig, version: i32) {
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&cfg.nodes)
        .build()
        .await
        .expect("connect");
    session
        .query_unpaged(
            format!(
                "DELETE FROM {}.schema_migrations WHERE version = ?",
                cfg.keyspace
            ),
            (version,),
        )
        .await
        .unwrap();
}

/// Writes `model`'s space the way schema v1 did: a counters row instead of a head row, every row
/// with the server's (wall-clock) timestamp.
async fn write_like_schema_v1(cfg: &CqlConfig, model: &SpaceModel) {
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&cfg.nodes)
        .build()
        .await
        .expect("connect");
    let ks = &cfg.keyspace;
    let sp = &model.space;
    let id = sp.space_id;
    let q = |cql: String| cql;
    session
        .query_unpaged(
            q(format!("INSERT INTO {ks}.spaces_by_id (space_id, title, description, visibility, posting_permission, creator_id, creator_username, creator_picture, created_at) VALUES (?, ?, ?, 'public', 'everyone', ?, ?, ?, ?)")),
            (id, &sp.title, &sp.description, &sp.creator.user_id, &sp.creator.username, &sp.creator.profile_picture, CqlTimestamp(sp.created_at.0)),
        )
        .await
        .unwrap();
    let c = model.counters;
    session
        .query_unpaged(
            q(format!("INSERT INTO {ks}.space_counters_by_id (space_id, head_seq, message_count, member_count) VALUES (?, ?, ?, ?)")),
            (id, c.head_seq as i64, c.message_count as i64, c.member_count as i64),
        )
        .await
        .unwrap();
    for m in &model.members {
        let u = &m.user;
        session
            .query_unpaged(
                q(format!("INSERT INTO {ks}.members_by_space (space_id, user_id, username, profile_picture, power_level, joined_at) VALUES (?, ?, ?, ?, ?, ?)")),
                (id, &u.user_id, &u.username, &u.profile_picture, m.power_level, CqlTimestamp(m.joined_at.0)),
            )
            .await
            .unwrap();
        session
            .query_unpaged(
                q(format!(
                    "INSERT INTO {ks}.spaces_by_user (user_id, space_id) VALUES (?, ?)"
                )),
                (&u.user_id, id),
            )
            .await
            .unwrap();
    }
    for ev in &model.log {
        session
            .query_unpaged(
                q(format!("INSERT INTO {ks}.events_by_space (space_id, bucket, seq, event) VALUES (?, 0, ?, ?)")),
                (id, ev.seq as i64, serde_json::to_string(ev).unwrap()),
            )
            .await
            .unwrap();
    }
    for m in model.messages.values() {
        let likes: HashMap<String, i64> = m
            .likes
            .iter()
            .flatten()
            .map(|l| (l.user_id.clone(), l.id as i64))
            .collect();
        session
            .query_unpaged(
                q(format!("INSERT INTO {ks}.messages_by_space (space_id, bucket, seq, message_id, sender_id, sender_username, sender_picture, content, word_count, appreciation_count, likes, created_at) VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")),
                (id, m.seq as i64, m.message_id, &m.sender_id, &m.sender.username, &m.sender.profile_picture, &m.content, m.word_count as i32, m.appreciation_count as i32, likes, CqlTimestamp(m.created_at.0)),
            )
            .await
            .unwrap();
        session
            .query_unpaged(
                q(format!(
                    "INSERT INTO {ks}.message_by_id (message_id, space_id, seq) VALUES (?, ?, ?)"
                )),
                (m.message_id, id, m.seq as i64),
            )
            .await
            .unwrap();
        if m.appreciation_count > 0 {
            session
                .query_unpaged(
                    q(format!("INSERT INTO {ks}.appreciated_messages_by_space (space_id, appreciation_count, seq, message_id) VALUES (?, ?, ?, ?)")),
                    (id, m.appreciation_count as i32, m.seq as i64, m.message_id),
                )
                .await
                .unwrap();
        }
    }
}

/// A new message writes no tombstone: its absent fields are left unset, not bound as null (a
/// plain message has a dozen absent fields; as nulls, a read of the history would scan a dozen
/// tombstone cells per message, and Cassandra refuses a read past its tombstone threshold). The
/// read of the history is traced, and its "Read N live rows and M tombstone cells" event must
/// count the messages and no tombstone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_message_writes_no_tombstone() {
    let cfg = config(&fresh_keyspace("tombstones"));
    migrate(&cfg)
        .await
        .expect("Cassandra must be up: run scripts/cassandra.sh up");
    let store = CqlStore::connect(&cfg).await.expect("connect");
    let (alice, bob) = (user("alice"), user("bob"));
    let (space, creator) = create(store.as_ref(), &alice).await;
    let epoch = store
        .claim(space.space_id)
        .await
        .unwrap()
        .expect("claims")
        .epoch;
    let mut model = SpaceModel::new(&space, &creator, epoch);
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&cfg.nodes)
        .build()
        .await
        .expect("connect");
    // Before any message: what the claim wrote (its range tombstone over the seqs above the
    // head, which Cassandra counts too).
    let (live, before) = traced_history_read(&session, &cfg.keyspace, space.space_id).await;
    assert_eq!(live, 0);
    const N: usize = 100;
    let mut b = model.batch();
    for i in 0..N {
        model.send(&mut b, if i % 2 == 0 { &alice } else { &bob }, "plain");
    }
    let b = model.finish(b);
    store.commit(&b).await.expect("commit");
    let (live, after) = traced_history_read(&session, &cfg.keyspace, space.space_id).await;
    assert_eq!(live, N as u64, "the read found every message");
    assert_eq!(
        after, before,
        "{N} new messages add no tombstone cell to the history"
    );
    drop_keyspace(&cfg).await;
}

/// Reads the first bucket of `space`'s history, traced; returns the live rows and tombstone
/// cells Cassandra says it read.
async fn traced_history_read(
    session: &scylla::client::session::Session,
    keyspace: &str,
    space: uuid::Uuid,
) -> (u64, u64) {
    let mut read = scylla::statement::Statement::new(format!(
        "SELECT * FROM {keyspace}.messages_by_space WHERE space_id = ? AND bucket = 0"
    ));
    read.set_tracing(true);
    let r = session
        .query_unpaged(read, (space,))
        .await
        .expect("read the history");
    let trace = r.tracing_id().expect("a traced read has a tracing id");
    // Trace events are written after the answer: poll for the read's count.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let counts = session
            .get_tracing_info(&trace)
            .await
            .ok()
            .and_then(|info| {
                info.events
                    .iter()
                    .filter_map(|e| e.activity.as_deref())
                    .find_map(read_counts)
            });
        if let Some(c) = counts {
            return c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the traced read's row count never appeared in system_traces"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The numbers of Cassandra's trace event "Read N live rows and M tombstone cells ...".
fn read_counts(activity: &str) -> Option<(u64, u64)> {
    let rest = activity.strip_prefix("Read ")?;
    let (live, rest) = rest.split_once(" live rows and ")?;
    let (tombstones, _) = rest.split_once(" tombstone cells")?;
    Some((live.parse().ok()?, tombstones.parse().ok()?))
}
