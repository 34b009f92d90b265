//! Dot kernels for The 32-element block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, MXFP4.

use super::DotEntry;

/// The kernels of this family.
pub const DOTS: &[DotEntry] = &[];
