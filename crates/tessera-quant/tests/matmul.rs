//! The matmul drivers against a naive f64 reference, for every weight type
//! with a kernel, at every SIMD level this CPU runs, with 1, 2 and 3 threads.
//!
//! - Shapes: odd row counts (5, 7, 13, 67) and aligned ones (32), 1, 3 and
//!   17 tokens, rows of 3 blocks (and 2 super-blocks for the 256-value
//!   types), plus a wide row (8192) where the token tiles split. Outputs
//!   start as NaN, so an output the driver forgets fails.
//! - Reference: the weights dequantized, the activations converted to the
//!   kernel's activation type and back (the same conversion the driver
//!   makes), dotted in f64. Tolerance [`matmul_tolerance`], relative to
//!   `Σ|w·a|` of the output.
//! - End to end: the same outputs against the f64 dot with the original f32
//!   activations, within `Σ|w_i|·ε_i` where `ε_i` bounds the conversion
//!   error of activation `i` ([`act_error_bound`], per activation type).
//! - `mul_mat_id` against one `matmul` per (token, slot): bit-identical,
//!   since both run the same kernel on the same converted rows.
//! - Decode-exact batches against one product per token: bit-identical.
//! - Every bad shape is an error, never a panic.

use tessera_quant::kernels::{self, DotEntry, SimdLevel};
use tessera_quant::matmul::{self, Experts, MatmulCtx, Matrix};
use tessera_quant::pool::ThreadPool;
use tessera_quant::{dequantize, quantize, GgmlType, QuantError};
use tessera_testkit::rng::SplitMix64 as Rng;

/// Named tolerance: driver output vs the f64 reference on the same
/// converted activations, relative to `Σ|w·a|`.
fn matmul_tolerance(t: GgmlType) -> f64 {
    match t {
        // The m·s term uses the activation's f16 s (see tests/kernels.rs).
        GgmlType::Q4_1 | GgmlType::Q5_1 => 2e-3,
        _ => 2e-5,
    }
}

/// Named bound: how far one converted activation value may be from the f32
/// value `v`, given `amax`, the largest magnitude in its quantization block.
/// Q8_0/Q8_1 round to `d = amax / 127` stored as f16 (`q` was computed with
/// the unrounded `d`: at most `d / 2 + 127 · d · 2⁻¹¹`); Q8_K to an f32 `d`
/// (`d / 2`, `d` when the value lands on the clamp at 127); F16 and BF16 round
/// to their precision; F32 is exact.
fn act_error_bound(act: GgmlType, v: f32, amax: f32) -> f64 {
    let (v, amax) = (f64::from(v.abs()), f64::from(amax));
    match act {
        GgmlType::F32 => 0.0,
        GgmlType::F16 => v * 2f64.powi(-11) + 6e-8,
        GgmlType::BF16 => v * 2f64.powi(-8),
        GgmlType::Q8_K => amax / 127.0,
        _ => amax / 127.0 * (0.5 + 127.0 * 2f64.powi(-11)) * 1.001,
    }
}

fn random_values(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(n);
    while x.len() < n {
        let scale = 10f32.powf(rng.next_signed_unit() - 0.5);
        for _ in 0..32.min(n - x.len()) {
            x.push(rng.next_signed_unit() * scale);
        }
    }
    x
}

/// `x` as type `t` (`None` if tessera cannot make it).
fn convert(t: GgmlType, x: &[f32]) -> Option<Vec<u8>> {
    match t {
        GgmlType::F32 => Some(bytemuck::cast_slice(x).to_vec()),
        GgmlType::F16 => Some(
            x.iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
        ),
        GgmlType::BF16 => Some(
            x.iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        ),
        _ => {
            let mut out = vec![0u8; x.len() / t.block_size() as usize * t.type_size() as usize];
            quantize(t, x, &mut out).ok()?;
            Some(out)
        }
    }
}

