//! The indexer: one task per node keeping the [`SearchIndex`] in step with the durable event
//! logs (see the module doc of [`crate::search`] for the guarantees).
//!
//! Input: batches of a space's durable events in seq order, [`Indexer::offer`]ed by this node's
//! commit path (`bus::Fanout::committed`) and, in a cluster, by every other node's commits on
//! the bus ([`crate::bus::Bus::watch_all`]). `offer` never blocks: the queue holds at most
//! [`SearchConfig::queue`] batches, and a batch that does not fit is dropped and its space
//! marked for catch-up (`spacecast_search_batches_dropped_total`), so the commit path never
//! waits for the index.
//!
//! The task is the index's only writer, so the index sees one space's events in seq order. It
//! takes what is queued together (up to [`DRAIN`] batches), merges each space's events and
//! applies them in one trip to the index, so under sustained ingest a pass costs one wake-up,
//! not one per batch:
//! - a batch at or below the space's cursor is skipped (a duplicate: the bus and the local tap
//!   may both bring it, and a catch-up may have read it already);
//! - a batch whose first seq is past `cursor + 1` is completed from the store
//!   ([`crate::store::Store::read_events`]) first;
//! - between live batches (which go first), it catches up spaces behind: at start every space
//!   ([`crate::store::Store::scan_spaces`]), every [`SearchConfig::sweep_interval`] again, and
//!   at once the spaces whose batch was dropped;
//! - it commits every [`SearchConfig::commit_interval`] while it applied something.
//!
//! A store error leaves the space's cursor where it was: the next batch, sweep or catch-up of
//! the space retries.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spacecast_observability::Metrics;
use tokio::sync::mpsc;

use super::{COMMIT_INTERVAL, IndexOp, SWEEP_INTERVAL, SearchIndex, ops_of};
use crate::error::{EngineError, Result};
use crate::event::SpaceEvent;
use crate::model::{Seq, SpaceId, Visibility};
use crate::store::Store;

/// Events read from the store per call while completing or catching up a space.
const READ_PAGE: usize = 500;
/// Spaces read per [`Store::scan_spaces`] call of a catch-up.
const SCAN_PAGE: usize = 500;
/// Most queued batches taken at once (merged per space, applied in one trip to the index).
const DRAIN: usize = 1024;

/// How a node runs search.
#[derive(Clone, Debug)]
pub struct SearchConfig {
    /// The index directory (`<data-dir>/search`).
    pub dir: PathBuf,
    /// Batches the indexer's queue holds (beyond: dropped and caught up from the store).
    pub queue: usize,
    pub commit_interval: Duration,
    pub sweep_interval: Duration,
    /// Whether the indexer walks every space at start (always, but in tests that isolate the
    /// live path).
    pub(crate) catch_up_at_start: bool,
}

impl SearchConfig {
    pub fn new(dir: PathBuf) -> Self {
        SearchConfig {
            dir,
            queue: 4096,
            commit_interval: COMMIT_INTERVAL,
            sweep_interval: SWEEP_INTERVAL,
            catch_up_at_start: true,
        }
    }
}

struct Batch {
    space_id: SpaceId,
    events: Vec<SpaceEvent>,
}

/// What one space's events do to the index.
struct Work {
    space: SpaceId,
    ops: Vec<IndexOp>,
    through: Seq,
}

/// The producer side of the indexer. Cheap to clone.
#[derive(Clone)]
pub struct Indexer {
    tx: mpsc::Sender<Batch>,
    /// Spaces whose batch was dropped: caught up by the task.
    missed: Arc<Mutex<HashSet<SpaceId>>>,
    metrics: Metrics,
}

