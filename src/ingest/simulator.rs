//! A deterministic simulator of an operational LFR or ANPR system: the same scenario, size and
//! seed always give the same NDJSON, byte for byte.
//!
//! Each scenario documents which conditions of the default profiles it must trip (and no
//! others); `tests/scenarios.rs` replays every one and checks exactly that.
//!
//! Timeline: `authorised` ten minutes before the start, `started`, one detection batch per camera
//! per second with the top-1 score of every face/read, a status per camera every 30 s, alerts at
//! a per-item rate, each followed by a human decision 5–60 s later and (if engaged) an outcome
//! 1–10 min later, a canary pass every 10 min (LFR), then `stopped` and a deletion attestation
//! 30 min after the stop. Lists are rebuilt every 12 h (LFR) / 6 h (ANPR) so that a long run
//! stays within the 24 h list-age limit.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde_json::{Value, json};

use crate::event::{Millis, format_ts, parse_ts};

/// The scenarios of INTERFACES.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Steady,
    ThresholdLowered,
    DemographicSkew,
    ScoreDrift,
    AutomationBias,
    CameraSilence,
    UnauthorisedWindow,
    AnprSteady,
    AnprMisreads,
}

impl Scenario {
    pub const ALL: [Scenario; 9] = [
        Scenario::Steady,
        Scenario::ThresholdLowered,
        Scenario::DemographicSkew,
        Scenario::ScoreDrift,
        Scenario::AutomationBias,
        Scenario::CameraSilence,
        Scenario::UnauthorisedWindow,
        Scenario::AnprSteady,
        Scenario::AnprMisreads,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::ThresholdLowered => "threshold_lowered",
            Scenario::DemographicSkew => "demographic_skew",
            Scenario::ScoreDrift => "score_drift",
            Scenario::AutomationBias => "automation_bias",
            Scenario::CameraSilence => "camera_silence",
            Scenario::UnauthorisedWindow => "unauthorised_window",
            Scenario::AnprSteady => "anpr_steady",
            Scenario::AnprMisreads => "anpr_misreads",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    /// What the scenario simulates.
    pub fn doc(self) -> &'static str {
        match self {
            Scenario::Steady => "LFR deployment operating within every default condition",
            Scenario::ThresholdLowered => {
                "LFR threshold lowered from 0.64 to 0.55 at 30% of the run: twice the alerts, far more \
                 false ones, most of them for Black subjects (the NPL 2023 imbalance below 0.6)"
            }
            Scenario::DemographicSkew => {
                "LFR at a compliant threshold, but false matches are five times as likely for Black subjects"
            }
            Scenario::ScoreDrift => "LFR similarity scores shift up by 0.15 at half-time (camera or model change)",
            Scenario::AutomationBias => {
                "LFR operators engage on every alert: no overrides, every false alert acted upon"
            }
            Scenario::CameraSilence => "LFR camera cam-2 sends nothing for 20 minutes at 40% of the run, then recovers",
            Scenario::UnauthorisedWindow => "LFR deployment keeps running after its authorised window ends (at 60%)",
            Scenario::AnprSteady => "ANPR deployment operating within every default condition",
            Scenario::AnprMisreads => "ANPR with a quarter of hits being misreads instead of ~3%",
        }
    }

    /// Conditions of the default profiles this scenario must fire — and no others.
    pub fn expected_breaches(self) -> &'static [&'static str] {
        match self {
            Scenario::Steady | Scenario::AnprSteady => &[],
            Scenario::ThresholdLowered => {
                &["threshold_floor", "threshold_changed", "false_alert_share", "ethnicity_disparity"]
            }
            Scenario::DemographicSkew => &["ethnicity_disparity"],
            Scenario::ScoreDrift => &["score_drift", "score_shift"],
            Scenario::AutomationBias => &["override_rate", "false_alert_engagement"],
            Scenario::CameraSilence => &["camera_silence/cam-2"],
            Scenario::UnauthorisedWindow => &["authorised_window"],
            Scenario::AnprMisreads => &["misread_share"],
        }
    }

    pub fn is_anpr(self) -> bool {
        matches!(self, Scenario::AnprSteady | Scenario::AnprMisreads)
    }

    pub fn deployment_id(self) -> String {
        let prefix = if self.is_anpr() { "anpr" } else { "lfr" };
        format!("{prefix}-sim-{}", self.name().replace('_', "-"))
    }
}

