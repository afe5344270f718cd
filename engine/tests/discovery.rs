//! The engine's discovery reads (issue 12, `spacecast_engine::discovery`) over a real embedded
//! store, with the faults that would break their guarantees injected at the store: index
//! entries and activity of a private space (as a half-failed CQL `create_space` or a space made
//! private would leave them) never make it into a list, and a user's numbers are those the space
//! actor commits.

use std::sync::Arc;

use spacecast_engine::discovery::{ActivityCount, UserStats, hour_of};
use spacecast_engine::model::{
    Member, POWER_ADMIN, PostingPermission, Space, SpaceId, Timestamp, UserRef, Visibility, new_id,
};
use spacecast_engine::store::embedded::EmbeddedStore;
use spacecast_engine::store::{CommitBatch, Store};
use spacecast_engine::{Engine, EngineConfig, NewSpace, SendMessage};
use spacecast_observability::Metrics;

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

fn ids(views: &[spacecast_engine::model::SpaceView]) -> Vec<SpaceId> {
    views.iter().map(|v| v.space.space_id).collect()
}

#[tokio::test]
async fn a_private_space_is_never_listed_even_with_index_entries_and_activity() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = EmbeddedStore::open(dir.path(), Metrics::new()).unwrap();
    let ada = user("ada");
    // A private space, written straight to the store...
    let private = Space {
        space_id: new_id(),
        title: "Leaky secret".into(),
        description: "never to be found".into(),
        visibility: Visibility::Private,
        creator: ada.clone(),
        tags: vec!["leak".into()],
        posting_permission: PostingPermission::Everyone,
        created_at: Timestamp::now(),
    };
    let admin = Member {
        user: ada.clone(),
        power_level: POWER_ADMIN,
        joined_at: Timestamp::now(),
    };
    store.create_space(&private, &admin).await.unwrap();
    // ... then the fault: its discovery entries and lots of activity, as if it were public.
    let epoch = store.claim(private.space_id).await.unwrap().unwrap().epoch;
    store
        .commit(&CommitBatch {
            space_id: private.space_id,
            epoch,
            counters: spacecast_engine::testkit::counters(0, 0, 1),
            index_space: Some(Space {
                visibility: Visibility::Public,
                ..private.clone()
            }),
            hourly_activity: vec![ActivityCount {
                hour: hour_of(Timestamp::now()),
                count: 1000,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        store.spaces_with_tag("leak", 10).await.unwrap(),
        vec![private.space_id],
        "the injected entry is there"
    );

    let engine = Engine::start(EngineConfig::default(), store.clone(), Metrics::new())
        .await
        .unwrap();
    let public = engine
        .create_space(
            NewSpace {
                title: "Open leak talk".into(),
                description: "public".into(),
                visibility: Visibility::Public,
                tags: vec!["leak".into()],
                posting_permission: PostingPermission::Everyone,
            },
            ada.clone(),
        )
        .await
        .unwrap();
    let pid = public.space.space_id;
    engine.space(pid).send(text(&ada, "hello")).await.unwrap();

    assert_eq!(ids(&engine.trending_spaces(10).await.unwrap()), [pid]);
    assert_eq!(ids(&engine.spaces_with_tag("#LEAK").await.unwrap()), [pid]);
    assert_eq!(ids(&engine.search_spaces("leak").await.unwrap()), [pid]);
    assert!(engine.search_spaces("secret").await.unwrap().is_empty());
    let bob = user("bob");
    assert_eq!(
        ids(&engine.recommended_spaces(&bob.user_id, 10).await.unwrap()),
        [pid]
    );
    assert!(
        engine
            .recommended_spaces(&ada.user_id, 10)
            .await
            .unwrap()
            .is_empty(),
        "ada is in both"
    );

    // Her numbers: two spaces created, one message of one word.
    assert_eq!(
        engine.user_stats(&ada.user_id).await.unwrap(),
        UserStats {
            spaces_created: 2,
            spaces_participated: 1,
            total_words_contributed: 1,
            total_appreciations_received: 0,
        }
    );
    assert_eq!(
        engine.user_stats("nobody").await.unwrap(),
        UserStats::default()
    );
    engine.shutdown(std::time::Duration::from_secs(10)).await;
}
