//! The CQL store's discovery indexes and user stats (issue 12; see [`crate::discovery`]).
//! Tables (schema v6, see [`super::schema`]):
//!
//! - `public_spaces_by_bucket ((bucket), space_id DESC)`: public spaces by creation, in 30-day
//!   buckets; the newest are read bucket by bucket backwards, at most
//!   [`PUBLIC_LOOKBACK_BUCKETS`] buckets (about three years) when few spaces exist.
//! - `spaces_by_tag ((tag), space_id DESC)`: public spaces per tag, newest first.
//! - `space_words_by_prefix ((prefix), word, space_id)`: the word index. The partition is the
//!   word's first two characters, so a query word (at least two characters) reads one
//!   partition, one clustering range `word >= q AND word < q + U+10FFFF`, with a `LIMIT`: the
//!   cost is the entries it returns. A partition holds every indexed (word, space) pair starting
//!   with those two characters, so a common pair (`th`) grows with the number of spaces.
//! - `space_activity_by_hour ((hour), space_id)`: a public space's activity count in a UTC hour.
//!   A trending read reads 24 partitions, each as large as the number of spaces active that
//!   hour.
//! - `user_space_stats ((user_id), space_id)`: `created` (written by `create_space`) and the
//!   user's numbers in the space (written by commits): a user's stats are one partition read.
//!
//! `create_space` writes its entries with wall-clock timestamps, like the space record (not
//! atomic: a failure half-way may leave index entries of a space that does not exist, which
//! every read skips, as it reads each listed space). A commit writes its activity counts, user
//! numbers and creator mark in phase 3 (`Settle` `dvA`/`dvU`/`dvC`, and `dvI`: a space indexed again) at its `write_ts(n)`, with
//! deterministic keys and final values, so a claim that applies them again changes nothing.

use futures::{FutureExt, TryStreamExt};
use scylla::DeserializeRow;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{CqlStore, Partitions, corrupt, unavailable};
use crate::discovery::{UserSpaceRow, UserSpaceStats, indexed_words, word_partition};
use crate::error::{EngineError, Result};
use crate::model::{Space, SpaceId, Timestamp, Visibility};
use crate::store::CommitBatch;

/// Milliseconds per bucket of `public_spaces_by_bucket` (30 days).
const PUBLIC_BUCKET_MS: i64 = 30 * 24 * 3_600_000;
/// Buckets a read of the newest public spaces looks back at most.
pub const PUBLIC_LOOKBACK_BUCKETS: i64 = 37;

/// Partition kinds of phase-3 writes (see `super::part`; these are disc's).
const PART_ACTIVITY: u8 = 40;
const PART_USERS: u8 = 41;
const PART_PUBLIC: u8 = 42;
const PART_TAGS: u8 = 43;
const PART_WORDS: u8 = 44;

fn public_bucket(t: Timestamp) -> i32 {
    t.0.div_euclid(PUBLIC_BUCKET_MS) as i32
}

/// disc's phase-3 changes: each an existing-row write of a commit (see `super::Settle`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) enum DiscSettle {
    /// The space's activity count in UTC hour `h`.
    #[serde(rename = "dvA")]
    Activity { h: i64, n: u64 },
    /// A user's numbers in the space: messages, words, appreciations received.
    #[serde(rename = "dvU")]
    User { u: String, n: u64, w: u64, a: u64 },
    /// The space's creator's "created" mark.
    #[serde(rename = "dvC")]
    Creator { u: String },
    /// A public space's index entries: its creation bucket, tags and words (with the title
    /// flag).
    #[serde(rename = "dvI")]
    Index {
        b: i32,
        tags: Vec<String>,
        words: Vec<(String, bool)>,
    },
}

impl DiscSettle {
    /// The changes a batch makes.
    pub(super) fn of(b: &CommitBatch) -> Vec<DiscSettle> {
        let mut out: Vec<DiscSettle> = b
            .hourly_activity
            .iter()
            .map(|a| DiscSettle::Activity {
                h: a.hour,
                n: a.count,
            })
            .collect();
        out.extend(b.user_stats.iter().map(|u| DiscSettle::User {
            u: u.user_id.clone(),
            n: u.messages,
            w: u.word_count,
            a: u.appreciations,
        }));
        out.extend(
            b.creator_mark
                .iter()
                .map(|u| DiscSettle::Creator { u: u.clone() }),
        );
        if let Some(space) = b
            .index_space
            .as_ref()
            .filter(|s| s.visibility == Visibility::Public)
        {
            out.push(DiscSettle::Index {
                b: public_bucket(space.created_at),
                tags: space.tags.clone(),
                words: indexed_words(space)
                    .into_iter()
                    .map(|w| (w.word, w.in_title))
                    .collect(),
            });
        }
        out
    }
}

