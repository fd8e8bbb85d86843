//! The per-deployment families written straight to exposition text. At 1,000 deployments they are
//! ≈ 175k samples, nearly all of a scrape, and prometheus-client writes each label piece through
//! `fmt::Write` (issue 21: a scrape took ≈ 110 ms). Here the samples are written with `push_str`
//! on two threads (halves of the deployments, merged family by family), in exactly the bytes
//! prometheus-client writes for the same samples in either format: `tests/http.rs` compares the two
//! over every scenario, OpenMetrics and Prometheus text alike.

use prometheus_client::metrics::MetricType;

use super::{HistFamily, Labels};

/// The two text formats a scrape may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0` (Prometheus asks for it first).
    OpenMetrics,
    /// `text/plain; version=0.0.4`.
    Prometheus,
}

fn type_name(ty: MetricType) -> &'static str {
    match ty {
        MetricType::Counter => "counter",
        MetricType::Histogram => "histogram",
        _ => "gauge",
    }
}

/// `# HELP` and `# TYPE` of a family (Prometheus text names a counter family `<name>_total`).
pub(super) fn header(out: &mut String, name: &str, help: &str, ty: MetricType, format: Format) {
    let total = if format == Format::Prometheus && ty == MetricType::Counter { "_total" } else { "" };
    for (line, text) in [("# HELP ", help), ("# TYPE ", type_name(ty))] {
        out.push_str(line);
        out.push_str(name);
        out.push_str(total);
        out.push(' ');
        if line == "# HELP " && format == Format::Prometheus {
            out.push_str(&text.replace('\\', "\\\\").replace('\n', "\\n"));
        } else {
            out.push_str(text);
        }
        out.push('\n');
    }
}

/// `k="v"`, the value escaped as prometheus-client escapes label values.
pub(super) fn pair(out: &mut String, k: &str, v: &str) {
    out.push_str(k);
    out.push_str("=\"");
    if v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(&v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"));
    } else {
        out.push_str(v);
    }
    out.push('"');
}

/// `{k="v",…}` with `first` before and `last` after the sample's labels (nothing when there are
/// none). The shared run of the labels is written once (`Labels::base_text`) and copied.
fn labels(
    out: &mut String,
    first: Option<(&'static str, &str)>,
    labels: &Labels<'_>,
    last: Option<(&'static str, &str)>,
) {
    let mut open = false;
    let mut sep = |out: &mut String| {
        out.push(if open { ',' } else { '{' });
        open = true;
    };
    if let Some((k, v)) = first {
        sep(out);
        pair(out, k, v);
    }
    let base = labels.base_text();
    if !base.is_empty() {
        sep(out);
        out.push_str(base);
    }
    for (k, v) in labels.own().chain(last) {
        sep(out);
        pair(out, k, v);
    }
    if open {
        out.push('}');
    }
}

fn float(out: &mut String, v: f64) {
    // Family values are finite (Family::add drops the rest), as are histogram sums.
    out.push_str(dtoa::Buffer::new().format_finite(v));
}

fn int(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// One sample line of a gauge or counter family (the same line in both formats).
pub(super) fn sample(out: &mut String, name: &str, ty: MetricType, l: &Labels<'_>, v: f64) {
    out.push_str(name);
    if ty == MetricType::Counter {
        out.push_str("_total");
    }
    labels(out, None, l, None);
    out.push(' ');
    float(out, v);
    out.push('\n');
}

/// A histogram bucket's bound as each format writes it: OpenMetrics as a float (`1.0`),
/// Prometheus as Go's shortest `%g` (`1`); the bounds are whole below 1e6 or in [1e-4, 1e6).
fn bound(b: f64, format: Format) -> String {
    match format {
        Format::OpenMetrics => dtoa::Buffer::new().format(b).to_string(),
        Format::Prometheus if b.fract() == 0.0 && b.abs() < 1e6 => (b as i64).to_string(),
        Format::Prometheus => format!("{b}"),
    }
}

/// The samples of a histogram family: OpenMetrics writes sum, count, then buckets with `le`
/// first; Prometheus text writes buckets with `le` last, then sum and count.
pub(super) fn hist_samples(out: &mut String, h: &HistFamily<'_>, format: Format) {
    let bounds: Vec<String> = super::LATENCY_BUCKETS.iter().map(|b| bound(*b, format)).collect();
    let le = |i: usize| if i < bounds.len() { bounds[i].as_str() } else { "+Inf" };
    for (l, sum, count, buckets) in &h.samples {
        let sum_count = |out: &mut String| {
            for (suffix, v) in [("_sum", None), ("_count", Some(*count))] {
                out.push_str(h.name);
                out.push_str(suffix);
                labels(out, None, l, None);
                out.push(' ');
                match v {
                    None => float(out, *sum),
                    Some(n) => int(out, n),
                }
                out.push('\n');
            }
        };
        if format == Format::OpenMetrics {
            sum_count(out);
        }
        let mut cumulative = 0;
        for (i, (_, n)) in buckets.iter().enumerate() {
            cumulative += n;
            out.push_str(h.name);
            out.push_str("_bucket");
            match format {
                Format::OpenMetrics => labels(out, Some(("le", le(i))), l, None),
                Format::Prometheus => labels(out, None, l, Some(("le", le(i)))),
            }
            out.push(' ');
            int(out, cumulative);
            out.push('\n');
        }
        if format == Format::Prometheus {
            sum_count(out);
        }
    }
}
