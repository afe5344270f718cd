//! The CQL schema: table names, DDL, and versioned, idempotent migrations.
//!
//! Tables are named by their key, in the style of Discord's message store: messages and events
//! are partitioned by `(space_id, bucket)` with `bucket = seq / BUCKET_SEQS`, so no partition
//! grows without bound (at most `BUCKET_SEQS` rows), and clustered by `seq`.
//!
//! | table | key | holds |
//! | --- | --- | --- |
//! | `schema_migrations` | version | applied migrations |
//! | `spaces_by_id` | space_id | the space record |
//! | `space_heads_by_id` | space_id | the head row: fencing epoch, head_seq, message_count, member_count, commit_no, and the last commit's pending existing-row changes; written only by lightweight transactions (see the module doc of [`super`]) |
//! | `space_counters_by_id` | space_id | schema v1's head_seq and counters; read only for a space not written since v2 (its head row is created from it, lazily) |
//! | `members_by_space` | (space_id), user_id | members and power levels |
//! | `spaces_by_user` | (user_id), space_id desc | a user's spaces, newest first |
//! | `events_by_space` | (space_id, bucket), seq asc | the event log, for resume |
//! | `messages_by_space` | (space_id, bucket), seq desc | messages, newest first; likes (the `appreciate` reactions, for Space7) and the other keys' counts as maps |
//! | `reactions_by_message` | (space_id, message_id), user_id, reaction_key | one row per reaction: the seq that added it; a user's keys on a message are one clustering prefix |
//! | `message_by_id` | message_id | where a message lives |
//! | `appreciated_messages_by_space` | (space_id), appreciation_count desc, seq desc | messages with ≥ 1 appreciation, for `most_appreciated` without scanning the space |
//! | `idempotency_keys_by_sender` | (space_id, sender_id, key) | reserved for idempotent sends (5-minute TTL) |
//! | `message_history_by_message` | (space_id, message_id), version desc | earlier versions of edited messages, newest first (v3) |
//! | `contributors_by_space` | (space_id), user_id | per-sender message and word counts of the space stats (v5; see [`crate::stats`]) |
//! | `public_spaces_by_bucket` | (bucket: 30 days of creation), space_id desc | public spaces, newest first (v6; see [`crate::discovery`]) |
//! | `spaces_by_tag` | (tag), space_id desc | public spaces per tag, newest first (v6) |
//! | `space_words_by_prefix` | (first two characters of the word), word, space_id | the search word index of public spaces (v6) |
//! | `space_activity_by_hour` | (UTC hour), space_id | a public space's activity count that hour, for trending (v6) |
//! | `user_space_stats` | (user_id), space_id | spaces a user created, and their messages, words and appreciations received per space, for profile stats (v6) |
//! | `notifications_by_user` | (user_id), notification_id | a user's notifications, at most the newest 200 (v7; see `cql/notifications.rs`) |
//! | `space_activity_by_id` | space_id | the space's top-level message count, deletions and last message for unread counts and the inbox (v8; see [`crate::unread`]) |
//!
//! Schema v8 also adds `read_seq` / `read_count` (a member's read marker) to `spaces_by_user`
//! and `top_level` (the space's top-level count as of the message) to `messages_by_space`; see
//! `unread.rs`.
//!
//! Schema v5 also adds `stats` (JSON `text`) to `space_heads_by_id`: the space's stats without
//! the per-contributor numbers (a bounded leaderboard only), written by the commit's head update.
//! A head row without it is a space whose stats were never committed.
//!
//! Schema v3 adds the native message fields to `messages_by_space` (JSON objects as `text`, ids
//! as `uuid`); rows written before it read them as null, i.e. the defaults. `ALTER TABLE … ADD`
//! has no `IF NOT EXISTS` on every server this supports, so [`super::migrate`] treats "the column
//! already exists" as done ([`is_add_column`]), which keeps every migration safe to run again.
//!
//! Only portable CQL is used (no counters, no Scylla- or Cassandra-only syntax; lightweight
//! transactions on the head row only, which both support), so the same DDL runs on Apache
//! Cassandra 5 and ScyllaDB. The keyspace's options are the one place they differ: on ScyllaDB
//! `tablets` are disabled (see [`keyspace_ddl`]).
//!
//! Every row a commit writes carries an explicit write timestamp far above wall-clock time
//! ([`super::write_ts`]); a row fixed by hand must be written `USING TIMESTAMP` above it, or it
//! loses to the existing one.
//!
//! Replication: the default is `SimpleStrategy` with one replica, for development. In production
//! give `--cql-replication "{'class': 'NetworkTopologyStrategy', '<dc>': 3}"` (three replicas per
//! datacenter, so `LOCAL_QUORUM` reads and writes survive one node down).

