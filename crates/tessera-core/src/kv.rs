//! The KV cache: per layer, the keys and values of every position of the
//! sequence so far, on the device of that layer's attention.
//!
//! Layout: cell `c` holds the token at position `c` (one sequence, no
//! holes); a row is `n_head_kv * head_dim` values, F16 by default or Q8_0
//! (`--cache-type-k/v q8_0`). When the context is full the next step is a
//! [`CoreError::ContextFull`] error: tessera does not shift or drop tokens
//! silently (start a new session or raise `-c`).

use std::sync::Arc;

use tessera_gguf::GgmlType;

use crate::backend::{Backend, DeviceBuffer};
use crate::error::{CoreError, Result};

pub use crate::backend::cpu::ops::KvType;

/// Parses a `--cache-type-k/v` value (`f16`, `q8_0`).
pub fn parse_kv_type(s: &str) -> Result<KvType> {
    match s.to_ascii_lowercase().as_str() {
        "f16" => Ok(KvType::F16),
        "q8_0" => Ok(KvType::Q8_0),
        other => Err(CoreError::Config(format!(
            "unsupported cache type `{other}` (supported: f16, q8_0)"
        ))),
    }
}

/// Bytes of a cache row of `n` values.
pub fn kv_row_bytes(t: KvType, n: usize) -> Result<usize> {
    let g = match t {
        KvType::F16 => GgmlType::F16,
        KvType::Q8_0 => GgmlType::Q8_0,
    };
    tessera_quant::matmul::row_bytes(g, n).map_err(|_| {
        CoreError::Config(format!(
            "a KV row of {n} values cannot be stored as {t:?} (block size)"
        ))
    })
}

/// One layer's cache.
pub struct KvLayer {
    /// The device that holds it.
    pub device: usize,
    /// Keys, `n_ctx` rows.
    pub k: Box<dyn DeviceBuffer>,
    /// Values, `n_ctx` rows.
    pub v: Box<dyn DeviceBuffer>,
    /// Key type.
    pub k_type: KvType,
    /// Value type.
    pub v_type: KvType,
    /// Bytes per key row.
    pub k_row_bytes: usize,
    /// Bytes per value row.
    pub v_row_bytes: usize,
}

/// The cache of every layer and how many cells are in use.
pub struct KvCache {
    layers: Vec<KvLayer>,
    n_ctx: usize,
    n_used: usize,
}

/// Shape of the cache to allocate.
#[derive(Clone, Copy, Debug)]
pub struct KvShape {
    /// Cells (context size).
    pub n_ctx: usize,
    /// Values per key row (`n_head_kv * head_dim_k`).
    pub k_width: usize,
    /// Values per value row.
    pub v_width: usize,
    /// Key type.
    pub k_type: KvType,
    /// Value type.
    pub v_type: KvType,
}

impl KvCache {
    /// Allocates one layer per entry of `layer_devices` on that device.
    pub fn new(
        shape: KvShape,
        layer_devices: &[usize],
        backends: &[Arc<dyn Backend>],
    ) -> Result<KvCache> {
        let k_row_bytes = kv_row_bytes(shape.k_type, shape.k_width)?;
        let v_row_bytes = kv_row_bytes(shape.v_type, shape.v_width)?;
        let bytes = |row: usize| {
            row.checked_mul(shape.n_ctx).ok_or_else(|| {
                CoreError::Config(format!("a KV cache of {} cells overflows", shape.n_ctx))
            })
        };
        let layers = layer_devices
            .iter()
            .map(|&device| {
                let b = &backends[device];
                Ok(KvLayer {
                    device,
                    k: b.alloc(bytes(k_row_bytes)?)?,
                    v: b.alloc(bytes(v_row_bytes)?)?,
                    k_type: shape.k_type,
                    v_type: shape.v_type,
                    k_row_bytes,
                    v_row_bytes,
                })
            })
            .collect::<Result<_>>()?;
        Ok(KvCache {
            layers,
            n_ctx: shape.n_ctx,
            n_used: 0,
        })
    }

    /// Cells in total.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Cells in use (= the next position).
    pub fn n_used(&self) -> usize {
        self.n_used
    }

    /// Checks that `n` more tokens fit.
    pub fn check_room(&self, n: usize) -> Result<()> {
        if self.n_used + n > self.n_ctx {
            return Err(CoreError::ContextFull {
                needed: self.n_used + n,
                n_ctx: self.n_ctx,
            });
        }
        Ok(())
    }

    /// Marks `n` more cells used (after a step stored them).
    pub fn advance(&mut self, n: usize) {
        self.n_used = (self.n_used + n).min(self.n_ctx);
    }

    /// Forgets cells from `n` on (e.g. to re-run from a common prefix).
    pub fn truncate(&mut self, n: usize) {
        self.n_used = self.n_used.min(n);
    }

    /// Layer `il`.
    pub fn layer_mut(&mut self, il: usize) -> Option<&mut KvLayer> {
        self.layers.get_mut(il)
    }

    /// Bytes held by all layers.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(|l| l.k.len() + l.v.len()).sum()
    }

    /// Every layer.
    pub fn layers(&self) -> &[KvLayer] {
        &self.layers
    }

    /// Frees every layer's device memory (empty buffers take their place);
    /// the cells in use are kept as a count. [`KvCache::reallocate`] gives
    /// the memory back, zeroed.
    pub fn release(&mut self, backends: &[Arc<dyn Backend>]) -> Result<()> {
        for l in &mut self.layers {
            l.k = backends[l.device].alloc(0)?;
            l.v = backends[l.device].alloc(0)?;
        }
        Ok(())
    }

    /// Allocates `n_ctx` rows per layer again after [`KvCache::release`].
    pub fn reallocate(&mut self, backends: &[Arc<dyn Backend>]) -> Result<()> {
        let n_ctx = self.n_ctx;
        for l in &mut self.layers {
            l.k = backends[l.device].alloc(l.k_row_bytes * n_ctx)?;
            l.v = backends[l.device].alloc(l.v_row_bytes * n_ctx)?;
        }
        Ok(())
    }
}
