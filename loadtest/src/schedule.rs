//! Open-loop send schedule: the i-th send is due at `start + i / rate`, whatever happened to the
//! sends before it.
//!
//! A closed-loop publisher (next send after the previous reply) slows down exactly when the
//! server does, so the slow period produces few samples and the latency histogram hides it
//! ("coordinated omission"). Here the clock decides: a publisher that falls behind sends every
//! overdue message at once instead of skipping any, and each message's latency is measured from
//! its *due* time (which is also the timestamp embedded in its content), so a stall shows up as
//! latency in every message it delayed.

/// The due times of `count` sends at `rate` per second from `start_micros`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    start_micros: u64,
    rate: u64,
    count: u64,
}

impl Schedule {
    /// `rate` sends per second for `duration_micros` (rounded down to whole sends).
    pub fn new(start_micros: u64, rate: u32, duration_micros: u64) -> Self {
        let rate = u64::from(rate);
        let count = u64::try_from(u128::from(rate) * u128::from(duration_micros) / 1_000_000)
            .unwrap_or(u64::MAX);
        Self {
            start_micros,
            rate,
            count,
        }
    }

    /// Number of sends in the schedule.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// When send `i` is due; exact integer arithmetic, so there is no drift over long runs.
    pub fn due_micros(&self, i: u64) -> u64 {
        if self.rate == 0 {
            return self.start_micros;
        }
        let offset = u128::from(i) * 1_000_000 / u128::from(self.rate);
        self.start_micros
            .saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
    }
}

/// What the publisher should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send number `index` now; it was due at `due_micros` (possibly in the past).
    Send { index: u64, due_micros: u64 },
    /// Nothing is due before `until_micros`.
    Wait { until_micros: u64 },
    /// Every send of the schedule has been issued.
    Done,
}

/// Walks a [`Schedule`] against a clock reading; pure, so it is tested with a fake clock.
#[derive(Debug, Clone)]
pub struct Pacer {
    schedule: Schedule,
    next: u64,
}

impl Pacer {
    pub fn new(schedule: Schedule) -> Self {
        Self { schedule, next: 0 }
    }

    /// The next step at clock reading `now_micros`. Overdue sends are returned one per call,
    /// oldest first, with their original due time: none is ever skipped.
    pub fn step(&mut self, now_micros: u64) -> Step {
        if self.next >= self.schedule.len() {
            return Step::Done;
        }
        let due = self.schedule.due_micros(self.next);
        if due > now_micros {
            return Step::Wait { until_micros: due };
        }
        let index = self.next;
        self.next += 1;
        Step::Send {
            index,
            due_micros: due,
        }
    }

    /// Sends issued so far.
    #[cfg(test)]
    pub fn issued(&self) -> u64 {
        self.next
    }
}

/// Latency of an operation that completed at `done_micros` and was due at `due_micros`: measured
/// from the due time, not from when the (possibly late) publisher got round to it.
pub fn latency_from_due(due_micros: u64, done_micros: u64) -> u64 {
    done_micros.saturating_sub(due_micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_are_evenly_spaced_without_drift() {
        let s = Schedule::new(1_000, 3, 2_000_000);
        assert_eq!(s.len(), 6);
        let due: Vec<u64> = (0..6).map(|i| s.due_micros(i)).collect();
        assert_eq!(
            due,
            [1_000, 334_333, 667_666, 1_001_000, 1_334_333, 1_667_666]
        );
        // A long run at an awkward rate lands exactly on the second boundaries.
        let s = Schedule::new(0, 7, 3_600_000_000);
        assert_eq!(s.len(), 7 * 3600);
        assert_eq!(s.due_micros(7 * 3599), 3_599_000_000);
    }

    #[test]
    fn partial_seconds_round_down() {
        assert_eq!(Schedule::new(0, 10, 1_550_000).len(), 15);
        assert_eq!(Schedule::new(0, 1, 999_999).len(), 0);
        assert_eq!(Schedule::new(0, 0, 5_000_000).len(), 0);
    }

    #[test]
    fn an_on_time_publisher_waits_for_each_due_time() {
        let mut p = Pacer::new(Schedule::new(100, 10, 300_000));
        assert_eq!(p.step(50), Step::Wait { until_micros: 100 });
        assert_eq!(
            p.step(100),
            Step::Send {
                index: 0,
                due_micros: 100
            }
        );
        assert_eq!(
            p.step(101),
            Step::Wait {
                until_micros: 100_100
            }
        );
        assert_eq!(
            p.step(100_100),
            Step::Send {
                index: 1,
                due_micros: 100_100
            }
        );
        assert_eq!(
            p.step(250_000),
            Step::Send {
                index: 2,
                due_micros: 200_100
            }
        );
        assert_eq!(p.step(10_000_000), Step::Done);
        assert_eq!(p.issued(), 3);
    }

    #[test]
    fn a_late_publisher_skips_nothing_and_keeps_the_due_times() {
        // The publisher was stalled for 1 s: at t = 1 s, ten sends are overdue. All ten come out
        // at once, each with its own due time, and the latency of each counts from it.
        let mut p = Pacer::new(Schedule::new(0, 10, 2_000_000));
        let now = 1_000_000;
        let mut sent = Vec::new();
        while let Step::Send { index, due_micros } = p.step(now) {
            sent.push((index, due_micros));
        }
        assert_eq!(sent.len(), 11, "sends 0..=10 are due at or before 1 s");
        assert_eq!(sent[0], (0, 0));
        assert_eq!(sent[5], (5, 500_000));
        let latencies: Vec<u64> = sent
            .iter()
            .map(|&(_, due)| latency_from_due(due, now + 2_000))
            .collect();
        assert_eq!(
            latencies[0], 1_002_000,
            "the stall is in the first one's latency"
        );
        assert_eq!(latencies[10], 2_000);
        assert_eq!(
            p.step(now),
            Step::Wait {
                until_micros: 1_100_000
            }
        );
        assert_eq!(p.issued(), 11);
    }

    #[test]
    fn latency_never_underflows() {
        assert_eq!(latency_from_due(10, 5), 0);
        assert_eq!(latency_from_due(10, 15), 5);
    }
}
