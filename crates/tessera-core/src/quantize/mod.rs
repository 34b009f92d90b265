//! `tessera quantize`: a GGUF file in, the same model in another type out,
//! byte for byte what `llama-quantize` writes (no importance matrix).
//!
//! What makes the bytes equal:
//! - the tensors in llama.cpp's order: the tensors outside the blocks by
//!   name, then block by block, by name within a block ([`write_order`]);
//! - the metadata copied in order, `general.quantization_version` and
//!   `general.file_type` removed and appended, the split keys dropped;
//! - each tensor's type chosen by llama-quantize's rules ([`mix`]);
//! - the reference quantizers of `tessera-quant`, which give ggml's blocks
//!   bit for bit, row by row (so the work can be cut in any rows);
//! - [`tessera_gguf::GgufStreamWriter`]'s layout (alignment 32, padding).
//!
//! The work streams tensor by tensor: the input is mapped, each tensor is
//! converted to f32 a slab of rows at a time, quantized on `threads`
//! threads and written; the output goes to `<out>.partial`, renamed into
//! place at the end, so a failed run never leaves a half file under the
//! final name.

pub mod mix;

use std::io::{BufWriter, Write};
use std::path::Path;

use tessera_gguf::{Array, GgmlType, GgufModel, GgufStreamWriter, Metadata, TensorDecl, Value};

use crate::error::{CoreError, Result};
pub use mix::{FileType, ModelFacts};

/// `GGML_QNT_VERSION`, written as `general.quantization_version`.
const QUANTIZATION_VERSION: u32 = 2;

/// Rows per slab are chosen so a slab's f32 values stay under this.
const SLAB_BYTES: usize = 64 << 20;

/// How to quantize.
#[derive(Clone, Debug)]
pub struct QuantizeParams {
    /// The output file type.
    pub ftype: FileType,
    /// Threads for the quantizers.
    pub threads: usize,
    /// Allow quantized input tensors to be quantized again (llama-quantize's
    /// `--allow-requantize`); the result is worse than from F16.
    pub allow_requantize: bool,
}

/// One step of the work, for a progress display.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    /// Index of the tensor (0-based) and how many there are.
    pub index: usize,
    /// Number of tensors.
    pub total: usize,
    /// The tensor.
    pub name: &'a str,
    /// Its type in the input and in the output.
    pub from: GgmlType,
    /// Its type in the output.
    pub to: GgmlType,
    /// Its bytes in the input and in the output.
    pub bytes_in: u64,
    /// Its bytes in the output.
    pub bytes_out: u64,
}

/// What was done.
#[derive(Clone, Debug, Default)]
pub struct QuantizeReport {
    /// Tensors written.
    pub tensors: usize,
    /// Bytes of tensor data in and out.
    pub bytes_in: u64,
    /// Bytes of tensor data out.
    pub bytes_out: u64,
    /// Tensors whose row length the chosen type does not divide, with the
    /// type wanted and the type used.
    pub fallbacks: Vec<(String, GgmlType, GgmlType)>,
}

/// The layer number of a tensor name as llama.cpp's `weight_name_comparer`
/// reads it (`sscanf(name, "blk.%d.")`), −1 outside the blocks.
fn layer_of(name: &str) -> i64 {
    let Some(rest) = name.strip_prefix("blk.") else {
        return -1;
    };
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    rest[..digits].parse().unwrap_or(-1)
}

/// The order llama-quantize writes `names` in: by layer (−1 first), then
/// by name.
pub fn write_order<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = names.into_iter().collect();
    v.sort_by(|a, b| layer_of(a).cmp(&layer_of(b)).then_with(|| a.cmp(b)));
    v
}

