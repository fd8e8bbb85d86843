//! Value series behind `drift` and `quantile` conditions: bounded memory per deployment.

use std::collections::{BTreeMap, VecDeque};

use crate::event::Millis;
use crate::rules::{Baseline, DriftMethod, DriftSpec, Window};
use crate::stats::drift::Shift;
use crate::stats::{Histogram, PageHinkley, SparseHdr as Hdr};

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
        }
    }

    pub fn push(&mut self, x: f64, ts: Millis, now: Millis) {
        if let DriftMethod::PageHinkley { .. } = self.spec.method {
            self.ph_seen += 1;
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
        match &mut self.window {
            DriftWindow::Last { cap, ring, hist } => {
                let b = hist.bin(x);
                hist.counts[b] += 1;
                if let Some(old) = ring.push(b, *cap) {
                    hist.counts[old] -= 1;
                }
            }
            DriftWindow::All { hist } => hist.add(x),
            DriftWindow::Duration { width, bucket, buckets, template } => {
                let k = ts.div_euclid(*bucket);
                if k <= now.div_euclid(*bucket) - *width / *bucket {
                    return;
                }
                let b = template.bin(x);
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
}

fn hdr() -> Hdr {
    // CONDITIONS.md `quantile`: HDR histogram with 3 significant digits (see stats::hdr).
    Hdr::new()
}

impl Default for LatencySeries {
    fn default() -> Self {
        LatencySeries { total: hdr(), windows: BTreeMap::new() }
    }
}

impl LatencySeries {
    /// Keeps a bucketed copy for this window width (idempotent).
    pub fn keep_window(&mut self, width: i64) {
        self.windows.entry(width).or_insert(((width / 60).max(1), BTreeMap::new()));
    }

    pub fn record(&mut self, value_ms: i64, ts: Millis, now: Millis) {
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

    /// Quantile `q` (ms) and sample count for a window ending at `now`.
    pub fn quantile(&self, window: Window, q: f64, now: Millis) -> (Option<u64>, u64) {
        let merged;
        let h = match window {
            Window::Duration(d) => {
                let mut out = hdr();
                if let Some((bucket, buckets)) = self.windows.get(&d.ms()) {
                    let first = now.div_euclid(*bucket) - d.ms() / *bucket + 1;
                    for (_, h) in buckets.range(first..) {
                        out.add(h);
                    }
                }
                merged = out;
                &merged
            }
            _ => &self.total,
        };
        let n = h.len();
        if n == 0 { (None, 0) } else { (Some(h.value_at_quantile(q)), n) }
    }
}
