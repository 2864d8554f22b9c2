#!/usr/bin/env python3
"""Regenerate tests/fixtures/model/<preset>-<dtype>/{vision,text}_<case>.safetensors (contract:
the fixture contract in tools/reference/README.md).

For each (preset, dtype) it runs `qwen3vl make-model` (deterministic random weights), loads the
folder with the pinned HF stack (eager attention, CPU, the checkpoint dtype) and records the
intermediates of fixed inputs. The inputs are synthetic (numpy, fixed seed), sized in multiples
of 32 px so that the processor's smart_resize keeps them (no resampling); they are also written
as PNG to tests/fixtures/model/inputs/ so an end-to-end test can start from the files.

  python make_fixtures.py [--qwen3vl build/bin/qwen3vl] [--build-dir DIR] [--only tiny-f32,...]
  python make_fixtures.py --checkpoint DIR --preset-name NAME --out-dir DIR   # any folder (dev)

Prints the sha256 of every file it wrote (compare a regeneration with that list).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import refcommon as R  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXDIR = ROOT / "tests" / "fixtures" / "model"

# (preset, dtype, init_std). init_std chosen so that greedy decoding has clear top1-top2 margins.
SETS = {
    "tiny-f32": ("tiny", "f32"),
    "tiny-b-f32": ("tiny-b", "f32"),
    "tiny-bf16": ("tiny", "bf16"),
}
DEFAULT_SEED = 0
DEFAULT_INIT_STD = {"tiny": 0.2, "tiny-b": 0.2}

MIN_PIXELS = 32 * 32
MAX_PIXELS = 512 * 512
VIDEO_FPS = 2.0
N_FRAMES = 5


# ---------------------------------------------------------------------------------------------
# Deterministic synthetic inputs
def synth_image(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth colour gradients + stripes + mild noise, uint8 [h, w, 3]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.empty((h, w, 3))
    for c in range(3):
        fx, fy, ph = rng.uniform(0.02, 0.15), rng.uniform(0.02, 0.15), rng.uniform(0, 6.283)
        img[..., c] = 127.5 + 70 * np.sin(fx * x + fy * y + ph) + 40 * (x / w - 0.5) * (c - 1) + 30 * (y / h - 0.5)
    img += rng.normal(0, 12, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def synth_video(n: int, h: int, w: int, seed: int) -> np.ndarray:
    """A square moving over a gradient: [n, h, w, 3] uint8."""
    base = synth_image(h, w, seed).astype(np.int32)
    frames = []
    for i in range(n):
        f = base.copy()
        y0, x0 = 8 + 6 * i, 10 + 9 * i
        f[y0:y0 + 20, x0:x0 + 20] = [230 - 30 * i, 40 + 35 * i, 90]
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(frames)


def image_sizes(grid_side: int) -> dict:
    g = grid_side * 16
    return {
        "square": (g, g),            # grid = pos-embed table (h, w in pixels)
        "nonsquare": (64, 160),      # grid 4 x 10
        "large": (160, 160),         # grid 10 x 10 (> table)
        "small": (64, 64),           # grid 4 x 4 (< table)
    }


def make_inputs(grid_side: int, inputs_dir: Path | None):
    from PIL import Image

    sizes = image_sizes(grid_side)
    imgs = {k: synth_image(h, w, seed=i + 1) for i, (k, (h, w)) in enumerate(sizes.items())}
    video = synth_video(N_FRAMES, 64, 96, seed=11)
    vid_small = synth_video(N_FRAMES, 64, 64, seed=12)
    if inputs_dir is not None:
        inputs_dir.mkdir(parents=True, exist_ok=True)
        for k, a in imgs.items():
            Image.fromarray(a).save(inputs_dir / f"{k}_{a.shape[1]}x{a.shape[0]}.png")
        for name, v in (("video_96x64", video), ("video_64x64", vid_small)):
            d = inputs_dir / name
            d.mkdir(exist_ok=True)
            for i, f in enumerate(v):
                Image.fromarray(f).save(d / f"frame_{i:02d}.png")
    return imgs, video, vid_small


# ---------------------------------------------------------------------------------------------
def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def save(path: Path, tensors: dict, meta: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    R.save_safetensors(path, tensors, meta)


def pil(a):
    from PIL import Image

    return Image.fromarray(a)


def process(proc, messages, images=None, video=None):
    text = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    kw = {"images_kwargs": {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS}}
    if video is not None:
        kw["videos_kwargs"] = {"do_sample_frames": False, "video_metadata": [
            {"total_num_frames": len(video), "fps": VIDEO_FPS, "frames_indices": list(range(len(video)))}]}
    batch = proc(text=[text], images=[pil(a) for a in images] if images else None,
                 videos=[video] if video is not None else None, return_tensors="pt", **kw)
    return text, batch


def vision_cases(proc, imgs, video):
    """name -> (sentence, pixel_values, grid_thw)"""
    ip = proc.image_processor
    kw = {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "return_tensors": "pt"}
    out = {}
    desc = {
        "square": "one square image whose patch grid equals the pos-embed table",
        "nonsquare": "one non-square image (grid 4x10)",
        "large": "one image whose grid (10x10) is larger than the pos-embed table",
        "small": "one image whose grid (4x4) is smaller than the pos-embed table",
    }
    for k in ("square", "nonsquare", "large", "small"):
        b = ip(images=[pil(imgs[k])], **kw)
        out[k] = (desc[k] + f", {imgs[k].shape[1]}x{imgs[k].shape[0]} px", b["pixel_values"], b["image_grid_thw"])
    b = ip(images=[pil(imgs["small"]), pil(imgs["nonsquare"])], **kw)
    out["two_images"] = ("two images (small 4x4 then non-square 4x10 grids) in one call: block-diagonal attention",
                         b["pixel_values"], b["image_grid_thw"])
    vb = proc.video_processor(videos=[video], do_sample_frames=False, return_tensors="pt")
    out["video"] = (f"a {len(video)}-frame 96x64 video (padded to an even frame count, t = 3): image_grid_thw holds "
                    "the video grid", vb["pixel_values_videos"], vb["video_grid_thw"])
    return out


def text_cases(imgs, vid_small):
    """name -> (sentence, messages, images, video)"""
    U = lambda content: [{"role": "user", "content": content}]  # noqa: E731
    return {
        "text_only": ("a text-only user turn", U([{"type": "text", "text": "Write a short poem about the sea."}]),
                      None, None),
        "one_image": ("one non-square image (grid 4x10) then a question",
                      U([{"type": "image"}, {"type": "text", "text": "What is in this image?"}]), [imgs["nonsquare"]],
                      None),
        "two_images": ("two images (non-square 4x10, small 4x4 grids) then a question",
                       U([{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Compare the two pictures."}]),
                       [imgs["nonsquare"], imgs["small"]], None),
        "image_mid": ("text, a small image, more text",
                      U([{"type": "text", "text": "Look at this picture:"}, {"type": "image"},
                         {"type": "text", "text": " and tell me which colours you see."}]), [imgs["small"]], None),
        "video": (f"a {N_FRAMES}-frame 64x64 video given as frames at {VIDEO_FPS:g} fps (timestamps <0.2 seconds>, "
                  "<1.2 seconds>, <2.0 seconds>) then a question",
                  U([{"type": "video"}, {"type": "text", "text": "What happens in the video?"}]), None, vid_small),
    }


def generate_set(ckpt: Path, out_dir: Path, dtype: str, meta_base: dict, inputs_dir: Path | None, log):
    cfg = json.loads((ckpt / "config.json").read_text())
    npos = cfg["vision_config"]["num_position_embeddings"]
    side = int(round(npos ** 0.5))
    imgs, video, vid_small = make_inputs(side, inputs_dir)
    proc = R.load_processor(R.prepare_checkpoint_dir(ckpt))
    model = R.load_model(ckpt, dtype)
    written = []
    for name, (sentence, pv, grid) in vision_cases(proc, imgs, video).items():
        res = R.run_vision(model, pv, grid)
        res["pixel_values"] = R.to_store(pv)
        res["image_grid_thw"] = R.to_store(grid)
        p = out_dir / f"vision_{name}.safetensors"
        save(p, res, {**meta_base, "case": sentence})
        written.append(p)
        log(f"  vision_{name}: grid {grid.tolist()}")
    margins = {}
    for name, (sentence, messages, images, vid) in text_cases(imgs, vid_small).items():
        text, batch = process(proc, messages, images, vid)
        res = R.run_text(model, dict(batch), max_new_tokens=64, logits_form="cols", ignore_eos=True)
        mm = res["_generate_min_margin"]
        scale = res["_logit_scale"]
        margins[name] = (mm, scale)
        p = out_dir / f"text_{name}.safetensors"
        save(p, R.tensors_for_file(res), {**meta_base, "case": sentence, "prompt": text,
                                          "generate_min_margin": repr(mm), "generate_eos": "ignored (all 64 steps run)"})
        written.append(p)
        log(f"  text_{name}: seq {res['input_ids'].numel()}, min margin {mm:.4g} (max|logit| {scale:.3g}, "
            f"rel {mm / scale:.2e})")
    return written, margins


def write_rope_constants(fix: Path) -> Path:
    """tests/fixtures/model/rope_inv_freq.safetensors: torch's own f32 inv_freq tables.
    torch's CPU pow is not always correctly rounded (theta 5e6, head_dim 128: element 19 is 1 ulp
    off glibc powf), so implementations compare against these bits."""
    from transformers import Qwen3VLTextConfig
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRotaryEmbedding, Qwen3VLVisionRotaryEmbedding

    t = {}
    for hd in (16, 32, 64, 128):
        cfg = Qwen3VLTextConfig(head_dim=hd, rope_theta=5000000.0,
                                rope_scaling={"rope_type": "default", "mrope_section": [hd // 8, hd // 16, hd // 16]})
        t[f"text.inv_freq.theta5e6.head_dim{hd}"] = Qwen3VLTextRotaryEmbedding(cfg).inv_freq.clone()
    for hd in (16, 64, 72, 80):  # vision head_dim (tiny / tiny-b: 16; 2B/4B: 64; 8B/32B: 72)
        t[f"vision.inv_freq.theta1e4.head_dim{hd}"] = Qwen3VLVisionRotaryEmbedding(hd // 2).inv_freq.clone()
    p = fix / "rope_inv_freq.safetensors"
    save(p, t, {**R.versions_metadata(), "case": "torch inv_freq buffers (text: Qwen3VLTextRotaryEmbedding default rope; "
                "vision: Qwen3VLVisionRotaryEmbedding(head_dim // 2))"})
    return p


def find_or_build_cli(args) -> Path:
    """The `qwen3vl` binary (anything that implements `make-model`)."""
    if args.qwen3vl:
        return Path(args.qwen3vl)
    b = Path(args.build_dir)
    if not (b / "build.ninja").exists():
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(b), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release"], check=True)
    r = subprocess.run(["ninja", "-C", str(b), "-j2", "qwen3vl_cli"])
    if r.returncode == 0 and (b / "bin" / "qwen3vl").exists():
        return b / "bin" / "qwen3vl"
    # The full CLI does not link (some component mid-edit): build only the make-model front end.
    print("qwen3vl_cli did not build; building the make-model front end alone", flush=True)
    subprocess.run(["ninja", "-C", str(b), "-j2", "qwen3vl_core", "qwen3vl_model"], check=True)
    exe = b / "qwen3vl-make-model"
    subprocess.run(["c++", "-std=c++20", "-O2", f"-I{ROOT / 'src'}", str(ROOT / "src/cli/main.cpp"),
                    str(ROOT / "src/cli/cmd_make_model.cpp"), str(b / "lib/libqwen3vl_model.a"),
                    str(b / "lib/libqwen3vl_core.a"), "-o", str(exe)], check=True)
    return exe


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qwen3vl", help="path of a built qwen3vl binary (default: build it)")
    ap.add_argument("--build-dir", default=str(ROOT / "build-reference"))
    ap.add_argument("--only", help="comma-separated subset of: " + ", ".join(SETS))
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--init-std", type=float, help="override the per-preset init std")
    ap.add_argument("--fixtures-dir", default=str(FIXDIR))
    ap.add_argument("--work-dir", help="where make-model writes checkpoints (default: a temp dir)")
    ap.add_argument("--checkpoint", help="dev: use this folder instead of make-model (needs --preset-name)")
    ap.add_argument("--preset-name", help="dev: name of the set written for --checkpoint (e.g. hf-tiny-f32)")
    ap.add_argument("--dtype", default="f32", help="dev: dtype for --checkpoint")
    a = ap.parse_args()

    fix = Path(a.fixtures_dir)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    log = lambda s: print(s, flush=True)  # noqa: E731
    written = []
    summary = {}
    if a.checkpoint:
        ck = Path(a.checkpoint)
        meta = {"make_model_args": "", "checkpoint_fnv1a64": R.checkpoint_fnv1a64(ck), **R.versions_metadata()}
        w, m = generate_set(ck, fix / a.preset_name, a.dtype, meta, fix / "inputs", log)
        written += w
        summary[a.preset_name] = m
    else:
        cli = find_or_build_cli(a)
        work = Path(a.work_dir) if a.work_dir else Path(tempfile.mkdtemp(prefix="qwen3vl-fixtures-"))
        names = a.only.split(",") if a.only else list(SETS)
        for name in names:
            preset, dtype = SETS[name]
            std = a.init_std if a.init_std is not None else DEFAULT_INIT_STD[preset]
            args = f"--preset {preset} --seed {a.seed} --dtype {dtype} --init-std {std:g}"
            ck = work / name
            if ck.exists():
                shutil.rmtree(ck)
            log(f"{name}: qwen3vl make-model {args} --out {ck}")
            subprocess.run([str(cli), "make-model", *args.split(), "--out", str(ck)], check=True)
            meta = {"make_model_args": args, "checkpoint_fnv1a64": R.checkpoint_fnv1a64(ck), **R.versions_metadata()}
            log(f"  checkpoint_fnv1a64 {meta['checkpoint_fnv1a64']}")
            out_dir = fix / name
            if out_dir.exists():
                shutil.rmtree(out_dir)
            w, m = generate_set(ck, out_dir, dtype, meta, fix / "inputs", log)
            written += w
            summary[name] = m
        if not a.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    written.append(write_rope_constants(fix))
    inputs = sorted((fix / "inputs").rglob("*.png"))
    print("\nsha256 of every file written:")
    for p in written + inputs:
        print(f"{sha256(p)}  {p.relative_to(fix.parent.parent.parent) if fix.is_relative_to(ROOT) else p}")
    total = sum(p.stat().st_size for p in written + inputs)
    print(f"\n{len(written) + len(inputs)} files, {total / 1e6:.2f} MB")
    sums = sorted(p for p in fix.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    (fix / "SHA256SUMS").write_text("".join(f"{sha256(p)}  {p.relative_to(fix).as_posix()}\n" for p in sums))
    print(f"wrote {fix / 'SHA256SUMS'} (all {len(sums)} files; `git diff` it after a regeneration)")
    import check_fixtures

    errs = []
    for n in summary:
        check_fixtures.check_set(fix / n, errs)
    print("contract check:", "OK" if not errs else "\n  ".join(["FAILED"] + errs))
    print("smallest greedy top1-top2 margins (absolute, relative to max|logit|):")
    for n, m in summary.items():
        worst = min(m.items(), key=lambda kv: kv[1][0])
        print(f"  {n:12s} {worst[1][0]:.4g} ({worst[1][0] / worst[1][1]:.2e}) in text_{worst[0]}")
    if errs:
        sys.exit(1)


if __name__ == "__main__":
    main()
