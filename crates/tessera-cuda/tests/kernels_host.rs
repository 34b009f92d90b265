//! Every kernel, checked without a GPU: `common.cuh` is plain C++ outside
//! CUDA, so the host compiler (`$CXX`, else `c++`) builds all the kernel
//! sources into a shared library with an emulated launch: the blocks one
//! after another, the threads of a block as OS threads (`threadIdx` is
//! thread-local), `__syncthreads` a barrier of the block and
//! `__shfl_xor_sync` an exchange through a warp's slots between two
//! barriers of the warp. The outputs are compared with the CPU backend's
//! ops (products: with f64 products of the dequantized weights) on the
//! same inputs, with the op harness's tolerances. This checks the kernels'
//! indexing, reductions and arithmetic, and the argument order written
//! here (the same as `exec.rs`'s); not the device's own `expf`/`tanhf`
//! (the host's libm stands in), nor timing-dependent races a sequential
//! block order hides. Without a C++ compiler the test skips, unless
//! `TESSERA_STRICT=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use tessera_core::backend::cpu::CpuBackend;
use tessera_core::backend::Backend;
use tessera_core::graph::{Glu, Op, RopeCfg, Unary};
use tessera_core::kv::KvType;
use tessera_cuda::kernels::{Source, ATTENTION, COMMON, DEQUANT, EW, MATMUL, NORM, ROPE, ROUTING};
use tessera_gguf::GgmlType;
use tessera_testkit::gpu::cases::{self, AttnCase};

/// Calls a kernel for every thread of a launch: each argument is one
/// 8-byte slot (a pointer, a u32/u64, or an f32's bits), converted to the
/// kernel's parameter type.
const DRIVER: &str = r#"

// The block being run: its barrier, and per warp a barrier and 32 slots.
static std::unique_ptr<std::barrier<>> block_bar;
static std::vector<std::unique_ptr<std::barrier<>>> warp_bar;
static std::vector<float> warp_slot;

static void __syncthreads() { block_bar->arrive_and_wait(); }

static float __shfl_xor_sync(u32, float v, int lane_mask) {
    const u32 t = threadIdx.x, w = t / WARP;
    warp_slot[t] = v;
    warp_bar[w]->arrive_and_wait();
    const float r = warp_slot[(t & ~(u32)(WARP - 1)) | ((t % WARP) ^ (u32)lane_mask)];
    warp_bar[w]->arrive_and_wait();
    return r;
}

template <typename T> static T from_slot(u64 s) {
    if constexpr (std::is_pointer_v<T>) {
        return (T)(uintptr_t)s;
    } else if constexpr (std::is_same_v<T, float>) {
        return __uint_as_float((u32)s);
    } else {
        return (T)s;
    }
}

template <typename... P, size_t... I>
static void call(void (*k)(P...), const u64* a, std::index_sequence<I...>) {
    k(from_slot<P>(a[I])...);
}

template <typename... P>
static int run(void (*k)(P...), u32 n_args, u32 gx, u32 gy, u32 block, const u64* a) {
    if (n_args != sizeof...(P)) return 2;
    if (block % WARP != 0 && block != 1) return 3;
    gridDim = {gx, gy, 1};
    blockDim = {block, 1, 1};
    const u32 n_warps = (block + WARP - 1) / WARP;
    for (u32 by = 0; by < gy; by++) {
        for (u32 bx = 0; bx < gx; bx++) {
            block_bar = std::make_unique<std::barrier<>>(block);
            warp_bar.clear();
            for (u32 w = 0; w < n_warps; w++)
                warp_bar.push_back(std::make_unique<std::barrier<>>(block < WARP ? block : WARP));
            warp_slot.assign(n_warps * WARP, 0.0f);
            std::vector<std::thread> threads;
            for (u32 t = 0; t < block; t++) {
                threads.emplace_back([=] {
                    blockIdx = {bx, by, 0};
                    threadIdx = {t, 0, 0};
                    call(k, a, std::index_sequence_for<P...>{});
                });
            }
            for (auto& th : threads) th.join();
        }
    }
    return 0;
}

extern "C" int host_launch(const char* name, u32 n_args, u32 gx, u32 gy, u32 block,
                           const u64* a) {
#define K(f) if (!strcmp(name, #f)) return run(f, n_args, gx, gy, block, a);
    KERNELS
    return 1;
}
"#;

/// The kernel names of `src` (`extern "C" __global__ void NAME(`).
fn kernel_names(src: &Source) -> Vec<String> {
    src.text
        .split("extern \"C\" __global__ void ")
        .skip(1)
        .filter_map(|s| s.split('(').next().map(str::to_string))
        .collect()
}

