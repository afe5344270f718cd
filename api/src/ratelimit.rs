//! The per-user rate limits:
//! - sends ([`SendLimiter`]): `--send-rate-limit` messages per minute per user (default 60, `0` =
//!   unlimited), on every surface that creates a message (Space7's `POST /api/messages/…`, the
//!   native stream's `send`, the `/v1` sends);
//! - other writes ([`WriteLimiter`]): `--write-rate-limit` changes per minute per user (default
//!   300, `0` = unlimited) over every other request that makes the store write — reactions and
//!   Space7's appreciation toggle, edits, redactions, deletes, member changes, joins, space
//!   creation and settings. Each of those costs a durable write and a fan-out like a send, so
//!   without a limit one user could keep a space's writer (or the node's store) busy at no cost.
//!   It is a separate budget so that reacting never stops anyone from sending, and generous
//!   enough that a moderator cleaning up spam is not refused (a burst of 300, then 5 a second).
//!
//! The algorithm is governor's GCRA, one state per user: a user may send a burst of up to the
//! limit at once, then one more message every `60 s / limit`; so over any minute at most about
//! twice the limit, and over an hour the limit × 60. A refused send gets 429 `rate_limited` with
//! `Retry-After` (whole seconds, rounded up, at least 1: a client that waits that long is
//! admitted), or on a realtime connection an error frame with `retry_after`. Every send attempt
//! counts, valid or not: the check comes first, right after authentication (on REST before the
//! body is read), so a refused send costs no upload, no parsing and no store work.
//!
//! **In a cluster the limit is per node**: each node counts the sends it receives, so a user
//! whose requests a load balancer spreads over N nodes may send up to N × the limit. Route by
//! user (a consistent hash of the token's subject) to make it exact, or divide the limit by the
//! number of nodes. Counting on the space's owner node instead would be exact per space but not
//! per user, and would cost a bus round trip before every refusal.
//!
//! Memory: one small state (a `String` key and 8 bytes) per user who sent recently; a
//! housekeeping task ([`SendLimiter::spawn_housekeeping`]) drops users whose bucket is full again
//! every minute, so the map holds only the users of about the last minute. Keys are
//! authenticated user ids, so a client cannot mint keys without valid tokens.

use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use prometheus::{IntCounterVec, IntGauge};
use spacecast_observability::Metrics;
use tokio_util::sync::CancellationToken;
use warp::http::StatusCode;

use crate::error::{ApiError, retry_after_secs};

/// How often idle users' states are dropped.
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);

/// The send surfaces, as the `surface` label of `spacecast_sends_rate_limited_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// Space7's `POST /api/messages/:spaceId`.
    Space7,
    /// The `/v1` REST sends.
    V1,
    /// The native stream's `send` frame.
    Stream,
}

/// The writes other than sends, as the `kind` label of `spacecast_writes_rate_limited_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// A reaction set or removed, or Space7's appreciation toggled.
    Reaction,
    /// A message edited or redacted.
    Edit,
    /// A message deleted.
    Delete,
    /// A member added, changed or removed, or a space joined.
    Member,
    /// A space created, or its settings changed.
    Space,
    /// Notifications marked read (one or all).
    Notification,
    /// A read marker moved (`POST /v1/spaces/{id}/read`).
    Read,
}

type Limiter<C> =
    RateLimiter<String, DashMapStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One GCRA state per user: `per_minute` at once, then one every `60 s / per_minute`.
/// `check` is lock-free apart from one shard of a `DashMap`.
struct PerUser<C: Clock> {
    /// `None`: unlimited.
    limiter: Option<Limiter<C>>,
    clock: C,
}

impl<C: Clock + Clone> PerUser<C> {
    fn new(per_minute: u32, clock: C) -> Self {
        let limiter = NonZeroU32::new(per_minute).map(|n| {
            RateLimiter::new(
                Quota::per_minute(n),
                DashMapStateStore::default(),
                clock.clone(),
            )
        });
        PerUser { limiter, clock }
    }

    /// Takes one from `user_id`'s allowance, or says how long until there is one.
    fn take(&self, user_id: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&user_id.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets users whose allowance is whole again (their state equals a fresh one); the users
    /// still tracked.
    fn housekeeping(&self) -> Option<usize> {
        let limiter = self.limiter.as_ref()?;
        limiter.retain_recent();
        limiter.shrink_to_fit();
        Some(limiter.len())
    }

    fn is_unlimited(&self) -> bool {
        self.limiter.is_none()
    }
}

/// Runs `housekeeping` every [`HOUSEKEEPING_EVERY`] until `stop`.
fn spawn_housekeeping(stop: CancellationToken, housekeeping: impl Fn() + Send + 'static) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => housekeeping(),
            }
        }
    });
}

