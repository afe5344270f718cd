//! The embedded store's discovery indexes and user stats (issue 12; see [`crate::discovery`]).
//!
//! | keyspace | key | value |
//! | --- | --- | --- |
//! | `disc_public` | space_id | empty: a public space (UUIDv7, so reverse order is newest first) |
//! | `disc_tags` | len(tag) u16 · tag · space_id | empty: a public space with that tag |
//! | `disc_words` | word · 0x00 · space_id | 1 if the word is in the title, else 0 |
//! | `disc_activity` | hour u64 · space_id | the space's activity count that UTC hour, u64 |
//! | `disc_users` | len(user) u16 · user · space_id · kind u8 | kind 1: the user created the space (empty); kind 2: `UserSpaceStats` JSON |
//!
//! Words are runs of alphanumeric characters, so they never hold the 0x00 separator, and a
//! prefix scan of a query word's bytes yields exactly the words starting with it, in word
//! order. `create_space` writes a public space's entries in its own atomic batch; a commit
//! writes its activity counts, user numbers and creator mark in its batch.

use fjall::Keyspace;
use uuid::Uuid;

use super::{Op, Table, Tables, dec, enc, io_err, user_prefix};
use crate::discovery::{UserSpaceRow, UserSpaceStats, indexed_words};
use crate::error::Result;
use crate::model::{Space, SpaceId, Visibility};
use crate::store::CommitBatch;

pub(super) const NAMES: [&str; 5] = [
    "disc_public",
    "disc_tags",
    "disc_words",
    "disc_activity",
    "disc_users",
];

/// The discovery keyspaces.
#[derive(Clone)]
pub(super) struct DiscTables {
    public: Keyspace,
    tags: Keyspace,
    words: Keyspace,
    activity: Keyspace,
    users: Keyspace,
}

/// A discovery keyspace, named in write jobs.
#[derive(Clone, Copy, Debug)]
pub(super) enum DiscTable {
    Public,
    Tags,
    Words,
    Activity,
    Users,
}

impl DiscTables {
    /// From the keyspaces named [`NAMES`], in that order.
    pub(super) fn new(mut ks: impl FnMut(&str) -> Result<Keyspace>) -> Result<Self> {
        Ok(DiscTables {
            public: ks(NAMES[0])?,
            tags: ks(NAMES[1])?,
            words: ks(NAMES[2])?,
            activity: ks(NAMES[3])?,
            users: ks(NAMES[4])?,
        })
    }

    pub(super) fn get(&self, t: DiscTable) -> &Keyspace {
        match t {
            DiscTable::Public => &self.public,
            DiscTable::Tags => &self.tags,
            DiscTable::Words => &self.words,
            DiscTable::Activity => &self.activity,
            DiscTable::Users => &self.users,
        }
    }
}

const CREATED: u8 = 1;
const NUMBERS: u8 = 2;

fn key_tag_prefix(tag: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + tag.len() + 16);
    k.extend_from_slice(&(tag.len().min(u16::MAX as usize) as u16).to_be_bytes());
    k.extend_from_slice(tag.as_bytes());
    k
}

fn key_word(word: &str, space: SpaceId) -> Vec<u8> {
    let mut k = Vec::with_capacity(word.len() + 17);
    k.extend_from_slice(word.as_bytes());
    k.push(0);
    k.extend_from_slice(space.as_bytes());
    k
}

fn key_hour(hour: i64) -> Vec<u8> {
    (hour.max(0) as u64).to_be_bytes().to_vec()
}

fn key_user(user_id: &str, space: SpaceId, kind: u8) -> Vec<u8> {
    let mut k = user_prefix(user_id);
    k.extend_from_slice(space.as_bytes());
    k.push(kind);
    k
}

fn op_put(t: DiscTable, k: Vec<u8>, v: Vec<u8>) -> Op {
    Op::Put(Table::Disc(t), k, v)
}

/// What `create_space` writes besides the space: the creator's mark and, for a public space, its
/// index entries.
pub(super) fn create_ops(space: &Space) -> Vec<Op> {
    let mut ops = vec![op_put(
        DiscTable::Users,
        key_user(&space.creator.user_id, space.space_id, CREATED),
        vec![],
    )];
    ops.extend(index_ops(space));
    ops
}

/// A public space's index entries (none for a private one).
fn index_ops(space: &Space) -> Vec<Op> {
    let id = space.space_id;
    let mut ops = Vec::new();
    if space.visibility != Visibility::Public {
        return ops;
    }
    ops.push(op_put(DiscTable::Public, id.as_bytes().to_vec(), vec![]));
    for tag in &space.tags {
        let mut k = key_tag_prefix(tag);
        k.extend_from_slice(id.as_bytes());
        ops.push(op_put(DiscTable::Tags, k, vec![]));
    }
    for w in indexed_words(space) {
        ops.push(op_put(
            DiscTable::Words,
            key_word(&w.word, id),
            vec![u8::from(w.in_title)],
        ));
    }
    ops
}

