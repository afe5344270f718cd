//! Message search (issue 12): a full-text index of every space's messages, kept by this node from
//! the durable event logs, and queried with the store as the truth.
//!
//! # Pieces
//! - [`SearchIndex`]: the index seam (apply index operations, search, highlight, health);
//!   [`tantivy::TantivyIndex`] is the embedded implementation (tantivy, in `<data-dir>/search/`).
//! - [`Indexer`] (`indexer.rs`): one task per node turning batches of durable committed events
//!   into [`IndexOp`]s, in seq order per space, with gap repair from the store, catch-up at start
//!   and a periodic sweep.
//! - [`crate::Engine::search_messages`] (`query.rs`): a query, then every hit hydrated from the
//!   store and re-checked, then highlighted from the stored text.
//!
//! # Guarantees
//! - **The store is the truth at query time.** A hit is answered only if the message still
//!   exists, is not redacted, and its space is readable by the caller *now* (public, or the
//!   caller is a member: the rules of [`crate::SpaceReader`]). Whatever the index holds (a stale
//!   copy, a message deleted since, a space made private), a private space never leaks and a
//!   removed message never comes back. The highlight is computed from the stored text, so an edit
//!   not indexed yet never shows the old text (it may still be found by its old words until the
//!   edit is indexed).
//! - **Freshness.** The indexer commits the index about every [`COMMIT_INTERVAL`] while it has
//!   work, and the reader reloads on every commit: a message acknowledged on this node is
//!   searchable within about that interval plus the queue's wait (the target is 2 s).
//! - **Completeness.** The index stores, per space, the highest seq it applied (its *cursor*),
//!   committed atomically with the index content. Events are applied in seq order; a batch
//!   starting past `cursor + 1` is completed from the store first; a batch at or below the
//!   cursor is skipped. At start every space's head is compared with its cursor and the missing
//!   events replayed from the store (in the background: results are partial until it finishes,
//!   see the `spacecast_search_catchup_*` gauges), and a sweep every [`SWEEP_INTERVAL`] does it
//!   again for batches lost on the way (a full queue, a lost bus message) in spaces with no later
//!   event. So every acknowledged message becomes searchable, also after a crash (`kill -9`) or
//!   with the index directory deleted (it is rebuilt from the store).
//! - Spacecast has no archived or locked spaces; every space is indexed.
//!
//! # Cluster
//! Every node keeps a full index of its own, fed by its own commits and by every other node's
//! commits on the bus ([`crate::bus::Bus::watch_all`]), with the same gap repair. Queries are
//! local, never fanned out, and no answer depends on which node owns a space. The cost: every
//! node indexes every message (see BENCHMARKS.md "Search").

pub mod indexer;
pub mod query;
pub mod tantivy;

use std::time::Duration;

use serde_json::Value;

use crate::error::Result;
use crate::event::{EventKind, SpaceEvent};
use crate::model::{Message, MessageId, Seq, SpaceId, Timestamp};

pub use indexer::{Indexer, SearchConfig};
pub use query::{Search, SearchPage, SearchResult};

/// Longest query, in characters (longer: `invalid_query`).
pub const MAX_QUERY_CHARS: usize = 256;
/// Deepest result a cursor may reach: `offset + limit` beyond it is refused (`invalid_cursor`).
pub const MAX_DEPTH: usize = 1000;
/// Results per page when the caller names no limit.
pub const DEFAULT_LIMIT: usize = 20;
/// Most results per page.
pub const MAX_LIMIT: usize = 50;
/// Most characters of a message's `body` string values that are indexed (after its content).
pub const MAX_BODY_TEXT_CHARS: usize = 4096;
/// How often the indexer commits the index while it has work.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// How often every space's head is compared with the index again (the sweep).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(600);
/// Longest highlighted fragment, in characters.
pub const FRAGMENT_CHARS: usize = 150;

/// One indexed message.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchDoc {
    pub space_id: SpaceId,
    pub message_id: MessageId,
    pub seq: Seq,
    pub sender_id: String,
    /// What is searched: the content, then the string values of `body` (see [`text_of`]).
    pub text: String,
    pub created_at: Timestamp,
    pub parent_id: Option<MessageId>,
    /// Whether the space is public (a hint for the query's scope; the store decides).
    pub public: bool,
}

