// Elementwise and per-element gather ops on f32 activations, one
// invocation per output value (index linearised over a 2-D grid).
// Bindings: A, B, C inputs (B and C unused by some ops), Y output.

struct P {
    n: u32,
    op: u32,
    blen: u32,
    cols: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    y_off: u32,
    s: f32,
    k: u32,
    start: u32,
    len: u32,
    hd: u32,
    la: u32,
    lb: u32,
    stride_x: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> A: array<f32>;
@group(0) @binding(2) var<storage, read_write> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

const GELU_COEF_A: f32 = 0.044715;
const SQRT_2_OVER_PI: f32 = 0.79788456080286535587989211986876;
const SQRT_2_INV: f32 = 0.70710678118654752440084436210484;

fn idx(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * p.stride_x;
}

fn f16r(x: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
}

fn tanh_(x: f32) -> f32 {
    // tanh through exp, accurate over the whole range (no overflow).
    let e = exp(-2.0 * abs(x));
    let t = (1.0 - e) / (1.0 + e);
    return select(t, -t, x < 0.0);
}

fn gelu_f32(x: f32) -> f32 {
    let inner = fma(GELU_COEF_A * x, x, 1.0);
    return 0.5 * x * (1.0 + tanh_(SQRT_2_OVER_PI * x * inner));
}

// ggml-cpu's GELU: the f16 table entry of x rounded to f16.
fn gelu(x: f32) -> f32 {
    if (x <= -10.0) {
        return 0.0;
    }
    if (x >= 10.0) {
        return x;
    }
    return f16r(gelu_f32(f16r(x)));
}

// erf, Abramowitz and Stegun 7.1.26 refined (|error| < 1.5e-7).
fn erf_(x: f32) -> f32 {
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
    return select(y, -y, x < 0.0);
}

fn silu(x: f32) -> f32 {
    return x / (1.0 + exp(-x));
}

@compute @workgroup_size(64)
fn binary(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = idx(gid);
    if (i >= p.n) {
        return;
    }
    let a = A[p.a_off + i];
    let b = B[p.b_off + i % p.blen];
    var y = 0.0;
    if (p.op == 0u) {
        y = a + b;
    } else if (p.op == 1u) {
        y = a * b;
    } else {
        y = a / b;
    }
    Y[p.y_off + i] = y;
}

@compute @workgroup_size(64)
fn unary(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = idx(gid);
    if (i >= p.n) {
        return;
    }
    let x = A[p.a_off + i];
    var y = 0.0;
    switch p.op {
        case 0u: { y = x * p.s; }
        case 1u: { y = silu(x); }
        case 2u: { y = gelu(x); }
        case 3u: { y = 0.5 * x * (1.0 + erf_(x * SQRT_2_INV)); }
        case 4u: { y = tanh_(x); }
        default: { y = 1.0 / (1.0 + exp(-x)); }
    }
    Y[p.y_off + i] = y;
}

@compute @workgroup_size(64)
fn glu(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = idx(gid);
    if (i >= p.n) {
        return;
    }
    let g = A[p.a_off + i];
    let u = B[p.b_off + i];
    var y = 0.0;
    switch p.op {
        case 0u: { y = silu(g) * u; }
        case 1u: {
            if (g > -10.0) {
                y = gelu(g) * u;
            }
        }
        default: {
            // gpt-oss: alpha = p.s, limit = 7.
            let x = min(g, 7.0);
            let v = clamp(u, -7.0, 7.0);
            y = x / (1.0 + exp(p.s * -x)) * (v + 1.0);
        }
    }
    Y[p.y_off + i] = y;
}

// y[r, c] = a[r, c] * b[r]
@compute @workgroup_size(64)
fn mul_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = idx(gid);
    if (i >= p.n) {
        return;
    }
    Y[p.y_off + i] = A[p.a_off + i] * B[p.b_off + i / p.cols];
}

// y[t, h, j] = a[t, h, start + j]: heads of hd values, len taken.
@compute @workgroup_size(64)
fn slice_heads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = idx(gid);
    if (i >= p.n) {
        return;
    }
    let hh = i / p.len;
    let j = i % p.len;
    Y[p.y_off + i] = A[p.a_off + hh * p.hd + p.start + j];
}

// y[t, h] = [a[t, h] (la values) | b[t, h] (lb values)]
@compute @workgroup_size(64)
fn concat_heads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = idx(gid);
    if (i >= p.n) {
        return;
    }
    let w = p.la + p.lb;
    let hh = i / w;
    let j = i % w;
    if (j < p.la) {
        Y[p.y_off + i] = A[p.a_off + hh * p.la + j];
    } else {
        Y[p.y_off + i] = B[p.b_off + hh * p.lb + j - p.la];
    }
}

// y[t, c] = Σ_s a[t·k + s, c] · b[t, s], each product rounded, in slot order.
@compute @workgroup_size(64)
fn moe_sum(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = idx(gid);
    if (i >= p.n) {
        return;
    }
    let t = i / p.cols;
    let c = i % p.cols;
    var y = 0.0;
    for (var s = 0u; s < p.k; s = s + 1u) {
        let prod = A[p.a_off + (t * p.k + s) * p.cols + c] * B[p.b_off + t * p.k + s];
        if (s == 0u) {
            y = prod;
        } else {
            y = y + prod;
        }
    }
    Y[p.y_off + i] = y;
}

// y[t, s] = a[t, ids[t, s]] (ids in B, as i32 bits).
@compute @workgroup_size(64)
fn gather_cols(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = idx(gid);
    if (i >= p.n) {
        return;
    }
    let t = i / p.k;
    let id = u32(bitcast<i32>(B[p.b_off + i]));
    Y[p.y_off + i] = A[p.a_off + t * p.cols + min(id, p.cols - 1u)];
}

// y[r, c] = a[r, c] + bias[ids[r], c] (bias in B, ids in C).
@compute @workgroup_size(64)
fn add_id(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = idx(gid);
    if (i >= p.n) {
        return;
    }
    let r = i / p.cols;
    let c = i % p.cols;
    let e = u32(bitcast<i32>(C[p.c_off + r]));
    Y[p.y_off + i] = A[p.a_off + i] + B[p.b_off + e * p.cols + c];
}