/// Seqs per partition of the message and event tables.
pub const BUCKET_SEQS: u64 = 10_000;

/// The bucket of a seq.
pub fn bucket(seq: u64) -> i64 {
    (seq / BUCKET_SEQS) as i64
}

/// The schema version this build reads and writes.
pub const CURRENT_VERSION: i32 = 8;

pub mod tables {
    pub const SCHEMA_MIGRATIONS: &str = "schema_migrations";
    pub const SPACES_BY_ID: &str = "spaces_by_id";
    pub const SPACE_HEADS_BY_ID: &str = "space_heads_by_id";
    pub const SPACE_COUNTERS_BY_ID: &str = "space_counters_by_id";
    pub const MEMBERS_BY_SPACE: &str = "members_by_space";
    pub const SPACES_BY_USER: &str = "spaces_by_user";
    pub const EVENTS_BY_SPACE: &str = "events_by_space";
    pub const MESSAGES_BY_SPACE: &str = "messages_by_space";
    pub const MESSAGE_BY_ID: &str = "message_by_id";
    pub const APPRECIATED_MESSAGES_BY_SPACE: &str = "appreciated_messages_by_space";
    pub const IDEMPOTENCY_KEYS_BY_SENDER: &str = "idempotency_keys_by_sender";
    pub const MESSAGE_HISTORY_BY_MESSAGE: &str = "message_history_by_message";
    pub const REACTIONS_BY_MESSAGE: &str = "reactions_by_message";
    pub const CONTRIBUTORS_BY_SPACE: &str = "contributors_by_space";
    pub const PUBLIC_SPACES_BY_BUCKET: &str = "public_spaces_by_bucket";
    pub const SPACES_BY_TAG: &str = "spaces_by_tag";
    pub const SPACE_WORDS_BY_PREFIX: &str = "space_words_by_prefix";
    pub const SPACE_ACTIVITY_BY_HOUR: &str = "space_activity_by_hour";
    pub const USER_SPACE_STATS: &str = "user_space_stats";
    pub const NOTIFICATIONS_BY_USER: &str = "notifications_by_user";
    pub const SPACE_ACTIVITY_BY_ID: &str = "space_activity_by_id";
}

/// One migration: its version, a description, and its statements (each idempotent).
pub struct Migration {
    pub version: i32,
    pub description: &'static str,
    pub statements: &'static [&'static str],
}

