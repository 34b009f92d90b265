//! `tessera-quant-bench`: memory bandwidth and matmul speed per weight type.
//!
//! ```text
//! cargo run --release -p tessera-quant --bin tessera-quant-bench -- [options]
//!   --types q4_0,q8_0,…   weight types (default: every type with a dot kernel)
//!   --threads 1,2         pool sizes (default: 1 and 2)
//!   --tokens 64           tokens of the matrix-matrix product
//!   --shapes 576x1536,…   rows×cols (default: 576x1536, 2048x8192, 4096x4096)
//!   --cold-mib 256        size of the weight set the cold GEMV streams through
//!   --bw-mib 1024         size of the bandwidth buffer
//!   --quick               fewer repetitions (a smoke run, not for figures)
//!   --no-gemm             GEMV and experts only
//!   --no-repack           Q4_K in `vec_dot`'s order, not the repacked one (A/B)
//!   --rounds 3            paired (read, GEMV cold) rounds per row
//! ```
//!
//! What it measures (median of several runs, after a warm-up run):
//! - **Read bandwidth**: the sum of a 1 GiB buffer of u64 (256-bit loads
//!   with AVX2), split in 8 MiB tasks over the same [`ThreadPool`] the
//!   matmuls use: the decode speed limit of this machine. Each task is read
//!   as one sequential stream (STREAM-like) and as 4 interleaved streams
//!   (the GEMV kernels read several rows at once); the second is faster on
//!   this machine. The GEMVs are given as a % of both.
//! - **GEMV cold** (one token): the matrix is copied enough times to make
//!   `--cold-mib` (default 256 MiB, far beyond any L3), and one run
//!   multiplies every copy in turn, like the layers of a model: weight bytes
//!   / time. Just before, the same pool sums those same bytes ("read", the
//!   speed limit at that moment; 1 and 4 streams), and the GEMV is given as
//!   a % of each: on a
//!   machine shared with other work the two are measured under the same
//!   conditions, where the 1 GiB figure at the start may be from a quieter
//!   or busier moment. This pair is measured `--rounds` times (default 3)
//!   and the table gives the medians: of the read, of the GEMV, and of the
//!   per-round ratios (on a host shared with other VMs the bandwidth moves
//!   by ±15 % from one second to the next).
//! - **GEMV hot**: the same matrix again and again (it stays in cache if it
//!   fits): the kernels' compute speed.
//! - **GEMM** (`--tokens`, default 64): 2·rows·cols·tokens / time, one matrix.
//! - **Experts**: `mul_mat_id` on 8 experts of 1408×2048 with 4 tokens × 2
//!   experts each (every expert used once), cold as above; GB/s over the
//!   selected experts' bytes, and GFLOP/s.
//!
//! The time includes converting the activations (the matmul does that), as
//! in a real step. Weights are random values through the reference
//! quantizer (16 rows quantized, then repeated: the kernels' speed does not
//! depend on the values), or random bytes with finite scales for the types
//! tessera cannot quantize.

use std::time::{Duration, Instant};

use tessera_quant::kernels::{self, SimdLevel};
use tessera_quant::matmul::{Experts, MatmulCtx, Matrix};
use tessera_quant::pool::ThreadPool;
use tessera_quant::{quantize, GgmlType};

struct Opts {
    types: Vec<GgmlType>,
    threads: Vec<usize>,
    tokens: usize,
    shapes: Vec<(usize, usize)>,
    cold_bytes: usize,
    bw_bytes: usize,
    quick: bool,
    gemm: bool,
    repack: bool,
    rounds: usize,
}

