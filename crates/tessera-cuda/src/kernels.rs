//! The CUDA C kernel sources and their compilation by NVRTC.
//!
//! Each `.cu` file under `kernels/` is one module; `common.cuh` (types,
//! half conversions, reductions) and, for the products, `dequant.cuh`
//! (weight decoding) are prepended to it, since NVRTC compiles from memory
//! without a file system. A module is compiled at first use for the
//! device's architecture (`compute_XY`, PTX the driver finishes for the
//! device) with `--fmad=false` (no fused multiply-adds unless a kernel
//! asks for `fmaf`: the dequantizers must round as tessera-quant does) and
//! the PTX is cached on disk ([`cache_dir`]), keyed by a hash of the source,
//! the architecture and the options, so later runs skip NVRTC.
//!
//! NVRTC is loaded at run time: [`nvrtc_present`] says whether it can be,
//! and [`compile`] returns [`CudaError::NoNvrtc`] instead of panicking
//! (cudarc panics when asked to use a library it cannot load).

use std::path::PathBuf;

use crate::error::{CudaError, Result};

/// Prepended to every module.
pub const COMMON: &str = include_str!("../kernels/common.cuh");
/// Prepended to the modules that read weights.
pub const DEQUANT: &str = include_str!("../kernels/dequant.cuh");

/// One kernel source file.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    /// File name under `kernels/`.
    pub name: &'static str,
    /// The CUDA C text.
    pub text: &'static str,
    /// Whether it needs `dequant.cuh`.
    pub dequant: bool,
}

/// The products (`matmul_<t>`, `mul_mat_id_<t>`, `get_rows_<t>`).
pub const MATMUL: Source = Source {
    name: "matmul.cu",
    text: include_str!("../kernels/matmul.cu"),
    dequant: true,
};
/// Elementwise ops, gathers, MoE sums.
pub const EW: Source = Source {
    name: "ew.cu",
    text: include_str!("../kernels/ew.cu"),
    dequant: false,
};
/// RMS norm, layer norm, softmax.
pub const NORM: Source = Source {
    name: "norm.cu",
    text: include_str!("../kernels/norm.cu"),
    dequant: false,
};
/// Rotary embedding.
pub const ROPE: Source = Source {
    name: "rope.cu",
    text: include_str!("../kernels/rope.cu"),
    dequant: false,
};
/// KV cache writes and attention.
pub const ATTENTION: Source = Source {
    name: "attention.cu",
    text: include_str!("../kernels/attention.cu"),
    dequant: false,
};
/// Top-k, group mask, normalised sums (MoE routing).
pub const ROUTING: Source = Source {
    name: "routing.cu",
    text: include_str!("../kernels/routing.cu"),
    dequant: false,
};

/// Every module, in the order `compile_all` compiles them.
pub const SOURCES: &[Source] = &[MATMUL, EW, NORM, ROPE, ATTENTION, ROUTING];

/// NVRTC options besides the architecture.
const OPTIONS: &[&str] = &["--fmad=false", "--std=c++17"];

/// The full text NVRTC compiles for `src`.
pub fn full_source(src: &Source) -> String {
    let mut s = String::with_capacity(COMMON.len() + DEQUANT.len() + src.text.len() + 64);
    s.push_str(COMMON);
    if src.dequant {
        s.push_str(DEQUANT);
    }
    s.push_str(&format!("#line 1 \"{}\"\n", src.name));
    s.push_str(src.text);
    s
}

/// Whether libnvrtc can be loaded (from `LD_LIBRARY_PATH`, the loader's
/// paths, …; `scripts/cuda-env.sh` prints a directory that has it).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to open the library by its candidate names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// `src` compiled to PTX for `arch` (`compute_80`, `compute_90` …).
pub fn compile(src: &Source, arch: &str) -> Result<String> {
    if !nvrtc_present() {
        return Err(CudaError::NoNvrtc(
            "libnvrtc cannot be loaded (install the nvidia-cuda-nvrtc-cu12 wheel or a CUDA \
             toolkit and put its lib directory on LD_LIBRARY_PATH)"
                .into(),
        ));
    }
    let mut options: Vec<String> = OPTIONS.iter().map(|s| s.to_string()).collect();
    options.push(format!("--gpu-architecture={arch}"));
    let opts = cudarc::nvrtc::CompileOptions {
        options,
        name: Some(src.name.to_string()),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(full_source(src), opts).map_err(|e| {
        let log = match &e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                log.to_string_lossy().into_owned()
            }
            other => format!("{other:?}"),
        };
        CudaError::Compile {
            source_name: src.name,
            arch: arch.to_string(),
            log,
        }
    })?;
    Ok(ptx.to_src())
}

