//! The CQL store: ScyllaDB (or Apache Cassandra) through the `scylla` driver.
//!
//! Schema and migrations are in [`schema`]. This module maps the [`Store`] trait onto it.
//!
//! # Writes
//! A commit is two phases:
//! 1. every row of the batch, grouped by partition: one unlogged batch per partition (a single
//!    mutation per partition on the server), all partitions written concurrently — one round
//!    trip of latency whatever the number of partitions;
//! 2. then the space's counters row, whose `head_seq` makes the batch visible.
//!
//! Reads only return what is at or below `head_seq`, so a commit that failed half-way (some
//! partitions written, counters not) is invisible: nobody can observe an event that history does
//! not have. Every key derives from the space id and the seqs, so a retried batch writes the same
//! rows again; and because every statement carries a client-side, monotonic timestamp, a replaced
//! batch (the actor reuses the seqs of a batch that never became durable) always wins over a late
//! write of the failed one.
//!
//! Consistency is `LOCAL_QUORUM` for reads and writes.

pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt, future};
use scylla::DeserializeRow;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::serialize::row::SerializeRow;
use scylla::statement::Consistency;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use uuid::Uuid;

use self::schema::{CURRENT_VERSION, MIGRATIONS, bucket, keyspace_ddl, valid_keyspace};
use super::{CommitBatch, MessageOrder, MessageWrite, SpaceSnapshot, Store};
use crate::error::{EngineError, Result};
use crate::event::{EventKind, SpaceEvent};
use crate::model::{
    Like, MediaType, Member, Message, MessageId, PostingPermission, Seq, Space, SpaceCounters,
    SpaceId, SpaceView, Timestamp, UserRef, Visibility,
};

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
    let session = connect_session(cfg).await?;
    let ks = &cfg.keyspace;
    let scylla = is_scylla(&session).await?;
    session
        .query_unpaged(keyspace_ddl(ks, &cfg.replication, scylla), ())
        .await
        .map_err(unavailable)?;
    let current = applied_version(&session, ks).await?;
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        for stmt in m.statements {
            session
                .query_unpaged(stmt.replace("{ks}", ks), ())
                .await
                .map_err(|e| unavailable(format!("migration {}: {e}", m.version)))?;
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

/// Prepared statements, one per operation.
struct Statements {
    insert_space: PreparedStatement,
    select_space: PreparedStatement,
    upsert_counters: PreparedStatement,
    select_counters: PreparedStatement,
    upsert_member: PreparedStatement,
    select_member: PreparedStatement,
    select_members: PreparedStatement,
    insert_space_of_user: PreparedStatement,
    select_spaces_of_user: PreparedStatement,
    insert_event: PreparedStatement,
    select_events: PreparedStatement,
    upsert_message: PreparedStatement,
    set_like: PreparedStatement,
    delete_like: PreparedStatement,
    delete_message: PreparedStatement,
    select_message: PreparedStatement,
    select_messages: PreparedStatement,
    insert_message_by_id: PreparedStatement,
    delete_message_by_id: PreparedStatement,
    select_message_by_id: PreparedStatement,
    insert_appreciated: PreparedStatement,
    delete_appreciated: PreparedStatement,
    select_appreciated: PreparedStatement,
}

impl Statements {
    async fn prepare(s: &Session, ks: &str) -> Result<Self> {
        let p = |cql: String| async move {
            let mut st = s.prepare(cql).await.map_err(unavailable)?;
            // Every write is keyed by ids and seqs: retrying it is safe.
            st.set_is_idempotent(true);
            Ok::<_, EngineError>(st)
        };
        Ok(Statements {
            insert_space: p(format!("INSERT INTO {ks}.spaces_by_id (space_id, title, description, visibility, posting_permission, creator_id, creator_username, creator_picture, tags, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")).await?,
            select_space: p(format!("SELECT space_id, title, description, visibility, posting_permission, creator_id, creator_username, creator_picture, tags, created_at FROM {ks}.spaces_by_id WHERE space_id = ?")).await?,
            upsert_counters: p(format!("INSERT INTO {ks}.space_counters_by_id (space_id, head_seq, message_count, member_count) VALUES (?, ?, ?, ?)")).await?,
            select_counters: p(format!("SELECT head_seq, message_count, member_count FROM {ks}.space_counters_by_id WHERE space_id = ?")).await?,
            upsert_member: p(format!("INSERT INTO {ks}.members_by_space (space_id, user_id, username, profile_picture, power_level, joined_at) VALUES (?, ?, ?, ?, ?, ?)")).await?,
            select_member: p(format!("SELECT user_id, username, profile_picture, power_level, joined_at FROM {ks}.members_by_space WHERE space_id = ? AND user_id = ?")).await?,
            select_members: p(format!("SELECT user_id, username, profile_picture, power_level, joined_at FROM {ks}.members_by_space WHERE space_id = ?")).await?,
            insert_space_of_user: p(format!("INSERT INTO {ks}.spaces_by_user (user_id, space_id) VALUES (?, ?)")).await?,
            select_spaces_of_user: p(format!("SELECT space_id FROM {ks}.spaces_by_user WHERE user_id = ?")).await?,
            insert_event: p(format!("INSERT INTO {ks}.events_by_space (space_id, bucket, seq, event) VALUES (?, ?, ?, ?)")).await?,
            select_events: p(format!("SELECT event FROM {ks}.events_by_space WHERE space_id = ? AND bucket = ? AND seq > ? AND seq <= ? LIMIT ?")).await?,
            upsert_message: p(format!("INSERT INTO {ks}.messages_by_space (space_id, bucket, seq, message_id, sender_id, sender_username, sender_picture, content, media_url, media_type, word_count, appreciation_count, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")).await?,
            set_like: p(format!("UPDATE {ks}.messages_by_space SET likes[?] = ? WHERE space_id = ? AND bucket = ? AND seq = ?")).await?,
            delete_like: p(format!("DELETE likes[?] FROM {ks}.messages_by_space WHERE space_id = ? AND bucket = ? AND seq = ?")).await?,
            delete_message: p(format!("DELETE FROM {ks}.messages_by_space WHERE space_id = ? AND bucket = ? AND seq = ?")).await?,
            select_message: p(format!("SELECT {MESSAGE_COLUMNS} FROM {ks}.messages_by_space WHERE space_id = ? AND bucket = ? AND seq = ?")).await?,
            select_messages: p(format!("SELECT {MESSAGE_COLUMNS} FROM {ks}.messages_by_space WHERE space_id = ? AND bucket = ? AND seq <= ?")).await?,
            insert_message_by_id: p(format!("INSERT INTO {ks}.message_by_id (message_id, space_id, seq) VALUES (?, ?, ?)")).await?,
            delete_message_by_id: p(format!("DELETE FROM {ks}.message_by_id WHERE message_id = ?")).await?,
            select_message_by_id: p(format!("SELECT space_id, seq FROM {ks}.message_by_id WHERE message_id = ?")).await?,
            insert_appreciated: p(format!("INSERT INTO {ks}.appreciated_messages_by_space (space_id, appreciation_count, seq, message_id) VALUES (?, ?, ?, ?)")).await?,
            delete_appreciated: p(format!("DELETE FROM {ks}.appreciated_messages_by_space WHERE space_id = ? AND appreciation_count = ? AND seq = ?")).await?,
            select_appreciated: p(format!("SELECT appreciation_count, seq FROM {ks}.appreciated_messages_by_space WHERE space_id = ?")).await?,
        })
    }
}

const MESSAGE_COLUMNS: &str = "space_id, seq, message_id, sender_id, sender_username, sender_picture, content, media_url, media_type, word_count, appreciation_count, likes, created_at";

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
        Message {
            message_id: self.message_id.unwrap_or_default(),
            space_id: self.space_id,
            seq: self.seq as u64,
            sender: UserRef {
                user_id: sender_id.clone(),
                username: self.sender_username.unwrap_or_default(),
                profile_picture: self.sender_picture.unwrap_or_default(),
            },
            sender_id,
            content: self.content,
            media_url: self.media_url,
            media_type: self.media_type.as_deref().and_then(MediaType::parse),
            word_count: self.word_count.unwrap_or_default() as u32,
            appreciation_count: self.appreciation_count.unwrap_or_default() as u32,
            likes,
            created_at: Timestamp(self.created_at.map_or(0, |t| t.0)),
        }
    }
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
}

