//! Notifications in the embedded store (see [`crate::notifications`]).
//!
//! Keyspace `notifications_by_user`: key `len(user_id) u16 · user_id · notification_id`, value
//! the `Notification` JSON (with `is_read`). A user's rows are one key prefix, at most
//! [`NOTIFICATIONS_KEPT`] of them plus any not trimmed yet:
//! - a commit's notifications are written in the commit's own atomic batch; before it, the
//!   store reads the prefix of each user it notifies and the same batch deletes what falls
//!   beyond the newest [`NOTIFICATIONS_KEPT`]. Commits of other spaces may notify the same user
//!   meanwhile: each trims from what it read, so a trim can leave a few extra rows (the next
//!   write or list removes them) but never removes one of the newest;
//! - a list trims too, through the writer thread;
//! - a notification written again (a retried commit) keeps its `is_read`;
//! - marking read rewrites the row through the writer thread.

use std::collections::HashMap;

use uuid::Uuid;

use super::{EmbeddedStore, Op, Table, dec, enc, io_err, user_prefix};
use crate::error::Result;
use crate::notifications::{NOTIFICATIONS_KEPT, Notification};
use crate::store::CommitBatch;

pub(super) const KEYSPACE: &str = "notifications_by_user";

fn key(user_id: &str, id: Uuid) -> Vec<u8> {
    let mut k = user_prefix(user_id);
    k.extend_from_slice(id.as_bytes());
    k
}

/// Every stored notification of a user, in no order.
fn stored(t: &super::Tables, user_id: &str) -> Result<Vec<Notification>> {
    let mut out = Vec::new();
    for kv in t.notifications_by_user.prefix(user_prefix(user_id)) {
        let (_, v) = kv.into_inner().map_err(io_err)?;
        out.push(dec::<Notification>(&v)?);
    }
    Ok(out)
}

impl EmbeddedStore {
    /// The writes of the batch's notifications, and the deletes that keep each notified user at
    /// their newest [`NOTIFICATIONS_KEPT`].
    pub(super) async fn notification_ops(&self, b: &CommitBatch) -> Result<Vec<Op>> {
        if b.notifications.is_empty() {
            return Ok(Vec::new());
        }
        let mut by_user: HashMap<String, Vec<Notification>> = HashMap::new();
        for n in &b.notifications {
            by_user
                .entry(n.user_id.clone())
                .or_default()
                .push(n.clone());
        }
        self.read(move |t| {
            let mut ops = Vec::new();
            for (user, mut new) in by_user {
                // Written again (a retry): it stays read if it was.
                let mut rewritten = 0;
                for n in &mut new {
                    let k = key(&user, n.notification_id);
                    if let Some(v) = t.notifications_by_user.get(&k).map_err(io_err)? {
                        n.is_read |= dec::<Notification>(&v)?.is_read;
                        rewritten += 1;
                    }
                }
                // Counting keys first: the common case (under the bound) decodes nothing.
                let mut stored_n = 0;
                for kv in t.notifications_by_user.prefix(user_prefix(&user)) {
                    kv.key().map_err(io_err)?;
                    stored_n += 1;
                }
                if stored_n + new.len() - rewritten <= NOTIFICATIONS_KEPT {
                    for n in new {
                        let k = key(&user, n.notification_id);
                        ops.push(Op::Put(Table::NotificationsByUser, k, enc(&n)));
                    }
                    continue;
                }
                let written: Vec<_> = new.iter().map(|n| n.notification_id).collect();
                let mut all = stored(t, &user)?;
                all.retain(|o| !written.contains(&o.notification_id));
                all.extend(new);
                Notification::newest_first(&mut all);
                for (i, n) in all.into_iter().enumerate() {
                    let k = key(&user, n.notification_id);
                    if i < NOTIFICATIONS_KEPT {
                        if written.contains(&n.notification_id) {
                            ops.push(Op::Put(Table::NotificationsByUser, k, enc(&n)));
                        }
                    } else if !written.contains(&n.notification_id) {
                        ops.push(Op::Del(Table::NotificationsByUser, k));
                    }
                }
            }
            Ok(ops)
        })
        .await
    }

    pub(super) async fn list_notifications(&self, user_id: &str) -> Result<Vec<Notification>> {
        let user = user_id.to_owned();
        let mut all = self.read(move |t| stored(t, &user)).await?;
        Notification::newest_first(&mut all);
        if all.len() > NOTIFICATIONS_KEPT {
            let trim = all
                .split_off(NOTIFICATIONS_KEPT)
                .into_iter()
                .map(|n| Op::Del(Table::NotificationsByUser, key(user_id, n.notification_id)))
                .collect();
            self.write(trim).await?;
        }
        Ok(all)
    }

    pub(super) async fn notification_exists(&self, user_id: &str, id: Uuid) -> Result<bool> {
        let k = key(user_id, id);
        self.read(move |t| Ok(t.notifications_by_user.get(&k).map_err(io_err)?.is_some()))
            .await
    }

    pub(super) async fn mark_read(&self, user_id: &str, ids: &[Uuid]) -> Result<()> {
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| key(user_id, *id)).collect();
        let ops = self
            .read(move |t| {
                let mut ops = Vec::new();
                for k in keys {
                    let Some(v) = t.notifications_by_user.get(&k).map_err(io_err)? else {
                        continue;
                    };
                    let mut n: Notification = dec(&v)?;
                    if !n.is_read {
                        n.is_read = true;
                        ops.push(Op::Put(Table::NotificationsByUser, k, enc(&n)));
                    }
                }
                Ok(ops)
            })
            .await?;
        if ops.is_empty() {
            return Ok(());
        }
        self.write(ops).await
    }
}
