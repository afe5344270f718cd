//! The alert rules and the dashboard, checked by Prometheus' own tool: `promtool check rules`
//! and `promtool test rules` on `alerts/`, and every query of `dashboards/spacecast.json` (panel
//! targets and template variables) parsed by promtool as a recording rule, with Grafana's
//! variables substituted. promtool comes from `scripts/promtool.sh` (Debian's prometheus
//! package): `SPACECAST_TEST_PROMTOOL` must name it, or these tests fail.
//!
//! That every metric these files use is exported by a running server is checked against the real
//! binary in `api/tests/metrics_export.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

#[path = "support/promtool.rs"]
mod support;
use support::promtool;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Runs promtool; panics with its output unless it succeeds. Returns stdout.
fn run(args: &[&str]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn rules_path() -> String {
    dir()
        .join("alerts/spacecast-rules.yaml")
        .display()
        .to_string()
}

/// The alert names of the rule file (`- alert: Name` lines).
fn alert_names() -> Vec<String> {
    let text = std::fs::read_to_string(rules_path()).expect("rule file");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

#[test]
fn the_alert_rules_pass_promtool_check_rules() {
    let out = run(&["check", "rules", &rules_path()]);
    let n = alert_names().len();
    assert!(n >= 19, "{n} alerts");
    assert!(
        out.contains(&format!("SUCCESS: {n} rules found")),
        "every rule is an alert the check saw: {out}"
    );
}

#[test]
fn every_alert_is_unit_tested_and_the_unit_tests_pass() {
    let tests = dir().join("alerts/tests.yaml");
    let text = std::fs::read_to_string(&tests).expect("alerts/tests.yaml");
    for name in alert_names() {
        // A test that expects it to fire: its `alertname:` followed by a non-empty `exp_alerts`.
        let fires = text
            .split("alertname: ")
            .skip(1)
            .any(|case| case.starts_with(&format!("{name}\n")) && !case.contains("exp_alerts: []"));
        assert!(fires, "{name}: no test in alerts/tests.yaml makes it fire");
        let quiet = text
            .split("alertname: ")
            .skip(1)
            .any(|case| case.starts_with(&format!("{name}\n")) && case.contains("exp_alerts: []"));
        assert!(
            quiet,
            "{name}: no test in alerts/tests.yaml where it must not fire"
        );
    }
    let out = run(&["test", "rules", &tests.display().to_string()]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every PromQL query of the dashboard: panel targets (rows' nested panels too) and the
/// template variables' `label_values(<selector>, label)` selectors. `(where, query)`.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir().join("dashboards/spacecast.json")).expect("dashboard");
    let d: Value = serde_json::from_str(&text).expect("dashboard JSON");
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((
                        format!("panel {} {:?} target {}", p["id"], p["title"], t["refId"]),
                        e.to_owned(),
                    ));
                }
            }
            panels(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&d["panels"], &mut out);
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        let q = v["query"]["query"].as_str().or_else(|| v["query"].as_str());
        if v["type"] == "query" {
            let q = q.expect("a query variable has a query");
            let sel = q
                .strip_prefix("label_values(")
                .and_then(|r| r.rsplit_once(','))
                .map(|(sel, _)| sel.to_owned())
                .unwrap_or_else(|| panic!("variable {}: unexpected query {q}", v["name"]));
            out.push((format!("variable {}", v["name"]), sel));
        }
    }
    out
}

/// Grafana's variables replaced by values of the same kind, as Grafana would before sending
/// the query.
fn substitute(q: &str) -> String {
    let mut q = q.to_owned();
    for (var, value) in [
        ("$__rate_interval", "1m"),
        ("$__interval", "30s"),
        ("$__range", "1h"),
        ("${job}", ".*"),
        ("$job", ".*"),
        ("${instance}", ".*"),
        ("$instance", ".*"),
    ] {
        q = q.replace(var, value);
    }
    q
}

#[test]
fn every_dashboard_query_parses() {
    let queries = dashboard_queries();
    assert!(queries.len() > 50, "{} queries found", queries.len());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (at, q)) in queries.iter().enumerate() {
        let q = substitute(q);
        assert!(!q.contains('$'), "{at}: an unknown Grafana variable in {q}");
        // A JSON string is a YAML double-quoted scalar.
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&q).expect("string")
        ));
    }
    let out = check_rules("dashboard", &rules);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        // Name the panel behind each error promtool reports (`dashboard:query_<i>`).
        let named: Vec<&(String, String)> = queries
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                text.contains(&format!("dashboard:query_{i}\""))
                    || text.contains(&format!("query_{i}:"))
            })
            .map(|(_, q)| q)
            .collect();
        panic!("a dashboard query does not parse:\n{text}\n{named:#?}");
    }
    assert!(
        text.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{text}"
    );
}

#[test]
fn a_broken_query_is_caught() {
    // The check above must be able to fail: promtool refuses a query that does not parse.
    let out = check_rules(
        "broken",
        "groups:\n  - name: x\n    rules:\n      - record: x:y\n        expr: \"sum(rate(spacecast_x[1m])\"\n",
    );
    assert!(!out.status.success(), "promtool accepted a broken query");
}

/// `promtool check rules` on `rules`, written to a temp file named after `name`.
fn check_rules(name: &str, rules: &str) -> std::process::Output {
    let file = std::env::temp_dir().join(format!(
        "spacecast-{name}-{}.rules.yaml",
        std::process::id()
    ));
    std::fs::write(&file, rules).expect("write the temp rule file");
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool runs");
    let _ = std::fs::remove_file(&file);
    out
}
