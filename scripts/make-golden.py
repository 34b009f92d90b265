#!/usr/bin/env python3
"""Regenerates the llama.cpp golden fixtures of tessera-core.

    python3 scripts/make-golden.py [--parts greedy,synth,synth-moe,ppl]

Writes
  crates/tessera-core/tests/fixtures/golden/<model-tag>.json  greedy continuations
      of the real models, with the top-10 raw logits of every step;
  crates/tessera-core/tests/fixtures/golden/synth.json         the same for tiny
      synthetic models (tessera-synth);
  crates/tessera-core/tests/fixtures/golden/synth_moe.json     the same for synthetic
      MoE models at F16 and quantized by llama-quantize (Q8_0, Q4_K_M, ...);
  crates/tessera-core/tests/fixtures/ppl/reference.json        llama-perplexity.

The layout, the settings and the llama.cpp quirks are described in
crates/tessera-core/tests/fixtures/golden/README.md.

Needs: the reference llama.cpp build (scripts: /work/shared/tools/llama-ref.sh,
or $LLAMA_REF_BIN), a C compiler, cargo (for tessera-synth) and the cached
models (scripts/fetch-models.sh). Standard library only.
Env: LLAMA_REF_BIN (the llama.cpp bin dir), TESSERA_MODELS (default
~/.cache/tessera/models), CARGO_TARGET_DIR (for tessera-synth),
GOLDEN_THREADS (default 2), SYNTH_MOE_ONLY (comma-separated tags of
SYNTH_MOE_MODELS: run only those, to try a config; nothing is written).
"""

import argparse
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from gguf_header import read_header, tensor_types

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "crates/tessera-core/tests/fixtures"
GOLDEN = FIXTURES / "golden"
PPL = FIXTURES / "ppl"
PPL_TEXT = PPL / "gpl-3-and-2.txt"
MODELS = Path(os.environ.get("TESSERA_MODELS", Path.home() / ".cache/tessera/models"))
THREADS = int(os.environ.get("GOLDEN_THREADS", "2"))
TOP_K = 10
N_PREDICT = 64
N_PREDICT_SYNTH = 16

LONG_PROMPT = (
    "The town of Millbrook sits at the bend of a slow river, where the water turns "
    "brown after the spring rains and clear again by midsummer. For most of its "
    "history the town lived on two things: the paper mill on the eastern bank and "
    "the orchards that climb the hills to the west. The mill opened in 1887, when a "
    "family of engineers from the coast bought the old grain mill, replaced its "
    "wooden wheel with a turbine, and began making newsprint for the growing cities "
    "downstream. At its peak it employed nearly four hundred people, which was more "
    "than half of the working population of the valley. The orchards were older. "
    "Apple and pear trees had been planted by the first settlers, and by the turn "
    "of the century the valley shipped fruit by rail to markets hundreds of miles "
    "away. Every autumn the school closed for two weeks so that children could help "
    "with the harvest, a custom that survived well into the nineteen-sixties. When "
    "the mill finally closed, the town expected to shrink, and for a decade it did. "
    "Shops on the main street stood empty, and the railway station was reduced to a "
    "single platform with a ticket machine. Then, slowly, something changed. Young "
    "families who could no longer afford the cities began to arrive, drawn by the "
    "cheap houses and the quiet streets. They opened cafes in the old shop fronts, "
    "repaired the bandstand in the park, and started a market every Saturday morning. "
    "Today, if you walk along the river on a summer evening, you will"
)

