//! The KV cache's storage types and the writer that fills it.
//!
//! A cache tensor is a sequence of cells, one per token position (cell `c`
//! holds position `c`); a cell is one row of `n_kv_head * head_dim` values
//! stored as F16 or as Q8_0 blocks of 32 (so `head_dim` must be a multiple
//! of 32 for Q8_0), at `row_stride_bytes` from the previous cell.
//!
//! Conversions follow ggml-cpu on x86-64 AVX2: f32 → f16 rounds to nearest
//! even (F16C), and f32 → Q8_0 is the x86 `quantize_row_q8_0` (`d = amax /
//! 127`, `q = round_half_even(x * (127 / amax))`), which differs from the
//! reference quantizer (`x * (1 / d)`, half away from zero) in the last bit
//! now and then. ggml uses that same function for the cache rows (`set_rows`)
//! and for the queries it dots with a Q8_0 cache, so tessera does too.

use half::f16;
use tessera_quant::GgmlType;

use super::{shape, OpError};

/// Values per Q8_0 block.
pub const Q8_0_BLOCK: usize = 32;
/// Bytes per Q8_0 block (f16 scale + 32 i8).
pub const Q8_0_BYTES: usize = 34;

/// Storage type of a KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    /// IEEE half precision.
    F16,
    /// Q8_0 blocks of 32.
    Q8_0,
}

impl KvType {
    /// The GGML type.
    pub fn ggml_type(self) -> GgmlType {
        match self {
            KvType::F16 => GgmlType::F16,
            KvType::Q8_0 => GgmlType::Q8_0,
        }
    }

    /// Bytes of `n` values, or `None` when `n` is not a whole number of blocks.
    pub fn bytes(self, n: usize) -> Option<usize> {
        match self {
            KvType::F16 => n.checked_mul(2),
            KvType::Q8_0 if n.is_multiple_of(Q8_0_BLOCK) => Some(n / Q8_0_BLOCK * Q8_0_BYTES),
            KvType::Q8_0 => None,
        }
    }

    /// Converts `src` to this type in `dst` (`self.bytes(src.len())` bytes),
    /// as ggml-cpu's `from_float` for the type. Lengths are the caller's to check.
    pub fn from_f32(self, src: &[f32], dst: &mut [u8]) {
        match self {
            KvType::F16 => {
                for (d, &v) in dst.chunks_exact_mut(2).zip(src) {
                    d.copy_from_slice(&f16::from_f32(v).to_le_bytes());
                }
            }
            KvType::Q8_0 => {
                for (d, x) in dst
                    .chunks_exact_mut(Q8_0_BYTES)
                    .zip(src.chunks_exact(Q8_0_BLOCK))
                {
                    quantize_block_q8_0(x, d);
                }
            }
        }
    }

    /// Converts `src` (`self.bytes(dst.len())` bytes) to f32 in `dst`.
    pub fn to_f32(self, src: &[u8], dst: &mut [f32]) {
        match self {
            KvType::F16 => {
                for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                    *d = f16::from_le_bytes([s[0], s[1]]).to_f32();
                }
            }
            KvType::Q8_0 => {
                for (d, b) in dst
                    .chunks_exact_mut(Q8_0_BLOCK)
                    .zip(src.chunks_exact(Q8_0_BYTES))
                {
                    let scale = f16::from_le_bytes([b[0], b[1]]).to_f32();
                    for (o, &q) in d.iter_mut().zip(&b[2..]) {
                        *o = f32::from(q as i8) * scale;
                    }
                }
            }
        }
    }
}

