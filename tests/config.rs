//! Configuration errors are user messages with the key path and a "did you mean" hint;
//! `check-config` exits 2 on them and prints the effective conditions otherwise.

mod common;

use std::process::Command;

/// `check-config --skip-secrets` (the example's secret files are not mounted here).
fn check(path: &str) -> (Option<i32>, String) {
    check_with(path, &["--skip-secrets"])
}

fn check_with(path: &str, flags: &[&str]) -> (Option<i32>, String) {
    let out =
        Command::new(common::bin()).arg("check-config").args(flags).arg(common::repo().join(path)).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Without `--skip-secrets`, every secret the config names is read: the example's are not mounted
/// here, and each is named with its key path (as `run` would fail on them at start).
#[test]
fn missing_secret_files_are_named() {
    let (code, out) = check_with("config/ddtwatch.yaml", &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("http.token_file: ") && out.contains("/etc/ddtwatch/token"), "{out}");
    assert!(out.contains("receivers.oversight.secret_file: ") && out.contains("/etc/ddtwatch/webhook-secret"), "{out}");
    assert!(out.contains("sources[0]: ") && out.contains("/etc/ddtwatch/kafka-password"), "{out}");
}

#[test]
fn shipped_config_is_valid_and_shows_effective_conditions() {
    let (code, out) = check("config/ddtwatch.yaml");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("threshold_floor"));
    assert!(out.contains("misread_share"));
    assert!(out.contains("deployment lfr-stratford-0425"));
    // The override is in effect for that deployment.
    let dep = out.split("deployment lfr-stratford-0425:").nth(1).unwrap();
    assert!(dep.contains("0.0005"), "{dep}");
}

#[test]
fn misspelled_condition_key() {
    let (code, out) = check("tests/fixtures/misspelled_key.yaml");
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(
            "profiles.custom.conditions[0].denominatr: unknown key for kind `rate` (did you mean \"denominator\"?)"
        ),
        "{out}"
    );
}

#[test]
fn misspelled_top_level_key() {
    let (code, out) = check("tests/fixtures/misspelled_top_level.yaml");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("unknown key `recievers` (did you mean \"receivers\"?)"), "{out}");
}

#[test]
fn all_value_errors_reported_at_once() {
    let (code, out) = check("tests/fixtures/bad_values.yaml");
    assert_eq!(code, Some(2), "{out}");
    for needle in [
        "http.listen: `not-an-address` is not host:port",
        "profiles.p.conditions[0].denominator: `detectons` is not a counter (did you mean \"detections\"?)",
        "no receiver `opps` (did you mean \"ops\"?)",
        "`religion` has no allow-list under `groups`",
        "profiles.p.conditions[3].max_gap",
        "receivers.ops.secret_file: a webhook needs secret_file or secret_env",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
}

#[test]
fn missing_file_is_reported() {
    let (code, out) = check("tests/fixtures/does-not-exist.yaml");
    assert_eq!(code, Some(2));
    assert!(out.contains("does-not-exist.yaml"), "{out}");
}

/// The example config, changed by `edit`, written to a temp file; check-config's exit and output.
fn check_edited(edit: impl FnOnce(&mut serde_norway::Value)) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut v: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(common::repo().join("config/ddtwatch.yaml")).unwrap()).unwrap();
    v["profiles_dir"] = common::repo().join("config/profiles").to_string_lossy().to_string().into();
    edit(&mut v);
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, serde_norway::to_string(&v).unwrap()).unwrap();
    let out = Command::new(common::bin()).args(["check-config", "--skip-secrets"]).arg(&path).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// A receiver named only in a deployment's override must exist too.
#[test]
fn an_override_naming_an_unknown_receiver_is_an_error() {
    let (code, out) = check_edited(|v| {
        v["deployments"]["lfr-stratford-0425"]["overrides"] =
            serde_norway::from_str("[{id: false_alert_rate, max: 0.0005, notify: [nobody]}]").unwrap();
    });
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("deployments.lfr-stratford-0425.overrides[id=false_alert_rate].notify: no receiver `nobody`"),
        "{out}"
    );
}

