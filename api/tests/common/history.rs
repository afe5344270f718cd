//! The history checker: drive concurrent senders and subscribers through a list of nodes, inject
//! faults between them, record everything each client saw, and check the record against the
//! contract (CONTRACT.md §5–§7) once the run is over.
//!
//! A [`Run`] starts, for a set of spaces and a list of node URLs (one node today, several in a
//! cluster):
//! - REST senders (`POST /api/messages/:space`, one request at a time) and WebSocket senders
//!   (`send` with `local_id`, a window of several in flight per connection), each with a home
//!   node; after a failure a sender moves on to the next node. Every attempt is recorded with its
//!   outcome: acknowledged (the message as acked), rejected (a 4xx: nothing was written) or
//!   failed (5xx, `error` frame, transport failure or timeout: ambiguous, the message may exist
//!   but at most once). Every content is unique, so a stored message names its attempt.
//! - WebSocket subscribers on every node, joined to every space with `since_seq`; when their
//!   connection drops, or a ping goes unanswered (a frozen node), they reconnect to the next node
//!   and resume with `since_seq` = the last seq they saw. Every event they receive is recorded.
//!
//! [`Run::finish`] stops the senders, reads each space's head, lets the subscribers catch up to
//! it (bounded), then reads the stored history from every running node: the event log replayed
//! by a fresh subscriber (`since_seq` = 0) and every page of `GET /api/messages/:space`.
//! [`check`] then returns every [`Violation`] of:
//! - the log is gapless: its seqs are exactly `1..=head`, in order, one event each;
//! - the listing is in strict seq order, without duplicates, and equals the log's live messages;
//! - every acknowledged message is stored exactly once, with its acknowledged seq and content;
//!   no seq was acknowledged for two messages;
//! - every stored message comes from a send attempt that was not rejected, at most once (an
//!   ambiguous send may be stored or not, never twice);
//! - real-time order: a send acknowledged before another started has the smaller seq; and the
//!   sends of one connection to one space are sequenced in the order it sent them;
//! - each subscriber's view of a space, across its reconnections, is exactly the log from seq 1
//!   up to at least the head read at the end: no gap, no duplicate, no reorder, no event the log
//!   does not have;
//! - reads from different nodes agree.
//!
//! [`report`] measures what the senders saw, including the failover time: the longest interval
//! during which sends to a space failed (from the first failed attempt after an ack to the next
//! ack), printed on stderr by [`print_report`]. Nothing is asserted on time.
//!
//! Included with `#[path = "common/history.rs"] mod history;` beside `mod common;`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::common::{eventually, token};

// ---------------------------------------------------------------------------------------------
// The record

/// What a send attempt got.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// 201 / `ack`: the message as acknowledged.
    Acked {
        id: String,
        seq: u64,
        content: String,
    },
    /// A 4xx answer: the server says nothing was written.
    Rejected { status: u16, code: String },
    /// A 5xx answer, an `error` frame, a transport failure or a timeout: the message may exist
    /// or not, but at most once.
    Failed {
        status: Option<u16>,
        code: Option<String>,
        retry_after: bool,
        detail: String,
    },
}

/// One send attempt.
#[derive(Clone, Debug)]
pub struct SendRecord {
    pub space: String,
    /// Unique per attempt.
    pub content: String,
    /// The connection it went on (`rest-2`, `ws-1.3`): its sends are sequenced in `order`.
    pub conn: String,
    /// Position among the sends of `conn`.
    pub order: u64,
    /// Index of the node it was sent to.
    pub node: usize,
    pub via: Via,
    /// When it was sent and when its outcome came, since the run started.
    pub start: Duration,
    pub end: Duration,
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Rest,
    Ws,
}

impl SendRecord {
    pub fn acked(&self) -> Option<(&str, u64)> {
        match &self.outcome {
            Outcome::Acked { id, seq, .. } => Some((id, *seq)),
            _ => None,
        }
    }
}

/// An event as a client received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub space: String,
    pub seq: u64,
    /// `message_created`, `message_deleted`, …
    pub event: String,
    /// The message the event is about.
    pub message_id: Option<String>,
}

/// Everything one subscriber received, in order, across its connections.
#[derive(Clone, Debug, Default)]
pub struct SubscriberView {
    pub name: String,
    pub events: Vec<Seen>,
    /// The nodes it was connected to, in order (one entry per connection).
    pub nodes: Vec<usize>,
}

/// A stored message as listed by `GET /api/messages/:space`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub seq: u64,
    pub content: String,
}

/// A space's stored history as one node served it at the end of the run.
#[derive(Clone, Debug, Default)]
pub struct Stored {
    pub space: String,
    /// The node that served it.
    pub node: usize,
    /// `head_seq` of the replaying subscriber's `joined`.
    pub head: u64,
    /// The events replayed after `join` with `since_seq` = 0, in arrival order, up to `head`.
    pub log: Vec<Seen>,
    /// Every page of `GET /api/messages/:space`, recent first.
    pub listed: Vec<Listed>,
}

/// A whole run.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub spaces: Vec<String>,
    pub sends: Vec<SendRecord>,
    pub views: Vec<SubscriberView>,
    /// Each space as read from each running node.
    pub stored: Vec<Stored>,
    /// The head of each space read after the senders stopped: every subscriber must reach it.
    pub targets: HashMap<String, u64>,
    /// Faults injected, with when (since the run started).
    pub faults: Vec<(Duration, String)>,
}

// ---------------------------------------------------------------------------------------------
// The checker

