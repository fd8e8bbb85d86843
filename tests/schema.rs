//! `schema/events.v1.json` stays in sync with the parser: every simulator event and every
//! example of EVENTS.md validates against it and parses; known-bad events fail both.

mod common;

use ddtwatch::event::parse_line;
use ddtwatch::ingest::simulator::{Scenario, generate_lines};
use serde_json::Value;

fn validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_slice(&std::fs::read(common::repo().join("schema/events.v1.json")).unwrap()).unwrap();
    jsonschema::draft202012::new(&schema).expect("schema compiles")
}

/// The four examples of ../shared/spec/EVENTS.md, verbatim.
const EXAMPLES: &[&str] = &[
    r#"{"schema_version":1,"event_id":"e-1","type":"detection","deployment_id":"lfr-stratford-0425","system":"lfr","source_id":"cam-3","ts":"2026-04-25T10:00:01Z","count":12,"scores":[0.21,0.33,0.18,0.41,0.12,0.29,0.30,0.22,0.25,0.19,0.35,0.27]}"#,
    r#"{"schema_version":1,"event_id":"e-2","type":"alert","deployment_id":"lfr-stratford-0425","system":"lfr","source_id":"cam-3","ts":"2026-04-25T10:00:02Z","alert_id":"a-17","score":0.66,"threshold":0.64,"list_version":"wl-0425-1","category":"wanted","subject_groups":{"sex":"male","ethnicity":"black"}}"#,
    r#"{"schema_version":1,"event_id":"e-3","type":"adjudication","deployment_id":"lfr-stratford-0425","system":"lfr","source_id":"console-1","ts":"2026-04-25T10:00:31Z","alert_id":"a-17","decision":"engage","operator_token":"9f2c…","verifier_token":"41aa…"}"#,
    r#"{"schema_version":1,"event_id":"e-4","type":"outcome","deployment_id":"lfr-stratford-0425","system":"lfr","source_id":"team-2","ts":"2026-04-25T10:04:10Z","alert_id":"a-17","result":"false_match","action":"none","engaged_groups":{"sex":"male","ethnicity":"black"}}"#,
];

#[test]
fn examples_validate_and_parse() {
    let v = validator();
    for e in EXAMPLES {
        let value: Value = serde_json::from_str(e).unwrap();
        assert!(v.is_valid(&value), "schema rejects example {e}");
        parse_line(e.as_bytes()).unwrap_or_else(|err| panic!("parser rejects example {e}: {err}"));
    }
}

#[test]
fn every_simulator_event_validates_and_parses() {
    let v = validator();
    let mut checked = 0;
    for s in Scenario::ALL {
        for line in generate_lines(s, 5_000, 1) {
            let value: Value = serde_json::from_str(&line).unwrap();
            if let Some(err) = v.iter_errors(&value).next() {
                panic!("{}: schema rejects {line}: {err}", s.name());
            }
            parse_line(line.as_bytes()).unwrap_or_else(|err| panic!("{}: parser rejects {line}: {err}", s.name()));
            checked += 1;
        }
    }
    assert!(checked > 40_000);
}

#[test]
fn schema_and_parser_agree_on_bad_events() {
    let v = validator();
    let good: Value = serde_json::from_str(EXAMPLES[1]).unwrap();
    let mutations: Vec<(&str, Value)> = vec![
        ("schema_version", Value::from(2)),
        ("score", Value::from(1.5)),
        ("score", Value::from("0.7")),
        ("type", Value::from("selfie")),
        ("deployment_id", Value::from("bad id")),
        ("ts", Value::from("yesterday")),
        ("system", Value::from("cctv")),
        ("alert_id", Value::from("")),
    ];
    for (field, bad) in mutations {
        let mut e = good.clone();
        e[field] = bad.clone();
        assert!(!v.is_valid(&e), "schema accepts {field}={bad}");
        assert!(parse_line(e.to_string().as_bytes()).is_err(), "parser accepts {field}={bad}");
    }
    for field in ["event_id", "alert_id", "threshold", "list_version", "ts"] {
        let mut e = good.clone();
        e.as_object_mut().unwrap().remove(field);
        assert!(!v.is_valid(&e), "schema accepts missing {field}");
        assert!(parse_line(e.to_string().as_bytes()).is_err(), "parser accepts missing {field}");
    }
    let lfr_misread = EXAMPLES[3].replace("false_match", "misread");
    assert!(!v.is_valid(&serde_json::from_str(&lfr_misread).unwrap()));
    assert!(parse_line(lfr_misread.as_bytes()).is_err());
}
