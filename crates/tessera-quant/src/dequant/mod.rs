//! Dequantization of every GGML block type, bit-exact with ggml's
//! `dequantize_row_*`.

use crate::dtype::ToF32;
use crate::GgmlType;

fn dequantize_row_f32(x: &[f32], y: &mut [f32]) {
    y.copy_from_slice(x);
}

/// The dequantizers, by type.
pub const TO_F32: &[(GgmlType, ToF32)] =
    &[(GgmlType::F32, crate::to_f32_fn!(dequantize_row_f32, f32))];

#[cfg(test)]
mod tests {
    #[test]
    fn f32_is_a_copy_even_unaligned() {
        let vals = [1.5f32, -2.0, 3.25];
        let mut bytes = vec![0u8];
        bytes.extend(vals.iter().flat_map(|v| v.to_le_bytes()));
        let mut out = [0f32; 3];
        crate::dequantize(crate::GgmlType::F32, &bytes[1..], &mut out).unwrap();
        assert_eq!(out, vals);
        assert!(crate::dequantize(crate::GgmlType::IQ1_S, &[], &mut []).is_err());
    }
}
