//! What the GPU backends (`tessera-wgpu`, `tessera-cuda`) share, so that
//! each of them keeps only what is its own (its device, buffers, kernels
//! and how it binds and launches them):
//!
//! - the ops their kernels implement ([`OPS`]) and the answer to
//!   [`crate::backend::Backend::supports`] ([`supports`], given the
//!   backend's [`Limits`] and the weight types it reads);
//! - the weight types both read ([`WEIGHT_TYPES`]);
//! - the errors both describe the same way ([`GpuError`]: an access
//!   outside a buffer, an op given inputs it cannot take) and their
//!   conversion into [`CoreError::Backend`] ([`backend_error`]);
//! - a node's operands and sizes, checked against the graph and the step
//!   before anything is recorded ([`shapes::check`]): the same checks on
//!   both, so a shape a kernel cannot take is an error naming the node on
//!   either, never a wrong result;
//! - the lookups of a segment's weights and activations ([`weight`],
//!   [`act_offset`]) and rope's derived constants ([`rope_consts`]).

pub mod shapes;

pub use shapes::{check, check_cache, Shaped};

use tessera_gguf::GgmlType;

use crate::backend::cpu::ops::{rope::yarn_corr_dims, RopeParams};
use crate::backend::SegmentRun;
use crate::error::CoreError;
use crate::graph::{NodeId, Op, RopeCfg, TensorId, TensorKind};
use crate::weights::Weight;

/// The ops both GPU backends' kernels implement (by [`Op::name`]); weight
/// types as [`supports`] says. A backend may add ops of its own
/// ([`Limits::more_ops`]).
pub const OPS: &[&str] = &[
    "embed",
    "matmul",
    "mul_mat_heads",
    "mul_mat_id",
    "add",
    "mul",
    "div",
    "scale",
    "rms_norm",
    "layer_norm",
    "rope",
    "attention",
    "unary",
    "glu",
    "select_rows",
    "softmax",
    "top_k",
    "gather_cols",
    "norm_sum",
    "group_mask",
    "add_id",
    "moe_sum",
    "mul_rows",
    "slice_heads",
    "concat_heads",
];

/// The weight types both GPU backends' products and embeddings read,
/// dequantized in the kernels exactly as `tessera-quant` does.
pub const WEIGHT_TYPES: [GgmlType; 15] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::IQ4_NL,
    GgmlType::MXFP4,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// What a GPU backend's kernels can take beyond [`OPS`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest `k` of top-k (and group count of the group mask).
    pub max_top_k: usize,
    /// Largest attention head (keys and values).
    pub max_head_dim: usize,
    /// Whether products and embeddings read weights of a type.
    pub reads_type: fn(GgmlType) -> bool,
    /// Ops the backend answers for besides [`OPS`].
    pub more_ops: &'static [&'static str],
}

/// Whether a backend with `limits` runs `op` with weights of
/// `weight_types` (what [`crate::backend::Backend::supports`] answers).
pub fn supports(limits: &Limits, op: &Op, weight_types: &[GgmlType]) -> bool {
    let all_f32 = weight_types.iter().all(|&t| t == GgmlType::F32);
    match *op {
        Op::MatMul { .. } | Op::MatMulId { .. } | Op::MatMulHeads { .. } | Op::Embed { .. } => {
            weight_types.iter().all(|&t| (limits.reads_type)(t))
        }
        Op::TopK { k, .. } => k <= limits.max_top_k && weight_types.is_empty(),
        Op::GroupMask { n_groups, .. } => n_groups <= limits.max_top_k && weight_types.is_empty(),
        Op::Attention { cfg, .. } => {
            cfg.head_dim <= limits.max_head_dim && cfg.head_dim_v <= limits.max_head_dim && all_f32
        }
        _ => {
            let name = op.name();
            (OPS.contains(&name) || limits.more_ops.contains(&name)) && all_f32
        }
    }
}

/// Failures both GPU backends describe the same way; each backend's error
/// type wraps it.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// An access outside a buffer.
    #[error("{device}: access of {len} bytes at {offset} outside a buffer of {size}")]
    OutOfRange {
        /// The device name.
        device: String,
        /// Byte offset.
        offset: usize,
        /// Bytes.
        len: usize,
        /// Buffer size.
        size: usize,
    },
    /// An op was given inputs the kernels cannot handle.
    #[error("{device}: {op} ({node}): {reason}")]
    Op {
        /// The device name.
        device: String,
        /// The op name.
        op: &'static str,
        /// The graph node.
        node: String,
        /// What is wrong.
        reason: String,
    },
}

impl GpuError {
    /// The device the error is about.
    pub fn device(&self) -> &str {
        match self {
            GpuError::OutOfRange { device, .. } | GpuError::Op { device, .. } => device,
        }
    }

    /// Node `node` of `run` on `device` cannot run: `reason`.
    pub fn op(device: &str, run: &SegmentRun<'_>, node: NodeId, reason: String) -> GpuError {
        GpuError::Op {
            device: device.to_string(),
            op: run.graph.nodes[node].op.name(),
            node: run.graph.node_name(node).to_string(),
            reason,
        }
    }