/// A broken guarantee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// The replayed log is not exactly `1..=head`: `found` came where `expected` should have
    /// (`None`: the log ended first).
    LogGap {
        space: String,
        node: usize,
        expected: u64,
        found: Option<u64>,
    },
    /// One message created by two events.
    CreatedTwice {
        space: String,
        id: String,
        seqs: Vec<u64>,
    },
    /// The listing is not in strictly decreasing seq order at `index`.
    ListedOrder {
        space: String,
        node: usize,
        index: usize,
    },
    /// One message listed twice.
    ListedTwice {
        space: String,
        node: usize,
        id: String,
    },
    /// The listing and the log disagree about a message.
    ListedVsLog {
        space: String,
        node: usize,
        id: String,
        detail: String,
    },
    /// One send's content stored as several messages.
    StoredTwice {
        space: String,
        content: String,
        ids: Vec<String>,
    },
    /// An acknowledged message is not in the stored history.
    LostAck { space: String, id: String, seq: u64 },
    /// An acknowledged message is stored with another seq.
    AckSeqMismatch {
        space: String,
        id: String,
        acked: u64,
        stored: u64,
    },
    /// The ack's message is not the one sent (content differs), or the content was stored
    /// under another id than the acknowledged one.
    AckMismatch {
        space: String,
        id: String,
        detail: String,
    },
    /// One seq acknowledged for two messages.
    SeqAckedTwice {
        space: String,
        seq: u64,
        ids: Vec<String>,
    },
    /// A stored message no send attempted.
    Phantom {
        space: String,
        id: String,
        content: String,
    },
    /// A stored message whose send was rejected.
    RejectedButStored {
        space: String,
        id: String,
        content: String,
    },
    /// `later` was sent after `earlier` was acknowledged, yet has the smaller seq.
    RealTimeOrder {
        space: String,
        earlier: (String, u64),
        later: (String, u64),
    },
    /// Two sends of one connection to one space were sequenced against their sending order.
    ConnectionOrder {
        conn: String,
        space: String,
        first: (u64, u64),
        then: (u64, u64),
    },
    /// A subscriber skipped seqs.
    SubscriberGap {
        subscriber: String,
        space: String,
        expected: u64,
        got: u64,
    },
    /// A subscriber got an event later than a later one.
    SubscriberReorder {
        subscriber: String,
        space: String,
        expected: u64,
        got: u64,
    },
    /// A subscriber got a seq it already had.
    SubscriberDuplicate {
        subscriber: String,
        space: String,
        seq: u64,
    },
    /// A subscriber got an event that is not the log's event at that seq (or beyond the log).
    SubscriberMismatch {
        subscriber: String,
        space: String,
        seq: u64,
        saw: String,
        stored: Option<String>,
    },
    /// A subscriber did not reach the head read at the end.
    SubscriberBehind {
        subscriber: String,
        space: String,
        last: u64,
        head: u64,
    },
    /// Two nodes served different histories.
    ReadsDisagree {
        space: String,
        nodes: (usize, usize),
        detail: String,
    },
    /// A space has no stored read at all.
    NotRead { space: String },
}

fn describe(e: &Seen) -> String {
    format!(
        "{} {}",
        e.event,
        e.message_id.as_deref().unwrap_or("(no message)")
    )
}

/// Checks `h` against every guarantee of the module doc; returns the violations found (empty:
/// the history is consistent).
pub fn check(h: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    for space in &h.spaces {
        let reads: Vec<&Stored> = h.stored.iter().filter(|s| &s.space == space).collect();
        let Some(canonical) = reads.first() else {
            out.push(Violation::NotRead {
                space: space.clone(),
            });
            continue;
        };
        for r in &reads {
            check_read(r, &mut out);
        }
        for r in reads.iter().skip(1) {
            compare_reads(canonical, r, &mut out);
        }
        let sends: Vec<&SendRecord> = h.sends.iter().filter(|s| &s.space == space).collect();
        check_sends(space, canonical, &sends, &mut out);
        for v in &h.views {
            check_view(space, canonical, h.targets.get(space).copied(), v, &mut out);
        }
    }
    out
}

/// The log's message_created seq of each message id (first creation).
fn created(r: &Stored) -> HashMap<&str, u64> {
    let mut m = HashMap::new();
    for e in &r.log {
        if e.event == "message_created"
            && let Some(id) = &e.message_id
        {
            m.entry(id.as_str()).or_insert(e.seq);
        }
    }
    m
}

/// One node's read on its own: a gapless log, an ordered listing equal to the log's messages.
fn check_read(r: &Stored, out: &mut Vec<Violation>) {
    let space = &r.space;
    for (i, e) in r.log.iter().enumerate() {
        let expected = i as u64 + 1;
        if e.seq != expected {
            out.push(Violation::LogGap {
                space: space.clone(),
                node: r.node,
                expected,
                found: Some(e.seq),
            });
            break;
        }
    }
    if (r.log.len() as u64) < r.head && r.log.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1)
    {
        out.push(Violation::LogGap {
            space: space.clone(),
            node: r.node,
            expected: r.log.len() as u64 + 1,
            found: None,
        });
    }
    let mut creations: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut deleted: HashSet<&str> = HashSet::new();
    for e in &r.log {
        match (e.event.as_str(), &e.message_id) {
            ("message_created", Some(id)) => creations.entry(id).or_default().push(e.seq),
            ("message_deleted", Some(id)) => {
                deleted.insert(id);
            }
            _ => {}
        }
    }
    for (id, seqs) in &creations {
        if seqs.len() > 1 {
            out.push(Violation::CreatedTwice {
                space: space.clone(),
                id: (*id).to_owned(),
                seqs: seqs.clone(),
            });
        }
    }
    if let Some(i) = r.listed.windows(2).position(|w| w[0].seq <= w[1].seq) {
        out.push(Violation::ListedOrder {
            space: space.clone(),
            node: r.node,
            index: i + 1,
        });
    }
    let mut listed_ids = HashSet::new();
    for m in &r.listed {
        if !listed_ids.insert(m.id.as_str()) {
            out.push(Violation::ListedTwice {
                space: space.clone(),
                node: r.node,
                id: m.id.clone(),
            });
        }
        // A message listed beyond the replayed head was committed after the replay (a late
        // ambiguous send): not comparable.
        if m.seq > r.head {
            continue;
        }
        match creations.get(m.id.as_str()) {
            Some(seqs) if seqs[0] == m.seq => {}
            Some(seqs) => out.push(Violation::ListedVsLog {
                space: space.clone(),
                node: r.node,
                id: m.id.clone(),
                detail: format!("listed with seq {}, created at seq {}", m.seq, seqs[0]),
            }),
            None => out.push(Violation::ListedVsLog {
                space: space.clone(),
                node: r.node,
                id: m.id.clone(),
                detail: format!("listed with seq {}, never created in the log", m.seq),
            }),
        }
        if deleted.contains(m.id.as_str()) {
            out.push(Violation::ListedVsLog {
                space: space.clone(),
                node: r.node,
                id: m.id.clone(),
                detail: "listed, but deleted in the log".into(),
            });
        }
    }
    for id in creations.keys() {
        if !deleted.contains(id) && !listed_ids.contains(id) {
            out.push(Violation::ListedVsLog {
                space: space.clone(),
                node: r.node,
                id: (*id).to_owned(),
                detail: "created in the log, not listed".into(),
            });
        }
    }
}