/// What a per-user limiter counts: the label of its refusals, the metrics it reports to, and what
/// a refusal says it was too many of.
pub trait Limited: Copy {
    /// The refusal's "Too many …".
    const NOUN: &'static str;
    fn label(self) -> &'static str;
    /// Refusals, by [`Limited::label`].
    fn refused(metrics: &Metrics) -> &IntCounterVec;
    /// Users the limiter tracks.
    fn tracked(metrics: &Metrics) -> &IntGauge;
}

impl Limited for Surface {
    const NOUN: &'static str = "messages";
    fn label(self) -> &'static str {
        match self {
            Surface::Space7 => "space7",
            Surface::V1 => "v1",
            Surface::Stream => "stream",
        }
    }
    fn refused(metrics: &Metrics) -> &IntCounterVec {
        &metrics.sends_rate_limited
    }
    fn tracked(metrics: &Metrics) -> &IntGauge {
        &metrics.rate_limit_users
    }
}

impl Limited for Write {
    const NOUN: &'static str = "changes";
    fn label(self) -> &'static str {
        match self {
            Write::Reaction => "reaction",
            Write::Edit => "edit",
            Write::Delete => "delete",
            Write::Member => "member",
            Write::Space => "space",
            Write::Notification => "notification",
            Write::Read => "read",
        }
    }
    fn refused(metrics: &Metrics) -> &IntCounterVec {
        &metrics.writes_rate_limited
    }
    fn tracked(metrics: &Metrics) -> &IntGauge {
        &metrics.write_rate_limit_users
    }
}

/// The node's per-user limiter of one kind of request ([`Surface`]: sends, [`Write`]: the other
/// writes).
pub struct UserLimiter<K: Limited, C: Clock = DefaultClock> {
    users: PerUser<C>,
    metrics: Metrics,
    kind: PhantomData<K>,
}

/// The per-user send limiter (`--send-rate-limit`).
pub type SendLimiter<C = DefaultClock> = UserLimiter<Surface, C>;
/// The per-user limiter of the writes that are not sends (`--write-rate-limit`).
pub type WriteLimiter<C = DefaultClock> = UserLimiter<Write, C>;

impl<K: Limited + Send + Sync + 'static> UserLimiter<K> {
    /// A limiter of `per_minute` requests per user per minute; 0 = unlimited.
    pub fn new(per_minute: u32, metrics: Metrics) -> Self {
        UserLimiter::with_clock(per_minute, DefaultClock::default(), metrics)
    }

    /// Drops the states of users whose bucket is full again, every [`HOUSEKEEPING_EVERY`],
    /// until `stop`.
    pub fn spawn_housekeeping(self: &Arc<Self>, stop: CancellationToken) {
        if !self.users.is_unlimited() {
            let me = Arc::clone(self);
            spawn_housekeeping(stop, move || me.housekeeping());
        }
    }
}

impl<K: Limited, C: Clock + Clone> UserLimiter<K, C> {
    fn with_clock(per_minute: u32, clock: C, metrics: Metrics) -> Self {
        UserLimiter {
            users: PerUser::new(per_minute, clock),
            metrics,
            kind: PhantomData,
        }
    }

    /// Takes one request from `user_id`'s allowance, or says how long until there is one.
    ///
    /// # Errors
    /// 429 `rate_limited` with `Retry-After` when the user is over the limit.
    pub fn check(&self, user_id: &str, kind: K) -> Result<(), ApiError> {
        self.users.take(user_id).map_err(|wait| {
            K::refused(&self.metrics)
                .with_label_values(&[kind.label()])
                .inc();
            refusal(wait, K::NOUN)
        })
    }

    fn housekeeping(&self) {
        if let Some(users) = self.users.housekeeping() {
            K::tracked(&self.metrics).set(users as i64);
        }
    }
}

/// A node-wide budget (one bucket, not per user): `burst` at once, then one per `period`. For
/// endpoints whose every call is costly whoever makes it (the console's dev login).
pub struct Budget<C: Clock = DefaultClock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>,
    clock: C,
}

