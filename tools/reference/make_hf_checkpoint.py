#!/usr/bin/env python3
"""Development aid: write a small random Qwen3-VL checkpoint with HF itself
(Qwen3VLForConditionalGeneration(config).save_pretrained), plus the shared Qwen3 tokenizer, the
Qwen3-VL Instruct chat template and the official preprocessor configs.

The real fixtures come from `qwen3vl make-model` (tools/reference/make_fixtures.py); this
exists to exercise the harness (and `qwen3vl` loaders) against an HF-written folder.

  python make_hf_checkpoint.py --out /tmp/hf-tiny [--dtype f32|bf16] [--seed 0] [--init-std 0.02]
"""
import argparse
from pathlib import Path

import torch

import refcommon

def preset(name):
    """Same configurations as src/model/presets.cpp (tiny, tiny-b)."""
    if name == "tiny":
        t = dict(hidden=64, inter=128, layers=4, heads=4, kv=2, tie=True, head_dim=16, mrope=[4, 2, 2])
        v = dict(depth=4, hidden=32, inter=64, heads=2, deep=[0, 1, 2], npos=64)
    elif name == "tiny-b":
        t = dict(hidden=96, inter=160, layers=3, heads=6, kv=2, tie=False, head_dim=32, mrope=[6, 5, 5])
        v = dict(depth=5, hidden=48, inter=80, heads=3, deep=[1, 3, 4], npos=36)
    else:
        raise SystemExit(f"unknown preset {name}")
    return dict(
        vision_config=dict(depth=v["depth"], hidden_size=v["hidden"], intermediate_size=v["inter"],
                           num_heads=v["heads"], out_hidden_size=t["hidden"], num_position_embeddings=v["npos"],
                           deepstack_visual_indexes=v["deep"], patch_size=16, spatial_merge_size=2,
                           temporal_patch_size=2, hidden_act="gelu_pytorch_tanh"),
        text_config=dict(vocab_size=151936, hidden_size=t["hidden"], intermediate_size=t["inter"],
                         num_hidden_layers=t["layers"], num_attention_heads=t["heads"],
                         num_key_value_heads=t["kv"], head_dim=t["head_dim"], rope_theta=5000000.0,
                         rope_scaling={"rope_type": "default", "mrope_section": t["mrope"], "mrope_interleaved": True},
                         max_position_embeddings=262144, rms_norm_eps=1e-6, tie_word_embeddings=t["tie"],
                         bos_token_id=151643, eos_token_id=151645),
        tie_word_embeddings=t["tie"],
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", default="tiny", choices=["tiny", "tiny-b"])
    ap.add_argument("--init-std", type=float, default=0.02)
    a = ap.parse_args()
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    torch.manual_seed(a.seed)
    cfg = preset(a.preset)
    cfg["vision_config"]["initializer_range"] = a.init_std
    cfg["text_config"]["initializer_range"] = a.init_std
    config = Qwen3VLConfig(**cfg)
    model = Qwen3VLForConditionalGeneration(config)
    with torch.no_grad():  # norms: not all ones, so that their weights matter in the comparison
        for n, p in model.named_parameters():
            if p.ndim == 1 and ("norm" in n):
                p.add_(torch.randn_like(p) * 0.1)
            elif p.ndim == 1 and n.endswith("bias"):
                p.normal_(0.0, a.init_std)
    if a.dtype == "bf16":
        model = model.to(torch.bfloat16)
    out = Path(a.out)
    model.save_pretrained(str(out))
    refcommon.prepare_checkpoint_dir(out, out)
    print(out, refcommon.checkpoint_fnv1a64(out))


if __name__ == "__main__":
    main()
