// y = x · wᵀ over a window of whole weight rows. A row is computed by one
// subgroup when the device has subgroups (a workgroup then computes as
// many rows as it has subgroups, with no barrier), else by the whole
// workgroup (summed through workgroup memory); z is the block of TN
// tokens. Each lane dequantizes groups of 4 values of the row (dq4) and
// dots them with the TN token rows.
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
    s_off: u32,
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
    // Output rows of the product: window rows (MatMul) or a row of one
    // expert (MatMulId). No early return: every lane reaches the sums.
    let r = (wid.x + wid.y * p.wg_x) * rows_per_wg() + row_in_wg();
    let live = r < p.rows;
    let t0 = wid.z * TN;
    let g: u32 = p.row0 + r;
    let base: u32 = p.w_off + r * p.row_bytes;
    var xb: array<u32, TN>;
    var yb: array<u32, TN>;
    var ok: array<bool, TN>;
    var erb: array<u32, TN>;
    if (ID) {
        // Tokens are output slots u; `r` is a row of an expert.
        for (var t = 0u; t < TN; t = t + 1u) {
            let u = t0 + t;
            ok[t] = false;
            if (live && u < p.n) {
                let e = u32(IDS[p.ids_off + u]);
                let gr = e * p.mat_rows + r;
                // Only rows inside this dispatch's window of the stack.
                if (r < p.mat_rows && gr >= p.row0 && gr < p.row0 + p.n_out_rows) {
                    ok[t] = true;
                    erb[t] = p.w_off + (gr - p.row0) * p.row_bytes;
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
            ok[t] = live && u < p.n;
            xb[t] = p.x_off + u * p.x_stride + m * p.x_mat_stride;
            yb[t] = p.y_off + u * p.y_stride + g;
        }
    }
    var acc: array<f32, TN>;
    let ng = (p.cols + 3u) / 4u;
    let lane0 = lane();
    let nl = lanes();
    if (ID) {
        // Every slot may read another expert: dequantize per slot.
        for (var t = 0u; t < TN; t = t + 1u) {
            if (ok[t]) {
                for (var q = lane0; q < ng; q = q + nl) {
                    let c = q * 4u;
                    let bb = erb[t] + (c / BS) * BB;
                    let w = dq4_d(bb, c % BS);
                    let wm = select(vec4<f32>(0.0), w, vec4<u32>(c) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.cols));
                    acc[t] = acc[t] + dot(wm, xv4(xb[t] + c, c));
                    if (MIN_S && c % BS == 0u) {
                        acc[t] = acc[t] + blk_min(bb) * X[p.s_off + (xb[t] + c - p.x_off) / BS];
                    }
                }
            }
        }
    } else if (live) {
        for (var q = lane0; q < ng; q = q + nl) {
            let c = q * 4u;
            let bb = base + (c / BS) * BB;
            let w = dq4_d(bb, c % BS);
            let wm = select(vec4<f32>(0.0), w, vec4<u32>(c) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.cols));
            var mn = 0.0;
            if (MIN_S && c % BS == 0u) {
                mn = blk_min(bb);
            }
            for (var t = 0u; t < TN; t = t + 1u) {
                if (ok[t]) {
                    acc[t] = acc[t] + dot(wm, xv4(xb[t] + c, c));
                    if (MIN_S && c % BS == 0u) {
                        acc[t] = acc[t] + mn * X[p.s_off + (xb[t] + c - p.x_off) / BS];
                    }
                }
            }
        }
    }
    for (var t = 0u; t < TN; t = t + 1u) {
        let s = row_sum(acc[t]);
        if (lane0 == 0u && ok[t]) {
            Y[yb[t]] = s;
        }
    }
}