/// Webhook/Alertmanager receivers deliver through the outbox in state_dir: without it the
/// configuration is refused (before, nothing was ever sent and nothing said so).
#[test]
fn webhook_receivers_without_state_dir_are_an_error() {
    let (code, out) = check_edited(|v| {
        v.as_mapping_mut().unwrap().remove("state_dir");
    });
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("receivers.oversight: webhook and alertmanager receivers need `state_dir`"), "{out}");
    assert!(out.contains("receivers.ops: webhook and alertmanager receivers need `state_dir`"), "{out}");
    let (code, out) = check_edited(|v| {
        v.as_mapping_mut().unwrap().remove("state_dir");
        v.as_mapping_mut().unwrap().remove("audit"); // the audit topic needs state_dir too
        v["receivers"] = serde_norway::from_str("{oversight: {kind: log}, ops: {kind: log}}").unwrap();
    });
    assert_eq!(code, Some(0), "{out}");
}

/// `check-config FILE | head`: a reader that goes away early is not a failure (exit 0, no panic).
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(common::bin())
        .args(["check-config", "--skip-secrets"])
        .arg(common::repo().join("config/ddtwatch.yaml"))
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

/// Values that cannot be right are refused with their key paths (issue: all were accepted).
#[test]
fn impossible_values_are_refused_with_their_paths() {
    let (code, out) = check_edited(|v| {
        let d = &mut v["deployments"]["lfr-stratford-0425"];
        d["overrides"] =
            serde_norway::from_str("[{id: false_alert_rate, max: -1}, {id: false_alert_share, max: 7}]").unwrap();
        d["authorisation"]["threshold_floor"] = 7.into();
        d["authorisation"]["window_end"] = "2026-04-25T08:00:00Z".into();
        let o = &mut v["receivers"]["oversight"];
        o["backoff_initial"] = "10m".into();
        o["backoff_max"] = "1m".into();
        o["timeout"] = "0s".into();
        o["url"] = "not a url".into();
        o["generator_url"] = "ddtwatch.example".into();
    });
    assert_eq!(code, Some(2), "{out}");
    for needle in [
        "(deployment lfr-stratford-0425).conditions[0].max: is -1: a rate is a proportion",
        "(deployment lfr-stratford-0425).conditions[1].max: is 7: a rate is a proportion",
        "deployments.lfr-stratford-0425.authorisation.window_end: is not after window_start",
        "receivers.oversight.backoff_initial: (10m) is above backoff_max (1m)",
        "receivers.oversight.timeout: must be positive",
        "receivers.oversight.url: `not a url` is not an http:// or https:// URL",
        "receivers.oversight.generator_url: `ddtwatch.example` is not an http:// or https:// URL",
        "receivers.oversight.generator_url: applies to alertmanager receivers only",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
    let (code, out) = check_edited(|v| {
        v["deployments"]["lfr-stratford-0425"]["authorisation"]["threshold_floor"] = 7.into();
    });
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("authorisation.threshold_floor: is 7: match thresholds are scores between 0 and 1"), "{out}");
}

/// `audit.topic` (issue 19) needs the audit log (`state_dir`) and a Kafka source whose client
/// settings produce it and whose checkpoints wait for it; each missing piece is named.
#[test]
fn audit_topic_without_state_dir_or_kafka_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    let check = |yaml: &str| {
        std::fs::write(&config, yaml).unwrap();
        let out = Command::new(common::bin()).arg("check-config").arg(&config).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, text) = check(&format!(
        "audit: {{topic: ddt.audit}}\nsources: [{{kind: file, path: {}}}]\n",
        dir.path().join("e.jsonl").display()
    ));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("audit.topic: the audit log is kept in `state_dir`"), "{text}");
    assert!(text.contains("audit.topic: needs a kafka source"), "{text}");
    let (code, text) = check(&format!(
        "state_dir: {}\naudit: {{topic: \" \"}}\nsources: [{{kind: kafka, brokers: \"127.0.0.1:9\"}}]\n",
        dir.path().join("state").display()
    ));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("audit.topic: is empty"), "{text}");
    assert!(!text.contains("needs a kafka source"), "{text}");
    let (code, text) = check(&format!(
        "state_dir: {}\naudit: {{topic: ddt.audit}}\nsources: [{{kind: kafka, brokers: \"127.0.0.1:9\"}}]\n",
        dir.path().join("state").display()
    ));
    assert!(!text.contains("audit.topic"), "{code:?} {text}");
}