/// A change to the index.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexOp {
    /// Adds a new message (its creation). The index cannot hold it yet: events are applied once,
    /// in seq order, only above the space's committed cursor, so no earlier copy is looked for
    /// (a delete per message would cost every commit a lookup in every segment).
    Insert(SearchDoc),
    /// Adds the message, or replaces its earlier version.
    Upsert(SearchDoc),
    /// Removes the message (redacted or deleted); unknown ids are ignored.
    Remove { message_id: MessageId },
    /// The space's visibility changed: its stored docs are added again with the new flag.
    Visibility { space_id: SpaceId, public: bool },
}

/// Which messages a query looks at.
#[derive(Clone, Debug, PartialEq)]
pub enum Scope {
    /// One space (the caller's read access was checked).
    Space(SpaceId),
    /// Every space the caller can read: public spaces and `member_of`.
    Readable { member_of: Vec<SpaceId> },
}

/// A query of the index.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchQuery {
    /// User text (not query syntax): its words, each of which a hit contains.
    pub text: String,
    pub scope: Scope,
    pub offset: usize,
    pub limit: usize,
}

/// One hit of the index, best first: BM25 relevance, then recency.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub space_id: SpaceId,
    pub message_id: MessageId,
    pub seq: Seq,
    pub score: f32,
}

/// A highlighted fragment: `ranges` are `[start, end)` char offsets into `fragment`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Highlight {
    /// `content` (or `body` when only the body's text matched).
    pub field: String,
    /// Plain text, no HTML: clients render the ranges.
    pub fragment: String,
    /// `[start, end)` pairs, char (Unicode scalar) offsets into `fragment`, ascending.
    pub ranges: Vec<[usize; 2]>,
}

/// What an index says about itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IndexHealth {
    /// Indexed messages (committed).
    pub docs: u64,
    /// Spaces with a cursor.
    pub spaces: u64,
}

/// The index seam. Calls block (disk I/O): call them off the async runtime's threads.
pub trait SearchIndex: Send + Sync + 'static {
    /// Stages `ops` of one space and moves its cursor to `through` (the seq of the last event
    /// they came from). Visible to queries and durable only after [`SearchIndex::commit`], which
    /// makes content and cursors durable together.
    fn apply(&self, space_id: SpaceId, ops: Vec<IndexOp>, through: Seq) -> Result<()>;

    /// The highest seq applied for the space (staged or committed; 0: none).
    fn cursor(&self, space_id: SpaceId) -> Seq;

    /// Makes everything staged durable and visible, atomically. `Ok(false)`: nothing was staged.
    fn commit(&self) -> Result<bool>;

    /// Hits for `query`, best first. A text without any word finds nothing.
    fn search(&self, query: &SearchQuery) -> Result<Vec<Hit>>;

    /// The highlight of `text` for the query text `q`: `None` when no word of `q` is in it.
    fn highlight(&self, q: &str, field: &str, text: &str) -> Option<Highlight>;

    fn health(&self) -> IndexHealth;
}

/// The searched text of a message: its content, then the string values of its `body` (depth
/// first, in the object's order), those at most [`MAX_BODY_TEXT_CHARS`] characters together.
pub fn text_of(m: &Message) -> String {
    let mut text = m.content.clone().unwrap_or_default();
    let body = body_text(m);
    if !body.is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&body);
    }
    text
}

/// The string values of a message's `body`, bounded (see [`text_of`]).
pub fn body_text(m: &Message) -> String {
    let mut out = String::new();
    let mut budget = MAX_BODY_TEXT_CHARS;
    if let Some(body) = &m.body {
        for v in body.values() {
            collect_strings(v, &mut out, &mut budget);
        }
    }
    out
}

fn collect_strings(v: &Value, out: &mut String, budget: &mut usize) {
    if *budget == 0 {
        return;
    }
    match v {
        Value::String(s) => {
            if !out.is_empty() {
                out.push(' ');
            }
            let taken: String = s.chars().take(*budget).collect();
            *budget -= taken.chars().count();
            out.push_str(&taken);
        }
        Value::Array(a) => a.iter().for_each(|v| collect_strings(v, out, budget)),
        Value::Object(o) => o.values().for_each(|v| collect_strings(v, out, budget)),
        _ => {}
    }
}

/// The document of a message as it is now (`None`: nothing to index, a redacted message).
pub fn doc_of(m: &Message, public: bool) -> Option<SearchDoc> {
    if m.redacted {
        return None;
    }
    Some(SearchDoc {
        space_id: m.space_id,
        message_id: m.message_id,
        seq: m.seq,
        sender_id: m.sender_id.clone(),
        text: text_of(m),
        created_at: m.created_at,
        parent_id: m.parent_id,
        public,
    })
}

