//! The CQL store: ScyllaDB (or Apache Cassandra) through the `scylla` driver.
//!
//! Schema and migrations are in [`schema`]. This module maps the [`Store`] trait onto it.
//!
//! # The head row
//! Each space has one row in `space_heads_by_id`: its fencing `epoch`, its `head_seq` and
//! counters, `commit_no` (the number of the last commit or claim), and `pending` — the
//! existing-row changes of the last commit (`pending_no`), compactly encoded. It is written only
//! by lightweight transactions (Paxos), so it is linearizable: `IF NOT EXISTS` when a space is
//! created, `IF epoch = ? AND commit_no = ?` after. Reads return only what is at or below its
//! `head_seq`.
//!
//! # Writes
//! A commit numbered `n` (the head's `commit_no` + 1) writes every row with the write timestamp
//! [`write_ts`]`(n)` = 2^62 + `n`, far above any wall-clock microsecond timestamp, and is three
//! phases:
//! 1. **New rows only**: the events (seqs above the head), the messages created by the batch
//!    (with their `top_level` count, `unread.rs`), and their `message_by_id` entries; one unlogged batch per partition, all
//!    partitions concurrently. Nothing of it is visible: it is above the head.
//! 2. **The head**: `UPDATE … SET head_seq, counters, [stats,] commit_no = n, pending = <phase 3> IF epoch =
//!    <batch epoch> AND commit_no = n - 1`. Applied: the commit is durable and its events are
//!    visible. Not applied because the epoch moved: `Fenced`.
//! 3. **Existing rows**: message deletes (with their reaction rows), every reaction row, count,
//!    like and appreciation-index write (a reaction writes its own row and its key's count
//!    cell, never the message's other columns or other reactions), member upserts and removals
//!    (a member row and its `spaces_by_user` entry deleted), the space record after a settings
//!    change, reply counts, the content columns an edit or a
//!    redaction rewrites, edit-history rows (added, or a message's partition deleted), and the
//!    batch's idempotency keys (`USING TTL`), contributor rows of the space stats, read markers
//!    and the space's activity (`unread.rs`) — exactly what `pending` describes. Edit history and
//!    keys are new rows, but they live outside the seq-addressed tables the claim's tombstones
//!    cover, so they are written only once the head has moved. If this phase
//!    fails the commit is durable but `Unsettled`: the writer acknowledges it and reloads the
//!    space; the reload's `claim` applies `pending` again (so does the next commit of the same
//!    writer through this store, before its own phase 2).
//!
//! So a commit that fails before its head moves changes nothing visible, and one that fails after
//! it is finished by the next claim: no visible change is ever described by no event.
//!
//! # Fencing
//! [`Store::claim`] reads the head (`LOCAL_SERIAL`), then `SET epoch = e + 1, commit_no = c + 2
//! IF epoch = e AND commit_no = c` (re-reading and retrying on contention), then applies
//! `pending`, then deletes the message rows above the head (a range tombstone in the head's bucket
//! and a partition tombstone on the next bucket) at [`write_ts`]`(c + 2)`. A writer that claimed
//! before it (epoch ≤ e) can still have a commit in flight, numbered at most `c + 1`: its head
//! update cannot apply any more (the epoch moved), and each of its phase-1 writes, whenever it
//! reaches the database, loses to a write with a larger timestamp:
//! - the events and messages the new writer commits at the same seqs carry `write_ts(≥ c + 3)`;
//! - a message row it wrote at a seq where the new writer puts no message (a like, a delete) is
//!   shadowed by the claim's tombstone at `write_ts(c + 2)`; the tombstone covers every seq such a
//!   commit can use, as a commit holds at most [`schema::BUCKET_SEQS`] events and starts right
//!   above the head the claim read;
//! - its `message_by_id` entries may survive, so `get_message` checks that the row at the seq
//!   really is that message.
//!
//! A stale writer applying the phase 3 of a commit that *was* accepted (it paused after the head
//! moved) writes what `pending` says with that commit's timestamp: the claimer applied the same
//! writes already, and anything changed since carries a larger timestamp and wins. Rows written
//! by schema v1 (wall-clock timestamps) lose to every write of this scheme.
//!
//! Timing assumptions: none for safety (no clocks, no leases: the epoch and the timestamps decide).
//! What it costs is one Paxos round per commit on the head row (BENCHMARKS.md, "Fencing the CQL
//! commit"). Operators must keep Cassandra's `user_timestamps_enabled` guardrail on (the default)
//! and its `maximum_timestamp_*_threshold` guardrails off (the default), and a row fixed by hand
//! must be written `USING TIMESTAMP` above the space's.
//!
//! Consistency is `LOCAL_QUORUM` for reads and writes, `LOCAL_SERIAL` for the head row's Paxos and
//! for the head reads of `claim` and of a commit that does not know the head yet.

mod discovery;
mod notifications;
pub mod schema;
mod unread;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt, future};
use scylla::DeserializeRow;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlTimestamp, CqlValue, MaybeUnset, Row};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use self::schema::{
    BUCKET_SEQS, CURRENT_VERSION, MIGRATIONS, bucket, keyspace_ddl, valid_keyspace,
};
use super::{
    Claimed, CommitBatch, Direction, FailPoint, HistoryWrite, MessageOrder, MessageWrite,
    SpaceSnapshot, Store,
};
use crate::error::{EngineError, Result};
use crate::event::{APPRECIATE, EventKind, SpaceEvent};
use crate::model::{
    Like, MSGTYPE_TEXT, MediaType, Member, Message, MessageId, MessageVersion, PostingPermission,
    Seq, Space, SpaceCounters, SpaceId, SpaceView, Timestamp, UserRef, Visibility,
};
use crate::stats::{ContributorStats, SpaceStats};

/// How to reach the cluster.
#[derive(Clone, Debug)]
pub struct CqlConfig {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// The keyspace's `replication` map, used by `migrate` only.
    pub replication: String,
    /// Per-request timeout; a request that takes longer fails (and the send is refused, 503).
    pub request_timeout: Duration,
}

impl Default for CqlConfig {
    fn default() -> Self {
        CqlConfig {
            nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "spacecast".into(),
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Per-statement timeout of [`migrate`] (schema changes; see there).
pub const MIGRATION_TIMEOUT: Duration = Duration::from_secs(60);

fn unavailable(e: impl std::fmt::Display) -> EngineError {
    EngineError::StoreUnavailable(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("corrupt row: {e}"))
}

async fn connect_session(cfg: &CqlConfig) -> Result<Session> {
    let profile = ExecutionProfile::builder()
        .consistency(Consistency::LocalQuorum)
        .request_timeout(Some(cfg.request_timeout))
        .build();
    SessionBuilder::new()
        .known_nodes(&cfg.nodes)
        .connection_timeout(Duration::from_secs(5))
        .default_execution_profile_handle(profile.into_handle())
        .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
        .build()
        .await
        .map_err(|e| unavailable(format!("cannot connect to CQL nodes {:?}: {e}", cfg.nodes)))
}

/// Whether the server is ScyllaDB (it has `system.scylla_local`).
async fn is_scylla(session: &Session) -> Result<bool> {
    let rows = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = 'system' AND table_name = 'scylla_local'",
            (),
        )
        .await
        .map_err(unavailable)?
        .into_rows_result()
        .map_err(unavailable)?;
    Ok(rows.rows_num() > 0)
}

/// The schema version applied in `keyspace` (0 if the keyspace or its migrations table does not
/// exist yet).
async fn applied_version(session: &Session, keyspace: &str) -> Result<i32> {
    let exists = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?",
            (keyspace, schema::tables::SCHEMA_MIGRATIONS),
        )
        .await
        .map_err(unavailable)?
        .into_rows_result()
        .map_err(unavailable)?
        .rows_num()
        > 0;
    if !exists {
        return Ok(0);
    }
    let q = format!(
        "SELECT version FROM {keyspace}.{}",
        schema::tables::SCHEMA_MIGRATIONS
    );
    let rows = session
        .query_unpaged(q, ())
        .await
        .map_err(unavailable)?
        .into_rows_result()
        .map_err(unavailable)?;
    let mut max = 0;
    for row in rows.rows::<(i32,)>().map_err(corrupt)? {
        max = max.max(row.map_err(corrupt)?.0);
    }
    Ok(max)
}

/// Creates the keyspace if needed and applies every missing migration. Idempotent: safe to run
/// again, and concurrently with other `migrate` runs (every statement is `IF NOT EXISTS`).
/// Returns the schema version now applied.
///
/// # Errors
/// `StoreUnavailable` when the cluster cannot be reached or refuses a statement.
pub async fn migrate(cfg: &CqlConfig) -> Result<i32> {
    if !valid_keyspace(&cfg.keyspace) {
        return Err(EngineError::Invalid(
            "invalid_keyspace",
            format!(
                "keyspace {:?}: use lowercase letters, digits and _",
                cfg.keyspace
            ),
        ));
    }
    // Schema changes wait for the cluster to agree on the new schema: seconds each on a busy
    // server, more than a send's timeout. Every statement is idempotent, so one that times out
    // anyway is applied by the next run.
    let session = connect_session(&CqlConfig {
        request_timeout: cfg.request_timeout.max(MIGRATION_TIMEOUT),
        ..cfg.clone()
    })
    .await?;
    let ks = &cfg.keyspace;
    let scylla = is_scylla(&session).await?;
    session
        .query_unpaged(keyspace_ddl(ks, &cfg.replication, scylla), ())
        .await
        .map_err(unavailable)?;
    let current = applied_version(&session, ks).await?;
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        for stmt in m.statements {
            match session.query_unpaged(stmt.replace("{ks}", ks), ()).await {
                Ok(_) => {}
                // Added by an earlier or concurrent run: done.
                Err(e)
                    if schema::is_add_column(stmt)
                        && schema::column_exists_error(&e.to_string()) => {}
                Err(e) => return Err(unavailable(format!("migration {}: {e}", m.version))),
            }
        }
        if m.version == 4 {
            migrate_likes(&session, ks).await?;
        }
        let record = format!(
            "INSERT INTO {ks}.{} (version, description, applied_at) VALUES (?, ?, ?)",
            schema::tables::SCHEMA_MIGRATIONS
        );
        session
            .query_unpaged(
                record,
                (m.version, m.description, CqlTimestamp(Timestamp::now().0)),
            )
            .await
            .map_err(unavailable)?;
        tracing::info!(keyspace = %ks, version = m.version, "applied CQL migration");
    }
    session
        .await_schema_agreement()
        .await
        .map_err(unavailable)?;
    Ok(CURRENT_VERSION.max(current))
}

/// Schema v4's data step: copies the likes of every message (Space7's `likes` map, which
/// schema v1–v3 kept as the only record of appreciations) to `reactions_by_message` rows, which
/// the space actor reads to know who appreciates what. Written at [`write_ts`]`(0)`, below every
/// commit's timestamp, so an appreciation removed by a commit since (at `write_ts(n ≥ 1)`) stays
/// removed and running it again, or late, changes nothing. One scan of `messages_by_space`.
async fn migrate_likes(session: &Session, ks: &str) -> Result<()> {
    let select = format!(
        "SELECT space_id, message_id, likes FROM {ks}.{}",
        schema::tables::MESSAGES_BY_SPACE
    );
    let mut insert = session
        .prepare(format!(
            "INSERT INTO {ks}.{} (space_id, message_id, reaction_key, user_id, seq) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP {}",
            schema::tables::REACTIONS_BY_MESSAGE,
            write_ts(0)
        ))
        .await
        .map_err(unavailable)?;
    insert.set_consistency(Consistency::LocalQuorum);
    type LikesRow = (Uuid, Option<Uuid>, Option<HashMap<String, i64>>);
    let mut rows = session
        .query_iter(select, ())
        .await
        .map_err(unavailable)?
        .rows_stream::<LikesRow>()
        .map_err(corrupt)?;
    let mut moved = 0usize;
    while let Some(row) = rows.next().await {
        let (space_id, message_id, likes) = row.map_err(unavailable)?;
        let (Some(message_id), Some(likes)) = (message_id, likes) else {
            continue;
        };
        future::try_join_all(likes.into_iter().map(|(user, seq)| {
            session.execute_unpaged(&insert, (space_id, message_id, APPRECIATE, user, seq))
        }))
        .await
        .map_err(unavailable)?;
        moved += 1;
    }
    if moved > 0 {
        tracing::info!(keyspace = %ks, messages = moved, "copied likes to reaction rows");
    }
    Ok(())
}