/// SplitMix64: tiny, fast, and its output is fixed forever (no dependency can change it).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(f64::MIN_POSITIVE);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    pub fn pick<'a>(&mut self, weighted: &'a [(&'a str, f64)]) -> &'a str {
        let total: f64 = weighted.iter().map(|(_, w)| w).sum();
        let mut x = self.f64() * total;
        for (v, w) in weighted {
            if x < *w {
                return v;
            }
            x -= w;
        }
        weighted[weighted.len() - 1].0
    }
    pub fn hex(&mut self) -> String {
        format!("{:016x}{:016x}", self.next_u64(), self.next_u64())
    }
}

const ETHNICITY: &[(&str, f64)] =
    &[("white", 0.50), ("asian", 0.18), ("black", 0.17), ("mixed", 0.05), ("other", 0.05), ("", 0.05)];
const SEX: &[(&str, f64)] = &[("male", 0.7), ("female", 0.3)];

/// Start of every simulated run.
pub const START: &str = "2026-04-25T09:00:00Z";

struct Sim {
    scenario: Scenario,
    rng: Rng,
    dep: String,
    system: &'static str,
    seq: u64,
    alerts: u64,
    order: u64,
    pending: BinaryHeap<Reverse<(Millis, u64, String)>>,
    operators: Vec<String>,
}

impl Sim {
    fn envelope(&mut self, ty: &str, source: &str, ts: Millis) -> serde_json::Map<String, Value> {
        self.seq += 1;
        let mut m = serde_json::Map::new();
        m.insert("schema_version".into(), json!(1));
        m.insert("event_id".into(), json!(format!("{}-{}", self.dep, self.seq)));
        m.insert("type".into(), json!(ty));
        m.insert("deployment_id".into(), json!(self.dep));
        m.insert("system".into(), json!(self.system));
        m.insert("source_id".into(), json!(source));
        m.insert("ts".into(), json!(format_ts(ts)));
        m
    }

    fn line(m: serde_json::Map<String, Value>) -> String {
        Value::Object(m).to_string()
    }

    /// An independent Bernoulli draw with probability `p` (issue 20: per-event draws, so a
    /// scenario shows the sampling noise a real stream has; the calibrated decision rules must
    /// stay quiet on it).
    fn draw(&mut self, p: f64) -> bool {
        self.rng.f64() < p
    }

    /// Queues a line for when the clock reaches `ts` (ties keep creation order).
    fn later(&mut self, ts: Millis, line: String) {
        self.order += 1;
        self.pending.push(Reverse((ts, self.order, line)));
    }
}

