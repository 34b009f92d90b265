//! Test data for the op harness: deterministic values ([`Rng`]), values
//! stored as a GGML type ([`encode`]) and read back ([`decode`]), the
//! normalised MSE the harness compares by ([`nmse`]), and f64 products of
//! dequantized weights ([`product_f64`]).

use half::{bf16, f16};
use tessera_gguf::GgmlType;

/// Deterministic values in [-1, 1) (xorshift64; the stream every case of
/// the GPU harnesses is built from).
pub struct Rng(pub u64);

impl Rng {
    /// The next value in [-1, 1).
    pub fn next_value(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// `n` values in [-scale, scale).
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next_value() * scale).collect()
    }
}

/// `values` stored as `t` (whole blocks for block types).
pub fn encode(t: GgmlType, values: &[f32]) -> Vec<u8> {
    match t {
        GgmlType::F32 => bytemuck::cast_slice(values).to_vec(),
        GgmlType::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        GgmlType::BF16 => values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect(),
        _ => {
            let n = values.len() / t.block_size() as usize * t.type_size() as usize;
            let mut out = vec![0u8; n];
            tessera_quant::quantize(t, values, &mut out).expect("quantize");
            out
        }
    }
}

/// `n` values of type `t` in `bytes`, as f32.
pub fn decode(t: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    tessera_quant::dequantize(t, bytes, &mut out).expect("dequantize");
    out
}

/// `Σ(a − b)² / Σ b²`: 0 when equal (NaNs where both have them are
/// skipped), infinite when one has a NaN where the other has none or `b`
/// is all zero while `a` is not.
pub fn nmse(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        if x.is_nan() || y.is_nan() {
            if x.is_nan() != y.is_nan() {
                return f64::INFINITY;
            }
            continue;
        }
        let d = x as f64 - y as f64;
        num += d * d;
        den += (y as f64) * (y as f64);
    }
    if num == 0.0 {
        0.0
    } else if den == 0.0 {
        f64::INFINITY
    } else {
        num / den
    }
}

/// `y[t, r] = Σ_c w[r, c] x[t, c]` in f64: `w` is `[rows, cols]`, `x`
/// rows of `cols`.
pub fn product_f64(w: &[f32], x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let n = x.len() / cols;
    let mut y = vec![0f32; n * rows];
    for t in 0..n {
        for r in 0..rows {
            let s: f64 = (0..cols)
                .map(|c| w[r * cols + c] as f64 * x[t * cols + c] as f64)
                .sum();
            y[t * rows + r] = s as f32;
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nmse_flags_what_differs() {
        assert_eq!(nmse(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        assert!((nmse(&[1.0, 0.0], &[2.0, 0.0]) - 0.25).abs() < 1e-12);
        assert_eq!(nmse(&[f32::NAN], &[1.0]), f64::INFINITY);
        assert_eq!(nmse(&[1.0], &[0.0]), f64::INFINITY);
        assert_eq!(nmse(&[f32::NAN, 1.0], &[f32::NAN, 1.0]), 0.0);
    }

    #[test]
    fn encode_decode_round_trips_f32_and_quantizes_the_rest() {
        let mut rng = Rng(7);
        let v = rng.vec(64, 1.0);
        assert_eq!(decode(GgmlType::F32, &encode(GgmlType::F32, &v), 64), v);
        let q = decode(GgmlType::Q8_0, &encode(GgmlType::Q8_0, &v), 64);
        let e = nmse(&q, &v);
        assert!(e > 0.0 && e < 1e-3, "{e}");
        assert_eq!(product_f64(&[1.0, 2.0], &[3.0, 4.0], 1, 2), vec![11.0]);
    }
}