fn space_bucket_key(space: SpaceId, seq: Seq) -> Vec<u8> {
    let mut k = space.as_bytes().to_vec();
    k.extend_from_slice(&bucket(seq).to_be_bytes());
    k
}

/// The ScyllaDB / Cassandra [`Store`]. See the module doc.
pub struct CqlStore {
    session: Session,
    st: Statements,
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
        Ok(Arc::new(CqlStore { session, st }))
    }

    async fn exec(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<scylla::response::query_result::QueryResult> {
        self.session
            .execute_unpaged(st, values)
            .await
            .map_err(unavailable)
    }

    async fn counters(&self, space_id: SpaceId) -> Result<Option<SpaceCounters>> {
        let rows = self
            .exec(&self.st.select_counters, (space_id,))
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        let Some((head, messages, members)) = rows
            .maybe_first_row::<(Option<i64>, Option<i64>, Option<i64>)>()
            .map_err(corrupt)?
        else {
            return Ok(None);
        };
        Ok(Some(SpaceCounters {
            head_seq: head.unwrap_or_default() as u64,
            message_count: messages.unwrap_or_default() as u64,
            member_count: members.unwrap_or_default() as u64,
        }))
    }

    async fn space_view(&self, space_id: SpaceId) -> Result<Option<SpaceView>> {
        let (space, counters) = future::try_join(
            async {
                let rows = self
                    .exec(&self.st.select_space, (space_id,))
                    .await?
                    .into_rows_result()
                    .map_err(unavailable)?;
                rows.maybe_first_row::<SpaceRow>().map_err(corrupt)
            },
            self.counters(space_id),
        )
        .await?;
        Ok(space.map(|s| SpaceView {
            space: s.into_space(),
            counters: counters.unwrap_or_default(),
        }))
    }

    /// Loads message rows at `seq`s, in the given order, dropping missing ones.
    async fn messages_at(&self, space_id: SpaceId, seqs: &[Seq]) -> Result<Vec<Message>> {
        let loads = seqs.iter().map(|&seq| async move {
            let rows = self
                .exec(&self.st.select_message, (space_id, bucket(seq), seq as i64))
                .await?
                .into_rows_result()
                .map_err(unavailable)?;
            Ok::<_, EngineError>(
                rows.maybe_first_row::<MessageRow>()
                    .map_err(corrupt)?
                    .map(MessageRow::into_message),
            )
        });
        Ok(future::try_join_all(loads)
            .await?
            .into_iter()
            .flatten()
            .collect())
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
                if !visit(row.map_err(unavailable)?) {
                    return Ok(());
                }
            }
            b -= 1;
        }
        Ok(())
    }

    async fn run_writes(&self, writes: Vec<Write>) -> Result<()> {
        if writes.len() == 1 {
            let (st, values) = writes.into_iter().next().expect("one write");
            self.session
                .execute_unpaged(&st, values)
                .await
                .map_err(unavailable)?;
            return Ok(());
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        batch.set_is_idempotent(true);
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
}

/// Partition tags, so equal keys of different tables never share a group.
mod part {
    pub const EVENTS: u8 = 1;
    pub const MESSAGES: u8 = 2;
    pub const MESSAGE_BY_ID: u8 = 3;
    pub const APPRECIATED: u8 = 4;
    pub const MEMBERS: u8 = 5;
    pub const SPACES_OF_USER: u8 = 6;
}

#[async_trait]
impl Store for CqlStore {
    async fn create_space(&self, space: &Space, creator: &Member) -> Result<()> {
        let s = &self.st;
        let id = space.space_id;
        let tags = (!space.tags.is_empty()).then(|| space.tags.clone());
        future::try_join4(
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
            self.exec(&s.upsert_counters, (id, 0_i64, 0_i64, 1_i64)),
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
        )
        .await?;
        Ok(())
    }

    async fn load_space(&self, space_id: SpaceId) -> Result<Option<SpaceSnapshot>> {
        let Some(view) = self.space_view(space_id).await? else {
            return Ok(None);
        };
        let pager = self
            .session
            .execute_iter(self.st.select_members.clone(), (space_id,))
            .await
            .map_err(unavailable)?;
        let members: Vec<Member> = pager
            .rows_stream::<MemberRow>()
            .map_err(corrupt)?
            .map_ok(MemberRow::into_member)
            .try_collect()
            .await
            .map_err(unavailable)?;
        Ok(Some(SpaceSnapshot { view, members }))
    }

    async fn get_space(&self, space_id: SpaceId) -> Result<Option<SpaceView>> {
        self.space_view(space_id).await
    }

    async fn get_member(&self, space_id: SpaceId, user_id: &str) -> Result<Option<Member>> {
        let rows = self
            .exec(&self.st.select_member, (space_id, user_id))
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        Ok(rows
            .maybe_first_row::<MemberRow>()
            .map_err(corrupt)?
            .map(MemberRow::into_member))
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
        let s = &self.st;
        let sid = b.space_id;
        let mut parts = Partitions::default();
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
                    previous_appreciation,
                } => {
                    let key = space_bucket_key(sid, m.seq);
                    let seq = m.seq as i64;
                    parts.add(
                        part::MESSAGES,
                        &key,
                        &s.upsert_message,
                        (
                            sid,
                            bucket(m.seq),
                            seq,
                            m.message_id,
                            m.sender_id.clone(),
                            m.sender.username.clone(),
                            m.sender.profile_picture.clone(),
                            m.content.clone(),
                            m.media_url.clone(),
                            media_type_str(m.media_type),
                            m.word_count as i32,
                            m.appreciation_count as i32,
                            CqlTimestamp(m.created_at.0),
                        ),
                    );
                    // Likes change element by element (never rewriting the whole map), to the
                    // final state of each user this batch touched.
                    let touched = b.events.iter().filter_map(|e| match &e.kind {
                        EventKind::ReactionChanged(r) if r.message_id == m.message_id => {
                            Some(r.user_id.clone())
                        }
                        _ => None,
                    });
                    let mut seen: Vec<String> = Vec::new();
                    for user in touched {
                        if seen.contains(&user) {
                            continue;
                        }
                        match m.likes.iter().find(|l| l.user_id == user) {
                            Some(like) => parts.add(
                                part::MESSAGES,
                                &key,
                                &s.set_like,
                                (user.clone(), like.id as i64, sid, bucket(m.seq), seq),
                            ),
                            None => parts.add(
                                part::MESSAGES,
                                &key,
                                &s.delete_like,
                                (user.clone(), sid, bucket(m.seq), seq),
                            ),
                        }
                        seen.push(user);
                    }
                    if previous_appreciation.is_none() {
                        parts.add(
                            part::MESSAGE_BY_ID,
                            m.message_id.as_bytes(),
                            &s.insert_message_by_id,
                            (m.message_id, sid, seq),
                        );
                    }
                    let prev = previous_appreciation.unwrap_or(0);
                    if prev != m.appreciation_count {
                        if prev > 0 {
                            parts.add(
                                part::APPRECIATED,
                                sid.as_bytes(),
                                &s.delete_appreciated,
                                (sid, prev as i32, seq),
                            );
                        }
                        if m.appreciation_count > 0 {
                            parts.add(
                                part::APPRECIATED,
                                sid.as_bytes(),
                                &s.insert_appreciated,
                                (sid, m.appreciation_count as i32, seq, m.message_id),
                            );
                        }
                    }
                }
                MessageWrite::Delete {
                    message_id,
                    seq,
                    appreciation_count,
                } => {
                    parts.add(
                        part::MESSAGES,
                        &space_bucket_key(sid, *seq),
                        &s.delete_message,
                        (sid, bucket(*seq), *seq as i64),
                    );
                    parts.add(
                        part::MESSAGE_BY_ID,
                        message_id.as_bytes(),
                        &s.delete_message_by_id,
                        (*message_id,),
                    );
                    if *appreciation_count > 0 {
                        parts.add(
                            part::APPRECIATED,
                            sid.as_bytes(),
                            &s.delete_appreciated,
                            (sid, *appreciation_count as i32, *seq as i64),
                        );
                    }
                }
            }
        }
        for m in &b.members {
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
        // Phase 1: every partition, concurrently.
        future::try_join_all(parts.groups.into_values().map(|w| self.run_writes(w))).await?;
        // Phase 2: the counters make the batch visible.
        let c = b.counters;
        self.exec(
            &s.upsert_counters,
            (
                sid,
                c.head_seq as i64,
                c.message_count as i64,
                c.member_count as i64,
            ),
        )
        .await?;
        Ok(())
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
                let mut rows = pager.rows_stream::<(i32, i64)>().map_err(corrupt)?;
                let mut appreciated = 0usize;
                let mut picked: Vec<Seq> = Vec::new();
                while let Some(row) = rows.next().await {
                    let (_, seq) = row.map_err(unavailable)?;
                    if seq as u64 > head {
                        continue;
                    }
                    if appreciated >= offset && picked.len() < limit {
                        picked.push(seq as u64);
                    }
                    appreciated += 1;
                    if picked.len() == limit {
                        break;
                    }
                }
                let mut out = self.messages_at(space_id, &picked).await?;
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

    async fn get_message(
        &self,
        space_id: SpaceId,
        message_id: MessageId,
    ) -> Result<Option<Message>> {
        let rows = self
            .exec(&self.st.select_message_by_id, (message_id,))
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        let Some((sid, seq)) = rows
            .maybe_first_row::<(Option<Uuid>, Option<i64>)>()
            .map_err(corrupt)?
        else {
            return Ok(None);
        };
        let (Some(sid), Some(seq)) = (sid, seq) else {
            return Ok(None);
        };
        if sid != space_id {
            return Ok(None);
        }
        let head = self.counters(space_id).await?.map_or(0, |c| c.head_seq);
        if seq as u64 > head {
            return Ok(None);
        }
        Ok(self
            .messages_at(space_id, &[seq as u64])
            .await?
            .into_iter()
            .next())
    }

    async fn ping(&self) -> Result<()> {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", ())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        // Every acknowledged write is already on the cluster; nothing is buffered here.
        Ok(())
    }
}
