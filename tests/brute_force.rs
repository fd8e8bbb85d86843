//! The engine's incremental counters (signed contribution deltas per alert, held events,
//! per-group cells, duration windows) against a brute-force recomputation from the whole event
//! list with the EVENTS.md / CONDITIONS.md definitions, over random streams (proptest).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use ddtwatch::config::{ClockMode, Config};
use ddtwatch::engine::Engine;
use ddtwatch::event::format_ts;
use ddtwatch::stats::wilson;
use proptest::prelude::*;
use serde_json::{Value, json};

const T0: i64 = 1_777_107_600_000;
const GROUPS: [&str; 4] = ["asian", "black", "white", "unknown"];
const RESULTS: [&str; 4] = ["true_match", "false_match", "inconclusive", "not_located"];
const TIMEOUT_MS: i64 = 600_000;

const CONFIG: &str = r#"
clock: event
groups: {ethnicity: [asian, black, white, other, unknown]}
profiles:
  lfr:
    conditions:
      - {id: far, kind: rate, numerator: false_alerts, denominator: alerts, max: 0.5, min_denominator: 1, interval: wilson}
      - {id: far_10m, kind: rate, numerator: false_alerts, denominator: alerts, max: 0.5, min_denominator: 1, window: 10m}
      - {id: overrides, kind: rate, numerator: dismissed, denominator: adjudicated, max: 0.99, min_denominator: 1}
defaults: {lfr: lfr}
receivers: {ops: {kind: log}, oversight: {kind: log}}
"#;

#[derive(Debug, Clone)]
struct Decision {
    offset: i64,
    engage: bool,
    verified: bool,
    misread: bool,
}

#[derive(Debug, Clone)]
struct OutcomeGen {
    offset: i64,
    result: usize,
}

#[derive(Debug, Clone)]
struct AlertGen {
    gap: i64,
    group: usize,
    canary: bool,
    decisions: Vec<Decision>,
    outcomes: Vec<OutcomeGen>,
    detections: u64,
}

fn alert_gen() -> impl Strategy<Value = AlertGen> {
    let decision = (0i64..900_000, any::<bool>(), any::<bool>(), prop::bool::weighted(0.1))
        .prop_map(|(offset, engage, verified, misread)| Decision { offset, engage, verified, misread });
    let outcome = (0i64..900_000, 0usize..4).prop_map(|(offset, result)| OutcomeGen { offset, result });
    (
        0i64..120_000,
        0usize..4,
        prop::bool::weighted(0.1),
        prop::collection::vec(decision, 0..3),
        prop::collection::vec(outcome, 0..3),
        1u64..50,
    )
        .prop_map(|(gap, group, canary, decisions, outcomes, detections)| AlertGen {
            gap,
            group,
            canary,
            decisions,
            outcomes,
            detections,
        })
}

fn base(id: String, ty: &str, ts: i64) -> Value {
    json!({"schema_version": 1, "event_id": id, "deployment_id": "lfr-p", "system": "lfr",
        "source_id": "cam-1", "type": ty, "ts": format_ts(ts)})
}