fn parse_list<T>(s: &str, f: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    s.split(',')
        .map(|p| f(p.trim()).ok_or_else(|| format!("cannot parse {p:?}")))
        .collect()
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        types: GgmlType::ALL
            .iter()
            .copied()
            .filter(|&t| kernels::dot_entry(t).is_some())
            .collect(),
        threads: vec![1, 2],
        tokens: 64,
        shapes: vec![(576, 1536), (2048, 8192), (4096, 4096)],
        cold_bytes: 256 << 20,
        bw_bytes: 1 << 30,
        quick: false,
        gemm: true,
        repack: true,
        rounds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--types" => {
                o.types = parse_list(&val()?, |s| {
                    GgmlType::ALL
                        .iter()
                        .copied()
                        .find(|t| t.name().eq_ignore_ascii_case(s))
                })?
            }
            "--threads" => o.threads = parse_list(&val()?, |s| s.parse().ok())?,
            "--tokens" => o.tokens = val()?.parse().map_err(|e| format!("--tokens: {e}"))?,
            "--shapes" => {
                o.shapes = parse_list(&val()?, |s| {
                    let (r, c) = s.split_once('x')?;
                    Some((r.parse().ok()?, c.parse().ok()?))
                })?
            }
            "--cold-mib" => {
                o.cold_bytes = val()?
                    .parse::<usize>()
                    .map_err(|e| format!("--cold-mib: {e}"))?
                    << 20
            }
            "--bw-mib" => {
                o.bw_bytes = val()?
                    .parse::<usize>()
                    .map_err(|e| format!("--bw-mib: {e}"))?
                    << 20
            }
            "--quick" => o.quick = true,
            "--no-gemm" => o.gemm = false,
            "--no-repack" => o.repack = false,
            "--rounds" => {
                o.rounds = val()?
                    .parse::<usize>()
                    .map_err(|e| format!("--rounds: {e}"))?
                    .max(1)
            }
            "-h" | "--help" => {
                println!("{}", HELP);
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a:?} (try --help)")),
        }
    }
    Ok(o)
}

const HELP: &str = "tessera-quant-bench [--types q4_0,…] [--threads 1,2] [--tokens 64] \
[--shapes 576x1536,…] [--cold-mib 256] [--bw-mib 1024] [--quick] [--no-gemm] [--no-repack] [--rounds 3]";

