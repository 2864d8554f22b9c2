#!/usr/bin/env python3
"""Fixtures for tests/processor: HF image decoding + Qwen2VLImageProcessorFast outputs.

Run:  /work/venv/bin/python tools/reference/processor_fixtures.py [--shared ../shared]
Writes tests/fixtures/processor/{preprocessor_config.json, synthetic/*, images.json} and prints
the sha256 of images.json.

Reference stack: transformers 4.57.6, torch 2.9.1 (CPU), torchvision 0.24.1, Pillow 13.0.0.
Images are loaded with transformers.image_utils.load_image (exif_transpose + convert("RGB")).
For every image we store: the decoded RGB sha256, HF's image_grid_thw, the sha256 of the
resized uint8 image (HWC) and of pixel_values' f32 little-endian bytes, plus the first and last
rows of pixel_values (base64 f32) for diagnostics; full pixel_values for a few tiny cases.
"""
import argparse
import base64
import hashlib
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
import torch
from PIL import Image as PILImage

import transformers
from transformers import AutoImageProcessor
from transformers.image_utils import SizeDict, load_image
from torchvision.transforms.v2 import functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "processor")
SYN = os.path.join(OUT, "synthetic")

# Published Qwen3-VL preprocessor_config.json (spec section 6.1).
from refcommon import PREPROCESSOR_CONFIG  # noqa: E402
SMALL_RUN = {"min_pixels": 4096, "max_pixels": 65536}


# --------------------------------------------------------------------------------------------
# Minimal PNG writer (any colour type / bit depth / Adam7) for synthetic cases Pillow can't write
# --------------------------------------------------------------------------------------------
def chunk(t, data):
    return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)


