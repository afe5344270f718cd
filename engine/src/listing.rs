//! Keyset pages of a space's messages with filters (`GET /v1/spaces/{id}/messages`).
//!
//! A page continues from a position (a `seq`, exclusive) in one direction, so across pages
//! every message that existed when its page was read appears exactly once, whatever is sent,
//! edited or deleted meanwhile: positions never move (a new message gets a higher seq than every
//! page already read; an edit keeps its seq). Backward pages (newest first) end at the start of
//! the space; forward pages end at the head as it was when the last page was read (follow newer
//! messages on the stream, joining with `since_seq`).
//!
//! # The cost of a filter, on both stores
//! Filters are applied while scanning the space's messages in seq order (a keyset read of the
//! store's seq-ordered message table, [`crate::store::Store::scan_messages`]); no filter has an
//! index. So that one request's cost is bounded however selective the filter, a page reads at
//! most [`SCAN_BUDGET`] messages: when the budget runs out first, the page holds the matches
//! found so far (possibly none) and a cursor to continue the scan. The worst case of one request
//! is therefore [`SCAN_BUDGET`] message reads (plus the time bounds' probes below), and listing
//! every match of a filter that matches one message in N costs N / [`SCAN_BUDGET`] requests.
//! Time bounds do better than a scan: messages are in creation order, so `since` (forward) and
//! `until` (backward) find their starting seq by binary search, about 2·log₂(head) one-row
//! reads, and the opposite bound ends the scan as soon as it is passed.

use crate::error::Result;
use crate::model::{Message, MessageId, Seq, Timestamp};
use crate::reads::SpaceReader;
use crate::store::Direction;

/// Most messages one page request reads from the store (see the module doc).
pub const SCAN_BUDGET: usize = 1000;
/// Messages read per store call while scanning.
const SCAN_CHUNK: usize = 200;
/// Largest page.
pub const MAX_PAGE: usize = 100;

/// Which messages a page keeps. Every field set must match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MessageFilter {
    pub sender_id: Option<String>,
    /// With (`true`) or without (`false`) media (a `/v1` upload or a Space7 file).
    pub has_attachment: Option<bool>,
    pub msgtype: Option<String>,
    /// Replies to this message (its thread).
    pub parent_id: Option<MessageId>,
    /// Created at or after.
    pub since: Option<Timestamp>,
    /// Created at or before.
    pub until: Option<Timestamp>,
}

impl MessageFilter {
    fn matches(&self, m: &Message) -> bool {
        self.sender_id.as_ref().is_none_or(|s| *s == m.sender_id)
            && self
                .has_attachment
                .is_none_or(|want| want == has_attachment(m))
            && self.msgtype.as_ref().is_none_or(|t| *t == m.msgtype)
            && self.parent_id.is_none_or(|p| m.parent_id == Some(p))
            && self.since.is_none_or(|t| m.created_at >= t)
            && self.until.is_none_or(|t| m.created_at <= t)
    }
}

/// Whether a message has media (a `/v1` upload or a Space7 file): the `has_attachment` filter,
/// and what the space stats count as `with_attachments`.
pub fn has_attachment(m: &Message) -> bool {
    m.media_url.is_some() || !m.media.is_empty()
}

/// A page request.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageQuery {
    pub direction: Direction,
    /// Continue after this position (exclusive) in `direction`; `None` starts at the newest
    /// message (backward) or the oldest (forward).
    pub from: Option<Seq>,
    /// At most this many messages (1..=[`MAX_PAGE`]; clamped).
    pub limit: usize,
    pub filter: MessageFilter,
}

/// A page: the matching messages in the query's direction, and where the next page starts
/// (`None`: nothing more now).
#[derive(Clone, Debug, PartialEq)]
pub struct CursorPage {
    pub messages: Vec<Message>,
    pub next: Option<Seq>,
}

impl SpaceReader {
    /// A page of this space's messages for a viewer who may read it (see the module doc for
    /// what it costs).
    ///
    /// # Errors
    /// Those of [`SpaceReader::view`].
    pub async fn list_messages(&self, viewer: &str, q: &MessageQuery) -> Result<CursorPage> {
        let (view, _) = self.view(viewer).await?;
        let head = view.counters.head_seq;
        let limit = q.limit.clamp(1, MAX_PAGE);
        let f = &q.filter;
        // Messages lie strictly between `after` and `before`.
        let (mut after, mut before) = match q.direction {
            Direction::Forward => (q.from.unwrap_or(0), head.saturating_add(1)),
            Direction::Backward => (0, q.from.unwrap_or(head.saturating_add(1))),
        };
        // Jump to the time bound the scan starts from.
        match (q.direction, f.since, f.until) {
            (Direction::Forward, Some(since), _) => {
                after = after.max(
                    self.first_seq_at_or_after(since, head)
                        .await?
                        .saturating_sub(1),
                );
            }
            (Direction::Backward, _, Some(until)) => {
                before = before.min(
                    self.first_seq_at_or_after(Timestamp(until.0.saturating_add(1)), head)
                        .await?,
                );
            }
            _ => {}
        }
        let mut out = Vec::new();
        let mut scanned = 0;
        while scanned < SCAN_BUDGET {
            let want = SCAN_CHUNK.min(SCAN_BUDGET - scanned);
            let rows = self
                .store
                .scan_messages(self.space_id, after, before, q.direction, want)
                .await?;
            scanned += rows.len();
            let exhausted = rows.len() < want;
            for m in rows {
                match q.direction {
                    Direction::Forward => after = m.seq,
                    Direction::Backward => before = m.seq,
                }
                let passed = match q.direction {
                    Direction::Forward => f.until.is_some_and(|t| m.created_at > t),
                    Direction::Backward => f.since.is_some_and(|t| m.created_at < t),
                };
                if passed {
                    return Ok(CursorPage {
                        messages: out,
                        next: None,
                    });
                }
                if f.matches(&m) {
                    let seq = m.seq;
                    out.push(m);
                    if out.len() == limit {
                        return Ok(CursorPage {
                            messages: out,
                            next: Some(seq),
                        });
                    }
                }
            }
            if exhausted {
                return Ok(CursorPage {
                    messages: out,
                    next: None,
                });
            }
        }
        let position = match q.direction {
            Direction::Forward => after,
            Direction::Backward => before,
        };
        Ok(CursorPage {
            messages: out,
            next: Some(position),
        })
    }

    /// The seq of the first message created at or after `t` (`head + 1` if none), by binary
    /// search over seqs: messages are created in seq order.
    async fn first_seq_at_or_after(&self, t: Timestamp, head: Seq) -> Result<Seq> {
        let (mut lo, mut hi) = (1, head.saturating_add(1));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let first = self
                .store
                .scan_messages(
                    self.space_id,
                    mid - 1,
                    head.saturating_add(1),
                    Direction::Forward,
                    1,
                )
                .await?;
            match first.first() {
                Some(m) if m.created_at < t => lo = m.seq + 1,
                _ => hi = mid,
            }
        }
        Ok(lo)
    }
}