pub(super) struct DiscStatements {
    insert_public: PreparedStatement,
    select_public: PreparedStatement,
    insert_tag: PreparedStatement,
    select_tag: PreparedStatement,
    insert_word: PreparedStatement,
    select_words: PreparedStatement,
    upsert_activity: PreparedStatement,
    select_activity_hour: PreparedStatement,
    select_activity: PreparedStatement,
    mark_created: PreparedStatement,
    set_user_numbers: PreparedStatement,
    select_user_numbers: PreparedStatement,
    select_user_rows: PreparedStatement,
}

impl DiscStatements {
    pub(super) async fn prepare(s: &Session, ks: &str) -> Result<Self> {
        let p = |cql: String| async move {
            let mut st = s.prepare(cql).await.map_err(unavailable)?;
            // Keyed writes of final values: retrying one is safe.
            st.set_is_idempotent(true);
            Ok::<_, EngineError>(st)
        };
        Ok(DiscStatements {
            insert_public: p(format!("INSERT INTO {ks}.public_spaces_by_bucket (bucket, space_id) VALUES (?, ?)")).await?,
            select_public: p(format!("SELECT space_id FROM {ks}.public_spaces_by_bucket WHERE bucket = ? LIMIT ?")).await?,
            insert_tag: p(format!("INSERT INTO {ks}.spaces_by_tag (tag, space_id) VALUES (?, ?)")).await?,
            select_tag: p(format!("SELECT space_id FROM {ks}.spaces_by_tag WHERE tag = ? LIMIT ?")).await?,
            insert_word: p(format!("INSERT INTO {ks}.space_words_by_prefix (prefix, word, space_id, in_title) VALUES (?, ?, ?, ?)")).await?,
            select_words: p(format!("SELECT word, space_id, in_title FROM {ks}.space_words_by_prefix WHERE prefix = ? AND word >= ? AND word < ? LIMIT ?")).await?,
            upsert_activity: p(format!("INSERT INTO {ks}.space_activity_by_hour (hour, space_id, count) VALUES (?, ?, ?)")).await?,
            select_activity_hour: p(format!("SELECT space_id, count FROM {ks}.space_activity_by_hour WHERE hour = ?")).await?,
            select_activity: p(format!("SELECT count FROM {ks}.space_activity_by_hour WHERE hour = ? AND space_id = ?")).await?,
            mark_created: p(format!("UPDATE {ks}.user_space_stats SET created = true WHERE user_id = ? AND space_id = ?")).await?,
            set_user_numbers: p(format!("UPDATE {ks}.user_space_stats SET messages = ?, word_count = ?, appreciations = ? WHERE user_id = ? AND space_id = ?")).await?,
            select_user_numbers: p(format!("SELECT messages, word_count, appreciations FROM {ks}.user_space_stats WHERE user_id = ? AND space_id = ?")).await?,
            select_user_rows: p(format!("SELECT space_id, created, messages, word_count, appreciations FROM {ks}.user_space_stats WHERE user_id = ?")).await?,
        })
    }

    /// The phase-3 write of `op`.
    pub(super) fn settle_write(&self, sid: SpaceId, op: &DiscSettle, parts: &mut Partitions) {
        {
            match op {
                DiscSettle::Activity { h, n } => parts.add(
                    PART_ACTIVITY,
                    &h.to_be_bytes(),
                    &self.upsert_activity,
                    (*h, sid, *n as i64),
                ),
                DiscSettle::User { u, n, w, a } => parts.add(
                    PART_USERS,
                    u.as_bytes(),
                    &self.set_user_numbers,
                    (*n as i64, *w as i64, *a as i64, u.clone(), sid),
                ),
                DiscSettle::Creator { u } => parts.add(
                    PART_USERS,
                    u.as_bytes(),
                    &self.mark_created,
                    (u.clone(), sid),
                ),
                DiscSettle::Index { b, tags, words } => {
                    parts.add(
                        PART_PUBLIC,
                        &b.to_be_bytes(),
                        &self.insert_public,
                        (*b, sid),
                    );
                    for t in tags {
                        parts.add(PART_TAGS, t.as_bytes(), &self.insert_tag, (t.clone(), sid));
                    }
                    for (w, in_title) in words {
                        let p = word_partition(w);
                        parts.add(
                            PART_WORDS,
                            p.as_bytes(),
                            &self.insert_word,
                            (p.clone(), w.clone(), sid, *in_title),
                        );
                    }
                }
            }
        }
    }
}

#[derive(DeserializeRow)]
struct NumbersRow {
    messages: Option<i64>,
    word_count: Option<i64>,
    appreciations: Option<i64>,
}

#[derive(DeserializeRow)]
struct UserRow {
    space_id: Uuid,
    created: Option<bool>,
    messages: Option<i64>,
    word_count: Option<i64>,
    appreciations: Option<i64>,
}