/// Median seconds of `f`, after one warm-up run: at least `min` runs, more
/// while under `budget`, at most `max`.
fn measure(min: usize, max: usize, budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < max && (times.len() < min || start.elapsed() < budget) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// `rows × cols` weights of type `t`: 16 random rows made once, repeated.
fn make_weights(rng: &mut Rng, t: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let row_bytes = cols / t.block_size() as usize * t.type_size() as usize;
    let k = 16.min(rows);
    let x: Vec<f32> = (0..k * cols).map(|_| rng.unit()).collect();
    let mut tile = vec![0u8; k * row_bytes];
    let made = match t {
        GgmlType::F32 => {
            tile.copy_from_slice(bytemuck::cast_slice(&x));
            true
        }
        GgmlType::F16 => {
            for (d, &v) in tile.chunks_exact_mut(2).zip(&x) {
                d.copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
            }
            true
        }
        GgmlType::BF16 => {
            for (d, &v) in tile.chunks_exact_mut(2).zip(&x) {
                d.copy_from_slice(&half::bf16::from_f32(v).to_le_bytes());
            }
            true
        }
        _ => quantize(t, &x, &mut tile).is_ok(),
    };
    if !made {
        // Random bytes; bit 14 of every f16 cleared keeps the scales finite.
        for (i, b) in tile.iter_mut().enumerate() {
            *b = rng.next() as u8 & if i % 2 == 1 { !0x40 } else { 0xff };
        }
    }
    let mut w = Vec::with_capacity(rows * row_bytes);
    while w.len() < rows * row_bytes {
        let take = (rows * row_bytes - w.len()).min(tile.len());
        w.extend_from_slice(&tile[..take]);
    }
    w
}

/// `copies` copies of `w` back to back (at least `bytes` in all), in u64
/// words so that the read test can sum the very same memory.
fn cold_copies(w: &[u8], bytes: usize) -> (Vec<u64>, usize) {
    let copies = bytes.div_ceil(w.len()).max(1);
    let mut words = vec![0u64; (copies * w.len()).div_ceil(8)];
    let b: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
    for c in b.chunks_exact_mut(w.len()) {
        c.copy_from_slice(w);
    }
    (words, copies)
}

/// Read bandwidth in GB/s: sum of `buf` in 8 MiB tasks over `pool`, each
/// task read as `streams` interleaved sequential streams (its 8 MiB cut in
/// `streams` parts read in lockstep). One stream is the classic STREAM-like
/// read; several streams per core is what the GEMV tiles do (4 rows at a
/// time) and reads faster on some machines (here, ~1.5×), so the limit a
/// GEMV is compared with uses [`STREAMS`].
fn bandwidth(pool: &ThreadPool, buf: &[u64], streams: usize, quick: bool) -> f64 {
    const TASK: usize = (8 << 20) / 8;
    let n_tasks = buf.len().div_ceil(TASK);
    let sink = std::sync::atomic::AtomicU64::new(0);
    let secs = measure(
        if quick { 2 } else { 7 },
        15,
        Duration::from_secs(2),
        || {
            pool.run(n_tasks, |t| {
                let part = &buf[t * TASK..((t + 1) * TASK).min(buf.len())];
                sink.fetch_add(sum(part, streams), std::sync::atomic::Ordering::Relaxed);
            })
        },
    );
    std::hint::black_box(sink.into_inner());
    (buf.len() * 8) as f64 / secs / 1e9
}

/// `rounds` rounds of (read GB/s of `buf` as 1 and as [`STREAMS`] streams,
/// then `cold()` GB/s): the medians of each and of the per-round ratios (%).
fn paired(
    rounds: usize,
    pool: &ThreadPool,
    buf: &[u64],
    quick: bool,
    mut cold: impl FnMut() -> f64,
) -> Paired {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut v: [Vec<f64>; 5] = Default::default();
    for _ in 0..rounds {
        let read1 = bandwidth(pool, buf, 1, quick);
        let read = bandwidth(pool, buf, STREAMS, quick);
        let c = cold();
        for (v, x) in v
            .iter_mut()
            .zip([read1, read, c, 100.0 * c / read1, 100.0 * c / read])
        {
            v.push(x);
        }
    }
    let [read1, read, cold, pct1, pct] = v.map(median);
    Paired {
        read1,
        read,
        cold,
        pct1,
        pct,
    }
}

/// Medians of the paired rounds: the STREAM-like read (1 stream per task),
/// the 4-stream read, the cold GEMV, and the GEMV's % of each read.
struct Paired {
    read1: f64,
    read: f64,
    cold: f64,
    pct1: f64,
    pct: f64,
}

/// Streams per task of the read test the GEMVs are compared with.
const STREAMS: usize = 4;

/// Wrapping sum of `v` read as `streams` interleaved parts, with 256-bit
/// loads where the CPU has AVX2 (the loads the kernels use), so that the
/// loads, not the adds, are the limit.
fn sum(v: &[u64], streams: usize) -> u64 {
    let streams = streams.clamp(1, 8);
    // Each part a whole number of 16-word steps; the rest summed plainly.
    let part = v.len() / streams / 16 * 16;
    let rest: u64 = v[part * streams..]
        .iter()
        .fold(0u64, |x, &y| x.wrapping_add(y));
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present; streams * part <= v.len().
        return rest.wrapping_add(unsafe { sum_avx2(v, streams, part) });
    }
    let mut acc = 0u64;
    for i in 0..part {
        for s in 0..streams {
            acc = acc.wrapping_add(v[s * part + i]);
        }
    }
    acc.wrapping_add(rest)
}

/// # Safety
/// AVX2 present; `streams * part <= v.len()`, `part` a multiple of 16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_avx2(v: &[u64], streams: usize, part: usize) -> u64 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_si256(); 8];
    let mut i = 0;
    while i < part {
        for s in 0..streams {
            // SAFETY: s * part + i + 16 <= streams * part <= v.len().
            let p = unsafe { v.as_ptr().add(s * part + i) };
            for j in 0..4 {
                // SAFETY: as above, 4 words per load.
                let x = unsafe { _mm256_loadu_si256(p.add(4 * j).cast()) };
                let k = (4 * s + j) % 8;
                acc[k] = _mm256_add_epi64(acc[k], x);
            }
        }
        i += 16;
    }
    let s = acc[1..].iter().fold(acc[0], |x, &y| _mm256_add_epi64(x, y));
    let mut out = [0u64; 4];
    // SAFETY: 32 bytes into a 32-byte array.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), s) };
    out.iter().fold(0u64, |x, &y| x.wrapping_add(y))
}

