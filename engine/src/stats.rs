//! Space statistics (`GET /v1/spaces/{id}/stats`), maintained incrementally by the space actor.
//!
//! # Definitions
//! Every number is of the messages that **exist** now (created and not deleted): a delete takes
//! its message out of every count.
//! - `total_messages`: existing messages (redacted ones included).
//! - `by_msgtype`: existing messages per `msgtype` (a redaction keeps the msgtype).
//! - `with_attachments`: existing messages with media (a `/v1` upload or a Space7 file), the
//!   predicate of the list filter `has_attachment` ([`crate::listing::has_attachment`]). A
//!   redaction wipes the attachments, so a redacted message no longer counts.
//! - `threads`: existing thread roots with at least one existing reply. A root gaining its first
//!   reply counts; losing its last reply, or being deleted, uncounts it.
//! - `redacted`: existing redacted messages.
//! - `first_message_at` / `last_message_at`: the creation time of the existing message with the
//!   lowest / highest seq (seqs follow creation order), `null` in a space without messages.
//! - `top_contributors`: the top [`TOP_CONTRIBUTORS`] senders (`sender_id`, so a message sent on
//!   someone's behalf counts for them) of existing messages, by `word_count` (the sum of their
//!   messages' current word counts: an edit changes it, and a redacted message's words no longer
//!   count, its text being gone; it still counts in `messages`), ties by `messages`, then by
//!   `user_id`.
//!
//! # How it is kept, and what it costs
//! The space actor owns a [`SpaceStats`] next to its counters and updates it on every command that
//! changes a message (send, delete, edit, redact; reactions and members change nothing here),
//! before the command's batch goes to the writer. Each such batch carries the new stats
//! ([`crate::store::CommitBatch::stats`]) and the per-user numbers it changed
//! ([`crate::store::CommitBatch::contributors`]), committed atomically with the events that
//! changed them, so the durable stats always describe exactly the durable messages.
//!
//! Per-contributor numbers live in rows of their own, one per (space, user); the stats value keeps
//! only a bounded **leaderboard**: the exact top [`LEADERBOARD_CANDIDATES`] contributors (or all of
//! them, when `leaderboard_complete`). Invariant: every contributor outside the leaderboard ranks
//! below every one in it. A contributor who gains words enters it when they beat its last entry;
//! one who loses words below its last entry leaves it (it shrinks, still exact). Only when it
//! shrinks below [`TOP_CONTRIBUTORS`] entries while contributors outside it exist is it rebuilt,
//! from a scan of the space's contributor rows: the documented worst case, O(senders) reads, after
//! more than `LEADERBOARD_CANDIDATES - TOP_CONTRIBUTORS` (22) contributors fell out of it.
//!
//! So a send pays: a copy of the stats value into its batch (a map of msgtypes and at most
//! [`LEADERBOARD_CANDIDATES`] entries), one contributor row written in its commit, and on the
//! first send of a user since the actor started, one contributor row read. A delete of the first
//! or last message pays one keyset read for the next one (`Store::scan_messages`, limit 1 past
//! deleted rows). Reading the stats is one row read, never a scan of history. The stored value
//! grows with the number of msgtypes in use (one entry each; custom ones are namespaced names of
//! at most 64 bytes), not with messages or senders.
//!
//! # Spaces that existed before stats (the migration)
//! A space whose stats were never stored gets them when its actor claims it: one scan of its
//! messages computes them, and they are committed at once (with every contributor row), before
//! the actor takes any command. A reader that finds no stored stats for a space with messages asks
//! the space's actor to start ([`crate::space::Command::Sync`]), then reads again.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{Message, Seq, SpaceCounters, SpaceId, Timestamp};
use crate::store::{CommitBatch, Direction, Store};

/// Contributors the stats endpoint lists.
pub const TOP_CONTRIBUTORS: usize = 10;
/// Contributors the stored leaderboard keeps (see the module doc).
pub const LEADERBOARD_CANDIDATES: usize = 32;

