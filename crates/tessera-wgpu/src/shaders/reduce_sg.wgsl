// Workgroup reductions with subgroup operations: each subgroup reduces in
// registers, its first invocation stores the partial, and every invocation
// folds the partials. Call from uniform control flow.

var<workgroup> red_buf: array<f32, WG>;
var<private> g_li: u32;
var<private> g_sl: u32;
var<private> g_sid: u32;
var<private> g_nsg: u32;
var<private> g_ssz: u32;

fn wg_sum(v: f32) -> f32 {
    let s = subgroupAdd(v);
    if (g_sl == 0u) {
        red_buf[g_sid] = s;
    }
    workgroupBarrier();
    var r = 0.0;
    for (var i = 0u; i < g_nsg; i = i + 1u) {
        r = r + red_buf[i];
    }
    workgroupBarrier();
    return r;
}

fn wg_max(v: f32) -> f32 {
    let s = subgroupMax(v);
    if (g_sl == 0u) {
        red_buf[g_sid] = s;
    }
    workgroupBarrier();
    var r = red_buf[0];
    for (var i = 1u; i < g_nsg; i = i + 1u) {
        r = max(r, red_buf[i]);
    }
    workgroupBarrier();
    return r;
}

// A row of a matmul is one subgroup's: as many rows per workgroup as
// subgroups, summed in registers.
fn rows_per_wg() -> u32 {
    return g_nsg;
}
fn row_in_wg() -> u32 {
    return g_sid;
}
fn lane() -> u32 {
    return g_sl;
}
fn lanes() -> u32 {
    return g_ssz;
}
fn row_sum(v: f32) -> f32 {
    return subgroupAdd(v);
}
