// Norms over groups of `group` values, one workgroup per group.
// Bindings: X input, W1 weight, W2 bias (each optional: has_w, has_b),
// Y output.

struct P {
    group: u32,
    n_groups: u32,
    eps: f32,
    x_off: u32,
    w_off: u32,
    b_off: u32,
    y_off: u32,
    has_w: u32,
    has_b: u32,
    wg_x: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> W1: array<f32>;
@group(0) @binding(3) var<storage, read_write> W2: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

// y = x * (1 / sqrt(mean(x²) + eps)) * w
@compute @workgroup_size(64)
fn rms(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32 SGARGS) {
    SGINIT
    let g = wid.x + wid.y * p.wg_x;
    if (g >= p.n_groups) {
        return;
    }
    let xb = p.x_off + g * p.group;
    let yb = p.y_off + g * p.group;
    var s = 0.0;
    for (var i = li; i < p.group; i = i + WG) {
        let v = X[xb + i];
        s = s + v * v;
    }
    let sum = wg_sum(s);
    let scale = 1.0 / sqrt(sum / f32(p.group) + p.eps);
    for (var i = li; i < p.group; i = i + WG) {
        var v = X[xb + i] * scale;
        if (p.has_w != 0u) {
            v = v * W1[p.w_off + i];
        }
        Y[yb + i] = v;
    }
}

// y = (x - mean) / sqrt(var + eps) * w + b
@compute @workgroup_size(64)
fn layer(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32 SGARGS) {
    SGINIT
    let g = wid.x + wid.y * p.wg_x;
    if (g >= p.n_groups) {
        return;
    }
    let xb = p.x_off + g * p.group;
    let yb = p.y_off + g * p.group;
    var s = 0.0;
    for (var i = li; i < p.group; i = i + WG) {
        s = s + X[xb + i];
    }
    let mean = wg_sum(s) / f32(p.group);
    var s2 = 0.0;
    for (var i = li; i < p.group; i = i + WG) {
        let d = X[xb + i] - mean;
        s2 = s2 + d * d;
    }
    let variance = wg_sum(s2) / f32(p.group);
    let scale = 1.0 / sqrt(variance + p.eps);
    for (var i = li; i < p.group; i = i + WG) {
        var v = (X[xb + i] - mean) * scale;
        if (p.has_w != 0u) {
            v = v * W1[p.w_off + i];
        }
        if (p.has_b != 0u) {
            v = v + W2[p.b_off + i];
        }
        Y[yb + i] = v;
    }
}