/// One sender's numbers in a space: existing messages, and their words.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ContributorV1)]
pub struct ContributorStats {
    /// The sender (`sender_id`: a message sent on someone's behalf counts for them).
    pub user_id: String,
    /// Their existing messages.
    #[schema(minimum = 1)]
    pub messages: u64,
    /// Words in their existing messages as they read now (edits count, redacted text does not).
    #[schema(minimum = 0)]
    pub word_count: u64,
}

impl ContributorStats {
    /// The leaderboard order: more words first, then more messages, then by user id.
    pub fn rank(&self, other: &ContributorStats) -> std::cmp::Ordering {
        other
            .word_count
            .cmp(&self.word_count)
            .then(other.messages.cmp(&self.messages))
            .then_with(|| self.user_id.cmp(&other.user_id))
    }
}

/// Where a message sits: its seq and creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMark {
    pub seq: Seq,
    pub at: Timestamp,
}

impl MessageMark {
    pub fn of(m: &Message) -> Self {
        MessageMark {
            seq: m.seq,
            at: m.created_at,
        }
    }
}

/// A space's statistics as stored (see the module doc for the definitions).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceStats {
    pub total_messages: u64,
    pub by_msgtype: BTreeMap<String, u64>,
    pub with_attachments: u64,
    pub threads: u64,
    pub redacted: u64,
    pub first_message: Option<MessageMark>,
    pub last_message: Option<MessageMark>,
    /// The exact top contributors, best first, at most [`LEADERBOARD_CANDIDATES`].
    pub leaderboard: Vec<ContributorStats>,
    /// Whether `leaderboard` holds every contributor.
    pub leaderboard_complete: bool,
    /// Whether every sender's numbers are in the user index of [`crate::discovery`] (stats
    /// stored before it existed read `false`: the next claim builds it, see
    /// [`load_or_compute`]).
    #[serde(default)]
    pub user_index: bool,
}

/// The stats of a space without messages.
impl Default for SpaceStats {
    fn default() -> Self {
        SpaceStats {
            total_messages: 0,
            by_msgtype: BTreeMap::new(),
            with_attachments: 0,
            threads: 0,
            redacted: 0,
            first_message: None,
            last_message: None,
            leaderboard: Vec::new(),
            leaderboard_complete: true,
            user_index: true,
        }
    }
}

/// Contributor rows per commit of the stats migration (a CQL commit carries them in its head
/// row's `pending`, which must stay small).
const MIGRATION_CONTRIBUTORS_PER_COMMIT: usize = 256;

/// The space's stats as durable, for the writer that claimed it at `epoch` (the space actor, as
/// it starts). A space whose
/// stats were never committed (it existed before stats) gets them here, computed once from its
/// messages and committed at once, contributor rows first and the stats last, so a failure half
/// way leaves no stats and the next claim computes them again (the migration of
/// the module doc). Returns the contributors it computed, if it did.
///
/// # Errors
/// Those of the store's reads and commits (`Fenced` if another writer claimed the space since).
pub async fn load_or_compute(
    store: &dyn Store,
    space_id: SpaceId,
    epoch: u64,
    counters: SpaceCounters,
) -> Result<(SpaceStats, HashMap<String, ContributorStats>)> {
    load_or_compute_for(store, space_id, epoch, counters, None)
        .await
        .map(|(stats, known, _)| (stats, known))
}

