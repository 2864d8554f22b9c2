#!/usr/bin/env python3
"""Compare two dump files (e.g. `qwen3vl dump` output vs dump_reference.py output) tensor by tensor:
prints, for every name present in both, the shape, max|a-b|, max|b| and their ratio; names present in
only one file are listed. Exit status 1 if a shape differs or an integer tensor differs.

  python compare_dumps.py ours.safetensors ref.safetensors [--rel 1e-2]
"""
import argparse
import sys

import torch
from safetensors import safe_open


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ours")
    ap.add_argument("ref")
    ap.add_argument("--rel", type=float, default=None, help="also fail when max|diff| > rel * max|ref|")
    a = ap.parse_args()
    fa, fb = safe_open(a.ours, "pt"), safe_open(a.ref, "pt")
    ka, kb = set(fa.keys()), set(fb.keys())
    bad = False

    def key(n):  # natural order: vision.blocks.10 after vision.blocks.9
        return [int(p) if p.isdigit() else p for p in n.split(".")]

    for n in sorted(ka & kb, key=key):
        x, y = fa.get_tensor(n), fb.get_tensor(n)
        if x.shape != y.shape:
            print(f"{n:28s} SHAPE ours {list(x.shape)} ref {list(y.shape)}")
            bad = True
            continue
        if not x.is_floating_point() and not y.is_floating_point():
            ne = int((x.to(torch.int64) != y.to(torch.int64)).sum())
            first = ""
            if ne:
                i = int((x.reshape(-1).to(torch.int64) != y.reshape(-1).to(torch.int64)).nonzero()[0])
                first = f"  first at #{i}: ours {int(x.reshape(-1)[i])} ref {int(y.reshape(-1)[i])}"
                bad = True
            print(f"{n:28s} {str(list(x.shape)):16s} {'equal' if not ne else f'{ne} differ'}{first}")
            continue
        x, y = x.double(), y.double()
        d = (x - y).abs()
        md, mr = float(d.max()) if d.numel() else 0.0, float(y.abs().max()) if y.numel() else 0.0
        rel = md / mr if mr else 0.0
        flag = ""
        if a.rel is not None and rel > a.rel:
            flag, bad = "  > --rel", True
        print(f"{n:28s} {str(list(x.shape)):16s} max|diff| {md:.3e}  max|ref| {mr:.3e}  rel {rel:.2e}{flag}")
    for n in sorted(ka - kb, key=key):
        print(f"{n:28s} only in {a.ours}")
    for n in sorted(kb - ka, key=key):
        print(f"{n:28s} only in {a.ref}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
