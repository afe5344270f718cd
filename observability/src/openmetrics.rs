//! The OpenMetrics exposition of the registry, with exemplars: the trace id of a sampled request
//! on the latency histogram bucket its duration fell in, so a dashboard can jump from a slow
//! bucket to the trace that shows why.
//!
//! The `prometheus` crate encodes only the 0.0.4 text format, which has no exemplars; `/metrics`
//! serves this encoding to scrapers that ask for `application/openmetrics-text` (Prometheus does
//! when exemplar storage is on) and the 0.0.4 text to everyone else. The metrics themselves are
//! the same: this encodes the families [`prometheus::Registry::gather`] returns.
//!
//! Exemplars are recorded only for sampled traces (`trace::TraceParent::of` is `Some`), so with
//! traces off or a request unsampled nothing is stored; each series keeps the latest exemplar per
//! bucket (bounded by the series of the histograms that take them: routes × buckets).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::proto::{LabelPair, MetricFamily, MetricType};

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics.
pub fn wanted(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let media = part.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("application/openmetrics-text")
        })
    })
}

/// One exemplar: a sampled trace whose observation fell in a bucket.
#[derive(Clone, Debug, PartialEq)]
struct Exemplar {
    trace_id: String,
    value: f64,
    /// Seconds since the Unix epoch.
    at: f64,
}

