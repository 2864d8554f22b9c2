#!/usr/bin/env python3
"""Run the HF reference (pinned transformers, eager attention, CPU) on a Qwen3-VL checkpoint folder
and write its named intermediates to one safetensors file, under the same names as
`qwen3vl dump` and tests/fixtures (see tools/reference/README.md):

  processor: input_ids, position_ids [3, seq], rope_deltas, pixel_values, image_grid_thw,
             pixel_values_videos, video_grid_thw
  vision:    vision.patch_embed, vision.pos_embeds, vision.rotary.cos/sin, vision.cu_seqlens,
             vision.blocks.<i>, image_embeds / video_embeds, deepstack.<j>
             (run on the images, or on the video when there are no images)
  all:       + text.embeds, text.layers.<l>, text.norm, logits (or logits.last +
             logits.col_index/logits.cols with --logits cols), generate.greedy, generate.margins

Examples:
  python dump_reference.py -m CKPT --image cat.png -p "What is this?" -o ref.safetensors
  python dump_reference.py -m CKPT --frames frames/ --fps 2 -p "What happens?" -o ref.safetensors
  python dump_reference.py -m CKPT --messages chat.json --only processor -o ref.safetensors

--messages FILE.json: a list of {"role", "content"} messages as for apply_chat_template; content
items {"type": "image", "image": PATH}, {"type": "video", "video": PATH | [frame paths],
"fps": F}, {"type": "text", "text": ...}. Without --messages, one user turn is built from the
--image/--video/--frames inputs (in that order) followed by the -p text.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import refcommon as R  # noqa: E402


def load_image(path):
    from PIL import Image

    im = Image.open(path)
    im.load()
    return im  # the processor converts to RGB itself (do_convert_rgb), as for any HF user


def decode_video(path):
    """All frames (RGB uint8 [T,H,W,3]) and the native fps, decoded with PyAV."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        fps = float(s.average_rate) if s.average_rate else None
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return np.stack(frames), fps


class Inputs:
    def __init__(self):
        self.images = []
        self.videos = []   # np arrays [T,H,W,3]
        self.meta = []     # VideoMetadata dicts
        self.sample = []   # whether the processor samples frames (decoded files) or not (frame lists)


def build_from_messages(messages, base: Path, inp: Inputs):
    for m in messages:
        if isinstance(m.get("content"), list):
            for item in m["content"]:
                if item.get("type") == "image" or "image" in item:
                    p = item.get("image")
                    if p is not None:
                        inp.images.append(load_image(base / p))
                elif item.get("type") == "video" or "video" in item:
                    v = item.get("video")
                    fps = item.get("fps")
                    add_video(inp, v if isinstance(v, str) else [str(base / f) for f in v], fps, base)
    return messages


def add_video(inp: Inputs, v, fps, base: Path = Path(".")):
    from PIL import Image

    if isinstance(v, list):  # frame list: pre-sampled frames at `fps`
        frames = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in v])
        inp.videos.append(frames)
        inp.meta.append({"total_num_frames": len(frames), "fps": float(fps) if fps else None,
                         "frames_indices": list(range(len(frames)))})
        inp.sample.append(False)
    else:
        p = Path(v)
        if not p.is_absolute():
            p = base / p
        if p.is_dir():
            frames = np.stack(R.load_frames_dir(p))
            inp.videos.append(frames)
            inp.meta.append({"total_num_frames": len(frames), "fps": float(fps) if fps else None,
                             "frames_indices": list(range(len(frames)))})
            inp.sample.append(False)
        else:
            frames, native = decode_video(p)
            inp.videos.append(frames)
            inp.meta.append({"total_num_frames": len(frames), "fps": native, "frames_indices": list(range(len(frames)))})
            inp.sample.append(True)


