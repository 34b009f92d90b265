//! The reference quantizers against tessera's own dequantizers: every type
//! the dtype table can quantize round-trips normal data within its expected
//! error, and zeros to zeros. (Byte identity with ggml is
//! `quantize_golden.rs`; this runs without the reference build.)

use tessera_quant::{dequantize, info, quantize, GgmlType};

/// Each type with a reference quantizer, and the largest relative RMS error
/// of a round trip of standard normal data (about 1.25 times the measured one).
const TYPES: &[(GgmlType, f32)] = &[
    (GgmlType::Q4_0, 0.105),
    (GgmlType::Q4_1, 0.095),
    (GgmlType::Q5_0, 0.052),
    (GgmlType::Q5_1, 0.046),
    (GgmlType::Q8_0, 0.0065),
    (GgmlType::Q8_1, 0.0065),
    (GgmlType::Q2_K, 0.36),
    (GgmlType::Q3_K, 0.19),
    (GgmlType::Q4_K, 0.088),
    (GgmlType::Q5_K, 0.044),
    (GgmlType::Q6_K, 0.022),
    (GgmlType::Q8_K, 0.0085),
    (GgmlType::IQ4_NL, 0.094),
    (GgmlType::IQ4_XS, 0.095),
    (GgmlType::MXFP4, 0.14),
];

fn normal_data(n: usize) -> Vec<f32> {
    let mut s = 0x5eed_u64;
    let mut unit = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| ((-2.0 * unit().ln()).sqrt() * (std::f64::consts::TAU * unit()).cos()) as f32)
        .collect()
}

fn round_trip(t: GgmlType, x: &[f32]) -> Vec<f32> {
    let bytes = t.row_bytes(x.len() as u64).unwrap() as usize;
    let mut q = vec![0u8; bytes];
    quantize(t, x, &mut q).unwrap();
    let mut y = vec![f32::NAN; x.len()];
    dequantize(t, &q, &mut y).unwrap();
    y
}

#[test]
fn every_type_of_the_issue_has_a_reference_quantizer() {
    for &(t, _) in TYPES {
        assert!(info(t).from_f32.is_some(), "{t}: no from_f32");
    }
}

#[test]
fn round_trips_stay_within_each_types_error() {
    let x = normal_data(64 * 256);
    let rms = (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
    for &(t, bound) in TYPES {
        let y = round_trip(t, &x);
        let mse = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            / x.len() as f32;
        let rel = mse.sqrt() / rms;
        eprintln!("{t}: relative RMS error {rel:.4} (bound {bound})");
        assert!(rel < bound, "{t}: relative RMS error {rel} over {bound}");
    }
}

#[test]
fn zeros_round_trip_to_zeros() {
    let x = vec![0f32; 4 * 256];
    for &(t, _) in TYPES {
        assert!(round_trip(t, &x).iter().all(|&v| v == 0.0), "{t}");
    }
}

#[test]
fn wrong_lengths_are_errors_not_panics() {
    for &(t, _) in TYPES {
        let mut q = vec![0u8; t.type_size() as usize];
        assert!(
            quantize(t, &vec![0.0; t.block_size() as usize + 1], &mut q).is_err(),
            "{t}"
        );
        assert!(
            quantize(t, &vec![0.0; 2 * t.block_size() as usize], &mut q).is_err(),
            "{t}"
        );
    }
}

#[test]
fn unaligned_output_gives_the_same_bytes() {
    let x = normal_data(2 * 256);
    for &(t, _) in TYPES {
        let n = t.row_bytes(x.len() as u64).unwrap() as usize;
        let mut aligned = vec![0u64; n / 8 + 1];
        let aligned = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut aligned)[..n];
        quantize(t, &x, aligned).unwrap();
        let mut buf = vec![0u64; n / 8 + 2];
        let unaligned = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[1..][..n];
        quantize(t, &x, unaligned).unwrap();
        assert_eq!(aligned, unaligned, "{t}");
    }
}