/// The model facts the type rules read, from the metadata.
pub fn model_facts(md: &Metadata) -> Result<ModelFacts> {
    let arch = md.architecture()?;
    let first = |suffix: &str| -> Option<u64> {
        match md.get_arch(suffix)? {
            Value::Array(Array::U32(v)) => v.first().map(|&x| u64::from(x)),
            Value::Array(Array::I32(v)) => v.first().and_then(|&x| u64::try_from(x).ok()),
            Value::Array(_) => None,
            v => v.as_u64(),
        }
    };
    let n_layer = md.arch_u64("block_count")? as usize;
    let n_head = first("attention.head_count").unwrap_or(0);
    let n_head_kv = first("attention.head_count_kv").unwrap_or(n_head);
    Ok(ModelFacts {
        n_layer,
        n_expert: first("expert_count").unwrap_or(0) as usize,
        n_gqa: n_head.checked_div(n_head_kv).unwrap_or(0) as usize,
        falcon: arch == "falcon",
        // llama.cpp's LLM_TYPE_70B: an 80-layer llama with grouped KV heads.
        is_70b: arch == "llama" && n_layer == 80 && n_head != n_head_kv,
    })
}

/// Quantizes `input` (one GGUF file, or the first of a split set) into
/// `output` as `params` says, calling `progress` before each tensor.
pub fn quantize_file(
    input: &Path,
    output: &Path,
    params: &QuantizeParams,
    mut progress: impl FnMut(&Progress<'_>),
) -> Result<QuantizeReport> {
    let model = GgufModel::open(input)?;
    let facts = model_facts(model.metadata())?;
    let names = write_order(model.tensors().map(|t| t.info.name.as_str()));
    let mut mixer = mix::Mixer::new(params.ftype, facts, names.iter().copied());

    // Every tensor's type, before anything is written (the header has them).
    let mut plan = Vec::with_capacity(names.len());
    for &name in &names {
        let t = model.tensor(name).expect("listed");
        let info = t.info;
        let to = mixer
            .choose(name, &info.dims, info.ggml_type)
            .map_err(CoreError::Config)?;
        if to != info.ggml_type {
            if info.ggml_type.is_quantized() && !params.allow_requantize {
                return Err(CoreError::Config(format!(
                    "tensor `{name}` is already {}: requantizing is disabled \
                     (quantize from an F16/BF16/F32 file, or allow it with --allow-requantize)",
                    info.ggml_type
                )));
            }
            for (t, op) in [(info.ggml_type, "dequantize"), (to, "quantize")] {
                let have = tessera_quant::info(t);
                let ok = if op == "quantize" {
                    have.from_f32.is_some()
                } else {
                    have.to_f32.is_some()
                };
                if !ok {
                    return Err(CoreError::UnsupportedType {
                        name: name.to_string(),
                        ggml_type: t,
                        op,
                    });
                }
            }
        }
        // ggml writes the dimensions up to the last one that is not 1.
        let n_dims = info.dims.iter().rposition(|&d| d != 1).map_or(1, |i| i + 1);
        plan.push(TensorDecl {
            name: name.to_string(),
            ggml_type: to,
            dims: info.dims[..n_dims].to_vec(),
        });
    }

    let mut md = model.metadata().clone();
    for key in [
        "general.quantization_version",
        "general.file_type",
        "split.no",
        "split.count",
        "split.tensors.count",
    ] {
        md.remove(key);
    }
    md.set(
        "general.quantization_version",
        Value::U32(QUANTIZATION_VERSION),
    );
    md.set("general.file_type", Value::U32(params.ftype.id()));

    let mut tmp_name = output.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".partial");
    let tmp = output.with_file_name(tmp_name);
    let file = std::fs::File::create(&tmp)
        .map_err(|e| CoreError::Config(format!("cannot create {}: {e}", tmp.display())))?;
    let result = write_all(
        &model,
        &plan,
        &md,
        params,
        BufWriter::new(file),
        &mut progress,
    );
    match result {
        Ok(mut report) => {
            std::fs::rename(&tmp, output).map_err(|e| {
                CoreError::Config(format!("cannot rename into {}: {e}", output.display()))
            })?;
            report.fallbacks = mixer.fallbacks;
            Ok(report)
        }
        Err(e) => {
            std::fs::remove_file(&tmp).ok();
            Err(e)
        }
    }
}

