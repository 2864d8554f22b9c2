#!/usr/bin/env python3
"""Fixtures for tests/processor video tests: Qwen3VLVideoProcessor (transformers 4.57.6) on
synthetic frame lists with metadata, plus Qwen3VLProcessor._calculate_timestamps.

Run:  /work/venv/bin/python tools/reference/processor_video_fixtures.py
Writes tests/fixtures/processor/{video_preprocessor_config.json, videos.json}; prints its sha256.
Frame k of a case: pixel (y, x, c) = (7x + 13y + 61c + 29k + (x*y % 17)) & 255.
"""
import base64
import hashlib
import json
import os

import numpy as np
import torch
import transformers
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
from transformers.video_utils import VideoMetadata

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "processor")

from refcommon import VIDEO_PREPROCESSOR_CONFIG as VIDEO_CONFIG  # noqa: E402


def frames(t, h, w):
    y, x = np.mgrid[0:h, 0:w]
    out = np.empty((t, h, w, 3), dtype=np.uint8)
    for k in range(t):
        for c in range(3):
            out[k, :, :, c] = (7 * x + 13 * y + 61 * c + 29 * k + (x * y % 17)) & 255
    return out


def sha(b):
    return hashlib.sha256(b).hexdigest()


def b64(t):
    return base64.b64encode(t.numpy().astype("<f4").tobytes()).decode()


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "video_preprocessor_config.json"), "w") as f:
        json.dump(VIDEO_CONFIG, f, indent=2)
    vp = Qwen3VLVideoProcessor(**{k: v for k, v in VIDEO_CONFIG.items() if k not in ("processor_class", "video_processor_type")})
    cases = []
    # (T, H, W, video_fps or None, extra kwargs)
    for (t, h, w, vfps, kw) in [(120, 48, 64, 30.0, {}), (50, 40, 72, None, {}), (10, 100, 36, 5.0, {}),
                                (7, 33, 45, 1.0, {}), (120, 96, 128, 30.0, {"size": {"shortest_edge": 4096, "longest_edge": 8 * 32 * 32 * 3}}),
                                (30, 64, 64, 30.0, {"fps": 4}), (300, 36, 40, 29.97, {})]:
        v = frames(t, h, w)
        md = VideoMetadata(total_num_frames=t, fps=vfps)
        out = vp(videos=[v], video_metadata=[md], return_metadata=True, return_tensors="pt", **kw)
        pv = out["pixel_values_videos"].contiguous()
        meta = out["video_metadata"][0]
        idx = [int(i) for i in meta.frames_indices]
        ts = Qwen3VLProcessor._calculate_timestamps(None, list(idx), meta.fps, vp.merge_size)
        cases.append({
            "frames": t, "height": h, "width": w, "video_fps": vfps, "kwargs": kw,
            "frame_indices": idx, "grid_thw": out["video_grid_thw"][0].tolist(),
            "timestamps": ts, "timestamp_text": [f"<{x:.1f} seconds>" for x in ts],
            "pixel_values_shape": list(pv.shape),
            "pixel_values_sha256": sha(pv.numpy().astype("<f4").tobytes()),
            "first_row_f32_b64": b64(pv[0]), "last_row_f32_b64": b64(pv[-1]),
        })
        print(t, h, w, vfps, kw, idx[:8], cases[-1]["grid_thw"], cases[-1]["timestamp_text"][:4])
    # Video files: made with the ffmpeg CLI (Debian), decoded by HF's default read_video_pyav.
    files = []
    vdir = os.path.join(OUT, "video")
    os.makedirs(vdir, exist_ok=True)
    import subprocess
    import av
    for name, args in [("testsrc_ffv1_bgr0.avi", ["-c:v", "ffv1", "-pix_fmt", "bgr0"]),
                       ("testsrc_mpeg4_yuv420p.avi", ["-c:v", "mpeg4", "-q:v", "3", "-pix_fmt", "yuv420p"])]:
        path = os.path.join(vdir, name)
        subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=80x48:rate=25",
                        "-frames:v", "40", *args, path], check=True)
        out = vp(videos=[path], return_metadata=True, return_tensors="pt")
        pv = out["pixel_values_videos"].contiguous()
        meta = out["video_metadata"][0]
        idx = [int(i) for i in meta.frames_indices]
        ts = Qwen3VLProcessor._calculate_timestamps(None, list(idx), meta.fps, vp.merge_size)
        c = av.open(path)
        dec = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        files.append({
            "file": name, "total_num_frames": meta.total_num_frames, "fps": meta.fps,
            "frame_indices": idx, "grid_thw": out["video_grid_thw"][0].tolist(), "timestamps": ts,
            "timestamp_text": [f"<{x:.1f} seconds>" for x in ts],
            "frames_sha256": [sha(np.ascontiguousarray(dec[i]).tobytes()) for i in idx],
            "frames_channel_sums": [np.asarray(dec[i]).reshape(-1, 3).sum(0, dtype=np.int64).tolist() for i in idx],
            "pixel_values_shape": list(pv.shape),
            "pixel_values_sha256": sha(pv.numpy().astype("<f4").tobytes()),
            "first_row_f32_b64": b64(pv[0]), "last_row_f32_b64": b64(pv[-1]),
        })
        print(name, meta.total_num_frames, meta.fps, idx, files[-1]["grid_thw"])
    # Spec 6.6 worked example (timestamps only).
    idx = [0, 17, 34, 51, 68, 85, 102, 119]
    worked = {"indices": idx, "fps": 30.0,
              "timestamps": Qwen3VLProcessor._calculate_timestamps(None, list(idx), 30.0, 2)}
    doc = {"generator": "tools/reference/processor_video_fixtures.py",
           "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
           "pyav": av.__version__, "cases": cases, "files": files, "worked_example": worked}
    path = os.path.join(OUT, "videos.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {path} sha256 {sha(open(path, 'rb').read())}")


if __name__ == "__main__":
    main()