    /// `n` bytes at `offset` of a buffer of `size` bytes on `device`, or
    /// [`GpuError::OutOfRange`].
    pub fn check_range(device: &str, offset: usize, n: usize, size: usize) -> Result<(), GpuError> {
        match offset.checked_add(n) {
            Some(end) if end <= size => Ok(()),
            _ => Err(GpuError::OutOfRange {
                device: device.to_string(),
                offset,
                len: n,
                size,
            }),
        }
    }
}

/// A backend's error `message` about `device` as the engine's error
/// (`CoreError::Backend` names the device itself, so a leading
/// `"{device}: "` is dropped from the reason).
pub fn backend_error(device: &str, message: &str) -> CoreError {
    let reason = message
        .strip_prefix(&format!("{device}: "))
        .unwrap_or(message)
        .to_string();
    CoreError::Backend {
        device: device.to_string(),
        reason,
    }
}

/// The weight behind tensor `t` of `run` (its data still to be downcast
/// to the backend's own type), or why there is none.
pub fn weight<'a>(run: &'a SegmentRun<'_>, t: TensorId) -> Result<&'a Weight, String> {
    let def = run.graph.tensor(t);
    let TensorKind::Weight(i) = def.kind else {
        return Err(format!("{} is not a weight", def.name));
    };
    run.weights.get(i).ok_or_else(|| format!("no weight {i}"))
}

/// The byte offset of activation `t` in an arena of `arena_len` bytes, or
/// why it has none there.
pub fn act_offset(run: &SegmentRun<'_>, t: TensorId, arena_len: usize) -> Result<usize, String> {
    let def = run.graph.tensor(t);
    let slot = run
        .plan
        .slot(t)
        .ok_or_else(|| format!("{} has no buffer", def.name))?;
    if slot.offset + def.len() * 4 > arena_len {
        return Err(format!("{} lies outside the arena", def.name));
    }
    Ok(slot.offset)
}

/// Bytes of a row of `cols` values of weight `name` (of type `t`, `bytes`
/// long), or why `n_rows` such rows do not fit it.
pub fn row_bytes(
    name: &str,
    t: GgmlType,
    bytes: usize,
    cols: usize,
    n_rows: usize,
) -> Result<usize, String> {
    let rb = tessera_quant::matmul::row_bytes(t, cols).map_err(|e| e.to_string())?;
    if rb * n_rows > bytes {
        return Err(format!(
            "{name} has {bytes} bytes, fewer than {n_rows} rows of {rb}"
        ));
    }
    Ok(rb)
}

/// Rope's constants derived from its configuration: YaRN's correction
/// dimensions (as the CPU computes them) and `freq_base^(-2 / n_rot)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeConsts {
    /// `yarn_corr_dims` of the configuration.
    pub corr: [f32; 2],
    /// The angle's factor from one pair of dimensions to the next.
    pub theta_scale: f32,
}

/// [`RopeConsts`] of `cfg`.
pub fn rope_consts(cfg: &RopeCfg) -> RopeConsts {
    let p = RopeParams::from_cfg(cfg, None);
    RopeConsts {
        corr: yarn_corr_dims(&p),
        theta_scale: cfg.freq_base.powf(-2.0 / cfg.n_rot as f32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_top_k: 64,
        max_head_dim: 1024,
        reads_type: |t| WEIGHT_TYPES.contains(&t),
        more_ops: &["copy"],
    };

    #[test]
    fn supports_follows_the_limits() {
        let (w, x) = (TensorId(0), TensorId(1));
        let mm = Op::MatMul { w, x };
        assert!(supports(&LIMITS, &mm, &[GgmlType::Q4_K]));
        assert!(!supports(&LIMITS, &mm, &[GgmlType::IQ2_XXS]));
        assert!(supports(&LIMITS, &Op::TopK { x, k: 64 }, &[]));
        assert!(!supports(&LIMITS, &Op::TopK { x, k: 65 }, &[]));
        assert!(supports(&LIMITS, &Op::Copy { x }, &[]));
        let no_copy = Limits {
            more_ops: &[],
            ..LIMITS
        };
        assert!(!supports(&no_copy, &Op::Copy { x }, &[]));
        assert!(!supports(&LIMITS, &Op::Softmax { x }, &[GgmlType::F16]));
        // Attention's head limit: tessera-cuda's `supports` test.
    }

    #[test]
    fn backend_errors_drop_the_device_prefix() {
        let e = GpuError::check_range("vulkan:0", 8, 16, 20).unwrap_err();
        assert_eq!(
            e.to_string(),
            "vulkan:0: access of 16 bytes at 8 outside a buffer of 20"
        );
        let CoreError::Backend { device, reason } = backend_error(e.device(), &e.to_string())
        else {
            panic!("not a backend error");
        };
        assert_eq!(device, "vulkan:0");
        assert_eq!(reason, "access of 16 bytes at 8 outside a buffer of 20");
        assert!(GpuError::check_range("cuda:0", usize::MAX, 2, 4).is_err());
        assert!(GpuError::check_range("cuda:0", 4, 16, 20).is_ok());
    }
}
