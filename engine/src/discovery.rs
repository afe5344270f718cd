//! Discovery of public spaces (trending, recommended, search, tags) and per-user profile stats
//! (issue 12). Every read here is O(what the caller asks for): no request scans a space's
//! history or every space.
//!
//! # Private spaces never leak
//! Only public spaces are written to the discovery indexes (the newest-public list, the tag and
//! word indexes, the activity buckets), and every list is filtered again when it is read: each
//! candidate's record is read (one point read per space listed) and a space that is not public
//! (or no longer exists) is skipped. So even an index entry left behind (a CQL `create_space`
//! that failed half-way) never shows a private space. Spacecast has no archived or locked spaces:
//! "not archived" holds for every space.
//!
//! # Trending
//! **Activity** = messages created + joins, counted per public space per UTC hour by the space's
//! actor (its clock), which writes the hour's final count into each commit (a deterministic,
//! idempotent row keyed by (hour, space): a retried or re-applied commit writes the same value).
//! **Score** = Σ over the last [`TRENDING_HOURS`] hourly buckets of `count × 0.5^(age_hours / 6)`
//! (a 6-hour half-life; the current hour has age 0), ties by the newer space. A trending read
//! reads at most those 24 buckets (each: the spaces active that hour) and aggregates; the
//! ranking (at most [`TRENDING_RANKED`] spaces), with the [`NEWEST_EXAMINED`] newest public
//! spaces, is cached per node for [`TRENDING_CACHE_TTL`], so a burst of requests costs one
//! computation, and a request then costs the point reads of the spaces it examines. When fewer than `limit` public spaces were active
//! in the last 24 h, the newest public spaces fill the list (never repeating one).
//!
//! # Search
//! A space's words are the Unicode-lowercased runs of alphanumeric characters of its title and
//! description; at most [`MAX_INDEXED_WORDS`] distinct words per space are indexed (title words
//! first, then description words in order; words shorter than [`MIN_QUERY_WORD_CHARS`] are not
//! indexed), each cut to [`MAX_WORD_CHARS`] characters. A query
//! is split the same way; every query word must be a prefix of some indexed word of the space.
//! Query words shorter than [`MIN_QUERY_WORD_CHARS`] characters are ignored (a one-character
//! prefix would have to read every index partition starting with it); a query with no usable
//! word answers `[]`. Each query word reads at most [`SEARCH_CANDIDATES`] index entries (in word
//! order); results are at most [`SEARCH_LIMIT`], title matches (every query word matches a title
//! word) before description matches, then newest first.
//!
//! # Spaces created before the indexes
//! A space enters the indexes at creation. One created before them enters when its actor next
//! starts: [`crate::stats::load_or_compute_for`] (a space with stored stats: one scan of its
//! messages commits its users' numbers, its creator's row and its index entries), or, for a
//! space without stats (no message yet), its first stats commit carries
//! [`crate::store::CommitBatch::index_space`] (redundant and idempotent for a space created by
//! this version: at most 1 + tags + [`MAX_INDEXED_WORDS`] rows, once per space).
//!
//! # Profile stats
//! Per (user, space) the engine keeps [`UserSpaceStats`] (existing messages, their words and
//! the appreciations they received), written by the space's actor in the same commit as the
//! change, plus one row per space the user created. A user's stats are one read of that user's
//! rows: O(spaces the user created or contributed to). See [`UserStats`] for the definitions.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{Space, SpaceId, SpaceView, Timestamp, Visibility};
use crate::store::Store;

