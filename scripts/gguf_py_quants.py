#!/usr/bin/env python3
"""gguf-py's (llama.cpp's `gguf` package) numpy quantization code as a small
CLI, the second golden of tessera's quant tests
(crates/tessera-quant/tests/dequant.rs).

  gguf_py_quants.py dequant TYPE IN.bin OUT.f32 [TYPE IN.bin OUT.f32 ...]

dequant: reads whole blocks of TYPE (a GGML type name: Q4_0, IQ2_XXS, BF16,
...) from IN.bin and writes the values as little-endian f32 to OUT.f32, for
each triple. Exit status 3 (and no output file) for a type gguf-py cannot
dequantize, after the other triples are done.
"""
import argparse
import sys

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

UNSUPPORTED = 3


def cmd_dequant(args):
    if len(args.jobs) % 3 != 0:
        sys.exit("dequant: expected TYPE IN OUT triples")
    status = 0
    for i in range(0, len(args.jobs), 3):
        name, src, dst = args.jobs[i:i + 3]
        try:
            qtype = GGMLQuantizationType[name.upper()]
        except KeyError:
            sys.exit(f"dequant: unknown type {name}")
        data = np.fromfile(src, dtype=np.uint8)
        try:
            values = dequantize(data, qtype)
        except NotImplementedError as e:
            print(f"dequant: {name}: {e}", file=sys.stderr)
            status = UNSUPPORTED
            continue
        np.asarray(values, dtype="<f4").reshape(-1).tofile(dst)
    return status


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dequant", help="dequantize raw blocks to f32")
    d.add_argument("jobs", nargs="+", metavar="TYPE IN OUT")
    d.set_defaults(func=cmd_dequant)
    args = p.parse_args()
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
