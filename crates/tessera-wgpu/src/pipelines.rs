//! The shaders and the pipeline cache.
//!
//! A [`Kernel`] names a WGSL file, its entry point and its bindings
//! (binding 0 is always the uniform parameter block; the others are
//! storage buffers). Its source is assembled on first use: the workgroup
//! size, the reduction helpers (with subgroup operations when the device
//! has them, else through workgroup memory), and for kernels that read
//! weights the byte readers and the weight type's `dq4`
//! ([`crate::dequant`]). Compiled pipelines are kept per (kernel, weight
//! type, variant); a shader that fails to compile is an error, not a panic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tessera_gguf::GgmlType;

use crate::device::Gpu;
use crate::error::Result;

/// Invocations per workgroup of every kernel.
pub const WG: u32 = 64;

/// A storage binding's access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// One compute entry point and its bindings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    /// The WGSL file (without `.wgsl`).
    pub file: &'static str,
    /// The entry point.
    pub entry: &'static str,
    /// Bindings 1.. (binding 0 is the uniform).
    pub bindings: &'static [Access],
    /// Whether it uses `wg_sum`/`wg_max`.
    pub reduces: bool,
}

use Access::{Read as R, ReadWrite as RW};

macro_rules! kernel {
    ($name:ident, $file:literal, $entry:literal, [$($b:expr),*], $red:expr) => {
        /// The kernel of that name.
        pub const $name: Kernel = Kernel {
            file: $file,
            entry: $entry,
            bindings: &[$($b),*],
            reduces: $red,
        };
    };
}

kernel!(MATMUL, "matmul", "main", [R, RW, RW], true);
kernel!(MATMUL_ID, "matmul", "main", [R, RW, RW, RW], true);
kernel!(GET_ROWS, "get_rows", "main", [R, R, RW], false);
kernel!(BINARY, "ew", "binary", [RW, RW, RW, RW], false);
kernel!(UNARY, "ew", "unary", [RW, RW, RW, RW], false);
kernel!(GLU, "ew", "glu", [RW, RW, RW, RW], false);
kernel!(MUL_ROWS, "ew", "mul_rows", [RW, RW, RW, RW], false);
kernel!(SLICE_HEADS, "ew", "slice_heads", [RW, RW, RW, RW], false);
kernel!(CONCAT_HEADS, "ew", "concat_heads", [RW, RW, RW, RW], false);
kernel!(MOE_SUM, "ew", "moe_sum", [RW, RW, RW, RW], false);
kernel!(GATHER_COLS, "ew", "gather_cols", [RW, RW, RW, RW], false);
kernel!(ADD_ID, "ew", "add_id", [RW, RW, RW, RW], false);
kernel!(RMS_NORM, "norm", "rms", [RW, RW, RW, RW], true);
kernel!(LAYER_NORM, "norm", "layer", [RW, RW, RW, RW], true);
kernel!(SOFTMAX, "softmax", "main", [RW, RW], true);
kernel!(ROPE, "rope", "main", [RW, RW, RW, R], false);
kernel!(KV_STORE, "kv_store", "main", [RW, RW], false);
kernel!(
    ATTENTION,
    "attention",
    "main",
    [RW, RW, RW, RW, RW, R],
    true
);
kernel!(SELECT_ROWS, "select_rows", "main", [RW, R, RW], false);
kernel!(TOP_K, "routing", "top_k", [RW, RW], false);
kernel!(NORM_SUM, "routing", "norm_sum", [RW, RW], false);
kernel!(GROUP_MASK, "routing", "group_mask", [RW, RW], false);
kernel!(ACT_ROUND, "act_round", "main", [RW, RW], false);

fn file_source(file: &str) -> &'static str {
    match file {
        "matmul" => include_str!("shaders/matmul.wgsl"),
        "get_rows" => include_str!("shaders/get_rows.wgsl"),
        "ew" => include_str!("shaders/ew.wgsl"),
        "norm" => include_str!("shaders/norm.wgsl"),
        "softmax" => include_str!("shaders/softmax.wgsl"),
        "rope" => include_str!("shaders/rope.wgsl"),
        "kv_store" => include_str!("shaders/kv_store.wgsl"),
        "attention" => include_str!("shaders/attention.wgsl"),
        "select_rows" => include_str!("shaders/select_rows.wgsl"),
        "routing" => include_str!("shaders/routing.wgsl"),
        "act_round" => include_str!("shaders/act_round.wgsl"),
        _ => "",
    }
}

