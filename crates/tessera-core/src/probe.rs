//! How fast a CPU device multiplies, measured with the kernels themselves:
//! the figures `tessera plan` predicts speed from, and `tessera devices`
//! lists.
//!
//! - **Decode** reads every weight once per token: [`gemv_curve`] times
//!   one token through a chain of distinct matrices of a type, at several
//!   matrix sizes (64 KiB … 32 MiB), the chain 256 MiB long so that, as in a
//!   model, each matrix comes from memory, not from cache. Small matrices
//!   pay the fixed cost of a product (threads, the activation's
//!   quantization) and run below the streaming rate of large ones; the
//!   curve holds both.
//! - **Per node**: [`dispatch_secs`] times an empty job on the thread pool,
//!   the fixed cost every graph node pays to start and join its threads.
//! - **Prompt processing** is compute-bound: [`gemm_flops`] times 128
//!   tokens through a cache-sized matrix and gives multiply-adds × 2 per
//!   second.
//!
//! Results are cached per CPU model, thread count and type in
//! `~/.cache/tessera/probe.tsv`, so a plan measures a machine once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tessera_gguf::GgmlType;
use tessera_quant::matmul::{MatmulCtx, Matrix};
use tessera_quant::pool::ThreadPool;

/// Columns of the probe matrices (a multiple of every block size): a
/// model's narrower matrices' width, so that the small ones of the GEMV
/// curve still have rows for every thread.
const COLS: usize = 1024;
/// Bytes of the chain of GEMV probe matrices (several times a server's L3).
const CHAIN_BYTES: usize = 256 << 20;
/// Matrix sizes of the GEMV curve, bytes.
pub const GEMV_SIZES: [usize; 4] = [64 << 10, 512 << 10, 4 << 20, 32 << 20];
/// Rows and tokens of the GEMM probe.
const GEMM_ROWS: usize = 512;
const GEMM_TOKENS: usize = 128;

/// The bytes of one row of `COLS` values of `t`.
fn row_bytes(t: GgmlType) -> usize {
    COLS / t.block_size() as usize * t.type_size() as usize
}

/// One row of `COLS` pseudo-random values quantized to `t`, repeated
/// `rows` times; `None` when `t` has no quantizer.
fn matrix(t: GgmlType, rows: usize) -> Option<Vec<u8>> {
    let mut seed = 0x9E37_79B9u32;
    let row: Vec<f32> = (0..COLS)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed as f32 / u32::MAX as f32 - 0.5) * 0.1
        })
        .collect();
    let mut one = vec![0u8; row_bytes(t)];
    tessera_quant::quantize(t, &row, &mut one).ok()?;
    Some(one.repeat(rows))
}

