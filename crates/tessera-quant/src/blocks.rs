//! The block layouts of ggml's quantized types (`ggml-common.h`), as
//! `#[repr(C)]` structs whose sizes are asserted at compile time.
//!
//! A row of a quantized tensor is a run of blocks; [`blocks`] views the bytes
//! of a row as a slice of its block type without copying. Field names follow
//! ggml so the two can be read side by side. `d`/`dmin`/`m` are scales stored
//! as IEEE half floats.

use bytemuck::{Pod, Zeroable};
use half::f16;

/// Elements per block of the 32-element ("legacy") types.
pub const QK: usize = 32;
/// Elements per super-block of the K-quants and most IQ types.
pub const QK_K: usize = 256;
/// Bytes of the packed 6-bit scales of Q4_K/Q5_K.
pub const K_SCALE_SIZE: usize = 12;

macro_rules! block {
    ($(#[$m:meta])* $name:ident ($size:expr) { $($(#[$fm:meta])* $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Pod, Zeroable)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }
        const _: () = assert!(std::mem::size_of::<$name>() == $size);
    };
}

block!(/// Q4_0: `x = d * (q - 8)`, 4-bit q.
    BlockQ4_0(18) { d: f16, qs: [u8; QK / 2] });
block!(/// Q4_1: `x = d * q + m`, 4-bit q.
    BlockQ4_1(20) { d: f16, m: f16, qs: [u8; QK / 2] });
block!(/// Q5_0: `x = d * (q - 16)`, 5-bit q (high bits in `qh`).
    BlockQ5_0(22) { d: f16, qh: [u8; 4], qs: [u8; QK / 2] });
block!(/// Q5_1: `x = d * q + m`, 5-bit q.
    BlockQ5_1(24) { d: f16, m: f16, qh: [u8; 4], qs: [u8; QK / 2] });
block!(/// Q8_0: `x = d * q`, 8-bit q.
    BlockQ8_0(34) { d: f16, qs: [i8; QK] });
block!(/// Q8_1: Q8_0 plus `s = d * sum(q)` (activations of Q4_1/Q5_1 dots).
    BlockQ8_1(36) { d: f16, s: f16, qs: [i8; QK] });
block!(/// MXFP4: 32 FP4 (E2M1) values sharing an E8M0 exponent `e`.
    BlockMxfp4(17) { e: u8, qs: [u8; QK / 2] });
block!(/// Q2_K: 16 sub-blocks of 16, 4-bit scale and min per sub-block, 2-bit q.
    BlockQ2K(84) { scales: [u8; QK_K / 16], qs: [u8; QK_K / 4], d: f16, dmin: f16 });
block!(/// Q3_K: 16 sub-blocks of 16, 6-bit scales, 3-bit q (high bit in `hmask`).
    BlockQ3K(110) { hmask: [u8; QK_K / 8], qs: [u8; QK_K / 4], scales: [u8; 12], d: f16 });
block!(/// Q4_K: 8 sub-blocks of 32, 6-bit scales and mins, 4-bit q.
    BlockQ4K(144) { d: f16, dmin: f16, scales: [u8; K_SCALE_SIZE], qs: [u8; QK_K / 2] });
block!(/// Q5_K: 8 sub-blocks of 32, 6-bit scales and mins, 5-bit q.
    BlockQ5K(176) { d: f16, dmin: f16, scales: [u8; K_SCALE_SIZE], qh: [u8; QK_K / 8], qs: [u8; QK_K / 2] });
block!(/// Q6_K: 16 sub-blocks of 16, 8-bit scales, 6-bit q.
    BlockQ6K(210) { ql: [u8; QK_K / 2], qh: [u8; QK_K / 4], scales: [i8; QK_K / 16], d: f16 });
block!(/// Q8_K: activations of the K-quant dots; `bsums` are sums of 16 q's.
    BlockQ8K(292) { d: f32, qs: [i8; QK_K], bsums: [i16; QK_K / 16] });
block!(/// IQ2_XXS: 2.06 bpw, grid indices and signs packed in `qs`.
    BlockIq2Xxs(66) { d: f16, qs: [u16; QK_K / 8] });
block!(/// IQ2_XS: 2.31 bpw.
    BlockIq2Xs(74) { d: f16, qs: [u16; QK_K / 8], scales: [u8; QK_K / 32] });
block!(/// IQ2_S: 2.5 bpw.
    BlockIq2S(82) { d: f16, qs: [u8; QK_K / 4], qh: [u8; QK_K / 32], scales: [u8; QK_K / 32] });
block!(/// IQ3_XXS: 3.06 bpw.
    BlockIq3Xxs(98) { d: f16, qs: [u8; 3 * QK_K / 8] });
block!(/// IQ3_S: 3.44 bpw.
    BlockIq3S(110) { d: f16, qs: [u8; QK_K / 4], qh: [u8; QK_K / 32], signs: [u8; QK_K / 8], scales: [u8; QK_K / 64] });
block!(/// IQ1_S: 1.56 bpw.
    BlockIq1S(50) { d: f16, qs: [u8; QK_K / 8], qh: [u16; QK_K / 32] });
block!(/// IQ1_M: 1.75 bpw; the super-block scale is spread over `scales`.
    BlockIq1M(56) { qs: [u8; QK_K / 8], qh: [u8; QK_K / 16], scales: [u8; QK_K / 32] });
block!(/// IQ4_NL: 4-bit indices into a non-linear table, blocks of 32.
    BlockIq4Nl(18) { d: f16, qs: [u8; QK / 2] });
block!(/// IQ4_XS: IQ4_NL values in super-blocks of 256 with 6-bit sub-block scales.
    BlockIq4Xs(136) { d: f16, scales_h: u16, scales_l: [u8; QK_K / 64], qs: [u8; QK_K / 2] });
block!(/// TQ1_0: ternary, 1.69 bpw (base-3 packing).
    BlockTq1_0(54) { qs: [u8; (QK_K - 4 * QK_K / 64) / 5], qh: [u8; QK_K / 64], d: f16 });
block!(/// TQ2_0: ternary, 2.06 bpw (2 bits per value).
    BlockTq2_0(66) { qs: [u8; QK_K / 4], d: f16 });

/// Views `bytes` as a slice of blocks `B`, or `None` if the length is not a
/// whole number of blocks or the bytes are not aligned for `B`.
pub fn blocks<B: Pod>(bytes: &[u8]) -> Option<&[B]> {
    bytemuck::try_cast_slice(bytes).ok()
}

/// Mutable form of [`blocks`].
pub fn blocks_mut<B: Pod>(bytes: &mut [u8]) -> Option<&mut [B]> {
    bytemuck::try_cast_slice_mut(bytes).ok()
}
