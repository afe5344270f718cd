//! Conformance cases of message search's store call (issue 12; see [`crate::search`]):
//! [`Store::scan_spaces`], the paged walk of every space the indexer's catch-up makes.

use std::collections::HashSet;

use super::{counters, create, created, message, put_new, user};
use crate::model::SpaceId;
use crate::store::{CommitBatch, Store};

/// Runs the search cases against `s` (called from `testkit::store_conformance`).
pub async fn cases(s: &dyn Store) {
    eprintln!("store conformance: search::a_scan_of_spaces_lists_each_once_with_its_head");
    a_scan_of_spaces_lists_each_once_with_its_head(s).await;
}

async fn a_scan_of_spaces_lists_each_once_with_its_head(s: &dyn Store) {
    let alice = user("alice");
    let mut mine: Vec<SpaceId> = Vec::new();
    for _ in 0..5 {
        mine.push(create(s, &alice).await.0.space_id);
    }
    // One of them with a message: its head is 1.
    let (space, _) = create(s, &alice).await;
    let claimed = s.claim(space.space_id).await.unwrap().unwrap();
    let m = message(&space, 1, &alice, "scanned");
    let mut b = CommitBatch {
        space_id: space.space_id,
        epoch: claimed.epoch,
        events: vec![created(&m)],
        counters: counters(1, 1, 1),
        ..Default::default()
    };
    b.push_message_write(put_new(&m));
    s.commit(&b).await.unwrap();
    mine.push(space.space_id);

    assert!(s.scan_spaces(None, 0).await.unwrap().is_empty());
    let mut seen = HashSet::new();
    let mut heads = Vec::new();
    let mut after = None;
    loop {
        let page = s.scan_spaces(after, 3).await.unwrap();
        assert!(page.len() <= 3, "a page holds at most `limit` spaces");
        for v in &page {
            assert!(
                seen.insert(v.space.space_id),
                "{} listed twice",
                v.space.space_id
            );
            if mine.contains(&v.space.space_id) {
                heads.push((v.space.space_id, v.counters.head_seq));
            }
        }
        if page.len() < 3 {
            break;
        }
        after = page.last().map(|v| v.space.space_id);
    }
    for id in &mine {
        assert!(seen.contains(id), "space {id} missing from the scan");
    }
    heads.sort();
    let mut want: Vec<_> = mine
        .iter()
        .map(|id| (*id, u64::from(*id == space.space_id)))
        .collect();
    want.sort();
    assert_eq!(heads, want, "each space with its head seq");
}
