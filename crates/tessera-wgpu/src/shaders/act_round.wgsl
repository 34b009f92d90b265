// The activations of a product rounded to the type the CPU backend (as
// ggml-cpu on x86) converts them to before its dot products, written as
// f32 values again: f16 or bf16 (round to nearest even), or the values of
// Q8_0/Q8_1 blocks of 32 (d = f16(amax / 127), q = round-half-even(x ·
// 127 / amax)) or of Q8_K blocks of 256 (d = 1 / (-127 / max), max the
// value of largest magnitude, q = round-half-even(x · -127 / max), at most
// 127). The product of these with the exactly dequantized weights is then
// the CPU's up to the order of the f32 sums. One invocation per block
// (32 values for f16/bf16 too) of a row of `cols` values. With `with_s`,
// each block's sum goes after the values (at y_off + rows · cols + block):
// f16(d · Σq) as ggml's Q8_1 `s` (mode 3), or Σx (mode 0: values as they
// are), for the Q4_1/Q5_1 minimum term.

struct P {
    rows: u32,
    cols: u32,
    x_off: u32,
    y_off: u32,
    mode: u32,
    bs: u32,
    blocks: u32,
    stride_x: u32,
    with_s: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

fn f16r(x: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
}

// ggml's GGML_FP32_TO_BF16: round to nearest even, NaN kept quiet.
fn bf16r(x: f32) -> f32 {
    let u = bitcast<u32>(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return bitcast<f32>(((u >> 16u) | 64u) << 16u);
    }
    return bitcast<f32>(((u + (0x7fffu + ((u >> 16u) & 1u))) >> 16u) << 16u);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * p.stride_x;
    let per_row = (p.cols + p.bs - 1u) / p.bs;
    if (i >= p.blocks) {
        return;
    }
    let row = i / per_row;
    let b0 = (i % per_row) * p.bs;
    let n = min(p.bs, p.cols - b0);
    let xb = p.x_off + row * p.cols + b0;
    let yb = p.y_off + row * p.cols + b0;
    let sb = p.y_off + p.rows * p.cols + i;
    if (p.mode == 0u) {
        var s = 0.0;
        for (var j = 0u; j < n; j = j + 1u) {
            let v = X[xb + j];
            Y[yb + j] = v;
            s = s + v;
        }
        if (p.with_s != 0u) {
            Y[sb] = s;
        }
        return;
    }
    if (p.mode == 1u) {
        for (var j = 0u; j < n; j = j + 1u) {
            Y[yb + j] = f16r(X[xb + j]);
        }
        return;
    }
    if (p.mode == 2u) {
        for (var j = 0u; j < n; j = j + 1u) {
            Y[yb + j] = bf16r(X[xb + j]);
        }
        return;
    }
    if (p.mode == 3u) {
        var amax = 0.0;
        for (var j = 0u; j < n; j = j + 1u) {
            amax = max(amax, abs(X[xb + j]));
        }
        let d32 = amax / 127.0;
        let d = f16r(d32);
        var id = 0.0;
        if (amax != 0.0) {
            id = 127.0 / amax;
        }
        var qsum = 0.0;
        for (var j = 0u; j < n; j = j + 1u) {
            let q = round(X[xb + j] * id);
            qsum = qsum + q;
            Y[yb + j] = q * d;
        }
        if (p.with_s != 0u) {
            Y[sb] = f16r(d32 * qsum);
        }
        return;
    }
    // Q8_K.
    var amax = 0.0;
    var mx = 0.0;
    for (var j = 0u; j < n; j = j + 1u) {
        let v = X[xb + j];
        if (abs(v) > amax) {
            amax = abs(v);
            mx = v;
        }
    }
    if (amax == 0.0) {
        for (var j = 0u; j < n; j = j + 1u) {
            Y[yb + j] = 0.0;
        }
        return;
    }
    let iscale = -127.0 / mx;
    let d = 1.0 / iscale;
    for (var j = 0u; j < n; j = j + 1u) {
        Y[yb + j] = min(round(iscale * X[xb + j]), 127.0) * d;
    }
}