/// `audit.key`: a key too short is a check-config error naming it; with a good key `run` writes
/// a keyed chain that `audit verify --key-file` accepts and that plain `audit verify` cannot check.
#[test]
fn a_keyed_audit_chain_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &events,
        [
            r#"{"schema_version":1,"event_id":"e1","deployment_id":"d","system":"lfr","source_id":"cam-1","type":"deployment","ts":"2026-04-25T09:00:00Z","phase":"started"}"#,
            r#"{"schema_version":1,"event_id":"e2","deployment_id":"d","system":"lfr","source_id":"cam-1","type":"status","ts":"2026-04-25T09:00:00Z","threshold":0.5}"#,
            r#"{"schema_version":1,"event_id":"e3","deployment_id":"d","system":"lfr","source_id":"cam-1","type":"detection","ts":"2026-04-25T09:00:01Z","count":4,"scores":[0.1]}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let key = dir.path().join("audit-key");
    let state = dir.path().join("state");
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            r#"http: {{listen: "127.0.0.1:{port}", anonymous_reads: true}}
state_dir: {state}
audit: {{key: {{file: {key}}}}}
sources: [{{kind: file, path: {events}}}]
groups: {{sex: [female, male]}}
defaults: {{lfr: lfr}}
receivers: {{ops: {{kind: log}}}}
profiles:
  lfr:
    conditions:
      - {{id: threshold_floor, kind: state, check: threshold_floor, min: 0.6, severity: critical, notify: [ops]}}
"#,
            port = common::free_port(),
            state = state.display(),
            key = key.display(),
            events = events.display()
        ),
    )
    .unwrap();
    let check = || Command::new(common::bin()).arg("check-config").arg(&config).output().unwrap();
    std::fs::write(&key, "too short").unwrap();
    let out = check();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("audit.key") && text.contains("at least 32"), "{text}");
    assert!(!text.contains("too short"), "the key is never printed: {text}");

    std::fs::write(&key, "k".repeat(40) + "\n").unwrap();
    assert_eq!(check().status.code(), Some(0));
    let log = state.join("audit.log");
    let mut run = common::spawn_run_env(&config, &[]);
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains(r#""kind":"breach""#) {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "no breach record in the audit log");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    run.0.kill().unwrap();
    run.0.wait().unwrap();
    let verify = |extra: &[&str]| {
        let out = Command::new(common::bin()).args(["audit", "verify"]).args(extra).arg(&log).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, out) = verify(&["--key-file", key.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = verify(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("--key-file"), "{out}");
    let wrong = dir.path().join("wrong-key");
    std::fs::write(&wrong, "w".repeat(40)).unwrap();
    let (code, out) = verify(&["--key-file", wrong.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    // `run` with the key removed refuses to continue the keyed chain.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.lines().filter(|l| !l.starts_with("audit:")).collect::<Vec<_>>().join("\n")).unwrap();
    let out = Command::new(common::bin()).args(["run", "--config"]).arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("keyed (HMAC) but no audit.key"), "{err}");
}

/// A first, minimal config file (no `profiles_dir`, no inline profiles) monitors with the
/// embedded default profiles (before: nothing, silently); a config whose profiles are all empty
/// is a check-config warning.
#[test]
fn a_minimal_config_gets_the_default_profiles_and_an_empty_one_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let run = |text: &str| {
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(common::bin()).args(["check-config"]).arg(&path).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = run("clock: event\n");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("threshold_floor") && out.contains("false_alert_rate"), "{out}");
    assert!(!out.contains("warning: no conditions"), "{out}");
    let (code, out) = run("clock: event\nprofiles: {lfr: {conditions: []}, anpr: {conditions: []}}\n");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("warning: no conditions"), "{out}");
    // A real configuration (its own receivers) without profiles is not given the defaults.
    let (code, out) = run("clock: event\nreceivers: {pager: {kind: log}}\n");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("warning: no conditions") && !out.contains("threshold_floor"), "{out}");
}

