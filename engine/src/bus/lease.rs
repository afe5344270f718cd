//! Ownership leases: at most one node believes it owns a space at any instant, by its own clock.
//!
//! A lease is a key in a compare-and-set key-value store (NATS JetStream KV in a cluster) whose
//! value is the owner's node id. The store forgets a key `ttl` after its last write. The owner:
//! - takes the lease with a create-if-absent write;
//! - renews it every `ttl / 3` with a compare-and-set on the revision it last wrote;
//! - considers it valid until `sent + ttl - margin`, where `sent` is when it *sent* the last
//!   successful write (before the store received it, so before the store's own expiry clock
//!   started): by the time another node can create the key, the old owner has already stopped
//!   trusting its lease, unless its process was paused — which the store's fencing epoch covers
//!   (see `docs/cluster.md`);
//! - loses it at once when a renewal finds another revision (someone else holds the key now),
//!   and in any case when the validity deadline passes without a successful renewal (the KV
//!   is unreachable, the node is partitioned).
//!
//! Everything here is plain logic over two small traits, [`LeaseKv`] and [`Clock`], so it is unit
//! tested with a fake store and a fake clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::model::SpaceId;

/// Why a key-value write did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// The key exists (create) or has another revision (update, delete).
    Conflict,
    /// The store could not be reached or did not answer; the write may or may not have happened.
    Unavailable(String),
}

/// The compare-and-set store leases live in.
#[async_trait]
pub trait LeaseKv: Send + Sync + 'static {
    /// Writes `value` under `key` if the key does not exist; the new revision.
    async fn create(&self, key: &str, value: &[u8]) -> Result<u64, KvError>;
    /// Writes `value` under `key` if its current revision is `revision`; the new revision.
    async fn update(&self, key: &str, value: &[u8], revision: u64) -> Result<u64, KvError>;
    /// The current value and revision of `key`, if it exists.
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, KvError>;
    /// Removes `key` if its current revision is `revision`.
    async fn delete(&self, key: &str, revision: u64) -> Result<(), KvError>;
}

/// A monotonic clock: time since some fixed origin.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Duration;
}

/// The process's monotonic clock.
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Lease timing.
#[derive(Clone, Copy, Debug)]
pub struct LeaseTiming {
    /// How long the store keeps a key after its last write.
    pub ttl: Duration,
    /// Subtracted from the validity an owner grants itself, for scheduling delays between taking
    /// the time and checking it, and clock-rate differences between node and store.
    pub margin: Duration,
}

impl LeaseTiming {
    /// Default: failover within about 1.5 s of an owner's death.
    pub const DEFAULT: LeaseTiming = LeaseTiming {
        ttl: Duration::from_millis(1500),
        margin: Duration::from_millis(250),
    };

    /// How often an owner renews.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// The timing for a given TTL: the margin is a sixth of it, at most 250 ms.
    pub fn with_ttl(ttl: Duration) -> Self {
        LeaseTiming {
            ttl,
            margin: (ttl / 6).min(Duration::from_millis(250)),
        }
    }
}

/// The key of a space's lease.
pub fn lease_key(space_id: SpaceId) -> String {
    format!("space.{space_id}")
}

/// A lease this node holds (or held: see [`Lease::is_valid`]). Shared by the space's writer,
/// which checks it before every commit, and the renewal loop.
pub struct Lease {
    pub space_id: SpaceId,
    revision: AtomicU64,
    /// Clock reading (nanoseconds) until which the lease may be trusted.
    valid_until: AtomicU64,
    lost: AtomicBool,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("space_id", &self.space_id)
            .field("revision", &self.revision())
            .field("valid", &self.is_valid())
            .finish()
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

impl Lease {
    /// A lease that is always valid: single-node mode, where nothing else can own a space.
    pub fn local(space_id: SpaceId) -> Arc<Lease> {
        Arc::new(Lease {
            space_id,
            revision: AtomicU64::new(0),
            valid_until: AtomicU64::new(u64::MAX),
            lost: AtomicBool::new(false),
            clock: Arc::new(SystemClock::default()),
        })
    }

