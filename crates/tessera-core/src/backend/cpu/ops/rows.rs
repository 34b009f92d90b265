//! `get_rows`: the selected rows of a weight matrix, dequantized to f32 (the
//! token-embedding lookup), through tessera-quant's dtype table.
//!
//! Shapes: `data`: `[n_rows, n_cols]` of type `t` (whole rows); `ids`:
//! `[n_ids]`; `out`: `[n_ids, n_cols]`.

use tessera_quant::matmul::row_bytes;
use tessera_quant::{dequantize, GgmlType};

use super::{check_len, OpError};

/// Dequantizes rows `ids` of the `t` matrix `data` (`n_cols` values a row)
/// into `out`. An id past the last row is an error.
pub fn get_rows(
    t: GgmlType,
    data: &[u8],
    n_cols: usize,
    ids: &[u32],
    out: &mut [f32],
) -> Result<(), OpError> {
    const OP: &str = "get_rows";
    let unsupported = |e: tessera_quant::QuantError| OpError::Unsupported {
        op: OP,
        reason: e.to_string(),
    };
    let rb = row_bytes(t, n_cols).map_err(unsupported)?;
    check_len(OP, "out", out.len(), ids.len() * n_cols)?;
    if rb == 0 {
        return Ok(());
    }
    let n_rows = data.len() / rb;
    if let Some((i, &id)) = ids
        .iter()
        .enumerate()
        .find(|&(_, &id)| id as usize >= n_rows)
    {
        return Err(OpError::Index {
            op: OP,
            reason: format!("ids[{i}] = {id}, the matrix has {n_rows} rows"),
        });
    }
    for (&id, o) in ids.iter().zip(out.chunks_exact_mut(n_cols)) {
        let start = id as usize * rb;
        dequantize(t, &data[start..start + rb], o).map_err(unsupported)?;
    }
    Ok(())
}