/// Writes about `events` lines of the scenario to `out`.
pub fn generate(scenario: Scenario, events: usize, seed: u64, mut out: impl FnMut(&str)) {
    let anpr = scenario.is_anpr();
    let t0 = parse_ts(START).expect("valid constant");
    let cameras: Vec<String> = (1..=if anpr { 6 } else { 4 }).map(|i| format!("cam-{i}")).collect();
    // Expected events per second, to place the scenario's phases in a run of this size.
    let per_sec = cameras.len() as f64 * (1.0 + 1.0 / 30.0) * 1.03;
    let duration_s = ((events as f64 / per_sec) as i64).max(600);
    let end_estimate = t0 + duration_s * 1000;
    let frac = |f: f64| t0 + (duration_s as f64 * f) as i64 * 1000;
    let mut sim = Sim {
        scenario,
        rng: Rng::new(seed),
        dep: scenario.deployment_id(),
        system: if anpr { "anpr" } else { "lfr" },
        seq: 0,
        alerts: 0,
        order: 0,
        pending: BinaryHeap::new(),
        operators: Vec::new(),
    };
    sim.operators = (0..6).map(|_| sim.rng.hex()).collect();
    let mut emitted = 0usize;
    let mut emit = |line: &str, emitted: &mut usize| {
        out(line);
        *emitted += 1;
    };

    // Authorisation and start.
    let window_end = match scenario {
        Scenario::UnauthorisedWindow => frac(0.6),
        _ => end_estimate + 3_600_000 * 2 + duration_s * 200,
    };
    let mut m = sim.envelope("deployment", "control", t0 - 600_000);
    m.insert("phase".into(), json!("authorised"));
    let token = sim.rng.hex();
    m.insert(
        "authorisation".into(),
        json!({
            "authority_token": token, "rank": "superintendent",
            "window_start": format_ts(t0 - 600_000), "window_end": format_ts(window_end),
            "location": if anpr { "A12 corridor" } else { "Stratford town centre" },
            "purpose": if anpr { "vehicles of interest" } else { "wanted offenders" },
            "max_list_size": if anpr { 100_000 } else { 2000 }, "threshold_floor": if anpr { 0.0 } else { 0.6 }
        }),
    );
    emit(&Sim::line(m), &mut emitted);
    let mut m = sim.envelope("deployment", "control", t0);
    m.insert("phase".into(), json!("started"));
    emit(&Sim::line(m), &mut emitted);

    let base_threshold = if anpr { 0.80 } else { 0.64 };
    let refresh_ms: i64 = if anpr { 6 * 3_600_000 } else { 12 * 3_600_000 };
    let mut list_version = 0u32;
    let mut list_built = t0 - 2 * 3_600_000;
    let mut next_refresh = t0 + refresh_ms;
    let reserve = 2;
    let mut t = t0;
    'run: loop {
        // Release decisions/outcomes that are due.
        while let Some(Reverse((ts, _, _))) = sim.pending.peek() {
            if *ts > t {
                break;
            }
            let Reverse((_, _, line)) = sim.pending.pop().expect("peeked");
            emit(&line, &mut emitted);
        }
        let mut announce = t == t0;
        if t >= next_refresh {
            list_version += 1;
            list_built = t;
            next_refresh += refresh_ms;
            announce = true;
        }
        let lowered = scenario == Scenario::ThresholdLowered && t >= frac(0.3);
        let threshold = if lowered { 0.55 } else { base_threshold };
        for (ci, cam) in cameras.iter().enumerate() {
            if emitted + sim.pending.len() + reserve >= events {
                break 'run;
            }
            let silent = scenario == Scenario::CameraSilence && ci == 1 && t >= frac(0.4) && t < frac(0.4) + 1_200_000;
            if silent {
                continue;
            }
            let ts = t + 37 * ci as i64;
            if announce || (t - t0) / 1000 % 30 == ci as i64 * 7 % 30 {
                let mut m = sim.envelope("status", cam, ts);
                m.insert("threshold".into(), json!(threshold));
                m.insert("algorithm_version".into(), json!(if anpr { "anpr-ocr-7.2" } else { "neoface-v4" }));
                m.insert(
                    "list".into(),
                    json!({
                        "version": format!("{}-list-{list_version}", sim.dep), "size": if anpr { 42_000 } else { 1800 },
                        "built_at": format_ts(list_built), "under_18": 0,
                        "categories": if anpr { json!({"stolen_vehicle": 30_000, "no_insurance": 12_000}) } else { json!({"wanted": 1700, "missing": 100}) }
                    }),
                );
                m.insert("clock_offset_ms".into(), json!((sim.rng.normal() * 150.0) as i64));
                m.insert("capture_ok".into(), json!(true));
                emit(&Sim::line(m), &mut emitted);
                if emitted + sim.pending.len() + reserve >= events {
                    break 'run;
                }
            }
            emit(
                &detection(&mut sim, cam, ts + 1, t >= frac(0.5), t, t0, &list_version, threshold, lowered),
                &mut emitted,
            );
        }
        t += 1000;
    }
    // Stop, late decisions/outcomes, then the deletion attestation.
    let stop = t;
    let mut m = sim.envelope("deployment", "control", stop);
    m.insert("phase".into(), json!("stopped"));
    out(&Sim::line(m));
    while let Some(Reverse((_, _, line))) = sim.pending.pop() {
        out(&line);
    }
    let mut m = sim.envelope("deletion", "control", stop + 1_800_000);
    m.insert("scope".into(), json!(if anpr { "alerts" } else { "non_match_biometrics" }));
    m.insert("up_to".into(), json!(format_ts(stop)));
    m.insert("count".into(), json!(duration_s * 8));
    out(&Sim::line(m));
}