def process(proc, messages, inp: Inputs, min_pixels=None, max_pixels=None, video_fps=None):
    text = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    kw = {}
    if min_pixels is not None or max_pixels is not None:
        size = dict(proc.image_processor.size)
        mn = min_pixels if min_pixels is not None else size["shortest_edge"]
        mx = max_pixels if max_pixels is not None else size["longest_edge"]
        # both must be passed: in 4.57.6 a lone min_pixels/max_pixels is ignored when size is set
        kw["images_kwargs"] = {"min_pixels": mn, "max_pixels": mx}
    if inp.videos:
        if len(set(inp.sample)) > 1:
            raise SystemExit("mixing decoded video files and frame lists in one prompt is not supported")
        vk = {"video_metadata": inp.meta, "do_sample_frames": inp.sample[0]}
        if video_fps is not None and inp.sample[0]:
            vk["fps"] = video_fps
        kw["videos_kwargs"] = vk
    out = proc(text=[text], images=inp.images or None, videos=inp.videos or None, return_tensors="pt", **kw)
    return text, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True, help="checkpoint folder")
    ap.add_argument("--image", action="append", default=[], help="image file (repeatable)")
    ap.add_argument("--video", action="append", default=[], help="video file (decoded with PyAV, sampled by the processor)")
    ap.add_argument("--frames", action="append", default=[], help="folder of pre-sampled frames (sorted by name)")
    ap.add_argument("--fps", type=float, default=None,
                    help="frame rate of --frames (timestamps); for --video: sampling fps (default 2)")
    ap.add_argument("-p", "--prompt", default="", help="user text (after the media)")
    ap.add_argument("--messages", help="messages JSON file (paths relative to the file)")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--dtype", default="bf16", choices=["f32", "bf16", "float32", "bfloat16"])
    ap.add_argument("--only", default="all", choices=["processor", "vision", "all"])
    ap.add_argument("--max-new-tokens", "--generate", dest="max_new_tokens", type=int, default=64,
                    help="greedy steps (0: no generation)")
    ap.add_argument("--min-pixels", type=int)
    ap.add_argument("--max-pixels", type=int)
    ap.add_argument("--logits", default="full", choices=["full", "cols"],
                    help="full: logits [seq, vocab]; cols: logits.last + 512 columns (fixture form)")
    ap.add_argument("--keep-eos", action="store_true", help="stop generation at EOS (default: run all steps)")
    a = ap.parse_args(argv)

    ckpt = Path(a.model)
    proc = R.load_processor(R.prepare_checkpoint_dir(ckpt))
    inp = Inputs()
    if a.messages:
        mpath = Path(a.messages)
        messages = build_from_messages(json.loads(mpath.read_text()), mpath.parent, inp)
    else:
        content = []
        for f in a.image:
            inp.images.append(load_image(f))
            content.append({"type": "image"})
        for f in a.video:
            add_video(inp, f, None)
            content.append({"type": "video"})
        for d in a.frames:
            add_video(inp, d, a.fps)
            content.append({"type": "video"})
        if a.prompt:
            content.append({"type": "text", "text": a.prompt})
        messages = [{"role": "user", "content": content}]
    text, batch = process(proc, messages, inp, a.min_pixels, a.max_pixels,
                          video_fps=a.fps if a.video else None)

    from transformers import AutoConfig

    meta = {"prompt": text, "dtype": a.dtype, **R.versions_metadata(),
            "checkpoint_fnv1a64": R.checkpoint_fnv1a64(ckpt)}
    res = {}
    if a.only == "processor":
        cfg = AutoConfig.from_pretrained(str(ckpt))
        ids = batch["input_ids"]
        pos, delta = R.rope_index(cfg, ids, batch.get("image_grid_thw"), batch.get("video_grid_thw"),
                                  batch.get("attention_mask"))
        res["input_ids"] = R.to_store(ids[0])
        res["position_ids"] = R.to_store(pos[:, 0, :])
        res["rope_deltas"] = R.to_store(delta.reshape(-1))
        for k in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"):
            if k in batch:
                res[k] = R.to_store(batch[k])
    else:
        model = R.load_model(ckpt, a.dtype)
        if a.only == "vision":
            if "pixel_values" in batch:
                pv, grid, name = batch["pixel_values"], batch["image_grid_thw"], "image_embeds"
            elif "pixel_values_videos" in batch:
                pv, grid, name = batch["pixel_values_videos"], batch["video_grid_thw"], "video_embeds"
            else:
                raise SystemExit("--only vision needs an image or a video")
            res = R.run_vision(model, pv, grid)
            if name != "image_embeds":
                res[name] = res.pop("image_embeds")
            res["pixel_values" if name == "image_embeds" else "pixel_values_videos"] = R.to_store(pv)
            res["image_grid_thw" if name == "image_embeds" else "video_grid_thw"] = R.to_store(grid)
        else:
            res = R.run_text(model, dict(batch), max_new_tokens=a.max_new_tokens, logits_form=a.logits,
                             ignore_eos=not a.keep_eos)
            meta["generate_min_margin"] = repr(res["_generate_min_margin"])
            vis = {}
            if "pixel_values" in batch:
                vis = R.run_vision(model, batch["pixel_values"], batch["image_grid_thw"])
            elif "pixel_values_videos" in batch:
                vis = R.run_vision(model, batch["pixel_values_videos"], batch["video_grid_thw"])
            for k, v in vis.items():
                if k.startswith("vision."):
                    res[k] = v
    tensors = R.tensors_for_file(res)
    R.save_safetensors(a.out, tensors, meta)
    for k in sorted(tensors):
        print(f"{k:28s} {str(list(tensors[k].shape)):18s} {str(tensors[k].dtype).replace('torch.', '')}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
