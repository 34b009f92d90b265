// golden-logits: greedy decoding with the reference llama.cpp (libllama),
// dumping the raw logits of every step. Compiled and run by
// scripts/make-golden.py; see crates/tessera-core/tests/fixtures/golden/README.md.
//
//   golden-logits MODEL PROMPT_FILE N_PREDICT N_THREADS TOP_K MODE
//
// PROMPT_FILE holds the prompt bytes verbatim (no escape processing, no
// trailing-newline stripping). MODE is
//   batch  the prompt is decoded in chunks of n_batch (2048) tokens, as
//          llama-completion does without --prompt-cache;
//   split  all prompt tokens but the last, then the last one alone, as
//          llama-completion does with a new --prompt-cache file (it saves the
//          state before the last prompt token).
// Then one token per llama_decode, as llama-completion does.
//
// The context is set up like llama-completion's defaults
// (common_context_params_to_llama of common_params): n_ctx 0 (the model's
// training context), n_batch 2048, n_ubatch 512, one sequence, flash
// attention auto, F16 KV cache, swa_full false (llama_context_default_params
// says true, common_params says false). Tokenization is
// common_tokenize(ctx, prompt, add_special = true, parse_special = true).
// Sampling is --temp 0 --ignore-eos: the logit-bias sampler sets every
// end-of-generation token (llama_vocab_is_eog) and every vocabulary
// "suppress" token to -inf, then the maximum logit wins (first index on ties).
//
// Output: JSON, one object per line:
//   {"prompt_tokens":[...], "n_vocab":N, "n_ctx":N, "n_batch":N, "n_ubatch":N, "masked":[...]}
//   {"step":i, "token":id, "gap":g, "top":[[id,logit],...]}   (one per step)
// "top" is the TOP_K largest raw logits (before any bias, EOG tokens
// included), largest first, ties by lower id. "gap" is the chosen token's
// logit minus the largest logit of any other unmasked token.
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static void quiet_log(enum ggml_log_level level, const char *text, void *user) {
    (void) user;
    if (level == GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
    }
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0) {
            break;
        }
        n += r;
    }
    fclose(f);
    *len = n;
    return buf;
}

// Shortest decimal that reads back as the same float.
static void print_float(float v) {
    char buf[64];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double) v);
        if (strtof(buf, NULL) == v) {
            break;
        }
    }
    fputs(buf, stdout);
}

