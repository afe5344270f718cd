//! The embedded store: one fjall database under `<data-dir>/store`, the default backend.
//!
//! # Why fjall
//! fjall is an LSM tree: writes are sequential journal appends, which suits an append-mostly
//! message log, and its keyspaces commit atomically together in one batch. Measured on our VMs
//! (DEPENDENCIES.md), one synced write costs fjall ≈ 0.13 ms against redb's ≈ 0.29 ms (redb's
//! copy-on-write B-tree rewrites pages per commit), and big batches run at ≈ 900 k vs 720 k
//! values/s. It is pure Rust, actively maintained, and needs no system libraries.
//!
//! # Group commit across spaces
//! Every space actor already batches its own commands; this store adds a second level: one
//! writer thread takes every batch waiting for it, from all spaces, writes them in one fjall
//! batch and fsyncs once. Under load, one fsync covers many spaces' batches.
//!
//! # Layout (all integers big-endian so byte order is numeric order)
//! | keyspace | key | value |
//! | --- | --- | --- |
//! | `spaces` | space_id | `Space` JSON (replaced by a commit that changes the settings) |
//! | `space_counters` | space_id | `SpaceCounters` JSON, plus the fencing `epoch` |
//! | `members_by_space` | space_id · user_id | `Member` JSON |
//! | `spaces_by_user` | len(user_id) u16 · user_id · space_id | empty |
//! | `events_by_space` | space_id · seq u64 | `SpaceEvent` JSON |
//! | `messages_by_space` | space_id · seq u64 | `Message` JSON |
//! | `message_by_id` | message_id | space_id · seq u64 |
//! | `messages_by_appreciation` | space_id · count u32 · seq u64 | message_id |
//! | `message_history` | space_id · message_id · seq u64 (of the edit) | `MessageVersion` JSON |
//! | `reactions` | space_id · message_id · len(key) u8 · key · user_id | seq u64 of the event that added it |
//! | `reaction_counts` | space_id · message_id · key | count u32 |
//! | `idempotency_keys` | space_id · len(sender) u16 · sender · key | message_id · expires_at ms u64 |
//! | `idempotency_expiry` | space_id · expires_at ms u64 · len(sender) u16 · sender · key | empty |
//! | `space_stats` | space_id | `SpaceStats` JSON (absent: never committed, see [`crate::stats`]) |
//! | `contributors_by_space` | space_id · user_id | `ContributorStats` JSON |
//! | `disc_*` | see `embedded/discovery.rs` | discovery indexes and user stats (issue 12) |
//! | `notifications_by_user` | len(user_id) u16 · user_id · notification_id | `Notification` JSON (see `embedded/notifications.rs`) |
//! | `unread` | tag · … | read markers, top-level counts, space activity (see `unread.rs`) |
//!
//! A message's reactions live outside its `Message` JSON, one row per (key, user) and one count
//! per key, so a reaction writes two small values whatever the message holds; reads put the
//! counts (and Space7's `likes`, the `appreciate` rows) into the message they return. Databases
//! written before reactions had rows kept likes inside the message JSON: [`EmbeddedStore::open`]
//! moves them to rows once (`meta` `reactions_v1` records that it did).
//!
//! An idempotency key past its expiry reads as absent. Expired keys are purged by the commits of
//! their space that write keys: each removes at most `2k + 16` expired ones (k: the keys it
//! writes), oldest first, through the expiry index, so purging costs O(1) per key written and
//! no scan.
//! | `meta` | `health_probe` | time of the last readiness probe write |
//!
//! # Fencing
//! The space's fencing epoch is kept in its `space_counters` record, beside the counters. The
//! writer thread is the only writer of the database, so it is what serialises claims and commits:
//! for each job it takes, in order, it checks the job's guard against the record as the batch
//! being built will leave it — a commit applies only if its epoch is the space's current one (else
//! it is answered `Fenced` and none of its writes enter the batch), a claim raises the epoch by one
//! — and then writes every accepted job in one atomic, fsynced batch. A commit is one atomic
//! write, so there is never anything half-applied for a claim to finish.
//!
//! # Failures
//! A commit that fails (full disk, descriptor exhaustion, I/O error) poisons fjall; the writer
//! thread then reopens the database in the process (see `Writer`), so the store never stays in a
//! state it cannot leave while the process lives.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use spacecast_observability::{LogLimiter, Metrics};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{
    Claimed, CommitBatch, Direction, HistoryWrite, MessageOrder, MessageWrite, SpaceSnapshot, Store,
};
use crate::error::{EngineError, Result};
use crate::event::{APPRECIATE, SpaceEvent};
use crate::model::{
    Like, Member, Message, MessageId, MessageVersion, Seq, Space, SpaceCounters, SpaceId, SpaceView,
};
use crate::stats::{ContributorStats, SpaceStats};

mod discovery;
mod unread;

/// Keyspace names, in one place.
mod tables {
    pub const SPACES: &str = "spaces";
    pub const SPACE_COUNTERS: &str = "space_counters";
    pub const MEMBERS_BY_SPACE: &str = "members_by_space";
    pub const SPACES_BY_USER: &str = "spaces_by_user";
    pub const EVENTS_BY_SPACE: &str = "events_by_space";
    pub const MESSAGES_BY_SPACE: &str = "messages_by_space";
    pub const MESSAGE_BY_ID: &str = "message_by_id";
    pub const MESSAGES_BY_APPRECIATION: &str = "messages_by_appreciation";
    pub const MESSAGE_HISTORY: &str = "message_history";
    pub const REACTIONS: &str = "reactions";
    pub const REACTION_COUNTS: &str = "reaction_counts";
    pub const IDEMPOTENCY_KEYS: &str = "idempotency_keys";
    pub const IDEMPOTENCY_EXPIRY: &str = "idempotency_expiry";
    pub const SPACE_STATS: &str = "space_stats";
    pub const CONTRIBUTORS_BY_SPACE: &str = "contributors_by_space";
    pub const META: &str = "meta";
    pub const NOTIFICATIONS_BY_USER: &str = super::notifications::KEYSPACE;
    pub const UNREAD: &str = "unread";
}

mod notifications;

/// Handles to every keyspace.
#[derive(Clone)]
struct Tables {
    spaces: Keyspace,
    space_counters: Keyspace,
    members_by_space: Keyspace,
    spaces_by_user: Keyspace,
    events_by_space: Keyspace,
    messages_by_space: Keyspace,
    message_by_id: Keyspace,
    messages_by_appreciation: Keyspace,
    message_history: Keyspace,
    reactions: Keyspace,
    reaction_counts: Keyspace,
    idempotency_keys: Keyspace,
    idempotency_expiry: Keyspace,
    meta: Keyspace,
    space_stats: Keyspace,
    contributors_by_space: Keyspace,
    disc: discovery::DiscTables,
    notifications_by_user: Keyspace,
    unread: Keyspace,
}

/// A keyspace, named in write jobs instead of by handle, so a job outlives the database it was
/// built against (the writer resolves it against whichever database is open when it commits).
#[derive(Clone, Copy, Debug)]
enum Table {
    Spaces,
    SpaceCounters,
    MembersBySpace,
    SpacesByUser,
    EventsBySpace,
    MessagesBySpace,
    MessageById,
    MessagesByAppreciation,
    MessageHistory,
    Reactions,
    ReactionCounts,
    IdempotencyKeys,
    IdempotencyExpiry,
    Meta,
    SpaceStats,
    ContributorsBySpace,
    Disc(discovery::DiscTable),
    NotificationsByUser,
    Unread,
}

