//! Counters of CONDITIONS.md (overall and per demographic group), and their time windows.
//!
//! Counts are kept as signed deltas: counters derived from an alert's latest decision and
//! outcome (`false_alerts`, `unadjudicated`, …) are current values that can go down when a later
//! decision replaces an earlier one, so an alert's old contribution is subtracted and its new
//! one added (see [`Contribution`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::rules::Counter;

const N_COUNTERS: usize = Counter::ALL.len();

/// Allow-listed groups per attribute, flattened so a (attribute, group) pair is one index.
#[derive(Debug, Clone, Default)]
pub struct GroupIndex {
    /// (attribute, groups) in config order.
    pub attributes: Vec<(String, Vec<String>)>,
    offsets: Vec<usize>,
    pub len: usize,
}

impl GroupIndex {
    pub fn new(groups: &BTreeMap<String, Vec<String>>) -> Self {
        let mut attributes = Vec::new();
        let mut offsets = Vec::new();
        let mut len = 0;
        for (attr, list) in groups {
            offsets.push(len);
            len += list.len();
            attributes.push((attr.clone(), list.clone()));
        }
        GroupIndex { attributes, offsets, len }
    }

    /// Flat index of `value` for attribute number `a`: the group itself if allow-listed,
    /// `unknown` if missing, `other` otherwise.
    pub fn slot(&self, a: usize, value: Option<&str>) -> usize {
        let groups = &self.attributes[a].1;
        let name = value.unwrap_or("unknown");
        let pos = groups
            .iter()
            .position(|g| g == name)
            .or_else(|| groups.iter().position(|g| g == "other"))
            .unwrap_or(groups.len() - 1);
        self.offsets[a] + pos
    }

    pub fn attribute(&self, name: &str) -> Option<usize> {
        self.attributes.iter().position(|(a, _)| a == name)
    }

    /// Flat slots of one attribute, in allow-list order, with the group names.
    pub fn slots(&self, a: usize) -> impl Iterator<Item = (usize, &str)> {
        let off = self.offsets[a];
        self.attributes[a].1.iter().enumerate().map(move |(i, g)| (off + i, g.as_str()))
    }
}

/// Per-group cells tallied by the list entry's recorded groups (`subject_groups`).
pub const SUBJ_ALERTS: usize = 0;
pub const SUBJ_FALSE_ALERTS: usize = 1;
pub const SUBJ_ENGAGED: usize = 2;
pub const SUBJ_FALSE_ENGAGED: usize = 3;
/// Per-group cells tallied by the person engaged (`engaged_groups`).
pub const ENG_ENGAGED: usize = 0;
pub const ENG_FALSE_ENGAGED: usize = 1;

/// A set of counts: the overall counters plus the per-group tables.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    pub counts: [i64; N_COUNTERS],
    pub subject: Vec<[i64; 4]>,
    pub engaged: Vec<[i64; 2]>,
    /// Detections by `exposure` estimates.
    pub exposure: Vec<i64>,
}

impl Tally {
    pub fn new(groups: usize) -> Self {
        Tally {
            counts: [0; N_COUNTERS],
            subject: vec![[0; 4]; groups],
            engaged: vec![[0; 2]; groups],
            exposure: vec![0; groups],
        }
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.counts[c.index()].max(0) as u64
    }

    pub fn add(&mut self, other: &Tally) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        for (a, b) in self.subject.iter_mut().zip(&other.subject) {
            for k in 0..4 {
                a[k] += b[k];
            }
        }
        for (a, b) in self.engaged.iter_mut().zip(&other.engaged) {
            a[0] += b[0];
            a[1] += b[1];
        }
        for (a, b) in self.exposure.iter_mut().zip(&other.exposure) {
            *a += b;
        }
    }

    /// Applies an alert's contribution with sign +1 or −1.
    pub fn apply(&mut self, c: &Contribution, sign: i64) {
        for counter in Counter::ALL {
            if c.flags & bit(counter) != 0 {
                self.counts[counter.index()] += sign;
            }
        }
        if c.flags & bit(Counter::CanaryAlerts) != 0 {
            return;
        }
        let is = |k: Counter| c.flags & bit(k) != 0;
        for &slot in c.subject.iter() {
            let cell = &mut self.subject[slot];
            cell[SUBJ_ALERTS] += sign;
            cell[SUBJ_FALSE_ALERTS] += sign * is(Counter::FalseAlerts) as i64;
            cell[SUBJ_ENGAGED] += sign * is(Counter::Engaged) as i64;
            cell[SUBJ_FALSE_ENGAGED] += sign * is(Counter::FalseEngaged) as i64;
        }
        if is(Counter::Engaged) {
            for &slot in c.engaged.iter() {
                let cell = &mut self.engaged[slot];
                cell[ENG_ENGAGED] += sign;
                cell[ENG_FALSE_ENGAGED] += sign * is(Counter::FalseEngaged) as i64;
            }
        }
    }
}