#[allow(clippy::too_many_arguments)]
fn detection(
    sim: &mut Sim,
    cam: &str,
    ts: Millis,
    second_half: bool,
    t: Millis,
    t0: Millis,
    list_version: &u32,
    threshold: f64,
    lowered: bool,
) -> String {
    let anpr = sim.scenario.is_anpr();
    let count = 4 + sim.rng.below(9);
    let shift = if sim.scenario == Scenario::ScoreDrift && second_half { 0.15 } else { 0.0 };
    let (mean, sd) = if anpr { (0.86, 0.05) } else { (0.30 + shift, 0.08) };
    let scores: Vec<f64> = (0..count)
        .map(|_| {
            let x: f64 = mean + sd * sim.rng.normal();
            (x.clamp(0.0, 1.0) * 1000.0).round() / 1000.0
        })
        .collect();
    let mut m = sim.envelope("detection", cam, ts);
    m.insert("count".into(), json!(count));
    m.insert("scores".into(), json!(scores));
    // A canary (seeded volunteer) passes a camera every 10 minutes (LFR).
    let canary = !anpr && (t - t0) % 600_000 == 0 && cam == "cam-1" && t > t0;
    if canary {
        m.insert("canary_passes".into(), json!(1));
    }
    let line = Sim::line(m);
    // Alerts caused by this batch: per item, 1 in 800 faces (LFR), 1 in 500 reads (ANPR).
    let p_alert = if anpr {
        1.0 / 500.0
    } else if lowered {
        2.0 / 800.0
    } else {
        1.0 / 800.0
    };
    for _ in 0..count {
        if sim.rng.chance(p_alert) {
            let at = ts + 200 + sim.rng.below(800) as i64;
            alert(sim, cam, at, list_version, threshold, false);
        }
    }
    // NPL 2023: true positive identification rate ~89-92% at the operational threshold.
    if canary && sim.rng.chance(0.92) {
        alert(sim, cam, ts + 300, list_version, threshold, true);
    }
    line
}

