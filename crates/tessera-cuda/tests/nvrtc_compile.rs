//! CI's check of the CUDA kernels without a GPU: every kernel source is
//! compiled by NVRTC for sm_80 and sm_90 (PTX for `compute_80` /
//! `compute_90`), and when `ptxas` is found (`TESSERA_PTXAS`, or on `PATH`)
//! each PTX is assembled for that architecture, so a syntax, type or
//! register-allocation error fails the test.
//!
//! libnvrtc comes from the `nvidia-cuda-nvrtc-cu12` wheel and ptxas from
//! `nvidia-cuda-nvcc-cu12` (`scripts/cuda-env.sh` installs both into a venv
//! and prints `LD_LIBRARY_PATH` and `TESSERA_PTXAS`). Without NVRTC the
//! test says so and passes, unless `TESSERA_STRICT=1` (as
//! `scripts/test.sh` sets): then it fails. Without ptxas it only compiles,
//! again unless `TESSERA_STRICT=1`.

use std::path::PathBuf;
use std::process::Command;

use tessera_cuda::kernels::{compile, nvrtc_present, SOURCES};

const ARCHS: &[(&str, &str)] = &[("compute_80", "sm_80"), ("compute_90", "sm_90")];

fn strict() -> bool {
    std::env::var("TESSERA_STRICT").is_ok_and(|v| v == "1")
}

fn ptxas() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TESSERA_PTXAS") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("ptxas"))
        .find(|p| p.is_file())
}

#[test]
fn every_kernel_compiles_and_assembles() {
    if !nvrtc_present() {
        let msg =
            "no NVRTC (run `eval $(scripts/cuda-env.sh)` for the pip wheels): kernels not compiled";
        assert!(!strict(), "{msg} (TESSERA_STRICT=1)");
        eprintln!("skipped: {msg}");
        return;
    }
    let ptxas = ptxas();
    if ptxas.is_none() {
        assert!(
            !strict(),
            "no ptxas (TESSERA_PTXAS or PATH) with TESSERA_STRICT=1"
        );
        eprintln!("no ptxas: PTX is compiled but not assembled");
    }
    let dir = std::env::temp_dir().join(format!("tessera-nvrtc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut failures = Vec::new();
    for src in SOURCES {
        for &(virt, real) in ARCHS {
            let t0 = std::time::Instant::now();
            let ptx = match compile(src, virt) {
                Ok(p) => p,
                Err(e) => {
                    failures.push(e.to_string());
                    continue;
                }
            };
            let entries = ptx.matches(".entry").count();
            assert!(entries > 0, "{} for {virt}: no kernel in the PTX", src.name);
            // common.cuh took its CUDA branch (PTX half conversions), not
            // the host C one that tests/dequant_host.rs compiles.
            if src.dequant {
                assert!(
                    ptx.contains("cvt.f32.f16"),
                    "{}: no PTX f16 conversion",
                    src.name
                );
            }
            let mut line = format!(
                "{:<14} {virt}: {entries:>3} kernels, {:>7} bytes of PTX in {:>6.0?}",
                src.name,
                ptx.len(),
                t0.elapsed()
            );
            if let Some(ptxas) = &ptxas {
                let stem = src.name.trim_end_matches(".cu");
                let f = dir.join(format!("{stem}-{real}.ptx"));
                std::fs::write(&f, &ptx).unwrap();
                let out = Command::new(ptxas)
                    .arg(format!("-arch={real}"))
                    .arg("-o")
                    .arg(f.with_extension("cubin"))
                    .arg(&f)
                    .output()
                    .unwrap_or_else(|e| panic!("cannot run {}: {e}", ptxas.display()));
                if out.status.success() {
                    line.push_str(&format!(", ptxas {real} ok"));
                } else {
                    failures.push(format!(
                        "ptxas -arch={real} {}: {}",
                        src.name,
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            println!("{line}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The check can fail: a source with a type error is rejected with
/// NVRTC's log.
#[test]
fn a_broken_source_is_rejected() {
    if !nvrtc_present() {
        assert!(!strict(), "no NVRTC with TESSERA_STRICT=1");
        eprintln!("skipped: no NVRTC");
        return;
    }
    let bad = tessera_cuda::kernels::Source {
        name: "broken.cu",
        text: "extern \"C\" __global__ void k(float* y) { y[0] = undefined_name; }",
        dequant: false,
    };
    let e = compile(&bad, "compute_80").expect_err("a broken kernel compiled");
    assert!(e.to_string().contains("undefined_name"), "{e}");
}
