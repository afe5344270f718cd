//! Conformance cases of notifications (issue 12; see [`crate::notifications`]): they commit
//! atomically with their batch, read newest first, keep their read mark when written again, and
//! each user keeps the newest [`NOTIFICATIONS_KEPT`].

use crate::EngineError;
use crate::model::{Message, Timestamp, UserRef};
use crate::notifications::{
    NOTIFICATIONS_KEPT, Notification, NotificationKind, appreciation_id, message_id_for,
};
use crate::store::{FailPoint, FaultInjection, Store};

use super::{SpaceModel, create, user};

/// Every case, in order.
pub async fn cases(s: &dyn Store, faults: &dyn FaultInjection) {
    macro_rules! cases {
        ($($case:ident $(($arg:expr))?),* $(,)?) => {$(
            eprintln!("store conformance: {}", stringify!($case));
            $case(s $(, $arg)?).await;
        )*};
    }
    cases!(
        notifications_commit_with_their_batch_and_keep_their_read_mark,
        a_notification_of_a_commit_that_fails_before_it_is_durable_is_never_visible(faults),
        a_notification_of_a_commit_that_fails_after_it_is_durable_is_there_after_the_claim(faults),
        each_user_keeps_the_newest_notifications_only,
    );
}

fn note(to: &UserRef, by: &UserRef, m: &Message, kind: NotificationKind, at: i64) -> Notification {
    let id = match kind {
        NotificationKind::MessageAppreciated => appreciation_id(m.message_id, &by.user_id),
        _ => message_id_for(m.message_id, &to.user_id),
    };
    Notification::new(
        id,
        kind,
        &to.user_id,
        by,
        m.space_id,
        "Conformance",
        m.message_id,
        Timestamp(at),
    )
}

/// A space claimed, with its model.
async fn space(s: &dyn Store, owner: &UserRef) -> SpaceModel {
    let (sp, m) = create(s, owner).await;
    let epoch = s.claim(sp.space_id).await.unwrap().expect("claimed").epoch;
    SpaceModel::new(&sp, &m, epoch)
}

async fn listed(s: &dyn Store, u: &UserRef) -> Vec<Notification> {
    s.notifications(&u.user_id).await.expect("notifications")
}

/// A commit's notifications read back (newest first) for their users only; a read mark holds,
/// also when a later commit writes the same notification again (a retry, a re-applied claim).
async fn notifications_commit_with_their_batch_and_keep_their_read_mark(s: &dyn Store) {
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let mut model = space(s, &alice).await;
    let mut b = model.batch();
    let m = model.send(&mut b, &bob, "hello @alice");
    let base = Timestamp::now().0;
    let mention = note(&alice, &bob, &m, NotificationKind::Mention, base);
    let appreciated = note(
        &bob,
        &alice,
        &m,
        NotificationKind::MessageAppreciated,
        base + 1,
    );
    b.push_notification(mention.clone());
    b.push_notification(appreciated.clone());
    s.commit(&model.finish(b)).await.expect("commit");
    assert_eq!(listed(s, &alice).await, vec![mention.clone()]);
    assert_eq!(listed(s, &bob).await, vec![appreciated.clone()]);
    assert_eq!(listed(s, &carol).await, vec![]);
    assert!(
        s.has_notification(&alice.user_id, mention.notification_id)
            .await
            .unwrap()
    );
    assert!(
        !s.has_notification(&carol.user_id, mention.notification_id)
            .await
            .unwrap()
    );

    // A second one, newer: listed first.
    let mut b = model.batch();
    let m2 = model.send(&mut b, &bob, "again");
    let reply = note(&alice, &bob, &m2, NotificationKind::Reply, base + 2);
    b.push_notification(reply.clone());
    s.commit(&model.finish(b)).await.expect("commit");
    assert_eq!(
        listed(s, &alice).await,
        vec![reply.clone(), mention.clone()]
    );

    // Read marks: by id, idempotent; an unknown id and another user's are ignored.
    s.mark_notifications_read(&alice.user_id, &[mention.notification_id])
        .await
        .unwrap();
    s.mark_notifications_read(
        &alice.user_id,
        &[mention.notification_id, crate::model::new_id()],
    )
    .await
    .unwrap();
    s.mark_notifications_read(&carol.user_id, &[reply.notification_id])
        .await
        .unwrap();
    let read: Vec<bool> = listed(s, &alice).await.iter().map(|n| n.is_read).collect();
    assert_eq!(read, vec![false, true]);
    assert_eq!(
        listed(s, &carol).await,
        vec![],
        "a mark of another's id creates nothing"
    );
    assert!(
        !s.has_notification(&carol.user_id, reply.notification_id)
            .await
            .unwrap(),
        "a mark of another's id creates nothing"
    );

    // Written again by a later commit (same id): still one, still read.
    let mut b = model.batch();
    model.send(&mut b, &carol, "third");
    b.push_notification(mention.clone());
    s.commit(&model.finish(b)).await.expect("commit");
    let after = listed(s, &alice).await;
    assert_eq!(after.len(), 2);
    assert!(
        after
            .iter()
            .find(|n| n.notification_id == mention.notification_id)
            .is_some_and(|n| n.is_read),
        "{after:?}"
    );
}

