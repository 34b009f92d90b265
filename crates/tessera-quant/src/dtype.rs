//! The one dtype table: for every GGML type, its storage layout (from
//! [`GgmlType`]) and what tessera can compute with it — `to_f32`
//! (dequantize), `from_f32` (reference quantize), the dot kernel and the type
//! its activations are quantized to.
//!
//! Each family module registers its functions in a small table of its own
//! (`dequant::TO_F32`, `quantize::FROM_F32`, …); [`info`] joins them. Code
//! elsewhere asks this table instead of matching on types, and a type tessera
//! cannot compute is a [`QuantError::Unsupported`] that names the type and
//! the operation, never garbage.

use crate::GgmlType;

/// Dequantizes whole blocks: `src` holds `n` blocks, `dst` gets
/// `n * block_size` values.
pub type ToF32 = fn(src: &[u8], dst: &mut [f32]);
/// Quantizes whole blocks: `src` holds `n * block_size` values, `dst` gets `n` blocks.
pub type FromF32 = fn(src: &[f32], dst: &mut [u8]);

/// Errors of this crate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantError {
    /// The operation is not implemented for the type.
    #[error("{ggml_type}: {op} is not supported for this type")]
    Unsupported {
        ggml_type: GgmlType,
        op: &'static str,
    },
    /// A length that is not a whole number of blocks, or buffers that do not match.
    #[error("{ggml_type}: {reason}")]
    Shape { ggml_type: GgmlType, reason: String },
}

/// What tessera can do with one GGML type.
#[derive(Clone, Copy, Debug)]
pub struct DTypeInfo {
    /// The type.
    pub ggml_type: GgmlType,
    /// Dequantize, if implemented.
    pub to_f32: Option<ToF32>,
    /// Reference quantizer (bit-exact with ggml's `quantize_row_*_ref`), if implemented.
    pub from_f32: Option<FromF32>,
}

/// The table entry of `t`.
pub fn info(t: GgmlType) -> DTypeInfo {
    DTypeInfo {
        ggml_type: t,
        to_f32: crate::dequant::TO_F32
            .iter()
            .find(|(ty, _)| *ty == t)
            .map(|&(_, f)| f),
        from_f32: crate::quantize::FROM_F32
            .iter()
            .find(|(ty, _)| *ty == t)
            .map(|&(_, f)| f),
    }
}

fn check_blocks(t: GgmlType, bytes: usize, values: usize) -> Result<(), QuantError> {
    let (bs, ts) = (t.block_size() as usize, t.type_size() as usize);
    if !bytes.is_multiple_of(ts) || !values.is_multiple_of(bs) || bytes / ts != values / bs {
        return Err(QuantError::Shape {
            ggml_type: t,
            reason: format!(
                "{bytes} bytes and {values} values are not the same whole number of blocks ({ts} bytes / {bs} values each)"
            ),
        });
    }
    Ok(())
}

/// Dequantizes `src` (whole blocks of `t`) into `dst`.
pub fn dequantize(t: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    let f = info(t).to_f32.ok_or(QuantError::Unsupported {
        ggml_type: t,
        op: "dequantize",
    })?;
    check_blocks(t, src.len(), dst.len())?;
    f(src, dst);
    Ok(())
}

/// Quantizes `src` into whole blocks of `t` in `dst` with the reference quantizer.
pub fn quantize(t: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    let f = info(t).from_f32.ok_or(QuantError::Unsupported {
        ggml_type: t,
        op: "quantize",
    })?;
    check_blocks(t, dst.len(), src.len())?;
    f(src, dst);
    Ok(())
}

/// Wraps a typed row function `fn(&[Block], &mut [f32])` as a [`ToF32`]. The
/// bytes are cast to blocks in place, or copied to an aligned buffer first
/// when a file's alignment leaves them unaligned for the block type.
#[macro_export]
macro_rules! to_f32_fn {
    ($f:path, $block:ty) => {{
        fn wrapper(src: &[u8], dst: &mut [f32]) {
            match bytemuck::try_cast_slice::<u8, $block>(src) {
                Ok(blocks) => $f(blocks, dst),
                Err(_) => {
                    let owned: Vec<$block> = bytemuck::pod_collect_to_vec(src);
                    $f(&owned, dst)
                }
            }
        }
        wrapper as $crate::dtype::ToF32
    }};
}

/// Wraps a typed quantizer `fn(&[f32], &mut [Block])` as a [`FromF32`].
#[macro_export]
macro_rules! from_f32_fn {
    ($f:path, $block:ty) => {{
        fn wrapper(src: &[f32], dst: &mut [u8]) {
            match bytemuck::try_cast_slice_mut::<u8, $block>(dst) {
                Ok(blocks) => $f(src, blocks),
                Err(_) => {
                    let mut owned: Vec<$block> = vec![
                        bytemuck::Zeroable::zeroed();
                        dst.len() / std::mem::size_of::<$block>()
                    ];
                    $f(src, &mut owned);
                    dst.copy_from_slice(bytemuck::cast_slice(&owned));
                }
            }
        }
        wrapper as $crate::dtype::FromF32
    }};
}
