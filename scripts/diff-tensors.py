#!/usr/bin/env python3
"""Layer-by-layer diff of tessera against llama.cpp on one prompt.

    llama-dump-tensors MODEL "PROMPT" /tmp/ref          # scripts/llama-dump-tensors.c
    TESSERA_DUMP=1 TESSERA_DUMP_DIR=/tmp/ours tessera run -m MODEL -p "PROMPT" -n 1 --temp 0 \
        2> >(grep tessera_dump | awk '{print $2}' > /tmp/order.txt)
    python3 scripts/diff-tensors.py /tmp/ref /tmp/ours /tmp/order.txt N_TOKENS

Prints, in tessera's node order, every node whose output differs from the
llama.cpp tensor of the same name: max |difference|, relative to the
largest |value|, and per token row. Needs numpy (scripts/py-env.sh).
"""
import os
import sys

import numpy as np

# tessera node base names whose llama.cpp tensor has another name.
ALIAS = {"inp_embd": "embd", "Qcur_rope": "Qcur", "Kcur_rope": "Kcur", "ffn_act": "ffn_swiglu"}


def main():
    ref_dir, our_dir, order, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    for name in open(order).read().split():
        base, _, layer = name.rpartition("-")
        if not layer.isdigit():
            base, layer = name, None
        key = ALIAS.get(base, base) + (f"-{layer}" if layer else "")
        path = os.path.join(ref_dir, f"{key}.f32")
        if not os.path.exists(path) or base in ("Qcur", "Kcur"):  # llama.cpp's Qcur/Kcur are after rope
            continue
        a = np.fromfile(os.path.join(our_dir, f"{name}.f32"), dtype=np.float32)
        b = np.fromfile(path, dtype=np.float32)
        if a.size != b.size:
            print(f"{name:20} size {a.size} vs {b.size}")
            continue
        if np.array_equal(a, b):
            continue
        d = np.abs(a - b)
        per_row = (d.reshape(rows, -1).max(axis=1) / np.maximum(np.abs(b).reshape(rows, -1).max(axis=1), 1e-30))
        print(f"{name:20} max|d| {d.max():.3e} rel {d.max() / max(np.abs(b).max(), 1e-30):.2e} per-row rel {np.round(per_row, 7).tolist()}")


if __name__ == "__main__":
    main()
