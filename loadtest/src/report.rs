//! What a load run measured: the mergeable raw [`Measurements`] of one process (HDR histograms,
//! serialized so `--processes` children can hand theirs to the parent), the final [`Report`]
//! (JSON and human summary), and the markdown side-by-side table of `scripts/bench.sh compare`.

use std::{collections::BTreeMap, fmt::Write as _};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::{
    procstat::ProcSample,
    stats::{self, LatencySummary, SeqTracker},
};

/// HDR histograms in JSON: base64 of hdrhistogram's V2 serialization (not compressed).
mod hist_b64 {
    use base64::{Engine, engine::general_purpose::STANDARD};
    use hdrhistogram::{
        Histogram,
        serialization::{Deserializer as HistDeserializer, Serializer as _, V2Serializer},
    };
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _, ser::Error as _};

    pub fn encode(hist: &Histogram<u64>) -> Result<String, String> {
        let mut buf = Vec::new();
        V2Serializer::new()
            .serialize(hist, &mut buf)
            .map_err(|e| format!("serializing a histogram: {e:?}"))?;
        Ok(STANDARD.encode(buf))
    }

    pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
        let bytes = STANDARD
            .decode(text)
            .map_err(|e| format!("histogram base64: {e}"))?;
        let hist: Histogram<u64> = HistDeserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("histogram V2: {e:?}"))?;
        // Deserialized histograms have a fixed range; merging needs auto-resize.
        let mut resizable = crate::stats::new_histogram::<u64>();
        resizable
            .add(&hist)
            .map_err(|e| format!("histogram range: {e:?}"))?;
        Ok(resizable)
    }

    pub fn serialize<S: Serializer>(hist: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(hist).map_err(S::Error::custom)?)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
        decode(&String::deserialize(d)?).map_err(D::Error::custom)
    }

    pub mod vec {
        use super::*;
        use serde::ser::SerializeSeq;

        pub fn serialize<S: Serializer>(hists: &[Histogram<u64>], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(hists.len()))?;
            for hist in hists {
                seq.serialize_element(&encode(hist).map_err(S::Error::custom)?)?;
            }
            seq.end()
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<Histogram<u64>>, D::Error> {
            Vec::<String>::deserialize(d)?
                .iter()
                .map(|t| decode(t).map_err(D::Error::custom))
                .collect()
        }
    }
}

/// Raw measurements of one process; `merge` adds another process's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurements {
    /// Publish → delivery latency at every subscriber, µs from the due time.
    #[serde(with = "hist_b64")]
    pub delivery: Histogram<u64>,
    /// Publish → acknowledgement latency, µs from the due time.
    #[serde(with = "hist_b64")]
    pub publish_ack: Histogram<u64>,
    /// Connect → subscribed (handshake, auth, join) latency, µs.
    #[serde(with = "hist_b64")]
    pub connect: Histogram<u64>,
    /// Delivery latency by the due time's bucket of `bucket_micros` since publishing began.
    #[serde(with = "hist_b64::vec")]
    pub timeline: Vec<Histogram<u64>>,
    pub bucket_micros: u64,
    pub connected: u64,
    pub connect_failed: u64,
    pub deliveries: u64,
    /// Latest delivery, µs on the shared clock (0: none).
    pub last_delivery_micros: u64,
    pub seq: SeqTracker,
    /// Subscribers that received fewer messages than were acknowledged to their space.
    pub subscribers_incomplete: u64,
    /// Subscribers the server disconnected before the end.
    pub subscribers_dropped: u64,
    pub published: u64,
    pub acked: u64,
    pub rejected: u64,
    pub publish_errors: u64,
    /// Everything that went wrong, by stable code (`publish_http_500`, `close_4008`, …).
    pub errors: BTreeMap<String, u64>,
    /// Deliveries for another channel or without a loadtest timestamp.
    pub foreign: u64,
    /// CPU seconds of the load generator processes over the measured window, and how many
    /// processes that sums.
    pub loadgen_cpu_s: f64,
    pub loadgen_wall_s: f64,
    pub loadgen_processes: u32,
    /// Largest CPU share of one core any single process used (%), to spot a saturated one.
    pub loadgen_max_process_cpu_pct: f64,
    pub loadgen_cores: u32,
}

impl Measurements {
    pub fn new(bucket_micros: u64) -> Self {
        Self {
            delivery: stats::new_histogram(),
            publish_ack: stats::new_histogram(),
            connect: stats::new_histogram(),
            timeline: Vec::new(),
            bucket_micros: bucket_micros.max(1),
            connected: 0,
            connect_failed: 0,
            deliveries: 0,
            last_delivery_micros: 0,
            seq: SeqTracker::default(),
            subscribers_incomplete: 0,
            subscribers_dropped: 0,
            published: 0,
            acked: 0,
            rejected: 0,
            publish_errors: 0,
            errors: BTreeMap::new(),
            foreign: 0,
            loadgen_cpu_s: 0.0,
            loadgen_wall_s: 0.0,
            loadgen_processes: 0,
            loadgen_max_process_cpu_pct: 0.0,
            loadgen_cores: 0,
        }
    }