/// Every migration, in order. Statements use `{ks}` for the keyspace name.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "spaces, members, event log, messages, appreciation index, idempotency keys",
        statements: &[
            "CREATE TABLE IF NOT EXISTS {ks}.spaces_by_id (
            space_id uuid PRIMARY KEY,
            title text, description text, visibility text, posting_permission text,
            creator_id text, creator_username text, creator_picture text,
            tags list<text>, created_at timestamp)",
            "CREATE TABLE IF NOT EXISTS {ks}.space_counters_by_id (
            space_id uuid PRIMARY KEY,
            head_seq bigint, message_count bigint, member_count bigint)",
            "CREATE TABLE IF NOT EXISTS {ks}.members_by_space (
            space_id uuid, user_id text,
            username text, profile_picture text, power_level int, joined_at timestamp,
            PRIMARY KEY (space_id, user_id))",
            "CREATE TABLE IF NOT EXISTS {ks}.spaces_by_user (
            user_id text, space_id uuid,
            PRIMARY KEY (user_id, space_id)) WITH CLUSTERING ORDER BY (space_id DESC)",
            "CREATE TABLE IF NOT EXISTS {ks}.events_by_space (
            space_id uuid, bucket bigint, seq bigint,
            event text,
            PRIMARY KEY ((space_id, bucket), seq)) WITH CLUSTERING ORDER BY (seq ASC)",
            "CREATE TABLE IF NOT EXISTS {ks}.messages_by_space (
            space_id uuid, bucket bigint, seq bigint,
            message_id uuid, sender_id text, sender_username text, sender_picture text,
            content text, media_url text, media_type text, word_count int,
            appreciation_count int, likes map<text, bigint>, created_at timestamp,
            PRIMARY KEY ((space_id, bucket), seq)) WITH CLUSTERING ORDER BY (seq DESC)",
            "CREATE TABLE IF NOT EXISTS {ks}.message_by_id (
            message_id uuid PRIMARY KEY, space_id uuid, seq bigint)",
            "CREATE TABLE IF NOT EXISTS {ks}.appreciated_messages_by_space (
            space_id uuid, appreciation_count int, seq bigint, message_id uuid,
            PRIMARY KEY (space_id, appreciation_count, seq))
            WITH CLUSTERING ORDER BY (appreciation_count DESC, seq DESC)",
            "CREATE TABLE IF NOT EXISTS {ks}.idempotency_keys_by_sender (
            space_id uuid, sender_id text, idempotency_key text, message_id uuid,
            PRIMARY KEY ((space_id, sender_id, idempotency_key)))
            WITH default_time_to_live = 300",
            "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (
            version int PRIMARY KEY, description text, applied_at timestamp)",
        ],
    },
    // Spaces of v1 keep their `space_counters_by_id` row; each gets its head row from it the
    // first time it is claimed or committed (`IF NOT EXISTS`), so this migration copies nothing
    // and runs in constant time whatever the data.
    Migration {
        version: 2,
        description: "fenced head row per space: epoch, head, counters, commit number, pending changes",
        statements: &["CREATE TABLE IF NOT EXISTS {ks}.space_heads_by_id (
            space_id uuid PRIMARY KEY,
            epoch bigint, head_seq bigint, message_count bigint, member_count bigint,
            commit_no bigint, pending_no bigint, pending blob)"],
    },
    // Each column on its own (ScyllaDB's ALTER adds one at a time); see `is_add_column`.
    Migration {
        version: 3,
        description: "native message fields on messages_by_space; message history",
        statements: &[
            "ALTER TABLE {ks}.messages_by_space ADD actor_id text",
            "ALTER TABLE {ks}.messages_by_space ADD msgtype text",
            "ALTER TABLE {ks}.messages_by_space ADD body text",
            "ALTER TABLE {ks}.messages_by_space ADD parent_id uuid",
            "ALTER TABLE {ks}.messages_by_space ADD quoted_message_id uuid",
            "ALTER TABLE {ks}.messages_by_space ADD mentions list<text>",
            "ALTER TABLE {ks}.messages_by_space ADD metadata text",
            "ALTER TABLE {ks}.messages_by_space ADD gif text",
            "ALTER TABLE {ks}.messages_by_space ADD media text",
            "ALTER TABLE {ks}.messages_by_space ADD reply_count int",
            "ALTER TABLE {ks}.messages_by_space ADD edited_at timestamp",
            "ALTER TABLE {ks}.messages_by_space ADD redacted boolean",
            "ALTER TABLE {ks}.messages_by_space ADD redacted_by text",
            "ALTER TABLE {ks}.messages_by_space ADD redacted_reason text",
            "CREATE TABLE IF NOT EXISTS {ks}.message_history_by_message (
            space_id uuid, message_id uuid, version bigint,
            content text, body text, valid_from timestamp, replaced_at timestamp,
            PRIMARY KEY ((space_id, message_id), version)) WITH CLUSTERING ORDER BY (version DESC)",
        ],
    },
    Migration {
        version: 4,
        description: "reactions: one row per (message, key, user); per-key counts on the message",
        // Then `migrate` copies the likes of older messages to reaction rows (see
        // `cql::migrate_likes`).
        statements: &[
            "CREATE TABLE IF NOT EXISTS {ks}.reactions_by_message (
            space_id uuid, message_id uuid, reaction_key text, user_id text, seq bigint,
            PRIMARY KEY ((space_id, message_id), user_id, reaction_key))",
            "ALTER TABLE {ks}.messages_by_space ADD reaction_counts map<text, int>",
        ],
    },
    // Spaces of v4 get their stats when next claimed (computed once from their messages).
    Migration {
        version: 5,
        description: "space stats: the head row's stats column, contributor rows",
        statements: &[
            "ALTER TABLE {ks}.space_heads_by_id ADD stats text",
            "CREATE TABLE IF NOT EXISTS {ks}.contributors_by_space (
            space_id uuid, user_id text, messages bigint, word_count bigint,
            PRIMARY KEY (space_id, user_id))",
        ],
    },
    // disc (issue 12). Spaces created before it get their index entries and users' numbers
    // when next claimed (see `crate::stats::load_or_compute_for`).
    Migration {
        version: 6,
        description: "discovery: public spaces, tags, search words, hourly activity; user stats",
        statements: &[
            "CREATE TABLE IF NOT EXISTS {ks}.public_spaces_by_bucket (
            bucket int, space_id uuid,
            PRIMARY KEY (bucket, space_id)) WITH CLUSTERING ORDER BY (space_id DESC)",
            "CREATE TABLE IF NOT EXISTS {ks}.spaces_by_tag (
            tag text, space_id uuid,
            PRIMARY KEY (tag, space_id)) WITH CLUSTERING ORDER BY (space_id DESC)",
            "CREATE TABLE IF NOT EXISTS {ks}.space_words_by_prefix (
            prefix text, word text, space_id uuid, in_title boolean,
            PRIMARY KEY (prefix, word, space_id))",
            "CREATE TABLE IF NOT EXISTS {ks}.space_activity_by_hour (
            hour bigint, space_id uuid, count bigint,
            PRIMARY KEY (hour, space_id))",
            "CREATE TABLE IF NOT EXISTS {ks}.user_space_stats (
            user_id text, space_id uuid, created boolean,
            messages bigint, word_count bigint, appreciations bigint,
            PRIMARY KEY (user_id, space_id))",
        ],
    },
    Migration {
        version: 7,
        description: "notifications: one partition per user",
        statements: &["CREATE TABLE IF NOT EXISTS {ks}.notifications_by_user (
            user_id text, notification_id uuid, num_id bigint, kind text, message text,
            reference_id text, space_id uuid, actor_id text, actor_username text,
            actor_picture text, created_at bigint, is_read boolean,
            PRIMARY KEY (user_id, notification_id))"],
    },
    // Issue 12, unread. Spaces and members written before it start counting when next written
    // (see `crate::unread`).
    Migration {
        version: 8,
        description: "read markers, top-level counts and space activity",
        statements: &[
            "ALTER TABLE {ks}.spaces_by_user ADD read_seq bigint",
            "ALTER TABLE {ks}.spaces_by_user ADD read_count bigint",
            "ALTER TABLE {ks}.messages_by_space ADD top_level bigint",
            "CREATE TABLE IF NOT EXISTS {ks}.space_activity_by_id (
            space_id uuid PRIMARY KEY, activity text)",
        ],
    },
];

