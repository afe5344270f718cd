//! Traces: the process's `tracing` subscriber, the optional OTLP exporter, and the W3C trace
//! context helpers the engine and the edge use to carry one trace across tasks, mailboxes and
//! nodes.
//!
//! - [`init`] (the binary only) installs the subscriber: the log output with its own filter
//!   (`RUST_LOG`, default `info`), and, when traces are on, an OpenTelemetry layer with a filter
//!   of its own (per-layer filters: spans reach the exporter whatever the log level is). With
//!   traces off, no layer wants a `debug` span and every span of the hot path is disabled at its
//!   call site (a branch).
//! - Sampling is decided once, where a trace starts ([`sample_request`] at the edge), and only
//!   sampled traces have spans at all: a span named in [`ROOT_SPANS`] is created by its call site
//!   only for a sampled parent (a `traceparent` header, a carried [`TraceParent`], the exported
//!   span of the command), and every other Spacecast span reaches the exporter only inside an
//!   exported span. So an unsampled request costs the exporter nothing but that one decision.
//! - [`TraceParent`] is a sampled span's identity (trace id, span id), small and `Copy`: what an
//!   event carries from the commit that made it to the nodes that deliver it.
//! - [`inject`] / [`extract`] read and write W3C `traceparent` / `tracestate` through the
//!   [`TraceContextPropagator`], for any header map (HTTP, NATS).
//!
//! Library crates only create `tracing` spans and call these helpers: without the layer,
//! [`TraceParent::of`] is `None`, [`inject`] writes nothing and [`extract`] does nothing.

use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::LogFormat;

/// The sampling ratio of new traces when neither `--trace-sample-ratio` nor
/// `OTEL_TRACES_SAMPLER_ARG` says otherwise.
pub const DEFAULT_SAMPLE_RATIO: f64 = 0.01;

/// How spans leave the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (the collector's port 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318, path `/v1/traces`).
    Http,
}

impl OtlpProtocol {
    /// `grpc`, or `http` (also `http/protobuf`, the `OTEL_EXPORTER_OTLP_PROTOCOL` spelling).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http" | "http/protobuf" => Some(OtlpProtocol::Http),
            _ => None,
        }
    }
}

/// The exporter's settings, from the binary's configuration. Each `None` falls back to the
/// standard `OTEL_*` variable, then to the default; a Spacecast option always wins over the
/// `OTEL_*` variable of the same meaning.
#[derive(Clone, Debug, Default)]
pub struct TraceExport {
    /// `--otlp-endpoint`; else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (read by the SDK). Traces are off when none is set.
    pub endpoint: Option<String>,
    /// `--otlp-protocol`; else `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL`;
    /// else gRPC.
    pub protocol: Option<OtlpProtocol>,
    /// `--trace-sample-ratio` (0..=1) for new traces; else `OTEL_TRACES_SAMPLER_ARG`; else
    /// [`DEFAULT_SAMPLE_RATIO`]. Parent-based: a sampled incoming `traceparent` is always
    /// followed, an unsampled one never.
    pub sample_ratio: Option<f64>,
    /// `service.instance.id`: the node id.
    pub node_id: String,
    /// `service.version`.
    pub version: String,
}

impl TraceExport {
    /// Whether traces leave the process: an endpoint is configured here or in `OTEL_*`, and
    /// `OTEL_SDK_DISABLED` is not `true`.
    pub fn enabled(&self) -> bool {
        let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
        let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim() == "true");
        !disabled
            && (self
                .endpoint
                .as_deref()
                .is_some_and(|e| !e.trim().is_empty())
                || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                || set("OTEL_EXPORTER_OTLP_ENDPOINT"))
    }

    fn protocol(&self) -> OtlpProtocol {
        self.protocol
            .or_else(|| {
                [
                    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                    "OTEL_EXPORTER_OTLP_PROTOCOL",
                ]
                .iter()
                .find_map(|k| std::env::var(k).ok().and_then(|v| OtlpProtocol::parse(&v)))
            })
            .unwrap_or(OtlpProtocol::Grpc)
    }

    fn sample_ratio(&self) -> f64 {
        self.sample_ratio
            .or_else(|| {
                std::env::var("OTEL_TRACES_SAMPLER_ARG")
                    .ok()
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .filter(|r| (0.0..=1.0).contains(r))
            })
            .unwrap_or(DEFAULT_SAMPLE_RATIO)
    }

    /// The endpoint given to the exporter. The SDK takes a configured HTTP endpoint as the full
    /// URL; a bare `http://host:4318` gets the signal's path, as an `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// would.
    fn endpoint(&self, protocol: OtlpProtocol) -> Option<String> {
        let e = self.endpoint.as_deref()?.trim();
        if e.is_empty() {
            return None;
        }
        let e = e.trim_end_matches('/');
        let bare = e
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.contains('/'));
        Some(if protocol == OtlpProtocol::Http && bare {
            format!("{e}/v1/traces")
        } else {
            e.to_owned()
        })
    }
}

