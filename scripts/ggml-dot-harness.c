// Bit-exactness harness for tessera's dot kernels (crates/tessera-quant/
// tests/ggml_exact.rs compiles and runs it): converts activations and takes
// dot products with the built reference ggml-cpu, through its public type
// traits (`ggml_get_type_traits_cpu`), exactly as ggml_compute_forward_mul_mat
// does for a weight type without repacking or tinyBLAS.
//
//   ggml-dot-harness TYPE_ID N NROWS NTOK W.bin X.f32 ACT.out DOT.out
//
// W.bin holds NROWS rows of N values of type TYPE_ID; X.f32 holds NTOK rows
// of N f32. ACT.out gets the NTOK rows converted by the `from_float` of the
// type's `vec_dot_type`; DOT.out gets NTOK * NROWS f32, `dot[t * NROWS + r]`
// = vec_dot(W[r], ACT[t]). No ggml headers are needed: the few functions and
// the traits struct are declared here.
//
// Build: cc -O2 -Iscripts scripts/ggml-dot-harness.c -L$LLAMA_BIN -lggml-cpu -lggml-base -Wl,-rpath,$LLAMA_BIN
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness-io.h"

typedef void (*from_float_t)(const float * x, void * y, int64_t k);
typedef void (*vec_dot_t)(int n, float * s, size_t bs, const void * x, size_t bx, const void * y,
                          size_t by, int nrc);

// ggml-cpu.h: struct ggml_type_traits_cpu.
struct type_traits_cpu {
    from_float_t from_float;
    vec_dot_t vec_dot;
    int vec_dot_type;
    int64_t nrows;
};

const struct type_traits_cpu * ggml_get_type_traits_cpu(int type);
void ggml_cpu_init(void);
size_t ggml_row_size(int type, int64_t ne);
const char * ggml_type_name(int type);

int main(int argc, char ** argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: %s TYPE_ID N NROWS NTOK W.bin X.f32 ACT.out DOT.out\n", argv[0]);
        return 2;
    }
    ggml_cpu_init();
    const int type = atoi(argv[1]);
    const int64_t n = atoll(argv[2]);
    const int64_t nrows = atoll(argv[3]);
    const int64_t ntok = atoll(argv[4]);
    const struct type_traits_cpu * tt = ggml_get_type_traits_cpu(type);
    if (!tt->vec_dot) { fprintf(stderr, "%s: no vec_dot\n", ggml_type_name(type)); return 1; }
    const int act_type = tt->vec_dot_type;
    const struct type_traits_cpu * at = ggml_get_type_traits_cpu(act_type);
    if (!at->from_float) { fprintf(stderr, "%s: no from_float\n", ggml_type_name(act_type)); return 1; }

    size_t wlen, xlen;
    const uint8_t * w = read_all(argv[5], &wlen);
    const float * x = read_all(argv[6], &xlen);
    const size_t w_row = ggml_row_size(type, n);
    const size_t a_row = ggml_row_size(act_type, n);
    if (wlen != w_row * (size_t) nrows || xlen != sizeof(float) * (size_t) (n * ntok)) {
        fprintf(stderr, "input sizes %zu, %zu do not match the shape\n", wlen, xlen);
        return 2;
    }
    uint8_t * act = calloc(a_row * (size_t) ntok + 64, 1);
    float * dot = calloc((size_t) (nrows * ntok), sizeof(float));
    for (int64_t t = 0; t < ntok; t++) {
        at->from_float(x + t * n, act + t * a_row, n);
    }
    for (int64_t t = 0; t < ntok; t++) {
        for (int64_t r = 0; r < nrows; r++) {
            tt->vec_dot((int) n, &dot[t * nrows + r], 0, w + r * w_row, 0, act + t * a_row, 0, 1);
        }
    }
    write_all(argv[7], act, a_row * (size_t) ntok);
    write_all(argv[8], dot, sizeof(float) * (size_t) (nrows * ntok));
    return 0;
}
