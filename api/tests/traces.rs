//! One trace per request, end to end (issue 11): two `spacecast serve` nodes over NATS and the
//! CQL store export their spans over OTLP to a real Jaeger (`scripts/jaeger.sh up`), sampling
//! everything. A message sent through node A into a space node B owns, with a `traceparent`
//! whose trace id the test chose, must come back from Jaeger's query API as ONE trace holding the
//! edge, forward, actor, commit, store, publish and delivery spans, related (parent/child or
//! link) and ordered in time as the message travelled, each from the node that did the work,
//! and none of them carrying the message's content or the caller's token.
//!
//! Real services, like the cluster tests (and run in their step of scripts/test.sh, one test at
//! a time): Cassandra (`scripts/cassandra.sh up`), NATS (`scripts/nats.sh up`) and Jaeger. The
//! collector comes from `SPACECAST_TEST_OTLP_ENDPOINT` / `SPACECAST_TEST_JAEGER_QUERY`
//! (scripts/test.sh exports them), else from `scripts/jaeger.sh env`; an unreachable Jaeger fails
//! the test, naming the fix.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use cluster::{Cluster, ClusterOpts};

/// The collector's addresses, from the environment (scripts/test.sh exports them) or else from
/// `scripts/jaeger.sh env`.
struct Jaeger {
    /// OTLP over gRPC.
    otlp: String,
    /// OTLP over HTTP.
    otlp_http: String,
    /// The query API's base URL.
    query: String,
}

fn jaeger() -> Jaeger {
    let keys = [
        "SPACECAST_TEST_OTLP_ENDPOINT",
        "SPACECAST_TEST_OTLP_HTTP_ENDPOINT",
        "SPACECAST_TEST_JAEGER_QUERY",
    ];
    let mut vars: HashMap<&str, String> = keys
        .iter()
        .filter_map(|k| Some((*k, std::env::var(k).ok().filter(|v| !v.is_empty())?)))
        .collect();
    if vars.len() < keys.len() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/jaeger.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg("env")
            .output()
            .expect("run scripts/jaeger.sh env");
        assert!(out.status.success(), "scripts/jaeger.sh env failed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for k in keys {
            let v = text
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("scripts/jaeger.sh env printed no {k}: {text}"));
            vars.entry(k).or_insert_with(|| v.to_owned());
        }
    }
    Jaeger {
        otlp: vars[keys[0]].clone(),
        otlp_http: vars[keys[1]].clone(),
        query: vars[keys[2]].clone(),
    }
}

/// Fails the test, naming the fix, when Jaeger's query API does not answer: never a skip.
async fn require_jaeger(http: &reqwest::Client, query: &str) {
    let up = http.get(format!("{query}/api/services")).send().await;
    assert!(
        up.is_ok_and(|r| r.status().is_success()),
        "no Jaeger at {query}: run `scripts/jaeger.sh up` (or export SPACECAST_TEST_OTLP_ENDPOINT, \
         SPACECAST_TEST_OTLP_HTTP_ENDPOINT and SPACECAST_TEST_JAEGER_QUERY)"
    );
}

/// Stops every node with SIGTERM: each must flush its last spans before it exits. The tests stop
/// the nodes before they look in Jaeger, a fraction of a second after the traced request, well
/// inside the exporter's 5 s batch period: spans not flushed at exit would be missing.
async fn stop_all(c: &mut Cluster) {
    for node in &mut c.nodes {
        let server = node.server.as_mut().expect("running");
        let status = server.terminate().await;
        assert!(status.success(), "{} exited with {status}", node.id);
    }
}

/// Polls Jaeger for `trace_id` until `complete` holds for its spans (a minute at most).
async fn trace_when(
    http: &reqwest::Client,
    query: &str,
    trace_id: &str,
    complete: impl Fn(&[Span]) -> bool,
) -> Value {
    common::eventually(
        "Jaeger holds the whole trace",
        Duration::from_secs(60),
        || {
            let http = http.clone();
            let url = format!("{query}/api/traces/{trace_id}");
            let complete = &complete;
            async move {
                let r = http.get(url).send().await.ok()?;
                if !r.status().is_success() {
                    return None;
                }
                let v: Value = r.json().await.ok()?;
                complete(&spans_of(&v["data"][0])).then_some(v)
            }
        },
    )
    .await
}

