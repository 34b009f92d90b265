//! Seeded weight values: the per-tensor stream derivation over
//! [`crate::rng::SplitMix64`]. (F16 tensors are encoded with the `half` crate.)
//!
//! Each tensor draws from its own stream, seeded from the model seed and the
//! tensor's name, so a tensor's values depend only on (seed, name, shape,
//! init): adding a layer or an expert leaves every other tensor unchanged.

pub use crate::rng::SplitMix64;

/// FNV-1a of `s`: mixes the tensor name into its stream seed.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// The generator for tensor `name` of a model with seed `seed`.
pub fn tensor_stream(seed: u64, name: &str) -> SplitMix64 {
    let mut mix = SplitMix64::new(seed ^ fnv1a(name));
    SplitMix64::new(mix.next_u64())
}

/// How a tensor's values are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// A norm weight: `1 + U(-jitter, jitter)`, so a norm that is applied
    /// wrongly (or not at all) changes the output.
    Norm {
        /// Half-width of the uniform jitter around 1.
        jitter: f32,
    },
    /// A matrix: uniform with standard deviation `std` (half-width `std·√3`).
    Uniform {
        /// Standard deviation of the values.
        std: f32,
    },
}

impl Init {
    /// `n` values for tensor `name` of a model seeded with `seed`.
    pub fn values(self, seed: u64, name: &str, n: usize) -> Vec<f32> {
        let mut rng = tensor_stream(seed, name);
        match self {
            Init::Norm { jitter } => (0..n)
                .map(|_| 1.0 + jitter * rng.next_signed_unit())
                .collect(),
            Init::Uniform { std } => {
                let half_width = std * 3f32.sqrt();
                (0..n)
                    .map(|_| half_width * rng.next_signed_unit())
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_by_name_and_seed() {
        let a = Init::Uniform { std: 1.0 }.values(1, "blk.0.attn_q.weight", 8);
        let b = Init::Uniform { std: 1.0 }.values(1, "blk.1.attn_q.weight", 8);
        let c = Init::Uniform { std: 1.0 }.values(2, "blk.0.attn_q.weight", 8);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            a,
            Init::Uniform { std: 1.0 }.values(1, "blk.0.attn_q.weight", 8)
        );
    }

    #[test]
    fn uniform_has_the_requested_spread() {
        let v = Init::Uniform { std: 0.5 }.values(7, "t", 100_000);
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var.sqrt() - 0.5).abs() < 0.01, "std {}", var.sqrt());
        let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(max <= 0.5 * 3f32.sqrt());
        let n = Init::Norm { jitter: 0.1 }.values(7, "n", 1000);
        assert!(n.iter().all(|x| (0.9..=1.1).contains(x)));
    }
}
