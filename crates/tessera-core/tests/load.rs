//! Loading: a supported model builds and schedules its graphs; every kind
//! of bad model is a clear error (unknown architecture, missing key,
//! missing tensor, a type without a kernel); the buffer plan never lets two
//! live activations overlap.

use std::sync::Arc;

use tessera_core::graph::TensorKind;
use tessera_core::{CoreError, Model, ModelParams};
use tessera_gguf::{GgmlType, GgufFile, GgufModel, GgufWriter, Value};
use tessera_testkit::synth::{self, Arch, SynthConfig};

/// The synthetic model of `arch`, re-written through `edit` (which gets the
/// writer of the original and returns the one to load).
fn model_bytes(arch: Arch) -> Vec<u8> {
    synth::to_bytes(&SynthConfig::new(arch)).expect("synthetic model")
}

fn load_bytes(bytes: Vec<u8>) -> Result<Model, CoreError> {
    let file = GgufFile::from_vec(bytes)?;
    let gguf = GgufModel::from_shards(vec![file])?;
    Model::from_gguf(
        Arc::new(gguf),
        &ModelParams {
            n_threads: 1,
            ..ModelParams::default()
        },
    )
}

/// Copies `bytes` into a new GGUF, letting `meta` edit the metadata and
/// `tensor` rename/retype/drop tensors.
fn rewrite(
    bytes: &[u8],
    meta: impl Fn(&mut tessera_gguf::Metadata),
    tensor: impl Fn(&str, GgmlType) -> Option<GgmlType>,
) -> Vec<u8> {
    let src = GgufFile::from_vec(bytes.to_vec()).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in src.metadata().iter() {
        w.set(k, v.clone());
    }
    meta(w.metadata_mut());
    for t in src.tensors() {
        if let Some(ty) = tensor(&t.name, t.ggml_type) {
            w.add_tensor(t.name.clone(), ty, &t.dims, src.tensor_data(t).to_vec())
                .unwrap();
        }
    }
    w.to_vec().unwrap()
}

#[test]
fn every_dense_architecture_loads_and_schedules() {
    for arch in [Arch::Llama, Arch::Qwen3, Arch::Gemma3] {
        let m = load_bytes(model_bytes(arch)).unwrap_or_else(|e| panic!("{arch:?}: {e}"));
        let s = m.schedule(7, 2).unwrap();
        let names: Vec<&str> = s
            .graph
            .nodes
            .iter()
            .map(|n| s.graph.tensor(n.out).name.as_str())
            .collect();
        assert!(names.contains(&"attn_norm-0"), "{arch:?}: {names:?}");
        assert!(names.contains(&"result_output"), "{arch:?}");
        let out = s.graph.tensor(s.graph.output.unwrap());
        assert_eq!(out.shape, [1, 2, m.hparams().n_vocab], "{arch:?}");
        assert_eq!(s.segments.len(), 1, "one CPU device, one segment");
    }
}

#[test]
fn buffer_plan_never_overlaps_live_activations() {
    let m = load_bytes(model_bytes(Arch::Gemma3)).unwrap();
    for (n_tokens, n_out) in [(1, 1), (13, 13), (13, 1)] {
        let s = m.schedule(n_tokens, n_out).unwrap();
        let g = &s.graph;
        // Live range of each activation: [def, last use].
        let mut last = vec![0usize; g.tensors.len()];
        for (i, n) in g.nodes.iter().enumerate() {
            last[n.out.0 as usize] = i;
            for t in n.op.inputs() {
                last[t.0 as usize] = i;
            }
        }
        last[g.output.unwrap().0 as usize] = usize::MAX;
        let acts: Vec<_> = g
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (i, n.out))
            .collect();
        for (a_i, (def_a, a)) in acts.iter().enumerate() {
            let sa = s.plan.slot(*a).unwrap();
            assert!(sa.offset + sa.bytes <= s.plan.arena_bytes[sa.device]);
            assert!(sa.bytes >= g.tensor(*a).len() * 4);
            for (def_b, b) in &acts[a_i + 1..] {
                let sb = s.plan.slot(*b).unwrap();
                let live_together = *def_b <= last[a.0 as usize] && *def_a <= last[b.0 as usize];
                let overlap = sa.offset < sb.offset + sb.bytes && sb.offset < sa.offset + sa.bytes;
                assert!(
                    !(live_together && overlap),
                    "{} and {} overlap while both live",
                    g.tensor(*a).name,
                    g.tensor(*b).name
                );
            }
        }
        let total: usize = acts.iter().map(|(_, t)| g.tensor(*t).len() * 4).sum();
        assert!(
            s.plan.arena_bytes[0] < total,
            "reuse must make the arena smaller than the sum"
        );
        assert!(g
            .tensors
            .iter()
            .all(|t| matches!(t.kind, TensorKind::Weight(_))
                || s.plan.slot_of_name(g, &t.name).is_some()));
    }
}

#[test]
fn unknown_architecture_is_an_error_listing_the_supported_ones() {
    let bytes = rewrite(
        &model_bytes(Arch::Llama),
        |m| m.set("general.architecture", Value::String("mamba9".into())),
        |_, t| Some(t),
    );
    let e = load_bytes(bytes).err().expect("must fail").to_string();
    assert!(
        e.contains("mamba9") && e.contains("llama") && e.contains("gemma3"),
        "{e}"
    );
}

#[test]
fn missing_hyperparameter_is_an_error_naming_the_key() {
    let bytes = rewrite(
        &model_bytes(Arch::Llama),
        |m| drop(m.remove("llama.attention.head_count")),
        |_, t| Some(t),
    );
    let e = load_bytes(bytes).err().expect("must fail").to_string();
    assert!(e.contains("llama.attention.head_count"), "{e}");
}

#[test]
fn missing_tensor_is_an_error_naming_it() {
    let bytes = rewrite(
        &model_bytes(Arch::Qwen3),
        |_| {},
        |n, t| (n != "blk.1.attn_k_norm.weight").then_some(t),
    );
    let e = load_bytes(bytes).err().expect("must fail").to_string();
    assert!(
        e.contains("blk.1.attn_k_norm.weight") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn weight_type_without_a_kernel_is_an_error_naming_tensor_and_type() {
    // I32 has the size of F32, so the file stays valid; no kernel multiplies it.
    let bytes = rewrite(
        &model_bytes(Arch::Llama),
        |_| {},
        |n, t| {
            Some(if n == "blk.0.ffn_up.weight" {
                GgmlType::I32
            } else {
                t
            })
        },
    );
    let e = load_bytes(bytes).err().expect("must fail").to_string();
    assert!(
        e.contains("blk.0.ffn_up.weight") && e.contains("I32"),
        "{e}"
    );
}