fn alert(sim: &mut Sim, cam: &str, ts: Millis, list_version: &u32, threshold: f64, canary: bool) {
    sim.alerts += 1;
    let alert_id = format!("a-{}", sim.alerts);
    let anpr = sim.scenario.is_anpr();
    let ethnicity = sim.rng.pick(ETHNICITY).to_string();
    let sex = sim.rng.pick(SEX).to_string();
    let mut groups = serde_json::Map::new();
    if !ethnicity.is_empty() {
        groups.insert("ethnicity".into(), json!(ethnicity));
    }
    groups.insert("sex".into(), json!(sex));
    let mut m = sim.envelope("alert", cam, ts);
    m.insert("alert_id".into(), json!(alert_id));
    let score = ((threshold + sim.rng.uniform(0.0, 0.2)).min(1.0) * 1000.0).round() / 1000.0;
    m.insert("score".into(), json!(score));
    m.insert("threshold".into(), json!(threshold));
    m.insert("list_version".into(), json!(format!("{}-list-{list_version}", sim.dep)));
    m.insert("entry_token".into(), json!(sim.rng.hex()));
    m.insert(
        "category".into(),
        json!(if anpr {
            "stolen_vehicle"
        } else if canary {
            "test"
        } else {
            "wanted"
        }),
    );
    if !anpr {
        m.insert("subject_groups".into(), Value::Object(groups.clone()));
    }
    if canary {
        m.insert("canary".into(), json!(true));
    }
    m.insert("latency_ms".into(), json!(200 + sim.rng.below(1300)));
    let line = Sim::line(m);
    sim.later(ts, line);
    if canary {
        return;
    }
    // Is this a genuine match? Per-group false match probability by scenario.
    let black = ethnicity == "black";
    let p_false = match sim.scenario {
        Scenario::ThresholdLowered if threshold < 0.6 => {
            if black {
                0.60
            } else {
                0.20
            }
        }
        Scenario::DemographicSkew => {
            if black {
                0.16
            } else {
                0.03
            }
        }
        Scenario::AnprMisreads => 0.25,
        _ => {
            if anpr {
                0.03
            } else {
                0.04
            }
        }
    };
    let genuine = !sim.draw(p_false);
    let engage_all = sim.scenario == Scenario::AutomationBias;
    // Operators dismiss 70% of false matches and 2% of true ones (missed).
    let engage = engage_all || if genuine { !sim.draw(0.02) } else { sim.draw(0.3) };
    let decision_ts =
        ts + if engage_all { 2_000 + sim.rng.below(3_000) as i64 } else { 5_000 + sim.rng.below(55_000) as i64 };
    let op = sim.operators[sim.rng.below(3) as usize].clone();
    let verifier = sim.operators[3 + sim.rng.below(3) as usize].clone();
    let mut m = sim.envelope("adjudication", "console-1", decision_ts);
    m.insert("alert_id".into(), json!(alert_id));
    m.insert("decision".into(), json!(if engage { "engage" } else { "dismiss" }));
    m.insert("operator_token".into(), json!(op));
    if engage {
        m.insert("verifier_token".into(), json!(verifier));
    } else if anpr && !genuine {
        m.insert("reason".into(), json!("misread"));
    } else {
        m.insert("reason".into(), json!(if genuine { "image_quality" } else { "not_same_person" }));
    }
    let line = Sim::line(m);
    sim.later(decision_ts, line);
    if !engage {
        return;
    }
    let outcome_ts = decision_ts + 60_000 + sim.rng.below(540_000) as i64;
    let result = match (genuine, anpr) {
        (false, true) => "misread",
        (false, false) => "false_match",
        (true, _) if sim.rng.chance(0.1) => "not_located",
        (true, _) => "true_match",
    };
    let mut m = sim.envelope("outcome", "team-1", outcome_ts);
    m.insert("alert_id".into(), json!(alert_id));
    m.insert("result".into(), json!(result));
    m.insert(
        "action".into(),
        json!(match result {
            "true_match" if anpr => "vehicle_stopped",
            "true_match" => "arrest",
            _ => "none",
        }),
    );
    if !anpr && result != "not_located" {
        m.insert("engaged_groups".into(), Value::Object(groups));
    }
    let line = Sim::line(m);
    sim.later(outcome_ts, line);
}

/// Generates into a Vec (tests, demo).
pub fn generate_lines(scenario: Scenario, events: usize, seed: u64) -> Vec<String> {
    let mut v = Vec::with_capacity(events + 8);
    generate(scenario, events, seed, |l| v.push(l.to_string()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let a = generate_lines(Scenario::ThresholdLowered, 5000, 7);
        let b = generate_lines(Scenario::ThresholdLowered, 5000, 7);
        assert_eq!(a, b);
        let c = generate_lines(Scenario::ThresholdLowered, 5000, 8);
        assert_ne!(a, c);
    }

    #[test]
    fn about_the_requested_size_and_time_ordered_until_the_stop() {
        for s in Scenario::ALL {
            let lines = generate_lines(s, 20_000, 1);
            assert!(lines.len().abs_diff(20_000) <= 3, "{}: {}", s.name(), lines.len());
            let ts: Vec<i64> = lines
                .iter()
                .map(|l| parse_ts(serde_json::from_str::<Value>(l).unwrap()["ts"].as_str().unwrap()).unwrap())
                .collect();
            let stop = lines.iter().position(|l| l.contains("\"stopped\"")).unwrap();
            assert!(ts[..stop].windows(2).all(|w| w[0] <= w[1] + 2000), "{} not ordered", s.name());
        }
    }
}
