// Bit-exactness harness for tessera's CPU ops (crates/tessera-core/tests/
// ggml_ops.rs compiles and runs it): builds one small ggml graph with the
// public ggml API, as llama.cpp's graph builder does for the op, computes it
// with ggml-cpu on NTHREADS threads and writes the f32 result.
//
//   ggml-ops-harness OP NTHREADS DIR ARGS...
//
// Inputs are DIR/a.bin, DIR/b.bin, ... (raw little-endian data, see each op
// below); the output is DIR/out.f32. Shapes are given row-major, tessera's
// way ([n_rows, n_cols]; ggml's ne0 is n_cols).
//
//   fattn D NT NH NKH NKV KTYPE VTYPE SCALE SOFTCAP SINKS
//       a: q f32 [NT, NH, D]; b: k cache, NKV cells of [NKH, D] in ggml type
//       KTYPE (1 = F16, 8 = Q8_0); c: v cache likewise (VTYPE); d: mask f16
//       [NT, NKV] (0 or -inf); e (SINKS = 1): sinks f32 [NH].
//       out: f32 [NT, NH, D]. K and V are viewed and permuted as llama.cpp's
//       build_attn_mha does for a KV cache; max_bias is 0.
//   rms_norm GROUP NROWS EPS HASW   a: x [NROWS, GROUP]; b: w [GROUP]
//       out = rms_norm(x) (* w when HASW = 1, ggml_mul broadcast)
//   norm GROUP NROWS EPS            a: x; out = ggml_norm(x)
//   silu|gelu|gelu_erf|tanh NCOLS NROWS          a: x
//   swiglu|geglu NCOLS NROWS        a: gate, b: up (ggml_*_split)
//   add|mul NCOLS NROWS BROWS       a: x [NROWS, NCOLS], b: y [BROWS, NCOLS]
//   scale NCOLS NROWS S             a: x
//   soft_max NCOLS NROWS SCALE MROWS  a: x, b (MROWS > 0): mask f32 [MROWS, NCOLS]
//   get_rows TYPE NCOLS NROWS NIDX  a: matrix (NROWS rows, ggml type TYPE),
//       b: ids i32 [NIDX]; out f32 [NIDX, NCOLS]
//
// Build (the test does this):
//   B=$(bash ../shared/tools/llama-ref.sh); V=$B/../../vendor/llama.cpp
//   cc -O2 -o ggml-ops-harness scripts/ggml-ops-harness.c -Iscripts -I$V/ggml/include
//      -L$B -lggml -lggml-base -lggml-cpu -lm -Wl,-rpath,$B
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"
#include "ggml-cpu.h"
#include "harness-io.h"

static const char * dir;

static void * read_in(const char * name, size_t want) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t len;
    void * buf = read_all(path, &len);
    if (len != want) {
        fprintf(stderr, "%s: %zu bytes, expected %zu\n", path, len, want);
        exit(2);
    }
    return buf;
}

static void fill(struct ggml_tensor * t, const char * name) {
    void * buf = read_in(name, ggml_nbytes(t));
    memcpy(t->data, buf, ggml_nbytes(t));
    free(buf);
}

static void write_out(const struct ggml_tensor * t) {
    char path[1024];
    snprintf(path, sizeof path, "%s/out.f32", dir);
    write_all(path, t->data, ggml_nbytes(t));
}

int main(int argc, char ** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s OP NTHREADS DIR ARGS...\n", argv[0]);
        return 2;
    }
    const char * op = argv[1];
    const int nth = atoi(argv[2]);
    dir = argv[3];
    char ** a = argv + 4;
    const int na = argc - 4;
