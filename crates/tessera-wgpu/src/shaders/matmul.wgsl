// y = x · wᵀ over a window of whole weight rows: one workgroup per (row,
// TN tokens). Each invocation dequantizes groups of 4 values of the row
// (dq4) and dots them with the TN token rows; the workgroup sums.
//
// MatMul: mat_rows = rows of the whole matrix, x_mat_stride = 0.
// MatMulHeads: one matrix per head; row g of the stack belongs to head
// g / mat_rows, whose x values start at x_mat_stride * head.
// MatMulId (ID = true): output row u = t * k + s reads expert e = ids[t, s]
// and x row (x_per_slot ? u : t); weight row g = e * mat_rows + r.

struct P {
    rows: u32,
    row0: u32,
    cols: u32,
    row_bytes: u32,
    w_off: u32,
    n: u32,
    x_off: u32,
    x_stride: u32,
    y_off: u32,
    y_stride: u32,
    mat_rows: u32,
    x_mat_stride: u32,
    wg_x: u32,
    ids_off: u32,
    k: u32,
    x_per_slot: u32,
    n_out_rows: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read_write> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

const TN: u32 = 4u;

fn xv4(i: u32, c: u32) -> vec4<f32> {
    let lim = vec4<u32>(p.cols);
    let cc = vec4<u32>(c) + vec4<u32>(0u, 1u, 2u, 3u);
    let v = vec4<f32>(X[i], X[i + 1u], X[i + 2u], X[i + 3u]);
    return select(vec4<f32>(0.0), v, cc < lim);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32 SGARGS) {
    SGINIT
    // Output rows of the product: window rows (MatMul) or a row of one expert (MatMulId).
    let r = wid.x + wid.y * p.wg_x;
    if (r >= p.rows) {
        return;
    }
    let t0 = wid.z * TN;
    var g: u32 = p.row0 + r;
    var base: u32 = p.w_off + r * p.row_bytes;
    var xb: array<u32, TN>;
    var yb: array<u32, TN>;
    var ok: array<bool, TN>;
    if (ID) {
        // Here `r` is a row of an expert, tokens are output slots u.
        for (var t = 0u; t < TN; t = t + 1u) {
            let u = t0 + t;
            ok[t] = false;
            if (u < p.n) {
                let e = u32(IDS[p.ids_off + u]);
                let gr = e * p.mat_rows + r;
                // Only rows inside this dispatch's window of the stack.
                if (r < p.mat_rows && gr >= p.row0 && gr < p.row0 + p.n_out_rows) {
                    ok[t] = true;
                }
                var xr = u / p.k;
                if (p.x_per_slot != 0u) {
                    xr = u;
                }
                xb[t] = p.x_off + xr * p.x_stride;
                yb[t] = p.y_off + u * p.y_stride + r;
            }
        }
    } else {
        let m = g / p.mat_rows;
        for (var t = 0u; t < TN; t = t + 1u) {
            let u = t0 + t;
            ok[t] = u < p.n;
            xb[t] = p.x_off + u * p.x_stride + m * p.x_mat_stride;
            yb[t] = p.y_off + u * p.y_stride + g;
        }
    }
    var acc: array<f32, TN>;
    let ng = (p.cols + 3u) / 4u;
    if (ID) {
        // Every slot may read another expert: dequantize per slot.
        for (var t = 0u; t < TN; t = t + 1u) {
            if (ok[t]) {
                let u = t0 + t;
                let e = u32(IDS[p.ids_off + u]);
                let rb = p.w_off + (e * p.mat_rows + r - p.row0) * p.row_bytes;
                for (var q = li; q < ng; q = q + WG) {
                    let c = q * 4u;
                    let w = dq4(rb + (c / BS) * BB, c % BS);
                    let wm = select(vec4<f32>(0.0), w, vec4<u32>(c) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.cols));
                    acc[t] = acc[t] + dot(wm, xv4(xb[t] + c, c));
                }
            }
        }
    } else {
        for (var q = li; q < ng; q = q + WG) {
            let c = q * 4u;
            let w = dq4(base + (c / BS) * BB, c % BS);
            let wm = select(vec4<f32>(0.0), w, vec4<u32>(c) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.cols));
            for (var t = 0u; t < TN; t = t + 1u) {
                if (ok[t]) {
                    acc[t] = acc[t] + dot(wm, xv4(xb[t] + c, c));
                }
            }
        }
    }
    for (var t = 0u; t < TN; t = t + 1u) {
        let s = wg_sum(acc[t]);
        if (li == 0u && ok[t]) {
            Y[yb[t]] = s;
        }
    }
}
