#!/usr/bin/env python3
"""Compare two GGUF files: every metadata key/value and every tensor (name, type, shape, bytes).

Used to hold bench/safetensors_to_gguf.py to llama.cpp's own convert_hf_to_gguf.py:

    python bench/check_gguf.py ours.gguf reference.gguf

Keys that only describe the file (general.name, size label, sampling defaults copied from
generation_config.json) are reported but do not count as differences. Exit status 1 on any other
difference.
"""
from __future__ import annotations

import hashlib
import sys

import numpy as np

import gguf

INFORMATIONAL = ("general.name", "general.size_label", "general.basename", "general.finetune",
                 "general.sampling.")


def fields(path: str) -> tuple[dict, dict]:
    r = gguf.GGUFReader(path)
    kv = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        t = f.types
        if t[0] == gguf.GGUFValueType.ARRAY:
            if t[-1] == gguf.GGUFValueType.STRING:
                v = tuple(bytes(f.parts[i]).decode("utf-8", "surrogateescape") for i in f.data)
            else:
                v = tuple(f.parts[i].tolist()[0] for i in f.data)
        elif t[0] == gguf.GGUFValueType.STRING:
            v = bytes(f.parts[f.data[0]]).decode("utf-8", "surrogateescape")
        else:
            v = f.parts[f.data[0]].tolist()[0]
        kv[k] = v
    tensors = {}
    for t in r.tensors:
        data = np.asarray(t.data)
        tensors[t.name] = (t.tensor_type.name, tuple(int(x) for x in t.shape),
                           hashlib.sha256(data.tobytes()).hexdigest()[:16])
    return kv, tensors


def short(v) -> str:
    s = repr(v)
    return s if len(s) < 100 else s[:100] + f"... ({len(v)} items)" if isinstance(v, tuple) else s[:100] + "..."


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    a_kv, a_t = fields(sys.argv[1])
    b_kv, b_t = fields(sys.argv[2])
    bad = 0
    for k in sorted(set(a_kv) | set(b_kv)):
        va, vb = a_kv.get(k, "<missing>"), b_kv.get(k, "<missing>")
        if va != vb:
            info = k.startswith(INFORMATIONAL)
            bad += 0 if info else 1
            print(f"{'note' if info else 'DIFF'} key {k}: {short(va)} vs {short(vb)}")
    for n in sorted(set(a_t) | set(b_t)):
        ta, tb = a_t.get(n), b_t.get(n)
        if ta != tb:
            bad += 1
            print(f"DIFF tensor {n}: {ta} vs {tb}")
    print(f"{len(a_kv)} vs {len(b_kv)} keys, {len(a_t)} vs {len(b_t)} tensors: "
          + ("identical (apart from notes)" if bad == 0 else f"{bad} differences"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