#define NEED(n) do { if (na != (n)) { fprintf(stderr, "%s: %d args, expected %d\n", op, na, n); return 2; } } while (0)

    ggml_cpu_init();
    struct ggml_init_params ip = { (size_t) 1 << 30, NULL, false };
    struct ggml_context * ctx = ggml_init(ip);
    struct ggml_tensor * out = NULL;

    if (!strcmp(op, "fattn")) {
        NEED(10);
        const int D = atoi(a[0]), NT = atoi(a[1]), NH = atoi(a[2]), NKH = atoi(a[3]), NKV = atoi(a[4]);
        const enum ggml_type kt = (enum ggml_type) atoi(a[5]), vt = (enum ggml_type) atoi(a[6]);
        const float scale = (float) atof(a[7]), softcap = (float) atof(a[8]);
        const int sinks = atoi(a[9]);
        // q: [NT, NH, D] as llama.cpp holds it, permuted to ne [D, NT, NH].
        struct ggml_tensor * q3 = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, D, NH, NT);
        fill(q3, "a.bin");
        struct ggml_tensor * q = ggml_permute(ctx, q3, 0, 2, 1, 3);
        // The caches: one row of NKH*D per cell, viewed as llama-kv-cache's get_k/get_v.
        struct ggml_tensor * kc = ggml_new_tensor_2d(ctx, kt, NKH * D, NKV);
        struct ggml_tensor * vc = ggml_new_tensor_2d(ctx, vt, NKH * D, NKV);
        fill(kc, "b.bin");
        fill(vc, "c.bin");
        struct ggml_tensor * k = ggml_view_4d(ctx, kc, D, NKH, NKV, 1, ggml_row_size(kt, D),
                                              kc->nb[1], kc->nb[1] * NKV, 0);
        struct ggml_tensor * v = ggml_view_4d(ctx, vc, D, NKH, NKV, 1, ggml_row_size(vt, D),
                                              vc->nb[1], vc->nb[1] * NKV, 0);
        k = ggml_permute(ctx, k, 0, 2, 1, 3);
        v = ggml_permute(ctx, v, 0, 2, 1, 3);
        struct ggml_tensor * mask = ggml_new_tensor_2d(ctx, GGML_TYPE_F16, NKV, NT);
        fill(mask, "d.bin");
        struct ggml_tensor * fa = ggml_flash_attn_ext(ctx, q, k, v, mask, scale, 0.0f, softcap);
        if (sinks) {
            struct ggml_tensor * s = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, NH);
            fill(s, "e.bin");
            ggml_flash_attn_ext_add_sinks(fa, s);
        }
        out = fa; // ne [D, NH, NT]: tessera's [NT, NH, D]
    } else if (!strcmp(op, "rms_norm") || !strcmp(op, "norm")) {
        NEED(!strcmp(op, "norm") ? 3 : 4);
        const int G = atoi(a[0]), NR = atoi(a[1]);
        const float eps = (float) atof(a[2]);
        struct ggml_tensor * x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, G, NR);
        fill(x, "a.bin");
        if (!strcmp(op, "norm")) {
            out = ggml_norm(ctx, x, eps);
        } else {
            out = ggml_rms_norm(ctx, x, eps);
            if (atoi(a[3])) {
                struct ggml_tensor * w = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, G);
                fill(w, "b.bin");
                out = ggml_mul(ctx, out, w);
            }
        }
    } else if (!strcmp(op, "silu") || !strcmp(op, "gelu") || !strcmp(op, "gelu_erf") || !strcmp(op, "tanh")) {
        NEED(2);
        struct ggml_tensor * x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, atoi(a[0]), atoi(a[1]));
        fill(x, "a.bin");
        out = !strcmp(op, "silu") ? ggml_silu(ctx, x)
            : !strcmp(op, "gelu") ? ggml_gelu(ctx, x)
            : !strcmp(op, "gelu_erf") ? ggml_gelu_erf(ctx, x)
            : ggml_tanh(ctx, x);
    } else if (!strcmp(op, "swiglu") || !strcmp(op, "geglu")) {
        NEED(2);
        struct ggml_tensor * g = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, atoi(a[0]), atoi(a[1]));
        struct ggml_tensor * u = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, atoi(a[0]), atoi(a[1]));
        fill(g, "a.bin");
        fill(u, "b.bin");
        out = !strcmp(op, "swiglu") ? ggml_swiglu_split(ctx, g, u) : ggml_geglu_split(ctx, g, u);
    } else if (!strcmp(op, "add") || !strcmp(op, "mul")) {
        NEED(3);
        struct ggml_tensor * x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, atoi(a[0]), atoi(a[1]));
        struct ggml_tensor * y = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, atoi(a[0]), atoi(a[2]));
        fill(x, "a.bin");
        fill(y, "b.bin");
        out = !strcmp(op, "add") ? ggml_add(ctx, x, y) : ggml_mul(ctx, x, y);
    } else if (!strcmp(op, "scale")) {
        NEED(3);
        struct ggml_tensor * x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, atoi(a[0]), atoi(a[1]));
        fill(x, "a.bin");
        out = ggml_scale(ctx, x, (float) atof(a[2]));
    } else if (!strcmp(op, "soft_max")) {
        NEED(4);
        const int NC = atoi(a[0]), NR = atoi(a[1]), MR = atoi(a[3]);
        struct ggml_tensor * x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, NC, NR);
        fill(x, "a.bin");
        struct ggml_tensor * m = NULL;
        if (MR > 0) {
            m = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, NC, MR);
            fill(m, "b.bin");
        }
        out = ggml_soft_max_ext(ctx, x, m, (float) atof(a[2]), 0.0f);
    } else if (!strcmp(op, "get_rows")) {
        NEED(4);
        const enum ggml_type t = (enum ggml_type) atoi(a[0]);
        struct ggml_tensor * w = ggml_new_tensor_2d(ctx, t, atoi(a[1]), atoi(a[2]));
        struct ggml_tensor * ids = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, atoi(a[3]));
        fill(w, "a.bin");
        fill(ids, "b.bin");
        out = ggml_get_rows(ctx, w, ids);
    } else {
        fprintf(stderr, "unknown op %s\n", op);
        return 2;
    }

    struct ggml_cgraph * gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, out);
    if (ggml_graph_compute_with_ctx(ctx, gf, nth) != GGML_STATUS_SUCCESS) {
        fprintf(stderr, "compute failed\n");
        return 1;
    }
    write_out(out);
    ggml_free(ctx);
    return 0;
}