/// Two nodes' reads of one space: the same events on their common prefix.
fn compare_reads(a: &Stored, b: &Stored, out: &mut Vec<Violation>) {
    if let Some((x, y)) = a.log.iter().zip(&b.log).find(|(x, y)| x != y) {
        out.push(Violation::ReadsDisagree {
            space: a.space.clone(),
            nodes: (a.node, b.node),
            detail: format!(
                "seq {}: {} vs seq {}: {}",
                x.seq,
                describe(x),
                y.seq,
                describe(y)
            ),
        });
    }
}

fn check_sends(space: &str, r: &Stored, sends: &[&SendRecord], out: &mut Vec<Violation>) {
    let created = created(r);
    let by_content: HashMap<&str, &SendRecord> =
        sends.iter().map(|s| (s.content.as_str(), *s)).collect();

    // Every acknowledged message is stored, once, as acknowledged.
    let mut seq_ids: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for s in sends {
        let Outcome::Acked { id, seq, content } = &s.outcome else {
            continue;
        };
        seq_ids.entry(*seq).or_default().push(id.clone());
        if content != &s.content {
            out.push(Violation::AckMismatch {
                space: space.to_owned(),
                id: id.clone(),
                detail: format!("sent {:?}, acked {:?}", s.content, content),
            });
        }
        match created.get(id.as_str()) {
            None => out.push(Violation::LostAck {
                space: space.to_owned(),
                id: id.clone(),
                seq: *seq,
            }),
            Some(stored) if stored != seq => out.push(Violation::AckSeqMismatch {
                space: space.to_owned(),
                id: id.clone(),
                acked: *seq,
                stored: *stored,
            }),
            Some(_) => {}
        }
    }
    for (seq, mut ids) in seq_ids {
        ids.sort();
        ids.dedup();
        if ids.len() > 1 {
            out.push(Violation::SeqAckedTwice {
                space: space.to_owned(),
                seq,
                ids,
            });
        }
    }

    // Every stored message comes from one attempt that was not rejected.
    let mut stored_by_content: BTreeMap<&str, Vec<&Listed>> = BTreeMap::new();
    for m in &r.listed {
        stored_by_content.entry(&m.content).or_default().push(m);
    }
    for (content, ms) in &stored_by_content {
        let ids: Vec<String> = ms.iter().map(|m| m.id.clone()).collect();
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        if distinct.len() > 1 {
            out.push(Violation::StoredTwice {
                space: space.to_owned(),
                content: (*content).to_owned(),
                ids: distinct,
            });
        }
        let m = ms[0];
        match by_content.get(content).map(|s| &s.outcome) {
            None => out.push(Violation::Phantom {
                space: space.to_owned(),
                id: m.id.clone(),
                content: (*content).to_owned(),
            }),
            Some(Outcome::Rejected { .. }) => out.push(Violation::RejectedButStored {
                space: space.to_owned(),
                id: m.id.clone(),
                content: (*content).to_owned(),
            }),
            Some(Outcome::Acked { id, .. }) if !ids.contains(id) => {
                out.push(Violation::AckMismatch {
                    space: space.to_owned(),
                    id: id.clone(),
                    detail: format!("its content is stored as {ids:?}"),
                })
            }
            Some(_) => {}
        }
    }

    // Real-time order: acked B started after acked A ended ⇒ seq(A) < seq(B).
    let mut acked: Vec<(&SendRecord, &str, u64)> = sends
        .iter()
        .filter_map(|s| s.acked().map(|(id, seq)| (*s, id, seq)))
        .collect();
    let mut by_end = acked.clone();
    by_end.sort_by_key(|(s, _, _)| s.end);
    acked.sort_by_key(|(s, _, _)| s.start);
    let mut i = 0;
    let mut max_before: Option<(&str, u64)> = None;
    for (s, id, seq) in &acked {
        while i < by_end.len() && by_end[i].0.end < s.start {
            let (_, eid, eseq) = by_end[i];
            if max_before.is_none_or(|(_, m)| eseq > m) {
                max_before = Some((eid, eseq));
            }
            i += 1;
        }
        if let Some((eid, eseq)) = max_before
            && eseq >= *seq
        {
            out.push(Violation::RealTimeOrder {
                space: space.to_owned(),
                earlier: (eid.to_owned(), eseq),
                later: ((*id).to_owned(), *seq),
            });
            break;
        }
    }

    // One connection's sends to one space, in its sending order.
    let mut by_conn: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for (s, _, seq) in &acked {
        by_conn.entry(&s.conn).or_default().push((s.order, *seq));
    }
    for (conn, mut v) in by_conn {
        v.sort();
        if let Some(w) = v.windows(2).find(|w| w[0].1 >= w[1].1) {
            out.push(Violation::ConnectionOrder {
                conn: conn.to_owned(),
                space: space.to_owned(),
                first: w[0],
                then: w[1],
            });
        }
    }
}

