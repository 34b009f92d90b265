// MoE routing helpers, one invocation per row (rows are tokens, columns
// experts: small).

struct P {
    rows: u32,
    cols: u32,
    k: u32,
    x_off: u32,
    y_off: u32,
    min_sum: f32,
    n_groups: u32,
    n_used: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

const MAX_K: u32 = 64u;

// v ranks above w: larger, or w is NaN and v is not.
fn above(v: f32, w: f32) -> bool {
    return v > w || (w != w && v == v);
}

// The columns of the k largest values of each row, largest first, ties
// in column order (ids as i32 bits).
@compute @workgroup_size(64)
fn top_k(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.rows) {
        return;
    }
    var vals: array<f32, MAX_K>;
    var ids: array<u32, MAX_K>;
    var filled = 0u;
    let xb = p.x_off + r * p.cols;
    for (var j = 0u; j < p.cols; j = j + 1u) {
        let v = X[xb + j];
        var pos = filled;
        for (var i = 0u; i < filled; i = i + 1u) {
            if (above(v, vals[i])) {
                pos = i;
                break;
            }
        }
        if (pos >= p.k) {
            continue;
        }
        let end = min(filled, p.k - 1u);
        for (var i = end; i > pos; i = i - 1u) {
            vals[i] = vals[i - 1u];
            ids[i] = ids[i - 1u];
        }
        vals[pos] = v;
        ids[pos] = j;
        filled = min(filled + 1u, p.k);
    }
    for (var i = 0u; i < p.k; i = i + 1u) {
        Y[p.y_off + r * p.k + i] = bitcast<f32>(ids[i]);
    }
}

// Each row divided by its sum, the sum clamped below at min_sum.
@compute @workgroup_size(64)
fn norm_sum(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.rows) {
        return;
    }
    let xb = p.x_off + r * p.cols;
    var s = 0.0;
    for (var j = 0u; j < p.cols; j = j + 1u) {
        s = s + X[xb + j];
    }
    s = max(s, p.min_sum);
    for (var j = 0u; j < p.cols; j = j + 1u) {
        Y[p.y_off + r * p.cols + j] = X[xb + j] / s;
    }
}

// Expert groups: a group's score is the sum of its two largest values; the
// n_used best groups (ties: lower group) keep their values, the rest -inf.
@compute @workgroup_size(64)
fn group_mask(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.rows) {
        return;
    }
    let per = p.cols / p.n_groups;
    let xb = p.x_off + r * p.cols;
    var score: array<f32, MAX_K>;
    for (var g = 0u; g < p.n_groups; g = g + 1u) {
        var b0 = -3.402823466e+38;
        var b1 = -3.402823466e+38;
        var seen = 0u;
        for (var j = 0u; j < per; j = j + 1u) {
            let v = X[xb + g * per + j];
            if (seen == 0u || above(v, b0)) {
                b1 = b0;
                b0 = v;
            } else if (seen == 1u || above(v, b1)) {
                b1 = v;
            }
            seen = seen + 1u;
        }
        score[g] = b0 + b1;
    }
    var keep: array<bool, MAX_K>;
    for (var u = 0u; u < p.n_used; u = u + 1u) {
        var best = p.n_groups;
        for (var g = 0u; g < p.n_groups; g = g + 1u) {
            if (!keep[g] && (best == p.n_groups || above(score[g], score[best]))) {
                best = g;
            }
        }
        if (best < p.n_groups) {
            keep[best] = true;
        }
    }
    for (var j = 0u; j < p.cols; j = j + 1u) {
        var v = -3.402823466e+38;
        if (keep[j / per]) {
            v = X[xb + j];
        } else {
            v = bitcast<f32>(0xff800000u);
        }
        Y[p.y_off + r * p.cols + j] = v;
    }
}
