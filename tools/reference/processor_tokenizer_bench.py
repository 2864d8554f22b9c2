"""Encode throughput of HF `tokenizers` (single-threaded) on the long documents of
shared/data/tokenizer-cases.json, optionally next to ours in the same run.

  /work/venv/bin/python tools/reference/processor_tokenizer_bench.py \
      [--cpp-test build-tokenizer/bin/test_tokenizer] [--seconds 1.0]

Measures, like tests/tokenizer EncodeThroughputOnDocuments: a cold pass (fresh tokenizer, empty
BPE cache) over the documents, then repeated warm passes for --seconds of CPU time. Rates are
given by process CPU time (robust on a shared machine) and by wall time in parentheses. Each document is encoded
on its own with Tokenizer.encode (add_special_tokens=True, which adds nothing for Qwen). With
--cpp-test, runs our test binary's throughput test in the same session and prints its line.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
from pathlib import Path

os.environ["RAYON_NUM_THREADS"] = "1"  # must be set before tokenizers starts its thread pool
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent.parent
SHARED = Path(os.environ.get("QWEN3VL_SHARED_DIR", ROOT.parent / "shared"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpp-test", help="path to test_tokenizer (runs Tokenizer.EncodeThroughputOnDocuments)")
    ap.add_argument("--seconds", type=float, default=1.0)
    args = ap.parse_args()

    cases = json.loads((SHARED / "data" / "tokenizer-cases.json").read_text(encoding="utf-8"))
    docs = [d["text"] for d in cases["documents"]]
    expect = [d["ids"] for d in cases["documents"]]
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    path = str(SHARED / "data" / "qwen3-tokenizer" / "tokenizer.json")

    c0, t0 = time.process_time(), time.perf_counter()
    tok = Tokenizer.from_file(path)
    load_cpu, load_s = time.process_time() - c0, time.perf_counter() - t0

    c0, t0 = time.process_time(), time.perf_counter()
    out = [tok.encode(d, add_special_tokens=True).ids for d in docs]
    cold_cpu, cold_s = time.process_time() - c0, time.perf_counter() - t0
    assert out == expect, "HF ids differ from tokenizer-cases.json"

    reps = 0
    c0, t0 = time.process_time(), time.perf_counter()
    while True:
        for d in docs:
            tok.encode(d, add_special_tokens=True)
        reps += 1
        warm_cpu = time.process_time() - c0
        if warm_cpu >= args.seconds:
            break
    warm_s = time.perf_counter() - t0
    print(f"HF tokenizers {tokenizers.__version__} (RAYON_NUM_THREADS=1): load {load_cpu:.3f} s CPU ({load_s:.3f} s wall); "
          f"encode {nbytes} bytes of documents, MB/s by CPU time (wall): "
          f"cold cache {nbytes / cold_cpu / 1e6:.2f} ({nbytes / cold_s / 1e6:.2f}), "
          f"warm {nbytes * reps / warm_cpu / 1e6:.2f} ({nbytes * reps / warm_s / 1e6:.2f}), {reps} reps")

    if args.cpp_test:
        r = subprocess.run([args.cpp_test, "--gtest_filter=Tokenizer.EncodeThroughputOnDocuments"],
                           capture_output=True, text=True, check=False)
        m = re.search(r"\[tokenizer\] (encode .*)", r.stdout)
        print("qwen3vl C++: " + (m.group(1) if m else f"no result (rc {r.returncode})\n{r.stdout[-2000:]}"))


if __name__ == "__main__":
    main()
