//! The embedded [`SearchIndex`]: tantivy, in `<data-dir>/search/` (created if missing).
//!
//! # Schema
//! - `kind` (STRING): `m` for a message, `c` for a space's cursor document.
//! - `space_id`, `message_id`, `sender_id`, `parent_id` (STRING, STORED): exact ids; messages
//!   are replaced and removed by their `message_id` term, and a query's scope filters on
//!   `space_id`.
//! - `seq`, `created_at` (FAST, STORED): recency, the tie-break after relevance.
//! - `public` (u64 0/1, INDEXED, FAST, STORED): the scope "public spaces".
//! - `text` (TEXT, STORED): see "Analyzer".
//! - `cursor_of` (STRING, STORED) + `seq`: a space's cursor (the highest seq applied), one
//!   document per space, replaced on every commit that moves it, so the index content and the
//!   cursors are committed atomically (one tantivy commit).
//!
//! # Analyzer
//! tantivy's `default`: split on every character that is not alphanumeric (Unicode), drop tokens
//! longer than 40 bytes, lowercase. No stemming and no stop words: messages come in any language,
//! and a language-specific stemmer would mangle the others; a query word matches the same word in
//! any case, which is also what the highlight marks. Its limit: scripts written without spaces
//! (Chinese, Japanese) index each run of characters as one word.
//!
//! # Queries
//! The query is user text, never query syntax: it goes through the same analyzer, and every word
//! it has must be in a hit (no field names, operators or quotes, so nothing in it is an error).
//! Order: BM25 score, then `created_at`, then `seq`, newest first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tantivy::collector::sort_key::{SortBySimilarityScore, SortByStaticFastValue};
use tantivy::collector::{DocSetCollector, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery, TermSetQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, TantivyDocument, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexReader, IndexWriter, Order, ReloadPolicy, Term};
use uuid::Uuid;

use super::{FRAGMENT_CHARS, Highlight, Hit, IndexHealth, IndexOp, Scope, SearchDoc, SearchIndex};
use crate::error::{EngineError, Result};
use crate::model::{Seq, SpaceId, Timestamp};

/// The index writer's memory budget (bytes) before it flushes a segment.
const WRITER_MEMORY: usize = 50_000_000;

#[derive(Clone, Copy)]
struct Fields {
    kind: Field,
    space_id: Field,
    message_id: Field,
    sender_id: Field,
    parent_id: Field,
    seq: Field,
    created_at: Field,
    public: Field,
    text: Field,
    cursor_of: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let f = Fields {
        kind: b.add_text_field("kind", STRING),
        space_id: b.add_text_field("space_id", STRING | STORED),
        message_id: b.add_text_field("message_id", STRING | STORED),
        sender_id: b.add_text_field("sender_id", STRING | STORED),
        parent_id: b.add_text_field("parent_id", STRING | STORED),
        seq: b.add_u64_field("seq", FAST | STORED),
        created_at: b.add_i64_field("created_at", FAST | STORED),
        public: b.add_u64_field("public", INDEXED | FAST | STORED),
        text: b.add_text_field("text", TEXT | STORED),
        cursor_of: b.add_text_field("cursor_of", STRING | STORED),
    };
    (b.build(), f)
}

fn ierr(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("search index: {e}"))
}

struct Staged {
    writer: IndexWriter,
    /// Every space's cursor: committed, or moved by staged ops.
    cursors: HashMap<SpaceId, Seq>,
    /// Spaces whose cursor moved since the last commit.
    dirty: HashSet<SpaceId>,
    /// Whether anything is staged.
    pending: bool,
}

/// See the module doc.
pub struct TantivyIndex {
    index: Index,
    reader: IndexReader,
    f: Fields,
    staged: Mutex<Staged>,
    /// Commits still to fail on purpose (tests: see [`TantivyIndex::fail_next_commits`]).
    failing_commits: AtomicUsize,
}