# Shared prompts (name, text); each model adds its chat-template prompt.
PROMPTS = [
    ("english", "The old lighthouse keeper climbed the stairs every evening, and"),
    ("code_python", 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'),
    ("code_c", '#include <stdio.h>\n\nint main(void) {\n    for (int i = 0; i < 10; i++) {\n        printf("%d\\n", i'),
    ("list", "Shopping list:\n1. Eggs\n2. Milk\n3."),
    ("arithmetic", "Q: What is 17 + 25?\nA: 42\nQ: What is 123 * 4?\nA:"),
    ("numbers", "1, 2, 3, 5, 8, 13, 21,"),
    ("french", "Il était une fois, dans un petit village au bord de la mer,"),
    ("japanese", "東京は日本の首都であり、"),
    ("russian", "Москва — столица России, и"),
    ("short", "The"),
    ("long", LONG_PROMPT),
    ("repetition", "I like apples. I like apples. I like apples. I like apples. I like"),
    ("punctuation", "  Hello,   world!!!  ...\n\n\t\t--- ??? ;;; (  )  [ ]  {}\n    \n  *** \"quoted\" 'single' -- end"),
    ("json", '{"name": "Alice", "age": 30, "languages": ["en", "fr"], "city": "'),
    ("emoji_url", "I love pizza 🍕 and ice cream 🍦! See https://example.com/menu?item=1&size=large for"),
]

QUESTION = "What are three tips for staying healthy?"
REAL_MODELS = [
    {
        "tag": "smollm2-135m-instruct-q4_1",
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "chat": "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n",
    },
    {
        "tag": "gemma-3-270m-q4_k_m",
        "file": "gemma-3-270m-q4_k_m.gguf",
        "chat": f"<start_of_turn>user\n{QUESTION}<end_of_turn>\n<start_of_turn>model\n",
    },
]

SYNTH_ARCHS = ["llama", "mixtral", "qwen3", "gemma3", "qwen3moe", "olmoe"]
SYNTH_DTYPES = ["f32", "f16"]
SYNTH_SEED = 1
SYNTH_PROMPTS = [
    ("hello", "Hello world"),
    ("sentence", "The cat sat on the mat, and then"),
    ("numbers", "1, 2, 3, 4, 5,"),
]


# --parts synth-moe: MoE models at F16 and as llama-quantize makes them from it.
N_PREDICT_SYNTH_MOE = 32
SYNTH_MOE_PROMPTS = SYNTH_PROMPTS + [
    ("fox", "The quick brown fox jumps over the lazy dog. Then it"),
    ("chat", "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"),
    # ~120 tokens: enough for most experts to get 8+ of the prompt's tokens,
    # where ggml's mul_mat_id switches to its tiled kernels.
    ("long", "In the valley below the old mill, the river bends twice before it reaches the "
             "town, and every spring the water rises over the low fields where the farmers "
             "grow barley and beans."),
]
SYNTH_MOE_QUANTS = ["Q8_0", "Q4_K_M"]
# Every matrix row is a multiple of 256 values (n_embd, n_head·head_dim, n_ff_exp),
# so Q4_K_M really uses K-quants (no fallback to Q5_0/Q8_0 for odd rows).
MOE_SHAPE = {"n_embd": 256, "n_head": 4, "head_dim": 64, "n_ff_exp": 256}
# (tag, arch, SynthConfig fields that differ from SynthConfig::new(arch) besides
# seed/weight_type/vocab, extra llama-quantize types); the tag names the files.
MLA_SHAPE = {"n_embd": 256, "n_head": 4, "head_dim": 96, "n_rot": 32, "head_dim_v": 64,
             "kv_lora_rank": 256, "n_ff_exp": 256}
SYNTH_MOE_MODELS = [
    ("mixtral", "mixtral", {**MOE_SHAPE, "n_expert": 8, "n_expert_used": 2}, []),
    ("qwen3moe", "qwen3moe", {**MOE_SHAPE, "n_expert": 16, "n_expert_used": 4}, []),
    ("olmoe", "olmoe", {**MOE_SHAPE, "n_expert": 8, "n_expert_used": 3}, []),
    # shared expert 2 × 256 wide, gated by sigmoid(ffn_gate_inp_shexp·x)
    ("qwen2moe", "qwen2moe", {**MOE_SHAPE, "n_expert": 16, "n_expert_used": 4}, []),
    # layer 0 dense (n_ff 512), layers 1-2 MoE; sigmoid + exp_probs_b, norm, scale 2.5, half RoPE
    ("glm4moe", "glm4moe", {**MOE_SHAPE, "n_layer": 3, "n_rot": 32, "n_ff": 512, "n_expert": 16,
                            "n_expert_used": 4}, []),
    # DeepSeek-V2-Lite style: no q-LoRA, softmax, 2 shared experts, YaRN (factor 40)
    ("deepseek2", "deepseek2", {**MLA_SHAPE, "n_layer": 3, "n_ff": 512, "n_expert": 16,
                                "n_expert_used": 4}, []),
    # GLM-4.7-Flash style: q-LoRA, sigmoid + exp_probs_b, norm, scale 1.8, 1 shared expert,
    # no YaRN; plus DeepSeek-V3's expert groups (4 groups, 2 used) to cover group routing
    ("deepseek2-glm47flash", "deepseek2", {
        **MLA_SHAPE, "n_layer": 3, "n_ff": 512, "n_expert": 16, "n_expert_used": 4,
        "q_lora_rank": 256, "gating": "sigmoid", "exp_probs_b": True, "expert_weights_norm": True,
        "expert_weights_scale": 1.8, "n_expert_shared": 1, "n_expert_groups": 4, "n_group_used": 2,
        "rope_yarn_factor": 0.0, "rope_yarn_orig_ctx": 0, "rope_yarn_log_mul": 0.0,
        "rope_freq_base": 1000000.0}, []),
    # sinks, alternating window 16, YaRN, biases; MXFP4 experts as gpt-oss ships them
    # exp_gate_up_scale 8: expert gate/up values reach the SwiGLU clamp (±7) often
    ("gpt-oss", "gpt-oss", {**MOE_SHAPE, "n_expert": 16, "n_expert_used": 4, "exp_gate_up_scale": 8.0},
     ["MXFP4_MOE"]),
    # the deepseek2 (V2-Lite) model with the experts' gate and up fused into one ffn_gate_up_exps
    # (per expert: gate rows, then up rows; the same values as the split tensors)
    ("deepseek2-fused", "deepseek2", {**MLA_SHAPE, "n_layer": 3, "n_ff": 512, "n_expert": 16,
                                      "n_expert_used": 4, "fused_gate_up": True}, []),
]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def llama_bin():
    if os.environ.get("LLAMA_REF_BIN"):
        return Path(os.environ["LLAMA_REF_BIN"])
    tool = Path("/work/shared/tools/llama-ref.sh")
    if tool.is_file():
        out = subprocess.run(["bash", str(tool)], check=True, capture_output=True, text=True)
        return Path(out.stdout.strip().splitlines()[-1])
    return Path.home() / ".cache/tessera-ref/llama-cpp-python-0.3.36/build/bin"


class Ref:
    """The reference llama.cpp: binaries, sources, version, the compiled helper."""

    def __init__(self, work):
        self.bin = llama_bin()
        self.src = self.bin.parent.parent / "vendor/llama.cpp"
        # Passive OpenMP waits: same numbers, but no spinning on a shared, oversubscribed machine.
        self.env = dict(os.environ, LD_LIBRARY_PATH=str(self.bin), OMP_WAIT_POLICY="PASSIVE")
        v = subprocess.run([str(self.bin / "llama-completion"), "--version"], env=self.env,
                           capture_output=True, text=True)
        version = next((l.strip() for l in (v.stdout + v.stderr).splitlines() if l.startswith("version:")), "?")
        commit = subprocess.run(["git", "-C", str(self.src), "log", "-1", "--format=%H"],
                                capture_output=True, text=True).stdout.strip()
        self.version = {
            "version": version.removeprefix("version: "),
            "commit": commit or None,
            "source": f"{self.bin.parent.parent.name}/vendor/llama.cpp",
        }
        self.helper = Path(work) / "golden-logits"
        cmd = ["cc", "-O2", "-Wall", "-o", str(self.helper), str(ROOT / "scripts/golden-logits.c"),
               "-I", str(self.src / "include"), "-I", str(self.src / "ggml/include"),
               "-L", str(self.bin), "-lllama", "-lggml", "-lggml-base", "-lm",
               f"-Wl,-rpath,{self.bin}"]
        subprocess.run(cmd, check=True)
        self.work = Path(work)

    def logits(self, model, prompt, n_predict, mode):
        """Runs golden-logits; returns (header, steps)."""
        pf = self.work / "prompt.txt"
        pf.write_bytes(prompt.encode("utf-8"))
        out = subprocess.run([str(self.helper), str(model), str(pf), str(n_predict), str(THREADS),
                              str(TOP_K), mode], env=self.env, check=True, capture_output=True, text=True)
        lines = [json.loads(l) for l in out.stdout.splitlines() if l.strip()]
        head, steps = lines[0], lines[1:]
        assert len(steps) == n_predict, (model, prompt, len(steps))
        return head, steps

    def completion(self, model, prompt, n_predict):
        """llama-completion's greedy continuation, read from its session file."""
        session = self.work / "session.bin"
        session.unlink(missing_ok=True)
        cmd = [str(self.bin / "llama-completion"), "-m", str(model), "-p", prompt, "--no-escape",
               "-n", str(n_predict), "--temp", "0", "--ignore-eos", "-no-cnv", "-s", "1",
               "-t", str(THREADS), "--prompt-cache", str(session), "--prompt-cache-all"]
        subprocess.run(cmd, env=self.env, check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.work)
        data = session.read_bytes()
        magic, _version, n = struct.unpack_from("<III", data)
        assert magic == 0x6767736E, hex(magic)  # 'ggsn'
        return list(struct.unpack_from(f"<{n}i", data, 12))


def first_diff(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b) else min(len(a), len(b)))