/// [`load_or_compute`], which also builds the space's part of the user index of
/// [`crate::discovery`] (issue 12) when its stored stats predate it (`user_index` false): the
/// same one scan of its messages computes every sender's messages, words and appreciations
/// received, committed with the contributor rows, and the last commit carries the creator's
/// "created" mark, the space's discovery entries (`space`: the space as stored; entries only for
/// a public one, so a space created before the indexes enters them) and the stats with
/// `user_index` set. A failure half way leaves the old stats (without the flag), so the next
/// claim does it again; every row it writes is a final value under a deterministic key. The
/// third value says whether the stats were absent and nothing was committed (a space without
/// messages, maybe created before the indexes): the actor's first stats commit then carries
/// [`CommitBatch::index_space`].
///
/// # Errors
/// Those of [`load_or_compute`].
pub async fn load_or_compute_for(
    store: &dyn Store,
    space_id: SpaceId,
    epoch: u64,
    counters: SpaceCounters,
    space: Option<&crate::model::Space>,
) -> Result<(SpaceStats, HashMap<String, ContributorStats>, bool)> {
    let creator = space.map(|s| s.creator.user_id.as_str());
    let stored = store.space_stats(space_id).await?;
    if let Some(stats) = &stored
        && stats.user_index
    {
        return Ok((stats.clone(), HashMap::new(), false));
    }
    if counters.message_count == 0 {
        let stats = SpaceStats::default();
        if stored.is_some() {
            // Stats from before the user index, of a space whose messages are all gone: only
            // the flag and the creator's mark to write.
            store
                .commit(&CommitBatch {
                    space_id,
                    epoch,
                    counters,
                    stats: Some(stats.clone()),
                    creator_mark: creator.map(str::to_owned),
                    index_space: space.cloned(),
                    ..Default::default()
                })
                .await?;
        }
        // Otherwise nothing to count; the first command that changes them commits them.
        return Ok((stats, HashMap::new(), stored.is_none()));
    }
    const CHUNK: usize = 500;
    let mut builder = StatsBuilder::default();
    let mut after = 0;
    loop {
        let page = store
            .scan_messages(
                space_id,
                after,
                counters.head_seq.saturating_add(1),
                Direction::Forward,
                CHUNK,
            )
            .await?;
        for m in &page {
            builder.add(m);
        }
        match page.last() {
            Some(m) if page.len() == CHUNK => after = m.seq,
            _ => break,
        }
    }
    let appreciations = std::mem::take(&mut builder.appreciations);
    let (stats, contributors) = builder.finish();
    let batch = |contributors: &[ContributorStats], stats: Option<SpaceStats>| CommitBatch {
        space_id,
        epoch,
        counters,
        creator_mark: stats.as_ref().and(creator).map(str::to_owned),
        index_space: stats.as_ref().and(space).cloned(),
        stats,
        contributors: contributors.to_vec(),
        user_stats: contributors
            .iter()
            .map(|c| crate::discovery::UserSpaceStats {
                user_id: c.user_id.clone(),
                messages: c.messages,
                word_count: c.word_count,
                appreciations: appreciations.get(&c.user_id).copied().unwrap_or(0),
            })
            .collect(),
        ..Default::default()
    };
    let mut chunks: Vec<&[ContributorStats]> = contributors
        .chunks(MIGRATION_CONTRIBUTORS_PER_COMMIT)
        .collect();
    let last = chunks.pop().unwrap_or(&[]);
    for chunk in chunks {
        store.commit(&batch(chunk, None)).await?;
    }
    store.commit(&batch(last, Some(stats.clone()))).await?;
    tracing::info!(%space_id, messages = stats.total_messages, contributors = contributors.len(), "space stats computed from its messages (migration)");
    let known = contributors
        .into_iter()
        .map(|c| (c.user_id.clone(), c))
        .collect();
    Ok((stats, known, false))
}

/// Whether a message counts in `with_attachments`.
fn attached(m: &Message) -> bool {
    crate::listing::has_attachment(m)
}

/// Whether a message counts in `threads`.
fn is_thread(m: &Message) -> bool {
    m.parent_id.is_none() && m.reply_count > 0
}

impl SpaceStats {
    /// The top [`TOP_CONTRIBUTORS`] contributors.
    pub fn top_contributors(&self) -> &[ContributorStats] {
        &self.leaderboard[..self.leaderboard.len().min(TOP_CONTRIBUTORS)]
    }