/// Events in arrival order (sorted by ts, then a few adjacent swaps so some decisions arrive
/// before their alert and are held).
fn stream(alerts: &[AlertGen], swaps: &[usize]) -> Vec<(i64, Value)> {
    let mut out: Vec<(i64, Value)> = Vec::new();
    let mut ts = T0;
    let mut v = base("start".into(), "deployment", ts);
    v["phase"] = "started".into();
    out.push((ts, v));
    for (i, a) in alerts.iter().enumerate() {
        ts += a.gap;
        let mut d = base(format!("d{i}"), "detection", ts);
        d["count"] = a.detections.into();
        out.push((ts, d));
        let mut v = base(format!("a{i}"), "alert", ts);
        v["alert_id"] = format!("x{i}").into();
        v["score"] = 0.7.into();
        v["threshold"] = 0.64.into();
        v["list_version"] = "l1".into();
        v["canary"] = a.canary.into();
        if GROUPS[a.group] != "unknown" {
            v["subject_groups"] = json!({"ethnicity": GROUPS[a.group]});
        }
        out.push((ts, v));
        for (k, dec) in a.decisions.iter().enumerate() {
            let mut v = base(format!("j{i}-{k}"), "adjudication", ts + dec.offset);
            v["alert_id"] = format!("x{i}").into();
            v["decision"] = if dec.engage { "engage" } else { "dismiss" }.into();
            v["operator_token"] = "op".into();
            if dec.verified {
                v["verifier_token"] = "ver".into();
            }
            if dec.misread {
                v["reason"] = "misread".into();
            }
            out.push((ts + dec.offset, v));
        }
        for (k, o) in a.outcomes.iter().enumerate() {
            let mut v = base(format!("o{i}-{k}"), "outcome", ts + o.offset);
            v["alert_id"] = format!("x{i}").into();
            v["result"] = RESULTS[o.result].into();
            out.push((ts + o.offset, v));
        }
    }
    out.sort_by_key(|(t, _)| *t);
    for &s in swaps {
        if out.len() > 2 {
            let i = 1 + s % (out.len() - 2);
            out.swap(i, i + 1);
        }
    }
    out
}

#[derive(Debug, Default, PartialEq)]
struct Brute {
    counters: BTreeMap<&'static str, u64>,
    /// group → (alerts, false_alerts, engaged, false_engaged)
    groups: BTreeMap<&'static str, [u64; 4]>,
}

