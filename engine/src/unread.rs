//! Read markers, unread counts and the inbox (issue 12).
//!
//! # The count
//! Unread means **top-level messages (not thread replies) created after the reader's marker**.
//! Counting them per request would read messages; instead every space keeps, in its
//! [`SpaceActivity`], a monotonic count `top_level` of the top-level messages created in it
//! (never decremented), and every member's [`ReadMarker`] stores, beside its `seq`, the value
//! that count had at that seq. Unread is then `top_level - marker.count`: O(1) per space, no
//! message read.
//!
//! # From a seq (or a message) to a count
//! A mark names a seq (or a message, i.e. its creation seq `s`); its count is the number of
//! top-level messages created at or before `s`. The space actor knows it without I/O when `s`
//! is at or past the last message created (`top_level` itself), or within the messages it
//! created since it started (a bounded ring of `(seq, count)`, at least as long as the space's
//! in-flight limit). Below that it asks the store ([`crate::store::Store::top_level_at`]), which
//! records with every created message the count as of it (embedded: an index keyed by seq, kept
//! forever; CQL: a column of the message row, so a deleted message takes its entry with it and
//! the read goes on to the next older message). The store's answer is never above the exact
//! count; a marker keeps the larger of its count and the new one, so it never moves back.
//!
//! # Deletions
//! A deleted top-level message was counted when it was created. The space remembers the
//! creation seqs of the last [`MAX_DELETED`] deleted top-level messages and subtracts those
//! after a reader's marker, so a message deleted before you read it stops counting. Past that
//! bound (more than 64 deletions since your marker), older deletions count again until you read
//! past them: the count errs high, never low.
//!
//! # Who moves a marker
//! Only forward, and only by the space's actor (so concurrent marks from two sessions
//! serialise): an explicit mark (`POST /v1/spaces/{id}/read`), the member's own send (posting
//! marks the space read, as Slack and Discord do; a thread reply too, and a send on behalf moves
//! the caller's marker, not the sender's), and becoming a member (joining or being added sets it
//! at the head: nothing is unread on join). Leaving deletes it. A mark writes no event and takes
//! no seq; it rides the space's group commit.
//!
//! # Before this existed
//! Spaces and members written before read markers had no counters: a space counts the top-level
//! messages created since its first load by a version with markers, and a member without a
//! marker reads as one at seq 0 (everything counted is unread) until their first mark.

use serde::{Deserialize, Serialize};

use crate::model::{Message, MessageId, Seq, Timestamp, UserRef};

/// How many deleted top-level messages a space remembers (see the module doc).
pub const MAX_DELETED: usize = 64;

/// Most empty (or fully deleted) message partitions [`crate::store::Store::top_level_at`] walks
/// back through before it gives up (CQL; the embedded store's index has no gaps).
pub const MAX_LOOKBACK_PARTITIONS: u64 = 16;

/// Characters (not bytes) of a last message's preview.
pub const PREVIEW_CHARS: usize = 100;

/// A member's read position in one space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMarker {
    /// The last seq the member has read (0: nothing).
    pub seq: Seq,
    /// Top-level messages created at or before `seq` (the space's `top_level` then).
    pub count: u64,
}

/// The newest top-level message of a space, as the inbox shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastMessage {
    pub message_id: MessageId,
    pub seq: Seq,
    pub sender: UserRef,
    /// At most [`PREVIEW_CHARS`] characters; see [`preview`].
    pub preview: String,
    pub created_at: Timestamp,
}

impl LastMessage {
    pub fn of(m: &Message) -> Self {
        LastMessage {
            message_id: m.message_id,
            seq: m.seq,
            sender: m.sender.clone(),
            preview: preview(m),
            created_at: m.created_at,
        }
    }
}

/// What a space keeps for unread counts and the inbox, beside its counters. Written by its actor
/// in the commit that changes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpaceActivity {
    /// Top-level messages created (counted since `since`), never decremented.
    pub top_level: u64,
    /// The seq of the last message created (top-level or reply; 0: none counted).
    #[serde(default)]
    pub last_created: Seq,
    /// Counting started after this seq (0, unless the space predates read markers).
    #[serde(default)]
    pub since: Seq,
    /// Creation seqs of the last deleted top-level messages, ascending, at most [`MAX_DELETED`].
    #[serde(default)]
    pub deleted: Vec<Seq>,
    /// The newest top-level message that exists and is not redacted, if known.
    #[serde(default)]
    pub last_message: Option<LastMessage>,
}

impl SpaceActivity {
    /// Unread top-level messages for `marker` (`None`: never marked, i.e. at seq 0).
    pub fn unread(&self, marker: Option<ReadMarker>) -> u64 {
        let m = marker.unwrap_or_default();
        let gone = self.deleted.iter().filter(|&&s| s > m.seq).count() as u64;
        self.top_level.saturating_sub(m.count).saturating_sub(gone)
    }

    /// Counts a message created at `seq`: `top_level` is the count as of it afterwards.
    pub fn created(&mut self, seq: Seq, top_level: bool) {
        if top_level {
            self.top_level += 1;
        }
        self.last_created = seq;
    }

    /// Remembers the deletion of a top-level message created at `seq` (one counted here).
    pub fn deleted(&mut self, seq: Seq) {
        if seq <= self.since {
            return;
        }
        let at = self.deleted.partition_point(|&s| s < seq);
        if self.deleted.get(at) == Some(&seq) {
            return;
        }
        self.deleted.insert(at, seq);
        if self.deleted.len() > MAX_DELETED {
            self.deleted.remove(0);
        }
    }