/// One span of a Jaeger trace, flattened.
#[derive(Debug, Clone)]
struct Span {
    id: String,
    name: String,
    /// `service.instance.id` of the process that sent it (the node id).
    node: String,
    start_us: u64,
    /// CHILD_OF reference, if any.
    parent: Option<String>,
    /// FOLLOWS_FROM references (OTel links).
    links: Vec<String>,
    tags: HashMap<String, Value>,
}

fn spans_of(trace: &Value) -> Vec<Span> {
    let processes = &trace["processes"];
    let node_of = |pid: &str| -> String {
        processes[pid]["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["key"] == "service.instance.id")
            .and_then(|t| t["value"].as_str())
            .unwrap_or("?")
            .to_owned()
    };
    trace["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| {
            let refs = s["references"].as_array().cloned().unwrap_or_default();
            let of = |kind: &str| -> Vec<String> {
                refs.iter()
                    .filter(|r| r["refType"] == kind)
                    .filter_map(|r| r["spanID"].as_str().map(str::to_owned))
                    .collect()
            };
            Span {
                id: s["spanID"].as_str().expect("spanID").to_owned(),
                name: s["operationName"].as_str().expect("name").to_owned(),
                node: node_of(s["processID"].as_str().expect("processID")),
                start_us: s["startTime"].as_u64().expect("startTime"),
                parent: of("CHILD_OF").into_iter().next(),
                links: of("FOLLOWS_FROM"),
                tags: s["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| Some((t["key"].as_str()?.to_owned(), t["value"].clone())))
                    .collect(),
            }
        })
        .collect()
}

/// The spans named `name` on `node`.
fn named<'a>(spans: &'a [Span], name: &str, node: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.name == name && s.node == node)
        .collect()
}

/// The one span named `name` on `node`, with `pred`.
fn one<'a>(spans: &'a [Span], name: &str, node: &str, pred: impl Fn(&Span) -> bool) -> &'a Span {
    let found: Vec<&Span> = named(spans, name, node)
        .into_iter()
        .filter(|s| pred(s))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one `{name}` span from {node} expected; the trace has: {:#?}",
        spans
            .iter()
            .map(|s| (&s.name, &s.node, &s.id, &s.parent))
            .collect::<Vec<_>>()
    );
    found[0]
}

/// `a` is an ancestor of `b` through CHILD_OF references, and started no later.
fn assert_before_and_above(spans: &[Span], a: &Span, b: &Span) {
    let by_id: HashMap<&str, &Span> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut at = b;
    loop {
        match at.parent.as_deref().and_then(|p| by_id.get(p)) {
            Some(p) if p.id == a.id => break,
            Some(p) => at = p,
            None => panic!(
                "`{}` ({}) is not an ancestor of `{}` ({})",
                a.name, a.node, b.name, b.node
            ),
        }
    }
    assert!(
        a.start_us <= b.start_us,
        "`{}` started after its descendant `{}`",
        a.name,
        b.name
    );
}

fn tag_u64(s: &Span, key: &str) -> u64 {
    s.tags
        .get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("`{}` has no integer tag {key}: {:?}", s.name, s.tags))
}