/// Writes the header and every tensor of `plan`.
fn write_all<W: Write>(
    model: &GgufModel,
    plan: &[TensorDecl],
    md: &Metadata,
    params: &QuantizeParams,
    w: W,
    progress: &mut impl FnMut(&Progress<'_>),
) -> Result<QuantizeReport> {
    let mut out = GgufStreamWriter::new(w, md, plan.to_vec())?;
    let mut report = QuantizeReport::default();
    let mut f32_buf: Vec<f32> = Vec::new();
    let mut q_buf: Vec<u8> = Vec::new();
    for (index, decl) in plan.iter().enumerate() {
        let t = model.tensor(&decl.name).expect("listed");
        let data = model.tensor_data(t);
        let (from, to) = (t.info.ggml_type, decl.ggml_type);
        let bytes_out = decl.n_bytes().expect("checked by the writer");
        progress(&Progress {
            index,
            total: plan.len(),
            name: &decl.name,
            from,
            to,
            bytes_in: data.len() as u64,
            bytes_out,
        });
        if from == to {
            out.write_data(data)?;
        } else {
            let cols = t.info.dims[0] as usize;
            let rows = (t.info.n_elements as usize) / cols;
            let (row_in, row_out) = (
                from.row_bytes(cols as u64).expect("a valid tensor") as usize,
                to.row_bytes(cols as u64).expect("checked by the writer") as usize,
            );
            let slab = (SLAB_BYTES / (4 * cols)).clamp(1, rows);
            for r0 in (0..rows).step_by(slab) {
                let n = slab.min(rows - r0);
                f32_buf.resize(n * cols, 0.0);
                q_buf.resize(n * row_out, 0);
                let src = &data[r0 * row_in..(r0 + n) * row_in];
                convert_rows(
                    params.threads,
                    src,
                    from,
                    &mut f32_buf,
                    to,
                    &mut q_buf,
                    cols,
                )
                .map_err(|e| CoreError::Tensor {
                    name: decl.name.clone(),
                    reason: e.to_string(),
                })?;
                out.write_data(&q_buf)?;
            }
        }
        out.end_tensor()?;
        report.tensors += 1;
        report.bytes_in += data.len() as u64;
        report.bytes_out += bytes_out;
    }
    let mut w = out.finish()?;
    w.flush()
        .map_err(|e| CoreError::Config(format!("writing the output: {e}")))?;
    Ok(report)
}

/// Rows of `src` (type `from`) to f32 in `vals`, then to `to` in `dst`, on
/// `threads` threads, each a run of whole rows of `cols` values.
fn convert_rows(
    threads: usize,
    src: &[u8],
    from: GgmlType,
    vals: &mut [f32],
    to: GgmlType,
    dst: &mut [u8],
    cols: usize,
) -> std::result::Result<(), tessera_quant::QuantError> {
    let rows = vals.len() / cols;
    let per = rows.div_ceil(threads.max(1)).max(1);
    let (row_in, row_out) = (src.len() / rows, dst.len() / rows);
    std::thread::scope(|s| {
        let jobs: Vec<_> = vals
            .chunks_mut(per * cols)
            .zip(src.chunks(per * row_in))
            .zip(dst.chunks_mut(per * row_out))
            .map(|((v, i), o)| {
                s.spawn(move || {
                    to_f32(from, i, v)?;
                    tessera_quant::quantize(to, v, o)
                })
            })
            .collect();
        jobs.into_iter()
            .try_for_each(|j| j.join().expect("a quantizer thread panicked"))
    })
}

/// `src` of type `t` as f32 (F32 copied, F16/BF16 widened exactly, the
/// block types dequantized).
fn to_f32(
    t: GgmlType,
    src: &[u8],
    dst: &mut [f32],
) -> std::result::Result<(), tessera_quant::QuantError> {
    if t == GgmlType::F32 {
        for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
            *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        }
        return Ok(());
    }
    tessera_quant::dequantize(t, src, dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_llama_cpp_s() {
        let got = write_order([
            "blk.10.attn_q.weight",
            "output.weight",
            "blk.2.ffn_up.weight",
            "blk.2.attn_q.weight",
            "token_embd.weight",
            "output_norm.weight",
        ]);
        assert_eq!(
            got,
            [
                "output.weight",
                "output_norm.weight",
                "token_embd.weight",
                "blk.2.attn_q.weight",
                "blk.2.ffn_up.weight",
                "blk.10.attn_q.weight",
            ]
        );
    }
}
