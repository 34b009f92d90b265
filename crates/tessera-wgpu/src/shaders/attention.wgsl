// Attention of one (query token, head) per workgroup over cells 0..n_kv of
// an F16 or Q8_0 cache, as ggml's flash_attn_ext defines it: the query in
// f32 against an F16 cache, or quantized to Q8_0 blocks (as ggml-cpu's x86
// quantize_row_q8_0 does) for the integer dot with a Q8_0 cache; scores s = dot · scale (with
// a softcap: softcap · tanh(dot · scale / softcap)), causal and sliding
// window masks, GQA (head h reads KV head h / (n_head / n_kv_head)), an
// online softmax, and the sink logit of the head joining the softmax at the
// end. Two orders, as ggml-cpu's two paths for these caches:
//
// - seq = 1 (its one-chunk path, every step below 64 query tokens): the
//   query rounded to f16 for an F16 cache; the scores of a tile of WG cells
//   in parallel, then the cells one by one in order, every lane keeping the
//   same running max M and sum S = fma(S, ms, vs) and its value dimensions'
//   accumulator, which for an F16 V cache is f16: rounded after its scaling
//   by ms and after each fma(v, vs, acc), as `ggml_vec_scale_f16` and
//   `ggml_vec_mad_f16` round it.
// - seq = 0 (its tiled path, 64+ query tokens on F16 caches): the query in
//   f32, each tile's max joining M at once, the value accumulator in f32.

