// The step's output rows: y[i, :] = x[out_rows[i], :].

struct P {
    n: u32,
    cols: u32,
    x_off: u32,
    y_off: u32,
    rows_off: u32,
    stride_x: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read> S: array<u32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * p.stride_x;
    if (i >= p.n) {
        return;
    }
    let r = S[p.rows_off + i / p.cols];
    Y[p.y_off + i] = X[p.x_off + r * p.cols + i % p.cols];
}