    pub fn error(&mut self, code: impl Into<String>) {
        *self.errors.entry(code.into()).or_default() += 1;
    }

    /// Records one delivery due at `due` (µs since publishing began) with latency `latency`.
    pub fn record_delivery(&mut self, since_start_micros: u64, latency_micros: u64) {
        stats::record_micros(&mut self.delivery, latency_micros);
        let bucket = usize::try_from(since_start_micros / self.bucket_micros).unwrap_or(usize::MAX);
        // Bounded: a bogus timestamp far in the future must not allocate a huge vector.
        if bucket < MAX_BUCKETS {
            if self.timeline.len() <= bucket {
                self.timeline.resize_with(bucket + 1, timeline_histogram);
            }
            stats::record_micros(&mut self.timeline[bucket], latency_micros);
        }
        self.deliveries += 1;
    }

    /// Adds `other` (another subscriber task's, or another process's) into `self`.
    pub fn merge(&mut self, other: &Measurements) {
        // Auto-resizing targets: adding cannot fail.
        let _ = self.delivery.add(&other.delivery);
        let _ = self.publish_ack.add(&other.publish_ack);
        let _ = self.connect.add(&other.connect);
        if self.timeline.len() < other.timeline.len() {
            self.timeline
                .resize_with(other.timeline.len(), timeline_histogram);
        }
        for (mine, theirs) in self.timeline.iter_mut().zip(&other.timeline) {
            let _ = mine.add(theirs);
        }
        self.connected += other.connected;
        self.connect_failed += other.connect_failed;
        self.deliveries += other.deliveries;
        self.last_delivery_micros = self.last_delivery_micros.max(other.last_delivery_micros);
        self.seq.merge(&other.seq);
        self.subscribers_incomplete += other.subscribers_incomplete;
        self.subscribers_dropped += other.subscribers_dropped;
        self.published += other.published;
        self.acked += other.acked;
        self.rejected += other.rejected;
        self.publish_errors += other.publish_errors;
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
        self.foreign += other.foreign;
        self.loadgen_cpu_s += other.loadgen_cpu_s;
        self.loadgen_wall_s = self.loadgen_wall_s.max(other.loadgen_wall_s);
        self.loadgen_processes += other.loadgen_processes;
        self.loadgen_max_process_cpu_pct = self
            .loadgen_max_process_cpu_pct
            .max(other.loadgen_max_process_cpu_pct);
        self.loadgen_cores = self.loadgen_cores.max(other.loadgen_cores);
    }
}

/// Timeline buckets kept at most (`--duration` is bounded, the bucket width grows with it).
pub const MAX_BUCKETS: usize = 1_000;

fn timeline_histogram() -> Histogram<u64> {
    // Two significant figures are plenty for a chart and keep a long soak's buckets small.
    Histogram::new(2).expect("2 significant figures is a valid histogram precision")
}

/// Bucket width for a run of `duration_micros`: 1 s, or wider so a run has ≤ 600 buckets.
pub fn bucket_micros_for(duration_micros: u64) -> u64 {
    let secs = duration_micros.div_ceil(1_000_000).max(1);
    secs.div_ceil(600) * 1_000_000
}

/// One bucket of the latency chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Start of the bucket, seconds since publishing began.
    pub t_s: f64,
    pub deliveries: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The server process over the measured window (`--server-pid`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStats {
    /// The first server pid (of `pids`).
    pub pid: u32,
    /// Every server process measured (a cluster's nodes); the figures below are their sums.
    #[serde(default)]
    pub pids: Vec<u32>,
    pub cpu_s: f64,
    /// CPU time over wall time, % of one core.
    pub cpu_pct: f64,
    /// Server CPU µs per delivery (or per acknowledged publish when nothing is delivered).
    pub cpu_us_per_delivery: f64,
    pub rss_mib: f64,
    pub hwm_mib: f64,
    /// RSS before the subscribers connected and once they all had.
    pub rss_before_connect_mib: f64,
    pub rss_connected_mib: f64,
    /// (connected RSS − RSS before) / connections, KiB.
    pub rss_per_connection_kib: f64,
    /// RSS at the end of each timeline bucket, MiB (growth over a soak).
    pub rss_timeline_mib: Vec<f64>,
}

/// The load generator's own CPU, so a saturated generator is reported rather than hidden.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadgenStats {
    pub processes: u32,
    pub cpu_s: f64,
    /// Summed over processes, % of one core.
    pub cpu_pct: f64,
    pub cores: u32,
    /// Some process used ≥ 90 % of a core, or all of them ≥ 90 % of their cores: the numbers
    /// may describe the generator, not the server.
    pub saturated: bool,
}

