//! TEMPORARY compile stub: replaced by the ops branch.
#![allow(missing_docs, clippy::too_many_arguments, unused_variables)]
use tessera_gguf::GgmlType;
use tessera_quant::pool::ThreadPool;
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct OpError;
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    F16,
    Q8_0,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeMode {
    Normal,
    Neox,
}
pub struct RopeParams<'a> {
    pub n_rot: usize,
    pub mode: RopeMode,
    pub freq_base: f32,
    pub freq_scale: f32,
    pub ext_factor: f32,
    pub attn_factor: f32,
    pub beta_fast: f32,
    pub beta_slow: f32,
    pub n_ctx_orig: usize,
    pub freq_factors: Option<&'a [f32]>,
}
pub struct KvView<'a> {
    pub data: &'a [u8],
    pub dtype: KvType,
    pub row_stride_bytes: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
}
pub struct AttnParams<'a> {
    pub n_tokens: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_kv: usize,
    pub q_pos: &'a [i32],
    pub causal: bool,
    pub window: Option<usize>,
    pub scale: f32,
    pub softcap: f32,
    pub sinks: Option<&'a [f32]>,
}
type R = Result<(), OpError>;
pub fn rms_norm(
    pool: &ThreadPool,
    x: &[f32],
    y: &mut [f32],
    group: usize,
    eps: f32,
    weight: Option<&[f32]>,
) -> R {
    Err(OpError)
}
pub fn layer_norm(
    pool: &ThreadPool,
    x: &[f32],
    y: &mut [f32],
    group: usize,
    eps: f32,
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
) -> R {
    Err(OpError)
}
pub fn rope(
    pool: &ThreadPool,
    x: &[f32],
    y: &mut [f32],
    n_tokens: usize,
    n_heads: usize,
    head_dim: usize,
    pos: &[i32],
    p: &RopeParams,
) -> R {
    Err(OpError)
}
pub fn attention(
    pool: &ThreadPool,
    q: &[f32],
    k: KvView,
    v: KvView,
    out: &mut [f32],
    p: &AttnParams,
) -> R {
    Err(OpError)
}
pub fn kv_store(
    src: &[f32],
    dst: &mut [u8],
    dtype: KvType,
    row_stride_bytes: usize,
    first_cell: usize,
) -> R {
    Err(OpError)
}
pub fn add(pool: &ThreadPool, x: &[f32], y: &[f32], out: &mut [f32]) -> R {
    Err(OpError)
}
pub fn mul(pool: &ThreadPool, x: &[f32], y: &[f32], out: &mut [f32]) -> R {
    Err(OpError)
}
pub fn scale(pool: &ThreadPool, x: &[f32], s: f32, out: &mut [f32]) -> R {
    Err(OpError)
}
pub fn silu(pool: &ThreadPool, x: &[f32], out: &mut [f32]) -> R {
    Err(OpError)
}
pub fn gelu(pool: &ThreadPool, x: &[f32], out: &mut [f32]) -> R {
    Err(OpError)
}
pub fn gelu_erf(pool: &ThreadPool, x: &[f32], out: &mut [f32]) -> R {
    Err(OpError)
}
pub fn tanh(pool: &ThreadPool, x: &[f32], out: &mut [f32]) -> R {
    Err(OpError)
}
pub fn swiglu(pool: &ThreadPool, g: &[f32], u: &[f32], out: &mut [f32]) -> R {
    Err(OpError)
}
pub fn geglu(pool: &ThreadPool, g: &[f32], u: &[f32], out: &mut [f32]) -> R {
    Err(OpError)
}
pub fn get_rows(t: GgmlType, data: &[u8], n_cols: usize, ids: &[u32], out: &mut [f32]) -> R {
    Err(OpError)
}
