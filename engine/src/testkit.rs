//! The storage conformance suite: what every [`Store`] backend must do, as one function each
//! backend's tests call with a freshly opened store ([`store_conformance`]).
//!
//! Compiled only with the `testkit` feature; the engine's own tests enable it through a
//! dev-dependency on the engine itself, and `tests/store_conformance.rs` runs it on the embedded
//! store. A new backend adds one test that opens it and calls [`store_conformance`].
//!
//! Cases never assume the store is empty: each works in spaces with fresh UUIDv7 ids and with
//! users whose ids are unique, so the suite also runs against a shared cluster or a store that
//! already holds data (e.g. one just reopened). A failing case panics; the case's name is printed
//! to stderr before it runs, so the test output shows which one failed.
//!
//! Fencing and half-failed commits are cases too: a backend offers [`FaultInjection`], which
//! makes its next commit fail before or after the point where it becomes durable.

pub mod discovery;
pub mod hooked;
pub mod notifications;
pub mod search;
pub mod unread;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::EngineError;
use crate::event::{
    APPRECIATE, EventKind, MemberRemoved, MessageDeleted, ReactionChanged, SpaceEvent, SpaceUpdated,
};
use crate::model::{
    Like, Member, Message, MessageId, MessageVersion, POWER_ADMIN, POWER_MEMBER, POWER_MODERATOR,
    PostingPermission, Seq, Space, SpaceCounters, SpaceView, Timestamp, UserRef, Visibility,
    new_id, word_count,
};
use crate::stats::{ContributorStats, SpaceStats};
use crate::store::{
    CommitBatch, FailPoint, FaultInjection, HistoryWrite, KeyWrite, MessageOrder, MessageWrite,
    ReactionWrite, Store,
};

