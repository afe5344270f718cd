//! `Fanout` (engine/src/bus/mod.rs): every commit reaches a node's subscribers once and in seq
//! order, whether it was committed on this node or arrived from another one; a gap in what
//! arrives (a bus message lost, an owner change) is filled from the store before anything after
//! it is delivered; duplicates are dropped; a space nobody on the node watches costs nothing.
//!
//! Events "from another node" are fed to `Fanout::received` exactly as the NATS bus does, after
//! real commits through the engine put them in the real embedded store. Every wait is bounded.

use std::time::Duration;

use spacecast_engine::event::SpaceEvent;
use spacecast_engine::hub::HubItem;
use spacecast_engine::model::{PostingPermission, Seq, SpaceId, UserRef, Visibility};
use spacecast_engine::store::embedded::EmbeddedStore;
use spacecast_engine::{Engine, EngineConfig, NewSpace, SendMessage};
use spacecast_observability::Metrics;
use tokio::sync::broadcast;

const WAIT: Duration = Duration::from_secs(10);

fn ada() -> UserRef {
    UserRef {
        user_id: "ada".into(),
        username: "Ada".into(),
        profile_picture: String::new(),
    }
}

/// An engine on a fresh embedded store, a space with `n` messages, and its stored events.
async fn space_with(n: usize) -> (tempfile::TempDir, Engine, SpaceId, Vec<SpaceEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), Metrics::new()).unwrap();
    let engine = Engine::start(EngineConfig::default(), store, Metrics::new())
        .await
        .unwrap();
    let space = engine
        .create_space(
            NewSpace {
                title: "t".into(),
                description: String::new(),
                visibility: Visibility::Public,
                tags: vec![],
                posting_permission: PostingPermission::Everyone,
            },
            ada(),
        )
        .await
        .unwrap()
        .space
        .space_id;
    for i in 0..n {
        engine
            .space(space)
            .send(SendMessage {
                message_id: None,
                sender: ada(),
                content: Some(format!("m{i}")),
                media_url: None,
                media_type: None,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let log = engine.reader(space).event_log("ada").await.unwrap();
    let events = log.events_after(0, 1000).await.unwrap();
    assert_eq!(events.len(), n);
    (dir, engine, space, events)
}

/// The seqs of the next hub item, or `None` if nothing arrives in a short while.
async fn next_seqs(rx: &mut broadcast::Receiver<HubItem>, wait: Duration) -> Option<Vec<Seq>> {
    match tokio::time::timeout(wait, rx.recv()).await {
        Ok(Ok(HubItem::Events(evs))) => Some(evs.iter().map(|p| p.event.seq).collect()),
        Ok(Ok(HubItem::Typing(_) | HubItem::Presence(_))) => {
            panic!("unexpected typing or presence")
        }
        Ok(Err(e)) => panic!("hub receive failed: {e}"),
        Err(_) => None,
    }
}

fn pick(events: &[SpaceEvent], seqs: &[Seq]) -> Vec<SpaceEvent> {
    events
        .iter()
        .filter(|e| seqs.contains(&e.seq))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_gap_in_received_commits_is_filled_from_the_store_and_duplicates_are_dropped() {
    let (_dir, engine, space, events) = space_with(6).await;
    let mut rx = engine.subscribe(space).await.unwrap();
    let fanout = engine.fanout();

    // The first commit seen since watching is delivered as is (sessions replayed the past).
    fanout.received(space, pick(&events, &[2])).await;
    assert_eq!(next_seqs(&mut rx, WAIT).await, Some(vec![2]));
    // 3 and 4 were lost on the way: they come from the store, before 5.
    fanout.received(space, pick(&events, &[5])).await;
    assert_eq!(next_seqs(&mut rx, WAIT).await, Some(vec![3, 4]));
    assert_eq!(next_seqs(&mut rx, WAIT).await, Some(vec![5]));
    // A duplicate, and an overlap: only what is new is delivered.
    fanout.received(space, pick(&events, &[4, 5])).await;
    fanout.received(space, pick(&events, &[5, 6])).await;
    assert_eq!(next_seqs(&mut rx, WAIT).await, Some(vec![6]));
    assert_eq!(
        next_seqs(&mut rx, Duration::from_millis(200)).await,
        None,
        "nothing else"
    );
    assert!(engine.metrics().fanout_gap_repairs.get() >= 1);
    engine.unsubscribe(space);
}

#[tokio::test]
async fn local_commits_and_received_ones_are_delivered_once_in_order() {
    let (_dir, engine, space, events) = space_with(3).await;
    let mut rx = engine.subscribe(space).await.unwrap();
    // A commit made here (seq 4) is delivered; the same events arriving again over the bus, and
    // an older one, are not.
    engine
        .space(space)
        .send(SendMessage {
            message_id: None,
            sender: ada(),
            content: Some("local".into()),
            media_url: None,
            media_type: None,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next_seqs(&mut rx, WAIT).await, Some(vec![4]));
    engine.fanout().received(space, pick(&events, &[3])).await;
    assert_eq!(next_seqs(&mut rx, Duration::from_millis(200)).await, None);
    engine.unsubscribe(space);
}

#[tokio::test]
async fn a_space_nobody_watches_is_forgotten() {
    let (_dir, engine, space, events) = space_with(2).await;
    let rx1 = engine.subscribe(space).await.unwrap();
    let rx2 = engine.subscribe(space).await.unwrap();
    assert_eq!(engine.fanout().watched(), 1);
    drop(rx1);
    engine.unsubscribe(space);
    assert_eq!(engine.fanout().watched(), 1, "one subscriber left");
    drop(rx2);
    engine.unsubscribe(space);
    assert_eq!(engine.fanout().watched(), 0);
    // Events for an unwatched space go nowhere and are not tracked.
    engine.fanout().received(space, events).await;
    assert_eq!(engine.fanout().watched(), 0);
}