    fn new(
        space_id: SpaceId,
        revision: u64,
        sent: Duration,
        timing: LeaseTiming,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Lease {
            space_id,
            revision: AtomicU64::new(revision),
            valid_until: AtomicU64::new(nanos(sent + timing.ttl.saturating_sub(timing.margin))),
            lost: AtomicBool::new(false),
            clock,
        }
    }

    /// Whether this node may still act as the owner: not lost, and not past its deadline.
    pub fn is_valid(&self) -> bool {
        !self.lost.load(Ordering::Acquire)
            && nanos(self.clock.now()) < self.valid_until.load(Ordering::Acquire)
    }

    /// Whether it was lost for good (another node holds the key, or it was released).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// The revision this node last wrote.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Marks the lease lost; it is never valid again.
    pub fn lose(&self) {
        self.lost.store(true, Ordering::Release);
    }
}

/// What renewing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// Renewed; valid for another TTL.
    Renewed,
    /// The store did not answer; the lease stays valid until its deadline, and is lost after.
    Unconfirmed,
    /// Another node holds the key now, or the deadline passed: lost for good.
    Lost,
}

/// Takes, renews and releases leases for one node.
pub struct Leases<K: ?Sized> {
    kv: Arc<K>,
    node_id: String,
    timing: LeaseTiming,
    clock: Arc<dyn Clock>,
}

