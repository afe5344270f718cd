//! Read markers, top-level counts and space activity in the embedded store (issue 12; see
//! [`crate::unread`]).
//!
//! One keyspace, `unread`, with a one-byte tag per kind of row:
//! | key | value |
//! | --- | --- |
//! | `m` · len(user_id) u16 · user_id · space_id | [`ReadMarker`] JSON |
//! | `a` · space_id | [`SpaceActivity`] JSON |
//! | `t` · space_id · seq u64 | the space's top-level count as of that seq, u64 |
//!
//! They are written in the commit's one atomic batch like every other row. A marker is
//! user-partitioned, in the order of the user's `spaces_by_user` entries; it is deleted with the
//! membership. `t` rows are never deleted (a deleted message keeps its entry), so
//! [`Store::top_level_at`](crate::store::Store::top_level_at) is exact here.

use super::{EmbeddedStore, Op, Table, Tables, enc, get_json, io_err, user_prefix};
use crate::error::Result;
use crate::model::{Seq, SpaceId};
use crate::store::CommitBatch;
use crate::unread::{Membership, ReadMarker, SpaceActivity};

const MARKER: u8 = b'm';
const ACTIVITY: u8 = b'a';
const TOP_LEVEL: u8 = b't';

fn key_marker(user_id: &str, space: SpaceId) -> Vec<u8> {
    let mut k = vec![MARKER];
    k.extend_from_slice(&user_prefix(user_id));
    k.extend_from_slice(space.as_bytes());
    k
}

fn key_activity(space: SpaceId) -> Vec<u8> {
    let mut k = vec![ACTIVITY];
    k.extend_from_slice(space.as_bytes());
    k
}

fn key_top_level(space: SpaceId, seq: Seq) -> Vec<u8> {
    let mut k = vec![TOP_LEVEL];
    k.extend_from_slice(space.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The batch's unread writes, appended to its ops (after its member writes and removals).
pub(super) fn commit_ops(b: &CommitBatch, ops: &mut Vec<Op>) {
    let sid = b.space_id;
    for (user, marker) in &b.markers {
        ops.push(Op::Put(Table::Unread, key_marker(user, sid), enc(marker)));
    }
    for user in &b.removed_members {
        ops.push(Op::Del(Table::Unread, key_marker(user, sid)));
    }
    if let Some(a) = &b.activity {
        ops.push(Op::Put(Table::Unread, key_activity(sid), enc(a)));
    }
    for (seq, count) in &b.top_level_at {
        ops.push(Op::Put(
            Table::Unread,
            key_top_level(sid, *seq),
            count.to_be_bytes().to_vec(),
        ));
    }
}

fn marker(t: &Tables, space_id: SpaceId, user_id: &str) -> Result<Option<ReadMarker>> {
    get_json(&t.unread, &key_marker(user_id, space_id))
}

fn activity(t: &Tables, space_id: SpaceId) -> Result<Option<SpaceActivity>> {
    get_json(&t.unread, &key_activity(space_id))
}

impl EmbeddedStore {
    pub(super) async fn unread_marker(
        &self,
        space_id: SpaceId,
        user_id: &str,
    ) -> Result<Option<ReadMarker>> {
        let user_id = user_id.to_owned();
        self.read(move |t| marker(t, space_id, &user_id)).await
    }

    pub(super) async fn unread_top_level_at(
        &self,
        space_id: SpaceId,
        seq: Seq,
    ) -> Result<Option<u64>> {
        self.read(move |t| {
            let from = key_top_level(space_id, 0);
            let to = key_top_level(space_id, seq);
            match t.unread.range(from..=to).next_back() {
                None => Ok(None),
                Some(kv) => {
                    let v = kv.value().map_err(io_err)?;
                    let raw: [u8; 8] = v.as_ref().try_into().map_err(|_| {
                        crate::error::EngineError::Internal("corrupt top-level count".into())
                    })?;
                    Ok(Some(u64::from_be_bytes(raw)))
                }
            }
        })
        .await
    }

    pub(super) async fn unread_activity(&self, space_id: SpaceId) -> Result<Option<SpaceActivity>> {
        self.read(move |t| activity(t, space_id)).await
    }

    pub(super) async fn unread_memberships(&self, user_id: &str) -> Result<Vec<Membership>> {
        let user_id = user_id.to_owned();
        self.read(move |t| {
            super::memberships(t, &user_id)?
                .into_iter()
                .map(|(view, member)| {
                    let space_id = view.space.space_id;
                    Ok(Membership {
                        marker: marker(t, space_id, &user_id)?,
                        activity: activity(t, space_id)?,
                        view,
                        member,
                    })
                })
                .collect()
        })
        .await
    }
}
