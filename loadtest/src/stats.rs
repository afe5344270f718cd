//! Pure bookkeeping shared by the scenarios: the clock embedded in message
//! content, sequence-gap tracking, send outcome counters and summary math.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::api::SendOutcome;

/// Prefix of every message content written by the loadtest: `lt:<micros>`.
const CONTENT_PREFIX: &str = "lt:";

/// Latencies are clamped to this many microseconds (one hour) before being
/// recorded, so a bogus timestamp cannot blow up an auto-resizing histogram.
const MAX_RECORDED_MICROS: u64 = 3_600_000_000;

/// Microseconds since the Unix epoch on `CLOCK_REALTIME`. The publisher embeds its reading in
/// each message and subscribers subtract it from theirs; with `--processes` they live in
/// different processes on the same machine, so the clock must be shared by all of them (a
/// process-local `Instant` is not). A clock step during a run would skew latencies; the
/// recorded values are clamped (see [`record_micros`]).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Message content `lt:<sent_micros> xxxx…` padded with `x` up to `size`
/// bytes (never truncated below the timestamp itself).
pub fn make_content(sent_micros: u64, size: usize) -> String {
    let mut content = format!("{CONTENT_PREFIX}{sent_micros} ");
    if content.len() < size {
        let pad = size - content.len();
        content.extend(std::iter::repeat_n('x', pad));
    }
    content
}

/// Parses the send timestamp out of content produced by [`make_content`].
/// Returns `None` for content that was not written by the loadtest.
pub fn parse_sent_micros(content: &str) -> Option<u64> {
    let rest = content.strip_prefix(CONTENT_PREFIX)?;
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    if digits_end == 0 {
        return None;
    }
    rest[..digits_end].parse().ok()
}

/// A histogram of microsecond latencies (3 significant figures, auto-resizing).
pub fn new_histogram<T: hdrhistogram::Counter>() -> Histogram<T> {
    Histogram::new(3).expect("3 significant figures is a valid histogram precision")
}

/// Records a latency in microseconds, clamped to one hour.
pub fn record_micros<T: hdrhistogram::Counter>(hist: &mut Histogram<T>, micros: u64) {
    // Cannot fail: the value is bounded and the histogram auto-resizes.
    let _ = hist.record(micros.min(MAX_RECORDED_MICROS));
}

/// Events per second, 0 when no time elapsed.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        round3(count as f64 / secs)
    }
}

/// `part / whole` to six decimals, 0 when `whole` is 0.
pub fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64 * 1e6).round() / 1e6
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn micros_to_ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// Latency percentiles in milliseconds, from a histogram of microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    pub fn from_micros<T: hdrhistogram::Counter>(hist: &Histogram<T>) -> Self {
        if hist.is_empty() {
            return Self {
                count: 0,
                mean_ms: 0.0,
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                p999_ms: 0.0,
                max_ms: 0.0,
            };
        }
        Self {
            count: hist.len(),
            mean_ms: round3(hist.mean() / 1000.0),
            p50_ms: micros_to_ms(hist.value_at_quantile(0.50)),
            p90_ms: micros_to_ms(hist.value_at_quantile(0.90)),
            p99_ms: micros_to_ms(hist.value_at_quantile(0.99)),
            p999_ms: micros_to_ms(hist.value_at_quantile(0.999)),
            max_ms: micros_to_ms(hist.max()),
        }
    }

    /// One line: `p50 1.234  p90 …  max … ms`.
    pub fn line(&self, with_p90: bool) -> String {
        let p90 = if with_p90 {
            format!("  p90 {:.3}", self.p90_ms)
        } else {
            String::new()
        };
        format!(
            "p50 {:.3}{p90}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (mean {:.3}, n={})",
            self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms, self.mean_ms, self.count
        )
    }
}

/// Checks that the `seq` of consecutive events grows by exactly one.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqTracker {
    /// Highest seq seen so far.
    pub last: Option<u64>,
    /// Number of jumps forward by more than one.
    pub gaps: u64,
    /// Total seq numbers skipped by those jumps.
    pub missing: u64,
    /// Events whose seq was not above the highest seen (duplicates or reordering).
    pub out_of_order: u64,
}

