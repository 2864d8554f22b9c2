#!/usr/bin/env python3
"""Write a HF Qwen3-VL checkpoint folder (Qwen3VLForConditionalGeneration, dense) as llama.cpp GGUF
files: the text model (arch `qwen3vl`) and the vision tower as an mmproj (arch `clip`, projector
`qwen3vl_merger`), without torch.

Needs only numpy and the `gguf` package (bench/compare_llamacpp.sh installs the copy vendored in the
same llama.cpp source it builds, so names and keys match that llama.cpp exactly). Safetensors are
read directly (header + memory map), so bf16 weights go to a BF16 GGUF bit for bit.

It reproduces what llama.cpp's own convert_hf_to_gguf.py (conversion/qwen3vl.py, Qwen3VLTextModel
and Qwen3VLVisionModel) writes for these checkpoints: the same tensor names, shapes, types
(1-D tensors and norms F32, position embedding F32, the Conv3D patch embedding split into two
Conv2D halves) and the same metadata; bench/check_gguf.py compares the two (see bench/README.md).

    python bench/safetensors_to_gguf.py MODEL_DIR --text out-bf16.gguf --mmproj mmproj-f16.gguf
"""
from __future__ import annotations

import argparse
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np

import gguf

ST_DTYPES = {"BF16": np.uint16, "F16": np.float16, "F32": np.float32}


class SafetensorsFolder:
    """All tensors of *.safetensors in a folder, as numpy memory maps (bf16 as raw uint16)."""

    def __init__(self, folder: Path):
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise SystemExit(f"error: no *.safetensors in {folder}")
        self.entries: dict[str, tuple[Path, str, list[int], int, int]] = {}
        for f in files:
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                if info["dtype"] not in ST_DTYPES:
                    raise SystemExit(f"error: {name}: unsupported dtype {info['dtype']}")
                b, e = info["data_offsets"]
                self.entries[name] = (f, info["dtype"], list(info["shape"]), 8 + n + b, e - b)

    def names(self) -> list[str]:
        return list(self.entries)

    def raw(self, name: str) -> tuple[np.ndarray, str]:
        f, dt, shape, off, nbytes = self.entries[name]
        count = math.prod(shape)
        arr = np.memmap(f, dtype=ST_DTYPES[dt], mode="r", offset=off, shape=(count,))
        assert arr.nbytes == nbytes, name
        return arr.reshape(shape), dt

    def f32(self, name: str) -> np.ndarray:
        arr, dt = self.raw(name)
        if dt == "BF16":
            return (arr.astype(np.uint32) << 16).view(np.float32)
        return arr.astype(np.float32)


def encode(st: SafetensorsFolder, name: str, qtype: gguf.GGMLQuantizationType, select=None):
    """(array, raw_dtype) for GGUFWriter.add_tensor; select: optional indexing applied first."""
    raw, dt = st.raw(name)
    if select is not None:
        raw = raw[select]
    if qtype == gguf.GGMLQuantizationType.BF16 and dt == "BF16":
        # bit-exact copy; uint8 view -> the writer derives the element shape
        return np.ascontiguousarray(raw).view(np.uint8), qtype
    if dt == "BF16":
        x = (raw.astype(np.uint32) << 16).view(np.float32)
    else:
        x = raw.astype(np.float32)
    if qtype == gguf.GGMLQuantizationType.F32:
        return np.ascontiguousarray(x), qtype
    if qtype == gguf.GGMLQuantizationType.F16:
        return np.ascontiguousarray(x.astype(np.float16)), qtype
    return gguf.quants.quantize(np.ascontiguousarray(x), qtype), qtype


FTYPES = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
}


def load_config(model_dir: Path) -> dict:
    cfg = json.loads((model_dir / "config.json").read_text())
    arch = (cfg.get("architectures") or [""])[0]
    if arch != "Qwen3VLForConditionalGeneration":
        raise SystemExit(f"error: {model_dir}: architecture {arch!r}, expected Qwen3VLForConditionalGeneration")
    return cfg


# ---------------------------------------------------------------------------------------------
# text model
# ---------------------------------------------------------------------------------------------

