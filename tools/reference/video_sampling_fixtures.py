#!/usr/bin/env python3
"""Frame indices, resize sizes and timestamps from HF's Qwen3VLVideoProcessor / Qwen3VLProcessor
(transformers 4.57.6) for a grid of video shapes; writes tests/fixtures/video/sampling.json and
prints its sha256. Never edit the output by hand."""
import hashlib
import json
import pathlib

import transformers
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor, smart_resize
from transformers.video_utils import VideoMetadata

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "video" / "sampling.json"


def main():
    vp = Qwen3VLVideoProcessor(size={"longest_edge": 25165824, "shortest_edge": 4096})
    cases = []
    for total, vfps, fps, nf in [(120, 30.0, 2, None), (10, 25.0, 2, None), (3, 24.0, 2, None), (1000, 29.97, 2, None),
                                 (100000, 30.0, 2, None), (61, 12.5, 1.5, None), (90, 30.0, None, 7),
                                 (50, 10.0, 2, None), (7, 24.0, None, 5), (300, 23.976, 3, None)]:
        md = VideoMetadata(total_num_frames=total, fps=vfps)
        idx = vp.sample_frames(md, num_frames=nf, fps=fps if nf is None else None).tolist()
        ts = Qwen3VLProcessor._calculate_timestamps(None, list(idx), vfps, 2)
        cases.append({"total": total, "video_fps": vfps, "fps": fps, "num_frames": nf, "indices": idx,
                      "timestamps": ts, "stamps": [f"{t:.1f}" for t in ts]})
    sizes = []
    for n, h, w in [(8, 720, 1280), (4, 480, 640), (768, 1080, 1920), (2, 32, 32), (16, 100, 3000), (6, 33, 47),
                    (5, 4000, 3000), (2, 40, 40), (3, 2160, 3840)]:
        rh, rw = smart_resize(num_frames=n, height=h, width=w, temporal_factor=2, factor=32,
                              min_pixels=4096, max_pixels=25165824)
        sizes.append({"num_frames": n, "height": h, "width": w, "resized_height": rh, "resized_width": rw})
    doc = {"generator": "tools/reference/video_sampling_fixtures.py", "transformers": transformers.__version__,
           "sampling": cases, "sizes": sizes}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{OUT.relative_to(ROOT)} sha256 {hashlib.sha256(OUT.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
