//! The metrics the dashboard and the alert rules use are exported by the real server (issue 11):
//! a node started by the test harness is exercised (a REST send, a native stream session that
//! joins, sends and is refused a send) and `/metrics` is scraped; every `spacecast_*` and
//! `process_*` name in `observability/dashboards/spacecast.json` and
//! `observability/alerts/spacecast-rules.yaml` must be a series of that scrape (a histogram by
//! its `_bucket`/`_sum`/`_count` series). Cluster-only metrics (leases, bus, failover) are
//! exported at 0 by every node, so a single node shows them too. The scrape also passes
//! `promtool check metrics` (names, help texts, units); promtool comes from
//! `scripts/promtool.sh` (`SPACECAST_TEST_PROMTOOL`; missing → the test fails).

mod common;
#[path = "../../observability/tests/support/promtool.rs"]
mod promtool_support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Server, token};
use promtool_support::promtool;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Every token of `text` that looks like a Spacecast or process metric name.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.starts_with("spacecast_") || t.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// The series names of a scrape, plus each histogram's base name when its `_bucket`,
/// `_sum` and `_count` series are there.
fn exported(scrape: &str) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let histograms: Vec<String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" histogram"))
        .map(str::to_owned)
        .collect();
    for h in histograms {
        if ["_bucket", "_sum", "_count"]
            .iter()
            .all(|s| names.contains(&format!("{h}{s}")))
        {
            names.insert(h);
        }
    }
    names
}

/// The value of the series `series` (name and labels exactly as exported).
fn value(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Drives one node through the paths the dashboard shows; returns its scrape.
async fn exercised_scrape() -> String {
    let s = Server::start(&[]).await;
    let (owner, stranger) = (token("metrics-owner"), token("metrics-stranger"));
    let space = s.create_space(&owner, "metrics space").await;
    let space = space["space_id"].as_str().expect("space_id").to_owned();
    let (status, _) = s.send_text(&owner, &space, "over REST").await;
    assert_eq!(status, 201, "REST send");

    // A native stream session: join, send (acked once durable), receive the event.
    let mut ws = s.stream(&owner).await;
    let joined = ws.join(&space, None).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    ws.send_json(
        json!({"type": "send", "space_id": space, "content": "over the stream", "local_id": "m-1"}),
    )
    .await;
    // The ack and the event may come in either order: read until both have.
    let (mut acked, mut delivered) = (false, false);
    while !(acked && delivered) {
        let v = ws.next_json().await.expect("stream open");
        if v["local_id"] == "m-1" {
            assert_eq!(v["type"], "ack", "{v}");
            acked = true;
        } else if v["type"] == "event"
            && v["space_id"] == space.as_str()
            && v["event"] == "message_created"
            && v["data"]["content"] == "over the stream"
        {
            delivered = true;
        }
    }

    // A send the server refuses (not a member): a realtime error with its code.
    let mut other = s.stream(&stranger).await;
    other
        .send_json(
            json!({"type": "send", "space_id": space, "content": "not mine", "local_id": "x-1"}),
        )
        .await;
    let refused = other
        .next_matching(|v| v["type"] == "error" && v["local_id"] == "x-1")
        .await;
    assert_eq!(refused["code"], "not_a_member", "{refused}");

    s.metrics_text().await
}

#[tokio::test]
async fn every_metric_of_the_dashboard_and_the_rules_is_exported_by_a_running_server() {
    let scrape = exercised_scrape().await;
    let have = exported(&scrape);

    // What the exercise must have recorded (the new RED and saturation metrics really record).
    for (series, at_least) in [
        (
            "spacecast_realtime_op_duration_seconds_count{op=\"send\",protocol=\"native\"}",
            1.0,
        ),
        (
            "spacecast_realtime_op_duration_seconds_count{op=\"join\",protocol=\"native\"}",
            1.0,
        ),
        (
            "spacecast_realtime_op_errors_total{code=\"not_a_member\",op=\"send\",protocol=\"native\"}",
            1.0,
        ),
        ("spacecast_space_mailbox_depth_max", 1.0),
        ("spacecast_space_mailbox_limit", 1.0),
        (
            "spacecast_subscriber_queue_depth_max{protocol=\"native\"}",
            1.0,
        ),
        ("spacecast_subscriber_queue_limit", 1.0),
    ] {
        let v = value(&scrape, series).unwrap_or_else(|| panic!("{series} not exported"));
        assert!(v >= at_least, "{series} = {v}, expected ≥ {at_least}");
    }
    // Cluster-only series exist at 0 on a single node, so alerts and panels see them.
    for series in [
        "spacecast_lease_acquisitions_total{outcome=\"acquired\"}",
        "spacecast_lease_renewals_total{outcome=\"lost\"}",
        "spacecast_bus_forward_duration_seconds_count",
        "spacecast_bus_publish_duration_seconds_count",
        "spacecast_space_failover_seconds_count",
        "spacecast_store_errors_total{kind=\"timeout\",op=\"commit\"}",
    ] {
        assert_eq!(value(&scrape, series), Some(0.0), "{series}");
    }

    let dashboard = std::fs::read_to_string(repo().join("observability/dashboards/spacecast.json"))
        .expect("dashboard");
    let dash: Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let rules = std::fs::read_to_string(repo().join("observability/alerts/spacecast-rules.yaml"))
        .expect("rules");
    let mut used = metric_names(&dash.to_string());
    used.extend(metric_names(&rules));
    assert!(
        used.len() > 40,
        "{} metric names found: {used:?}",
        used.len()
    );
    let missing: Vec<&String> = used.iter().filter(|n| !have.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "used by the dashboard or the alert rules but not exported by the server: {missing:?}"
    );

    // Lint of names and help texts by Prometheus' own checker.
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(scrape.as_bytes())
        .expect("feed the scrape");
    let out = child.wait_with_output().expect("promtool check metrics");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_name_that_is_not_exported_is_caught() {
    // The check must be able to fail: a made-up name, and a histogram's base name without its
    // series.
    let scrape = "# TYPE spacecast_a histogram\nspacecast_a_bucket{le=\"1\"} 0\nspacecast_b 1\n";
    let have = exported(scrape);
    assert!(have.contains("spacecast_b"));
    assert!(
        !have.contains("spacecast_a"),
        "no _sum/_count: not exported"
    );
    assert!(!have.contains("spacecast_c"));
    assert_eq!(
        metric_names("rate(spacecast_x_total{a=\"b\"}[5m]) / process_open_fds"),
        BTreeSet::from([
            "spacecast_x_total".to_owned(),
            "process_open_fds".to_owned()
        ])
    );
}