impl Indexer {
    /// Starts the indexer task over `index`; it catches up every space in the background
    /// first. Must run inside a Tokio runtime.
    pub fn start(
        index: Arc<dyn SearchIndex>,
        store: Arc<dyn Store>,
        config: &SearchConfig,
        metrics: Metrics,
    ) -> Indexer {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let indexer = Indexer {
            tx,
            missed: Arc::default(),
            metrics: metrics.clone(),
        };
        let task = Task {
            index,
            store,
            rx,
            missed: indexer.missed.clone(),
            metrics,
            public: HashMap::new(),
            behind: VecDeque::new(),
            scan: config.catch_up_at_start.then_some(None),
            applied: false,
        };
        tokio::spawn(task.run(config.commit_interval, config.sweep_interval));
        indexer
    }

    /// Hands a space's durable events (consecutive seqs, in order) to the indexer; never
    /// blocks (see the module doc).
    pub fn offer(&self, space_id: SpaceId, events: &[SpaceEvent]) {
        if events.is_empty() {
            return;
        }
        let batch = Batch {
            space_id,
            events: events.to_vec(),
        };
        match self.tx.try_send(batch) {
            Ok(()) => self.metrics.search_queue.inc(),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.search_batches_dropped.inc();
                self.missed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(space_id);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

struct Task {
    index: Arc<dyn SearchIndex>,
    store: Arc<dyn Store>,
    rx: mpsc::Receiver<Batch>,
    missed: Arc<Mutex<HashSet<SpaceId>>>,
    metrics: Metrics,
    /// Spaces' visibility, as read from the store (fixed at creation: see `super::ops_of`).
    public: HashMap<SpaceId, bool>,
    /// Spaces found behind, with the head to catch up to.
    behind: VecDeque<(SpaceId, Seq)>,
    /// A walk of every space in progress: `Some(after)`.
    scan: Option<Option<SpaceId>>,
    /// Whether something was applied since the last commit.
    applied: bool,
}

impl Task {
    async fn run(mut self, commit_every: Duration, sweep_every: Duration) {
        let mut commit = tokio::time::interval(commit_every);
        commit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep =
            tokio::time::interval_at(tokio::time::Instant::now() + sweep_every, sweep_every);
        self.metrics
            .search_catchup_running
            .set(i64::from(self.scan.is_some()));
        // The ticks come first: each is ready once per interval, so they never starve the live
        // batches, and a queue that never empties (sustained ingest) cannot hold back commits
        // (freshness) or the background work (one step per commit at least).
        loop {
            let background = self.scan.is_some() || !self.behind.is_empty();
            tokio::select! {
                biased;
                _ = commit.tick() => {
                    self.take_missed();
                    self.commit().await;
                    if self.scan.is_some() || !self.behind.is_empty() {
                        self.background_step().await;
                    }
                }
                _ = sweep.tick() => {
                    if self.scan.is_none() {
                        self.scan = Some(None);
                        self.metrics.search_catchup_running.set(1);
                    }
                }
                batch = self.rx.recv() => {
                    let Some(batch) = batch else { break };
                    // Take what else is queued too (up to a bound, so the ticks stay on time):
                    // one pass over the store and one trip to the index for all of it.
                    let mut batches = vec![batch];
                    while batches.len() < DRAIN {
                        match self.rx.try_recv() {
                            Ok(b) => batches.push(b),
                            Err(_) => break,
                        }
                    }
                    self.metrics.search_queue.sub(batches.len() as i64);
                    self.live(batches).await;
                }
                _ = std::future::ready(()), if background => self.background_step().await,
            }
        }
        self.commit().await;
    }

    fn take_missed(&mut self) {
        let missed: Vec<SpaceId> = self
            .missed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for space in missed {
            self.behind.push_back((space, Seq::MAX));
            self.metrics.search_catchup_behind.inc();
        }
    }

    async fn commit(&mut self) {
        if !self.applied {
            return;
        }
        let index = self.index.clone();
        let started = Instant::now();
        match tokio::task::spawn_blocking(move || index.commit()).await {
            Ok(Ok(_)) => {
                self.applied = false;
                self.metrics
                    .search_commit_duration
                    .observe(started.elapsed().as_secs_f64());
            }
            Ok(Err(e)) => {
                // The staged work and cursors are dropped (see `SearchIndex::commit`): a sweep
                // applies those events again.
                tracing::error!(error = %e, "search index commit failed; every space is compared with the index again (check the data dir's disk)");
                self.metrics.search_commit_failures.inc();
                self.applied = false;
                self.scan.get_or_insert(None);
            }
            // The runtime is shutting down: what was staged is applied again by the next start's
            // catch-up (the committed cursors did not move).
            Err(e) if e.is_cancelled() => {}
            Err(e) => tracing::error!(error = %e, "search index commit panicked"),
        }
    }

    /// One step of background work: one space caught up by a page, or one page of the walk.
    async fn background_step(&mut self) {
        if let Some((space, head)) = self.behind.pop_front() {
            match self.catch_up_page(space, head).await {
                Ok(true) => self.behind.push_front((space, head)),
                Ok(false) => self.metrics.search_catchup_behind.dec(),
                Err(e) => {
                    tracing::warn!(%space, error = %e, "search catch-up of a space failed; the next sweep retries");
                    self.metrics.search_catchup_behind.dec();
                }
            }
            return;
        }
        let Some(after) = self.scan else { return };
        match self.store.scan_spaces(after, SCAN_PAGE).await {
            Ok(page) => {
                self.metrics
                    .search_catchup_scanned
                    .inc_by(page.len() as u64);
                self.scan = if page.len() < SCAN_PAGE {
                    None
                } else {
                    page.last().map(|v| Some(v.space.space_id))
                };
                for v in page {
                    let id = v.space.space_id;
                    self.public
                        .insert(id, v.space.visibility == Visibility::Public);
                    if v.counters.head_seq > self.index.cursor(id) {
                        self.behind.push_back((id, v.counters.head_seq));
                        self.metrics.search_catchup_behind.inc();
                    }
                }
                if self.scan.is_none() {
                    self.metrics.search_catchup_running.set(0);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "search catch-up could not list spaces; retrying at the next sweep");
                self.scan = None;
                self.metrics.search_catchup_running.set(0);
            }
        }
    }

    /// Applies one page of the space's events after its cursor, up to `head`. `Ok(true)`: more
    /// to do.
    async fn catch_up_page(&mut self, space: SpaceId, head: Seq) -> Result<bool> {
        let cursor = self.index.cursor(space);
        if cursor >= head {
            return Ok(false);
        }
        let events = self.store.read_events(space, cursor, READ_PAGE).await?;
        let full = events.len() == READ_PAGE;
        let events: Vec<SpaceEvent> = events.into_iter().filter(|e| e.seq <= head).collect();
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(false);
        };
        self.apply(space, &events).await?;
        Ok(full && last < head)
    }

    /// Batches from the commit path or the bus, in the order they came: each space's events are
    /// merged (duplicates dropped, gaps filled from the store), then applied in one trip.
    async fn live(&mut self, batches: Vec<Batch>) {
        let mut order: Vec<SpaceId> = Vec::new();
        let mut by_space: HashMap<SpaceId, Vec<SpaceEvent>> = HashMap::new();
        for b in batches {
            by_space
                .entry(b.space_id)
                .or_insert_with(|| {
                    order.push(b.space_id);
                    Vec::new()
                })
                .extend(b.events);
        }
        let mut work = Vec::with_capacity(order.len());
        for space in order {
            let mut events = by_space.remove(&space).unwrap_or_default();
            // Stable: of two copies of one seq (the bus and the local tap), the first is kept.
            events.sort_by_key(|e| e.seq);
            events.dedup_by_key(|e| e.seq);
            match self.prepare(space, events).await {
                Ok(Some(w)) => work.push(w),
                Ok(None) => {}
                Err(e) => self.retry_later(space, &e),
            }
        }
        self.apply_all(work).await;
    }

    fn retry_later(&mut self, space: SpaceId, e: &EngineError) {
        tracing::warn!(%space, error = %e, "search indexing of a batch failed; its space is caught up later");
        self.behind.push_back((space, Seq::MAX));
        self.metrics.search_catchup_behind.inc();
    }

    /// The work of one space's live events (in seq order, each once): those after its cursor,
    /// every gap before one of them filled from the store first. `None`: nothing to apply.
    async fn prepare(&mut self, space: SpaceId, events: Vec<SpaceEvent>) -> Result<Option<Work>> {
        let mut cursor = self.index.cursor(space);
        let mut run: Vec<SpaceEvent> = Vec::new();
        for e in events {
            if e.seq <= cursor {
                continue;
            }
            // A gap (cursor, e.seq): read it from the store.
            while e.seq > cursor + 1 {
                let missing = self.store.read_events(space, cursor, READ_PAGE).await?;
                let missing: Vec<SpaceEvent> = missing
                    .into_iter()
                    .filter(|m| m.seq > cursor && m.seq < e.seq)
                    .collect();
                let Some(last) = missing.last().map(|m| m.seq) else {
                    break;
                };
                cursor = last;
                run.extend(missing);
            }
            cursor = e.seq;
            run.push(e);
        }
        self.work(space, &run).await
    }

    /// The index operations of `events` (consecutive, after the space's cursor).
    async fn work(&mut self, space: SpaceId, events: &[SpaceEvent]) -> Result<Option<Work>> {
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(None);
        };
        let Some(public) = self.visibility(space).await? else {
            return Ok(None);
        };
        let ops = ops_of(events, public);
        for op in &ops {
            let kind = match op {
                IndexOp::Insert(_) => "insert",
                IndexOp::Upsert(_) => "upsert",
                IndexOp::Remove { .. } => "remove",
                IndexOp::Visibility { .. } => "visibility",
            };
            self.metrics.search_ops.with_label_values(&[kind]).inc();
        }
        Ok(Some(Work {
            space,
            ops,
            through: last,
        }))
    }

    /// Stages `work` in the index, off the runtime's threads, in one trip; a space whose part
    /// fails is caught up later.
    async fn apply_all(&mut self, work: Vec<Work>) {
        if work.is_empty() {
            return;
        }
        let index = self.index.clone();
        let failed = tokio::task::spawn_blocking(move || {
            work.into_iter()
                .filter_map(|w| {
                    let space = w.space;
                    index
                        .apply(space, w.ops, w.through)
                        .err()
                        .map(|e| (space, e))
                })
                .collect::<Vec<_>>()
        })
        .await;
        self.applied = true;
        match failed {
            Ok(failed) => {
                for (space, e) in failed {
                    self.retry_later(space, &e);
                }
            }
            // Shutting down: the next start's catch-up applies it.
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                tracing::error!(error = %e, "search indexing panicked; every space is compared with the index again");
                self.scan.get_or_insert(None);
            }
        }
    }

