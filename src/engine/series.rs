//! Value series behind `drift` and `quantile` conditions: bounded memory per deployment.

use std::collections::{BTreeMap, VecDeque};

use crate::event::Millis;
use crate::rules::{Baseline, DriftMethod, DriftSpec, Window};
use crate::stats::drift::Shift;
use crate::stats::sequential::{self, ShiryaevRoberts};
use crate::stats::{Histogram, PageHinkley, SparseHdr as Hdr, ks_binned};

/// Decision state of a rate, disparity or quantile condition under a false-breach budget
/// (docs/STATISTICS.md): Shiryaev–Roberts detectors for duration windows (one per side of a
/// band), or the tumbling block of a windowed disparity. Cumulative (`deployment`) windows need
/// none: their e-value is a function of the counts.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sequential {
    pub sr: Vec<ShiryaevRoberts>,
    pub block: Option<DisparityBlock>,
}

/// The current tumbling block of a windowed disparity: its index since `origin` (engine ms)
/// and the deployment's per-group (x, n) when it began.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DisparityBlock {
    pub origin: Millis,
    pub index: i64,
    pub start: Vec<(u64, u64)>,
}

/// The current segment of a drift condition's calibrated decision (docs/STATISTICS.md):
/// values after the baseline in tumbling segments (N values for `last: N`, W of engine time for
/// a duration, one segment for `deployment`), each tested against the baseline with a
/// time-uniform KS band and its share of the day's budget.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    pub counts: Vec<u64>,
    pub n: u64,
    /// Engine time of the segment's first value.
    pub started: Option<Millis>,
    /// Engine time the first segment started (budget days count from it).
    pub origin: Option<Millis>,
    /// Budget day of this segment, and its 1-based index within that day.
    pub day: i64,
    pub index: u64,
    /// The band was crossed at some look in this segment (latched until the segment ends).
    pub crossed: bool,
    /// The final decision of the previous segment (stands until this one has `min_samples`).
    pub previous: Option<bool>,
    /// KS D of the segment against the baseline at the last look, and its boundary.
    pub d: f64,
    pub boundary: f64,
}

impl Segment {
    /// α0 (baseline band) and the α of this segment, from the per-day budget: α0 = α/2, the
    /// segments of a day share α/2 by 6/(π²k²).
    pub fn alphas(&self, budget: f64) -> (f64, f64) {
        (budget / 2.0, budget / 2.0 * sequential::segment_share(self.index))
    }

    /// One look: updates `d`, `boundary` and the latch; returns whether the band is crossed now.
    pub fn look(&mut self, baseline: &[u64], budget: f64, min_samples: u64) -> bool {
        if self.n == 0 {
            return false;
        }
        let (a0, ab) = self.alphas(budget);
        self.d = ks_binned(&self.counts, baseline);
        self.boundary = sequential::ks_boundary(baseline.iter().sum(), a0, self.n, ab);
        let now = self.n >= min_samples && self.d > self.boundary;
        self.crossed |= now;
        now
    }

    /// The decision to report: crossed in this segment; else, while this segment has not
    /// closed, the previous segment's final decision if that was "crossed" (a persistent shift
    /// must not resolve and re-fire at every segment boundary); else this segment's "not
    /// crossed" once it has `min_samples`, before that the previous decision.
    pub fn decision(&self, min_samples: u64) -> Option<bool> {
        if self.crossed || self.previous == Some(true) {
            Some(true)
        } else if self.n >= min_samples {
            Some(false)
        } else {
            self.previous
        }
    }

    fn close(&mut self, baseline: &[u64], budget: f64, min_samples: u64) {
        self.look(baseline, budget, min_samples);
        self.previous = if self.n >= min_samples { Some(self.crossed) } else { self.previous };
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.n = 0;
        self.started = None;
        self.crossed = false;
    }