impl SeqTracker {
    pub fn observe(&mut self, seq: u64) {
        match self.last {
            None => self.last = Some(seq),
            Some(last) if seq == last.wrapping_add(1) => self.last = Some(seq),
            Some(last) if seq > last => {
                self.gaps += 1;
                self.missing += seq - last - 1;
                self.last = Some(seq);
            }
            Some(_) => self.out_of_order += 1,
        }
    }

    pub fn merge(&mut self, other: &SeqTracker) {
        self.gaps += other.gaps;
        self.missing += other.missing;
        self.out_of_order += other.out_of_order;
    }
}

/// Counters for REST sends: acknowledged (with latency), rejected, failed.
#[derive(Debug)]
pub struct SendStats {
    /// Request → 201 latency of acknowledged sends, microseconds.
    pub ack_latency: Histogram<u64>,
    pub acked: u64,
    pub rejected_429: u64,
    pub rejected_503: u64,
    pub errors: u64,
    /// Error description → count (HTTP status, timeout, connect, …).
    pub error_kinds: BTreeMap<String, u64>,
}

impl Default for SendStats {
    fn default() -> Self {
        Self {
            ack_latency: new_histogram(),
            acked: 0,
            rejected_429: 0,
            rejected_503: 0,
            errors: 0,
            error_kinds: BTreeMap::new(),
        }
    }
}

impl SendStats {
    pub fn record(&mut self, outcome: &SendOutcome, latency: Duration) {
        match outcome {
            SendOutcome::Acked { .. } => {
                self.acked += 1;
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                record_micros(&mut self.ack_latency, micros);
            }
            SendOutcome::Rejected { status: 429, .. } => self.rejected_429 += 1,
            SendOutcome::Rejected { .. } => self.rejected_503 += 1,
            SendOutcome::Failed(kind) => {
                self.errors += 1;
                *self.error_kinds.entry(kind.clone()).or_default() += 1;
            }
        }
    }

    pub fn rejected(&self) -> u64 {
        self.rejected_429 + self.rejected_503
    }

    pub fn merge(&mut self, other: &SendStats) {
        // Both histograms auto-resize, so adding cannot fail.
        let _ = self.ack_latency.add(&other.ack_latency);
        self.acked += other.acked;
        self.rejected_429 += other.rejected_429;
        self.rejected_503 += other.rejected_503;
        self.errors += other.errors;
        for (kind, count) in &other.error_kinds {
            *self.error_kinds.entry(kind.clone()).or_default() += count;
        }
    }
}