/// Random weights of type `t`: quantized values, or random bytes with every
/// half float kept finite for types without a quantizer (as in tests/kernels.rs).
fn weights(rng: &mut Rng, t: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let x = random_values(rng, rows * cols);
    if let Some(w) = convert(t, &x) {
        return w;
    }
    let n = rows * cols / t.block_size() as usize * t.type_size() as usize;
    (0..n)
        .map(|i| {
            let b = rng.next_u64() as u8;
            if i % 2 == 1 {
                b & !0x40
            } else {
                b
            }
        })
        .collect()
}

fn to_f32(t: GgmlType, b: &[u8], n: usize) -> Option<Vec<f32>> {
    let mut out = vec![0f32; n];
    dequantize(t, b, &mut out).ok()?;
    Some(out)
}

fn entries() -> Vec<&'static DotEntry> {
    GgmlType::ALL
        .iter()
        .filter_map(|&t| kernels::dot_entry(t))
        .collect()
}

fn pools() -> Vec<ThreadPool> {
    [1, 2, 3].into_iter().map(ThreadPool::new).collect()
}

/// Column counts for `t`: 3 blocks, and 2 super-blocks of 256 for 256-value
/// types (where 3 blocks is already 768).
fn col_counts(t: GgmlType) -> Vec<usize> {
    let bs = t.block_size() as usize;
    if bs == 1 {
        vec![96, 37]
    } else {
        vec![3 * bs]
    }
}

/// Checks `y` (`[n_tokens, rows]`) against the f64 references; returns failures.
#[allow(clippy::too_many_arguments)]
fn check(
    what: &str,
    e: &DotEntry,
    wf: &[f32],
    x: &[f32],
    rows: usize,
    cols: usize,
    y: &[f32],
    fails: &mut Vec<String>,
) {
    let n_tokens = x.len() / cols;
    let a = convert(e.act, x).expect("activation conversion");
    let af = to_f32(e.act, &a, x.len()).expect("activation dequantization");
    let ab = e.act.block_size() as usize;
    let eps: Vec<f64> = x
        .chunks(ab)
        .flat_map(|blk| {
            let amax = blk.iter().fold(0f32, |m, v| m.max(v.abs()));
            blk.iter().map(move |&v| act_error_bound(e.act, v, amax))
        })
        .collect();
    for t in 0..n_tokens {
        for r in 0..rows {
            let wr = &wf[r * cols..(r + 1) * cols];
            let (mut dot, mut mag, mut exact, mut bound) = (0f64, 0f64, 0f64, 0f64);
            for c in 0..cols {
                let p = f64::from(wr[c]) * f64::from(af[t * cols + c]);
                dot += p;
                mag += p.abs();
                exact += f64::from(wr[c]) * f64::from(x[t * cols + c]);
                bound += f64::from(wr[c]).abs() * eps[t * cols + c];
            }
            let got = f64::from(y[t * rows + r]);
            let tol = matmul_tolerance(e.weight) * mag + 1e-30;
            if !(got.is_finite() && (got - dot).abs() <= tol) {
                fails.push(format!(
                    "{what}: y[{t}, {r}] = {got}, reference {dot} (mag {mag:.3e}, tol {:.0e})",
                    matmul_tolerance(e.weight)
                ));
                return;
            }
            if (got - exact).abs() > bound + tol {
                fails.push(format!(
                    "{what}: y[{t}, {r}] = {got}, f32-activation dot {exact}: error beyond the {} conversion bound {bound:.3e}",
                    e.act
                ));
                return;
            }
        }
    }
}