/// The installed exporter; [`Tracing::shutdown`] flushes it. Dropping it without `shutdown`
/// loses the spans still batched.
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
    ratio: f64,
}

impl Tracing {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// The share of new traces to sample ([`sample_request`]) when spans are exported.
    pub fn sample_ratio(&self) -> Option<f64> {
        self.exporting().then_some(self.ratio)
    }

    /// Exports every span still batched and stops the exporter, within `timeout`. Call once,
    /// after the server drained (the last spans are those of the drain).
    pub fn shutdown(mut self, timeout: Duration) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown_with_timeout(timeout)
        {
            eprintln!("spacecast: could not flush the trace exporter: {e}");
        }
    }
}

/// Installs the process-wide subscriber: logs to stderr filtered by `RUST_LOG` (else
/// `default_filter`), and, when [`TraceExport::enabled`], the OTLP exporter. Must run inside a
/// Tokio runtime context (the gRPC client lives on it). Called once, by the binary only.
///
/// # Errors
/// The exporter cannot be built (a malformed endpoint); nothing is installed then.
pub fn init(
    default_filter: &str,
    format: LogFormat,
    export: &TraceExport,
) -> Result<Tracing, String> {
    use tracing_subscriber::EnvFilter;
    let log_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().with_filter(log_filter).boxed(),
        LogFormat::Text => fmt.with_filter(log_filter).boxed(),
    };
    let provider = if export.enabled() {
        Some(provider(export)?)
    } else {
        None
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("spacecast"))
            // Per span, these would cost an allocation or an attribute each and say little.
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            // Parents come from the tracing span tree; nothing here reads the OTel context.
            .with_context_activation(false)
            .with_filter(OtelFilter)
    });
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(Tracing {
        provider,
        ratio: export.sample_ratio(),
    })
}

/// The spans that may start an exported span tree: their call sites create them only for a
/// sampled parent (see the module doc). Any other Spacecast span is exported only as the
/// descendant of an exported span.
pub const ROOT_SPANS: [&str; 6] = [
    "http.request",
    "stream.send",
    "bus.command",
    "space.command",
    "space.commit",
    "fanout",
];

/// What the exporter receives: the spans of sampled traces (see [`ROOT_SPANS`]; all at `debug`,
/// so they cost nothing with traces off), and warnings and errors, which become span events.
struct OtelFilter;

impl OtelFilter {
    fn ours(m: &tracing::Metadata<'_>) -> bool {
        m.target().starts_with("spacecast") && *m.level() <= tracing::Level::DEBUG
    }
}

impl<S> tracing_subscriber::layer::Filter<S> for OtelFilter
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn enabled(
        &self,
        m: &tracing::Metadata<'_>,
        cx: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        if m.is_span() {
            // `cx` sees only the spans this filter let through: the exported ones.
            Self::ours(m) && (ROOT_SPANS.contains(&m.name()) || cx.lookup_current().is_some())
        } else {
            *m.level() <= tracing::Level::WARN
        }
    }

    fn callsite_enabled(
        &self,
        m: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        use tracing::subscriber::Interest;
        match (
            m.is_span(),
            Self::ours(m),
            *m.level() <= tracing::Level::WARN,
        ) {
            // Decided per span, by where it is created.
            (true, true, _) => Interest::sometimes(),
            (false, _, true) => Interest::always(),
            _ => Interest::never(),
        }
    }

    fn max_level_hint(&self) -> Option<tracing_subscriber::filter::LevelFilter> {
        Some(tracing_subscriber::filter::LevelFilter::DEBUG)
    }
}

