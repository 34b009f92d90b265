//! End to end on a GPU backend: a real model loaded on the CPU and with a
//! placement that puts weights on the device, decoded greedily beside each
//! other with the CPU's tokens fed to both (teacher forcing: one near tie
//! does not derail the rest; until the first disagreement it is
//! free-running greedy decoding on both, and the step of that
//! disagreement is printed with the CPU's lead there). Each step is held
//! to the backend's [`Bounds`]: wherever the CPU's best logit leads the
//! second by more than `margin` the device must pick the same token, the
//! logits' NMSE stays under `nmse_logits`, and (where the backend names
//! it) the device's logits of the CPU's 10 best tokens stay within
//! `top10`. Every failing step is listed at the end.

use std::path::Path;

use tessera_core::placement::TensorOverride;
use tessera_core::{Logits, Model, ModelParams, Placement, SessionParams};
use tessera_tokenizer::EncodeOptions;

use super::stderr;

/// What a step of the device must keep to.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// The smallest lead (in logits) of the CPU's best token over its
    /// second at which the device must agree with it.
    pub margin: f32,
    /// The largest logits NMSE of a step.
    pub nmse_logits: f64,
    /// The largest difference at the CPU's 10 best tokens, when checked.
    pub top10: Option<f32>,
}

/// Every weight on device `dev`.
pub fn all_on(dev: &str) -> Placement {
    Placement::default().with_override(TensorOverride::device(".", dev))
}

/// llama.cpp's `-ot "exps=CPU"` with the rest on device `dev` (first
/// match wins: the experts' rule before the catch-all).
pub fn experts_on_cpu(dev: &str) -> Placement {
    Placement::default()
        .with_override(TensorOverride::cpu("exps"))
        .with_override(TensorOverride::device(".", dev))
}

/// [`compare`] on the test model `file` (skipped, or failed under
/// `TESSERA_STRICT=1`, when it is not cached) from the prompt "The capital
/// of France is".
pub fn compare_model(file: &str, placement: Placement, n: usize, what: &str, bounds: Bounds) {
    let Some(path) = crate::env::real_model(file) else {
        return;
    };
    compare(
        &path,
        "The capital of France is",
        placement,
        n,
        what,
        bounds,
    );
}

/// Logits of a step against the reference: `Σ(a − b)² / Σ b²`.
pub fn logits_nmse(a: &[f32], b: &[f32]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        num += (x as f64 - y as f64).powi(2);
        den += (y as f64).powi(2);
    }
    num / den.max(f64::MIN_POSITIVE)
}

/// The index of the largest value (the first of equals).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// The best and second-best values' difference.
pub fn margin(v: &[f32]) -> f32 {
    let (mut a, mut b) = (f32::MIN, f32::MIN);
    for &x in v {
        if x > a {
            b = a;
            a = x;
        } else if x > b {
            b = x;
        }
    }
    a - b
}

/// The largest `|b − a|` at the 10 largest values of `a`.
pub fn top10_diff(a: &[f32], b: &[f32]) -> f32 {
    let mut ids: Vec<usize> = (0..a.len()).collect();
    ids.sort_by(|&i, &j| a[j].total_cmp(&a[i]));
    ids.iter()
        .take(10)
        .map(|&i| (a[i] - b[i]).abs())
        .fold(0f32, f32::max)
}

