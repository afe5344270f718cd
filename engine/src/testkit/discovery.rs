//! Conformance cases of the discovery indexes and user stats (issue 12, disc; see
//! [`crate::discovery`]), run by [`super::store_conformance`] on every backend. The store is
//! shared with the other cases (and on CQL maybe with other runs), so every case uses words,
//! tags and users of its own and checks only its own spaces.

use std::collections::BTreeMap;

use super::{SpaceModel, counters, create, member, tick, user};
use crate::discovery::{ActivityCount, UserSpaceRow, UserSpaceStats, hour_of, indexed_words};
use crate::model::{
    Message, POWER_ADMIN, PostingPermission, Space, SpaceId, Timestamp, UserRef, Visibility, new_id,
};
use crate::store::{CommitBatch, FailPoint, FaultInjection, Store};

/// Every case of this file, in order.
pub(super) async fn run(s: &dyn Store, faults: &dyn FaultInjection) {
    eprintln!("store conformance: discovery_indexes_hold_public_spaces_only");
    discovery_indexes_hold_public_spaces_only(s).await;
    eprintln!("store conformance: activity_and_user_numbers_commit_with_their_batch");
    activity_and_user_numbers_commit_with_their_batch(s, faults).await;
    eprintln!("store conformance: a_space_without_the_user_index_gets_it_when_claimed");
    a_space_without_the_user_index_gets_it_when_claimed(s, faults).await;
}

/// A word no other case or run uses (letters only, so it is one word).
fn unique_word(stem: &str) -> String {
    let digits = new_id().simple().to_string();
    let letters: String = digits
        .chars()
        .rev()
        .take(12)
        .map(|c| char::from(b'a' + (c.to_digit(16).unwrap_or(0) as u8)))
        .collect();
    format!("{stem}{letters}")
}