impl Tables {
    fn get(&self, table: Table) -> &Keyspace {
        match table {
            Table::Spaces => &self.spaces,
            Table::SpaceCounters => &self.space_counters,
            Table::MembersBySpace => &self.members_by_space,
            Table::SpacesByUser => &self.spaces_by_user,
            Table::EventsBySpace => &self.events_by_space,
            Table::MessagesBySpace => &self.messages_by_space,
            Table::MessageById => &self.message_by_id,
            Table::MessagesByAppreciation => &self.messages_by_appreciation,
            Table::MessageHistory => &self.message_history,
            Table::Reactions => &self.reactions,
            Table::ReactionCounts => &self.reaction_counts,
            Table::IdempotencyKeys => &self.idempotency_keys,
            Table::IdempotencyExpiry => &self.idempotency_expiry,
            Table::Meta => &self.meta,
            Table::SpaceStats => &self.space_stats,
            Table::ContributorsBySpace => &self.contributors_by_space,
            Table::Disc(d) => self.disc.get(d),
            Table::NotificationsByUser => &self.notifications_by_user,
            Table::Unread => &self.unread,
        }
    }
}

/// An open database and its keyspaces. The database's directory lock is released when the last
/// `Arc<Open>` (and so the last keyspace handle) is dropped.
struct Open {
    db: Database,
    t: Tables,
}

impl Open {
    fn at(path: &Path) -> Result<Self> {
        let db = Database::builder(path)
            .max_cached_files(Some(MAX_CACHED_FILES))
            .open()
            .map_err(io_err)?;
        let ks = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
            })
            .map_err(io_err)
        };
        let t = Tables {
            spaces: ks(tables::SPACES)?,
            space_counters: ks(tables::SPACE_COUNTERS)?,
            members_by_space: ks(tables::MEMBERS_BY_SPACE)?,
            spaces_by_user: ks(tables::SPACES_BY_USER)?,
            events_by_space: ks(tables::EVENTS_BY_SPACE)?,
            messages_by_space: ks(tables::MESSAGES_BY_SPACE)?,
            message_by_id: ks(tables::MESSAGE_BY_ID)?,
            messages_by_appreciation: ks(tables::MESSAGES_BY_APPRECIATION)?,
            message_history: ks(tables::MESSAGE_HISTORY)?,
            reactions: ks(tables::REACTIONS)?,
            reaction_counts: ks(tables::REACTION_COUNTS)?,
            idempotency_keys: ks(tables::IDEMPOTENCY_KEYS)?,
            idempotency_expiry: ks(tables::IDEMPOTENCY_EXPIRY)?,
            meta: ks(tables::META)?,
            space_stats: ks(tables::SPACE_STATS)?,
            contributors_by_space: ks(tables::CONTRIBUTORS_BY_SPACE)?,
            disc: discovery::DiscTables::new(ks)?,
            notifications_by_user: ks(tables::NOTIFICATIONS_BY_USER)?,
            unread: ks(tables::UNREAD)?,
        };
        Ok(Open { db, t })
    }
}

/// Table files fjall keeps open at most (its default is 900). The edge keeps a reserve of 256
/// descriptors for the store and the process (`api/src/listener.rs`, `DESCRIPTOR_RESERVE`); this
/// stays well inside it, leaving room for journal files and media.
const MAX_CACHED_FILES: usize = 128;

/// The memory bound of fjall's write path: a keyspace's memtable is sealed and flushed to a table
/// file at this size. fjall's default is 64 MiB per keyspace and nothing bounds their sum (its
/// `max_write_buffer_size` is not implemented in 3.1); a send writes four keyspaces. In a 60 s
/// soak of 200 spaces the server's RSS settled at ≈ 540 MB with this, against ≈ 735 MB with the
/// default (and 1.05 GB before the cache budget); 16 MiB gave ≈ 410 MB but cost sends/s in
/// flushes (BENCHMARKS.md).
const MEMTABLE_BYTES: u64 = 32 * 1024 * 1024;

/// What readers and the writer thread share.
struct Shared {
    path: PathBuf,
    /// The open database; `None` while the writer reopens it after a failure.
    open: RwLock<Option<Arc<Open>>>,
    /// The last failed commit, and why (the reason `open` is `None` while it is). The store
    /// reports itself unready for [`UNREADY_AFTER_FAILURE`] after one, even once reopened, because
    /// a reopened database can still fail the next commit the same way (a disk that is still
    /// full takes a tiny probe but not a message).
    last_failure: Mutex<Option<(Instant, String)>>,
}

impl Shared {
    /// The open database, or `StoreUnavailable` while it is being recovered.
    fn current(&self) -> Result<Arc<Open>> {
        self.open
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| EngineError::StoreUnavailable(self.fault_reason()))
    }

    /// Why the database is not open: the last commit failure.
    fn fault_reason(&self) -> String {
        self.last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, reason)| reason.clone())
            .unwrap_or_else(|| "the embedded store is recovering".into())
    }

    /// The reason of a commit failure within [`UNREADY_AFTER_FAILURE`], if any.
    fn recent_failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < UNREADY_AFTER_FAILURE)
            .map(|(_, reason)| reason.clone())
    }
}

/// One key/value operation, encoded by the caller so the writer thread only writes.
enum Op {
    Put(Table, Vec<u8>, Vec<u8>),
    Del(Table, Vec<u8>),
}

/// A unit of work for the writer thread: all of it lands in one atomic batch, if its guard lets
/// it.
struct WriteJob {
    ops: Vec<Op>,
    guard: Option<Guard>,
    /// `Ok` with the claimed epoch for a claim, `Ok(0)` for other jobs.
    reply: oneshot::Sender<Result<u64>>,
}

/// A condition on a space's head record, checked by the writer thread in order with every other
/// job, so check and write are one critical section.
struct Guard {
    space: SpaceId,
    kind: GuardKind,
}

enum GuardKind {
    /// A new space: its head record is `HeadRecord` (epoch 0).
    Create(HeadRecord),
    /// A commit: applies only if the space's epoch is `head.epoch`; then the head is `head`.
    Commit(HeadRecord),
    /// Raises the space's epoch by one, keeping its counters; answers the new epoch, or
    /// `SpaceNotFound`.
    Claim,
}

/// What the `space_counters` keyspace holds for a space: its counters and its fencing epoch.
/// Records written before fencing existed have no `epoch` (0); `SpaceCounters` readers ignore it.
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize)]
struct HeadRecord {
    #[serde(flatten)]
    counters: SpaceCounters,
    #[serde(default)]
    epoch: u64,
}

/// The fjall-backed [`Store`].
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    /// The next commit's injected failure (tests only).
    #[cfg(feature = "testkit")]
    fail_next: Mutex<Option<super::FailPoint>>,
    /// `None` only while dropping.
    writer: Option<std_mpsc::Sender<WriteJob>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    metrics: Metrics,
    /// When the last health probe ran and how it ended (see [`Store::ping`]).
    last_probe: Mutex<Option<(Instant, std::result::Result<(), String>)>>,
}

/// Health probes closer together than this share one probe write.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long a failed commit keeps the store reported unready (see `Shared::last_failure`).
const UNREADY_AFTER_FAILURE: Duration = Duration::from_secs(5);

fn io_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::StoreUnavailable(e.to_string())
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    // Our model types serialize to JSON infallibly (no maps with non-string keys).
    serde_json::to_vec(v).unwrap_or_default()
}

fn dec<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| EngineError::Internal(format!("corrupt record: {e}")))
}

fn key_seq(space: SpaceId, seq: Seq) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.extend_from_slice(space.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn key_member(space: SpaceId, user_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + user_id.len());
    k.extend_from_slice(space.as_bytes());
    k.extend_from_slice(user_id.as_bytes());
    k
}

fn user_prefix(user_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + user_id.len() + 16);
    k.extend_from_slice(&(user_id.len() as u16).to_be_bytes());
    k.extend_from_slice(user_id.as_bytes());
    k
}

fn key_user_space(user_id: &str, space: SpaceId) -> Vec<u8> {
    let mut k = user_prefix(user_id);
    k.extend_from_slice(space.as_bytes());
    k
}

fn key_history_prefix(space: SpaceId, message_id: MessageId) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(space.as_bytes());
    k.extend_from_slice(message_id.as_bytes());
    k
}

