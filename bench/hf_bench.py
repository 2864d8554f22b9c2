#!/usr/bin/env python3
"""HF transformers on CPU, on a Qwen3-VL checkpoint folder: the same figures as `qwen3vl bench`.

For each dtype (float32, bfloat16), in its own process (so peak RSS is per dtype):
  pp<N>    prefill of N pseudo-random ordinary-text tokens into an empty KV cache (logits of the last
           token only, as llama-bench and qwen3vl bench do)
  tg<N>    N greedy single-token decode steps with use_cache after a 1-token context
  vision   the vision tower (model.model.visual, incl. mergers and DeepStack) on random
           pixel_values for a square image of S pixels (grid S/16 rounded down to even, as qwen3vl
           bench does: 448 -> 28x28 = 784 patches, 1024 -> 64x64 = 4096 patches)
One warm-up run, then --reps runs; median and min..max, wall-clock seconds.

Needs a python with torch + transformers (/work/venv/bin/python in this project):

    /work/venv/bin/python bench/hf_bench.py -m /work/bench-models/2b-bf16 -t 2 -r 3 \
        --dtypes float32,bfloat16 --json results/hf.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def tokens(n: int, seed: int) -> list[int]:
    # same generator as qwen3vl bench (xorshift, ids 1000..100999)
    x = (seed * 0x9E3779B97F4A7C15 + 1) & 0xFFFFFFFFFFFFFFFF
    out = []
    for _ in range(n):
        x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 7
        x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
        out.append(1000 + x % 100000)
    return out


def measure(reps: int, f) -> dict:
    f()  # warm-up
    t = sorted(f() for _ in range(reps))
    return {"median_s": statistics.median(t), "min_s": t[0], "max_s": t[-1]}


def run_one(a) -> dict:
    import torch
    from transformers import Qwen3VLForConditionalGeneration
    from transformers.cache_utils import DynamicCache

    torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    t0 = time.perf_counter()
    model = Qwen3VLForConditionalGeneration.from_pretrained(a.model, dtype=dtype, attn_implementation="sdpa")
    model.eval()
    load_s = time.perf_counter() - t0
    rows = []

    def row(test, s, per=0):
        r = {"test": test, **s}
        if per:
            r.update(tok_s=per / s["median_s"], tok_s_min=per / s["max_s"], tok_s_max=per / s["min_s"])
        rows.append(r)
        print(f"# {a.dtype} {test}: {s['median_s']:.3f} s" + (f" ({per / s['median_s']:.2f} tok/s)" if per else ""),
              file=sys.stderr, flush=True)

    with torch.inference_mode():
        for n in a.pp:
            ids = torch.tensor([tokens(n, 1)])

            def prefill():
                cache = DynamicCache()
                t = time.perf_counter()
                model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
                return time.perf_counter() - t

            row(f"pp{n}", measure(a.reps, prefill), n)
        if a.tg > 0:
            first = torch.tensor([tokens(1, 2)])

            def decode():
                cache = DynamicCache()
                out = model(input_ids=first, past_key_values=cache, use_cache=True, logits_to_keep=1)
                nxt = out.logits[:, -1:].argmax(-1)
                t = time.perf_counter()
                for _ in range(a.tg):
                    out = model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True)
                    nxt = out.logits[:, -1:].argmax(-1)  # greedy
                return time.perf_counter() - t

            row(f"tg{a.tg}", measure(a.reps, decode), a.tg)
        vc = model.config.vision_config
        cols = vc.in_channels * vc.temporal_patch_size * vc.patch_size * vc.patch_size
        gen = torch.Generator().manual_seed(0)
        for px in a.vision:
            g = px // vc.patch_size // 2 * 2
            pv = (torch.rand(g * g, cols, generator=gen) * 2 - 1).to(dtype)
            grid = torch.tensor([[1, g, g]])

            def vision():
                t = time.perf_counter()
                model.model.visual(pv, grid_thw=grid)
                return time.perf_counter() - t

            row(f"vision {px}x{px} ({g * g} patches)", measure(a.reps, vision))
    import transformers
    return {"engine": "hf-transformers", "model": a.model, "dtype": a.dtype, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "transformers": transformers.__version__, "load_s": load_s,
            "reps": a.reps, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "results": rows}


def ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--reps", type=int, default=3)
    ap.add_argument("-p", "--pp", type=ints, default=[512])
    ap.add_argument("-n", "--tg", type=int, default=128)
    ap.add_argument("--vision", type=ints, default=[448, 1024])
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--json", help="write all results to this file")
    ap.add_argument("--dtype", help=argparse.SUPPRESS)  # internal: run one dtype in this process
    a = ap.parse_args()
    if a.dtype:
        print(json.dumps(run_one(a)))
        return 0
    results = []
    for dt in [d for d in a.dtypes.split(",") if d]:
        cmd = [sys.executable, os.path.abspath(__file__), "-m", a.model, "-t", str(a.threads), "-r", str(a.reps),
               "-p", ",".join(map(str, a.pp)), "-n", str(a.tg), "--vision", ",".join(map(str, a.vision)),
               "--dtype", dt]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if p.returncode != 0:
            print(f"error: HF run for {dt} failed (exit {p.returncode})", file=sys.stderr)
            results.append({"engine": "hf-transformers", "dtype": dt, "error": f"exit {p.returncode}"})
            continue
        results.append(json.loads(p.stdout.strip().splitlines()[-1]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    print_table(results)
    return 0


def print_table(results: list[dict]) -> None:
    def get(r, test):
        for x in r.get("results", []):
            if x["test"] == test or x["test"].startswith(test + " "):
                return x
        return None

    print("| HF transformers (CPU) | threads | pp tok/s | tg tok/s | vision 448 s | vision 1024 s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['dtype']} | - | error: {r['error']} | | | | |")
            continue
        pp = next((x for x in r["results"] if x["test"].startswith("pp")), None)
        tg = next((x for x in r["results"] if x["test"].startswith("tg")), None)
        v4, v10 = get(r, "vision 448x448"), get(r, "vision 1024x1024")
        f = lambda x, k, fmt: (fmt % x[k]) if x else "-"
        print(f"| {r['dtype']} | {r['threads']} | {f(pp, 'tok_s', '%.2f')} | {f(tg, 'tok_s', '%.2f')} | "
              f"{f(v4, 'median_s', '%.2f')} | {f(v10, 'median_s', '%.2f')} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
