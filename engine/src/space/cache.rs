//! The space actor's message cache, and the one byte budget every actor's cache shares.
//!
//! The actor keeps a message in its cache from the moment it changes it until the change is
//! durable (the cache is then the only up-to-date copy), and afterwards as a plain read cache for
//! the next delete or reaction. Only that second kind may be evicted. A per-space bound alone
//! multiplies with the number of busy spaces (200 spaces × 4096 messages held 1.1 GB), so the
//! evictable part of every cache counts against one node-wide byte budget
//! ([`crate::EngineConfig::message_cache_bytes`]): once it is exceeded, each actor drops its
//! durable entries on its next command or idle check.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use spacecast_observability::Metrics;

use crate::model::{Message, MessageId, Seq};

/// The node-wide byte budget of message caches. Cheap to clone.
#[derive(Clone)]
pub(crate) struct CacheBudget {
    used: Arc<AtomicUsize>,
    limit: usize,
    metrics: Metrics,
}

impl CacheBudget {
    pub(crate) fn new(limit: usize, metrics: Metrics) -> Self {
        CacheBudget {
            used: Arc::default(),
            limit,
            metrics,
        }
    }

    fn add(&self, n: usize) {
        let now = self.used.fetch_add(n, Ordering::Relaxed) + n;
        self.metrics.message_cache_bytes.set(now as i64);
    }

    fn sub(&self, n: usize) {
        let now = self.used.fetch_sub(n, Ordering::Relaxed) - n;
        self.metrics.message_cache_bytes.set(now as i64);
    }

    /// Bytes held by every cache on this node.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn exceeded(&self) -> bool {
        self.used() > self.limit
    }
}

/// A cached message: `None` is a delete not yet known durable. `last_write` is the seq of the
/// event that last changed it; the entry is evictable once that seq is durable.
pub(crate) struct Cached {
    pub message: Option<Message>,
    pub last_write: Seq,
}

/// An estimate of the heap bytes a cached message holds (strings, likes, map slot), within a
/// small constant of the truth: enough to bound memory, cheap to compute.
fn footprint(c: &Cached) -> usize {
    const ENTRY: usize = 160; // map slot, `Cached`, `Message` fixed part
    ENTRY
        + c.message.as_ref().map_or(0, |m| {
            m.sender_id.len()
                + m.content.as_ref().map_or(0, String::len)
                + m.media_url.as_ref().map_or(0, String::len)
                + m.sender.user_id.len()
                + m.sender.username.len()
                + m.sender.profile_picture.len()
                + m.reaction_counts
                    .keys()
                    .map(|k| 48 + k.len())
                    .sum::<usize>()
                + m.actor_id.len()
                + m.msgtype.len()
                + json_size(m.body.as_ref())
                + json_size(m.metadata.as_ref())
                + m.mentions.iter().map(|u| 24 + u.len()).sum::<usize>()
                + m.media
                    .iter()
                    .map(|x| 160 + x.content_type.len())
                    .sum::<usize>()
                + m.gif.as_ref().map_or(0, |g| 64 + g.url.len())
                + m.redacted_reason.as_ref().map_or(0, String::len)
        })
}

/// About the heap a JSON object holds: its serialized size, doubled for the map's structure.
fn json_size(o: Option<&crate::model::JsonObject>) -> usize {
    o.map_or(0, |o| 2 * serde_json::to_vec(o).map_or(0, |v| v.len()))
}

/// One space actor's cache, accounted against the shared budget.
pub(crate) struct MessageCache {
    entries: HashMap<MessageId, (Cached, usize)>,
    /// Most entries kept once durable, whatever the budget.
    max_entries: usize,
    bytes: usize,
    budget: CacheBudget,
}

impl MessageCache {
    pub(crate) fn new(max_entries: usize, budget: CacheBudget) -> Self {
        MessageCache {
            entries: HashMap::new(),
            max_entries,
            bytes: 0,
            budget,
        }
    }

    pub(crate) fn get(&self, id: &MessageId) -> Option<&Cached> {
        self.entries.get(id).map(|(c, _)| c)
    }

    /// Every entry (in no order).
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Cached> {
        self.entries.values().map(|(c, _)| c)
    }

    pub(crate) fn insert(&mut self, id: MessageId, c: Cached) {
        let size = footprint(&c);
        self.bytes += size;
        self.budget.add(size);
        if let Some((_, old)) = self.entries.insert(id, (c, size)) {
            self.bytes -= old;
            self.budget.sub(old);
        }
    }

    /// Changes a cached message in place as the event `seq` (its reaction counts: O(1), no
    /// copy of the message). `false` if it is not cached, or cached as deleted.
    pub(crate) fn update(
        &mut self,
        id: &MessageId,
        seq: Seq,
        f: impl FnOnce(&mut Message),
    ) -> bool {
        let Some((c, _)) = self.entries.get_mut(id) else {
            return false;
        };
        let Some(m) = c.message.as_mut() else {
            return false;
        };
        f(m);
        c.last_write = seq;
        true
    }