/// Recomputes every counter from the arrival-ordered events by the spec's definitions.
fn brute(events: &[(i64, Value)], clock: i64) -> Brute {
    let mut b = Brute::default();
    let mut c = |k: &'static str, n: u64| *b.counters.entry(k).or_default() += n;
    // alert id → (ts, canary, group, latest decision (ts, arrival, value), latest outcome)
    type Latest = Option<(i64, usize, Value)>;
    let mut alerts: BTreeMap<String, (i64, bool, &'static str, Latest, Latest)> = BTreeMap::new();
    let later = |cur: &Latest, ts: i64, arrival: usize| cur.as_ref().is_none_or(|(t, a, _)| (ts, arrival) >= (*t, *a));
    for (ts, v) in events.iter() {
        match v["type"].as_str().unwrap() {
            "detection" => c("detections", v["count"].as_u64().unwrap()),
            "alert" => {
                let g = v["subject_groups"]["ethnicity"].as_str().unwrap_or("unknown");
                let g = GROUPS.iter().find(|x| **x == g).unwrap();
                alerts.insert(v["alert_id"].as_str().unwrap().into(), (*ts, v["canary"] == true, g, None, None));
            }
            _ => {}
        }
    }
    // Decisions/outcomes apply in arrival order; held ones (arriving before their alert) are
    // applied when the alert arrives, in their own arrival order: the same relative order.
    for (arrival, (ts, v)) in events.iter().enumerate() {
        let slot = match v["type"].as_str().unwrap() {
            "adjudication" => 3,
            "outcome" => 4,
            _ => continue,
        };
        let a = alerts.get_mut(v["alert_id"].as_str().unwrap()).unwrap();
        let cur = if slot == 3 { &mut a.3 } else { &mut a.4 };
        if later(cur, *ts, arrival) {
            *cur = Some((*ts, arrival, v.clone()));
        }
    }
    for (ts, canary, group, decision, outcome) in alerts.values() {
        if *canary {
            c("canary_alerts", 1);
            continue;
        }
        c("alerts", 1);
        let dec = decision.as_ref().map(|(t, _, v)| {
            (*t, v["decision"] == "engage", v.get("verifier_token").is_some(), v["reason"] == "misread")
        });
        let out = outcome.as_ref().map(|(t, _, v)| (*t, v["result"].as_str().unwrap().to_string()));
        let engaged = dec.is_some_and(|d| d.1);
        let outcome_false = out.as_ref().is_some_and(|o| o.1 == "false_match");
        let dismissed_unrefuted =
            dec.is_some_and(|d| !d.1) && !out.as_ref().is_some_and(|o| o.1 == "true_match" && o.0 >= dec.unwrap().0);
        let false_alert = outcome_false || dismissed_unrefuted;
        let false_engaged = outcome_false && engaged;
        c("adjudicated", dec.is_some() as u64);
        c("engaged", engaged as u64);
        c("dismissed", dec.is_some_and(|d| !d.1) as u64);
        c("verified", dec.is_some_and(|d| d.1 && d.2) as u64);
        c("outcomes", out.is_some() as u64);
        c("true_alerts", out.as_ref().is_some_and(|o| o.1 == "true_match") as u64);
        c("false_alerts", false_alert as u64);
        c("false_engaged", false_engaged as u64);
        c("misreads", dec.is_some_and(|d| !d.1 && d.3) as u64);
        c("unadjudicated", (dec.is_none() && out.is_none() && clock > ts + TIMEOUT_MS) as u64);
        let cell = b.groups.entry(group).or_default();
        cell[0] += 1;
        cell[1] += false_alert as u64;
        cell[2] += engaged as u64;
        cell[3] += false_engaged as u64;
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn counters_and_groups_equal_brute_force(
        alerts in prop::collection::vec(alert_gen(), 1..40),
        swaps in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let config = Arc::new(Config::from_yaml(CONFIG, None).unwrap());
        let events = stream(&alerts, &swaps);
        let mut engine = Engine::new(config, ClockMode::Event);
        for (_, v) in &events {
            engine.ingest(v.to_string().as_bytes(), 0);
        }
        engine.finish();
        let clock = engine.now().unwrap();
        let s = engine.summary();
        let d = &s.deployments[0];
        let expected = brute(&events, clock);
        let counters = serde_json::to_value(&d.counters).unwrap();
        for (k, v) in &expected.counters {
            prop_assert_eq!(counters[*k].as_u64().unwrap(), *v, "counter {}", k);
        }
        for k in ["alerts", "false_alerts", "adjudicated", "engaged", "dismissed", "verified", "outcomes", "true_alerts", "false_engaged", "misreads", "unadjudicated", "canary_alerts"] {
            prop_assert_eq!(counters[k].as_u64().unwrap(), *expected.counters.get(k).unwrap_or(&0), "counter {}", k);
        }
        prop_assert_eq!(s.invalid.total, 0, "held events all found their alert");
        for row in &d.groups["ethnicity"] {
            let e = expected.groups.get(row.group.as_str()).copied().unwrap_or_default();
            prop_assert_eq!([row.alerts, row.false_alerts, row.engaged, row.false_engaged], e, "group {}", row.group);
        }
        // The rate condition reports the Wilson interval of the brute-force counts.
        let far = d.conditions.iter().find(|c| c.id == "far").unwrap();
        let count = |k: &str| expected.counters.get(k).copied().unwrap_or(0);
        let (x, n) = (count("false_alerts"), count("alerts"));
        if n > 0 {
            let w = wilson(x, n, 0.95);
            prop_assert_eq!(far.value, Some(w.estimate));
            prop_assert_eq!(far.lower, Some(w.lower));
            prop_assert_eq!(far.n, Some(n));
        }
        // The 10m window: alerts whose ts bucket (10s buckets) is within the last 60 buckets.
        let far10 = d.conditions.iter().find(|c| c.id == "far_10m").unwrap();
        let first_bucket = clock.div_euclid(10_000) - 59;
        let windowed: u64 = events
            .iter()
            .filter(|(ts, v)| v["type"] == "alert" && v["canary"] == false && ts.div_euclid(10_000) >= first_bucket)
            .count() as u64;
        prop_assert_eq!(far10.n, Some(windowed));
    }
}
