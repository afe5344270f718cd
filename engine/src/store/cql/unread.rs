//! Read markers, top-level counts and space activity in the CQL store (issue 12; see
//! [`crate::unread`]). Schema v8:
//!
//! - a member's [`ReadMarker`] is two columns of the user's membership entry,
//!   `spaces_by_user.read_seq` / `read_count`, so the user's spaces and markers are one
//!   partition read; the row's deletion (leaving) takes the marker with it;
//! - every message row created since v8 has `messages_by_space.top_level`: the space's top-level
//!   count as of it, written in phase 1 with the row (so the claim's tombstones cover it like the
//!   row, and a deleted message takes it along);
//! - `space_activity_by_id (space_id) → activity` ([`SpaceActivity`] JSON).
//!
//! A marker and the activity are existing-row changes: phase 3, as [`Settle`] variants tagged
//! `rm…`, written with the commit's timestamp so a claim can apply them again. A marker write is
//! an `UPDATE` of the membership row, which a later removal of the member (a larger timestamp)
//! deletes again; a removal in the same batch drops the marker from the batch
//! (`CommitBatch::push_member_removal`).

use futures::{TryStreamExt, future};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use uuid::Uuid;

use super::schema::bucket;
use super::{CqlStore, Partitions, Settle, corrupt, part, space_bucket_key, unavailable};
use crate::error::{EngineError, Result};
use crate::model::{Seq, SpaceId};
use crate::store::{CommitBatch, MessageWrite};
use crate::unread::{MAX_LOOKBACK_PARTITIONS, Membership, ReadMarker, SpaceActivity};

/// The partition group of `space_activity_by_id` in a commit's writes.
const ACTIVITY: u8 = 101;

/// This module's prepared statements.
pub(super) struct Statements {
    set_top_level: PreparedStatement,
    select_top_level: PreparedStatement,
    set_marker: PreparedStatement,
    select_marker: PreparedStatement,
    select_markers_of_user: PreparedStatement,
    set_activity: PreparedStatement,
    select_activity: PreparedStatement,
}

impl Statements {
    pub(super) async fn prepare(s: &Session, ks: &str) -> Result<Self> {
        let p = |cql: String| async move {
            let mut st = s.prepare(cql).await.map_err(unavailable)?;
            // Keyed writes with the commit's timestamp, and reads: safe to retry.
            st.set_is_idempotent(true);
            Ok::<_, EngineError>(st)
        };
        Ok(Statements {
            set_top_level: p(format!("UPDATE {ks}.messages_by_space SET top_level = ? WHERE space_id = ? AND bucket = ? AND seq = ?")).await?,
            select_top_level: p(format!("SELECT seq, top_level FROM {ks}.messages_by_space WHERE space_id = ? AND bucket = ? AND seq <= ? LIMIT 1")).await?,
            set_marker: p(format!("UPDATE {ks}.spaces_by_user SET read_seq = ?, read_count = ? WHERE user_id = ? AND space_id = ?")).await?,
            select_marker: p(format!("SELECT read_seq, read_count FROM {ks}.spaces_by_user WHERE user_id = ? AND space_id = ?")).await?,
            select_markers_of_user: p(format!("SELECT space_id, read_seq, read_count FROM {ks}.spaces_by_user WHERE user_id = ?")).await?,
            set_activity: p(format!("UPDATE {ks}.space_activity_by_id SET activity = ? WHERE space_id = ?")).await?,
            select_activity: p(format!("SELECT activity FROM {ks}.space_activity_by_id WHERE space_id = ?")).await?,
        })
    }
}

fn marker_of(seq: Option<i64>, count: Option<i64>) -> Option<ReadMarker> {
    Some(ReadMarker {
        seq: u64::try_from(seq?).unwrap_or(0),
        count: u64::try_from(count.unwrap_or(0)).unwrap_or(0),
    })
}

