// Dumps every contiguous f32 tensor llama.cpp computes for one batch of a
// prompt to DIR/<name>.f32 (spaces and parentheses in names become `_`), for
// a layer-by-layer diff with `TESSERA_DUMP_DIR=DIR tessera run ...`
// (scripts/diff-tensors.py). Build:
//   B=$(bash ../shared/tools/llama-ref.sh); V=$B/../../vendor/llama.cpp
//   cc -O1 -o llama-dump-tensors scripts/llama-dump-tensors.c -I$V/include -I$V/ggml/include \
//      -L$B -lllama -lggml -lggml-base -Wl,-rpath,$B
// Run: llama-dump-tensors MODEL PROMPT DIR
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "llama.h"
#include "ggml.h"
#include "ggml-backend.h"
static const char *dir;
static int seen = 0;
static bool cb(struct ggml_tensor *t, bool ask, void *ud) {
    (void) ud;
    if (ask) return true;
    if (t->type != GGML_TYPE_F32 || !ggml_is_contiguous(t)) return true;
    char path[512]; snprintf(path, sizeof path, "%s/%s.f32", dir, t->name);
    for (char *p = path + strlen(dir) + 1; *p; p++) if (*p == ' ' || *p == '(' || *p == ')') *p = '_';
    size_t n = ggml_nbytes(t);
    void *buf = malloc(n);
    ggml_backend_tensor_get(t, buf, 0, n);
    FILE *f = fopen(path, "wb"); fwrite(buf, 1, n, f); fclose(f); free(buf);
    seen++;
    return true;
}
int main(int argc, char **argv) {
    const char *model_path = argv[1]; const char *prompt = argv[2]; dir = argv[3];
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 512; cp.n_threads = 2; cp.n_threads_batch = 2; cp.cb_eval = cb; cp.cb_eval_user_data = NULL;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    llama_token toks[512];
    int n = llama_tokenize(vocab, prompt, strlen(prompt), toks, 512, true, true);
    llama_decode(ctx, llama_batch_get_one(toks, n));
    // one decode step with the argmax
    const float *lg = llama_get_logits_ith(ctx, -1);
    int best = 0; for (int i = 1; i < llama_vocab_n_tokens(vocab); i++) if (lg[i] > lg[best]) best = i;
    fprintf(stderr, "n_prompt %d, dumped %d tensors, next %d\n", n, seen, best);
    llama_free(ctx); llama_model_free(model);
    return 0;
}