async fn create_with(
    s: &dyn Store,
    creator: &UserRef,
    title: &str,
    description: &str,
    tags: &[&str],
    visibility: Visibility,
) -> (Space, crate::model::Member) {
    let space = Space {
        space_id: new_id(),
        title: title.into(),
        description: description.into(),
        visibility,
        creator: creator.clone(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        posting_permission: PostingPermission::Everyone,
        created_at: tick(),
    };
    let admin = member(creator, POWER_ADMIN);
    s.create_space(&space, &admin).await.expect("create_space");
    (space, admin)
}

/// `create_space` puts a public space (never a private one) in the newest-public list, its tags'
/// lists (newest first) and the word index (title words flagged), and marks its creator.
pub(super) async fn discovery_indexes_hold_public_spaces_only(s: &dyn Store) {
    let alice = user("alice");
    let tag = unique_word("tag");
    let word = unique_word("zz");
    let other = unique_word("zz");
    let (old, _) = create_with(
        s,
        &alice,
        &format!("{word} first"),
        &format!("about {other}"),
        &[&tag],
        Visibility::Public,
    )
    .await;
    let (hidden, _) = create_with(
        s,
        &alice,
        &format!("{word} secret"),
        &format!("{other} secret"),
        &[&tag],
        Visibility::Private,
    )
    .await;
    let (new, _) = create_with(
        s,
        &alice,
        "second",
        &format!("mentions {word}"),
        &[&tag, "common"],
        Visibility::Public,
    )
    .await;

    assert_eq!(
        s.spaces_with_tag(&tag, 50).await.unwrap(),
        vec![new.space_id, old.space_id],
        "public spaces with the tag, newest first"
    );
    assert_eq!(
        s.spaces_with_tag(&tag, 1).await.unwrap(),
        vec![new.space_id]
    );
    assert!(
        s.spaces_with_tag(&unique_word("none"), 50)
            .await
            .unwrap()
            .is_empty()
    );

    let newest = s.newest_public_spaces(500).await.unwrap();
    let pos = |id: SpaceId| newest.iter().position(|x| *x == id);
    assert!(
        pos(hidden.space_id).is_none(),
        "a private space is never listed"
    );
    assert!(
        pos(new.space_id).expect("listed") < pos(old.space_id).expect("listed"),
        "newest first"
    );

    // The word's full form and any prefix of it (two characters or more) find both spaces.
    let mut hits = s.search_words(&word, 100).await.unwrap();
    hits.sort_by_key(|h| h.1);
    assert_eq!(
        hits,
        vec![
            (word.clone(), old.space_id, true),
            (word.clone(), new.space_id, false)
        ],
        "title words flagged; the private space is not indexed"
    );
    let prefix: String = word.chars().take(word.len() - 3).collect();
    let by_prefix = s.search_words(&prefix, 1000).await.unwrap();
    assert!(by_prefix.iter().any(|h| h.1 == old.space_id));
    assert!(by_prefix.iter().all(|h| h.0.starts_with(&prefix)));
    assert!(by_prefix.iter().all(|h| h.1 != hidden.space_id));
    let longer = format!("{word}x");
    assert!(
        s.search_words(&longer, 100).await.unwrap().is_empty(),
        "a query longer than the word does not match it"
    );
    // Words are stored as `indexed_words` gives them.
    assert_eq!(
        indexed_words(&old).len(),
        4,
        "two title words, two description words"
    );

    let rows = s.user_space_rows(&alice.user_id).await.unwrap();
    let created: Vec<SpaceId> = rows
        .iter()
        .filter(|r| r.created)
        .map(|r| r.space_id)
        .collect();
    assert_eq!(
        created.len(),
        3,
        "every space created, private too: {rows:?}"
    );
    assert!(rows.iter().all(|r| r.stats.is_none()), "no numbers yet");
    assert!(
        s.user_space_rows(&user("nobody").user_id)
            .await
            .unwrap()
            .is_empty()
    );
}

fn numbers(u: &UserRef, messages: u64, words: u64, appreciations: u64) -> UserSpaceStats {
    UserSpaceStats {
        user_id: u.user_id.clone(),
        messages,
        word_count: words,
        appreciations,
    }
}

/// A commit's activity counts, user numbers and creator mark read back as committed; a commit
/// that fails before it is durable leaves the old values, one that fails after it is durable is
/// finished by the next claim (CQL: they are phase-3 rows, `dv…`).
pub(super) async fn activity_and_user_numbers_commit_with_their_batch(
    s: &dyn Store,
    faults: &dyn FaultInjection,
) {
    let alice = user("alice");
    let bob = user("bob");
    let (sp, _) = create(s, &alice).await;
    let id = sp.space_id;
    let hour = hour_of(Timestamp::now()) - 1_000; // an hour no other case writes
    let epoch = s.claim(id).await.unwrap().expect("claimed").epoch;
    let batch = |epoch, n: u64| CommitBatch {
        space_id: id,
        epoch,
        counters: counters(0, 0, 1),
        hourly_activity: vec![
            ActivityCount { hour, count: n },
            ActivityCount {
                hour: hour + 1,
                count: 1,
            },
        ],
        user_stats: vec![numbers(&bob, n, 2 * n, n + 1)],
        creator_mark: Some(alice.user_id.clone()),
        ..Default::default()
    };
    s.commit(&batch(epoch, 3)).await.expect("commit");
    assert_eq!(s.space_hour_activity(id, hour).await.unwrap(), 3);
    assert_eq!(s.space_hour_activity(id, hour + 1).await.unwrap(), 1);
    assert_eq!(s.space_hour_activity(id, hour + 2).await.unwrap(), 0);
    assert!(s.activity_in_hour(hour).await.unwrap().contains(&(id, 3)));
    assert_eq!(
        s.get_user_space_stats(&bob.user_id, id).await.unwrap(),
        Some(numbers(&bob, 3, 6, 4))
    );
    assert_eq!(
        s.user_space_rows(&bob.user_id).await.unwrap(),
        vec![UserSpaceRow {
            space_id: id,
            created: false,
            stats: Some(numbers(&bob, 3, 6, 4)),
        }]
    );
    assert_eq!(
        s.user_space_rows(&alice.user_id).await.unwrap(),
        vec![UserSpaceRow {
            space_id: id,
            created: true,
            stats: None,
        }],
        "the creator's mark, written again, is still one row"
    );

    faults.fail_next_commit(FailPoint::BeforeHead);
    s.commit(&batch(epoch, 5)).await.expect_err("injected");
    assert_eq!(
        s.space_hour_activity(id, hour).await.unwrap(),
        3,
        "not durable"
    );
    assert_eq!(
        s.get_user_space_stats(&bob.user_id, id).await.unwrap(),
        Some(numbers(&bob, 3, 6, 4))
    );

    let epoch = s.claim(id).await.unwrap().expect("claimed").epoch;
    faults.fail_next_commit(FailPoint::AfterHead);
    let _ = s.commit(&batch(epoch, 7)).await;
    s.claim(id).await.unwrap().expect("claimed");
    assert_eq!(
        s.space_hour_activity(id, hour).await.unwrap(),
        7,
        "finished by the claim"
    );
    assert!(s.activity_in_hour(hour).await.unwrap().contains(&(id, 7)));
    assert_eq!(
        s.get_user_space_stats(&bob.user_id, id).await.unwrap(),
        Some(numbers(&bob, 7, 14, 8))
    );
}

/// A space whose stats were stored before the user index (`user_index` false) gets its users'
/// numbers from one scan of its messages when claimed (`load_or_compute_for`): messages, words
/// and appreciations received per sender, plus the creator's mark; a migration that fails
/// before it is durable is done again by the next claim, and once done the stats are loaded.
pub(super) async fn a_space_without_the_user_index_gets_it_when_claimed(
    s: &dyn Store,
    faults: &dyn FaultInjection,
) {
    let alice = user("alice");
    let bob = user("bob");
    // A space that is in no discovery index, as a public one created before them: created
    // private here (never indexed), and given to the migration as public.
    let tag = unique_word("old");
    let word = unique_word("zz");
    let (sp, alice_m) = create_with(
        s,
        &alice,
        &format!("{word} old"),
        "from before",
        &[&tag],
        Visibility::Private,
    )
    .await;
    let as_public = Space {
        visibility: Visibility::Public,
        ..sp.clone()
    };
    let id = sp.space_id;
    let epoch = s.claim(id).await.unwrap().expect("claimed").epoch;
    let mut model = SpaceModel::new(&sp, &alice_m, epoch);
    model.seed(s, &alice, &bob).await;
    // As stored before the index: stats without the flag, no user rows.
    let mut b = model.finish(model.batch());
    if let Some(st) = b.stats.as_mut() {
        st.user_index = false;
    }
    s.commit(&b).await.expect("old stats");
    assert!(!s.space_stats(id).await.unwrap().expect("stats").user_index);
    assert_eq!(
        s.get_user_space_stats(&bob.user_id, id).await.unwrap(),
        None
    );

    let want = |u: &UserRef| {
        let mine: Vec<&Message> = model
            .messages
            .values()
            .filter(|m| m.sender_id == u.user_id)
            .collect();
        numbers(
            u,
            mine.len() as u64,
            mine.iter().map(|m| u64::from(m.word_count)).sum(),
            mine.iter().map(|m| u64::from(m.appreciation_count)).sum(),
        )
    };
    let alice_want = want(&alice);
    assert_eq!(
        alice_want.appreciations, 4,
        "the seed appreciates Alice's messages 4 times"
    );

    let claimed = s.claim(id).await.unwrap().expect("claimed");
    faults.fail_next_commit(FailPoint::BeforeHead);
    crate::stats::load_or_compute_for(
        s,
        id,
        claimed.epoch,
        claimed.snapshot.view.counters,
        Some(&as_public),
    )
    .await
    .expect_err("injected");
    assert!(!s.space_stats(id).await.unwrap().expect("stats").user_index);

    assert!(s.spaces_with_tag(&tag, 10).await.unwrap().is_empty());
    let claimed = s.claim(id).await.unwrap().expect("claimed");
    let (stats, computed, _) = crate::stats::load_or_compute_for(
        s,
        id,
        claimed.epoch,
        claimed.snapshot.view.counters,
        Some(&as_public),
    )
    .await
    .expect("the migration");
    assert!(stats.user_index);
    assert_eq!(
        s.spaces_with_tag(&tag, 10).await.unwrap(),
        vec![id],
        "the public space enters the discovery indexes"
    );
    assert!(
        s.search_words(&word, 10)
            .await
            .unwrap()
            .iter()
            .any(|h| h.1 == id)
    );
    assert!(s.newest_public_spaces(500).await.unwrap().contains(&id));
    assert_eq!(computed.len(), 2);
    assert_eq!(
        s.get_user_space_stats(&alice.user_id, id).await.unwrap(),
        Some(alice_want.clone())
    );
    assert_eq!(
        s.get_user_space_stats(&bob.user_id, id).await.unwrap(),
        Some(want(&bob))
    );
    let mut rows: BTreeMap<String, UserSpaceRow> = BTreeMap::new();
    for u in [&alice, &bob] {
        let r = s.user_space_rows(&u.user_id).await.unwrap();
        assert_eq!(r.len(), 1);
        rows.insert(u.user_id.clone(), r[0].clone());
    }
    assert!(rows[&alice.user_id].created);
    assert!(!rows[&bob.user_id].created);
    let claimed = s.claim(id).await.unwrap().expect("claimed");
    let (_, computed, _) = crate::stats::load_or_compute_for(
        s,
        id,
        claimed.epoch,
        claimed.snapshot.view.counters,
        Some(&as_public),
    )
    .await
    .unwrap();
    assert!(computed.is_empty(), "loaded, not computed again");
}