impl TantivyIndex {
    /// Opens the index in `dir`, creating the directory and an empty index if missing. An index
    /// written with another schema is discarded (and rebuilt from the store by the indexer's
    /// catch-up).
    ///
    /// # Errors
    /// `Internal` when the directory cannot be created or the index opened.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(ierr)?;
        let (schema, f) = schema();
        let index = match Self::open_dir(dir, schema.clone()) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "search index unreadable; rebuilding it from the store");
                std::fs::remove_dir_all(dir).map_err(ierr)?;
                std::fs::create_dir_all(dir).map_err(ierr)?;
                Self::open_dir(dir, schema)?
            }
        };
        Self::with_index(index, f)
    }

    /// An index in memory (tests).
    ///
    /// # Errors
    /// `Internal`.
    pub fn in_memory() -> Result<Self> {
        let (schema, f) = schema();
        Self::with_index(Index::create_in_ram(schema), f)
    }

    fn open_dir(dir: &Path, schema: Schema) -> Result<Index> {
        let d = MmapDirectory::open(dir).map_err(ierr)?;
        let index = Index::open_or_create(d, schema.clone()).map_err(ierr)?;
        if index.schema() != schema {
            return Err(ierr("schema changed"));
        }
        Ok(index)
    }

    fn with_index(index: Index, f: Fields) -> Result<Self> {
        let writer: IndexWriter = index
            .writer_with_num_threads(1, WRITER_MEMORY)
            .map_err(ierr)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(ierr)?;
        let me = TantivyIndex {
            index,
            reader,
            f,
            staged: Mutex::new(Staged {
                writer,
                cursors: HashMap::new(),
                dirty: HashSet::new(),
                pending: false,
            }),
            failing_commits: AtomicUsize::new(0),
        };
        let cursors = me.committed_cursors()?;
        me.lock().cursors = cursors;
        Ok(me)
    }

    /// Makes the next `n` commits fail once their work is staged, where a full disk or an I/O
    /// error would fail them, so the recovery path runs for real (tests).
    #[cfg(any(test, feature = "testkit"))]
    pub fn fail_next_commits(&self, n: usize) {
        self.failing_commits.store(n, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Staged> {
        self.staged.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn committed_cursors(&self) -> Result<HashMap<SpaceId, Seq>> {
        let searcher = self.reader.searcher();
        let q = TermQuery::new(
            Term::from_field_text(self.f.kind, "c"),
            IndexRecordOption::Basic,
        );
        let docs = searcher.search(&q, &DocSetCollector).map_err(ierr)?;
        let mut out = HashMap::new();
        for addr in docs {
            let d: TantivyDocument = searcher.doc(addr).map_err(ierr)?;
            let space = str_of(&d, self.f.cursor_of).and_then(|s| Uuid::parse_str(s).ok());
            let seq = d.get_first(self.f.seq).and_then(|v| v.as_u64());
            if let (Some(space), Some(seq)) = (space, seq) {
                out.insert(space, seq);
            }
        }
        Ok(out)
    }

    fn document(&self, d: &SearchDoc) -> TantivyDocument {
        let f = &self.f;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.kind, "m");
        doc.add_text(f.space_id, d.space_id.to_string());
        doc.add_text(f.message_id, d.message_id.to_string());
        doc.add_text(f.sender_id, &d.sender_id);
        if let Some(p) = d.parent_id {
            doc.add_text(f.parent_id, p.to_string());
        }
        doc.add_u64(f.seq, d.seq);
        doc.add_i64(f.created_at, d.created_at.0);
        doc.add_u64(f.public, u64::from(d.public));
        doc.add_text(f.text, &d.text);
        doc
    }

    fn stored_doc(&self, d: &TantivyDocument, public: bool) -> Option<SearchDoc> {
        let f = &self.f;
        Some(SearchDoc {
            space_id: Uuid::parse_str(str_of(d, f.space_id)?).ok()?,
            message_id: Uuid::parse_str(str_of(d, f.message_id)?).ok()?,
            seq: d.get_first(f.seq)?.as_u64()?,
            sender_id: str_of(d, f.sender_id)?.to_owned(),
            text: str_of(d, f.text).unwrap_or_default().to_owned(),
            created_at: Timestamp(d.get_first(f.created_at)?.as_i64()?),
            parent_id: str_of(d, f.parent_id).and_then(|s| Uuid::parse_str(s).ok()),
            public,
        })
    }

    /// Every stored message doc of a space, as committed.
    fn space_docs(&self, space_id: SpaceId, public: bool) -> Result<Vec<SearchDoc>> {
        let searcher = self.reader.searcher();
        let q = TermQuery::new(
            Term::from_field_text(self.f.space_id, &space_id.to_string()),
            IndexRecordOption::Basic,
        );
        let docs = searcher.search(&q, &DocSetCollector).map_err(ierr)?;
        let mut out = Vec::with_capacity(docs.len());
        for addr in docs {
            let d: TantivyDocument = searcher.doc(addr).map_err(ierr)?;
            out.extend(self.stored_doc(&d, public));
        }
        Ok(out)
    }

    fn commit_locked(&self, st: &mut Staged) -> Result<bool> {
        if !st.pending && st.dirty.is_empty() {
            return Ok(false);
        }
        for space in std::mem::take(&mut st.dirty) {
            let seq = st.cursors.get(&space).copied().unwrap_or(0);
            let key = space.to_string();
            st.writer
                .delete_term(Term::from_field_text(self.f.cursor_of, &key));
            let mut doc = TantivyDocument::default();
            doc.add_text(self.f.kind, "c");
            doc.add_text(self.f.cursor_of, &key);
            doc.add_u64(self.f.seq, seq);
            st.writer.add_document(doc).map_err(ierr)?;
        }
        if self
            .failing_commits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(ierr("injected commit failure"));
        }
        st.writer.commit().map_err(ierr)?;
        st.pending = false;
        self.reader.reload().map_err(ierr)?;
        Ok(true)
    }

    fn analyzer(&self) -> Result<TextAnalyzer> {
        self.index.tokenizer_for_field(self.f.text).map_err(ierr)
    }

    /// The words of a user text, as the analyzer makes them, each once.
    fn words(&self, q: &str) -> Vec<String> {
        let Ok(mut a) = self.analyzer() else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        let mut stream = a.token_stream(q);
        while let Some(t) = stream.next() {
            if !out.contains(&t.text) {
                out.push(t.text.clone());
            }
        }
        out
    }

    fn text_query(&self, q: &str) -> Option<BooleanQuery> {
        let words = self.words(q);
        if words.is_empty() {
            return None;
        }
        Some(BooleanQuery::new(
            words
                .into_iter()
                .map(|w| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(
                        Term::from_field_text(self.f.text, &w),
                        IndexRecordOption::WithFreqs,
                    ));
                    (Occur::Must, q)
                })
                .collect(),
        ))
    }
}

