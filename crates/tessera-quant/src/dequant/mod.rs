//! Dequantization of every GGML block type, bit-exact with ggml's
//! `dequantize_row_*` (`ggml-quants.c`) and `ggml_*_to_fp32_row` (`ggml.c`).
//!
//! One module per family, each documenting its block formulas:
//! [`float`] (F32, F16, BF16), [`legacy`] (the 32-value blocks Q4_0 … Q8_1,
//! IQ4_NL, MXFP4), [`kquants`] (Q2_K … Q8_K), [`iquants`] (IQ1/IQ2/IQ3 and
//! IQ4_XS), [`ternary`] (TQ1_0, TQ2_0), and [`grids`], the lookup tables
//! generated from ggml's header. The functions keep ggml's names and take
//! typed blocks (`dequantize_row_q4_0(&[BlockQ4_0], &mut [f32])`); [`TO_F32`]
//! registers their byte-level wrappers for [`crate::dequantize`].
//!
//! Bit-exact means: the same `f32` operations in the same order as ggml's
//! reference C (built without FMA contraction), so every output has the
//! same bits. Rust never fuses a multiply and an add on its own.
//!
//! Not supported (a [`crate::QuantError::Unsupported`]): the integer types
//! and F64, NVFP4 and Q1_0.

pub mod float;
pub mod grids;
pub mod iquants;
pub mod kquants;
pub mod legacy;
pub mod ternary;

use crate::blocks::*;
use crate::dtype::ToF32;
use crate::to_f32_fn;
use crate::GgmlType;
use half::{bf16, f16};

/// The dequantizers, by type.
pub const TO_F32: &[(GgmlType, ToF32)] = &[
    (GgmlType::F32, to_f32_fn!(float::dequantize_row_f32, f32)),
    (GgmlType::F16, to_f32_fn!(float::dequantize_row_f16, f16)),
    (GgmlType::BF16, to_f32_fn!(float::dequantize_row_bf16, bf16)),
    (
        GgmlType::Q4_0,
        to_f32_fn!(legacy::dequantize_row_q4_0, BlockQ4_0),
    ),
    (
        GgmlType::Q4_1,
        to_f32_fn!(legacy::dequantize_row_q4_1, BlockQ4_1),
    ),
    (
        GgmlType::Q5_0,
        to_f32_fn!(legacy::dequantize_row_q5_0, BlockQ5_0),
    ),
    (
        GgmlType::Q5_1,
        to_f32_fn!(legacy::dequantize_row_q5_1, BlockQ5_1),
    ),
    (
        GgmlType::Q8_0,
        to_f32_fn!(legacy::dequantize_row_q8_0, BlockQ8_0),
    ),
    (
        GgmlType::Q8_1,
        to_f32_fn!(legacy::dequantize_row_q8_1, BlockQ8_1),
    ),
    (
        GgmlType::IQ4_NL,
        to_f32_fn!(legacy::dequantize_row_iq4_nl, BlockIq4Nl),
    ),
    (
        GgmlType::MXFP4,
        to_f32_fn!(legacy::dequantize_row_mxfp4, BlockMxfp4),
    ),
    (
        GgmlType::Q2_K,
        to_f32_fn!(kquants::dequantize_row_q2_k, BlockQ2K),
    ),
    (
        GgmlType::Q3_K,
        to_f32_fn!(kquants::dequantize_row_q3_k, BlockQ3K),
    ),
    (
        GgmlType::Q4_K,
        to_f32_fn!(kquants::dequantize_row_q4_k, BlockQ4K),
    ),
    (
        GgmlType::Q5_K,
        to_f32_fn!(kquants::dequantize_row_q5_k, BlockQ5K),
    ),
    (
        GgmlType::Q6_K,
        to_f32_fn!(kquants::dequantize_row_q6_k, BlockQ6K),
    ),
    (
        GgmlType::Q8_K,
        to_f32_fn!(kquants::dequantize_row_q8_k, BlockQ8K),
    ),
    (
        GgmlType::IQ2_XXS,
        to_f32_fn!(iquants::dequantize_row_iq2_xxs, BlockIq2Xxs),
    ),
    (
        GgmlType::IQ2_XS,
        to_f32_fn!(iquants::dequantize_row_iq2_xs, BlockIq2Xs),
    ),
    (
        GgmlType::IQ2_S,
        to_f32_fn!(iquants::dequantize_row_iq2_s, BlockIq2S),
    ),
    (
        GgmlType::IQ3_XXS,
        to_f32_fn!(iquants::dequantize_row_iq3_xxs, BlockIq3Xxs),
    ),
    (
        GgmlType::IQ3_S,
        to_f32_fn!(iquants::dequantize_row_iq3_s, BlockIq3S),
    ),
    (
        GgmlType::IQ1_S,
        to_f32_fn!(iquants::dequantize_row_iq1_s, BlockIq1S),
    ),
    (
        GgmlType::IQ1_M,
        to_f32_fn!(iquants::dequantize_row_iq1_m, BlockIq1M),
    ),
    (
        GgmlType::IQ4_XS,
        to_f32_fn!(iquants::dequantize_row_iq4_xs, BlockIq4Xs),
    ),
    (
        GgmlType::TQ1_0,
        to_f32_fn!(ternary::dequantize_row_tq1_0, BlockTq1_0),
    ),
    (
        GgmlType::TQ2_0,
        to_f32_fn!(ternary::dequantize_row_tq2_0, BlockTq2_0),
    ),
];

#[cfg(test)]
mod tests {
    use crate::GgmlType;

    #[test]
    fn f32_is_a_copy_even_unaligned() {
        let vals = [1.5f32, -2.0, 3.25];
        let mut bytes = vec![0u8];
        bytes.extend(vals.iter().flat_map(|v| v.to_le_bytes()));
        let mut out = [0f32; 3];
        crate::dequantize(GgmlType::F32, &bytes[1..], &mut out).unwrap();
        assert_eq!(out, vals);
    }

    #[test]
    fn every_type_registered_once() {
        for (i, (t, _)) in super::TO_F32.iter().enumerate() {
            assert!(
                !super::TO_F32[..i].iter().any(|(u, _)| u == t),
                "{t:?} twice"
            );
        }
        assert_eq!(super::TO_F32.len(), 27);
    }
}