fn build(dir: &Path) -> Option<PathBuf> {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let sources = [EW, ROPE, ROUTING, NORM, ATTENTION, MATMUL];
    let mut names: Vec<String> = sources.iter().flat_map(kernel_names).collect();
    // The products are instantiated per type by a macro: their names come
    // from the type list.
    names.retain(|n| !n.contains("##"));
    for t in TYPES {
        let sfx = tessera_cuda::type_suffix(t).unwrap();
        for k in ["matmul", "mul_mat_id", "get_rows"] {
            names.push(format!("{k}_{sfx}"));
        }
    }
    // The C++ headers first: common.cuh's host macros (`__shared__` …)
    // are not meant for them.
    let headers = "#include <barrier>\n#include <cstdint>\n#include <memory>\n#include <thread>\n\
                   #include <type_traits>\n#include <utility>\n#include <vector>\n";
    let mut text = format!("{headers}{COMMON}\n{DEQUANT}\n");
    for s in &sources {
        text.push_str(&format!("#line 1 \"{}\"\n{}\n", s.name, s.text));
    }
    let list: String = names.iter().map(|n| format!("K({n}) ")).collect();
    text.push_str(&DRIVER.replace("KERNELS", &list));
    let src = dir.join("kernels_host.cpp");
    std::fs::write(&src, text).unwrap();
    let lib = dir.join("libkernels_host.so");
    // No FMA contraction: the kernels are compiled with --fmad=false.
    let out = Command::new(&cxx)
        .args([
            "-std=c++20",
            "-pthread",
            "-O1",
            "-ffp-contract=off",
            "-shared",
            "-fPIC",
            "-o",
        ])
        .arg(&lib)
        .arg(&src)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{cxx} rejected the kernels:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(lib)
}

type Launch = unsafe extern "C" fn(*const std::ffi::c_char, u32, u32, u32, u32, *const u64) -> i32;

/// The host library of kernels.
struct Host {
    lib: libloading::Library,
}

