//! Conformance cases of read markers, unread counts and the inbox (issue 12; see
//! [`crate::unread`]): what the store keeps (markers, top-level counts, activity), through the
//! space actors of an [`Engine`] over the store under test, and directly for a commit that fails
//! half-way.

use std::sync::Arc;

use spacecast_observability::Metrics;

use super::{counters, create, created, message, user};
use crate::model::{PostingPermission, SpaceId, UserRef, Visibility};
use crate::store::{CommitBatch, FailPoint, FaultInjection, MessageWrite, Store};
use crate::unread::{LastMessage, Membership, ReadMarker, ReadTarget, SpaceActivity};
use crate::{Engine, EngineConfig, NewSpace, SendMessage};

/// Runs the unread cases against `store` (called from `testkit::store_conformance`).
pub async fn cases(store: Arc<dyn Store>, faults: &dyn FaultInjection) {
    macro_rules! cases {
        ($($case:ident $(($arg:expr))?),* $(,)?) => {$(
            eprintln!("store conformance: unread::{}", stringify!($case));
            $case(store.clone() $(, $arg)?).await;
        )*};
    }
    cases!(
        counts_exclude_replies_and_own_sends_and_joins_mark_read,
        a_marker_only_moves_forward_under_concurrent_marks,
        markers_and_counts_survive_a_restart,
        a_mark_that_fails_after_it_is_durable_is_finished_by_the_next_claim(faults),
    );
}

/// Lets every call through but `close`: an engine's shutdown closes its store, and the store
/// under test outlives the engines of these cases.
struct KeepOpen;

impl super::hooked::StoreHooks for KeepOpen {
    fn before(&self, op: &'static str) -> crate::Result<()> {
        if op == "close" {
            return Err(crate::EngineError::Internal("kept open".into()));
        }
        Ok(())
    }
}

async fn engine(store: &Arc<dyn Store>) -> Engine {
    let kept: Arc<dyn Store> = Arc::new(super::hooked::Hooked::new(store.clone(), KeepOpen));
    Engine::start(EngineConfig::default(), kept, Metrics::new())
        .await
        .expect("engine")
}

/// Stops an engine's actors (each settles what it accepted), leaving the store open.
async fn stop(e: Engine) {
    e.shutdown(std::time::Duration::from_secs(10)).await;
}

async fn new_space(e: &Engine, creator: &UserRef) -> SpaceId {
    e.create_space(
        NewSpace {
            title: "Unread".into(),
            description: String::new(),
            visibility: Visibility::Public,
            tags: vec![],
            posting_permission: PostingPermission::Everyone,
        },
        creator.clone(),
    )
    .await
    .expect("create_space")
    .space
    .space_id
}

async fn send(
    e: &Engine,
    space: SpaceId,
    by: &UserRef,
    text: &str,
    parent: Option<uuid::Uuid>,
) -> crate::model::Message {
    e.space(space)
        .send(SendMessage {
            sender: by.clone(),
            content: Some(text.into()),
            parent_id: parent,
            ..Default::default()
        })
        .await
        .expect("send")
}

/// The user's membership of `space`, as the store has it.
async fn membership(s: &dyn Store, user: &UserRef, space: SpaceId) -> Membership {
    s.memberships_of_user(&user.user_id)
        .await
        .expect("memberships_of_user")
        .into_iter()
        .find(|m| m.view.space.space_id == space)
        .expect("a member of the space")
}