    /// Adds a value's bin at engine time `now`, first closing the segment when it is full.
    fn push(&mut self, bin: usize, spec: &DriftSpec, baseline: &[u64], now: Millis, budget: f64) {
        let min = spec.min_samples;
        if self.counts.len() != baseline.len() {
            self.counts = vec![0; baseline.len()];
        }
        // A segment also ends with its budget day: each day's segments share that day's budget.
        let day_over = match (self.origin, self.started) {
            (Some(origin), Some(_)) => (now - origin).div_euclid(sequential::DAY_MS) != self.day,
            _ => false,
        };
        let full = day_over
            || match (spec.window, self.started) {
                (Window::Last(cap), _) => self.n >= cap,
                (Window::Duration(w), Some(start)) => now - start >= w.ms(),
                _ => false,
            };
        if full {
            self.close(baseline, budget, min);
        }
        if self.started.is_none() {
            let origin = *self.origin.get_or_insert(now);
            let day = (now - origin).div_euclid(sequential::DAY_MS);
            self.index = if day == self.day && self.index > 0 { self.index + 1 } else { 1 };
            self.day = day;
            self.started = Some(now);
        }
        self.counts[bin] += 1;
        self.n += 1;
    }
}

/// State of one drift condition.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DriftState {
    /// Rebound from the condition on restore (see engine::snapshot).
    #[serde(skip, default = "DriftSpec::placeholder")]
    pub spec: DriftSpec,
    pub baseline: Histogram,
    /// Values still needed to fill a `first: N` baseline (0 when full or explicit).
    pub baseline_missing: u64,
    window: DriftWindow,
    pub ph: PageHinkley,
    pub ph_seen: u64,
    pub last_detection: Option<(Millis, Shift)>,
    /// Calibrated decision of PSI and KS (docs/STATISTICS.md).
    #[serde(default)]
    pub segment: Segment,
    /// Running variance of every value (Welford: count, mean, M2), for the Page–Hinkley
    /// budget threshold.
    #[serde(default)]
    pub moments: (u64, f64, f64),
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum DriftWindow {
    /// The last N values as bin indices, and their histogram.
    Last { cap: usize, ring: BinRing, hist: Histogram },
    /// Every value since the baseline filled (`window: deployment`): bin counts only, so memory
    /// does not grow with the number of values.
    All { hist: Histogram },
    /// Bin counts per W/60 bucket of event time.
    Duration { width: i64, bucket: i64, buckets: BTreeMap<i64, Vec<u64>>, template: Histogram },
}

/// Bin indices of the last N values, oldest first: one byte each when there are at most 256
/// bins (the defaults: 10 for PSI, 100 for KS), two otherwise. Allocated at its full size (up to 64k values).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum BinRing {
    Narrow(VecDeque<u8>),
    Wide(VecDeque<u16>),
}

impl BinRing {
    fn new(bins: usize, cap: usize) -> Self {
        // +1: a value is pushed before the oldest is dropped. Huge windows grow as they fill.
        let reserve = (cap + 1).min(1 << 16);
        if bins <= 256 {
            BinRing::Narrow(VecDeque::with_capacity(reserve))
        } else {
            BinRing::Wide(VecDeque::with_capacity(reserve))
        }
    }

    /// Appends bin `b`; returns the bin of the value that left the window (beyond `cap`).
    fn push(&mut self, b: usize, cap: usize) -> Option<usize> {
        match self {
            BinRing::Narrow(r) => slide(r, b as u8, cap),
            BinRing::Wide(r) => slide(r, b as u16, cap),
        }
    }
}

fn slide<T: Copy + Into<usize>>(ring: &mut VecDeque<T>, b: T, cap: usize) -> Option<usize> {
    ring.push_back(b);
    if ring.len() > cap { ring.pop_front().map(Into::into) } else { None }
}

impl DriftState {
    /// Whether the current window is a count of values (not a span of time): then it changes
    /// only when values arrive.
    pub fn window_counts_values(&self) -> bool {
        matches!(self.window, DriftWindow::Last { .. } | DriftWindow::All { .. })
    }

