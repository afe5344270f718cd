//! Notifications in the CQL store (see [`crate::notifications`]; schema v7).
//!
//! Table `notifications_by_user`, key `(user_id), notification_id`: one partition per user,
//! holding at most [`NOTIFICATIONS_KEPT`] rows plus those not trimmed yet.
//!
//! - **Written in phase 3** of the commit that causes them ([`super::Settle::Notification`],
//!   tag `nt`), with the commit's timestamp [`super::write_ts`]`(n)`, so a claim that applies
//!   the commit's `pending` again writes the same cells (the id is deterministic). The insert
//!   never writes `is_read`.
//! - **`is_read`** is written directly (wall-clock timestamp) by
//!   [`Store::mark_notifications_read`](crate::store::Store::mark_notifications_read): the
//!   insert never writes that cell, so a re-applied insert (timestamp 2^62 + n) cannot reset
//!   it to unread.
//! - **Trim**: after a commit's phase 3, each notified user's partition is read in the
//!   background (not delaying the commit; at most one trim per user in flight per store) and
//!   what is older than the newest [`NOTIFICATIONS_KEPT`] deleted at [`TRIM_TS`], above every
//!   commit timestamp, so neither a re-applied insert nor a late read mark brings a trimmed row
//!   back (an appreciation whose notification was trimmed is therefore not notified again). A
//!   failed trim is not a failed commit: the next write trims again. A list trims synchronously,
//!   so it never shows more than the bound.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use scylla::DeserializeRow;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use uuid::Uuid;

use super::{CqlStore, Partitions, corrupt, part, unavailable};
use crate::error::{EngineError, Result};
use crate::model::{Timestamp, UserRef};
use crate::notifications::{NOTIFICATIONS_KEPT, Notification, NotificationKind};

/// The timestamp of trim deletes: above every commit's [`super::write_ts`] (commit numbers stay
/// far below 2^61), below `i64::MAX`.
pub(super) const TRIM_TS: i64 = (1 << 62) + (1 << 61);

/// Most notification inserts in one unlogged batch (≈ 300 bytes each: well under Cassandra's
/// default `batch_size_fail_threshold` of 50 KiB).
const PER_BATCH: usize = 32;

const COLUMNS: &str = "notification_id, num_id, kind, message, reference_id, space_id, actor_id, actor_username, actor_picture, created_at, is_read";

/// The prepared statements of notifications, and the users being trimmed in the background.
pub(super) struct Statements {
    insert: PreparedStatement,
    select_one: PreparedStatement,
    set_read: PreparedStatement,
    trim: Arc<Trim>,
}

/// What a trim needs, shared with its background task.
struct Trim {
    select_user: PreparedStatement,
    delete: PreparedStatement,
    /// Users with a background trim in flight.
    running: Mutex<HashSet<String>>,
}

impl Statements {
    pub(super) async fn prepare(s: &Session, ks: &str) -> Result<Self> {
        let p = |cql: String| async move {
            let mut st = s.prepare(cql).await.map_err(unavailable)?;
            // Keyed by user and a deterministic id, with explicit or idempotent values.
            st.set_is_idempotent(true);
            Ok::<_, EngineError>(st)
        };
        let t = format!("{ks}.notifications_by_user");
        Ok(Statements {
            insert: p(format!("INSERT INTO {t} (user_id, notification_id, num_id, kind, message, reference_id, space_id, actor_id, actor_username, actor_picture, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")).await?,
            select_one: p(format!("SELECT kind FROM {t} WHERE user_id = ? AND notification_id = ?")).await?,
            set_read: p(format!("UPDATE {t} SET is_read = true WHERE user_id = ? AND notification_id = ?")).await?,
            trim: Arc::new(Trim {
                select_user: p(format!("SELECT {COLUMNS} FROM {t} WHERE user_id = ?")).await?,
                delete: p(format!("DELETE FROM {t} USING TIMESTAMP {TRIM_TS} WHERE user_id = ? AND notification_id = ?")).await?,
                running: Mutex::default(),
            }),
        })
    }
}

#[derive(DeserializeRow)]
struct Row {
    notification_id: Uuid,
    num_id: Option<i64>,
    kind: Option<String>,
    message: Option<String>,
    reference_id: Option<String>,
    space_id: Option<Uuid>,
    actor_id: Option<String>,
    actor_username: Option<String>,
    actor_picture: Option<String>,
    created_at: Option<i64>,
    is_read: Option<bool>,
}

impl Row {
    /// `None`: a row with only a read mark (its insert was trimmed meanwhile) or of an unknown
    /// kind.
    fn into_notification(self, user_id: &str) -> Option<Notification> {
        let kind = NotificationKind::parse(self.kind.as_deref()?)?;
        let actor_id = self.actor_id.unwrap_or_default();
        Some(Notification {
            id: self.num_id.unwrap_or(0) as u64,
            notification_id: self.notification_id,
            user_id: user_id.to_owned(),
            kind,
            message: self.message.unwrap_or_default(),
            reference_id: self.reference_id.unwrap_or_default(),
            is_read: self.is_read.unwrap_or(false),
            created_at: Timestamp(self.created_at.unwrap_or(0)),
            space_id: self.space_id.unwrap_or_default(),
            actor: UserRef {
                user_id: actor_id.clone(),
                username: self.actor_username.unwrap_or_default(),
                profile_picture: self.actor_picture.unwrap_or_default(),
            },
            actor_id,
        })
    }
}

