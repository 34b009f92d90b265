//! Fitting a placement to device memory budgets (`--device-memory
//! cpu:0=512MiB,…`): after the rules, while a device holds more than its
//! budget (weights + the KV cache of the layers whose attention it holds,
//! at the planned context), weights move to the next device that has room —
//! routed expert stacks first, from the last layer down, then whole layers
//! from the last down — as llama.cpp's fitter does — and when no weight
//! can move, the context halves down to a floor. Weights an explicit rule
//! placed never move. Each move is recorded; when nothing more can move, the
//! error gives every device's need and budget.

use crate::error::{CoreError, Result};
use crate::placement::Reason;

/// A weight as the fitter sees it.
#[derive(Clone, Debug)]
pub struct FitItem<'a> {
    /// Tensor name.
    pub name: &'a str,
    /// Bytes.
    pub bytes: u64,
    /// Layer (`blk.N.`), if any.
    pub layer: Option<usize>,
}

/// The layer of tensor `name` (`blk.12.ffn_up.weight` → 12).
pub fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// Parses `--device-memory`: `dev=size[,dev=size…]`, sizes like `512MiB`,
/// `14GiB`, `2GB` or bytes. Returns `(device name, bytes)`.
pub fn parse_budgets(s: &str) -> Result<Vec<(String, u64)>> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (dev, size) = p.split_once('=').ok_or_else(|| {
                CoreError::Config(format!("device memory `{p}`: expected <device>=<size>"))
            })?;
            Ok((dev.to_string(), parse_size(size)?))
        })
        .collect()
}

/// `512MiB`, `14GiB`, `2GB`, `300MB`, `1024` (bytes).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        other => {
            return Err(CoreError::Config(format!(
                "size `{s}`: unknown unit `{other}` (B, KiB, MiB, GiB, KB, MB, GB)"
            )))
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| CoreError::Config(format!("size `{s}` is not a number with a unit")))?;
    Ok((n * mult) as u64)
}

/// What the fitter may change besides weights: the context.
#[derive(Clone, Copy, Debug)]
pub struct FitCtx {
    /// The context asked for, tokens.
    pub ctx: usize,
    /// The smallest context the fitter may reduce it to.
    pub floor: usize,
    /// KV cache bytes per token of context, per layer.
    pub kv_per_token: u64,
    /// Whether weights may move (`--fit on`); when off, a budget exceeded
    /// is an error at once.
    pub enabled: bool,
}

/// What the fitter did: the moves, in order, as sentences, and the
/// context it settled on.
#[derive(Clone, Debug, Default)]
pub struct Fitted {
    /// Every step.
    pub moves: Vec<String>,
    /// The context every device's KV cache fits.
    pub ctx: usize,
}