/// The WGSL of `k` for weight type `t` (kernels that read weights).
pub fn source(k: &Kernel, t: Option<GgmlType>, subgroups: bool) -> Option<String> {
    let mut s = String::new();
    let sg = subgroups && k.reduces;
    // naga takes the subgroup builtins without `enable subgroups;` (which
    // it rejects as not yet implemented).
    s.push_str(&format!("const WG: u32 = {WG}u;\n"));
    if k.reduces {
        s.push_str(if sg {
            include_str!("shaders/reduce_sg.wgsl")
        } else {
            include_str!("shaders/reduce_wg.wgsl")
        });
    }
    if k.file == "matmul" {
        if k.bindings.len() == 4 {
            s.push_str(
                "const ID: bool = true;\n@group(0) @binding(4) var<storage, read_write> IDS: array<i32>;\n",
            );
        } else {
            s.push_str("const ID: bool = false;\nvar<private> IDS: array<i32, 1>;\n");
        }
    }
    let body = file_source(k.file);
    if let Some(t) = t {
        let (bs, bb, dq) = crate::dequant::dq4(t)?;
        s.push_str(&format!("const BS: u32 = {bs}u;\nconst BB: u32 = {bb}u;\n"));
        s.push_str(include_str!("shaders/wread.wgsl"));
        s.push_str(&dq);
    }
    let (args, init) = if sg {
        (
            ", @builtin(subgroup_invocation_id) sl: u32, @builtin(subgroup_id) sid: u32, @builtin(num_subgroups) nsg: u32, @builtin(subgroup_size) ssz: u32",
            "g_li = li; g_sl = sl; g_sid = sid; g_nsg = nsg; g_ssz = ssz;",
        )
    } else if k.reduces {
        ("", "g_li = li;")
    } else {
        ("", "")
    };
    s.push_str(&body.replace(" SGARGS", args).replace("SGINIT", init));
    Some(s)
}

/// A compiled kernel and its bind group layout.
pub struct Pipe {
    /// The pipeline.
    pub pipeline: wgpu::ComputePipeline,
    /// Its bind group layout.
    pub layout: wgpu::BindGroupLayout,
}

type Key = (Kernel, Option<GgmlType>);

/// Compiled pipelines, built on first use.
#[derive(Default)]
pub struct Cache {
    pipes: Mutex<HashMap<Key, Arc<Pipe>>>,
}

impl Cache {
    /// The pipeline of `k` for weight type `t`, compiled if needed.
    pub fn get(&self, gpu: &Gpu, k: &Kernel, t: Option<GgmlType>) -> Result<Arc<Pipe>> {
        let key = (*k, t);
        if let Some(p) = self
            .pipes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let pipe = Arc::new(build(gpu, k, t)?);
        self.pipes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, pipe.clone());
        Ok(pipe)
    }
}

fn build(gpu: &Gpu, k: &Kernel, t: Option<GgmlType>) -> Result<Pipe> {
    let label = match t {
        Some(t) => format!("{}.{}.{t:?}", k.file, k.entry),
        None => format!("{}.{}", k.file, k.entry),
    };
    let src = source(k, t, gpu.subgroups)
        .ok_or_else(|| gpu.err(format!("{label}: no shader for this weight type")))?;
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }];
    for (i, a) in k.bindings.iter().enumerate() {
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: i as u32 + 1,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage {
                    read_only: *a == Access::Read,
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
    }
    let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = gpu
        .device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
    let layout = gpu
        .device
        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(&label),
            entries: &entries,
        });
    let pl = gpu
        .device
        .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
    let pipeline = gpu
        .device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pl),
            module: &module,
            entry_point: Some(k.entry),
            compilation_options: Default::default(),
            cache: None,
        });
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(gpu.err(format!("compiling {label}: {e}")));
    }
    Ok(Pipe { pipeline, layout })
}