fn numbers(
    user_id: &str,
    messages: Option<i64>,
    words: Option<i64>,
    appreciations: Option<i64>,
) -> Option<UserSpaceStats> {
    // A row with only `created` has no numbers.
    messages.map(|m| UserSpaceStats {
        user_id: user_id.to_owned(),
        messages: m.max(0) as u64,
        word_count: words.unwrap_or_default().max(0) as u64,
        appreciations: appreciations.unwrap_or_default().max(0) as u64,
    })
}

impl CqlStore {
    fn disc(&self) -> &DiscStatements {
        &self.st.disc
    }

    /// `create_space`'s discovery writes: the creator's mark and, for a public space, its index
    /// entries.
    pub(super) async fn disc_create(&self, space: &Space) -> Result<()> {
        let d = self.disc();
        let id = space.space_id;
        let mut writes: Vec<futures::future::BoxFuture<'_, Result<_>>> = vec![
            self.exec(&d.mark_created, (&space.creator.user_id, id))
                .boxed(),
        ];
        if space.visibility == Visibility::Public {
            writes.push(
                self.exec(&d.insert_public, (public_bucket(space.created_at), id))
                    .boxed(),
            );
            for tag in &space.tags {
                writes.push(self.exec(&d.insert_tag, (tag, id)).boxed());
            }
        }
        for w in indexed_words(space) {
            writes.push(
                self.exec(
                    &d.insert_word,
                    (word_partition(&w.word), w.word, id, w.in_title),
                )
                .boxed(),
            );
        }
        futures::future::try_join_all(writes).await?;
        Ok(())
    }

    async fn ids(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<SpaceId>> {
        let rows = self
            .exec(st, values)
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        rows.rows::<(Uuid,)>()
            .map_err(corrupt)?
            .map(|r| r.map(|(id,)| id).map_err(corrupt))
            .collect()
    }

    pub(super) async fn disc_newest_public(&self, limit: usize) -> Result<Vec<SpaceId>> {
        let mut out = Vec::new();
        let now = public_bucket(Timestamp::now());
        for back in 0..PUBLIC_LOOKBACK_BUCKETS as i32 {
            if out.len() >= limit {
                break;
            }
            let want = (limit - out.len()) as i32;
            out.extend(
                self.ids(&self.disc().select_public, (now - back, want))
                    .await?,
            );
        }
        Ok(out)
    }

    pub(super) async fn disc_with_tag(&self, tag: &str, limit: usize) -> Result<Vec<SpaceId>> {
        self.ids(
            &self.disc().select_tag,
            (tag, limit.min(i32::MAX as usize) as i32),
        )
        .await
    }

    pub(super) async fn disc_search(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, SpaceId, bool)>> {
        let end = format!("{prefix}\u{10FFFF}");
        let rows = self
            .exec(
                &self.disc().select_words,
                (
                    word_partition(prefix),
                    prefix,
                    end,
                    limit.min(i32::MAX as usize) as i32,
                ),
            )
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        rows.rows::<(String, Uuid, Option<bool>)>()
            .map_err(corrupt)?
            .map(|r| {
                r.map(|(w, id, t)| (w, id, t.unwrap_or(false)))
                    .map_err(corrupt)
            })
            .collect()
    }

    pub(super) async fn disc_activity_in_hour(&self, hour: i64) -> Result<Vec<(SpaceId, u64)>> {
        let pager = self
            .session
            .execute_iter(self.disc().select_activity_hour.clone(), (hour,))
            .await
            .map_err(unavailable)?;
        let rows: Vec<(Uuid, Option<i64>)> = pager
            .rows_stream::<(Uuid, Option<i64>)>()
            .map_err(corrupt)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|(id, n)| (id, n.unwrap_or_default().max(0) as u64))
            .collect())
    }

    pub(super) async fn disc_space_activity(&self, space_id: SpaceId, hour: i64) -> Result<u64> {
        Ok(self
            .first_row::<(Option<i64>,)>(&self.disc().select_activity, (hour, space_id))
            .await?
            .and_then(|(n,)| n)
            .unwrap_or_default()
            .max(0) as u64)
    }

    pub(super) async fn disc_user_space_stats(
        &self,
        user_id: &str,
        space_id: SpaceId,
    ) -> Result<Option<UserSpaceStats>> {
        Ok(self
            .first_row::<NumbersRow>(&self.disc().select_user_numbers, (user_id, space_id))
            .await?
            .and_then(|r| numbers(user_id, r.messages, r.word_count, r.appreciations)))
    }

    pub(super) async fn disc_user_rows(&self, user_id: &str) -> Result<Vec<UserSpaceRow>> {
        let pager = self
            .session
            .execute_iter(self.disc().select_user_rows.clone(), (user_id,))
            .await
            .map_err(unavailable)?;
        let rows: Vec<UserRow> = pager
            .rows_stream::<UserRow>()
            .map_err(corrupt)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|r| UserSpaceRow {
                space_id: r.space_id,
                created: r.created.unwrap_or(false),
                stats: numbers(user_id, r.messages, r.word_count, r.appreciations),
            })
            .collect())
    }
}