/// A histogram series: its family and its label values in label-name order.
type Series = (&'static str, Vec<String>);

/// One slot per bucket of a series, `+Inf` last.
type Slots = Vec<Option<Exemplar>>;

/// The latest exemplar of each bucket of each histogram series that takes them.
#[derive(Default)]
pub struct Exemplars {
    series: Mutex<HashMap<Series, Slots>>,
}

impl Exemplars {
    /// Records `value` of the series `family{labels}` (label values in the order of their
    /// names, as Prometheus sorts them), whose histogram has `bounds`, as seen by the trace
    /// `trace_id` (32 lowercase hex digits).
    pub fn record(
        &self,
        family: &'static str,
        labels: &[&str],
        bounds: &[f64],
        value: f64,
        trace_id: String,
    ) {
        let bucket = bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(bounds.len());
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let key = (family, labels.iter().map(|l| (*l).to_owned()).collect());
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let slots = series
            .entry(key)
            .or_insert_with(|| vec![None; bounds.len() + 1]);
        if let Some(slot) = slots.get_mut(bucket) {
            *slot = Some(Exemplar {
                trace_id,
                value,
                at,
            });
        }
    }

    fn snapshot(&self) -> HashMap<Series, Slots> {
        self.series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Encodes `families` as OpenMetrics 1.0 text, with `exemplars` on histogram buckets.
pub fn encode(families: &[MetricFamily], exemplars: &Exemplars) -> String {
    let exemplars = exemplars.snapshot();
    let mut out = String::with_capacity(32 * 1024);
    for mf in families {
        let name = mf.name();
        let kind = mf.get_field_type();
        // A counter's family is named without `_total`; its sample carries it.
        let family = match kind {
            MetricType::COUNTER => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let type_name = match kind {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            MetricType::SUMMARY => "summary",
            MetricType::UNTYPED => "unknown",
        };
        let _ = writeln!(out, "# TYPE {family} {type_name}");
        if !mf.help().is_empty() {
            let _ = writeln!(out, "# HELP {family} {}", escape(mf.help()));
        }
        for m in mf.get_metric() {
            let labels = m.get_label();
            match kind {
                MetricType::COUNTER => {
                    sample(&mut out, family, "_total", labels, None);
                    value(&mut out, m.get_counter().get_value());
                }
                MetricType::GAUGE => {
                    sample(&mut out, family, "", labels, None);
                    value(&mut out, m.get_gauge().get_value());
                }
                // Nothing registers untyped metrics (the text encoder refuses them too).
                MetricType::UNTYPED => {}
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    let key_values: Vec<String> =
                        labels.iter().map(|l| l.value().to_owned()).collect();
                    let slots = exemplars
                        .iter()
                        .find(|((f, v), _)| *f == name && *v == key_values)
                        .map(|(_, s)| s.as_slice())
                        .unwrap_or(&[]);
                    let mut inf_seen = false;
                    let buckets = h.get_bucket();
                    for (i, b) in buckets.iter().enumerate() {
                        let bound = b.upper_bound();
                        inf_seen |= bound.is_infinite() && bound.is_sign_positive();
                        let le = float(bound);
                        sample(&mut out, family, "_bucket", labels, Some(&le));
                        bucket_value(&mut out, b.cumulative_count(), slots.get(i));
                    }
                    if !inf_seen {
                        sample(&mut out, family, "_bucket", labels, Some("+Inf"));
                        bucket_value(&mut out, h.get_sample_count(), slots.get(buckets.len()));
                    }
                    sample(&mut out, family, "_count", labels, None);
                    value(&mut out, h.get_sample_count() as f64);
                    sample(&mut out, family, "_sum", labels, None);
                    value(&mut out, h.get_sample_sum());
                }
                MetricType::SUMMARY => {
                    let s = m.get_summary();
                    for q in s.get_quantile() {
                        let quantile = float(q.quantile());
                        sample_with(&mut out, family, "", labels, ("quantile", &quantile));
                        value(&mut out, q.value());
                    }
                    sample(&mut out, family, "_count", labels, None);
                    value(&mut out, s.sample_count() as f64);
                    sample(&mut out, family, "_sum", labels, None);
                    value(&mut out, s.sample_sum());
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// `name<suffix>{labels[,le="…"]}` (no value yet).
fn sample(out: &mut String, family: &str, suffix: &str, labels: &[LabelPair], le: Option<&str>) {
    match le {
        Some(le) => sample_with(out, family, suffix, labels, ("le", le)),
        None => {
            out.push_str(family);
            out.push_str(suffix);
            if !labels.is_empty() {
                out.push('{');
                pairs(out, labels);
                out.push('}');
            }
        }
    }
}

fn sample_with(
    out: &mut String,
    family: &str,
    suffix: &str,
    labels: &[LabelPair],
    extra: (&str, &str),
) {
    out.push_str(family);
    out.push_str(suffix);
    out.push('{');
    pairs(out, labels);
    if !labels.is_empty() {
        out.push(',');
    }
    let _ = write!(out, "{}=\"{}\"", extra.0, escape(extra.1));
    out.push('}');
}

fn pairs(out: &mut String, labels: &[LabelPair]) {
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}=\"{}\"", l.name(), escape(l.value()));
    }
}

fn value(out: &mut String, v: f64) {
    out.push(' ');
    out.push_str(&float(v));
    out.push('\n');
}

fn bucket_value(out: &mut String, count: u64, exemplar: Option<&Option<Exemplar>>) {
    let _ = write!(out, " {count}");
    if let Some(Some(e)) = exemplar {
        let _ = write!(
            out,
            " # {{trace_id=\"{}\"}} {} {:.3}",
            e.trace_id,
            float(e.value),
            e.at
        );
    }
    out.push('\n');
}

/// A float as OpenMetrics writes it (`+Inf`, `-Inf`, `NaN`; integers without a fraction).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Escapes a label value or help text: backslash, double quote, newline.
fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['\\', '"', '\n']) {
        return s.into();
    }
    let mut e = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => e.push_str("\\\\"),
            '"' => e.push_str("\\\""),
            '\n' => e.push_str("\\n"),
            c => e.push(c),
        }
    }
    e.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{HistogramOpts, HistogramVec, IntCounter, Registry};

    #[test]
    fn accept_negotiation() {
        assert!(wanted(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        )));
        assert!(wanted(Some("text/plain, Application/OpenMetrics-Text")));
        assert!(!wanted(Some("text/plain;version=0.0.4")));
        assert!(!wanted(None));
    }

    #[test]
    fn counters_histograms_and_exemplars() {
        let r = Registry::new();
        let c = IntCounter::new("x_requests_total", "Requests \"served\"\nsince start").unwrap();
        r.register(Box::new(c.clone())).unwrap();
        let h = HistogramVec::new(
            HistogramOpts::new("x_seconds", "Latency").buckets(vec![0.1, 1.0]),
            &["route"],
        )
        .unwrap();
        r.register(Box::new(h.clone())).unwrap();
        c.inc();
        h.with_label_values(&["a\"b"]).observe(0.5);
        h.with_label_values(&["a\"b"]).observe(5.0);
        let ex = Exemplars::default();
        ex.record("x_seconds", &["a\"b"], &[0.1, 1.0], 0.5, "ab".repeat(16));
        ex.record("x_seconds", &["a\"b"], &[0.1, 1.0], 5.0, "cd".repeat(16));
        // Another series of the same family takes none of these.
        ex.record("x_seconds", &["other"], &[0.1, 1.0], 0.05, "ef".repeat(16));
        let text = encode(&r.gather(), &ex);
        assert!(text.contains("# TYPE x_requests counter\n"), "{text}");
        assert!(
            text.contains("# HELP x_requests Requests \\\"served\\\"\\nsince start\n"),
            "{text}"
        );
        assert!(text.contains("x_requests_total 1\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{route=\"a\\\"b\",le=\"0.1\"} 0\n"));
        let one = format!(
            "x_seconds_bucket{{route=\"a\\\"b\",le=\"1\"}} 1 # {{trace_id=\"{}\"}} 0.5 ",
            "ab".repeat(16)
        );
        assert!(text.contains(&one), "{text}");
        let inf = format!(
            "x_seconds_bucket{{route=\"a\\\"b\",le=\"+Inf\"}} 2 # {{trace_id=\"{}\"}} 5 ",
            "cd".repeat(16)
        );
        assert!(text.contains(&inf), "{text}");
        assert!(
            !text.contains(&"ef".repeat(16)),
            "no series `other` exists: {text}"
        );
        assert!(text.contains("x_seconds_count{route=\"a\\\"b\"} 2\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_later_exemplar_replaces_the_bucket_s_earlier_one() {
        let ex = Exemplars::default();
        ex.record("f", &[], &[1.0], 0.2, "a".repeat(32));
        ex.record("f", &[], &[1.0], 0.3, "b".repeat(32));
        let s = ex.snapshot();
        let slots = &s[&("f", vec![])];
        assert_eq!(slots.len(), 2);
        assert_eq!(
            slots[0].as_ref().map(|e| e.trace_id.clone()),
            Some("b".repeat(32))
        );
        assert_eq!(slots[1], None);
    }
}
