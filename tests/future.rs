//! Time that follows real streams (README "Semantics", future timestamps): gaps of any length
//! cost nothing, a corrupt far-future timestamp is dead-lettered without moving the clock or
//! changing any condition, and a stale first event costs nothing but itself.

mod common;

use ddtwatch::event::{format_ts, parse_ts};
use ddtwatch::ingest::simulator::{Scenario, generate_lines};
use serde_json::Value;

const HOUR: i64 = 3_600_000;

fn shift(line: &str, by_ms: i64) -> String {
    let mut v: Value = serde_json::from_str(line).unwrap();
    for key in ["ts", "ts_emitted"] {
        if let Some(ts) = v[key].as_str().and_then(parse_ts) {
            v[key] = Value::String(format_ts(ts + by_ms));
        }
    }
    v.to_string()
}

fn counters(r: &common::Replayed) -> Vec<(String, Value)> {
    r.summary
        .deployments
        .iter()
        .map(|d| (d.deployment_id.clone(), serde_json::to_value(&d.counters).unwrap()))
        .collect()
}

#[test]
fn a_two_hour_gap_costs_nothing() {
    let lines = generate_lines(Scenario::Steady, 20_000, 1);
    let gapped: Vec<String> =
        lines.iter().enumerate().map(|(i, l)| if i >= 10_000 { shift(l, 2 * HOUR) } else { l.clone() }).collect();
    let plain = common::replay(common::example_config(), &lines);
    let r = common::replay(common::example_config(), &gapped);
    assert_eq!(r.summary.invalid.total, 0, "{:?}", r.summary.invalid);
    assert_eq!(counters(&r), counters(&plain));
}

#[test]
fn gaps_of_days_in_a_multi_day_stream_cost_nothing() {
    // Three "days" of the same deployment, each 30 hours after the previous one.
    let lines = generate_lines(Scenario::AnprSteady, 9_000, 2);
    let gapped: Vec<String> = lines.iter().enumerate().map(|(i, l)| shift(l, (i / 3_000) as i64 * 30 * HOUR)).collect();
    let r = common::replay(common::example_config(), &gapped);
    assert_eq!(r.summary.invalid.total, 0, "{:?}", r.summary.invalid);
    let plain = common::replay(common::example_config(), &lines);
    assert_eq!(counters(&r), counters(&plain));
}

#[test]
fn a_ten_year_future_event_is_dead_lettered_and_changes_no_condition() {
    let lines = generate_lines(Scenario::ThresholdLowered, 20_000, 3);
    let mut corrupt = lines.clone();
    let bad = shift(&lines[5_000], 10 * 365 * 24 * HOUR).replace(
        &serde_json::from_str::<Value>(&lines[5_000]).unwrap()["event_id"].as_str().unwrap().to_string(),
        "corrupt-future-1",
    );
    corrupt.insert(5_001, bad);
    let plain = common::replay(common::example_config(), &lines);
    let r = common::replay(common::example_config(), &corrupt);
    assert_eq!(r.summary.invalid.total, 1);
    assert_eq!(r.summary.invalid.by_reason.get("future_timestamp"), Some(&1));
    assert_eq!(r.dead.len(), 1);
    assert_eq!(r.dead[0].reason.as_str(), "future_timestamp");
    // Every condition ends as without it, with the same transitions.
    let conds = |x: &common::Replayed| -> Vec<Value> {
        x.summary.deployments.iter().map(|d| serde_json::to_value(&d.conditions).unwrap()).collect()
    };
    assert_eq!(conds(&r), conds(&plain));
    assert_eq!(r.transitions.len(), plain.transitions.len());
    assert_eq!(r.summary.deployments[0].last_ts, plain.summary.deployments[0].last_ts, "the clock never jumped");
}

#[test]
fn a_stale_first_event_costs_nothing_but_itself() {
    let lines = generate_lines(Scenario::Steady, 10_000, 4);
    let mut v: Value = serde_json::from_str(&shift(&lines[0], -3 * 24 * HOUR)).unwrap();
    v["event_id"] = Value::String("stale-first".into());
    v["deployment_id"] = Value::String("lfr-old-recording".into());
    let mut stale = vec![v.to_string()];
    stale.extend(lines.iter().cloned());
    let plain = common::replay(common::example_config(), &lines);
    let r = common::replay(common::example_config(), &stale);
    assert_eq!(r.summary.invalid.total, 0, "{:?}", r.summary.invalid);
    let mut got = counters(&r);
    got.retain(|(id, _)| id != "lfr-old-recording");
    assert_eq!(got, counters(&plain));
}