/// Top-level messages count, thread replies do not; a sender's own send marks the space read
/// for them, a join sets the marker at the head; a mark by message or seq counts the top-level
/// messages up to it; a deleted top-level message after the marker stops counting; the last
/// message is the newest top-level one and moves back when it is deleted.
async fn counts_exclude_replies_and_own_sends_and_joins_mark_read(store: Arc<dyn Store>) {
    let e = engine(&store).await;
    let s = &*store;
    let alice = user("alice");
    let bob = user("bob");
    let space = new_space(&e, &alice).await;
    let before = send(&e, space, &alice, "before bob", None).await;
    e.space(space).join(bob.clone(), None).await.expect("join");
    let joined = membership(s, &bob, space).await;
    assert_eq!(joined.unread(), 0, "nothing is unread on join");
    assert_eq!(joined.last_read_seq(), before.seq);

    let t1 = send(&e, space, &alice, "one", None).await;
    let r1 = send(&e, space, &alice, "reply", Some(t1.message_id)).await;
    let t2 = send(&e, space, &alice, "two", None).await;
    let _r2 = send(&e, space, &alice, "reply 2", Some(t1.message_id)).await;
    let t3 = send(&e, space, &alice, "three", None).await;
    let b = membership(s, &bob, space).await;
    assert_eq!(
        b.unread(),
        3,
        "three top-level messages, replies not counted"
    );
    assert_eq!(b.last_message().map(|m| m.message_id), Some(t3.message_id));
    let a = membership(s, &alice, space).await;
    assert_eq!(a.unread(), 0, "her own sends mark the space read for her");
    assert_eq!(a.last_read_seq(), t3.seq);

    // A reply's seq counts the top-level messages before it.
    let r = e
        .space(space)
        .mark_read(bob.user_id.clone(), ReadTarget::Seq(r1.seq))
        .await
        .expect("mark");
    assert_eq!((r.last_read_seq, r.unread, r.changed), (r1.seq, 2, true));
    let r = e
        .space(space)
        .mark_read(bob.user_id.clone(), ReadTarget::Message(t2.message_id))
        .await
        .expect("mark");
    assert_eq!((r.last_read_seq, r.unread), (t2.seq, 1));
    assert_eq!(membership(s, &bob, space).await.unread(), 1);

    // Deleted after bob's marker: it stops counting; the last message moves back to t2.
    e.space(space)
        .delete(t3.message_id, alice.clone())
        .await
        .expect("delete");
    let b = membership(s, &bob, space).await;
    assert_eq!(b.unread(), 0);
    let last = b.last_message().expect("a last message");
    assert_eq!(last.message_id, t2.message_id);
    assert_eq!(last, &LastMessage::of(&t2));

    // A reply by bob moves his marker to it (posting marks the space read).
    let t4 = send(&e, space, &alice, "four", None).await;
    assert_eq!(membership(s, &bob, space).await.unread(), 1);
    let mine = send(&e, space, &bob, "bob replies", Some(t4.message_id)).await;
    let b = membership(s, &bob, space).await;
    assert_eq!((b.unread(), b.last_read_seq()), (0, mine.seq));
    // Leaving removes the marker with the membership.
    e.space(space)
        .remove_member(bob.user_id.clone(), bob.clone())
        .await
        .expect("leave");
    assert_eq!(s.read_marker(space, &bob.user_id).await.unwrap(), None);
    stop(e).await;
}

/// Marks from many sessions at once, in any order: the marker ends at the highest, each answer
/// is at or past its own target, and a later lower mark changes nothing.
async fn a_marker_only_moves_forward_under_concurrent_marks(store: Arc<dyn Store>) {
    let e = engine(&store).await;
    let s = &*store;
    let alice = user("alice");
    let bob = user("bob");
    let space = new_space(&e, &alice).await;
    e.space(space).join(bob.clone(), None).await.expect("join");
    let mut seqs = Vec::new();
    for i in 0..20 {
        seqs.push(send(&e, space, &alice, &format!("m{i}"), None).await.seq);
    }
    let head = *seqs.last().unwrap();
    // Highest first and lowest last, interleaved: any order must end at the highest.
    let mut order: Vec<u64> = seqs.iter().rev().copied().collect();
    order.rotate_left(7);
    let marks = order.iter().map(|&seq| {
        let h = e.space(space);
        let u = bob.user_id.clone();
        async move {
            (
                seq,
                h.mark_read(u, ReadTarget::Seq(seq)).await.expect("mark"),
            )
        }
    });
    let answers = futures::future::join_all(marks).await;
    for (target, r) in &answers {
        assert!(r.last_read_seq >= *target, "{target}: {r:?}");
    }
    let b = membership(s, &bob, space).await;
    assert_eq!((b.last_read_seq(), b.unread()), (head, 0));
    let r = e
        .space(space)
        .mark_read(bob.user_id.clone(), ReadTarget::Seq(seqs[3]))
        .await
        .unwrap();
    assert_eq!((r.last_read_seq, r.unread, r.changed), (head, 0, false));
    // Above the head: clamped to it.
    let r = e
        .space(space)
        .mark_read(bob.user_id.clone(), ReadTarget::Seq(head + 1000))
        .await
        .unwrap();
    assert_eq!(r.last_read_seq, head);
    // A non-member may not mark.
    let err = e
        .space(space)
        .mark_read(user("carol").user_id, ReadTarget::Seq(1))
        .await
        .expect_err("not a member");
    assert!(matches!(err, crate::EngineError::NotAMember), "{err:?}");
    stop(e).await;
}