/// The write timestamp of every row write of commit (or claim) number `commit_no`: above any
/// wall-clock microsecond timestamp (2^62 µs is ≈ 146,000 years after 1970), and ordered by
/// commit number. See the module doc.
pub fn write_ts(commit_no: u64) -> i64 {
    const BASE: i64 = 1 << 62;
    BASE + commit_no.min((1 << 62) - 1) as i64
}

/// How often `claim` re-reads and retries when its conditional write loses a race.
const CLAIM_ATTEMPTS: usize = 5;

/// Spaces whose head this store remembers (see `CqlStore::known`); beyond this it forgets all of
/// them, and the next commit of each reads its head once.
const KNOWN_HEADS: usize = 100_000;

/// Prepared statements, one per operation.
struct Statements {
    insert_space: PreparedStatement,
    select_space: PreparedStatement,
    select_v1_counters: PreparedStatement,
    select_head: PreparedStatement,
    select_head_serial: PreparedStatement,
    insert_head: PreparedStatement,
    claim_head: PreparedStatement,
    commit_head: PreparedStatement,
    commit_head_stats: PreparedStatement,
    select_stats: PreparedStatement,
    upsert_contributor: PreparedStatement,
    select_contributor: PreparedStatement,
    select_contributors: PreparedStatement,
    upsert_member: PreparedStatement,
    select_member: PreparedStatement,
    select_members: PreparedStatement,
    select_members_page: PreparedStatement,
    select_members_after: PreparedStatement,
    delete_member: PreparedStatement,
    delete_space_of_user: PreparedStatement,
    update_space: PreparedStatement,
    insert_space_of_user: PreparedStatement,
    select_spaces_of_user: PreparedStatement,
    insert_event: PreparedStatement,
    select_events: PreparedStatement,
    upsert_message: PreparedStatement,
    set_reply_count: PreparedStatement,
    insert_key: PreparedStatement,
    select_key: PreparedStatement,
    set_revision: PreparedStatement,
    insert_history: PreparedStatement,
    delete_history: PreparedStatement,
    select_history: PreparedStatement,
    set_appreciation: PreparedStatement,
    insert_reaction: PreparedStatement,
    delete_reaction: PreparedStatement,
    delete_reactions_of: PreparedStatement,
    select_reaction: PreparedStatement,
    select_user_reactions: PreparedStatement,
    set_reaction_count: PreparedStatement,
    delete_reaction_count: PreparedStatement,
    set_like: PreparedStatement,
    delete_like: PreparedStatement,
    delete_message: PreparedStatement,
    delete_messages_above: PreparedStatement,
    delete_message_bucket: PreparedStatement,
    select_message: PreparedStatement,
    select_messages: PreparedStatement,
    select_messages_between_desc: PreparedStatement,
    select_messages_between_asc: PreparedStatement,
    insert_message_by_id: PreparedStatement,
    delete_message_by_id: PreparedStatement,
    select_message_by_id: PreparedStatement,
    insert_appreciated: PreparedStatement,
    delete_appreciated: PreparedStatement,
    select_appreciated: PreparedStatement,
    disc: discovery::DiscStatements,
}

impl Statements {
    async fn prepare(s: &Session, ks: &str) -> Result<Self> {
        let p = |cql: String| async move {
            let mut st = s.prepare(cql).await.map_err(unavailable)?;
            // Every plain write is keyed by ids and seqs and carries its commit's timestamp:
            // retrying it is safe.
            st.set_is_idempotent(true);
            Ok::<_, EngineError>(st)
        };
        // A conditional write is not idempotent: a retry of one that applied does not apply.
        let lwt = |cql: String| async move {
            let mut st = s.prepare(cql).await.map_err(unavailable)?;
            st.set_is_idempotent(false);
            st.set_serial_consistency(Some(SerialConsistency::LocalSerial));
            Ok::<_, EngineError>(st)
        };
        let head_cols =
            "epoch, head_seq, message_count, member_count, commit_no, pending_no, pending";
        let mut select_head_serial = p(format!(
            "SELECT {head_cols} FROM {ks}.space_heads_by_id WHERE space_id = ?"
        ))
        .await?;
        select_head_serial.set_consistency(Consistency::LocalSerial);
        Ok(Statements {
            insert_space: p(format!("INSERT INTO {ks}.spaces_by_id (space_id, title, description, visibility, posting_permission, creator_id, creator_username, creator_picture, tags, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")).await?,
            select_space: p(format!("SELECT space_id, title, description, visibility, posting_permission, creator_id, creator_username, creator_picture, tags, created_at FROM {ks}.spaces_by_id WHERE space_id = ?")).await?,
            select_v1_counters: p(format!("SELECT head_seq, message_count, member_count FROM {ks}.space_counters_by_id WHERE space_id = ?")).await?,
            select_head: p(format!("SELECT {head_cols} FROM {ks}.space_heads_by_id WHERE space_id = ?")).await?,
            select_head_serial,
            insert_head: lwt(format!("INSERT INTO {ks}.space_heads_by_id (space_id, epoch, head_seq, message_count, member_count, commit_no, pending_no) VALUES (?, 0, ?, ?, ?, 0, 0) IF NOT EXISTS")).await?,
            claim_head: lwt(format!("UPDATE {ks}.space_heads_by_id SET epoch = ?, commit_no = ? WHERE space_id = ? IF epoch = ? AND commit_no = ?")).await?,
            commit_head: lwt(format!("UPDATE {ks}.space_heads_by_id SET head_seq = ?, message_count = ?, member_count = ?, commit_no = ?, pending_no = ?, pending = ? WHERE space_id = ? IF epoch = ? AND commit_no = ?")).await?,
            commit_head_stats: lwt(format!("UPDATE {ks}.space_heads_by_id SET head_seq = ?, message_count = ?, member_count = ?, commit_no = ?, pending_no = ?, pending = ?, stats = ? WHERE space_id = ? IF epoch = ? AND commit_no = ?")).await?,
            select_stats: p(format!("SELECT stats FROM {ks}.space_heads_by_id WHERE space_id = ?")).await?,
            upsert_contributor: p(format!("INSERT INTO {ks}.contributors_by_space (space_id, user_id, messages, word_count) VALUES (?, ?, ?, ?)")).await?,
            select_contributor: p(format!("SELECT user_id, messages, word_count FROM {ks}.contributors_by_space WHERE space_id = ? AND user_id = ?")).await?,
            select_contributors: p(format!("SELECT user_id, messages, word_count FROM {ks}.contributors_by_space WHERE space_id = ?")).await?,
            upsert_member: p(format!("INSERT INTO {ks}.members_by_space (space_id, user_id, username, profile_picture, power_level, joined_at) VALUES (?, ?, ?, ?, ?, ?)")).await?,
            select_member: p(format!("SELECT user_id, username, profile_picture, power_level, joined_at FROM {ks}.members_by_space WHERE space_id = ? AND user_id = ?")).await?,
            select_members: p(format!("SELECT user_id, username, profile_picture, power_level, joined_at FROM {ks}.members_by_space WHERE space_id = ?")).await?,
            select_members_page: p(format!("SELECT user_id, username, profile_picture, power_level, joined_at FROM {ks}.members_by_space WHERE space_id = ? LIMIT ?")).await?,
            select_members_after: p(format!("SELECT user_id, username, profile_picture, power_level, joined_at FROM {ks}.members_by_space WHERE space_id = ? AND user_id > ? LIMIT ?")).await?,
            delete_member: p(format!("DELETE FROM {ks}.members_by_space WHERE space_id = ? AND user_id = ?")).await?,
            delete_space_of_user: p(format!("DELETE FROM {ks}.spaces_by_user WHERE user_id = ? AND space_id = ?")).await?,
            update_space: p(format!("UPDATE {ks}.spaces_by_id SET title = ?, description = ?, visibility = ?, posting_permission = ? WHERE space_id = ?")).await?,
            insert_space_of_user: p(format!("INSERT INTO {ks}.spaces_by_user (user_id, space_id) VALUES (?, ?)")).await?,
            select_spaces_of_user: p(format!("SELECT space_id FROM {ks}.spaces_by_user WHERE user_id = ?")).await?,
            insert_event: p(format!("INSERT INTO {ks}.events_by_space (space_id, bucket, seq, event) VALUES (?, ?, ?, ?)")).await?,
            select_events: p(format!("SELECT event FROM {ks}.events_by_space WHERE space_id = ? AND bucket = ? AND seq > ? AND seq <= ? LIMIT ?")).await?,
            upsert_message: p(format!("INSERT INTO {ks}.messages_by_space (space_id, bucket, seq, message_id, sender_id, sender_username, sender_picture, content, media_url, media_type, word_count, created_at, actor_id, msgtype, body, parent_id, quoted_message_id, mentions, metadata, gif, media, reply_count, edited_at, redacted, redacted_by, redacted_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")).await?,
            set_revision: p(format!("UPDATE {ks}.messages_by_space SET content = ?, media_url = ?, media_type = ?, body = ?, metadata = ?, gif = ?, media = ?, mentions = ?, word_count = ?, edited_at = ?, redacted = ?, redacted_by = ?, redacted_reason = ? WHERE space_id = ? AND bucket = ? AND seq = ?")).await?,
            insert_history: p(format!("INSERT INTO {ks}.message_history_by_message (space_id, message_id, version, content, body, valid_from, replaced_at) VALUES (?, ?, ?, ?, ?, ?, ?)")).await?,
            delete_history: p(format!("DELETE FROM {ks}.message_history_by_message WHERE space_id = ? AND message_id = ?")).await?,
            select_history: p(format!("SELECT version, content, body, valid_from, replaced_at FROM {ks}.message_history_by_message WHERE space_id = ? AND message_id = ?")).await?,
            insert_key: p(format!("INSERT INTO {ks}.idempotency_keys_by_sender (space_id, sender_id, idempotency_key, message_id) VALUES (?, ?, ?, ?) USING TTL ?")).await?,
            select_key: p(format!("SELECT message_id FROM {ks}.idempotency_keys_by_sender WHERE space_id = ? AND sender_id = ? AND idempotency_key = ?")).await?,
            set_reply_count: p(format!("UPDATE {ks}.messages_by_space SET reply_count = ? WHERE space_id = ? AND bucket = ? AND seq = ?")).await?,
            set_appreciation: p(format!("UPDATE {ks}.messages_by_space SET appreciation_count = ? WHERE space_id = ? AND bucket = ? AND seq = ?")).await?,
            insert_reaction: p(format!("INSERT INTO {ks}.reactions_by_message (space_id, message_id, reaction_key, user_id, seq) VALUES (?, ?, ?, ?, ?)")).await?,
            delete_reaction: p(format!("DELETE FROM {ks}.reactions_by_message WHERE space_id = ? AND message_id = ? AND reaction_key = ? AND user_id = ?")).await?,
            delete_reactions_of: p(format!("DELETE FROM {ks}.reactions_by_message WHERE space_id = ? AND message_id = ?")).await?,
            select_reaction: p(format!("SELECT seq FROM {ks}.reactions_by_message WHERE space_id = ? AND message_id = ? AND reaction_key = ? AND user_id = ?")).await?,
            select_user_reactions: p(format!("SELECT reaction_key FROM {ks}.reactions_by_message WHERE space_id = ? AND message_id = ? AND user_id = ?")).await?,
            set_reaction_count: p(format!("UPDATE {ks}.messages_by_space SET reaction_counts[?] = ? WHERE space_id = ? AND bucket = ? AND seq = ?")).await?,
            delete_reaction_count: p(format!("DELETE reaction_counts[?] FROM {ks}.messages_by_space WHERE space_id = ? AND bucket = ? AND seq = ?")).await?,
            set_like: p(format!("UPDATE {ks}.messages_by_space SET likes[?] = ? WHERE space_id = ? AND bucket = ? AND seq = ?")).await?,
            delete_like: p(format!("DELETE likes[?] FROM {ks}.messages_by_space WHERE space_id = ? AND bucket = ? AND seq = ?")).await?,
            delete_message: p(format!("DELETE FROM {ks}.messages_by_space WHERE space_id = ? AND bucket = ? AND seq = ?")).await?,
            delete_messages_above: p(format!("DELETE FROM {ks}.messages_by_space WHERE space_id = ? AND bucket = ? AND seq > ?")).await?,
            delete_message_bucket: p(format!("DELETE FROM {ks}.messages_by_space WHERE space_id = ? AND bucket = ?")).await?,
            select_message: p(format!("SELECT {MESSAGE_COLUMNS} FROM {ks}.messages_by_space WHERE space_id = ? AND bucket = ? AND seq = ?")).await?,
            select_messages: p(format!("SELECT {MESSAGE_COLUMNS} FROM {ks}.messages_by_space WHERE space_id = ? AND bucket = ? AND seq <= ?")).await?,
            select_messages_between_desc: p(format!("SELECT {MESSAGE_COLUMNS} FROM {ks}.messages_by_space WHERE space_id = ? AND bucket = ? AND seq > ? AND seq < ?")).await?,
            select_messages_between_asc: p(format!("SELECT {MESSAGE_COLUMNS} FROM {ks}.messages_by_space WHERE space_id = ? AND bucket = ? AND seq > ? AND seq < ? ORDER BY seq ASC")).await?,
            insert_message_by_id: p(format!("INSERT INTO {ks}.message_by_id (message_id, space_id, seq) VALUES (?, ?, ?)")).await?,
            delete_message_by_id: p(format!("DELETE FROM {ks}.message_by_id WHERE message_id = ?")).await?,
            select_message_by_id: p(format!("SELECT space_id, seq FROM {ks}.message_by_id WHERE message_id = ?")).await?,
            insert_appreciated: p(format!("INSERT INTO {ks}.appreciated_messages_by_space (space_id, appreciation_count, seq, message_id) VALUES (?, ?, ?, ?)")).await?,
            delete_appreciated: p(format!("DELETE FROM {ks}.appreciated_messages_by_space WHERE space_id = ? AND appreciation_count = ? AND seq = ?")).await?,
            select_appreciated: p(format!("SELECT appreciation_count, seq, message_id FROM {ks}.appreciated_messages_by_space WHERE space_id = ?")).await?,
            disc: discovery::DiscStatements::prepare(s, ks).await?,
        })
    }
}

