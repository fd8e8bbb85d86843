//! The publishable deployment record: golden Markdown/JSON for an LFR scenario with breaches and
//! an ANPR one (review changes with `UPDATE_GOLDEN=1 cargo test --test report`, then `git diff`),
//! the JSON schema, numbers equal to the summary, no tokens or ids in any format, and the live
//! path against a real `ddtwatch run`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ddtwatch::ingest::simulator::{Scenario, generate_lines};
use ddtwatch::report::{self, Format};
use serde_json::Value;

const EVENTS: usize = 40_000;
const SEED: u64 = 3;

fn summary_of(scenario: Scenario) -> (Vec<String>, Value) {
    let lines = generate_lines(scenario, EVENTS, SEED);
    let r = common::replay(std::sync::Arc::new(ddtwatch::config::Config::demo()), &lines);
    let v = serde_json::to_value(&r.summary).unwrap();
    let dep = v["deployments"].as_array().unwrap().iter().find(|d| d["deployment_id"] == scenario.deployment_id());
    (lines, dep.expect("the scenario's deployment").clone())
}

fn golden(name: &str) -> PathBuf {
    common::repo().join("tests/golden").join(name)
}

fn check_golden(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (create it with UPDATE_GOLDEN=1)", path.display()));
    if want != actual {
        let line = want.lines().zip(actual.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{name} differs from the reviewed golden file at line {}:\n  golden: {:?}\n  actual: {:?}\n(UPDATE_GOLDEN=1 to accept, then review the diff)",
            line + 1,
            want.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

fn validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_slice(&std::fs::read(common::repo().join("schema/report.v1.json")).unwrap()).unwrap();
    jsonschema::draft202012::new(&schema).expect("schema compiles")
}

#[test]
fn golden_records_for_an_lfr_scenario_with_breaches_and_an_anpr_scenario() {
    let v = validator();
    for (scenario, name) in
        [(Scenario::ThresholdLowered, "lfr_threshold_lowered"), (Scenario::AnprMisreads, "anpr_misreads")]
    {
        let (_, summary) = summary_of(scenario);
        let record = report::build(&summary, &[]);
        let r = record.to_json();
        let errors: Vec<String> = v.iter_errors(&r).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{name}: report JSON violates schema/report.v1.json: {errors:#?}");
        check_golden(&format!("report_{name}.md"), &Format::Md.render(&record));
        check_golden(&format!("report_{name}.json"), &Format::Json.render(&record));
        if scenario == Scenario::ThresholdLowered {
            let fired: Vec<&str> =
                r["breaches"].as_array().unwrap().iter().filter_map(|b| b["condition"].as_str()).collect();
            for c in scenario.expected_breaches() {
                assert!(fired.contains(c), "{c} is among the record's breaches: {fired:?}");
            }
        } else {
            assert_eq!(r["activity"]["unit"], "plate reads");
        }
    }
}

/// Every number in the record is the summary's, field by field.
#[test]
fn numbers_equal_the_replay_summary() {
    for scenario in [Scenario::ThresholdLowered, Scenario::DemographicSkew, Scenario::AnprMisreads] {
        let (_, s) = summary_of(scenario);
        let r = report::build(&s, &[]).to_json();
        let a = &r["activity"];
        for (rk, sk) in [
            ("processed", "detections"),
            ("alerts", "alerts"),
            ("adjudicated", "adjudicated"),
            ("engaged", "engaged"),
            ("dismissed", "dismissed"),
            ("verified", "verified"),
            ("unadjudicated", "unadjudicated"),
            ("outcomes", "outcomes"),
            ("true_alerts", "true_alerts"),
            ("false_alerts", "false_alerts"),
            ("false_engaged", "false_engaged"),
            ("misreads", "misreads"),
            ("canary_passes", "canary_passes"),
            ("canary_alerts", "canary_alerts"),
            ("invalid_events", "invalid"),
        ] {
            assert_eq!(a[rk], s["counters"][sk], "{scenario:?} activity.{rk}");
        }
        assert_eq!(a["outcomes_by_result"], s["outcomes_by_result"]);
        let rates = r["rates"].as_array().unwrap();
        for id in ["false_alerts_per_detection", "false_alerts_per_alert"] {
            assert!(rates.iter().any(|x| x["id"] == id), "both false-alert rates are always shown");
        }
        for x in rates {
            let want = &s["rates"][x["id"].as_str().unwrap()];
            for k in ["x", "n", "value", "lower", "upper"] {
                assert_eq!(x[k], want[k], "{scenario:?} rate {} {k}", x["id"]);
            }
        }
        for g in r["groups"].as_array().unwrap() {
            let attr = g["attribute"].as_str().unwrap();
            let rows = s["groups"][attr].as_array().unwrap();
            assert_eq!(g["rows"].as_array().unwrap().len(), rows.len(), "no group dropped ({attr})");
            for (got, want) in g["rows"].as_array().unwrap().iter().zip(rows) {
                for k in ["group", "alerts", "false_alerts", "rate", "lower", "upper"] {
                    assert_eq!(got[k], want[k], "{scenario:?} {attr} {k}");
                }
                let n = got["alerts"].as_u64().unwrap();
                assert_eq!(got["too_few_to_judge"], n < g["min_per_group"].as_u64().unwrap());
            }
            if let Some(c) = s["conditions"].as_array().unwrap().iter().find(|c| c["id"] == g["disparity"]["condition"])
            {
                for k in ["ratio_max_min", "ratio_max_geomean", "p_value", "top_group"] {
                    assert_eq!(g["disparity"][k], c["detail"][k], "{scenario:?} {attr} disparity {k}");
                }
            }
        }
        for l in r["latency"].as_array().unwrap() {
            let want = &s["latency"][l["series"].as_str().unwrap()];
            for k in ["n", "p50", "p90", "p95", "p99", "max"] {
                assert_eq!(l[k], want[k]);
            }
        }
        assert_eq!(r["breaches"].as_array().unwrap().len(), s["breaches"].as_array().unwrap().len());
        for (b, w) in r["breaches"].as_array().unwrap().iter().zip(s["breaches"].as_array().unwrap()) {
            for k in ["condition", "started_at", "resolved_at", "value", "limit"] {
                assert_eq!(b[k], w[k]);
            }
        }
        assert_eq!(r["deletions"], s["deletions"]);
        assert_eq!(r["watchlist"], s["watchlist"]);
        assert_eq!(r["generated_by"]["config_hash"], s["config_hash"]);
    }
}

/// Tokens, alert ids, event ids and free-text reasons of the input appear in no format.
#[test]
fn no_token_or_id_of_the_input_appears_in_any_format() {
    for scenario in [Scenario::ThresholdLowered, Scenario::AutomationBias, Scenario::AnprMisreads] {
        let (lines, summary) = summary_of(scenario);
        let mut secrets = std::collections::BTreeSet::new();
        for l in &lines {
            let v: Value = serde_json::from_str(l).unwrap();
            for (k, x) in v.as_object().unwrap() {
                let sensitive = k.ends_with("_token") || matches!(k.as_str(), "event_id" | "alert_id" | "reason");
                // A `reason` equal to an outcome name (e.g. `misread`) is vocabulary the record uses.
                let vocabulary = ["true_match", "false_match", "inconclusive", "not_located", "misread"];
                if sensitive && let Some(s) = x.as_str().filter(|s| !vocabulary.contains(s)) {
                    secrets.insert(s.to_string());
                }
            }
            if let Some(t) = v["authorisation"]["authority_token"].as_str() {
                secrets.insert(t.to_string());
            }
        }
        assert!(secrets.len() > 100, "the input has tokens and ids to look for");
        let r = report::build(&summary, &[]);
        for f in [Format::Md, Format::Json, Format::Csv] {
            let text = f.render(&r);
            for s in &secrets {
                // Whole-token match: an id must not appear delimited by non-id characters.
                let found = text.match_indices(s.as_str()).any(|(i, _)| {
                    let before = text[..i].chars().next_back();
                    let after = text[i + s.len()..].chars().next();
                    let id_char =
                        |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                    !id_char(before) && !id_char(after)
                });
                assert!(!found, "{scenario:?} {f:?} record contains `{s}` from the input");
            }
        }
    }
}

#[test]
fn small_groups_are_listed_and_marked_not_dropped() {
    let (_, summary) = summary_of(Scenario::DemographicSkew);
    let record = report::build(&summary, &[]);
    let r = record.to_json();
    let eth = r["groups"].as_array().unwrap().iter().find(|g| g["attribute"] == "ethnicity").unwrap();
    let small: Vec<&Value> = eth["rows"].as_array().unwrap().iter().filter(|r| r["too_few_to_judge"] == true).collect();
    assert!(!small.is_empty(), "the scenario has groups under min_per_group");
    let md = Format::Md.render(&record);
    for row in small {
        let g = row["group"].as_str().unwrap();
        let line = md.lines().find(|l| l.starts_with(&format!("| {g} |"))).unwrap_or_else(|| panic!("{g} listed"));
        assert!(line.ends_with("too few to judge |"), "{line}");
    }
    let csv = Format::Csv.render(&record);
    assert!(csv.lines().any(|l| l.starts_with("group_false_alerts_per_alert,ethnicity,")));
    assert!(csv.lines().all(|l| l.split(',').count() >= 8 || l.contains('"')), "{csv}");
}

/// `ddtwatch report --summary` on a `replay --summary` file gives the library's record.
#[test]
fn cli_from_a_replay_summary_file() {
    let dir = tempfile::tempdir().unwrap();
    let (lines, summary) = summary_of(Scenario::ThresholdLowered);
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let sum_file = dir.path().join("summary.json");
    let st = Command::new(common::bin())
        .args(["replay", "--quiet", "--input"])
        .arg(&input)
        .arg("--summary")
        .arg(&sum_file)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let dep = Scenario::ThresholdLowered.deployment_id();
    for (flag, f) in [("md", Format::Md), ("json", Format::Json), ("csv", Format::Csv)] {
        let out = Command::new(common::bin())
            .args(["report", "--deployment", &dep, "--format", flag, "--summary"])
            .arg(&sum_file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8(out.stdout).unwrap(), f.render(&report::build(&summary, &[])));
    }
    let out = Command::new(common::bin())
        .args(["report", "--deployment", "nope", "--summary"])
        .arg(&sum_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no deployment `nope`"));
}

/// A real `ddtwatch run` (HTTP source, state_dir): the report endpoint in every format and
/// `ddtwatch report --url` equal the record built from its own summary and audit log, and the
/// breaches name the notifications the audit log recorded.
#[tokio::test(flavor = "multi_thread")]
async fn live_instance_report_endpoint_and_cli() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let state = dir.path().join("state");
    let config = ddtwatch::config::DEMO_CONFIG
        .replace("http: {listen: \"127.0.0.1:9464\"}", &format!("http: {{listen: \"127.0.0.1:{port}\", token_env: DDTWATCH_TEST_TOKEN}}\nstate_dir: {}\nsources: [{{kind: http}}]\nprofiles_dir: {}", state.display(), common::repo().join("config/profiles").display()))
        .replace("dead_letter: {kind: stderr}", "dead_letter: {kind: discard}");
    assert!(config.contains(&port.to_string()) && config.contains("state_dir"));
    let path = dir.path().join("ddtwatch.yaml");
    std::fs::write(&path, config).unwrap();
    let _run = common::spawn_run_env(&path, &[("DDTWATCH_TEST_TOKEN", "report-test-token")]);
    let base = format!("http://127.0.0.1:{port}");
    let c = ddtwatch::notify::http_client();
    let start = Instant::now();
    while c.get(format!("{base}/readyz")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(start.elapsed() < Duration::from_secs(30), "ddtwatch did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = generate_lines(Scenario::ThresholdLowered, 20_000, SEED);
    for chunk in lines.chunks(2000) {
        let r = c
            .post(format!("{base}/api/v1/events"))
            .bearer_auth("report-test-token")
            .body(chunk.join("\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let dep = Scenario::ThresholdLowered.deployment_id();
    // Wait for the log receivers to have delivered every notification (audit records written).
    let start = Instant::now();
    loop {
        let m = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        if m.contains("ddtwatch_outbox_depth 0") && m.contains(r#"receiver="oversight",result="delivered"}"#) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "notifications not delivered: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // API reads take the bearer token (http.anonymous_reads is off).
    let r = c.get(format!("{base}/api/v1/deployments/{dep}")).send().await.unwrap();
    assert_eq!(r.status(), 401, "an anonymous read is refused");
    let summary: Value = c
        .get(format!("{base}/api/v1/deployments/{dep}"))
        .bearer_auth("report-test-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let audit = ddtwatch::audit::read_records(&state.join("audit.log")).unwrap();
    let record = report::build(&summary, &audit);
    let expected = record.to_json();
    let fired = expected["breaches"].as_array().unwrap();
    assert!(!fired.is_empty());
    assert!(
        fired.iter().any(|b| b["notifications"].as_array().unwrap().iter().any(|n| n["result"] == "delivered")),
        "breaches name their delivered notifications: {fired:#?}"
    );
    for (flag, f, ctype) in [
        ("md", Format::Md, "text/markdown"),
        ("json", Format::Json, "application/json"),
        ("csv", Format::Csv, "text/csv"),
    ] {
        let r = c
            .get(format!("{base}/api/v1/deployments/{dep}/report?format={flag}"))
            .bearer_auth("report-test-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(ctype));
        assert_eq!(r.text().await.unwrap(), f.render(&record), "{flag}");
    }
    let get = |u: String| c.get(u).bearer_auth("report-test-token").send();
    assert_eq!(get(format!("{base}/api/v1/deployments/{dep}/report?format=pdf")).await.unwrap().status(), 400);
    assert_eq!(get(format!("{base}/api/v1/deployments/unknown/report")).await.unwrap().status(), 404);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(common::bin())
            .args(["report", "--deployment", &dep, "--format", "json", "--url", &base])
            .env("DDTWATCH_TOKEN", "report-test-token")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), Format::Json.render(&record));
}

/// 20 concurrent report requests against an instance whose audit log is 60 MB: the log is read
/// line by line keeping only the deployment's notifications, and at most a few reports run at
/// once (the rest are told to retry), so the process's peak RSS stays far below the log's size
/// times the requests (it was 4.85 GB).
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_reports_over_a_large_audit_log_stay_small() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // A valid 60 MB hash chain of other deployments' notification records.
    let log = state.join("audit.log");
    let (mut prev, mut seq, mut bytes) = (ddtwatch::audit::GENESIS.to_string(), 0u64, 0usize);
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
        let pad = "x".repeat(300);
        while bytes < 60 << 20 {
            seq += 1;
            let ts = "2026-04-25T09:00:00Z".to_string();
            let data = serde_json::json!({"receiver": "oversight", "result": "delivered", "attempts": 1, "detail": pad,
                "key": format!("ddtwatch/other-{}/c/2026-04-25T09:00:00Z/firing", seq % 100)});
            let hash = ddtwatch::audit::record_hash(&prev, seq, &ts, "notification", &data);
            let r = ddtwatch::audit::Record {
                seq,
                ts,
                kind: "notification".into(),
                data,
                prev,
                hash: hash.clone(),
                mac: None,
            };
            let line = serde_json::to_string(&r).unwrap();
            bytes += line.len() + 1;
            writeln!(f, "{line}").unwrap();
            prev = hash;
        }
    }
    std::fs::write(state.join("audit.log.head"), serde_json::json!({"seq": seq, "hash": prev}).to_string()).unwrap();
    let port = common::free_port();
    let config = ddtwatch::config::DEMO_CONFIG
        .replace("http: {listen: \"127.0.0.1:9464\"}", &format!("http: {{listen: \"127.0.0.1:{port}\", token_env: DDTWATCH_TEST_TOKEN}}\nstate_dir: {}\nsources: [{{kind: http}}]\nprofiles_dir: {}", state.display(), common::repo().join("config/profiles").display()))
        .replace("dead_letter: {kind: stderr}", "dead_letter: {kind: discard}");
    let path = dir.path().join("ddtwatch.yaml");
    std::fs::write(&path, config).unwrap();
    let run = common::spawn_run_env(&path, &[("DDTWATCH_TEST_TOKEN", "t")]);
    let base = format!("http://127.0.0.1:{port}");
    let c = ddtwatch::notify::http_client();
    let start = Instant::now();
    while c.get(format!("{base}/readyz")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(start.elapsed() < Duration::from_secs(60), "ddtwatch did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = generate_lines(Scenario::ThresholdLowered, 5_000, SEED);
    let r = c.post(format!("{base}/api/v1/events")).bearer_auth("t").body(lines.join("\n")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let dep = Scenario::ThresholdLowered.deployment_id();
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let (c, url) = (c.clone(), format!("{base}/api/v1/deployments/{dep}/report?format=json"));
            tokio::spawn(async move { c.get(url).bearer_auth("t").send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for r in requests {
        statuses.push(r.await.unwrap());
    }
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", run.0.id())).unwrap();
    let hwm_kb: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok()).unwrap();
    eprintln!("statuses {statuses:?}, peak RSS {hwm_kb} kB, audit log {bytes} bytes");
    assert!(hwm_kb < 100 * 1024, "peak RSS {hwm_kb} kB for reports over a {bytes}-byte audit log");
}