/// Hours of activity a trending read aggregates.
pub const TRENDING_HOURS: i64 = 24;
/// The half-life of activity in the trending score, in hours.
pub const TRENDING_HALF_LIFE_HOURS: f64 = 6.0;
/// How long a node reuses its computed trending ranking.
pub const TRENDING_CACHE_TTL: Duration = Duration::from_secs(5);
/// Spaces the cached ranking keeps (best first); trending and recommended read from it.
pub const TRENDING_RANKED: usize = 500;
/// Most spaces a trending or recommended list returns.
pub const MAX_LIST_LIMIT: usize = 50;
/// Most spaces a search returns.
pub const SEARCH_LIMIT: usize = 20;
/// Index entries one query word reads at most.
pub const SEARCH_CANDIDATES: usize = 1000;
/// Most spaces a tag list returns.
pub const TAG_LIMIT: usize = 50;
/// Distinct words indexed per space.
pub const MAX_INDEXED_WORDS: usize = 64;
/// Characters of a word kept in the index (a longer word is indexed by its first ones).
pub const MAX_WORD_CHARS: usize = 40;
/// The shortest query word used.
pub const MIN_QUERY_WORD_CHARS: usize = 2;
/// Longest accepted search query, in characters (longer: `invalid_query`).
pub const MAX_QUERY_CHARS: usize = 200;

/// Milliseconds per hour.
const HOUR_MS: i64 = 3_600_000;

/// The UTC hour (hours since the Unix epoch) of a time.
pub fn hour_of(t: Timestamp) -> i64 {
    t.0.div_euclid(HOUR_MS)
}

/// The words of a text: Unicode-lowercased runs of alphanumeric characters, in order (repeats
/// kept).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

/// A word as the index keeps it: at most [`MAX_WORD_CHARS`] characters.
pub fn index_form(word: &str) -> String {
    word.chars().take(MAX_WORD_CHARS).collect()
}

/// The index partition of a word (its first two characters; CQL partitions the word index by
/// it).
pub fn word_partition(word: &str) -> String {
    word.chars().take(MIN_QUERY_WORD_CHARS).collect()
}

/// One word of a space in the search index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedWord {
    pub word: String,
    /// The word is in the title (else only in the description).
    pub in_title: bool,
}

/// The words a space is indexed under (see the module doc): title words first. Empty for a
/// space that is not public.
pub fn indexed_words(space: &Space) -> Vec<IndexedWord> {
    if space.visibility != Visibility::Public {
        return Vec::new();
    }
    let mut out: Vec<IndexedWord> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for (text, in_title) in [(&space.title, true), (&space.description, false)] {
        for w in words(text) {
            if out.len() >= MAX_INDEXED_WORDS {
                return out;
            }
            if w.chars().count() < MIN_QUERY_WORD_CHARS {
                // Never matched: query words have at least this many characters.
                continue;
            }
            let w = index_form(&w);
            if seen.insert(w.clone()) {
                out.push(IndexedWord { word: w, in_title });
            }
        }
    }
    out
}

/// A tag as creation stores it: trimmed, leading `#` dropped, lowercase.
pub fn normalize_tag(tag: &str) -> String {
    tag.trim().trim_start_matches('#').trim().to_lowercase()
}

/// The activity count of a space in one UTC hour, as its actor last counted it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityCount {
    /// Hours since the Unix epoch ([`hour_of`]).
    pub hour: i64,
    pub count: u64,
}

/// One user's numbers in one space, for the profile stats: kept by the space's actor, mirrored
/// into a user-partitioned index in the same commit as the change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSpaceStats {
    pub user_id: String,
    /// Existing messages the user sent here (`sender_id`).
    pub messages: u64,
    /// Σ `word_count` of those messages.
    pub word_count: u64,
    /// Σ `appreciation_count` of those messages.
    pub appreciations: u64,
}

/// One row of a user's index: a space they created and/or their numbers in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserSpaceRow {
    pub space_id: SpaceId,
    pub created: bool,
    /// `None`: no numbers written for this space.
    pub stats: Option<UserSpaceStats>,
}

/// A user's profile stats (`GET /v1/users/{id}/stats`).
///
/// - `spaces_created`: spaces whose creator is the user;
/// - `spaces_participated`: distinct spaces where the user has at least one existing message;
/// - `total_words_contributed`: Σ `word_count` of the user's existing messages (as `sender_id`);
/// - `total_appreciations_received`: Σ `appreciation_count` of the user's existing messages.
///
/// An unknown user has all zeros.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UserStats {
    pub spaces_created: u64,
    pub spaces_participated: u64,
    pub total_words_contributed: u64,
    pub total_appreciations_received: u64,
}

