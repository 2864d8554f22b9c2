#!/usr/bin/env python3
"""End-to-end processor fixtures: chat messages with real images (and a frames-list video) run
through HF's AutoProcessor (Qwen3VLProcessor, transformers 4.57.6) on a make-model checkpoint's
processor files; writes tests/fixtures/pipeline/processor.json with, per case, the rendered
prompt, input_ids, grids and the FNV-1a 64 of the pixel_values float32 bytes. Prints its sha256.

    python tools/reference/pipeline_fixtures.py CHECKPOINT_DIR   (e.g. from make-model --preset tiny)
Never edit the output by hand."""
import copy
import hashlib
import json
import pathlib
import sys

import numpy as np
import transformers
from transformers import AutoProcessor
from transformers.image_utils import load_image
from transformers.video_utils import VideoMetadata

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGES = ROOT.parent / "shared" / "data" / "images"
OUT = ROOT / "tests" / "fixtures" / "pipeline" / "processor.json"


def fnv1a64(data: bytes) -> str:
    h = 14695981039346656037
    for b in data:
        h ^= b
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def img(name):
    return str(IMAGES / name)


CASES = [
    ("one_image", [{"role": "user", "content": [{"type": "image", "image": img("astronaut.png")},
                                                 {"type": "text", "text": "What is in this image?"}]}], {}),
    ("text_image_text", [{"role": "user", "content": [{"type": "text", "text": "Compare "},
                                                       {"type": "image", "image": img("chelsea.png")},
                                                       {"type": "text", "text": " with "},
                                                       {"type": "image", "image": img("rocket.jpg")},
                                                       {"type": "text", "text": " please."}]}], {}),
    ("multi_turn", [{"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Hello"},
                    {"role": "assistant", "content": "Hi."},
                    {"role": "user", "content": [{"type": "image", "image": img("rocket_exif_orientation6.jpg")},
                                                 {"type": "text", "text": "And this?"}]}], {}),
    ("odd_formats", [{"role": "user", "content": [{"type": "image", "image": img("vnc-d.webp")},
                                                   {"type": "image", "image": img("foo3x5x4indexed.png")},
                                                   {"type": "image", "image": img("chelsea_cmyk.jpg")},
                                                   {"type": "text", "text": "Three."}]}], {}),
    ("video_frames", [{"role": "user", "content": [{"type": "video", "video": [img("chelsea.png"), img("chelsea_cmyk.jpg"), img("chelsea.png"), img("chelsea_cmyk_pil.jpg"), img("chelsea.png")],
                                                    "fps": 2.0},
                                                   {"type": "text", "text": "What happens?"}]}], {}),
]
MIN_PIXELS, MAX_PIXELS = 16384, 65536


def main():
    ckpt = sys.argv[1]
    proc = AutoProcessor.from_pretrained(ckpt)
    cases = []
    for name, messages, _ in CASES:
        text = proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        images, videos, metas = [], [], []
        for m in messages:
            if isinstance(m["content"], str):
                continue
            for part in m["content"]:
                if part["type"] == "image":
                    images.append(load_image(part["image"]))
                elif part["type"] == "video":
                    frames = [np.array(load_image(p)) for p in part["video"]]
                    videos.append(np.stack(frames))
                    metas.append(VideoMetadata(total_num_frames=len(frames), fps=part["fps"],
                                               frames_indices=list(range(len(frames)))))
        kw = {}
        if images:
            kw["images"] = images
            kw["images_kwargs"] = {"size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}}
        if videos:
            kw["videos"] = videos
            kw["videos_kwargs"] = {"do_sample_frames": False, "video_metadata": metas, "size": {"shortest_edge": MIN_PIXELS * 2,
                                                                        "longest_edge": MAX_PIXELS * 4}}
        out = proc(text=[text], return_tensors="pt", **kw)
        out = {k: v.numpy() for k, v in out.items()}
        case = {"name": name, "messages": messages, "rendered": text,
                "input_ids": out["input_ids"][0].tolist()}
        if images:
            case["image_grid_thw"] = out["image_grid_thw"].tolist()
            case["pixel_values_shape"] = list(out["pixel_values"].shape)
            case["pixel_values_fnv1a64"] = fnv1a64(np.ascontiguousarray(out["pixel_values"], dtype="<f4").tobytes())
        if videos:
            case["video_grid_thw"] = out["video_grid_thw"].tolist()
            case["pixel_values_videos_shape"] = list(out["pixel_values_videos"].shape)
            case["pixel_values_videos_fnv1a64"] = fnv1a64(
                np.ascontiguousarray(out["pixel_values_videos"], dtype="<f4").tobytes())
        cases.append(case)
        print(name, len(case["input_ids"]), case.get("image_grid_thw"), case.get("video_grid_thw"))
    doc = {"generator": "tools/reference/pipeline_fixtures.py", "transformers": transformers.__version__,
           "image_size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
           "video_size": {"shortest_edge": MIN_PIXELS * 2, "longest_edge": MAX_PIXELS * 4},
           "shared_images": "relative to ../shared/data/images", "cases": cases}
    text = json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
    text = text.replace(str(IMAGES) + "/", "")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"{OUT.relative_to(ROOT)} sha256 {hashlib.sha256(OUT.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
