//! How fast a CPU device multiplies, measured with the kernels themselves:
//! the figures `tessera plan` predicts speed from, and `tessera devices`
//! lists.
//!
//! - **Decode** reads every weight once per token: [`gemv_bandwidth`] times
//!   one token through a 256 MiB matrix of a type (larger than the last
//!   level cache) and gives bytes per second — the rate at which the kernel of
//!   that type streams weights, which is lower than a plain memory sweep
//!   ([`sweep_bandwidth`]) because the kernel also has to unpack and
//!   multiply.
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

/// Columns of the probe matrices (a multiple of every block size).
const COLS: usize = 4096;
/// Bytes of the GEMV probe matrix (several times a server's L3).
const GEMV_BYTES: usize = 256 << 20;
/// Rows and tokens of the GEMM probe.
const GEMM_ROWS: usize = 512;
const GEMM_TOKENS: usize = 128;

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Gemv,
    Gemm,
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
    let row_bytes = COLS / t.block_size() as usize * t.type_size() as usize;
    let mut one = vec![0u8; row_bytes];
    tessera_quant::quantize(t, &row, &mut one).ok()?;
    Some(one.repeat(rows))
}

/// Best time of `reps` runs of `f`, after one warm-up run, in seconds.
fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// `tokens` tokens through `rows` rows of type `t` on `pool`: the seconds
/// it takes and the matrix bytes.
fn time_matmul(pool: &ThreadPool, t: GgmlType, rows: usize, tokens: usize) -> Option<(f64, usize)> {
    let data = matrix(t, rows)?;
    let w = Matrix {
        ggml_type: t,
        data: &data,
        rows,
        cols: COLS,
    };
    let x: Vec<f32> = (0..tokens * COLS)
        .map(|i| ((i % 97) as f32 - 48.0) * 0.01)
        .collect();
    let mut y = vec![0f32; tokens * rows];
    let mut mm = MatmulCtx::new();
    mm.matmul(pool, &w, &x, &mut y).ok()?;
    let secs = best_of(3, || {
        let _ = mm.matmul(pool, &w, &x, &mut y);
    });
    Some((secs, data.len()))
}

/// Bytes per second at which one token streams through a matrix of type
/// `t` on `pool` (`None`: no quantizer for `t` to build the probe).
pub fn gemv_bandwidth(pool: &ThreadPool, t: GgmlType) -> Option<f64> {
    cached(pool.n_threads(), t, Kind::Gemv, || {
        let row_bytes = COLS / t.block_size() as usize * t.type_size() as usize;
        let rows = (GEMV_BYTES / row_bytes).div_ceil(8) * 8;
        let (secs, bytes) = time_matmul(pool, t, rows, 1)?;
        Some(bytes as f64 / secs)
    })
}

/// Floating-point operations per second (2 per multiply-add) of a
/// 128-token batch through a matrix of type `t` on `pool`.
pub fn gemm_flops(pool: &ThreadPool, t: GgmlType) -> Option<f64> {
    cached(pool.n_threads(), t, Kind::Gemm, || {
        let (secs, _) = time_matmul(pool, t, GEMM_ROWS, GEMM_TOKENS)?;
        Some(2.0 * (GEMM_ROWS * COLS * GEMM_TOKENS) as f64 / secs)
    })
}

/// Seconds the pool takes to run an empty job on every thread: the fixed
/// cost of one graph node.
pub fn dispatch_secs(pool: &ThreadPool) -> f64 {
    const JOBS: usize = 2000;
    let n = pool.n_threads();
    best_of(3, || {
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
    let secs = best_of(2, || {
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

type Cache = HashMap<(usize, String, &'static str), f64>;

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Gemv => "gemv_bytes_per_s",
        Kind::Gemm => "gemm_flops",
    }
}

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
        let kind = match kind {
            "gemv_bytes_per_s" => kind_name(Kind::Gemv),
            "gemm_flops" => kind_name(Kind::Gemm),
            _ => continue,
        };
        if let (true, Ok(t), Ok(v)) = (cpu == key, threads.parse(), value.parse()) {
            out.insert((t, ty.to_string(), kind), v);
        }
    }
    out
}

/// The cached figure, or `measure()` stored for next time.
fn cached(
    threads: usize,
    t: GgmlType,
    kind: Kind,
    measure: impl FnOnce() -> Option<f64>,
) -> Option<f64> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(load_cache()));
    let key = (threads, format!("{t:?}"), kind_name(kind));
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
        assert!(
            matrix(GgmlType::IQ2_XXS, 1).is_none()
                || gemm_flops(&pool, GgmlType::IQ2_XXS).is_some()
        );
        assert!(sweep_bandwidth(1) > 1e6);
    }
}
