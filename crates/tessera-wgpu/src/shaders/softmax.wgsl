// Softmax of each row, one workgroup per row:
// y = exp(x - max) / Σ exp(x - max).

struct P {
    cols: u32,
    rows: u32,
    x_off: u32,
    y_off: u32,
    wg_x: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32 SGARGS) {
    SGINIT
    let r = wid.x + wid.y * p.wg_x;
    if (r >= p.rows) {
        return;
    }
    let xb = p.x_off + r * p.cols;
    let yb = p.y_off + r * p.cols;
    var m = -3.402823466e+38;
    for (var i = li; i < p.cols; i = i + WG) {
        m = max(m, X[xb + i]);
    }
    let mx = wg_max(m);
    var s = 0.0;
    for (var i = li; i < p.cols; i = i + WG) {
        let e = exp(X[xb + i] - mx);
        Y[yb + i] = e;
        s = s + e;
    }
    let inv = 1.0 / wg_sum(s);
    for (var i = li; i < p.cols; i = i + WG) {
        Y[yb + i] = Y[yb + i] * inv;
    }
}