fn key_history(space: SpaceId, message_id: MessageId, seq: Seq) -> Vec<u8> {
    let mut k = key_history_prefix(space, message_id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// `len(sender) u16 · sender · key`: the part of an idempotency key's row key after the space.
fn idem_suffix(sender_id: &str, key: &str) -> Vec<u8> {
    let mut k = user_prefix(sender_id);
    k.extend_from_slice(key.as_bytes());
    k
}

fn key_idem(space: SpaceId, suffix: &[u8]) -> Vec<u8> {
    let mut k = space.as_bytes().to_vec();
    k.extend_from_slice(suffix);
    k
}

fn key_idem_expiry(space: SpaceId, expires_ms: u64, suffix: &[u8]) -> Vec<u8> {
    let mut k = space.as_bytes().to_vec();
    k.extend_from_slice(&expires_ms.to_be_bytes());
    k.extend_from_slice(suffix);
    k
}

/// An idempotency key row's value: the message id and the expiry (ms since the epoch).
fn idem_value(message_id: MessageId, expires_ms: u64) -> Vec<u8> {
    let mut v = message_id.as_bytes().to_vec();
    v.extend_from_slice(&expires_ms.to_be_bytes());
    v
}

fn parse_idem_value(v: &[u8]) -> Option<(MessageId, u64)> {
    let id = Uuid::from_slice(v.get(..16)?).ok()?;
    let exp = u64::from_be_bytes(v.get(16..24)?.try_into().ok()?);
    Some((id, exp))
}

fn ms(t: crate::model::Timestamp) -> u64 {
    t.0.max(0) as u64
}

/// `space · message · len(key) · key`: the rows of one reaction key of a message.
fn key_reaction_prefix(space: SpaceId, message_id: MessageId, key: &str) -> Vec<u8> {
    let mut k = key_history_prefix(space, message_id);
    // Keys are at most `MAX_REACTION_KEY_BYTES` (64), checked before anything is sequenced.
    k.push(key.len().min(255) as u8);
    k.extend_from_slice(key.as_bytes());
    k
}

fn key_reaction(space: SpaceId, message_id: MessageId, key: &str, user_id: &str) -> Vec<u8> {
    let mut k = key_reaction_prefix(space, message_id, key);
    k.extend_from_slice(user_id.as_bytes());
    k
}

fn key_reaction_count(space: SpaceId, message_id: MessageId, key: &str) -> Vec<u8> {
    let mut k = key_history_prefix(space, message_id);
    k.extend_from_slice(key.as_bytes());
    k
}

fn be_u64(v: &[u8]) -> u64 {
    v.get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

fn be_u32(v: &[u8]) -> u32 {
    v.get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

/// Puts a message's reaction counts and (for Space7) its likes, as the store holds them, into the
/// message read from its JSON (which does not carry them).
fn with_reactions(t: &Tables, mut m: Message) -> Result<Message> {
    let prefix = key_history_prefix(m.space_id, m.message_id);
    m.reaction_counts.clear();
    for kv in t.reaction_counts.prefix(&prefix) {
        let (k, v) = kv.into_inner().map_err(io_err)?;
        let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
        m.reaction_counts.insert(key, be_u32(&v));
    }
    m.appreciation_count = m.reaction_counts.get(APPRECIATE).copied().unwrap_or(0);
    let likes_prefix = key_reaction_prefix(m.space_id, m.message_id, APPRECIATE);
    let mut likes = Vec::with_capacity(m.appreciation_count.min(4096) as usize);
    for kv in t.reactions.prefix(&likes_prefix) {
        let (k, v) = kv.into_inner().map_err(io_err)?;
        likes.push(Like {
            id: be_u64(&v),
            user_id: String::from_utf8_lossy(&k[likes_prefix.len()..]).into_owned(),
        });
    }
    likes.sort_by_key(|l| l.id);
    m.likes = Some(likes);
    Ok(m)
}

/// Moves the likes of a database written before reactions had rows (kept inside each message's
/// JSON) to reaction rows and counts, once. Runs at open, before the writer starts; one atomic
/// batch, so a crash leaves either nothing or everything done.
fn migrate_likes(open: &Open) -> Result<()> {
    const DONE: &[u8] = b"reactions_v1";
    if open.t.meta.get(DONE).map_err(io_err)?.is_some() {
        return Ok(());
    }
    let mut batch = open.db.batch().durability(Some(PersistMode::SyncAll));
    let mut moved = 0usize;
    for kv in open.t.messages_by_space.iter() {
        let (_, v) = kv.into_inner().map_err(io_err)?;
        let m: Message = dec(&v)?;
        let Some(likes) = m.likes.as_ref().filter(|l| !l.is_empty()) else {
            continue;
        };
        for l in likes {
            batch.insert(
                &open.t.reactions,
                key_reaction(m.space_id, m.message_id, APPRECIATE, &l.user_id),
                l.id.to_be_bytes().to_vec(),
            );
        }
        batch.insert(
            &open.t.reaction_counts,
            key_reaction_count(m.space_id, m.message_id, APPRECIATE),
            (likes.len() as u32).to_be_bytes().to_vec(),
        );
        moved += 1;
    }
    batch.insert(&open.t.meta, DONE, vec![1]);
    batch.commit().map_err(io_err)?;
    if moved > 0 {
        tracing::info!(
            messages = moved,
            "moved the likes of older messages to reaction rows"
        );
    }
    Ok(())
}

fn key_appreciation(space: SpaceId, count: u32, seq: Seq) -> Vec<u8> {
    let mut k = Vec::with_capacity(28);
    k.extend_from_slice(space.as_bytes());
    k.extend_from_slice(&count.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl EmbeddedStore {
    /// Opens (or creates) the database at `path` and starts its writer thread.
    ///
    /// # Errors
    /// `StoreUnavailable` when the directory cannot be opened or recovered (e.g. another process
    /// holds it).
    pub fn open(path: &Path, metrics: Metrics) -> Result<Arc<Self>> {
        std::fs::create_dir_all(path).map_err(io_err)?;
        let open = Arc::new(Open::at(path)?);
        migrate_likes(&open)?;
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            open: RwLock::new(Some(open.clone())),
            last_failure: Mutex::new(None),
        });
        metrics.store_healthy.set(1);
        let (tx, rx) = std_mpsc::channel::<WriteJob>();
        let writer = Writer {
            shared: shared.clone(),
            open: Some(open),
            metrics: metrics.clone(),
            retry_after: RECOVERY_FIRST_RETRY,
            failure_log: LogLimiter::new(LOG_EVERY),
            recovery_logged: true,
        };
        let writer_thread = std::thread::Builder::new()
            .name("spacecast-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err)?;
        Ok(Arc::new(EmbeddedStore {
            shared,
            #[cfg(feature = "testkit")]
            fail_next: Mutex::new(None),
            writer: Some(tx),
            writer_thread: Some(writer_thread),
            metrics,
            last_probe: Mutex::new(None),
        }))
    }

    /// Sends `ops` to the writer thread and waits until they are durable.
    async fn write(&self, ops: Vec<Op>) -> Result<()> {
        self.write_guarded(ops, None).await.map(|_| ())
    }

    /// Sends `ops` to the writer thread, to be written if `guard` lets them, and waits until they
    /// are durable. Returns the claimed epoch for a claim, else 0.
    async fn write_guarded(&self, ops: Vec<Op>, guard: Option<Guard>) -> Result<u64> {
        let (reply, rx) = oneshot::channel();
        self.metrics.store_write_queue.inc();
        let sent = self
            .writer
            .as_ref()
            .is_some_and(|w| w.send(WriteJob { ops, guard, reply }).is_ok());
        if !sent {
            self.metrics.store_write_queue.dec();
            return Err(EngineError::StoreUnavailable(
                "store writer has stopped".into(),
            ));
        }
        let result = rx
            .await
            .map_err(|_| EngineError::StoreUnavailable("store writer has stopped".into()))?;
        if result.is_err() {
            // The next readiness probe must look again, not repeat an older success.
            *self.last_probe.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        result
    }

    /// The deletes that purge up to `2k + 16` expired idempotency keys of the batch's space (k:
    /// the keys the batch writes), oldest first. A key row is deleted only if it still holds the
    /// expiry its index entry names (a key reused since has a new row and a new entry), and
    /// never when the batch writes it again. Only this space's writer writes its keys, so
    /// nothing changes them between this read and the write.
    async fn purge_expired_keys(&self, b: &CommitBatch) -> Result<Vec<Op>> {
        let sid = b.space_id;
        let limit = 2 * b.keys.len() + 16;
        let now = ms(crate::model::Timestamp::now());
        let written: std::collections::HashSet<Vec<u8>> = b
            .keys
            .iter()
            .map(|k| idem_suffix(&k.sender_id, &k.key))
            .collect();
        self.read(move |t| {
            let mut ops = Vec::new();
            for kv in t.idempotency_expiry.prefix(sid.as_bytes()).take(limit) {
                let key = kv.key().map_err(io_err)?;
                let Some(exp) = key
                    .get(16..24)
                    .and_then(|e| e.try_into().ok())
                    .map(u64::from_be_bytes)
                else {
                    continue;
                };
                if exp > now {
                    break;
                }
                let suffix = key.get(24..).unwrap_or_default().to_vec();
                ops.push(Op::Del(Table::IdempotencyExpiry, key.to_vec()));
                if written.contains(&suffix) {
                    continue;
                }
                let row = key_idem(sid, &suffix);
                let current = t.idempotency_keys.get(&row).map_err(io_err)?;
                if current
                    .as_deref()
                    .and_then(parse_idem_value)
                    .map(|(_, e)| e)
                    == Some(exp)
                {
                    ops.push(Op::Del(Table::IdempotencyKeys, row));
                }
            }
            Ok(ops)
        })
        .await
    }

    /// Runs a read on the blocking pool: fjall reads may touch disk.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Tables) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let open = self.shared.current()?;
        tokio::task::spawn_blocking(move || f(&open.t))
            .await
            .map_err(|e| EngineError::Internal(format!("read task failed: {e}")))?
    }
}

/// First wait before reopening a failed database; doubles up to [`RECOVERY_MAX_RETRY`].
const RECOVERY_FIRST_RETRY: Duration = Duration::from_millis(50);
const RECOVERY_MAX_RETRY: Duration = Duration::from_secs(2);
/// Longest the writer waits for in-flight reads to let go of a failed database before it
/// retries later (reads are short; this only bounds a pathological one).
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// The single writer thread: takes every job waiting, commits them as one batch, fsyncs once,
/// answers.
///
/// # Recovery
/// A failed commit (a full disk, descriptor exhaustion, an I/O error) leaves fjall poisoned: it
/// refuses every later write until the database is reopened. So the writer fails that batch's
/// callers (nothing of it was acknowledged), marks the store faulty (reads and writes answer
/// `StoreUnavailable`, `/readyz` reports it), and reopens the database, retrying with backoff until
/// it succeeds. Reopening recovers from the journal exactly what a restart would: everything
/// acknowledged, and the failed batch either whole or not at all (callers were told its outcome is
/// unknown; space actors rebuild from what the store then holds). We reopen in the process rather
/// than exit because the failures that poison a database here are usually transient (the
/// descriptors or disk space come back), and exiting would also drop every realtime session of
/// every space, not just the writes that failed.
struct Writer {
    shared: Arc<Shared>,
    /// The writer's own handle; `None` while recovering.
    open: Option<Arc<Open>>,
    metrics: Metrics,
    retry_after: Duration,
    /// Failures logged at `error`: a disk that stays full fails every batch, and the log gets one
    /// line per [`LOG_EVERY`], not one per batch.
    failure_log: LogLimiter,
    /// Whether the first recovery after the last logged failure was logged.
    recovery_logged: bool,
}

const LOG_EVERY: Duration = Duration::from_secs(10);

impl Writer {
    fn run(mut self, rx: std_mpsc::Receiver<WriteJob>) {
        const MAX_JOBS: usize = 4096;
        let mut jobs: Vec<WriteJob> = Vec::with_capacity(64);
        loop {
            let first = if self.open.is_some() {
                match rx.recv() {
                    Ok(j) => j,
                    Err(_) => break,
                }
            } else {
                // Faulty: retry the reopen on a timer even when no write comes.
                match rx.recv_timeout(self.retry_after) {
                    Ok(j) => j,
                    Err(std_mpsc::RecvTimeoutError::Timeout) => {
                        self.recover();
                        continue;
                    }
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
                }
            };
            jobs.push(first);
            while jobs.len() < MAX_JOBS {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            self.metrics.store_write_queue.sub(jobs.len() as i64);
            if self.open.is_none() {
                self.recover();
            }
            let (result, decisions) = match &self.open {
                Some(open) => {
                    let decisions = resolve_guards(open, &mut jobs);
                    (commit(open, &mut jobs, &self.metrics), decisions)
                }
                None => (Err(self.shared.fault_reason()), Vec::new()),
            };
            if let Err(e) = &result
                && self.open.is_some()
            {
                self.fail(e.clone());
            }
            // Refused jobs wrote nothing, so the batch's outcome is not theirs.
            let mut decisions = decisions.into_iter();
            for job in jobs.drain(..) {
                let answer = match decisions.next() {
                    Some(Decision::Refuse(e)) => Err(e),
                    Some(Decision::Write(value)) => result
                        .clone()
                        .map(|()| value)
                        .map_err(EngineError::StoreUnavailable),
                    None => result
                        .clone()
                        .map(|()| 0)
                        .map_err(EngineError::StoreUnavailable),
                };
                let _ = job.reply.send(answer);
            }
        }
        if let Some(open) = &self.open {
            let _ = open.db.persist(PersistMode::SyncAll);
        }
    }

    /// Marks the store faulty and lets go of the database, so it can be reopened.
    fn fail(&mut self, reason: String) {
        if self.failure_log.allow().is_some() {
            self.recovery_logged = false;
            tracing::error!(error = %reason, "embedded store commit failed; refusing writes and reopening the database (check free disk space and open descriptors)");
        } else {
            tracing::debug!(error = %reason, "embedded store commit failed again");
        }
        self.metrics.store_healthy.set(0);
        *self
            .shared
            .last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), reason));
        self.open = None;
        self.retry_after = RECOVERY_FIRST_RETRY;
        self.recover();
    }

    /// One attempt to reopen the database. On success the store is healthy again.
    fn recover(&mut self) {
        let taken = self
            .shared
            .open
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(old) = taken {
            // Readers hold clones for the length of one read; wait for them to finish so the
            // old database (and its directory lock) is really gone before reopening.
            let until = Instant::now() + RELEASE_WAIT;
            while Arc::strong_count(&old) > 1 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            if Arc::strong_count(&old) > 1 {
                // Put it back for the readers and try again later.
                *self.shared.open.write().unwrap_or_else(|p| p.into_inner()) = Some(old);
                self.backoff();
                return;
            }
            drop(old);
        }
        match Open::at(&self.shared.path) {
            Ok(open) => {
                let open = Arc::new(open);
                *self.shared.open.write().unwrap_or_else(|p| p.into_inner()) = Some(open.clone());
                self.open = Some(open);
                self.metrics.store_healthy.set(1);
                self.metrics.store_recoveries.inc();
                self.retry_after = RECOVERY_FIRST_RETRY;
                if self.recovery_logged {
                    tracing::debug!(path = %self.shared.path.display(), "embedded store reopened");
                } else {
                    self.recovery_logged = true;
                    tracing::info!(path = %self.shared.path.display(), "embedded store reopened; accepting writes again");
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "embedded store reopen failed; retrying");
                self.backoff();
            }
        }
    }

    fn backoff(&mut self) {
        self.retry_after = (self.retry_after * 2).min(RECOVERY_MAX_RETRY);
    }
}

/// What a job's guard decided, before the batch is written.
enum Decision {
    /// The job's ops are in the batch; on success it is answered with this value.
    Write(u64),
    /// The job's ops were dropped; it is answered with this error whatever the batch does.
    Refuse(EngineError),
}

/// Checks each job's guard, in order, against the head records as the jobs before it in this
/// batch leave them (read from the database the first time a space is seen). Drops the ops of
/// refused jobs and adds a claim's record write. Only the writer thread writes, so nothing can
/// change a record between this check and the batch's commit.
fn resolve_guards(open: &Open, jobs: &mut [WriteJob]) -> Vec<Decision> {
    let mut heads: std::collections::HashMap<SpaceId, Option<HeadRecord>> =
        std::collections::HashMap::new();
    let mut decisions = Vec::with_capacity(jobs.len());
    for job in jobs.iter_mut() {
        let Some(guard) = &job.guard else {
            decisions.push(Decision::Write(0));
            continue;
        };
        let space = guard.space;
        let current = match heads.get(&space) {
            Some(h) => Ok(*h),
            None => get_json::<HeadRecord>(&open.t.space_counters, space.as_bytes()),
        };
        let current = match current {
            Ok(h) => h,
            Err(e) => {
                job.ops.clear();
                decisions.push(Decision::Refuse(e));
                continue;
            }
        };
        let decision = match guard.kind {
            GuardKind::Create(head) => {
                heads.insert(space, Some(head));
                Decision::Write(0)
            }
            GuardKind::Commit(head) => {
                // A space without a record (never created) is at epoch 0, like a new one.
                let epoch = current.map_or(0, |h| h.epoch);
                if epoch == head.epoch {
                    heads.insert(space, Some(head));
                    Decision::Write(0)
                } else {
                    heads.insert(space, current);
                    Decision::Refuse(EngineError::Fenced)
                }
            }
            GuardKind::Claim => match current {
                None => {
                    heads.insert(space, None);
                    Decision::Refuse(EngineError::SpaceNotFound)
                }
                Some(h) => {
                    let claimed = HeadRecord {
                        epoch: h.epoch + 1,
                        ..h
                    };
                    job.ops.push(Op::Put(
                        Table::SpaceCounters,
                        space.as_bytes().to_vec(),
                        enc(&claimed),
                    ));
                    heads.insert(space, Some(claimed));
                    Decision::Write(claimed.epoch)
                }
            },
        };
        if matches!(decision, Decision::Refuse(_)) {
            job.ops.clear();
        }
        decisions.push(decision);
    }
    decisions
}

/// Writes every job's ops as one atomic batch and fsyncs it.
fn commit(
    open: &Open,
    jobs: &mut [WriteJob],
    metrics: &Metrics,
) -> std::result::Result<(), String> {
    metrics.store_fsync_batch.observe(jobs.len() as f64);
    let mut batch = open.db.batch().durability(Some(PersistMode::SyncAll));
    for job in jobs.iter_mut() {
        for op in job.ops.drain(..) {
            match op {
                Op::Put(table, k, v) => batch.insert(open.t.get(table), k, v),
                Op::Del(table, k) => batch.remove(open.t.get(table), k),
            }
        }
    }
    batch.commit().map_err(|e| e.to_string())
}

#[cfg(feature = "testkit")]
impl super::FaultInjection for EmbeddedStore {
    /// `BeforeHead`: the commit fails before anything is written. `AfterHead`: it is written
    /// whole, then reported failed. The embedded commit is one atomic batch, so no failure can
    /// leave it half-written.
    fn fail_next_commit(&self, at: super::FailPoint) {
        *self.fail_next.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }
}

impl Drop for EmbeddedStore {
    /// Closes the writer's queue and waits for the writer thread to settle what it holds, persist
    /// and drop its database handle. Then this store's own handles are the last ones, so the
    /// database (and its directory lock) is released when the drop returns, and the directory can
    /// be reopened at once. Without the join, the lock outlives the store for as long as the
    /// writer's final fsync takes, and an immediate reopen fails with `Locked` once fjall's short
    /// retry (≈ 200 ms) runs out.
    fn drop(&mut self) {
        self.writer.take();
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

fn get_json<T: DeserializeOwned>(ks: &Keyspace, key: &[u8]) -> Result<Option<T>> {
    match ks.get(key).map_err(io_err)? {
        Some(v) => Ok(Some(dec(&v)?)),
        None => Ok(None),
    }
}

fn space_view(t: &Tables, space_id: SpaceId) -> Result<Option<SpaceView>> {
    let Some(space) = get_json::<Space>(&t.spaces, space_id.as_bytes())? else {
        return Ok(None);
    };
    let counters =
        get_json::<SpaceCounters>(&t.space_counters, space_id.as_bytes())?.unwrap_or_default();
    Ok(Some(SpaceView { space, counters }))
}

/// Every space `user_id` is a member of, with that membership, newest space first: the user's
/// index, then each space's record and member row (entries whose space or member row is gone
/// are skipped).
fn memberships(t: &Tables, user_id: &str) -> Result<Vec<(SpaceView, Member)>> {
    let prefix = user_prefix(user_id);
    let mut out = Vec::new();
    // Space ids are UUIDv7, so reverse key order is newest space first.
    for kv in t.spaces_by_user.prefix(&prefix).rev() {
        let key = kv.key().map_err(io_err)?;
        let Some(raw) = key.get(prefix.len()..) else {
            continue;
        };
        let Ok(space_id) = Uuid::from_slice(raw) else {
            continue;
        };
        let Some(view) = space_view(t, space_id)? else {
            continue;
        };
        let Some(member) = get_json(&t.members_by_space, &key_member(space_id, user_id))? else {
            continue;
        };
        out.push((view, member));
    }
    Ok(out)
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn create_space(&self, space: &Space, creator: &Member) -> Result<()> {
        let counters = SpaceCounters {
            head_seq: 0,
            message_count: 0,
            member_count: 1,
        };
        let id = space.space_id;
        let head = HeadRecord { counters, epoch: 0 };
        let mut ops = vec![
            Op::Put(Table::Spaces, id.as_bytes().to_vec(), enc(space)),
            Op::Put(Table::SpaceCounters, id.as_bytes().to_vec(), enc(&head)),
            Op::Put(
                Table::MembersBySpace,
                key_member(id, &creator.user.user_id),
                enc(creator),
            ),
            Op::Put(
                Table::SpacesByUser,
                key_user_space(&creator.user.user_id, id),
                vec![],
            ),
        ];
        ops.extend(discovery::create_ops(space));
        let guard = Guard {
            space: id,
            kind: GuardKind::Create(head),
        };
        self.write_guarded(ops, Some(guard)).await.map(|_| ())
    }

    async fn claim(&self, space_id: SpaceId) -> Result<Option<Claimed>> {
        let guard = Guard {
            space: space_id,
            kind: GuardKind::Claim,
        };
        let epoch = match self.write_guarded(Vec::new(), Some(guard)).await {
            Ok(epoch) => epoch,
            Err(EngineError::SpaceNotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        // Every commit of an earlier epoch is refused from now on, so this read is final.
        Ok(self
            .load_space(space_id)
            .await?
            .map(|snapshot| Claimed { snapshot, epoch }))
    }

    async fn load_space(&self, space_id: SpaceId) -> Result<Option<SpaceSnapshot>> {
        self.read(move |t| {
            let Some(view) = space_view(t, space_id)? else {
                return Ok(None);
            };
            let mut members = Vec::new();
            for kv in t.members_by_space.prefix(space_id.as_bytes()) {
                let (_, v) = kv.into_inner().map_err(io_err)?;
                members.push(dec::<Member>(&v)?);
            }
            Ok(Some(SpaceSnapshot { view, members }))
        })
        .await
    }

    async fn get_space(&self, space_id: SpaceId) -> Result<Option<SpaceView>> {
        self.read(move |t| space_view(t, space_id)).await
    }

    async fn get_member(&self, space_id: SpaceId, user_id: &str) -> Result<Option<Member>> {
        let key = key_member(space_id, user_id);
        self.read(move |t| get_json(&t.members_by_space, &key))
            .await
    }

    async fn spaces_of_user(&self, user_id: &str) -> Result<Vec<(SpaceView, Member)>> {
        let user_id = user_id.to_owned();
        self.read(move |t| memberships(t, &user_id)).await
    }

    async fn commit(&self, b: &CommitBatch) -> Result<()> {
        let sid = b.space_id;
        let mut ops = Vec::with_capacity(b.events.len() * 4 + b.members.len() * 2 + 1);
        for ev in &b.events {
            ops.push(Op::Put(Table::EventsBySpace, key_seq(sid, ev.seq), enc(ev)));
        }
        for w in &b.messages {
            match w {
                MessageWrite::Put {
                    message,
                    previous_appreciation,
                } => {
                    let m = message;
                    ops.push(Op::Put(Table::MessagesBySpace, key_seq(sid, m.seq), enc(m)));
                    // Only a new message enters the index (at its count, 0); reactions move it.
                    if previous_appreciation.is_none() {
                        ops.push(Op::Put(
                            Table::MessageById,
                            m.message_id.as_bytes().to_vec(),
                            key_seq(sid, m.seq),
                        ));
                        ops.push(Op::Put(
                            Table::MessagesByAppreciation,
                            key_appreciation(sid, m.appreciation_count, m.seq),
                            m.message_id.as_bytes().to_vec(),
                        ));
                    }
                }
                MessageWrite::Delete {
                    message_id,
                    seq,
                    appreciation_count,
                } => {
                    ops.push(Op::Del(Table::MessagesBySpace, key_seq(sid, *seq)));
                    ops.push(Op::Del(Table::MessageById, message_id.as_bytes().to_vec()));
                    ops.push(Op::Del(
                        Table::MessagesByAppreciation,
                        key_appreciation(sid, *appreciation_count, *seq),
                    ));
                }
            }
        }
        let reactions = b.reaction_outcome();
        for r in &reactions.rows {
            let k = key_reaction(sid, r.message_id, &r.key, &r.user_id);
            ops.push(match r.added {
                Some(seq) => Op::Put(Table::Reactions, k, seq.to_be_bytes().to_vec()),
                None => Op::Del(Table::Reactions, k),
            });
        }
        for r in &reactions.counts {
            let k = key_reaction_count(sid, r.message_id, &r.key);
            ops.push(match r.count {
                0 => Op::Del(Table::ReactionCounts, k),
                n => Op::Put(Table::ReactionCounts, k, n.to_be_bytes().to_vec()),
            });
        }
        for &(id, seq, before, after) in &reactions.appreciation {
            if before != after {
                ops.push(Op::Del(
                    Table::MessagesByAppreciation,
                    key_appreciation(sid, before, seq),
                ));
                ops.push(Op::Put(
                    Table::MessagesByAppreciation,
                    key_appreciation(sid, after, seq),
                    id.as_bytes().to_vec(),
                ));
            }
        }
        // A deleted message's reactions and counts go with it: their keys are read here, as the
        // history's below (only this space's fenced writer adds any).
        let deleted: Vec<MessageId> = b
            .messages
            .iter()
            .filter_map(|w| match w {
                MessageWrite::Delete { message_id, .. } => Some(*message_id),
                MessageWrite::Put { .. } => None,
            })
            .collect();
        if !deleted.is_empty() {
            let keys = self
                .read(move |t| {
                    let mut keys = Vec::new();
                    for id in deleted {
                        let prefix = key_history_prefix(sid, id);
                        for kv in t.reactions.prefix(&prefix) {
                            keys.push((Table::Reactions, kv.key().map_err(io_err)?.to_vec()));
                        }
                        for kv in t.reaction_counts.prefix(&prefix) {
                            keys.push((Table::ReactionCounts, kv.key().map_err(io_err)?.to_vec()));
                        }
                    }
                    Ok(keys)
                })
                .await?;
            ops.extend(keys.into_iter().map(|(t, k)| Op::Del(t, k)));
        }
        // Clearing a message's history deletes its rows one by one: they are read here, before
        // the write. Only this space's writer (one at a time, fenced) writes them, so nothing can
        // add a row between this read and the write. A batch's own adds of a cleared message
        // were dropped when it was cleared (`CommitBatch::push_history`).
        let cleared: Vec<MessageId> = b
            .history
            .iter()
            .filter_map(|h| match h {
                HistoryWrite::Clear { message_id } => Some(*message_id),
                HistoryWrite::Add { .. } => None,
            })
            .collect();
        if !cleared.is_empty() {
            let keys = self
                .read(move |t| {
                    let mut keys = Vec::new();
                    for id in cleared {
                        for kv in t.message_history.prefix(key_history_prefix(sid, id)) {
                            keys.push(kv.key().map_err(io_err)?.to_vec());
                        }
                    }
                    Ok(keys)
                })
                .await?;
            ops.extend(keys.into_iter().map(|k| Op::Del(Table::MessageHistory, k)));
        }
        for h in &b.history {
            if let HistoryWrite::Add {
                message_id,
                version,
            } = h
            {
                ops.push(Op::Put(
                    Table::MessageHistory,
                    key_history(sid, *message_id, version.seq),
                    enc(version),
                ));
            }
        }
        if !b.keys.is_empty() {
            ops.extend(self.purge_expired_keys(b).await?);
            for k in &b.keys {
                let suffix = idem_suffix(&k.sender_id, &k.key);
                let exp = ms(k.expires_at);
                ops.push(Op::Put(
                    Table::IdempotencyKeys,
                    key_idem(sid, &suffix),
                    idem_value(k.message_id, exp),
                ));
                ops.push(Op::Put(
                    Table::IdempotencyExpiry,
                    key_idem_expiry(sid, exp, &suffix),
                    vec![],
                ));
            }
        }
        for m in &b.members {
            ops.push(Op::Put(
                Table::MembersBySpace,
                key_member(sid, &m.user.user_id),
                enc(m),
            ));
            ops.push(Op::Put(
                Table::SpacesByUser,
                key_user_space(&m.user.user_id, sid),
                vec![],
            ));
        }
        for user_id in &b.removed_members {
            ops.push(Op::Del(Table::MembersBySpace, key_member(sid, user_id)));
            ops.push(Op::Del(Table::SpacesByUser, key_user_space(user_id, sid)));
        }
        if let Some(space) = &b.space {
            ops.push(Op::Put(Table::Spaces, sid.as_bytes().to_vec(), enc(space)));
        }
        if let Some(stats) = &b.stats {
            ops.push(Op::Put(
                Table::SpaceStats,
                sid.as_bytes().to_vec(),
                enc(stats),
            ));
        }
        for c in &b.contributors {
            ops.push(Op::Put(
                Table::ContributorsBySpace,
                key_member(sid, &c.user_id),
                enc(c),
            ));
        }
        ops.extend(discovery::commit_ops(b));
        // Notifications, in the same atomic batch (embedded/notifications.rs).
        ops.extend(self.notification_ops(b).await?);
        unread::commit_ops(b, &mut ops);
        let head = HeadRecord {
            counters: b.counters,
            epoch: b.epoch,
        };
        ops.push(Op::Put(
            Table::SpaceCounters,
            sid.as_bytes().to_vec(),
            enc(&head),
        ));
        #[cfg(feature = "testkit")]
        let injected = self
            .fail_next
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        #[cfg(feature = "testkit")]
        if injected == Some(super::FailPoint::BeforeHead) {
            return Err(EngineError::StoreUnavailable(
                "injected failure before the commit".into(),
            ));
        }
        let guard = Guard {
            space: sid,
            kind: GuardKind::Commit(head),
        };
        self.write_guarded(ops, Some(guard)).await?;
        #[cfg(feature = "testkit")]
        if injected == Some(super::FailPoint::AfterHead) {
            // The batch is written, the caller hears a failure: the ambiguous outcome.
            return Err(EngineError::StoreUnavailable(
                "injected failure after the commit".into(),
            ));
        }
        Ok(())
    }

    async fn read_events(
        &self,
        space_id: SpaceId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<SpaceEvent>> {
        self.read(move |t| {
            let start = key_seq(space_id, after.saturating_add(1));
            let end = key_seq(space_id, u64::MAX);
            let mut out = Vec::with_capacity(limit.min(1024));
            for kv in t.events_by_space.range(start..=end).take(limit) {
                let (_, v) = kv.into_inner().map_err(io_err)?;
                out.push(dec::<SpaceEvent>(&v)?);
            }
            Ok(out)
        })
        .await
    }

    async fn page_messages(
        &self,
        space_id: SpaceId,
        order: MessageOrder,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.read(move |t| {
            let mut out = Vec::with_capacity(limit.min(100));
            match order {
                MessageOrder::Recent => {
                    for kv in t
                        .messages_by_space
                        .prefix(space_id.as_bytes())
                        .rev()
                        .skip(offset)
                        .take(limit)
                    {
                        let (_, v) = kv.into_inner().map_err(io_err)?;
                        out.push(with_reactions(t, dec::<Message>(&v)?)?);
                    }
                }
                MessageOrder::MostAppreciated => {
                    for kv in t
                        .messages_by_appreciation
                        .prefix(space_id.as_bytes())
                        .rev()
                        .skip(offset)
                        .take(limit)
                    {
                        let key = kv.key().map_err(io_err)?;
                        let Some(seq_bytes) = key.get(20..28) else {
                            continue;
                        };
                        let seq = u64::from_be_bytes(seq_bytes.try_into().unwrap_or_default());
                        if let Some(m) =
                            get_json::<Message>(&t.messages_by_space, &key_seq(space_id, seq))?
                        {
                            out.push(with_reactions(t, m)?);
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn scan_messages(
        &self,
        space_id: SpaceId,
        after: Seq,
        before: Seq,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Message>> {
        if before <= after.saturating_add(1) || limit == 0 {
            return Ok(Vec::new());
        }
        self.read(move |t| {
            let range = key_seq(space_id, after + 1)..key_seq(space_id, before);
            let rows = t.messages_by_space.range(range);
            let rows: Box<dyn Iterator<Item = _>> = match direction {
                Direction::Forward => Box::new(rows),
                Direction::Backward => Box::new(rows.rev()),
            };
            let mut out = Vec::with_capacity(limit.min(128));
            for kv in rows.take(limit) {
                let (_, v) = kv.into_inner().map_err(io_err)?;
                out.push(with_reactions(t, dec::<Message>(&v)?)?);
            }
            Ok(out)
        })
        .await
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
        let after = after.map(str::to_owned);
        self.read(move |t| {
            // Member keys are space_id · user_id, so key order within the space is user-id byte
            // order; the first key past `after` is `after` followed by a zero byte.
            let start = match &after {
                Some(a) => {
                    let mut k = key_member(space_id, a);
                    k.push(0);
                    k
                }
                None => space_id.as_bytes().to_vec(),
            };
            let mut out = Vec::with_capacity(limit.min(128));
            for kv in t.members_by_space.range(start..) {
                let (k, v) = kv.into_inner().map_err(io_err)?;
                if !k.starts_with(space_id.as_bytes()) || out.len() == limit {
                    break;
                }
                out.push(dec::<Member>(&v)?);
            }
            Ok(out)
        })
        .await
    }

    async fn get_message(
        &self,
        space_id: SpaceId,
        message_id: MessageId,
    ) -> Result<Option<Message>> {
        self.read(move |t| {
            let Some(loc) = t.message_by_id.get(message_id.as_bytes()).map_err(io_err)? else {
                return Ok(None);
            };
            if loc.get(..16) != Some(space_id.as_bytes().as_slice()) {
                return Ok(None);
            }
            get_json::<Message>(&t.messages_by_space, &loc)?
                .map(|m| with_reactions(t, m))
                .transpose()
        })
        .await
    }

    async fn get_reaction(
        &self,
        space_id: SpaceId,
        message_id: MessageId,
        key: &str,
        user_id: &str,
    ) -> Result<Option<Seq>> {
        let k = key_reaction(space_id, message_id, key, user_id);
        self.read(move |t| Ok(t.reactions.get(&k).map_err(io_err)?.map(|v| be_u64(&v))))
            .await
    }

    async fn user_reactions(
        &self,
        space_id: SpaceId,
        user_id: &str,
        items: Vec<(MessageId, Vec<String>)>,
    ) -> Result<Vec<Vec<String>>> {
        let user_id = user_id.to_owned();
        self.read(move |t| {
            let mut out = Vec::with_capacity(items.len());
            for (message_id, keys) in items {
                let mut mine = Vec::new();
                for key in keys {
                    let k = key_reaction(space_id, message_id, &key, &user_id);
                    if t.reactions.get(&k).map_err(io_err)?.is_some() {
                        mine.push(key);
                    }
                }
                out.push(mine);
            }
            Ok(out)
        })
        .await
    }

    async fn message_history(
        &self,
        space_id: SpaceId,
        message_id: MessageId,
    ) -> Result<Vec<MessageVersion>> {
        self.read(move |t| {
            let mut out = Vec::new();
            for kv in t
                .message_history
                .prefix(key_history_prefix(space_id, message_id))
                .rev()
            {
                let (_, v) = kv.into_inner().map_err(io_err)?;
                out.push(dec::<MessageVersion>(&v)?);
            }
            Ok(out)
        })
        .await
    }

    async fn idempotent_send(
        &self,
        space_id: SpaceId,
        sender_id: &str,
        key: &str,
    ) -> Result<Option<MessageId>> {
        let row = key_idem(space_id, &idem_suffix(sender_id, key));
        let now = ms(crate::model::Timestamp::now());
        self.read(move |t| {
            let v = t.idempotency_keys.get(&row).map_err(io_err)?;
            Ok(v.as_deref()
                .and_then(parse_idem_value)
                .filter(|(_, exp)| *exp > now)
                .map(|(id, _)| id))
        })
        .await
    }

    async fn space_stats(&self, space_id: SpaceId) -> Result<Option<SpaceStats>> {
        self.read(move |t| get_json(&t.space_stats, space_id.as_bytes()))
            .await
    }

    async fn get_contributor(
        &self,
        space_id: SpaceId,
        user_id: &str,
    ) -> Result<Option<ContributorStats>> {
        let key = key_member(space_id, user_id);
        self.read(move |t| get_json(&t.contributors_by_space, &key))
            .await
    }

    async fn contributors(&self, space_id: SpaceId) -> Result<Vec<ContributorStats>> {
        self.read(move |t| {
            let mut out = Vec::new();
            for kv in t.contributors_by_space.prefix(space_id.as_bytes()) {
                let (_, v) = kv.into_inner().map_err(io_err)?;
                out.push(dec::<ContributorStats>(&v)?);
            }
            Ok(out)
        })
        .await
    }

    /// Unready for a few seconds after any failed commit; otherwise a real, tiny durable write (at
    /// most one per [`PROBE_EVERY`], then answered from the last result): it proves the writer
    /// thread, the journal and the disk, so `/readyz` reports a store that cannot write (full
    /// disk, no descriptors, a database being reopened), not just a live thread.
    async fn ping(&self) -> Result<()> {
        if let Some(reason) = self.shared.recent_failure() {
            return Err(EngineError::StoreUnavailable(reason));
        }
        if let Some((at, result)) = &*self.last_probe.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < PROBE_EVERY
        {
            return result.clone().map_err(EngineError::StoreUnavailable);
        }
        let now = crate::model::Timestamp::now().0.to_be_bytes().to_vec();
        let result = self
            .write(vec![Op::Put(Table::Meta, b"health_probe".to_vec(), now)])
            .await;
        let cached = result.as_ref().map(|_| ()).map_err(|e| match e {
            EngineError::StoreUnavailable(cause) => cause.clone(),
            other => other.to_string(),
        });
        *self.last_probe.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), cached));
        result
    }

    // ---- disc: discovery and user stats (issue 12) ----

    async fn newest_public_spaces(&self, limit: usize) -> Result<Vec<SpaceId>> {
        self.read(move |t| discovery::newest_public(t, limit)).await
    }

    async fn spaces_with_tag(&self, tag: &str, limit: usize) -> Result<Vec<SpaceId>> {
        let tag = tag.to_owned();
        self.read(move |t| discovery::with_tag(t, &tag, limit))
            .await
    }

    async fn search_words(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, SpaceId, bool)>> {
        let prefix = prefix.to_owned();
        self.read(move |t| discovery::search(t, &prefix, limit))
            .await
    }

    async fn activity_in_hour(&self, hour: i64) -> Result<Vec<(SpaceId, u64)>> {
        self.read(move |t| discovery::activity_in_hour(t, hour))
            .await
    }

    async fn space_hour_activity(&self, space_id: SpaceId, hour: i64) -> Result<u64> {
        self.read(move |t| discovery::space_activity(t, space_id, hour))
            .await
    }

    async fn get_user_space_stats(
        &self,
        user_id: &str,
        space_id: SpaceId,
    ) -> Result<Option<crate::discovery::UserSpaceStats>> {
        let user_id = user_id.to_owned();
        self.read(move |t| discovery::user_space_stats(t, &user_id, space_id))
            .await
    }

    async fn user_space_rows(&self, user_id: &str) -> Result<Vec<crate::discovery::UserSpaceRow>> {
        let user_id = user_id.to_owned();
        self.read(move |t| discovery::user_rows(t, &user_id)).await
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

    async fn close(&self) -> Result<()> {
        let open = self.shared.current()?;
        tokio::task::spawn_blocking(move || open.db.persist(PersistMode::SyncAll))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?
            .map_err(io_err)
    }

    // ---- notif: notifications (issue 12) ----
    async fn notifications(
        &self,
        user_id: &str,
    ) -> Result<Vec<crate::notifications::Notification>> {
        self.list_notifications(user_id).await
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
    use crate::model::{Timestamp, UserRef};

    /// Records written before the native message fields existed: a message value and its
    /// `message_created` event exactly as that code wrote them, read back through every path.
    #[tokio::test]
    async fn records_written_before_the_native_fields_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), Metrics::new()).unwrap();
        let old: serde_json::Value =
            serde_json::from_str(crate::model::tests::OLD_MESSAGE_JSON).unwrap();
        let space_id: SpaceId = old["space_id"].as_str().unwrap().parse().unwrap();
        let message_id: MessageId = old["message_id"].as_str().unwrap().parse().unwrap();
        let space = Space {
            space_id,
            title: "old".into(),
            description: String::new(),
            visibility: crate::model::Visibility::Public,
            creator: UserRef::default(),
            tags: vec![],
            posting_permission: crate::model::PostingPermission::Everyone,
            created_at: Timestamp(0),
        };
        let creator = Member {
            user: UserRef {
                user_id: "u1".into(),
                ..UserRef::default()
            },
            power_level: 100,
            joined_at: Timestamp(0),
        };
        store.create_space(&space, &creator).await.unwrap();
        let event = format!(
            r#"{{"space_id":"{space_id}","seq":7,"at":"2026-11-22T02:04:18.123Z","event":"message_created","data":{}}}"#,
            crate::model::tests::OLD_MESSAGE_JSON
        );
        let head = HeadRecord {
            counters: SpaceCounters {
                head_seq: 7,
                message_count: 1,
                member_count: 1,
            },
            epoch: 0,
        };
        store
            .write(vec![
                Op::Put(
                    Table::MessagesBySpace,
                    key_seq(space_id, 7),
                    crate::model::tests::OLD_MESSAGE_JSON.as_bytes().to_vec(),
                ),
                Op::Put(
                    Table::MessageById,
                    message_id.as_bytes().to_vec(),
                    key_seq(space_id, 7),
                ),
                Op::Put(
                    Table::EventsBySpace,
                    key_seq(space_id, 7),
                    event.into_bytes(),
                ),
                Op::Put(
                    Table::SpaceCounters,
                    space_id.as_bytes().to_vec(),
                    enc(&head),
                ),
            ])
            .await
            .unwrap();
        // Written as by a version without reaction rows, which had no `reactions_v1` marker
        // either: reopening moves the likes out of the message JSON.
        store
            .write(vec![Op::Del(Table::Meta, b"reactions_v1".to_vec())])
            .await
            .unwrap();
        store.close().await.unwrap();
        drop(store);
        let store = EmbeddedStore::open(dir.path(), Metrics::new()).unwrap();
        let m = store
            .get_message(space_id, message_id)
            .await
            .unwrap()
            .expect("the old message");
        assert_eq!(m.content.as_deref(), Some("hello old world"));
        assert_eq!((m.actor_id.as_str(), m.msgtype.as_str()), ("u1", "text"));
        assert_eq!(m.reaction_counts.get("appreciate"), Some(&1));
        assert_eq!(m.appreciation_count, 1);
        assert_eq!(
            m.likes,
            Some(vec![Like {
                id: 9,
                user_id: "u2".into()
            }])
        );
        assert_eq!(
            store
                .get_reaction(space_id, message_id, "appreciate", "u2")
                .await
                .unwrap(),
            Some(9),
            "the like is a reaction row the space actor finds"
        );
        let page = store
            .page_messages(space_id, MessageOrder::Recent, 0, 10)
            .await
            .unwrap();
        assert_eq!(page, vec![m.clone()]);
        let events = store.read_events(space_id, 0, 10).await.unwrap();
        match &events[..] {
            [ev] => assert_eq!(ev.kind, crate::event::EventKind::MessageCreated(m)),
            other => panic!("one event expected, got {other:?}"),
        }
    }
    /// Expired idempotency keys read as absent at once and are purged by the space's next keyed
    /// commits, through the expiry index (no scan); a key reused after it expired keeps its new
    /// row when its old index entry is purged.
    #[tokio::test]
    async fn expired_idempotency_keys_read_absent_and_are_purged() {
        use crate::store::KeyWrite;
        use crate::testkit::{SpaceModel, create, user};
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), Metrics::new()).unwrap();
        let alice = user("alice");
        let (space, creator) = create(&*store, &alice).await;
        let sid = space.space_id;
        let mut model = SpaceModel::new(&space, &creator, 0);
        let past = Timestamp(Timestamp::now().0 - 1);
        let mut b = model.batch();
        for i in 0..20 {
            let m = model.send(&mut b, &alice, &format!("m{i}"));
            b.keys.push(KeyWrite {
                sender_id: alice.user_id.clone(),
                key: format!("old-{i}"),
                message_id: m.message_id,
                expires_at: past,
            });
        }
        let b = model.finish(b);
        store.commit(&b).await.unwrap();
        let count = |table: Table| {
            let open = store.shared.current().unwrap();
            open.t.get(table).prefix(sid.as_bytes()).count()
        };
        assert_eq!(count(Table::IdempotencyKeys), 20);
        assert_eq!(
            store
                .idempotent_send(sid, &alice.user_id, "old-3")
                .await
                .unwrap(),
            None,
            "expired: absent"
        );
        // One keyed commit reusing an expired key purges up to 2k + 16 = 18 of them.
        let mut b = model.batch();
        let reused = model.send(&mut b, &alice, "reused");
        let future = Timestamp(Timestamp::now().0 + 300_000);
        b.keys.push(KeyWrite {
            sender_id: alice.user_id.clone(),
            key: "old-0".into(),
            message_id: reused.message_id,
            expires_at: future,
        });
        let b = model.finish(b);
        store.commit(&b).await.unwrap();
        assert_eq!(
            store
                .idempotent_send(sid, &alice.user_id, "old-0")
                .await
                .unwrap(),
            Some(reused.message_id)
        );
        assert_eq!(count(Table::IdempotencyExpiry), 20 - 18 + 1);
        // The next keyed commit purges the rest; the reused key keeps its new row.
        let mut b = model.batch();
        let m = model.send(&mut b, &alice, "another");
        b.keys.push(KeyWrite {
            sender_id: alice.user_id.clone(),
            key: "fresh".into(),
            message_id: m.message_id,
            expires_at: future,
        });
        let b = model.finish(b);
        store.commit(&b).await.unwrap();
        assert_eq!(count(Table::IdempotencyKeys), 2, "old-0 (reused) and fresh");
        assert_eq!(count(Table::IdempotencyExpiry), 2);
        assert_eq!(
            store
                .idempotent_send(sid, &alice.user_id, "old-0")
                .await
                .unwrap(),
            Some(reused.message_id)
        );
    }
}