/// The sizes in bytes (4 or 8) of the parameters of kernel `func` of
/// `src`, read from its source (`extern "C" __global__ void func(...)`, or
/// the `base_##T(...)` template of the per-type kernels), or `None` when
/// the source has no such kernel or a parameter type this reader does not
/// know. Pointers and `u64` are 8 bytes; `u32`, `i32` and `float` 4. The
/// executor checks every launch's arguments against it, so that a wrong
/// argument list is an error, not a kernel reading garbage.
pub fn signature(src: &Source, func: &str) -> Option<Vec<u8>> {
    let head = "extern \"C\" __global__ void ";
    let params = src.text.split(head).skip(1).find_map(|k| {
        let (name, rest) = k.split_once('(')?;
        let name = name.trim();
        let matches = name == func
            || name
                .strip_suffix("##T")
                .is_some_and(|base| func.starts_with(base) && !func[base.len()..].contains('('));
        matches.then(|| rest.split_once(')').map(|(p, _)| p.to_string()))?
    })?;
    params
        .split(',')
        .map(|p| {
            // Drop the macro's line continuations.
            let p = p.replace('\\', " ");
            let p = p.trim();
            if p.contains('*') || p.starts_with("u64 ") {
                Some(8)
            } else if ["u32 ", "i32 ", "float "].iter().any(|t| p.starts_with(t)) {
                Some(4)
            } else {
                None
            }
        })
        .collect()
}

/// Where compiled PTX is kept: `$TESSERA_CUDA_CACHE`, else
/// `$XDG_CACHE_HOME/tessera/cuda`, else `~/.cache/tessera/cuda`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("TESSERA_CUDA_CACHE") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("tessera").join("cuda"))
}

/// FNV-1a, 64 bits: the cache key of a compilation.
fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The cache file of `src` for `arch`.
fn cache_file(src: &Source, arch: &str) -> Option<PathBuf> {
    let text = full_source(src);
    let key = fnv64(&[
        text.as_bytes(),
        arch.as_bytes(),
        OPTIONS.join(" ").as_bytes(),
    ]);
    let stem = src.name.trim_end_matches(".cu");
    Some(cache_dir()?.join(format!("{stem}-{arch}-{key:016x}.ptx")))
}

/// `src` as PTX for `arch`: from the disk cache, else compiled (and then
/// stored; a cache that cannot be written is skipped, not an error).
pub fn ptx_cached(src: &Source, arch: &str) -> Result<String> {
    let file = cache_file(src, arch);
    if let Some(text) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
        if text.contains(".entry") {
            return Ok(text);
        }
    }
    let ptx = compile(src, arch)?;
    if let Some(f) = file {
        if let Some(dir) = f.parent() {
            let tmp = f.with_extension(format!("tmp{}", std::process::id()));
            let ok = std::fs::create_dir_all(dir).is_ok()
                && std::fs::write(&tmp, &ptx).is_ok()
                && std::fs::rename(&tmp, &f).is_ok();
            if !ok {
                let _ = std::fs::remove_file(&tmp);
            }
        }
    }
    Ok(ptx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_has_kernels_and_a_unique_name() {
        for (i, s) in SOURCES.iter().enumerate() {
            assert!(s.text.contains("extern \"C\" __global__"), "{}", s.name);
            assert!(SOURCES[..i].iter().all(|o| o.name != s.name), "{}", s.name);
        }
    }

    #[test]
    fn every_kernel_has_a_signature() {
        for src in SOURCES {
            for k in src.text.split("extern \"C\" __global__ void ").skip(1) {
                let name = k.split('(').next().unwrap().trim().replace("##T", "q4_k");
                let sig = signature(src, &name)
                    .unwrap_or_else(|| panic!("{}: cannot read {name}'s parameters", src.name));
                assert!(!sig.is_empty(), "{name}");
            }
        }
        // Spot checks against the sources.
        assert_eq!(signature(&EW, "binary"), Some(vec![4, 8, 8, 4, 8, 4]));
        let mm = signature(&MATMUL, "matmul_q6_k").unwrap();
        assert_eq!(mm, vec![8, 8, 4, 4, 4, 8, 4, 4, 4, 8, 4, 4]);
        assert_eq!(signature(&EW, "no_such_kernel"), None);
    }

    #[test]
    fn cache_key_changes_with_arch() {
        let a = cache_file(&EW, "compute_80");
        let b = cache_file(&EW, "compute_90");
        if let (Some(a), Some(b)) = (a, b) {
            assert_ne!(a, b);
        }
    }
}
