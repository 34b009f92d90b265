//! Splitting one model over several devices, as llama.cpp does it:
//! `--split-mode none|layer|row`, `--tensor-split a,b,…` and
//! `--main-device i`.
//!
//! - `none`: every weight no rule placed goes to the main device.
//! - `layer`: the layers are cut into consecutive runs, one per device, in
//!   proportion to the tensor split. As in llama.cpp the output (norm and
//!   LM head) counts as one more layer after the last, and `token_embd`
//!   goes with layer 0. Each layer's KV cache follows its attention.
//! - `row`: every 2-D matrix of a layer (attention, dense FFN, shared
//!   experts) is cut by rows over the devices, in proportion to the tensor
//!   split, at multiples of [`ROW_GRANULARITY`] rows; each device computes
//!   its rows and the main device gathers them. Everything else — norms,
//!   the router, routed expert stacks, embeddings, the LM head, the KV
//!   cache — stays on the main device. Each output value is the same dot
//!   product on whichever device computes it, so the result is identical
//!   to one device's.
//!
//! Rules (`-ot`, placement files, `--cpu-moe`) are applied first: a weight
//! a rule placed is never split.

use crate::error::{CoreError, Result};

/// Rows of a split matrix come in multiples of this many (the repacked
/// kernels work on groups of 8 rows; 32 keeps every kernel's row tiles
/// whole).
pub const ROW_GRANULARITY: usize = 32;

/// How weights no rule placed are spread over the devices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SplitMode {
    /// All on the main device.
    #[default]
    None,
    /// Consecutive layers per device.
    Layer,
    /// Matrix rows over every device.
    Row,
}

impl std::str::FromStr for SplitMode {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<SplitMode> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(SplitMode::None),
            "layer" => Ok(SplitMode::Layer),
            "row" => Ok(SplitMode::Row),
            _ => Err(CoreError::Config(format!(
                "split mode `{s}`: expected none, layer or row"
            ))),
        }
    }
}

impl SplitMode {
    /// llama.cpp's spelling.
    pub fn name(self) -> &'static str {
        match self {
            SplitMode::None => "none",
            SplitMode::Layer => "layer",
            SplitMode::Row => "row",
        }
    }
}

/// Parses `--tensor-split`: non-negative proportions, comma or slash
/// separated (`3,1`, `0.6/0.4`).
pub fn parse_tensor_split(s: &str) -> Result<Vec<f64>> {
    let parts: Vec<&str> = s.split([',', '/']).map(str::trim).collect();
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let v: f64 = p.parse().map_err(|_| {
            CoreError::Config(format!(
                "tensor split `{s}`: `{p}` is not a number (expected proportions like 3,1)"
            ))
        })?;
        if !(v >= 0.0 && v.is_finite()) {
            return Err(CoreError::Config(format!(
                "tensor split `{s}`: `{p}` must be a finite number ≥ 0"
            )));
        }
        out.push(v);
    }
    Ok(out)
}

/// The cumulative fractions of `split` over `n` devices (`[]`: equal
/// shares; missing entries are 0), ending at 1.
pub fn cumulative(split: &[f64], n: usize) -> Result<Vec<f64>> {
    if split.len() > n {
        return Err(CoreError::Config(format!(
            "tensor split has {} proportions for {} devices",
            split.len(),
            n
        )));
    }
    let shares: Vec<f64> = if split.is_empty() {
        vec![1.0; n]
    } else {
        (0..n)
            .map(|i| split.get(i).copied().unwrap_or(0.0))
            .collect()
    };
    let total: f64 = shares.iter().sum();
    if total <= 0.0 {
        return Err(CoreError::Config(
            "tensor split gives every device 0".into(),
        ));
    }
    let mut acc = 0.0;
    Ok(shares
        .iter()
        .map(|s| {
            acc += s / total;
            acc
        })
        .collect())
}