static void check(int rc, const char *what) {
    if (rc != 0) {
        fprintf(stderr, "golden-logits: %s failed (%d)\n", what, rc);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s MODEL PROMPT_FILE N_PREDICT N_THREADS TOP_K batch|split\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1];
    size_t prompt_len;
    char *prompt = read_all(argv[2], &prompt_len);
    const int n_predict = atoi(argv[3]);
    const int n_threads = atoi(argv[4]);
    const int top_k = atoi(argv[5]);
    const bool split = strcmp(argv[6], "split") == 0;
    if (!split && strcmp(argv[6], "batch") != 0) {
        fprintf(stderr, "golden-logits: mode must be batch or split\n");
        return 2;
    }

    llama_log_set(quiet_log, NULL);
    llama_backend_init();

    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) {
        fprintf(stderr, "golden-logits: cannot load %s\n", model_path);
        return 1;
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 0;
    cp.n_batch = 2048;
    cp.n_ubatch = 512;
    cp.n_seq_max = 1;
    cp.n_threads = n_threads;
    cp.n_threads_batch = n_threads;
    cp.swa_full = false;
    cp.kv_unified = false;
    cp.no_perf = false;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "golden-logits: cannot create the context\n");
        return 1;
    }
    const int n_ctx = (int) llama_n_ctx(ctx);
    const int n_batch = (int) llama_n_batch(ctx);
    const int n_ubatch = (int) llama_n_ubatch(ctx);

    int cap = (int) prompt_len + 16;
    llama_token *tokens = malloc(sizeof(llama_token) * (size_t) (cap + n_predict));
    int n_prompt = llama_tokenize(vocab, prompt, (int32_t) prompt_len, tokens, cap, true, true);
    if (n_prompt < 0) {
        fprintf(stderr, "golden-logits: tokenization failed (%d)\n", n_prompt);
        return 1;
    }
    if (n_prompt == 0) {
        // llama-completion: an empty prompt becomes BOS (when the vocab adds one).
        tokens[n_prompt++] = llama_vocab_bos(vocab);
    }

    // Tokens the sampler forbids: EOG (--ignore-eos, only when the vocab has
    // an EOS) and the vocabulary's suppress tokens.
    bool *masked = calloc((size_t) n_vocab, 1);
    if (llama_vocab_eos(vocab) != LLAMA_TOKEN_NULL) {
        for (int i = 0; i < n_vocab; i++) {
            masked[i] = llama_vocab_is_eog(vocab, i);
        }
    }
    int32_t n_suppress = 0;
    const llama_token *suppress = llama_vocab_get_suppress_tokens(vocab, &n_suppress);
    for (int i = 0; i < n_suppress; i++) {
        masked[suppress[i]] = true;
    }

    printf("{\"prompt_tokens\":[");
    for (int i = 0; i < n_prompt; i++) {
        printf(i ? ",%d" : "%d", tokens[i]);
    }
    printf("],\"n_vocab\":%d,\"n_ctx\":%d,\"n_batch\":%d,\"n_ubatch\":%d,\"masked\":[", n_vocab, n_ctx, n_batch, n_ubatch);
    for (int i = 0, first = 1; i < n_vocab; i++) {
        if (masked[i]) {
            printf(first ? "%d" : ",%d", i);
            first = 0;
        }
    }
    printf("]}\n");

    // Prompt.
    int n_first = split ? n_prompt - 1 : n_prompt;
    for (int off = 0; off < n_first; off += n_batch) {
        int n = n_first - off < n_batch ? n_first - off : n_batch;
        check(llama_decode(ctx, llama_batch_get_one(tokens + off, n)), "prompt decode");
    }
    if (split) {
        check(llama_decode(ctx, llama_batch_get_one(tokens + n_prompt - 1, 1)), "last prompt token decode");
    }

    int *top = malloc(sizeof(int) * (size_t) top_k);
    int n_tokens = n_prompt;
    for (int step = 0; step < n_predict; step++) {
        const float *logits = llama_get_logits_ith(ctx, -1);
        if (!logits) {
            fprintf(stderr, "golden-logits: no logits\n");
            return 1;
        }
        // Greedy over unmasked tokens, first index on ties.
        int best = -1;
        for (int i = 0; i < n_vocab; i++) {
            if (!masked[i] && (best < 0 || logits[i] > logits[best])) {
                best = i;
            }
        }
        float second = -INFINITY;
        for (int i = 0; i < n_vocab; i++) {
            if (!masked[i] && i != best && logits[i] > second) {
                second = logits[i];
            }
        }
        // Top-k raw logits (insertion into a small sorted list).
        int nt = 0;
        for (int i = 0; i < n_vocab; i++) {
            if (nt == top_k && !(logits[i] > logits[top[nt - 1]])) {
                continue;
            }
            int j = nt < top_k ? nt++ : nt - 1;
            while (j > 0 && logits[i] > logits[top[j - 1]]) {
                top[j] = top[j - 1];
                j--;
            }
            top[j] = i;
        }
        printf("{\"step\":%d,\"token\":%d,\"gap\":", step, best);
        print_float(logits[best] - second);
        printf(",\"top\":[");
        for (int j = 0; j < nt; j++) {
            printf(j ? ",[%d," : "[%d,", top[j]);
            print_float(logits[top[j]]);
            printf("]");
        }
        printf("]}\n");

        tokens[n_tokens++] = best;
        if (step + 1 < n_predict) {
            check(llama_decode(ctx, llama_batch_get_one(tokens + n_tokens - 1, 1)), "decode");
        }
    }
    fflush(stdout);

    free(top);
    free(masked);
    free(tokens);
    free(prompt);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
