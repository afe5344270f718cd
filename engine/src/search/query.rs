//! Queries: the index's hits, hydrated from the store and checked again (see the module doc of
//! [`crate::search`]: the store is the truth at query time).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::tantivy::TantivyIndex;
use super::{
    Highlight, Indexer, MAX_DEPTH, Scope, SearchConfig, SearchIndex, SearchQuery, body_text,
    check_query,
};
use crate::Engine;
use crate::error::{EngineError, Result};
use crate::model::{Message, SpaceId, Visibility};

/// A node's search index (its indexer runs on its own). Cheap to clone.
#[derive(Clone)]
pub struct Search {
    pub(crate) index: Arc<dyn SearchIndex>,
}

/// One result: the message as stored now, its score and its highlights.
#[derive(Clone, Debug)]
pub struct SearchResult {
    pub message: Message,
    pub score: f32,
    pub highlights: Vec<Highlight>,
}

/// A page of results.
#[derive(Clone, Debug)]
pub struct SearchPage {
    pub results: Vec<SearchResult>,
    /// The offset of the next page; `None`: no more (or the depth bound is reached).
    pub next: Option<usize>,
}

impl Engine {
    /// Opens the search index in `config.dir` and starts indexing: this node's commits from now
    /// on, other nodes' commits (in a cluster), and in the background every space behind the
    /// index (see [`crate::search`]). Call once, right after the engine started.
    ///
    /// # Errors
    /// `Internal` when the index cannot be opened; `BusUnavailable` when the cluster feed cannot
    /// be subscribed.
    pub async fn start_search(&self, config: SearchConfig) -> Result<()> {
        let dir = config.dir.clone();
        let index: Arc<dyn SearchIndex> = Arc::new(
            tokio::task::spawn_blocking(move || TantivyIndex::open(Path::new(&dir)))
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))??,
        );
        let indexer = Indexer::start(
            index.clone(),
            self.store.clone(),
            &config,
            self.metrics.clone(),
        );
        let feed = indexer.clone();
        self.fanout
            .set_commit_tap(Arc::new(move |space_id, events| {
                feed.offer(space_id, events)
            }));
        let serving = self.fanout.bus().watch_all(indexer.clone()).await?;
        // The cluster feed lives as long as the process (the engine has no stop for it).
        std::mem::forget(serving);
        let _ = self.search.set(Search { index });
        Ok(())
    }

    /// Whether search runs on this node.
    pub fn search_enabled(&self) -> bool {
        self.search.get().is_some()
    }

    /// Messages matching `q` (user text, see [`check_query`]), best first (relevance, then
    /// recency), from `offset`, at most `limit`: in one space (`Some(space)`, which the viewer
    /// must be able to read: else `SpaceNotFound`, as for every read) or in every space the
    /// viewer can read (`None`: public spaces and the viewer's spaces).
    ///
    /// Each hit is read from the store and answered only if the message exists, is not
    /// redacted, and its space is readable by the viewer now; a page may then hold fewer than
    /// `limit` results with a `next` to continue. `next` is `None` past [`MAX_DEPTH`].
    ///
    /// # Errors
    /// `Invalid("invalid_query")`; `Invalid("search_disabled")` when search is off on this
    /// node; `SpaceNotFound`; `StoreUnavailable`.
    pub async fn search_messages(
        &self,
        viewer: &str,
        space: Option<SpaceId>,
        q: &str,
        offset: usize,
        limit: usize,
    ) -> Result<SearchPage> {
        let started = Instant::now();
        let q = check_query(q)?.to_owned();
        let Some(search) = self.search.get() else {
            return Err(EngineError::Invalid(
                "search_disabled",
                "search is off on this server".into(),
            ));
        };
        let scope = match space {
            Some(id) => {
                self.reader(id).view(viewer).await?;
                Scope::Space(id)
            }
            None => Scope::Readable {
                member_of: self
                    .store
                    .spaces_of_user(viewer)
                    .await?
                    .into_iter()
                    .map(|(v, _)| v.space.space_id)
                    .collect(),
            },
        };
        let limit = limit.min(MAX_DEPTH.saturating_sub(offset));
        if limit == 0 {
            return Ok(SearchPage {
                results: Vec::new(),
                next: None,
            });
        }
        let members: Vec<SpaceId> = match &scope {
            Scope::Readable { member_of } => member_of.clone(),
            Scope::Space(_) => Vec::new(),
        };
        // One more than asked: whether a next page exists.
        let query = SearchQuery {
            text: q.clone(),
            scope: scope.clone(),
            offset,
            limit: limit + 1,
        };
        let index = search.index.clone();
        let mut hits = tokio::task::spawn_blocking(move || index.search(&query))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        let more = hits.len() > limit;
        hits.truncate(limit);

        // Readability of each hit's space now: the store's record and the viewer's
        // memberships (the scope's own space was checked above).
        let mut readable: HashMap<SpaceId, bool> = HashMap::new();
        if let Some(id) = space {
            readable.insert(id, true);
        }
        let mut results = Vec::with_capacity(hits.len());
        for hit in hits {
            let ok = match readable.get(&hit.space_id) {
                Some(ok) => *ok,
                None => {
                    let ok = match self.store.get_space(hit.space_id).await? {
                        None => false,
                        Some(v) => {
                            v.space.visibility == Visibility::Public
                                || members.contains(&hit.space_id)
                        }
                    };
                    readable.insert(hit.space_id, ok);
                    ok
                }
            };
            if !ok {
                continue;
            }
            let Some(message) = self.store.get_message(hit.space_id, hit.message_id).await? else {
                continue;
            };
            if message.redacted {
                continue;
            }
            let highlights = highlights(search.index.as_ref(), &q, &message);
            results.push(SearchResult {
                message,
                score: hit.score,
                highlights,
            });
        }
        let next = (more && offset + limit < MAX_DEPTH).then_some(offset + limit);
        self.metrics
            .search_query_duration
            .with_label_values(&[if space.is_some() { "space" } else { "all" }])
            .observe(started.elapsed().as_secs_f64());
        Ok(SearchPage { results, next })
    }
}

/// The highlights of a message as stored: its content, else its body's text.
fn highlights(index: &dyn SearchIndex, q: &str, m: &Message) -> Vec<Highlight> {
    if let Some(content) = &m.content
        && let Some(h) = index.highlight(q, "content", content)
    {
        return vec![h];
    }
    let body = body_text(m);
    index.highlight(q, "body", &body).into_iter().collect()
}