/// The final result of a load run (`--json` prints it as the last stdout line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    /// Free-form label (`--label`), e.g. the compare step.
    #[serde(default)]
    pub label: String,
    pub spaces: u32,
    pub subscribers: u64,
    pub rate: u32,
    pub duration_s: f64,
    pub content_bytes: u32,
    pub source_addrs: u32,
    pub connected: u64,
    pub connect_failed: u64,
    pub connect_s: f64,
    pub connects_per_sec: f64,
    pub connect_latency_ms: LatencySummary,
    /// Sends the schedule called for (`rate × duration`).
    pub scheduled: u64,
    pub published: u64,
    pub acked: u64,
    pub rejected: u64,
    pub publish_errors: u64,
    pub publish_ack_ms: LatencySummary,
    /// Most the publisher fell behind its schedule, ms (a late publisher is visible here and in
    /// the latencies, which count from the due time).
    pub publisher_max_lag_ms: f64,
    pub acked_per_sec: f64,
    pub expected_deliveries: u64,
    pub deliveries: u64,
    pub delivery_ratio: f64,
    pub lost: u64,
    pub deliveries_per_sec: f64,
    pub delivery_latency_ms: LatencySummary,
    pub gaps: u64,
    pub missing_seqs: u64,
    pub duplicates: u64,
    pub subscribers_incomplete: u64,
    pub subscribers_dropped: u64,
    pub foreign: u64,
    pub errors: BTreeMap<String, u64>,
    pub drain_s: f64,
    /// Servers the publisher sent to and the subscribers connected to (round-robin).
    #[serde(default)]
    pub send_urls: Vec<String>,
    #[serde(default)]
    pub subscribe_urls: Vec<String>,
    /// Space id → owner node id at the start and at the end of publishing (`--nats-monitor`).
    #[serde(default)]
    pub owners_start: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub owners_end: BTreeMap<String, Option<String>>,
    pub server: Option<ServerStats>,
    pub loadgen: LoadgenStats,
    pub timeline: Vec<TimelinePoint>,
}

/// Run facts the measurements do not carry.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub scenario: String,
    pub target: String,
    pub label: String,
    pub spaces: u32,
    pub subscribers: u64,
    pub rate: u32,
    pub duration_s: f64,
    pub content_bytes: u32,
    pub source_addrs: u32,
    pub connect_s: f64,
    pub scheduled: u64,
    pub publisher_max_lag_ms: f64,
    pub expected_deliveries: u64,
    /// Publishing start on the shared clock, µs.
    pub publish_start_micros: u64,
    /// Publishing end, µs (for acknowledgements per second).
    pub publish_end_micros: u64,
    pub drain_s: f64,
    /// Servers the publisher and the subscribers used (several: a cluster's nodes).
    pub send_urls: Vec<String>,
    pub subscribe_urls: Vec<String>,
    /// Space → owner node at the start and the end of publishing (`--nats-monitor`).
    pub owners_start: BTreeMap<String, Option<String>>,
    pub owners_end: BTreeMap<String, Option<String>>,
}

pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn mib(kib: u64) -> f64 {
    round3(kib as f64 / 1024.0)
}

/// Server stats from the samples around the window.
pub struct ServerSamples {
    /// The server processes; the samples are their sums.
    pub pids: Vec<u32>,
    pub before_connect: ProcSample,
    pub connected: ProcSample,
    pub window_start: ProcSample,
    pub window_end: ProcSample,
    pub window_s: f64,
    pub rss_timeline_kib: Vec<u64>,
}