def run_case(ref, model, name, prompt, n_predict):
    """golden-logits in batch mode, checked against llama-completion (whose
    --prompt-cache decodes the last prompt token alone); only when the two
    disagree, golden-logits in split mode too, to tell a batching difference
    from a harness bug."""
    head, steps = ref.logits(model, prompt, n_predict, "batch")
    tokens = [s["token"] for s in steps]
    session = ref.completion(model, prompt, n_predict)
    prompt_tokens = head["prompt_tokens"]
    lc_prompt, lc_tokens = session[:len(prompt_tokens)], session[len(prompt_tokens):]
    checks = {
        "llama_completion_prompt_tokens_equal": lc_prompt == prompt_tokens,
        "llama_completion_equals_batch": lc_tokens == tokens,
    }
    extra = {}
    if lc_tokens != tokens or lc_prompt != prompt_tokens:
        _, split_steps = ref.logits(model, prompt, n_predict, "split")
        split_tokens = [s["token"] for s in split_steps]
        checks["llama_completion_equals_split"] = lc_tokens == split_tokens
        extra = {
            "llama_completion_tokens": session,
            "tokens_split": split_tokens,
            "split_first_diff": first_diff(split_tokens, tokens),
        }
    case = {"name": name, "prompt": prompt, "prompt_tokens": prompt_tokens, "tokens": tokens,
            "checks": checks, **extra,
            "steps": [{"gap": s["gap"], "top": s["top"]} for s in steps]}
    bad = [k for k, v in checks.items() if not v]
    log(f"  {name}: {len(prompt_tokens)} prompt tokens, min gap {min(s['gap'] for s in steps):.4g}"
        + (f"  MISMATCH {bad}" if bad else ""))
    return head, case