/// Moves weights of `placed` (device, reason per item of `items`) until
/// every device's weights plus the KV cache of the layers whose attention
/// it holds (`attn_device(placed, layer)`) fit `budgets[device]` (`None`:
/// unlimited): routed experts first, last layer first, then whole layers,
/// then the context halves down to its floor. Each step is recorded.
pub fn fit(
    items: &[FitItem],
    placed: &mut [(usize, Reason)],
    budgets: &[Option<u64>],
    devices: &[String],
    ctx: FitCtx,
    attn_device: impl Fn(&[(usize, Reason)], usize) -> usize,
    n_layer: usize,
) -> Result<Fitted> {
    let n_dev = budgets.len();
    let mut n_ctx = ctx.ctx;
    let need = |placed: &[(usize, Reason)], n_ctx: usize| {
        let mut need = vec![0u64; n_dev];
        for (it, p) in items.iter().zip(placed) {
            need[p.0] += it.bytes;
        }
        for il in 0..n_layer {
            need[attn_device(placed, il)] += ctx.kv_per_token * n_ctx as u64;
        }
        need
    };
    let over = |need: &[u64]| (0..n_dev).find(|&d| budgets[d].is_some_and(|b| need[d] > b));
    let mut moves = Vec::new();
    // Candidates, most preferred first: experts of the last layer first,
    // then every weight of a layer, last layer first.
    let mut order: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].layer.is_some() && items[i].name.contains("_exps"))
        .collect();
    order.sort_by_key(|&i| std::cmp::Reverse(items[i].layer));
    let mut rest: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].layer.is_some() && !items[i].name.contains("_exps"))
        .collect();
    rest.sort_by_key(|&i| std::cmp::Reverse(items[i].layer));
    order.extend(rest);
    loop {
        let need_now = need(placed, n_ctx);
        let Some(d) = over(&need_now) else {
            return Ok(Fitted { moves, ctx: n_ctx });
        };
        // The next movable weight on device d, to the first later device
        // with room for it.
        let movable =
            |i: usize| placed[i].0 == d && !matches!(placed[i].1, Reason::Rule(_) | Reason::Rows);
        let step = order
            .iter()
            .filter(|&&i| ctx.enabled && movable(i))
            .find_map(|&i| {
                let target = (d + 1..n_dev)
                    .find(|&t| budgets[t].is_none_or(|b| need_now[t] + items[i].bytes <= b))?;
                Some((i, target))
            });
        if let Some((i, t)) = step {
            placed[i] = (t, Reason::Fit);
            moves.push(format!(
                "{} ({} bytes) {} → {}: {} over its budget",
                items[i].name, items[i].bytes, devices[d], devices[t], devices[d]
            ));
            continue;
        }
        // Nothing moves: a smaller context, down to the floor.
        if ctx.enabled && n_ctx > ctx.floor {
            let smaller = (n_ctx / 2).max(ctx.floor);
            moves.push(format!(
                "context {n_ctx} → {smaller} tokens: {} over its budget and no weight can move",
                devices[d]
            ));
            n_ctx = smaller;
            continue;
        }
        let report: Vec<String> = (0..n_dev)
            .map(|k| match budgets[k] {
                Some(b) => format!("{} needs {} of {} bytes", devices[k], need_now[k], b),
                None => format!("{} needs {} bytes (no budget)", devices[k], need_now[k]),
            })
            .collect();
        return Err(CoreError::Config(format!(
            "the model does not fit the device memory budgets: {} (KV cache {} bytes per layer \
             at a context of {n_ctx}); nothing more can move off {}{}",
            report.join(", "),
            ctx.kv_per_token * n_ctx as u64,
            devices[d],
            if ctx.enabled { "" } else { " (--fit off)" }
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(
            parse_budgets("cpu:0=1GiB,CPU1=10MiB").unwrap(),
            vec![
                ("cpu:0".to_string(), 1 << 30),
                ("CPU1".to_string(), 10 << 20)
            ]
        );
    }

    #[test]
    fn experts_spill_last_layer_first_then_error() {
        let items = [
            FitItem {
                name: "blk.0.attn_q.weight",
                bytes: 10,
                layer: Some(0),
            },
            FitItem {
                name: "blk.0.ffn_up_exps.weight",
                bytes: 50,
                layer: Some(0),
            },
            FitItem {
                name: "blk.1.attn_q.weight",
                bytes: 10,
                layer: Some(1),
            },
            FitItem {
                name: "blk.1.ffn_up_exps.weight",
                bytes: 50,
                layer: Some(1),
            },
        ];
        let devs = ["cpu:0".to_string(), "cpu:1".to_string()];
        let attn = |p: &[(usize, Reason)], il: usize| p[2 * il].0;
        let ctx = FitCtx {
            ctx: 2,
            floor: 1,
            kv_per_token: 1,
            enabled: true,
        };
        let mut placed = vec![(0, Reason::Default); 4];
        let f = fit(&items, &mut placed, &[Some(80), None], &devs, ctx, attn, 2).unwrap();
        assert_eq!(f.moves.len(), 1, "{:?}", f.moves);
        assert_eq!(placed[3].0, 1, "the last layer's experts move first");
        let mut placed = vec![(0, Reason::Default); 4];
        let e = fit(
            &items,
            &mut placed,
            &[Some(5), Some(10)],
            &devs,
            ctx,
            attn,
            2,
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        // With --fit off nothing moves: the same budget is an error.
        let off = FitCtx {
            enabled: false,
            ..ctx
        };
        let mut placed = vec![(0, Reason::Default); 4];
        let e = fit(&items, &mut placed, &[Some(80), None], &devs, off, attn, 2).unwrap_err();
        assert!(e.to_string().contains("--fit off"), "{e}");
    }

    #[test]
    fn the_context_shrinks_when_no_weight_can_move() {
        // One device, 100 bytes of weights, 10 bytes of KV per token:
        // 4096 tokens need 41 kB; a budget of 3000 bytes gives 256 tokens.
        let items = [FitItem {
            name: "blk.0.attn_q.weight",
            bytes: 100,
            layer: Some(0),
        }];
        let devs = ["cpu".to_string()];
        let ctx = FitCtx {
            ctx: 4096,
            floor: 128,
            kv_per_token: 10,
            enabled: true,
        };
        let mut placed = vec![(0, Reason::Default)];
        let f = fit(&items, &mut placed, &[Some(3000)], &devs, ctx, |_, _| 0, 1).unwrap();
        assert_eq!(f.ctx, 256, "{:?}", f.moves);
        assert_eq!(f.moves.len(), 4);
        assert!(
            f.moves[0].starts_with("context 4096 → 2048"),
            "{:?}",
            f.moves
        );
        let mut placed = vec![(0, Reason::Default)];
        let e = fit(&items, &mut placed, &[Some(1000)], &devs, ctx, |_, _| 0, 1).unwrap_err();
        assert!(e.to_string().contains("context of 128"), "{e}");
    }
}