/// The index operations of a space's events (`public`: the space's visibility). Events that do
/// not change what is searchable (reactions, members, settings without a visibility change)
/// give none: they only move the cursor. No event changes a space's visibility today (a space's
/// visibility is fixed at creation), so [`IndexOp::Visibility`] is never produced from events;
/// the index supports it for when one does.
pub fn ops_of(events: &[SpaceEvent], public: bool) -> Vec<IndexOp> {
    let mut ops = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::MessageCreated(m) => {
                if let Some(doc) = doc_of(m, public) {
                    ops.push(IndexOp::Insert(doc));
                }
            }
            EventKind::MessageEdited(m) => match doc_of(m, public) {
                Some(doc) => ops.push(IndexOp::Upsert(doc)),
                None => ops.push(IndexOp::Remove {
                    message_id: m.message_id,
                }),
            },
            EventKind::MessageRedacted(m) => ops.push(IndexOp::Remove {
                message_id: m.message_id,
            }),
            EventKind::MessageDeleted(d) => ops.push(IndexOp::Remove {
                message_id: d.message_id,
            }),
            EventKind::ReactionChanged(_)
            | EventKind::MemberUpdated(_)
            | EventKind::MemberRemoved(_)
            | EventKind::SpaceUpdated(_) => {}
        }
    }
    ops
}

/// Validates a query text: 1..=[`MAX_QUERY_CHARS`] characters once trimmed.
///
/// # Errors
/// `Invalid("invalid_query", …)`.
pub fn check_query(q: &str) -> Result<&str> {
    let q = q.trim();
    let n = q.chars().count();
    if n == 0 || n > MAX_QUERY_CHARS {
        return Err(crate::EngineError::Invalid(
            "invalid_query",
            format!("q must have 1 to {MAX_QUERY_CHARS} characters"),
        ));
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::MessageDeleted;

    fn msg(content: Option<&str>, body: serde_json::Value) -> Message {
        Message {
            message_id: uuid::Uuid::now_v7(),
            space_id: uuid::Uuid::now_v7(),
            seq: 1,
            content: content.map(str::to_owned),
            body: body.as_object().cloned(),
            ..Default::default()
        }
    }

    #[test]
    fn the_text_is_the_content_then_the_bounded_strings_of_the_body() {
        let m = msg(
            Some("hello"),
            serde_json::json!({"a": "one", "n": 5, "list": ["two", {"deep": "three"}], "b": true}),
        );
        assert_eq!(text_of(&m), "hello\none two three");
        let long = "x".repeat(MAX_BODY_TEXT_CHARS + 10);
        let m = msg(None, serde_json::json!({"a": long, "b": "never"}));
        assert_eq!(text_of(&m).chars().count(), MAX_BODY_TEXT_CHARS);
        assert!(!text_of(&m).contains("never"));
    }

    #[test]
    fn events_become_upserts_and_removes_and_the_rest_only_moves_the_cursor() {
        let m = msg(Some("hi"), serde_json::Value::Null);
        let mut redacted = m.clone();
        redacted.redacted = true;
        let ev = |seq, kind| SpaceEvent {
            space_id: m.space_id,
            seq,
            at: Timestamp(0),
            kind,
        };
        let ops = ops_of(
            &[
                ev(1, EventKind::MessageCreated(m.clone())),
                ev(2, EventKind::MessageEdited(m.clone())),
                ev(3, EventKind::MessageRedacted(redacted)),
                ev(
                    4,
                    EventKind::MessageDeleted(MessageDeleted {
                        message_id: m.message_id,
                        deleted_by: "x".into(),
                        parent_id: None,
                    }),
                ),
                ev(
                    5,
                    EventKind::SpaceUpdated(crate::event::SpaceUpdated {
                        posting_permission: Default::default(),
                    }),
                ),
            ],
            false,
        );
        let doc = doc_of(&m, false).unwrap();
        let remove = IndexOp::Remove {
            message_id: m.message_id,
        };
        assert_eq!(
            ops,
            [
                IndexOp::Insert(doc.clone()),
                IndexOp::Upsert(doc),
                remove.clone(),
                remove
            ]
        );
    }

    #[test]
    fn queries_are_one_to_256_characters_once_trimmed() {
        assert_eq!(check_query("  a b ").unwrap(), "a b");
        assert!(check_query(" \t").is_err());
        assert!(check_query(&"é".repeat(MAX_QUERY_CHARS)).is_ok());
        let e = check_query(&"é".repeat(MAX_QUERY_CHARS + 1)).unwrap_err();
        assert_eq!(e.code(), "invalid_query");
    }
}
