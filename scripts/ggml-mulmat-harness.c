// Bit-exactness harness for tessera's matmul as llama.cpp runs it
// (crates/tessera-quant/tests/ggml_graph.rs compiles and runs it): one
// `ggml_mul_mat` of a weight with F32 activations, computed by a real
// ggml graph on the CPU backend, so ggml-cpu picks its kernels as it does
// in llama.cpp: the repacked ones (q4_K_8x8 …) when the weight lives in the
// CPU_REPACK extra buffer type, llamafile's tinyBLAS for batches, `vec_dot`
// otherwise. The repack functions are not exported; this is the only way to
// reach them.
//
//   ggml-mulmat-harness TYPE_ID COLS ROWS NTOK NTHREADS REPACK W.bin X.f32 Y.out
//
// W.bin holds ROWS rows of COLS values of type TYPE_ID (ggml's own layout),
// X.f32 NTOK rows of COLS f32; Y.out gets NTOK * ROWS f32,
// `y[t * ROWS + r] = W[r] · X[t]`. REPACK 1 allocates the weight in the
// CPU_REPACK buffer type (llama.cpp's default), 0 in the plain CPU buffer
// (`--no-repack`).
//
// Build: cc -O2 -Iscripts -I$LLAMA_SRC/ggml/include scripts/ggml-mulmat-harness.c \
//          -L$LLAMA_BIN -lggml-cpu -lggml-base -Wl,-rpath,$LLAMA_BIN
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"
#include "harness-io.h"

int main(int argc, char ** argv) {
    if (argc != 10) {
        fprintf(stderr, "usage: %s TYPE_ID COLS ROWS NTOK NTHREADS REPACK W.bin X.f32 Y.out\n", argv[0]);
        return 2;
    }
    const enum ggml_type type = (enum ggml_type) atoi(argv[1]);
    const int64_t cols = atoll(argv[2]), rows = atoll(argv[3]), ntok = atoll(argv[4]);
    const int nthreads = atoi(argv[5]), repack = atoi(argv[6]);
    size_t wlen, xlen;
    void * wdata = read_all(argv[7], &wlen);
    float * xdata = read_all(argv[8], &xlen);
    if (wlen != ggml_row_size(type, cols) * rows || xlen != sizeof(float) * cols * ntok) {
        fprintf(stderr, "size mismatch: %zu weight bytes, %zu activation bytes\n", wlen, xlen);
        return 2;
    }

    ggml_backend_t be = ggml_backend_cpu_init();
    ggml_backend_cpu_set_n_threads(be, nthreads);
    ggml_backend_buffer_type_t buft = ggml_backend_cpu_buffer_type();
    if (repack) {
        ggml_backend_dev_t dev = ggml_backend_get_device(be);
        ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
        ggml_backend_dev_get_extra_bufts_t get_extra =
            (ggml_backend_dev_get_extra_bufts_t) ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts");
        ggml_backend_buffer_type_t found = NULL;
        for (ggml_backend_buffer_type_t * e = get_extra ? get_extra(dev) : NULL; e && *e; e++) {
            if (strcmp(ggml_backend_buft_name(*e), "CPU_REPACK") == 0) {
                found = *e;
            }
        }
        if (!found) { fprintf(stderr, "no CPU_REPACK buffer type in this build\n"); return 3; }
        buft = found;
    }

    struct ggml_init_params ip = { ggml_tensor_overhead() * 8 + ggml_graph_overhead(), NULL, true };
    struct ggml_context * ctx_w = ggml_init(ip);
    struct ggml_tensor * w = ggml_new_tensor_2d(ctx_w, type, cols, rows);
    if (repack) {
        // As llama.cpp's weight_buft_supported: the extra buffer type only
        // where the device supports the op with the weight in it.
        struct ggml_context * ctx_t = ggml_init(ip);
        struct ggml_tensor * op = ggml_mul_mat(ctx_t, w, ggml_new_tensor_2d(ctx_t, GGML_TYPE_F32, cols, ntok));
        ggml_backend_buffer_t dummy = ggml_backend_buft_alloc_buffer(buft, 0);
        w->buffer = dummy;
        const bool ok = ggml_backend_dev_supports_op(ggml_backend_get_device(be), op);
        w->buffer = NULL;
        ggml_backend_buffer_free(dummy);
        ggml_free(ctx_t);
        if (!ok) {
            buft = ggml_backend_cpu_buffer_type();
        }
        fprintf(stderr, "weight buffer: %s\n", ggml_backend_buft_name(buft));
    }
    ggml_backend_buffer_t buf_w = ggml_backend_alloc_ctx_tensors_from_buft(ctx_w, buft);
    if (!buf_w) { fprintf(stderr, "cannot allocate the weight\n"); return 3; }
    ggml_backend_buffer_set_usage(buf_w, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    ggml_backend_tensor_set(w, wdata, 0, wlen);

    struct ggml_context * ctx = ggml_init(ip);
    struct ggml_tensor * x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, cols, ntok);
    struct ggml_tensor * y = ggml_mul_mat(ctx, w, x);
    struct ggml_cgraph * gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, y);
    ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors(ctx, be);
    if (!buf) { fprintf(stderr, "cannot allocate the activations\n"); return 3; }
    ggml_backend_tensor_set(x, xdata, 0, xlen);
    if (ggml_backend_graph_compute(be, gf) != GGML_STATUS_SUCCESS) {
        fprintf(stderr, "graph compute failed\n");
        return 3;
    }
    const size_t ylen = sizeof(float) * rows * ntok;
    float * out = malloc(ylen);
    ggml_backend_tensor_get(y, out, 0, ylen);
    write_all(argv[9], out, ylen);

    ggml_backend_buffer_free(buf);
    ggml_backend_buffer_free(buf_w);
    ggml_free(ctx);
    ggml_free(ctx_w);
    ggml_backend_free(be);
    free(out);
    free(xdata);
    free(wdata);
    return 0;
}