/// A system whose deployments would be monitored by nothing (its default profile empty or
/// missing) is warned about by check-config, replay and at start-up, naming the system.
#[test]
fn a_system_without_conditions_is_warned_about_everywhere() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let events = dir.path().join("e.jsonl");
    std::fs::write(&events, "").unwrap();
    std::fs::write(
        &path,
        format!(
            "clock: event\nhttp: {{listen: \"127.0.0.1:{}\"}}\nsources: [{{kind: file, path: {}}}]\n\
             receivers: {{ops: {{kind: log}}}}\ndefaults: {{lfr: mine}}\nprofiles:\n  mine:\n    conditions:\n\
             \x20     - {{id: threshold_floor, kind: state, check: threshold_floor, min: 0.6, severity: critical, notify: [ops]}}\n",
            common::free_port(),
            events.display()
        ),
    )
    .unwrap();
    let want = "anpr deployments: no conditions (profile `anpr` is missing): they are monitored by nothing";
    let out = Command::new(common::bin()).arg("check-config").arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(&format!("warning: {want}")), "{text}");
    assert!(!text.contains("lfr deployments"), "{text}");
    let out = Command::new(common::bin())
        .args(["replay", "--config"])
        .arg(&path)
        .arg("--input")
        .arg(&events)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains(want), "{out:?}");
    // `run` says it in its log at start-up.
    let mut child = common::Proc(
        Command::new(common::bin())
            .args(["run", "--config"])
            .arg(&path)
            .env("DDTWATCH_LOG_FORMAT", "text")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let logged = lines.map(|l| l.unwrap()).find(|l| l.contains("WARN") && l.contains(want));
    assert!(logged.is_some(), "no start-up warning naming anpr");
}