/// Whether a request starts a sampled trace: as its W3C `traceparent` says when it has a
/// well-formed one (parent-based), else with probability `ratio`.
pub fn sample_request(traceparent: Option<&str>, ratio: f64) -> bool {
    match traceparent.and_then(sampled_flag) {
        Some(sampled) => sampled,
        None => ratio >= 1.0 || (ratio > 0.0 && rand::random::<f64>() < ratio),
    }
}

/// The sampled flag of a well-formed `traceparent`.
fn sampled_flag(s: &str) -> Option<bool> {
    let parts: Vec<&str> = s.trim().split('-').collect();
    let [v, t, p, f] = parts[..] else {
        return None;
    };
    let hex = |x: &str, n: usize| x.len() == n && x.bytes().all(|b| b.is_ascii_hexdigit());
    (v == "00" && hex(t, 32) && hex(p, 16) && hex(f, 2))
        .then(|| u8::from_str_radix(f, 16).is_ok_and(|f| f & 1 == 1))
}

fn provider(export: &TraceExport) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    let protocol = export.protocol();
    let endpoint = export.endpoint(protocol);
    let exporter = match protocol {
        OtlpProtocol::Grpc => {
            let b = SpanExporter::builder().with_tonic();
            match endpoint {
                Some(e) => b.with_endpoint(e).build(),
                None => b.build(),
            }
        }
        OtlpProtocol::Http => {
            let b = SpanExporter::builder().with_http();
            match endpoint {
                Some(e) => b.with_endpoint(e).build(),
                None => b.build(),
            }
        }
    }
    .map_err(|e| format!("OTLP trace exporter: {e}"))?;
    // The SDK's resource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; `service.name`
    // is `spacecast` unless one of them names it.
    let mut resource = Resource::builder();
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    if !named {
        resource = resource.with_service_name("spacecast");
    }
    let resource = resource
        .with_attributes([
            KeyValue::new("service.instance.id", export.node_id.clone()),
            KeyValue::new("service.version", export.version.clone()),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        // Sampling is decided where a trace starts (`sample_request`), and only sampled traces
        // have spans: every root reaching the SDK is meant to be exported.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build())
}

/// A sampled span's identity: what a commit's events carry to the nodes that deliver them, so
/// each delivery joins the trace of the send that caused it. `Copy`, 25 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: TraceId,
    span_id: SpanId,
}

impl TraceParent {
    /// The span's identity if it is exported (the OTel layer is on and the span's trace is
    /// sampled); `None` otherwise, at the cost of a branch when traces are off.
    pub fn of(span: &Span) -> Option<Self> {
        if span.is_disabled() {
            return None;
        }
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        (sc.is_valid() && sc.is_sampled()).then(|| TraceParent {
            trace_id: sc.trace_id(),
            span_id: sc.span_id(),
        })
    }

    /// Whether both belong to one trace.
    pub fn same_trace(&self, other: &TraceParent) -> bool {
        self.trace_id == other.trace_id
    }

    /// The trace id in lowercase hex (32 digits), as collectors show it.
    pub fn trace_id_hex(&self) -> String {
        self.trace_id.to_string()
    }

    /// The W3C `traceparent` value: `00-<trace id>-<span id>-01`.
    pub fn header(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }

    /// Reads a W3C `traceparent` value; `None` unless it is well formed and sampled.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('-');
        let (v, t, p, f) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if v != "00" || parts.next().is_some() || t.len() != 32 || p.len() != 16 || f.len() != 2 {
            return None;
        }
        let trace_id = TraceId::from_hex(t).ok()?;
        let span_id = SpanId::from_hex(p).ok()?;
        let flags = u8::from_str_radix(f, 16).ok()?;
        (trace_id != TraceId::INVALID && span_id != SpanId::INVALID && flags & 1 == 1)
            .then_some(TraceParent { trace_id, span_id })
    }

    fn context(&self) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            self.trace_id,
            self.span_id,
            TraceFlags::SAMPLED,
            true,
            TraceState::NONE,
        ))
    }
}