const MESSAGE_COLUMNS: &str = "space_id, seq, message_id, sender_id, sender_username, sender_picture, content, media_url, media_type, word_count, appreciation_count, likes, created_at, actor_id, msgtype, body, parent_id, quoted_message_id, mentions, metadata, gif, media, reply_count, edited_at, redacted, redacted_by, redacted_reason, reaction_counts";

#[derive(DeserializeRow)]
struct SpaceRow {
    space_id: Uuid,
    title: Option<String>,
    description: Option<String>,
    visibility: Option<String>,
    posting_permission: Option<String>,
    creator_id: Option<String>,
    creator_username: Option<String>,
    creator_picture: Option<String>,
    tags: Option<Vec<String>>,
    created_at: Option<CqlTimestamp>,
}

#[derive(DeserializeRow)]
struct ContributorRow {
    user_id: String,
    messages: Option<i64>,
    word_count: Option<i64>,
}

impl ContributorRow {
    fn into_stats(self) -> ContributorStats {
        ContributorStats {
            user_id: self.user_id,
            messages: self.messages.unwrap_or_default().max(0) as u64,
            word_count: self.word_count.unwrap_or_default().max(0) as u64,
        }
    }
}

#[derive(DeserializeRow)]
struct MemberRow {
    user_id: String,
    username: Option<String>,
    profile_picture: Option<String>,
    power_level: Option<i32>,
    joined_at: Option<CqlTimestamp>,
}

#[derive(DeserializeRow)]
struct MessageRow {
    space_id: Uuid,
    seq: i64,
    message_id: Option<Uuid>,
    sender_id: Option<String>,
    sender_username: Option<String>,
    sender_picture: Option<String>,
    content: Option<String>,
    media_url: Option<String>,
    media_type: Option<String>,
    word_count: Option<i32>,
    appreciation_count: Option<i32>,
    likes: Option<HashMap<String, i64>>,
    created_at: Option<CqlTimestamp>,
    // Schema v3; null in rows written before it.
    actor_id: Option<String>,
    msgtype: Option<String>,
    body: Option<String>,
    parent_id: Option<Uuid>,
    quoted_message_id: Option<Uuid>,
    mentions: Option<Vec<String>>,
    metadata: Option<String>,
    gif: Option<String>,
    media: Option<String>,
    reply_count: Option<i32>,
    edited_at: Option<CqlTimestamp>,
    redacted: Option<bool>,
    redacted_by: Option<String>,
    redacted_reason: Option<String>,
    // Schema v4: the counts of every key but `appreciate` (whose count is `appreciation_count`).
    reaction_counts: Option<HashMap<String, i32>>,
}

impl SpaceRow {
    fn into_space(self) -> Space {
        Space {
            space_id: self.space_id,
            title: self.title.unwrap_or_default(),
            description: self.description.unwrap_or_default(),
            visibility: if self.visibility.as_deref() == Some("private") {
                Visibility::Private
            } else {
                Visibility::Public
            },
            posting_permission: if self.posting_permission.as_deref() == Some("admins") {
                PostingPermission::Admins
            } else {
                PostingPermission::Everyone
            },
            creator: UserRef {
                user_id: self.creator_id.unwrap_or_default(),
                username: self.creator_username.unwrap_or_default(),
                profile_picture: self.creator_picture.unwrap_or_default(),
            },
            tags: self.tags.unwrap_or_default(),
            created_at: Timestamp(self.created_at.map_or(0, |t| t.0)),
        }
    }
}

impl MemberRow {
    fn into_member(self) -> Member {
        Member {
            user: UserRef {
                user_id: self.user_id,
                username: self.username.unwrap_or_default(),
                profile_picture: self.profile_picture.unwrap_or_default(),
            },
            power_level: self.power_level.unwrap_or_default(),
            joined_at: Timestamp(self.joined_at.map_or(0, |t| t.0)),
        }
    }
}

impl MessageRow {
    fn into_message(self) -> Message {
        let mut likes: Vec<Like> = self
            .likes
            .unwrap_or_default()
            .into_iter()
            .map(|(user_id, id)| Like {
                id: id as u64,
                user_id,
            })
            .collect();
        // Likes in the order they were given.
        likes.sort_by_key(|l| l.id);
        let sender_id = self.sender_id.unwrap_or_default();
        let mut m = Message {
            message_id: self.message_id.unwrap_or_default(),
            space_id: self.space_id,
            seq: self.seq as u64,
            sender: UserRef {
                user_id: sender_id.clone(),
                username: self.sender_username.unwrap_or_default(),
                profile_picture: self.sender_picture.unwrap_or_default(),
            },
            actor_id: self.actor_id.unwrap_or_else(|| sender_id.clone()),
            sender_id,
            msgtype: self.msgtype.unwrap_or_else(|| MSGTYPE_TEXT.to_owned()),
            content: self.content,
            body: from_json_col(self.body),
            media_url: self.media_url,
            media_type: self.media_type.as_deref().and_then(MediaType::parse),
            word_count: self.word_count.unwrap_or_default() as u32,
            parent_id: self.parent_id,
            quoted_message_id: self.quoted_message_id,
            mentions: self.mentions.unwrap_or_default(),
            metadata: from_json_col(self.metadata),
            gif: from_json_col(self.gif),
            media: from_json_col(self.media).unwrap_or_default(),
            appreciation_count: self.appreciation_count.unwrap_or_default().max(0) as u32,
            reaction_counts: self
                .reaction_counts
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, n)| *n > 0 && k != APPRECIATE)
                .map(|(k, n)| (k, n as u32))
                .collect(),
            likes: Some(likes),
            reply_count: self.reply_count.unwrap_or_default().max(0) as u32,
            edited_at: self.edited_at.map(|t| Timestamp(t.0)),
            redacted: self.redacted.unwrap_or_default(),
            redacted_by: self.redacted_by,
            redacted_reason: self.redacted_reason,
            created_at: Timestamp(self.created_at.map_or(0, |t| t.0)),
            ..Default::default()
        };
        m.sync_reaction_counts();
        m
    }
}

/// The values of `set_revision`, by column name (more than a tuple can bind).
#[derive(scylla::SerializeRow)]
struct RevisionValues {
    content: Option<String>,
    media_url: Option<String>,
    media_type: Option<String>,
    body: Option<String>,
    metadata: Option<String>,
    gif: Option<String>,
    media: Option<String>,
    mentions: Option<Vec<String>>,
    word_count: i32,
    edited_at: Option<CqlTimestamp>,
    redacted: bool,
    redacted_by: Option<String>,
    redacted_reason: Option<String>,
    space_id: Uuid,
    bucket: i64,
    seq: i64,
}

/// The values of `upsert_message`, by column name (more than a tuple can bind). It writes a new
/// message only (changes to an existing row write their own columns, in phase 3), so an absent
/// field is left unset rather than bound as null: a null writes a tombstone cell, and a plain
/// message has a dozen absent fields, which reads of the history would then scan past (and
/// Cassandra warns about, then refuses, at its tombstone thresholds). Nothing older can hide in
/// an unset cell: a fenced writer's late rows above the head are deleted by the new owner's
/// claim, at a later write time.
#[derive(scylla::SerializeRow)]
struct MessageInsert {
    space_id: Uuid,
    bucket: i64,
    seq: i64,
    message_id: Uuid,
    sender_id: String,
    sender_username: String,
    sender_picture: String,
    content: MaybeUnset<String>,
    media_url: MaybeUnset<String>,
    media_type: MaybeUnset<&'static str>,
    word_count: i32,
    created_at: CqlTimestamp,
    actor_id: String,
    msgtype: String,
    body: MaybeUnset<String>,
    parent_id: MaybeUnset<Uuid>,
    quoted_message_id: MaybeUnset<Uuid>,
    mentions: MaybeUnset<Vec<String>>,
    metadata: MaybeUnset<String>,
    gif: MaybeUnset<String>,
    media: MaybeUnset<String>,
    reply_count: i32,
    edited_at: MaybeUnset<CqlTimestamp>,
    redacted: bool,
    redacted_by: MaybeUnset<String>,
    redacted_reason: MaybeUnset<String>,
}

impl MessageInsert {
    fn of(sid: SpaceId, m: &Message) -> Self {
        MessageInsert {
            space_id: sid,
            bucket: bucket(m.seq),
            seq: m.seq as i64,
            message_id: m.message_id,
            sender_id: m.sender_id.clone(),
            sender_username: m.sender.username.clone(),
            sender_picture: m.sender.profile_picture.clone(),
            content: unset_if_none(m.content.clone()),
            media_url: unset_if_none(m.media_url.clone()),
            media_type: unset_if_none(media_type_str(m.media_type)),
            word_count: m.word_count as i32,
            created_at: CqlTimestamp(m.created_at.0),
            actor_id: m.actor_id.clone(),
            msgtype: m.msgtype.clone(),
            body: unset_if_none(json_col(m.body.as_ref())),
            parent_id: unset_if_none(m.parent_id),
            quoted_message_id: unset_if_none(m.quoted_message_id),
            mentions: unset_if_none((!m.mentions.is_empty()).then(|| m.mentions.clone())),
            metadata: unset_if_none(json_col(m.metadata.as_ref())),
            gif: unset_if_none(json_col(m.gif.as_ref())),
            media: unset_if_none(
                (!m.media.is_empty())
                    .then(|| json_col(Some(&m.media)))
                    .flatten(),
            ),
            reply_count: m.reply_count as i32,
            edited_at: unset_if_none(m.edited_at.map(|t| CqlTimestamp(t.0))),
            redacted: m.redacted,
            redacted_by: unset_if_none(m.redacted_by.clone()),
            redacted_reason: unset_if_none(m.redacted_reason.clone()),
        }
    }
}

/// An absent column of a new row: unset, not null (a null is a tombstone cell).
fn unset_if_none<T>(v: Option<T>) -> MaybeUnset<T> {
    MaybeUnset::from_option(v)
}

/// A JSON column's value (null when absent or unreadable: the columns hold only what this store
/// wrote, so unreadable means a row fixed by hand).
fn from_json_col<T: serde::de::DeserializeOwned>(col: Option<String>) -> Option<T> {
    col.and_then(|s| serde_json::from_str(&s).ok())
}