/// One argument: a buffer (read or written by the kernel) or a scalar.
enum A<'a> {
    In(&'a [f32]),
    Out(&'a mut [f32]),
    Bytes(&'a [u8]),
    BytesOut(&'a mut [u8]),
    U(usize),
    F(f32),
}

impl Host {
    /// Runs kernel `name` over `grid` blocks of `block` threads.
    fn launch(&self, name: &str, grid: usize, block: usize, args: &mut [A<'_>]) {
        self.launch2(name, (grid, 1), block, args)
    }

    /// Runs kernel `name` over a 2-D grid of blocks of `block` threads.
    fn launch2(&self, name: &str, grid: (usize, usize), block: usize, args: &mut [A<'_>]) {
        let slots: Vec<u64> = args
            .iter_mut()
            .map(|a| match a {
                A::In(v) => v.as_ptr() as u64,
                A::Out(v) => v.as_mut_ptr() as u64,
                A::Bytes(v) => v.as_ptr() as u64,
                A::BytesOut(v) => v.as_mut_ptr() as u64,
                A::U(u) => *u as u64,
                A::F(f) => f.to_bits() as u64,
            })
            .collect();
        let cname = std::ffi::CString::new(name).unwrap();
        // The emulator's block state is global: one launch at a time
        // (the tests of this binary run on parallel threads).
        static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: `host_launch` is the driver's entry point with this
        // signature; every pointer slot points to a live buffer of the
        // length the kernel reads or writes (set by the caller below).
        let rc = unsafe {
            let f: libloading::Symbol<Launch> = self.lib.get(b"host_launch").unwrap();
            f(
                cname.as_ptr(),
                slots.len() as u32,
                grid.0 as u32,
                grid.1 as u32,
                block as u32,
                slots.as_ptr(),
            )
        };
        assert_eq!(
            rc, 0,
            "{name}: no such kernel (1), wrong argument count (2) or block (3)"
        );
    }

    /// An elementwise kernel (`gindex()`, 256 threads a block) over `n`
    /// outputs; `args` end before `n`.
    fn ew(&self, name: &str, n: usize, mut args: Vec<A<'_>>) {
        args.push(A::U(n));
        self.launch(name, n.div_ceil(256), 256, &mut args);
    }
}

/// The host library, built once per test run (in cargo's temporary
/// directory for integration tests), or `None` without a C++ compiler.
fn host() -> Option<(Host, PathBuf)> {
    static LIB: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tessera-cuda-kernels-host");
    let lib = LIB.get_or_init(|| {
        std::fs::create_dir_all(&dir).unwrap();
        build(&dir)
    });
    let Some(lib) = lib else {
        assert!(
            !strict(),
            "no C++ compiler ($CXX or c++) with TESSERA_STRICT=1"
        );
        stderr("skipped: no C++ compiler ($CXX or c++)");
        return None;
    };
    // SAFETY: the library was just built from the kernel sources; loading
    // it runs no initialisers besides the C++ runtime's.
    let lib = unsafe { libloading::Library::new(lib) }.expect("load the host kernels");
    Some((Host { lib }, dir))
}

fn strict() -> bool {
    std::env::var("TESSERA_STRICT").is_ok_and(|v| v == "1")
}

/// The CPU backend's outputs of a one-node `case` at positions `pos`.
fn cpu(case: Case, pos: Vec<i32>) -> Vec<f32> {
    let b: std::sync::Arc<dyn Backend> = std::sync::Arc::new(CpuBackend::new("cpu", 1));
    run_steps(&b, &[(case, pos)], None, ALIGN)
        .remove(0)
        .remove(0)
}

fn ids_bits(v: &[usize]) -> Vec<f32> {
    v.iter().map(|&i| f32::from_bits(i as u32)).collect()
}

#[test]
fn elementwise_rope_routing_match_the_cpu() {
    let Some((h, _)) = host() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x5851_f42d_4c95_7f2d);
    let (rows, cols) = (7, 45);
    let n = rows * cols;
    // binary(op, a, b, blen, y, n): same shape and one row broadcast.
    for (op, name) in [(0, "add"), (1, "mul"), (2, "div")] {
        for row in [false, true] {
            let a = rng.vec(n, 2.0);
            let bv: Vec<f32> = rng
                .vec(if row { cols } else { n }, 2.0)
                .into_iter()
                .map(|v| if v.abs() < 0.1 { v + 0.5 } else { v })
                .collect();
            let mut c = Case::default();
            let ta = c.input("a", rows, cols, a.clone());
            let tb = c.input("b", if row { 1 } else { rows }, cols, bv.clone());
            let o = match op {
                0 => Op::Add { a: ta, b: tb },
                1 => Op::Mul { a: ta, b: tb },
                _ => Op::Div { a: ta, b: tb },
            };
            c.node("y", o, rows, cols);
            let want = cpu(c, vec![0; rows]);
            let mut y = vec![f32::NAN; n];
            let args = vec![
                A::U(op),
                A::In(&a),
                A::In(&bv),
                A::U(bv.len()),
                A::Out(&mut y),
            ];
            h.ew("binary", n, args);
            rep.check(
                &format!("{name} row broadcast {row}"),
                nmse(&y, &want),
                NMSE_COPY,
            );
        }
    }
    // unary(op, s, x, y, n)
    for (code, f, tol) in [
        (0, None, NMSE_COPY),
        (1, Some(Unary::Silu), NMSE_TRANSCENDENTAL),
        (2, Some(Unary::Gelu), NMSE_GELU_F16),
        (3, Some(Unary::GeluErf), NMSE_TRANSCENDENTAL),
        (4, Some(Unary::Tanh), NMSE_TRANSCENDENTAL),
        (5, Some(Unary::Sigmoid), NMSE_TRANSCENDENTAL),
    ] {
        let x = rng.vec(n, 6.0);
        let mut c = Case::default();
        let tx = c.input("x", rows, cols, x.clone());
        let o = match f {
            Some(f) => Op::Unary { x: tx, f },
            None => Op::Scale { x: tx, s: 0.37 },
        };
        c.node("y", o, rows, cols);
        let want = cpu(c, vec![0; rows]);
        let mut y = vec![f32::NAN; n];
        h.ew(
            "unary",
            n,
            vec![A::U(code), A::F(0.37), A::In(&x), A::Out(&mut y)],
        );
        rep.check(&format!("unary {code} ({f:?})"), nmse(&y, &want), tol);
    }
    // glu(op, s, gate, up, y, n)
    for (code, f, tol) in [
        (0, Glu::SwiGlu, NMSE_TRANSCENDENTAL),
        (1, Glu::GeGlu, NMSE_GELU_F16),
        (2, Glu::SwiGluOai, NMSE_TRANSCENDENTAL),
    ] {
        let (g, u) = (rng.vec(n, 9.0), rng.vec(n, 9.0));
        let mut c = Case::default();
        let gate = c.input("gate", rows, cols, g.clone());
        let up = c.input("up", rows, cols, u.clone());
        c.node("y", Op::Glu { gate, up, f }, rows, cols);
        let want = cpu(c, vec![0; rows]);
        let mut y = vec![f32::NAN; n];
        let args = vec![
            A::U(code),
            A::F(1.702),
            A::In(&g),
            A::In(&u),
            A::Out(&mut y),
        ];
        h.ew("glu", n, args);
        rep.check(&format!("glu {f:?}"), nmse(&y, &want), tol);
    }
    // rope(x, y, pos, ff, n, n_heads, hd, n_rot, neox, freq_scale,
    //   ext_factor, attn_factor, corr0, corr1, theta_scale)
    let base = cases::ROPE_BASE;
    let yarn = cases::ROPE_YARN;
    let partial = RopeCfg {
        n_rot: 32,
        neox: true,
        freq_base: 1e6,
        ..base
    };
    for (name, heads, hd, cfg, ff) in [
        ("normal", 3, 64, base, false),
        ("neox partial", 2, 96, partial, false),
        ("yarn", 2, 64, yarn, false),
        ("freq factors", 2, 64, base, true),
    ] {
        let pos = vec![0, 1, 1000, 4095, 77];
        let nt = pos.len();
        let x = rng.vec(nt * heads * hd, 2.0);
        let ffv: Vec<f32> = (0..cfg.n_rot / 2).map(|i| 1.0 + i as f32 * 0.37).collect();
        let mut c = Case::default();
        let tx = c.input("x", nt, heads * hd, x.clone());
        let mut cfg = cfg;
        if ff {
            cfg.freq_factors = Some(c.weight("rope_freqs", GgmlType::F32, [1, 1, ffv.len()], &ffv));
        }
        let o = Op::Rope {
            x: tx,
            n_heads: heads,
            head_dim: hd,
            cfg,
        };
        c.node("r", o, nt, heads * hd);
        let want = cpu(c, pos.clone());
        let rc = tessera_core::backend::gpu::rope_consts(&cfg);
        let (corr, theta_scale) = (rc.corr, rc.theta_scale);
        let posb: Vec<f32> = pos.iter().map(|&p| f32::from_bits(p as u32)).collect();
        let mut y = vec![f32::NAN; x.len()];
        let total = x.len();
        // A null pointer when there are no frequency factors.
        let mut args = vec![
            A::In(&x),
            A::Out(&mut y),
            A::In(&posb),
            if ff { A::In(&ffv) } else { A::U(0) },
            A::U(total),
            A::U(heads),
            A::U(hd),
            A::U(cfg.n_rot),
            A::U(cfg.neox as usize),
            A::F(cfg.freq_scale),
            A::F(cfg.ext_factor),
            A::F(cfg.attn_factor),
            A::F(corr[0]),
            A::F(corr[1]),
            A::F(theta_scale),
        ];
        h.launch("rope", total.div_ceil(256), 256, &mut args);
        rep.check(&format!("rope {name}"), nmse(&y, &want), NMSE_ROPE);
    }
    // Routing: top_k (ties on a coarse grid), gather_cols, norm_sum,
    // moe_sum, group_mask, add_id, mul_rows; heads: slice, concat; rows.
    for (r, e, k) in [(5, 13, 3), (4, 64, 8)] {
        let x: Vec<f32> = rng
            .vec(r * e, 1.0)
            .iter()
            .map(|v| (v * 8.0).round() / 8.0)
            .collect();
        let mut c = Case::default();
        let tx = c.input("x", r, e, x.clone());
        c.node("ids", Op::TopK { x: tx, k }, r, k);
        let want_ids = cpu(c, vec![0; r]);
        let mut got = vec![f32::NAN; r * k];
        let mut args = [A::In(&x), A::Out(&mut got), A::U(r), A::U(e), A::U(k)];
        h.launch("top_k", r.div_ceil(64), 64, &mut args);
        rep.check(
            &format!("top_k [{r}, {e}] k {k}"),
            nmse(&got, &want_ids),
            NMSE_COPY,
        );
        // gather_cols(x, ids, cols, k, y, n) with the CPU's ids.
        let mut c = Case::default();
        let tx = c.input("x", r, e, x.clone());
        let ti = c.input("ids", r, k, want_ids.clone());
        c.node("g", Op::GatherCols { x: tx, ids: ti }, r, k);
        let want = cpu(c, vec![0; r]);
        let mut y = vec![f32::NAN; r * k];
        let args = vec![
            A::In(&x),
            A::In(&want_ids),
            A::U(e),
            A::U(k),
            A::Out(&mut y),
        ];
        h.ew("gather_cols", r * k, args);
        rep.check("gather_cols", nmse(&y, &want), NMSE_COPY);
        // norm_sum(x, y, rows, cols, min_sum)
        let w: Vec<f32> = rng.vec(r * k, 1.0).iter().map(|v| v.abs()).collect();
        let mut c = Case::default();
        let tw = c.input("w", r, k, w.clone());
        c.node(
            "wn",
            Op::NormSum {
                x: tw,
                min_sum: 6.1e-5,
            },
            r,
            k,
        );
        let want = cpu(c, vec![0; r]);
        let mut y = vec![f32::NAN; r * k];
        let mut args = [A::In(&w), A::Out(&mut y), A::U(r), A::U(k), A::F(6.1e-5)];
        h.launch("norm_sum", r.div_ceil(64), 64, &mut args);
        rep.check("norm_sum", nmse(&y, &want), NMSE_F32);
        // moe_sum(x, w, k, cols, y, n)
        let d = 9;
        let xe = rng.vec(r * k * d, 1.0);
        let mut c = Case::default();
        let te = c.input("xe", r * k, d, xe.clone());
        let tw = c.input("w", r, k, w.clone());
        c.node("moe", Op::MoeSum { x: te, w: tw }, r, d);
        let want = cpu(c, vec![0; r]);
        let mut y = vec![f32::NAN; r * d];
        h.ew(
            "moe_sum",
            r * d,
            vec![A::In(&xe), A::In(&w), A::U(k), A::U(d), A::Out(&mut y)],
        );
        rep.check("moe_sum", nmse(&y, &want), NMSE_COPY);
    }
    {
        // group_mask(x, y, rows, cols, n_groups, n_used)
        let (r, groups, used) = (3, 8, 3);
        let e = groups * 8;
        let x = rng.vec(r * e, 1.0);
        let mut c = Case::default();
        let tx = c.input("x", r, e, x.clone());
        let o = Op::GroupMask {
            x: tx,
            n_groups: groups,
            n_used: used,
        };
        c.node("m", o, r, e);
        let want = cpu(c, vec![0; r]);
        let mut y = vec![f32::NAN; r * e];
        let mut args = [
            A::In(&x),
            A::Out(&mut y),
            A::U(r),
            A::U(e),
            A::U(groups),
            A::U(used),
        ];
        h.launch("group_mask", 1, 64, &mut args);
        // -inf on both sides: compare the finite values and where -inf is.
        let same_inf = y
            .iter()
            .zip(&want)
            .all(|(a, b)| a.is_infinite() == b.is_infinite());
        let fin = |v: &[f32]| {
            v.iter()
                .map(|x| if x.is_finite() { *x } else { 0.0 })
                .collect::<Vec<_>>()
        };
        let e2 = if same_inf {
            nmse(&fin(&y), &fin(&want))
        } else {
            f64::INFINITY
        };
        rep.check("group_mask", e2, NMSE_COPY);
    }
    {
        // add_id(x, b, ids, cols, y, n), mul_rows(x, s, cols, y, n)
        let (slots, k, ne, d) = (6, 2, 4, 11);
        let x = rng.vec(slots * d, 1.0);
        let b = rng.vec(ne * d, 1.0);
        let ids = ids_bits(&(0..slots).map(|i| (i * 3) % ne).collect::<Vec<_>>());
        let mut c = Case::default();
        let tx = c.input("x", slots, d, x.clone());
        let tb = c.weight("b", GgmlType::F32, [1, ne, d], &b);
        let ti = c.input("ids", slots / k, k, ids.clone());
        c.node(
            "xb",
            Op::AddId {
                x: tx,
                b: tb,
                ids: ti,
            },
            slots,
            d,
        );
        let want = cpu(c, vec![0; slots / k]);
        let mut y = vec![f32::NAN; slots * d];
        let args = vec![A::In(&x), A::In(&b), A::In(&ids), A::U(d), A::Out(&mut y)];
        h.ew("add_id", slots * d, args);
        rep.check("add_id", nmse(&y, &want), NMSE_COPY);
        let s = rng.vec(slots, 2.0);
        let mut c = Case::default();
        let tx = c.input("x", slots, d, x.clone());
        let ts = c.input("s", slots, 1, s.clone());
        c.node("xs", Op::MulRows { x: tx, s: ts }, slots, d);
        let want = cpu(c, vec![0; slots]);
        let mut y = vec![f32::NAN; slots * d];
        h.ew(
            "mul_rows",
            slots * d,
            vec![A::In(&x), A::In(&s), A::U(d), A::Out(&mut y)],
        );
        rep.check("mul_rows", nmse(&y, &want), NMSE_COPY);
    }
    {
        // slice_heads(x, hd, start, len, y, n), concat_heads(a, la, b, lb, y, n)
        let (nt, heads, hd, start, len) = (3, 4, 24, 16, 8);
        let x = rng.vec(nt * heads * hd, 1.0);
        let mut c = Case::default();
        let tx = c.input("x", nt, heads * hd, x.clone());
        let o = Op::SliceHeads {
            x: tx,
            n_heads: heads,
            head_dim: hd,
            start,
            len,
        };
        c.node("pe", o, nt, heads * len);
        let want = cpu(c, vec![0; nt]);
        let mut y = vec![f32::NAN; nt * heads * len];
        let args = vec![A::In(&x), A::U(hd), A::U(start), A::U(len), A::Out(&mut y)];
        h.ew("slice_heads", nt * heads * len, args);
        rep.check("slice_heads", nmse(&y, &want), NMSE_COPY);
        let (la, lb) = (5, 3);
        let (a, b) = (rng.vec(nt * heads * la, 1.0), rng.vec(nt * heads * lb, 1.0));
        let mut c = Case::default();
        let ta = c.input("a", nt, heads * la, a.clone());
        let tb = c.input("b", nt, heads * lb, b.clone());
        c.node(
            "cat",
            Op::ConcatHeads {
                a: ta,
                b: tb,
                n_heads: heads,
            },
            nt,
            heads * (la + lb),
        );
        let want = cpu(c, vec![0; nt]);
        let total = nt * heads * (la + lb);
        let mut y = vec![f32::NAN; total];
        let args = vec![A::In(&a), A::U(la), A::In(&b), A::U(lb), A::Out(&mut y)];
        h.ew("concat_heads", total, args);
        rep.check("concat_heads", nmse(&y, &want), NMSE_COPY);
        // select_rows(x, rows, cols, y, n): every row, as the harness's steps.
        let rows_v: Vec<f32> = (0..nt as u32).map(f32::from_bits).collect();
        let mut c = Case::default();
        let tx = c.input("x", nt, heads * hd, x.clone());
        c.node("sel", Op::SelectRows { x: tx }, nt, heads * hd);
        let want = cpu(c, vec![0; nt]);
        let mut y = vec![f32::NAN; x.len()];
        let args = vec![A::In(&x), A::In(&rows_v), A::U(heads * hd), A::Out(&mut y)];
        h.ew("select_rows", x.len(), args);
        rep.check("select_rows", nmse(&y, &want), NMSE_COPY);
    }
    rep.finish("kernels on the host");
}

/// The products for every weight type against f64 products of the
/// dequantized weights, and embeddings exactly.
#[test]
fn products_and_embeddings() {
    let Some((h, _)) = host() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x3c6e_f372_fe94_f82b);
    for t in TYPES {
        let sfx = tessera_cuda::type_suffix(t).unwrap();
        let bs = t.block_size() as usize;
        let (rows, cols, n) = match bs {
            1 => (13, 45, 6),
            32 => (9, 96, 5),
            _ => (5, 512, 6),
        };
        let wv = rng.vec(rows * cols, 1.0);
        let wq = encode(t, &wv);
        let wd = decode(t, &wq, wv.len());
        let rb = wq.len() / rows;
        let x = rng.vec(n * cols, 1.0);
        let want = product_f64(&wd, &x, rows, cols);
        // matmul_<t>(w, row_bytes, rows_total, mat_rows, cols, x, x_stride,
        //   x_mat_stride, n, y, y_stride, tok0): 4 warps a block, 4 tokens.
        let mut y = vec![f32::NAN; n * rows];
        let mut args = [
            A::Bytes(&wq),
            A::U(rb),
            A::U(rows),
            A::U(rows),
            A::U(cols),
            A::In(&x),
            A::U(cols),
            A::U(0),
            A::U(n),
            A::Out(&mut y),
            A::U(rows),
            A::U(0),
        ];
        h.launch2(
            &format!("matmul_{sfx}"),
            (rows.div_ceil(4), n.div_ceil(4)),
            128,
            &mut args,
        );
        let label = format!("matmul {t:?} w[{rows}, {cols}] x[{n}, {cols}] vs f64");
        rep.check(&label, nmse(&y, &want), NMSE_EXACT_PRODUCT);
        // mul_mat_id_<t>(w, row_bytes, rows, n_expert, cols, x, x_per_slot,
        //   ids, k, y, slot0): 3 experts of the same rows, 2 slots a token.
        let (ne, k) = (3, 2);
        let ev = rng.vec(ne * rows * cols, 1.0);
        let eq = encode(t, &ev);
        let ed = decode(t, &eq, ev.len());
        let ids: Vec<usize> = (0..n * k).map(|u| (u * 2 + u / k) % ne).collect();
        let mut want = Vec::new();
        for (u, &e) in ids.iter().enumerate() {
            let xu = &x[(u / k) * cols..(u / k + 1) * cols];
            want.extend(product_f64(
                &ed[e * rows * cols..(e + 1) * rows * cols],
                xu,
                rows,
                cols,
            ));
        }
        let idb = ids_bits(&ids);
        let mut y = vec![f32::NAN; n * k * rows];
        let mut args = [
            A::Bytes(&eq),
            A::U(rb),
            A::U(rows),
            A::U(ne),
            A::U(cols),
            A::In(&x),
            A::U(0),
            A::In(&idb),
            A::U(k),
            A::Out(&mut y),
            A::U(0),
        ];
        h.launch2(
            &format!("mul_mat_id_{sfx}"),
            (rows.div_ceil(4), n * k),
            128,
            &mut args,
        );
        rep.check(
            &format!("mul_mat_id {t:?} {ne} experts, {n}×{k} vs f64"),
            nmse(&y, &want),
            NMSE_EXACT_PRODUCT,
        );
        // get_rows_<t>(w, row_bytes, cols, ids, y, tok0)
        let toks = [3u32, 0, (rows - 1) as u32, 3];
        let tokb: Vec<f32> = toks.iter().map(|&i| f32::from_bits(i)).collect();
        let want: Vec<f32> = toks
            .iter()
            .flat_map(|&i| wd[i as usize * cols..(i as usize + 1) * cols].to_vec())
            .collect();
        let mut y = vec![f32::NAN; toks.len() * cols];
        let mut args = [
            A::Bytes(&wq),
            A::U(rb),
            A::U(cols),
            A::In(&tokb),
            A::Out(&mut y),
            A::U(0),
        ];
        h.launch2(
            &format!("get_rows_{sfx}"),
            (cols.div_ceil(256), toks.len()),
            256,
            &mut args,
        );
        rep.check(&format!("get_rows {t:?}"), nmse(&y, &want), NMSE_COPY);
    }
    rep.finish("products on the host");
}

/// Norms and softmax (block reductions) against the CPU backend.
#[test]
fn norms_and_softmax() {
    let Some((h, _)) = host() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0xa54f_f53a_5f1d_36f1);
    for (rows, cols, group) in [(3, 13, 13), (2, 1536, 1536), (4, 256, 64)] {
        let n = rows * cols;
        let x = rng.vec(n, 3.0);
        let w = rng.vec(group, 1.5);
        let b = rng.vec(group, 0.5);
        let groups = n / group;
        // rms_norm(x, w, y, group, n_groups, eps)
        let mut c = Case::default();
        let tx = c.input("x", rows, cols, x.clone());
        let tw = c.weight("w", GgmlType::F32, [1, 1, group], &w);
        c.node(
            "y",
            Op::RmsNorm {
                x: tx,
                w: Some(tw),
                group,
                eps: 1e-6,
            },
            rows,
            cols,
        );
        let want = cpu(c, vec![0; rows]);
        let mut y = vec![f32::NAN; n];
        let mut args = [
            A::In(&x),
            A::In(&w),
            A::Out(&mut y),
            A::U(group),
            A::U(groups),
            A::F(1e-6),
        ];
        h.launch("rms_norm", groups, 256, &mut args);
        rep.check(
            &format!("rms_norm [{rows}, {cols}] group {group}"),
            nmse(&y, &want),
            NMSE_F32,
        );
        // layer_norm(x, w, b, y, group, n_groups, eps)
        let mut c = Case::default();
        let tx = c.input("x", rows, cols, x.clone());
        let tw = c.weight("w", GgmlType::F32, [1, 1, group], &w);
        let tb = c.weight("b", GgmlType::F32, [1, 1, group], &b);
        let o = Op::LayerNorm {
            x: tx,
            w: Some(tw),
            b: Some(tb),
            group,
            eps: 1e-5,
        };
        c.node("y", o, rows, cols);
        let want = cpu(c, vec![0; rows]);
        let mut y = vec![f32::NAN; n];
        let mut args = [
            A::In(&x),
            A::In(&w),
            A::In(&b),
            A::Out(&mut y),
            A::U(group),
            A::U(groups),
            A::F(1e-5),
        ];
        h.launch("layer_norm", groups, 256, &mut args);
        rep.check(
            &format!("layer_norm [{rows}, {cols}] group {group}"),
            nmse(&y, &want),
            NMSE_F32,
        );
        // softmax(x, y, cols, rows)
        let mut c = Case::default();
        let tx = c.input("x", rows, cols, x.clone());
        c.node("p", Op::Softmax { x: tx }, rows, cols);
        let want = cpu(c, vec![0; rows]);
        let mut y = vec![f32::NAN; n];
        let mut args = [A::In(&x), A::Out(&mut y), A::U(cols), A::U(rows)];
        h.launch("softmax", rows, 256, &mut args);
        rep.check(
            &format!("softmax [{rows}, {cols}]"),
            nmse(&y, &want),
            NMSE_TRANSCENDENTAL,
        );
    }
    rep.finish("norms on the host");
}

/// KV writes and attention over a prompt and decode steps, against the CPU
/// backend (same steps, same cache types).
#[test]
fn attention() {
    let Some((h, _)) = host() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x1f83_d9ab_fb41_bd6b);
    let cases = [
        AttnCase::heads("gqa", 4, 2, 64),
        AttnCase {
            window: Some(4),
            ..AttnCase::heads("window", 2, 2, 64)
        },
        AttnCase {
            softcap: 30.0,
            sinks: true,
            ..AttnCase::heads("softcap+sinks", 2, 1, 64)
        },
        AttnCase {
            head_dim_v: 128,
            ..AttnCase::heads("k192 v128", 2, 1, 192)
        },
    ];
    for a in cases {
        for kv in [KvType::F16, KvType::Q8_0] {
            // The CPU's steps: a prompt of 7, then 3 one-token steps.
            let check = cases::attention(&mut rng, &AttnCase { kv, ..a }, 7, 3);
            let (nh, nkv, hd) = (a.n_head, a.n_head_kv, a.head_dim);
            let hdv = if a.head_dim_v == 0 { hd } else { a.head_dim_v };
            let q8 = kv == KvType::Q8_0;
            let row = |w: usize| if q8 { w / 32 * 34 } else { w * 2 };
            let (k_row, v_row) = (row(nkv * hd), row(nkv * hdv));
            let n_ctx = 32;
            let mut kc = vec![0u8; n_ctx * k_row];
            let mut vc = vec![0u8; n_ctx * v_row];
            let mut host_out = Vec::new();
            // The same values through the kernels: kv_store(x, cache, width,
            // n, row_bytes, first, q8) for K and V, then attention(...).
            for (c, pos) in &check.steps {
                let (p, n) = (pos[0] as usize, pos.len());
                let [q, k, v] = [0, 1, 2].map(|i| &c.inputs[i].1);
                let sink_vals = c.weights.first().map(|w| decode(GgmlType::F32, &w.3, nh));
                for (x, cache, width, rb) in [
                    (k, &mut kc, nkv * hd, k_row),
                    (v, &mut vc, nkv * hdv, v_row),
                ] {
                    let per_row = if q8 { width / 32 } else { width };
                    let mut args = [
                        A::In(x),
                        A::BytesOut(cache),
                        A::U(width),
                        A::U(n),
                        A::U(rb),
                        A::U(p),
                        A::U(q8 as usize),
                    ];
                    h.launch("kv_store", (n * per_row).div_ceil(256), 256, &mut args);
                }
                let posb: Vec<f32> = pos.iter().map(|&x| f32::from_bits(x as u32)).collect();
                let mut o = vec![f32::NAN; n * nh * hdv];
                let mut args = [
                    A::In(q),
                    A::Bytes(&kc),
                    A::Bytes(&vc),
                    match &sink_vals {
                        Some(s) => A::In(s),
                        None => A::U(0),
                    },
                    A::Out(&mut o),
                    A::In(&posb),
                    A::U(nh),
                    A::U(nkv),
                    A::U(hd),
                    A::U(hdv),
                    A::U(p + n),
                    A::U(k_row),
                    A::U(v_row),
                    A::U(q8 as usize),
                    A::U(q8 as usize),
                    A::F(1.0 / (hd as f32).sqrt()),
                    A::F(a.softcap),
                    A::U(a.window.unwrap_or(0)),
                ];
                h.launch2("attention", (nh, n), 128, &mut args);
                host_out.push(o);
            }
            let b: std::sync::Arc<dyn Backend> = std::sync::Arc::new(CpuBackend::new("cpu", 1));
            let want = run_steps(&b, &check.steps, check.kv, ALIGN);
            let worst = host_out
                .iter()
                .zip(&want)
                .map(|(a, w)| nmse(a, &w[0]))
                .fold(0f64, f64::max);
            rep.check(&check.label, worst, TOL.of(check.tol));
        }
    }
    rep.finish("attention on the host");
}
