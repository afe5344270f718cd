//! Admission of realtime connections: the node-wide cap (`--max-connections`) and the per-user cap
//! (`--max-connections-per-user`), shared by every realtime protocol of the node.
//!
//! A [`ConnectionPermit`] is taken *before* a WebSocket upgrade is answered and moved into the
//! session, which holds it until it ends, however it ends (or dropped with the upgrade if that
//! never completes). Checking a counter at the route and incrementing it later in the session
//! would let a burst of upgrades through between the two; a permit cannot be over-issued.
//! Socket.IO learns who connects only in its handshake, after the upgrade: its connection takes
//! a permit without a user at the upgrade ([`ConnectionLimits::try_admit`] with `None`) and is
//! counted as its user's at the handshake ([`ConnectionLimits::try_assign`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node holds `max_connections` connections.
    NodeFull,
    /// This user holds `max_connections_per_user` connections.
    UserFull,
}

/// The node's connection caps.
pub struct ConnectionLimits {
    total: Arc<Semaphore>,
    max_total: usize,
    max_per_user: usize,
    /// Open connections by user id. An entry exists only while its count is above zero, so the
    /// map never holds more than `max_total` entries.
    per_user: Arc<Mutex<HashMap<String, usize>>>,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_user: usize) -> Self {
        ConnectionLimits {
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            max_per_user,
            per_user: Arc::default(),
        }
    }

    /// Admits one connection of `user` (`None` when it failed authentication: it still holds a
    /// socket until its 4001 close, so it counts against the node's cap only).
    ///
    /// # Errors
    /// The node or the user is at its cap; nothing is taken then.
    pub fn try_admit(&self, user: Option<&str>) -> Result<ConnectionPermit, Refusal> {
        let user = match user {
            None => None,
            Some(id) => Some(self.user_slot(id)?),
        };
        // On refusal `user` drops here and gives its slot back.
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::NodeFull)?;
        Ok(ConnectionPermit {
            _user: user,
            _total: total,
        })
    }

    /// Counts `permit`'s connection, admitted without a user (a protocol that authenticates after
    /// the upgrade, as Socket.IO does in its handshake), as one of `user`'s from now on.
    ///
    /// # Errors
    /// `UserFull` when `user` holds `max_connections_per_user` connections; `permit` is unchanged
    /// then. A permit that already counts for a user is not counted twice: it is refused with
    /// `UserFull` too (one connection, one user).
    pub fn try_assign(&self, permit: &mut ConnectionPermit, user: &str) -> Result<(), Refusal> {
        if permit._user.is_some() {
            return Err(Refusal::UserFull);
        }
        permit._user = Some(self.user_slot(user)?);
        Ok(())
    }

    /// Takes one of `id`'s places, if it has one left.
    fn user_slot(&self, id: &str) -> Result<UserSlot, Refusal> {
        let mut counts = self.per_user.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(id.to_owned()).or_insert(0);
        if *n >= self.max_per_user {
            if *n == 0 {
                counts.remove(id);
            }
            return Err(Refusal::UserFull);
        }
        *n += 1;
        Ok(UserSlot {
            counts: self.per_user.clone(),
            id: id.to_owned(),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max_total - self.total.available_permits()
    }

    /// Connections `user` has open now.
    pub fn open_for(&self, user: &str) -> usize {
        let counts = self.per_user.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(user).copied().unwrap_or(0)
    }
}

/// One admitted connection; dropping it gives its place back.
pub struct ConnectionPermit {
    _user: Option<UserSlot>,
    _total: OwnedSemaphorePermit,
}

/// One connection's place in its user's count.
struct UserSlot {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    id: String,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_dropping_a_permit_gives_its_place_back() {
        let limits = ConnectionLimits::new(3, 2);
        let a1 = limits.try_admit(Some("a")).unwrap();
        let _a2 = limits.try_admit(Some("a")).unwrap();
        assert_eq!(limits.try_admit(Some("a")).err(), Some(Refusal::UserFull));
        let b1 = limits.try_admit(Some("b")).unwrap();
        assert_eq!(limits.open(), 3);
        // The node is full: b is refused, and its refused attempt leaves no count behind.
        assert_eq!(limits.try_admit(Some("b")).err(), Some(Refusal::NodeFull));
        assert_eq!(limits.try_admit(None).err(), Some(Refusal::NodeFull));
        assert_eq!(limits.open_for("b"), 1);
        drop(a1);
        assert_eq!((limits.open(), limits.open_for("a")), (2, 1));
        let _unauthenticated = limits.try_admit(None).unwrap();
        drop(b1);
        assert_eq!(limits.open_for("b"), 0);
        assert!(
            limits.per_user.lock().unwrap().get("b").is_none(),
            "no empty entries kept"
        );
    }

    #[test]
    fn a_permit_admitted_without_a_user_can_be_assigned_one_once() {
        let limits = ConnectionLimits::new(3, 1);
        let mut anonymous = limits.try_admit(None).unwrap();
        assert_eq!(limits.open_for("a"), 0);
        limits.try_assign(&mut anonymous, "a").unwrap();
        assert_eq!((limits.open(), limits.open_for("a")), (1, 1));
        // Already a's: not counted again, for a or anyone.
        assert_eq!(
            limits.try_assign(&mut anonymous, "b").err(),
            Some(Refusal::UserFull)
        );
        assert_eq!(limits.open_for("b"), 0);
        // a is at its cap of one: a second anonymous connection cannot become a's.
        let mut other = limits.try_admit(None).unwrap();
        assert_eq!(
            limits.try_assign(&mut other, "a").err(),
            Some(Refusal::UserFull)
        );
        assert_eq!((limits.open(), limits.open_for("a")), (2, 1));
        drop(anonymous);
        assert_eq!((limits.open(), limits.open_for("a")), (1, 0));
        limits.try_assign(&mut other, "a").unwrap();
        drop(other);
        assert_eq!((limits.open(), limits.open_for("a")), (0, 0));
        assert!(limits.per_user.lock().unwrap().is_empty());
    }
}