impl UserStats {
    /// The totals of a user's rows.
    pub fn of(rows: &[UserSpaceRow]) -> Self {
        let mut s = UserStats::default();
        for r in rows {
            if r.created {
                s.spaces_created += 1;
            }
            if let Some(n) = &r.stats
                && n.messages > 0
            {
                s.spaces_participated += 1;
                s.total_words_contributed += n.word_count;
                s.total_appreciations_received += n.appreciations;
            }
        }
        s
    }
}

/// A space's trending score from its hourly counts: Σ count × 0.5^(age / half-life).
pub fn score(now_hour: i64, counts: impl IntoIterator<Item = ActivityCount>) -> f64 {
    counts
        .into_iter()
        .filter(|c| (0..TRENDING_HOURS).contains(&(now_hour - c.hour)))
        .map(|c| {
            c.count as f64 * 0.5f64.powf((now_hour - c.hour) as f64 / TRENDING_HALF_LIFE_HOURS)
        })
        .sum()
}

/// Ranks spaces by score, best first; ties by the newer space (UUIDv7 ids order by creation).
pub fn rank(scores: HashMap<SpaceId, f64>) -> Vec<SpaceId> {
    let mut v: Vec<(SpaceId, f64)> = scores.into_iter().filter(|(_, s)| *s > 0.0).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    v.into_iter().map(|(id, _)| id).collect()
}

/// What the trending cache holds: the ranking of the spaces active in the last 24 hours, and the
/// newest public spaces that fill a list.
#[derive(Debug, Default)]
pub struct Ranking {
    /// Best first, at most [`TRENDING_RANKED`].
    pub ranked: Vec<SpaceId>,
    /// Newest first, at most [`NEWEST_EXAMINED`].
    pub newest: Vec<SpaceId>,
}

/// The per-node trending cache (see the module doc).
pub struct TrendingCache {
    ranked: Mutex<Option<(Instant, std::sync::Arc<Ranking>)>>,
    /// Serialises computations, so a burst of requests costs one.
    computing: tokio::sync::Mutex<()>,
    /// How long a ranking is reused ([`TRENDING_CACHE_TTL`]).
    ttl: Duration,
}

impl Default for TrendingCache {
    fn default() -> Self {
        TrendingCache::with_ttl(TRENDING_CACHE_TTL)
    }
}

impl TrendingCache {
    /// A cache reusing a ranking for `ttl` (tests use a long one, so nothing depends on time).
    pub fn with_ttl(ttl: Duration) -> Self {
        TrendingCache {
            ranked: Mutex::new(None),
            computing: tokio::sync::Mutex::new(()),
            ttl,
        }
    }

    fn fresh(&self) -> Option<std::sync::Arc<Ranking>> {
        self.ranked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, r)| r.clone())
    }

    /// The ranking, computed at most once per [`TRENDING_CACHE_TTL`] on this node. Returns it
    /// and whether this call computed it.
    pub async fn ranking(&self, store: &dyn Store) -> Result<(std::sync::Arc<Ranking>, bool)> {
        if let Some(r) = self.fresh() {
            return Ok((r, false));
        }
        let _one = self.computing.lock().await;
        if let Some(r) = self.fresh() {
            return Ok((r, false));
        }
        let now = hour_of(Timestamp::now());
        let hours: Vec<i64> = (0..TRENDING_HOURS).map(|age| now - age).collect();
        let buckets =
            futures::future::try_join_all(hours.iter().map(|h| store.activity_in_hour(*h))).await?;
        let mut scores: HashMap<SpaceId, f64> = HashMap::new();
        for (h, bucket) in hours.iter().zip(buckets) {
            for (space, count) in bucket {
                *scores.entry(space).or_default() +=
                    score(now, [ActivityCount { hour: *h, count }]);
            }
        }
        let mut ranked = rank(scores);
        ranked.truncate(TRENDING_RANKED);
        let newest = store.newest_public_spaces(NEWEST_EXAMINED).await?;
        let ranked = std::sync::Arc::new(Ranking { ranked, newest });
        *self.ranked.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), ranked.clone()));
        Ok((ranked, true))
    }
}