fn tag_str<'a>(s: &'a Span, key: &str) -> &'a str {
    s.tags
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("`{}` has no string tag {key}: {:?}", s.name, s.tags))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_a_send_from_the_edge_to_the_disk_and_to_every_delivering_node() {
    let Jaeger { otlp, query, .. } = jaeger();
    let http = common::http_client();
    require_jaeger(&http, &query).await;
    let mut opts = ClusterOpts::cluster(2);
    opts.extra = vec![
        "--otlp-endpoint".into(),
        otlp,
        "--trace-sample-ratio".into(),
        "1".into(),
    ];
    let mut c = Cluster::start(opts).await;
    let (a, b) = (c.server(0), c.server(1));
    let token = common::token("trace-owner");
    // The space is created and first written through B, so B takes its lease: a send through A
    // is then forwarded to B over NATS.
    let space = b.create_space(&token, "traced").await["space_id"]
        .as_str()
        .expect("space_id")
        .to_owned();
    let (status, _) = b.send_text(&token, &space, "warm-up through B").await;
    assert_eq!(status, 201);
    // Subscribers on both nodes: B delivers from its own commit, A from B's publish.
    let (mut on_b, _) = b.stream_hello(&token).await;
    assert_eq!(on_b.join(&space, None).await["type"], "joined");
    let (mut on_a, _) = a.stream_hello(&token).await;
    assert_eq!(on_a.join(&space, None).await["type"], "joined");

    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let secret = format!("secret-content-{}", uuid::Uuid::new_v4().simple());
    let res = a
        .http
        .post(a.url(&format!("/api/messages/{space}")))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&serde_json::json!({"content": secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let answered = res
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("a traced request is answered with its traceparent");
    assert!(
        answered.starts_with(&format!("00-{trace_id}-")) && answered.ends_with("-01"),
        "{answered}"
    );
    let sent: Value = res.json().await.unwrap();
    let seq = sent["seq"].as_u64().expect("seq");
    for ws in [&mut on_b, &mut on_a] {
        let ev = ws
            .next_matching(|v| v["type"] == "event" && v["seq"] == seq)
            .await;
        assert_eq!(ev["data"]["content"], secret.as_str(), "{ev}");
    }
    drop((on_a, on_b));
    stop_all(&mut c).await;

    // Jaeger has the trace once both nodes exported their batches (every few seconds).
    let wanted: [(&str, &str); 9] = [
        ("http.request", "n0"),
        ("bus.forward", "n0"),
        ("bus.command", "n1"),
        ("space.command", "n1"),
        ("space.commit", "n1"),
        ("store", "n1"),
        ("bus.publish", "n1"),
        ("fanout", "n1"),
        ("fanout", "n0"),
    ];
    let trace = trace_when(&http, &query, &trace_id, |spans| {
        wanted
            .iter()
            .all(|(name, node)| !named(spans, name, node).is_empty())
    })
    .await;
    let traces = trace["data"].as_array().expect("data");
    assert_eq!(traces.len(), 1, "one trace");
    assert_eq!(traces[0]["traceID"], trace_id.as_str());
    let spans = spans_of(&traces[0]);

    // The path of the message, in causal order.
    let edge = one(&spans, "http.request", "n0", |_| true);
    assert_eq!(
        edge.parent.as_deref(),
        Some(caller_span),
        "the edge continues the caller's traceparent"
    );
    assert_eq!(tag_u64(edge, "http.response.status_code"), 201);
    let forward = one(&spans, "bus.forward", "n0", |_| true);
    let command = one(&spans, "bus.command", "n1", |_| true);
    let actor = one(&spans, "space.command", "n1", |s| {
        s.tags.get("seq").and_then(Value::as_u64) == Some(seq)
    });
    // The commit is the child of the first sampled send it carries and links the others.
    let commit = one(&spans, "space.commit", "n1", |s| {
        s.parent.as_deref() == Some(actor.id.as_str())
    });
    assert!(
        spans
            .iter()
            .filter(|s| s.name == "space.commit")
            .all(|s| s.links.iter().all(|l| l != &actor.id)),
        "a commit links a send only when it is not the send's child"
    );
    let store = one(&spans, "store", "n1", |s| {
        s.parent.as_deref() == Some(commit.id.as_str())
    });
    let publish = one(&spans, "bus.publish", "n1", |s| {
        s.parent.as_deref() == Some(commit.id.as_str())
    });
    let deliver_b = one(&spans, "fanout", "n1", |s| tag_u64(s, "seq") == seq);
    let deliver_a = one(&spans, "fanout", "n0", |s| tag_u64(s, "seq") == seq);
    for (above, below) in [
        (edge, forward),
        (forward, command),
        (command, actor),
        (actor, commit),
        (commit, store),
        (commit, publish),
        (commit, deliver_b),
        (publish, deliver_a),
    ] {
        assert_before_and_above(&spans, above, below);
    }
    // What the spans say.
    for s in [
        forward, command, actor, commit, store, publish, deliver_a, deliver_b,
    ] {
        assert_eq!(tag_str(s, "space_id"), space, "{}", s.name);
    }
    assert_eq!(tag_str(forward, "op"), "send");
    assert_eq!(tag_str(actor, "op"), "send");
    assert_eq!(tag_str(store, "op"), "commit");
    assert!(tag_u64(commit, "batch.size") >= 1);
    assert!(tag_u64(commit, "batch.events") >= 1);
    assert!(tag_u64(deliver_b, "subscribers") >= 1);
    assert!(tag_u64(deliver_a, "subscribers") >= 1);
    // Never the content, never the token: anywhere in what Jaeger stored.
    let all = trace.to_string();
    assert!(!all.contains(&secret), "a span carries the message content");
    assert!(!all.contains(&token), "a span carries the caller's token");
}

/// The same export over OTLP/HTTP (`--otlp-protocol http`, the bare endpoint gets `/v1/traces`),
/// from one node, and a request that says "not sampled" leaves no trace even at ratio 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_over_http_exports_and_an_unsampled_traceparent_is_followed() {
    let Jaeger {
        otlp_http, query, ..
    } = jaeger();
    let http = common::http_client();
    require_jaeger(&http, &query).await;
    let mut opts = ClusterOpts::single();
    opts.extra = vec![
        "--otlp-endpoint".into(),
        otlp_http,
        "--otlp-protocol".into(),
        "http".into(),
        "--trace-sample-ratio".into(),
        "1".into(),
    ];
    let mut c = Cluster::start(opts).await;
    let s = c.server(0);
    let token = common::token("trace-http");
    let space = s.create_space(&token, "traced over http").await["space_id"]
        .as_str()
        .expect("space_id")
        .to_owned();
    let send = |trace_id: &str, flags: &str| {
        s.http
            .post(s.url(&format!("/api/messages/{space}")))
            .bearer_auth(&token)
            .header(
                "traceparent",
                format!("00-{trace_id}-00f067aa0ba902b7-{flags}"),
            )
            .json(&serde_json::json!({"content": "over http"}))
            .send()
    };
    let unsampled = uuid::Uuid::new_v4().simple().to_string();
    let res = send(&unsampled, "00").await.unwrap();
    assert_eq!(res.status(), 201);
    assert!(
        res.headers().get("traceparent").is_none(),
        "an unsampled request is not traced"
    );
    let sampled = uuid::Uuid::new_v4().simple().to_string();
    let res = send(&sampled, "01").await.unwrap();
    assert_eq!(res.status(), 201);

    // Exemplars: the sampled send's trace id on the bucket of its request's duration and of its
    // group commit, in the OpenMetrics exposition (read by a real parser); never the unsampled
    // one's, and none in the Prometheus text format.
    let exemplars = openmetrics_exemplars(&s.http, &s.url("/metrics")).await;
    let on = |family: &str, route: Option<&str>| {
        exemplars.iter().any(|e| {
            e["name"] == format!("{family}_bucket")
                && route.is_none_or(|r| e["labels"]["route"] == r)
                && e["trace_id"] == sampled.as_str()
        })
    };
    assert!(
        on(
            "spacecast_http_request_duration_seconds",
            Some("POST /api/messages/:space")
        ),
        "the send's request duration carries its trace id: {exemplars:?}"
    );
    assert!(
        on("spacecast_commit_duration_seconds", None),
        "the send's group commit carries its trace id: {exemplars:?}"
    );
    assert!(
        !exemplars
            .iter()
            .any(|e| e["trace_id"] == unsampled.as_str()),
        "an unsampled request leaves no exemplar: {exemplars:?}"
    );
    let text = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert!(
        text.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = text.text().await.unwrap();
    assert!(
        !text.contains(&sampled),
        "the Prometheus text format has no exemplars"
    );
    stop_all(&mut c).await;
    let trace = trace_when(&http, &query, &sampled, |spans| {
        // One node (its id is generated): any process.
        [
            "http.request",
            "space.command",
            "space.commit",
            "store",
            "fanout",
        ]
        .iter()
        .all(|name| spans.iter().any(|s| s.name == *name))
    })
    .await;
    assert_eq!(trace["data"].as_array().map(Vec::len), Some(1));
    // The node flushed everything at exit: had the unsampled request been exported, it would be
    // there too.
    let r = http
        .get(format!("{query}/api/traces/{unsampled}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the unsampled request left no trace");
}

/// Scrapes `url` asking for OpenMetrics and parses it with the `prometheus_client` package's
/// OpenMetrics parser (strict: a malformed exposition fails the test), returning every sample
/// that carries an exemplar as `{name, labels, value, trace_id}`. The parser's Python comes from
/// `SPACECAST_OPS_PYTHON` (scripts/helm.sh env; scripts/test.sh exports it).
async fn openmetrics_exemplars(http: &reqwest::Client, url: &str) -> Vec<Value> {
    let res = http
        .get(url)
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = res.text().await.unwrap();
    let python = std::env::var("SPACECAST_OPS_PYTHON").expect(
        "SPACECAST_OPS_PYTHON is not set: run `scripts/helm.sh install` and \
         `eval \"$(scripts/helm.sh env)\"` (the venv with prometheus-client)",
    );
    const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        if s.exemplar is not None:
            out.append({"name": s.name, "labels": s.labels, "value": s.exemplar.value,
                        "trace_id": s.exemplar.labels.get("trace_id")})
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new(&python)
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(body.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused /metrics: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}
