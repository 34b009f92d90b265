//! Greedy decoding of a model on the CPU and with every weight on a wgpu
//! device, step by step: the token each picks, the NMSE of the device's
//! logits against the CPU's, and the time per step:
//! `cargo run --release -p tessera-wgpu --example greedy -- model.gguf [n] [device] [-ot rules]`.

use tessera_core::placement::TensorOverride;
use tessera_core::{Logits, Model, ModelParams, Placement, SessionParams};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("model path");
    let n: usize = args.get(2).map_or(8, |s| s.parse().unwrap());
    let dev = args.get(3).cloned().unwrap_or_else(|| "vulkan:0".into());
    tessera_wgpu::register();
    let mut placement = Placement::default();
    if let Some(ot) = args.get(4) {
        for r in TensorOverride::parse_list(ot).unwrap() {
            placement = placement.with_override(r);
        }
    }
    placement = placement.with_override(TensorOverride::device(".", &dev));
    let load = |p: Placement| {
        Model::load(
            path,
            &ModelParams {
                n_threads: 2,
                placement: p,
            },
        )
        .unwrap()
    };
    let cpu = load(Placement::default());
    let gpu = load(placement);
    let sp = SessionParams {
        n_ctx: 256,
        ..SessionParams::default()
    };
    let (mut a, mut b) = (cpu.session(&sp).unwrap(), gpu.session(&sp).unwrap());
    let prompt: Vec<u32> = vec![1, 504, 3458, 282, 4649, 314];
    let mut ta = prompt.clone();
    let mut tb = prompt;
    for s in 0..n {
        let la = a.eval(&ta, Logits::Last).unwrap().to_vec();
        let t0 = std::time::Instant::now();
        let lb = b.eval(&tb, Logits::Last).unwrap().to_vec();
        let dt = t0.elapsed();
        let (mut num, mut den) = (0f64, 0f64);
        for (&x, &y) in lb.iter().zip(&la) {
            num += (x as f64 - y as f64).powi(2);
            den += (y as f64).powi(2);
        }
        let am = |v: &[f32]| {
            v.iter()
                .enumerate()
                .fold((0, f32::MIN), |m, (i, &x)| if x > m.1 { (i, x) } else { m })
                .0 as u32
        };
        let (na, nb) = (am(&la), am(&lb));
        println!(
            "step {s}: cpu {na} gpu {nb}  logits nmse {:.3e}  {dt:.2?}",
            num / den
        );
        ta = vec![na];
        tb = vec![na];
    }
}