/// Makes `parent` the OTel parent of `span`, which must be new (no child created, not entered
/// yet). Does nothing with traces off.
pub fn set_parent(span: &Span, parent: TraceParent) {
    if !span.is_disabled() {
        let _ = span.set_parent(parent.context());
    }
}

/// Writes `span`'s W3C trace context (`traceparent`, and `tracestate` when there is one) through
/// `set`. Also for an unsampled span: the receiver then follows the decision not to sample.
/// Writes nothing with traces off.
pub fn inject(span: &Span, mut set: impl FnMut(&str, String)) {
    if span.is_disabled() {
        return;
    }
    struct Set<'a>(&'a mut dyn FnMut(&str, String));
    impl Injector for Set<'_> {
        fn set(&mut self, key: &str, value: String) {
            (self.0)(key, value)
        }
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut Set(&mut set));
}

/// Makes the W3C trace context found through `get` (`traceparent`, `tracestate`) the parent of
/// `span`, which must be new. A missing or malformed header leaves `span` where it is (its
/// tracing parent, or a new trace). Does nothing with traces off.
pub fn extract<'a>(span: &Span, get: impl Fn(&str) -> Option<&'a str>) {
    if span.is_disabled() {
        return;
    }
    // The marker ties the values' lifetime to the extractor's, as `Extractor::get` requires.
    struct Get<'a, F>(F, std::marker::PhantomData<&'a str>);
    impl<'a, F: Fn(&str) -> Option<&'a str>> Extractor for Get<'a, F> {
        fn get(&self, key: &str) -> Option<&str> {
            (self.0)(key)
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent", "tracestate"]
        }
    }
    let cx = TraceContextPropagator::new().extract(&Get(get, std::marker::PhantomData));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The remote parent found through `get`, as [`TraceParent`] (sampled only).
pub fn extract_parent<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<TraceParent> {
    TraceParent::parse(get("traceparent")?)
}

