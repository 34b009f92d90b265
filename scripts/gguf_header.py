"""Reads the header of a GGUF file (metadata and tensor infos), standard
library only, for the fixture and benchmark scripts.

    from gguf_header import read_header
    meta, tensors = read_header("m.gguf")   # {key: value}, [(name, dims, type_name)]

    python3 scripts/gguf_header.py M.gguf ...   # bytes per type, experts apart
"""

import math
import os
import struct
import sys

# enum ggml_type of ggml/include/ggml.h (the ids that can appear in a GGUF).
GGML_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
    10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
    17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
    23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M",
    30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4", 40: "NVFP4", 41: "Q1_0", 42: "Q2_0",
}

# (values per block, bytes per block) of the types the scripts meet.
TYPE_SIZES = {
    "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q4_0": (32, 18), "Q4_1": (32, 20),
    "Q5_0": (32, 22), "Q5_1": (32, 24), "Q8_0": (32, 34), "Q2_K": (256, 84), "Q3_K": (256, 110),
    "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210), "MXFP4": (32, 17),
}

# GGUF value types: id -> struct format of a scalar (8 string, 9 array are special).
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class _Reader:
    def __init__(self, f):
        self.f = f

    def unpack(self, fmt):
        size = struct.calcsize(fmt)
        data = self.f.read(size)
        if len(data) != size:
            raise ValueError("truncated GGUF header")
        return struct.unpack(fmt, data)[0]

    def string(self):
        return self.f.read(self.unpack("<Q")).decode("utf-8")

    def value(self, vtype):
        if vtype == 8:
            return self.string()
        if vtype == 9:
            item_type, n = self.unpack("<I"), self.unpack("<Q")
            return [self.value(item_type) for _ in range(n)]
        return self.unpack(_SCALARS[vtype])


def read_header(path):
    """(metadata dict, [(name, dims, ggml type name)] in file order)."""
    with open(path, "rb") as f:
        r = _Reader(f)
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        r.unpack("<I")  # version
        n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
        meta = {}
        for _ in range(n_kv):
            key = r.string()
            meta[key] = r.value(r.unpack("<I"))
        tensors = []
        for _ in range(n_tensors):
            name = r.string()
            dims = [r.unpack("<Q") for _ in range(r.unpack("<I"))]
            ggml_type = r.unpack("<I")
            r.unpack("<Q")  # offset
            tensors.append((name, dims, GGML_TYPES.get(ggml_type, str(ggml_type))))
        return meta, tensors


def tensor_types(path):
    """{ggml type name: [tensor names in file order]}, types in order of first use."""
    out = {}
    for name, _dims, ggml_type in read_header(path)[1]:
        out.setdefault(ggml_type, []).append(name)
    return out


def tensor_bytes(dims, ggml_type):
    """Bytes of a tensor's data (types of TYPE_SIZES only)."""
    block, size = TYPE_SIZES[ggml_type]
    return math.prod(dims) // block * size


def summary(path):
    """{"experts"|"other": {type: bytes}} of the GGUF at path."""
    out = {"experts": {}, "other": {}}
    for name, dims, ggml_type in read_header(path)[1]:
        part = out["experts" if "_exps." in name else "other"]
        part[ggml_type] = part.get(ggml_type, 0) + tensor_bytes(dims, ggml_type)
    return out


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(f"{p}: {os.path.getsize(p)} bytes")
        for part, types in summary(p).items():
            for t, n in sorted(types.items(), key=lambda kv: -kv[1]):
                print(f"  {part:8} {t:6} {n:>14} bytes ({n / 2**20:.1f} MiB)")