/// Whether `stmt` adds a column (`ALTER TABLE … ADD`): such a statement that fails because the
/// column exists already (a migration run again, or two runs at once) has done its work.
pub fn is_add_column(stmt: &str) -> bool {
    let s = stmt.trim_start().to_ascii_uppercase();
    s.starts_with("ALTER TABLE") && s.contains(" ADD ")
}

/// Whether a server's error for an `ALTER TABLE … ADD` says the column exists already (Cassandra
/// and ScyllaDB: "… conflicts with an existing column"; older: "already exists").
pub fn column_exists_error(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("conflicts with an existing column") || t.contains("already exist")
}

/// `CREATE KEYSPACE IF NOT EXISTS`, with the replication given and, on ScyllaDB, tablets off
/// (tablet keyspaces lacked features this schema may need, such as LWT for fencing).
pub fn keyspace_ddl(keyspace: &str, replication: &str, scylla: bool) -> String {
    let mut ddl =
        format!("CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}");
    if scylla {
        ddl.push_str(" AND tablets = {'enabled': false}");
    }
    ddl
}

/// Whether `name` is a safe CQL identifier for a keyspace (it is interpolated into DDL).
pub fn valid_keyspace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_partitions() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(BUCKET_SEQS - 1), 0);
        assert_eq!(bucket(BUCKET_SEQS), 1);
    }

    #[test]
    fn keyspace_names_are_checked_before_use_in_ddl() {
        assert!(valid_keyspace("spacecast"));
        assert!(valid_keyspace("t_0a1b"));
        assert!(!valid_keyspace("Spacecast"));
        assert!(!valid_keyspace("x; DROP KEYSPACE y"));
        assert!(!valid_keyspace(""));
        assert!(
            keyspace_ddl(
                "k",
                "{'class': 'SimpleStrategy', 'replication_factor': 1}",
                true
            )
            .ends_with("AND tablets = {'enabled': false}")
        );
    }

    #[test]
    fn migrations_are_ordered_and_end_at_the_current_version() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(CURRENT_VERSION));
        // Every statement can run again: creations say so, column additions are tolerated.
        assert!(
            MIGRATIONS
                .iter()
                .flat_map(|m| m.statements)
                .all(|s| s.contains("IF NOT EXISTS") || is_add_column(s))
        );
        assert!(!is_add_column(
            "CREATE TABLE IF NOT EXISTS k.t (a int PRIMARY KEY)"
        ));
        assert!(column_exists_error(
            "Invalid column name actor_id because it conflicts with an existing column"
        ));
        assert!(!column_exists_error("Unknown keyspace k"));
    }
}