/// The JSON column value of `v` (null for `None`).
fn json_col<T: Serialize>(v: Option<&T>) -> Option<String> {
    v.and_then(|v| serde_json::to_string(v).ok())
}

fn media_type_str(t: Option<MediaType>) -> Option<&'static str> {
    t.map(MediaType::mime_top_level)
}

fn visibility_str(v: Visibility) -> &'static str {
    match v {
        Visibility::Public => "public",
        Visibility::Private => "private",
    }
}

fn posting_str(p: PostingPermission) -> &'static str {
    match p {
        PostingPermission::Everyone => "everyone",
        PostingPermission::Admins => "admins",
    }
}

/// One statement with its values, for a per-partition batch.
type Write = (PreparedStatement, Box<dyn SerializeRow + Send + Sync>);

/// Partitions a commit writes to, each with its statements.
#[derive(Default)]
struct Partitions {
    groups: HashMap<(u8, Vec<u8>), Vec<Write>>,
}

impl Partitions {
    /// Adds a write to `table`'s partition `key`.
    fn add(
        &mut self,
        table: u8,
        key: &[u8],
        st: &PreparedStatement,
        values: impl SerializeRow + Send + Sync + 'static,
    ) {
        self.groups
            .entry((table, key.to_vec()))
            .or_default()
            .push((st.clone(), Box::new(values)));
    }

    fn into_groups(self) -> Vec<Vec<Write>> {
        self.groups.into_values().collect()
    }
}

fn space_bucket_key(space: SpaceId, seq: Seq) -> Vec<u8> {
    let mut k = space.as_bytes().to_vec();
    k.extend_from_slice(&bucket(seq).to_be_bytes());
    k
}

/// A change to an existing row (or an index entry), written in phase 3 of a commit and kept,
/// encoded, in the head row's `pending` until the next commit, so a claim can apply it again.
/// Tags and names are short: the encoding travels through Paxos with every commit that has any.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Settle {
    /// A message deleted: its row, its id entry, and its index entry at `count` (if > 0).
    #[serde(rename = "d")]
    Delete { id: Uuid, seq: Seq, count: u32 },
    /// An existing message's likes (set, or removed when `None`) and count; its index entry moves
    /// from `prev` to `count` (0: no entry).
    #[serde(rename = "a")]
    Appreciation {
        id: Uuid,
        seq: Seq,
        count: u32,
        prev: u32,
        likes: Vec<(String, Option<u64>)>,
    },
    /// One user's reaction set (`added`: the seq of the event that added it) or removed.
    #[serde(rename = "e")]
    Reaction {
        id: Uuid,
        seq: Seq,
        key: String,
        user: String,
        added: Option<u64>,
    },
    /// A reaction key's count on a message (any key but `appreciate`, whose count is
    /// `appreciation_count`), removed at 0.
    #[serde(rename = "c")]
    ReactionCount {
        id: Uuid,
        seq: Seq,
        key: String,
        count: u32,
    },
    /// A message created by this commit that is already appreciated: its index entry. (Written
    /// by earlier versions; a pending list may still hold one.)
    #[serde(rename = "i")]
    Index { id: Uuid, seq: Seq, count: u32 },
    /// A member added or changed, and the user's membership entry.
    #[serde(rename = "m")]
    Member(Member),
    /// A member removed (or gone): its row and the user's membership entry deleted.
    #[serde(rename = "u")]
    Unmember { user: String },
    /// The space's record after a settings change: its scalar columns rewritten (creator,
    /// creation time and tags never change; tags, a list, could not be rewritten idempotently).
    #[serde(rename = "s")]
    Space {
        title: String,
        description: String,
        visibility: String,
        posting: String,
    },
    /// An existing message's reply count (a reply to it created or deleted).
    #[serde(rename = "r")]
    Replies { id: Uuid, seq: Seq, count: u32 },
    /// An existing message's content after an edit or a redaction: every content column.
    #[serde(rename = "v")]
    Revise(Box<Revision>),
    /// An earlier version of an edited message (its history row; `version.seq` is the key).
    #[serde(rename = "h")]
    History { id: Uuid, version: MessageVersion },
    /// Every history row of a message gone (a partition delete).
    #[serde(rename = "x")]
    ClearHistory { id: Uuid },
    /// A send's idempotency key, naming the message it created, until `exp` (ms since the
    /// epoch): written with the TTL left then, so a claim that applies it again late does not
    /// extend it.
    #[serde(rename = "k")]
    Key {
        sender: String,
        key: String,
        id: Uuid,
        exp: i64,
    },
    /// A contributor's numbers in the space stats (messages, words).
    #[serde(rename = "ct")]
    Contributor { u: String, n: u64, w: u64 },
    /// disc (issue 12): a discovery or user-stats row (see [`discovery::DiscSettle`]).
    #[serde(rename = "dv")]
    Disc(discovery::DiscSettle),
    /// A notification the commit causes (`cql/notifications.rs`): its row, without `is_read`.
    #[serde(rename = "nt")]
    Notification(Box<crate::notifications::Notification>),
    // ---- unread: read markers, unread counts, the inbox (issue 12) ----
    /// A member's read marker (`s`: seq, `c`: top-level count), on their membership entry.
    #[serde(rename = "rmM")]
    RmMarker { u: String, s: Seq, c: u64 },
    /// The space's activity after the commit.
    #[serde(rename = "rmA")]
    RmActivity(Box<crate::unread::SpaceActivity>),
}

/// The content columns of a message, as an edit or a redaction leaves them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Revision {
    seq: Seq,
    content: Option<String>,
    media_url: Option<String>,
    media_type: Option<String>,
    body: Option<String>,
    metadata: Option<String>,
    gif: Option<String>,
    media: Option<String>,
    mentions: Vec<String>,
    word_count: u32,
    edited_at: Option<i64>,
    redacted: bool,
    redacted_by: Option<String>,
    redacted_reason: Option<String>,
}

impl Revision {
    fn of(m: &Message) -> Self {
        Revision {
            seq: m.seq,
            content: m.content.clone(),
            media_url: m.media_url.clone(),
            media_type: media_type_str(m.media_type).map(str::to_owned),
            body: json_col(m.body.as_ref()),
            metadata: json_col(m.metadata.as_ref()),
            gif: json_col(m.gif.as_ref()),
            media: (!m.media.is_empty())
                .then(|| json_col(Some(&m.media)))
                .flatten(),
            mentions: m.mentions.clone(),
            word_count: m.word_count,
            edited_at: m.edited_at.map(|t| t.0),
            redacted: m.redacted,
            redacted_by: m.redacted_by.clone(),
            redacted_reason: m.redacted_reason.clone(),
        }
    }
}

/// A space's head row.
#[derive(Clone, Debug, Default)]
struct Head {
    epoch: u64,
    counters: SpaceCounters,
    /// The number of the last commit or claim.
    commit_no: u64,
    /// The commit whose phase 3 `pending` describes.
    pending_no: u64,
    /// Encoded `Vec<Settle>`; `None` when that commit changed no existing row.
    pending: Option<Vec<u8>>,
}

#[derive(DeserializeRow)]
struct HeadRow {
    epoch: Option<i64>,
    head_seq: Option<i64>,
    message_count: Option<i64>,
    member_count: Option<i64>,
    commit_no: Option<i64>,
    pending_no: Option<i64>,
    pending: Option<Vec<u8>>,
}

impl HeadRow {
    fn into_head(self) -> Head {
        let n = |v: Option<i64>| v.unwrap_or_default().max(0) as u64;
        Head {
            epoch: n(self.epoch),
            counters: SpaceCounters {
                head_seq: n(self.head_seq),
                message_count: n(self.message_count),
                member_count: n(self.member_count),
            },
            commit_no: n(self.commit_no),
            pending_no: n(self.pending_no),
            pending: self.pending.filter(|p| !p.is_empty()),
        }
    }
}

/// What a conditional write answered: whether it applied, and if not, the row's current epoch
/// and commit number (when the row exists).
struct LwtOutcome {
    applied: bool,
    epoch: Option<u64>,
    commit_no: Option<u64>,
}

fn lwt_outcome(result: QueryResult) -> Result<LwtOutcome> {
    let rows = result.into_rows_result().map_err(unavailable)?;
    let specs = rows.column_specs();
    let index = |name: &str| specs.get_by_name(name).map(|(i, _)| i);
    let (applied, epoch, commit_no) = (index("[applied]"), index("epoch"), index("commit_no"));
    let row = rows.first_row::<Row>().map_err(corrupt)?;
    let column = |i: Option<usize>| i.and_then(|i| row.columns.get(i).cloned().flatten());
    let bigint = |v: Option<CqlValue>| match v {
        Some(CqlValue::BigInt(x)) => Some(x.max(0) as u64),
        _ => None,
    };
    Ok(LwtOutcome {
        applied: matches!(column(applied), Some(CqlValue::Boolean(true))),
        epoch: bigint(column(epoch)),
        commit_no: bigint(column(commit_no)),
    })
}

/// Which writes of a commit a test holds back (`CqlStore::park_next_commit`, feature `testkit`),
/// to deliver them later with `CqlStore::release_parked`: a writer paused with writes in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Phase 1, the new rows: the commit then goes on to its head update.
    NewRows,
    /// Phase 3, the existing rows: the commit then reports `Unsettled`.
    ExistingRows,
}

/// Test hooks (feature `testkit`).
#[cfg(feature = "testkit")]
#[derive(Default)]
struct Hooks {
    fail_next: Mutex<Option<FailPoint>>,
    park_next: Mutex<Option<Phase>>,
    /// Held-back writes and the number of the commit they belong to.
    parked: Mutex<Vec<(Vec<Vec<Write>>, u64)>>,
}

/// The ScyllaDB / Cassandra [`Store`]. See the module doc.
pub struct CqlStore {
    /// Shared with the background trims of notifications (`cql/notifications.rs`).
    session: Arc<Session>,
    st: Statements,
    /// Notifications' statements (`cql/notifications.rs`).
    nt: notifications::Statements,
    /// Read markers, top-level counts, space activity (issue 12).
    unread: unread::Statements,
    /// `space → (epoch, commit_no)` of the spaces whose last commit or claim went through this
    /// store, so the next commit at that epoch knows its number without reading the head. An
    /// entry is only a guess: the head update's condition checks it. Dropped on any failure.
    known: Mutex<HashMap<SpaceId, (u64, u64)>>,
    #[cfg(feature = "testkit")]
    hooks: Hooks,
}

impl CqlStore {
    /// Connects, checks the schema version, and prepares every statement.
    ///
    /// # Errors
    /// `StoreUnavailable` when the cluster cannot be reached; `Invalid("schema_outdated")` when
    /// the keyspace's schema is older than this build needs (run `spacecast migrate`).
    pub async fn connect(cfg: &CqlConfig) -> Result<Arc<Self>> {
        if !valid_keyspace(&cfg.keyspace) {
            return Err(EngineError::Invalid(
                "invalid_keyspace",
                format!("keyspace {:?} is not a valid name", cfg.keyspace),
            ));
        }
        let session = connect_session(cfg).await?;
        let version = applied_version(&session, &cfg.keyspace).await?;
        if version < CURRENT_VERSION {
            return Err(EngineError::Invalid(
                "schema_outdated",
                format!(
                    "keyspace {:?} has schema version {version}, this build needs {CURRENT_VERSION}: run `spacecast migrate --store cql` first",
                    cfg.keyspace
                ),
            ));
        }
        let st = Statements::prepare(&session, &cfg.keyspace).await?;
        let nt = notifications::Statements::prepare(&session, &cfg.keyspace).await?;
        let unread = unread::Statements::prepare(&session, &cfg.keyspace).await?;
        Ok(Arc::new(CqlStore {
            session: Arc::new(session),
            st,
            nt,
            unread,
            known: Mutex::new(HashMap::new()),
            #[cfg(feature = "testkit")]
            hooks: Hooks::default(),
        }))
    }

    async fn exec(&self, st: &PreparedStatement, values: impl SerializeRow) -> Result<QueryResult> {
        self.session
            .execute_unpaged(st, values)
            .await
            .map_err(unavailable)
    }