impl Report {
    pub fn build(info: RunInfo, m: &Measurements, server: Option<ServerSamples>) -> Self {
        let delivery_window_s = m
            .last_delivery_micros
            .saturating_sub(info.publish_start_micros) as f64
            / 1e6;
        let publish_window_s = info
            .publish_end_micros
            .saturating_sub(info.publish_start_micros) as f64
            / 1e6;
        let deliveries_per_sec = if delivery_window_s > 0.0 {
            round3(m.deliveries as f64 / delivery_window_s)
        } else {
            0.0
        };
        let server = server.map(|s| {
            let cpu_s = (s.window_end.cpu_s - s.window_start.cpu_s).max(0.0);
            let per = if m.deliveries > 0 {
                m.deliveries
            } else {
                m.acked
            };
            let grown = s.connected.rss_kib.saturating_sub(s.before_connect.rss_kib);
            ServerStats {
                pid: s.pids.first().copied().unwrap_or(0),
                pids: s.pids.clone(),
                cpu_s: round3(cpu_s),
                cpu_pct: if s.window_s > 0.0 {
                    round3(cpu_s / s.window_s * 100.0)
                } else {
                    0.0
                },
                cpu_us_per_delivery: if per > 0 {
                    round3(cpu_s * 1e6 / per as f64)
                } else {
                    0.0
                },
                rss_mib: mib(s.window_end.rss_kib),
                hwm_mib: mib(s.window_end.hwm_kib),
                rss_before_connect_mib: mib(s.before_connect.rss_kib),
                rss_connected_mib: mib(s.connected.rss_kib),
                rss_per_connection_kib: if m.connected > 0 {
                    round3(grown as f64 / m.connected as f64)
                } else {
                    0.0
                },
                rss_timeline_mib: s.rss_timeline_kib.iter().map(|&k| mib(k)).collect(),
            }
        });
        let loadgen_cpu_pct = if m.loadgen_wall_s > 0.0 {
            round3(m.loadgen_cpu_s / m.loadgen_wall_s * 100.0)
        } else {
            0.0
        };
        let cores = m.loadgen_cores.max(1);
        let loadgen = LoadgenStats {
            processes: m.loadgen_processes,
            cpu_s: round3(m.loadgen_cpu_s),
            cpu_pct: loadgen_cpu_pct,
            cores,
            saturated: m.loadgen_max_process_cpu_pct >= 90.0
                || loadgen_cpu_pct >= 90.0 * f64::from(cores),
        };
        let bucket_s = m.bucket_micros as f64 / 1e6;
        let timeline = m
            .timeline
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let s = LatencySummary::from_micros(h);
                TimelinePoint {
                    t_s: round3(i as f64 * bucket_s),
                    deliveries: s.count,
                    p50_ms: s.p50_ms,
                    p90_ms: s.p90_ms,
                    p99_ms: s.p99_ms,
                    max_ms: s.max_ms,
                }
            })
            .collect();
        Report {
            scenario: info.scenario,
            target: info.target,
            label: info.label,
            spaces: info.spaces,
            subscribers: info.subscribers,
            rate: info.rate,
            duration_s: info.duration_s,
            content_bytes: info.content_bytes,
            source_addrs: info.source_addrs,
            connected: m.connected,
            connect_failed: m.connect_failed,
            connect_s: round3(info.connect_s),
            connects_per_sec: if info.connect_s > 0.0 {
                round3(m.connected as f64 / info.connect_s)
            } else {
                0.0
            },
            connect_latency_ms: LatencySummary::from_micros(&m.connect),
            scheduled: info.scheduled,
            published: m.published,
            acked: m.acked,
            rejected: m.rejected,
            publish_errors: m.publish_errors,
            publish_ack_ms: LatencySummary::from_micros(&m.publish_ack),
            publisher_max_lag_ms: round3(info.publisher_max_lag_ms),
            acked_per_sec: if publish_window_s > 0.0 {
                round3(m.acked as f64 / publish_window_s)
            } else {
                0.0
            },
            expected_deliveries: info.expected_deliveries,
            deliveries: m.deliveries,
            delivery_ratio: stats::ratio(m.deliveries, info.expected_deliveries),
            lost: info.expected_deliveries.saturating_sub(m.deliveries),
            deliveries_per_sec,
            delivery_latency_ms: LatencySummary::from_micros(&m.delivery),
            gaps: m.seq.gaps,
            missing_seqs: m.seq.missing,
            duplicates: m.seq.out_of_order,
            subscribers_incomplete: m.subscribers_incomplete,
            subscribers_dropped: m.subscribers_dropped,
            foreign: m.foreign,
            errors: m.errors.clone(),
            drain_s: round3(info.drain_s),
            send_urls: info.send_urls,
            subscribe_urls: info.subscribe_urls,
            owners_start: info.owners_start,
            owners_end: info.owners_end,
            server,
            loadgen,
            timeline,
        }
    }

    /// The human summary (stdout).
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let label = if self.label.is_empty() {
            String::new()
        } else {
            format!(" [{}]", self.label)
        };
        let _ = writeln!(
            out,
            "== {} on {}{label}: {} spaces, {} subscribers, {} msg/s for {} s, {} B content ==",
            self.scenario,
            self.target,
            self.spaces,
            self.subscribers,
            self.rate,
            self.duration_s,
            self.content_bytes
        );
        let _ = writeln!(
            out,
            "connected      {} of {} in {:.2} s ({:.1}/s), {} failed; connect ms {}",
            self.connected,
            self.subscribers,
            self.connect_s,
            self.connects_per_sec,
            self.connect_failed,
            self.connect_latency_ms.line(false)
        );
        if self.scheduled > 0 {
            let _ = writeln!(
                out,
                "published      {} acknowledged ({:.1}/s) of {} sent, {} scheduled; rejected {}, errors {}; publisher max lag {:.3} ms",
                self.acked,
                self.acked_per_sec,
                self.published,
                self.scheduled,
                self.rejected,
                self.publish_errors,
                self.publisher_max_lag_ms
            );
            let _ = writeln!(out, "publish ack ms {}", self.publish_ack_ms.line(true));
        }
        if self.expected_deliveries > 0 || self.deliveries > 0 {
            let _ = writeln!(
                out,
                "deliveries     {} of {} expected ({:.2}%, lost {}), {:.1}/s",
                self.deliveries,
                self.expected_deliveries,
                self.delivery_ratio * 100.0,
                self.lost,
                self.deliveries_per_sec
            );
            let _ = writeln!(
                out,
                "delivery ms    {}",
                self.delivery_latency_ms.line(true)
            );
            let _ = writeln!(
                out,
                "ordering       gaps {} (missing {}), duplicates/out of order {}, incomplete subscribers {}, dropped {}",
                self.gaps,
                self.missing_seqs,
                self.duplicates,
                self.subscribers_incomplete,
                self.subscribers_dropped
            );
        }
        let _ = writeln!(out, "errors         {}", stats::format_counts(&self.errors));
        if self.send_urls.len() > 1 || self.subscribe_urls.len() > 1 {
            let _ = writeln!(
                out,
                "servers        publishing through {}; subscribers on {}",
                self.send_urls.join(", "),
                self.subscribe_urls.join(", ")
            );
        }
        if !self.owners_end.is_empty() {
            let list = |o: &BTreeMap<String, Option<String>>| {
                o.iter()
                    .map(|(space, node)| format!("{space}: {}", node.as_deref().unwrap_or("none")))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                out,
                "owners         at start {}; at end {}",
                list(&self.owners_start),
                list(&self.owners_end)
            );
        }
        if let Some(s) = &self.server {
            let _ = writeln!(
                out,
                "server         pid {}: {:.2} CPU s ({:.1}% of a core), {:.2} µs per delivery; RSS {:.1} MiB (peak {:.1}), {:.1} → {:.1} MiB for the connections = {:.2} KiB each",
                if s.pids.len() > 1 {
                    format!("{:?} (summed)", s.pids)
                } else {
                    s.pid.to_string()
                },
                s.cpu_s,
                s.cpu_pct,
                s.cpu_us_per_delivery,
                s.rss_mib,
                s.hwm_mib,
                s.rss_before_connect_mib,
                s.rss_connected_mib,
                s.rss_per_connection_kib
            );
        }
        let _ = writeln!(
            out,
            "loadgen        {} process(es) on {} core(s): {:.2} CPU s ({:.1}% of a core){}",
            self.loadgen.processes,
            self.loadgen.cores,
            self.loadgen.cpu_s,
            self.loadgen.cpu_pct,
            if self.loadgen.saturated {
                "  SATURATED: the figures may describe the load generator, not the server"
            } else {
                ""
            }
        );
        let _ = writeln!(out, "drain          {:.2} s", self.drain_s);
        out
    }
}

