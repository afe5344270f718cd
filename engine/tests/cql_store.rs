//! The storage conformance suite on the CQL store, against the real Apache Cassandra 5 that
//! `scripts/cassandra.sh up` starts (the README's test command runs it first). A missing server
//! fails these tests; it never skips them.
//!
//! `SPACECAST_TEST_CQL_NODES` (default `127.0.0.1:9042`) names the server. Each test works in a
//! keyspace of its own and drops it at the end.

use std::sync::Arc;

use spacecast_engine::EngineError;
use spacecast_engine::store::Store;
use spacecast_engine::store::cql::{CqlConfig, CqlStore, migrate, schema};
use spacecast_engine::testkit::store_conformance;

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
    let store = CqlStore::connect(&cfg)
        .await
        .expect("a migrated keyspace is accepted");
    store.ping().await.expect("ping");
    drop_keyspace(&cfg).await;
}