/// One subscriber's view of one space: exactly the log from seq 1 up to at least `target`.
fn check_view(
    space: &str,
    r: &Stored,
    target: Option<u64>,
    v: &SubscriberView,
    out: &mut Vec<Violation>,
) {
    let events: Vec<&Seen> = v.events.iter().filter(|e| e.space == space).collect();
    let mut expected = 1;
    for (i, e) in events.iter().enumerate() {
        if e.seq < expected {
            out.push(Violation::SubscriberDuplicate {
                subscriber: v.name.clone(),
                space: space.to_owned(),
                seq: e.seq,
            });
            return;
        }
        if e.seq > expected {
            let comes_later = events[i + 1..].iter().any(|l| l.seq == expected);
            out.push(if comes_later {
                Violation::SubscriberReorder {
                    subscriber: v.name.clone(),
                    space: space.to_owned(),
                    expected,
                    got: e.seq,
                }
            } else {
                Violation::SubscriberGap {
                    subscriber: v.name.clone(),
                    space: space.to_owned(),
                    expected,
                    got: e.seq,
                }
            });
            return;
        }
        let stored = r.log.get(e.seq as usize - 1).filter(|s| s.seq == e.seq);
        if stored.is_none_or(|s| s.event != e.event || s.message_id != e.message_id) {
            out.push(Violation::SubscriberMismatch {
                subscriber: v.name.clone(),
                space: space.to_owned(),
                seq: e.seq,
                saw: describe(e),
                stored: stored.map(describe),
            });
            return;
        }
        expected += 1;
    }
    if let Some(head) = target
        && expected - 1 < head
    {
        out.push(Violation::SubscriberBehind {
            subscriber: v.name.clone(),
            space: space.to_owned(),
            last: expected - 1,
            head,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The report

/// An interval during which every send to a space failed.
#[derive(Clone, Debug, PartialEq)]
pub struct Outage {
    pub space: String,
    /// Start of the first failed attempt after the last ack.
    pub from: Duration,
    /// End of the next ack (`None`: no ack came after).
    pub to: Option<Duration>,
    pub failed_attempts: usize,
}

impl Outage {
    pub fn length(&self, run_end: Duration) -> Duration {
        self.to.unwrap_or(run_end).saturating_sub(self.from)
    }
}

/// What the senders saw.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub acked: usize,
    pub rejected: usize,
    pub failed: usize,
    /// Failed attempts by code (or transport failure).
    pub failures_by_kind: BTreeMap<String, usize>,
    pub outages: Vec<Outage>,
    /// The end of the last attempt.
    pub run_end: Duration,
}

impl Report {
    /// The longest outage: the failover time as the senders measured it.
    pub fn longest(&self) -> Option<&Outage> {
        self.outages.iter().max_by_key(|o| o.length(self.run_end))
    }
}

pub fn report(h: &History) -> Report {
    let mut rep = Report {
        run_end: h.sends.iter().map(|s| s.end).max().unwrap_or_default(),
        ..Report::default()
    };
    for s in &h.sends {
        match &s.outcome {
            Outcome::Acked { .. } => rep.acked += 1,
            Outcome::Rejected { status, code } => {
                rep.rejected += 1;
                *rep.failures_by_kind
                    .entry(format!("{status} {code}"))
                    .or_default() += 1;
            }
            Outcome::Failed {
                status,
                code,
                detail,
                ..
            } => {
                rep.failed += 1;
                let kind = match (status, code) {
                    (Some(st), Some(c)) => format!("{st} {c}"),
                    (Some(st), None) => format!("{st}"),
                    (None, Some(c)) => format!("ws {c}"),
                    (None, None) => transport_kind(detail),
                };
                *rep.failures_by_kind.entry(kind).or_default() += 1;
            }
        }
    }
    for space in &h.spaces {
        let mut acks: Vec<Duration> = h
            .sends
            .iter()
            .filter(|s| &s.space == space && s.acked().is_some())
            .map(|s| s.end)
            .collect();
        acks.sort();
        let mut fails: Vec<Duration> = h
            .sends
            .iter()
            .filter(|s| &s.space == space && s.acked().is_none())
            .map(|s| s.start)
            .collect();
        fails.sort();
        let mut k = 0;
        while k < fails.len() {
            let from = fails[k];
            let next_ack = acks.iter().copied().find(|a| *a >= from);
            let mut n = 0;
            while k < fails.len() && next_ack.is_none_or(|a| fails[k] <= a) {
                k += 1;
                n += 1;
            }
            rep.outages.push(Outage {
                space: space.clone(),
                from,
                to: next_ack,
                failed_attempts: n,
            });
        }
    }
    rep
}

fn transport_kind(detail: &str) -> String {
    let d = detail.to_ascii_lowercase();
    if d.contains("timed out") || d.contains("timeout") {
        "timeout".into()
    } else if d.contains("refused") {
        "connection refused".into()
    } else {
        "connection lost".into()
    }
}

/// Prints `rep` (and the faults of `h`) to the process's stderr, past the test harness's output
/// capture, so the failover time shows in CI logs.
pub fn print_report(title: &str, h: &History, rep: &Report) {
    let secs = |d: Duration| format!("{:.3} s", d.as_secs_f64());
    let mut w = String::new();
    w.push_str(&format!(
        "history [{title}]: {} spaces, {} acknowledged, {} rejected, {} failed sends; {} subscribers ({} connections)\n",
        h.spaces.len(),
        rep.acked,
        rep.rejected,
        rep.failed,
        h.views.len(),
        h.views.iter().map(|v| v.nodes.len()).sum::<usize>(),
    ));
    if !rep.failures_by_kind.is_empty() {
        w.push_str(&format!(
            "history [{title}]: failures by kind: {:?}\n",
            rep.failures_by_kind
        ));
    }
    for (at, what) in &h.faults {
        w.push_str(&format!("history [{title}]: at {}: {what}\n", secs(*at)));
    }
    match rep.longest() {
        Some(o) => w.push_str(&format!(
            "history [{title}]: failover time (longest interval in which sends to a space failed): {} (space {}, from {} to {}, {} failed attempts)\n",
            secs(o.length(rep.run_end)),
            o.space,
            secs(o.from),
            o.to.map_or("the end of the run (never recovered)".into(), secs),
            o.failed_attempts,
        )),
        None => w.push_str(&format!(
            "history [{title}]: no send failed\n"
        )),
    }
    let _ = std::io::stderr().write_all(w.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// The workload

/// The clients of a run.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Spaces to create.
    pub spaces: usize,
    /// REST senders (one request at a time each).
    pub rest_senders: usize,
    /// WebSocket senders.
    pub ws_senders: usize,
    /// Sends in flight per WebSocket sender.
    pub ws_window: usize,
    /// Subscribers per node.
    pub subscribers_per_node: usize,
    /// A send without an answer this long failed (ambiguously); a subscriber whose ping is
    /// unanswered this long reconnects elsewhere.
    pub timeout: Duration,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            spaces: 3,
            rest_senders: 3,
            ws_senders: 3,
            ws_window: 4,
            subscribers_per_node: 2,
            timeout: Duration::from_secs(4),
        }
    }
}

/// The user of sender `i` (a member of every space).
fn sender_user(i: usize) -> String {
    format!("hsend{i}")
}

/// Creates the run's public spaces through `base` and makes every sender a member.
pub async fn setup_spaces(base: &str, w: &Workload) -> Vec<String> {
    let http = crate::common::http_client();
    let owner = token("hist-owner");
    let mut spaces = Vec::new();
    for i in 0..w.spaces {
        let r = http
            .post(format!("{base}/api/spaces"))
            .bearer_auth(&owner)
            .json(&json!({"title": format!("history space {i}"), "description": "history checker"}))
            .send()
            .await
            .expect("create space");
        assert_eq!(r.status(), 201, "create space");
        let body: Value = r.json().await.expect("space JSON");
        let id = body["space_id"].as_str().expect("space_id").to_owned();
        for s in 0..w.rest_senders + w.ws_senders {
            let r = http
                .post(format!("{base}/api/spaces/{id}/join"))
                .bearer_auth(token(&sender_user(s)))
                .send()
                .await
                .expect("join space");
            assert_eq!(r.status(), 200, "sender joins space {id}");
        }
        spaces.push(id);
    }
    spaces
}

/// What subscribers do.
#[derive(Clone, Debug)]
enum SubControl {
    Run,
    /// Stop once every space is seen up to its head.
    CatchUp(HashMap<String, u64>),
    Stop,
}

struct Ctx {
    urls: Vec<String>,
    spaces: Vec<String>,
    w: Workload,
    t0: Instant,
    /// Distinguishes the contents of runs that share a space.
    nonce: String,
    sends: Mutex<Vec<SendRecord>>,
    acked: AtomicUsize,
    failed: AtomicUsize,
    stop_senders: AtomicBool,
    /// Set by [`Run::senders_home`]: each sender goes back to its first node and stays there
    /// through failures (by default a sender moves to the next node after a failure).
    stay_home: AtomicBool,
}

impl Ctx {
    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    fn record(&self, r: SendRecord) {
        if r.acked().is_some() {
            self.acked.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.sends.lock().unwrap().push(r);
    }
}

/// A running workload (see the module doc).
pub struct Run {
    ctx: Arc<Ctx>,
    faults: Vec<(Duration, String)>,
    control: watch::Sender<SubControl>,
    senders: Vec<JoinHandle<()>>,
    subscribers: Vec<JoinHandle<SubscriberView>>,
}

impl Run {
    /// Starts subscribers on every node of `urls`, then the senders: REST sender `i` and
    /// WebSocket sender `j` start at nodes `i % n` and `j % n`, so with as many of each as nodes,
    /// every node gets one of each.
    pub fn start(urls: &[String], spaces: &[String], w: &Workload) -> Run {
        let ctx = Arc::new(Ctx {
            urls: urls.to_vec(),
            spaces: spaces.to_vec(),
            w: w.clone(),
            t0: Instant::now(),
            nonce: format!("{:08x}", rand_u32()),
            sends: Mutex::new(Vec::new()),
            acked: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            stop_senders: AtomicBool::new(false),
            stay_home: AtomicBool::new(false),
        });
        let (control, _) = watch::channel(SubControl::Run);
        let mut subscribers = Vec::new();
        for node in 0..urls.len() {
            for k in 0..w.subscribers_per_node {
                let idx = node * w.subscribers_per_node + k;
                subscribers.push(tokio::spawn(subscriber(
                    ctx.clone(),
                    idx,
                    node,
                    control.subscribe(),
                )));
            }
        }
        let mut senders = Vec::new();
        for i in 0..w.rest_senders {
            senders.push(tokio::spawn(rest_sender(ctx.clone(), i)));
        }
        for j in 0..w.ws_senders {
            senders.push(tokio::spawn(ws_sender(ctx.clone(), w.rest_senders + j, j)));
        }
        Run {
            ctx,
            faults: Vec::new(),
            control,
            senders,
            subscribers,
        }
    }

    /// Acknowledged sends so far.
    pub fn acked(&self) -> usize {
        self.ctx.acked.load(Ordering::Relaxed)
    }

    /// Failed or rejected sends so far.
    pub fn failed(&self) -> usize {
        self.ctx.failed.load(Ordering::Relaxed)
    }

    /// Time since the run started (the clock of the record).
    pub fn now(&self) -> Duration {
        self.ctx.now()
    }

    /// Records a fault (or any moment worth reporting) at the current time; returns the time.
    pub fn mark(&mut self, what: &str) -> Duration {
        let at = self.ctx.now();
        self.faults.push((at, what.to_owned()));
        at
    }

    /// Sends every sender back to its first node (REST senders at their next send, WebSocket
    /// senders at their next connection) and keeps it there, retrying through failures: after
    /// a fault, so that a recovering node is offered sends until it serves them, rather than
    /// left to whichever senders happened to stay on it.
    pub fn senders_home(&self) {
        self.ctx.stay_home.store(true, Ordering::Relaxed);
    }

    /// Waits until `n` sends through `node` that started after `since` are acknowledged;
    /// panics after `deadline`.
    pub async fn acks_through_since(
        &self,
        node: usize,
        since: Duration,
        n: usize,
        deadline: Duration,
    ) {
        let ctx = self.ctx.clone();
        eventually(
            &format!("{n} acknowledged sends through n{node}"),
            deadline,
            || {
                let ctx = ctx.clone();
                async move {
                    let sends = ctx.sends.lock().unwrap();
                    let k = sends
                        .iter()
                        .filter(|s| s.node == node && s.start >= since && s.acked().is_some())
                        .count();
                    (k >= n).then_some(())
                }
            },
        )
        .await;
    }

    /// Waits until `n` more sends than now are acknowledged (panics after `deadline`).
    pub async fn more_acks(&self, n: usize, deadline: Duration) {
        let target = self.acked() + n;
        let ctx = self.ctx.clone();
        eventually(&format!("{target} acknowledged sends"), deadline, || {
            let ctx = ctx.clone();
            async move { (ctx.acked.load(Ordering::Relaxed) >= target).then_some(()) }
        })
        .await;
    }

    /// Waits until at least `n` sends failed after `since` (their failure came after it; they
    /// may have been sent before); panics after `deadline`.
    pub async fn failures_since(&self, since: Duration, n: usize, deadline: Duration) {
        let ctx = self.ctx.clone();
        eventually(&format!("{n} failed sends"), deadline, || {
            let ctx = ctx.clone();
            async move {
                let sends = ctx.sends.lock().unwrap();
                let k = sends
                    .iter()
                    .filter(|s| s.end >= since && s.acked().is_none())
                    .count();
                (k >= n).then_some(())
            }
        })
        .await;
    }

    /// Waits until every space has `n` acknowledged sends that started after `since` (through
    /// any node); panics after `deadline`.
    pub async fn acks_in_every_space_since(&self, since: Duration, n: usize, deadline: Duration) {
        let ctx = self.ctx.clone();
        eventually(
            &format!("{n} acknowledged sends in every space"),
            deadline,
            || {
                let ctx = ctx.clone();
                async move {
                    let sends = ctx.sends.lock().unwrap();
                    ctx.spaces
                        .iter()
                        .all(|sp| {
                            sends
                                .iter()
                                .filter(|s| &s.space == sp && s.start >= since)
                                .filter(|s| s.acked().is_some())
                                .count()
                                >= n
                        })
                        .then_some(())
                }
            },
        )
        .await;
    }

    /// Stops the senders (in-flight sends finish or time out), reads each space's head, lets
    /// the subscribers catch up to it (at most `catch_up`; one that does not is reported by
    /// [`check`]), and reads the stored history from every node of `readers`.
    pub async fn finish(self, readers: &[usize], catch_up: Duration) -> History {
        let Run {
            ctx,
            faults,
            control,
            senders,
            subscribers,
        } = self;
        ctx.stop_senders.store(true, Ordering::Relaxed);
        for s in senders {
            s.await.expect("sender task");
        }
        let reader = *readers.first().expect("at least one reader node");
        let mut targets = HashMap::new();
        for space in &ctx.spaces {
            targets.insert(space.clone(), head_of(&ctx.urls[reader], space).await);
        }
        control.send_replace(SubControl::CatchUp(targets.clone()));
        let until = Instant::now() + catch_up;
        let mut views = Vec::new();
        for mut task in subscribers {
            let left = until.saturating_duration_since(Instant::now());
            let view = match tokio::time::timeout(left, &mut task).await {
                Ok(view) => view,
                Err(_) => {
                    // Those still behind stop where they are (within a tick or a connect
                    // timeout); the checker names them.
                    control.send_replace(SubControl::Stop);
                    task.await
                }
            };
            views.push(view.expect("subscriber task"));
        }
        let mut stored = Vec::new();
        for space in &ctx.spaces {
            for &node in readers {
                stored.push(read_stored(&ctx.urls[node], node, space).await);
            }
        }
        let sends = std::mem::take(&mut *ctx.sends.lock().unwrap());
        History {
            spaces: ctx.spaces.clone(),
            sends,
            views,
            stored,
            targets,
            faults,
        }
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() as u32
}

/// `head_seq` of `GET /api/spaces/:space` (polled: the node may still be recovering).
async fn head_of(base: &str, space: &str) -> u64 {
    let http = crate::common::http_client();
    let t = token("hist-owner");
    let url = format!("{base}/api/spaces/{space}");
    eventually(&format!("GET {url}"), Duration::from_secs(30), || {
        let (http, t, url) = (http.clone(), t.clone(), url.clone());
        async move {
            let r = http
                .get(&url)
                .bearer_auth(&t)
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .ok()?;
            if r.status() != 200 {
                return None;
            }
            let v: Value = r.json().await.ok()?;
            v["head_seq"].as_u64()
        }
    })
    .await
}

/// A space's stored history as node `node` serves it.
async fn read_stored(base: &str, node: usize, space: &str) -> Stored {
    let t = token("hist-reader");
    let mut ws = loop_connect(base, &t).await;
    ws.send(WsMessage::text(
        json!({"type": "join", "space_id": space, "since_seq": 0}).to_string(),
    ))
    .await
    .expect("send join");
    let mut head = None;
    let mut log = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
        let Ok(Some(Ok(WsMessage::Text(text)))) = frame else {
            match frame {
                Ok(Some(Ok(_))) => continue,
                // The replay stopped short: the checker reports the gap.
                _ => break,
            }
        };
        let v: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
        match v["type"].as_str() {
            Some("joined") if v["space_id"] == space => {
                head = v["head_seq"].as_u64();
            }
            Some("error") => panic!("join {space} on {base} for the final read: {v}"),
            Some("event") if v["space_id"] == space => {
                let seen = seen_of(&v);
                let seq = seen.seq;
                log.push(seen);
                if head.is_some_and(|h| seq >= h) {
                    break;
                }
            }
            _ => {}
        }
        if head == Some(0) {
            break;
        }
    }
    let _ = ws.close(None).await;
    let head = head.expect("joined before the replay");
    log.retain(|e| e.seq <= head);
    Stored {
        space: space.to_owned(),
        node,
        head,
        log,
        listed: list_all(base, space).await,
    }
}

/// Every page of `GET /api/messages/:space`.
async fn list_all(base: &str, space: &str) -> Vec<Listed> {
    let http = crate::common::http_client();
    let t = token("hist-reader");
    let mut out = Vec::new();
    for page in 1.. {
        let r = http
            .get(format!("{base}/api/messages/{space}?page={page}&limit=100"))
            .bearer_auth(&t)
            .send()
            .await
            .expect("list messages");
        assert_eq!(r.status(), 200, "GET /api/messages/{space} page {page}");
        let body: Value = r.json().await.expect("JSON");
        let msgs = body["messages"].as_array().expect("messages").clone();
        for m in &msgs {
            out.push(Listed {
                id: m["message_id"].as_str().expect("message_id").to_owned(),
                seq: m["seq"].as_u64().expect("seq"),
                content: m["content"].as_str().unwrap_or_default().to_owned(),
            });
        }
        if msgs.len() < 100 {
            break;
        }
    }
    out
}

fn seen_of(v: &Value) -> Seen {
    let data = &v["data"];
    Seen {
        space: v["space_id"].as_str().unwrap_or_default().to_owned(),
        seq: v["seq"].as_u64().expect("event seq"),
        event: v["event"].as_str().unwrap_or_default().to_owned(),
        message_id: data["message_id"].as_str().map(str::to_owned),
    }
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/v1/stream` on `base` with `token` (bounded by 5 s).
async fn ws_connect(base: &str, token: &str) -> Result<WsStream, String> {
    let url = format!("{}/v1/stream", base.replacen("http://", "ws://", 1));
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(req),
    )
    .await
    {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}

/// [`ws_connect`], retried for up to 30 s (the node may be restarting).
async fn loop_connect(base: &str, token: &str) -> WsStream {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        match ws_connect(base, token).await {
            Ok(ws) => return ws,
            Err(e) => assert!(Instant::now() < until, "connect to {base}/v1/stream: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pause after a failed attempt, so a dead node is not hammered (pacing, not synchronisation).
const BACKOFF: Duration = Duration::from_millis(50);

async fn rest_sender(ctx: Arc<Ctx>, idx: usize) {
    spacecast_api::install_tls_provider();
    let http = reqwest::Client::builder()
        .timeout(ctx.w.timeout)
        .build()
        .expect("client");
    let tok = token(&sender_user(idx));
    let n = ctx.urls.len();
    let mut node = idx % n;
    let conn = format!("rest-{idx}");
    let mut k: u64 = 0;
    while !ctx.stop_senders.load(Ordering::Relaxed) {
        if ctx.stay_home.load(Ordering::Relaxed) {
            node = idx % n;
        }
        let space = ctx.spaces[(idx + k as usize) % ctx.spaces.len()].clone();
        let content = format!("{} rest{idx} #{k}", ctx.nonce);
        let start = ctx.now();
        let r = http
            .post(format!("{}/api/messages/{space}", ctx.urls[node]))
            .bearer_auth(&tok)
            .json(&json!({ "content": content }))
            .send()
            .await;
        let outcome = match r {
            Err(e) => Outcome::Failed {
                status: None,
                code: None,
                retry_after: false,
                detail: error_chain(&e),
            },
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                match r.json::<Value>().await {
                    Ok(m) if status == 201 => acked_outcome(&m),
                    Ok(body) if (400..500).contains(&status) => Outcome::Rejected {
                        status,
                        code: body["code"].as_str().unwrap_or_default().to_owned(),
                    },
                    Ok(body) => Outcome::Failed {
                        status: Some(status),
                        code: body["code"].as_str().map(str::to_owned),
                        retry_after,
                        detail: body.to_string(),
                    },
                    Err(e) => Outcome::Failed {
                        status: Some(status),
                        code: None,
                        retry_after,
                        detail: format!("body: {}", error_chain(&e)),
                    },
                }
            }
        };
        let ok = matches!(outcome, Outcome::Acked { .. });
        ctx.record(SendRecord {
            space,
            content,
            conn: conn.clone(),
            order: k,
            node,
            via: Via::Rest,
            start,
            end: ctx.now(),
            outcome,
        });
        k += 1;
        if !ok {
            node = (node + 1) % n;
            tokio::time::sleep(BACKOFF).await;
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The outcome of a 201 / `ack` carrying `m` (a message without id or seq is not an ack).
fn acked_outcome(m: &Value) -> Outcome {
    match (m["message_id"].as_str(), m["seq"].as_u64()) {
        (Some(id), Some(seq)) => Outcome::Acked {
            id: id.to_owned(),
            seq,
            content: m["content"].as_str().unwrap_or_default().to_owned(),
        },
        _ => Outcome::Failed {
            status: None,
            code: None,
            retry_after: false,
            detail: format!("acknowledged without message_id and seq: {m}"),
        },
    }
}

/// A WebSocket send awaiting its answer.
struct Pending {
    space: String,
    content: String,
    order: u64,
    start: Duration,
}

/// WebSocket sender `idx` (its user), starting at node `home % n`.
async fn ws_sender(ctx: Arc<Ctx>, idx: usize, home: usize) {
    let tok = token(&sender_user(idx));
    let n = ctx.urls.len();
    let mut node = home % n;
    let mut k: u64 = 0;
    let mut conn_no = 0;
    'connections: while !ctx.stop_senders.load(Ordering::Relaxed) {
        if ctx.stay_home.load(Ordering::Relaxed) {
            node = home % n;
        }
        let ws = match ws_connect(&ctx.urls[node], &tok).await {
            Ok(ws) => ws,
            Err(_) => {
                node = (node + 1) % n;
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
        };
        conn_no += 1;
        let conn = format!("ws-{idx}.{conn_no}");
        let (mut sink, mut stream) = ws.split();
        let mut pending: HashMap<String, Pending> = HashMap::new();
        let mut order = 0;
        let fail_all = |pending: &mut HashMap<String, Pending>, node: usize, detail: &str| {
            for (_, p) in pending.drain() {
                ctx.record(SendRecord {
                    space: p.space,
                    content: p.content,
                    conn: conn.clone(),
                    order: p.order,
                    node,
                    via: Via::Ws,
                    start: p.start,
                    end: ctx.now(),
                    outcome: Outcome::Failed {
                        status: None,
                        code: None,
                        retry_after: false,
                        detail: detail.to_owned(),
                    },
                });
            }
        };
        loop {
            let stopping = ctx.stop_senders.load(Ordering::Relaxed);
            while !stopping && pending.len() < ctx.w.ws_window {
                let space = ctx.spaces[(idx + k as usize) % ctx.spaces.len()].clone();
                let content = format!("{} ws{idx} #{k}", ctx.nonce);
                let local_id = format!("l{k}");
                let frame = json!({"type": "send", "space_id": space, "content": content, "local_id": local_id});
                let start = ctx.now();
                pending.insert(
                    local_id,
                    Pending {
                        space,
                        content,
                        order,
                        start,
                    },
                );
                k += 1;
                order += 1;
                if sink.send(WsMessage::text(frame.to_string())).await.is_err() {
                    fail_all(&mut pending, node, "connection lost while sending");
                    node = (node + 1) % n;
                    tokio::time::sleep(BACKOFF).await;
                    continue 'connections;
                }
            }
            if pending.is_empty() {
                let _ = sink.close().await;
                break 'connections;
            }
            let frame = tokio::time::timeout(ctx.w.timeout, stream.next()).await;
            let text = match frame {
                Err(_) => {
                    fail_all(&mut pending, node, "no answer: timed out");
                    node = (node + 1) % n;
                    continue 'connections;
                }
                Ok(Some(Ok(WsMessage::Text(t)))) => t,
                Ok(Some(Ok(WsMessage::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                    fail_all(&mut pending, node, "connection lost");
                    node = (node + 1) % n;
                    tokio::time::sleep(BACKOFF).await;
                    continue 'connections;
                }
                Ok(Some(Ok(_))) => continue,
            };
            let v: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
            let kind = v["type"].as_str().unwrap_or_default();
            if kind != "ack" && kind != "error" {
                continue;
            }
            let Some(p) = v["local_id"].as_str().and_then(|l| pending.remove(l)) else {
                continue;
            };
            let outcome = if kind == "ack" {
                acked_outcome(&v["message"])
            } else {
                Outcome::Failed {
                    status: None,
                    code: v["code"].as_str().map(str::to_owned),
                    retry_after: false,
                    detail: v.to_string(),
                }
            };
            let failed = !matches!(outcome, Outcome::Acked { .. });
            ctx.record(SendRecord {
                space: p.space,
                content: p.content,
                conn: conn.clone(),
                order: p.order,
                node,
                via: Via::Ws,
                start: p.start,
                end: ctx.now(),
                outcome,
            });
            if failed {
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

/// True when the subscriber may stop.
fn done(control: &watch::Receiver<SubControl>, last: &HashMap<String, u64>) -> bool {
    match &*control.borrow() {
        SubControl::Run => false,
        SubControl::Stop => true,
        SubControl::CatchUp(targets) => targets
            .iter()
            .all(|(s, head)| last.get(s).copied().unwrap_or(0) >= *head),
    }
}

/// How often an idle subscriber checks its connection and its instructions.
const TICK: Duration = Duration::from_millis(250);

async fn subscriber(
    ctx: Arc<Ctx>,
    idx: usize,
    home: usize,
    control: watch::Receiver<SubControl>,
) -> SubscriberView {
    let tok = token(&format!("hsub{idx}"));
    let n = ctx.urls.len();
    let mut node = home;
    let mut last: HashMap<String, u64> = ctx.spaces.iter().map(|s| (s.clone(), 0)).collect();
    let mut view = SubscriberView {
        name: format!("sub{idx}@n{home}"),
        ..SubscriberView::default()
    };
    'connections: while !done(&control, &last) {
        let ws = match ws_connect(&ctx.urls[node], &tok).await {
            Ok(ws) => ws,
            Err(_) => {
                node = (node + 1) % n;
                tokio::time::sleep(BACKOFF * 2).await;
                continue;
            }
        };
        view.nodes.push(node);
        let (mut sink, mut stream) = ws.split();
        for space in &ctx.spaces {
            let join = json!({"type": "join", "space_id": space, "since_seq": last[space]});
            if sink.send(WsMessage::text(join.to_string())).await.is_err() {
                node = (node + 1) % n;
                continue 'connections;
            }
        }
        let mut ping_sent: Option<Instant> = None;
        loop {
            if done(&control, &last) {
                let _ = sink.close().await;
                break 'connections;
            }
            match tokio::time::timeout(TICK, stream.next()).await {
                Err(_) => match ping_sent {
                    // A node that does not answer a ping within the timeout is frozen or gone.
                    Some(at) if at.elapsed() > ctx.w.timeout => {
                        node = (node + 1) % n;
                        continue 'connections;
                    }
                    Some(_) => {}
                    None => {
                        if sink.send(WsMessage::Ping(Vec::new().into())).await.is_err() {
                            node = (node + 1) % n;
                            continue 'connections;
                        }
                        ping_sent = Some(Instant::now());
                    }
                },
                Ok(Some(Ok(WsMessage::Text(text)))) => {
                    ping_sent = None;
                    let v: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                    match v["type"].as_str() {
                        Some("event") => {
                            let seen = seen_of(&v);
                            if let Some(l) = last.get_mut(&seen.space) {
                                *l = (*l).max(seen.seq);
                            }
                            view.events.push(seen);
                        }
                        Some("error") => {
                            // A join refused (e.g. the bus is down): try again, elsewhere.
                            node = (node + 1) % n;
                            tokio::time::sleep(BACKOFF * 4).await;
                            continue 'connections;
                        }
                        _ => {}
                    }
                }
                Ok(Some(Ok(WsMessage::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                    node = (node + 1) % n;
                    tokio::time::sleep(BACKOFF * 2).await;
                    continue 'connections;
                }
                Ok(Some(Ok(_))) => ping_sent = None,
            }
        }
    }
    view
}
