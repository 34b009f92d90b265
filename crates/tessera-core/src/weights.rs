//! The model's weights as the engine uses them: name, type, shape, the
//! device each lives on (placement) and its data there.

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
    /// Loads every tensor of `model` onto the device `device_of(name)` picks.
    pub fn load(
        model: &Arc<GgufModel>,
        backends: &[Arc<dyn Backend>],
        device_of: impl Fn(&str) -> usize,
    ) -> Result<Weights> {
        let mut w = Weights::default();
        for t in model.tensors() {
            let name = t.info.name.clone();
            let shape = shape_of(&name, &t.info.dims)?;
            let device = device_of(&name);
            let backend = backends.get(device).ok_or_else(|| {
                CoreError::Config(format!(
                    "tensor `{name}` placed on device {device}, which does not exist"
                ))
            })?;
            let slice = HostSlice::new(model.clone(), |m: &GgufModel| {
                m.tensor(&t.info.name)
                    .map(|t| m.tensor_data(t))
                    .unwrap_or(&[])
            });
            let data = backend.load_weight(&name, t.info.ggml_type, slice)?;
            w.index.insert(name.clone(), w.list.len());
            w.list.push(Weight {
                name,
                ggml_type: t.info.ggml_type,
                shape,
                device,
                data,
            });
        }
        Ok(w)
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