#[test]
fn a_few_future_events_at_the_end_of_input_are_dead_lettered() {
    let lines = generate_lines(Scenario::AnprSteady, 2_000, 5);
    let mut with_tail = lines.clone();
    for (i, l) in lines.iter().take(ddtwatch::engine::FUTURE_JUMP - 1).enumerate() {
        let mut v: Value = serde_json::from_str(&shift(l, 5 * HOUR)).unwrap();
        v["event_id"] = Value::String(format!("tail-{i}"));
        with_tail.push(v.to_string());
    }
    let r = common::replay(common::example_config(), &with_tail);
    assert_eq!(
        r.summary.invalid.by_reason.get("future_timestamp").copied(),
        Some(ddtwatch::engine::FUTURE_JUMP as u64 - 1)
    );
}

/// Copies of one far-future event (a client retrying, a broker re-delivering) are duplicates:
/// they do not add up to a jump of the clock.
#[test]
fn retried_copies_of_a_future_event_do_not_move_the_clock() {
    let lines = generate_lines(Scenario::Steady, 5_000, 6);
    let mut v: Value = serde_json::from_str(&shift(&lines[100], 10 * 365 * 24 * HOUR)).unwrap();
    v["event_id"] = Value::String("far-future-retried".into());
    let mut stream = lines[..2_000].to_vec();
    for _ in 0..(2 * ddtwatch::engine::FUTURE_JUMP) {
        stream.push(v.to_string());
    }
    stream.extend(lines[2_000..].iter().cloned());
    let plain = common::replay(common::example_config(), &lines);
    let r = common::replay(common::example_config(), &stream);
    assert_eq!(r.summary.invalid.by_reason.get("future_timestamp"), Some(&1), "{:?}", r.summary.invalid);
    assert_eq!(counters(&r).len(), counters(&plain).len());
    assert_eq!(r.summary.deployments[0].last_ts, plain.summary.deployments[0].last_ts, "the clock never jumped");
}

/// Kafka coordinates of a dead letter: a held event that expires later carries the message it
/// came from, not the message whose arrival expired it (before: the latter). So does an orphaned
/// decision.
#[test]
fn dead_letters_of_held_events_name_their_own_message() {
    use ddtwatch::engine::{Engine, snapshot::Through};
    let config = common::example_config();
    let mut engine = Engine::new(config, ddtwatch::config::ClockMode::Event);
    let at = |offset: i64| Some(Through { topic: "ddt.events".into(), partition: 1, offset });
    let lines = generate_lines(Scenario::Steady, 3_000, 4);
    let first_ts = parse_ts(serde_json::from_str::<Value>(&lines[0]).unwrap()["ts"].as_str().unwrap()).unwrap();
    let mut offset = 0;
    let feed = |engine: &mut Engine, line: &str, offset: &mut i64| {
        engine.set_origin(at(*offset));
        engine.ingest(line.as_bytes(), 0);
        engine.set_origin(None);
        *offset += 1;
    };
    feed(&mut engine, &lines[0], &mut offset);
    // Offset 1: a corrupt far-future event (held); offset 2: a decision for an unknown alert.
    let future = shift(&lines[1], 10 * 365 * 24 * HOUR).replace("\"event_id\":\"", "\"event_id\":\"future-");
    feed(&mut engine, &future, &mut offset);
    let orphan = format!(
        r#"{{"schema_version":1,"event_id":"orphan-1","deployment_id":"lfr-sim-steady","system":"lfr","source_id":"cam-1","type":"adjudication","ts":"{}","alert_id":"no-such-alert","decision":"engage","operator_token":"op-1"}}"#,
        format_ts(first_ts)
    );
    feed(&mut engine, &orphan, &mut offset);
    let held_offsets = [1, 2];
    // The rest of the stream moves the clock well past both holds.
    for l in &lines[2..] {
        feed(&mut engine, l, &mut offset);
    }
    engine.finish();
    let dead = engine.drain_dead_letters();
    let got: Vec<(&str, Option<i64>)> =
        dead.iter().map(|d| (d.reason.as_str(), d.origin.as_ref().map(|o| o.offset))).collect();
    assert!(got.contains(&("future_timestamp", Some(held_offsets[0]))), "{got:?}");
    assert!(got.contains(&("orphan", Some(held_offsets[1]))), "{got:?}");
    assert_eq!(got.len(), 2, "{got:?}");
}