/// Reads the spaces of `ids` in order and appends to `out` those that exist, are public, are not
/// in `out` yet and (with `not_member_of`) do not have that user as a member, until `out` holds
/// `limit`. Costs one or two point reads per id examined, in chunks of 16 concurrent reads.
pub async fn public_views(
    store: &dyn Store,
    ids: impl IntoIterator<Item = SpaceId>,
    limit: usize,
    out: &mut Vec<SpaceView>,
    not_member_of: Option<&str>,
) -> Result<()> {
    const CHUNK: usize = 16;
    let mut ids = ids.into_iter().peekable();
    while out.len() < limit && ids.peek().is_some() {
        let chunk: Vec<SpaceId> = ids
            .by_ref()
            .filter(|id| !out.iter().any(|o| o.space.space_id == *id))
            .take(CHUNK)
            .collect();
        let views = futures::future::try_join_all(chunk.iter().map(|id| async move {
            let Some(v) = store.get_space(*id).await? else {
                return Ok(None);
            };
            if v.space.visibility != Visibility::Public {
                return Ok(None);
            }
            if let Some(user) = not_member_of
                && store.get_member(*id, user).await?.is_some()
            {
                return Ok(None);
            }
            Ok::<_, crate::error::EngineError>(Some(v))
        }))
        .await?;
        for v in views.into_iter().flatten() {
            if out.len() >= limit {
                break;
            }
            if !out.iter().any(|o| o.space.space_id == v.space.space_id) {
                out.push(v);
            }
        }
    }
    Ok(())
}

/// Newest public spaces a trending or recommended list examines beyond its ranking, at most.
pub const NEWEST_EXAMINED: usize = 200;
/// Most distinct words a search query may have (more: `invalid_query`).
pub const MAX_QUERY_WORDS: usize = 8;

