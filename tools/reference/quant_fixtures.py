#!/usr/bin/env python3
"""Fixtures for the Q8_0 / Q4_0 quantizers: tests/fixtures/quant/*.bin.

Each file holds f32 input rows and the bytes llama.cpp's reference quantizers produce for them,
computed by gguf-py (`gguf.quants.quantize`, documented as bit-exact with ggml-quants.c's
quantize_row_q8_0_ref / quantize_row_q4_0_ref). tests/kernels/test_quant.cpp checks that
kernels::quantize_rows (and quantize_rows_bf16 for bf16-representable cases) give the same bytes.

Run (outside CI; CI only reads the .bin files):
    python3 -m venv /work/venv-quant && /work/venv-quant/bin/pip install gguf numpy
    /work/venv-quant/bin/python tools/reference/quant_fixtures.py [--out tests/fixtures/quant]
Generated with gguf 0.19.0, numpy 2.4.6 (printed in the output and stored in MANIFEST.txt).

File format (little endian):
    char magic[4] = "QFX1"; int32 rows; int32 k; int32 bf16_exact (1: every input is a bf16 value)
    float32 x[rows * k]
    uint8 q8_0[rows * k / 32 * 34]
    uint8 q4_0[rows * k / 32 * 18]
"""
import argparse
import hashlib
import os
import struct

import numpy as np
import gguf
from gguf import GGMLQuantizationType
from gguf.quants import quantize


def to_bf16_exact(x):
    """Round f32 to the nearest bf16 (ties to even) and back."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return (u.astype(np.uint32) << 16).view(np.float32)


def special_rows():
    """Edge cases, one 32-element block each (rows of k = 64: two blocks per row)."""
    blocks = []
    z = np.zeros(32, np.float32)
    blocks.append(z.copy())                                  # all zero
    b = z.copy(); b[5] = 1e-30; blocks.append(b)             # one tiny value, rest zero
    b = np.full(32, 7.0, np.float32); blocks.append(b)       # constant
    b = np.full(32, -7.0, np.float32); blocks.append(b)
    # Q8_0 ties: amax 127 -> d = 1, id = 1: x.5 values round away from zero.
    b = np.array([127.0] + [k + 0.5 for k in range(-15, 16)], np.float32); blocks.append(b)
    b = np.array([-127.0] + [-(k + 0.5) for k in range(31)], np.float32); blocks.append(b)
    # Q4_0 ties: max -8 -> d = 1, id = 1: x + 8.5 on integer / half-integer x.
    b = np.array([-8.0] + [(k % 17) - 8 + (0.5 if k % 2 else 0.0) for k in range(31)], np.float32)
    blocks.append(np.clip(b, -8, 7.5))
    # Equal magnitudes of opposite sign: the first one decides the sign of Q4_0's d.
    b = np.linspace(-1, 1, 32).astype(np.float32); b[3] = 2.0; b[9] = -2.0; blocks.append(b)
    b = b.copy(); b[3] = -2.0; b[9] = 2.0; blocks.append(b)
    rng = np.random.default_rng(1234)
    # Huge: d overflows f16 (inf scale) / large but finite; tiny: f16 subnormal / zero scale.
    for scale in (1e7, 6e4, 1e3, 1e-4, 1e-6, 1e-9):
        blocks.append((rng.standard_normal(32) * scale).astype(np.float32))
    # Q4_0 values where x * id + 8.5 truncates differently with a fused multiply-add than with
    # the product rounded first (gguf-py and the C source without contraction round first).
    blocks.extend(fma_sensitive_blocks(4))
    blocks.append(z.copy())  # pad to an even count
    return np.stack(blocks).reshape(-1, 64)


def fma_sensitive_blocks(count):
    rng = np.random.default_rng(5)
    out = []
    while len(out) < count:
        m0 = np.float32(-rng.uniform(0.5, 2.0))
        d = np.float32(m0 / np.float32(-8))
        idv = np.float32(1) / d
        n = int(rng.integers(1, 8))
        x = np.float32((n - 8.5) / float(idv))
        for step in range(-3, 4):
            xx = x
            for _ in range(abs(step)):
                xx = np.nextafter(xx, np.float32(np.inf if step > 0 else -np.inf))
            if abs(xx) >= abs(m0):
                continue
            unfused = np.trunc(np.float32(np.float32(xx * idv) + np.float32(8.5)))
            fused = np.trunc(np.float32(float(xx) * float(idv) + 8.5))
            if unfused != fused:
                b = np.zeros(32, np.float32)
                b[0], b[1 + len(out)] = m0, xx
                out.append(b)
                break
    return out


def cases():
    rng = np.random.default_rng(0)
    out = {}
    out["random_normal"] = (rng.standard_normal((8, 256)).astype(np.float32), False)
    # Per-block magnitudes spread over 1e-3 .. 1e3, bf16-representable (also tests the bf16 path).
    mag = 10.0 ** rng.uniform(-3, 3, size=(16, 8, 1))
    x = (rng.standard_normal((16, 8, 32)) * mag).astype(np.float32).reshape(16, 256)
    out["random_scaled_bf16"] = (to_bf16_exact(x), True)
    # Heavy tails (one outlier per block dominates the scale).
    x = rng.standard_t(2, size=(8, 128)).astype(np.float32)
    out["heavy_tail_bf16"] = (to_bf16_exact(x), True)
    out["special"] = (special_rows(), False)
    return out


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "fixtures", "quant"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    lines = [f"gguf {gguf.__version__ if hasattr(gguf, '__version__') else 'unknown'} numpy {np.__version__}"]
    try:
        from importlib.metadata import version
        lines[0] = f"gguf {version('gguf')} numpy {np.__version__}"
    except Exception:
        pass
    for name, (x, bf16_exact) in cases().items():
        x = np.ascontiguousarray(x, np.float32)
        rows, k = x.shape
        q8 = quantize(x, GGMLQuantizationType.Q8_0)
        q4 = quantize(x, GGMLQuantizationType.Q4_0)
        assert q8.nbytes == rows * k // 32 * 34 and q4.nbytes == rows * k // 32 * 18
        data = b"QFX1" + struct.pack("<iii", rows, k, int(bf16_exact)) + x.tobytes() + q8.tobytes() + q4.tobytes()
        path = os.path.join(args.out, name + ".bin")
        with open(path, "wb") as f:
            f.write(data)
        lines.append(f"{name}.bin rows={rows} k={k} sha256={hashlib.sha256(data).hexdigest()}")
    with open(os.path.join(args.out, "MANIFEST.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