TEXT_LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def text_vocab(model_dir: Path, vocab_size: int) -> tuple[list[str], list[int]]:
    """tokenizer.ggml.tokens / token_type as convert_hf_to_gguf's get_vocab_base writes them."""
    tj = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    rev: dict[int, str] = {i: t for t, i in tj["model"]["vocab"].items()}
    added = {a["id"]: a for a in tj.get("added_tokens", [])}
    for i, a in added.items():
        rev[i] = a["content"]
    if max(rev) >= vocab_size:
        raise SystemExit(f"error: tokenizer id {max(rev)} >= vocab_size {vocab_size}")
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in rev:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tok = rev[i]
        if i in added:
            looks_special = (tok.startswith("<|") and tok.endswith("|>")) or tok in ("<pad>", "<mask>")
            types.append(gguf.TokenType.CONTROL if added[i].get("special") or looks_special
                         else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(tok)
    return tokens, types


def write_text(model_dir: Path, st: SafetensorsFolder, cfg: dict, out: Path, outtype: str, name: str,
               layers: int | None = None) -> None:
    """layers: keep only the first N decoder layers (a cheap stand-in text model for llama-mtmd-cli
    vision timing runs, where the text model only has to accept the image embeddings)."""
    tc = dict(cfg["text_config"])
    n_deepstack = len(cfg.get("vision_config", {}).get("deepstack_visual_indexes", []))
    if layers is not None:
        # llama.cpp's qwen3vl graph adds the DeepStack features after layers 0..n_deepstack-1 and
        # needs the last layer to come after them (it keeps only the output rows there)
        tc["num_hidden_layers"] = min(max(layers, n_deepstack + 1), tc["num_hidden_layers"])
    wtype, ftype = FTYPES[outtype]
    w = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN3VL])
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(name)
    w.add_block_count(tc["num_hidden_layers"])
    w.add_context_length(tc["max_position_embeddings"])
    w.add_embedding_length(tc["hidden_size"])
    w.add_feed_forward_length(tc["intermediate_size"])
    w.add_head_count(tc["num_attention_heads"])
    w.add_head_count_kv(tc["num_key_value_heads"])
    rope = tc.get("rope_scaling") or tc.get("rope_parameters") or {}
    if rope.get("rope_type", "default") not in ("default", None):
        raise SystemExit(f"error: rope_type {rope.get('rope_type')!r} not handled")
    sections = list(rope.get("mrope_section", []))
    if sections:
        sections = (sections + [0, 0, 0, 0])[:4]
        w.add_rope_dimension_sections(sections)
    w.add_rope_freq_base(tc.get("rope_theta", rope.get("rope_theta")))
    w.add_layer_norm_rms_eps(tc["rms_norm_eps"])
    head_dim = tc.get("head_dim", tc["hidden_size"] // tc["num_attention_heads"])
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_file_type(ftype)
    w.add_num_deepstack_layers(n_deepstack)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    tokens, types = text_vocab(model_dir, tc["vocab_size"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")  # the Qwen2/Qwen3 BPE pre-tokenizer (what the hash check yields)
    w.add_token_list(tokens)
    w.add_token_types(types)
    gguf.SpecialVocab(model_dir, load_merges=True).add_to_gguf(w)

    prefix = "model.language_model."
    tied = cfg.get("tie_word_embeddings", tc.get("tie_word_embeddings", False))
    for hf in st.names():
        if hf == "lm_head.weight":
            if tied:
                continue
            gg = "output.weight"
        elif not hf.startswith(prefix):
            continue
        else:
            rest = hf[len(prefix):]
            if rest == "embed_tokens.weight":
                gg = "token_embd.weight"
            elif rest == "norm.weight":
                gg = "output_norm.weight"
            elif rest.startswith("layers."):
                _, bid, tail = rest.split(".", 2)
                if tail not in TEXT_LAYER_MAP:
                    raise SystemExit(f"error: unexpected text tensor {hf}")
                if int(bid) >= tc["num_hidden_layers"]:
                    continue
                gg = f"blk.{int(bid)}.{TEXT_LAYER_MAP[tail]}"
            else:
                raise SystemExit(f"error: unexpected text tensor {hf}")
        _, dt = st.raw(hf)
        shape = st.entries[hf][2]
        qt = gguf.GGMLQuantizationType.F32 if len(shape) <= 1 or gg.endswith("_norm.weight") else wtype
        arr, raw_dtype = encode(st, hf, qt)
        w.add_tensor(gg, arr, raw_dtype=raw_dtype)
    write_file(w)


# ---------------------------------------------------------------------------------------------
# vision tower (mmproj)
# ---------------------------------------------------------------------------------------------

VISION_BLOCK_MAP = {
    "norm1": "ln1", "norm2": "ln2", "attn.qkv": "attn_qkv", "attn.proj": "attn_out",
    "mlp.linear_fc1": "ffn_up", "mlp.linear_fc2": "ffn_down",
}


def write_mmproj(model_dir: Path, st: SafetensorsFolder, cfg: dict, out: Path, outtype: str, name: str) -> None:
    vc = cfg["vision_config"]
    tc = cfg["text_config"]
    wtype, ftype = FTYPES[outtype]
    pp_path = model_dir / "preprocessor_config.json"
    pp = json.loads(pp_path.read_text()) if pp_path.is_file() else {}
    w = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.MMPROJ])
    w.add_type(gguf.GGUFType.MMPROJ)
    w.add_name(name)
    w.add_file_type(ftype)
    w.add_clip_has_vision_encoder(True)
    w.add_vision_projection_dim(tc["hidden_size"])
    patch = vc.get("patch_size", 16)
    image_size = vc.get("image_size", int(vc.get("num_position_embeddings", 2304) ** 0.5 * patch))
    w.add_vision_image_size(image_size)
    w.add_vision_patch_size(patch)
    w.add_vision_embedding_length(vc["hidden_size"])
    w.add_vision_feed_forward_length(vc["intermediate_size"])
    w.add_vision_block_count(vc["depth"])
    w.add_vision_head_count(vc["num_heads"])
    w.add_vision_image_mean(pp.get("image_mean", [0.5, 0.5, 0.5]))
    w.add_vision_image_std(pp.get("image_std", [0.5, 0.5, 0.5]))
    w.add_clip_projector_type(gguf.VisionProjectorType.QWEN3VL)
    w.add_vision_use_gelu(True)
    w.add_vision_spatial_merge_size(int(vc.get("spatial_merge_size", 2)))
    w.add_vision_attention_layernorm_eps(tc.get("rms_norm_eps", 1e-6))
    ds_idx = list(vc.get("deepstack_visual_indexes", []))
    is_ds = [False] * int(vc["depth"])
    for i in ds_idx:
        is_ds[i] = True
    w.add_vision_is_deepstack_layers(is_ds)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    F32 = gguf.GGMLQuantizationType.F32
    patch_type = gguf.GGMLQuantizationType.F16 if outtype == "f16" else F32  # as tensor_force_quant
    prefix = "model.visual."
    for hf in st.names():
        if not hf.startswith(prefix):
            continue
        rest = hf[len(prefix):]
        shape = st.entries[hf][2]
        if rest == "patch_embed.proj.weight":
            # Conv3D [C_out, C_in, kt=2, kh, kw] -> two Conv2D halves along the temporal axis
            if shape[2] != 2:
                raise SystemExit("error: only temporal_patch_size 2 is supported (as in llama.cpp)")
            for t, suffix in ((0, ""), (1, ".1")):
                arr, rd = encode(st, hf, patch_type, select=(slice(None), slice(None), t))
                w.add_tensor("v.patch_embd.weight" + suffix, arr, raw_dtype=rd)
            continue
        if rest == "patch_embed.proj.bias":
            gg = "v.patch_embd.bias"
        elif rest == "pos_embed.weight":
            gg = "v.position_embd.weight"
        elif rest.startswith("blocks."):
            _, bid, tail = rest.split(".", 2)
            mod, _, param = tail.rpartition(".")
            if mod not in VISION_BLOCK_MAP:
                raise SystemExit(f"error: unexpected vision tensor {hf}")
            gg = f"v.blk.{int(bid)}.{VISION_BLOCK_MAP[mod]}.{param}"
        elif rest.startswith("merger."):
            mod, _, param = rest[len("merger."):].rpartition(".")
            gg = {"norm": "v.post_ln", "linear_fc1": "mm.0", "linear_fc2": "mm.2"}[mod] + "." + param
        elif rest.startswith("deepstack_merger_list."):
            _, i, tail = rest.split(".", 2)
            mod, _, param = tail.rpartition(".")
            gg = f"v.deepstack.{ds_idx[int(i)]}." + {"norm": "norm", "linear_fc1": "fc1", "linear_fc2": "fc2"}[mod] \
                + "." + param
        else:
            raise SystemExit(f"error: unexpected vision tensor {hf}")
        if len(shape) <= 1 or gg.endswith("_norm.weight") or gg == "v.position_embd.weight" \
                or not gg.endswith(".weight"):
            qt = F32
        else:
            qt = wtype
        arr, rd = encode(st, hf, qt)
        w.add_tensor(gg, arr, raw_dtype=rd)
    write_file(w)


def write_file(w: gguf.GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--text", type=Path, help="write the text model here")
    ap.add_argument("--text-type", choices=list(FTYPES), default="bf16")
    ap.add_argument("--mmproj", type=Path, help="write the vision tower (mmproj) here")
    ap.add_argument("--mmproj-type", choices=list(FTYPES), default="f16")
    ap.add_argument("--text-layers", type=int, default=None,
                    help="only the first N text layers, at least DeepStack count + 1 (stand-in text model "
                         "for llama-mtmd-cli vision timing)")
    ap.add_argument("--name", default=None, help="general.name (default: folder name)")
    a = ap.parse_args()
    if not a.text and not a.mmproj:
        ap.error("nothing to do: give --text and/or --mmproj")
    cfg = load_config(a.model_dir)
    st = SafetensorsFolder(a.model_dir)
    name = a.name or a.model_dir.resolve().name
    if a.text:
        write_text(a.model_dir, st, cfg, a.text, a.text_type, name, a.text_layers)
        print(f"wrote {a.text} ({a.text.stat().st_size / 1e6:.1f} MB)")
    if a.mmproj:
        write_mmproj(a.model_dir, st, cfg, a.mmproj, a.mmproj_type, name)
        print(f"wrote {a.mmproj} ({a.mmproj.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
