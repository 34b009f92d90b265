//! The model's weights as the engine uses them: name, type, shape, the
//! device each lives on (placement) and its data there.
//!
//! A matrix cut by rows over devices (`--split-mode row`) keeps its entry
//! (on the main device, its bytes still the mapped file's) and gains one
//! entry per part, `<name>@rows<a>-<b>`, each loaded on its own device; the
//! graph builder multiplies by the parts and gathers their outputs.

use std::collections::HashMap;
use std::sync::Arc;

use tessera_gguf::{GgmlType, GgufModel};

use crate::backend::{Backend, HostSlice, WeightData};
use crate::error::{CoreError, Result};

/// One weight tensor on its device.
pub struct Weight {
    /// GGUF name.
    pub name: String,
    /// Element type.
    pub ggml_type: GgmlType,
    /// `[n_mat, rows, cols]` (`n_mat` > 1 for expert stacks).
    pub shape: [usize; 3],
    /// Index of the device (backend) that holds it.
    pub device: usize,
    /// The data on that device.
    pub data: WeightData,
    /// The parts of a row split: indices of the part weights, in row
    /// order (empty: not split).
    pub parts: Vec<usize>,
}

impl Weight {
    /// The bytes, when the weight is in host memory.
    pub fn host_bytes(&self) -> Option<&[u8]> {
        match &self.data {
            WeightData::Host(s) => Some(s.bytes()),
            WeightData::Device(_) => None,
        }
    }
}

/// All weights of a model, by index and by name.
#[derive(Default)]
pub struct Weights {
    list: Vec<Weight>,
    index: HashMap<String, usize>,
}

/// `[n_mat, rows, cols]` of a GGUF tensor (GGML order reversed, padded).
fn shape_of(name: &str, dims: &[u64]) -> Result<[usize; 3]> {
    let bad = |reason: String| CoreError::Tensor {
        name: name.into(),
        reason,
    };
    let d = |i: usize| dims.get(i).copied().unwrap_or(1) as usize;
    if dims.len() > 3 && dims[3..].iter().any(|&x| x != 1) {
        return Err(bad(format!("{} dimensions are not supported", dims.len())));
    }
    Ok([d(2), d(1), d(0)])
}

impl Weights {
    /// Loads every tensor of `model` onto the device `device_of(name)`
    /// picks; a tensor for which `rows_of(name)` gives row ranges
    /// `(device, first, end)` is also loaded in those parts.
    pub fn load(
        model: &Arc<GgufModel>,
        backends: &[Arc<dyn Backend>],
        device_of: impl Fn(&str) -> usize,
        rows_of: impl Fn(&str) -> Option<Vec<(usize, usize, usize)>>,
    ) -> Result<Weights> {
        let mut w = Weights::default();
        let backend = |device: usize, name: &str| {
            backends.get(device).ok_or_else(|| {
                CoreError::Config(format!(
                    "tensor `{name}` placed on device {device}, which does not exist"
                ))
            })
        };
        for t in model.tensors() {
            let name = t.info.name.clone();
            let shape = shape_of(&name, &t.info.dims)?;
            let ggml_type = t.info.ggml_type;
            // `range` of the tensor's bytes (all of it: `None`).
            let slice = |range: Option<(usize, usize)>| {
                HostSlice::new(model.clone(), |m: &GgufModel| {
                    let all = m
                        .tensor(&t.info.name)
                        .map(|t| m.tensor_data(t))
                        .unwrap_or(&[]);
                    match range {
                        Some((a, b)) => all.get(a..b).unwrap_or(&[]),
                        None => all,
                    }
                })
            };
            let mut parts = Vec::new();
            for (device, r0, r1) in rows_of(&name).unwrap_or_default() {
                let row_bytes = t.info.n_bytes as usize / shape[1].max(1);
                let part = format!("{name}@rows{r0}-{r1}");
                let data = backend(device, &part)?.load_weight(
                    &part,
                    ggml_type,
                    slice(Some((r0 * row_bytes, r1 * row_bytes))),
                )?;
                parts.push(w.push(Weight {
                    name: part,
                    ggml_type,
                    shape: [1, r1 - r0, shape[2]],
                    device,
                    data,
                    parts: Vec::new(),
                }));
            }
            let device = device_of(&name);
            let data = if parts.is_empty() {
                backend(device, &name)?.load_weight(&name, ggml_type, slice(None))?
            } else {
                // Split: the parts compute; the whole stays in the mapping.
                WeightData::Host(slice(None))
            };
            w.push(Weight {
                name,
                ggml_type,
                shape,
                device,
                data,
                parts,
            });
        }
        Ok(w)
    }

    fn push(&mut self, weight: Weight) -> usize {
        let i = self.list.len();
        self.index.insert(weight.name.clone(), i);
        self.list.push(weight);
        i
    }

    /// The weight named `name`.
    pub fn get(&self, name: &str) -> Option<(usize, &Weight)> {
        let &i = self.index.get(name)?;
        Some((i, &self.list[i]))
    }

    /// All weights, by index.
    pub fn as_slice(&self) -> &[Weight] {
        &self.list
    }
}