struct P {
    n_head: u32,
    n_kv_head: u32,
    hd: u32,
    hdv: u32,
    n_kv: u32,
    q_off: u32,
    o_off: u32,
    k_row: u32,
    v_row: u32,
    k_q8: u32,
    v_q8: u32,
    scale: f32,
    softcap: f32,
    window: u32,
    has_sinks: u32,
    sinks_off: u32,
    pos_off: u32,
    seq: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> Q: array<f32>;
@group(0) @binding(2) var<storage, read_write> KC: array<u32>;
@group(0) @binding(3) var<storage, read_write> VC: array<u32>;
@group(0) @binding(4) var<storage, read_write> SINKS: array<f32>;
@group(0) @binding(5) var<storage, read_write> O: array<f32>;
@group(0) @binding(6) var<storage, read> S: array<u32>;

const MAX_HD: u32 = 1024u;
const MAX_VPT: u32 = 16u;

var<workgroup> qs: array<f32, MAX_HD>;
var<workgroup> qd: array<f32, 32>;
var<workgroup> ps: array<f32, WG>;

fn kb(a: u32) -> u32 {
    return (KC[a >> 2u] >> ((a & 3u) << 3u)) & 0xffu;
}
fn k16(a: u32) -> f32 {
    return unpack2x16float((KC[a >> 2u] >> ((a & 2u) << 3u)) & 0xffffu).x;
}
fn vb(a: u32) -> u32 {
    return (VC[a >> 2u] >> ((a & 3u) << 3u)) & 0xffu;
}
fn v16(a: u32) -> f32 {
    return unpack2x16float((VC[a >> 2u] >> ((a & 2u) << 3u)) & 0xffffu).x;
}
fn f16r(x: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
}
fn i8f(b: u32) -> f32 {
    return f32((bitcast<i32>(b) << 24u) >> 24u);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32 SGARGS) {
    SGINIT
    let h = wid.x;
    let t = wid.y;
    let kvh = h / (p.n_head / p.n_kv_head);
    let qp = bitcast<i32>(S[p.pos_off + t]);
    let qb = p.q_off + (t * p.n_head + h) * p.hd;
    let nb = p.hd / 32u;
    // The query in the K cache's dot type.
    if (p.k_q8 == 0u) {
        for (var i = li; i < p.hd; i = i + WG) {
            qs[i] = select(Q[qb + i], f16r(Q[qb + i]), p.seq != 0u);
        }
    } else {
        if (li < nb) {
            var amax = 0.0;
            for (var i = 0u; i < 32u; i = i + 1u) {
                amax = max(amax, abs(Q[qb + li * 32u + i]));
            }
            var id = 0.0;
            if (amax != 0.0) {
                id = 127.0 / amax;
            }
            qd[li] = unpack2x16float(pack2x16float(vec2<f32>(amax / 127.0, 0.0))).x;
            for (var i = 0u; i < 32u; i = i + 1u) {
                qs[li * 32u + i] = f32(clamp(i32(round(Q[qb + li * 32u + i] * id)), -128, 127));
            }
        }
    }
    workgroupBarrier();
    var dot_scale = p.scale;
    if (p.softcap != 0.0) {
        dot_scale = p.scale / p.softcap;
    }
    // Visible cells: j <= qp, and qp - j < window.
    var j_end = min(p.n_kv, u32(max(qp + 1, 0)));
    var j_start = 0u;
    if (p.window != 0u) {
        j_start = u32(max(qp - i32(p.window) + 1, 0));
    }
    var acc: array<f32, MAX_VPT>;
    var m = -3.402823466e+38;
    var ssum = 0.0;
    var seen = false;
    let k_head = select(p.hd * 2u, nb * 34u, p.k_q8 != 0u);
    let v_head = select(p.hdv * 2u, (p.hdv / 32u) * 34u, p.v_q8 != 0u);
    for (var tile = j_start; tile < j_end; tile = tile + WG) {
        let j = tile + li;
        var s = -3.402823466e+38;
        var vis = false;
        if (j < j_end) {
            vis = true;
            let kb0 = j * p.k_row + kvh * k_head;
            var d = 0.0;
            if (p.k_q8 == 0u) {
                for (var i = 0u; i < p.hd; i = i + 1u) {
                    d = d + qs[i] * k16(kb0 + 2u * i);
                }
            } else {
                for (var b = 0u; b < nb; b = b + 1u) {
                    let bo = kb0 + b * 34u;
                    var isum = 0.0;
                    for (var i = 0u; i < 32u; i = i + 1u) {
                        isum = isum + qs[b * 32u + i] * i8f(kb(bo + 2u + i));
                    }
                    d = d + isum * (k16(bo) * qd[b]);
                }
            }
            s = d * dot_scale;
            if (p.softcap != 0.0) {
                s = p.softcap * tanh(s);
            }
        }
        if (p.seq != 0u) {
            ps[li] = s;
            workgroupBarrier();
            let nt = min(WG, j_end - tile);
            for (var c = 0u; c < nt; c = c + 1u) {
                let sc = ps[c];
                var ms = 1.0;
                var vs = 1.0;
                if (sc > m) {
                    ms = exp(m - sc);
                    m = sc;
                } else {
                    vs = exp(sc - m);
                }
                ssum = fma(ssum, ms, vs);
                let vbase = (tile + c) * p.v_row + kvh * v_head;
                for (var vi = 0u; vi < MAX_VPT; vi = vi + 1u) {
                    let dv = li + vi * WG;
                    if (dv < p.hdv) {
                        var a = acc[vi];
                        if (p.v_q8 == 0u) {
                            if (ms != 1.0) {
                                a = f16r(a * ms);
                            }
                            a = f16r(fma(v16(vbase + 2u * dv), vs, a));
                        } else {
                            if (ms != 1.0) {
                                a = a * ms;
                            }
                            let bo = vbase + (dv / 32u) * 34u;
                            a = fma(i8f(vb(bo + 2u + dv % 32u)) * v16(bo), vs, a);
                        }
                        acc[vi] = a;
                    }
                }
            }
            seen = true;
            workgroupBarrier();
            continue;
        }
        let tmax = wg_max(s);
        let m_new = max(m, tmax);
        var pj = 0.0;
        if (vis) {
            pj = exp(s - m_new);
        }
        ps[li] = pj;
        var ms = 1.0;
        if (seen) {
            ms = exp(m - m_new);
        }
        let psum = wg_sum(pj);
        ssum = ssum * ms + psum;
        m = m_new;
        seen = true;
        let nt = min(WG, j_end - tile);
        for (var vi = 0u; vi < MAX_VPT; vi = vi + 1u) {
            let dv = li + vi * WG;
            if (dv < p.hdv) {
                var a = acc[vi] * ms;
                for (var c = 0u; c < nt; c = c + 1u) {
                    let jj = tile + c;
                    let vbase = jj * p.v_row + kvh * v_head;
                    var v = 0.0;
                    if (p.v_q8 == 0u) {
                        v = v16(vbase + 2u * dv);
                    } else {
                        let bo = vbase + (dv / 32u) * 34u;
                        v = i8f(vb(bo + 2u + dv % 32u)) * v16(bo);
                    }
                    a = a + ps[c] * v;
                }
                acc[vi] = a;
            }
        }
        workgroupBarrier();
    }
    if (p.has_sinks != 0u) {
        let sk = SINKS[p.sinks_off + h];
        var ms = 1.0;
        var vs = 1.0;
        if (!seen || sk > m) {
            if (seen) {
                ms = exp(m - sk);
            } else {
                ms = 0.0;
            }
        } else {
            vs = exp(sk - m);
        }
        ssum = ssum * ms + vs;
        for (var vi = 0u; vi < MAX_VPT; vi = vi + 1u) {
            acc[vi] = acc[vi] * ms;
        }
    }
    var inv = 0.0;
    if (ssum != 0.0) {
        inv = 1.0 / ssum;
    }
    let ob = p.o_off + (t * p.n_head + h) * p.hdv;
    for (var vi = 0u; vi < MAX_VPT; vi = vi + 1u) {
        let dv = li + vi * WG;
        if (dv < p.hdv) {
            O[ob + dv] = acc[vi] * inv;
        }
    }
}