/// Median time of `reps` runs of `f`, after one warm-up run, in seconds:
/// what a benchmark's mean sees on a busy host, where the best run would
/// be optimistic.
fn median_of(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Seconds one token takes through a matrix of type `t` of about `bytes`
/// bytes, when the matrix is one of a 256 MiB chain of distinct ones, for
/// each size of [`GEMV_SIZES`]: `(matrix bytes, seconds)`. `None`: no
/// quantizer for `t` to build the probe.
pub fn gemv_curve(pool: &ThreadPool, t: GgmlType) -> Option<Vec<(f64, f64)>> {
    GEMV_SIZES
        .iter()
        .map(|&size| {
            let rows = (size / row_bytes(t)).max(8) / 8 * 8;
            let bytes = rows * row_bytes(t);
            let kind = format!("gemv_secs@{size}");
            let secs = cached(pool.n_threads(), t, &kind, || {
                let n = (CHAIN_BYTES / bytes).max(2);
                let data = matrix(t, rows * n)?;
                let x: Vec<f32> = (0..COLS).map(|i| ((i % 97) as f32 - 48.0) * 0.01).collect();
                let mut y = vec![0f32; rows];
                let mut mm = MatmulCtx::new();
                let mut run = || -> Option<()> {
                    for chunk in data.chunks_exact(bytes) {
                        let w = Matrix {
                            ggml_type: t,
                            data: chunk,
                            rows,
                            cols: COLS,
                        };
                        mm.matmul(pool, &w, &x, &mut y).ok()?;
                    }
                    Some(())
                };
                run()?;
                Some(
                    median_of(5, || {
                        run();
                    }) / n as f64,
                )
            })?;
            Some((bytes as f64, secs))
        })
        .collect()
}

/// Floating-point operations per second (2 per multiply-add) of a
/// 128-token batch through a matrix of type `t` on `pool`.
pub fn gemm_flops(pool: &ThreadPool, t: GgmlType) -> Option<f64> {
    cached(pool.n_threads(), t, "gemm_flops", || {
        let data = matrix(t, GEMM_ROWS)?;
        let w = Matrix {
            ggml_type: t,
            data: &data,
            rows: GEMM_ROWS,
            cols: COLS,
        };
        let x: Vec<f32> = (0..GEMM_TOKENS * COLS)
            .map(|i| ((i % 97) as f32 - 48.0) * 0.01)
            .collect();
        let mut y = vec![0f32; GEMM_TOKENS * GEMM_ROWS];
        let mut mm = MatmulCtx::new();
        mm.matmul(pool, &w, &x, &mut y).ok()?;
        let secs = median_of(5, || {
            let _ = mm.matmul(pool, &w, &x, &mut y);
        });
        Some(2.0 * (GEMM_ROWS * COLS * GEMM_TOKENS) as f64 / secs)
    })
}

/// Seconds one decode step's attention takes on `threads` threads for
/// heads of the given shape over `n_kv` cached positions (F16 cache), as
/// the CPU backend runs it.
pub fn attention_secs(threads: usize, cfg: &crate::graph::AttnCfg, n_kv: usize) -> Option<f64> {
    use crate::backend::cpu::ops::{attention, AttnParams, KvType, KvView};
    let kind = format!(
        "attn_secs@{}x{}x{}x{}@{n_kv}",
        cfg.n_head, cfg.n_head_kv, cfg.head_dim, cfg.head_dim_v
    );
    cached(threads, GgmlType::F16, &kind, || {
        let pool = ThreadPool::new(threads.max(1));
        let cells = n_kv.next_multiple_of(256);
        fn view(data: &[u8], n_kv_head: usize, head_dim: usize) -> KvView<'_> {
            KvView {
                data,
                dtype: KvType::F16,
                row_stride_bytes: n_kv_head * head_dim * 2,
                n_kv_head,
                head_dim,
            }
        }
        // Small F16 values (0x2c00 = 0.0625): no infinities, no denormals.
        let k = [0x00u8, 0x2c].repeat(cells * cfg.n_head_kv * cfg.head_dim);
        let v = [0x00u8, 0x2c].repeat(cells * cfg.n_head_kv * cfg.head_dim_v);
        let q = vec![0.01f32; cfg.n_head * cfg.head_dim];
        let mut out = vec![0f32; cfg.n_head * cfg.head_dim_v];
        let p = AttnParams {
            n_tokens: 1,
            n_head: cfg.n_head,
            n_kv_head: cfg.n_head_kv,
            head_dim: cfg.head_dim,
            n_kv,
            kv_cells: 0,
            q_pos: &[n_kv as i32 - 1],
            causal: true,
            window: None,
            scale: cfg.scale,
            softcap: 0.0,
            sinks: None,
        };
        let kv = view(&k, cfg.n_head_kv, cfg.head_dim);
        let vv = view(&v, cfg.n_head_kv, cfg.head_dim_v);
        attention(&pool, &q, kv, vv, &mut out, &p).ok()?;
        Some(
            median_of(5, || {
                for _ in 0..20 {
                    let _ = attention(&pool, &q, kv, vv, &mut out, &p);
                }
            }) / 20.0,
        )
    })
}