/// The usable words of a search query (see the module doc): distinct, in order, in index form.
pub fn query_words(q: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in words(q) {
        if w.chars().count() < MIN_QUERY_WORD_CHARS {
            continue;
        }
        let w = index_form(&w);
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

impl crate::Engine {
    /// Public spaces ranked by recent activity (see the module doc), at most `limit` (clamped
    /// to 1..=[`MAX_LIST_LIMIT`]), filled with the newest public spaces.
    ///
    /// # Errors
    /// `StoreUnavailable`.
    pub async fn trending_spaces(&self, limit: usize) -> Result<Vec<SpaceView>> {
        self.discovered(limit.clamp(1, MAX_LIST_LIMIT), None).await
    }

    /// Public spaces `user_id` is not a member of, trending order first, then newest, at most
    /// `limit` (clamped to 1..=[`MAX_LIST_LIMIT`]). Examines the cached ranking and at most
    /// [`NEWEST_EXAMINED`] newest public spaces.
    ///
    /// # Errors
    /// `StoreUnavailable`.
    pub async fn recommended_spaces(&self, user_id: &str, limit: usize) -> Result<Vec<SpaceView>> {
        self.discovered(limit.clamp(1, MAX_LIST_LIMIT), Some(user_id))
            .await
    }

    async fn discovered(
        &self,
        limit: usize,
        not_member_of: Option<&str>,
    ) -> Result<Vec<SpaceView>> {
        let store = self.store.as_ref();
        let (ranking, _) = self.trending.ranking(store).await?;
        let mut out = Vec::with_capacity(limit);
        // Owned (at most 700 ids), so the future holds no borrow of the cache's value.
        let candidates: Vec<SpaceId> = ranking
            .ranked
            .iter()
            .chain(ranking.newest.iter())
            .copied()
            .collect();
        public_views(store, candidates, limit, &mut out, not_member_of).await?;
        Ok(out)
    }

    /// The trending ranking's cache of this node (tests check it is shared by a burst).
    pub fn trending_cache(&self) -> &TrendingCache {
        &self.trending
    }

    /// Public spaces matching a search query (see the module doc), at most [`SEARCH_LIMIT`],
    /// title matches first, then newest. The caller checks the query's length and word count
    /// ([`MAX_QUERY_CHARS`], [`MAX_QUERY_WORDS`]).
    ///
    /// # Errors
    /// `StoreUnavailable`.
    pub async fn search_spaces(&self, q: &str) -> Result<Vec<SpaceView>> {
        let words = query_words(q);
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let store = self.store.as_ref();
        let hits = futures::future::try_join_all(
            words
                .iter()
                .map(|w| store.search_words(w, SEARCH_CANDIDATES)),
        )
        .await?;
        // space → (words matched, every matched word matched a title word so far)
        let mut matched: HashMap<SpaceId, (usize, bool)> = HashMap::new();
        for (i, word_hits) in hits.into_iter().enumerate() {
            let mut this: HashMap<SpaceId, bool> = HashMap::new();
            for (_, space, in_title) in word_hits {
                *this.entry(space).or_default() |= in_title;
            }
            for (space, in_title) in this {
                let e = matched.entry(space).or_insert((0, true));
                if e.0 == i {
                    e.0 += 1;
                    e.1 &= in_title;
                }
            }
        }
        let mut found: Vec<(SpaceId, bool)> = matched
            .into_iter()
            .filter(|(_, (n, _))| *n == words.len())
            .map(|(id, (_, title))| (id, title))
            .collect();
        found.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        let mut out = Vec::new();
        public_views(
            store,
            found.into_iter().map(|(id, _)| id),
            SEARCH_LIMIT,
            &mut out,
            None,
        )
        .await?;
        Ok(out)
    }

    /// Public spaces with tag `tag` (normalised like creation: trimmed, leading `#` dropped,
    /// lowercase), newest first, at most [`TAG_LIMIT`]; an unknown tag has none.
    ///
    /// # Errors
    /// `StoreUnavailable`.
    pub async fn spaces_with_tag(&self, tag: &str) -> Result<Vec<SpaceView>> {
        let tag = normalize_tag(tag);
        if tag.is_empty() || tag.chars().count() > 50 {
            return Ok(Vec::new());
        }
        let store = self.store.as_ref();
        let ids = store.spaces_with_tag(&tag, TAG_LIMIT).await?;
        let mut out = Vec::new();
        public_views(store, ids, TAG_LIMIT, &mut out, None).await?;
        Ok(out)
    }

    /// A user's profile stats (see [`UserStats`]): one read of the user's index.
    ///
    /// # Errors
    /// `StoreUnavailable`.
    pub async fn user_stats(&self, user_id: &str) -> Result<UserStats> {
        Ok(UserStats::of(&self.store.user_space_rows(user_id).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_non_alphanumerics_and_lowercase_unicode() {
        assert_eq!(
            words("Rust-Lang: ÉTÉ  2026, naïve/Straße"),
            ["rust", "lang", "été", "2026", "naïve", "straße"]
        );
        assert!(words(" -- ").is_empty());
    }

    #[test]
    fn a_space_is_indexed_by_its_distinct_words_title_first_and_bounded() {
        let mut s = Space {
            space_id: uuid::Uuid::nil(),
            title: "Hello World".into(),
            description: "hello there world wide".into(),
            visibility: Visibility::Public,
            creator: crate::model::UserRef {
                user_id: "u".into(),
                username: "u".into(),
                profile_picture: String::new(),
            },
            tags: Vec::new(),
            posting_permission: Default::default(),
            created_at: Timestamp(0),
        };
        let w = indexed_words(&s);
        let got: Vec<(&str, bool)> = w.iter().map(|w| (w.word.as_str(), w.in_title)).collect();
        assert_eq!(
            got,
            [
                ("hello", true),
                ("world", true),
                ("there", false),
                ("wide", false)
            ]
        );
        s.description = (0..200).map(|i| format!("w{i} ")).collect();
        assert_eq!(indexed_words(&s).len(), MAX_INDEXED_WORDS);
        s.title = "x".repeat(100);
        assert_eq!(indexed_words(&s)[0].word.chars().count(), MAX_WORD_CHARS);
        s.visibility = Visibility::Private;
        assert!(indexed_words(&s).is_empty(), "a private space has no words");
    }

    #[test]
    fn the_score_halves_every_six_hours_and_ignores_older_buckets() {
        let c = |age: i64, count| ActivityCount {
            hour: 100 - age,
            count,
        };
        assert_eq!(score(100, [c(0, 4)]), 4.0);
        assert_eq!(score(100, [c(6, 4)]), 2.0);
        assert_eq!(score(100, [c(12, 4)]), 1.0);
        assert_eq!(score(100, [c(24, 1000)]), 0.0, "past 24 h");
        assert_eq!(score(100, [c(-1, 1000)]), 0.0, "a future hour (clock skew)");
        assert!(score(100, [c(0, 1)]) > score(100, [c(1, 1)]));
    }

    #[test]
    fn ranking_is_by_score_then_newer_space() {
        let older = uuid::Uuid::from_u128(1);
        let newer = uuid::Uuid::from_u128(2);
        let best = uuid::Uuid::from_u128(0);
        let idle = uuid::Uuid::from_u128(3);
        let scores = HashMap::from([(older, 1.0), (newer, 1.0), (best, 5.0), (idle, 0.0)]);
        assert_eq!(rank(scores), [best, newer, older]);
    }

    #[test]
    fn user_stats_count_only_spaces_with_messages_as_participated() {
        let id = uuid::Uuid::from_u128;
        let n = |m, w, a| {
            Some(UserSpaceStats {
                user_id: "u".into(),
                messages: m,
                word_count: w,
                appreciations: a,
            })
        };
        let rows = [
            UserSpaceRow {
                space_id: id(1),
                created: true,
                stats: None,
            },
            UserSpaceRow {
                space_id: id(2),
                created: true,
                stats: n(2, 7, 3),
            },
            UserSpaceRow {
                space_id: id(3),
                created: false,
                stats: n(0, 0, 0),
            },
            UserSpaceRow {
                space_id: id(4),
                created: false,
                stats: n(1, 1, 0),
            },
        ];
        assert_eq!(
            UserStats::of(&rows),
            UserStats {
                spaces_created: 2,
                spaces_participated: 2,
                total_words_contributed: 8,
                total_appreciations_received: 3,
            }
        );
        assert_eq!(UserStats::of(&[]), UserStats::default());
    }

    #[test]
    fn tags_normalise_like_creation() {
        assert_eq!(normalize_tag(" #Rust "), "rust");
        assert_eq!(normalize_tag("Été"), "été");
    }

    /// A burst of trending reads costs one computation (the bound of the module doc): the first
    /// read computes, concurrent and later ones within the TTL reuse it; a TTL of 0 computes
    /// every time. Not timed: the TTLs are an hour and zero.
    #[tokio::test]
    async fn a_burst_of_trending_reads_computes_the_ranking_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::embedded::EmbeddedStore::open(
            dir.path(),
            spacecast_observability::Metrics::new(),
        )
        .unwrap();
        let cache = TrendingCache::with_ttl(Duration::from_secs(3600));
        let burst = futures::future::join_all((0..8).map(|_| cache.ranking(store.as_ref()))).await;
        let computed = burst.iter().filter(|r| matches!(r, Ok((_, true)))).count();
        assert_eq!(computed, 1, "one computation for the burst");
        assert!(!cache.ranking(store.as_ref()).await.unwrap().1, "reused");
        let never = TrendingCache::with_ttl(Duration::ZERO);
        assert!(never.ranking(store.as_ref()).await.unwrap().1);
        assert!(
            never.ranking(store.as_ref()).await.unwrap().1,
            "the fault: no cache"
        );
    }

    #[test]
    fn hours_are_utc_hours_since_the_epoch() {
        assert_eq!(hour_of(Timestamp(0)), 0);
        assert_eq!(hour_of(Timestamp(HOUR_MS - 1)), 0);
        assert_eq!(hour_of(Timestamp(HOUR_MS)), 1);
    }
}
