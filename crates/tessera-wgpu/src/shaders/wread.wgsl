// Byte-level reads of the weight binding `W` (array<u32>): blocks of the
// GGML types start at any byte, so every field is read through these.

fn wb(a: u32) -> u32 {
    return (W[a >> 2u] >> ((a & 3u) << 3u)) & 0xffu;
}

fn w32(a: u32) -> u32 {
    let s = (a & 3u) << 3u;
    let i = a >> 2u;
    if (s == 0u) {
        return W[i];
    }
    return (W[i] >> s) | (W[i + 1u] << (32u - s));
}

fn w16(a: u32) -> u32 {
    if ((a & 1u) == 0u) {
        return (W[a >> 2u] >> ((a & 2u) << 3u)) & 0xffffu;
    }
    return w32(a) & 0xffffu;
}

fn wf16(a: u32) -> f32 {
    return unpack2x16float(w16(a)).x;
}

// The 4 bytes at `a` as a vec4 of unsigned values.
fn wb4(a: u32) -> vec4<u32> {
    let q = w32(a);
    return vec4<u32>(q & 0xffu, (q >> 8u) & 0xffu, (q >> 16u) & 0xffu, q >> 24u);
}

// The 4 bytes at `a` as a vec4 of signed values.
fn wi4(a: u32) -> vec4<f32> {
    let q = bitcast<i32>(w32(a));
    return vec4<f32>(
        f32((q << 24u) >> 24u),
        f32((q << 16u) >> 24u),
        f32((q << 8u) >> 24u),
        f32(q >> 24u),
    );
}