pub const fn bit(c: Counter) -> u32 {
    1 << (c as u32)
}

/// What one alert currently adds to the counters: counter bits and its group slots.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Contribution {
    pub flags: u32,
    /// One slot per tabulated attribute, from the alert's `subject_groups`.
    pub subject: Arc<[usize]>,
    /// One slot per tabulated attribute, from the outcome's `engaged_groups`.
    pub engaged: Arc<[usize]>,
}

/// Counts of events with ts in (now − W, now], kept in W/60 buckets keyed by bucket number.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WindowedTally {
    pub width_ms: i64,
    bucket_ms: i64,
    groups: usize,
    buckets: BTreeMap<i64, Tally>,
}

impl WindowedTally {
    pub fn new(width_ms: i64, groups: usize) -> Self {
        let bucket_ms = (width_ms / 60).max(1);
        WindowedTally { width_ms, bucket_ms, groups, buckets: BTreeMap::new() }
    }

    fn bucket_of(&self, ts: i64) -> i64 {
        ts.div_euclid(self.bucket_ms)
    }

    /// First bucket still inside the window ending at `now`.
    fn first_live(&self, now: i64) -> i64 {
        self.bucket_of(now) - (self.width_ms / self.bucket_ms) + 1
    }

    /// Mutable bucket for an event at `ts`, or None if it is already outside the window.
    pub fn at(&mut self, ts: i64, now: i64) -> Option<&mut Tally> {
        let b = self.bucket_of(ts);
        if b < self.first_live(now) {
            return None;
        }
        let groups = self.groups;
        Some(self.buckets.entry(b).or_insert_with(|| Tally::new(groups)))
    }

    /// Drops buckets that left the window.
    pub fn expire(&mut self, now: i64) {
        let first = self.first_live(now);
        self.buckets = self.buckets.split_off(&first);
    }

    /// Sum over the buckets inside the window ending at `now`.
    pub fn sum(&self, now: i64) -> Tally {
        let mut t = Tally::new(self.groups);
        for (_, b) in self.buckets.range(self.first_live(now)..=self.bucket_of(now)) {
            t.add(b);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn groups_outside_the_allow_list_count_as_other() {
        let mut g = BTreeMap::new();
        g.insert("sex".to_string(), vec!["female".into(), "male".into(), "other".into(), "unknown".into()]);
        let idx = GroupIndex::new(&g);
        assert_eq!(idx.slot(0, Some("male")), 1);
        assert_eq!(idx.slot(0, Some("nonbinary")), 2);
        assert_eq!(idx.slot(0, None), 3);
    }

    proptest! {
        /// The windowed sum equals a brute-force count over the same events, using the same
        /// bucket boundaries (W/60 buckets: a bucket counts while its start is in the window).
        #[test]
        fn window_equals_brute_force(
            events in proptest::collection::vec((0i64..20_000, 1i64..5), 1..200),
            width in 60i64..5_000,
        ) {
            let mut sorted = events.clone();
            sorted.sort();
            let mut w = WindowedTally::new(width, 0);
            let mut now = 0;
            let mut kept = Vec::new();
            for (ts, n) in &sorted {
                now = now.max(*ts);
                if let Some(t) = w.at(*ts, now) {
                    t.counts[0] += n;
                    kept.push((*ts, *n));
                }
                w.expire(now);
            }
            let bucket = (width / 60).max(1);
            let first = now.div_euclid(bucket) - width / bucket + 1;
            let brute: i64 = kept.iter().filter(|(ts, _)| ts.div_euclid(bucket) >= first).map(|(_, n)| n).sum();
            prop_assert_eq!(w.sum(now).counts[0], brute);
        }
    }
}