/// Runs every conformance case against `store`. Panics on the first violation.
pub async fn store_conformance<S: Store + FaultInjection>(store: Arc<S>) {
    let s: &dyn Store = &*store;
    let faults: &dyn FaultInjection = &*store;
    macro_rules! cases {
        ($($case:ident $(($arg:expr))?),* $(,)?) => {$(
            eprintln!("store conformance: {}", stringify!($case));
            $case(s $(, $arg)?).await;
        )*};
    }
    cases!(
        ping_answers,
        spaces_members_and_memberships_read_back,
        messages_page_in_both_orders_and_events_read_in_order,
        messages_scan_by_seq_between_bounds_in_both_directions(faults),
        delete_removes_a_message_from_every_order,
        counters_are_read_back_as_last_committed,
        a_retried_batch_leaves_exactly_one_copy,
        claims_raise_the_epoch_and_return_the_durable_state,
        a_commit_with_a_stale_epoch_is_fenced_and_leaves_no_trace,
        a_claim_racing_a_commit_either_includes_it_or_fences_it,
        a_commit_that_fails_before_it_is_durable_changes_nothing(faults),
        a_commit_that_fails_after_it_is_durable_is_finished_by_the_next_claim(faults),
        rich_messages_and_thread_counts_round_trip,
        edits_keep_every_earlier_version_newest_first,
        an_edit_that_fails_before_it_is_durable_leaves_the_old_version(faults),
        an_edit_that_fails_after_it_is_durable_is_finished_by_the_next_claim(faults),
        a_redaction_wipes_the_content_and_the_history(faults),
        idempotency_keys_commit_with_their_message_and_expire(faults),
        members_page_by_user_id_and_removals_and_settings_commit,
        a_removal_that_fails_before_it_is_durable_changes_nothing(faults),
        a_removal_that_fails_after_it_is_durable_is_finished_by_the_next_claim(faults),
        stats_change_only_with_batches_that_carry_them,
        a_space_written_without_stats_gets_them_once_from_its_messages(faults),
    );
    // disc (issue 12)
    discovery::run(s, faults).await;
    notifications::cases(s, faults).await;
    unread::cases(store.clone() as Arc<dyn Store>, faults).await;
    search::cases(s).await;
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

async fn ping_answers(s: &dyn Store) {
    s.ping().await.expect("ping");
}

/// create_space, then get_space / load_space / get_member / spaces_of_user; members added or
/// changed by a commit.
async fn spaces_members_and_memberships_read_back(s: &dyn Store) {
    let alice = user("alice");
    let bob = user("bob");
    let (a, alice_a) = create(s, &alice).await;
    let (b, alice_b) = create(s, &alice).await;
    let (c, bob_c) = create(s, &bob).await;
    assert_eq!(alice_a.power_level, POWER_ADMIN);

    let view = s
        .get_space(a.space_id)
        .await
        .unwrap()
        .expect("created space is found");
    assert_eq!(view.space, a, "get_space returns the space as created");
    assert_eq!(
        view.counters,
        counters(0, 0, 1),
        "a new space has its creator as only member"
    );

    let snap = s
        .load_space(a.space_id)
        .await
        .unwrap()
        .expect("created space loads");
    assert_eq!(snap.view, view, "load_space and get_space agree");
    assert_eq!(
        snap.members,
        vec![alice_a.clone()],
        "the creator is the only member"
    );

    assert_eq!(
        s.get_member(a.space_id, &alice.user_id).await.unwrap(),
        Some(alice_a.clone())
    );
    assert_eq!(
        s.get_member(a.space_id, &bob.user_id).await.unwrap(),
        None,
        "bob is not in a"
    );
    assert_eq!(
        s.get_member(c.space_id, &alice.user_id).await.unwrap(),
        None,
        "alice is not in c"
    );

    let unknown = new_id();
    assert_eq!(s.get_space(unknown).await.unwrap(), None, "unknown space");
    assert!(
        s.load_space(unknown).await.unwrap().is_none(),
        "unknown space does not load"
    );
    assert_eq!(s.get_member(unknown, &alice.user_id).await.unwrap(), None);

    let mine = s.spaces_of_user(&alice.user_id).await.unwrap();
    assert_eq!(
        mine,
        vec![
            (view_of(&b, counters(0, 0, 1)), alice_b.clone()),
            (view.clone(), alice_a.clone())
        ],
        "alice's spaces, newest first, with her memberships"
    );
    assert!(
        s.spaces_of_user(&user("nobody").user_id)
            .await
            .unwrap()
            .is_empty()
    );

    // Bob joins a as a moderator through a commit.
    let bob_a = member(&bob, POWER_MODERATOR);
    s.commit(&CommitBatch {
        space_id: a.space_id,
        members: vec![bob_a.clone()],
        counters: counters(0, 0, 2),
        ..Default::default()
    })
    .await
    .unwrap();
    let snap = s.load_space(a.space_id).await.unwrap().expect("a loads");
    assert_eq!(snap.view.counters, counters(0, 0, 2));
    assert_eq!(
        sorted(snap.members),
        sorted(vec![alice_a.clone(), bob_a.clone()])
    );
    assert_eq!(
        s.get_member(a.space_id, &bob.user_id).await.unwrap(),
        Some(bob_a.clone())
    );
    let bobs = s.spaces_of_user(&bob.user_id).await.unwrap();
    assert_eq!(
        bobs,
        vec![
            (view_of(&c, counters(0, 0, 1)), bob_c.clone()),
            (view_of(&a, counters(0, 0, 2)), bob_a.clone())
        ],
        "bob's spaces, newest first, with his power level in each"
    );

    // A later write of the same member replaces it.
    let bob_a_demoted = Member {
        power_level: POWER_MEMBER,
        ..bob_a.clone()
    };
    s.commit(&CommitBatch {
        space_id: a.space_id,
        members: vec![bob_a_demoted.clone()],
        counters: counters(0, 0, 2),
        ..Default::default()
    })
    .await
    .unwrap();
    let snap = s.load_space(a.space_id).await.unwrap().expect("a loads");
    assert_eq!(
        sorted(snap.members),
        sorted(vec![alice_a.clone(), bob_a_demoted.clone()]),
        "replaced, not added"
    );
    let bobs = s.spaces_of_user(&bob.user_id).await.unwrap();
    assert_eq!(bobs.len(), 2, "still two memberships: {bobs:?}");
    assert_eq!(bobs[1], (view_of(&a, counters(0, 0, 2)), bob_a_demoted));
    // Alice's memberships are untouched by bob's.
    assert_eq!(s.spaces_of_user(&alice.user_id).await.unwrap().len(), 2);
}

/// Commits of messages and reactions, read back by page (both orders), by id, and as events.
async fn messages_page_in_both_orders_and_events_read_in_order(s: &dyn Store) {
    let alice = user("alice");
    let bob = user("bob");
    let (sp, _) = create(s, &alice).await;
    let (neighbour, _) = create(s, &alice).await;
    let id = sp.space_id;

    // A neighbour space with a message of its own: nothing of it may leak into `sp`.
    let n1 = message(&neighbour, 1, &alice, "next door");
    let n1_event = created(&n1);
    s.commit(&CommitBatch {
        space_id: neighbour.space_id,
        events: vec![n1_event.clone()],
        messages: vec![put_new(&n1)],
        counters: counters(1, 1, 1),
        ..Default::default()
    })
    .await
    .unwrap();

    // Five messages in two batches.
    let mut m: Vec<Message> = (1..=5)
        .map(|seq| {
            message(
                &sp,
                seq,
                if seq % 2 == 0 { &bob } else { &alice },
                "hello there",
            )
        })
        .collect();
    let mut log: Vec<SpaceEvent> = m.iter().map(created).collect();
    s.commit(&CommitBatch {
        space_id: id,
        events: log[..2].to_vec(),
        messages: m[..2].iter().map(put_new).collect(),
        counters: counters(2, 2, 1),
        ..Default::default()
    })
    .await
    .unwrap();
    s.commit(&CommitBatch {
        space_id: id,
        events: log[2..5].to_vec(),
        messages: m[2..5].iter().map(put_new).collect(),
        counters: counters(5, 5, 1),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        s.get_space(id).await.unwrap().expect("space").counters,
        counters(5, 5, 1)
    );

    let recent = |o, l| page(s, id, MessageOrder::Recent, o, l);
    let liked = |o, l| page(s, id, MessageOrder::MostAppreciated, o, l);
    assert_eq!(recent(0, 10).await, rev(&m), "recent: newest first");
    assert_eq!(
        recent(1, 2).await,
        vec![m[3].clone(), m[2].clone()],
        "recent: offset 1, limit 2"
    );
    assert_eq!(recent(5, 10).await, vec![], "recent: offset past the end");
    assert_eq!(recent(0, 0).await, vec![], "recent: limit 0");
    assert_eq!(
        liked(0, 10).await,
        rev(&m),
        "no appreciation yet: ties are newest first"
    );

    // Reactions, one batch: m2 and m4 get two likes each, m5 one (seqs 6..=10).
    let mut seq: Seq = 5;
    let mut batch = CommitBatch {
        space_id: id,
        ..Default::default()
    };
    for (i, users) in [
        (1, vec![&alice, &bob]),
        (3, vec![&alice, &bob]),
        (4, vec![&alice]),
    ] {
        for u in users {
            seq += 1;
            log.push(like(&mut m[i], seq, u));
            batch.events.push(log[log.len() - 1].clone());
        }
    }
    push_reaction_writes(&mut batch, &m);
    batch.counters = counters(seq, 5, 1);
    s.commit(&batch).await.unwrap();
    assert_eq!(
        (
            m[1].appreciation_count,
            m[3].appreciation_count,
            m[4].appreciation_count
        ),
        (2, 2, 1)
    );
    assert_eq!(
        liked(0, 10).await,
        pick(&m, &[3, 1, 4, 2, 0]),
        "count desc, ties newest first"
    );
    assert_eq!(
        liked(1, 3).await,
        pick(&m, &[1, 4, 2]),
        "most appreciated: offset 1, limit 3"
    );
    assert_eq!(
        liked(5, 3).await,
        vec![],
        "most appreciated: offset past the end"
    );
    assert_eq!(
        recent(0, 10).await,
        rev(&m),
        "recent shows the latest state of each message"
    );

    // By id: the latest state; never across spaces.
    for msg in &m {
        assert_eq!(
            s.get_message(id, msg.message_id).await.unwrap().as_ref(),
            Some(msg)
        );
    }
    assert_eq!(
        s.get_message(neighbour.space_id, m[3].message_id)
            .await
            .unwrap(),
        None,
        "another space's id"
    );
    assert_eq!(
        s.get_message(id, n1.message_id).await.unwrap(),
        None,
        "the neighbour's message is not in sp"
    );
    assert_eq!(
        s.get_message(id, new_id()).await.unwrap(),
        None,
        "unknown id"
    );

    // A Put with previous_appreciation moves the message in the appreciation order: m4 loses both
    // likes (2 → 0), m1 gains three (0 → 3).
    let mut batch = CommitBatch {
        space_id: id,
        ..Default::default()
    };
    for u in [&alice, &bob] {
        seq += 1;
        log.push(unlike(&mut m[3], seq, u));
        batch.events.push(log[log.len() - 1].clone());
    }
    for u in [&alice, &bob, &user("carol")] {
        seq += 1;
        log.push(like(&mut m[0], seq, u));
        batch.events.push(log[log.len() - 1].clone());
    }
    push_reaction_writes(&mut batch, &m);
    batch.counters = counters(seq, 5, 1);
    s.commit(&batch).await.unwrap();
    assert_eq!(
        liked(0, 10).await,
        pick(&m, &[0, 1, 4, 3, 2]),
        "entries moved, none left behind"
    );

    // A Put whose count does not change (a like and an unlike in one batch) keeps its one entry.
    let mut batch = CommitBatch {
        space_id: id,
        ..Default::default()
    };
    seq += 1;
    log.push(like(&mut m[2], seq, &bob));
    batch.events.push(log[log.len() - 1].clone());
    seq += 1;
    log.push(unlike(&mut m[2], seq, &bob));
    batch.events.push(log[log.len() - 1].clone());
    push_reaction_writes(&mut batch, &m);
    batch.counters = counters(seq, 5, 1);
    s.commit(&batch).await.unwrap();
    assert_eq!(
        liked(0, 10).await,
        pick(&m, &[0, 1, 4, 3, 2]),
        "unchanged count: same place, one entry"
    );
    assert_eq!(recent(0, 10).await, rev(&m));
    assert_eq!(
        s.get_space(id).await.unwrap().expect("space").counters,
        counters(seq, 5, 1)
    );

    // Events: ordered, bounded, per space.
    assert_eq!(seq, 17);
    let all = s.read_events(id, 0, 1000).await.unwrap();
    assert_eq!(all, log, "every event, oldest first, as written");
    assert_eq!(
        seqs(&s.read_events(id, 3, 2).await.unwrap()),
        vec![4, 5],
        "after 3, limit 2"
    );
    assert_eq!(
        seqs(&s.read_events(id, 15, 10).await.unwrap()),
        vec![16, 17],
        "the tail"
    );
    assert_eq!(
        s.read_events(id, 17, 10).await.unwrap(),
        vec![],
        "nothing after the head"
    );
    assert_eq!(s.read_events(id, 0, 0).await.unwrap(), vec![], "limit 0");
    assert_eq!(
        s.read_events(neighbour.space_id, 0, 1000).await.unwrap(),
        vec![n1_event],
        "per space"
    );
    assert_eq!(
        page(s, neighbour.space_id, MessageOrder::Recent, 0, 10).await,
        vec![n1.clone()]
    );
    assert_eq!(
        page(s, neighbour.space_id, MessageOrder::MostAppreciated, 0, 10).await,
        vec![n1]
    );
    assert_eq!(
        page(s, new_id(), MessageOrder::Recent, 0, 10).await,
        vec![],
        "unknown space: no messages"
    );
}

/// A Delete removes the message from both orders and from get_message; its events stay.
/// `scan_messages`: exclusive bounds, both directions, the limit, across a partition boundary
/// of the CQL store (seq 10,000), without deleted messages, other spaces' messages, or rows of
/// a commit that never became durable.
async fn messages_scan_by_seq_between_bounds_in_both_directions(
    s: &dyn Store,
    faults: &dyn FaultInjection,
) {
    let alice = user("alice");
    let (sp, _) = create(s, &alice).await;
    let (neighbour, _) = create(s, &alice).await;
    let id = sp.space_id;
    let n = message(&neighbour, 10_000, &alice, "next door");
    s.commit(&CommitBatch {
        space_id: neighbour.space_id,
        events: vec![created(&n)],
        messages: vec![put_new(&n)],
        counters: counters(10_000, 1, 1),
        ..Default::default()
    })
    .await
    .unwrap();
    // Messages straddling the first partition boundary; the seqs between them are other
    // events (the store does not look at them).
    let m: Vec<Message> = [9_998, 10_000, 10_001, 10_003]
        .into_iter()
        .map(|seq| message(&sp, seq, &alice, "scan"))
        .collect();
    s.commit(&CommitBatch {
        space_id: id,
        events: m.iter().map(created).collect(),
        messages: m.iter().map(put_new).collect(),
        counters: counters(10_003, 4, 1),
        ..Default::default()
    })
    .await
    .unwrap();
    let scan = |after, before, direction, limit| async move {
        s.scan_messages(id, after, before, direction, limit)
            .await
            .expect("scan_messages")
    };
    use crate::store::Direction::{Backward, Forward};
    assert_eq!(
        scan(0, u64::MAX, Forward, 100).await,
        m,
        "forward: oldest first"
    );
    assert_eq!(
        scan(0, u64::MAX, Backward, 100).await,
        rev(&m),
        "backward: newest first"
    );
    assert_eq!(
        scan(9_998, 10_003, Forward, 10).await,
        pick(&m, &[1, 2]),
        "both bounds exclusive"
    );
    assert_eq!(
        scan(0, 10_001, Backward, 2).await,
        pick(&m, &[1, 0]),
        "backward from a position, across the partition boundary"
    );
    assert_eq!(
        scan(0, u64::MAX, Forward, 2).await,
        pick(&m, &[0, 1]),
        "limit"
    );
    assert_eq!(scan(10_000, u64::MAX, Forward, 1).await, pick(&m, &[2]));
    assert_eq!(
        scan(10_003, u64::MAX, Forward, 10).await,
        vec![],
        "past the head"
    );
    assert_eq!(
        scan(10_000, 10_001, Forward, 10).await,
        vec![],
        "empty range"
    );
    assert_eq!(
        scan(10_001, 10_000, Backward, 10).await,
        vec![],
        "inverted range"
    );
    assert_eq!(scan(0, u64::MAX, Forward, 0).await, vec![], "limit 0");
    // A deleted message is gone from the scan.
    s.commit(&CommitBatch {
        space_id: id,
        events: vec![deleted(&m[1], 10_004, &alice)],
        messages: vec![MessageWrite::Delete {
            message_id: m[1].message_id,
            seq: m[1].seq,
            appreciation_count: 0,
        }],
        counters: counters(10_004, 3, 1),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(scan(0, u64::MAX, Forward, 100).await, pick(&m, &[0, 2, 3]));
    // A commit that never became durable shows nothing, in either direction.
    let lost = message(&sp, 10_005, &alice, "lost");
    faults.fail_next_commit(FailPoint::BeforeHead);
    s.commit(&CommitBatch {
        space_id: id,
        events: vec![created(&lost)],
        messages: vec![put_new(&lost)],
        counters: counters(10_005, 4, 1),
        ..Default::default()
    })
    .await
    .expect_err("the injected failure");
    assert_eq!(scan(0, u64::MAX, Backward, 100).await, pick(&m, &[3, 2, 0]));
    assert_eq!(scan(10_003, u64::MAX, Forward, 100).await, vec![]);
}

async fn delete_removes_a_message_from_every_order(s: &dyn Store) {
    let alice = user("alice");
    let bob = user("bob");
    let (sp, _) = create(s, &alice).await;
    let id = sp.space_id;
    let mut m: Vec<Message> = (1..=3)
        .map(|seq| message(&sp, seq, &alice, "to be deleted"))
        .collect();
    let mut log: Vec<SpaceEvent> = m.iter().map(created).collect();
    s.commit(&CommitBatch {
        space_id: id,
        events: log.clone(),
        messages: m.iter().map(put_new).collect(),
        counters: counters(3, 3, 1),
        ..Default::default()
    })
    .await
    .unwrap();
    // m2 is appreciated twice (seqs 4, 5), so its index entry is not at count 0.
    log.push(like(&mut m[1], 4, &alice));
    log.push(like(&mut m[1], 5, &bob));
    let mut liked = CommitBatch {
        space_id: id,
        events: log[3..].to_vec(),
        counters: counters(5, 3, 1),
        ..Default::default()
    };
    push_reaction_writes(&mut liked, &m);
    s.commit(&liked).await.unwrap();
    assert_eq!(
        page(s, id, MessageOrder::MostAppreciated, 0, 10).await[0],
        m[1]
    );

    log.push(deleted(&m[1], 6, &alice));
    s.commit(&CommitBatch {
        space_id: id,
        events: vec![log[5].clone()],
        messages: vec![MessageWrite::Delete {
            message_id: m[1].message_id,
            seq: 2,
            appreciation_count: 2,
        }],
        counters: counters(6, 2, 1),
        ..Default::default()
    })
    .await
    .unwrap();
    let rest = vec![m[2].clone(), m[0].clone()];
    assert_eq!(
        page(s, id, MessageOrder::Recent, 0, 10).await,
        rest,
        "gone from recent"
    );
    assert_eq!(
        page(s, id, MessageOrder::MostAppreciated, 0, 10).await,
        rest,
        "gone from most appreciated"
    );
    assert_eq!(
        s.get_message(id, m[1].message_id).await.unwrap(),
        None,
        "gone by id"
    );
    assert_eq!(
        s.get_message(id, m[0].message_id).await.unwrap().as_ref(),
        Some(&m[0]),
        "others stay"
    );
    assert_eq!(
        s.read_events(id, 0, 100).await.unwrap(),
        log,
        "the log keeps the created and deleted events"
    );
    assert_eq!(
        s.get_space(id).await.unwrap().expect("space").counters,
        counters(6, 2, 1)
    );

    // An unappreciated message (index entry at count 0) too.
    log.push(deleted(&m[0], 7, &bob));
    s.commit(&CommitBatch {
        space_id: id,
        events: vec![log[6].clone()],
        messages: vec![MessageWrite::Delete {
            message_id: m[0].message_id,
            seq: 1,
            appreciation_count: 0,
        }],
        counters: counters(7, 1, 1),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        page(s, id, MessageOrder::Recent, 0, 10).await,
        vec![m[2].clone()]
    );
    assert_eq!(
        page(s, id, MessageOrder::MostAppreciated, 0, 10).await,
        vec![m[2].clone()]
    );
    assert_eq!(s.get_message(id, m[0].message_id).await.unwrap(), None);
}

/// The counters stored with each batch are the ones read back, whatever else the batch holds.
async fn counters_are_read_back_as_last_committed(s: &dyn Store) {
    let alice = user("alice");
    let (sp, alice_m) = create(s, &alice).await;
    let id = sp.space_id;
    let m1 = message(&sp, 1, &alice, "one");
    s.commit(&CommitBatch {
        space_id: id,
        events: vec![created(&m1)],
        messages: vec![put_new(&m1)],
        counters: counters(1, 1, 1),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        s.get_space(id).await.unwrap().expect("space").counters,
        counters(1, 1, 1)
    );
    // The store stores counters as given: it does not derive them from the batch.
    let odd = counters(41, 17, 9);
    s.commit(&CommitBatch {
        space_id: id,
        counters: odd,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(s.get_space(id).await.unwrap().expect("space").counters, odd);
    assert_eq!(
        s.load_space(id)
            .await
            .unwrap()
            .expect("space")
            .view
            .counters,
        odd
    );
    let mine = s.spaces_of_user(&alice.user_id).await.unwrap();
    assert_eq!(mine, vec![(view_of(&sp, odd), alice_m)]);
    // An empty batch of counters only leaves the log and messages alone.
    assert_eq!(seqs(&s.read_events(id, 0, 100).await.unwrap()), vec![1]);
    assert_eq!(page(s, id, MessageOrder::Recent, 0, 10).await, vec![m1]);
}

/// Committing the same batch twice (a retry after an ambiguous failure) leaves one copy of each
/// event, message, index entry and membership.
async fn a_retried_batch_leaves_exactly_one_copy(s: &dyn Store) {
    let alice = user("alice");
    let bob = user("bob");
    let (sp, alice_m) = create(s, &alice).await;
    let id = sp.space_id;
    let bob_m = member(&bob, POWER_MEMBER);
    let mut m: Vec<Message> = (1..=3)
        .map(|seq| message(&sp, seq, &bob, "again and again"))
        .collect();
    let mut log: Vec<SpaceEvent> = m.iter().map(created).collect();
    let first = CommitBatch {
        space_id: id,
        events: log.clone(),
        messages: m.iter().map(put_new).collect(),
        members: vec![bob_m.clone()],
        counters: counters(3, 3, 2),
        ..Default::default()
    };
    s.commit(&first).await.unwrap();
    s.commit(&first).await.unwrap();
    assert_eq!(
        s.read_events(id, 0, 100).await.unwrap(),
        log,
        "one copy of each event"
    );
    assert_eq!(
        page(s, id, MessageOrder::Recent, 0, 10).await,
        rev(&m),
        "one copy of each message"
    );
    assert_eq!(
        page(s, id, MessageOrder::MostAppreciated, 0, 10).await,
        rev(&m),
        "one index entry each"
    );
    let snap = s.load_space(id).await.unwrap().expect("space");
    assert_eq!(
        sorted(snap.members),
        sorted(vec![alice_m, bob_m.clone()]),
        "one copy of each member"
    );
    assert_eq!(snap.view.counters, counters(3, 3, 2));
    let bobs = s.spaces_of_user(&bob.user_id).await.unwrap();
    assert_eq!(
        bobs,
        vec![(view_of(&sp, counters(3, 3, 2)), bob_m)],
        "one membership"
    );

    // A retried appreciation move.
    log.push(like(&mut m[1], 4, &alice));
    let mut second = CommitBatch {
        space_id: id,
        events: vec![log[3].clone()],
        members: vec![],
        counters: counters(4, 3, 2),
        ..Default::default()
    };
    push_reaction_writes(&mut second, &m);
    s.commit(&second).await.unwrap();
    s.commit(&second).await.unwrap();
    assert_eq!(
        page(s, id, MessageOrder::MostAppreciated, 0, 10).await,
        vec![m[1].clone(), m[2].clone(), m[0].clone()],
        "one entry per message after a retried move"
    );

    // A retried delete.
    log.push(deleted(&m[2], 5, &bob));
    let third = CommitBatch {
        space_id: id,
        events: vec![log[4].clone()],
        messages: vec![MessageWrite::Delete {
            message_id: m[2].message_id,
            seq: 3,
            appreciation_count: 0,
        }],
        members: vec![],
        counters: counters(5, 2, 2),
        ..Default::default()
    };
    s.commit(&third).await.unwrap();
    s.commit(&third).await.unwrap();
    assert_eq!(
        page(s, id, MessageOrder::Recent, 0, 10).await,
        vec![m[1].clone(), m[0].clone()]
    );
    assert_eq!(
        page(s, id, MessageOrder::MostAppreciated, 0, 10).await,
        vec![m[1].clone(), m[0].clone()]
    );
    assert_eq!(s.read_events(id, 0, 100).await.unwrap(), log);
    assert_eq!(
        s.get_space(id).await.unwrap().expect("space").counters,
        counters(5, 2, 2)
    );
}

/// `claim` raises the epoch strictly, every time, and returns what `load_space` reads; an unknown
/// space is not claimed.
async fn claims_raise_the_epoch_and_return_the_durable_state(s: &dyn Store) {
    let alice = user("alice");
    let (sp, _) = create(s, &alice).await;
    let id = sp.space_id;
    assert!(s.claim(new_id()).await.unwrap().is_none(), "unknown space");
    let first = s.claim(id).await.unwrap().expect("claimed");
    assert!(first.epoch >= 1, "a claim fences epoch 0 (never claimed)");
    assert_eq!(
        Some(first.snapshot.clone()),
        s.load_space(id).await.unwrap(),
        "the claimed snapshot is the durable state"
    );
    let mut epoch = first.epoch;
    for round in 0..3 {
        let again = s.claim(id).await.unwrap().expect("claimed again");
        assert!(
            again.epoch > epoch,
            "round {round}: epochs rise ({} then {})",
            epoch,
            again.epoch
        );
        epoch = again.epoch;
    }
    // The current epoch commits; the next claim returns what it committed.
    let m1 = message(&sp, 1, &alice, "after claims");
    s.commit(&CommitBatch {
        space_id: id,
        epoch,
        events: vec![created(&m1)],
        messages: vec![put_new(&m1)],
        counters: counters(1, 1, 1),
        ..Default::default()
    })
    .await
    .expect("the current epoch commits");
    let next = s.claim(id).await.unwrap().expect("claimed");
    assert!(next.epoch > epoch);
    assert_eq!(next.snapshot.view.counters, counters(1, 1, 1));
    assert_eq!(page(s, id, MessageOrder::Recent, 0, 10).await, vec![m1]);
}

/// Claim twice; a commit with the first epoch is refused with `Fenced` and leaves nothing visible
/// (its new messages, its delete, its like, its member); a commit with the current epoch at the
/// same seqs then succeeds and reads back exactly.
async fn a_commit_with_a_stale_epoch_is_fenced_and_leaves_no_trace(s: &dyn Store) {
    let alice = user("alice");
    let bob = user("bob");
    let (sp, alice_m) = create(s, &alice).await;
    let id = sp.space_id;
    let old = s.claim(id).await.unwrap().expect("claimed").epoch;
    let mut model = SpaceModel::new(&sp, &alice_m, old);
    model.seed(s, &alice, &bob).await;
    model.assert_reads(s, "before the stale commit").await;

    let new = s.claim(id).await.unwrap().expect("claimed").epoch;
    assert!(new > old);
    // The old writer's commit: what it would have done, computed from the state it knew.
    let mut stale = model.clone();
    let stale_batch = stale.mixed_batch(&alice, &bob, "stale");
    for epoch in [old, 0] {
        let batch = CommitBatch {
            epoch,
            ..stale_batch.clone()
        };
        match s.commit(&batch).await {
            Err(EngineError::Fenced) => {}
            other => panic!("a commit at epoch {epoch} after a claim at {new}: {other:?}"),
        }
        model
            .assert_reads(s, &format!("after the fenced commit at epoch {epoch}"))
            .await;
    }
    for m in stale.messages.values() {
        if !model.messages.contains_key(&m.seq) || model.messages[&m.seq].message_id != m.message_id
        {
            assert_eq!(
                s.get_message(id, m.message_id).await.unwrap(),
                None,
                "a fenced commit's message is not found"
            );
        }
    }

    // The new writer commits at the same seqs, something else.
    model.epoch = new;
    let batch = model.mixed_batch(&bob, &alice, "current");
    s.commit(&batch).await.expect("the current epoch commits");
    model
        .assert_reads(s, "after the current epoch's commit")
        .await;
    let claimed = s.claim(id).await.unwrap().expect("claimed");
    assert_eq!(claimed.snapshot.view.counters, model.counters);
    assert_eq!(sorted(claimed.snapshot.members), model.members());
    // The stale writer stays fenced.
    assert!(matches!(
        s.commit(&CommitBatch {
            epoch: new,
            ..stale_batch
        })
        .await,
        Err(EngineError::Fenced)
    ));
    model.assert_reads(s, "after a second claim").await;
}

/// A claim racing a commit of the epoch it replaces: either the commit is acknowledged and the
/// claim's snapshot includes it, or the commit is fenced and nothing of it is visible, ever.
async fn a_claim_racing_a_commit_either_includes_it_or_fences_it(s: &dyn Store) {
    let alice = user("alice");
    let bob = user("bob");
    let mut outcomes = [0usize; 2];
    for round in 0..12 {
        let (sp, alice_m) = create(s, &alice).await;
        let id = sp.space_id;
        let epoch = s.claim(id).await.unwrap().expect("claimed").epoch;
        let before = SpaceModel::new(&sp, &alice_m, epoch);
        let mut after = before.clone();
        let mut b = after.batch();
        after.send(&mut b, &alice, "racing");
        after.join(&mut b, &bob);
        let b = after.finish(b);
        // Either call may reach the store first (the order they are polled in alternates).
        let (claimed, committed) = if round % 2 == 0 {
            futures::join!(s.claim(id), s.commit(&b))
        } else {
            let (committed, claimed) = futures::join!(s.commit(&b), s.claim(id));
            (claimed, committed)
        };
        let claimed = claimed.unwrap().expect("claimed");
        assert!(claimed.epoch > epoch);
        let (expected, when) = match committed {
            Ok(()) => {
                outcomes[0] += 1;
                (&after, format!("round {round}: the commit won"))
            }
            Err(EngineError::Fenced) => {
                outcomes[1] += 1;
                (&before, format!("round {round}: the claim won"))
            }
            Err(e) => panic!("round {round}: a commit racing a claim: {e:?}"),
        };
        assert_eq!(
            claimed.snapshot.view.counters, expected.counters,
            "{when}: the claimed snapshot"
        );
        assert_eq!(sorted(claimed.snapshot.members), expected.members());
        expected.assert_reads(s, &when).await;
    }
    eprintln!("  commits acknowledged / fenced: {outcomes:?}");
}

/// A commit that fails before it is durable (for the CQL store: after writing its new rows,
/// before its head moves) leaves exactly the state before it. The batch deletes an appreciated
/// message, toggles likes and moves index entries of existing messages, adds a message and a
/// member, so a store that changed existing rows before the commit was durable fails here.
async fn a_commit_that_fails_before_it_is_durable_changes_nothing(
    s: &dyn Store,
    faults: &dyn FaultInjection,
) {
    let alice = user("alice");
    let bob = user("bob");
    let (sp, alice_m) = create(s, &alice).await;
    let id = sp.space_id;
    let epoch = s.claim(id).await.unwrap().expect("claimed").epoch;
    let mut model = SpaceModel::new(&sp, &alice_m, epoch);
    model.seed(s, &alice, &bob).await;
    let before = model.clone();

    let batch = model.mixed_batch(&alice, &bob, "half");
    faults.fail_next_commit(FailPoint::BeforeHead);
    let err = s.commit(&batch).await.expect_err("the injected failure");
    assert!(
        !matches!(err, EngineError::Fenced),
        "not a fencing failure: {err:?}"
    );
    before
        .assert_reads(s, "after a commit that failed before it was durable")
        .await;
    // The writer reloads the space: nothing to finish, the state is the one before.
    let claimed = s.claim(id).await.unwrap().expect("claimed");
    assert_eq!(claimed.snapshot.view.counters, before.counters);
    assert_eq!(sorted(claimed.snapshot.members), before.members());
    before.assert_reads(s, "after the claim").await;
    // The batch, retried by the new incarnation at the same seqs, commits.
    s.commit(&CommitBatch {
        epoch: claimed.epoch,
        ..batch
    })
    .await
    .expect("the retried batch commits");
    model.epoch = claimed.epoch;
    model.assert_reads(s, "after the retried batch").await;
}

/// A commit that fails after it is durable (for the CQL store: its head moved, then part of its
/// changes to existing rows failed) reads back exactly as committed after the next `claim`, and
/// the space goes on from there.
async fn a_commit_that_fails_after_it_is_durable_is_finished_by_the_next_claim(
    s: &dyn Store,
    faults: &dyn FaultInjection,
) {
    let alice = user("alice");
    let bob = user("bob");
    let (sp, alice_m) = create(s, &alice).await;
    let id = sp.space_id;
    let epoch = s.claim(id).await.unwrap().expect("claimed").epoch;
    let mut model = SpaceModel::new(&sp, &alice_m, epoch);
    model.seed(s, &alice, &bob).await;

    let batch = model.mixed_batch(&alice, &bob, "durable");
    faults.fail_next_commit(FailPoint::AfterHead);
    let err = s.commit(&batch).await.expect_err("the injected failure");
    assert!(
        !matches!(err, EngineError::Fenced),
        "not a fencing failure: {err:?}"
    );
    let claimed = s.claim(id).await.unwrap().expect("claimed");
    assert_eq!(claimed.snapshot.view.counters, model.counters);
    assert_eq!(sorted(claimed.snapshot.members), model.members());
    model.assert_reads(s, "after the claim that followed").await;
    // The next incarnation goes on.
    model.epoch = claimed.epoch;
    let next = model.mixed_batch(&bob, &alice, "next");
    s.commit(&next).await.expect("the next commit");
    model.assert_reads(s, "after the next commit").await;
}

/// Stats and contributor rows read back as last committed: a batch without stats (a join) leaves
/// them, a contributor row is replaced by its user's next write, and a space never given stats
/// reads none.
async fn stats_change_only_with_batches_that_carry_them(s: &dyn Store) {
    let alice = user("alice");
    let bob = user("bob");
    let (sp, alice_m) = create(s, &alice).await;
    let id = sp.space_id;
    assert_eq!(s.space_stats(id).await.unwrap(), None, "a new space");
    assert_eq!(s.contributors(id).await.unwrap(), vec![]);
    assert_eq!(
        s.space_stats(new_id()).await.unwrap(),
        None,
        "an unknown space"
    );
    let epoch = s.claim(id).await.unwrap().expect("claimed").epoch;
    let mut model = SpaceModel::new(&sp, &alice_m, epoch);
    model.seed(s, &alice, &bob).await;
    let (stats, _) = model.expected_stats();
    assert_eq!(stats.total_messages, 4);
    assert_eq!(stats.top_contributors()[0].user_id, alice.user_id);

    // A batch that changes no stats carries none: the stored ones stay.
    let mut b = model.batch();
    model.join(&mut b, &user("carol"));
    let mut b = model.finish(b);
    b.stats = None;
    b.contributors.clear();
    s.commit(&b).await.expect("a join");
    model.assert_stats(s, "after a batch without stats").await;

    // Bob's messages go, Alice edits: both rows change, Bob's to zero.
    let mut b = model.batch();
    model.delete(&mut b, 2, &bob);
    model.edit(&mut b, 1, "one is now four words");
    let b = model.finish(b);
    assert!(
        b.contributors
            .iter()
            .any(|c| c.user_id == bob.user_id && c.messages == 0)
    );
    s.commit(&b).await.expect("a delete and an edit");
    model.assert_reads(s, "after a delete and an edit").await;
}

/// A space written before stats existed (batches without them) has none stored; computing them
/// once from its messages ([`crate::stats::load_or_compute`], what the space actor does when it
/// claims the space) stores exactly the from-scratch stats and every contributor row, in commits
/// of the claiming writer. A migration whose last commit fails before it is durable leaves no
/// stats (the next claim computes them again); once stored, they are loaded, not computed.
async fn a_space_written_without_stats_gets_them_once_from_its_messages(
    s: &dyn Store,
    faults: &dyn FaultInjection,
) {
    let alice = user("alice");
    let bob = user("bob");
    let (sp, alice_m) = create(s, &alice).await;
    let id = sp.space_id;
    let epoch = s.claim(id).await.unwrap().expect("claimed").epoch;
    let mut model = SpaceModel::new(&sp, &alice_m, epoch);
    model.with_stats = false;
    model.seed(s, &alice, &bob).await;
    let mut b = model.batch();
    let root = model.send(&mut b, &bob, "a thread root");
    let mut reply = message(&sp, model.seq() + 1, &alice, "a reply in it");
    reply.parent_id = Some(root.message_id);
    model.push_created(&mut b, &reply);
    model.redact(&mut b, 2, &bob, "gone");
    let b = model.finish(b);
    assert_eq!(b.stats, None);
    s.commit(&b).await.expect("messages without stats");
    model.assert_reads(s, "a space without stats").await;

    // The migration's commit fails before it is durable: still no stats.
    let claimed = s.claim(id).await.unwrap().expect("claimed");
    faults.fail_next_commit(FailPoint::BeforeHead);
    crate::stats::load_or_compute(s, id, claimed.epoch, claimed.snapshot.view.counters)
        .await
        .expect_err("the injected failure");
    assert_eq!(s.space_stats(id).await.unwrap(), None, "a failed migration");

    // The next claim computes and stores them.
    let claimed = s.claim(id).await.unwrap().expect("claimed");
    let (stats, known) =
        crate::stats::load_or_compute(s, id, claimed.epoch, claimed.snapshot.view.counters)
            .await
            .expect("the migration");
    model.with_stats = true;
    model.epoch = claimed.epoch;
    let (want, contributors) = model.expected_stats();
    assert_eq!(stats, want);
    assert_eq!((want.threads, want.redacted), (1, 1));
    assert_eq!(known.len(), 2, "it returns the contributors it computed");
    model.assert_reads(s, "after the migration").await;
    assert_eq!(
        claimed.snapshot.view.counters, model.counters,
        "the migration changes no counter"
    );
    // Stored now: the next claim loads them.
    let claimed = s.claim(id).await.unwrap().expect("claimed");
    let (again, known) =
        crate::stats::load_or_compute(s, id, claimed.epoch, claimed.snapshot.view.counters)
            .await
            .unwrap();
    assert_eq!(again, want);
    assert!(known.is_empty(), "loaded, not computed");
    assert_eq!(contributors.len(), 2);
    // And the space goes on with stats.
    model.epoch = claimed.epoch;
    let next = model.mixed_batch(&bob, &alice, "after");
    s.commit(&next).await.expect("the next commit");
    model.assert_reads(s, "after the next commit").await;
}

// ---------------------------------------------------------------------------------------------
// A model of one space: what every read must return
// ---------------------------------------------------------------------------------------------

/// One space as its writer sees it, to build batches from and to compare every read with. Public
/// for backend-specific tests (e.g. the CQL store's late writes).
#[derive(Clone, Debug)]
pub struct SpaceModel {
    pub space: Space,
    /// The epoch stamped on the batches it builds.
    pub epoch: u64,
    pub members: Vec<Member>,
    /// Existing messages by seq.
    pub messages: BTreeMap<Seq, Message>,
    /// Every message ever created, with its latest state (deleted ones too).
    pub ever: Vec<Message>,
    pub log: Vec<SpaceEvent>,
    pub counters: SpaceCounters,
    /// Earlier versions of edited messages, newest first.
    pub history: BTreeMap<MessageId, Vec<MessageVersion>>,
    /// Users removed from the space (and not members again).
    pub removed: Vec<String>,
    /// Reactions of existing messages: (message, key, user) → the seq that added it.
    pub reactions: BTreeMap<(MessageId, String, String), Seq>,
    /// Whether its batches carry the space stats (computed from scratch over `messages`, with
    /// every sender's contributor row); `false` writes a space as before stats existed.
    pub with_stats: bool,
}

impl SpaceModel {
    /// A space just created by `creator`.
    pub fn new(space: &Space, creator: &Member, epoch: u64) -> SpaceModel {
        SpaceModel {
            space: space.clone(),
            epoch,
            members: vec![creator.clone()],
            messages: BTreeMap::new(),
            ever: Vec::new(),
            log: Vec::new(),
            counters: counters(0, 0, 1),
            history: BTreeMap::new(),
            removed: Vec::new(),
            reactions: BTreeMap::new(),
            with_stats: true,
        }
    }

    /// The stats of the existing messages, and every sender's numbers (zero for a sender whose
    /// messages are all gone), by user id.
    pub fn expected_stats(&self) -> (SpaceStats, BTreeMap<String, ContributorStats>) {
        let (stats, contributors) = SpaceStats::compute(self.messages.values());
        let mut all: BTreeMap<String, ContributorStats> = self
            .ever
            .iter()
            .map(|m| {
                let zero = ContributorStats {
                    user_id: m.sender_id.clone(),
                    ..Default::default()
                };
                (m.sender_id.clone(), zero)
            })
            .collect();
        for c in contributors {
            all.insert(c.user_id.clone(), c);
        }
        (stats, all)
    }

    /// The head: the last seq given.
    pub fn seq(&self) -> Seq {
        self.counters.head_seq
    }

    /// An empty batch of this space at the model's epoch; fill it with the methods below, then
    /// [`SpaceModel::finish`] it.
    pub fn batch(&self) -> CommitBatch {
        CommitBatch {
            space_id: self.space.space_id,
            epoch: self.epoch,
            ..Default::default()
        }
    }

    fn push_event(&mut self, b: &mut CommitBatch, ev: SpaceEvent) {
        self.counters.head_seq = ev.seq;
        self.log.push(ev.clone());
        b.events.push(ev);
    }

    fn remember(&mut self, m: &Message) {
        match self.ever.iter_mut().find(|e| e.message_id == m.message_id) {
            Some(e) => *e = m.clone(),
            None => self.ever.push(m.clone()),
        }
    }

    /// Sends a new message (the next seq).
    pub fn send(&mut self, b: &mut CommitBatch, by: &UserRef, text: &str) -> Message {
        let m = message(&self.space, self.seq() + 1, by, text);
        self.push_event(b, created(&m));
        self.counters.message_count += 1;
        b.push_message_write(put_new(&m));
        self.messages.insert(m.seq, m.clone());
        self.remember(&m);
        m
    }

    /// Adds a message built by the caller (the next seq: `m.seq` must be it), counting it in its
    /// thread root's `reply_count`.
    pub fn push_created(&mut self, b: &mut CommitBatch, m: &Message) {
        assert_eq!(m.seq, self.seq() + 1, "the next seq");
        self.push_event(b, created(m));
        self.counters.message_count += 1;
        b.push_message_write(put_new(m));
        self.messages.insert(m.seq, m.clone());
        self.remember(m);
        if let Some(root) = m.parent_id {
            self.count_reply(b, root, 1);
        }
    }

    /// Moves the reply count of the message `root` by `by`, as an existing-row change.
    fn count_reply(&mut self, b: &mut CommitBatch, root: crate::model::MessageId, by: i64) {
        let Some(mut p) = self
            .messages
            .values()
            .find(|m| m.message_id == root)
            .cloned()
        else {
            return;
        };
        p.reply_count = (p.reply_count as i64 + by).max(0) as u32;
        b.push_message_write(MessageWrite::Put {
            message: p.clone(),
            previous_appreciation: Some(p.appreciation_count),
        });
        self.messages.insert(p.seq, p.clone());
        self.remember(&p);
    }

    /// Edits the text of the message at `at` (as its author), keeping the old version.
    pub fn edit(&mut self, b: &mut CommitBatch, at: Seq, text: &str) -> Message {
        let mut m = self.messages[&at].clone();
        let seq = self.seq() + 1;
        let now = tick();
        let version = MessageVersion {
            seq,
            content: m.content.clone(),
            body: m.body.clone(),
            valid_from: m.edited_at.unwrap_or(m.created_at),
            replaced_at: now,
        };
        m.content = Some(text.to_owned());
        m.word_count = word_count(text);
        m.edited_at = Some(now);
        self.push_event(
            b,
            SpaceEvent {
                space_id: m.space_id,
                seq,
                at: now,
                kind: EventKind::MessageEdited(m.clone()),
            },
        );
        b.push_history(HistoryWrite::Add {
            message_id: m.message_id,
            version: version.clone(),
        });
        self.history
            .entry(m.message_id)
            .or_default()
            .insert(0, version);
        b.push_message_write(MessageWrite::Put {
            message: m.clone(),
            previous_appreciation: Some(m.appreciation_count),
        });
        self.messages.insert(at, m.clone());
        self.remember(&m);
        m
    }

    /// Redacts the message at `at`: wipes its content, clears its history.
    pub fn redact(&mut self, b: &mut CommitBatch, at: Seq, by: &UserRef, reason: &str) -> Message {
        let mut m = self.messages[&at].clone();
        let seq = self.seq() + 1;
        m.content = None;
        m.body = None;
        m.metadata = None;
        m.gif = None;
        m.media.clear();
        m.media_url = None;
        m.media_type = None;
        m.mentions.clear();
        m.word_count = 0;
        m.redacted = true;
        m.redacted_by = Some(by.user_id.clone());
        m.redacted_reason = Some(reason.to_owned());
        self.push_event(
            b,
            SpaceEvent {
                space_id: m.space_id,
                seq,
                at: tick(),
                kind: EventKind::MessageRedacted(m.clone()),
            },
        );
        if m.edited_at.is_some() {
            b.push_history(HistoryWrite::Clear {
                message_id: m.message_id,
            });
            self.history.remove(&m.message_id);
        }
        b.push_message_write(MessageWrite::Put {
            message: m.clone(),
            previous_appreciation: Some(m.appreciation_count),
        });
        self.messages.insert(at, m.clone());
        self.remember(&m);
        m
    }

    /// Toggles `by`'s like of the message at `at`.
    pub fn toggle(&mut self, b: &mut CommitBatch, at: Seq, by: &UserRef) {
        let mut m = self.messages[&at].clone();
        let seq = self.seq() + 1;
        let ev = if m.liked_by(&by.user_id) {
            unlike(&mut m, seq, by)
        } else {
            like(&mut m, seq, by)
        };
        let EventKind::ReactionChanged(r) = &ev.kind else {
            unreachable!("like and unlike make reaction events")
        };
        let k = (m.message_id, r.key.clone(), r.user_id.clone());
        if r.added {
            self.reactions.insert(k, seq);
        } else {
            self.reactions.remove(&k);
        }
        b.push_reaction(ReactionWrite {
            message_id: m.message_id,
            message_seq: m.seq,
            key: r.key.clone(),
            user_id: r.user_id.clone(),
            added: r.added.then_some(seq),
            count: r.count,
        });
        self.push_event(b, ev);
        self.messages.insert(at, m.clone());
        self.remember(&m);
    }

    /// Every user who ever reacted to anything in the model's space (the two regular users and
    /// whoever else), for reads that must find a row or its absence.
    fn reactions_users(&self, _message_id: MessageId) -> Vec<String> {
        let mut users: Vec<String> = self
            .log
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::ReactionChanged(r) => Some(r.user_id.clone()),
                _ => None,
            })
            .collect();
        users.sort();
        users.dedup();
        users
    }

    /// Sets (`set`) or removes `by`'s reaction `key` (not `appreciate`: see
    /// [`SpaceModel::toggle`]) on the message at `at`; nothing when it already is so.
    pub fn react(&mut self, b: &mut CommitBatch, at: Seq, by: &UserRef, key: &str, set: bool) {
        assert_ne!(key, APPRECIATE, "appreciations go through toggle");
        let mut m = self.messages[&at].clone();
        let k = (m.message_id, key.to_owned(), by.user_id.clone());
        if self.reactions.contains_key(&k) == set {
            return;
        }
        let seq = self.seq() + 1;
        let count = m.reaction_counts.get(key).copied().unwrap_or(0);
        let count = if set { count + 1 } else { count - 1 };
        m.set_reaction_count(key, count);
        if set {
            self.reactions.insert(k, seq);
        } else {
            self.reactions.remove(&k);
        }
        b.push_reaction(ReactionWrite {
            message_id: m.message_id,
            message_seq: m.seq,
            key: key.to_owned(),
            user_id: by.user_id.clone(),
            added: set.then_some(seq),
            count,
        });
        let ev = SpaceEvent {
            space_id: m.space_id,
            seq,
            at: tick(),
            kind: EventKind::ReactionChanged(ReactionChanged {
                message_id: m.message_id,
                key: key.to_owned(),
                user_id: by.user_id.clone(),
                added: set,
                count,
                appreciation_count: m.appreciation_count,
            }),
        };
        self.push_event(b, ev);
        self.messages.insert(at, m.clone());
        self.remember(&m);
    }

    /// Deletes the message at `at`.
    pub fn delete(&mut self, b: &mut CommitBatch, at: Seq, by: &UserRef) {
        let m = self.messages.remove(&at).expect("an existing message");
        self.reactions.retain(|(id, _, _), _| *id != m.message_id);
        let ev = deleted(&m, self.seq() + 1, by);
        self.push_event(b, ev);
        self.counters.message_count -= 1;
        b.push_message_write(MessageWrite::Delete {
            message_id: m.message_id,
            seq: m.seq,
            appreciation_count: m.appreciation_count,
        });
        if m.edited_at.is_some() {
            b.push_history(HistoryWrite::Clear {
                message_id: m.message_id,
            });
            self.history.remove(&m.message_id);
        }
        if let Some(root) = m.parent_id {
            self.count_reply(b, root, -1);
        }
    }

    /// Adds a member.
    pub fn join(&mut self, b: &mut CommitBatch, who: &UserRef) {
        let m = member(who, POWER_MEMBER);
        self.members.push(m.clone());
        self.counters.member_count = self.members.len() as u64;
        b.push_member(m);
    }

    /// Removes a member (a `member_removed` event by `by`).
    pub fn remove(&mut self, b: &mut CommitBatch, who: &str, by: &UserRef) {
        let ev = SpaceEvent {
            space_id: self.space.space_id,
            seq: self.seq() + 1,
            at: tick(),
            kind: EventKind::MemberRemoved(MemberRemoved {
                user_id: who.to_owned(),
                by: by.user_id.clone(),
                left: who == by.user_id,
            }),
        };
        self.push_event(b, ev);
        self.members.retain(|m| m.user.user_id != who);
        self.removed.push(who.to_owned());
        self.counters.member_count = self.members.len() as u64;
        b.push_member_removal(who.to_owned());
    }

    /// Changes the space's posting permission (a `space_updated` event).
    pub fn set_posting(&mut self, b: &mut CommitBatch, p: PostingPermission) {
        let ev = SpaceEvent {
            space_id: self.space.space_id,
            seq: self.seq() + 1,
            at: tick(),
            kind: EventKind::SpaceUpdated(SpaceUpdated {
                posting_permission: p,
            }),
        };
        self.push_event(b, ev);
        self.space.posting_permission = p;
        b.space = Some(self.space.clone());
    }

    /// Stamps the batch with the model's counters (and its stats, see [`SpaceModel::with_stats`]).
    pub fn finish(&self, mut b: CommitBatch) -> CommitBatch {
        b.counters = self.counters;
        if self.with_stats {
            let (stats, contributors) = self.expected_stats();
            b.stats = Some(stats);
            b.contributors = contributors.into_values().collect();
        }
        b
    }

    /// Commits a first history: four messages, appreciated 1, 0, 2 and 1 times.
    pub async fn seed(&mut self, s: &dyn Store, alice: &UserRef, bob: &UserRef) {
        let mut b = self.batch();
        for text in ["one", "two", "three", "four"] {
            self.send(&mut b, if text == "two" { bob } else { alice }, text);
        }
        let b = self.finish(b);
        s.commit(&b).await.expect("seed: messages");
        let mut b = self.batch();
        self.toggle(&mut b, 1, bob);
        self.toggle(&mut b, 3, alice);
        self.toggle(&mut b, 3, bob);
        self.toggle(&mut b, 4, alice);
        let b = self.finish(b);
        s.commit(&b).await.expect("seed: likes");
        self.assert_reads(s, "after the seed").await;
    }

    /// A batch touching existing rows in every way: deletes the most appreciated message, adds a
    /// like to a message liked once (its index entry moves) and to an unappreciated one (it
    /// enters the index), removes a like from another (it leaves the index), sends two messages
    /// (one liked in the same batch), and has a new member join. `a` and `b` are the two users
    /// who like things in this space.
    pub fn mixed_batch(&mut self, a: &UserRef, b: &UserRef, tag: &str) -> CommitBatch {
        let mut batch = self.batch();
        let top = self
            .messages
            .values()
            .max_by_key(|m| (m.appreciation_count, m.seq))
            .expect("messages")
            .seq;
        self.delete(&mut batch, top, a);
        let rest: Vec<Message> = self.messages.values().cloned().collect();
        let up = rest.iter().find(|m| m.appreciation_count == 1).cloned();
        let plain = rest.iter().find(|m| m.appreciation_count == 0).cloned();
        let down = rest
            .iter()
            .find(|m| m.appreciation_count >= 1 && Some(m.seq) != up.as_ref().map(|u| u.seq))
            .cloned();
        let who = |m: &Message, liked: bool| {
            if m.liked_by(&a.user_id) == liked {
                a
            } else {
                b
            }
        };
        for (m, liked) in [(up, false), (plain, false), (down, true)] {
            if let Some(m) = m {
                let by = who(&m, liked);
                self.toggle(&mut batch, m.seq, by);
            }
        }
        // Other keys: one added to every remaining message by both users, one of them removed
        // again from the oldest; a key set and removed in this batch.
        let seqs: Vec<Seq> = self.messages.keys().copied().collect();
        for &at in &seqs {
            self.react(&mut batch, at, a, "🎉", true);
            self.react(&mut batch, at, b, "🎉", true);
        }
        if let Some(&first) = seqs.first() {
            self.react(&mut batch, first, b, "🎉", false);
            self.react(&mut batch, first, a, "x.short_name", true);
            self.react(&mut batch, first, a, "x.short_name", false);
        }
        let fresh = self.send(&mut batch, b, &format!("{tag} fresh"));
        self.toggle(&mut batch, fresh.seq, a);
        self.react(&mut batch, fresh.seq, b, "👍", true);
        self.send(&mut batch, a, &format!("{tag} plain"));
        self.join(&mut batch, &user(&format!("{tag}-joiner")));
        self.finish(batch)
    }

    /// The members, sorted by user id.
    pub fn members(&self) -> Vec<Member> {
        sorted(self.members.clone())
    }

    /// Checks every read of the space against the model: the space and its counters, members and
    /// memberships, both message orders (and a page at an offset), every message ever created by
    /// id, and the event log. Panics with `when` on the first difference.
    pub async fn assert_reads(&self, s: &dyn Store, when: &str) {
        let id = self.space.space_id;
        let view = s.get_space(id).await.unwrap().expect("the space");
        assert_eq!(
            view,
            view_of(&self.space, self.counters),
            "{when}: get_space"
        );
        let snap = s.load_space(id).await.unwrap().expect("the space loads");
        assert_eq!(snap.view, view, "{when}: load_space");
        assert_eq!(sorted(snap.members), self.members(), "{when}: members");
        let mut scanned = Vec::new();
        loop {
            let after = scanned.last().map(|m: &Member| m.user.user_id.clone());
            let page = s.scan_members(id, after.as_deref(), 2).await.unwrap();
            let done = page.len() < 2;
            scanned.extend(page);
            if done {
                break;
            }
        }
        assert_eq!(scanned, self.members(), "{when}: members scanned 2 by 2");
        for gone in &self.removed {
            assert_eq!(
                s.get_member(id, gone).await.unwrap(),
                None,
                "{when}: {gone} was removed"
            );
            let theirs = s.spaces_of_user(gone).await.unwrap();
            assert!(
                theirs.iter().all(|(v, _)| v.space.space_id != id),
                "{when}: {gone} no longer lists the space: {theirs:?}"
            );
        }
        for m in &self.members {
            assert_eq!(
                s.get_member(id, &m.user.user_id).await.unwrap().as_ref(),
                Some(m),
                "{when}: get_member"
            );
            let theirs = s.spaces_of_user(&m.user.user_id).await.unwrap();
            assert!(
                theirs
                    .iter()
                    .any(|(v, mm)| v.space.space_id == id && mm == m),
                "{when}: {} lists the space: {theirs:?}",
                m.user.user_id
            );
        }
        let recent: Vec<Message> = self.messages.values().rev().cloned().collect();
        assert_eq!(
            page(s, id, MessageOrder::Recent, 0, 100).await,
            recent,
            "{when}: recent"
        );
        let mut liked = recent.clone();
        liked.sort_by_key(|m| std::cmp::Reverse((m.appreciation_count, m.seq)));
        assert_eq!(
            page(s, id, MessageOrder::MostAppreciated, 0, 100).await,
            liked,
            "{when}: most appreciated"
        );
        assert_eq!(
            page(s, id, MessageOrder::MostAppreciated, 1, 2).await,
            liked.iter().skip(1).take(2).cloned().collect::<Vec<_>>(),
            "{when}: most appreciated, offset 1, limit 2"
        );
        for m in &self.ever {
            let expected = self
                .messages
                .get(&m.seq)
                .filter(|e| e.message_id == m.message_id);
            assert_eq!(
                s.get_message(id, m.message_id).await.unwrap().as_ref(),
                expected,
                "{when}: get_message of #{}",
                m.seq
            );
        }
        // Every reaction row, and the rows of removed reactions and deleted messages absent.
        for m in &self.ever {
            let exists = self.messages.get(&m.seq).map(|e| e.message_id) == Some(m.message_id);
            let mut keys: Vec<String> = m.reaction_counts.keys().cloned().collect();
            keys.push("x.short_name".into());
            for key in &keys {
                for user_id in self.reactions_users(m.message_id) {
                    let want = exists
                        .then(|| {
                            self.reactions
                                .get(&(m.message_id, key.clone(), user_id.clone()))
                                .copied()
                        })
                        .flatten();
                    assert_eq!(
                        s.get_reaction(id, m.message_id, key, &user_id)
                            .await
                            .unwrap(),
                        want,
                        "{when}: reaction {key} of {user_id} on #{}",
                        m.seq
                    );
                }
            }
            for user_id in self.reactions_users(m.message_id) {
                let mine: Vec<String> = keys
                    .iter()
                    .filter(|k| {
                        exists
                            && self.reactions.contains_key(&(
                                m.message_id,
                                (*k).clone(),
                                user_id.clone(),
                            ))
                    })
                    .cloned()
                    .collect();
                assert_eq!(
                    s.user_reactions(id, &user_id, vec![(m.message_id, keys.clone())])
                        .await
                        .unwrap(),
                    vec![mine],
                    "{when}: user_reactions of {user_id} on #{}",
                    m.seq
                );
            }
        }
        for m in &self.ever {
            assert_eq!(
                s.message_history(id, m.message_id).await.unwrap(),
                self.history.get(&m.message_id).cloned().unwrap_or_default(),
                "{when}: history of #{}",
                m.seq
            );
        }
        assert_eq!(
            s.read_events(id, 0, 1000).await.unwrap(),
            self.log,
            "{when}: the event log"
        );
        self.assert_stats(s, when).await;
    }

    /// Checks the stored stats and contributor rows against the model's messages (none stored
    /// for a model without stats, or before its first commit).
    pub async fn assert_stats(&self, s: &dyn Store, when: &str) {
        let id = self.space.space_id;
        let (stats, contributors) = self.expected_stats();
        let committed = self.with_stats && !self.log.is_empty();
        assert_eq!(
            s.space_stats(id).await.unwrap(),
            committed.then_some(stats),
            "{when}: space stats"
        );
        for (user_id, c) in &contributors {
            assert_eq!(
                s.get_contributor(id, user_id).await.unwrap(),
                committed.then(|| c.clone()),
                "{when}: contributor {user_id}"
            );
        }
        let mut rows: Vec<ContributorStats> = s.contributors(id).await.unwrap();
        rows.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        let want: Vec<ContributorStats> = if committed {
            contributors.into_values().collect()
        } else {
            Vec::new()
        };
        assert_eq!(rows, want, "{when}: contributor rows");
    }
}

/// Members read in pages by user id (every member exactly once), removals delete the member and
/// the user's membership entry, a member removed and added again in later commits is a member,
/// and a changed space record reads back from every read of the space.
async fn members_page_by_user_id_and_removals_and_settings_commit(s: &dyn Store) {
    let alice = user("alice");
    let (sp, alice_m) = create(s, &alice).await;
    let id = sp.space_id;
    let epoch = s.claim(id).await.unwrap().expect("claimed").epoch;
    let mut model = SpaceModel::new(&sp, &alice_m, epoch);
    // Members only: the stats have cases of their own (and the model counts stats as written
    // from its first event, which a join-only batch does not have).
    model.with_stats = false;
    let joiners: Vec<UserRef> = (0..5).map(|i| user(&format!("m{i}"))).collect();
    let mut b = model.batch();
    for j in &joiners {
        model.join(&mut b, j);
    }
    let b = model.finish(b);
    s.commit(&b).await.expect("joins");
    model.assert_reads(s, "after five joins").await;
    assert_eq!(
        s.scan_members(id, None, 0).await.unwrap(),
        Vec::new(),
        "limit 0"
    );
    let last = model.members().last().cloned().expect("members");
    assert_eq!(
        s.scan_members(id, Some(&last.user.user_id), 10)
            .await
            .unwrap(),
        Vec::new(),
        "nothing after the last member"
    );
    assert_eq!(
        s.scan_members(new_id(), None, 10).await.unwrap(),
        Vec::new(),
        "an unknown space has no members"
    );

    // One kicked, one leaves, and the space becomes admins-only, in one commit.
    let mut b = model.batch();
    model.remove(&mut b, &joiners[1].user_id, &alice);
    model.remove(&mut b, &joiners[3].user_id, &joiners[3]);
    model.set_posting(&mut b, PostingPermission::Admins);
    let b = model.finish(b);
    s.commit(&b).await.expect("removals");
    model
        .assert_reads(s, "after two removals and a settings change")
        .await;
    let claimed = s.claim(id).await.unwrap().expect("claimed");
    assert_eq!(
        claimed.snapshot.view.space, model.space,
        "the claim reads the new record"
    );
    assert_eq!(sorted(claimed.snapshot.members), model.members());

    // Added again later: a member again, listed again.
    model.epoch = claimed.epoch;
    let mut b = model.batch();
    model.join(&mut b, &joiners[1]);
    model.removed.retain(|u| *u != joiners[1].user_id);
    let b = model.finish(b);
    s.commit(&b).await.expect("re-join");
    model
        .assert_reads(s, "after a removed member joined again")
        .await;
}

/// A batch that removes a member and changes the space record, besides the mixed changes.
fn removal_batch(model: &mut SpaceModel, a: &UserRef, b: &UserRef, tag: &str) -> CommitBatch {
    let mut batch = model.mixed_batch(a, b, tag);
    let joiner = model
        .members
        .iter()
        .find(|m| m.user.user_id.starts_with(&format!("{tag}-joiner")))
        .map(|m| m.user.user_id.clone())
        .expect("the mixed batch's joiner");
    // Removed in the batch that added it (the batch keeps only the removal), and bob leaves.
    model.remove(&mut batch, &joiner, a);
    model.remove(&mut batch, &b.user_id, b);
    let next = if model.space.posting_permission == PostingPermission::Admins {
        PostingPermission::Everyone
    } else {
        PostingPermission::Admins
    };
    model.set_posting(&mut batch, next);
    model.finish(batch)
}

/// A space where bob is a member besides alice, seeded.
async fn removal_space(s: &dyn Store, alice: &UserRef, bob: &UserRef) -> SpaceModel {
    let (sp, alice_m) = create(s, alice).await;
    let epoch = s.claim(sp.space_id).await.unwrap().expect("claimed").epoch;
    let mut model = SpaceModel::new(&sp, &alice_m, epoch);
    let mut b = model.batch();
    model.join(&mut b, bob);
    let b = model.finish(b);
    s.commit(&b).await.expect("bob joins");
    model.seed(s, alice, bob).await;
    model
}

/// A commit with removals and a settings change that fails before it is durable leaves the
/// members, their memberships and the space record as they were.
async fn a_removal_that_fails_before_it_is_durable_changes_nothing(
    s: &dyn Store,
    faults: &dyn FaultInjection,
) {
    let alice = user("alice");
    let bob = user("bob");
    let mut model = removal_space(s, &alice, &bob).await;
    let before = model.clone();
    let batch = removal_batch(&mut model, &alice, &bob, "rm-before");
    faults.fail_next_commit(FailPoint::BeforeHead);
    let err = s.commit(&batch).await.expect_err("the injected failure");
    assert!(!matches!(err, EngineError::Fenced), "{err:?}");
    before
        .assert_reads(s, "after a removal that failed before it was durable")
        .await;
    let claimed = s
        .claim(before.space.space_id)
        .await
        .unwrap()
        .expect("claimed");
    assert_eq!(claimed.snapshot.view.space, before.space);
    assert_eq!(sorted(claimed.snapshot.members), before.members());
    before.assert_reads(s, "after the claim").await;
    s.commit(&CommitBatch {
        epoch: claimed.epoch,
        ..batch
    })
    .await
    .expect("the retried batch commits");
    model.assert_reads(s, "after the retried removal").await;
}

/// A commit with removals and a settings change that fails after it is durable reads back as
/// committed after the next claim.
async fn a_removal_that_fails_after_it_is_durable_is_finished_by_the_next_claim(
    s: &dyn Store,
    faults: &dyn FaultInjection,
) {
    let alice = user("alice");
    let bob = user("bob");
    let mut model = removal_space(s, &alice, &bob).await;
    let batch = removal_batch(&mut model, &alice, &bob, "rm-after");
    faults.fail_next_commit(FailPoint::AfterHead);
    let err = s.commit(&batch).await.expect_err("the injected failure");
    assert!(!matches!(err, EngineError::Fenced), "{err:?}");
    let claimed = s
        .claim(model.space.space_id)
        .await
        .unwrap()
        .expect("claimed");
    assert_eq!(claimed.snapshot.view.space, model.space, "the new record");
    assert_eq!(sorted(claimed.snapshot.members), model.members());
    model.assert_reads(s, "after the claim that followed").await;
    model.epoch = claimed.epoch;
    let mut b = model.batch();
    model.join(&mut b, &bob);
    model.removed.retain(|u| *u != bob.user_id);
    let b = model.finish(b);
    s.commit(&b).await.expect("bob comes back");
    model.assert_reads(s, "after bob came back").await;
}

/// Every native field of a message survives a commit and reads back from every read path; a
/// reply counts in its root's `reply_count` (also when the root exists already), and deleting the
/// reply counts it down.
async fn rich_messages_and_thread_counts_round_trip(s: &dyn Store) {
    let alice = user("alice");
    let bob = user("bob");
    let (space, creator) = create(s, &alice).await;
    let mut model = SpaceModel::new(&space, &creator, 0);
    let mut b = model.batch();
    let root = model.send(&mut b, &alice, "root");
    let mut rich = message(&space, model.seq() + 1, &bob, "rich");
    rich.actor_id = alice.user_id.clone();
    rich.msgtype = "x.poll".into();
    rich.body = Some(json_object(serde_json::json!({
        "question": "lunch?",
        "options": ["soup", "salad"],
        "nested": {"n": 1.5, "ok": true, "none": null}
    })));
    rich.parent_id = Some(root.message_id);
    rich.quoted_message_id = Some(root.message_id);
    rich.mentions = vec![alice.user_id.clone(), "someone-else".into()];
    rich.metadata = Some(json_object(serde_json::json!({"client": "conformance"})));
    rich.gif = Some(crate::model::Gif {
        url: "https://media.example/cat.gif".into(),
        width: 320,
        height: 240,
        title: Some("cat".into()),
    });
    rich.media = vec![crate::model::MediaItem {
        media_id: new_id(),
        content_type: "image/png".into(),
        size: 1234,
        sha256: "ab".repeat(32),
        thumbnail_id: Some(new_id()),
    }];
    model.push_created(&mut b, &rich);
    let b = model.finish(b);
    s.commit(&b).await.expect("commit the rich message");
    model.assert_reads(s, "rich message").await;
    let back = s
        .get_message(space.space_id, rich.message_id)
        .await
        .unwrap()
        .expect("the rich message");
    assert_eq!(back, rich, "every field reads back");
    assert_eq!(
        s.get_message(space.space_id, root.message_id)
            .await
            .unwrap()
            .map(|m| m.reply_count),
        Some(1),
        "a root created with its reply in one batch counts it"
    );

    // A second reply to the root, which exists already: an existing-row change.
    let mut b = model.batch();
    let mut reply = message(&space, model.seq() + 1, &alice, "reply");
    reply.parent_id = Some(root.message_id);
    model.push_created(&mut b, &reply);
    let b = model.finish(b);
    s.commit(&b).await.expect("commit the second reply");
    model.assert_reads(s, "second reply").await;
    assert_eq!(model.messages[&root.seq].reply_count, 2);

    // Deleting a reply counts it down.
    let mut b = model.batch();
    model.delete(&mut b, reply.seq, &alice);
    let b = model.finish(b);
    s.commit(&b).await.expect("delete the reply");
    model.assert_reads(s, "reply deleted").await;
    assert_eq!(model.messages[&root.seq].reply_count, 1);
}

/// Edits keep the version they replace; the history reads newest first, also for a message
/// created and edited in one batch; deleting an edited message removes its history.
async fn edits_keep_every_earlier_version_newest_first(s: &dyn Store) {
    let alice = user("alice");
    let bob = user("bob");
    let (space, creator) = create(s, &alice).await;
    let mut model = SpaceModel::new(&space, &creator, 0);
    model.seed(s, &alice, &bob).await;
    let mut b = model.batch();
    model.edit(&mut b, 1, "one, edited once");
    let fresh = model.send(&mut b, &bob, "fresh");
    model.edit(&mut b, fresh.seq, "fresh, edited in its own batch");
    let b = model.finish(b);
    s.commit(&b).await.expect("first edits");
    model.assert_reads(s, "first edits").await;

    let mut b = model.batch();
    let twice = model.edit(&mut b, 1, "one, edited twice");
    // A liked message edited: both changes land.
    model.toggle(&mut b, 1, &alice);
    let b = model.finish(b);
    s.commit(&b).await.expect("second edit");
    model.assert_reads(s, "second edit").await;
    let history = s
        .message_history(space.space_id, twice.message_id)
        .await
        .unwrap();
    assert_eq!(
        history
            .iter()
            .map(|v| v.content.clone())
            .collect::<Vec<_>>(),
        vec![
            Some("one, edited once".to_owned()),
            Some("one #1".to_owned())
        ],
        "newest first"
    );
    assert_eq!(
        s.get_message(space.space_id, twice.message_id)
            .await
            .unwrap()
            .map(|m| (m.content, m.appreciation_count)),
        Some((twice.content, model.messages[&1].appreciation_count)),
        "edited and liked in one batch"
    );

    let mut b = model.batch();
    model.delete(&mut b, 1, &alice);
    let b = model.finish(b);
    s.commit(&b).await.expect("delete an edited message");
    model.assert_reads(s, "edited message deleted").await;
}

/// An edit whose commit fails before it is durable leaves the message and its history as they
/// were, also after the next claim.
async fn an_edit_that_fails_before_it_is_durable_leaves_the_old_version(
    s: &dyn Store,
    faults: &dyn FaultInjection,
) {
    let (alice, bob) = (user("alice"), user("bob"));
    let (sp, alice_m) = create(s, &alice).await;
    let epoch = s.claim(sp.space_id).await.unwrap().expect("claimed").epoch;
    let mut model = SpaceModel::new(&sp, &alice_m, epoch);
    model.seed(s, &alice, &bob).await;
    let before = model.clone();
    let mut b = model.batch();
    model.edit(&mut b, 2, "never durable");
    let b = model.finish(b);
    faults.fail_next_commit(FailPoint::BeforeHead);
    s.commit(&b).await.expect_err("the injected failure");
    before.assert_reads(s, "an edit that failed early").await;
    s.claim(sp.space_id).await.unwrap().expect("claimed");
    before
        .assert_reads(s, "an edit that failed early, claimed")
        .await;
}

/// An edit whose commit fails after it is durable reads back as edited, history included, once
/// the space is claimed again.
async fn an_edit_that_fails_after_it_is_durable_is_finished_by_the_next_claim(
    s: &dyn Store,
    faults: &dyn FaultInjection,
) {
    let (alice, bob) = (user("alice"), user("bob"));
    let (sp, alice_m) = create(s, &alice).await;
    let epoch = s.claim(sp.space_id).await.unwrap().expect("claimed").epoch;
    let mut model = SpaceModel::new(&sp, &alice_m, epoch);
    model.seed(s, &alice, &bob).await;
    let mut b = model.batch();
    model.edit(&mut b, 2, "durable edit");
    model.edit(&mut b, 3, "another durable edit");
    let b = model.finish(b);
    faults.fail_next_commit(FailPoint::AfterHead);
    s.commit(&b).await.expect_err("the injected failure");
    let claimed = s.claim(sp.space_id).await.unwrap().expect("claimed");
    model
        .assert_reads(s, "an edit that failed late, claimed")
        .await;
    model.epoch = claimed.epoch;
    let mut b = model.batch();
    model.edit(&mut b, 2, "edited again");
    let b = model.finish(b);
    s.commit(&b).await.expect("the next edit");
    model.assert_reads(s, "the next edit").await;
}

/// A redaction wipes a message's content (also its native fields) and removes its history, and
/// keeps its id, seq, thread links and reactions; a redaction whose commit fails after it is
/// durable is finished by the next claim, history removal included.
async fn a_redaction_wipes_the_content_and_the_history(s: &dyn Store, faults: &dyn FaultInjection) {
    let (alice, bob) = (user("alice"), user("bob"));
    let (space, alice_m) = create(s, &alice).await;
    let epoch = s
        .claim(space.space_id)
        .await
        .unwrap()
        .expect("claimed")
        .epoch;
    let mut model = SpaceModel::new(&space, &alice_m, epoch);
    model.seed(s, &alice, &bob).await;
    let mut b = model.batch();
    let mut rich = message(&space, model.seq() + 1, &bob, "secret");
    rich.parent_id = Some(model.messages[&1].message_id);
    rich.body = Some(json_object(serde_json::json!({"secret": true})));
    rich.metadata = Some(json_object(serde_json::json!({"m": 1})));
    rich.mentions = vec![alice.user_id.clone()];
    rich.media = vec![crate::model::MediaItem {
        media_id: new_id(),
        content_type: "image/png".into(),
        size: 1,
        sha256: "00".repeat(32),
        thumbnail_id: None,
    }];
    model.push_created(&mut b, &rich);
    let b = model.finish(b);
    s.commit(&b).await.expect("the rich message");
    let mut b = model.batch();
    model.edit(&mut b, rich.seq, "secret, edited");
    model.edit(&mut b, 2, "two, edited");
    model.toggle(&mut b, rich.seq, &alice);
    let b = model.finish(b);
    s.commit(&b).await.expect("edits");
    model.assert_reads(s, "before the redactions").await;

    let mut b = model.batch();
    let wiped = model.redact(&mut b, rich.seq, &alice, "spoiler");
    let b = model.finish(b);
    s.commit(&b).await.expect("a redaction");
    model.assert_reads(s, "redacted").await;
    assert!(
        s.message_history(space.space_id, wiped.message_id)
            .await
            .unwrap()
            .is_empty()
    );
    let stored = s
        .get_message(space.space_id, wiped.message_id)
        .await
        .unwrap()
        .expect("a redacted message stays");
    assert_eq!(
        (
            stored.content,
            stored.body,
            stored.media.len(),
            stored.redacted,
            stored.parent_id,
            stored.appreciation_count
        ),
        (None, None, 0, true, rich.parent_id, 1)
    );

    let mut b = model.batch();
    model.redact(&mut b, 2, &bob, "late");
    let b = model.finish(b);
    faults.fail_next_commit(FailPoint::AfterHead);
    s.commit(&b).await.expect_err("the injected failure");
    s.claim(space.space_id).await.unwrap().expect("claimed");
    model
        .assert_reads(s, "a redaction that failed late, claimed")
        .await;
}

/// An idempotency key is visible exactly when the commit of its message is: not after a commit
/// that failed before it was durable, and after the claim that finishes one that failed after.
/// It is scoped by space, sender and key, and reads as absent once expired.
async fn idempotency_keys_commit_with_their_message_and_expire(
    s: &dyn Store,
    faults: &dyn FaultInjection,
) {
    let (alice, bob) = (user("alice"), user("bob"));
    let (space, alice_m) = create(s, &alice).await;
    let (other, _) = create(s, &alice).await;
    let id = space.space_id;
    let epoch = s.claim(id).await.unwrap().expect("claimed").epoch;
    let mut model = SpaceModel::new(&space, &alice_m, epoch);
    let key = |m: &Message, k: &str, ttl_ms: i64| KeyWrite {
        sender_id: m.sender_id.clone(),
        key: k.to_owned(),
        message_id: m.message_id,
        expires_at: Timestamp(Timestamp::now().0 + ttl_ms),
    };
    const LONG: i64 = 300_000;

    let mut b = model.batch();
    let m1 = model.send(&mut b, &alice, "keyed");
    b.keys.push(key(&m1, "k1", LONG));
    let b = model.finish(b);
    s.commit(&b).await.expect("a keyed send");
    let lookup = |space_id, sender: &UserRef, k: &'static str| {
        let sender = sender.user_id.clone();
        async move { s.idempotent_send(space_id, &sender, k).await.unwrap() }
    };
    assert_eq!(lookup(id, &alice, "k1").await, Some(m1.message_id));
    assert_eq!(lookup(id, &bob, "k1").await, None, "another sender's key");
    assert_eq!(lookup(id, &alice, "k2").await, None, "another key");
    assert_eq!(
        lookup(other.space_id, &alice, "k1").await,
        None,
        "another space"
    );

    // A commit that fails before it is durable leaves no key.
    let mut never = model.clone();
    let mut b = never.batch();
    let lost = never.send(&mut b, &alice, "never durable");
    b.keys.push(key(&lost, "k-lost", LONG));
    let b = never.finish(b);
    faults.fail_next_commit(FailPoint::BeforeHead);
    s.commit(&b).await.expect_err("the injected failure");
    let epoch = s.claim(id).await.unwrap().expect("claimed").epoch;
    model.epoch = epoch;
    assert_eq!(lookup(id, &alice, "k-lost").await, None);

    // One that fails after it is durable has its key once claimed.
    let mut b = model.batch();
    let m2 = model.send(&mut b, &bob, "durable");
    b.keys.push(key(&m2, "k2", LONG));
    let b = model.finish(b);
    faults.fail_next_commit(FailPoint::AfterHead);
    s.commit(&b).await.expect_err("the injected failure");
    model.epoch = s.claim(id).await.unwrap().expect("claimed").epoch;
    assert_eq!(lookup(id, &bob, "k2").await, Some(m2.message_id));
    model.assert_reads(s, "keyed sends").await;

    // A short-lived key expires (CQL: whole seconds); poll with a deadline.
    let mut b = model.batch();
    let m3 = model.send(&mut b, &bob, "short-lived");
    b.keys.push(key(&m3, "k3", 1_000));
    let b = model.finish(b);
    s.commit(&b).await.expect("a short-lived key");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while lookup(id, &bob, "k3").await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the key did not expire"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        lookup(id, &bob, "k2").await,
        Some(m2.message_id),
        "others stay"
    );
}

fn json_object(v: serde_json::Value) -> crate::model::JsonObject {
    match v {
        serde_json::Value::Object(o) => o,
        other => panic!("not an object: {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// Strictly increasing timestamps, so "newest first" is unambiguous whatever a backend sorts by.
fn tick() -> Timestamp {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = Timestamp::now().0;
    let prev = LAST.fetch_max(now, Ordering::AcqRel);
    if prev < now {
        Timestamp(now)
    } else {
        Timestamp(LAST.fetch_add(1, Ordering::AcqRel) + 1)
    }
}

/// A user with a unique id.
pub fn user(name: &str) -> UserRef {
    UserRef {
        user_id: format!("{name}-{}", new_id()),
        username: name.to_owned(),
        profile_picture: format!("https://example.test/{name}.png"),
    }
}

pub fn member(user: &UserRef, power_level: i32) -> Member {
    Member {
        user: user.clone(),
        power_level,
        joined_at: tick(),
    }
}

pub fn counters(head_seq: Seq, message_count: u64, member_count: u64) -> SpaceCounters {
    SpaceCounters {
        head_seq,
        message_count,
        member_count,
    }
}

fn view_of(space: &Space, counters: SpaceCounters) -> SpaceView {
    SpaceView {
        space: space.clone(),
        counters,
    }
}

/// Creates a space (fresh id) with `creator` as admin.
pub async fn create(s: &dyn Store, creator: &UserRef) -> (Space, Member) {
    let space = Space {
        space_id: new_id(),
        title: "Conformance".into(),
        description: "A space of the storage conformance suite".into(),
        visibility: Visibility::Public,
        creator: creator.clone(),
        tags: vec!["rust".into(), "storage".into()],
        posting_permission: PostingPermission::Everyone,
        created_at: tick(),
    };
    let admin = member(creator, POWER_ADMIN);
    s.create_space(&space, &admin).await.expect("create_space");
    (space, admin)
}

pub fn message(space: &Space, seq: Seq, sender: &UserRef, text: &str) -> Message {
    let content = format!("{text} #{seq}");
    Message {
        message_id: new_id(),
        space_id: space.space_id,
        seq,
        sender_id: sender.user_id.clone(),
        actor_id: sender.user_id.clone(),
        word_count: word_count(&content),
        content: Some(content),
        media_url: None,
        media_type: None,
        sender: sender.clone(),
        likes: Some(vec![]),
        appreciation_count: 0,
        created_at: tick(),
        ..Default::default()
    }
}

fn put_new(m: &Message) -> MessageWrite {
    MessageWrite::Put {
        message: m.clone(),
        previous_appreciation: None,
    }
}

pub fn created(m: &Message) -> SpaceEvent {
    SpaceEvent {
        space_id: m.space_id,
        seq: m.seq,
        at: m.created_at,
        kind: EventKind::MessageCreated(m.clone()),
    }
}

fn deleted(m: &Message, seq: Seq, by: &UserRef) -> SpaceEvent {
    SpaceEvent {
        space_id: m.space_id,
        seq,
        at: tick(),
        kind: EventKind::MessageDeleted(MessageDeleted {
            message_id: m.message_id,
            deleted_by: by.user_id.clone(),
            parent_id: m.parent_id,
        }),
    }
}

/// Adds `by`'s like to `m` as event `seq`; returns the event.
pub fn like(m: &mut Message, seq: Seq, by: &UserRef) -> SpaceEvent {
    m.likes.get_or_insert_default().push(Like {
        id: seq,
        user_id: by.user_id.clone(),
    });
    reaction(m, seq, by, true)
}

/// Removes `by`'s like from `m` as event `seq`; returns the event.
fn unlike(m: &mut Message, seq: Seq, by: &UserRef) -> SpaceEvent {
    m.likes
        .get_or_insert_default()
        .retain(|l| l.user_id != by.user_id);
    reaction(m, seq, by, false)
}

/// The reaction writes of `batch`'s `reaction_changed` events (as the space actor makes them),
/// `messages` giving each message's seq.
pub fn push_reaction_writes(batch: &mut CommitBatch, messages: &[Message]) {
    let writes: Vec<ReactionWrite> = batch
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ReactionChanged(r) => Some(ReactionWrite {
                message_id: r.message_id,
                message_seq: messages
                    .iter()
                    .find(|m| m.message_id == r.message_id)
                    .map(|m| m.seq)
                    .expect("a message of the batch"),
                key: r.key.clone(),
                user_id: r.user_id.clone(),
                added: r.added.then_some(e.seq),
                count: r.count,
            }),
            _ => None,
        })
        .collect();
    for w in writes {
        batch.push_reaction(w);
    }
}

fn reaction(m: &mut Message, seq: Seq, by: &UserRef, added: bool) -> SpaceEvent {
    let n = m.likes.as_ref().map_or(0, Vec::len) as u32;
    m.set_reaction_count(APPRECIATE, n);
    SpaceEvent {
        space_id: m.space_id,
        seq,
        at: tick(),
        kind: EventKind::ReactionChanged(ReactionChanged {
            message_id: m.message_id,
            key: APPRECIATE.to_owned(),
            user_id: by.user_id.clone(),
            added,
            count: m.appreciation_count,
            appreciation_count: m.appreciation_count,
        }),
    }
}

async fn page(
    s: &dyn Store,
    space_id: crate::model::SpaceId,
    order: MessageOrder,
    offset: usize,
    limit: usize,
) -> Vec<Message> {
    s.page_messages(space_id, order, offset, limit)
        .await
        .expect("page_messages")
}

/// The messages at `idx`, in that order.
fn pick(m: &[Message], idx: &[usize]) -> Vec<Message> {
    idx.iter().map(|&i| m[i].clone()).collect()
}

/// Newest first.
fn rev(m: &[Message]) -> Vec<Message> {
    m.iter().rev().cloned().collect()
}

fn seqs(events: &[SpaceEvent]) -> Vec<Seq> {
    events.iter().map(|e| e.seq).collect()
}

/// Members in a stable order (backends need not order them).
fn sorted(mut members: Vec<Member>) -> Vec<Member> {
    members.sort_by(|a, b| a.user.user_id.cmp(&b.user.user_id));
    members
}
