"""Fixtures for tests/tokenizer (run: /work/venv/bin/python tools/reference/make_tokenizer_fixtures.py).

Writes, with HuggingFace `tokenizers` (the Rust library behind transformers' fast tokenizers) as
the reference:
  tests/fixtures/tokenizer/fuzz_cases.json   random strings built from tricky atoms (whitespace
      variants, contractions, scripts, combining marks, NFD, Hangul jamo, emoji, special-token
      fragments, random code points) and their ids under the real Qwen3 tokenizer.json.
  tests/fixtures/tokenizer/tiny_tokenizer.json  a small byte-level BPE tokenizer.json in the Qwen
      structure, with legacy "a b" string merges and added tokens exercising lstrip / rstrip /
      single_word / normalized / leftmost-longest matching.
  tests/fixtures/tokenizer/tiny_cases.json   encode ids and decode strings for it.
Prints the sha256 of each file. Deterministic (fixed seed).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

from tokenizers import Tokenizer
import tokenizers

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = ROOT / "tests" / "fixtures" / "tokenizer"
SHARED = Path(os.environ.get("QWEN3VL_SHARED_DIR", ROOT.parent / "shared"))
QWEN_JSON = SHARED / "data" / "qwen3-tokenizer" / "tokenizer.json"

ATOMS = [
    " ", "  ", "   ", "\t", "\n", "\n\n", "\r", "\r\n", " \n", "\n ", "\u00a0", "\u0085", "\u3000", "\u2028",
    "\u2029", "\u200b", "\u200d", "\ufeff", "\x0b", "\x0c", "\x1c", "\x1f", "\u180e", "\u2009", "\u202f",
    "'", "'s", "'S", "'ll", "'LL", "'lL", "'re", "'RE", "'ve", "'m", "'M", "'d", "'t", "'T", "'ſ", "'x", "’s",
    "a", "Z", "x", "hello", "World", "don", "I", "123", "4", "0", "٣", "²", "Ⅻ", "½", "①", "𝟘",
    "é", "e\u0301", "\u0301", "\u0301\u0323", "Å", "A\u030a", "\u212b", "\u2126", "ﬁ", "ſ", "ß", "İ", "K", "µ",
    "가", "\u1100\u1161", "\u1100\u1161\u11a8", "\u11a8", "각", "中文", "漢字", "\uf900", "ひらがな", "カ\u3099", "ガ",
    "नमस्ते", "क़", "ق", "عربي", "עברית", "ไทย", "ᄀ", "Ελληνικά", "Русский", "ქართ", "ᠮᠣ", "ꦧ",
    "😀", "👨\u200d👩\u200d👧", "🇺🇸", "🦙", "👍🏽", "❤️", "✅", "𝔘𝔫𝔦",
    "!", "...", "(", ")", "{", "}", "-", "_", "@#$", "://", ".cpp", "==", "\"", "`", "~", "§",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "<|vision_start|>",
    "<|image_pad|>", "<|im_", "end|>", "<", "|", ">", "<|", "|>", "\x00", "\x7f", "\x01",
    # marks newer than HF's NFC tables (see kHfUnknownRanges in src/tokenizer/unicode.cpp)
    "\u1ac1", "\u0316", "\u0334", "\u0345", "\U00011935\U00011930", "\u08ca", "\u1df6", "\U00011938",
]


def random_cp(rng: random.Random) -> str:
    while True:
        r = rng.random()
        if r < 0.5:
            cp = rng.randrange(0x80, 0x3000)
        elif r < 0.8:
            cp = rng.randrange(0x3000, 0x10000)
        else:
            cp = rng.randrange(0x10000, 0x30000)
        if 0xD800 <= cp < 0xE000:
            continue
        return chr(cp)


def fuzz_strings(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        k = rng.randint(1, 12)
        parts = []
        for _ in range(k):
            parts.append(random_cp(rng) if rng.random() < 0.12 else rng.choice(ATOMS))
        out.append("".join(parts))
    return out


def tiny_tokenizer_json() -> dict:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_to_char = {b: chr(c) for b, c in zip(bs, cs)}
    vocab = {byte_to_char[b]: b for b in range(256)}
    merges = []

    def add_merge(a: str, b: str) -> None:
        merges.append(f"{a} {b}")
        if a + b not in vocab:
            vocab[a + b] = len(vocab)

    G = byte_to_char[ord(" ")]
    for a, b in [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), (G, "w"), ("o", "r"), (G + "w", "or"),
                 (G + "wor", "l"), (G + "worl", "d"), ("a", "a"), ("aa", "a"), (G, G), ("Ã", "©")]:
        add_merge(a, b)
    added = []
    next_id = 300

    def add_tok(content: str, special: bool, **flags) -> None:
        nonlocal next_id
        t = {"id": next_id, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": special}
        t.update(flags)
        added.append(t)
        next_id += 1

    add_tok("<s>", True)
    add_tok("<s>!", True)                    # leftmost-longest over "<s>"
    add_tok("[L]", True, lstrip=True)
    add_tok("[R]", False, rstrip=True)
    add_tok("[W]", False, single_word=True)
    add_tok("[LR]", True, lstrip=True, rstrip=True)
    add_tok("\u00e9t\u00e9", False, normalized=True)   # matched on the NFC text
    add_tok("A\u030a!", False, normalized=False)       # raw match only: NFD content
    add_tok("caf\u00e9", True)                          # decodes through the byte map -> U+FFFD
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


TINY_TEXTS = [
    "hello world", "hello  world", "aaaa aaaaa", "<s>", "<s>!", "<s>!!", "x<s>y", "<s<s>>",
    "a [L]b", "a   [L]b", "[L]", "a\t\n [L]", "<s> [L]",
    "a[R]   b", "a [R]\n\nb", "[R]", "[R][R]  [R]",
    "[W]", "a [W] b", "a[W] b", "a [W]b", "_[W]", "é[W]", "-[W]-", "ab[W]", "1[W]",
    "x  [LR]  y", "[LR]", " [LR] [LR] ",
    "\u00e9t\u00e9", "e\u0301te\u0301", "l'e\u0301te\u0301!", "A\u030a!", "\u00c5!", "caf\u00e9", "cafe\u0301",
    "", " ", "\u00e9",
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    written = []

    qwen = Tokenizer.from_file(str(QWEN_JSON))
    rng = random.Random(20261128)
    cases = []
    for s in fuzz_strings(rng, 1500):
        ids = qwen.encode(s, add_special_tokens=True).ids
        cases.append({"text": s, "ids": ids,
                      "decoded": qwen.decode(ids, skip_special_tokens=False),
                      "decoded_skip_special": qwen.decode(ids, skip_special_tokens=True)})
    meta = {"generator": "tools/reference/make_tokenizer_fixtures.py", "tokenizers_version": tokenizers.__version__,
            "tokenizer_json_sha256": hashlib.sha256(QWEN_JSON.read_bytes()).hexdigest(), "seed": 20261128}
    p = OUT / "fuzz_cases.json"
    p.write_text(json.dumps({"meta": meta, "cases": cases}, ensure_ascii=True, indent=0) + "\n")
    written.append(p)

    tiny = tiny_tokenizer_json()
    p = OUT / "tiny_tokenizer.json"
    p.write_text(json.dumps(tiny, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    written.append(p)
    tk = Tokenizer.from_file(str(p))
    tcases = []
    for s in TINY_TEXTS:
        enc = tk.encode(s, add_special_tokens=True)
        tcases.append({"text": s, "ids": enc.ids, "tokens": enc.tokens,
                       "decoded": tk.decode(enc.ids, skip_special_tokens=False),
                       "decoded_skip_special": tk.decode(enc.ids, skip_special_tokens=True)})
    p = OUT / "tiny_cases.json"
    p.write_text(json.dumps({"meta": {"generator": meta["generator"], "tokenizers_version": tokenizers.__version__},
                             "cases": tcases}, ensure_ascii=True, indent=1) + "\n")
    written.append(p)
    for p in written:
        print(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(ROOT)}  ({p.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