/// `{a: 1, b: 2}` as `a=1, b=2`, or `none`.
pub fn format_counts(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trips_and_has_requested_size() {
        let content = make_content(1_234_567, 100);
        assert_eq!(content.len(), 100);
        assert!(content.starts_with("lt:1234567 x"));
        assert_eq!(parse_sent_micros(&content), Some(1_234_567));
    }

    #[test]
    fn content_is_never_truncated_below_the_timestamp() {
        let content = make_content(u64::MAX, 4);
        assert_eq!(parse_sent_micros(&content), Some(u64::MAX));
    }

    #[test]
    fn parses_timestamps() {
        assert_eq!(parse_sent_micros("lt:42"), Some(42));
        assert_eq!(parse_sent_micros("lt:0 padding"), Some(0));
        assert_eq!(parse_sent_micros("lt:17:extra"), Some(17));
        assert_eq!(parse_sent_micros("lt:"), None);
        assert_eq!(parse_sent_micros("lt:abc"), None);
        assert_eq!(parse_sent_micros("lt:-5"), None);
        assert_eq!(parse_sent_micros("hello lt:5"), None);
        assert_eq!(parse_sent_micros(""), None);
        assert_eq!(parse_sent_micros("lt:99999999999999999999999"), None);
    }

    #[test]
    fn clock_is_the_shared_wall_clock() {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        let ours = now_micros();
        assert!(ours.abs_diff(wall) < 5_000_000, "{ours} vs {wall}");
    }

    #[test]
    fn consecutive_seqs_have_no_gaps() {
        let mut t = SeqTracker::default();
        for seq in 7..20 {
            t.observe(seq);
        }
        assert_eq!((t.gaps, t.missing, t.out_of_order), (0, 0, 0));
        assert_eq!(t.last, Some(19));
    }

    #[test]
    fn gaps_count_jumps_and_missing_seqs() {
        let mut t = SeqTracker::default();
        for seq in [1, 2, 5, 6, 8] {
            t.observe(seq);
        }
        assert_eq!(t.gaps, 2);
        assert_eq!(t.missing, 3);
        assert_eq!(t.out_of_order, 0);
    }

    #[test]
    fn duplicates_and_reordering_are_out_of_order() {
        let mut t = SeqTracker::default();
        for seq in [1, 3, 2, 3, 4] {
            t.observe(seq);
        }
        assert_eq!(t.gaps, 1);
        assert_eq!(t.missing, 1);
        assert_eq!(t.out_of_order, 2);
        assert_eq!(t.last, Some(4));
    }

    #[test]
    fn seq_trackers_merge() {
        let mut a = SeqTracker {
            last: Some(3),
            gaps: 1,
            missing: 2,
            out_of_order: 0,
        };
        a.merge(&SeqTracker {
            last: Some(9),
            gaps: 2,
            missing: 5,
            out_of_order: 1,
        });
        assert_eq!((a.gaps, a.missing, a.out_of_order), (3, 7, 1));
    }

    #[test]
    fn summary_of_empty_histogram_is_zero() {
        let s = LatencySummary::from_micros(&new_histogram::<u64>());
        assert_eq!(s.count, 0);
        assert_eq!(s.p99_ms, 0.0);
        assert_eq!(s.max_ms, 0.0);
    }

    #[test]
    fn summary_percentiles_in_milliseconds() {
        let mut h = new_histogram::<u64>();
        // 1 ms .. 1000 ms, one sample each.
        for ms in 1..=1000u64 {
            record_micros(&mut h, ms * 1000);
        }
        let s = LatencySummary::from_micros(&h);
        assert_eq!(s.count, 1000);
        let close = |actual: f64, expected: f64| (actual - expected).abs() <= expected * 0.001;
        assert!(close(s.p50_ms, 500.0), "p50 {}", s.p50_ms);
        assert!(close(s.p90_ms, 900.0), "p90 {}", s.p90_ms);
        assert!(close(s.p99_ms, 990.0), "p99 {}", s.p99_ms);
        assert!(close(s.p999_ms, 999.0), "p99.9 {}", s.p999_ms);
        assert!(close(s.max_ms, 1000.0), "max {}", s.max_ms);
        assert!(close(s.mean_ms, 500.5), "mean {}", s.mean_ms);
    }

    #[test]
    fn huge_latencies_are_clamped() {
        let mut h = new_histogram::<u32>();
        record_micros(&mut h, u64::MAX);
        assert!(h.max() <= MAX_RECORDED_MICROS + MAX_RECORDED_MICROS / 1000);
    }

    #[test]
    fn rates_and_ratios() {
        assert_eq!(per_second(1000, Duration::from_secs(4)), 250.0);
        assert_eq!(per_second(1, Duration::from_secs(3)), 0.333);
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
        assert_eq!(ratio(999, 1000), 0.999);
        assert_eq!(ratio(416, 1_982_000), 0.00021);
        assert_eq!(ratio(5, 0), 0.0);
    }

    #[test]
    fn send_stats_split_outcomes() {
        let mut s = SendStats::default();
        s.record(&SendOutcome::Acked { seq: 1 }, Duration::from_millis(2));
        s.record(&SendOutcome::Acked { seq: 2 }, Duration::from_millis(4));
        s.record(
            &SendOutcome::Rejected {
                status: 429,
                retry_after: None,
            },
            Duration::from_millis(100),
        );
        s.record(
            &SendOutcome::Rejected {
                status: 503,
                retry_after: Some(Duration::from_secs(1)),
            },
            Duration::from_millis(100),
        );
        s.record(&SendOutcome::Failed("HTTP 500".into()), Duration::ZERO);

        let mut total = SendStats::default();
        total.merge(&s);
        total.merge(&s);
        assert_eq!(total.acked, 4);
        assert_eq!(total.rejected(), 4);
        assert_eq!((total.rejected_429, total.rejected_503), (2, 2));
        assert_eq!(total.errors, 2);
        assert_eq!(total.error_kinds.get("HTTP 500"), Some(&2));
        // Rejections and errors never reach the latency histogram.
        assert_eq!(total.ack_latency.len(), 4);
        assert!(total.ack_latency.max() < 5_000);
        assert_eq!(format_counts(&total.error_kinds), "HTTP 500=2");
        assert_eq!(format_counts(&BTreeMap::new()), "none");
    }
}