    /// Counts a message state in (`add`) or out of the per-message numbers (everything but the
    /// first/last marks and the contributors).
    pub(crate) fn count(&mut self, m: &Message, add: bool) {
        let step = |n: &mut u64, yes: bool| {
            if yes {
                *n = if add { *n + 1 } else { n.saturating_sub(1) };
            }
        };
        step(&mut self.total_messages, true);
        step(&mut self.with_attachments, attached(m));
        step(&mut self.threads, is_thread(m));
        step(&mut self.redacted, m.redacted);
        let n = self.by_msgtype.entry(m.msgtype.clone()).or_default();
        step(n, true);
        if *n == 0 {
            self.by_msgtype.remove(&m.msgtype);
        }
    }

    /// Replaces a message's old state by its new one in the per-message numbers.
    pub(crate) fn recount(&mut self, old: &Message, new: &Message) {
        self.count(old, false);
        self.count(new, true);
    }

    /// Moves `c` (a contributor's new numbers) in the leaderboard, keeping the invariant of the
    /// module doc. Returns whether the leaderboard must be rebuilt from every contributor
    /// ([`SpaceStats::rebuild_leaderboard`]) because fewer than [`TOP_CONTRIBUTORS`] known-best
    /// entries remain.
    pub(crate) fn place(&mut self, c: &ContributorStats) -> bool {
        let board = &mut self.leaderboard;
        let was = board
            .iter()
            .position(|e| e.user_id == c.user_id)
            .map(|i| board.remove(i));
        if c.messages > 0 {
            // Outside a complete board nobody exists; outside an incomplete one everybody ranks
            // below its last entry, so `c` may enter only ahead of it, or stay if it was in and
            // did not lose rank.
            let fits = self.leaderboard_complete
                || was
                    .as_ref()
                    .is_some_and(|old| c.rank(old) != std::cmp::Ordering::Greater)
                || board
                    .last()
                    .is_some_and(|last| c.rank(last) == std::cmp::Ordering::Less);
            if fits {
                let at = board.partition_point(|e| e.rank(c) == std::cmp::Ordering::Less);
                board.insert(at, c.clone());
                if board.len() > LEADERBOARD_CANDIDATES {
                    board.pop();
                    self.leaderboard_complete = false;
                }
            }
        }
        !self.leaderboard_complete && board.len() < TOP_CONTRIBUTORS
    }

    /// Rebuilds the leaderboard from every contributor (rows with no messages are ignored).
    pub(crate) fn rebuild_leaderboard(&mut self, all: impl IntoIterator<Item = ContributorStats>) {
        let mut all: Vec<ContributorStats> = all.into_iter().filter(|c| c.messages > 0).collect();
        all.sort_by(|a, b| a.rank(b));
        self.leaderboard_complete = all.len() <= LEADERBOARD_CANDIDATES;
        all.truncate(LEADERBOARD_CANDIDATES);
        self.leaderboard = all;
    }

    /// The stats of exactly `messages` (the existing messages of a space, any order), with every
    /// contributor's numbers: the from-scratch computation of the migration, and the reference
    /// the tests compare the incremental stats with.
    pub fn compute<'a>(
        messages: impl IntoIterator<Item = &'a Message>,
    ) -> (SpaceStats, Vec<ContributorStats>) {
        let mut b = StatsBuilder::default();
        for m in messages {
            b.add(m);
        }
        b.finish()
    }
}

/// The from-scratch computation, one message at a time ([`SpaceStats::compute`]).
#[derive(Default)]
pub struct StatsBuilder {
    stats: SpaceStats,
    by_user: HashMap<String, ContributorStats>,
    /// Σ appreciation_count per sender (the user index of [`crate::discovery`]).
    appreciations: HashMap<String, u64>,
}