#[test]
fn matmul_matches_the_f64_reference_for_every_type_level_and_thread_count() {
    let pools = pools();
    let mut fails = Vec::new();
    let mut skipped = Vec::new();
    let mut checked = 0;
    for e in entries() {
        let mut rng = Rng::new(0xc0ffee ^ e.weight as u64);
        for cols in col_counts(e.weight) {
            for rows in [5, 7, 13, 32, 67] {
                let w = weights(&mut rng, e.weight, rows, cols);
                let Some(wf) = to_f32(e.weight, &w, rows * cols) else {
                    skipped.push(format!("{}: no dequantizer, no reference", e.weight));
                    continue;
                };
                for n_tokens in [1, 3, 17] {
                    let x = random_values(&mut rng, n_tokens * cols);
                    for level in SimdLevel::available() {
                        let mut ctx = MatmulCtx::with_level(level);
                        for pool in &pools {
                            let mut y = vec![f32::NAN; n_tokens * rows];
                            let m = Matrix {
                                ggml_type: e.weight,
                                data: &w,
                                rows,
                                cols,
                            };
                            ctx.matmul(pool, &m, &x, &mut y).unwrap();
                            let what = format!(
                                "{} {}×{} × {n_tokens} tokens, {}, {} threads",
                                e.weight,
                                rows,
                                cols,
                                level.name(),
                                pool.n_threads()
                            );
                            check(&what, e, &wf, &x, rows, cols, &y, &mut fails);
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    skipped.dedup();
    for s in &skipped {
        eprintln!("skipped: {s}");
    }
    eprintln!("{checked} matmuls checked");
    assert!(
        fails.is_empty(),
        "{} failures:\n{}",
        fails.len(),
        fails.join("\n")
    );
}

/// Decode-exact batches ([`MatmulCtx::set_decode_exact`]) give, bit for
/// bit, the outputs of one product per token, for every type at every
/// level and thread count, with 1 to 17 tokens (past the pair chain's 4
/// and the tiled and widened paths' 8) on 64 rows (repacked Q4_K, 8-row
/// groups) and 13. With it off, the batched orders are allowed to differ.
#[test]
fn decode_exact_batches_equal_one_product_per_token() {
    let pools = pools();
    let mut fails = Vec::new();
    let mut checked = 0;
    for e in entries() {
        let mut rng = Rng::new(0x5eed ^ e.weight as u64);
        let bs = e.weight.block_size() as usize;
        let cols = if bs == 1 { 96 } else { 2 * bs.max(128) };
        for rows in [64, 13] {
            let w = weights(&mut rng, e.weight, rows, cols);
            let m = Matrix {
                ggml_type: e.weight,
                data: &w,
                rows,
                cols,
            };
            let x = random_values(&mut rng, 17 * cols);
            for level in SimdLevel::available() {
                for pool in &pools {
                    let mut ctx = MatmulCtx::with_level(level);
                    let mut one = vec![f32::NAN; 17 * rows];
                    for (t, y) in one.chunks_mut(rows).enumerate() {
                        ctx.matmul(pool, &m, &x[t * cols..(t + 1) * cols], y)
                            .unwrap();
                    }
                    ctx.set_decode_exact(true);
                    for n in 1..=17 {
                        let mut y = vec![f32::NAN; n * rows];
                        ctx.matmul(pool, &m, &x[..n * cols], &mut y).unwrap();
                        checked += 1;
                        if let Some(i) = (0..n * rows).find(|&i| y[i].to_bits() != one[i].to_bits())
                        {
                            fails.push(format!(
                                "{} {rows}×{cols} × {n} tokens, {}, {} threads: token {} row {}: {} vs one-token {}",
                                e.weight,
                                level.name(),
                                pool.n_threads(),
                                i / rows,
                                i % rows,
                                y[i],
                                one[i]
                            ));
                        }
                    }
                }
            }
        }
    }
    eprintln!("{checked} decode-exact batches checked");
    assert!(
        fails.is_empty(),
        "{} failures:\n{}",
        fails.len(),
        fails.join("\n")
    );
}

/// A wide row: the token tiles (about 128 KiB of activations) split 17
/// tokens, and the row blocks split 67 rows.
#[test]
fn wide_rows_split_into_token_tiles_and_row_blocks() {
    let pools = pools();
    let mut fails = Vec::new();
    for t in [
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_K,
    ] {
        let Some(e) = kernels::dot_entry(t) else {
            eprintln!("skipped: {t} has no kernel yet");
            continue;
        };
        let mut rng = Rng::new(7 ^ t as u64);
        let (rows, cols, n_tokens) = (67, 8192, 17);
        let w = weights(&mut rng, t, rows, cols);
        let wf = to_f32(t, &w, rows * cols).unwrap();
        let x = random_values(&mut rng, n_tokens * cols);
        for pool in &pools {
            let mut y = vec![f32::NAN; n_tokens * rows];
            matmul::matmul(pool, t, &w, rows, cols, &x, &mut y).unwrap();
            let what = format!(
                "{t} {rows}×{cols} × {n_tokens}, {} threads",
                pool.n_threads()
            );
            check(&what, e, &wf, &x, rows, cols, &y, &mut fails);
        }
    }
    assert!(
        fails.is_empty(),
        "{} failures:\n{}",
        fails.len(),
        fails.join("\n")
    );
}

#[test]
fn mul_mat_id_equals_one_matmul_per_selected_expert() {
    let pools = pools();
    let mut ctx = MatmulCtx::new();
    for t in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::F16,
        GgmlType::Q6_K,
    ] {
        if kernels::dot_entry(t).is_none() {
            eprintln!("skipped: {t} has no kernel yet");
            continue;
        }
        let mut rng = Rng::new(99 ^ t as u64);
        let (n_expert, rows, cols, n_used) = (6, 13, 2 * 256, 2);
        let w = weights(&mut rng, t, n_expert * rows, cols);
        let per_expert = w.len() / n_expert;
        let experts = Experts {
            ggml_type: t,
            data: &w,
            n_expert,
            rows,
            cols,
        };
        for n_tokens in [1, 3, 17] {
            // Two distinct experts per token; expert 5 never used.
            let ids: Vec<i32> = (0..n_tokens)
                .flat_map(|_| {
                    let a = rng.below(5);
                    let b = (a + 1 + rng.below(4)) % 5;
                    [a as i32, b as i32]
                })
                .collect();
            for per_slot in [false, true] {
                let x_rows = if per_slot {
                    n_tokens * n_used
                } else {
                    n_tokens
                };
                let x = random_values(&mut rng, x_rows * cols);
                for pool in &pools {
                    let mut y = vec![f32::NAN; n_tokens * n_used * rows];
                    ctx.mul_mat_id(pool, &experts, &x, &ids, n_used, &mut y)
                        .unwrap();
                    for tok in 0..n_tokens {
                        for s in 0..n_used {
                            let e = ids[tok * n_used + s] as usize;
                            let xr = if per_slot { tok * n_used + s } else { tok };
                            let mut want = vec![f32::NAN; rows];
                            matmul::matmul(
                                pool,
                                t,
                                &w[e * per_expert..(e + 1) * per_expert],
                                rows,
                                cols,
                                &x[xr * cols..(xr + 1) * cols],
                                &mut want,
                            )
                            .unwrap();
                            let got = &y[(tok * n_used + s) * rows..][..rows];
                            let same = got
                                .iter()
                                .zip(&want)
                                .all(|(a, b)| a.to_bits() == b.to_bits());
                            assert!(
                                same,
                                "{t}: token {tok} slot {s} (expert {e}), {n_tokens} tokens, per_slot {per_slot}, {} threads:\n got {got:?}\nwant {want:?}",
                                pool.n_threads()
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    let pool = ThreadPool::new(2);
    let t = GgmlType::Q4_0;
    let (rows, cols) = (4, 64);
    let w = vec![0u8; rows * cols / 32 * 18];
    let x = vec![0f32; 2 * cols];
    let mut y = vec![0f32; 2 * rows];
    let shape = |r: Result<(), QuantError>| matches!(r, Err(QuantError::Shape { .. }));
    assert!(shape(matmul::matmul(
        &pool,
        t,
        &w[1..],
        rows,
        cols,
        &x,
        &mut y
    )));
    assert!(shape(matmul::matmul(
        &pool,
        t,
        &w,
        rows,
        48,
        &x[..96],
        &mut y
    )));
    assert!(shape(matmul::matmul(
        &pool,
        t,
        &w,
        rows,
        cols,
        &x[1..],
        &mut y
    )));
    assert!(shape(matmul::matmul(
        &pool,
        t,
        &w,
        rows,
        cols,
        &x,
        &mut y[1..]
    )));
    assert!(shape(matmul::matmul(&pool, t, &w, rows, 0, &x, &mut y)));
    assert!(shape(matmul::matmul(
        &pool,
        t,
        &w,
        usize::MAX,
        cols,
        &x,
        &mut y
    )));
    assert!(matches!(
        matmul::matmul(&pool, GgmlType::I32, &w, rows, cols, &x, &mut y),
        Err(QuantError::Unsupported { .. })
    ));
    matmul::matmul(&pool, t, &w, rows, cols, &x, &mut y).unwrap();
    // Zero tokens: nothing to do.
    matmul::matmul(&pool, t, &w, rows, cols, &[], &mut []).unwrap();

    let experts = Experts {
        ggml_type: t,
        data: &w,
        n_expert: 2,
        rows: 2,
        cols,
    };
    let mut y = vec![0f32; 2 * 2 * 2];
    let mut ctx = MatmulCtx::new();
    let mm = |ctx: &mut MatmulCtx, ids: &[i32], x: &[f32], y: &mut [f32]| {
        ctx.mul_mat_id(&pool, &experts, x, ids, 2, y)
    };
    mm(&mut ctx, &[0, 1, 1, 0], &x, &mut y).unwrap();
    assert!(shape(mm(&mut ctx, &[0, 2, 1, 0], &x, &mut y)));
    assert!(shape(mm(&mut ctx, &[0, -1, 1, 0], &x, &mut y)));
    assert!(shape(mm(&mut ctx, &[0, 1, 1], &x, &mut y)));
    assert!(shape(mm(&mut ctx, &[0, 1, 1, 0], &x[..cols + 32], &mut y)));
    assert!(shape(mm(&mut ctx, &[0, 1, 1, 0], &x, &mut y[1..])));
    assert!(shape(ctx.mul_mat_id(
        &pool,
        &experts,
        &x,
        &[0, 1],
        0,
        &mut y
    )));
    let short = Experts {
        data: &w[..w.len() - 1],
        ..experts
    };
    assert!(shape(ctx.mul_mat_id(
        &pool,
        &short,
        &x,
        &[0, 1, 1, 0],
        2,
        &mut y
    )));
}

/// Counts the allocations made on the current thread.
struct CountingAlloc;

thread_local! {
    static ALLOCS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a const-initialised
// thread local, which does not allocate.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        // SAFETY: the caller's contract.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, n: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract.
        unsafe { std::alloc::System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocs() -> usize {
    ALLOCS.with(|c| c.get())
}

#[test]
fn a_repeated_matmul_allocates_nothing() {
    let mut rng = Rng::new(5);
    let (rows, cols) = (64, 512);
    for t in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::F16,
        GgmlType::F32,
        GgmlType::Q4_K,
    ] {
        if kernels::dot_entry(t).is_none() {
            continue;
        }
        let w = weights(&mut rng, t, rows, cols);
        let m = Matrix {
            ggml_type: t,
            data: &w,
            rows,
            cols,
        };
        for threads in [1, 2] {
            let pool = ThreadPool::new(threads);
            let mut ctx = MatmulCtx::new();
            for n_tokens in [1, 5] {
                let x = random_values(&mut rng, n_tokens * cols);
                let mut y = vec![f32::NAN; n_tokens * rows];
                ctx.matmul(&pool, &m, &x, &mut y).unwrap();
                let before = allocs();
                ctx.matmul(&pool, &m, &x, &mut y).unwrap();
                matmul::matmul(&pool, t, &w, rows, cols, &x, &mut y).unwrap();
                matmul::matmul(&pool, t, &w, rows, cols, &x, &mut y).unwrap();
                let during = allocs() - before;
                // The thread-local context's first use above may allocate once.
                let before = allocs();
                matmul::matmul(&pool, t, &w, rows, cols, &x, &mut y).unwrap();
                ctx.matmul(&pool, &m, &x, &mut y).unwrap();
                assert_eq!(
                    allocs() - before,
                    0,
                    "{t}: {n_tokens} tokens, {threads} threads allocated ({during} in warm-up)"
                );
            }
        }
    }
}