/// Reads JSON lines (one report each, other lines ignored).
pub fn parse_reports(text: &str) -> Result<Vec<Report>> {
    let mut reports = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let report: Report =
            serde_json::from_str(line).with_context(|| format!("line {}: not a report", n + 1))?;
        reports.push(report);
    }
    if reports.is_empty() {
        bail!("no report lines");
    }
    Ok(reports)
}

fn ratio_cell(spacecast: f64, centrifugo: f64) -> String {
    if centrifugo == 0.0 {
        "—".to_owned()
    } else {
        format!("{:.2}×", spacecast / centrifugo)
    }
}

/// Thousands separators for counts and rates.
fn grouped(value: f64) -> String {
    let n = value.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// What a side-by-side table compares: its two targets in row order, and its ratio row (the
/// numerator's figures over the denominator's).
struct Pair {
    rows: [&'static str; 2],
    numerator: &'static str,
    denominator: &'static str,
    ratio_label: &'static str,
}

/// Spacecast against Centrifugo (`scripts/bench.sh compare`), or, when the reports include
/// Socket.IO runs, Spacecast's native stream against its Socket.IO (`scripts/bench.sh
/// socketio`: the cost of the second protocol, Socket.IO / native).
fn pair_of(reports: &[Report]) -> Pair {
    if reports.iter().any(|r| r.target == "socketio") {
        Pair {
            rows: ["spacecast", "socketio"],
            numerator: "socketio",
            denominator: "spacecast",
            ratio_label: "**SIO / native**",
        }
    } else {
        Pair {
            rows: ["spacecast", "centrifugo"],
            numerator: "spacecast",
            denominator: "centrifugo",
            ratio_label: "**S / C**",
        }
    }
}

/// The markdown side-by-side table of `scripts/bench.sh compare`: per label, the Spacecast row,
/// the Centrifugo row and the ratio Spacecast / Centrifugo (the last report of each target per
/// label counts); or, for `scripts/bench.sh socketio`, the native row, the Socket.IO row and
/// the ratio Socket.IO / native. Load steps and idle steps get their own tables.
pub fn compare_table(reports: &[Report]) -> String {
    let pair = pair_of(reports);
    let mut labels: Vec<&str> = Vec::new();
    for r in reports {
        if !labels.contains(&r.label.as_str()) {
            labels.push(&r.label);
        }
    }
    let last = |label: &str, target: &str| {
        reports
            .iter()
            .rev()
            .find(|r| r.label == label && r.target == target)
    };
    let mut load = String::from(
        "| step | target | deliveries/s | delivery p50 ms | delivery p99 ms | publish ack p99 ms | server CPU µs/delivery | server RSS MiB | loadtest CPU % | lost / gaps |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let mut idle = String::from(
        "| step | target | connections | server RSS MiB | RSS KiB / connection | connect p99 ms | loadtest CPU % |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let (mut any_load, mut any_idle) = (false, false);
    for label in labels {
        let rows: Vec<&Report> = pair.rows.iter().filter_map(|t| last(label, t)).collect();
        let Some(first) = rows.first() else { continue };
        let is_idle = first.scenario == "idle";
        for r in &rows {
            let server = r.server.as_ref();
            let cpu = server.map_or("—".to_owned(), |s| {
                format!("{:.2}", s.cpu_us_per_delivery)
            });
            let rss = server.map_or("—".to_owned(), |s| format!("{:.1}", s.rss_mib));
            let sat = if r.loadgen.saturated {
                " (saturated)"
            } else {
                ""
            };
            if is_idle {
                any_idle = true;
                let per = server.map_or("—".to_owned(), |s| {
                    format!("{:.2}", s.rss_per_connection_kib)
                });
                let rss =
                    server.map_or("—".to_owned(), |s| format!("{:.1}", s.rss_connected_mib));
                let _ = writeln!(
                    idle,
                    "| {label} | {} | {} | {rss} | {per} | {:.2} | {:.0}{sat} |",
                    r.target,
                    grouped(r.connected as f64),
                    r.connect_latency_ms.p99_ms,
                    r.loadgen.cpu_pct
                );
            } else {
                any_load = true;
                let _ = writeln!(
                    load,
                    "| {label} | {} | {} | {:.2} | {:.2} | {:.2} | {cpu} | {rss} | {:.0}{sat} | {} / {} |",
                    r.target,
                    grouped(r.deliveries_per_sec),
                    r.delivery_latency_ms.p50_ms,
                    r.delivery_latency_ms.p99_ms,
                    r.publish_ack_ms.p99_ms,
                    r.loadgen.cpu_pct,
                    r.lost,
                    r.gaps
                );
            }
        }
        if let (Some(s), Some(c)) = (last(label, pair.numerator), last(label, pair.denominator)) {
            let (ss, cs) = (s.server.as_ref(), c.server.as_ref());
            let both = |f: fn(&ServerStats) -> f64| match (ss, cs) {
                (Some(a), Some(b)) => ratio_cell(f(a), f(b)),
                _ => "—".to_owned(),
            };
            if is_idle {
                let _ = writeln!(
                    idle,
                    "| {label} | {} | {} | {} | {} | {} | |",
                    pair.ratio_label,
                    ratio_cell(s.connected as f64, c.connected as f64),
                    both(|x| x.rss_connected_mib),
                    both(|x| x.rss_per_connection_kib),
                    ratio_cell(s.connect_latency_ms.p99_ms, c.connect_latency_ms.p99_ms)
                );
            } else {
                let _ = writeln!(
                    load,
                    "| {label} | {} | {} | {} | {} | {} | {} | {} | | |",
                    pair.ratio_label,
                    ratio_cell(s.deliveries_per_sec, c.deliveries_per_sec),
                    ratio_cell(s.delivery_latency_ms.p50_ms, c.delivery_latency_ms.p50_ms),
                    ratio_cell(s.delivery_latency_ms.p99_ms, c.delivery_latency_ms.p99_ms),
                    ratio_cell(s.publish_ack_ms.p99_ms, c.publish_ack_ms.p99_ms),
                    both(|x| x.cpu_us_per_delivery),
                    both(|x| x.rss_mib)
                );
            }
        }
    }
    let mut out = String::new();
    if any_load {
        out.push_str(&load);
    }
    if any_idle {
        if any_load {
            out.push('\n');
        }
        out.push_str(&idle);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurements(latencies: &[u64], acked: u64) -> Measurements {
        let mut m = Measurements::new(1_000_000);
        for (i, &l) in latencies.iter().enumerate() {
            m.record_delivery(i as u64 * 700_000, l);
            m.last_delivery_micros = m.last_delivery_micros.max(10_000_000 + i as u64 * 700_000);
        }
        m.acked = acked;
        m.published = acked;
        stats::record_micros(&mut m.publish_ack, 1_500);
        stats::record_micros(&mut m.connect, 800);
        m.connected = 2;
        m.loadgen_processes = 1;
        m.loadgen_cpu_s = 0.5;
        m.loadgen_wall_s = 2.0;
        m.loadgen_max_process_cpu_pct = 25.0;
        m.loadgen_cores = 1;
        m
    }

    fn info(target: &str, label: &str) -> RunInfo {
        RunInfo {
            scenario: "fanout".into(),
            target: target.into(),
            label: label.into(),
            spaces: 1,
            subscribers: 2,
            rate: 2,
            duration_s: 1.0,
            content_bytes: 100,
            source_addrs: 1,
            connect_s: 0.5,
            scheduled: 2,
            publisher_max_lag_ms: 0.2,
            expected_deliveries: 4,
            publish_start_micros: 10_000_000,
            publish_end_micros: 11_000_000,
            drain_s: 0.1,
            ..RunInfo::default()
        }
    }

    #[test]
    fn merge_adds_counts_histograms_and_timelines() {
        let mut a = measurements(&[1_000, 2_000], 2);
        a.error("close_4008");
        a.seq.observe(1);
        a.seq.observe(3);
        let mut b = measurements(&[3_000, 4_000, 5_000], 3);
        b.error("close_4008");
        b.error("malformed_frame");
        b.loadgen_max_process_cpu_pct = 95.0;
        b.loadgen_cores = 2;

        // Through JSON, as a --processes child hands it over.
        let b_json = serde_json::to_string(&b).unwrap();
        let b: Measurements = serde_json::from_str(&b_json).unwrap();
        a.merge(&b);

        assert_eq!(a.deliveries, 5);
        assert_eq!(a.delivery.len(), 5);
        assert_eq!(a.acked, 5);
        assert_eq!(a.connected, 4);
        assert_eq!(a.connect.len(), 2);
        assert_eq!(a.publish_ack.len(), 2);
        assert_eq!(a.seq.gaps, 1);
        assert_eq!(a.errors["close_4008"], 2);
        assert_eq!(a.errors["malformed_frame"], 1);
        // Deliveries at 0, 0.7, 1.4 s land in buckets 0, 0, 1 of each process.
        assert_eq!(a.timeline.len(), 2);
        assert_eq!(a.timeline[0].len(), 4);
        assert_eq!(a.timeline[1].len(), 1);
        assert!(a.delivery.equivalent(a.delivery.max(), 5_000));
        assert_eq!(a.loadgen_processes, 2);
        assert_eq!(a.loadgen_cpu_s, 1.0);
        assert_eq!(a.loadgen_max_process_cpu_pct, 95.0);
        assert_eq!(a.loadgen_cores, 2);
    }

    #[test]
    fn bad_histograms_are_errors_not_panics() {
        let m = measurements(&[1_000], 1);
        let mut v = serde_json::to_value(&m).unwrap();
        v["delivery"] = "not base64!".into();
        assert!(serde_json::from_value::<Measurements>(v.clone()).is_err());
        v["delivery"] = "AAAA".into();
        assert!(serde_json::from_value::<Measurements>(v).is_err());
    }

    #[test]
    fn timeline_is_bounded() {
        let mut m = Measurements::new(1_000_000);
        m.record_delivery(u64::MAX, 5);
        m.record_delivery(MAX_BUCKETS as u64 * 1_000_000, 5);
        assert!(m.timeline.is_empty());
        assert_eq!(m.deliveries, 2);
        assert_eq!(bucket_micros_for(20_000_000), 1_000_000);
        assert_eq!(bucket_micros_for(600_000_000), 1_000_000);
        assert_eq!(bucket_micros_for(3_600_000_000), 6_000_000);
    }

    #[test]
    fn report_json_shape() {
        let m = measurements(&[1_000, 3_000], 2);
        let samples = ServerSamples {
            pids: vec![42],
            before_connect: ProcSample {
                cpu_s: 1.0,
                rss_kib: 10_240,
                hwm_kib: 10_240,
            },
            connected: ProcSample {
                cpu_s: 1.5,
                rss_kib: 10_440,
                hwm_kib: 10_440,
            },
            window_start: ProcSample {
                cpu_s: 2.0,
                rss_kib: 10_440,
                hwm_kib: 10_440,
            },
            window_end: ProcSample {
                cpu_s: 2.5,
                rss_kib: 20_480,
                hwm_kib: 30_720,
            },
            window_s: 2.0,
            rss_timeline_kib: vec![10_240, 20_480],
        };
        let r = Report::build(info("spacecast", "1k@100"), &m, Some(samples));
        let v = serde_json::to_value(&r).unwrap();
        for key in [
            "scenario",
            "target",
            "label",
            "deliveries_per_sec",
            "delivery_latency_ms",
            "publish_ack_ms",
            "errors",
            "gaps",
            "duplicates",
            "lost",
            "server",
            "loadgen",
            "timeline",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {v}");
        }
        assert_eq!(v["delivery_latency_ms"]["count"], 2);
        assert_eq!(v["deliveries"], 2);
        assert_eq!(v["lost"], 2);
        assert_eq!(v["delivery_ratio"], 0.5);
        // Last delivery 0.7 s after the start: 2 deliveries / 0.7 s.
        assert_eq!(v["deliveries_per_sec"], 2.857);
        assert_eq!(v["acked_per_sec"], 2.0);
        let s = &v["server"];
        assert_eq!(s["cpu_s"], 0.5);
        assert_eq!(s["cpu_pct"], 25.0);
        assert_eq!(s["cpu_us_per_delivery"], 250_000.0);
        assert_eq!(s["rss_mib"], 20.0);
        assert_eq!(s["hwm_mib"], 30.0);
        assert_eq!(s["rss_per_connection_kib"], 100.0);
        assert_eq!(v["loadgen"]["cpu_pct"], 25.0);
        assert_eq!(v["loadgen"]["saturated"], false);
        assert_eq!(v["timeline"].as_array().unwrap().len(), 1);
        assert_eq!(v["timeline"][0]["deliveries"], 2);
        // A report reads back (compare parses the JSON lines).
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        let text = r.summary();
        assert!(
            text.contains("deliveries     2 of 4 expected (50.00%, lost 2)"),
            "{text}"
        );
        assert!(!text.contains("SATURATED"));
    }

    #[test]
    fn a_saturated_generator_is_reported() {
        let mut m = measurements(&[1_000], 1);
        m.loadgen_max_process_cpu_pct = 97.0;
        let r = Report::build(info("spacecast", ""), &m, None);
        assert!(r.loadgen.saturated);
        assert!(r.summary().contains("SATURATED"));
    }

    #[test]
    fn compare_table_has_ratios() {
        let mut s = Report::build(
            info("spacecast", "1k@100"),
            &measurements(&[1_000, 3_000], 2),
            None,
        );
        let mut c = Report::build(
            info("centrifugo", "1k@100"),
            &measurements(&[2_000, 6_000], 2),
            None,
        );
        s.deliveries_per_sec = 100_000.0;
        c.deliveries_per_sec = 50_000.0;
        let mut idle = Report::build(info("spacecast", "idle 10k"), &measurements(&[], 0), None);
        idle.scenario = "idle".into();
        idle.connected = 10_000;
        let lines = [&s, &c, &idle]
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect::<Vec<_>>()
            .join("\nsome other output\n");
        let reports = parse_reports(&lines).unwrap();
        assert_eq!(reports.len(), 3);
        let table = compare_table(&reports);
        assert!(
            table.contains("| 1k@100 | spacecast | 100,000 | 1.00 | 3.00 |"),
            "{table}"
        );
        assert!(
            table.contains("| 1k@100 | centrifugo | 50,000 | 2.00 | 6.00 |"),
            "{table}"
        );
        assert!(
            table.contains("| 1k@100 | **S / C** | 2.00× | 0.50× | 0.50× | 1.00× | — | — | | |"),
            "{table}"
        );
        assert!(
            table.contains("| idle 10k | spacecast | 10,000 |"),
            "{table}"
        );
        // No Centrifugo row for the idle step: no ratio row either.
        assert!(!table.contains("| idle 10k | **S / C**"), "{table}");
        assert!(parse_reports("no json here").is_err());
    }

    #[test]
    fn socketio_runs_are_compared_with_native_ones() {
        let mut n = Report::build(
            info("spacecast", "1k@100"),
            &measurements(&[1_000, 3_000], 2),
            None,
        );
        let mut sio = Report::build(
            info("socketio", "1k@100"),
            &measurements(&[2_000, 6_000], 2),
            None,
        );
        n.deliveries_per_sec = 100_000.0;
        sio.deliveries_per_sec = 50_000.0;
        let table = compare_table(&[n, sio]);
        assert!(
            table.contains("| 1k@100 | socketio | 50,000 | 2.00 | 6.00 |"),
            "{table}"
        );
        // Socket.IO over native: half the deliveries, twice the latency.
        assert!(
            table.contains(
                "| 1k@100 | **SIO / native** | 0.50× | 2.00× | 2.00× | 1.00× | — | — | | |"
            ),
            "{table}"
        );
        assert!(!table.contains("S / C"), "{table}");
    }

    #[test]
    fn grouping() {
        assert_eq!(grouped(0.0), "0");
        assert_eq!(grouped(999.4), "999");
        assert_eq!(grouped(1_000.0), "1,000");
        assert_eq!(grouped(1_234_567.0), "1,234,567");
    }
}