/// What a commit writes for discovery: its activity counts, user numbers and creator mark.
pub(super) fn commit_ops(b: &CommitBatch) -> Vec<Op> {
    let sid = b.space_id;
    let mut ops = Vec::new();
    for a in &b.hourly_activity {
        let mut k = key_hour(a.hour);
        k.extend_from_slice(sid.as_bytes());
        ops.push(op_put(
            DiscTable::Activity,
            k,
            a.count.to_be_bytes().to_vec(),
        ));
    }
    for u in &b.user_stats {
        ops.push(op_put(
            DiscTable::Users,
            key_user(&u.user_id, sid, NUMBERS),
            enc(u),
        ));
    }
    if let Some(creator) = &b.creator_mark {
        ops.push(op_put(
            DiscTable::Users,
            key_user(creator, sid, CREATED),
            vec![],
        ));
    }
    if let Some(space) = &b.index_space {
        ops.extend(index_ops(space));
    }
    ops
}

fn space_at(raw: &[u8]) -> Option<SpaceId> {
    Uuid::from_slice(raw.get(..16)?).ok()
}

pub(super) fn newest_public(t: &Tables, limit: usize) -> Result<Vec<SpaceId>> {
    let mut out = Vec::new();
    for kv in t.disc.public.iter().rev().take(limit) {
        let k = kv.key().map_err(io_err)?;
        out.extend(space_at(&k));
    }
    Ok(out)
}

pub(super) fn with_tag(t: &Tables, tag: &str, limit: usize) -> Result<Vec<SpaceId>> {
    let prefix = key_tag_prefix(tag);
    let mut out = Vec::new();
    for kv in t.disc.tags.prefix(&prefix).rev().take(limit) {
        let k = kv.key().map_err(io_err)?;
        out.extend(k.get(prefix.len()..).and_then(space_at));
    }
    Ok(out)
}

pub(super) fn search(
    t: &Tables,
    prefix: &str,
    limit: usize,
) -> Result<Vec<(String, SpaceId, bool)>> {
    let mut out = Vec::new();
    for kv in t.disc.words.prefix(prefix.as_bytes()).take(limit) {
        let (k, v) = kv.into_inner().map_err(io_err)?;
        let Some(sep) = k.iter().position(|b| *b == 0) else {
            continue;
        };
        let Some(space) = space_at(&k[sep + 1..]) else {
            continue;
        };
        let word = String::from_utf8_lossy(&k[..sep]).into_owned();
        out.push((word, space, v.first() == Some(&1)));
    }
    Ok(out)
}

fn be_u64(v: &[u8]) -> u64 {
    v.get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

pub(super) fn activity_in_hour(t: &Tables, hour: i64) -> Result<Vec<(SpaceId, u64)>> {
    let prefix = key_hour(hour);
    let mut out = Vec::new();
    for kv in t.disc.activity.prefix(&prefix) {
        let (k, v) = kv.into_inner().map_err(io_err)?;
        if let Some(space) = k.get(8..).and_then(space_at) {
            out.push((space, be_u64(&v)));
        }
    }
    Ok(out)
}

pub(super) fn space_activity(t: &Tables, space: SpaceId, hour: i64) -> Result<u64> {
    let mut k = key_hour(hour);
    k.extend_from_slice(space.as_bytes());
    Ok(t.disc
        .activity
        .get(k)
        .map_err(io_err)?
        .map_or(0, |v| be_u64(&v)))
}

pub(super) fn user_space_stats(
    t: &Tables,
    user_id: &str,
    space: SpaceId,
) -> Result<Option<UserSpaceStats>> {
    match t
        .disc
        .users
        .get(key_user(user_id, space, NUMBERS))
        .map_err(io_err)?
    {
        Some(v) => Ok(Some(dec(&v)?)),
        None => Ok(None),
    }
}

pub(super) fn user_rows(t: &Tables, user_id: &str) -> Result<Vec<UserSpaceRow>> {
    let prefix = user_prefix(user_id);
    let mut out: Vec<UserSpaceRow> = Vec::new();
    for kv in t.disc.users.prefix(&prefix) {
        let (k, v) = kv.into_inner().map_err(io_err)?;
        let Some(rest) = k.get(prefix.len()..) else {
            continue;
        };
        let (Some(space), Some(kind)) = (space_at(rest), rest.get(16)) else {
            continue;
        };
        // Keys of one space are adjacent (created, then numbers).
        if out.last().is_none_or(|r| r.space_id != space) {
            out.push(UserSpaceRow {
                space_id: space,
                ..Default::default()
            });
        }
        let Some(row) = out.last_mut() else { continue };
        match *kind {
            CREATED => row.created = true,
            NUMBERS => row.stats = Some(dec(&v)?),
            _ => {}
        }
    }
    Ok(out)
}
