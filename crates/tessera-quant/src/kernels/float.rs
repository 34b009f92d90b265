//! Dot kernels for F32, F16 and BF16 weights.

use super::DotEntry;

/// The kernels of this family.
pub const DOTS: &[DotEntry] = &[];