/// Seconds the pool takes to run an empty job on every thread: the fixed
/// cost of one graph node.
pub fn dispatch_secs(pool: &ThreadPool) -> f64 {
    const JOBS: usize = 2000;
    let n = pool.n_threads();
    median_of(5, || {
        for _ in 0..JOBS {
            pool.run(n, |i| {
                std::hint::black_box(i);
            });
        }
    }) / JOBS as f64
}

/// Read bandwidth of a plain sweep over a 256 MiB buffer with `threads`
/// threads, bytes/s: what the memory gives, the ceiling of every kernel.
pub fn sweep_bandwidth(threads: usize) -> f64 {
    let words: usize = 32 << 20; // 256 MiB of u64
    let buf: Arc<Vec<u64>> = Arc::new((0..words as u64).collect());
    let threads = threads.max(1);
    let secs = median_of(3, || {
        let sum: u64 = std::thread::scope(|s| {
            let chunk = words.div_ceil(threads);
            let handles: Vec<_> = buf
                .chunks(chunk)
                .map(|c| s.spawn(move || c.iter().fold(0u64, |a, &x| a.wrapping_add(x))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0, u64::wrapping_add)
        });
        std::hint::black_box(sum);
    });
    (words * 8) as f64 / secs
}

type Cache = HashMap<(usize, String, String), f64>;

/// The cache file: `TESSERA_PROBE_CACHE`, else `~/.cache/tessera/probe.tsv`.
fn cache_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TESSERA_PROBE_CACHE") {
        return Some(p.into());
    }
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".cache/tessera/probe.tsv"))
}

/// This CPU's model name and logical core count, so a cache copied to
/// another machine is not used there.
fn cpu_key() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model} ({cores} cores)").replace('\t', " ")
}

fn load_cache() -> Cache {
    let key = cpu_key();
    let text = cache_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let mut out = Cache::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [cpu, threads, ty, kind, value] = f[..] else {
            continue;
        };
        if let (true, Ok(t), Ok(v)) = (cpu == key, threads.parse(), value.parse()) {
            out.insert((t, ty.to_string(), kind.to_string()), v);
        }
    }
    out
}

/// The cached figure, or `measure()` stored for next time.
fn cached(
    threads: usize,
    t: GgmlType,
    kind: &str,
    measure: impl FnOnce() -> Option<f64>,
) -> Option<f64> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(load_cache()));
    let key = (threads, format!("{t:?}"), kind.to_string());
    if let Some(&v) = cache.lock().ok()?.get(&key) {
        return Some(v);
    }
    let v = measure()?;
    cache.lock().ok()?.insert(key.clone(), v);
    if let Some(path) = cache_path() {
        let line = format!("{}\t{}\t{}\t{}\t{v}\n", cpu_key(), key.0, key.1, key.2);
        let _ = path.parent().map(std::fs::create_dir_all);
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_give_positive_figures_and_none_without_a_quantizer() {
        std::env::set_var(
            "TESSERA_PROBE_CACHE",
            std::env::temp_dir().join("tessera-probe-test.tsv"),
        );
        let pool = ThreadPool::new(1);
        let m = matrix(GgmlType::Q4_K, 3).unwrap();
        assert_eq!(m.len(), 3 * COLS / 256 * 144);
        assert!(gemm_flops(&pool, GgmlType::Q8_0).unwrap() > 1e6);
        let curve = gemv_curve(&pool, GgmlType::Q8_0).unwrap();
        assert_eq!(curve.len(), GEMV_SIZES.len());
        assert!(curve.iter().all(|&(b, s)| b > 0.0 && s > 0.0));
        assert!(
            matrix(GgmlType::IQ2_XXS, 1).is_none()
                || gemm_flops(&pool, GgmlType::IQ2_XXS).is_some()
        );
        assert!(sweep_bandwidth(1) > 1e6);
    }
}
