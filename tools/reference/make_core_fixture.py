#!/usr/bin/env python3
"""Writes tests/fixtures/core/python_made.safetensors with HF's `safetensors` package.

Read by tests/core/test_safetensors.cpp (PythonMadeFixture*): checks that our reader decodes a
file made by the reference implementation and that our writer reproduces it byte for byte.
Run: /work/venv/bin/python tools/reference/make_core_fixture.py
"""
import hashlib
import pathlib
import struct

import safetensors
import torch
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "core" / "python_made.safetensors"


def fnv1a64(data: bytes, h: int = 14695981039346656037) -> int:
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    tensors = {
        "f32": torch.tensor([[-1.5, 0.0, 0.25], [3.0e-38, 1.0e10, -7.0]], dtype=torch.float32),
        "bf16": torch.tensor([1.0, -2.5, 0.0078125, 3.0e38], dtype=torch.float32).to(torch.bfloat16),
        # f16 subnormals: 2^-24 (smallest), 1023 * 2^-24 (largest), then max normal.
        "f16": torch.tensor([2.0**-24, 1023 * 2.0**-24, 65504.0, -0.5, 1.0], dtype=torch.float16),
        "i64": torch.tensor([[-1, 2**40], [0, 2**53 + 1]], dtype=torch.int64),
        "i32": torch.tensor([-(2**31), 0, 2**31 - 1], dtype=torch.int32),
        "u8": torch.tensor([0, 1, 128, 255], dtype=torch.uint8),
        "empty": torch.zeros((0, 3), dtype=torch.float32),
    }
    # One key only: the Rust writer emits metadata in HashMap (randomised) order, so several keys
    # would make the bytes differ between runs.
    metadata = {"note": "made by python safetensors: h\u00e9llo \u2713"}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(OUT), metadata=metadata)
    data = OUT.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    print(f"safetensors {safetensors.__version__}, torch {torch.__version__}")
    print(f"wrote {OUT} ({len(data)} bytes, header {n} bytes)")
    print(f"sha256 {hashlib.sha256(data).hexdigest()}")
    print(f"fnv1a64 {fnv1a64(data):016x}")
    print(f"fnv1a64(seed=fnv1a64(file)) over the file twice {fnv1a64(data, fnv1a64(data)):016x}")


if __name__ == "__main__":
    main()