/// For tests: code run under the exporter's own filter, sampling every root, with an in-memory
/// exporter instead of OTLP.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;
    use opentelemetry_sdk::trace::InMemorySpanExporter;
    pub use opentelemetry_sdk::trace::SpanData;

    /// Runs `f` with a subscriber like [`init`]'s (the OTel layer and its filter; `sampler`
    /// decides roots) and returns the spans it exported.
    pub fn capture(sampler: Sampler, f: impl FnOnce()) -> Vec<SpanData> {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler)
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("test"))
            .with_context_activation(false)
            .with_filter(OtelFilter);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, f);
        let _ = provider.force_flush();
        exporter.get_finished_spans().unwrap_or_default()
    }

    /// Every root sampled.
    pub fn always() -> Sampler {
        Sampler::AlwaysOn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with_otel(sampler: Sampler, f: impl FnOnce()) -> Vec<testing::SpanData> {
        testing::capture(sampler, f)
    }

    #[test]
    fn inject_then_extract_keeps_the_trace_across_a_header_map() {
        let mut headers = HashMap::<String, String>::new();
        let mut sender = None;
        let spans = with_otel(Sampler::AlwaysOn, || {
            let send = tracing::debug_span!(target: "spacecast_test", "http.request");
            inject(&send, |k, v| {
                headers.insert(k.to_owned(), v);
            });
            sender = TraceParent::of(&send);
            let receive =
                tracing::debug_span!(target: "spacecast_test", parent: None, "bus.command");
            extract(&receive, |k| headers.get(k).map(String::as_str));
            drop(receive);
            drop(send);
        });
        let sender = sender.expect("an exported span has a trace parent");
        assert_eq!(headers.get("traceparent"), Some(&sender.header()));
        assert_eq!(
            extract_parent(|k| headers.get(k).map(String::as_str)),
            Some(sender)
        );
        let receive = spans.iter().find(|s| s.name == "bus.command").unwrap();
        let send = spans.iter().find(|s| s.name == "http.request").unwrap();
        assert_eq!(
            receive.span_context.trace_id(),
            send.span_context.trace_id()
        );
        assert_eq!(receive.parent_span_id, send.span_context.span_id());
    }

    #[test]
    fn an_unsampled_parent_is_followed_and_nothing_is_exported() {
        let mut headers = HashMap::<String, String>::new();
        let spans = with_otel(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)), || {
            headers.insert(
                "traceparent".into(),
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00".into(),
            );
            let s = tracing::debug_span!(target: "spacecast_test", "http.request");
            extract(&s, |k| headers.get(k).map(String::as_str));
            assert_eq!(TraceParent::of(&s), None, "not sampled");
        });
        assert!(spans.is_empty(), "{spans:?}");
    }

    #[test]
    fn set_parent_joins_a_carried_trace_parent() {
        let tp =
            TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(tp.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
        let spans = with_otel(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)), || {
            let s = tracing::debug_span!(target: "spacecast_test", "fanout");
            set_parent(&s, tp);
        });
        assert_eq!(spans.len(), 1, "a sampled parent is followed");
        assert_eq!(spans[0].span_context.trace_id(), tp.trace_id);
        assert_eq!(spans[0].parent_span_id, tp.span_id);
    }

    #[test]
    fn only_root_spans_start_an_exported_tree_and_others_follow_it() {
        let spans = with_otel(Sampler::AlwaysOn, || {
            // Not a root and no exported parent: not exported (no new trace).
            drop(tracing::debug_span!(target: "spacecast_test", "store"));
            let root = tracing::debug_span!(target: "spacecast_test", "space.commit");
            root.in_scope(|| drop(tracing::debug_span!(target: "spacecast_test", "store")));
            drop(root);
            // Not ours: never.
            drop(tracing::debug_span!(target: "elsewhere", "space.commit"));
        });
        let mut names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        names.sort_unstable();
        assert_eq!(names, ["space.commit", "store"]);
        let (commit, store) = (
            spans.iter().find(|s| s.name == "space.commit").unwrap(),
            spans.iter().find(|s| s.name == "store").unwrap(),
        );
        assert_eq!(store.parent_span_id, commit.span_context.span_id());
    }

    #[test]
    fn a_request_is_sampled_as_its_traceparent_says_else_by_the_ratio() {
        let on = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let off = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
        assert!(sample_request(Some(on), 0.0));
        assert!(!sample_request(Some(off), 1.0));
        assert!(sample_request(None, 1.0));
        assert!(!sample_request(None, 0.0));
        // Malformed: as if absent.
        assert!(sample_request(Some("00-xyz-01"), 1.0));
        assert!(!sample_request(Some("00-xyz-01"), 0.0));
        let n = (0..10_000).filter(|_| sample_request(None, 0.1)).count();
        assert!((500..2000).contains(&n), "{n} of 10000 at 10 %");
    }

    #[test]
    fn malformed_or_unsampled_trace_parents_are_refused() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-xx",
            "00-zzf7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn with_traces_off_the_helpers_do_nothing() {
        let s = tracing::debug_span!(target: "spacecast_test", "off");
        let mut wrote = false;
        inject(&s, |_, _| wrote = true);
        assert!(!wrote);
        assert_eq!(TraceParent::of(&s), None);
    }

    #[test]
    fn http_endpoints_get_the_signal_path_and_the_flag_wins() {
        let e = TraceExport {
            endpoint: Some("http://127.0.0.1:4318/".into()),
            ..Default::default()
        };
        assert_eq!(
            e.endpoint(OtlpProtocol::Http).as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        assert_eq!(
            e.endpoint(OtlpProtocol::Grpc).as_deref(),
            Some("http://127.0.0.1:4318")
        );
        let custom = TraceExport {
            endpoint: Some("http://c:4318/custom/traces".into()),
            protocol: Some(OtlpProtocol::Http),
            sample_ratio: Some(0.5),
            ..Default::default()
        };
        assert_eq!(
            custom.endpoint(OtlpProtocol::Http).as_deref(),
            Some("http://c:4318/custom/traces")
        );
        assert_eq!(custom.protocol(), OtlpProtocol::Http);
        assert_eq!(custom.sample_ratio(), 0.5);
        assert_eq!(
            OtlpProtocol::parse("http/protobuf"),
            Some(OtlpProtocol::Http)
        );
        assert_eq!(OtlpProtocol::parse("thrift"), None);
    }
}
