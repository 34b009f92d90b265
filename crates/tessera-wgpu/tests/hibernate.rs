//! Hibernation with the KV cache on the wgpu device: SmolLM2 with every
//! weight (and so every layer's cache) on `vulkan:0`, hibernated after a
//! few greedy tokens and woken, continues with the logits, bit for bit, of
//! a session that never left — the cache rows went through the device's
//! buffer reads and writes and a file.
//!
//! Skips (with a message) without an adapter unless `TESSERA_REQUIRE_WGPU=1`,
//! and without the model unless `TESSERA_STRICT=1`.

use tessera_core::placement::TensorOverride;
use tessera_core::{
    Logits, Model, ModelParams, Placement, Residency, Session, SessionParams, Wake,
};
use tessera_testkit::gpu::e2e::argmax;
use tessera_testkit::gpu::{skip, stderr};

const STEPS: usize = 5;
const PAUSE: usize = 2;

/// `n` greedy steps of a session fed `input` first: each step's logits,
/// and the token to feed next.
fn steps(s: &mut Session<'_>, mut input: Vec<u32>, n: usize) -> (Vec<Vec<f32>>, Vec<u32>) {
    let mut out = Vec::new();
    for _ in 0..n {
        let l = s.eval(&input, Logits::Last).expect("step").to_vec();
        input = vec![argmax(&l)];
        out.push(l);
    }
    (out, input)
}

#[test]
fn smollm2_cache_on_the_gpu_hibernates_and_wakes_bit_exact() {
    let Some(dev) = tessera_wgpu::devices().into_iter().next() else {
        skip(
            "TESSERA_REQUIRE_WGPU",
            "tessera-wgpu hibernate: no wgpu adapter; skipping",
        );
        return;
    };
    tessera_wgpu::register();
    let Some(path) = tessera_testkit::env::real_model(tessera_testkit::env::SMOLLM2) else {
        return;
    };
    let params = ModelParams {
        n_threads: 2,
        placement: Placement::default().with_override(TensorOverride::device(".", &dev.name)),
    };
    let model = Model::load(&path, &params).expect("load on the GPU");
    assert!(
        model.layer_devices().iter().all(|&d| d != 0),
        "the cache is on the GPU"
    );
    let sp = SessionParams {
        n_ctx: 128,
        ..SessionParams::default()
    };
    let prompt = vec![1, 504, 3458, 282, 4649, 314];
    let (want, _) = steps(
        &mut model.session(&sp).expect("session"),
        prompt.clone(),
        STEPS,
    );

    let mut s = model.session(&sp).expect("session");
    let (first, next) = steps(&mut s, prompt, PAUSE);
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wgpu-hibernate.hib");
    let saved = s.hibernate(&file).expect("hibernate");
    assert_eq!(s.residency(), Residency::Hibernated);
    assert_eq!(s.kv_bytes(), 0);
    let wake = s.wake().expect("wake");
    assert!(matches!(wake, Wake::Restored { .. }), "{wake:?}");
    let (rest, _) = steps(&mut s, next, STEPS - PAUSE);
    for (k, (g, w)) in first.iter().chain(&rest).zip(&want).enumerate() {
        let same = g.len() == w.len() && g.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "step {k}: logits differ from the uninterrupted session's"
        );
    }
    stderr(&format!(
        "tessera-wgpu hibernate: {} tokens, {} bytes, hibernate {:?}, {wake:?}",
        saved.tokens, saved.bytes, saved.time
    ));
    let _ = std::fs::remove_file(&file);
}
