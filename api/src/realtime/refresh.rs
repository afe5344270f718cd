//! `refresh`: a session ends at its token's `exp` (close 4001, reason `token_expired`) unless the
//! client first hands over a newer token of the same user.
//!
//! A refused refresh (a token that does not verify, another user's, or one that does not expire
//! later) changes nothing: the session keeps its old end.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::output::{CommandError, Outbox, Output};
use super::session::{Refused, Session};
use crate::error::ApiError;

/// Longest a deadline is set into the future; a later `exp` is as good as never on this clock.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Session {
    /// Refresh → `Refreshed {exp}`; the session now ends at the new token's `exp`, and later
    /// sends carry its profile.
    pub(super) async fn refresh<O: Outbox>(
        &mut self,
        out: &mut O,
        token: &str,
    ) -> Result<(), Refused> {
        let user = self
            .app
            .auth
            .verify(token)
            .map_err(|e| CommandError::from(ApiError::from(e)))?;
        if user.id() != self.user.id() {
            return Err(CommandError::new(
                "refresh_refused",
                "The token is for another user than the session's",
            )
            .into());
        }
        if user.exp <= self.user.exp {
            return Err(CommandError::new(
                "refresh_refused",
                "The token does not expire later than the session's current one",
            )
            .into());
        }
        self.ending.expires.as_mut().reset(deadline(user.exp));
        let exp = user.exp;
        self.user = user;
        out.put(Output::Refreshed { exp }).await?;
        Ok(())
    }
}

/// When a token with `exp` (unix seconds) expires, on the runtime's clock. An `exp` already past
/// (accepted within the verification leeway) is now.
pub(super) fn deadline(exp: u64) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let left = Duration::from_secs(exp.saturating_sub(unix_now)).min(FAR);
    // A monotonic clock is far from overflowing 100 years ahead; no client `exp` can panic here.
    now.checked_add(left).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_exp_and_never_overflow() {
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let now = tokio::time::Instant::now();
        assert!(deadline(0) <= now + Duration::from_millis(100), "past: now");
        let in_60 = deadline(unix_now + 60);
        assert!(in_60 > now + Duration::from_secs(58) && in_60 < now + Duration::from_secs(62));
        assert!(deadline(u64::MAX) > now + Duration::from_secs(3600 * 24 * 365));
    }
}