impl<K: LeaseKv + ?Sized> Leases<K> {
    pub fn new(kv: Arc<K>, node_id: String, timing: LeaseTiming, clock: Arc<dyn Clock>) -> Self {
        Leases {
            kv,
            node_id,
            timing,
            clock,
        }
    }

    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    /// Tries to become the space's owner. `Ok(None)`: another node holds it.
    ///
    /// A key that names this node but that this process does not hold was left by an earlier
    /// process with the same node id (a restart within the TTL): it is taken over by
    /// compare-and-set. The store's fencing epoch keeps that safe even if the earlier process
    /// were somehow still alive.
    ///
    /// # Errors
    /// The store is unavailable.
    pub async fn acquire(&self, space_id: SpaceId) -> Result<Option<Arc<Lease>>, KvError> {
        let key = lease_key(space_id);
        let sent = self.clock.now();
        match self.kv.create(&key, self.node_id.as_bytes()).await {
            Ok(rev) => return Ok(Some(self.granted(space_id, rev, sent))),
            Err(KvError::Conflict) => {}
            Err(e) => return Err(e),
        }
        let Some((holder, rev)) = self.kv.get(&key).await? else {
            // Expired between the two calls: the next attempt creates it.
            return Ok(None);
        };
        if holder != self.node_id.as_bytes() {
            return Ok(None);
        }
        let sent = self.clock.now();
        match self.kv.update(&key, self.node_id.as_bytes(), rev).await {
            Ok(rev) => Ok(Some(self.granted(space_id, rev, sent))),
            Err(KvError::Conflict) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn granted(&self, space_id: SpaceId, rev: u64, sent: Duration) -> Arc<Lease> {
        Arc::new(Lease::new(
            space_id,
            rev,
            sent,
            self.timing,
            self.clock.clone(),
        ))
    }

    /// Extends a held lease by one TTL from now.
    pub async fn renew(&self, lease: &Lease) -> Renewal {
        if lease.is_lost() {
            return Renewal::Lost;
        }
        if !lease.is_valid() {
            lease.lose();
            return Renewal::Lost;
        }
        let key = lease_key(lease.space_id);
        let sent = self.clock.now();
        match self
            .kv
            .update(&key, self.node_id.as_bytes(), lease.revision())
            .await
        {
            Ok(rev) => {
                if lease.is_lost() {
                    return Renewal::Lost;
                }
                lease.revision.store(rev, Ordering::Release);
                let until = nanos(sent + self.timing.ttl.saturating_sub(self.timing.margin));
                lease.valid_until.fetch_max(until, Ordering::AcqRel);
                Renewal::Renewed
            }
            Err(KvError::Conflict) => {
                lease.lose();
                Renewal::Lost
            }
            Err(KvError::Unavailable(_)) => {
                if lease.is_valid() {
                    Renewal::Unconfirmed
                } else {
                    lease.lose();
                    Renewal::Lost
                }
            }
        }
    }

    /// Gives the lease up: it is invalid at once here, and the key is removed so another node
    /// can take the space without waiting for the TTL (if the store is unreachable, it expires).
    pub async fn release(&self, lease: &Lease) {
        lease.lose();
        let _ = self
            .kv
            .delete(&lease_key(lease.space_id), lease.revision())
            .await;
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A fake clock and a fake KV store with TTL expiry, for tests of the lease logic.
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    pub struct FakeClock(Mutex<Duration>);

    impl FakeClock {
        pub fn advance(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            *self.0.lock().unwrap()
        }
    }

    type Entry = (Vec<u8>, u64, Duration);

    /// Keys expire `ttl` after their last write, by the store's clock (the same fake clock).
    pub struct FakeKv {
        pub clock: Arc<FakeClock>,
        pub ttl: Duration,
        pub down: AtomicBool,
        /// The last revision given out, and per key: value, revision, when written.
        state: Mutex<(u64, HashMap<String, Entry>)>,
    }

    impl FakeKv {
        pub fn new(clock: Arc<FakeClock>, ttl: Duration) -> Self {
            FakeKv {
                clock,
                ttl,
                down: AtomicBool::new(false),
                state: Mutex::default(),
            }
        }

        fn live(&self, key: &str) -> Option<(Vec<u8>, u64)> {
            let now = self.clock.now();
            let st = self.state.lock().unwrap();
            st.1.get(key)
                .filter(|(_, _, written)| now < *written + self.ttl)
                .map(|(v, r, _)| (v.clone(), *r))
        }

        fn check(&self) -> Result<(), KvError> {
            if self.down.load(Ordering::Acquire) {
                Err(KvError::Unavailable("down".into()))
            } else {
                Ok(())
            }
        }

        fn write(&self, key: &str, value: &[u8]) -> u64 {
            let now = self.clock.now();
            let mut st = self.state.lock().unwrap();
            st.0 += 1;
            let rev = st.0;
            st.1.insert(key.to_owned(), (value.to_vec(), rev, now));
            rev
        }
    }

    #[async_trait]
    impl LeaseKv for FakeKv {
        async fn create(&self, key: &str, value: &[u8]) -> Result<u64, KvError> {
            self.check()?;
            if self.live(key).is_some() {
                return Err(KvError::Conflict);
            }
            Ok(self.write(key, value))
        }
        async fn update(&self, key: &str, value: &[u8], revision: u64) -> Result<u64, KvError> {
            self.check()?;
            match self.live(key) {
                Some((_, r)) if r == revision => Ok(self.write(key, value)),
                _ => Err(KvError::Conflict),
            }
        }
        async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, KvError> {
            self.check()?;
            Ok(self.live(key))
        }
        async fn delete(&self, key: &str, revision: u64) -> Result<(), KvError> {
            self.check()?;
            match self.live(key) {
                Some((_, r)) if r == revision => {
                    self.state.lock().unwrap().1.remove(key);
                    Ok(())
                }
                _ => Err(KvError::Conflict),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeClock, FakeKv};
    use super::*;
    use crate::model::new_id;

    const T: LeaseTiming = LeaseTiming {
        ttl: Duration::from_millis(1500),
        margin: Duration::from_millis(250),
    };

    fn node(kv: &Arc<FakeKv>, clock: &Arc<FakeClock>, id: &str) -> Leases<FakeKv> {
        Leases::new(kv.clone(), id.into(), T, clock.clone())
    }

    fn setup() -> (Arc<FakeClock>, Arc<FakeKv>) {
        let clock = Arc::new(FakeClock::default());
        let kv = Arc::new(FakeKv::new(clock.clone(), T.ttl));
        (clock, kv)
    }

    #[tokio::test]
    async fn one_owner_at_a_time_and_renewal_keeps_it() {
        let (clock, kv) = setup();
        let (a, b) = (node(&kv, &clock, "a"), node(&kv, &clock, "b"));
        let s = new_id();
        let la = a.acquire(s).await.unwrap().expect("free lease is granted");
        assert!(la.is_valid());
        assert!(b.acquire(s).await.unwrap().is_none(), "held by a");
        for _ in 0..10 {
            clock.advance(T.renew_every());
            assert_eq!(a.renew(&la).await, Renewal::Renewed);
            assert!(la.is_valid());
            assert!(b.acquire(s).await.unwrap().is_none(), "still held by a");
        }
    }

    #[tokio::test]
    async fn an_owner_that_cannot_renew_stops_trusting_its_lease_before_another_can_take_it() {
        let (clock, kv) = setup();
        let (a, b) = (node(&kv, &clock, "a"), node(&kv, &clock, "b"));
        let s = new_id();
        let la = a.acquire(s).await.unwrap().unwrap();
        kv.down.store(true, Ordering::Release);
        clock.advance(T.renew_every());
        assert_eq!(a.renew(&la).await, Renewal::Unconfirmed);
        assert!(la.is_valid(), "still within its deadline");
        // Step through time: at every instant, never both a valid old lease and a new owner.
        kv.down.store(false, Ordering::Release);
        let mut taken = None;
        for _ in 0..40 {
            clock.advance(Duration::from_millis(50));
            if let Some(lb) = b.acquire(s).await.unwrap() {
                assert!(
                    !la.is_valid(),
                    "a must have stopped trusting its lease first"
                );
                taken = Some(lb);
                break;
            }
        }
        let lb = taken.expect("b takes the space once the key expired");
        assert_eq!(a.renew(&la).await, Renewal::Lost);
        assert!(la.is_lost());
        assert!(lb.is_valid());
    }

    #[tokio::test]
    async fn a_paused_owner_finds_its_lease_lost_on_waking() {
        let (clock, kv) = setup();
        let (a, b) = (node(&kv, &clock, "a"), node(&kv, &clock, "b"));
        let s = new_id();
        let la = a.acquire(s).await.unwrap().unwrap();
        // a is frozen (SIGSTOP) for 5 s; b takes over and renews.
        clock.advance(Duration::from_secs(5));
        let lb = b.acquire(s).await.unwrap().expect("expired key is free");
        assert!(!la.is_valid(), "past its deadline by its own clock");
        assert_eq!(a.renew(&la).await, Renewal::Lost);
        assert!(lb.is_valid());
    }

    #[tokio::test]
    async fn a_conflicting_renewal_loses_at_once_and_release_frees_the_key() {
        let (clock, kv) = setup();
        let (a, b) = (node(&kv, &clock, "a"), node(&kv, &clock, "b"));
        let s = new_id();
        let la = a.acquire(s).await.unwrap().unwrap();
        a.release(&la).await;
        assert!(!la.is_valid());
        let lb = b
            .acquire(s)
            .await
            .unwrap()
            .expect("released key is free at once");
        assert_eq!(a.renew(&la).await, Renewal::Lost);
        // A key written by someone else while a still thinks it owns: renewal conflicts.
        let la2 = Arc::new(Lease::new(
            s,
            lb.revision() - 1,
            clock.now(),
            T,
            clock.clone(),
        ));
        assert_eq!(a.renew(&la2).await, Renewal::Lost);
        assert!(la2.is_lost());
    }

    #[tokio::test]
    async fn a_restarted_node_takes_back_its_own_key() {
        let (clock, kv) = setup();
        let s = new_id();
        let old = node(&kv, &clock, "a").acquire(s).await.unwrap().unwrap();
        let restarted = node(&kv, &clock, "a");
        let l = restarted
            .acquire(s)
            .await
            .unwrap()
            .expect("own key is taken over");
        assert!(l.revision() > old.revision());
        assert!(node(&kv, &clock, "b").acquire(s).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_unavailable_store_is_an_error_not_a_refusal() {
        let (clock, kv) = setup();
        kv.down.store(true, Ordering::Release);
        let err = node(&kv, &clock, "a").acquire(new_id()).await.unwrap_err();
        assert!(matches!(err, KvError::Unavailable(_)));
    }
}
