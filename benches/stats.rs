//! Criterion benches of the statistics evaluated every second per condition.

use criterion::{Criterion, criterion_group, criterion_main};
use ddtwatch::stats::{clopper_pearson, fisher_exact_two_sided, psi, wilson};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    c.bench_function("wilson", |b| b.iter(|| wilson(black_box(10), black_box(2077), 0.95)));
    c.bench_function("clopper_pearson", |b| b.iter(|| clopper_pearson(black_box(10), black_box(2077), 0.95)));
    c.bench_function("fisher_exact_small", |b| b.iter(|| fisher_exact_two_sided(black_box(22), 158, 31, 989)));
    c.bench_function("fisher_exact_1e6", |b| {
        b.iter(|| fisher_exact_two_sided(black_box(3000), 997_000, 1000, 999_000))
    });
    let cur: Vec<u64> = (0..10).map(|i| 100 + i * 7).collect();
    let base: Vec<u64> = (0..10).map(|i| 170 - i * 5).collect();
    c.bench_function("psi_10_bins", |b| b.iter(|| psi(black_box(&cur), black_box(&base))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