    /// When the space was last active: its last message's time, else `created_at`.
    pub fn active_at(&self, created_at: Timestamp) -> Timestamp {
        self.last_message
            .as_ref()
            .map_or(created_at, |m| m.created_at)
    }
}

/// A message's preview: its text, else what it carries, cut to [`PREVIEW_CHARS`] characters (by
/// chars, never inside a UTF-8 sequence). A media-only message names its media by kind
/// (`[image]`, `[video]`, `[audio]`, else `[file]`), a GIF is `[GIF]`, a body-only message
/// `[<msgtype>]`; a redacted one is empty.
pub fn preview(m: &Message) -> String {
    if m.redacted {
        return String::new();
    }
    let text = m.content.as_deref().map(str::trim).unwrap_or("");
    let full = if !text.is_empty() {
        text.to_owned()
    } else if let Some(kind) = media_kind(m) {
        format!("[{kind}]")
    } else if m.gif.is_some() {
        "[GIF]".to_owned()
    } else {
        format!("[{}]", m.msgtype)
    };
    truncate_chars(&full, PREVIEW_CHARS)
}

fn media_kind(m: &Message) -> Option<&'static str> {
    if let Some(t) = m.media_type {
        return Some(match t {
            crate::model::MediaType::Image => "image",
            crate::model::MediaType::Video => "video",
            crate::model::MediaType::Audio => "audio",
        });
    }
    let first = m.media.first()?;
    let top = first.content_type.split('/').next().unwrap_or("");
    Some(match top {
        "image" => "image",
        "video" => "video",
        "audio" => "audio",
        _ => "file",
    })
}

/// The first `n` characters of `s`.
pub fn truncate_chars(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// One of a user's spaces, as the inbox and the unread counts read it: the space, the
/// membership, the member's marker and the space's activity (`None`: never written).
#[derive(Clone, Debug, PartialEq)]
pub struct Membership {
    pub view: crate::model::SpaceView,
    pub member: crate::model::Member,
    pub marker: Option<ReadMarker>,
    pub activity: Option<SpaceActivity>,
}

impl Membership {
    pub fn unread(&self) -> u64 {
        self.activity.as_ref().map_or(0, |a| a.unread(self.marker))
    }

    pub fn last_read_seq(&self) -> Seq {
        self.marker.map_or(0, |m| m.seq)
    }

    pub fn last_message(&self) -> Option<&LastMessage> {
        self.activity.as_ref().and_then(|a| a.last_message.as_ref())
    }

    pub fn active_at(&self) -> Timestamp {
        let created = self.view.space.created_at;
        self.activity
            .as_ref()
            .map_or(created, |a| a.active_at(created))
    }
}

impl crate::Engine {
    /// Every space `user_id` is a member of, with the membership, the member's read marker and
    /// the space's activity (unread count: [`Membership::unread`]), newest space first. As
    /// durable: every command acknowledged before the call is in it. O(spaces of the user): one
    /// read of the user's membership index plus point reads per space; never reads a message.
    ///
    /// # Errors
    /// `StoreUnavailable`.
    pub async fn memberships(&self, user_id: &str) -> crate::Result<Vec<Membership>> {
        self.store.memberships_of_user(user_id).await
    }
}

/// A marker an actor answers (`POST /v1/spaces/{id}/read`): the caller's marker after the mark
/// and their unread count then, as of the commands sequenced so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadState {
    pub last_read_seq: Seq,
    pub unread: u64,
    /// Whether the mark moved the marker (false: it was at or past it already; nothing written).
    pub changed: bool,
}

/// What a mark names: a seq (clamped to the head), or a message of the space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadTarget {
    Seq(Seq),
    Message(MessageId),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_is_the_top_level_count_after_the_marker_minus_remembered_deletions() {
        let mut a = SpaceActivity::default();
        for seq in 1..=5 {
            a.created(seq, seq != 3);
        }
        assert_eq!(a.top_level, 4);
        assert_eq!(a.unread(None), 4);
        let m = ReadMarker { seq: 2, count: 2 };
        assert_eq!(a.unread(Some(m)), 2);
        a.deleted(4);
        assert_eq!(a.unread(Some(m)), 1);
        a.deleted(1);
        assert_eq!(a.unread(Some(m)), 1, "a deletion before the marker is read");
        assert_eq!(a.unread(Some(ReadMarker { seq: 5, count: 4 })), 0);
    }

    #[test]
    fn remembered_deletions_are_bounded_and_older_ones_count_again() {
        let mut a = SpaceActivity::default();
        for seq in 1..=(MAX_DELETED as u64 + 10) {
            a.created(seq, true);
            a.deleted(seq);
        }
        assert_eq!(a.deleted.len(), MAX_DELETED);
        assert_eq!(a.unread(None), 10, "errs high, never low");
    }

    #[test]
    fn a_deletion_of_a_message_older_than_the_counting_is_ignored() {
        let mut a = SpaceActivity {
            since: 10,
            ..Default::default()
        };
        a.created(11, true);
        a.deleted(7);
        assert_eq!(a.unread(None), 1);
    }

    #[test]
    fn previews_cut_by_chars_and_name_media() {
        let long = "é".repeat(150);
        let m = Message {
            content: Some(long),
            ..Default::default()
        };
        let p = preview(&m);
        assert_eq!(p.chars().count(), PREVIEW_CHARS);
        assert_eq!(p.len(), PREVIEW_CHARS * 2);
        let media = Message {
            media: vec![crate::model::MediaItem {
                content_type: "image/png".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(preview(&media), "[image]");
        let pdf = Message {
            media: vec![crate::model::MediaItem {
                content_type: "application/pdf".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(preview(&pdf), "[file]");
        assert_eq!(truncate_chars("a😀b", 2), "a😀");
    }
}
