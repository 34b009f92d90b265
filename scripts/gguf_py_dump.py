#!/usr/bin/env python3
"""Dumps what gguf-py (llama.cpp's `gguf` package) reads from a GGUF file, as
JSON, for tessera's cross-check tests (crates/tessera-gguf/tests/gguf_py.rs).

  gguf_py_dump.py FILE.gguf > dump.json

Output: {"metadata": {key: {"type": [type names], "len": n?, "value": v}},
         "tensors": [{"name", "type", "dims", "n_bytes", "abs_offset",
                      "head", "tail"}]}
Arrays longer than 64 elements are cut to their first 64 ("len" keeps the
full length). "head"/"tail" are the first/last 16 bytes of the data, in hex.
"""
import json
import sys

from gguf import GGUFReader

HEAD = 64


def field_value(field):
    v = field.contents()
    if isinstance(v, list) and len(v) > HEAD:
        v = v[:HEAD]
    return v


def main(path):
    r = GGUFReader(path)
    meta = {}
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue  # gguf-py's pseudo-fields for the header
        entry = {"type": [t.name for t in field.types]}
        if field.types and field.types[0].name == "ARRAY":
            entry["len"] = len(field.data)
        entry["value"] = field_value(field)
        meta[name] = entry
    tensors = []
    for t in r.tensors:
        raw = t.data.tobytes()
        tensors.append({
            "name": t.name,
            "type": int(t.tensor_type),
            "dims": [int(d) for d in t.shape],
            "n_bytes": int(t.n_bytes),
            "abs_offset": int(t.data_offset),
            "head": raw[:16].hex(),
            "tail": raw[-16:].hex(),
        })
    json.dump({"metadata": meta, "tensors": tensors}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
