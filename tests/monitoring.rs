//! Every panel query of every dashboard, run through a real Prometheus (Debian `prometheus`,
//! started here) that scrapes a real `ddtwatch run` consuming a breach-tripping stream from a
//! real Kafka-protocol broker (with `state_dir`, so audit and snapshot metrics exist too). Each
//! query must succeed and return data. The health rules are loaded by the same Prometheus.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::broker::*;
use common::{Proc, free_port};
use ddtwatch::ingest::simulator::{Scenario, generate_lines};
use serde_json::Value;

fn query(prom: &str, q: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let encoded: String = q
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let r = ddtwatch::notify::http_client().get(format!("{prom}/api/v1/query?query={encoded}")).send().await;
        match r {
            Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    })
}

fn has_data(v: &Value) -> bool {
    v["status"] == "success" && v["data"]["result"].as_array().is_some_and(|r| !r.is_empty())
}

#[test]
fn every_panel_query_returns_data_from_a_real_prometheus() {
    let (_broker, brokers) = start_broker();
    let mut lines = Vec::new();
    for (s, n) in [
        (Scenario::ThresholdLowered, 30_000),
        (Scenario::DemographicSkew, 30_000),
        (Scenario::ScoreDrift, 30_000),
        (Scenario::CameraSilence, 20_000),
        (Scenario::AnprMisreads, 20_000),
    ] {
        lines.extend(generate_lines(s, n, 2));
    }
    lines.push("not json".into());
    produce(&brokers, &lines);

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = run_config(dir.path(), &brokers, port);
    let mut v: serde_norway::Value = serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["state_dir"] = dir.path().join("state").to_string_lossy().to_string().into();
    // Wall clock, as in production: event lag is measured only then.
    v["clock"] = "wall".into();
    // The audit trail also goes to Kafka, as the chart configures it.
    v["audit"] = serde_norway::from_str("{topic: ddt.audit}").unwrap();
    std::fs::write(&path, serde_norway::to_string(&v).unwrap()).unwrap();
    let _run = spawn_run(&path);
    let base = format!("http://127.0.0.1:{port}");
    wait_for("the stream consumed", Duration::from_secs(180), || {
        http_text(&format!("{base}/metrics"))
            .is_some_and(|m| metric(&m, "ddtwatch_kafka_messages_total") as usize == lines.len())
    });

    let prom_port = free_port();
    let rules = common::repo().join("dashboards/rules/ddtwatch.rules.yml");
    let prom_yml = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_yml,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [\"{}\"]\nscrape_configs:\n  - job_name: ddtwatch\n    static_configs: [{{targets: [\"127.0.0.1:{port}\"]}}]\n",
            rules.display()
        ),
    )
    .unwrap();
    let _prom = Proc(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_yml.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus not found: scripts/test installs it (Debian package prometheus)"),
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    // At least three scrapes (rates need two), and librdkafka's first statistics (lag).
    wait_for("three scrapes", Duration::from_secs(60), || {
        query(&prom, "count_over_time(ddtwatch_build_info[1m])")["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|n| n >= 3.0)
    });
    wait_for("consumer lag scraped", Duration::from_secs(60), || {
        has_data(&query(&prom, "ddtwatch_kafka_consumer_lag"))
    });

    let mut checked = 0;
    let mut failures = Vec::new();
    for file in ["overview.json", "deployment.json", "fairness.json", "drift.json", "health.json"] {
        let d: Value =
            serde_json::from_str(&std::fs::read_to_string(common::repo().join("dashboards").join(file)).unwrap())
                .unwrap();
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                // Variables as Grafana substitutes them with "All" selected.
                let q = t["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$deployment", ".*")
                    .replace("$job", ".*")
                    .replace("$instance", ".*")
                    .replace("$__rate_interval", "1m")
                    .replace("$__range", "5m");
                let r = query(&prom, &q);
                if !has_data(&r) {
                    failures.push(format!("{file} / {}: {q} -> {}", p["title"].as_str().unwrap(), r));
                }
                checked += 1;
            }
        }
    }
    eprintln!("{checked} panel queries run against Prometheus, {} without data", failures.len());
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(checked >= 40);
    // The rules loaded and evaluated without errors.
    let rules: Value = {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            ddtwatch::notify::http_client()
                .get(format!("{prom}/api/v1/rules"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    };
    let groups = rules["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    for g in groups {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "rule {} evaluates with errors: {}", r["name"], r["lastError"]);
        }
    }
}