    pub fn new(spec: &DriftSpec) -> Self {
        let template = match &spec.method {
            DriftMethod::Psi { edges, .. } => Histogram::with_edges(edges.clone()),
            // CONDITIONS.md `ks`: 100 equal bins.
            _ => Histogram::equal(100),
        };
        let mut baseline = template.clone();
        let baseline_missing = match &spec.baseline {
            Baseline::First(n) => *n,
            Baseline::Histogram(c) => {
                baseline.counts = c.clone();
                0
            }
        };
        let window = match spec.window {
            // Page-Hinkley works on the values themselves: no window to keep.
            _ if matches!(spec.method, DriftMethod::PageHinkley { .. }) => DriftWindow::All { hist: template },
            Window::Last(n) => DriftWindow::Last {
                cap: n as usize,
                ring: BinRing::new(template.counts.len(), n as usize),
                hist: template.clone(),
            },
            Window::Duration(d) => DriftWindow::Duration {
                width: d.ms(),
                bucket: (d.ms() / 60).max(1),
                buckets: BTreeMap::new(),
                template,
            },
            Window::Deployment => DriftWindow::All { hist: template },
        };
        let (delta, lambda) = match &spec.method {
            DriftMethod::PageHinkley { delta, lambda, .. } => (*delta, *lambda),
            _ => (0.005, 50.0),
        };
        DriftState {
            spec: spec.clone(),
            baseline,
            baseline_missing,
            window,
            // CONDITIONS.md: no detection before 30 values.
            ph: PageHinkley::new(delta, lambda, 30),
            ph_seen: 0,
            last_detection: None,
            segment: Segment::default(),
            moments: (0, 0.0, 0.0),
        }
    }

    /// Sample variance of the values so far (0 before two values).
    pub fn variance(&self) -> f64 {
        let (n, _, m2) = self.moments;
        if n < 2 { 0.0 } else { m2 / (n - 1) as f64 }
    }

    pub fn push(&mut self, x: f64, ts: Millis, now: Millis) {
        if let DriftMethod::PageHinkley { lambda, delta, .. } = self.spec.method {
            self.ph_seen += 1;
            let (n, mean, m2) = &mut self.moments;
            *n += 1;
            let d = x - *mean;
            *mean += d / *n as f64;
            *m2 += d * (x - *mean);
            if let Some(alpha) = self.spec.false_breach_per_day.per_day() {
                // Each direction holds half the budget (docs/STATISTICS.md).
                self.ph.lambda = sequential::ph_threshold(lambda, delta, self.variance(), alpha / 2.0);
            }
            if let Some(shift) = self.ph.update(x) {
                self.last_detection = Some((now, shift));
            }
            return;
        }
        if self.baseline_missing > 0 {
            self.baseline.add(x);
            self.baseline_missing -= 1;
            return;
        }
        // The baseline and the window are built from one template (`new`): one bin for both.
        let b = self.baseline.bin(x);
        if let Some(alpha) = self.spec.false_breach_per_day.per_day() {
            self.segment.push(b, &self.spec, &self.baseline.counts, now, alpha);
        }
        match &mut self.window {
            DriftWindow::Last { cap, ring, hist } => {
                debug_assert_eq!(hist.edges, self.baseline.edges);
                hist.counts[b] += 1;
                if let Some(old) = ring.push(b, *cap) {
                    hist.counts[old] -= 1;
                }
            }
            DriftWindow::All { hist } => {
                debug_assert_eq!(hist.edges, self.baseline.edges);
                hist.counts[b] += 1;
            }
            DriftWindow::Duration { width, bucket, buckets, template } => {
                debug_assert_eq!(template.edges, self.baseline.edges);
                let k = ts.div_euclid(*bucket);
                if k <= now.div_euclid(*bucket) - *width / *bucket {
                    return;
                }
                let n = template.counts.len();
                buckets.entry(k).or_insert_with(|| vec![0; n])[b] += 1;
            }
        }
    }