/// Loads `path` on the CPU and with `placement`, decodes `n` tokens from
/// `text` with the CPU's greedy choices fed to both, and checks every
/// step against `bounds` (`what` names the run in the messages).
pub fn compare(
    path: &Path,
    text: &str,
    placement: Placement,
    n: usize,
    what: &str,
    bounds: Bounds,
) {
    let params = |placement| ModelParams {
        n_threads: 2,
        placement,
    };
    let cpu = Model::load(path, &params(Placement::default())).expect("load on the CPU");
    let t0 = std::time::Instant::now();
    let gpu = Model::load(path, &params(placement)).expect("load on the GPU");
    let weights = gpu.weights().as_slice();
    let on_gpu = weights.iter().filter(|w| w.device != 0).count();
    let names: Vec<String> = gpu.backends().iter().map(|b| b.info().name).collect();
    stderr(&format!(
        "{what}: {on_gpu} of {} weights on {}, loaded in {:.1?}",
        weights.len(),
        names.join(" + "),
        t0.elapsed()
    ));
    assert!(on_gpu > 0, "nothing was placed on the GPU");
    let opts = EncodeOptions {
        add_special: true,
        parse_special: false,
    };
    let prompt = cpu.tokenizer().encode(text, opts).expect("tokenize");
    let sp = SessionParams {
        n_ctx: 256,
        n_batch: 64,
        n_ubatch: 64,
        ..SessionParams::default()
    };
    let mut a = cpu.session(&sp).expect("session");
    let mut b = gpu.session(&sp).expect("session");
    let mut input = prompt;
    let (mut want, mut got) = (Vec::new(), Vec::new());
    let (mut worst, mut worst_top, mut ties) = (0f64, 0f32, 0);
    let mut parted: Option<(usize, f32)> = None;
    let mut bad = Vec::new();
    let t1 = std::time::Instant::now();
    for step in 0..n {
        let la = a.eval(&input, Logits::Last).expect("cpu step").to_vec();
        let lb = b.eval(&input, Logits::Last).expect("gpu step").to_vec();
        let (ta, tb) = (argmax(&la), argmax(&lb));
        let e = logits_nmse(&lb, &la);
        worst = worst.max(e);
        let lead = margin(&la);
        if ta != tb && parted.is_none() {
            parted = Some((step, lead));
        }
        if lead < bounds.margin {
            ties += 1;
        } else if tb != ta {
            bad.push(format!(
                "step {step}: the device picks {tb}, the CPU {ta} (lead {lead:.2})"
            ));
        }
        if let Some(limit) = bounds.top10 {
            let top = top10_diff(&la, &lb);
            worst_top = worst_top.max(top);
            if top > limit {
                bad.push(format!(
                    "step {step}: logits of the CPU's 10 best differ by {top:.3}"
                ));
            }
        }
        if e >= bounds.nmse_logits {
            bad.push(format!("step {step}: logits nmse {e:.3e}"));
        }
        want.push(ta);
        got.push(tb);
        input = vec![ta];
    }
    let parted = match parted {
        None => format!("greedy tokens equal for all {n} steps"),
        Some((s, lead)) => format!("greedy tokens part at step {s} (the CPU's lead {lead:.3})"),
    };
    let top = match bounds.top10 {
        Some(_) => format!(", worst top-10 difference {worst_top:.3}"),
        None => String::new(),
    };
    stderr(&format!(
        "{what}: {n} steps, {parted}, {ties} near ties (lead < {}){top}, worst logits nmse {worst:.3e}, {:.1?}/step for both\n  cpu: {want:?}\n  gpu: {got:?}",
        bounds.margin,
        t1.elapsed() / n.max(1) as u32
    ));
    assert!(bad.is_empty(), "{what}:\n  {}", bad.join("\n  "));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_measures() {
        let v = [0.5, 2.0, 1.5, 2.0];
        assert_eq!(argmax(&v), 1);
        assert_eq!(margin(&v), 0.0);
        assert_eq!(margin(&[3.0, 1.0]), 2.0);
        assert_eq!(logits_nmse(&[1.0, 1.0], &[1.0, 1.0]), 0.0);
        assert!((logits_nmse(&[2.0], &[1.0]) - 1.0).abs() < 1e-12);
        let a: Vec<f32> = (0..20).map(|i| i as f32).collect();
        let mut b = a.clone();
        b[0] += 5.0; // not among a's 10 best
        b[19] += 0.25;
        assert_eq!(top10_diff(&a, &b), 0.25);
    }
}
