//! Reference quantizers, byte-identical with ggml's `quantize_row_*_ref`.

use crate::dtype::FromF32;
use crate::GgmlType;

/// The reference quantizers, by type.
pub const FROM_F32: &[(GgmlType, FromF32)] = &[];