    /// Drops every entry whose latest change is durable (`last_write <= durable`), when this
    /// cache holds more than its entry bound or the node's caches exceed their byte budget.
    pub(crate) fn evict_durable(&mut self, durable: Seq) {
        if self.entries.len() <= self.max_entries && !self.budget.exceeded() {
            return;
        }
        let mut freed = 0;
        self.entries.retain(|_, (c, size)| {
            let keep = c.last_write > durable;
            if !keep {
                freed += *size;
            }
            keep
        });
        self.bytes -= freed;
        self.budget.sub(freed);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The space actor's knowledge of individual reactions: which (message, key, user) are set, as
/// the actor last changed or read them. Like the message cache, an entry whose change is not yet
/// durable is the only up-to-date copy and stays; durable entries are dropped past
/// [`ReactionCache::CAP`] entries (the store answers for them: a point read).
#[derive(Default)]
pub(crate) struct ReactionCache {
    entries: HashMap<(MessageId, String, String), (Option<Seq>, Seq)>,
}

impl ReactionCache {
    const CAP: usize = 8192;

    /// `Some(state)` when known: `state` is the seq that added the reaction, `None` if unset.
    pub(crate) fn get(&self, message_id: MessageId, key: &str, user: &str) -> Option<Option<Seq>> {
        // One allocation per lookup; a toggle costs a few anyway (its event, its write).
        self.entries
            .get(&(message_id, key.to_owned(), user.to_owned()))
            .map(|(state, _)| *state)
    }

    /// Records the state of a reaction as of event `last_write` (the durable seq for a read).
    pub(crate) fn insert(
        &mut self,
        message_id: MessageId,
        key: &str,
        user: &str,
        state: Option<Seq>,
        last_write: Seq,
    ) {
        self.entries.insert(
            (message_id, key.to_owned(), user.to_owned()),
            (state, last_write),
        );
    }

    /// Forgets every reaction of a deleted message (its rows are deleted with it).
    pub(crate) fn forget_message(&mut self, message_id: MessageId) {
        self.entries.retain(|(m, _, _), _| *m != message_id);
    }

    /// Drops the entries known durable, once past the bound.
    pub(crate) fn evict_durable(&mut self, durable: Seq) {
        if self.entries.len() > Self::CAP {
            self.entries.retain(|_, (_, w)| *w > durable);
        }
    }
}

impl Drop for MessageCache {
    fn drop(&mut self) {
        self.budget.sub(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Timestamp, UserRef, new_id};

    fn message(content_len: usize) -> Message {
        Message {
            message_id: new_id(),
            space_id: new_id(),
            seq: 1,
            sender_id: "u".into(),
            content: Some("x".repeat(content_len)),
            media_url: None,
            media_type: None,
            word_count: 1,
            sender: UserRef {
                user_id: "u".into(),
                username: "u".into(),
                profile_picture: String::new(),
            },
            appreciation_count: 0,
            created_at: Timestamp(0),
            ..Default::default()
        }
    }

    #[test]
    fn caches_share_one_byte_budget_and_keep_what_is_not_durable() {
        let budget = CacheBudget::new(10_000, Metrics::new());
        let mut a = MessageCache::new(usize::MAX, budget.clone());
        let mut b = MessageCache::new(usize::MAX, budget.clone());
        for seq in 1..=4 {
            let m = message(1_000);
            a.insert(
                m.message_id,
                Cached {
                    message: Some(m),
                    last_write: seq,
                },
            );
        }
        assert!(budget.used() > 4_000 && budget.used() < 10_000);
        // Under budget: nothing is dropped, even what is durable.
        a.evict_durable(4);
        assert_eq!(a.len(), 4);
        // Another space pushes the node over its budget.
        for seq in 1..=7 {
            let m = message(1_000);
            b.insert(
                m.message_id,
                Cached {
                    message: Some(m),
                    last_write: seq,
                },
            );
        }
        assert!(budget.used() > 10_000);
        // Over budget: each cache drops what is durable and keeps changes not yet durable.
        a.evict_durable(2);
        assert_eq!(a.len(), 2, "seqs 3 and 4 are not durable yet");
        assert!(budget.used() > 10_000, "still over: 2 + 7 entries");
        b.evict_durable(7);
        assert_eq!(b.len(), 0);
        assert!(budget.used() < 10_000);
        drop(a);
        assert_eq!(budget.used(), 0, "a dropped cache returns its bytes");
    }

    #[test]
    fn replacing_an_entry_accounts_only_the_new_one() {
        let budget = CacheBudget::new(usize::MAX, Metrics::new());
        let mut c = MessageCache::new(usize::MAX, budget.clone());
        let m = message(500);
        let id = m.message_id;
        c.insert(
            id,
            Cached {
                message: Some(m.clone()),
                last_write: 1,
            },
        );
        let one = budget.used();
        c.insert(
            id,
            Cached {
                message: Some(m),
                last_write: 2,
            },
        );
        assert_eq!(budget.used(), one);
        c.insert(
            id,
            Cached {
                message: None,
                last_write: 3,
            },
        );
        assert!(budget.used() < one);
    }
}
