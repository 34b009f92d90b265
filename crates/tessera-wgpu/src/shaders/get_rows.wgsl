// Embed: out[t, :] = row ids[t] of the table, dequantized, for the tokens
// whose ids fall in this dispatch's window of rows [row0, row0 + rows).
// One invocation per (token, group of 4 columns).

struct P {
    rows: u32,
    row0: u32,
    cols: u32,
    row_bytes: u32,
    w_off: u32,
    n: u32,
    ids_off: u32,
    y_off: u32,
    groups: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read> S: array<u32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let q = gid.x;
    let t = gid.y;
    if (q >= p.groups || t >= p.n) {
        return;
    }
    let id = S[p.ids_off + t];
    if (id < p.row0 || id >= p.row0 + p.rows) {
        return;
    }
    let c = q * 4u;
    let v = dq4(p.w_off + (id - p.row0) * p.row_bytes + (c / BS) * BB, c % BS);
    let o = p.y_off + t * p.cols + c;
    Y[o] = v.x;
    if (c + 1u < p.cols) { Y[o + 1u] = v.y; }
    if (c + 2u < p.cols) { Y[o + 2u] = v.z; }
    if (c + 3u < p.cols) { Y[o + 3u] = v.w; }
}