    /// The current window's bin counts.
    pub fn current(&mut self, now: Millis) -> Vec<u64> {
        match &mut self.window {
            DriftWindow::Last { hist, .. } | DriftWindow::All { hist } => hist.counts.clone(),
            DriftWindow::Duration { width, bucket, buckets, template } => {
                let first = now.div_euclid(*bucket) - *width / *bucket + 1;
                *buckets = buckets.split_off(&first);
                let mut out = vec![0; template.counts.len()];
                for counts in buckets.values() {
                    for (o, c) in out.iter_mut().zip(counts) {
                        *o += c;
                    }
                }
                out
            }
        }
    }
}

/// A latency/lag series: one HDR histogram for the deployment and bucketed ones per window.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LatencySeries {
    pub total: Hdr,
    windows: BTreeMap<i64, (i64, BTreeMap<i64, Hdr>)>,
    /// Bumped by every recorded value (see `Deployment::changes`; not persisted).
    #[serde(skip)]
    pub(crate) changes: u64,
}

fn hdr() -> Hdr {
    // CONDITIONS.md `quantile`: HDR histogram with 3 significant digits (see stats::hdr).
    Hdr::new()
}

impl Default for LatencySeries {
    fn default() -> Self {
        LatencySeries { total: hdr(), windows: BTreeMap::new(), changes: 0 }
    }
}

impl LatencySeries {
    /// Keeps a bucketed copy for this window width (idempotent).
    pub fn keep_window(&mut self, width: i64) {
        self.windows.entry(width).or_insert(((width / 60).max(1), BTreeMap::new()));
    }

    pub fn record(&mut self, value_ms: i64, ts: Millis, now: Millis) {
        self.changes += 1;
        let v = value_ms.max(0) as u64;
        self.total.record(v);
        for (width, (bucket, buckets)) in self.windows.iter_mut() {
            let k = ts.div_euclid(*bucket);
            if k > now.div_euclid(*bucket) - *width / *bucket {
                buckets.entry(k).or_insert_with(hdr).record(v);
            }
        }
    }

    /// Drops window buckets that ended before `now`'s windows start.
    pub fn expire(&mut self, now: Millis) {
        for (width, (bucket, buckets)) in self.windows.iter_mut() {
            let first = now.div_euclid(*bucket) - *width / *bucket + 1;
            *buckets = buckets.split_off(&first);
        }
    }

    /// The histogram of a window ending at `now`.
    fn merged(&self, window: Window, now: Millis) -> std::borrow::Cow<'_, Hdr> {
        match window {
            Window::Duration(d) => {
                let mut out = hdr();
                if let Some((bucket, buckets)) = self.windows.get(&d.ms()) {
                    let first = now.div_euclid(*bucket) - d.ms() / *bucket + 1;
                    for (_, h) in buckets.range(first..) {
                        out.add(h);
                    }
                }
                std::borrow::Cow::Owned(out)
            }
            _ => std::borrow::Cow::Borrowed(&self.total),
        }
    }

    /// Quantile `q` (ms) and sample count for a window ending at `now`.
    pub fn quantile(&self, window: Window, q: f64, now: Millis) -> (Option<u64>, u64) {
        let h = self.merged(window, now);
        let n = h.len();
        if n == 0 { (None, 0) } else { (Some(h.value_at_quantile(q)), n) }
    }

    /// (values above `bound_ms`, values) in a window ending at `now`: a value counts as above
    /// when its HDR bucket's highest equivalent value is (the complement of `count_le`).
    pub fn exceedances(&self, window: Window, bound_ms: u64, now: Millis) -> (u64, u64) {
        let h = self.merged(window, now);
        (h.len() - h.count_le(bound_ms), h.len())
    }
}