fn str_of(d: &TantivyDocument, f: Field) -> Option<&str> {
    d.get_first(f).and_then(|v| v.as_str())
}

impl SearchIndex for TantivyIndex {
    fn apply(&self, space_id: SpaceId, ops: Vec<IndexOp>, through: Seq) -> Result<()> {
        let mut st = self.lock();
        for op in ops {
            match op {
                IndexOp::Insert(doc) => {
                    st.writer.add_document(self.document(&doc)).map_err(ierr)?;
                }
                IndexOp::Upsert(doc) => {
                    st.writer.delete_term(Term::from_field_text(
                        self.f.message_id,
                        &doc.message_id.to_string(),
                    ));
                    st.writer.add_document(self.document(&doc)).map_err(ierr)?;
                }
                IndexOp::Remove { message_id } => {
                    st.writer.delete_term(Term::from_field_text(
                        self.f.message_id,
                        &message_id.to_string(),
                    ));
                }
                IndexOp::Visibility { space_id, public } => {
                    // Rare (a settings change): commit what is staged, so the stored docs read
                    // back are current, then add each again with the new flag.
                    self.commit_locked(&mut st)?;
                    for doc in self.space_docs(space_id, public)? {
                        st.writer.delete_term(Term::from_field_text(
                            self.f.message_id,
                            &doc.message_id.to_string(),
                        ));
                        st.writer.add_document(self.document(&doc)).map_err(ierr)?;
                    }
                }
            }
            st.pending = true;
        }
        let c = st.cursors.entry(space_id).or_insert(0);
        if through > *c {
            *c = through;
            st.dirty.insert(space_id);
        }
        Ok(())
    }

    fn cursor(&self, space_id: SpaceId) -> Seq {
        self.lock().cursors.get(&space_id).copied().unwrap_or(0)
    }

    fn commit(&self) -> Result<bool> {
        let mut st = self.lock();
        let r = self.commit_locked(&mut st);
        if r.is_err() {
            // Nothing staged survives a failed commit: forget the staged cursors too, so the
            // indexer applies those events again.
            let _ = st.writer.rollback();
            st.pending = false;
            st.dirty.clear();
            drop(st);
            let cursors = self.committed_cursors()?;
            self.lock().cursors = cursors;
        }
        r
    }