impl CqlStore {
    /// Adds the insert of `n` (phase 3) to `parts`: one user's inserts go in unlogged batches
    /// of at most [`PER_BATCH`] (a commit may notify one user many times, and a big batch would
    /// pass the server's batch size limit).
    pub(super) fn notification_write(&self, parts: &mut Partitions, n: &Notification) {
        let mut key = n.user_id.as_bytes().to_vec();
        key.extend_from_slice(&0u32.to_be_bytes());
        let at = key.len() - 4;
        for chunk in 0u32.. {
            key[at..].copy_from_slice(&chunk.to_be_bytes());
            let full = parts
                .groups
                .get(&(part::NOTIFICATIONS, key.clone()))
                .is_some_and(|g| g.len() >= PER_BATCH);
            if !full {
                break;
            }
        }
        parts.add(
            part::NOTIFICATIONS,
            &key,
            &self.nt.insert,
            (
                n.user_id.clone(),
                n.notification_id,
                n.id as i64,
                n.kind.as_str(),
                n.message.clone(),
                n.reference_id.clone(),
                n.space_id,
                n.actor_id.clone(),
                n.actor.username.clone(),
                n.actor.profile_picture.clone(),
                n.created_at.0,
            ),
        );
    }

    /// The user's newest [`NOTIFICATIONS_KEPT`], deleting the rest.
    pub(super) async fn list_and_trim(&self, user_id: &str) -> Result<Vec<Notification>> {
        list_and_trim(&self.session, &self.nt.trim, user_id).await
    }

    /// After a commit: trims every user it notified, in the background (see the module doc).
    pub(super) fn trim_notified(&self, notified: &[Notification]) {
        for n in notified {
            let user = n.user_id.clone();
            let trim = self.nt.trim.clone();
            let fresh = trim
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(user.clone());
            if !fresh {
                continue;
            }
            let session = self.session.clone();
            tokio::spawn(async move {
                if let Err(e) = list_and_trim(&session, &trim, &user).await {
                    tracing::debug!(error = %e, "could not trim a user's notifications; the next write or list does");
                }
                trim.running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&user);
            });
        }
    }

    pub(super) async fn notification_exists(&self, user_id: &str, id: Uuid) -> Result<bool> {
        // A row with only a read mark (no kind) is not a notification.
        let row: Option<(Option<String>,)> =
            self.first_row(&self.nt.select_one, (user_id, id)).await?;
        Ok(row.is_some_and(|(kind,)| kind.is_some()))
    }

    pub(super) async fn mark_read(&self, user_id: &str, ids: &[Uuid]) -> Result<()> {
        let updates = ids.iter().map(|id| {
            self.session
                .execute_unpaged(&self.nt.set_read, (user_id, *id))
        });
        futures::future::try_join_all(updates)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// Every row of the user's partition: its notifications newest first, and the ids of rows
/// without a notification (read marks of trimmed ones).
async fn read_partition(
    session: &Session,
    trim: &Trim,
    user_id: &str,
) -> Result<(Vec<Notification>, Vec<Uuid>)> {
    let pager = session
        .execute_iter(trim.select_user.clone(), (user_id,))
        .await
        .map_err(unavailable)?;
    let rows: Vec<Row> = pager
        .rows_stream::<Row>()
        .map_err(corrupt)?
        .try_collect()
        .await
        .map_err(unavailable)?;
    let mut list = Vec::with_capacity(rows.len());
    let mut stray = Vec::new();
    for r in rows {
        let id = r.notification_id;
        match r.into_notification(user_id) {
            Some(n) => list.push(n),
            None => stray.push(id),
        }
    }
    Notification::newest_first(&mut list);
    Ok((list, stray))
}

/// The user's newest [`NOTIFICATIONS_KEPT`], deleting the older ones and stray read marks.
async fn list_and_trim(session: &Session, trim: &Trim, user_id: &str) -> Result<Vec<Notification>> {
    let (mut list, mut gone) = read_partition(session, trim, user_id).await?;
    if list.len() > NOTIFICATIONS_KEPT {
        gone.extend(
            list.split_off(NOTIFICATIONS_KEPT)
                .into_iter()
                .map(|n| n.notification_id),
        );
    }
    if !gone.is_empty() {
        let deletes = gone
            .into_iter()
            .map(|id| session.execute_unpaged(&trim.delete, (user_id, id)));
        futures::future::try_join_all(deletes)
            .await
            .map_err(unavailable)?;
    }
    Ok(list)
}
