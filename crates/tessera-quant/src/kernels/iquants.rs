//! Dot kernels for IQ4_XS, the low-bit IQ family and the ternary types (activations in Q8_K).

use super::DotEntry;

/// The kernels of this family.
pub const DOTS: &[DotEntry] = &[];
