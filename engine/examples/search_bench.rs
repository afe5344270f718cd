//! Search index micro-benchmark (issue 12): indexes N synthetic messages into the embedded
//! tantivy index (`engine/src/search/tantivy.rs`) in batches the size of a group commit,
//! committing every 500 ms of work as the indexer does, then times queries.
//!
//! `cargo run --release -p spacecast-engine --example search_bench -- 1000000`
//!
//! It measures the index alone (no HTTP, no store hydration): indexing throughput (messages/s
//! on one core) and query latency p50/p99 over the whole index, for a selective word, a common
//! word, two words, and the "readable by this user" scope.

use std::sync::Arc;
use std::time::{Duration, Instant};

use spacecast_engine::model::Timestamp;
use spacecast_engine::search::tantivy::TantivyIndex;
use spacecast_engine::search::{IndexOp, Scope, SearchDoc, SearchIndex, SearchQuery};
use uuid::Uuid;

const WORDS: &[&str] = &[
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "rust",
    "message",
    "space",
    "search",
    "index",
    "cluster",
    "node",
    "owner",
    "commit",
    "event",
    "stream",
    "socket",
    "latency",
    "throughput",
    "token",
    "session",
    "reply",
    "thread",
    "media",
    "image",
    "video",
    "audio",
    "hello",
    "world",
    "today",
    "tomorrow",
    "meeting",
    "release",
    "deploy",
    "build",
    "test",
    "review",
];

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let spaces: Vec<Uuid> = (0..1000).map(|_| Uuid::now_v7()).collect();
    let dir = tempfile::tempdir().unwrap();
    let index: Arc<dyn SearchIndex> = Arc::new(TantivyIndex::open(dir.path()).unwrap());
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut seqs = vec![0u64; spaces.len()];
    let started = Instant::now();
    let mut last_commit = Instant::now();
    let mut commit_time = Duration::ZERO;
    let batch = 64;
    let mut done = 0;
    while done < n {
        let s = (next() % spaces.len() as u64) as usize;
        let mut ops = Vec::with_capacity(batch);
        for _ in 0..batch.min(n - done) {
            seqs[s] += 1;
            let len = 5 + (next() % 20) as usize;
            let text: Vec<&str> = (0..len)
                .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
                .collect();
            let mut text = text.join(" ");
            // One selective word in about 1 message of 10,000.
            if next().is_multiple_of(10_000) {
                text.push_str(" zanzibar");
            }
            ops.push(IndexOp::Upsert(SearchDoc {
                space_id: spaces[s],
                message_id: Uuid::now_v7(),
                seq: seqs[s],
                sender_id: format!("user-{}", next() % 5000),
                text,
                created_at: Timestamp(1_700_000_000_000 + done as i64),
                parent_id: None,
                public: !s.is_multiple_of(10),
            }));
            done += 1;
        }
        index.apply(spaces[s], ops, seqs[s]).unwrap();
        if last_commit.elapsed() >= Duration::from_millis(500) {
            let t = Instant::now();
            index.commit().unwrap();
            commit_time += t.elapsed();
            last_commit = Instant::now();
        }
    }
    let t = Instant::now();
    index.commit().unwrap();
    commit_time += t.elapsed();
    let elapsed = started.elapsed();
    println!(
        "indexed {n} messages in {:.1} s: {:.0} messages/s (commits: {:.1} s of it); index {} docs",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        commit_time.as_secs_f64(),
        index.health().docs
    );
    let member_of: Vec<Uuid> = spaces.iter().step_by(10).take(50).copied().collect();
    for (label, text, scope) in [
        (
            "selective word, one space",
            "zanzibar",
            Scope::Space(spaces[1]),
        ),
        (
            "selective word, readable",
            "zanzibar",
            Scope::Readable {
                member_of: member_of.clone(),
            },
        ),
        ("common word, one space", "rust", Scope::Space(spaces[1])),
        (
            "common word, readable",
            "rust",
            Scope::Readable {
                member_of: member_of.clone(),
            },
        ),
        (
            "two words, readable",
            "quick fox",
            Scope::Readable {
                member_of: member_of.clone(),
            },
        ),
    ] {
        let mut times = Vec::new();
        for i in 0..200 {
            let q = SearchQuery {
                text: text.into(),
                scope: scope.clone(),
                offset: (i % 5) * 20,
                limit: 21,
            };
            let t = Instant::now();
            let hits = index.search(&q).unwrap();
            times.push(t.elapsed());
            std::hint::black_box(hits);
        }
        times.sort();
        let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        println!(
            "{label:<28} p50 {:>8.2} ms  p99 {:>8.2} ms",
            p(0.50).as_secs_f64() * 1e3,
            p(0.99).as_secs_f64() * 1e3
        );
    }
}