impl StatsBuilder {
    /// Counts one existing message in.
    pub fn add(&mut self, m: &Message) {
        let stats = &mut self.stats;
        stats.count(m, true);
        let mark = MessageMark::of(m);
        if stats.first_message.is_none_or(|f| mark.seq < f.seq) {
            stats.first_message = Some(mark);
        }
        if stats.last_message.is_none_or(|l| mark.seq > l.seq) {
            stats.last_message = Some(mark);
        }
        let c = self
            .by_user
            .entry(m.sender_id.clone())
            .or_insert_with(|| ContributorStats {
                user_id: m.sender_id.clone(),
                ..Default::default()
            });
        c.messages += 1;
        c.word_count += u64::from(m.word_count);
        *self.appreciations.entry(m.sender_id.clone()).or_default() +=
            u64::from(m.appreciation_count);
    }

    /// The stats, and every contributor best first.
    pub fn finish(self) -> (SpaceStats, Vec<ContributorStats>) {
        let mut stats = self.stats;
        let mut contributors: Vec<ContributorStats> = self.by_user.into_values().collect();
        contributors.sort_by(|a, b| a.rank(b));
        stats.rebuild_leaderboard(contributors.iter().cloned());
        (stats, contributors)
    }
}

/// A contributor's numbers after a message's state changes from `old` to `new` (either `None`:
/// created or deleted). Both states must be of the same sender.
pub(crate) fn contributor_after(
    c: &ContributorStats,
    old: Option<&Message>,
    new: Option<&Message>,
) -> ContributorStats {
    let mut c = c.clone();
    if let Some(o) = old {
        c.messages = c.messages.saturating_sub(1);
        c.word_count = c.word_count.saturating_sub(u64::from(o.word_count));
    }
    if let Some(n) = new {
        c.messages += 1;
        c.word_count += u64::from(n.word_count);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(user: &str, messages: u64, words: u64) -> ContributorStats {
        ContributorStats {
            user_id: user.into(),
            messages,
            word_count: words,
        }
    }

    #[test]
    fn contributors_rank_by_words_then_messages_then_id() {
        let mut v = [
            c("b", 1, 5),
            c("a", 1, 5),
            c("c", 2, 5),
            c("d", 9, 1),
            c("e", 1, 9),
        ];
        v.sort_by(|x, y| x.rank(y));
        let ids: Vec<&str> = v.iter().map(|x| x.user_id.as_str()).collect();
        assert_eq!(ids, ["e", "c", "a", "b", "d"]);
    }

    /// Random contributor changes against a reference: the top entries are always exact, and a
    /// rebuild is asked for only when needed.
    #[test]
    fn the_leaderboard_stays_exact_through_gains_and_losses() {
        let mut all: BTreeMap<String, ContributorStats> = BTreeMap::new();
        let mut stats = SpaceStats::default();
        let mut rebuilds = 0;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for step in 0..20_000 {
            let user = format!("u{}", rnd(80));
            let cur = all.get(&user).cloned().unwrap_or_else(|| c(&user, 0, 0));
            // Gains early, losses later, so the board both fills and drains.
            let lose = rnd(100) < if step < 8_000 { 20 } else { 70 };
            let next = if lose {
                let m = cur.messages.saturating_sub(1);
                c(
                    &user,
                    m,
                    if m == 0 {
                        0
                    } else {
                        cur.word_count.saturating_sub(rnd(20))
                    },
                )
            } else {
                c(&user, cur.messages + 1, cur.word_count + rnd(20))
            };
            all.insert(user, next.clone());
            if stats.place(&next) {
                rebuilds += 1;
                stats.rebuild_leaderboard(all.values().cloned());
            }
            let mut want: Vec<ContributorStats> =
                all.values().filter(|c| c.messages > 0).cloned().collect();
            want.sort_by(|a, b| a.rank(b));
            want.truncate(TOP_CONTRIBUTORS);
            assert_eq!(stats.top_contributors(), &want[..], "step {step}");
            assert!(stats.leaderboard.len() <= LEADERBOARD_CANDIDATES);
        }
        assert!(rebuilds > 0, "the test reached the rebuild");
        assert!(rebuilds < 2_000, "rebuilds stay rare: {rebuilds}");
    }
}
