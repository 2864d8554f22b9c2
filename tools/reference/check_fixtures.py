#!/usr/bin/env python3
"""Checks tests/fixtures/model/<set>/ against the fixture contract (names, dtypes, shapes,
metadata) without running any model. Exit status 1 on the first set with problems.

  python check_fixtures.py [FIXTURES_MODEL_DIR]
"""
import json
import sys
from pathlib import Path

from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[2]
VISION = ["square", "nonsquare", "large", "small", "two_images", "video"]
TEXT = ["text_only", "one_image", "two_images", "image_mid", "video"]
META = ["make_model_args", "checkpoint_fnv1a64", "torch", "transformers", "case"]


def load(p):
    with safe_open(str(p), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}


def check_set(d: Path, errs: list):
    import torch

    dims = {}
    for c in VISION:
        p = d / f"vision_{c}.safetensors"
        if not p.exists():
            errs.append(f"{p}: missing")
            continue
        t, m = load(p)
        for k in META:
            if k not in m:
                errs.append(f"{p}: metadata {k} missing")
        for k, v in t.items():
            if v.dtype not in (torch.float32, torch.int64):
                errs.append(f"{p}: {k} is {v.dtype}")
        g = t["image_grid_thw"]
        n = int(g.prod(-1).sum())
        nb = len([k for k in t if k.startswith("vision.blocks.")])
        nd = len([k for k in t if k.startswith("deepstack.")])
        dv = t["vision.patch_embed"].shape[1]
        dims.setdefault("vision", (nb, nd, dv))
        if dims["vision"] != (nb, nd, dv):
            errs.append(f"{p}: blocks/deepstack/Dv {(nb, nd, dv)} differ from other cases {dims['vision']}")
        exp = {"pixel_values": [n, 1536], "vision.patch_embed": [n, dv], "vision.pos_embeds": [n, dv],
               "vision.cu_seqlens": [int(g[:, 0].sum()) + 1], "image_embeds": [n // 4, None]}
        for i in range(nb):
            exp[f"vision.blocks.{i}"] = [n, dv]
        for j in range(nd):
            exp[f"deepstack.{j}"] = [n // 4, None]
        for k, s in exp.items():
            if k not in t:
                errs.append(f"{p}: {k} missing")
            elif [a if b is not None else None for a, b in zip(t[k].shape, s)] != s:
                errs.append(f"{p}: {k} shape {list(t[k].shape)} != {s}")
        for k in ("vision.rotary.cos", "vision.rotary.sin"):
            if k not in t or t[k].shape[0] != n:
                errs.append(f"{p}: {k} missing or wrong rows")
        if int(t["vision.cu_seqlens"][-1]) != n:
            errs.append(f"{p}: cu_seqlens does not end at {n}")
    for c in TEXT:
        p = d / f"text_{c}.safetensors"
        if not p.exists():
            errs.append(f"{p}: missing")
            continue
        t, m = load(p)
        for k in META + ["generate_min_margin", "prompt", "generate_eos"]:
            if k not in m:
                errs.append(f"{p}: metadata {k} missing")
        seq = t["input_ids"].shape[0]
        D = t["text.embeds"].shape[1]
        nl = len([k for k in t if k.startswith("text.layers.")])
        exp = {"position_ids": [3, seq], "rope_deltas": [1], "text.embeds": [seq, D], "text.norm": [seq, D],
               "logits.col_index": [512], "logits.cols": [seq, 512], "generate.greedy": [64],
               "generate.margins": [64]}
        for l in range(nl):
            exp[f"text.layers.{l}"] = [seq, D]
        nvis = int(((t["input_ids"] == 151655) | (t["input_ids"] == 151656)).sum())
        if "pixel_values" in t:
            exp["image_embeds"] = [nvis, D]
        if "pixel_values_videos" in t:
            exp["video_embeds"] = [nvis, D]
        if nvis:
            for j in range(dims.get("vision", (0, 0, 0))[1]):
                exp[f"deepstack.{j}"] = [nvis, D]
        for k, s in exp.items():
            if k not in t:
                errs.append(f"{p}: {k} missing")
            elif list(t[k].shape) != s:
                errs.append(f"{p}: {k} shape {list(t[k].shape)} != {s}")
        ci = t["logits.col_index"]
        if not bool((ci[1:] > ci[:-1]).all()):
            errs.append(f"{p}: logits.col_index not strictly increasing")
        if not set(t["generate.greedy"].tolist()) <= set(ci.tolist()):
            errs.append(f"{p}: a greedy token is not in logits.col_index")
        last = t["logits.last"]
        if not torch.equal(last[ci], t["logits.cols"][-1]):
            errs.append(f"{p}: logits.cols[-1] != logits.last[col_index]")


def main():
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", nargs="?", default=str(ROOT / "tests" / "fixtures" / "model"))
    base = Path(ap.parse_args().dir)
    bad = False
    for d in sorted(p for p in base.iterdir() if p.is_dir() and p.name != "inputs"):
        errs = []
        check_set(d, errs)
        print(f"{d.name}: {'OK' if not errs else str(len(errs)) + ' problem(s)'}")
        for e in errs[:20]:
            print("  " + e)
        bad |= bool(errs)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