    /// The first row `st` returns with `values`, if any (a point read).
    async fn first_row<R>(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Option<R>>
    where
        R: for<'f> scylla::deserialize::row::DeserializeRow<'f, 'f>,
    {
        let rows = self
            .exec(st, values)
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        rows.maybe_first_row::<R>().map_err(corrupt)
    }

    /// The head row through `st` (`select_head` or `select_head_serial`).
    async fn read_head(&self, st: &PreparedStatement, space_id: SpaceId) -> Result<Option<Head>> {
        Ok(self
            .first_row::<HeadRow>(st, (space_id,))
            .await?
            .map(HeadRow::into_head))
    }

    /// The counters row of schema v1, for a space nobody claimed or committed since.
    async fn v1_counters(&self, space_id: SpaceId) -> Result<Option<SpaceCounters>> {
        let Some((head, messages, members)) = self
            .first_row::<(Option<i64>, Option<i64>, Option<i64>)>(
                &self.st.select_v1_counters,
                (space_id,),
            )
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(SpaceCounters {
            head_seq: head.unwrap_or_default() as u64,
            message_count: messages.unwrap_or_default() as u64,
            member_count: members.unwrap_or_default() as u64,
        }))
    }

    /// The counters readers go by: the head row's, or for a space of schema v1 not written since,
    /// its v1 counters row.
    async fn counters(&self, space_id: SpaceId) -> Result<Option<SpaceCounters>> {
        if let Some(h) = self.read_head(&self.st.select_head, space_id).await? {
            return Ok(Some(h.counters));
        }
        self.v1_counters(space_id).await
    }

    /// The head row at `LOCAL_SERIAL` (every head update that applied, even one whose Paxos round
    /// is still finishing). A space of schema v1 gets its head row here, from its v1 counters
    /// (`IF NOT EXISTS`, so concurrent first writers agree). `None` if the space does not exist.
    async fn head_for_write(&self, space_id: SpaceId) -> Result<Option<Head>> {
        if let Some(h) = self
            .read_head(&self.st.select_head_serial, space_id)
            .await?
        {
            return Ok(Some(h));
        }
        let c = match self.v1_counters(space_id).await? {
            Some(c) => c,
            None if self.space_record(space_id).await?.is_some() => SpaceCounters::default(),
            None => return Ok(None),
        };
        // Applied or beaten by a concurrent insert: either way the row exists now.
        self.exec(
            &self.st.insert_head,
            (
                space_id,
                c.head_seq as i64,
                c.message_count as i64,
                c.member_count as i64,
            ),
        )
        .await?;
        self.read_head(&self.st.select_head_serial, space_id).await
    }

    async fn space_record(&self, space_id: SpaceId) -> Result<Option<Space>> {
        Ok(self
            .first_row::<SpaceRow>(&self.st.select_space, (space_id,))
            .await?
            .map(SpaceRow::into_space))
    }

    async fn space_view(&self, space_id: SpaceId) -> Result<Option<SpaceView>> {
        let (space, counters) =
            future::try_join(self.space_record(space_id), self.counters(space_id)).await?;
        Ok(space.map(|space| SpaceView {
            space,
            counters: counters.unwrap_or_default(),
        }))
    }

    async fn members(&self, space_id: SpaceId) -> Result<Vec<Member>> {
        let pager = self
            .session
            .execute_iter(self.st.select_members.clone(), (space_id,))
            .await
            .map_err(unavailable)?;
        pager
            .rows_stream::<MemberRow>()
            .map_err(corrupt)?
            .map_ok(MemberRow::into_member)
            .try_collect()
            .await
            .map_err(unavailable)
    }

    /// The message row at `seq`, if any (whatever the head).
    async fn message_row(&self, space_id: SpaceId, seq: Seq) -> Result<Option<MessageRow>> {
        self.first_row::<MessageRow>(&self.st.select_message, (space_id, bucket(seq), seq as i64))
            .await
    }

    /// Visits messages newest first (seq ≤ `head`), bucket by bucket, until `visit` returns false.
    async fn scan_recent(
        &self,
        space_id: SpaceId,
        head: Seq,
        mut visit: impl FnMut(MessageRow) -> bool,
    ) -> Result<()> {
        let mut b = bucket(head);
        while b >= 0 {
            let pager = self
                .session
                .execute_iter(self.st.select_messages.clone(), (space_id, b, head as i64))
                .await
                .map_err(unavailable)?;
            let mut rows = pager.rows_stream::<MessageRow>().map_err(corrupt)?;
            while let Some(row) = rows.next().await {
                let row = row.map_err(unavailable)?;
                // Only a whole message counts (a row is created with its id).
                if row.message_id.is_none() {
                    continue;
                }
                if !visit(row) {
                    return Ok(());
                }
            }
            b -= 1;
        }
        Ok(())
    }

    /// Existing messages with `after < seq < before` (and `seq ≤ head`: rows above the head
    /// belong to no durable commit), in `direction`, at most `limit`: bucket by bucket from the
    /// starting end, each bucket read in pages of about `limit` rows, stopping as soon as
    /// `limit` are found.
    async fn scan_between(
        &self,
        space_id: SpaceId,
        after: Seq,
        before: Seq,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let head = self.counters(space_id).await?.map_or(0, |c| c.head_seq);
        let before = before.min(head.saturating_add(1));
        if before <= after.saturating_add(1) || limit == 0 {
            return Ok(Vec::new());
        }
        let (first, last) = (bucket(after + 1), bucket(before - 1));
        let (mut b, step, mut st) = match direction {
            Direction::Forward => (first, 1, self.st.select_messages_between_asc.clone()),
            Direction::Backward => (last, -1, self.st.select_messages_between_desc.clone()),
        };
        // One page a little over what is wanted: deleted rows are skipped, rarely many.
        st.set_page_size(i32::try_from(limit.min(1000) + 16).unwrap_or(1016));
        let mut out = Vec::with_capacity(limit.min(1000));
        while (first..=last).contains(&b) {
            let pager = self
                .session
                .execute_iter(st.clone(), (space_id, b, after as i64, before as i64))
                .await
                .map_err(unavailable)?;
            let mut rows = pager.rows_stream::<MessageRow>().map_err(corrupt)?;
            while let Some(row) = rows.next().await {
                let row = row.map_err(unavailable)?;
                if row.message_id.is_none() {
                    continue;
                }
                out.push(row.into_message());
                if out.len() == limit {
                    return Ok(out);
                }
            }
            b += step;
        }
        Ok(out)
    }

    /// Writes one partition's statements, all with timestamp `ts`: one request, or one unlogged
    /// batch (a single mutation on the server).
    async fn run_writes(&self, writes: Vec<Write>, ts: i64) -> Result<()> {
        if writes.len() == 1 {
            let (st, values) = writes.into_iter().next().expect("one write");
            let mut st = st;
            st.set_timestamp(Some(ts));
            self.session
                .execute_unpaged(&st, values)
                .await
                .map_err(unavailable)?;
            return Ok(());
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        batch.set_is_idempotent(true);
        batch.set_timestamp(Some(ts));
        let mut values = Vec::with_capacity(writes.len());
        for (st, v) in writes {
            batch.append_statement(st);
            values.push(v);
        }
        self.session
            .batch(&batch, values)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Writes every partition's group concurrently, all with timestamp `ts`.
    async fn run_groups(&self, groups: Vec<Vec<Write>>, ts: i64) -> Result<()> {
        future::try_join_all(groups.into_iter().map(|w| self.run_writes(w, ts))).await?;
        Ok(())
    }

    /// The commit number of the space's head, for a commit at `epoch`: remembered when this store
    /// made the space's last commit or claim at that epoch; else read from the head row (after
    /// applying its `pending` again: it may be the phase 3 of an `Unsettled` commit).
    ///
    /// # Errors
    /// `Fenced` when the head's epoch is not `epoch` (nothing was written); `SpaceNotFound`.
    async fn commit_base(&self, space_id: SpaceId, epoch: u64) -> Result<u64> {
        let known = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&space_id)
            .filter(|(e, _)| *e == epoch)
            .map(|(_, c)| *c);
        if let Some(c) = known {
            return Ok(c);
        }
        let head = self
            .head_for_write(space_id)
            .await?
            .ok_or(EngineError::SpaceNotFound)?;
        if head.epoch != epoch {
            return Err(EngineError::Fenced);
        }
        self.settle_pending(space_id, &head).await?;
        self.remember(space_id, epoch, head.commit_no);
        Ok(head.commit_no)
    }

    fn remember(&self, space_id: SpaceId, epoch: u64, commit_no: u64) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= KNOWN_HEADS && !known.contains_key(&space_id) {
            known.clear();
        }
        known.insert(space_id, (epoch, commit_no));
    }