def pack_row(samples, bitdepth):
    """samples: 1-D sequence of sample values (channels interleaved)."""
    if bitdepth == 8:
        return bytes(int(v) for v in samples)
    if bitdepth == 16:
        return b"".join(struct.pack(">H", int(v)) for v in samples)
    out = bytearray()
    per = 8 // bitdepth
    for i in range(0, len(samples), per):
        b = 0
        grp = list(samples[i:i + per]) + [0] * (per - len(samples[i:i + per]))
        for v in grp:
            b = (b << bitdepth) | int(v)
        out.append(b)
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, arr, bitdepth, colortype, plte=None, trns=None, interlace=False, extra=()):
    """arr: [H, W, C] integer samples."""
    h, w = arr.shape[:2]
    arr = arr.reshape(h, w, -1)
    raw = bytearray()
    if not interlace:
        for y in range(h):
            raw += b"\x00" + pack_row(arr[y].reshape(-1), bitdepth)
    else:
        for (x0, y0, dx, dy) in ADAM7:
            sub = arr[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            for y in range(sub.shape[0]):
                raw += b"\x00" + pack_row(sub[y].reshape(-1), bitdepth)
    data = b"\x89PNG\r\n\x1a\n"
    data += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bitdepth, colortype, 0, 0, 1 if interlace else 0))
    for t, d in extra:
        data += chunk(t, d)
    if plte is not None:
        data += chunk(b"PLTE", bytes(np.asarray(plte, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        data += chunk(b"tRNS", trns)
    data += chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    data += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def exif_orientation_bytes(o):
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHI", 0x112, 3, 1) + \
        struct.pack("<HH", o, 0) + struct.pack("<I", 0)


def make_synthetic(shared):
    os.makedirs(SYN, exist_ok=True)
    rng = np.random.default_rng(1234)
    files = []

    def add(name):
        files.append(name)
        return os.path.join(SYN, name)

    g16 = rng.integers(0, 600, (23, 37, 1))
    g16[0, :5, 0] = [0, 255, 256, 65535, 40000]
    write_png(add("gray16.png"), g16, 16, 0)
    write_png(add("la16.png"), rng.integers(0, 65536, (17, 29, 2)), 16, 4)
    write_png(add("gray2.png"), rng.integers(0, 4, (7, 13, 1)), 2, 0)
    write_png(add("gray4_interlaced.png"), rng.integers(0, 16, (19, 11, 1)), 4, 0, interlace=True)
    write_png(add("rgb_interlaced.png"), rng.integers(0, 256, (37, 41, 3)), 8, 2, interlace=True)
    write_png(add("rgb16_interlaced.png"), rng.integers(0, 65536, (9, 10, 3)), 16, 2, interlace=True)
    write_png(add("rgba_interlaced.png"), rng.integers(0, 256, (33, 34, 4)), 8, 6, interlace=True)
    write_png(add("rgb_trns.png"), rng.integers(0, 256, (12, 15, 3)), 8, 2, trns=struct.pack(">HHH", 1, 2, 3))
    write_png(add("pal2_interlaced.png"), rng.integers(0, 4, (21, 18, 1)), 2, 3,
              plte=[[200, 10, 30], [5, 250, 60], [70, 80, 90], [1, 2, 3]], trns=b"\x00\x80", interlace=True)
    write_png(add("pal8_short_plte.png"), rng.integers(0, 3, (6, 9, 1)), 8, 3, plte=[[200, 10, 30], [5, 250, 60], [70, 80, 90]])
    base = rng.integers(0, 256, (3, 5, 3))
    for o in range(2, 9):
        write_png(add(f"orient{o}.png"), base, 8, 2, extra=[(b"eXIf", exif_orientation_bytes(o))])
    xmp = b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    write_png(add("xmp_orient6.png"), base, 8, 2, extra=[(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp)])
    ex = b"Exif\x00\x00" + exif_orientation_bytes(3)
    raw = f"\nexif\n{len(ex):8}\n{ex.hex()}\n".encode()
    write_png(add("rawexif_orient3.png"), base, 8, 2,
              extra=[(b"zTXt", b"Raw profile type exif\x00\x00" + zlib.compress(raw))])
    # Pillow-encoded variants of real images.
    ast = PILImage.open(os.path.join(shared, "data/images/astronaut.png")).convert("RGB").crop((100, 60, 164, 108))
    ast.save(add("lossy.webp"), quality=80)
    ast_a = ast.copy()
    ast_a.putalpha(PILImage.linear_gradient("L").resize(ast.size))
    ast_a.save(add("lossy_alpha.webp"), quality=70)
    ast.save(add("subsampling422.jpg"), quality=90, subsampling=1)
    left = PILImage.open(os.path.join(shared, "data/images/left01.jpg")).crop((0, 0, 96, 80))
    left.save(add("gray_progressive.jpg"), quality=85, progressive=True)
    ast.save(add("orient8.jpg"), quality=90, exif=_exif_with_orientation(8))
    return files


def _exif_with_orientation(o):
    e = PILImage.Exif()
    e[0x0112] = o
    return e.tobytes()


# --------------------------------------------------------------------------------------------
def sha(b):
    return hashlib.sha256(b).hexdigest()


def b64f32(t):
    return base64.b64encode(np.ascontiguousarray(t.numpy().astype("<f4")).tobytes()).decode()


def lcg_image(h, w, seed):
    """uint8 [h, w, 3] from x = (1103515245 x + 12345) mod 2^31, pixel = (x >> 16) & 255."""
    n = h * w * 3
    out = np.empty(n, dtype=np.uint8)
    x = seed
    for i in range(n):
        x = (1103515245 * x + 12345) & 0x7FFFFFFF
        out[i] = (x >> 16) & 255
    return out.reshape(h, w, 3)


def process(proc, img_rgb_pil, **kw):
    out = proc(images=[img_rgb_pil], return_tensors="pt", **kw)
    pv = out["pixel_values"].contiguous()
    grid = out["image_grid_thw"][0].tolist()
    assert pv.dtype == torch.float32
    # Resized uint8 image (same call the processor makes).
    t = F.pil_to_tensor(img_rgb_pil).unsqueeze(0)
    H, W = t.shape[-2:]
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
    mn = kw.get("min_pixels", proc.size["shortest_edge"])
    mx = kw.get("max_pixels", proc.size["longest_edge"])
    rh, rw = smart_resize(H, W, factor=proc.patch_size * proc.merge_size, min_pixels=mn, max_pixels=mx)
    r = proc.resize(t, SizeDict(height=rh, width=rw), interpolation=F.InterpolationMode.BICUBIC)
    assert r.dtype == torch.uint8
    resized = r[0].permute(1, 2, 0).contiguous().numpy()
    assert grid[1] * proc.patch_size == rh and grid[2] * proc.patch_size == rw
    return {
        "grid_thw": grid,
        "resized_hw": [rh, rw],
        "resized_sha256": sha(resized.tobytes()),
        "pixel_values_shape": list(pv.shape),
        "pixel_values_sha256": sha(pv.numpy().astype("<f4").tobytes()),
        "first_row_f32_b64": b64f32(pv[0]),
        "last_row_f32_b64": b64f32(pv[-1]),
    }, pv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    args = ap.parse_args()
    shared = os.path.abspath(args.shared)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "preprocessor_config.json"), "w") as f:
        json.dump(PREPROCESSOR_CONFIG, f, indent=2)
    proc = AutoImageProcessor.from_pretrained(OUT)
    assert type(proc).__name__ == "Qwen2VLImageProcessorFast", type(proc)
    torch.set_num_threads(2)

    synthetic = make_synthetic(shared)
    manifest = json.load(open(os.path.join(shared, "data/images/manifest.json")))
    entries = [("shared", m["file"], os.path.join(shared, "data/images", m["file"])) for m in manifest["images"]]
    entries += [("synthetic", n, os.path.join(SYN, n)) for n in synthetic]

    full_small = {"gvim_16x16.png", "foo3x5x4indexed.png", "orient6.png", "gray16.png"}
    images = []
    for src, name, path in entries:
        pil = load_image(path)
        arr = np.asarray(pil)
        rec = {"source": src, "file": name, "width": pil.width, "height": pil.height,
               "decoded_sha256": sha(arr.tobytes()),
               "decoded_first_pixel": arr[0, 0].tolist(),
               "decoded_channel_sums": arr.reshape(-1, 3).sum(0, dtype=np.int64).tolist()}
        rec["default"], _ = process(proc, pil)
        rec["small"], pv = process(proc, pil, **SMALL_RUN)
        if name in full_small:
            rec["small"]["full_f32_b64"] = b64f32(pv.reshape(-1))
        images.append(rec)
        print(f"{name:40s} {pil.width}x{pil.height} grid {rec['default']['grid_thw']} small {rec['small']['grid_thw']}",
              file=sys.stderr)

    # Resize-only cases (random LCG images through torchvision F.resize on uint8 CPU).
    resize_cases = []
    for (h, w, oh, ow, seed) in [(37, 53, 64, 96, 1), (100, 80, 32, 32, 2), (64, 64, 64, 160, 3), (300, 7, 96, 32, 4),
                                 (5, 3, 256, 192, 5), (250, 333, 67, 301, 6), (128, 96, 128, 32, 7), (96, 128, 480, 128, 8),
                                 (1, 118, 32, 800, 9), (513, 17, 32, 16, 10)]:
        img = lcg_image(h, w, seed)
        t = torch.from_numpy(img).permute(2, 0, 1).contiguous().unsqueeze(0)
        r = F.resize(t, [oh, ow], interpolation=F.InterpolationMode.BICUBIC, antialias=True)
        resize_cases.append({"in_hw": [h, w], "out_hw": [oh, ow], "seed": seed, "input_sha256": sha(img.tobytes()),
                             "output_sha256": sha(r[0].permute(1, 2, 0).contiguous().numpy().tobytes())})

    doc = {
        "generator": "tools/reference/processor_fixtures.py",
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                     "torchvision": __import__("torchvision").__version__, "Pillow": PILImage.__version__,
                     "numpy": np.__version__},
        "processor_class": type(proc).__name__,
        "small_run": SMALL_RUN,
        "images": images,
        "resize_cases": resize_cases,
    }
    path = os.path.join(OUT, "images.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {path} sha256 {sha(open(path, 'rb').read())}")


if __name__ == "__main__":
    main()
