//! The weight decoders of the kernels, checked without a GPU:
//! `kernels/common.cuh` and `kernels/dequant.cuh` are plain C outside CUDA,
//! so a C compiler (`$CC`, else `cc`) builds them into a small program that
//! decodes blocks made by tessera-quant's quantizers, value by value
//! (`dq_<t>(row, i)`, as the kernels call them), and every value must equal
//! tessera-quant's dequantizer bit for bit, for every type the kernels read.
//! Without a C compiler the test skips, unless `TESSERA_STRICT=1`.
//!
//! What this does not cover: the device's own half conversion (PTX
//! `cvt.f32.f16`, exact by definition) and the products around the
//! decoders.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tessera_cuda::kernels::{COMMON, DEQUANT};
use tessera_cuda::type_suffix;
use tessera_gguf::GgmlType;

const DRIVER: &str = r#"
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char** argv) {
    if (argc != 3) return 2;
    const char* name = argv[1];
    const u32 n = (u32)strtoul(argv[2], 0, 10);
    const size_t cap = 1 << 24;
    u8* data = (u8*)malloc(cap);
    const size_t len = fread(data, 1, cap, stdin);
    float* out = (float*)malloc((size_t)n * 4 + 4);
    int found = 0;
#define CASE(T, BS, BB)                                                   \
    if (!strcmp(name, #T)) {                                              \
        found = 1;                                                        \
        if ((size_t)n / BS * BB > len) return 3;                          \
        for (u32 i = 0; i < n; i++) out[i] = dq_##T(data, i);             \
    }
    TYPES(CASE)
    if (!found) return 4;
    fwrite(out, 4, n, stdout);
    return 0;
}
"#;

/// The weight types the kernels read.
const TYPES: &[GgmlType] = &tessera_core::backend::gpu::WEIGHT_TYPES;

fn strict() -> bool {
    std::env::var("TESSERA_STRICT").is_ok_and(|v| v == "1")
}

/// Builds the decoder program in `dir`, or `None` without a C compiler.
fn build(dir: &Path) -> Option<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let src = dir.join("dequant_host.c");
    // The prelude needs the headers before common.cuh's host branch.
    let text = format!("#include <stdint.h>\n{COMMON}\n{DEQUANT}\n{DRIVER}");
    std::fs::write(&src, text).unwrap();
    let bin = dir.join("dequant_host");
    // No contraction into FMAs: the kernels are compiled with --fmad=false.
    let out = Command::new(&cc)
        .args(["-std=c99", "-O1", "-ffp-contract=off", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{cc} rejected the decoders:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(bin)
}

/// `n` test values: a deterministic mix of magnitudes and signs, with
/// zeros and a few outliers (which stretch block scales).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            match i % 97 {
                0 => 0.0,
                1 => u * 40.0,
                _ => u * (1.0 + (i % 7) as f32),
            }
        })
        .collect()
}

#[test]
fn decoders_match_tessera_quant_bit_for_bit() {
    let dir = std::env::temp_dir().join(format!("tessera-dq-host-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some(bin) = build(&dir) else {
        assert!(!strict(), "no C compiler ($CC or cc) with TESSERA_STRICT=1");
        eprintln!("skipped: no C compiler ($CC or cc)");
        return;
    };
    for (k, &t) in TYPES.iter().enumerate() {
        let name = type_suffix(t).unwrap();
        let n = 4096;
        let x = values(n, k as u64 + 1);
        let bytes = n / t.block_size() as usize * t.type_size() as usize;
        let mut q = vec![0u8; bytes];
        tessera_quant::dtype::quantize(t, &x, &mut q)
            .unwrap_or_else(|e| panic!("{t:?}: cannot quantize: {e}"));
        let mut want = vec![0f32; n];
        tessera_quant::dtype::dequantize(t, &q, &mut want).unwrap();
        let mut child = Command::new(&bin)
            .args([name, &n.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&q).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{name}: exit {:?}", out.status);
        let got: Vec<f32> = out
            .stdout
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(got.len(), n, "{name}");
        let bad: Vec<usize> = (0..n)
            .filter(|&i| got[i].to_bits() != want[i].to_bits())
            .collect();
        assert!(
            bad.is_empty(),
            "{name}: {} of {n} values differ, first at {}: {} vs {}",
            bad.len(),
            bad[0],
            got[bad[0]],
            want[bad[0]]
        );
        println!("{name:<7} {n} values bit-exact");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
