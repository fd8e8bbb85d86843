//! `cargo bench --bench calibration [-- --days N --power-runs N --seed S --threads T --probe NAME]`
//!
//! Issue 20's proof of the false-breach budget: for each statistical condition kind of the
//! shipped LFR profile, N simulated deployment-days (default 1,000) with the null at its least
//! favourable point and every event drawn independently, evaluated every second through the
//! engine's own evaluation and breach lifecycle (`ddtwatch::engine::calibration`). Prints the
//! observed false-breach rate per deployment-day with its Clopper–Pearson 95% interval under the
//! calibrated rule (budget 0.01) and under CONDITIONS.md's per-look rule, then the detection
//! delay of both on issue 20's reference shifts. Exit status 1 when a calibrated upper bound
//! exceeds twice the budget.

use std::time::Instant;

use ddtwatch::engine::calibration::{Probe, World, clopper_pearson, simulate_days};
use ddtwatch::rules::{Budget, DEFAULT_FALSE_BREACH_PER_DAY};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let days = arg("--days", 1000);
    let power_runs = arg("--power-runs", 100);
    let seed = arg("--seed", 20);
    let threads = arg("--threads", std::thread::available_parallelism().map_or(2, |n| n.get() as u64)) as usize;
    let budget = DEFAULT_FALSE_BREACH_PER_DAY;
    // `--probe <substring>`: only the kinds whose name contains it.
    let args: Vec<String> = std::env::args().collect();
    let only = args.iter().position(|a| a == "--probe").and_then(|i| args.get(i + 1)).cloned();
    let probes: Vec<Probe> =
        Probe::ALL.into_iter().filter(|p| only.as_deref().is_none_or(|o| p.name().contains(o))).collect();
    println!("# False breaches per deployment-day under the null ({days} days per kind, seed {seed})\n");
    println!("| condition kind | rule | days fired | rate / day | 95% CI (Clopper-Pearson) | ≤ 2× budget |");
    println!("|---|---|---|---|---|---|");
    let mut ok = true;
    for &probe in &probes {
        for (rule, b) in
            [("calibrated (0.01/day)", Budget::PerDay(budget)), ("per-look (CONDITIONS.md)", Budget::PerLook)]
        {
            let t = Instant::now();
            let runs = simulate_days(probe, b, World::Null, days, seed, threads);
            let k = runs.iter().filter(|r| r.is_some()).count() as u64;
            let (lo, hi) = clopper_pearson(k, days);
            let pass = hi <= 2.0 * budget;
            if matches!(b, Budget::PerDay(_)) {
                ok &= pass;
            }
            println!(
                "| {} | {rule} | {k} | {:.4} | {:.4} – {:.4} | {} |",
                probe.name(),
                k as f64 / days as f64,
                lo,
                hi,
                if matches!(b, Budget::PerDay(_)) { if pass { "yes" } else { "**NO**" } } else { "n/a" },
            );
            eprintln!("  {} / {rule}: {:.1} s", probe.name(), t.elapsed().as_secs_f64());
        }
    }
    println!("\n# Detection delay on the reference shifts ({power_runs} runs each; median, 90th percentile)\n");
    println!("| condition kind | shift | rule | detected within 24 h | median delay | p90 delay |");
    println!("|---|---|---|---|---|---|");
    for &probe in &probes {
        if probe == Probe::RateLower {
            continue; // issue 20 names no reference shift for it
        }
        for (rule, b) in [("calibrated", Budget::PerDay(budget)), ("per-look", Budget::PerLook)] {
            let runs = simulate_days(probe, b, World::Shifted, power_runs, seed ^ 0xD1CE, threads);
            let start = match probe {
                Probe::DriftPsi | Probe::DriftKs | Probe::PageHinkley => ddtwatch::engine::calibration::SHIFT_AT_S,
                _ => 0,
            };
            let mut delays: Vec<i64> = runs.iter().flatten().map(|s| (s - start).max(0)).collect();
            delays.sort_unstable();
            let q = |p: f64| -> String {
                // Undetected runs count as longer than a day.
                let i = ((p * power_runs as f64).ceil() as usize).max(1) - 1;
                delays.get(i).map_or("> 24 h".into(), |s| human(*s))
            };
            println!(
                "| {} | {} | {rule} | {} of {power_runs} | {} | {} |",
                probe.name(),
                shift_name(probe),
                delays.len(),
                q(0.5),
                q(0.9)
            );
        }
    }
    if !ok {
        eprintln!("a calibrated false-breach rate's upper bound exceeds twice the budget");
        std::process::exit(1);
    }
}

fn shift_name(p: Probe) -> &'static str {
    match p {
        Probe::RateUpper | Probe::RateWindowed | Probe::RateLower => "false-alert rate 2× its cap",
        Probe::Disparity => "false alerts 3× as likely for one group",
        Probe::DriftPsi | Probe::DriftKs | Probe::PageHinkley => "scores Beta(2.5,7) → Beta(3.5,6.5)",
        Probe::Quantile => "p95 adjudication latency 2× its limit",
    }
}

fn human(s: i64) -> String {
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{:.1} min", s as f64 / 60.0)
    } else {
        format!("{:.1} h", s as f64 / 3600.0)
    }
}