/// ggml's x86 `quantize_row_q8_0` for one block of 32 values into 34 bytes.
fn quantize_block_q8_0(x: &[f32], dst: &mut [u8]) {
    let amax = x.iter().fold(0f32, |m, &v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    dst[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    for (q, &v) in dst[2..].iter_mut().zip(x) {
        *q = ((v * id).round_ties_even() as i8) as u8; // saturating, like ggml's packs
    }
}

/// A read-only view of one KV cache tensor (K or V).
#[derive(Clone, Copy, Debug)]
pub struct KvView<'a> {
    /// The cells, `row_stride_bytes` apart.
    pub data: &'a [u8],
    /// Storage type.
    pub dtype: KvType,
    /// Bytes from one cell to the next (at least one row).
    pub row_stride_bytes: usize,
    /// KV heads per cell.
    pub n_kv_head: usize,
    /// Values per head.
    pub head_dim: usize,
}

impl<'a> KvView<'a> {
    /// Bytes of one head.
    pub fn head_bytes(&self) -> Option<usize> {
        self.dtype.bytes(self.head_dim)
    }

    /// Whole cells the view's bytes hold (0 when not even one row fits).
    pub fn n_cells(&self) -> usize {
        let row = self.head_bytes().unwrap_or(0) * self.n_kv_head;
        if row == 0 || self.data.len() < row {
            return 0;
        }
        (self.data.len() - row) / self.row_stride_bytes.max(1) + 1
    }

    /// Checks that the view holds `n_cells` cells of `n_kv_head` heads of
    /// `head_dim` values; `name` is "k" or "v" in the error.
    pub(crate) fn check(
        &self,
        op: &'static str,
        name: &str,
        n_cells: usize,
    ) -> Result<(), OpError> {
        let hb = self.head_bytes().ok_or_else(|| {
            shape(
                op,
                format!(
                    "{name}: head_dim {} is not a multiple of 32 for Q8_0",
                    self.head_dim
                ),
            )
        })?;
        let row = hb * self.n_kv_head;
        if self.row_stride_bytes < row {
            return Err(shape(
                op,
                format!(
                    "{name}: row_stride_bytes {} < row of {row} bytes",
                    self.row_stride_bytes
                ),
            ));
        }
        let need = match n_cells {
            0 => 0,
            n => (n - 1) * self.row_stride_bytes + row,
        };
        if self.data.len() < need {
            return Err(shape(
                op,
                format!(
                    "{name}: {} bytes hold fewer than {n_cells} cells ({need} bytes)",
                    self.data.len()
                ),
            ));
        }
        Ok(())
    }

    /// The bytes of head `kv_head` of cell `cell` (checked by [`Self::check`]).
    #[inline]
    pub(crate) fn head(&self, cell: usize, kv_head: usize, head_bytes: usize) -> &'a [u8] {
        let start = cell * self.row_stride_bytes + kv_head * head_bytes;
        &self.data[start..start + head_bytes]
    }
}

/// Writes the rows of `src` (`[n_tokens, n_cols]`, `n_cols = n_kv_head *
/// head_dim`) into cells `first_cell..first_cell + n_tokens` of the cache
/// `dst`, converted to `dtype`.
pub fn kv_store(
    src: &[f32],
    n_cols: usize,
    dst: &mut [u8],
    dtype: KvType,
    row_stride_bytes: usize,
    first_cell: usize,
) -> Result<(), OpError> {
    const OP: &str = "kv_store";
    if n_cols == 0 || !src.len().is_multiple_of(n_cols) {
        return Err(shape(
            OP,
            format!("src has {} values, not whole rows of {n_cols}", src.len()),
        ));
    }
    let row = dtype
        .bytes(n_cols)
        .ok_or_else(|| shape(OP, format!("{n_cols} values are not whole Q8_0 blocks")))?;
    if row_stride_bytes < row {
        return Err(shape(
            OP,
            format!("row_stride_bytes {row_stride_bytes} < row of {row} bytes"),
        ));
    }
    let n_tokens = src.len() / n_cols;
    if n_tokens == 0 {
        return Ok(());
    }
    let last = first_cell + n_tokens - 1;
    let need = last * row_stride_bytes + row;
    if dst.len() < need {
        return Err(OpError::Index {
            op: OP,
            reason: format!(
                "cell {last} ends at byte {need}, the cache has {}",
                dst.len()
            ),
        });
    }
    for (t, x) in src.chunks_exact(n_cols).enumerate() {
        let start = (first_cell + t) * row_stride_bytes;
        dtype.from_f32(x, &mut dst[start..start + row]);
    }
    Ok(())
}
