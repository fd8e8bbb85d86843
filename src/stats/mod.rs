//! Pure statistics: no I/O, no clock, values in, values out.
//!
//! Everything here is checked against brute force (property tests) and against reference
//! values computed once with scipy (pasted into the tests with the command that produced them).

pub mod disparity;
pub mod drift;
pub mod hdr;
pub mod interval;
pub mod sequential;

pub use disparity::{DisparityResult, GroupRate, disparity, fisher_exact_two_sided};
pub use drift::{Histogram, PageHinkley, ks_binned, ks_critical, psi};
pub use hdr::SparseHdr;
pub use interval::{Interval, IntervalMethod, clopper_pearson, wilson, z_for_confidence};