    fn forget(&self, space_id: SpaceId) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&space_id);
    }

    /// Applies the head's `pending` again, with the timestamp of the commit it belongs to.
    async fn settle_pending(&self, space_id: SpaceId, head: &Head) -> Result<()> {
        let Some(pending) = &head.pending else {
            return Ok(());
        };
        let ops: Vec<Settle> = serde_json::from_slice(pending).map_err(corrupt)?;
        let groups = self.settle_writes(space_id, &ops).into_groups();
        self.run_groups(groups, write_ts(head.pending_no)).await
    }

    /// Deletes every message row above `head` that a commit not yet durable may have written: the
    /// rest of the head's bucket and all of the next one (a commit holds at most `BUCKET_SEQS`
    /// events). At `ts`, above every such commit's timestamp, so their late writes stay deleted.
    async fn fence_above(&self, space_id: SpaceId, head: Seq, ts: i64) -> Result<()> {
        let mut above = self.st.delete_messages_above.clone();
        above.set_timestamp(Some(ts));
        let mut next = self.st.delete_message_bucket.clone();
        next.set_timestamp(Some(ts));
        future::try_join(
            self.exec(&above, (space_id, bucket(head), head as i64)),
            self.exec(&next, (space_id, bucket(head) + 1)),
        )
        .await?;
        Ok(())
    }

    /// Phase 1 of a commit (the new rows), and its phase 3 (the changes to existing rows).
    fn plan(&self, b: &CommitBatch) -> Result<(Partitions, Vec<Settle>)> {
        let s = &self.st;
        let sid = b.space_id;
        let mut parts = Partitions::default();
        let mut settle = Vec::new();
        for ev in &b.events {
            let json = serde_json::to_string(ev).map_err(corrupt)?;
            parts.add(
                part::EVENTS,
                &space_bucket_key(sid, ev.seq),
                &s.insert_event,
                (sid, bucket(ev.seq), ev.seq as i64, json),
            );
        }
        for w in &b.messages {
            match w {
                MessageWrite::Put {
                    message: m,
                    previous_appreciation: None,
                } => {
                    let key = space_bucket_key(sid, m.seq);
                    let seq = m.seq as i64;
                    parts.add(
                        part::MESSAGES,
                        &key,
                        &s.upsert_message,
                        MessageInsert::of(sid, m),
                    );
                    parts.add(
                        part::MESSAGE_BY_ID,
                        m.message_id.as_bytes(),
                        &s.insert_message_by_id,
                        (m.message_id, sid, seq),
                    );
                    // Its reactions, counts and index entry, if it got any in this batch, are
                    // the batch's reaction writes (phase 3); the insert writes none of them, so
                    // no cell is written twice at the commit's one timestamp.
                }
                MessageWrite::Put {
                    message: m,
                    previous_appreciation: Some(_),
                } => {
                    // What changed in an existing row is told by the batch's events about it;
                    // each kind of change writes only its own columns.
                    let id = m.message_id;
                    let mut replies = false;
                    let mut revised = false;
                    for e in &b.events {
                        match &e.kind {
                            EventKind::MessageEdited(x) | EventKind::MessageRedacted(x)
                                if x.message_id == id =>
                            {
                                revised = true
                            }
                            EventKind::MessageCreated(c) if c.parent_id == Some(id) => {
                                replies = true
                            }
                            EventKind::MessageDeleted(d) if d.parent_id == Some(id) => {
                                replies = true
                            }
                            _ => {}
                        }
                    }
                    if replies {
                        settle.push(Settle::Replies {
                            id,
                            seq: m.seq,
                            count: m.reply_count,
                        });
                    }
                    if revised {
                        settle.push(Settle::Revise(Box::new(Revision::of(m))));
                    }
                }
                MessageWrite::Delete {
                    message_id,
                    seq,
                    appreciation_count,
                } => settle.push(Settle::Delete {
                    id: *message_id,
                    seq: *seq,
                    count: *appreciation_count,
                }),
            }
        }
        let reactions = b.reaction_outcome();
        for r in &reactions.rows {
            settle.push(Settle::Reaction {
                id: r.message_id,
                seq: r.message_seq,
                key: r.key.clone(),
                user: r.user_id.clone(),
                added: r.added,
            });
        }
        for r in reactions.counts.iter().filter(|r| !r.is_appreciation()) {
            settle.push(Settle::ReactionCount {
                id: r.message_id,
                seq: r.message_seq,
                key: r.key.clone(),
                count: r.count,
            });
        }
        // Appreciations also keep Space7's `likes` map, `appreciation_count` and the
        // most-appreciated index.
        for &(id, seq, prev, count) in &reactions.appreciation {
            let likes = reactions
                .rows
                .iter()
                .filter(|r| r.message_id == id && r.is_appreciation())
                .map(|r| (r.user_id.clone(), r.added))
                .collect();
            settle.push(Settle::Appreciation {
                id,
                seq,
                count,
                prev,
                likes,
            });
        }
        settle.extend(b.members.iter().cloned().map(Settle::Member));
        settle.extend(
            b.removed_members
                .iter()
                .map(|u| Settle::Unmember { user: u.clone() }),
        );
        if let Some(space) = &b.space {
            settle.push(Settle::Space {
                title: space.title.clone(),
                description: space.description.clone(),
                visibility: visibility_str(space.visibility).to_owned(),
                posting: posting_str(space.posting_permission).to_owned(),
            });
        }
        for h in &b.history {
            settle.push(match h {
                HistoryWrite::Add {
                    message_id,
                    version,
                } => Settle::History {
                    id: *message_id,
                    version: version.clone(),
                },
                HistoryWrite::Clear { message_id } => Settle::ClearHistory { id: *message_id },
            });
        }
        settle.extend(b.contributors.iter().map(|c| Settle::Contributor {
            u: c.user_id.clone(),
            n: c.messages,
            w: c.word_count,
        }));
        settle.extend(discovery::DiscSettle::of(b).into_iter().map(Settle::Disc));
        settle.extend(b.keys.iter().map(|k| Settle::Key {
            sender: k.sender_id.clone(),
            key: k.key.clone(),
            id: k.message_id,
            exp: k.expires_at.0,
        }));
        settle.extend(
            b.notifications
                .iter()
                .map(|n| Settle::Notification(Box::new(n.clone()))),
        );
        self.unread_plan(b, &mut parts, &mut settle);
        Ok((parts, settle))
    }

    /// The writes of phase 3.
    fn settle_writes(&self, sid: SpaceId, ops: &[Settle]) -> Partitions {
        let s = &self.st;
        let mut parts = Partitions::default();
        for op in ops {
            match op {
                Settle::Delete { id, seq, count } => {
                    parts.add(
                        part::MESSAGES,
                        &space_bucket_key(sid, *seq),
                        &s.delete_message,
                        (sid, bucket(*seq), *seq as i64),
                    );
                    parts.add(
                        part::MESSAGE_BY_ID,
                        id.as_bytes(),
                        &s.delete_message_by_id,
                        (*id,),
                    );
                    parts.add(
                        part::REACTIONS,
                        &history_key(sid, *id),
                        &s.delete_reactions_of,
                        (sid, *id),
                    );
                    if *count > 0 {
                        parts.add(
                            part::APPRECIATED,
                            sid.as_bytes(),
                            &s.delete_appreciated,
                            (sid, *count as i32, *seq as i64),
                        );
                    }
                }
                Settle::Appreciation {
                    id,
                    seq,
                    count,
                    prev,
                    likes,
                } => {
                    let key = space_bucket_key(sid, *seq);
                    let (b, q) = (bucket(*seq), *seq as i64);
                    parts.add(
                        part::MESSAGES,
                        &key,
                        &s.set_appreciation,
                        (*count as i32, sid, b, q),
                    );
                    for (user, like) in likes {
                        match like {
                            Some(like_id) => parts.add(
                                part::MESSAGES,
                                &key,
                                &s.set_like,
                                (user.clone(), *like_id as i64, sid, b, q),
                            ),
                            None => parts.add(
                                part::MESSAGES,
                                &key,
                                &s.delete_like,
                                (user.clone(), sid, b, q),
                            ),
                        }
                    }
                    if prev != count {
                        if *prev > 0 {
                            parts.add(
                                part::APPRECIATED,
                                sid.as_bytes(),
                                &s.delete_appreciated,
                                (sid, *prev as i32, q),
                            );
                        }
                        if *count > 0 {
                            parts.add(
                                part::APPRECIATED,
                                sid.as_bytes(),
                                &s.insert_appreciated,
                                (sid, *count as i32, q, *id),
                            );
                        }
                    }
                }
                Settle::Reaction {
                    id,
                    seq: _,
                    key,
                    user,
                    added,
                } => match added {
                    Some(at) => parts.add(
                        part::REACTIONS,
                        &history_key(sid, *id),
                        &s.insert_reaction,
                        (sid, *id, key.clone(), user.clone(), *at as i64),
                    ),
                    None => parts.add(
                        part::REACTIONS,
                        &history_key(sid, *id),
                        &s.delete_reaction,
                        (sid, *id, key.clone(), user.clone()),
                    ),
                },
                Settle::ReactionCount {
                    id: _,
                    seq,
                    key,
                    count,
                } => {
                    let (b, q) = (bucket(*seq), *seq as i64);
                    if *count > 0 {
                        parts.add(
                            part::MESSAGES,
                            &space_bucket_key(sid, *seq),
                            &s.set_reaction_count,
                            (key.clone(), *count as i32, sid, b, q),
                        );
                    } else {
                        parts.add(
                            part::MESSAGES,
                            &space_bucket_key(sid, *seq),
                            &s.delete_reaction_count,
                            (key.clone(), sid, b, q),
                        );
                    }
                }
                Settle::Revise(r) => {
                    let seq = r.seq;
                    parts.add(
                        part::MESSAGES,
                        &space_bucket_key(sid, seq),
                        &s.set_revision,
                        RevisionValues {
                            content: r.content.clone(),
                            media_url: r.media_url.clone(),
                            media_type: r.media_type.clone(),
                            body: r.body.clone(),
                            metadata: r.metadata.clone(),
                            gif: r.gif.clone(),
                            media: r.media.clone(),
                            mentions: (!r.mentions.is_empty()).then(|| r.mentions.clone()),
                            word_count: r.word_count as i32,
                            edited_at: r.edited_at.map(CqlTimestamp),
                            redacted: r.redacted,
                            redacted_by: r.redacted_by.clone(),
                            redacted_reason: r.redacted_reason.clone(),
                            space_id: sid,
                            bucket: bucket(seq),
                            seq: seq as i64,
                        },
                    );
                }
                Settle::History { id, version: v } => parts.add(
                    part::HISTORY,
                    &history_key(sid, *id),
                    &s.insert_history,
                    (
                        sid,
                        *id,
                        v.seq as i64,
                        v.content.clone(),
                        json_col(v.body.as_ref()),
                        CqlTimestamp(v.valid_from.0),
                        CqlTimestamp(v.replaced_at.0),
                    ),
                ),
                Settle::Key {
                    sender,
                    key,
                    id,
                    exp,
                } => {
                    // Whole seconds, rounded up; a key already expired is not written at all.
                    let left_ms = exp.saturating_sub(Timestamp::now().0);
                    if left_ms > 0 {
                        let ttl = i32::try_from((left_ms + 999) / 1000).unwrap_or(i32::MAX);
                        let mut pk = sid.as_bytes().to_vec();
                        pk.extend_from_slice(&(sender.len() as u32).to_be_bytes());
                        pk.extend_from_slice(sender.as_bytes());
                        pk.extend_from_slice(key.as_bytes());
                        parts.add(
                            part::KEYS,
                            &pk,
                            &s.insert_key,
                            (sid, sender.clone(), key.clone(), *id, ttl),
                        );
                    }
                }
                Settle::ClearHistory { id } => parts.add(
                    part::HISTORY,
                    &history_key(sid, *id),
                    &s.delete_history,
                    (sid, *id),
                ),
                Settle::Replies { id: _, seq, count } => parts.add(
                    part::MESSAGES,
                    &space_bucket_key(sid, *seq),
                    &s.set_reply_count,
                    (*count as i32, sid, bucket(*seq), *seq as i64),
                ),
                Settle::Index { id, seq, count } => parts.add(
                    part::APPRECIATED,
                    sid.as_bytes(),
                    &s.insert_appreciated,
                    (sid, *count as i32, *seq as i64, *id),
                ),
                Settle::Disc(d) => self.st.disc.settle_write(sid, d, &mut parts),
                op @ (Settle::RmMarker { .. } | Settle::RmActivity(_)) => {
                    self.unread_settle(sid, op, &mut parts)
                }
                Settle::Contributor { u, n, w } => parts.add(
                    part::CONTRIBUTORS,
                    sid.as_bytes(),
                    &s.upsert_contributor,
                    (sid, u.clone(), *n as i64, *w as i64),
                ),
                Settle::Member(m) => {
                    let u = &m.user;
                    parts.add(
                        part::MEMBERS,
                        sid.as_bytes(),
                        &s.upsert_member,
                        (
                            sid,
                            u.user_id.clone(),
                            u.username.clone(),
                            u.profile_picture.clone(),
                            m.power_level,
                            CqlTimestamp(m.joined_at.0),
                        ),
                    );
                    parts.add(
                        part::SPACES_OF_USER,
                        u.user_id.as_bytes(),
                        &s.insert_space_of_user,
                        (u.user_id.clone(), sid),
                    );
                }
                Settle::Unmember { user } => {
                    parts.add(
                        part::MEMBERS,
                        sid.as_bytes(),
                        &s.delete_member,
                        (sid, user.clone()),
                    );
                    parts.add(
                        part::SPACES_OF_USER,
                        user.as_bytes(),
                        &s.delete_space_of_user,
                        (user.clone(), sid),
                    );
                }
                Settle::Space {
                    title,
                    description,
                    visibility,
                    posting,
                } => parts.add(
                    part::SPACES,
                    sid.as_bytes(),
                    &s.update_space,
                    (
                        title.clone(),
                        description.clone(),
                        visibility.clone(),
                        posting.clone(),
                        sid,
                    ),
                ),
                Settle::Notification(n) => self.notification_write(&mut parts, n),
            }
        }
        parts
    }

    /// The writes of `phase` of the current commit, unless a test holds them back (`None`; never
    /// without the `testkit` feature).
    #[cfg_attr(not(feature = "testkit"), allow(unused_variables))]
    fn unless_parked(
        &self,
        phase: Phase,
        groups: Vec<Vec<Write>>,
        commit_no: u64,
    ) -> Option<Vec<Vec<Write>>> {
        #[cfg(feature = "testkit")]
        {
            let mut next = self
                .hooks
                .park_next
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if *next == Some(phase) {
                *next = None;
                self.hooks
                    .parked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((groups, commit_no));
                return None;
            }
        }
        Some(groups)
    }

    /// Whether a test made the current commit fail at `at` (always false without `testkit`).
    #[cfg_attr(not(feature = "testkit"), allow(unused_variables))]
    fn injected(&self, at: FailPoint) -> bool {
        #[cfg(feature = "testkit")]
        {
            let mut next = self
                .hooks
                .fail_next
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if *next == Some(at) {
                *next = None;
                return true;
            }
        }
        false
    }
}

#[cfg(feature = "testkit")]
impl CqlStore {
    /// Holds back the given phase of the next commit (see [`Phase`]) instead of writing it.
    pub fn park_next_commit(&self, phase: Phase) {
        *self
            .hooks
            .park_next
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(phase);
    }

    /// Writes everything held back so far, now, as the writer that paused would when it wakes
    /// up: with the timestamp of the commit it belongs to ([`write_ts`] of its number). Returns
    /// how many statements were written.
    pub async fn release_parked(&self) -> Result<usize> {
        let parked =
            std::mem::take(&mut *self.hooks.parked.lock().unwrap_or_else(|p| p.into_inner()));
        let mut n = 0;
        for (groups, commit_no) in parked {
            n += groups.iter().map(Vec::len).sum::<usize>();
            self.run_groups(groups, write_ts(commit_no)).await?;
        }
        Ok(n)
    }
}