    fn search(&self, query: &super::SearchQuery) -> Result<Vec<Hit>> {
        let Some(text) = self.text_query(&query.text) else {
            return Ok(Vec::new());
        };
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let f = &self.f;
        let scope: Box<dyn Query> = match &query.scope {
            Scope::Space(id) => Box::new(TermQuery::new(
                Term::from_field_text(f.space_id, &id.to_string()),
                IndexRecordOption::Basic,
            )),
            Scope::Readable { member_of } => {
                let public: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_u64(f.public, 1),
                    IndexRecordOption::Basic,
                ));
                let mut either = vec![(Occur::Should, public)];
                if !member_of.is_empty() {
                    let member: Box<dyn Query> = Box::new(TermSetQuery::new(
                        member_of
                            .iter()
                            .map(|s| Term::from_field_text(f.space_id, &s.to_string())),
                    ));
                    either.push((Occur::Should, member));
                }
                Box::new(BooleanQuery::new(either))
            }
        };
        // The scope filters and never scores: relevance is the text's alone.
        let full = BooleanQuery::new(vec![
            (Occur::Must, Box::new(text) as Box<dyn Query>),
            (Occur::Must, Box::new(ConstScoreQuery::new(scope, 0.0))),
        ]);
        let collector = TopDocs::with_limit(query.limit)
            .and_offset(query.offset)
            .order_by((
                SortBySimilarityScore,
                (
                    (
                        SortByStaticFastValue::<i64>::for_field("created_at"),
                        Order::Desc,
                    ),
                    (SortByStaticFastValue::<u64>::for_field("seq"), Order::Desc),
                ),
            ));
        let searcher = self.reader.searcher();
        let top = searcher.search(&full, &collector).map_err(ierr)?;
        let mut hits = Vec::with_capacity(top.len());
        for ((score, _), addr) in top {
            let d: TantivyDocument = searcher.doc(addr).map_err(ierr)?;
            let (Some(space_id), Some(message_id), Some(seq)) = (
                str_of(&d, f.space_id).and_then(|s| Uuid::parse_str(s).ok()),
                str_of(&d, f.message_id).and_then(|s| Uuid::parse_str(s).ok()),
                d.get_first(f.seq).and_then(|v| v.as_u64()),
            ) else {
                continue;
            };
            hits.push(Hit {
                space_id,
                message_id,
                seq,
                score,
            });
        }
        Ok(hits)
    }

    fn highlight(&self, q: &str, field: &str, text: &str) -> Option<Highlight> {
        let analyzer = self.analyzer().ok()?;
        // Every query word weighs the same: the fragment is the densest window of them.
        let terms: BTreeMap<String, f32> = self.words(q).into_iter().map(|w| (w, 1.0)).collect();
        if terms.is_empty() {
            return None;
        }
        let mut g = SnippetGenerator::new(terms, analyzer, self.f.text, FRAGMENT_CHARS);
        g.set_max_num_chars(FRAGMENT_CHARS);
        let s = g.snippet(text);
        if s.highlighted().is_empty() {
            return None;
        }
        let fragment = s.fragment();
        let ranges = s
            .highlighted()
            .iter()
            .map(|r| {
                [
                    fragment[..r.start].chars().count(),
                    fragment[..r.end].chars().count(),
                ]
            })
            .collect();
        Some(Highlight {
            field: field.to_owned(),
            fragment: fragment.to_owned(),
            ranges,
        })
    }

    fn health(&self) -> IndexHealth {
        let searcher = self.reader.searcher();
        let cursors = self.lock().cursors.len() as u64;
        IndexHealth {
            docs: searcher.num_docs().saturating_sub(cursors),
            spaces: cursors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::SearchQuery;

    fn doc(space: SpaceId, seq: Seq, text: &str, public: bool) -> SearchDoc {
        SearchDoc {
            space_id: space,
            message_id: Uuid::now_v7(),
            seq,
            sender_id: "alice".into(),
            text: text.into(),
            created_at: Timestamp(1_000 + seq as i64),
            parent_id: None,
            public,
        }
    }

    fn q(text: &str, scope: Scope) -> SearchQuery {
        SearchQuery {
            text: text.into(),
            scope,
            offset: 0,
            limit: 50,
        }
    }

    fn ids(hits: &[Hit]) -> Vec<Uuid> {
        hits.iter().map(|h| h.message_id).collect()
    }

    #[test]
    fn upsert_replaces_and_remove_deletes() {
        let ix = TantivyIndex::in_memory().unwrap();
        let s = Uuid::now_v7();
        let mut a = doc(s, 1, "hello brave world", true);
        ix.apply(s, vec![IndexOp::Upsert(a.clone())], 1).unwrap();
        // Staged only: not visible before the commit.
        assert!(ix.search(&q("brave", Scope::Space(s))).unwrap().is_empty());
        assert!(ix.commit().unwrap());
        assert_eq!(
            ids(&ix.search(&q("BRAVE", Scope::Space(s))).unwrap()),
            [a.message_id]
        );
        a.text = "hello new world".into();
        ix.apply(s, vec![IndexOp::Upsert(a.clone())], 2).unwrap();
        ix.commit().unwrap();
        assert!(ix.search(&q("brave", Scope::Space(s))).unwrap().is_empty());
        assert_eq!(ix.search(&q("new", Scope::Space(s))).unwrap().len(), 1);
        assert_eq!(ix.health().docs, 1, "an upsert replaces, never duplicates");
        ix.apply(
            s,
            vec![IndexOp::Remove {
                message_id: a.message_id,
            }],
            3,
        )
        .unwrap();
        ix.commit().unwrap();
        assert!(ix.search(&q("hello", Scope::Space(s))).unwrap().is_empty());
        assert_eq!(ix.cursor(s), 3);
    }

    #[test]
    fn scopes_filter_spaces_and_visibility_flips_them() {
        let ix = TantivyIndex::in_memory().unwrap();
        let (public, private, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let p = doc(public, 1, "shared word", true);
        let m = doc(private, 1, "shared word", false);
        let o = doc(other, 1, "shared word", false);
        for d in [&p, &m, &o] {
            ix.apply(d.space_id, vec![IndexOp::Upsert(d.clone())], 1)
                .unwrap();
        }
        ix.commit().unwrap();
        let stranger = ix
            .search(&q("shared", Scope::Readable { member_of: vec![] }))
            .unwrap();
        assert_eq!(ids(&stranger), [p.message_id]);
        let mut member = ids(&ix
            .search(&q(
                "shared",
                Scope::Readable {
                    member_of: vec![private],
                },
            ))
            .unwrap());
        member.sort();
        let mut want = vec![p.message_id, m.message_id];
        want.sort();
        assert_eq!(member, want);
        assert_eq!(
            ids(&ix.search(&q("shared", Scope::Space(other))).unwrap()),
            [o.message_id]
        );
        // The public space becomes private: it leaves a stranger's results.
        ix.apply(
            public,
            vec![IndexOp::Visibility {
                space_id: public,
                public: false,
            }],
            2,
        )
        .unwrap();
        ix.commit().unwrap();
        assert!(
            ix.search(&q("shared", Scope::Readable { member_of: vec![] }))
                .unwrap()
                .is_empty()
        );
        assert_eq!(ix.health().docs, 3);
        // And back.
        ix.apply(
            public,
            vec![IndexOp::Visibility {
                space_id: public,
                public: true,
            }],
            3,
        )
        .unwrap();
        ix.commit().unwrap();
        assert_eq!(
            ids(&ix
                .search(&q("shared", Scope::Readable { member_of: vec![] }))
                .unwrap()),
            [p.message_id]
        );
    }

    #[test]
    fn cursors_and_content_survive_a_reopen_and_staged_work_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let (s, t) = (Uuid::now_v7(), Uuid::now_v7());
        let d = doc(s, 7, "durable text", true);
        {
            let ix = TantivyIndex::open(dir.path()).unwrap();
            ix.apply(s, vec![IndexOp::Upsert(d.clone())], 7).unwrap();
            ix.apply(t, vec![], 3).unwrap();
            ix.commit().unwrap();
            ix.apply(
                s,
                vec![IndexOp::Upsert(doc(s, 8, "never committed", true))],
                8,
            )
            .unwrap();
            assert_eq!(ix.cursor(s), 8);
        }
        let ix = TantivyIndex::open(dir.path()).unwrap();
        assert_eq!((ix.cursor(s), ix.cursor(t)), (7, 3));
        assert_eq!(
            ids(&ix.search(&q("durable", Scope::Space(s))).unwrap()),
            [d.message_id]
        );
        assert!(
            ix.search(&q("committed", Scope::Space(s)))
                .unwrap()
                .is_empty()
        );
        assert_eq!(ix.health(), IndexHealth { docs: 1, spaces: 2 });
    }

    #[test]
    fn a_deleted_or_corrupt_index_directory_opens_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("search");
        let s = Uuid::now_v7();
        {
            let ix = TantivyIndex::open(&path).unwrap();
            ix.apply(s, vec![IndexOp::Upsert(doc(s, 1, "x", true))], 1)
                .unwrap();
            ix.commit().unwrap();
        }
        std::fs::write(path.join("meta.json"), b"{not json").unwrap();
        let ix = TantivyIndex::open(&path).unwrap();
        assert_eq!(ix.cursor(s), 0);
        drop(ix);
        std::fs::remove_dir_all(&path).unwrap();
        let ix = TantivyIndex::open(&path).unwrap();
        assert_eq!((ix.cursor(s), ix.health().docs), (0, 0));
    }

    #[test]
    fn relevance_first_then_recency() {
        let ix = TantivyIndex::in_memory().unwrap();
        let s = Uuid::now_v7();
        let old_dense = doc(s, 1, "rust rust rust", true);
        let old = doc(s, 2, "rust and some other words here", true);
        let new = doc(s, 3, "rust and some other words here", true);
        let newest_other = doc(s, 4, "nothing relevant", true);
        for d in [&old_dense, &old, &new, &newest_other] {
            ix.apply(s, vec![IndexOp::Upsert(d.clone())], d.seq)
                .unwrap();
        }
        ix.commit().unwrap();
        let hits = ix.search(&q("rust", Scope::Space(s))).unwrap();
        assert_eq!(
            ids(&hits),
            [old_dense.message_id, new.message_id, old.message_id]
        );
        assert!(hits[0].score > hits[1].score);
        assert_eq!(hits[1].score, hits[2].score);
        // Pagination is an offset into that order.
        let mut page = q("rust", Scope::Space(s));
        page.offset = 1;
        page.limit = 1;
        assert_eq!(ids(&ix.search(&page).unwrap()), [new.message_id]);
        // Every word must be present.
        assert_eq!(
            ids(&ix.search(&q("rust other", Scope::Space(s))).unwrap()),
            [new.message_id, old.message_id]
        );
    }

    #[test]
    fn query_text_is_never_syntax() {
        let ix = TantivyIndex::in_memory().unwrap();
        let s = Uuid::now_v7();
        let d = doc(s, 1, "the text: AND \"quoted\" stuff OR (grouped)", true);
        ix.apply(s, vec![IndexOp::Upsert(d.clone())], 1).unwrap();
        ix.commit().unwrap();
        for text in [
            "\"quoted",
            "text:",
            "AND",
            "(grouped",
            "space_id:x quoted",
            "+stuff -text",
        ] {
            let hits = ix.search(&q(text, Scope::Space(s))).unwrap();
            if text == "space_id:x quoted" {
                assert!(hits.is_empty(), "{text}: `x` is a word that is not there");
            } else {
                assert_eq!(ids(&hits), [d.message_id], "{text}");
            }
        }
        for nothing in ["", "   ", "\"\"", "!!! ---", "*"] {
            assert!(
                ix.search(&q(nothing, Scope::Space(s))).unwrap().is_empty(),
                "{nothing}"
            );
        }
    }

    #[test]
    fn highlight_ranges_are_char_offsets_in_multibyte_text() {
        let ix = TantivyIndex::in_memory().unwrap();
        let text = "Ça va? Déjà vu — naïve café ☕ CAFÉ";
        let h = ix.highlight("café", "content", text).unwrap();
        assert_eq!(h.field, "content");
        let chars: Vec<char> = h.fragment.chars().collect();
        let marked: Vec<String> = h
            .ranges
            .iter()
            .map(|[a, b]| chars[*a..*b].iter().collect())
            .collect();
        assert_eq!(marked, ["café", "CAFÉ"]);
        assert!(!h.fragment.contains('<'), "no HTML");
        assert_eq!(ix.highlight("absent", "content", text), None);
        // A long text gives a bounded fragment around the word.
        let long = format!("{} needle {}", "filler ".repeat(100), "tail ".repeat(100));
        let h = ix.highlight("needle", "content", &long).unwrap();
        assert!(h.fragment.chars().count() <= FRAGMENT_CHARS);
        let chars: Vec<char> = h.fragment.chars().collect();
        let [a, b] = h.ranges[0];
        assert_eq!(chars[a..b].iter().collect::<String>(), "needle");
    }
}