/// The device of layer slot `il` of `n_slots` (the layers, then one slot
/// for the output), llama.cpp's rule: the first device whose cumulative
/// share exceeds `il / n_slots`.
pub fn layer_device(il: usize, n_slots: usize, cum: &[f64]) -> usize {
    let frac = il as f64 / n_slots.max(1) as f64;
    cum.iter()
        .position(|&c| frac < c)
        .unwrap_or(cum.len().saturating_sub(1))
}

/// `rows` cut over the devices by `cum`: `(device, first row, end row)`
/// for each non-empty part, boundaries at multiples of
/// [`ROW_GRANULARITY`].
pub fn row_ranges(rows: usize, cum: &[f64]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (d, &c) in cum.iter().enumerate() {
        let end = if d + 1 == cum.len() || c >= 1.0 - 1e-9 {
            rows
        } else {
            let r = (rows as f64 * c / ROW_GRANULARITY as f64).round() as usize * ROW_GRANULARITY;
            r.clamp(start, rows)
        };
        if end > start {
            out.push((d, start, end));
        }
        start = end;
    }
    out
}

/// Whether weight `name` of shape `[n_mat, rows, cols]` is cut by a row
/// split: a 2-D matrix of a layer doing attention, dense FFN or shared
/// expert work, with at least two granules of rows, and rows a multiple
/// of 8 (else the whole matrix would not run the repacked kernels' order
/// while its first parts would).
pub fn row_splittable(name: &str, shape: [usize; 3]) -> bool {
    use crate::plan::Role;
    name.starts_with("blk.")
        && name.ends_with(".weight")
        && shape[0] == 1
        && shape[1] >= 2 * ROW_GRANULARITY
        && shape[1].is_multiple_of(8)
        && matches!(
            Role::of(name),
            Role::Attention | Role::Ffn | Role::SharedExperts
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_splits_parse() {
        assert_eq!("ROW".parse::<SplitMode>().unwrap(), SplitMode::Row);
        assert!("rows".parse::<SplitMode>().is_err());
        assert_eq!(parse_tensor_split("3,1").unwrap(), [3.0, 1.0]);
        assert_eq!(parse_tensor_split("0.5/0.5").unwrap(), [0.5, 0.5]);
        assert!(parse_tensor_split("3,x").is_err());
        assert!(parse_tensor_split("-1,2").is_err());
        assert!(cumulative(&[1.0, 1.0, 1.0], 2).is_err());
        assert!(cumulative(&[0.0, 0.0], 2).is_err());
        assert_eq!(cumulative(&[], 2).unwrap(), [0.5, 1.0]);
        assert_eq!(cumulative(&[3.0], 2).unwrap(), [1.0, 1.0]);
    }

    #[test]
    fn layers_follow_llama_cpp() {
        // 30 layers + output over 2 equal devices: slots 0..15 → 0, 16..30 → 1.
        let cum = cumulative(&[], 2).unwrap();
        let devs: Vec<usize> = (0..31).map(|il| layer_device(il, 31, &cum)).collect();
        assert_eq!(devs.iter().filter(|&&d| d == 0).count(), 16);
        assert!(devs.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(devs[30], 1, "the output goes with the last device");
        // A device with share 0 gets nothing.
        let cum = cumulative(&[0.0, 1.0], 2).unwrap();
        assert!((0..31).all(|il| layer_device(il, 31, &cum) == 1));
    }

    #[test]
    fn rows_cut_at_granules() {
        let cum = cumulative(&[3.0, 1.0], 2).unwrap();
        assert_eq!(row_ranges(576, &cum), [(0, 0, 448), (1, 448, 576)]);
        let cum = cumulative(&[1.0, 0.0], 2).unwrap();
        assert_eq!(row_ranges(100, &cum), [(0, 0, 100)]);
        assert!(row_splittable("blk.3.attn_q.weight", [1, 576, 576]));
        assert!(!row_splittable("blk.3.attn_norm.weight", [1, 1, 576]));
        assert!(!row_splittable("blk.3.ffn_up_exps.weight", [8, 64, 64]));
        assert!(!row_splittable("output.weight", [1, 49152, 576]));
    }
}