/// The variant that runs for `t` on this CPU.
fn level_of(t: GgmlType) -> &'static str {
    let e = kernels::dot_entry(t).expect("a kernel");
    let top = SimdLevel::detect();
    if top >= SimdLevel::Avx512 && e.avx512.is_some() {
        "avx512"
    } else if top >= SimdLevel::Avx2 && e.avx2.is_some() {
        "avx2"
    } else {
        "scalar"
    }
}

struct Row {
    t: GgmlType,
    shape: String,
    mib: f64,
    threads: usize,
    /// Read bandwidth of the cold set, measured just before the GEMV.
    bw: Paired,
    hot: f64,
    gflops: Option<f64>,
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}\n{HELP}");
            std::process::exit(2);
        }
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "# tessera-quant-bench: {cpu}, {} logical CPUs, best SIMD level {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        SimdLevel::detect().name()
    );
    let pools: Vec<ThreadPool> = o.threads.iter().map(|&n| ThreadPool::new(n)).collect();
    let (min_reps, max_reps, budget) = if o.quick {
        (2, 5, Duration::from_millis(200))
    } else {
        (5, 25, Duration::from_secs(1))
    };

    // Bandwidth.
    {
        let buf: Vec<u64> = (0..o.bw_bytes / 8).map(|i| i as u64 * 0x9e37).collect();
        println!(
            "\n## Read bandwidth (sum of a {} MiB buffer, 8 MiB tasks; each task read as 1 sequential stream, and as {STREAMS} interleaved streams)\n",
            o.bw_bytes >> 20
        );
        println!("| threads | 1 stream GB/s | {STREAMS} streams GB/s |\n|---:|---:|---:|");
        for p in &pools {
            let one = bandwidth(p, &buf, 1, o.quick);
            let four = bandwidth(p, &buf, STREAMS, o.quick);
            println!("| {} | {one:.1} | {four:.1} |", p.n_threads());
        }
    }

    let mut rng = Rng(42);
    let mut rows_out = Vec::new();
    let mut ctx = MatmulCtx::new();
    ctx.set_repack(o.repack);
    println!(
        "\n## Matmul (GEMV cold: {} MiB of weight copies streamed; read: the sum of those same bytes on the same pool just before, the paired limit; GEMM: {} tokens)\n",
        o.cold_bytes >> 20,
        o.tokens
    );
    println!(
        "| type | SIMD | shape | MiB | threads | read 1-stream GB/s | read {STREAMS}-stream GB/s | GEMV cold GB/s | % of 1-stream | % of {STREAMS}-stream | GEMV hot GB/s | GEMM GFLOP/s |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &t in &o.types {
        if kernels::dot_entry(t).is_none() {
            eprintln!("{t}: no dot kernel, skipped");
            continue;
        }
        let bs = t.block_size() as usize;
        for &(rows, cols) in &o.shapes {
            if cols % bs != 0 {
                eprintln!("{t}: {cols} columns are not whole blocks of {bs}, skipped");
                continue;
            }
            let w = make_weights(&mut rng, t, rows, cols);
            let (cold_words, copies) = cold_copies(&w, o.cold_bytes);
            let cold_set: &[u8] = &bytemuck::cast_slice(&cold_words)[..copies * w.len()];
            let x: Vec<f32> = (0..cols * o.tokens.max(1)).map(|_| rng.unit()).collect();
            let mut y = vec![0f32; rows * o.tokens.max(1)];
            for pool in &pools {
                let m = |data| Matrix {
                    ggml_type: t,
                    data,
                    rows,
                    cols,
                };
                let bw = paired(o.rounds, pool, &cold_words, o.quick, || {
                    let cold = measure(min_reps, max_reps, budget, || {
                        for c in cold_set.chunks_exact(w.len()) {
                            ctx.matmul(pool, &m(c), &x[..cols], &mut y[..rows]).unwrap();
                        }
                    });
                    cold_set.len() as f64 / cold / 1e9
                });
                let reps = (cold_set.len() / w.len()).clamp(1, 64);
                let hot = measure(min_reps, max_reps, budget, || {
                    for _ in 0..reps {
                        ctx.matmul(pool, &m(&w), &x[..cols], &mut y[..rows])
                            .unwrap();
                    }
                });
                let hot_gbs = (reps * w.len()) as f64 / hot / 1e9;
                let gflops = o.gemm.then(|| {
                    let s = measure(1.max(min_reps / 2), max_reps, budget, || {
                        ctx.matmul(pool, &m(&w), &x, &mut y).unwrap();
                    });
                    2.0 * (rows * cols * o.tokens) as f64 / s / 1e9
                });
                let r = Row {
                    t,
                    shape: format!("{rows}×{cols}"),
                    mib: w.len() as f64 / (1 << 20) as f64,
                    threads: pool.n_threads(),
                    bw,
                    hot: hot_gbs,
                    gflops,
                };
                print_row(&r);
                rows_out.push(r);
            }
        }

        // Expert batch: 8 experts of 1408×2048, 4 tokens × 2 experts each.
        let (n_expert, rows, cols, n_tokens, n_used) = (8, 1408, 2048, 4, 2);
        if cols % bs == 0 {
            let w = make_weights(&mut rng, t, n_expert * rows, cols);
            let (cold_words, copies) = cold_copies(&w, o.cold_bytes);
            let cold_set: &[u8] = &bytemuck::cast_slice(&cold_words)[..copies * w.len()];
            let ids: Vec<i32> = (0..(n_tokens * n_used) as i32).collect();
            let x: Vec<f32> = (0..cols * n_tokens).map(|_| rng.unit()).collect();
            let mut y = vec![0f32; n_tokens * n_used * rows];
            for pool in &pools {
                let ex = |data| Experts {
                    ggml_type: t,
                    data,
                    n_expert,
                    rows,
                    cols,
                };
                let bw = paired(o.rounds, pool, &cold_words, o.quick, || {
                    let cold = measure(min_reps, max_reps, budget, || {
                        for c in cold_set.chunks_exact(w.len()) {
                            ctx.mul_mat_id(pool, &ex(c), &x, &ids, n_used, &mut y)
                                .unwrap();
                        }
                    });
                    cold_set.len() as f64 / cold / 1e9
                });
                let reps = copies.clamp(1, 64);
                let hot = measure(min_reps, max_reps, budget, || {
                    for _ in 0..reps {
                        ctx.mul_mat_id(pool, &ex(&w), &x, &ids, n_used, &mut y)
                            .unwrap();
                    }
                });
                let hot_gbs = (reps * w.len()) as f64 / hot / 1e9;
                let flops = 2.0 * (rows * cols * n_tokens * n_used) as f64;
                let r = Row {
                    t,
                    shape: format!("{n_expert}×{rows}×{cols} experts, {n_tokens} tok × {n_used}"),
                    mib: w.len() as f64 / (1 << 20) as f64,
                    threads: pool.n_threads(),
                    bw,
                    hot: hot_gbs,
                    gflops: Some(flops / (hot / reps as f64) / 1e9),
                };
                print_row(&r);
                rows_out.push(r);
            }
        }
    }
    if !rows_out.is_empty() {
        let worst = rows_out
            .iter()
            .filter(|r| r.threads == 2 && !r.shape.starts_with("576"))
            .map(|r| (r.bw.pct1, r.bw.pct, r.t))
            .fold(None, |m: Option<(f64, f64, GgmlType)>, v| match m {
                Some(m) if m.0 <= v.0 => Some(m),
                _ => Some(v),
            });
        if let Some((pct1, pct, t)) = worst {
            println!(
                "\nlowest GEMV cold % of the STREAM-like read at 2 threads (large shapes): {pct1:.0} % ({t}; {pct:.0} % of the {STREAMS}-stream read)"
            );
        }
    }
}

fn print_row(r: &Row) {
    println!(
        "| {} | {} | {} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} | {} |",
        r.t,
        level_of(r.t),
        r.shape,
        r.mib,
        r.threads,
        r.bw.read1,
        r.bw.read,
        r.bw.cold,
        r.bw.pct1,
        r.bw.pct,
        r.hot,
        r.gflops.map_or("—".into(), |g| format!("{g:.1}"))
    );
}
