// Rotary position embedding as ggml's rope_ext (normal and NeoX pairs,
// partial rotary, frequency factors, YaRN). One invocation per output
// value. The angle of pair i is built as ggml builds its cache: theta
// starts at the position and is multiplied by theta_scale once per pair,
// so it rounds the same way; sin and cos are computed with a Cody-Waite
// reduction and minimax polynomials (the hardware's are too coarse for
// angles in the thousands).

struct P {
    n: u32,
    n_heads: u32,
    hd: u32,
    n_rot: u32,
    neox: u32,
    freq_base: f32,
    freq_scale: f32,
    ext_factor: f32,
    attn_factor: f32,
    corr0: f32,
    corr1: f32,
    theta_scale: f32,
    has_ff: u32,
    ff_off: u32,
    x_off: u32,
    y_off: u32,
    pos_off: u32,
    stride_x: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> FF: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
@group(0) @binding(4) var<storage, read> S: array<u32>;

// sin and cos of x (Cephes sinf/cosf: reduction by pi/4 in three parts,
// accurate to a few ulp for |x| up to 8192, degrading slowly beyond).
fn sincos_(x: f32) -> vec2<f32> {
    let ax = abs(x);
    var j = u32(ax * 1.27323954473516);
    var y = f32(j);
    if ((j & 1u) == 1u) {
        j = j + 1u;
        y = y + 1.0;
    }
    let oct = (j & 7u) >> 1u;
    let z = ((ax - y * 0.78515625) - y * 2.4187564849853515625e-4) - y * 3.77489497744594108e-8;
    let zz = z * z;
    let sp = ((-1.9515295891e-4 * zz + 8.3321608736e-3) * zz - 1.6666654611e-1) * zz * z + z;
    let cp = ((2.443315711809948e-5 * zz - 1.388731625493765e-3) * zz + 4.166664568298827e-2) * zz * zz - 0.5 * zz + 1.0;
    var s = sp;
    var c = cp;
    switch oct {
        case 1u: { s = cp; c = -sp; }
        case 2u: { s = -sp; c = -cp; }
        case 3u: { s = -cp; c = sp; }
        default: {}
    }
    if (x < 0.0) {
        s = -s;
    }
    return vec2<f32>(s, c);
}

fn yarn_ramp(low: f32, high: f32, i0: u32) -> f32 {
    let y = (f32(i0 / 2u) - low) / max(0.001, high - low);
    return 1.0 - clamp(y, 0.0, 1.0);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.x + gid.y * p.stride_x;
    if (e >= p.n) {
        return;
    }
    let row = p.n_heads * p.hd;
    let t = e / row;
    let d = e % p.hd;
    let hb = e - d;
    if (d >= p.n_rot) {
        Y[p.y_off + e] = X[p.x_off + e];
        return;
    }
    var pair = 0u;
    var i0 = 0u;
    var i1 = 0u;
    var first = true;
    if (p.neox != 0u) {
        let half = p.n_rot / 2u;
        pair = d % half;
        i0 = pair;
        i1 = pair + half;
        first = d < half;
    } else {
        pair = d / 2u;
        i0 = 2u * pair;
        i1 = i0 + 1u;
        first = (d & 1u) == 0u;
    }
    let pos = bitcast<i32>(S[p.pos_off + t]);
    var theta = f32(pos);
    for (var k = 0u; k < pair; k = k + 1u) {
        theta = theta * p.theta_scale;
    }
    var ff = 1.0;
    if (p.has_ff != 0u) {
        ff = FF[p.ff_off + pair];
    }
    let theta_extrap = theta / ff;
    let theta_interp = p.freq_scale * theta_extrap;
    var angle = theta_interp;
    var mscale = p.attn_factor;
    if (p.ext_factor != 0.0) {
        let ramp_mix = yarn_ramp(p.corr0, p.corr1, 2u * pair) * p.ext_factor;
        angle = theta_interp * (1.0 - ramp_mix) + theta_extrap * ramp_mix;
        mscale = mscale * (1.0 + 0.1 * log(1.0 / p.freq_scale));
    }
    let sc = sincos_(angle);
    let cs = sc.y * mscale;
    let sn = sc.x * mscale;
    let x0 = X[p.x_off + hb + i0];
    let x1 = X[p.x_off + hb + i1];
    if (first) {
        Y[p.y_off + e] = fma(x0, cs, -(x1 * sn));
    } else {
        Y[p.y_off + e] = fma(x0, sn, x1 * cs);
    }
}
