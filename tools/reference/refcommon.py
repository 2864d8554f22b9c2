"""Shared helpers for the HF reference harness (dump_reference.py, make_fixtures.py).

Everything here runs the pinned HF stack (tools/reference/requirements.txt) on CPU and records
named intermediates with forward hooks, under the names of tests/fixtures and `qwen3vl dump`
(see the fixture contract in tools/reference/README.md).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
CHAT_TEMPLATE_FILE = HERE / "chat_template_qwen3vl_instruct.jinja"

# Checkpoint files defaults when a folder has only config.json + weights (make-model output
# without --tokenizer). Values of the official Qwen3-VL preprocessor_config.json /
# video_preprocessor_config.json (spec section 6.1 / 6.6).
PREPROCESSOR_CONFIG = {
    "size": {"longest_edge": 16777216, "shortest_edge": 65536},
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor",
    "image_processor_type": "Qwen2VLImageProcessorFast",
}
VIDEO_PREPROCESSOR_CONFIG = {
    "size": {"longest_edge": 25165824, "shortest_edge": 4096},
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor",
    "video_processor_type": "Qwen3VLVideoProcessor",
}

SPECIAL_IDS = list(range(151643, 151669))  # the 26 added tokens


def shared_dir() -> Path:
    env = os.environ.get("QWEN3VL_SHARED_DIR")
    if env:
        return Path(env)
    return HERE.parent.parent.parent / "shared"


# ---------------------------------------------------------------------------------------------
# checkpoint hash (FIXTURES.md): FNV-1a 64 over the bytes of every *.safetensors, sorted names.
def fnv1a64_files(paths) -> str:
    h = 0xCBF29CE484222325
    for p in paths:
        with open(p, "rb") as f:
            while True:
                chunk = f.read(1 << 24)
                if not chunk:
                    break
                h = _fnv_update(h, chunk)
    return f"{h:016x}"


_FNV_C = r"""
#include <stdint.h>
#include <stddef.h>
uint64_t fnv1a64_update(uint64_t h, const unsigned char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) { h ^= p[i]; h *= 1099511628211ULL; }
  return h;
}
"""
_fnv_lib = None


def _fnv_update(h: int, data: bytes) -> int:
    """FNV-1a 64 update; uses a tiny C helper compiled on first use (pure Python fallback)."""
    global _fnv_lib
    if _fnv_lib is None:
        _fnv_lib = False
        try:
            import ctypes
            import hashlib
            import subprocess
            import tempfile

            d = Path(tempfile.gettempdir()) / ("qwen3vl-fnv-" + hashlib.sha1(_FNV_C.encode()).hexdigest()[:10])
            so = d / "fnv.so"
            if not so.exists():
                d.mkdir(parents=True, exist_ok=True)
                (d / "fnv.c").write_text(_FNV_C)
                subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(so), str(d / "fnv.c")], check=True)
            lib = ctypes.CDLL(str(so))
            lib.fnv1a64_update.restype = ctypes.c_uint64
            lib.fnv1a64_update.argtypes = [ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t]
            _fnv_lib = lib
        except Exception:
            _fnv_lib = False
    if _fnv_lib:
        return int(_fnv_lib.fnv1a64_update(h, data, len(data)))
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def checkpoint_fnv1a64(ckpt_dir) -> str:
    files = sorted(Path(ckpt_dir).glob("*.safetensors"), key=lambda p: p.name)
    return fnv1a64_files(files)


# ---------------------------------------------------------------------------------------------
def prepare_checkpoint_dir(ckpt_dir: Path, work_dir: Path | None = None) -> Path:
    """Returns a folder HF can load a processor from: the checkpoint itself when it has tokenizer
    and preprocessor files, otherwise a scratch folder with symlinks to the checkpoint files plus
    the shared Qwen3 tokenizer, the Qwen3-VL Instruct chat template and the official
    preprocessor configs."""
    ckpt_dir = Path(ckpt_dir)
    need = ["tokenizer.json", "preprocessor_config.json", "video_preprocessor_config.json"]
    has_template = (ckpt_dir / "chat_template.json").exists() or (ckpt_dir / "chat_template.jinja").exists()
    if all((ckpt_dir / n).exists() for n in need) and has_template:
        return ckpt_dir
    if work_dir is None:
        import tempfile
        work_dir = Path(tempfile.mkdtemp(prefix="qwen3vl-ref-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    for p in ckpt_dir.iterdir():
        dst = work_dir / p.name
        if not dst.exists():
            os.symlink(p.resolve(), dst)
    tok = shared_dir() / "data" / "qwen3-tokenizer"
    for n in ["tokenizer.json", "tokenizer_config.json"]:
        if not (work_dir / n).exists():
            shutil.copyfile(tok / n, work_dir / n)
    if not (work_dir / "preprocessor_config.json").exists():
        (work_dir / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))
    if not (work_dir / "video_preprocessor_config.json").exists():
        (work_dir / "video_preprocessor_config.json").write_text(json.dumps(VIDEO_PREPROCESSOR_CONFIG, indent=2))
    if not ((work_dir / "chat_template.json").exists() or (work_dir / "chat_template.jinja").exists()):
        (work_dir / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE_FILE.read_text()}))
    return work_dir


def load_processor(proc_dir: Path):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(str(proc_dir))
    if proc.chat_template is None:
        proc.chat_template = CHAT_TEMPLATE_FILE.read_text()
    return proc


def load_model(ckpt_dir: Path, dtype: str):
    from transformers import Qwen3VLForConditionalGeneration

    td = {"f32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}[dtype]
    model = Qwen3VLForConditionalGeneration.from_pretrained(str(ckpt_dir), dtype=td, attn_implementation="eager")
    model.eval()
    return model


# ---------------------------------------------------------------------------------------------
def to_store(t: torch.Tensor) -> torch.Tensor:
    """Fixture storage: floats as F32 (bf16 upcast exactly), integers as I64."""
    t = t.detach().cpu()
    if t.is_floating_point():
        return t.to(torch.float32).contiguous()
    return t.to(torch.int64).contiguous()


class Recorder:
    """Forward hooks that record named intermediates into self.out (name -> tensor)."""

    def __init__(self):
        self.out: dict[str, torch.Tensor] = {}
        self.handles = []
        self.patches = []

    def put(self, name, t):
        self.out[name] = to_store(t)

    def close(self):
        for h in self.handles:
            h.remove()
        self.handles.clear()
        for obj, attr, orig in self.patches:
            setattr(obj, attr, orig)
        self.patches.clear()

    # --- vision tower (Qwen3VLVisionModel) -----------------------------------------------------
    def hook_vision(self, visual, prefix_visual_outputs: list | None = None):
        """prefix_visual_outputs: when given, each call of visual.forward appends its
        (merger output, [deepstack...]) there instead of writing image_embeds/deepstack.j."""
        self.handles.append(visual.patch_embed.register_forward_hook(
            lambda m, i, o: self.put("vision.patch_embed", o)))

        orig = visual.fast_pos_embed_interpolate

        def pos_wrapper(grid_thw):
            r = orig(grid_thw)
            self.put("vision.pos_embeds", r)
            return r

        visual.fast_pos_embed_interpolate = pos_wrapper
        self.patches.append((visual, "fast_pos_embed_interpolate", orig))

        def pre0(m, args, kwargs):
            cos, sin = kwargs["position_embeddings"]
            self.put("vision.rotary.cos", cos)
            self.put("vision.rotary.sin", sin)
            self.put("vision.cu_seqlens", kwargs["cu_seqlens"])

        self.handles.append(visual.blocks[0].register_forward_pre_hook(pre0, with_kwargs=True))
        for i, blk in enumerate(visual.blocks):
            self.handles.append(blk.register_forward_hook(
                (lambda i: lambda m, a, o: self.put(f"vision.blocks.{i}", o))(i)))

        if prefix_visual_outputs is None:
            self.handles.append(visual.register_forward_hook(self._vision_out))
        else:
            self.handles.append(visual.register_forward_hook(
                lambda m, a, o: prefix_visual_outputs.append((to_store(o[0]), [to_store(d) for d in o[1]]))))

    def _vision_out(self, m, args, out):
        merged, deep = out
        self.put("image_embeds", merged)
        for j, d in enumerate(deep):
            self.put(f"deepstack.{j}", d)

    # --- text decoder (Qwen3VLTextModel) -------------------------------------------------------
    def hook_text(self, lm):
        def pre_lm(m, args, kwargs):
            self.put("text.embeds", kwargs["inputs_embeds"][0])
            ds = kwargs.get("deepstack_visual_embeds")
            if ds is not None:
                for j, d in enumerate(ds):
                    self.put(f"deepstack.{j}", d)

        self.handles.append(lm.register_forward_pre_hook(pre_lm, with_kwargs=True))
        n = len(lm.layers)
        # text.layers.<l> = hidden state after layer l *and* its deepstack add = input of the next
        # layer (or of the final norm).
        for l in range(1, n):
            self.handles.append(lm.layers[l].register_forward_pre_hook(
                (lambda l: lambda m, args, kwargs: self.put(f"text.layers.{l - 1}", (args[0] if args else kwargs["hidden_states"])[0]))(l),
                with_kwargs=True))
        self.handles.append(lm.norm.register_forward_pre_hook(
            lambda m, args: self.put(f"text.layers.{n - 1}", args[0][0])))
        self.handles.append(lm.norm.register_forward_hook(lambda m, a, o: self.put("text.norm", o[0])))


# ---------------------------------------------------------------------------------------------
def run_vision(model, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> dict:
    visual = model.model.visual
    rec = Recorder()
    rec.hook_vision(visual)
    try:
        with torch.no_grad():
            visual(pixel_values.type(visual.dtype), grid_thw=grid_thw)
    finally:
        rec.close()
    return rec.out


def rope_index(config, input_ids, image_grid_thw=None, video_grid_thw=None, attention_mask=None):
    """Qwen3VLModel.get_rope_index without loading weights (it only reads the config)."""
    from types import SimpleNamespace
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel

    fake = SimpleNamespace(config=config)
    return Qwen3VLModel.get_rope_index(fake, input_ids, image_grid_thw,
                                       video_grid_thw.clone() if video_grid_thw is not None else None,
                                       attention_mask)


def pick_logit_columns(vocab: int, must: list[int], c: int = 512, seed: int = 1234) -> torch.Tensor:
    cols = []
    seen = set()
    for x in must:
        x = int(x)
        if 0 <= x < vocab and x not in seen:
            seen.add(x)
            cols.append(x)
    rng = np.random.default_rng(seed)
    while len(cols) < c:
        x = int(rng.integers(0, vocab))
        if x not in seen:
            seen.add(x)
            cols.append(x)
    cols = sorted(cols[:c]) if len(cols) > c else sorted(cols)
    return torch.tensor(cols, dtype=torch.int64)


def run_text(model, inputs: dict, max_new_tokens: int = 64, logits_form: str = "cols",
             ignore_eos: bool = True) -> dict:
    """Prefill pass with hooks, then HF greedy generate. `inputs` is the processor output
    (return_tensors='pt', batch 1)."""
    mm = model.model
    rec = Recorder()
    vis_outputs: list = []
    rec.hook_vision(mm.visual, prefix_visual_outputs=vis_outputs)
    rec.hook_text(mm.language_model)
    fw = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw",
                                                    "pixel_values_videos", "video_grid_thw")}
    try:
        with torch.no_grad():
            mm.rope_deltas = None
            out = model(**fw, use_cache=False)
    finally:
        rec.close()
    res = {}
    ids = inputs["input_ids"]
    res["input_ids"] = to_store(ids[0])
    pos, delta = mm.get_rope_index(ids, fw.get("image_grid_thw"),
                                   fw.get("video_grid_thw").clone() if fw.get("video_grid_thw") is not None else None,
                                   fw.get("attention_mask"))
    res["position_ids"] = to_store(pos[:, 0, :])
    res["rope_deltas"] = to_store(delta.reshape(-1))
    for k in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"):
        if k in fw:
            res[k] = to_store(fw[k])
    # visual calls are images first, then videos (Qwen3VLModel.forward order)
    vi = 0
    if "pixel_values" in fw:
        res["image_embeds"] = vis_outputs[vi][0]
        vi += 1
    if "pixel_values_videos" in fw:
        res["video_embeds"] = vis_outputs[vi][0]
        vi += 1
    for k, v in rec.out.items():
        if k.startswith("text.") or k.startswith("deepstack."):
            res[k] = v
    logits = out.logits[0]  # [seq, vocab], model dtype
    res["logits.last"] = to_store(logits[-1])

    if max_new_tokens <= 0:
        res["_generate_min_margin"] = float("nan")
        res["_logit_scale"] = float(logits.float().abs().max())
        new = torch.zeros(0, dtype=torch.int64)
    else:
        new = _generate(model, fw, ids, max_new_tokens, ignore_eos, res)
    if logits_form == "full":
        res["logits"] = to_store(logits)
    else:
        must = list(new.tolist()) + logits.float().argmax(-1).tolist() + SPECIAL_IDS
        cols = pick_logit_columns(logits.shape[-1], must)
        res["logits.col_index"] = cols
        res["logits.cols"] = to_store(logits[:, cols])
    return res


def _generate(model, fw, ids, max_new_tokens, ignore_eos, res):
    """HF greedy generate (EOS disabled when ignore_eos so that all steps run); fills
    generate.greedy / generate.margins and returns the new tokens."""
    mm = model.model
    gen_kwargs = dict(do_sample=False, max_new_tokens=max_new_tokens, return_dict_in_generate=True,
                      output_logits=True, top_k=None, top_p=None, temperature=None)
    gc = model.generation_config
    saved = (gc.eos_token_id, gc.pad_token_id)
    if ignore_eos:
        gc.eos_token_id = None
    if gc.pad_token_id is None:
        gc.pad_token_id = 151643
    try:
        with torch.no_grad():
            mm.rope_deltas = None
            g = model.generate(**fw, **gen_kwargs)
    finally:
        gc.eos_token_id, gc.pad_token_id = saved
    new = g.sequences[0, ids.shape[1]:]
    steps = torch.stack([l[0].float() for l in g.logits])  # [steps, vocab]
    top2 = steps.topk(2, dim=-1).values
    margins = top2[:, 0] - top2[:, 1]
    res["generate.greedy"] = to_store(new)
    res["generate.margins"] = to_store(margins)
    res["_generate_min_margin"] = float(margins.min())
    res["_logit_scale"] = float(steps.abs().max())
    return new


def save_safetensors(path, tensors: dict, metadata: dict):
    """Writes a safetensors file with a deterministic byte layout (the `safetensors` package keeps
    __metadata__ in a hash map, so its key order, and the file's bytes, change from run to run):
    header keys in sorted order, compact JSON, padded with spaces to a multiple of 8, tensors
    stored in name order."""
    dt = {torch.float32: "F32", torch.int64: "I64", torch.bfloat16: "BF16", torch.float16: "F16",
          torch.int32: "I32", torch.uint8: "U8"}
    header = {"__metadata__": {k: str(metadata[k]) for k in sorted(metadata)}} if metadata else {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        b = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": dt[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":"), sort_keys=False).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def tensors_for_file(res: dict) -> dict:
    return {k: v for k, v in res.items() if not k.startswith("_")}


def versions_metadata() -> dict:
    import transformers

    return {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__}


# ---------------------------------------------------------------------------------------------
def load_frames_dir(d: Path):
    from PIL import Image

    files = sorted(p for p in Path(d).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp"))
    if not files:
        raise SystemExit(f"--frames {d}: no image files")
    return [np.asarray(Image.open(p).convert("RGB")) for p in files]