    async fn visibility(&mut self, space: SpaceId) -> Result<Option<bool>> {
        if let Some(p) = self.public.get(&space) {
            return Ok(Some(*p));
        }
        let Some(view) = self.store.get_space(space).await? else {
            return Ok(None);
        };
        let public = view.space.visibility == Visibility::Public;
        self.public.insert(space, public);
        Ok(Some(public))
    }

    /// Applies events (consecutive, after the cursor) of one space.
    async fn apply(&mut self, space: SpaceId, events: &[SpaceEvent]) -> Result<()> {
        let Some(w) = self.work(space, events).await? else {
            return Ok(());
        };
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || index.apply(w.space, w.ops, w.through))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        self.applied = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use spacecast_observability::Metrics;

    use super::*;
    use crate::model::{PostingPermission, UserRef};
    use crate::search::tantivy::TantivyIndex;
    use crate::search::{Scope, SearchQuery};
    use crate::store::embedded::EmbeddedStore;
    use crate::{Engine, EngineConfig, NewSpace, SendMessage};

    fn ada() -> UserRef {
        UserRef {
            user_id: "ada".into(),
            username: "ada".into(),
            profile_picture: String::new(),
        }
    }

    /// An engine over a fresh embedded store, with one public space holding `texts`; returns
    /// the store, the space and its events.
    async fn space_with(
        dir: &std::path::Path,
        texts: &[&str],
    ) -> (Arc<dyn Store>, SpaceId, Vec<SpaceEvent>) {
        let store: Arc<dyn Store> = EmbeddedStore::open(dir, Metrics::new()).unwrap();
        let engine = Engine::start(EngineConfig::default(), store.clone(), Metrics::new())
            .await
            .unwrap();
        let view = engine
            .create_space(
                NewSpace {
                    title: "t".into(),
                    description: String::new(),
                    visibility: Visibility::Public,
                    tags: vec![],
                    posting_permission: PostingPermission::Everyone,
                },
                ada(),
            )
            .await
            .unwrap();
        let space = view.space.space_id;
        for t in texts {
            engine
                .space(space)
                .send(SendMessage {
                    sender: ada(),
                    content: Some((*t).into()),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let events = store.read_events(space, 0, 100).await.unwrap();
        (store, space, events)
    }

    fn config(queue: usize, at_start: bool) -> SearchConfig {
        SearchConfig {
            queue,
            commit_interval: Duration::from_millis(20),
            catch_up_at_start: at_start,
            ..SearchConfig::new(PathBuf::new())
        }
    }

    async fn until_found(index: &dyn SearchIndex, space: SpaceId, q: &str, n: usize) {
        let query = SearchQuery {
            text: q.into(),
            scope: Scope::Space(space),
            offset: 0,
            limit: 50,
        };
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if index.search(&query).unwrap().len() == n {
                return;
            }
            assert!(Instant::now() < until, "{q}: {n} hits never came");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_gap_is_filled_from_the_store_and_a_duplicate_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (store, space, events) =
            space_with(dir.path(), &["alpha one", "alpha two", "alpha three"]).await;
        assert_eq!(events.len(), 3);
        let index: Arc<dyn SearchIndex> = Arc::new(TantivyIndex::in_memory().unwrap());
        let metrics = Metrics::new();
        let indexer = Indexer::start(index.clone(), store, &config(16, false), metrics.clone());
        // Only the last event: the two before it are read from the store first.
        indexer.offer(space, &events[2..]);
        until_found(index.as_ref(), space, "alpha", 3).await;
        assert_eq!(index.cursor(space), 3);
        // An old batch again: skipped (no operation applied).
        let applied = metrics.search_ops.with_label_values(&["insert"]).get();
        indexer.offer(space, &events[..2]);
        indexer.offer(space, &events[2..]);
        // Wait until the queue is drained (the gauge is decremented as batches are taken).
        let until = Instant::now() + Duration::from_secs(20);
        while metrics.search_queue.get() > 0 {
            assert!(Instant::now() < until);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            metrics.search_ops.with_label_values(&["insert"]).get(),
            applied
        );
        assert_eq!(index.health().docs, 3);
    }

    /// What is queued is taken together: one space's batches are merged in seq order, a copy
    /// dropped and a gap between two of them filled from the store, and each event applied once.
    #[tokio::test]
    async fn queued_batches_are_merged_per_space_each_event_applied_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, space, events) =
            space_with(dir.path(), &["zeta one", "zeta two", "zeta three"]).await;
        let index: Arc<dyn SearchIndex> = Arc::new(TantivyIndex::in_memory().unwrap());
        let metrics = Metrics::new();
        let indexer = Indexer::start(index.clone(), store, &config(16, false), metrics.clone());
        // The task cannot run before this test awaits (current-thread runtime): all three are
        // queued when it first wakes. Out of order, one twice, the second event in none.
        indexer.offer(space, &events[2..]);
        indexer.offer(space, &events[..1]);
        indexer.offer(space, &events[..1]);
        assert_eq!(metrics.search_queue.get(), 3);
        until_found(index.as_ref(), space, "zeta", 3).await;
        assert_eq!(index.cursor(space), 3);
        assert_eq!(metrics.search_queue.get(), 0);
        assert_eq!(
            metrics.search_ops.with_label_values(&["insert"]).get(),
            3,
            "each message inserted once"
        );
        assert_eq!(index.health().docs, 3);
    }

    #[tokio::test]
    async fn a_batch_the_full_queue_drops_is_caught_up_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (store, space, events) = space_with(dir.path(), &["beta one", "beta two"]).await;
        let index: Arc<dyn SearchIndex> = Arc::new(TantivyIndex::in_memory().unwrap());
        let metrics = Metrics::new();
        // A queue of one, and the task cannot run before this test awaits (current-thread
        // runtime): the second offer finds the queue full.
        let indexer = Indexer::start(index.clone(), store, &config(1, false), metrics.clone());
        indexer.offer(space, &events[..1]);
        indexer.offer(space, &events[1..]);
        assert_eq!(metrics.search_batches_dropped.get(), 1);
        until_found(index.as_ref(), space, "beta", 2).await;
        assert_eq!(index.cursor(space), 2);
    }

