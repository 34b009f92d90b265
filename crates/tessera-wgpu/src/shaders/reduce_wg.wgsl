// Workgroup reductions over WG invocations through shared memory (the
// fallback when the adapter has no subgroup operations). Every invocation
// gets the result. Call from uniform control flow.

var<workgroup> red_buf: array<f32, WG>;
var<private> g_li: u32;

fn wg_sum(v: f32) -> f32 {
    red_buf[g_li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (g_li < s) {
            red_buf[g_li] = red_buf[g_li] + red_buf[g_li + s];
        }
        workgroupBarrier();
    }
    let r = red_buf[0];
    workgroupBarrier();
    return r;
}

fn wg_max(v: f32) -> f32 {
    red_buf[g_li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (g_li < s) {
            red_buf[g_li] = max(red_buf[g_li], red_buf[g_li + s]);
        }
        workgroupBarrier();
    }
    let r = red_buf[0];
    workgroupBarrier();
    return r;
}

// A row of a matmul is the whole workgroup's.
fn rows_per_wg() -> u32 {
    return 1u;
}
fn row_in_wg() -> u32 {
    return 0u;
}
fn lane() -> u32 {
    return g_li;
}
fn lanes() -> u32 {
    return WG;
}
fn row_sum(v: f32) -> f32 {
    return wg_sum(v);
}