#[cfg(feature = "testkit")]
impl super::FaultInjection for CqlStore {
    /// `BeforeHead`: the commit's new rows are written, then it fails before its head update.
    /// `AfterHead`: its head moves, then half of its phase-3 partitions are written and it reports
    /// `Unsettled`.
    fn fail_next_commit(&self, at: super::FailPoint) {
        *self
            .hooks
            .fail_next
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(at);
    }
}

/// Partition tags, so equal keys of different tables never share a group.
mod part {
    pub const EVENTS: u8 = 1;
    pub const MESSAGES: u8 = 2;
    pub const MESSAGE_BY_ID: u8 = 3;
    pub const APPRECIATED: u8 = 4;
    pub const MEMBERS: u8 = 5;
    pub const SPACES_OF_USER: u8 = 6;
    pub const HISTORY: u8 = 7;
    pub const KEYS: u8 = 8;
    pub const REACTIONS: u8 = 9;
    pub const SPACES: u8 = 10;
    pub const CONTRIBUTORS: u8 = 11;
    pub const NOTIFICATIONS: u8 = 12;
}

fn history_key(space: SpaceId, message_id: MessageId) -> Vec<u8> {
    let mut k = space.as_bytes().to_vec();
    k.extend_from_slice(message_id.as_bytes());
    k
}

#[async_trait]
impl Store for CqlStore {
    async fn create_space(&self, space: &Space, creator: &Member) -> Result<()> {
        let s = &self.st;
        let id = space.space_id;
        let tags = (!space.tags.is_empty()).then(|| space.tags.clone());
        // Wall-clock timestamps: below every commit's, so commits always win.
        future::try_join5(
            self.exec(
                &s.insert_space,
                (
                    id,
                    &space.title,
                    &space.description,
                    visibility_str(space.visibility),
                    posting_str(space.posting_permission),
                    &space.creator.user_id,
                    &space.creator.username,
                    &space.creator.profile_picture,
                    tags,
                    CqlTimestamp(space.created_at.0),
                ),
            ),
            // Not applied only when retried: the row is there either way.
            self.exec(&s.insert_head, (id, 0_i64, 0_i64, 1_i64)),
            self.exec(
                &s.upsert_member,
                (
                    id,
                    &creator.user.user_id,
                    &creator.user.username,
                    &creator.user.profile_picture,
                    creator.power_level,
                    CqlTimestamp(creator.joined_at.0),
                ),
            ),
            self.exec(&s.insert_space_of_user, (&creator.user.user_id, id)),
            self.disc_create(space),
        )
        .await?;
        Ok(())
    }

    async fn claim(&self, space_id: SpaceId) -> Result<Option<Claimed>> {
        // Whatever this store remembered of the space belongs to an earlier epoch.
        self.forget(space_id);
        for _ in 0..CLAIM_ATTEMPTS {
            let Some(head) = self.head_for_write(space_id).await? else {
                return Ok(None);
            };
            let epoch = head.epoch + 1;
            // `commit_no + 1` is the number a commit in flight from an earlier writer may carry;
            // the claim takes the next one, so its tombstones are above every such write.
            let number = head.commit_no + 2;
            let outcome = lwt_outcome(
                self.exec(
                    &self.st.claim_head,
                    (
                        epoch as i64,
                        number as i64,
                        space_id,
                        head.epoch as i64,
                        head.commit_no as i64,
                    ),
                )
                .await?,
            )?;
            if !outcome.applied {
                // Another claim or a commit came first: read the head again.
                continue;
            }
            // From here on no earlier writer's commit can apply. Finish the last commit's phase 3
            // and delete whatever earlier writers left above the head.
            self.settle_pending(space_id, &head).await?;
            self.fence_above(space_id, head.counters.head_seq, write_ts(number))
                .await?;
            let (space, members) =
                future::try_join(self.space_record(space_id), self.members(space_id)).await?;
            let Some(space) = space else {
                return Ok(None);
            };
            self.remember(space_id, epoch, number);
            let view = SpaceView {
                space,
                counters: head.counters,
            };
            return Ok(Some(Claimed {
                snapshot: SpaceSnapshot { view, members },
                epoch,
            }));
        }
        Err(EngineError::StoreUnavailable(format!(
            "space {space_id}: claim lost {CLAIM_ATTEMPTS} races for the head row"
        )))
    }

    async fn load_space(&self, space_id: SpaceId) -> Result<Option<SpaceSnapshot>> {
        let Some(view) = self.space_view(space_id).await? else {
            return Ok(None);
        };
        let members = self.members(space_id).await?;
        Ok(Some(SpaceSnapshot { view, members }))
    }

    async fn get_space(&self, space_id: SpaceId) -> Result<Option<SpaceView>> {
        self.space_view(space_id).await
    }

    async fn get_member(&self, space_id: SpaceId, user_id: &str) -> Result<Option<Member>> {
        Ok(self
            .first_row::<MemberRow>(&self.st.select_member, (space_id, user_id))
            .await?
            .map(MemberRow::into_member))
    }

    async fn scan_members(
        &self,
        space_id: SpaceId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Member>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let n = i32::try_from(limit).unwrap_or(i32::MAX);
        // user_id is the clustering key (text: UTF-8 byte order), so this is a slice of one
        // partition starting at `after`.
        let rows = match after {
            Some(a) => {
                self.exec(&self.st.select_members_after, (space_id, a, n))
                    .await?
            }
            None => {
                self.exec(&self.st.select_members_page, (space_id, n))
                    .await?
            }
        }
        .into_rows_result()
        .map_err(unavailable)?;
        rows.rows::<MemberRow>()
            .map_err(corrupt)?
            .map(|r| r.map(MemberRow::into_member).map_err(corrupt))
            .collect()
    }

    // ---- unread: read markers, unread counts, the inbox (issue 12) ----
    async fn read_marker(
        &self,
        space_id: SpaceId,
        user_id: &str,
    ) -> Result<Option<crate::unread::ReadMarker>> {
        self.unread_marker(space_id, user_id).await
    }
    async fn top_level_at(&self, space_id: SpaceId, seq: Seq) -> Result<Option<u64>> {
        self.unread_top_level_at(space_id, seq).await
    }
    async fn space_activity(
        &self,
        space_id: SpaceId,
    ) -> Result<Option<crate::unread::SpaceActivity>> {
        self.unread_activity(space_id).await
    }
    async fn memberships_of_user(&self, user_id: &str) -> Result<Vec<crate::unread::Membership>> {
        self.unread_memberships(user_id).await
    }

    async fn spaces_of_user(&self, user_id: &str) -> Result<Vec<(SpaceView, Member)>> {
        let pager = self
            .session
            .execute_iter(self.st.select_spaces_of_user.clone(), (user_id,))
            .await
            .map_err(unavailable)?;
        let ids: Vec<(Uuid,)> = pager
            .rows_stream::<(Uuid,)>()
            .map_err(corrupt)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let loads = ids.into_iter().map(|(space_id,)| async move {
            let (view, member) = future::try_join(
                self.space_view(space_id),
                self.get_member(space_id, user_id),
            )
            .await?;
            Ok::<_, EngineError>(view.zip(member))
        });
        Ok(future::try_join_all(loads)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    async fn commit(&self, b: &CommitBatch) -> Result<()> {
        if b.events.len() as u64 > BUCKET_SEQS {
            return Err(EngineError::Invalid(
                "batch_too_large",
                format!(
                    "a commit holds at most {BUCKET_SEQS} events, this one {}",
                    b.events.len()
                ),
            ));
        }
        let sid = b.space_id;
        let base = self.commit_base(sid, b.epoch).await?;
        let number = base + 1;
        let ts = write_ts(number);
        let (phase1, settle) = self.plan(b)?;
        let pending = if settle.is_empty() {
            None
        } else {
            Some(serde_json::to_vec(&settle).map_err(corrupt)?)
        };

        // Phase 1: new rows, above the head.
        let groups = phase1.into_groups();
        if let Some(groups) = self.unless_parked(Phase::NewRows, groups, number)
            && let Err(e) = self.run_groups(groups, ts).await
        {
            self.forget(sid);
            return Err(e);
        }
        if self.injected(FailPoint::BeforeHead) {
            self.forget(sid);
            return Err(EngineError::StoreUnavailable(
                "injected failure after phase 1".into(),
            ));
        }

        // Phase 2: the head, if this writer still holds the space.
        let c = b.counters;
        let outcome = match &b.stats {
            None => {
                self.exec(
                    &self.st.commit_head,
                    (
                        c.head_seq as i64,
                        c.message_count as i64,
                        c.member_count as i64,
                        number as i64,
                        number as i64,
                        pending,
                        sid,
                        b.epoch as i64,
                        base as i64,
                    ),
                )
                .await
            }
            Some(stats) => {
                let stats = serde_json::to_string(stats).map_err(corrupt)?;
                self.exec(
                    &self.st.commit_head_stats,
                    (
                        c.head_seq as i64,
                        c.message_count as i64,
                        c.member_count as i64,
                        number as i64,
                        number as i64,
                        pending,
                        stats,
                        sid,
                        b.epoch as i64,
                        base as i64,
                    ),
                )
                .await
            }
        }
        .and_then(lwt_outcome);
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                // Unknown whether it applied: the next commit or claim reads the head.
                self.forget(sid);
                return Err(e);
            }
        };
        if !outcome.applied {
            self.forget(sid);
            return Err(if outcome.epoch != Some(b.epoch) {
                EngineError::Fenced
            } else {
                EngineError::StoreUnavailable(format!(
                    "the head of space {sid} is at commit {:?}, expected {base}",
                    outcome.commit_no
                ))
            });
        }
        self.remember(sid, b.epoch, number);

        // Phase 3: existing rows. The commit is durable whatever happens now.
        let groups = self.settle_writes(sid, &settle).into_groups();
        let unsettled =
            if let Some(mut groups) = self.unless_parked(Phase::ExistingRows, groups, number) {
                if self.injected(FailPoint::AfterHead) {
                    let half = groups.len().div_ceil(2);
                    groups.truncate(half);
                    let _ = self.run_groups(groups, ts).await;
                    Some("injected failure during phase 3".to_owned())
                } else if groups.is_empty() {
                    None
                } else {
                    self.run_groups(groups, ts)
                        .await
                        .err()
                        .map(|e| e.to_string())
                }
            } else {
                Some("phase 3 held back by a test".to_owned())
            };
        match unsettled {
            None => {
                if !b.notifications.is_empty() {
                    self.trim_notified(&b.notifications);
                }
                Ok(())
            }
            Some(reason) => {
                self.forget(sid);
                Err(EngineError::Unsettled(reason))
            }
        }
    }