/// A new incarnation of the space (another engine claims it) reads the markers and counts the
/// last one committed: a mark below the marker changes nothing, and a mark at an old seq (below
/// everything the new incarnation created) counts exactly from the store.
async fn markers_and_counts_survive_a_restart(store: Arc<dyn Store>) {
    let e = engine(&store).await;
    let alice = user("alice");
    let bob = user("bob");
    let space = new_space(&e, &alice).await;
    e.space(space).join(bob.clone(), None).await.expect("join");
    let mut msgs = Vec::new();
    for i in 0..6 {
        let parent = (i % 3 == 2)
            .then(|| msgs.first().map(|m: &crate::model::Message| m.message_id))
            .flatten();
        msgs.push(send(&e, space, &alice, &format!("m{i}"), parent).await);
    }
    // Top-level: m0, m1, m3, m4 (m2 and m5 reply to m0).
    e.space(space)
        .mark_read(bob.user_id.clone(), ReadTarget::Seq(msgs[1].seq))
        .await
        .expect("mark");

    let restarted = engine(&store).await;
    let r = restarted
        .space(space)
        .mark_read(bob.user_id.clone(), ReadTarget::Seq(msgs[0].seq))
        .await
        .expect("mark after the restart");
    assert_eq!(
        (r.last_read_seq, r.unread, r.changed),
        (msgs[1].seq, 2, false)
    );
    // m2 is a reply between m1 and m3: two top-level messages up to it.
    let r = restarted
        .space(space)
        .mark_read(bob.user_id.clone(), ReadTarget::Message(msgs[2].message_id))
        .await
        .expect("mark after the restart");
    assert_eq!(
        (r.last_read_seq, r.unread, r.changed),
        (msgs[2].seq, 2, true)
    );
    let r = restarted
        .space(space)
        .mark_read(bob.user_id.clone(), ReadTarget::Seq(msgs[3].seq))
        .await
        .expect("mark after the restart");
    assert_eq!((r.last_read_seq, r.unread), (msgs[3].seq, 1));
    let b = membership(&*store, &bob, space).await;
    assert_eq!((b.last_read_seq(), b.unread()), (msgs[3].seq, 1));
    assert_eq!(
        store.top_level_at(space, msgs[4].seq).await.unwrap(),
        Some(4)
    );
    assert_eq!(
        store.top_level_at(space, msgs[5].seq).await.unwrap(),
        Some(4)
    );
    stop(e).await;
    stop(restarted).await;
}

/// A commit whose markers, activity and top-level counts fail after the commit is durable: the
/// next claim finishes them (CQL: phase 3 is applied again from the head's pending list).
async fn a_mark_that_fails_after_it_is_durable_is_finished_by_the_next_claim(
    store: Arc<dyn Store>,
    faults: &dyn FaultInjection,
) {
    let s = &*store;
    let alice = user("alice");
    let bob = user("bob");
    let (sp, _) = create(s, &alice).await;
    let id = sp.space_id;
    let epoch = s.claim(id).await.unwrap().expect("claimed").epoch;
    let m1 = message(&sp, 1, &alice, "one");
    let mut activity = SpaceActivity::default();
    activity.created(1, true);
    activity.last_message = Some(LastMessage::of(&m1));
    let mut b = CommitBatch {
        space_id: id,
        epoch,
        counters: counters(1, 1, 2),
        ..Default::default()
    };
    b.events.push(created(&m1));
    b.push_message_write(MessageWrite::Put {
        message: m1.clone(),
        previous_appreciation: None,
    });
    b.push_member(super::member(&bob, 0));
    b.push_marker(&bob.user_id, ReadMarker { seq: 0, count: 0 });
    b.push_marker(&alice.user_id, ReadMarker { seq: 1, count: 1 });
    b.top_level_at.push((1, 1));
    b.activity = Some(activity.clone());
    s.commit(&b).await.expect("commit");
    assert_eq!(s.space_activity(id).await.unwrap(), Some(activity.clone()));
    assert_eq!(s.top_level_at(id, 1).await.unwrap(), Some(1));

    let m2 = message(&sp, 2, &alice, "two");
    activity.created(2, true);
    activity.last_message = Some(LastMessage::of(&m2));
    let mut b = CommitBatch {
        space_id: id,
        epoch,
        counters: counters(2, 2, 2),
        ..Default::default()
    };
    b.events.push(created(&m2));
    b.push_message_write(MessageWrite::Put {
        message: m2.clone(),
        previous_appreciation: None,
    });
    b.push_marker(&bob.user_id, ReadMarker { seq: 1, count: 1 });
    b.push_marker(&alice.user_id, ReadMarker { seq: 2, count: 2 });
    b.top_level_at.push((2, 2));
    b.activity = Some(activity.clone());
    faults.fail_next_commit(FailPoint::AfterHead);
    s.commit(&b).await.expect_err("the injected failure");
    s.claim(id).await.unwrap().expect("claimed");
    assert_eq!(
        s.read_marker(id, &bob.user_id).await.unwrap(),
        Some(ReadMarker { seq: 1, count: 1 })
    );
    assert_eq!(s.space_activity(id).await.unwrap(), Some(activity.clone()));
    assert_eq!(s.top_level_at(id, 2).await.unwrap(), Some(2));
    let bobs = s.memberships_of_user(&bob.user_id).await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!((bobs[0].unread(), bobs[0].last_read_seq()), (1, 1));
    assert_eq!(bobs[0].last_message(), Some(&LastMessage::of(&m2)));
}
