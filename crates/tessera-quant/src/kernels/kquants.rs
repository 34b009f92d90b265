//! Dot kernels for The K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (activations in Q8_K).

use super::DotEntry;

/// The kernels of this family.
pub const DOTS: &[DotEntry] = &[];