impl CqlStore {
    /// Phase 1: the top-level count of each message the batch creates (on its new row only; a
    /// message created and deleted in the batch has no row, and gets none). Phase 3: the
    /// markers and the activity, as `Settle` ops.
    pub(super) fn unread_plan(
        &self,
        b: &CommitBatch,
        parts: &mut Partitions,
        settle: &mut Vec<Settle>,
    ) {
        let sid = b.space_id;
        for (seq, count) in &b.top_level_at {
            let created = b.messages.iter().any(|w| {
                matches!(w, MessageWrite::Put { message, previous_appreciation: None } if message.seq == *seq)
            });
            if created {
                parts.add(
                    part::MESSAGES,
                    &space_bucket_key(sid, *seq),
                    &self.unread.set_top_level,
                    (*count as i64, sid, bucket(*seq), *seq as i64),
                );
            }
        }
        settle.extend(b.markers.iter().map(|(u, m)| Settle::RmMarker {
            u: u.clone(),
            s: m.seq,
            c: m.count,
        }));
        if let Some(a) = &b.activity {
            settle.push(Settle::RmActivity(Box::new(a.clone())));
        }
    }

    /// The phase-3 writes of this module's `Settle` ops (others are ignored).
    pub(super) fn unread_settle(&self, sid: SpaceId, op: &Settle, parts: &mut Partitions) {
        match op {
            Settle::RmMarker { u, s, c } => parts.add(
                part::SPACES_OF_USER,
                u.as_bytes(),
                &self.unread.set_marker,
                (*s as i64, *c as i64, u.clone(), sid),
            ),
            Settle::RmActivity(a) => {
                let json = serde_json::to_string(a).unwrap_or_default();
                parts.add(
                    ACTIVITY,
                    sid.as_bytes(),
                    &self.unread.set_activity,
                    (json, sid),
                );
            }
            _ => {}
        }
    }

    pub(super) async fn unread_marker(
        &self,
        space_id: SpaceId,
        user_id: &str,
    ) -> Result<Option<ReadMarker>> {
        let row = self
            .first_row::<(Option<i64>, Option<i64>)>(
                &self.unread.select_marker,
                (user_id, space_id),
            )
            .await?;
        Ok(row.and_then(|(s, c)| marker_of(s, c)))
    }

    /// The newest message row at or before `seq`, walking back through at most
    /// [`MAX_LOOKBACK_PARTITIONS`] buckets; a row written before v8 (no count) ends the walk
    /// with `None`.
    pub(super) async fn unread_top_level_at(
        &self,
        space_id: SpaceId,
        seq: Seq,
    ) -> Result<Option<u64>> {
        let mut b = bucket(seq);
        let mut walked = 0;
        while b >= 0 && walked < MAX_LOOKBACK_PARTITIONS {
            let row = self
                .first_row::<(i64, Option<i64>)>(
                    &self.unread.select_top_level,
                    (space_id, b, seq as i64),
                )
                .await?;
            if let Some((_, count)) = row {
                return Ok(count.map(|c| u64::try_from(c).unwrap_or(0)));
            }
            b -= 1;
            walked += 1;
        }
        Ok(None)
    }

    pub(super) async fn unread_activity(&self, space_id: SpaceId) -> Result<Option<SpaceActivity>> {
        let row = self
            .first_row::<(Option<String>,)>(&self.unread.select_activity, (space_id,))
            .await?;
        match row.and_then(|(a,)| a) {
            None => Ok(None),
            Some(json) => serde_json::from_str(&json).map(Some).map_err(corrupt),
        }
    }

    /// One read of the user's membership partition (space ids and markers), then, per space and
    /// concurrently, its record and counters, the member row and the activity.
    pub(super) async fn unread_memberships(&self, user_id: &str) -> Result<Vec<Membership>> {
        let pager = self
            .session
            .execute_iter(self.unread.select_markers_of_user.clone(), (user_id,))
            .await
            .map_err(unavailable)?;
        let rows: Vec<(Uuid, Option<i64>, Option<i64>)> = pager
            .rows_stream::<(Uuid, Option<i64>, Option<i64>)>()
            .map_err(corrupt)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let loads = rows.into_iter().map(|(space_id, s, c)| async move {
            let (view, member, activity) = future::try_join3(
                self.space_view(space_id),
                crate::store::Store::get_member(self, space_id, user_id),
                self.unread_activity(space_id),
            )
            .await?;
            Ok::<_, EngineError>(view.zip(member).map(|(view, member)| Membership {
                view,
                member,
                marker: marker_of(s, c),
                activity,
            }))
        });
        Ok(future::try_join_all(loads)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }
}
