//! Dot kernels for IQ4_XS, the low-bit IQ family (IQ1_S, IQ1_M, IQ2_XXS,
//! IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S) and the ternary types (TQ1_0, TQ2_0), with
//! the activations in Q8_K (ggml's `vec_dot_type` for all of them).
//!
//! As for the K-quants ([`super::kquants`]), each super-block of 256 values
//! is an integer dot product of the weight's small integers (grid points
//! for the IQ types, looked up in [`crate::dequant::grids`]) with the Q8_K
//! integers, weighted by integer sub-block scales, then one float multiply
//! by `d_w · d_a`. IQ1_S/IQ1_M add their `±1/8` shift through the
//! activations' `bsums` (or sums of 8).
//!
//! - [`scalar`]: the twins, after ggml's `ggml_vec_dot_*_q8_K_generic`
//!   (`ggml-cpu/quants.c`), float operations in ggml's order.
//! - `avx2` (x86-64): IQ4_XS (a `pshufb` table lookup of the 16 non-linear
//!   levels, then signed byte products); `avx2_grid`: the grid types (grid
//!   points looked up per 4 or 8 values, signs moved onto the activations)
//!   and the ternary types.

use super::DotEntry;
use crate::GgmlType;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_grid;
pub mod scalar;

pub use scalar::{
    vec_dot_iq1_m_q8_K_scalar, vec_dot_iq1_s_q8_K_scalar, vec_dot_iq2_s_q8_K_scalar,
    vec_dot_iq2_xs_q8_K_scalar, vec_dot_iq2_xxs_q8_K_scalar, vec_dot_iq3_s_q8_K_scalar,
    vec_dot_iq3_xxs_q8_K_scalar, vec_dot_iq4_xs_q8_K_scalar, vec_dot_tq1_0_q8_K_scalar,
    vec_dot_tq2_0_q8_K_scalar,
};

use super::kquants::avx2_variant;

/// A Q8_K-activation entry.
const fn entry(weight: GgmlType, scalar: super::VecDot, avx2: Option<super::VecDot>) -> DotEntry {
    DotEntry {
        weight,
        act: GgmlType::Q8_K,
        scalar,
        avx2,
        avx512: None,
    }
}

/// The kernels of this family.
pub const DOTS: &[DotEntry] = &[
    DotEntry {
        weight: GgmlType::IQ4_XS,
        act: GgmlType::Q8_K,
        scalar: vec_dot_iq4_xs_q8_K_scalar,
        avx2: avx2_variant!(avx2::vec_dot_iq4_xs_q8_k),
        avx512: None,
    },
    entry(
        GgmlType::IQ1_S,
        vec_dot_iq1_s_q8_K_scalar,
        avx2_variant!(avx2_grid::vec_dot_iq1_s_q8_k),
    ),
    entry(
        GgmlType::IQ1_M,
        vec_dot_iq1_m_q8_K_scalar,
        avx2_variant!(avx2_grid::vec_dot_iq1_m_q8_k),
    ),
    entry(
        GgmlType::IQ2_XXS,
        vec_dot_iq2_xxs_q8_K_scalar,
        avx2_variant!(avx2_grid::vec_dot_iq2_xxs_q8_k),
    ),
    entry(
        GgmlType::IQ2_XS,
        vec_dot_iq2_xs_q8_K_scalar,
        avx2_variant!(avx2_grid::vec_dot_iq2_xs_q8_k),
    ),
    entry(
        GgmlType::IQ2_S,
        vec_dot_iq2_s_q8_K_scalar,
        avx2_variant!(avx2_grid::vec_dot_iq2_s_q8_k),
    ),
    entry(
        GgmlType::IQ3_XXS,
        vec_dot_iq3_xxs_q8_K_scalar,
        avx2_variant!(avx2_grid::vec_dot_iq3_xxs_q8_k),
    ),
    entry(
        GgmlType::IQ3_S,
        vec_dot_iq3_s_q8_K_scalar,
        avx2_variant!(avx2_grid::vec_dot_iq3_s_q8_k),
    ),
    entry(
        GgmlType::TQ1_0,
        vec_dot_tq1_0_q8_K_scalar,
        avx2_variant!(avx2_grid::vec_dot_tq1_0_q8_k),
    ),
    entry(
        GgmlType::TQ2_0,
        vec_dot_tq2_0_q8_K_scalar,
        avx2_variant!(avx2_grid::vec_dot_tq2_0_q8_k),
    ),
];