/// Issue 20: a false-breach budget outside (0, 1), a budget on an `on: estimate` rate, and a
/// drift condition whose window could never reach its budget are `check-config` errors, not
/// silently quiet conditions.
#[test]
fn bad_false_breach_budgets_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("budget.yaml");
    std::fs::write(
        &path,
        "clock: event\nprofiles:\n  p:\n    conditions:\n\
         \x20     - {id: a, kind: rate, numerator: false_alerts, denominator: detections, max: 0.001, false_breach_per_day: 0}\n\
         \x20     - {id: b, kind: rate, numerator: false_alerts, denominator: detections, max: 0.001, false_breach_per_day: 1.5}\n\
         \x20     - {id: c, kind: rate, numerator: dismissed, denominator: adjudicated, min: 0.01, on: estimate, false_breach_per_day: 0.01}\n\
         \x20     - {id: d, kind: drift, value: score, method: ks, window: {last: 8}, min_samples: 5}\n\
         \x20     - {id: e, kind: drift, value: score, method: psi, window: {last: 500}}\n\
         \x20     - {id: f, kind: quantile, value: adjudication_latency, max: 2m, false_breach_per_day: per_look}\n\
         \x20     - {id: g, kind: drift, value: score, method: ks, baseline: {first: 2}}\n\
         deployments:\n  x: {profile: p}\n",
    )
    .unwrap();
    let out = Command::new(common::bin()).args(["check-config", "--skip-secrets"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for needle in [
        "conditions[0].false_breach_per_day: is 0: it must be a probability strictly between 0 and 1",
        "conditions[1].false_breach_per_day: is 1.5: it must be a probability strictly between 0 and 1",
        "conditions[2].false_breach_per_day: does not apply with `on: estimate`",
        "conditions[3].window: {last: 8} is too small to ever reach the false-breach budget 0.01",
        "conditions[4].min_samples: is 1000, above the window's 500 values",
        "conditions[6].baseline: a baseline of 2 values is too small",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // `per_look` is accepted (condition f), so it is not named.
    assert!(!text.contains("conditions[5]"), "{text}");
}

/// `DDTWATCH_LOG_FORMAT` chooses JSON lines or text for `run` (JSON by default); an unknown
/// value is warned about and the default kept.
#[test]
fn the_log_format_follows_ddtwatch_log_format() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, "").unwrap();
    let config = dir.path().join("c.yaml");
    let first_lines = |format: Option<&str>| {
        std::fs::write(
            &config,
            format!(
                "http: {{listen: \"127.0.0.1:{}\"}}\nsources: [{{kind: file, path: {}}}]\n",
                common::free_port(),
                events.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(common::bin());
        cmd.args(["run", "--config"]).arg(&config).stderr(std::process::Stdio::piped());
        match format {
            Some(f) => cmd.env("DDTWATCH_LOG_FORMAT", f),
            None => cmd.env_remove("DDTWATCH_LOG_FORMAT"),
        };
        let mut child = common::Proc(cmd.spawn().unwrap());
        let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
        // The first log line (and a warning before it, if any), as soon as they are written.
        let mut out = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let warning = line.starts_with("warning:");
            out.push(line);
            if !warning {
                break;
            }
        }
        out
    };
    let json = first_lines(None);
    assert!(serde_json::from_str::<serde_json::Value>(&json[0]).is_ok(), "JSON by default: {json:?}");
    let text = first_lines(Some("text"));
    assert!(!text[0].starts_with('{') && text[0].contains("INFO"), "text: {text:?}");
    let bad = first_lines(Some("xml"));
    assert!(bad[0].contains("DDTWATCH_LOG_FORMAT is \"xml\", not json or text"), "{bad:?}");
    assert!(serde_json::from_str::<serde_json::Value>(&bad[1]).is_ok(), "the default kept: {bad:?}");
}

/// Every condition of the shipped profiles links to its section of docs/conditions.md (the link
/// reaches the oversight lead in each notification: webhook `runbook`, Alertmanager
/// `runbook_url`), and every section exists.
#[test]
fn every_shipped_condition_has_a_runbook_section() {
    let doc = std::fs::read_to_string(common::repo().join("docs/conditions.md")).unwrap();
    let base = "https://github.com/ddtwatch/ddtwatch/blob/main/docs/conditions.md#";
    let mut n = 0;
    for profile in ["lfr", "anpr"] {
        let text = std::fs::read_to_string(common::repo().join(format!("config/profiles/{profile}.yaml"))).unwrap();
        let v: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        for c in v["conditions"].as_sequence().unwrap() {
            let id = c["id"].as_str().unwrap();
            assert_eq!(c["runbook"].as_str(), Some(format!("{base}{id}").as_str()), "{profile}/{id}");
            assert!(doc.lines().any(|l| l == format!("## {id}")), "docs/conditions.md has no section for {id}");
            n += 1;
        }
    }
    assert!(n >= 30, "{n} conditions");
    // The link reaches the transition a receiver is sent.
    let config = std::sync::Arc::new(ddtwatch::config::Config::demo());
    let lines =
        ddtwatch::ingest::simulator::generate_lines(ddtwatch::ingest::simulator::Scenario::ThresholdLowered, 5_000, 1);
    let t = common::replay(config, &lines).transitions;
    let floor = t.iter().find(|t| t.condition == "threshold_floor").expect("the threshold floor breach");
    assert_eq!(floor.runbook.as_deref(), Some(format!("{base}threshold_floor").as_str()));
}