def settings(head, n_predict, prompt_mode="batch"):
    return {
        "n_predict": n_predict,
        "n_threads": THREADS,
        "n_ctx": head["n_ctx"],
        "n_batch": head["n_batch"],
        "n_ubatch": head["n_ubatch"],
        "top_k": TOP_K,
        "prompt_mode": prompt_mode,
        "sampling": "--temp 0 --ignore-eos: argmax over tokens not in masked_tokens, first id on ties",
        "command": f"llama-completion -m MODEL -p PROMPT --no-escape -n {n_predict} --temp 0 --ignore-eos "
                   f"-no-cnv -s 1 -t {THREADS} --prompt-cache s.bin --prompt-cache-all",
    }


def to_json(obj, indent=""):
    """JSON with small objects, steps and scalar lists on one line (small diffs, readable)."""
    flat = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    scalars = isinstance(obj, list) and all(not isinstance(v, (dict, list)) for v in obj)
    if not isinstance(obj, (dict, list)) or scalars or len(flat) <= 100 or (isinstance(obj, dict) and "top" in obj):
        return flat
    inner = indent + " "
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(k)}: {to_json(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    return "[\n" + ",\n".join(inner + to_json(v, inner) for v in obj) + "\n" + indent + "]"


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = to_json(obj)
    assert json.loads(text) == obj
    path.write_text(text + "\n", encoding="utf-8")
    log(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


def greedy(ref):
    for m in REAL_MODELS:
        model = MODELS / m["file"]
        log(f"{m['file']}:")
        cases, head = [], None
        for name, prompt in PROMPTS + [("chat", m["chat"])]:
            head, case = run_case(ref, model, name, prompt, N_PREDICT)
            cases.append(case)
        write_json(GOLDEN / f"{m['tag']}.json", {
            "llama_cpp": ref.version,
            "generator": "scripts/make-golden.py + scripts/golden-logits.c",
            "model": m["file"],
            "model_sha256": sha256(model),
            "n_vocab": head["n_vocab"],
            "masked_tokens": head["masked"],
            "settings": settings(head, N_PREDICT),
            "cases": cases,
        })


def synth_binary():
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "tessera-testkit", "--bin", "tessera-synth"],
                   cwd=ROOT, check=True, env=dict(os.environ, CARGO_TARGET_DIR=str(target)))
    return target / "release/tessera-synth"


def synth(ref):
    exe = synth_binary()
    models, head = [], None
    for arch in SYNTH_ARCHS:
        for dtype in SYNTH_DTYPES:
            path = ref.work / f"synth-{arch}-s{SYNTH_SEED}-{dtype}.gguf"
            subprocess.run([str(exe), "--arch", arch, "--seed", str(SYNTH_SEED), "--dtype", dtype,
                            "--vocab", "builtin", "-o", str(path)], check=True, capture_output=True)
            log(f"{path.name}:")
            cases = []
            for name, prompt in SYNTH_PROMPTS:
                head, case = run_case(ref, path, name, prompt, N_PREDICT_SYNTH)
                cases.append(case)
            models.append({
                "config": {"arch": arch, "seed": SYNTH_SEED, "weight_type": dtype.upper(), "vocab": "builtin"},
                "file_name": path.name,
                "sha256": sha256(path),
                "size": path.stat().st_size,
                "n_vocab": head["n_vocab"],
                "masked_tokens": head["masked"],
                "n_ctx": head["n_ctx"],
                "cases": cases,
            })
    write_json(GOLDEN / "synth.json", {
        "llama_cpp": ref.version,
        "generator": "scripts/make-golden.py + scripts/golden-logits.c",
        "synth": "SynthConfig::new(arch) with seed, weight_type and vocab as in config; every other field "
                 "at its default (tessera-synth --arch A --seed S --dtype D --vocab builtin)",
        "settings": settings(head, N_PREDICT_SYNTH),
        "models": models,
    })


def check_not_degenerate(label, cases):
    """Fails when random weights give useless fixtures: a continuation that is
    one token repeated, or the same continuation for every prompt."""
    problems = [f"'{c['name']}' is token {c['tokens'][0]} repeated" for c in cases if len(set(c["tokens"])) == 1]
    if len(cases) > 1 and len({tuple(c["tokens"]) for c in cases}) == 1:
        problems.append("every prompt gives the same continuation")
    if problems:
        raise SystemExit(f"{label}: degenerate synthetic model: {'; '.join(problems)}")
    log(f"  distinct tokens per case: {[len(set(c['tokens'])) for c in cases]}")


def synth_moe_model(ref, path, config, quantize):
    """One model of synth_moe.json: its identity, header facts and cases."""
    log(f"{path.name}:")
    cases, head = [], None
    for name, prompt in SYNTH_MOE_PROMPTS:
        head, case = run_case(ref, path, name, prompt, N_PREDICT_SYNTH_MOE)
        cases.append(case)
    check_not_degenerate(path.name, cases)
    meta, _ = read_header(path)
    return head, {
        "config": config,
        "quantize": quantize,
        "file_name": path.name,
        "sha256": sha256(path),
        "size": path.stat().st_size,
        "file_type": meta["general.file_type"],
        "tensor_types": tensor_types(path),
        "n_vocab": head["n_vocab"],
        "masked_tokens": head["masked"],
        "n_ctx": head["n_ctx"],
        "cases": cases,
    }


def cli_value(v):
    """A config value as SynthConfig::set reads it (JSON true -> true)."""
    return str(v).lower() if isinstance(v, bool) else str(v)


def synth_moe(ref):
    exe = synth_binary()
    models, head = [], None
    only = set(os.environ["SYNTH_MOE_ONLY"].split(",")) if os.environ.get("SYNTH_MOE_ONLY") else None
    for tag, arch, fields, extra_quants in SYNTH_MOE_MODELS:
        if only and tag not in only:
            continue
        config = {"arch": arch, "seed": SYNTH_SEED, "weight_type": "F16", "vocab": "builtin", **fields}
        f16 = ref.work / f"synth-moe-{tag}-s{SYNTH_SEED}-f16.gguf"
        sets = [a for k, v in config.items() if k != "arch" for a in ("--set", f"{k}={cli_value(v)}")]
        subprocess.run([str(exe), "--arch", arch, *sets, "-o", str(f16)], check=True, capture_output=True)
        head, model = synth_moe_model(ref, f16, config, None)
        models.append(model)
        for qtype in SYNTH_MOE_QUANTS + extra_quants:
            out = f16.with_name(f16.name.replace("-f16.gguf", f"-{qtype.lower()}.gguf"))
            subprocess.run([str(ref.bin / "llama-quantize"), str(f16), str(out), qtype], env=ref.env,
                           check=True, capture_output=True)
            quantize = {"type": qtype, "source": f16.name, "source_sha256": model["sha256"],
                        "command": f"llama-quantize {f16.name} {out.name} {qtype}"}
            head, qmodel = synth_moe_model(ref, out, config, quantize)
            models.append(qmodel)
    if only:
        log(f"SYNTH_MOE_ONLY={os.environ['SYNTH_MOE_ONLY']}: not writing synth_moe.json")
        return
    write_json(GOLDEN / "synth_moe.json", {
        "llama_cpp": ref.version,
        "generator": "scripts/make-golden.py --parts synth-moe + scripts/golden-logits.c",
        "synth": "SynthConfig::new(arch), then cfg.set(field, value) for every other entry of config "
                 "(tessera-synth --arch A --set FIELD=VALUE ...); quantized models are llama-quantize "
                 "of that F16 file (quantize.command)",
        "settings": settings(head, N_PREDICT_SYNTH_MOE),
        "models": models,
    })


def ppl(ref):
    runs = []
    for m in REAL_MODELS:
        model = MODELS / m["file"]
        cmd = [str(ref.bin / "llama-perplexity"), "-m", str(model), "-f", str(PPL_TEXT), "-c", "512",
               "-t", str(THREADS)]
        log(f"{m['file']}: llama-perplexity ...")
        out = subprocess.run(cmd, env=ref.env, check=True, capture_output=True, text=True,
                             stdin=subprocess.DEVNULL)
        both = out.stdout + "\n" + out.stderr
        chunks = [float(v) for _, v in re.findall(r"\[(\d+)\](\d+\.\d+),", out.stdout)]
        final = re.search(r"Final estimate: PPL = (\d+\.\d+) \+/- (\d+\.\d+)", both)
        info = re.search(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+), batch_size=(\d+), n_seq=(\d+)", both)
        assert final and info, both[-2000:]
        n_chunks = int(info.group(1))
        assert len(chunks) == n_chunks, (len(chunks), n_chunks)
        runs.append({
            "model": m["file"],
            "model_sha256": sha256(model),
            "n_ctx": int(info.group(2)),
            "n_batch": int(info.group(3)),
            "n_seq": int(info.group(4)),
            "n_chunks": n_chunks,
            "ppl": float(final.group(1)),
            "ppl_error": float(final.group(2)),
            "running_ppl": chunks,
        })
        log(f"  PPL {final.group(1)} +/- {final.group(2)} over {n_chunks} chunks")
    write_json(PPL / "reference.json", {
        "llama_cpp": ref.version,
        "generator": "scripts/make-golden.py",
        "text": PPL_TEXT.name,
        "text_sha256": sha256(PPL_TEXT),
        "command": f"llama-perplexity -m MODEL -f {PPL_TEXT.name} -c 512 -t {THREADS}",
        "runs": runs,
    })


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="greedy,synth,synth-moe,ppl",
                    help="comma-separated: greedy, synth, synth-moe, ppl")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory(prefix="tessera-golden-") as work:
        ref = Ref(work)
        log(f"llama.cpp: {ref.version}")
        if "greedy" in parts:
            greedy(ref)
        if "synth" in parts:
            synth(ref)
        if "synth-moe" in parts:
            synth_moe(ref)
        if "ppl" in parts:
            ppl(ref)


if __name__ == "__main__":
    main()
