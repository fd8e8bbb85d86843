//! Prometheus rules for ddtwatch's health (dashboards/rules): valid for promtool, every alert
//! unit-tested by promtool, and every metric they query is one ddtwatch exposes.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use ddtwatch::telemetry::names::ALL_SAMPLES;

fn rules_dir() -> std::path::PathBuf {
    common::repo().join("dashboards/rules")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(rules_dir())
        .output()
        .expect("promtool not found: scripts/test installs it (Debian package prometheus)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn rules_pass_promtool_check_and_unit_tests() {
    let check = promtool(&["check", "rules", "ddtwatch.rules.yml"]);
    assert!(check.contains("SUCCESS"), "{check}");
    let test = promtool(&["test", "rules", "ddtwatch.rules.test.yml"]);
    assert!(test.contains("SUCCESS"), "{test}");
}

#[test]
fn every_alert_has_a_unit_test_and_every_metric_exists() {
    let rules: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(rules_dir().join("ddtwatch.rules.yml")).unwrap()).unwrap();
    let tests = std::fs::read_to_string(rules_dir().join("ddtwatch.rules.test.yml")).unwrap();
    let mut alerts = BTreeSet::new();
    let mut used = BTreeSet::new();
    let metric = common::metric_names;
    for g in rules["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            if let Some(a) = r["alert"].as_str() {
                alerts.insert(a.to_string());
            }
            used.extend(metric(r["expr"].as_str().unwrap()));
        }
    }
    assert!(alerts.len() >= 6);
    for a in &alerts {
        assert!(tests.contains(&format!("alertname: {a}")), "alert {a} has no promtool unit test");
    }
    for m in &used {
        assert!(ALL_SAMPLES.contains(&m.as_str()), "the rules query {m}, which ddtwatch does not expose");
    }
    // Every alert links to its own runbook page (docs/runbooks/<alert>.md), which exists, is
    // about it, and is listed in the index; no page is left without its alert.
    let index = std::fs::read_to_string(common::repo().join("docs/runbooks/README.md")).unwrap();
    for g in rules["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            let Some(a) = r["alert"].as_str() else { continue };
            let url = r["annotations"]["runbook_url"].as_str().unwrap_or_else(|| panic!("{a} has no runbook_url"));
            assert!(url.ends_with(&format!("/docs/runbooks/{a}.md")), "{a}: {url}");
            let page = std::fs::read_to_string(common::repo().join(format!("docs/runbooks/{a}.md")))
                .unwrap_or_else(|e| panic!("docs/runbooks/{a}.md: {e}"));
            assert!(page.starts_with(&format!("# {a}\n")), "docs/runbooks/{a}.md is not about {a}");
            assert!(index.contains(&format!("[{a}]({a}.md)")), "the runbook index does not list {a}");
        }
    }
    for e in std::fs::read_dir(common::repo().join("docs/runbooks")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        let alert = name.trim_end_matches(".md");
        assert!(name == "README.md" || alerts.contains(alert), "docs/runbooks/{name} has no alert");
    }
}