impl Budget {
    /// # Panics
    /// If `period` is zero (a constant's bug, not an input).
    pub fn new(burst: NonZeroU32, period: Duration) -> Self {
        Budget::with_clock(burst, period, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Budget<C> {
    fn with_clock(burst: NonZeroU32, period: Duration, clock: C) -> Self {
        let quota = Quota::with_period(period)
            .expect("a non-zero refill period")
            .allow_burst(burst);
        Budget {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
        }
    }

    /// Takes one call from the budget, or says how long until one is available. A refused call
    /// costs nothing.
    ///
    /// # Errors
    /// The wait when the budget is spent.
    pub fn take(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// The 429 for a user who may send (or write) again after `wait`: `Retry-After` in whole
/// seconds, rounded up (a client that waits that long is admitted), at least 1.
fn refusal(wait: Duration, what: &str) -> ApiError {
    let secs = retry_after_secs(wait);
    ApiError {
        retry_after: Some(Duration::from_secs(secs)),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("Too many {what}; retry in {secs} s"),
        )
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn a_user_gets_a_burst_of_the_limit_then_one_per_interval() {
        let clock = FakeRelativeClock::default();
        let l = SendLimiter::with_clock(6, clock.clone(), Metrics::new());
        for i in 0..6 {
            assert!(l.check("ada", Surface::V1).is_ok(), "send {i} of the burst");
        }
        let e = l.check("ada", Surface::V1).expect_err("over the limit");
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.code, "rate_limited");
        // One send per 10 s replenishes: the first comes back 10 s after the burst.
        assert_eq!(e.retry_after, Some(Duration::from_secs(10)));
        // Another user is not affected.
        assert!(l.check("bob", Surface::V1).is_ok());
        clock.advance(Duration::from_millis(9_500));
        let e = l.check("ada", Surface::Stream).expect_err("still early");
        assert_eq!(e.retry_after, Some(Duration::from_secs(1)), "rounded up");
        clock.advance(Duration::from_millis(500));
        assert!(
            l.check("ada", Surface::Stream).is_ok(),
            "waited Retry-After"
        );
        assert!(
            l.check("ada", Surface::Stream).is_err(),
            "only one came back"
        );
        let text = l.metrics.render();
        assert!(
            text.contains("spacecast_sends_rate_limited_total{surface=\"v1\"} 1"),
            "{text}"
        );
        assert!(text.contains("spacecast_sends_rate_limited_total{surface=\"stream\"} 2"));
    }

    #[test]
    fn zero_is_unlimited() {
        let l = SendLimiter::with_clock(0, FakeRelativeClock::default(), Metrics::new());
        for _ in 0..10_000 {
            assert!(l.check("ada", Surface::Space7).is_ok());
        }
    }

    #[test]
    fn housekeeping_forgets_users_whose_allowance_is_whole_again() {
        let clock = FakeRelativeClock::default();
        let l = SendLimiter::with_clock(60, clock.clone(), Metrics::new());
        for u in ["a", "b", "c"] {
            l.check(u, Surface::V1).unwrap();
        }
        l.housekeeping();
        assert_eq!(l.users.housekeeping(), Some(3), "still counting");
        clock.advance(Duration::from_secs(2));
        l.housekeeping();
        assert_eq!(l.users.housekeeping(), Some(0), "all refilled");
        assert!(l.metrics.render().contains("spacecast_rate_limit_users 0"));
    }

    #[test]
    fn writes_have_their_own_budget_and_metric() {
        let clock = FakeRelativeClock::default();
        let metrics = Metrics::new();
        let sends = SendLimiter::with_clock(2, clock.clone(), metrics.clone());
        let writes = WriteLimiter::with_clock(3, clock.clone(), metrics.clone());
        for _ in 0..3 {
            writes.check("ada", Write::Reaction).unwrap();
        }
        let e = writes
            .check("ada", Write::Edit)
            .expect_err("over the write limit");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
        );
        assert_eq!(e.retry_after, Some(Duration::from_secs(20)));
        assert!(e.message.contains("changes"), "{}", e.message);
        // Reacting used none of the sends.
        sends.check("ada", Surface::V1).unwrap();
        sends.check("ada", Surface::V1).unwrap();
        assert!(sends.check("ada", Surface::V1).is_err());
        let text = metrics.render();
        assert!(
            text.contains("spacecast_writes_rate_limited_total{kind=\"edit\"} 1"),
            "{text}"
        );
        let unlimited = WriteLimiter::with_clock(0, clock, Metrics::new());
        for _ in 0..10_000 {
            unlimited.check("ada", Write::Member).unwrap();
        }
    }

    #[test]
    fn a_budget_gives_its_burst_then_one_per_period_and_says_when() {
        let clock = FakeRelativeClock::default();
        let b = Budget::with_clock(
            NonZeroU32::new(10).unwrap(),
            Duration::from_secs(6),
            clock.clone(),
        );
        for _ in 0..10 {
            b.take().unwrap();
        }
        assert_eq!(b.take(), Err(Duration::from_secs(6)));
        // A refused attempt costs nothing: one period later, one more.
        clock.advance(Duration::from_secs(6));
        b.take().unwrap();
        assert!(b.take().is_err());
        // Idle for long: back to the burst, never above it.
        clock.advance(Duration::from_secs(6000));
        for _ in 0..10 {
            b.take().unwrap();
        }
        assert!(b.take().is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_at_least_one() {
        let secs = |ms| {
            refusal(Duration::from_millis(ms), "messages")
                .retry_after
                .unwrap()
                .as_secs()
        };
        assert_eq!(secs(0), 1);
        assert_eq!(secs(1), 1);
        assert_eq!(secs(1000), 1);
        assert_eq!(secs(1001), 2);
        assert_eq!(secs(59_999), 60);
    }
}