    /// Under sustained ingest the queue never empties; the index is still committed every
    /// interval, so what was applied becomes searchable without waiting for a lull.
    #[tokio::test]
    async fn a_queue_that_never_empties_still_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (store, space, events) =
            space_with(dir.path(), &["eps one", "eps two", "eps three"]).await;
        let index: Arc<dyn SearchIndex> = Arc::new(TantivyIndex::in_memory().unwrap());
        let metrics = Metrics::new();
        let indexer = Indexer::start(
            index.clone(),
            store,
            &config(1 << 20, false),
            metrics.clone(),
        );
        indexer.offer(space, &events);
        let query = SearchQuery {
            text: "eps".into(),
            scope: Scope::Space(space),
            offset: 0,
            limit: 50,
        };
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            // Keep the queue from ever emptying: more already-applied batches (each skipped
            // at once) than the task can take before it yields.
            for _ in 0..1_000 {
                indexer.offer(space, &events[..1]);
            }
            assert!(metrics.search_queue.get() > 0, "the queue never empties");
            if index.search(&query).unwrap().len() == 3 {
                break;
            }
            assert!(
                Instant::now() < until,
                "nothing became searchable while the queue stayed full"
            );
            tokio::task::yield_now().await;
        }
    }

    /// A commit that fails (a full disk, an I/O error) drops what it held, cursors included;
    /// the walk it starts applies those events again from the store, so nothing is lost.
    #[tokio::test]
    async fn a_failed_commit_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, space, events) =
            space_with(dir.path(), &["delta one", "delta two", "delta three"]).await;
        let tantivy = Arc::new(TantivyIndex::in_memory().unwrap());
        tantivy.fail_next_commits(1);
        let index: Arc<dyn SearchIndex> = tantivy.clone();
        let metrics = Metrics::new();
        let indexer = Indexer::start(index.clone(), store, &config(16, false), metrics.clone());
        indexer.offer(space, &events);
        until_found(index.as_ref(), space, "delta", 3).await;
        assert_eq!(index.cursor(space), 3);
        assert_eq!(
            metrics.search_commit_failures.get(),
            1,
            "the first commit failed, and the hits came after it"
        );
    }

    #[tokio::test]
    async fn the_start_catches_every_space_up_and_reports_progress() {
        let dir = tempfile::tempdir().unwrap();
        let (store, space, _) = space_with(dir.path(), &["gamma one", "gamma two"]).await;
        let index: Arc<dyn SearchIndex> = Arc::new(TantivyIndex::in_memory().unwrap());
        let metrics = Metrics::new();
        let _indexer = Indexer::start(index.clone(), store, &config(16, true), metrics.clone());
        until_found(index.as_ref(), space, "gamma", 2).await;
        let until = Instant::now() + Duration::from_secs(20);
        while metrics.search_catchup_running.get() != 0 || metrics.search_catchup_behind.get() != 0
        {
            assert!(Instant::now() < until, "the catch-up never finished");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(metrics.search_catchup_scanned.get() >= 1);
    }
}