    async fn read_events(
        &self,
        space_id: SpaceId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<SpaceEvent>> {
        let head = self.counters(space_id).await?.map_or(0, |c| c.head_seq);
        let mut out = Vec::new();
        if after >= head || limit == 0 {
            return Ok(out);
        }
        let mut b = bucket(after + 1);
        while b <= bucket(head) && out.len() < limit {
            let want = (limit - out.len()).min(i32::MAX as usize) as i32;
            let rows = self
                .exec(
                    &self.st.select_events,
                    (space_id, b, after as i64, head as i64, want),
                )
                .await?
                .into_rows_result()
                .map_err(unavailable)?;
            for row in rows.rows::<(String,)>().map_err(corrupt)? {
                let (json,) = row.map_err(corrupt)?;
                out.push(serde_json::from_str::<SpaceEvent>(&json).map_err(corrupt)?);
            }
            b += 1;
        }
        Ok(out)
    }

    async fn page_messages(
        &self,
        space_id: SpaceId,
        order: MessageOrder,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let head = self.counters(space_id).await?.map_or(0, |c| c.head_seq);
        if head == 0 || limit == 0 {
            return Ok(Vec::new());
        }
        match order {
            MessageOrder::Recent => {
                let mut out = Vec::with_capacity(limit);
                let mut skip = offset;
                self.scan_recent(space_id, head, |row| {
                    if skip > 0 {
                        skip -= 1;
                    } else {
                        out.push(row.into_message());
                    }
                    out.len() < limit
                })
                .await?;
                Ok(out)
            }
            MessageOrder::MostAppreciated => {
                // First the appreciated messages (count desc, newest first)…
                let pager = self
                    .session
                    .execute_iter(self.st.select_appreciated.clone(), (space_id,))
                    .await
                    .map_err(unavailable)?;
                let mut rows = pager
                    .rows_stream::<(i32, i64, Option<Uuid>)>()
                    .map_err(corrupt)?;
                let mut appreciated = 0usize;
                let mut out: Vec<Message> = Vec::with_capacity(limit);
                let mut picked: Vec<(i32, i64, Option<Uuid>)> = Vec::new();
                loop {
                    let entry = rows.next().await.transpose().map_err(unavailable)?;
                    if let Some((count, seq, id)) = entry {
                        if seq < 0 || seq as u64 > head {
                            continue;
                        }
                        if appreciated < offset {
                            appreciated += 1;
                            continue;
                        }
                        picked.push((count, seq, id));
                        if out.len() + picked.len() < limit {
                            continue;
                        }
                    }
                    // Load the picked rows, keeping only entries that match their row exactly
                    // (the index is exact once every commit is settled; this keeps a read during
                    // an unsettled commit from showing a stale entry).
                    let loads = picked.drain(..).map(|(count, seq, id)| async move {
                        let row = self.message_row(space_id, seq as u64).await?;
                        Ok::<_, EngineError>(row.filter(|r| {
                            r.message_id.is_some()
                                && r.message_id == id
                                && r.appreciation_count == Some(count)
                        }))
                    });
                    for row in future::try_join_all(loads).await?.into_iter().flatten() {
                        appreciated += 1;
                        out.push(row.into_message());
                    }
                    if entry.is_none() || out.len() >= limit {
                        break;
                    }
                }
                // …then the others, newest first.
                if out.len() < limit {
                    let mut skip = offset.saturating_sub(appreciated);
                    self.scan_recent(space_id, head, |row| {
                        if row.appreciation_count.unwrap_or_default() > 0 {
                            return true;
                        }
                        if skip > 0 {
                            skip -= 1;
                        } else {
                            out.push(row.into_message());
                        }
                        out.len() < limit
                    })
                    .await?;
                }
                Ok(out)
            }
        }
    }

    async fn scan_messages(
        &self,
        space_id: SpaceId,
        after: Seq,
        before: Seq,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.scan_between(space_id, after, before, direction, limit)
            .await
    }

    async fn get_message(
        &self,
        space_id: SpaceId,
        message_id: MessageId,
    ) -> Result<Option<Message>> {
        let Some((sid, seq)) = self
            .first_row::<(Option<Uuid>, Option<i64>)>(&self.st.select_message_by_id, (message_id,))
            .await?
        else {
            return Ok(None);
        };
        let (Some(sid), Some(seq)) = (sid, seq) else {
            return Ok(None);
        };
        if sid != space_id || seq < 0 {
            return Ok(None);
        }
        let head = self.counters(space_id).await?.map_or(0, |c| c.head_seq);
        if seq as u64 > head {
            return Ok(None);
        }
        // The entry may be a fenced commit's, pointing at a seq another message now holds.
        Ok(self
            .message_row(space_id, seq as u64)
            .await?
            .filter(|row| row.message_id == Some(message_id))
            .map(MessageRow::into_message))
    }

    async fn idempotent_send(
        &self,
        space_id: SpaceId,
        sender_id: &str,
        key: &str,
    ) -> Result<Option<MessageId>> {
        // The row's TTL expires it (rounded up to whole seconds).
        Ok(self
            .first_row::<(Option<Uuid>,)>(&self.st.select_key, (space_id, sender_id, key))
            .await?
            .and_then(|(id,)| id))
    }

    async fn get_reaction(
        &self,
        space_id: SpaceId,
        message_id: MessageId,
        key: &str,
        user_id: &str,
    ) -> Result<Option<Seq>> {
        Ok(self
            .first_row::<(Option<i64>,)>(
                &self.st.select_reaction,
                (space_id, message_id, key, user_id),
            )
            .await?
            .map(|(seq,)| seq.unwrap_or_default().max(0) as u64))
    }

    async fn user_reactions(
        &self,
        space_id: SpaceId,
        user_id: &str,
        items: Vec<(MessageId, Vec<String>)>,
    ) -> Result<Vec<Vec<String>>> {
        // One read per message, all at once: the user's keys are one clustering prefix of the
        // message's partition (at most `MAX_REACTION_KEYS` rows).
        future::try_join_all(items.into_iter().map(|(message_id, keys)| async move {
            let rows = self
                .exec(
                    &self.st.select_user_reactions,
                    (space_id, message_id, user_id),
                )
                .await?
                .into_rows_result()
                .map_err(unavailable)?;
            let mut mine = Vec::new();
            for row in rows.rows::<(String,)>().map_err(corrupt)? {
                let (key,) = row.map_err(corrupt)?;
                if keys.contains(&key) {
                    mine.push(key);
                }
            }
            // In the order the caller gave.
            mine.sort_by_key(|k| keys.iter().position(|x| x == k));
            Ok::<_, EngineError>(mine)
        }))
        .await
    }

    async fn message_history(
        &self,
        space_id: SpaceId,
        message_id: MessageId,
    ) -> Result<Vec<MessageVersion>> {
        let pager = self
            .session
            .execute_iter(self.st.select_history.clone(), (space_id, message_id))
            .await
            .map_err(unavailable)?;
        type HistoryRow = (
            i64,
            Option<String>,
            Option<String>,
            Option<CqlTimestamp>,
            Option<CqlTimestamp>,
        );
        let rows: Vec<HistoryRow> = pager
            .rows_stream::<HistoryRow>()
            .map_err(corrupt)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        // Clustered by version, descending: newest first.
        Ok(rows
            .into_iter()
            .map(|(version, content, body, from, replaced)| MessageVersion {
                seq: version.max(0) as u64,
                content,
                body: from_json_col(body),
                valid_from: Timestamp(from.map_or(0, |t| t.0)),
                replaced_at: Timestamp(replaced.map_or(0, |t| t.0)),
            })
            .collect())
    }

    async fn space_stats(&self, space_id: SpaceId) -> Result<Option<SpaceStats>> {
        let Some((stats,)) = self
            .first_row::<(Option<String>,)>(&self.st.select_stats, (space_id,))
            .await?
        else {
            return Ok(None);
        };
        stats
            .map(|s| serde_json::from_str(&s).map_err(corrupt))
            .transpose()
    }

    async fn get_contributor(
        &self,
        space_id: SpaceId,
        user_id: &str,
    ) -> Result<Option<ContributorStats>> {
        Ok(self
            .first_row::<ContributorRow>(&self.st.select_contributor, (space_id, user_id))
            .await?
            .map(ContributorRow::into_stats))
    }

    async fn contributors(&self, space_id: SpaceId) -> Result<Vec<ContributorStats>> {
        let pager = self
            .session
            .execute_iter(self.st.select_contributors.clone(), (space_id,))
            .await
            .map_err(unavailable)?;
        let rows: Vec<ContributorRow> = pager
            .rows_stream::<ContributorRow>()
            .map_err(corrupt)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        Ok(rows.into_iter().map(ContributorRow::into_stats).collect())
    }

    async fn ping(&self) -> Result<()> {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", ())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    // ---- disc: discovery and user stats (issue 12) ----

    async fn newest_public_spaces(&self, limit: usize) -> Result<Vec<SpaceId>> {
        self.disc_newest_public(limit).await
    }

    async fn spaces_with_tag(&self, tag: &str, limit: usize) -> Result<Vec<SpaceId>> {
        self.disc_with_tag(tag, limit).await
    }

    async fn search_words(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, SpaceId, bool)>> {
        self.disc_search(prefix, limit).await
    }

    async fn activity_in_hour(&self, hour: i64) -> Result<Vec<(SpaceId, u64)>> {
        self.disc_activity_in_hour(hour).await
    }

    async fn space_hour_activity(&self, space_id: SpaceId, hour: i64) -> Result<u64> {
        self.disc_space_activity(space_id, hour).await
    }

    async fn get_user_space_stats(
        &self,
        user_id: &str,
        space_id: SpaceId,
    ) -> Result<Option<crate::discovery::UserSpaceStats>> {
        self.disc_user_space_stats(user_id, space_id).await
    }

    async fn user_space_rows(&self, user_id: &str) -> Result<Vec<crate::discovery::UserSpaceRow>> {
        self.disc_user_rows(user_id).await
    }

    async fn close(&self) -> Result<()> {
        // Every acknowledged write is already on the cluster; nothing is buffered here.
        Ok(())
    }

    // ---- notif: notifications (issue 12) ----
    async fn notifications(
        &self,
        user_id: &str,
    ) -> Result<Vec<crate::notifications::Notification>> {
        self.list_and_trim(user_id).await
    }

    async fn has_notification(&self, user_id: &str, notification_id: Uuid) -> Result<bool> {
        self.notification_exists(user_id, notification_id).await
    }

    async fn mark_notifications_read(&self, user_id: &str, ids: &[Uuid]) -> Result<()> {
        self.mark_read(user_id, ids).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_timestamps_order_commits_above_any_wall_clock_time() {
        let now_us = Timestamp::now().0 * 1000;
        assert!(
            write_ts(0) > now_us * 1000,
            "far above today, even in nanoseconds"
        );
        assert!(write_ts(0) < write_ts(1) && write_ts(1) < write_ts(1 << 40));
        assert_eq!(
            write_ts(u64::MAX),
            i64::MAX,
            "saturates instead of wrapping"
        );
    }

    #[test]
    fn pending_changes_round_trip_through_their_encoding() {
        let ops = vec![
            Settle::Delete {
                id: Uuid::nil(),
                seq: 3,
                count: 2,
            },
            Settle::Appreciation {
                id: Uuid::nil(),
                seq: 4,
                count: 1,
                prev: 2,
                likes: vec![("a".into(), None), ("b".into(), Some(9))],
            },
            Settle::Index {
                id: Uuid::nil(),
                seq: 5,
                count: 1,
            },
            Settle::Replies {
                id: Uuid::nil(),
                seq: 6,
                count: 2,
            },
            Settle::Disc(discovery::DiscSettle::Activity { h: 490_000, n: 7 }),
            Settle::Disc(discovery::DiscSettle::User {
                u: "u".into(),
                n: 2,
                w: 9,
                a: 1,
            }),
            Settle::Disc(discovery::DiscSettle::Creator { u: "c".into() }),
            Settle::Disc(discovery::DiscSettle::Index {
                b: 680,
                tags: vec!["t".into()],
                words: vec![("word".into(), true)],
            }),
            Settle::Revise(Box::new(Revision::of(&Message {
                content: Some("edited".into()),
                body: Some(serde_json::Map::from_iter([("k".to_owned(), 1.into())])),
                mentions: vec!["u".into()],
                edited_at: Some(Timestamp(1_700_000_000_000)),
                redacted: true,
                redacted_by: Some("m".into()),
                ..Default::default()
            }))),
            Settle::History {
                id: Uuid::nil(),
                version: MessageVersion {
                    seq: 7,
                    content: Some("before".into()),
                    body: None,
                    valid_from: Timestamp(1),
                    replaced_at: Timestamp(2),
                },
            },
            Settle::ClearHistory { id: Uuid::nil() },
            Settle::Key {
                sender: "u".into(),
                key: "k".into(),
                id: Uuid::nil(),
                exp: 1_700_000_300_000,
            },
            Settle::Member(Member {
                user: UserRef {
                    user_id: "u".into(),
                    username: "U".into(),
                    profile_picture: String::new(),
                },
                power_level: 50,
                joined_at: Timestamp(1_700_000_000_123),
            }),
            Settle::Unmember { user: "u".into() },
            Settle::Space {
                title: "t".into(),
                description: String::new(),
                visibility: "private".into(),
                posting: "admins".into(),
            },
            Settle::Contributor {
                u: "u".into(),
                n: 3,
                w: 12,
            },
        ];
        let bytes = serde_json::to_vec(&ops).unwrap();
        assert_eq!(serde_json::from_slice::<Vec<Settle>>(&bytes).unwrap(), ops);
    }
}
