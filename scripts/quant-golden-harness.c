// Golden harness for tessera's reference quantizers (crates/tessera-quant/
// tests/quantize_golden.rs compiles and runs it): quantizes an f32 file with
// the built reference ggml (libggml-base) and writes the blocks to files.
//
//   quant-golden-harness IN.f32 N_PER_ROW NROWS (MODE TYPE_ID OUT)...
//
// MODE is `chunk` (ggml_quantize_chunk with no importance matrix, the path of
// llama-quantize) or the name of an exported row function such as
// `quantize_row_q8_K_ref`, called on all NROWS*N_PER_ROW values at once.
// TYPE_ID is the ggml type number; the output is zero-filled before
// quantizing. No ggml headers are needed: the few functions are declared here.
//
// Build: cc -O2 -Iscripts scripts/quant-golden-harness.c -L$LLAMA_BIN -lggml-base -ldl -Wl,-rpath,$LLAMA_BIN
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness-io.h"

size_t ggml_quantize_chunk(int type, const float * src, void * dst, int64_t start, int64_t nrows,
                           int64_t n_per_row, const float * imatrix);
size_t ggml_row_size(int type, int64_t ne);
const char * ggml_type_name(int type);

typedef void (*row_fn)(const float * x, void * y, int64_t k);

int main(int argc, char ** argv) {
    if (argc < 4 || (argc - 4) % 3 != 0) {
        fprintf(stderr, "usage: %s IN.f32 N_PER_ROW NROWS (MODE TYPE_ID OUT)...\n", argv[0]);
        return 2;
    }
    size_t len;
    const float * src = read_all(argv[1], &len);
    const int64_t n_per_row = atoll(argv[2]);
    const int64_t nrows = atoll(argv[3]);
    if ((int64_t) len != n_per_row * nrows * (int64_t) sizeof(float)) {
        fprintf(stderr, "%s: %zu bytes, expected %lld rows of %lld floats\n", argv[1], len,
                (long long) nrows, (long long) n_per_row);
        return 2;
    }
    for (int a = 4; a < argc; a += 3) {
        const char * mode = argv[a];
        const int type = atoi(argv[a + 1]);
        const size_t size = ggml_row_size(type, n_per_row) * (size_t) nrows;
        void * dst = calloc(size, 1);
        if (strcmp(mode, "chunk") == 0) {
            const size_t written = ggml_quantize_chunk(type, src, dst, 0, nrows, n_per_row, NULL);
            if (written != size) {
                fprintf(stderr, "%s: wrote %zu bytes, expected %zu\n", ggml_type_name(type), written, size);
                return 1;
            }
        } else {
            row_fn f = (row_fn) dlsym(RTLD_DEFAULT, mode);
            if (!f) { fprintf(stderr, "no symbol %s\n", mode); return 1; }
            f(src, dst, n_per_row * nrows);
        }
        write_all(argv[a + 2], dst, size);
        free(dst);
    }
    return 0;
}
