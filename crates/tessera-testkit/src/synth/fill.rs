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
    /// A fused expert stack `ffn_gate_up_exps` of `n_expert` experts: per
    /// expert, its slice of the split `ffn_gate_exps` followed by its slice
    /// of `ffn_up_exps`, each drawn as [`Init::Uniform`] from the stream
    /// of the split tensor's name (the fused name with `gate_up` replaced by
    /// `gate` and `up`), so fused and split models hold the same values.
    FusedGateUp {
        /// Standard deviation of the values.
        std: f32,
        /// Number of experts (the outermost dimension).
        n_expert: u64,
    },
}

/// The fused expert tensor name part, and the split names' parts.
const FUSED: &str = "ffn_gate_up_exps";

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
            Init::FusedGateUp { std, n_expert } => {
                let half = n / 2;
                let split = |role: &str| {
                    Init::Uniform { std }.values(seed, &name.replace(FUSED, role), half)
                };
                let (gate, up) = (split("ffn_gate_exps"), split("ffn_up_exps"));
                let per_expert = half / n_expert as usize;
                gate.chunks(per_expert)
                    .zip(up.chunks(per_expert))
                    .flat_map(|(g, u)| g.iter().chain(u))
                    .copied()
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

    #[test]
    fn fused_gate_up_interleaves_the_split_tensors_per_expert() {
        let u = Init::Uniform { std: 0.5 };
        let gate = u.values(3, "blk.1.ffn_gate_exps.weight", 12);
        let up = u.values(3, "blk.1.ffn_up_exps.weight", 12);
        let fused = Init::FusedGateUp {
            std: 0.5,
            n_expert: 3,
        }
        .values(3, "blk.1.ffn_gate_up_exps.weight", 24);
        let want: Vec<f32> = (0..3)
            .flat_map(|e| gate[e * 4..e * 4 + 4].iter().chain(&up[e * 4..e * 4 + 4]))
            .copied()
            .collect();
        assert_eq!(fused, want);
    }
}
