//! One deployment's evaluation round: its orphans past their hold, its adjudication timeouts,
//! every condition's evaluation and breach lifecycle, and whether it may now be retired. A round
//! reads and changes only its own deployment (and reads the engine through [`RoundCtx`]), so
//! rounds of different deployments can run on different threads; the engine applies what they
//! return ([`Round`]) in deployment-id order.

use super::deployment::Held;
use super::eval::{evaluate, inputs, refresh};
use super::{BookOp, Deployment, Round, RoundCtx};
use crate::config::ClockMode;
use crate::event::Phase;
use crate::rules::{BreachState, Kind, Transition};

impl Deployment {
    pub(crate) fn evaluate_round(&mut self, id: &str, ctx: &RoundCtx<'_>) -> Round {
        let now = ctx.now;
        let mut round = Round {
            orphans: Vec::new(),
            book: Vec::new(),
            seeds_used: Vec::new(),
            retire: false,
            evaluated: 0,
            refreshed: 0,
        };
        let hold = ctx.config.raw.engine.orphan_hold.ms();
        // Orphans past their hold (or all of them at end of input).
        while let Some((held_at, _)) = self.held_order.front() {
            if !ctx.end_of_input && now - *held_at <= hold {
                break;
            }
            let (held_at, alert_id) = self.held_order.pop_front().expect("non-empty");
            if let Some(list) = self.held.get_mut(&alert_id) {
                let (expired, keep): (Vec<Held>, Vec<Held>) =
                    list.drain(..).partition(|h| ctx.end_of_input || h.held_at <= held_at);
                *list = keep;
                if list.is_empty() {
                    self.held.remove(&alert_id);
                }
                round.orphans.extend(expired);
            }
        }
        for _ in &round.orphans {
            self.changes += 1;
            self.total.counts[crate::rules::Counter::Invalid.index()] += 1;
            *self.invalid_by_reason.entry(crate::event::Reason::Orphan.as_str()).or_default() += 1;
        }
        self.expire_adjudications(now);
        let mut conditions = std::mem::take(&mut self.conditions);
        for rt in conditions.iter_mut() {
            // Inputs unchanged since the last full evaluation: only the clock-driven part is
            // brought up to `now` (exactly what a full evaluation would give; debug builds
            // check that on every such round).
            let refreshed = ctx.refresh && refresh(rt, self, now);
            if refreshed {
                #[cfg(debug_assertions)]
                check_refresh(rt, self, now);
                round.refreshed += 1;
            } else {
                evaluate(rt, self, now);
                rt.seen = Some(inputs(rt, self));
                round.evaluated += 1;
                // A silence instance seen for the first time gets its lifecycle (a refresh keeps
                // the set of instances its full evaluation had).
                for src in rt.last.iter().filter_map(|e| e.instance.as_ref()) {
                    if !rt.instances.contains_key(src) {
                        rt.instances.insert(src.clone(), Default::default());
                    }
                }
            }
            // Instances and evaluations are walked together (both in source order), not looked up
            // one by one: every instance evaluated has its lifecycle (see above).
            let mut instances = rt.instances.iter_mut().peekable();
            let evals = &rt.last;
            for e in evals {
                let lifecycle = match &e.instance {
                    None => &mut rt.lifecycle,
                    Some(src) => {
                        while instances.next_if(|(k, _)| k.as_str() < src.as_str()).is_some() {}
                        match instances.next() {
                            Some((k, l)) if k == src => l,
                            _ => unreachable!("every instance evaluated has a lifecycle, in source order"),
                        }
                    }
                };
                // The instance's id (`camera_silence/cam-2`), built only when it is needed.
                let cond_id = || match &e.instance {
                    None => rt.condition.id.clone(),
                    Some(src) => format!("{}/{}", rt.condition.id, src),
                };
                let event_time = (ctx.mode == ClockMode::Wall).then(|| self.last_ts.unwrap_or(now));
                if !ctx.seeds.is_empty() {
                    let cond_id = cond_id();
                    let key = (id.to_string(), cond_id.clone());
                    if let Some(&(anchor, fired_at)) = ctx.seeds.get(&key) {
                        round.seeds_used.push(key);
                        if lifecycle.seed(anchor, fired_at) {
                            round.book.push(BookOp::TakeOver {
                                cond_id: cond_id.clone(),
                                condition: rt.condition.clone(),
                                anchor,
                                fired_at,
                                limit: e.limit.value(),
                            });
                        }
                    }
                }
                let Some(kind) = lifecycle.step_at(e.verdict, now, rt.condition.for_.ms(), event_time) else {
                    continue;
                };
                let started_at = lifecycle.key_time(now);
                let t = Transition::new(id, self.system, cond_id(), &rt.condition, kind, now, started_at, e);
                round.book.push(BookOp::Transition(Box::new(t)));
            }
        }
        self.conditions = conditions;
        // Judged at this evaluation; the last input's final evaluation retires nothing.
        round.retire = !ctx.end_of_input && self.retirable(ctx);
        round
    }

    /// Whether this stopped deployment may be retired at the round's time: its stop applied at
    /// least `retain_stopped` ago (engine clock), nothing of it held, no condition pending (on its
    /// way to firing), and every deletion deadline attested. An unattested deadline keeps the
    /// deployment: its breach fires and stays open, and a late attestation must still resolve it.
    fn retirable(&self, ctx: &RoundCtx<'_>) -> bool {
        let retain = ctx.config.raw.engine.retain_stopped.ms();
        let (Some(Phase::Stopped), Some(stop)) = (self.phase, self.stopped_at) else { return false };
        let seen = self.stop_seen.unwrap_or(stop);
        if retain <= 0 || ctx.now - seen < retain || !self.held.is_empty() || ctx.future.contains(self.id.as_str()) {
            return false;
        }
        self.conditions.iter().all(|rt| {
            let pending = rt.lifecycle.state == BreachState::Pending
                || rt.instances.values().any(|l| l.state == BreachState::Pending);
            let owed = match &rt.condition.kind {
                Kind::Deadline { scope, .. } => !self.deletions.iter().any(|x| x.scope == *scope && x.up_to >= stop),
                _ => false,
            };
            !pending && !owed
        })
    }
}

/// Debug builds: a refreshed condition equals a full evaluation of the same inputs at the same
/// time (run on a copy, so the check changes nothing), and the full evaluation would have left
/// the same state for later rounds (detectors, memo, drift segment and Page–Hinkley). Every test
/// that evaluates runs this.
#[cfg(debug_assertions)]
fn check_refresh(rt: &super::ConditionRuntime, dep: &Deployment, now: crate::time::Millis) {
    let mut full = rt.clone();
    evaluate(&mut full, dep, now);
    let evals = &full.last;
    let state = |r: &super::ConditionRuntime| {
        let drift = r.drift.as_ref().map(|d| format!("{:?} {:?} {:?}", d.segment, d.ph, d.last_detection));
        format!("{:?} {:?} {drift:?}", r.seq, r.memo)
    };
    for (what, got, want) in
        [("evaluation", format!("{:?}", rt.last), format!("{evals:?}")), ("state", state(rt), state(&full))]
    {
        assert!(
            got == want,
            "condition {} of {} refreshed at {now}: its {what} differs from a full evaluation's:\n refreshed {got}\n full      {want}",
            rt.condition.id,
            dep.id
        );
    }
}