/// `FailPoint::BeforeHead`: the commit is not durable, and neither is its notification.
async fn a_notification_of_a_commit_that_fails_before_it_is_durable_is_never_visible(
    s: &dyn Store,
    faults: &dyn FaultInjection,
) {
    let (alice, bob) = (user("alice"), user("bob"));
    let mut model = space(s, &alice).await;
    let mut b = model.batch();
    let m = model.send(&mut b, &bob, "lost");
    let n = note(
        &alice,
        &bob,
        &m,
        NotificationKind::Mention,
        Timestamp::now().0,
    );
    b.push_notification(n.clone());
    faults.fail_next_commit(FailPoint::BeforeHead);
    let err = s
        .commit(&model.finish(b))
        .await
        .expect_err("the injected failure");
    assert!(!matches!(err, EngineError::Fenced), "{err:?}");
    let claimed = s.claim(m.space_id).await.unwrap().expect("claimed");
    assert_eq!(
        claimed.snapshot.view.counters.head_seq, 0,
        "nothing of it is durable"
    );
    assert_eq!(listed(s, &alice).await, vec![]);
    assert!(
        !s.has_notification(&alice.user_id, n.notification_id)
            .await
            .unwrap()
    );
}

/// `FailPoint::AfterHead`: the commit is durable; its notification is there at the latest once
/// the next claim returns.
async fn a_notification_of_a_commit_that_fails_after_it_is_durable_is_there_after_the_claim(
    s: &dyn Store,
    faults: &dyn FaultInjection,
) {
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let mut model = space(s, &alice).await;
    let mut b = model.batch();
    let m = model.send(&mut b, &bob, "durable");
    let base = Timestamp::now().0;
    // Two users: their rows are in different partitions (CQL), so the half-applied phase 3
    // leaves at least one of them to the claim.
    let to_alice = note(&alice, &bob, &m, NotificationKind::Mention, base);
    let to_carol = note(&carol, &bob, &m, NotificationKind::Mention, base);
    b.push_notification(to_alice.clone());
    b.push_notification(to_carol.clone());
    faults.fail_next_commit(FailPoint::AfterHead);
    let err = s
        .commit(&model.finish(b))
        .await
        .expect_err("the injected failure");
    assert!(!matches!(err, EngineError::Fenced), "{err:?}");
    s.claim(m.space_id).await.unwrap().expect("claimed");
    assert_eq!(listed(s, &alice).await, vec![to_alice]);
    assert_eq!(listed(s, &carol).await, vec![to_carol]);
}

/// The trim bound: past [`NOTIFICATIONS_KEPT`], the oldest go, whether they came in one commit
/// or one at a time, and a list never shows more.
async fn each_user_keeps_the_newest_notifications_only(s: &dyn Store) {
    let (alice, bob) = (user("alice"), user("bob"));
    let mut model = space(s, &alice).await;
    let base = Timestamp::now().0;
    let extra = 5;
    let mut all = Vec::new();
    let mut b = model.batch();
    let m = model.send(&mut b, &bob, "many");
    for i in 0..(NOTIFICATIONS_KEPT + extra) {
        // Distinct causes: one appreciation per (made-up) appreciating user.
        let by = UserRef {
            user_id: format!("{}-{i}", bob.user_id),
            ..bob.clone()
        };
        let n = note(
            &alice,
            &by,
            &m,
            NotificationKind::MessageAppreciated,
            base + i as i64,
        );
        b.push_notification(n.clone());
        all.push(n);
    }
    s.commit(&model.finish(b)).await.expect("commit");
    // The write trims (CQL: in the background, so poll with a deadline), without any list.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for old in &all[..extra] {
        while s
            .has_notification(&alice.user_id, old.notification_id)
            .await
            .unwrap()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the write did not trim {}",
                old.id
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let mut newest = all.clone();
    Notification::newest_first(&mut newest);
    newest.truncate(NOTIFICATIONS_KEPT);
    assert_eq!(
        listed(s, &alice).await,
        newest,
        "the newest 200, newest first"
    );
    assert_eq!(
        listed(s, &alice).await,
        newest,
        "and again (trimmed by now)"
    );
    for old in &all[..extra] {
        assert!(
            !s.has_notification(&alice.user_id, old.notification_id)
                .await
                .unwrap(),
            "trimmed: {}",
            old.id
        );
    }
    // One more, later: the oldest kept one goes.
    let mut b = model.batch();
    let m2 = model.send(&mut b, &bob, "one more");
    let latest = note(&alice, &bob, &m2, NotificationKind::Reply, base + 10_000);
    b.push_notification(latest.clone());
    s.commit(&model.finish(b)).await.expect("commit");
    let list = listed(s, &alice).await;
    assert_eq!(list.len(), NOTIFICATIONS_KEPT);
    assert_eq!(list[0], latest);
    assert_eq!(list[1..], newest[..NOTIFICATIONS_KEPT - 1]);
}
